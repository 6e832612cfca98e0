# SPDX-License-Identifier: GPL-2.0-or-later
"""A real guest: Debian 13 with systemd, set up the way a user sets it up.

The disk image (tests/e2e/systemd-image.sh) has Debian's trixie kernel and
initramfs, our module in /lib/modules/KVER/updates, vtmem.service enabled
with /etc/vtmem.conf naming the backing disk, a disk swap in fstab, and the
test's units (tests/e2e/guest/systemd/): on each boot vtmem-e2e.service
(e2e.sh) reports the swaps, runs a verifying workload and starts
vtmem-e2e-hold.service, whose pages stay swapped out until vtmem.service's
swapoff at shutdown; its ExecStop runs after that swapoff, lets the host look
("stoppedN") and then verifies those pages. The first boot ends with
`systemctl reboot`, the second with `systemctl poweroff`.
"""

import os
import subprocess

from .. import image
from ..checks import Fail, expect, no_failed_io, result_ok
from ..runner import Scenario, wait_host

IMAGE_SH = os.path.join(image.E2E_DIR, "systemd-image.sh")
# A swap priority above the disk swap's (fstab without pri=: negative):
# /etc/vtmem.conf leaves it to vtmem-setup, whose default is at least 100.
VTMEM_PRIO = 100


def image_dir(args):
    """The image's directory: VTMEM_SYSTEMD_IMAGE (the directory, or the
    file meson's target wrote it to), else (or when the cache lost it)
    made or found in the cache by systemd-image.sh for args.ko."""
    path = os.environ.get("VTMEM_SYSTEMD_IMAGE", "")
    if os.path.isfile(path):
        with open(path) as f:
            path = f.read().strip()
    if not os.path.exists(os.path.join(path, "root.img")):
        try:
            path = subprocess.check_output(
                ["sh", IMAGE_SH, args.ko, args.swapverify], text=True).strip()
        except subprocess.CalledProcessError as e:
            raise Fail("systemd-image.sh failed (%s)" % e)
    if not os.path.exists(os.path.join(path, "root.img")):
        raise Fail("no systemd guest image in %s" % path)
    return path


class SystemdGuest(Scenario):
    name = "systemd"
    tm = "limit=256M"
    disk_mb = 0
    reboot = True
    timeout = 1500              # two boots of systemd (TCG on a loaded machine)
    kernel_args = ("root=LABEL=vtmem-root rw systemd.show_status=error "
                   # The console is the test's: no login prompt reading it.
                   "systemd.mask=serial-getty@ttyS0.service")

    def boot_files(self, args, workdir, vmlinuz, base):
        d = image_dir(args)
        backing = os.path.join(workdir, "backing.img")
        swap = os.path.join(workdir, "swap.img")
        for path, mb in ((backing, 256), (swap, 64)):
            with open(path, "wb") as f:
                f.truncate(mb << 20)
        subprocess.run(["mkswap", "-q", swap], check=True)
        # The guest finds its disks by serial (/dev/disk/by-id/virtio-*);
        # the image is never written (snapshot=on).
        drives = [("vtmem-root", os.path.join(d, "root.img"), ",snapshot=on"),
                  ("vtmem-backing", backing, ""), ("vtmem-swap", swap, "")]
        self.extra = []
        for i, (serial, path, opt) in enumerate(drives):
            self.extra += ["-drive", "file=%s,format=raw,if=none,id=s%d,cache=unsafe%s"
                           % (path, i, opt),
                           "-device", "virtio-blk-pci,drive=s%d,serial=%s" % (i, serial)]
        kernel = image.pvh_kernel(os.path.join(d, "vmlinuz"),
                                  os.path.join(d, "vmlinux-pvh"))
        return kernel, os.path.join(d, "initrd.img")

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["written%d" % run.boot] = g.qmp.host_stats()
            return "go"
        if name.startswith("held"):
            run.host[name] = g.qmp.host_stats()
        elif name.startswith("stopped"):
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == 0)
        return super().on_sync(g, run, name)

    def check(self, run):
        expect(run.boot == 2, "two boots: `systemctl reboot` in the guest came back")
        for b in (1, 2):
            self.check_boot(run, b)
        expect("reboot" in run.marks and "poweroff" in run.marks,
               "first boot ended with systemctl reboot, second with poweroff")

    def check_boot(self, run, b):
        swaps = "swaps%d" % b
        expect(run.st("boot%d" % b, "failed_units") == 0,
               "boot %d: no failed unit (the disk swap of fstab is up)" % b)
        expect("vtmem.service active %d" % b in run.marks and
               run.st(swaps, "vtmem_active") == 1,
               "boot %d: vtmem.service set up swap on /dev/vtmem0" % b)
        prio, disk = run.st(swaps, "vtmem_prio"), run.st(swaps, "disk_prio")
        expect(run.st(swaps, "disk_swaps") == 1 and prio == VTMEM_PRIO and prio > disk,
               "boot %d: /dev/vtmem0 at priority %d, above the disk swap's %d"
               % (b, prio, disk))
        expect("backing attached %d" % b in run.marks,
               "boot %d: the backing disk of /etc/vtmem.conf attached" % b)
        result_ok(run, "main%d" % b)
        w = run.host["written%d" % b]
        expect(w["stored-pages"] > 0 and run.st("main%d-written" % b, "pages_host") > 0,
               "boot %d: the host holds the workload's pages (%d)" % (b, w["stored-pages"]))
        h = run.host["held%d" % b]
        expect(h["stored-pages"] > 0 and run.st("held%d" % b, "pages_host") > 0,
               "boot %d: the host holds pages before shutdown (%d)" % (b, h["stored-pages"]))
        no_failed_io(run, "held%d" % b)
        s = run.host["stopped%d" % b]
        expect("swapoff done %d" % b in run.marks and s["stored-pages"] == 0 and
               s["compressed-bytes"] == 0,
               "boot %d: host store empty after vtmem.service's swapoff at %s (%s)"
               % (b, "reboot" if b == 1 else "poweroff", s))
        back = run.st("stopped%d" % b, "vm_pswpin") - run.st("held%d" % b, "vm_pswpin")
        expect(back >= 1000, "boot %d: swapoff read %d pages back" % (b, back))
        result_ok(run, "hold%d" % b)
