#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# QEMU's scripts/checkpatch.pl on the device and on every host-side C file:
# host-pool/store and host-pool/client are compiled into QEMU, and the rest
# of host-pool/, the tests and the benchmarks follow the same house style.
# The script comes from the QEMU source tree that qemu-device/build-qemu.sh
# unpacks in ${VTMEM_CACHE:-~/.cache/vtmem}/qemu-src.
# Usage: checkpatch-qemu.sh SOURCE_ROOT
set -eu
top=$(cd "${1:?usage: $0 SOURCE_ROOT}" && pwd)
src=${VTMEM_CACHE:-$HOME/.cache/vtmem}/qemu-src
script=$(find "$src" -maxdepth 3 -path '*/scripts/checkpatch.pl' | sort | tail -n 1)
[ -n "$script" ] || { echo "no QEMU source in $src (build with -Dqemu=true first)"; exit 1; }
status=0
# The device's files where they stand in QEMU's tree (checkpatch treats
# tests/ differently from hw/), the host-side ones from the repository root.
cd "$top/qemu-device"
for f in $(git ls-files '*.[ch]'); do
	perl "$script" --no-tree --terse -f "$f" || status=1
done
cd "$top"
for f in $(git ls-files 'host-pool/*.[ch]' 'tests/unit/*.c' 'tests/daemon/*.[ch]' \
		'tests/fuzz/*.[ch]' 'bench/*.c'); do
	perl "$script" --no-tree --terse -f "$f" || status=1
done
exit $status
