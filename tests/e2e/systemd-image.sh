#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The systemd guest of the e2e tests: a Debian 13 (trixie) disk image with
# systemd, Debian's kernel and initramfs, our module and vtmem.service
# installed the way a user installs them, and the test's own units.
#
# Usage: tests/e2e/systemd-image.sh KO SWAPVERIFY [OUT]
#   KO: virtio_tmem.ko built for a trixie kernel (its vermagic names the
#   kernel); SWAPVERIFY: the static workload. Prints (and writes to OUT) the
#   image's directory: root.img (ext4, label vtmem-root), vmlinuz,
#   initrd.img and kver. Cached under ${VTMEM_CACHE:-~/.cache/vtmem}:
#   1. roots/trixie-guest-KEY: mmdebstrap --variant=minbase with systemd-sysv,
#      udev, kmod, mount, util-linux and the kernel's package (the .deb
#      guest-kernel.sh downloaded, else from the mirror), whose postinst
#      makes Debian's initramfs (MODULES=list: virtio_pci, virtio_blk, ext4).
#      KEY names the packages; made once, never changed afterwards.
#   2. images/systemd-KEY2: a hard-linked copy of that root (files are
#      replaced, never written into), plus
#        the module in /lib/modules/KVER/updates and depmod (as `make
#          install` does), vtmem-setup, vtmem.service and /etc/vtmem.conf
#          by `make install-systemd`, `systemctl enable vtmem.service`;
#        the test: fstab (root, a disk swap), the config's backing device,
#          tests/e2e/guest/systemd's units and scripts, lib.sh, swapverify;
#      then `mke2fs -d` makes root.img from it (no loop mount). KEY2 hashes
#      the root's KEY and every file put in: rebuilt only when one changes.
#      Images not asked for in a day are removed.
# Disks the guest expects (virtio-blk serials, see /dev/disk/by-id):
# vtmem-root (this image), vtmem-backing (vtmem's backing disk),
# vtmem-swap (a disk swap, mkswap'ed by the harness).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 KO SWAPVERIFY [OUT]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
ko=$(readlink -f "$1")
swapverify=$(readlink -f "$2")
out=${3:-}
cache=${VTMEM_CACHE:-$HOME/.cache/vtmem}
suite=trixie
packages="systemd-sysv udev kmod mount util-linux"

kver=$(modinfo -F vermagic "$ko" | cut -d' ' -f1)
case $kver in
*+deb13-*) ;;
*) echo "systemd-image.sh: $ko is not for a trixie kernel ($kver)" >&2; exit 1 ;;
esac

# The kernel's packages: those guest-kernel.sh downloaded (the unsigned
# image, or from 7.x its binary, modules and base packages), else by name.
debs=""
for p in "linux-image-$kver-unsigned" "linux-binary-$kver" "linux-modules-$kver" \
	"linux-base-$kver"; do
	for f in "$cache/debs/${p}_"*.deb; do
		[ -f "$f" ] && debs="$debs $f"
	done
done
[ -n "$debs" ] || debs="linux-image-$kver"

"$src/scripts/deps.sh" root >/dev/null

# 1. The root, made once per package set.
roots=$cache/roots
mkdir -p "$roots"
# Bump v1 when the recipe below changes.
key=$( (echo v1 "$suite" "$packages"; for d in $debs; do basename "$d"; done) |
	md5sum | cut -c1-10)
root=$roots/$suite-guest-$key
# shellcheck disable=SC2016 # $1 in the hooks: mmdebstrap's root directory
(
	flock 9
	[ -f "$root/.vtmem-root-done" ] && exit 0
	# shellcheck source=scripts/apt-mirror.sh
	. "$src/scripts/apt-mirror.sh"
	mirror=$(debian_mirror)
	rm -rf "$root" "$root.tmp"
	log=$roots/$suite-guest-$key.log
	incl=""
	for d in $debs; do
		incl="$incl --include=$d"
	done
	# Debian's initramfs with only what mounts the root (MODULES=list):
	# written before the packages are installed, so that the kernel's
	# postinst makes it once.
	conf='printf "MODULES=list\nRESUME=none\n" >"$1/etc/initramfs-tools/conf.d/vtmem-guest"'
	mods='printf "virtio_pci\nvirtio_blk\next4\n" >"$1/usr/share/initramfs-tools/modules.d/vtmem-guest"'
	# shellcheck disable=SC2086 # $incl: one --include=PATH a word
	mmdebstrap --variant=minbase --include="$(echo "$packages" | tr ' ' ,)" $incl \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		--aptopt='Acquire::Retries "3"' --aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
		--setup-hook="$conf" --setup-hook="$mods" \
		"$suite" "$root.tmp" \
		"deb $mirror $suite main" "deb $mirror $suite-updates main" \
		"deb $mirror $suite-backports main" >"$log" 2>&1 || {
		tail -n 20 "$log" >&2
		rm -rf "$root.tmp"
		exit 1
	}
	[ -f "$root.tmp/boot/initrd.img-$kver" ] || {
		echo "systemd-image.sh: no initramfs made for $kver (see $log)" >&2
		exit 1
	}
	touch "$root.tmp/.vtmem-root-done"
	mv "$root.tmp" "$root"
) 9>"$roots/.lock-$suite-guest-$key"

