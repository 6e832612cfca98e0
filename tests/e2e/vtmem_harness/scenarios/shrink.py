# SPDX-License-Identifier: GPL-2.0-or-later
"""Shrink on demand: the host lowers the device's limit below what it
holds; the guest moves pages to its backing disk (or says it cannot)."""

import threading
import time

from ..checks import MiB, all_verified, expect, host_agrees, \
    host_empty_after_stop, log, no_failed_io, result_ok
from ..runner import Scenario, wait_guest_stats, wait_held, wait_host


class Shrink(Scenario):
    """With pages on the host, the limit drops from 256 MiB to 24 MiB; the
    driver moves pages to its backing disk until the host holds at most
    24 MiB; every byte still verifies."""
    name = "shrink"
    tm = "limit=256M"
    disk_mb = 512
    target = 24 * MiB
    timeout = 300

    def on_sync(self, g, run, name):
        if name == "written":
            self.before(g, run)
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

    @staticmethod
    def before(g, run):
        run.host["before"] = g.qmp.host_stats()

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
        self.check_end(run)

    @staticmethod
    def check_end(run):
        """No failed I/O or move; the host holds what the guest says, then
        nothing after stop."""
        no_failed_io(run, "end", "shrink_failures", "host_errors")
        host_agrees(run)
        host_empty_after_stop(run)


class ShrinkUpDown(Shrink):
    """Repeated down/up limit changes while another workload verifies
    (swaps in) all the time; then down once more while the main workload
    verifies too."""
    name = "shrink-updown"
    target = 16 * MiB

    def on_sync(self, g, run, name):
        if name == "written":
            self.before(g, run)
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
        all_verified(run.all_results, 2, "both workloads")
        expect(all(t is not None for _, t, _ in self.times),
               "converged after each lowering: %s" % self.times)
        expect(self.took is not None, "converged while verifying (%s s)" % self.took)
        e = run.stats["end"]
        expect(e["shrink_runs"] >= 2 and e["shrink_pages"] > 0,
               "several shrink runs (%d), %d pages moved"
               % (e["shrink_runs"], e["shrink_pages"]))
        self.check_end(run)


class ShrinkSwapin(Shrink):
    """The limit drops while the guest swaps everything back in (verify
    passes): moves race with swap-ins and frees of the same slots."""
    name = "shrink-swapin"
    target = 16 * MiB

    def on_sync(self, g, run, name):
        if name == "written":
            self.before(g, run)
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

    def on_sync(self, g, run, name):
        if name == "written":
            Shrink.before(g, run)
            g.qmp.set("limit", self.target)
            self.settle(g, run)
            run.host["after"] = g.qmp.host_stats()
            return "go"
        return super().on_sync(g, run, name)

    def settle(self, g, run):
        time.sleep(3)

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

    def settle(self, g, run):
        wait_guest_stats(g, run, "stuck", 120)

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
