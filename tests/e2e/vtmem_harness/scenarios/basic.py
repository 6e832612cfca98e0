# SPDX-License-Identifier: GPL-2.0-or-later
"""Swapping through the device: within and beyond the host's limit, with
no backing disk, with no device, huge pages, concurrent workloads."""

import threading

from ..checks import RESIDUE, all_verified, expect, host_agrees, \
    host_empty_after_stop, log, no_failed_io, result_ok
from ..runner import Scenario, wait_host


class Fits(Scenario):
    name = "fits"

    def on_sync(self, g, run, name):
        if name == "after-exit":
            # Pages of processes that still live (init's shell) may stay.
            want = run.st("after-exit", "pages_host")
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == want)
        elif name == "after-stop":
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == 0)
        elif name in ("dd-written", "discarded"):
            run.host[name] = g.qmp.host_stats()
        if name == "boot":
            run.host["ioeventfd"] = g.qmp.get("ioeventfd")
            run.host["accel"] = g.accel
        return super().on_sync(g, run, name)

    def check(self, run):
        result_ok(run, "main")
        # ioeventfd=auto is off under TCG: the driver finds each answer
        # when its kick returns, and the device sends no interrupt for it.
        reqs = sum(run.st("after-exit", k) for k in
                   ("host_puts", "host_gets", "invalidate_batches"))
        irqs = run.st("after-exit", "irq_requests")
        expect(run.host["ioeventfd"] == "auto", "ioeventfd=%s by default"
               % run.host["ioeventfd"])
        if run.host["accel"] == "tcg":
            expect(irqs * 100 <= reqs, "under TCG, interrupts for under 1%% of "
                   "requests (%d for %d)" % (irqs, reqs))
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
        host_agrees(run, "after-exit")
        expect(run.host["after-stop"]["stored-pages"] == 0 and
               run.host["after-stop"]["compressed-bytes"] == 0,
               "host empty after swapoff (%s)" % run.host["after-stop"])
        no_failed_io(run, "after-exit")
        expect("dd-verified" in run.marks, "O_DIRECT block I/O verifies")
        expect("stat-split" in run.marks,
               "stat is mm_stat, io_stat, bd_stat and shrink_stat together")
        expect(run.host["dd-written"]["stored-pages"] >= 4096,
               "dd data on the host (%d)" % run.host["dd-written"]["stored-pages"])
        expect(run.st("discarded", "invalidate_ranges") > 0 and
               run.host["discarded"]["stored-pages"] == 0,
               "discard dropped the range on the host")
        expect("discard-zeroes" in run.marks, "discarded blocks read as zeroes")


class SmallLimit(Scenario):
    name = "small-limit"
    tm = "limit=8M"

    def check(self, run):
        result_ok(run, "main")
        expect(run.host["written"]["stored-pages"] > 0, "host holds some pages")
        expect(run.host["written"]["refusals"] > 0, "host refused pages")
        expect(run.st("main-written", "host_refusals") > 0, "guest saw refusals")
        expect(run.st("main-written", "disk_blocks_used") > 0 and
               run.st("main-written", "pages_disk") > 0,
               "overflow on the backing disk")
        no_failed_io(run, "end")


class LimitChange(Scenario):
    name = "limit-change"
    tm = "limit=32M"

    def after_write(self, g, run):
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

    def on_sync(self, g, run, name):
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
        no_failed_io(run, "end")


class NoDiskFull(Scenario):
    name = "nodisk-full"
    tm = "limit=4M"
    disk_mb = 0

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

    def check(self, run):
        result_ok(run, "main")
        expect(run.st("main-written", "host_attached") == 0, "no host device")
        expect(run.st("main-written", "pages_disk") > 0 and
               run.st("main-written", "pages_host") == 0,
               "everything on the backing disk")
        expect(run.st("end", "host_puts") == 0, "no host puts")
        no_failed_io(run, "end")


class Thp(Scenario):
    name = "thp"

    def check(self, run):
        result_ok(run, "main")
        expect(run.st("end", "bio_pages") > 0, "pages written through submit_bio")
        n = run.st("end", "vm_thp_swpout")
        expect(n > 0, "THP swapped out whole (thp_swpout=%d)" % n)
        no_failed_io(run, "end")


class Mthp(Scenario):
    """6.10+: 64 KiB mTHP folios swap out as one multi-page bio; on 6.12+ a
    synchronous swap device also swaps them in whole. (Not on 6.1: no mTHP.)"""
    name = "mthp"

    def check(self, run):
        result_ok(run, "main")
        n = run.st("end", "mthp_swpout")
        expect(n > 0, "64 KiB folios swapped out whole (swpout=%d)" % n)
        log("mTHP 64 KiB: swpout %d, swpin %s" % (
            n, run.stats["end"].get("mthp_swpin", "n/a")))
        no_failed_io(run, "end")


class Churn(Scenario):
    """Three workloads at once: slots are freed and reused all the time
    (invalidate/PUT ordering), part on the host, part on the disk."""
    name = "churn"
    tm = "limit=24M"

    def on_sync(self, g, run, name):
        if name in ("end", "stopped"):
            want = run.st("end", "pages_host") if name == "end" else 0
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == want)
        return super().on_sync(g, run, name)

    def check(self, run):
        all_verified(run.all_results, 3, "3 concurrent workloads")
        expect(all(run.results[t]["rc"] == 0 for t in "abc"), "all exited 0")
        expect(run.st("end", "host_puts") > 0 and
               run.st("end", "disk_writes") > 0, "host and disk both used")
        expect(run.st("end", "invalidate_overflows") > 0,
               "pending array overflowed, table scans done")
        expect(run.st("end", "notify_free") > 0 and
               run.st("end", "invalidated_slots") > 0, "slots freed and invalidated")
        no_failed_io(run, "end", "host_errors")
        expect(run.host["end"]["stored-pages"] <= RESIDUE,
               "host usage back to ~0 (%s)" % run.host["end"])
        host_agrees(run)
        host_empty_after_stop(run)
