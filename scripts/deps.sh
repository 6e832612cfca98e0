#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs the Debian packages a vtmem task needs, idempotently.
# Usage: scripts/deps.sh GROUP...   (groups: build test qemu guest bench)
# Fast when everything is present: apt-get runs only for missing packages.
set -eu

pkgs_build="meson ninja-build pkg-config gcc libglib2.0-dev liblz4-dev libjson-glib-dev libvirt-dev"
pkgs_test="valgrind"
pkgs_qemu="dpkg-dev libpixman-1-dev libfdt-dev zlib1g-dev python3-venv seabios qemu-system-data ipxe-qemu ccache"
pkgs_guest="busybox-static cpio kmod python3 gcc libc6-dev make"
pkgs_bench="stress-ng gnuplot-nox util-linux"
pkgs_libvirt="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev tini"

want=""
for group in "$@"; do
	eval "want=\"\$want \$pkgs_$group\""
done

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done

# QEMU's source comes from Debian's source package: needs a deb-src entry.
need_src=0
case " $* " in *" qemu "*|*" guest "*) need_src=1 ;; esac
if [ "$need_src" = 1 ] && ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	cat >/etc/apt/sources.list.d/vtmem-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	missing="$missing"
	updated=0
else
	updated=1
fi

if [ -n "$missing" ] || [ "$updated" = 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	[ -z "$missing" ] || apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
