#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Finds and fetches a Debian guest kernel for vtmem's end-to-end tests.
#
# Usage: tests/e2e/guest-kernel.sh [print|fetch|kdir] [SUITE]
#   SUITE: where the kernel comes from (default bookworm):
#     bookworm           Debian 12's 6.1.0-NN-amd64 (headers installed on the host)
#     bookworm-backports 6.12.N+deb12-amd64 (gcc-12: builds on a Debian 12 host)
#     trixie             Debian 13's 6.12.N+deb13-amd64 (trixie + trixie-updates)
#     trixie-backports   the newest N.M.K+deb13-amd64 there (7.x)
#   fetch (default): unpack linux-image-<ver>-unsigned (7.x: linux-binary-,
#     linux-modules- and linux-base-<ver>) under
#     ${VTMEM_CACHE:-$HOME/.cache/vtmem}/kernel-<ver>/ (and, for every suite
#     but bookworm, its headers, their -common package and linux-kbuild there
#     too); for bookworm install linux-headers-<ver> on the host; print <ver>.
#   print: only print the version that would be used.
#   kdir: fetch, then print the kbuild directory for <ver>.
#
# <ver> is the newest version for which SUITE has both
# linux-image-<ver>[-unsigned] and linux-headers-<ver>; nothing is hard-coded.
# VTMEM_KVER overrides the choice (its suite is found from its name).
# Other suites than the host's come from the host's own Debian mirror
# (scripts/apt-mirror.sh) through a private apt configuration in the cache;
# the host's apt sources are not changed.
# Needs: apt, dpkg-deb (runs apt-get update once if no kernel is listed).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${VTMEM_CACHE:-$HOME/.cache/vtmem}
cmd=${1:-fetch}
suite=${2:-bookworm}

case $suite in
bookworm) pat='6\.1\.0-[0-9]+' ;;
bookworm-backports) pat='[0-9]+\.[0-9]+\.[0-9]+\+deb12' ;;
trixie | trixie-backports) pat='[0-9]+\.[0-9]+\.[0-9]+\+deb13' ;;
*)
	echo "guest-kernel.sh: unknown suite '$suite'" >&2
	exit 2
	;;
esac

# A kernel version named by VTMEM_KVER tells its suite (+deb13 may be
# trixie or trixie-backports: the one that lists it).
if [ -n "${VTMEM_KVER:-}" ] && [ -z "${2:-}" ]; then
	case $VTMEM_KVER in
	*+deb12-*) suite=bookworm-backports ;;
	*+deb13-*) suite=trixie ;;
	esac
fi

# apt for $suite: the host's apt for bookworm, else a private configuration.
aptdir=$cache/apt/$suite
apt_private() {
	[ "$suite" != bookworm ] || return 0
	mirror=$(sh "$here/../../scripts/apt-mirror.sh")
	suites=$suite
	[ "$suite" != trixie ] || suites="trixie trixie-updates"
	mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial"
	list=$aptdir/sources.list
	: >"$list.tmp"
	for s in $suites; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
			"$mirror $s main" >>"$list.tmp"
	done
	mv "$list.tmp" "$list"
	touch "$aptdir/status"
}

aptopts() {
	[ "$suite" != bookworm ] || return 0
	printf '%s\n' -o "Dir::Etc::sourcelist=$aptdir/sources.list" \
		-o "Dir::Etc::sourceparts=-" -o "Dir::State::lists=$aptdir/lists" \
		-o "Dir::State::status=$aptdir/status" \
		-o "Dir::Cache=$aptdir" -o "Dir::Cache::archives=$aptdir/archives" \
		-o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root"
}

apt_run() {
	tool=$1
	shift
	# shellcheck disable=SC2046 # aptopts prints one word a line, no blanks
	(IFS='
' && exec "$tool" $(aptopts) "$@")
}

apt_update() {
	apt_private
	apt_run apt-get update -qq >&2
}

names() { # names KIND (image|headers): the <ver>s listed for that package kind
	if [ "$1" = image ]; then
		re="^linux-image-($pat)-amd64(-unsigned)?\$"
		sub='s/^linux-image-\(.*\)-amd64\(-unsigned\)\{0,1\} .*/\1/p'
	else
		re="^linux-headers-($pat)-amd64\$"
		sub='s/^linux-headers-\(.*\)-amd64 .*/\1/p'
	fi
	apt_run apt-cache search --names-only "$re" 2>/dev/null | sed -n "$sub"
}

pick() {
	if [ -n "${VTMEM_KVER:-}" ]; then
		echo "$VTMEM_KVER"
		return
	fi
	[ "$suite" = bookworm ] || [ -f "$aptdir/sources.list" ] || apt_update
	hdrs=" $(names headers | tr '\n' ' ') "
	best=$(for v in $(names image); do
		case $hdrs in *" $v "*) echo "$v" ;; esac
	done | sort -V | tail -n 1)
	if [ -z "$best" ] && [ -z "${refreshed:-}" ]; then
		# Package lists missing or stale: refresh them once.
		refreshed=1
		if [ "$suite" = bookworm ]; then
			apt-get update -qq >&2
		else
			apt_update
		fi
		pick
		return
	fi
	if [ -z "$best" ]; then
		echo "guest-kernel.sh: no linux-image/linux-headers pair for $suite" >&2
		exit 1
	fi
	echo "$best-amd64"
}

