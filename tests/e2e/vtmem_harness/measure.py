# SPDX-License-Identifier: GPL-2.0-or-later
"""Measurements (not tests), run as meson benchmarks:
  python3 -m vtmem_harness.measure bench|shrink-bench [options]
(with tests/e2e on PYTHONPATH; options and environment as in cli.py).

bench         a verify workload through vtmem (sync_io and cached) and
              through a plain virtio-blk swap disk: BENCH lines.
              VTMEM_BENCH_TM: device options; VTMEM_BENCH_MIB: workload size.
shrink-bench  the host holds 256 MiB (its limit) of the guest's pages; the
              limit drops to 32 MiB: time until memory-held <= 32 MiB
              (SHRINK-BENCH line). VTMEM_SHRINK_MIB: workload size;
              VTMEM_SHRINK_OPTS: driver options.
"""

import os
import sys

from . import cli
from .checks import MiB, log, result_ok
from .runner import Scenario
from .scenarios.shrink import Shrink


class Bench(Scenario):
    """512 MiB verify workload: vtmem vs a plain virtio-blk swap disk."""
    name = "bench"
    tm = os.environ.get("VTMEM_BENCH_TM", "limit=1G")
    disk_mb = 1024
    extra_disks = (("swapdisk.img", 1024),)
    timeout = 900
    params = {"MIB": os.environ.get("VTMEM_BENCH_MIB", "512")}

    def check(self, run):
        for tag in ("vtmem", "vtmem-cached", "disk"):
            r = result_ok(run, tag)
            log("BENCH %s: write %.2f s, verify %.2f s, total %.2f s"
                % (tag, r["write_ms"] / 1e3, r["verify_ms"] / 1e3,
                   (r["write_ms"] + r["verify_ms"]) / 1e3))


class ShrinkBench(Shrink):
    """The host holds 256 MiB (its limit) of the guest's pages; the limit
    drops to 32 MiB: time until memory-held <= 32 MiB."""
    name = "shrink-bench"
    disk_mb = 1536
    timeout = 900
    params = {"MIB": int(os.environ.get("VTMEM_SHRINK_MIB", "1000")),
              "SHRINK_OPTS": os.environ.get("VTMEM_SHRINK_OPTS", "")}

    def check(self, run):
        super().check(run)
        e = run.stats["end"]
        log("SHRINK-BENCH %.1f MiB -> %d MiB held in %.2f s; %d pages "
            "(%.1f MiB) moved to the disk"
            % (run.host["before"]["memory-held"] / MiB, self.target // MiB,
               self.took, e["shrink_pages"], e["shrink_bytes"] / MiB))


MEASUREMENTS = {c.name: c for c in [Bench, ShrinkBench]}

if __name__ == "__main__":
    sys.exit(cli.main(MEASUREMENTS, __doc__))
