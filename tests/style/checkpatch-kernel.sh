#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The kernel's checkpatch.pl --strict on the guest-side C (the driver and the
# guest workload). checkpatch.pl comes from Debian's linux-source package
# (only its scripts/ files are kept, in ${VTMEM_CACHE:-~/.cache/vtmem}).
# Usage: checkpatch-kernel.sh SOURCE_ROOT
set -eu
top=$(cd "${1:?usage: $0 SOURCE_ROOT}" && pwd)
cache=${VTMEM_CACHE:-$HOME/.cache/vtmem}/checkpatch-kernel
if [ ! -f "$cache/scripts/checkpatch.pl" ]; then
	mkdir -p "$cache"
	(
		flock 9
		[ -f "$cache/scripts/checkpatch.pl" ] && exit 0
		tmp=$(mktemp -d "$cache/tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		pkg=$(apt-cache depends linux-source 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-source-[0-9.]*\)$/\1/p' | head -n 1)
		[ -n "$pkg" ] || pkg=linux-source-6.1
		(cd "$tmp" && apt-get -o APT::Sandbox::User=root download -q "$pkg" >/dev/null)
		dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb |
			tar -x -C "$tmp" --wildcards '*/linux-source-*.tar.xz'
		tar -xJf "$tmp"/usr/src/linux-source-*.tar.xz -C "$tmp" \
			--wildcards --strip-components=1 '*/scripts/checkpatch.pl' \
			'*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'
		mkdir -p "$cache/scripts.tmp"
		cp "$tmp"/scripts/checkpatch.pl "$tmp"/scripts/spelling.txt \
			"$tmp"/scripts/const_structs.checkpatch "$cache/scripts.tmp/"
		mv "$cache/scripts.tmp" "$cache/scripts"
	) 9>"$cache/.lock"
fi
cd "$top"
cp=$cache/scripts/checkpatch.pl
status=0
# shellcheck disable=SC2046 # file names without spaces, from git
perl "$cp" --strict --no-tree --terse --show-types \
	-f $(git ls-files 'guest-driver/*.[ch]') || status=1
# The guest workloads are user space: C99 types are right there.
# shellcheck disable=SC2046
perl "$cp" --strict --no-tree --terse --show-types --ignore PREFER_KERNEL_TYPES \
	-f $(git ls-files 'tests/e2e/*.c') || status=1
exit $status
