#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end tests of vtmem: boot a Debian 6.1 guest in our QEMU with the
virtio-tmem device, swap through /dev/vtmem0, verify data and statistics.

Usage: vtmem_e2e.py [options] SCENARIO
Scenarios: fits small-limit limit-change nodisk-full nodevice cycle-reboot
           thp unplug churn suspend shrink shrink-updown shrink-swapin
           shrink-nodisk shrink-diskfull; bench and shrink-bench are measurements, not tests

Paths come from options or the environment:
  --qemu / VTMEM_QEMU          our qemu-system-x86_64
  --ko / VTMEM_KO              virtio_tmem.ko
  --setup / VTMEM_SETUP        guest-driver/vtmem-setup
  --swapverify / VTMEM_SWAPVERIFY   static workload binary
  --workdir / VTMEM_E2E_WORKDIR     scratch dir (default: a temp dir)
  VTMEM_CACHE (default ~/.cache/vtmem): where guest-kernel.sh unpacked the kernel
  VTMEM_ACCEL: auto (default: if /dev/kvm is usable, boot once with KVM and
    cache in VTMEM_CACHE whether it works; nested KVM hangs on some hosts), tcg, kvm
  VTMEM_LOGLEVEL: guest console loglevel (default 4)
Exit status 0 = pass, 77 = skipped, 1 = fail.
"""

import argparse
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("VTMEM_CACHE", os.path.expanduser("~/.cache/vtmem"))
VIRTIO_MODS = ["virtio", "virtio_ring", "virtio_pci_modern_dev",
               "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"]
BAD_CONSOLE = re.compile(r"BUG:|Oops|WARNING:|KASAN|UBSAN|Kernel panic|"
                         r"general protection fault|list_del corruption|"
                         r"soft lockup|hung_task|INFO: task .* blocked")
QEMU_BAD = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                      r"runtime error:|Assertion .* failed|core dumped")
TM = "/machine/peripheral/tm0"
# Swapped-out pages of processes that outlive a workload (init's shell).
RESIDUE = 64
KO = "/lib/vtmem/virtio_tmem.ko"


class Fail(Exception):
    pass


def log(msg):
    print("[e2e %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---------------------------------------------------------------- guest image

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo 30 > /proc/sys/kernel/hung_task_timeout_secs
for m in $(cat /lib/vtmem/virtio-order); do
	insmod /lib/vtmem/mods/$m.ko || echo "VTMEM-FAIL insmod $m"
done

sync_host() {
	echo "VTMEM-SYNC $1"
	read -r VTMEM_REPLY
}

stat_dump() {
	if [ -d /sys/block/vtmem0/vtmem ]; then
		vtmem-setup stats | sed "s/^/VTMEM-STAT $1 /"
	fi
	sed -n 's/^\(pswpin\|pswpout\|thp_swpout\|thp_swpout_fallback\|oom_kill\) \(.*\)/VTMEM-STAT '"$1"' vm_\1 \2/p' /proc/vmstat
}

# workload TAG MIB SEED MEMMAX [swapverify args]
workload() {
	tag=$1 mib=$2 seed=$3 max=$4
	shift 4
	mkdir -p /sys/fs/cgroup/w
	echo +memory > /sys/fs/cgroup/cgroup.subtree_control
	echo "$max" > /sys/fs/cgroup/w/memory.max
	echo "VTMEM-MARK workload $tag start"
	VTMEM_STATS_CMD="/bin/sh -c '. /lib/vtmem/lib.sh; stat_dump $tag-written; ${VTMEM_HOOK:-}'" \
		sh -c 'echo $$ > /sys/fs/cgroup/w/cgroup.procs && exec /bin/swapverify "$@"' \
		sv "$mib" "$seed" "$@"
	rc=$?
	echo "VTMEM-RC $tag $rc"
}

setup() {
	vtmem-setup -m $KO "$@" start || echo "VTMEM-FAIL vtmem-setup start"
}

KO=/lib/vtmem/virtio_tmem.ko
"""


def find_kernel(ko):
    """The kernel the module was built for (its vermagic), unpacked by
    guest-kernel.sh under VTMEM_CACHE; returns (kver, modules dir, vmlinuz).
    Kernels from 7.x keep vmlinuz in the modules dir, under /usr/lib."""
    kver = os.environ.get("VTMEM_KVER") or subprocess.check_output(
        ["modinfo", "-F", "vermagic", ko], text=True).split()[0]
    root = os.path.join(CACHE, "kernel-" + kver)
    if not os.path.exists(os.path.join(root, ".done")):
        env = dict(os.environ, VTMEM_KVER=kver)
        subprocess.check_call(["sh", os.path.join(HERE, "guest-kernel.sh"), "fetch"],
                              stdout=subprocess.DEVNULL, env=env)
    for lib in ("lib", "usr/lib"):
        mods = os.path.join(root, lib, "modules", kver)
        if os.path.isdir(os.path.join(mods, "kernel")):
            break
    vmlinuz = os.path.join(root, "boot", "vmlinuz-" + kver)
    if not os.path.exists(vmlinuz):
        vmlinuz = os.path.join(mods, "vmlinuz")
    return kver, mods, vmlinuz


def mod_path(mods, name):
    """NAME's .ko or .ko.xz file, or None when it is built in."""
    try:
        with open(os.path.join(mods, "modules.builtin")) as f:
            if any(os.path.basename(line.strip()).split(".ko")[0] == name
                   for line in f):
                return None
    except OSError:
        pass
    for d, _, files in os.walk(os.path.join(mods, "kernel")):
        for f in (name + ".ko", name + ".ko.xz"):
            if f in files:
                return os.path.join(d, f)
    raise Fail("module %s not found in %s" % (name, mods))


def mod_order(mods, names):
    order = []

    def visit(n):
        path = mod_path(mods, n)
        if n in order or path is None:
            return
        deps = subprocess.check_output(
            ["modinfo", "-F", "depends", path], text=True).strip()
        for d in filter(None, deps.split(",")):
            visit(d)
        order.append(n)
    for n in names:
        visit(n)
    return order


def copy_module(src, dst):
    """busybox insmod takes no compressed modules: unpack .ko.xz."""
    if src.endswith(".xz"):
        with open(dst, "wb") as out:
            subprocess.run(["xz", "-dc", src], stdout=out, check=True)
    else:
        shutil.copy(src, dst)


