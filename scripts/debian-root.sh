#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A cached Debian root file system, made with mmdebstrap from the mirror this
# machine's apt uses (scripts/apt-mirror.sh), for builds and checks that need
# another Debian release (trixie's gcc-14 for trixie kernels) or a pristine
# one (scripts/fresh-check.sh).
#
# Usage: scripts/debian-root.sh SUITE [PACKAGE...]
#   Prints the path of the root: ${VTMEM_CACHE:-~/.cache/vtmem}/roots/SUITE-HASH,
#   HASH naming the package list. Made once (a few minutes), then reused as it
#   is: callers that change a root copy it first. The root's apt sources are
#   SUITE, SUITE-updates and SUITE-backports (backports only on request: apt
#   prefers the release). VTMEM_ROOT_VARIANT (default: important) is passed to
#   mmdebstrap's --variant.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 SUITE [PACKAGE...]" >&2; exit 2; }
suite=$1
shift
variant=${VTMEM_ROOT_VARIANT:-important}
cache=${VTMEM_CACHE:-$HOME/.cache/vtmem}/roots
mkdir -p "$cache"

sh "$here/deps.sh" root

key=$(printf '%s\n' "$suite" "$variant" "$@" | sort | md5sum | cut -c1-10)
root=$cache/$suite-$key
(
	flock 9
	[ -f "$root/.vtmem-root-done" ] && exit 0
	# shellcheck source=scripts/apt-mirror.sh
	. "$here/apt-mirror.sh"
	mirror=$(debian_mirror)
	include=$(echo "$@" | tr ' ' ',')
	rm -rf "$root" "$root.tmp"
	mkdir -p "$root.tmp"
	# bookworm's archive keyring also holds the keys of trixie and later.
	mmdebstrap --variant="$variant" ${include:+--include="$include"} \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		--aptopt='Acquire::Retries "3"' \
		"$suite" "$root.tmp" \
		"deb $mirror $suite main" \
		"deb $mirror $suite-updates main" \
		"deb $mirror $suite-backports main" >"$cache/$suite-$key.log" 2>&1 || {
		tail -n 20 "$cache/$suite-$key.log" >&2
		rm -rf "$root.tmp"
		exit 1
	}
	touch "$root.tmp/.vtmem-root-done"
	mv "$root.tmp" "$root"
) 9>"$cache/.lock-$suite-$key"
echo "$root"
