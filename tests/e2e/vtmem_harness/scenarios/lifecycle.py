# SPDX-License-Identifier: GPL-2.0-or-later
"""The device's and the module's life: load/unload and reset, hot-unplug
and re-plug, S3 suspend and resume."""

import threading
import time

from .. import image
from ..checks import expect, no_failed_io, result_ok
from ..runner import Scenario


class CycleReboot(Scenario):
    name = "cycle-reboot"
    tm = "limit=256M"
    reboot = True

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


class Unplug(Scenario):
    """Hot-unplug the device while pages are on the host: no crash."""
    name = "unplug"
    tm = "limit=256M"

    def after_write(self, g, run):
        g.qmp.cmd("device_del", id="tm0")
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(e.get("event") == "DEVICE_DELETED" for e in g.qmp.events):
                break
            g.qmp.cmd("query-status")
            time.sleep(0.2)

    def on_sync(self, g, run, name):
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


class Suspend(Scenario):
    """S3 suspend/resume: refused while the host holds pages (a resumed
    device holds nothing); after swapoff it suspends, resumes and swaps to
    the host again."""
    name = "suspend"
    tm = "limit=256M"
    extra = ["-global", "PIIX4_PM.disable_s3=0"]

    def boot_files(self, args, workdir, vmlinuz, base):
        """The bzImage: a guest booted through its PVH entry does not come
        back from S3 (QEMU exits at the wakeup)."""
        kernel, initrd = super().boot_files(args, workdir, vmlinuz, base)
        return image.bzimage(kernel), initrd

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
        no_failed_io(run, "two")
