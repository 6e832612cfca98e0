# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# The libvirt suite's guest (functions: tests/e2e/guest/lib.sh). SEED, SEED2
# and PASSES come from vtmem_libvirt.py. One verifying workload larger than
# the guest's cgroup limit (so it swaps through vtmem and, when refused, to
# the backing disk), then a second one that keeps swapping until the VM is
# destroyed (holds budget).
setup -b /dev/vda -s 512M
echo "VTMEM-MARK up"
workload main 160 "$SEED" 64M passes="$PASSES"
stat_dump main
echo "VTMEM-MARK hold"
workload hold 96 "$SEED2" 40M passes=1000000
