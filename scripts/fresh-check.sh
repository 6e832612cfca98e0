#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs the README's test command the way a newcomer would: on a pristine
# Debian 12 root (mmdebstrap, cached by scripts/debian-root.sh; only the
# root is cached, nothing else) with a clean clone of this repository's HEAD,
# as root in a chroot with /dev, /proc and /sys bound. So it also proves that
# the README's command installs everything it needs, and the libvirt suite
# changes nothing on this machine.
#
# Usage (root): scripts/fresh-check.sh [COMMAND]
#   COMMAND defaults to scripts/test.sh; e.g. scripts/demo.sh checks the
#   main job. Work dir: ${VTMEM_FRESH_DIR:-/var/tmp/vtmem-fresh} (made anew;
#   its log is fresh.log there). Exit status: the command's.
#   VTMEM_FRESH_CCACHE=1 lends the root this machine's ccache (compiler
#   output only: a missing header or package still fails the build).
# A cold run (apt installs, QEMU source and builds, guest kernel download)
# takes 30-40 minutes on 2 idle cores: a by-hand check, not part of CI.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-scripts/test.sh}
work=${VTMEM_FRESH_DIR:-/var/tmp/vtmem-fresh}
[ "$(id -u)" = 0 ] || { echo "fresh-check.sh: run as root (chroot)" >&2; exit 2; }

base=$("$top/scripts/debian-root.sh" bookworm)
if [ -d "$work/root" ]; then
	# A root left by an interrupted run may still have mounts in it.
	grep -q " $work/root" /proc/mounts &&
		awk -v w="$work/root" '$2 ~ "^" w { print $2 }' /proc/mounts |
		sort -r | xargs -r -n1 umount -l
fi
rm -rf "$work"
mkdir -p "$work"
cp -a "$base" "$work/root"
git clone -q "$top" "$work/root/root/vtmem"
git -C "$work/root/root/vtmem" log -1 --format='fresh-check of %h %s'

if [ "${VTMEM_FRESH_CCACHE:-0}" = 1 ] && [ -d "$HOME/.cache/ccache" ]; then
	mkdir -p "$work/root/root/.cache/ccache"
	mount --bind "$HOME/.cache/ccache" "$work/root/root/.cache/ccache"
	trap 'umount -l "$work/root/root/.cache/ccache"' EXIT
fi

start=$(date +%s)
{
	status=0
	"$top/scripts/in-root.sh" "$work/root" /bin/sh -c \
		"cd /root/vtmem && exec $cmd" || status=$?
	echo "$status" >"$work/status"
} 2>&1 | tee "$work/fresh.log"
status=$(cat "$work/status")
echo "fresh-check: '$cmd' in $(( $(date +%s) - start )) s on a fresh Debian 12 root ($work/root)"
exit "$status"