# 2. The image: the root plus what a user installs plus the test.
g=$here/guest
files="$ko $swapverify $src/guest-driver/vtmem-setup $src/guest-driver/Makefile
	$src/guest-driver/systemd/vtmem.service $src/guest-driver/systemd/vtmem.conf
	$g/lib.sh $g/systemd/e2e.sh $g/systemd/hold.sh $g/systemd/vtmem-e2e.service
	$g/systemd/vtmem-e2e-hold.service $0"
# shellcheck disable=SC2086 # paths without blanks
key2=$( (echo "$key $kver"; md5sum $files | cut -d' ' -f1) | md5sum | cut -c1-10)
images=$cache/images
img=$images/systemd-$key2
mkdir -p "$images"
(
	flock 9
	if [ -f "$img/.done" ]; then
		touch "$img"
		exit 0
	fi
	rm -rf "$img" "$img.tmp"
	mkdir -p "$img.tmp"
	t=$img.tmp/root
	cp -al "$root" "$t"
	rm -f "$t/.vtmem-root-done"
	# put PATH: write a file afresh (a hard link would change the root).
	put() {
		rm -f "$t$1"
		mkdir -p "$(dirname "$t$1")"
		cat >"$t$1"
	}
	# enable_unit UNIT: the guest's systemctl (it warns that /proc is missing).
	enable_unit() {
		chroot "$t" systemctl --quiet enable "$1" 2>"$img.tmp/enable.log" || {
			cat "$img.tmp/enable.log" >&2
			exit 1
		}
	}
	# The module built for this kernel, as `make install` puts it.
	mkdir -p "$t/lib/modules/$kver/updates"
	cp "$ko" "$t/lib/modules/$kver/updates/virtio_tmem.ko"
	# depmod replaces its files (writes new ones and renames them).
	chroot "$t" depmod "$kver"
	# vtmem-setup, vtmem.service, /etc/vtmem.conf; then enable it.
	make -s -C "$src/guest-driver" install-systemd DESTDIR="$t" >/dev/null
	enable_unit vtmem.service
	# The user's configuration: the backing disk, default size and priority.
	sed 's|^backing-device =.*|backing-device = /dev/disk/by-id/virtio-vtmem-backing|' \
		"$src/guest-driver/systemd/vtmem.conf" | put /etc/vtmem.conf
	printf '%s\n' 'LABEL=vtmem-root / ext4 defaults 0 0' \
		'/dev/disk/by-id/virtio-vtmem-swap none swap sw,x-systemd.device-timeout=10min 0 0' |
		put /etc/fstab
	echo vtmem-guest | put /etc/hostname
	# A machine id: not a first boot (systemd-firstboot would ask questions).
	echo "$key2$key2$key2$key2" | cut -c1-32 | put /etc/machine-id
	# The test.
	mkdir -p "$t/usr/local/lib/vtmem-e2e" "$t/usr/local/bin"
	cp "$g/lib.sh" "$g/systemd/e2e.sh" "$g/systemd/hold.sh" "$t/usr/local/lib/vtmem-e2e/"
	cp "$swapverify" "$t/usr/local/bin/swapverify"
	cp "$g/systemd/vtmem-e2e.service" "$g/systemd/vtmem-e2e-hold.service" \
		"$t/etc/systemd/system/"
	enable_unit vtmem-e2e.service
	# Not a system whose /usr changed since its last boot: without these,
	# every boot of the (snapshot) image runs ldconfig, the hwdb and the
	# journal catalog rebuild (ConditionNeedsUpdate), slow under TCG.
	touch "$t/etc/.updated" "$t/var/.updated"
	# The image: the tree's size plus a quarter and 64 MiB.
	mb=$(du -sm "$t" | cut -f1)
	truncate -s "$((mb * 5 / 4 + 64))M" "$img.tmp/root.img"
	mke2fs -q -t ext4 -b 4096 -L vtmem-root -d "$t" "$img.tmp/root.img"
	cp "$t/boot/vmlinuz-$kver" "$img.tmp/vmlinuz"
	cp "$t/boot/initrd.img-$kver" "$img.tmp/initrd.img"
	echo "$kver" >"$img.tmp/kver"
	rm -rf "$t" "$img.tmp/enable.log"
	touch "$img.tmp/.done"
	mv "$img.tmp" "$img"
	find "$images" -mindepth 1 -maxdepth 1 -name 'systemd-*' -mtime +0 \
		-exec rm -rf {} +
) 9>"$images/.lock-systemd"
[ -z "$out" ] || echo "$img" >"$out"
echo "$img"
