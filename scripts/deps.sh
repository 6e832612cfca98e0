#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs the Debian packages a vtmem task needs, idempotently.
# Usage: scripts/deps.sh GROUP...
#   groups: build test qemu guest libvirt bench fuzz style root
# Fast when everything is present: apt-get runs only for missing packages.
# Another apt-get at work (a parallel build, a helper) is waited for, up to
# 10 minutes, instead of failing on the dpkg lock.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

packages() {
	case $1 in
	build) echo meson ninja-build pkg-config gcc libglib2.0-dev liblz4-dev \
		libjson-glib-dev libvirt-dev libmicrohttpd-dev ;;
	test) echo valgrind python3-prometheus-client tmux ;;
	qemu) echo dpkg-dev libpixman-1-dev libfdt-dev zlib1g-dev python3-venv qemu-utils \
		seabios qemu-system-data ipxe-qemu ccache ;;
	guest) echo busybox-static cpio kmod python3 gcc libc6-dev make xz-utils \
		dkms pahole mmdebstrap e2fsprogs ;;
	libvirt) echo libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
		libvirt-dev tini ;;
	bench) echo stress-ng gnuplot-nox util-linux ;;
	fuzz) echo clang libclang-rt-14-dev ;;
	style) echo shellcheck perl git ;;
	root) echo mmdebstrap ;;	# scripts/debian-root.sh
	*) return 1 ;;
	esac
}

[ $# -gt 0 ] || { echo "usage: $0 GROUP... (build test qemu guest libvirt bench fuzz style root)" >&2; exit 2; }
want=""
for group in "$@"; do
	list=$(packages "$group") || {
		echo "deps.sh: unknown group '$group' (build test qemu guest libvirt bench fuzz style root)" >&2
		exit 2
	}
	want="$want $list"
done

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done

# QEMU's source comes from Debian's source package: it needs a deb-src entry,
# taken from the mirror the machine's apt already uses.
update=0
case " $* " in
*" qemu "* | *" guest "*)
	if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		# shellcheck source=scripts/apt-mirror.sh
		. "$here/apt-mirror.sh"
		mirror=$(debian_mirror)
		# shellcheck source=/dev/null
		codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
		cat >/etc/apt/sources.list.d/vtmem-deb-src.sources <<SRC
Types: deb-src
URIs: $mirror
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		update=1
	fi
	;;
esac

if [ -n "$missing" ] || [ "$update" = 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	# shellcheck disable=SC2086 # a list of package names
	[ -z "$missing" ] || apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi
