#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds virtio_tmem.ko with kbuild in a copy of the sources under the build
# directory, so that the source tree stays clean.
# Usage: kbuild.sh KVER OUTDIR SOURCE...
set -eu
kver=$1
out=$2
shift 2
kdir=/usr/src/linux-headers-$kver
[ -d "$kdir" ] || { echo "kbuild.sh: $kdir missing (run tests/e2e/guest-kernel.sh)" >&2; exit 1; }
work=$out/kbuild
mkdir -p "$work"
for f in "$@"; do
	cmp -s "$f" "$work/$(basename "$f")" || cp "$f" "$work/"
done
make -s -C "$kdir" M="$(cd "$work" && pwd)" modules 2>&1 | grep -v 'Skipping BTF generation' >&2 || true
[ -f "$work/virtio_tmem.ko" ] && [ "$work/virtio_tmem.ko" -nt "$work/virtio_tmem.c" ] || {
	echo "kbuild.sh: build failed" >&2
	exit 1
}
cp "$work/virtio_tmem.ko" "$out/virtio_tmem.ko"