# The suite (trixie or trixie-backports) whose lists name $ver.
find_suite() {
	case $suite in trixie | trixie-backports) ;; *) return 0 ;; esac
	for suite in trixie trixie-backports; do
		aptdir=$cache/apt/$suite
		[ -f "$aptdir/sources.list" ] || apt_update
		apt_run apt-cache show "linux-headers-$ver" >/dev/null 2>&1 && return 0
	done
	echo "guest-kernel.sh: $ver is in neither trixie nor trixie-backports" >&2
	exit 1
}

# The packages that hold vmlinuz and the modules of $ver: the unsigned image
# or, from 7.x on (where linux-image-<ver> is a metapackage), its
# linux-binary-, linux-modules- and linux-base-<ver> (modules.builtin).
image_pkgs() {
	if apt_run apt-cache show "linux-image-$ver-unsigned" >/dev/null 2>&1; then
		echo "linux-image-$ver-unsigned"
		return
	fi
	apt_run apt-cache show --no-all-versions "linux-image-$ver" |
		sed -n 's/^Depends: //p' | tr ',' '\n' |
		sed -n 's/^ *\(linux-\(binary\|modules\|base\)-[^ ]*\).*/\1/p'
}

# The packages that make kbuild work for $ver outside /usr/src: the headers,
# the -common headers and linux-kbuild they depend on.
header_pkgs() {
	echo "linux-headers-$ver"
	apt_run apt-cache show --no-all-versions "linux-headers-$ver" |
		sed -n 's/^Depends: //p' | tr ',' '\n' |
		sed -n 's/^ *\(linux-\(headers\|kbuild\)-[^ ]*\).*/\1/p'
}

download() { # download PACKAGE...: into $cache/debs unless there already
	mkdir -p "$cache/debs"
	for p in "$@"; do
		ls "$cache/debs/${p}_"*.deb >/dev/null 2>&1 && continue
		(cd "$cache/debs" && apt_run apt-get download -q "$p" >&2)
	done
}

ver=$(pick)
case $cmd in
print)
	echo "$ver"
	exit 0
	;;
fetch | kdir) ;;
*)
	echo "usage: $0 [print|fetch|kdir] [SUITE]" >&2
	exit 2
	;;
esac
find_suite
apt_private

pkgs=$(image_pkgs | tr '\n' ' ')
if [ "$suite" = bookworm ]; then
	if [ ! -d "/usr/src/linux-headers-$ver" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			--no-install-recommends "linux-headers-$ver" >&2
	fi
	kdir=/usr/src/linux-headers-$ver
else
	# kbuild of a kernel with BTF runs pahole on the module.
	if [ "$suite" = bookworm-backports ] && ! command -v pahole >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			--no-install-recommends pahole >&2
	fi
	pkgs="$pkgs $(header_pkgs | tr '\n' ' ')"
	kdir=$cache/kernel-$ver/usr/src/linux-headers-$ver
fi

dir=$cache/kernel-$ver
if [ ! -f "$dir/.done" ]; then
	# shellcheck disable=SC2086 # package names have no blanks
	download $pkgs
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	for p in $pkgs; do
		for deb in "$cache/debs/${p}_"*.deb; do :; done
		dpkg-deb -x "$deb" "$dir.tmp"
	done
	# The headers' Makefile includes its -common twin by absolute path
	# under /usr/src: make it relative so the unpacked tree works.
	mk=$dir.tmp/usr/src/linux-headers-$ver/Makefile
	if [ "$suite" != bookworm ] && [ -f "$mk" ]; then
		# shellcheck disable=SC2016 # make syntax, not shell
		sed -i 's|^include /usr/src/|include $(dir $(lastword $(MAKEFILE_LIST)))../|' "$mk"
	fi
	echo "$suite" >"$dir.tmp/.suite"
	touch "$dir.tmp/.done"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
fi
if [ "$cmd" = kdir ]; then
	echo "$kdir"
else
	echo "$ver"
fi
