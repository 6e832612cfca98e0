# SPDX-License-Identifier: GPL-2.0-or-later
"""The host's real memory under churn: what QEMU holds in RAM follows the
device's memory-held (issue #12's budget that holds).

While the guest swaps pages out and in and frees half of them, round after
round (guest/scenarios/churn-rss.sh), a thread samples, every 0.2 s,
memory-held (QMP) and QEMU's /proc/PID/smaps. The store's own mappings
(host-pool/store/vtmem-backing.c) are found in smaps as:
- "[anon:vtmem-store]" when the host kernel names anonymous mappings
  (CONFIG_ANON_VMA_NAME, Linux 5.17+; the store names every mapping);
- otherwise, anonymous mappings whose VmFlags have both "nh" (no huge
  pages) and "dc" (not copied on fork): the store marks every mapping so,
  QEMU marks guest RAM "dc" but never "nh", glibc marks nothing, and
  ASan's shadow (a sanitized QEMU) is "nh" without "dc".
Neither depends on addresses the device would have to publish, or on
mapping sizes (neighbouring regions merge into one mapping). A wrong
identification fails the run either way: counting foreign mappings breaks
the per-sample bound, missing the store's breaks the coverage check at the
peak.

Guest RAM is preallocated (-mem-prealloc), so QEMU's RSS does not grow as
the guest touches its RAM and the fall after swapoff is the store's.
"""

import threading
import time

from ..checks import MiB, expect, host_agrees, host_empty_after_stop, log, \
    no_failed_io, result_ok
from ..runner import Scenario, wait_host

STORE_NAME = "[anon:vtmem-store]"
SLACK = 1 * MiB             # documented slack of the store (README)


def smaps_memory(pid):
    """(store Rss, total Rss, store mappings, named) of /proc/PID/smaps."""
    with open("/proc/%d/smaps" % pid) as f:
        text = f.read()
    vmas = []               # [name, rss, flags]
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if not fields[0].endswith(":"):
            # range perms offset dev inode [name]
            vmas.append([" ".join(fields[5:]), 0, ()])
        elif fields[0] == "Rss:" and vmas:
            vmas[-1][1] = int(fields[1]) * 1024
        elif fields[0] == "VmFlags:" and vmas:
            vmas[-1][2] = fields[1:]
    named = any(v[0] == STORE_NAME for v in vmas)
    if named:
        store = [v for v in vmas if v[0] == STORE_NAME]
    else:
        store = [v for v in vmas if not v[0] and "nh" in v[2] and "dc" in v[2]]
    return (sum(v[1] for v in store), sum(v[1] for v in vmas), len(store),
            named)


class Sampler(threading.Thread):
    """Samples (seconds, held before, held after, store Rss, total Rss)."""

    def __init__(self, g):
        super().__init__(daemon=True)
        self.g = g
        self.samples = []
        self.named = None
        self.longest_read = 0.0
        self.error = None
        self.halt = threading.Event()

    def sample(self):
        before = self.g.qmp.get("memory-held")
        t0 = time.time()
        store, total, _, self.named = smaps_memory(self.g.proc.pid)
        self.longest_read = max(self.longest_read, time.time() - t0)
        after = self.g.qmp.get("memory-held")
        s = (time.time() - self.g.start, before, after, store, total)
        self.samples.append(s)
        return s

    def run(self):
        try:
            while not self.halt.wait(0.2):
                self.sample()
        except Exception as e:   # QEMU gone: reported by check()
            self.error = e

    def stop(self):
        self.halt.set()
        self.join()


def efficiency(st):
    """Payload (LZ4 objects + pages kept raw) / memory-held."""
    payload = st["compressed-bytes"] + 4096 * st["raw-pages"]
    return payload / st["memory-held"] if st["memory-held"] else 0.0


