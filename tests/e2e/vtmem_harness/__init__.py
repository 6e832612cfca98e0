# SPDX-License-Identifier: GPL-2.0-or-later
"""The vtmem end-to-end harness: boot a Debian guest in our QEMU with the
virtio-tmem device, swap through /dev/vtmem0, check data and statistics.

  image       the guest kernel (its selection) and initramfs
  machine     one QEMU process: command line, console reader
  qmp         QMP through QEMU's own python/qemu/qmp client
  console     the VTMEM-* console protocol (written down there)
  runner      how a scenario runs: Scenario, run_guest, pick_accel
  checks      Fail, log, expect and the checks scenarios share
  scenarios/  the tests: basic, lifecycle, shrink, systemd (a Debian 13
              systemd guest from a disk image)
  measure     measurements (meson benchmarks): bench, shrink-bench
  demo        scripts/demo.sh's run
  cli         the command line of the entry points

The guest side is in tests/e2e/guest/ (init, lib.sh, scenarios/NAME.sh).
"""
