#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# DKMS check (TAP): `make dkms-src` into a scratch root, then `dkms add` and
# `dkms build` for each kernel, in private DKMS trees (the host's
# /var/lib/dkms and /usr/src are not touched, nor its MOK key). Each build must give a
# virtio_tmem.ko whose vermagic is that kernel's.
# Usage: dkms-test.sh WORKDIR KVER=KDIR...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$1
shift
version=0.1.0
command -v dkms >/dev/null || { echo "1..0 # SKIP dkms not installed"; exit 0; }
rm -rf "$work"
mkdir -p "$work/dkms"
make -s -C "$here" dkms-src DESTDIR="$work/root" VERSION=$version
# dkms signs modules; keep its generated MOK key pair here, not in
# /var/lib/dkms.
export mok_signing_key="$work/mok.key" mok_certificate="$work/mok.pub"
trees="--dkmstree $work/dkms --sourcetree $work/root/usr/src"
echo "1..$(($# + 1))"
# shellcheck disable=SC2086 # $trees: options without blanks
if dkms add $trees -m vtmem -v $version >"$work/add.log" 2>&1; then
	echo "ok 1 dkms add"
else
	sed 's/^/# /' "$work/add.log"
	echo "not ok 1 dkms add"
	exit 1
fi
n=1
rc=0
for k in "$@"; do
	n=$((n + 1))
	kver=${k%%=*}
	kdir=${k#*=}
	log=$work/build-$kver.log
	ko=$work/dkms/vtmem/$version/$kver/$(uname -m)/module/virtio_tmem.ko
	# shellcheck disable=SC2086
	if dkms build $trees -m vtmem -v $version -k "$kver" \
		--kernelsourcedir "$kdir" >"$log" 2>&1 &&
		[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$kver" ]; then
		echo "ok $n dkms build for $kver"
	else
		sed 's/^/# /' "$log"
		for f in "$work"/dkms/vtmem/$version/build/make.log; do
			[ -f "$f" ] && tail -n 20 "$f" | sed 's/^/# /'
		done
		echo "not ok $n dkms build for $kver"
		rc=1
	fi
done
exit $rc
