#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Finds and fetches the Debian 6.1 guest kernel for vtmem's end-to-end tests.
#
# Usage: tests/e2e/guest-kernel.sh [print|fetch]
#   fetch (default): make sure linux-headers-<ver> is installed and the
#     matching linux-image-<ver>-unsigned .deb is unpacked under
#     ${VTMEM_CACHE:-$HOME/.cache/vtmem}/kernel-<ver>/; print <ver>.
#   print: only print the version that would be used.
#
# <ver> is 6.1.0-NN-amd64 with the newest NN for which the registry has both
# linux-image-6.1.0-NN-amd64-unsigned and linux-headers-6.1.0-NN-amd64.
# VTMEM_KVER overrides the choice.
# Needs: apt, dpkg-deb (runs apt-get update once if no kernel is listed).
set -eu

cache=${VTMEM_CACHE:-$HOME/.cache/vtmem}

pick() {
	if [ -n "${VTMEM_KVER:-}" ]; then
		echo "$VTMEM_KVER"
		return
	fi
	imgs=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' |
		sed -n 's/^linux-image-\(6\.1\.0-[0-9]*\)-amd64-unsigned .*/\1/p')
	hdrs=$(apt-cache search --names-only '^linux-headers-6\.1\.0-[0-9]+-amd64$' |
		sed -n 's/^linux-headers-\(6\.1\.0-[0-9]*\)-amd64 .*/\1/p')
	best=""
	for v in $imgs; do
		case " $(echo $hdrs) " in *" $v "*) ;; *) continue ;; esac
		best="$best $v"
	done
	best=$(echo $best | tr ' ' '\n' | sort -t- -k2,2n | tail -n 1)
	if [ -z "$best" ] && [ -z "${refreshed:-}" ]; then
		# Package lists missing or stale: refresh them once.
		refreshed=1
		apt-get update -qq >&2
		pick
		return
	fi
	if [ -z "$best" ]; then
		echo "guest-kernel.sh: no linux-image/linux-headers 6.1.0-NN-amd64 pair found" >&2
		exit 1
	fi
	echo "$best-amd64"
}

ver=$(pick)
case "${1:-fetch}" in
print)
	echo "$ver"
	exit 0
	;;
fetch) ;;
*)
	echo "usage: $0 [print|fetch]" >&2
	exit 2
	;;
esac

if [ ! -d "/usr/src/linux-headers-$ver" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"linux-headers-$ver" >&2
fi

dir="$cache/kernel-$ver"
if [ ! -f "$dir/.done" ]; then
	mkdir -p "$cache/debs"
	(cd "$cache/debs" && { ls linux-image-"$ver"-unsigned_*.deb >/dev/null 2>&1 ||
		apt-get download -q "linux-image-$ver-unsigned" >&2; })
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	dpkg-deb -x "$cache/debs"/linux-image-"$ver"-unsigned_*.deb "$dir.tmp"
	touch "$dir.tmp/.done"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
fi
echo "$ver"
