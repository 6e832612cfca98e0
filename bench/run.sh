#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# vtmem swap benchmark: vtmem vs a virtio-blk swap disk vs in-guest zram (LZ4),
# plus the page store microbenchmark. See docs/benchmarks.md.
# Usage: bench/run.sh [--quick] [--reps N] [--out DIR] [--setups vtmem,disk,zram]
#                     [--workloads swapverify,stress-ng]
# Build dir: $VTMEM_BUILD, else ./build, else the newest build*/ with our QEMU.
# Also: meson compile -C BUILD bench
# Run by hand, it installs what it needs and builds (or refreshes) ./build.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
b=${VTMEM_BUILD:-}
if [ -z "$b" ]; then
	"$src/scripts/deps.sh" build qemu guest bench
	for d in "$src/build" $(ls -dt "$src"/build* 2>/dev/null); do
		if [ -e "$d/qemu-device/qemu-system-x86_64" ]; then b=$d; break; fi
	done
	if [ -z "$b" ]; then
		b=$src/build
		meson setup "$b" -Dqemu=true -Dguest=true >/dev/null
	fi
	meson compile -C "$b" >/dev/null
fi
: "${VTMEM_QEMU:=$b/qemu-device/qemu-system-x86_64}"
: "${VTMEM_KO:=$b/guest-driver/virtio_tmem.ko}"
: "${VTMEM_SWAPVERIFY:=$b/tests/e2e/swapverify}"
: "${VTMEM_STORE_BENCH:=$b/bench/vtmem-store-bench}"
: "${VTMEM_SETUP:=$src/guest-driver/vtmem-setup}"
export VTMEM_QEMU VTMEM_KO VTMEM_SWAPVERIFY VTMEM_STORE_BENCH VTMEM_SETUP
# vtmem_bench.py uses the e2e harness package (tests/e2e/vtmem_harness).
PYTHONPATH=$src/tests/e2e${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH
exec python3 "$src/bench/vtmem_bench.py" "$@"