def build_initramfs(args, workdir):
    kver, mods, vmlinuz = find_kernel(args.ko)
    busybox = shutil.which("busybox") or "/bin/busybox"
    st = os.path.join(workdir, "initramfs-root")
    shutil.rmtree(st, ignore_errors=True)
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "lib/vtmem/mods"]:
        os.makedirs(os.path.join(st, d))
    shutil.copy(busybox, os.path.join(st, "bin", "busybox"))
    applets = subprocess.check_output([busybox, "--list"], text=True).split()
    for a in applets:
        p = os.path.join(st, "bin", a)
        if not os.path.exists(p):
            os.symlink("busybox", p)
    order = mod_order(mods, VIRTIO_MODS)
    for m in order:
        copy_module(mod_path(mods, m), os.path.join(st, "lib/vtmem/mods", m + ".ko"))
    with open(os.path.join(st, "lib/vtmem/virtio-order"), "w") as f:
        f.write("\n".join(order) + "\n")
    shutil.copy(args.ko, os.path.join(st, "lib/vtmem/virtio_tmem.ko"))
    shutil.copy(args.setup, os.path.join(st, "bin/vtmem-setup"))
    shutil.copy(args.swapverify, os.path.join(st, "bin/swapverify"))
    lib = INIT.split("sync_host() {", 1)
    with open(os.path.join(st, "lib/vtmem/lib.sh"), "w") as f:
        f.write("sync_host() {" + lib[1])
    with open(os.path.join(st, "init"), "w") as f:
        f.write(INIT + "\n. /scenario.sh\necho VTMEM-DONE\npoweroff -f\n")
    for p in ["init", "bin/vtmem-setup", "bin/swapverify"]:
        os.chmod(os.path.join(st, p), 0o755)
    base = os.path.join(workdir, "base.cpio")
    files = subprocess.check_output(["find", "."], cwd=st)
    with open(base, "wb") as out:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=st,
                       input=files, stdout=out, check=True)
    return vmlinuz, base


def scenario_initramfs(workdir, base, script):
    d = tempfile.mkdtemp(dir=workdir, prefix="scn-")
    with open(os.path.join(d, "scenario.sh"), "w") as f:
        f.write(script)
    out = os.path.join(workdir, "initrd-%s.cpio" % os.path.basename(d))
    with open(out, "wb") as o:
        with open(base, "rb") as b:
            shutil.copyfileobj(b, o)
        o.flush()
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=d,
                       input=b"scenario.sh\n", stdout=o, check=True)
    return out


# ---------------------------------------------------------------------- QMP

