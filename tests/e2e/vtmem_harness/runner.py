# SPDX-License-Identifier: GPL-2.0-or-later
"""How a scenario runs (one guest boot, or more with reboot).

1. Scenario.boot_files: the kernel, and image.scenario_initramfs: the base
   initramfs plus /scenario.sh, the text of Scenario.guest_script()
   (tests/e2e/guest/scenarios/NAME.sh). A scenario may boot something else
   (the systemd guest boots a disk image with Debian's initramfs).
2. machine.Guest starts QEMU with the scenario's device options (tm), disks
   (disk_mb, extra_disks), reboot, extra arguments and kernel_args.
3. run_guest reads the console: each line goes to console.parse_line (the
   protocol); at each "VTMEM-SYNC NAME" it calls Scenario.on_sync(g, run,
   NAME), whose return value is written back to the guest (None: nothing,
   the guest stays blocked). on_sync reads QMP figures into run.host or acts
   on the device; the base class answers the boot count at "boot" and saves
   the host's figures at "written" (then calls after_write).
4. The guest prints VTMEM-DONE and powers off. The run fails if it did not
   (timeout: Scenario.timeout), or on kernel complaints, QEMU sanitizer
   reports or VTMEM-FAIL lines (check_run); then Scenario.check(run) makes
   the scenario's own checks (checks.expect).
"""

import os
import time

from . import image
from .checks import Fail, expect, log
from .console import Run, parse_line, LOGGED
from .machine import Guest


class Scenario:
    name = ""
    tm = "limit=512M"           # -device virtio-tmem-pci options; None: none
    disk_mb = 256               # backing disk /dev/vda (0: none)
    extra_disks = ()            # (file name, MiB): /dev/vdb...
    reboot = False
    timeout = 300
    extra = ()                  # more QEMU arguments
    kernel_args = ""            # more kernel command line
    script = None               # guest shell; None: guest/scenarios/NAME.sh
    params = {}                 # shell variables for the script

    def guest_script(self):
        if self.script is not None:
            return self.script
        return image.shell_script(os.path.join(image.GUEST_DIR, "scenarios",
                                               self.name + ".sh"), self.params)

    def boot_files(self, args, workdir, vmlinuz, base):
        """(kernel, initrd) of the boot: base + /scenario.sh."""
        return vmlinuz, image.scenario_initramfs(workdir, base, self.guest_script())

    def disks(self, workdir):
        disks = [("backing.img", self.disk_mb)] if self.disk_mb else []
        return [(os.path.join(workdir, f), mb) for f, mb in disks + list(self.extra_disks)]

    def on_sync(self, g, run, name):
        if name == "boot":
            run.boot += 1
            return str(run.boot)
        if name == "written" and self.tm is not None:
            run.host[name] = g.qmp.host_stats()
            self.after_write(g, run)
        return "go"

    def after_write(self, g, run):
        """At "written", after the host's figures are saved."""

    def check(self, run):
        pass


class Probe(Scenario):
    name = "probe"


def run_guest(args, workdir, vmlinuz, base, scn, accel, boot_timeout=None):
    """Boots scn; returns (run, guest, seconds)."""
    kernel, initrd = scn.boot_files(args, workdir, vmlinuz, base)
    g = Guest(args, workdir, kernel, initrd, tm=scn.tm, disks=scn.disks(workdir),
              reboot=scn.reboot, accel=accel, extra=scn.extra,
              append=scn.kernel_args)
    log("qemu: " + " ".join(g.cmd))
    run = Run()
    deadline = time.time() + (boot_timeout or scn.timeout)
    try:
        while True:
            line = g.next_line(deadline)
            if line is None:
                break
            sync = parse_line(run, line)
            if any(tag in line for tag in LOGGED):
                log("guest: " + line.strip())
            if sync:
                if boot_timeout:
                    deadline = time.time() + scn.timeout
                    boot_timeout = None
                log("sync " + sync)
                reply = scn.on_sync(g, run, sync)
                if reply is not None:
                    g.reply(reply)
        if not run.done:
            raise Fail("guest stopped before VTMEM-DONE (see %s)"
                       % os.path.join(workdir, "console.log"))
    finally:
        elapsed = time.time() - g.start
        g.stop()
    return run, g, elapsed


def check_run(run, g):
    """What every run must show: no kernel complaint, no QEMU sanitizer
    report, no VTMEM-FAIL."""
    expect(not g.bad, "no BUG/Oops/WARNING on the console %s" % g.bad[:3])
    expect(not g.qemu_errors(), "no QEMU sanitizer/assertion report %s"
           % g.qemu_errors()[:3])
    expect(not run.fails, "guest script reported no failure %s" % run.fails)


def pick_accel(args, workdir, vmlinuz, base):
    """VTMEM_ACCEL: tcg, kvm or auto (the default): KVM if /dev/kvm is
    usable and a probe guest boots with it (nested KVM hangs on some
    hosts: the probe then waits out its 10 s; a KVM guest reaches /init
    in well under a second); the answer is cached in CACHE/accel-VMLINUZ."""
    want = os.environ.get("VTMEM_ACCEL", "auto")
    if want in ("tcg", "kvm"):
        return want
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    kernel = os.path.relpath(vmlinuz, image.CACHE).split(os.sep)[0]  # kernel-<ver>
    cache = os.path.join(image.CACHE, "accel-" + kernel[len("kernel-"):])
    try:
        with open(cache) as f:
            return f.read().strip()
    except OSError:
        pass
    got = "tcg"
    try:
        run_guest(args, workdir, vmlinuz, base, Probe(), "kvm", boot_timeout=10)
        got = "kvm"
    except Fail as e:
        log("KVM probe failed (%s): using TCG" % e)
    os.makedirs(image.CACHE, exist_ok=True)
    with open(cache, "w") as f:
        f.write(got + "\n")
    return got


def wait_host(g, cond, timeout=10.0):
    """Poll host stats until cond(stats) holds; returns the last stats."""
    deadline = time.time() + timeout
    while True:
        s = g.qmp.host_stats()
        if cond(s) or time.time() > deadline:
            return s
        time.sleep(0.2)


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
