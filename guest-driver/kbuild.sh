#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds virtio_tmem.ko with the driver's Makefile (feature probes, then
# kbuild) in a copy of the sources, so that the source tree stays clean.
# Usage: kbuild.sh KDIR WORKDIR OUTPUT SOURCE...
#        kbuild.sh --root SUITE KVER HEADERS WORKDIR OUTPUT SOURCE...
#   The second form builds inside a Debian SUITE root (scripts/debian-root.sh,
#   scripts/in-root.sh) holding linux-headers-KVER and its toolchain: trixie
#   kernels need gcc-14 and glibc >= 2.38, which a Debian 12 host lacks.
#   HEADERS: the comma-separated headers packages the root holds (those of
#   every kernel built in this suite's root, so that they share one root).
#   SOURCE files under a probes/ directory go to WORKDIR/probes/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
suite=
headers=
if [ "$1" = --root ]; then
	suite=$2
	kver=$3
	headers=$(echo "$4" | tr ',' ' ')
	shift 4
	kdir=/usr/src/linux-headers-$kver
else
	kdir=$1
	shift
fi
work=$1
output=$2
shift 2
mkdir -p "$work/probes"
for f in "$@"; do
	case $f in
	probes/* | */probes/*) dst=$work/probes/$(basename "$f") ;;
	*) dst=$work/$(basename "$f") ;;
	esac
	cmp -s "$f" "$dst" || cp "$f" "$dst"
done
rm -f "$work/virtio_tmem.ko"

if [ -z "$suite" ]; then
	[ -f "$kdir/Makefile" ] || {
		echo "kbuild.sh: $kdir missing (run tests/e2e/guest-kernel.sh)" >&2
		exit 1
	}
	make -s -C "$work" KDIR="$kdir" 2>&1 |
		grep -v 'Skipping BTF generation' >&2 || true
else
	case " $headers " in
	*" linux-headers-$kver "*) ;;
	*) echo "kbuild.sh: linux-headers-$kver not in the root's HEADERS" >&2; exit 2 ;;
	esac
	# shellcheck disable=SC2086 # package names, one a word
	root=$(VTMEM_ROOT_VARIANT=minbase \
		sh "$here/../scripts/debian-root.sh" "$suite" make binutils $headers)
	# A private directory in the root (its /tmp is shared by every
	# in-root.sh run), one build at a time per kernel.
	dir=/var/tmp/vtmem-kbuild-$kver
	(
		flock 9
		rm -rf "${root:?}$dir"
		mkdir -p "$root$dir"
		cp -r "$work"/. "$root$dir/"
		sh "$here/../scripts/in-root.sh" "$root" sh -c \
			'cd "$1" && TMPDIR=$1 make -s KDIR="$2"' sh "$dir" "$kdir" 2>&1 |
			grep -v 'Skipping BTF generation' >&2 || true
		[ ! -f "$root$dir/virtio_tmem.ko" ] ||
			cp "$root$dir/virtio_tmem.ko" "$root$dir/vtmem_probed.h" "$work/"
		rm -rf "${root:?}$dir"
	) 9>"$root.kbuild-lock-$kver"
fi
[ -f "$work/virtio_tmem.ko" ] || {
	echo "kbuild.sh: build failed against $kdir${suite:+ in a $suite root}" >&2
	exit 1
}
cp "$work/virtio_tmem.ko" "$output"
