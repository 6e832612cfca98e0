#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end test of vtmem with libvirt and the pool daemon vtmemd.

An isolated libvirtd (an unprivileged user, all its state in a temp dir,
under `tini -s`, URI qemu:///session?socket=...) and a vtmemd (same user,
temp socket) are started by the test. Two TCG domains (our QEMU as the
emulator, the device through <qemu:commandline> with pool=<socket>, kernel +
initramfs boot from tests/e2e's harness package, console to a file) run the
verifying swap workload (tests/libvirt/guest.sh) at the same time; their
combined demand exceeds vtmemd's --pool-limit. Checked, each on its own (a
failed check is reported and the next one runs; the test fails if any did):

  budget      sum of both devices' memory-held (vtmemctl status --json, polled
              during the whole run) and vtmemd's charge stay within the pool
              (plus the empty stores' metadata, see docs/vtmemd.md)
  garbage     malformed input on vtmemd's socket is rejected (ERROR, closed),
              the VMs stay registered
  restart     vtmemd killed (SIGKILL) mid-run: both workloads still verify;
              devices re-register when it is back (pool-connected, STATUS)
  set-limit   vtmemctl set-limit takes effect live (qom-get limit,
              pool-limit) and survives destroy + start: a real libvirt hook
              (/etc/libvirt/hooks/qemu, the one of docs/libvirt.md with this
              test's URI, socket and vtmemctl, acting only on vtmem-lv-*
              domains) runs vtmemctl apply at start
  destroy     destroying a VM returns its budget (vtmemd STATUS)
  data        both workloads verify byte for byte

Usage (root): PYTHONPATH=tests/e2e vtmem_libvirt.py [--keep]
Paths from the environment (as tests/e2e/vtmem_harness/cli.py) or options:
  VTMEM_QEMU / VTMEM_QEMU_DEFAULT, VTMEM_KO, VTMEM_SETUP, VTMEM_SWAPVERIFY,
  VTMEMD, VTMEMCTL, VTMEM_LIBVIRT_WORKDIR (default: a temp dir; kept on
  failure). VTMEM_LIBVIRT_USER (default vtmem-e2e, created if missing).
Exit status 0 = pass, 77 = skipped, 1 = fail.

The hook: libvirtd looks for hooks in SYSCONFDIR/libvirt/hooks (Debian:
/etc/libvirt/hooks) also when it runs unprivileged (session mode), checks
for them once at its start, and runs them as its own user with a cleared
environment (LC_ALL=C plus PATH, HOME, USER, LOGNAME, TMPDIR, LD_PRELOAD,
LD_LIBRARY_PATH passed on; libvirt 9.0 src/util/virhook.c,
virCommandAddEnvPassCommon). The test installs it before it starts libvirtd
(an existing /etc/libvirt/hooks/qemu is moved aside to qemu.vtmem-e2e-saved
and put back at the end, also on failure or SIGTERM; the hook exits 0 at
once for other domains); its output goes to WORKDIR/hook.log.
"""

import argparse
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from vtmem_harness import checks, cli, console, image, machine
from vtmem_harness.checks import Fail, expect, log

HERE = os.path.dirname(os.path.abspath(__file__))
checks.LOG_PREFIX = "libvirt"

MiB = 1 << 20
POOL_LIMIT = 48 * MiB       # vtmemd --pool-limit
DEV_LIMIT = 64 * MiB        # each device's limit (cap) and metadata limit
NEW_LIMIT = 8 * MiB         # vtmemctl set-limit A: below what A holds
GRACE_MS = 3000             # vtmemd --grace-ms (> client's 2 s max backoff)
GUEST_MEM = 224             # MiB
NS = "http://vtmem.org/xmlns/domain/1"
HOOK_DIR = "/etc/libvirt/hooks"      # LIBVIRT_HOOK_DIR (SYSCONFDIR=/etc)
HOOK = os.path.join(HOOK_DIR, "qemu")
HOOK_SAVED = HOOK + ".vtmem-e2e-saved"  # an existing hook, while we run
HOOK_MARK = "# vtmem libvirt-e2e test hook"
DOM_PREFIX = "vtmem-lv-"             # the hook acts on these domains only
# Held for the whole run by every libvirt test (this one with each QEMU,
# libvirt-smoke.sh): they share the hook file and create system users, so
# they run one at a time, while other suites run beside them.
LOCK = "/run/lock/vtmem-libvirt-tests.lock"
VMS = {
    "a": {"name": "vtmem-lv-a", "uuid": "5b0e6a52-7c1d-4e2b-9a51-0a1b2c3d4e01",
          "seed": 31},
    "b": {"name": "vtmem-lv-b", "uuid": "5b0e6a52-7c1d-4e2b-9a51-0a1b2c3d4e02",
          "seed": 32},
}
# Guest: one verifying workload larger than the guest's cgroup limit, then
# one that keeps swapping until the VM is destroyed (guest.sh).
GUEST_SCRIPT = os.path.join(HERE, "guest.sh")


class Terminated(BaseException):
    """SIGTERM: ends the test (no check catches it)."""


class Env:
    """Everything the test started, and how to stop it."""

    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.user = os.environ.get("VTMEM_LIBVIRT_USER", "vtmem-e2e")
        self.libvirtd = None
        self.vtmemd = None
        self.sock = os.path.join(workdir, "pool", "vtmemd.sock")
        self.uri = "qemu:///session?socket=%s/runtime/libvirt/libvirt-sock" % workdir
        self.env = dict(os.environ, VTMEM_POOL_SOCKET=self.sock,
                        LIBVIRT_DEFAULT_URI=self.uri)
        self.vtmemd_log = open(os.path.join(workdir, "vtmemd.log"), "ab")
        self.hook_log = os.path.join(workdir, "hook.log")
        self.hook_installed = False
        self.hook_dir_created = False

    # -------------------------------------------------------------- helpers
    def run(self, cmd, check=True, timeout=60):
        r = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise Fail("%s: exit %d: %s" % (" ".join(cmd), r.returncode,
                                            r.stdout.strip()))
        return r

    def virsh(self, *a, check=True):
        return self.run(["virsh", "-c", self.uri] + list(a), check=check)

    def vtmemctl(self, *a, check=True):
        return self.run([self.args.vtmemctl, "--connect", self.uri,
                         "--socket", self.sock] + list(a), check=check)

    def qmp(self, dom, cmd, **arguments):
        msg = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        r = self.virsh("qemu-monitor-command", dom, json.dumps(msg))
        return json.loads(r.stdout)["return"]

    def qom(self, dom, prop):
        return self.qmp(dom, "qom-get", path="/machine/peripheral/vtmem0",
                        property=prop)

    def as_user(self):
        pw = pwd.getpwnam(self.user)
        return ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                "--init-groups", "--"]

    # -------------------------------------------------------------- daemons
    def start_vtmemd(self):
        # As the libvirt user: QEMU (same uid) may register, root controls.
        self.vtmemd = subprocess.Popen(
            self.as_user() + [self.args.vtmemd, "--socket", self.sock,
                              "--pool-limit", str(POOL_LIMIT),
                              "--grace-ms", str(GRACE_MS)],
            stdout=self.vtmemd_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not self.daemon_alive():
            if self.vtmemd.poll() is not None or time.time() > deadline:
                raise Fail("vtmemd did not start (see %s/vtmemd.log)" % self.dir)
            time.sleep(0.05)

    def kill_vtmemd(self, sig=signal.SIGKILL):
        if self.vtmemd and self.vtmemd.poll() is None:
            self.vtmemd.send_signal(sig)
            self.vtmemd.wait()
        self.vtmemd = None

    def daemon_alive(self):
        try:
            self.daemon_status()
            return True
        except OSError:
            return False

    def daemon_status(self):
        """vtmemd STATUS: (pool dict, {uuid: vm dict})"""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(self.sock)
            s.sendall(b"STATUS\n")
            buf = b""
            while not buf.endswith(b"END\n"):
                d = s.recv(65536)
                if not d:
                    raise OSError("vtmemd closed the connection: %r" % buf)
                buf += d
        finally:
            s.close()
        pool, vms = {}, {}
        for line in buf.decode().splitlines():
            if line.startswith("POOL "):
                pool = dict(kv.split("=", 1) for kv in line[5:].split(" "))
            elif line.startswith("VM "):
                head, name = line[3:].split(" name=", 1)
                vm = dict(kv.split("=", 1) for kv in head.split(" "))
                vm["name"] = name
                vms[vm["uuid"]] = vm
        return pool, vms

    # ----------------------------------------------------------------- hook
    def hook_script(self):
        """docs/libvirt.md's hook with our URI, socket and vtmemctl baked
        in (the hook's environment is cleared), for our domains only."""
        q = shlex.quote
        return (
            "#!/bin/sh\n"
            "%(mark)s (work dir %(dir)s): docs/libvirt.md's hook\n"
            "# with that test's libvirtd URI, vtmemd socket and vtmemctl; it\n"
            "# acts on the test's domains only. Removed when the test ends.\n"
            "# $1 = domain name, $2 = operation, $3 = sub-operation\n"
            "case \"$1\" in %(prefix)s*) ;; *) exit 0 ;; esac\n"
            "echo \"$(date +%%T.%%N) hook $1 $2 $3 uid=$(id -u)"
            " env: $(env | cut -d= -f1 | sort | tr '\\n' ' ')\" >>%(log)s\n"
            "if [ \"$2\" = \"started\" ]; then\n"
            "\tsetsid sh -c '\"$0\" --connect \"$1\" --socket \"$2\" apply \"$3\""
            " --wait 30; echo \"apply $3: exit $?\"' \\\n"
            "\t\t%(ctl)s %(uri)s %(sock)s \"$1\" </dev/null >>%(log)s 2>&1 &\n"
            "fi\n"
            "exit 0\n") % dict(mark=HOOK_MARK, dir=self.dir, prefix=DOM_PREFIX,
                               log=q(self.hook_log),
                               ctl=q(os.path.realpath(self.args.vtmemctl)),
                               uri=q(self.uri), sock=q(self.sock))

    def install_hook(self):
        """Before libvirtd starts: it looks for hooks only at its start."""
        pw = pwd.getpwnam(self.user)
        with open(self.hook_log, "a"):
            pass
        os.chown(self.hook_log, pw.pw_uid, pw.pw_gid)
        if not os.path.isdir(HOOK_DIR):
            os.makedirs(HOOK_DIR, 0o755)
            self.hook_dir_created = True
        if os.path.lexists(HOOK):
            if is_our_hook(HOOK):
                # Left by a run that was killed; its backup (if any) is
                # HOOK_SAVED, put back at our end.
                log("removing a stale test hook %s" % HOOK)
                os.unlink(HOOK)
            elif os.path.lexists(HOOK_SAVED):
                raise Fail("%s and %s both exist: sort them out by hand"
                           % (HOOK, HOOK_SAVED))
            else:
                os.rename(HOOK, HOOK_SAVED)
                log("moved the existing %s to %s" % (HOOK, HOOK_SAVED))
        self.hook_installed = True
        tmp = HOOK + ".vtmem-e2e-new"
        with open(tmp, "w") as f:
            f.write(self.hook_script())
        os.chmod(tmp, 0o755)
        os.rename(tmp, HOOK)
        log("installed the hook %s (output: %s)" % (HOOK, self.hook_log))

    def remove_hook(self):
        if not self.hook_installed:
            return
        for f in (HOOK + ".vtmem-e2e-new", HOOK):
            if os.path.lexists(f) and is_our_hook(f):
                os.unlink(f)
        if os.path.lexists(HOOK_SAVED) and not os.path.lexists(HOOK):
            os.rename(HOOK_SAVED, HOOK)
            log("restored %s" % HOOK)
        if self.hook_dir_created:
            try:
                os.rmdir(HOOK_DIR)
            except OSError:
                pass
        self.hook_installed = False

    def hook_output(self):
        return read_text(self.hook_log)

    def start_libvirtd(self):
        pw = pwd.getpwnam(self.user)
        for d in ["home", "config", "runtime", "cache", "data"]:
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
            os.chown(os.path.join(self.dir, d), pw.pw_uid, pw.pw_gid)
        os.chmod(os.path.join(self.dir, "runtime"), 0o700)
        d = self.dir
        # libvirt looks for qemu-system-x86_64 in PATH whenever it needs
        # the host's default emulator (virsh version, capabilities): give
        # it ours, so that the suite never depends on, nor probes, a QEMU
        # from the system.
        bindir = os.path.join(d, "bin")
        os.makedirs(bindir, exist_ok=True)
        os.symlink(os.path.join(d, "qemu-wrapper"),
                   os.path.join(bindir, "qemu-system-x86_64"))
        self.libvirtd = subprocess.Popen(
            self.as_user() + ["env", "PATH=%s:%s" % (bindir, os.environ["PATH"]),
                              "HOME=%s/home" % d,
                              "XDG_CONFIG_HOME=%s/config" % d,
                              "XDG_RUNTIME_DIR=%s/runtime" % d,
                              "XDG_CACHE_HOME=%s/cache" % d,
                              "XDG_DATA_HOME=%s/data" % d,
                              "tini", "-s", "--", "libvirtd"],
            stdout=open(os.path.join(d, "libvirtd.log"), "ab"),
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        # Ready when it answers (a request that needs no QEMU).
        while self.virsh("list", "--all", check=False).returncode != 0:
            if self.libvirtd.poll() is not None or time.time() > deadline:
                raise Fail("libvirtd did not start (see %s/libvirtd.log)" % d)
            time.sleep(0.1)

    def qemu_pids(self):
        """QEMUs of our libvirtd (pid files in its runtime dir)."""
        pids = []
        for root, _, files in os.walk(os.path.join(self.dir, "runtime")):
            for f in files:
                if f.endswith(".pid") and "qemu" in root:
                    try:
                        pid = int(open(os.path.join(root, f)).read().strip())
                        cmd = open("/proc/%d/cmdline" % pid, "rb").read()
                    except (OSError, ValueError):
                        continue
                    if b"qemu" in cmd and self.dir.encode() in cmd:
                        pids.append(pid)
        return pids

    def our_pids(self):
        """Every process that runs in our work dir: QEMUs (their command
        lines name files in it, capability probes included), libvirtd,
        virtlogd and tini (their HOME/XDG_* point into it)."""
        me = os.getpid()
        d = self.dir.encode() + b"/"
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == me:
                continue
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    cmd = f.read()
                with open("/proc/%s/environ" % p, "rb") as f:
                    envb = f.read()
            except OSError:
                continue
            if d in cmd or (b"HOME=" + d) in envb or (b"XDG_RUNTIME_DIR=" + d) in envb:
                pids.append(int(p))
        return pids

    def cleanup(self):
        try:
            self.remove_hook()
        except OSError as e:
            log("FAILED to remove the hook %s: %s" % (HOOK, e))
        for vm in VMS.values():
            try:
                self.virsh("destroy", vm["name"], check=False)
            except Exception:
                pass
        for pid in self.qemu_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.libvirtd and self.libvirtd.poll() is None:
            self.libvirtd.terminate()      # tini forwards it to libvirtd
            try:
                self.libvirtd.wait(20)
            except subprocess.TimeoutExpired:
                # setpriv, env, tini and libvirtd: one process group
                try:
                    os.killpg(self.libvirtd.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.libvirtd.wait()
        pidf = os.path.join(self.dir, "runtime", "libvirt", "virtlogd.pid")
        try:
            os.kill(int(open(pidf).read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        self.kill_vtmemd(signal.SIGTERM)
        self.vtmemd_log.close()
        # Whatever is still there (a hung capability probe, a QEMU whose
        # pid file is gone): the test started it, the test ends it.
        for _ in range(3):
            left = self.our_pids()
            if not left:
                break
            log("killing leftover processes %s" % left)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)


def is_our_hook(path):
    try:
        with open(path, errors="replace") as f:
            return HOOK_MARK in f.read(4096)
    except OSError:
        return False


# ------------------------------------------------------------------ domains

def domain_xml(env, key, vmlinuz, initrd, disk, console):
    vm = VMS[key]
    cmdline = machine.KERNEL_CMDLINE + " loglevel=4"
    # libvirt does not know this device: give it a PCI slot it does not use.
    dev = ("virtio-tmem-pci,id=vtmem0,bus=pci.0,addr=0x1e,limit=%d,pool=%s"
           % (DEV_LIMIT, env.sock))
    return """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%(name)s</name>
  <uuid>%(uuid)s</uuid>
  <metadata>
    <vtmem:vtmem xmlns:vtmem='%(ns)s'>
      <limit>%(limit)d</limit>
      <weight>100</weight>
    </vtmem:vtmem>
  </metadata>
  <memory unit='MiB'>%(mem)d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%(kernel)s</kernel>
    <initrd>%(initrd)s</initrd>
    <cmdline>%(cmdline)s</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%(emulator)s</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='unsafe'/>
      <source file='%(disk)s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='%(console)s'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='%(console)s'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='%(dev)s'/>
  </qemu:commandline>
</domain>
""" % dict(name=vm["name"], uuid=vm["uuid"], ns=NS, limit=DEV_LIMIT,
           mem=GUEST_MEM, kernel=vmlinuz, initrd=initrd, cmdline=cmdline,
           emulator=os.path.join(env.dir, "qemu-wrapper"), disk=disk,
           console=console, dev=dev)


def read_text(path):
    """The file's text; "" if it cannot be read (not written yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Console:
    """A guest's console file, parsed as the e2e harness parses its consoles
    (vtmem_harness/console.py)."""

    def __init__(self, path):
        self.path = path

    def read(self):
        return read_text(self.path)

    def run(self):
        return console.parse_text(self.read())

    def bad(self):
        return console.bad_lines(self.read())


# ------------------------------------------------------------------ poller

class Poller(threading.Thread):
    """vtmemctl status --json and vtmemd STATUS, every ~0.3 s."""

    def __init__(self, env, baseline):
        super().__init__(daemon=True)
        self.env = env
        self.baseline = baseline
        self.stop = threading.Event()
        self.samples = 0
        self.max_held_sum = 0
        self.max_charged = 0
        self.violations = []
        self.last = {}
        self.errors = 0

    def run(self):
        while not self.stop.is_set():
            try:
                self.sample()
            except Exception as e:  # a VM going away mid-sample
                self.errors += 1
                self.last_error = str(e)
            self.stop.wait(0.3)

    def sample(self):
        r = self.env.vtmemctl("status", "--json", check=False)
        st = json.loads(r.stdout)
        doms = {d["name"]: d for d in st["domains"]}
        held = sum(d["memory_held"] for d in doms.values())
        allowed = POOL_LIMIT + self.baseline * len(doms)
        self.samples += 1
        self.max_held_sum = max(self.max_held_sum, held)
        if held > allowed:
            self.violations.append("memory-held sum %d > %d (%s)" % (
                held, allowed, {n: d["memory_held"] for n, d in doms.items()}))
        if st["daemon"]["running"]:
            ch = st["daemon"]["charged"]
            self.max_charged = max(self.max_charged, ch)
            if ch > allowed:
                self.violations.append("vtmemd charged %d > %d" % (ch, allowed))
        self.last = doms


def wait_for(what, cond, timeout, step=0.2):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise Fail("timeout (%d s) waiting for %s" % (timeout, what))
        time.sleep(step)


def hook_applied(env, name, n, limit):
    """The hook's n-th vtmemctl apply for domain name ended with exit 0
    and set limit."""
    def done():
        return env.hook_output().count("apply %s: exit " % name) >= n
    wait_for("the hook's vtmemctl apply %s (%s)" % (name, env.hook_log),
             done, 40)
    out = env.hook_output()
    starts = out.count("hook %s started begin " % name)
    ok = out.count("apply %s: exit 0\n" % name)
    set_ = out.count("%s: limit %d\n" % (name, limit))
    expect(starts >= n and ok >= n and set_ >= 1,
           "the libvirt hook ran for %s (started: %d; apply exit 0: %d; "
           "limit %d set)" % (name, starts, ok, limit))


def both_connected(env):
    try:
        _, vms = env.daemon_status()
    except OSError:
        return False
    uu = [VMS[k]["uuid"] for k in VMS]
    if not all(u in vms and vms[u]["connected"] == "1" for u in uu):
        return False
    return all(env.qom(VMS[k]["name"], "pool-connected") for k in VMS)


def garbage(env):
    """Malformed input on vtmemd's socket: each connection gets ERROR and
    is closed."""
    cases = [
        b"\x01\x02\xff garbage\n",
        b"A" * 5000,
        b"REGISTER 1 not-a-uuid 0 0 0 0 evil\n",
        b"REGISTER 1 5b0e6a52-7c1d-4e2b-9a51-0a1b2c3d4e01 -1 0 0 0 evil\n",
        b"STATUS  \n",
        b"\n",
        bytes(range(256)) * 8,
    ]
    for c in cases:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(env.sock)
        try:
            s.sendall(c)
        except OSError:
            pass
        buf = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        s.close()
        if not buf.startswith(b"ERROR"):
            raise Fail("vtmemd answered %r to garbage %r" % (buf[:80], c[:40]))
    return len(cases)


# -------------------------------------------------------------------- test

def build_guests(args, env):
    """Kernel, initramfs (the e2e harness's, plus guest.sh per VM), the
    QEMU wrapper, disks and domain XML in the work dir; returns the
    consoles by VM key."""
    work = env.dir
    pw = pwd.getpwnam(env.user)
    log("building the initramfs (tests/e2e harness)")
    vmlinuz_src, base = image.build_initramfs(args, work)
    vmlinuz = os.path.join(work, "vmlinuz")
    shutil.copy(vmlinuz_src, vmlinuz)
    wrapper = os.path.join(work, "qemu-wrapper")
    shutil.copy(os.path.join(HERE, "qemu-wrapper.sh"), work)
    # The sanitizers' suppressions (QEMU's own reports, the e2e harness's
    # machine.SANITIZER_SUPPRESSIONS), where the domains' user can read them.
    env_vars = ""
    for var, supp in machine.SANITIZER_SUPPRESSIONS.items():
        shutil.copy(supp, work)
        env_vars += "%s=suppressions=%s " % (
            var, shlex.quote(os.path.join(work, os.path.basename(supp))))
    qemu = os.path.realpath(args.qemu)
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n%sVTMEM_QEMU_BIN=%s VTMEM_PROBE_NOFORK=%d exec %s \"$@\"\n"
                % (env_vars, shlex.quote(qemu), "/sanitized/" in qemu,
                   shlex.quote(os.path.join(work, "qemu-wrapper.sh"))))
    os.chmod(wrapper, 0o755)
    pool_dir = os.path.dirname(env.sock)
    os.makedirs(pool_dir)
    os.chown(pool_dir, pw.pw_uid, pw.pw_gid)
    os.chmod(pool_dir, 0o750)
    vmdir = os.path.join(work, "vm")
    os.makedirs(vmdir)
    os.chown(vmdir, pw.pw_uid, pw.pw_gid)
    consoles = {}
    for k, vm in VMS.items():
        script = image.shell_script(GUEST_SCRIPT, {
            "SEED": vm["seed"], "SEED2": vm["seed"] + 100, "PASSES": args.passes})
        initrd = image.scenario_initramfs(work, base, script)
        os.chmod(initrd, 0o644)
        disk = os.path.join(vmdir, k + "-backing.img")
        with open(disk, "wb") as f:
            f.truncate(256 * MiB)
        os.chown(disk, pw.pw_uid, pw.pw_gid)
        con = os.path.join(vmdir, k + "-console.log")
        consoles[k] = Console(con)
        with open(os.path.join(work, k + ".xml"), "w") as f:
            f.write(domain_xml(env, k, vmlinuz, initrd, disk, con))
    os.chmod(work, 0o755)
    return consoles


class CheckRunner:
    """Runs named checks one after the other: a failed one is reported
    and the next one still runs."""

    def __init__(self):
        self.failed = []

    def run(self, name, fn):
        log("check: %s" % name)
        try:
            fn()
        except Exception as e:  # reported; the next check runs
            if not isinstance(e, (Fail, subprocess.TimeoutExpired)):
                traceback.print_exc()
            log("FAILED check %s: %s" % (name, e))
            self.failed.append("%s: %s" % (name, e))


class Suite:
    """The checks of the module's docstring, on two running domains."""

    def __init__(self, args, env, consoles):
        self.args = args
        self.env = env
        self.consoles = consoles
        self.a, self.b = VMS["a"]["name"], VMS["b"]["name"]
        self.poller = None
        self.figures = {}

    def start(self):
        env = self.env
        env.start_vtmemd()
        env.install_hook()
        env.start_libvirtd()
        log("libvirtd at %s, vtmemd at %s (pool %d MiB)" % (env.uri, env.sock,
                                                            POOL_LIMIT >> 20))
        for k in VMS:
            env.virsh("define", os.path.join(env.dir, k + ".xml"))
        for vm in VMS.values():
            env.virsh("start", vm["name"])
        self.t_started = time.time()

    def hook_at_start(self):
        """The hook ran vtmemctl apply for both (limit = the command line's)."""
        for vm in VMS.values():
            hook_applied(self.env, vm["name"], 1, DEV_LIMIT)

    def registered(self):
        env = self.env
        wait_for("both devices registered", lambda: both_connected(env), 30)
        expect(all(env.qom(vm["name"], "limit") == DEV_LIMIT for vm in VMS.values()),
               "device limits from the command line / metadata (%d)" % DEV_LIMIT)

    def start_poller(self):
        baseline = max(self.env.qom(vm["name"], "memory-held") for vm in VMS.values())
        log("empty-store metadata %d bytes" % baseline)
        self.poller = Poller(self.env, baseline)
        self.poller.start()

    def garbage(self):
        """Garbage on the daemon socket while the VMs run."""
        n = garbage(self.env)
        _, vms = self.env.daemon_status()
        expect(both_connected(self.env) and len(vms) == 2,
               "%d kinds of garbage rejected (ERROR + close); both VMs still "
               "registered" % n)

    def restart(self):
        """Both workloads swapping through vtmem: kill vtmemd mid-run."""
        env, poller = self.env, self.poller

        def swapping():
            d = poller.last
            return (len(d) == 2 and
                    all(x["memory_held"] > 8 * MiB for x in d.values()))
        wait_for("both devices holding > 8 MiB", swapping, 240)
        expect(all("main" not in self.consoles[k].run().results for k in VMS),
               "workloads still running when vtmemd is killed")
        held_before = {n: d["memory_held"] for n, d in poller.last.items()}
        env.kill_vtmemd(signal.SIGKILL)
        log("vtmemd killed (SIGKILL); held %s" % held_before)
        wait_for("devices notice the daemon is gone", lambda: not any(
            env.qom(vm["name"], "pool-connected") for vm in VMS.values()), 10)
        time.sleep(1)
        t_restart = time.time()
        env.start_vtmemd()
        wait_for("devices re-registered", lambda: both_connected(env), 20,
                 step=0.05)
        self.figures["re-register"] = "%.2f s" % (time.time() - t_restart)
        log("re-registered %s after vtmemd restart" % self.figures["re-register"])

    def set_limit_live(self):
        env, a = self.env, self.a
        # Below what A holds (checked after): right after vtmemd's restart A
        # may hold less for a moment (seen: 8.0 MiB), its workload swapping
        # on; wait until it holds some margin more.
        wait_for("A holding > %d MiB before set-limit" % ((NEW_LIMIT >> 20) + 4),
                 lambda: env.qom(a, "memory-held") > NEW_LIMIT + 4 * MiB, 60)
        r = env.vtmemctl("set-limit", a, str(NEW_LIMIT))
        log("set-limit: " + r.stdout.strip())
        expect(env.qom(a, "limit") == NEW_LIMIT, "qom-get limit = %d after "
               "vtmemctl set-limit (live)" % NEW_LIMIT)
        expect(env.qom(a, "pool-limit") <= NEW_LIMIT, "pool-limit <= new limit "
               "(%d)" % env.qom(a, "pool-limit"))
        _, vms = env.daemon_status()
        expect(vms[VMS["a"]["uuid"]]["vm-limit"] == str(NEW_LIMIT),
               "vtmemd caps the VM (vm-limit %s)" % vms[VMS["a"]["uuid"]]["vm-limit"])
        # Shrink on demand: A's guest moves pages to its disk until the
        # device holds no more than the new limit.
        held_a = env.qom(a, "memory-held")
        expect(held_a > NEW_LIMIT, "A holds more than its new limit (%d)" % held_a)
        t_shrink = time.time()
        wait_for("A's guest moves pages to its disk (memory-held <= new limit)",
                 lambda: env.qom(a, "memory-held") <= NEW_LIMIT, 120)
        log("ok: A shrank from %d to <= %d bytes in %.1f s"
            % (held_a, NEW_LIMIT, time.time() - t_shrink))

    def data(self):
        """Both workloads finish and verify; "hold" follows their stat dump,
        so the statistics are complete on the console by then."""
        consoles = self.consoles

        def finished():
            return all("hold" in consoles[k].run().marks for k in VMS)
        wait_for("both workloads finished", finished, self.args.timeout)
        self.figures["workloads"] = "%.1f s" % (time.time() - self.t_started)
        for k in VMS:
            run = consoles[k].run()
            r = run.results["main"]
            expect(r["status"] == "ok" and r["rc"] == 0 and r.get("bad", 1) == 0,
                   "VM %s: workload verified byte for byte (%s)" % (k, r))
            expect(not run.fails, "VM %s: guest script reported no failure %s"
                   % (k, run.fails))
            st = run.stats.get("main", {})
            log("VM %s guest stats: host_puts=%s host_refusals=%s disk_writes=%s "
                "pages_host=%s pages_disk=%s" % (
                    k, st.get("host_puts"), st.get("host_refusals"),
                    st.get("disk_writes"), st.get("pages_host"),
                    st.get("pages_disk")))
            expect(st.get("failed_reads", 1) == 0 and st.get("failed_writes", 1) == 0,
                   "VM %s: no failed I/O" % k)
        expect(consoles["a"].run().stats["main"].get("shrink_pages", 0) > 0,
               "VM a: the lowered limit was met by moving pages to its disk")
        refusals = sum(run.stats.get("main", {}).get("host_refusals", 0)
                       for run in (consoles[k].run() for k in VMS))
        expect(refusals > 0, "the pool was too small for both: %d refusals "
               "(pages went to the backing disks)" % refusals)

    def destroy(self):
        """Destroy B: its budget returns."""
        env, b = self.env, self.b
        wait_for("VM b holding budget again (hold workload)", lambda: "hold" in
                 self.consoles["b"].run().marks and env.qom(b, "memory-held") > 4 * MiB,
                 120)
        pool, vms = env.daemon_status()
        charged_before = int(pool["charged"])
        b_charge = int(vms[VMS["b"]["uuid"]]["charge"])
        env.virsh("destroy", b)

        def b_gone():
            p, v = env.daemon_status()
            u = VMS["b"]["uuid"]
            return (u not in v or v[u]["connected"] == "0" and
                    v[u]["charge"] == "0") and p
        wait_for("B's budget back", b_gone, 10)
        # (A may at once be granted what B gave back: compare with the
        # charges of the VMs still there, not with the total before.)
        p, v = env.daemon_status()
        others = sum(int(x["charge"]) for u, x in v.items()
                     if u != VMS["b"]["uuid"])
        expect(int(p["charged"]) == others,
               "destroying B returned its budget: B had %d of %d charged; now "
               "%d charged, all of it A's" % (b_charge, charged_before,
                                              int(p["charged"])))

    def set_limit_restart(self):
        """A: destroy + start; the libvirt hook applies the metadata
        (set-limit) at start, nothing else does."""
        env, a = self.env, self.a
        env.virsh("destroy", a)
        t_start = time.time()
        env.virsh("start", a)
        cmd = [open("/proc/%d/cmdline" % p, "rb").read().split(b"\0")
               for p in env.qemu_pids()]
        cmd = [c for c in cmd if ("guest=%s," % a).encode() in b",".join(c)]
        expect(len(cmd) == 1 and any(b"limit=%d," % DEV_LIMIT in x for x in cmd[0]),
               "A restarted with limit=%d on QEMU's command line" % DEV_LIMIT)
        wait_for("the hook to set A's limit to %d" % NEW_LIMIT,
                 lambda: env.qom(a, "limit") == NEW_LIMIT, 30)
        log("ok: set-limit survived destroy + start: the libvirt hook applied "
            "it, qom-get limit %d %.1f s after virsh start"
            % (NEW_LIMIT, time.time() - t_start))
        hook_applied(env, a, 2, NEW_LIMIT)
        wait_for("A registered again", lambda: env.qom(a, "pool-connected"), 10)
        expect(env.qom(a, "pool-limit") <= NEW_LIMIT, "A's pool-limit <= %d"
               % NEW_LIMIT)

    def all_budget_back(self):
        env = self.env
        for vm in VMS.values():
            env.virsh("destroy", vm["name"], check=False)
        p = wait_for("all budget back", lambda: (lambda s: int(s[0]["charged"]) == 0
                                                 and s[0])(env.daemon_status()), 10)
        expect(int(p["charged"]) == 0, "no VM left: nothing charged")

    def consoles_clean(self):
        for k in VMS:
            bad = self.consoles[k].bad()
            expect(not bad, "VM %s: no BUG/Oops/WARNING on the console %s"
                   % (k, bad[:3]))

    def no_sanitizer_report(self):
        """QEMU's stderr (sanitizer reports, errors) is in libvirt's domain logs."""
        san = re.compile(r"runtime error:|ERROR: AddressSanitizer|SUMMARY: \w+Sanitizer")
        logdir = os.path.join(self.env.dir, "cache", "libvirt", "qemu", "log")
        for f in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
            with open(os.path.join(logdir, f), errors="replace") as fh:
                hits = [ln.strip() for ln in fh if san.search(ln)]
            expect(not hits, "%s: no sanitizer report from QEMU %s" % (f, hits[:3]))

    def budget(self):
        poller = self.poller
        self.figures["max held sum"] = poller.max_held_sum
        log("budget samples: %d (%d failed while VMs stopped), max sum of "
            "memory-held %.1f MiB, max vtmemd charge %.1f MiB, pool %d MiB "
            "(+ %d B metadata per store)" % (
                poller.samples, poller.errors, poller.max_held_sum / MiB,
                poller.max_charged / MiB, POOL_LIMIT >> 20, poller.baseline))
        expect(poller.samples > 20, "budget polled during the run")
        expect(not poller.violations, "global budget never exceeded %s"
               % poller.violations[:3])


def test(args, env):
    """Starts everything (a failure there ends the test), then runs every
    check; returns the failed ones."""
    suite = Suite(args, env, build_guests(args, env))
    suite.start()
    runner = CheckRunner()
    runner.run("the hook applies the limit at start", suite.hook_at_start)
    runner.run("both devices registered", suite.registered)
    suite.start_poller()
    try:
        for name, fn in [("garbage", suite.garbage),
                         ("restart", suite.restart),
                         ("set-limit live", suite.set_limit_live),
                         ("data", suite.data),
                         ("destroy", suite.destroy),
                         ("set-limit across destroy + start", suite.set_limit_restart),
                         ("all budget back", suite.all_budget_back)]:
            runner.run(name, fn)
    finally:
        suite.poller.stop.set()
        suite.poller.join()
    runner.run("consoles", suite.consoles_clean)
    runner.run("no sanitizer report", suite.no_sanitizer_report)
    runner.run("budget", suite.budget)
    log("RESULT %s, pool %d" % (", ".join("%s %s" % kv for kv in suite.figures.items()),
                                POOL_LIMIT))
    return runner.failed


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_path_options(ap)
    ap.add_argument("--vtmemd", default=os.environ.get("VTMEMD"))
    ap.add_argument("--vtmemctl", default=os.environ.get("VTMEMCTL"))
    ap.add_argument("--workdir", default=os.environ.get("VTMEM_LIBVIRT_WORKDIR"))
    ap.add_argument("--passes", type=int, default=int(os.environ.get(
        "VTMEM_LIBVIRT_PASSES", "3")))
    ap.add_argument("--timeout", type=int, default=300,
                    help="seconds for the workloads")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("SKIP: needs root (runs libvirtd as an unprivileged user)")
        return 77
    skip = cli.missing_path(args, ("qemu", "ko", "setup", "swapverify", "vtmemd",
                                   "vtmemctl"))
    if skip:
        print(skip)
        return 77
    for tool in ("libvirtd", "virsh", "tini", "setpriv", "cpio", "busybox"):
        if not shutil.which(tool):
            print("SKIP: %s not installed" % tool)
            return 77
    lock = open(LOCK, "w")  # held until the process exits
    t_lock = time.time()
    fcntl.flock(lock, fcntl.LOCK_EX)
    if time.time() - t_lock > 1:
        log("waited %.0f s for %s" % (time.time() - t_lock, LOCK))
    user = os.environ.get("VTMEM_LIBVIRT_USER", "vtmem-e2e")
    for u in (user, "libvirt-qemu"):  # libvirtd wants libvirt-qemu to exist
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", u], check=True)

    if args.workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
        os.makedirs(args.workdir)
        workdir = os.path.realpath(args.workdir)
    else:
        workdir = tempfile.mkdtemp(prefix="vtmem-lv-")

    # meson's timeout sends SIGTERM: clean up like on any failure (no
    # further check runs: CheckRunner.run does not catch Terminated).
    def on_term(*_):
        raise Terminated("terminated (SIGTERM, e.g. meson's timeout)")
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.time()
    env = Env(args, workdir)
    ok = False
    try:
        failed = test(args, env)
        ok = not failed
        for f in failed:
            print("FAIL: check %s" % f)
    except (Fail, Terminated, subprocess.TimeoutExpired) as e:
        print("FAIL: %s" % e)
    finally:
        # A second SIGTERM must not cut the cleanup short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not ok:
            print("work dir %s" % workdir)
            for k in VMS:
                tail = read_text(os.path.join(workdir, "vm", k + "-console.log"))
                print("--- console %s (tail)\n%s"
                      % (k, "\n".join(tail.splitlines()[-15:])))
        print("--- hook log %s\n%s" % (env.hook_log, env.hook_output().rstrip()))
        env.cleanup()
        left = env.our_pids()
        if left:
            print("FAIL: processes left: %s" % left)
            ok = False
    log("%s in %.1f s" % ("PASS" if ok else "FAIL", time.time() - t0))
    if ok and not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