class ChurnRss(Scenario):
    """Churn with the host's memory sampled: the store's resident memory
    never passes memory-held + 1 MiB; automatic compaction runs and leaves
    payload / memory-held >= 0.90; after exit and swapoff, QEMU's RSS has
    fallen by >= 90 % of the peak memory-held; every byte verifies."""
    name = "churn-rss"
    tm = "limit=256M"
    disk_mb = 256
    extra = ("-mem-prealloc",)
    timeout = 540

    def on_sync(self, g, run, name):
        if name == "boot" and run.boot == 0:
            self.sampler = Sampler(g)
            self.sampler.start()
        elif name == "churned":
            # Compaction runs in main-loop steps; wait until it is idle.
            quiet = 0
            deadline = time.time() + 60
            while quiet < 3 and time.time() < deadline:
                quiet = 0 if g.qmp.get("compact") else quiet + 1
                time.sleep(0.3)
            run.host[name] = g.qmp.get("stats")
            run.host[name]["idle"] = quiet >= 3
            st = run.host[name]
            log("churned: memory-held %.1f MiB, payload/held %.4f, "
                "fragmentation %.1f MiB, %d compactions, %.1f MiB freed by "
                "them" % (st["memory-held"] / MiB, efficiency(st),
                          st["fragmentation"] / MiB, st["compactions"],
                          st["compact-bytes-freed"] / MiB))
        elif name == "after-exit":
            want = run.st("after-exit", "pages_host")
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == want)
        elif name == "stopped":
            run.host[name] = wait_host(g, lambda s: s["stored-pages"] == 0)
            self.sampler.stop()
            time.sleep(0.5)
            self.final = self.sampler.sample()
        return super().on_sync(g, run, name)

    def check(self, run):
        result_ok(run, "main")
        no_failed_io(run, "after-exit", "host_errors")
        s = self.sampler
        expect(s.error is None, "sampling went on to the end (%s)" % s.error)
        log("%d samples (longest smaps read %.1f ms); store mappings %s" % (
            len(s.samples), s.longest_read * 1000, "named %s" % STORE_NAME
            if s.named else "found by VmFlags nh+dc"))
        expect(len(s.samples) >= 20, "sampled QEMU's memory %d times"
               % len(s.samples))
        worst = max(s.samples, key=lambda x: x[3] - max(x[1], x[2]))
        log("closest sample: store Rss %.2f MiB, memory-held %.2f/%.2f MiB"
            % (worst[3] / MiB, worst[1] / MiB, worst[2] / MiB))
        expect(all(x[3] <= max(x[1], x[2]) + SLACK for x in s.samples),
               "store's resident memory <= memory-held + 1 MiB at every sample")
        peak = max(s.samples, key=lambda x: max(x[1], x[2]))
        peak_held = max(peak[1], peak[2])
        expect(peak_held >= 24 * MiB, "memory-held peaked at %.1f MiB"
               % (peak_held / MiB))
        expect(peak[3] >= 0.9 * min(peak[1], peak[2]),
               "the store's mappings hold it at the peak (store Rss %.1f MiB)"
               % (peak[3] / MiB))
        fall = peak[4] - self.final[4]
        log("QEMU RSS %.1f MiB at the peak, %.1f MiB after swapoff (store"
            " Rss %.2f MiB, memory-held %.2f MiB)" % (
                peak[4] / MiB, self.final[4] / MiB, self.final[3] / MiB,
                self.final[2] / MiB))
        expect(fall >= 0.9 * peak_held,
               "QEMU's RSS fell by %.1f MiB >= 90%% of the peak memory-held"
               " (%.1f MiB)" % (fall / MiB, peak_held / MiB))
        c = run.host["churned"]
        expect(c["idle"], "compaction idle at the churned point")
        expect(c["compactions"] > 0 and c["compact-bytes-freed"] > 0,
               "automatic compaction ran (%d passes, %d bytes freed)"
               % (c["compactions"], c["compact-bytes-freed"]))
        expect(efficiency(c) >= 0.90,
               "payload / memory-held after churn %.4f >= 0.90"
               % efficiency(c))
        host_agrees(run, "after-exit")
        host_empty_after_stop(run)