class QMP:
    def __init__(self, path, proc, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if proc.poll() is not None:
                    raise Fail("QEMU exited with status %d" % proc.returncode)
                if time.time() > deadline:
                    raise Fail("QMP socket %s did not appear" % path)
                time.sleep(0.1)
        self.f = self.sock.makefile("rwb")
        self.lock = threading.Lock()
        self.events = []
        self._read()
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise Fail("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **arguments):
        with self.lock:
            msg = {"execute": name}
            if arguments:
                msg["arguments"] = arguments
            self.f.write(json.dumps(msg).encode() + b"\n")
            self.f.flush()
            while True:
                r = self._read()
                if "event" in r:
                    self.events.append(r)
                    continue
                if "error" in r:
                    raise Fail("QMP %s: %s" % (name, r["error"]))
                return r.get("return")

    def get(self, prop):
        return self.cmd("qom-get", path=TM, property=prop)

    def set(self, prop, value):
        return self.cmd("qom-set", path=TM, property=prop, value=value)

    def host_stats(self):
        return {p: self.get(p) for p in ["stored-pages", "compressed-bytes",
                                         "memory-held", "refusals",
                                         "invalidations", "limit"]}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------- guest

class Guest:
    """One QEMU run; reads the console line by line."""

    def __init__(self, args, workdir, vmlinuz, initrd, tm=None, disks=(),
                 mem="256M", reboot=False, accel="tcg", extra=()):
        self.workdir = workdir
        self.qmp_path = os.path.join(workdir, "qmp-%d.sock" % os.getpid())
        if os.path.exists(self.qmp_path):
            os.unlink(self.qmp_path)
        cmd = [args.qemu, "-accel", accel, "-smp", "1", "-m", mem,
               "-display", "none", "-monitor", "none", "-nic", "none",
               "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
               "-kernel", vmlinuz, "-initrd", initrd,
               "-append", "console=ttyS0 rdinit=/init panic=-1 "
               "random.trust_cpu=on transparent_hugepage=madvise "
               "zswap.enabled=0 loglevel=%s" % os.environ.get("VTMEM_LOGLEVEL", "4"),
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        for d in ["/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"]:
            if os.path.isdir(d):
                cmd += ["-L", d]
        if not reboot:
            cmd.append("-no-reboot")
        if tm is not None:
            cmd += ["-device", "virtio-tmem-pci,id=tm0," + tm]
        for i, (path, size_mb) in enumerate(disks):
            with open(path, "wb") as f:
                f.truncate(size_mb << 20)
            cmd += ["-drive", "file=%s,format=raw,if=none,id=d%d,cache=unsafe"
                    % (path, i), "-device", "virtio-blk-pci,drive=d%d" % i]
        cmd += list(extra)
        self.cmd = cmd
        self.console = open(os.path.join(workdir, "console.log"), "w")
        self.lines = queue.Queue()
        self.start = time.time()
        self.stderr_path = os.path.join(workdir, "qemu-stderr.log")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()
        try:
            self.qmp = QMP(self.qmp_path, self.proc)
        except Fail:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            time.sleep(0.2)
            self.console.close()
            self.stderr.close()
            raise
        self.bad = []

    def _reader(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.console.write("%7.2f %s\n" % (time.time() - self.start, line))
            self.console.flush()
            self.lines.put(line)
        self.lines.put(None)

    def reply(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def next_line(self, deadline):
        left = deadline - time.time()
        if left <= 0:
            raise Fail("timeout")
        try:
            line = self.lines.get(timeout=left)
        except queue.Empty:
            raise Fail("timeout")
        if line is not None and BAD_CONSOLE.search(line):
            self.bad.append(line)
        return line

    def stop(self):
        self.qmp.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.console.close()
        self.stderr.close()

    def qemu_errors(self):
        """Sanitizer reports or assertion failures of QEMU itself."""
        with open(self.stderr_path, errors="replace") as f:
            return [l.rstrip() for l in f if QEMU_BAD.search(l)]


class Run:
    """State of one scenario run: parsed console output."""

    def __init__(self):
        self.stats = {}          # tag -> {key: int}
        self.results = {}        # tag -> dict(ok, bad, rc, ...)
        self.host = {}           # sync name -> host stats
        self.fails = []
        self.marks = []
        self.pending_result = None
        self.all_results = []
        self.boot = 0

    def st(self, tag, key):
        try:
            return self.stats[tag][key]
        except KeyError:
            raise Fail("no guest stat %s/%s" % (tag, key))


def parse_line(run, line):
    m = re.search(r"VTMEM-STAT (\S+) (\S+) (-?\d+)", line)
    if m:
        run.stats.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
        return
    m = re.search(r"VTMEM-RESULT (\w+) (.*)", line)
    if m:
        r = {"status": m.group(1)}
        for kv in m.group(2).split():
            k, v = kv.split("=")
            r[k] = int(v)
        run.pending_result = r
        run.all_results.append(r)
        return
    m = re.search(r"VTMEM-RC (\S+) (\d+)", line)
    if m:
        r = run.pending_result or {"status": "none"}
        r["rc"] = int(m.group(2))
        run.results[m.group(1)] = r
        run.pending_result = None
        return
    m = re.search(r"VTMEM-FAIL (.*)", line)
    if m:
        run.fails.append(m.group(1))
    m = re.search(r"VTMEM-MARK (.*)", line)
    if m:
        run.marks.append(m.group(1))


def wait_host(g, cond, timeout=10.0):
    """Poll host stats until cond(stats) holds; returns the last stats."""
    deadline = time.time() + timeout
    while True:
        s = g.qmp.host_stats()
        if cond(s) or time.time() > deadline:
            return s
        time.sleep(0.2)


def wait_guest_stats(g, run, tag, timeout):
    """Read the console until the guest has dumped its stats under tag (for a
    host callback that waits on the guest while the main loop cannot)."""
    deadline = time.time() + timeout
    while True:
        line = g.next_line(deadline)
        if line is None:
            raise Fail("guest console closed while waiting for stats %s" % tag)
        parse_line(run, line)
        # stat_dump ends with the guest's /proc/vmstat lines.
        if "vm_pswpout" in run.stats.get(tag, {}):
            return


# ----------------------------------------------------------------- scenarios

def expect(cond, what):
    if not cond:
        raise Fail(what)
    log("ok: " + what)


def result_ok(run, tag):
    r = run.results.get(tag)
    expect(r is not None and r["status"] == "ok" and r["rc"] == 0 and
           r.get("bad", 1) == 0, "workload %s verified: %s" % (tag, r))
    return r


class Scenario:
    name = ""
    tm = "limit=512M"
    disk_mb = 256
    reboot = False
    timeout = 300
    allow_io_errors = False
    script = ""

    def on_sync(self, g, run, name):
        if name == "boot":
            run.boot += 1
            return str(run.boot)
        if name in ("written",):
            if g.qmp and self.tm is not None:
                run.host[name] = g.qmp.host_stats()
        return "go"

    def on_start(self, g, run):
        pass

    def check(self, run):
        pass


WL = "workload main 160 1 64M sync\n"


# Plain block I/O through submit_bio (dd, O_DIRECT), then discard: the host
# drops the range (INVALIDATE_RANGE) and the device reads back zeros.
BLOCK_IO = r"""
echo 64M > /sys/block/vtmem0/vtmem/disksize
dd if=/dev/urandom of=/tmp/rnd bs=1M count=16 2>/dev/null
dd if=/tmp/rnd of=/dev/vtmem0 bs=1M oflag=direct 2>/dev/null
dd if=/dev/vtmem0 of=/tmp/back bs=1M count=16 iflag=direct 2>/dev/null
cmp /tmp/rnd /tmp/back && echo "VTMEM-MARK dd-verified"
stat_dump dd
sync_host dd-written
blkdiscard /dev/vtmem0 || echo "VTMEM-FAIL blkdiscard"
stat_dump discarded
sync_host discarded
n=$(dd if=/dev/vtmem0 bs=1M count=16 iflag=direct 2>/dev/null | tr -d '\000' | wc -c)
[ "$n" = 0 ] && echo "VTMEM-MARK discard-zeroes"
echo 1 > /sys/block/vtmem0/vtmem/reset
"""


class Fits(Scenario):
    name = "fits"
    script = ("sync_host boot\nsetup -b /dev/vda -s 512M\nstat_dump setup\n" + WL +
              "stat_dump after-exit\nsync_host after-exit\n"
              "vtmem-setup stop\nstat_dump after-stop\nsync_host after-stop\n" +
              BLOCK_IO)

    def on_sync(self, g, run, name):
        if name == "after-exit":
            # Pages of processes that still live (init's shell) may stay.
            want = run.st("after-exit", "pages_host")
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == want)
        elif name == "after-stop":
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == 0)
        elif name in ("dd-written", "discarded"):
            run.host[name] = g.qmp.host_stats()
        return super().on_sync(g, run, name)

    def check(self, run):
        result_ok(run, "main")
        w = run.host["written"]
        expect(w["stored-pages"] > 0, "host holds pages while swapped out (%d)"
               % w["stored-pages"])
        expect(run.st("main-written", "pages_host") > 0, "guest: pages on host")
        expect(run.st("main-written", "disk_blocks_used") == 0,
               "guest: no disk blocks used")
        expect(run.st("after-exit", "host_refusals") == 0, "no refusals")
        expect(run.st("after-exit", "disk_writes") == 0, "no disk writes")
        expect(run.st("after-exit", "pages_host") <= RESIDUE and
               run.st("after-exit", "pages_disk") == 0,
               "guest: (almost) nothing stored after exit")
        expect(run.st("after-exit", "invalidated_slots") > 0,
               "invalidations sent")
        expect(run.host["after-exit"]["stored-pages"] <= RESIDUE,
               "host usage back to ~0 after exit (%s)" % run.host["after-exit"])
        expect(run.host["after-exit"]["stored-pages"] ==
               run.st("after-exit", "pages_host"),
               "host and guest agree on the pages held (no leak)")
        expect(run.host["after-stop"]["stored-pages"] == 0 and
               run.host["after-stop"]["compressed-bytes"] == 0,
               "host empty after swapoff (%s)" % run.host["after-stop"])
        expect(run.st("after-exit", "failed_reads") == 0 and
               run.st("after-exit", "failed_writes") == 0, "no failed I/O")
        expect("dd-verified" in run.marks, "O_DIRECT block I/O verifies")
        expect(run.host["dd-written"]["stored-pages"] >= 4096,
               "dd data on the host (%d)" % run.host["dd-written"]["stored-pages"])
        expect(run.st("discarded", "invalidate_ranges") > 0 and
               run.host["discarded"]["stored-pages"] == 0,
               "discard dropped the range on the host")
        expect("discard-zeroes" in run.marks, "discarded blocks read as zeroes")


class SmallLimit(Scenario):
    name = "small-limit"
    tm = "limit=16M"
    script = ("sync_host boot\nsetup -b /dev/vda -s 512M\n" + WL +
              "stat_dump end\nvtmem-setup stop\n")

    def check(self, run):
        result_ok(run, "main")
        expect(run.host["written"]["stored-pages"] > 0, "host holds some pages")
        expect(run.host["written"]["refusals"] > 0, "host refused pages")
        expect(run.st("main-written", "host_refusals") > 0, "guest saw refusals")
        expect(run.st("main-written", "disk_blocks_used") > 0 and
               run.st("main-written", "pages_disk") > 0,
               "overflow on the backing disk")
        expect(run.st("end", "failed_reads") == 0 and
               run.st("end", "failed_writes") == 0, "no failed I/O")


class LimitChange(Scenario):
    name = "limit-change"
    tm = "limit=32M"
    script = ("sync_host boot\nsetup -b /dev/vda -s 512M\n" +
              "workload main 160 7 64M sync passes=2\n"
              "stat_dump end\nsync_host end\nvtmem-setup stop\n")

    def on_sync(self, g, run, name):
        if name == "written":
            run.host[name] = g.qmp.host_stats()
            g.qmp.set("limit", 4 << 20)
            self.stop = threading.Event()
            self.changes = 0

            def toggle():
                vals = [256 << 20, 2 << 20, 64 << 20, 8 << 20]
                while not self.stop.wait(0.4):
                    g.qmp.set("limit", vals[self.changes % len(vals)])
                    self.changes += 1
            self.t = threading.Thread(target=toggle, daemon=True)
            self.t.start()
            return "go"
        if name == "end":
            self.stop.set()
            self.t.join()
            run.host[name] = g.qmp.host_stats()
        return super().on_sync(g, run, name)

    def check(self, run):
        result_ok(run, "main")
        log("limit changed %d times while verifying" % self.changes)
        expect(self.changes >= 2, "limit changed while the workload ran")
        expect(run.host["end"]["refusals"] > 0, "host refused pages")
        expect(run.st("end", "failed_reads") == 0 and
               run.st("end", "failed_writes") == 0, "no failed I/O")


class NoDiskFull(Scenario):
    name = "nodisk-full"
    tm = "limit=4M"
    disk_mb = 0
    allow_io_errors = True
    # Same-filled pages (40%) can still be swapped out: the workload should
    # get through (slowly) or be OOM-killed; it must never see wrong data.
    script = ("sync_host boot\nsetup -s 512M\n"
              "workload main 96 11 64M\n"
              "workload big 160 12 64M\nstat_dump end\nvtmem-setup stop\n"
              "stat_dump stopped\n")

    def check(self, run):
        r = run.results.get("main")
        expect(r is not None, "workload finished or was killed: %s" % r)
        expect(r["status"] != "fail" and r.get("bad", 0) == 0,
               "no corrupted page")
        r = run.results.get("big")
        expect(r is not None and r["rc"] in (0, 137) and
               r["status"] != "fail" and r.get("bad", 0) == 0,
               "larger workload OOM-killed (or verified), nothing wrong: %s" % r)
        expect(run.st("end", "failed_writes") > 0, "kernel saw write errors")
        expect(run.st("end", "failed_reads") == 0, "no failed reads")


class NoDevice(Scenario):
    name = "nodevice"
    tm = None
    script = ("sync_host boot\nsetup -b /dev/vda\n" + WL +
              "stat_dump end\nvtmem-setup stop\n")

    def check(self, run):
        result_ok(run, "main")
        expect(run.st("main-written", "host_attached") == 0, "no host device")
        expect(run.st("main-written", "pages_disk") > 0 and
               run.st("main-written", "pages_host") == 0,
               "everything on the backing disk")
        expect(run.st("end", "host_puts") == 0, "no host puts")
        expect(run.st("end", "failed_reads") == 0 and
               run.st("end", "failed_writes") == 0, "no failed I/O")


class CycleReboot(Scenario):
    name = "cycle-reboot"
    tm = "limit=256M"
    reboot = True
    script = r"""
sync_host boot
if [ "$VTMEM_REPLY" = 1 ]; then
	for i in 1 2 3; do
		setup -b /dev/vda -s 128M
		grep -q vtmem0 /proc/swaps || echo "VTMEM-FAIL swap not active"
		if rmmod virtio_tmem 2>/dev/null; then echo "VTMEM-FAIL rmmod while swapon"; else echo "VTMEM-MARK rmmod-refused $i"; fi
		vtmem-setup -r stop || echo "VTMEM-FAIL stop"
		[ -d /sys/block/vtmem0 ] && echo "VTMEM-FAIL still loaded"
		echo "VTMEM-MARK cycle $i"
	done
	setup -b /dev/vda -s 256M
	workload pre 96 3 48M sync
	echo "VTMEM-FAIL no reset happened"
else
	setup -b /dev/vda -s 256M
	stat_dump boot2
	workload post 96 4 48M
	stat_dump end
	vtmem-setup -r stop
fi
"""

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["before-reset"] = g.qmp.host_stats()
            g.qmp.cmd("system_reset")
            return None
        if name == "boot" and run.boot == 1:
            run.host["boot2"] = g.qmp.host_stats()
        return super().on_sync(g, run, name)

    def check(self, run):
        expect(run.marks.count("cycle 1") + run.marks.count("cycle 3") == 2,
               "3 load/unload cycles")
        expect(sum(m.startswith("rmmod-refused") for m in run.marks) == 3,
               "rmmod refused while swap active")
        expect(run.host["before-reset"]["stored-pages"] > 0,
               "host held pages before the reset")
        expect(run.host["boot2"]["stored-pages"] == 0,
               "host usage dropped to 0 at reset (%s)" % run.host["boot2"])
        result_ok(run, "post")
        expect(run.st("end", "host_puts") > 0, "swap to host works after reboot")


class Thp(Scenario):
    name = "thp"
    script = ("sync_host boot\necho always > /sys/kernel/mm/transparent_hugepage/enabled\n"
              "setup -b /dev/vda -s 512M\n"
              "workload main 160 5 64M thp sync\nstat_dump end\nvtmem-setup stop\n")

    def check(self, run):
        result_ok(run, "main")
        expect(run.st("end", "bio_pages") > 0, "pages written through submit_bio")
        n = run.st("end", "vm_thp_swpout")
        expect(n > 0, "THP swapped out whole (thp_swpout=%d)" % n)
        expect(run.st("end", "failed_reads") == 0 and
               run.st("end", "failed_writes") == 0, "no failed I/O")


class Mthp(Scenario):
    """6.10+: 64 KiB mTHP folios swap out as one multi-page bio; on 6.12+ a
    synchronous swap device also swaps them in whole."""
    name = "mthp"
    script = r"""
sync_host boot
m=/sys/kernel/mm/transparent_hugepage
echo never > $m/enabled
echo always > $m/hugepages-64kB/enabled || echo "VTMEM-FAIL no 64 KiB mTHP"
setup -b /dev/vda -s 512M
workload main 160 5 64M thp sync
stat_dump end
for f in swpout swpin; do
	[ -r $m/hugepages-64kB/stats/$f ] &&
		echo "VTMEM-STAT end mthp_$f $(cat $m/hugepages-64kB/stats/$f)"
done
vtmem-setup stop
"""

    def check(self, run):
        result_ok(run, "main")
        n = run.st("end", "mthp_swpout")
        expect(n > 0, "64 KiB folios swapped out whole (swpout=%d)" % n)
        log("mTHP 64 KiB: swpout %d, swpin %s" % (
            n, run.stats["end"].get("mthp_swpin", "n/a")))
        expect(run.st("end", "failed_reads") == 0 and
               run.st("end", "failed_writes") == 0, "no failed I/O")


class Unplug(Scenario):
    """Hot-unplug the device while pages are on the host: no crash."""
    name = "unplug"
    tm = "limit=256M"
    allow_io_errors = True
    script = r"""
sync_host boot
setup -b /dev/vda -s 512M
workload main 128 9 64M sync
stat_dump end
workload again 96 10 48M
stat_dump end2
sync_host replug
i=0
while [ $i -lt 100 ] && ! grep -q "^attached 1" /sys/block/vtmem0/vtmem/host; do
	sleep 0.1; i=$((i + 1))
done
workload third 96 12 48M
stat_dump end3
vtmem-setup -r stop
echo VTMEM-MARK unloaded
"""

    def on_sync(self, g, run, name):
        if name == "written":
            run.host[name] = g.qmp.host_stats()
            g.qmp.cmd("device_del", id="tm0")
            deadline = time.time() + 30
            while time.time() < deadline:
                if any(e.get("event") == "DEVICE_DELETED" for e in g.qmp.events):
                    break
                g.qmp.cmd("query-status")
                time.sleep(0.2)
            return "go"
        if name == "replug":
            g.qmp.cmd("device_add", driver="virtio-tmem-pci", id="tm0",
                      limit=256 << 20)
            return "go"
        return super().on_sync(g, run, name)

    def check(self, run):
        expect(run.host["written"]["stored-pages"] > 0, "pages were on the host")
        expect(run.st("end", "host_attached") == 0, "device detached")
        r = run.results.get("main")
        expect(r is not None and r.get("bad", 0) == 0,
               "first workload: no wrong data (%s)" % r)
        result_ok(run, "again")
        expect(run.st("end2", "pages_host") == 0, "new pages go to disk")
        result_ok(run, "third")
        expect(run.st("end3", "host_attached") == 1, "re-plugged device attached")
        expect(run.st("end3", "host_puts") > run.st("end2", "host_puts"),
               "pages go to the host again after re-plug")
        expect(run.st("end3", "failed_reads") == run.st("end2", "failed_reads"),
               "no new failed reads after re-plug")
        expect("unloaded" in run.marks, "module unloaded after unplug")


class Bench(Scenario):
    """512 MiB verify workload: vtmem vs a plain virtio-blk swap disk."""
    name = "bench"
    # VTMEM_BENCH_TM: device options; VTMEM_BENCH_MIB: workload size.
    tm = os.environ.get("VTMEM_BENCH_TM", "limit=1G")
    disk_mb = 1024
    timeout = 900
    script = r"""
sync_host boot
setup -b /dev/vda -s 1G
workload vtmem %(mib)s 21 96M
stat_dump vtmem
vtmem-setup -r stop
setup -o sync_io=0 -b /dev/vda -s 1G
workload vtmem-cached %(mib)s 21 96M
stat_dump vtmem-cached
vtmem-setup -r stop
mkswap /dev/vdb >/dev/null && swapon /dev/vdb
workload disk %(mib)s 21 96M
stat_dump disk
swapoff /dev/vdb
""" % {"mib": os.environ.get("VTMEM_BENCH_MIB", "512")}

    def check(self, run):
        for tag in ("vtmem", "vtmem-cached", "disk"):
            r = result_ok(run, tag)
            log("BENCH %s: write %.2f s, verify %.2f s, total %.2f s"
                % (tag, r["write_ms"] / 1e3, r["verify_ms"] / 1e3,
                   (r["write_ms"] + r["verify_ms"]) / 1e3))


class Churn(Scenario):
    """Three workloads at once: slots are freed and reused all the time
    (invalidate/PUT ordering), part on the host, part on the disk."""
    name = "churn"
    tm = "limit=24M"
    # A tiny pending array: the overflow path (table scan) is used too.
    script = ("sync_host boot\nsetup -o pend_max=16 -b /dev/vda -s 512M\n"
              "workload a 48 41 56M passes=3 &\n"
              "workload b 48 42 56M passes=3 &\n"
              "workload c 48 43 56M passes=3 &\n"
              "wait\nstat_dump end\nsync_host end\nvtmem-setup stop\n"
              "sync_host stopped\n")

    def on_sync(self, g, run, name):
        if name in ("end", "stopped"):
            want = run.st("end", "pages_host") if name == "end" else 0
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == want)
        return super().on_sync(g, run, name)

    def check(self, run):
        res = run.all_results
        expect(len(res) == 3 and all(r["status"] == "ok" and r["bad"] == 0
                                     for r in res),
               "3 concurrent workloads verified: %s" % res)
        expect(all(run.results[t]["rc"] == 0 for t in "abc"), "all exited 0")
        expect(run.st("end", "host_puts") > 0 and
               run.st("end", "disk_writes") > 0, "host and disk both used")
        expect(run.st("end", "invalidate_overflows") > 0,
               "pending array overflowed, table scans done")
        expect(run.st("end", "notify_free") > 0 and
               run.st("end", "invalidated_slots") > 0, "slots freed and invalidated")
        expect(run.st("end", "failed_reads") == 0 and
               run.st("end", "failed_writes") == 0 and
               run.st("end", "host_errors") == 0, "no failed I/O, no host errors")
        expect(run.host["end"]["stored-pages"] <= RESIDUE,
               "host usage back to ~0 (%s)" % run.host["end"])
        expect(run.host["end"]["stored-pages"] == run.st("end", "pages_host"),
               "host and guest agree on the pages held (no leak)")
        expect(run.host["stopped"]["stored-pages"] == 0, "host empty after stop")


class Suspend(Scenario):
    """S3 suspend/resume: refused while the host holds pages (a resumed
    device holds nothing); after swapoff it suspends, resumes and swaps to
    the host again."""
    name = "suspend"
    tm = "limit=256M"
    extra = ["-global", "PIIX4_PM.disable_s3=0"]
    script = r"""
sync_host boot
setup -b /dev/vda -s 256M
VTMEM_HOOK='if echo mem > /sys/power/state; then echo VTMEM-MARK suspended-with-host-pages; else echo VTMEM-MARK suspend-refused; fi'
export VTMEM_HOOK
workload one 96 13 48M sync
unset VTMEM_HOOK
stat_dump one
vtmem-setup stop
if echo mem > /sys/power/state; then echo VTMEM-MARK resumed; else echo VTMEM-FAIL suspend without host pages; fi
stat_dump resumed
setup -b /dev/vda -s 256M
workload two 96 14 48M sync
stat_dump two
vtmem-setup -r stop
"""

    def on_sync(self, g, run, name):
        if name == "boot":
            self.stop = threading.Event()
            self.wakeups = 0

            def waker():
                while not self.stop.wait(0.3):
                    if g.qmp.cmd("query-status")["status"] == "suspended":
                        g.qmp.cmd("system_wakeup")
                        self.wakeups += 1
            threading.Thread(target=waker, daemon=True).start()
        if name == "written":
            run.host.setdefault("written", []).append(g.qmp.host_stats())
            return "go"
        return super().on_sync(g, run, name)

    def check(self, run):
        self.stop.set()
        expect("suspend-refused" in run.marks, "suspend refused with pages on the host")
        result_ok(run, "one")
        expect("resumed" in run.marks and self.wakeups >= 1,
               "suspended and resumed after swapoff (%d wakeups)" % self.wakeups)
        expect(run.st("resumed", "host_attached") == 1, "device attached after resume")
        result_ok(run, "two")
        expect(run.host["written"][-1]["stored-pages"] > 0,
               "host holds pages again after resume")
        expect(run.st("two", "failed_reads") == 0 and
               run.st("two", "failed_writes") == 0, "no failed I/O")


class Demo(Scenario):
    """The README's main job: a guest swaps a verified workload into the
    host pool; prints what the pool holds, as an operator would read it."""
    name = "demo"
    tm = "limit=512M"
    disk_mb = 512
    timeout = 900
    # VTMEM_DEMO_MIB: workload size (default 384 MiB in a 96 MiB cgroup).
    script = ("sync_host boot\nsetup -b /dev/vda -s 1G\n"
              "workload demo %s 7 96M sync\nstat_dump demo\nsync_host done\n"
              "vtmem-setup stop\nsync_host stopped\n"
              % os.environ.get("VTMEM_DEMO_MIB", "384"))

    def on_sync(self, g, run, name):
        if name in ("written", "done", "stopped"):
            stats = g.qmp.host_stats()
            for prop in ("same-filled-pages", "raw-pages"):
                stats[prop] = g.qmp.get(prop)
            run.host[name] = stats
            return "go"
        return super().on_sync(g, run, name)

    def check(self, run):
        r = result_ok(run, "demo")
        w = run.host["written"]
        stored, held = w["stored-pages"], w["memory-held"]
        same = w["same-filled-pages"]
        expect(stored > 0, "the host pool holds the guest's swapped pages")
        mib = 1 << 20
        print()
        print("vtmem demo: %d MiB written by the guest in a 96 MiB cgroup, "
              "every byte verified (write %.1f s, verify %.1f s)"
              % (r["pages"] * 4096 // mib, r["write_ms"] / 1e3,
                 r["verify_ms"] / 1e3))
        print("host pool, after the write pass (QMP qom-get on the device):")
        print("  pages stored       %8d  (%.1f MiB of guest memory)"
              % (stored, stored * 4096 / mib))
        print("    same-filled      %8d  (kept as one word, no memory)" % same)
        print("    incompressible   %8d  (kept raw)" % w["raw-pages"])
        print("  compressed bytes   %8.1f MiB" % (w["compressed-bytes"] / mib))
        print("  memory held        %8.1f MiB  (limit %d MiB)"
              % (held / mib, w["limit"] // mib))
        if held:
            print("  compression ratio  %8.2f : 1  (guest bytes / host memory held)"
                  % (stored * 4096 / held))
        print("  refusals           %8d" % w["refusals"])
        print("guest driver (/sys/block/vtmem0/vtmem/stat) at the end:")
        for key in ("pages_host", "pages_same", "pages_disk", "host_puts",
                    "host_gets", "invalidated_slots", "failed_reads",
                    "failed_writes"):
            print("  %-18s %8d" % (key, run.st("demo", key)))
        print("after swapoff the pool holds %d pages, %.1f MiB"
              % (run.host["stopped"]["stored-pages"],
                 run.host["stopped"]["memory-held"] / mib))
        print()


def wait_held(g, target, timeout):
    """Poll the device's memory-held until it is at most target: (seconds
    it took or None on timeout, last value)."""
    t0 = time.time()
    while True:
        held = g.qmp.get("memory-held")
        if held <= target:
            return time.time() - t0, held
        if time.time() - t0 > timeout:
            return None, held
        time.sleep(0.05)


MiB = 1 << 20


class Shrink(Scenario):
    """Shrink on demand: with pages on the host, the limit drops from
    256 MiB to 32 MiB; the driver moves pages to its backing disk until
    the host holds at most 32 MiB; every byte still verifies."""
    name = "shrink"
    tm = "limit=256M"
    disk_mb = 512
    target = 32 * MiB
    mib = 256
    timeout = 300
    script = ("sync_host boot\nsetup -b /dev/vda -s 768M\n"
              "workload main %(mib)d 31 48M sync\nstat_dump end\n"
              "sync_host end\nvtmem-setup stop\nsync_host stopped\n")

    def __init__(self):
        self.script = self.script % {"mib": self.mib}

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["before"] = g.qmp.host_stats()
            t0 = time.time()
            g.qmp.set("limit", self.target)
            self.took, self.held = wait_held(g, self.target, 120)
            run.host["shrunk"] = g.qmp.host_stats()
            log("memory-held %.1f MiB -> %.1f MiB in %s s (limit %d MiB)"
                % (run.host["before"]["memory-held"] / MiB, self.held / MiB,
                   "%.2f" % self.took if self.took is not None else "timeout",
                   self.target // MiB))
            return "go"
        if name == "end":
            if getattr(self, "poller", None):
                self.poller.join()
            want = run.st("end", "pages_host")
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == want)
        elif name == "stopped":
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == 0)
        return super().on_sync(g, run, name)

    def shrink_while_running(self, g):
        """Lower the limit to the target and let the guest go on; whether
        usage converges is polled beside it (joined at "end")."""
        g.qmp.set("limit", self.target)
        self.poller = threading.Thread(target=self._poll, args=(g,), daemon=True)
        self.poller.start()

    def _poll(self, g):
        self.took, self.held = wait_held(g, self.target, 60)

    def check(self, run):
        result_ok(run, "main")
        b = run.host["before"]["memory-held"]
        expect(b > self.target + 8 * MiB,
               "host held more than the new limit before (%.1f MiB)" % (b / MiB))
        expect(self.took is not None,
               "host usage converged to <= %d MiB (%.1f MiB, %s s)"
               % (self.target // MiB, self.held / MiB, self.took))
        e = run.stats["end"]
        expect(e["shrink_pages"] > 0 and e["shrink_bytes"] ==
               e["shrink_pages"] * 4096 and e["shrink_runs"] >= 1,
               "guest moved pages (%d pages, %d runs)"
               % (e["shrink_pages"], e["shrink_runs"]))
        expect(e["shrink_target"] == self.target and e["host_shrink"] == 1,
               "guest sees F_SHRINK and the target")
        expect(e["shrink_failures"] == 0 and e["failed_reads"] == 0 and
               e["failed_writes"] == 0 and e["host_errors"] == 0,
               "no failed I/O, no failed moves")
        expect(run.host["end"]["stored-pages"] == e["pages_host"],
               "host and guest agree on the pages held (no leak)")
        expect(run.host["stopped"]["stored-pages"] == 0, "host empty after stop")


class ShrinkUpDown(Shrink):
    """Repeated down/up limit changes while another workload verifies
    (swaps in) all the time; then down once more while the main workload
    verifies too."""
    name = "shrink-updown"
    mib = 160
    target = 16 * MiB
    script = ("sync_host boot\nsetup -b /dev/vda -s 768M\n"
              "workload hold 96 61 48M passes=6 &\n"
              "workload main %(mib)d 62 48M sync passes=2\nwait\n"
              "stat_dump end\nsync_host end\nvtmem-setup stop\n"
              "sync_host stopped\n")

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["before"] = g.qmp.host_stats()
            self.times = []
            for lim in (16 * MiB, 256 * MiB, 24 * MiB, 256 * MiB):
                g.qmp.set("limit", lim)
                if lim < 256 * MiB:
                    took, held = wait_held(g, lim, 60)
                    self.times.append((lim, took, held))
                    log("limit %d MiB: memory-held %.1f MiB after %s s"
                        % (lim // MiB, held / MiB, took))
                else:
                    time.sleep(1)
            self.shrink_while_running(g)
            return "go"
        return super().on_sync(g, run, name)

    def check(self, run):
        result_ok(run, "main")
        expect(len(run.all_results) == 2 and
               all(r["status"] == "ok" and r["bad"] == 0 for r in run.all_results),
               "both workloads verified: %s" % run.all_results)
        expect(all(t is not None for _, t, _ in self.times),
               "converged after each lowering: %s" % self.times)
        expect(self.took is not None, "converged while verifying (%s s)" % self.took)
        e = run.stats["end"]
        expect(e["shrink_runs"] >= 2 and e["shrink_pages"] > 0,
               "several shrink runs (%d), %d pages moved"
               % (e["shrink_runs"], e["shrink_pages"]))
        expect(e["shrink_failures"] == 0 and e["failed_reads"] == 0 and
               e["failed_writes"] == 0 and e["host_errors"] == 0,
               "no failed I/O, no failed moves")
        expect(run.host["end"]["stored-pages"] == e["pages_host"],
               "host and guest agree on the pages held (no leak)")
        expect(run.host["stopped"]["stored-pages"] == 0, "host empty after stop")


class ShrinkSwapin(Shrink):
    """The limit drops while the guest swaps everything back in (verify
    passes): moves race with swap-ins and frees of the same slots."""
    name = "shrink-swapin"
    mib = 192
    target = 16 * MiB
    script = ("sync_host boot\nsetup -b /dev/vda -s 768M\n"
              "workload main %(mib)d 81 48M sync passes=2\nstat_dump end\n"
              "sync_host end\nvtmem-setup stop\nsync_host stopped\n")

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["before"] = g.qmp.host_stats()
            self.shrink_while_running(g)
            return "go"
        return super().on_sync(g, run, name)


class ShrinkNoDisk(Scenario):
    """No backing disk: the guest cannot shrink; it says so (stats, log),
    the host keeps the pages; data still verifies. sync_io=0 (swap cache):
    verified pages stay clean and keep their host copy, so the verify pass
    needs no new PUT (which the host would refuse: there is no disk)."""
    name = "shrink-nodisk"
    tm = "limit=256M"
    disk_mb = 0
    target = 8 * MiB
    script = ("sync_host boot\nsetup -o sync_io=0 -s 512M\n"
              "workload main 128 71 48M sync\nstat_dump end\n"
              "dmesg | grep -q 'cannot shrink.*no backing disk' && "
              "echo VTMEM-MARK cannot-shrink-logged\n"
              "vtmem-setup stop\n")

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["before"] = g.qmp.host_stats()
            g.qmp.set("limit", self.target)
            time.sleep(3)
            run.host["after"] = g.qmp.host_stats()
            return "go"
        return super().on_sync(g, run, name)

    def check(self, run):
        result_ok(run, "main")
        b, a = run.host["before"], run.host["after"]
        expect(b["memory-held"] > self.target, "host held more than the limit")
        expect(a["memory-held"] >= b["memory-held"] * 0.95 and
               a["stored-pages"] >= b["stored-pages"] * 0.95,
               "host keeps the pages (%d -> %d pages)"
               % (b["stored-pages"], a["stored-pages"]))
        e = run.stats["end"]
        expect(e["shrink_stuck"] >= 1 and e["shrink_pages"] == 0,
               "guest reports it cannot shrink (stuck %d)" % e["shrink_stuck"])
        expect("cannot-shrink-logged" in run.marks, "kernel log says why")
        expect(e["failed_reads"] == 0, "no failed reads")


class ShrinkDiskFull(ShrinkNoDisk):
    """A backing disk too small for the excess: the guest moves what fits,
    then reports that the disk is full; the host keeps the rest. The guest
    dumps its figures the moment it reports the full disk, while the
    workload still waits for the host's go: no swap-in can free a disk block
    between the move and the figures."""
    name = "shrink-diskfull"
    disk_mb = 16
    target = 4 * MiB
    script = ("sync_host boot\nsetup -o sync_io=0 -b /dev/vda -s 512M\n"
              "(until dmesg | grep -q 'cannot shrink.*backing disk full'; do "
              "sleep 0.2; done; echo VTMEM-MARK cannot-shrink-logged; "
              "stat_dump stuck) &\n"
              "workload main 128 73 48M sync\nwait\nstat_dump end\n"
              "vtmem-setup stop\n")

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["before"] = g.qmp.host_stats()
            g.qmp.set("limit", self.target)
            wait_guest_stats(g, run, "stuck", 120)
            run.host["after"] = g.qmp.host_stats()
            return "go"
        return Scenario.on_sync(self, g, run, name)

    def check(self, run):
        result_ok(run, "main")
        b, a = run.host["before"], run.host["after"]
        w, s, e = run.stats["main-written"], run.stats["stuck"], run.stats["end"]
        expect(s["disk_blocks_used"] == s["disk_blocks_total"],
               "the disk ended full (%d of %d blocks)"
               % (s["disk_blocks_used"], s["disk_blocks_total"]))
        free = w["disk_blocks_total"] - w["disk_blocks_used"]
        expect(0 < s["shrink_pages"] <= free,
               "moved what fits on the disk (%d pages, %d blocks were free)"
               % (s["shrink_pages"], free))
        expect(a["memory-held"] > self.target and
               a["memory-held"] < b["memory-held"],
               "host gave back some memory and keeps the rest (%.1f -> %.1f MiB)"
               % (b["memory-held"] / MiB, a["memory-held"] / MiB))
        expect(s["shrink_stuck"] >= 1, "guest reports it cannot shrink further")
        expect("cannot-shrink-logged" in run.marks, "kernel log says the disk is full")
        expect(e["failed_reads"] == 0 and e["shrink_failures"] == 0,
               "no failed reads or moves")


class ShrinkBench(Shrink):
    """Measurement: the host holds 256 MiB (its limit) of the guest's pages;
    the limit drops to 32 MiB: time until memory-held <= 32 MiB."""
    name = "shrink-bench"
    disk_mb = 1536
    mib = int(os.environ.get("VTMEM_SHRINK_MIB", "1000"))
    timeout = 900
    script = ("sync_host boot\nsetup -o '%s' -b /dev/vda -s 1200M\n"
              % os.environ.get("VTMEM_SHRINK_OPTS", "") +
              "workload main %(mib)d 91 64M sync\nstat_dump end\n"
              "sync_host end\nvtmem-setup stop\nsync_host stopped\n")

    def check(self, run):
        super().check(run)
        e = run.stats["end"]
        log("SHRINK-BENCH %.1f MiB -> %d MiB held in %.2f s; %d pages "
            "(%.1f MiB) moved to the disk"
            % (run.host["before"]["memory-held"] / MiB, self.target // MiB,
               self.took, e["shrink_pages"], e["shrink_bytes"] / MiB))


class Probe(Scenario):
    name = "probe"
    script = "sync_host boot\n"


SCENARIOS = {c.name: c for c in [Fits, SmallLimit, LimitChange, NoDiskFull,
                                 NoDevice, CycleReboot, Thp, Mthp, Unplug, Churn,
                                 Suspend,
                                 Bench, Demo, Probe, Shrink, ShrinkUpDown,
                                 ShrinkSwapin, ShrinkNoDisk, ShrinkDiskFull,
                                 ShrinkBench]}


def run_guest(args, workdir, vmlinuz, base, scn, accel, boot_timeout=None):
    initrd = scenario_initramfs(workdir, base, scn.script)
    disks = []
    if scn.disk_mb:
        disks.append((os.path.join(workdir, "backing.img"), scn.disk_mb))
    if isinstance(scn, Bench):
        disks.append((os.path.join(workdir, "swapdisk.img"), 1024))
    g = Guest(args, workdir, vmlinuz, initrd, tm=scn.tm, disks=disks,
              reboot=scn.reboot, accel=accel, extra=getattr(scn, "extra", ()))
    log("qemu: " + " ".join(g.cmd))
    run = Run()
    done = False
    deadline = time.time() + (boot_timeout or scn.timeout)
    try:
        while True:
            line = g.next_line(deadline)
            if line is None:
                break
            parse_line(run, line)
            if "VTMEM-RESULT" in line or "VTMEM-RC" in line or "VTMEM-FAIL" in line:
                log("guest: " + line.strip())
            m = re.search(r"VTMEM-SYNC (\S+)", line)
            if m:
                if boot_timeout:
                    deadline = time.time() + scn.timeout
                    boot_timeout = None
                log("sync " + m.group(1))
                reply = scn.on_sync(g, run, m.group(1))
                if reply is not None:
                    g.reply(reply)
            if "VTMEM-DONE" in line:
                done = True
        if not done:
            raise Fail("guest stopped before VTMEM-DONE (see %s)"
                       % os.path.join(workdir, "console.log"))
    finally:
        elapsed = time.time() - g.start
        g.stop()
    return run, g, elapsed


def pick_accel(args, workdir, vmlinuz, base):
    want = os.environ.get("VTMEM_ACCEL", "auto")
    if want in ("tcg", "kvm"):
        return want
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    kernel = os.path.relpath(vmlinuz, CACHE).split(os.sep)[0]  # kernel-<ver>
    cache = os.path.join(CACHE, "accel-" + kernel[len("kernel-"):])
    try:
        with open(cache) as f:
            return f.read().strip()
    except OSError:
        pass
    got = "tcg"
    try:
        run_guest(args, workdir, vmlinuz, base, Probe(), "kvm", boot_timeout=20)
        got = "kvm"
    except Fail as e:
        log("KVM probe failed (%s): using TCG" % e)
    os.makedirs(CACHE, exist_ok=True)
    with open(cache, "w") as f:
        f.write(got + "\n")
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--qemu", default=os.environ.get(
        "VTMEM_QEMU", os.environ.get("VTMEM_QEMU_DEFAULT")))
    ap.add_argument("--ko", default=os.environ.get("VTMEM_KO"))
    ap.add_argument("--setup", default=os.environ.get(
        "VTMEM_SETUP", os.path.join(HERE, "..", "..", "guest-driver", "vtmem-setup")))
    ap.add_argument("--swapverify", default=os.environ.get("VTMEM_SWAPVERIFY"))
    ap.add_argument("--workdir", default=os.environ.get("VTMEM_E2E_WORKDIR"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()

    for what in ("qemu", "ko", "swapverify"):
        p = getattr(args, what)
        if not p or not os.path.exists(p):
            print("SKIP: %s not found (%s)" % (what, p))
            return 77
    scn = SCENARIOS[args.scenario]()
    if args.workdir:
        workdir = os.path.join(args.workdir, scn.name)
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
    else:
        workdir = tempfile.mkdtemp(prefix="vtmem-e2e-")
    t0 = time.time()
    try:
        vmlinuz, base = build_initramfs(args, workdir)
        accel = pick_accel(args, workdir, vmlinuz, base)
        run, g, elapsed = run_guest(args, workdir, vmlinuz, base, scn, accel)
        expect(not g.bad, "no BUG/Oops/WARNING on the console %s" % g.bad[:3])
        expect(not g.qemu_errors(), "no QEMU sanitizer/assertion report %s"
               % g.qemu_errors()[:3])
        expect(not run.fails, "guest script reported no failure %s" % run.fails)
        scn.check(run)
    except Fail as e:
        print("FAIL: %s: %s (console: %s)" % (scn.name, e,
                                              os.path.join(workdir, "console.log")))
        for name, n in (("console.log", 40), ("qemu-stderr.log", 10)):
            try:
                with open(os.path.join(workdir, name), errors="replace") as f:
                    tail = f.readlines()[-n:]
                sys.stdout.write("--- %s:\n%s" % (name, "".join(tail)))
            except OSError:
                pass
        return 1
    log("PASS %s in %.1f s (guest %.1f s, accel %s)"
        % (scn.name, time.time() - t0, elapsed, accel))
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
