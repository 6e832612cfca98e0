# SPDX-License-Identifier: GPL-2.0-or-later
"""The README's main job (scripts/demo.sh): a guest swaps a verified
workload into the host pool; prints what the pool holds, as an operator
would read it.
  python3 -m vtmem_harness.demo [options]
(with tests/e2e on PYTHONPATH; options and environment as in cli.py).
VTMEM_DEMO_MIB: workload size (default 384 MiB in a 96 MiB cgroup).
"""

import os
import sys

from . import cli
from .checks import MiB, expect, result_ok
from .runner import Scenario

GUEST_STATS = ("pages_host", "pages_same", "pages_disk", "host_puts", "host_gets",
               "invalidated_slots", "failed_reads", "failed_writes")


class Demo(Scenario):
    name = "demo"
    tm = "limit=512M"
    disk_mb = 512
    timeout = 900
    params = {"MIB": os.environ.get("VTMEM_DEMO_MIB", "384")}

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
        expect(stored > 0, "the host pool holds the guest's swapped pages")
        print()
        print("vtmem demo: %d MiB written by the guest in a 96 MiB cgroup, "
              "every byte verified (write %.1f s, verify %.1f s)"
              % (r["pages"] * 4096 // MiB, r["write_ms"] / 1e3,
                 r["verify_ms"] / 1e3))
        print("host pool, after the write pass (QMP qom-get on the device):")
        print("  pages stored       %8d  (%.1f MiB of guest memory)"
              % (stored, stored * 4096 / MiB))
        print("    same-filled      %8d  (kept as one word, no memory)"
              % w["same-filled-pages"])
        print("    incompressible   %8d  (kept raw)" % w["raw-pages"])
        print("  compressed bytes   %8.1f MiB" % (w["compressed-bytes"] / MiB))
        print("  memory held        %8.1f MiB  (limit %d MiB)"
              % (held / MiB, w["limit"] // MiB))
        if held:
            print("  compression ratio  %8.2f : 1  (guest bytes / host memory held)"
                  % (stored * 4096 / held))
        print("  refusals           %8d" % w["refusals"])
        print("guest driver (/sys/block/vtmem0/vtmem/stat) at the end:")
        for key in GUEST_STATS:
            print("  %-18s %8d" % (key, run.st("demo", key)))
        print("after swapoff the pool holds %d pages, %.1f MiB"
              % (run.host["stopped"]["stored-pages"],
                 run.host["stopped"]["memory-held"] / MiB))
        print()


if __name__ == "__main__":
    sys.exit(cli.main({"demo": Demo}, __doc__))
