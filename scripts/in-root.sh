#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs COMMAND as root inside the root file system ROOT (see
# scripts/debian-root.sh), with /dev, /dev/pts, /proc, /sys bound from the
# host, a fresh /run and /tmp, and the host's resolv.conf; unmounts on exit.
# Usage: scripts/in-root.sh ROOT COMMAND [ARG...]
set -eu
[ $# -ge 2 ] || { echo "usage: $0 ROOT COMMAND [ARG...]" >&2; exit 2; }
root=$(cd "$1" && pwd)
shift

mounted=""
cleanup() {
	for m in $mounted; do
		umount -l "$m" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

bind() { # bind HOST_PATH ROOT_PATH
	mkdir -p "$2"
	mount --rbind "$1" "$2"
	mount --make-rslave "$2"
	mounted="$2 $mounted"
}
bind /dev "$root/dev"
mkdir -p "$root/proc" "$root/run" "$root/tmp"
mount -t proc proc "$root/proc"
mounted="$root/proc $mounted"
bind /sys "$root/sys"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mounted="$root/run $mounted"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mounted="$root/tmp $mounted"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	LANG=C.UTF-8 CI="${CI:-}" "$@"
