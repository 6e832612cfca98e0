#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job, from a fresh Debian 12 machine (run as root): build QEMU 7.2
# with the virtio-tmem device and the guest driver, boot a guest with both,
# make it swap a verified workload into the host pool, and show the pool.
# Installs its own dependencies.
# VTMEM_DEMO_MIB sets the workload size (default 384 MiB, in a 96 MiB cgroup).
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh build qemu guest

mkdir -p build
if [ -f build/meson-private/coredata.dat ]; then
	set -- --reconfigure
fi
# One QEMU series (VTMEM_QEMU_SERIES: 7.2, Debian 12's, or 10.0, Debian 13's)
# and the module for Debian 12's kernel only: what the demo boots.
series=${VTMEM_QEMU_SERIES:-7.2}
case $series in
7.2) qemu="qemu-system-x86_64" ;;
10.0) qemu="qemu-system-x86_64-10.0" ;;
*) echo "VTMEM_QEMU_SERIES must be 7.2 or 10.0" >&2; exit 2 ;;
esac
meson setup "$@" build -Dqemu=true -Dqemu_series="$series" -Dguest=true \
	-Dkernel_matrix=false >build/demo-setup.log 2>&1 ||
	{ tail -n 20 build/demo-setup.log; exit 1; }
echo "building QEMU with the device, the guest module and the workload" \
	"(the first time takes a few minutes)"
meson compile -C build >build/demo-compile.log 2>&1 ||
	{ tail -n 40 build/demo-compile.log; exit 1; }

VTMEM_QEMU=$PWD/build/qemu-device/$qemu \
VTMEM_KO=$PWD/build/guest-driver/virtio_tmem.ko \
VTMEM_SETUP=$PWD/guest-driver/vtmem-setup \
VTMEM_SWAPVERIFY=$PWD/build/tests/e2e/swapverify \
VTMEM_E2E_WORKDIR=$PWD/build/demo \
PYTHONPATH=$PWD/tests/e2e \
	exec python3 -m vtmem_harness.demo
