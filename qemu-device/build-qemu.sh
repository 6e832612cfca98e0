#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Build Debian's QEMU (7.2 of Debian 12, or 10.0 of Debian 13) with the
# virtio-tmem device (qemu-device/), the vtmem page store
# (host-pool/store/*.c), the pool client (host-pool/client/*.c, GLib only)
# and the device's request decoding (qemu-device/req/*.c, plain C) compiled
# in.
#
# Usage: build-qemu.sh WORKDIR [plain] [sanitized]
#   WORKDIR/src        QEMU source: hard-linked copy of the pristine tree in
#                      the cache, plus our overlay files and edits
#   WORKDIR/plain      build dir (qemu-system-x86_64, tests/qtest/qos-test)
#   WORKDIR/sanitized  same with ASan + UBSan (--enable-sanitizers; from
#                      9.1 --enable-asan --enable-ubsan)
# Environment: VTMEM_OUT_DIR (if set: symlinks there to the binaries:
# qemu-system-x86_64, qos-test and, for the sanitized build,
# qemu-system-x86_64-sanitized, qos-test-sanitized; for QEMU 10.0 the same
# names with -10.0 after x86_64 and qos-test), VTMEM_JOBS (ninja -j), VTMEM_STORE_DIR (default
# host-pool/store), VTMEM_CACHE (default $HOME/.cache/vtmem) holds the Debian
# source package, fetched once with apt-get source and unpacked once.
# VTMEM_QEMU_SERIES (default 7.2): 7.2 is the host's own source package
# (deb-src of Debian 12, cache qemu-src/); 10.0 is Debian 13 (trixie)'s,
# fetched from the machine's Debian mirror (scripts/apt-mirror.sh) through a
# private apt state in the cache (the host's apt config is not changed), into
# qemu-src-10.0/. QEMU 10 needs meson >= 1.5: when the host's is older
# (Debian 12 has 1.0.1), the meson .deb of bookworm-backports is unpacked in
# the cache and used for this build only.
# Nothing of QEMU's source is kept in our repository: the few edits to QEMU's
# own files below are idempotent (appends, seds, or files regenerated from
# the pristine tree).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 WORKDIR [plain] [sanitized]" >&2; exit 2; }
mkdir -p "$1"
work=$(cd "$1" && pwd)
shift
variants=${*:-plain}
cache=${VTMEM_CACHE:-$HOME/.cache/vtmem}
series=${VTMEM_QEMU_SERIES:-7.2}
case $series in
7.2) srcroot=$cache/qemu-src ;;
10.0) srcroot=$cache/qemu-src-10.0 ;;
*) echo "build-qemu.sh: unknown VTMEM_QEMU_SERIES '$series' (7.2, 10.0)" >&2; exit 2 ;;
esac
jobs=${VTMEM_JOBS:-$(nproc)}
# The page store sources (VTMEM_STORE_DIR only to try another store).
store=${VTMEM_STORE_DIR:-$top/host-pool/store}
# The pool client (vtmemd's protocol), compiled into QEMU the same way.
client=$top/host-pool/client
# The device's request decoding (plain C, also linked by the fuzzer).
req=$here/req

# ccache through its masquerade directory: QEMU's configure then runs "cc".
if [ -d /usr/lib/ccache ]; then
	PATH=/usr/lib/ccache:$PATH
	export CCACHE_BASEDIR="$work"
	export CCACHE_NOHASHDIR=1
fi

# apt-get with a private state in the cache for one Debian suite of the
# machine's mirror; the host's apt config and lists stay untouched. apt checks
# the files against the suite's signed Release (Debian's keyring).
private_apt() { # SUITE deb|deb-src APT-GET-ARGS...
	d=$cache/apt/$2-$1
	mkdir -p "$d/lists/partial" "$d/archives/partial"
	if [ ! -f "$d/apt.conf" ]; then
		mirror=$("$top/scripts/apt-mirror.sh")
		printf '%s [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
			"$2" "$mirror" "$1" >"$d/sources.list"
		printf '%s "%s";\n' Dir::Etc::SourceList "$d/sources.list" \
			Dir::Etc::SourceParts - Dir::State::Lists "$d/lists" \
			Dir::Cache "$d" APT::Sandbox::User root >"$d/apt.conf.new"
		mv "$d/apt.conf.new" "$d/apt.conf"
	fi
	what="$1 $2"
	shift 2
	export APT_CONFIG="$d/apt.conf"
	ls "$d"/lists/*InRelease >/dev/null 2>&1 || apt-get -q update >&2 ||
		return 1
	apt-get -q "$@" >&2 && return 0
	# The pool drops superseded versions: refresh the lists once.
	echo "build-qemu.sh: retrying with fresh $what lists" >&2
	apt-get -q update >&2 && apt-get -q "$@" >&2
}

fetch_source() {
	case $series in
	7.2) apt-get source --download-only qemu ;;
	10.0) private_apt trixie deb-src source --download-only qemu/trixie ;;
	esac
}

# meson for QEMU 10's configure (the +ds source has no bundled meson wheel):
# the host's if it is >= 1.5, else bookworm-backports' (1.7, python3 and
# ninja only), unpacked into the cache. Sets mesonpath (for PYTHONPATH).
meson_ok() { # meson VERSION >= 1.5
	printf '1.5.0\n%s\n' "$1" | sort -V -C
}
mesonpath=
if [ "$series" = 10.0 ] &&
   ! meson_ok "$(/usr/bin/python3 -c 'import mesonbuild.coredata as c; print(c.version)' 2>/dev/null || echo 0)"; then
	mdir=$cache/meson-bookworm-backports
	mkdir -p "$mdir"
	(
		flock 9
		if [ ! -f "$mdir/.unpacked" ]; then
			rm -rf "$mdir/root" "$mdir"/meson_*.deb
			(cd "$mdir" && private_apt bookworm-backports deb download meson/bookworm-backports)
			dpkg-deb -x "$mdir"/meson_*.deb "$mdir/root"
			touch "$mdir/.unpacked"
		fi
	) 9>"$mdir/.lock"
	mesonpath=$mdir/root/usr/lib/python3/dist-packages
fi

# 1. Fetch and unpack Debian's source package once (locked: build dirs share it).
mkdir -p "$srcroot"
(
	flock 9
	if [ ! -f "$srcroot/.unpacked" ]; then
		cd "$srcroot"
		ls qemu_*.dsc >/dev/null 2>&1 || fetch_source
		dsc=$(printf '%s\n' qemu_*.dsc | sort -V | tail -n 1)
		for d in qemu-*/; do [ -d "$d" ] && rm -rf "$d"; done
		dpkg-source -x "$dsc" >/dev/null
		touch .unpacked
	fi
) 9>"$srcroot/.lock"
pristine=$(printf '%s\n' "$srcroot"/qemu-*/ | sort -V | tail -n 1)
pristine=${pristine%/}

# 2. Our source tree: hard links to the pristine tree. Every file we change is
#    replaced (new inode, via mv or sed -i), never written in place.
if [ ! -f "$work/src/.vtmem-src" ]; then
	rm -rf "$work/src" "$work/src.tmp"
	cp -al "$pristine" "$work/src.tmp" 2>/dev/null || {
		rm -rf "$work/src.tmp"
		cp -a "$pristine" "$work/src.tmp"
	}
	touch "$work/src.tmp/.vtmem-src"
	mv "$work/src.tmp" "$work/src"
fi
src=$work/src

# Copy $1 to $2 only when the content differs (ninja then rebuilds only that).
install_file() {
	if ! cmp -s "$1" "$2"; then
		mkdir -p "$(dirname "$2")"
		cp "$1" "$2.vtmem-tmp"
		mv -f "$2.vtmem-tmp" "$2"
	fi
}
install_text() { # $1 = destination; content on stdin
	cat >"$1.vtmem-new"
	if cmp -s "$1.vtmem-new" "$1"; then
		rm -f "$1.vtmem-new"
	else
		mv -f "$1.vtmem-new" "$1"
	fi
}

append_text() { # append stdin to $1 without touching the hard-linked original
	cp "$1" "$1.vtmem-new"
	cat >>"$1.vtmem-new"
	mv -f "$1.vtmem-new" "$1"
}

# 3. Overlay.
install_file "$here/hw/virtio/virtio-tmem.c" "$src/hw/virtio/virtio-tmem.c"
install_file "$here/hw/virtio/virtio-tmem-pci.c" "$src/hw/virtio/virtio-tmem-pci.c"
install_file "$here/include/hw/virtio/virtio-tmem.h" "$src/include/hw/virtio/virtio-tmem.h"
install_file "$here/include/hw/virtio/vtmem-qemu-compat.h" "$src/include/hw/virtio/vtmem-qemu-compat.h"
install_file "$here/tests/qtest/virtio-tmem-test.c" "$src/tests/qtest/virtio-tmem-test.c"
install_file "$top/include/virtio_tmem.h" "$src/hw/virtio/vtmem/virtio_tmem.h"
# overlay_sources DIR WHAT: DIR's .c and .h into hw/virtio/vtmem/; prints
# the .c names as meson list items.
overlay_sources() {
	list=""
	for f in "$1"/*.c "$1"/*.h; do
		[ -e "$f" ] || continue
		install_file "$f" "$src/hw/virtio/vtmem/$(basename "$f")"
		case $f in *.c) list="$list '$(basename "$f")'," ;; esac
	done
	[ -n "$list" ] || { echo "build-qemu.sh: no $2 sources in $1" >&2; exit 1; }
	echo "$list"
}
store_c=$(overlay_sources "$store" "page store")
client_c=$(overlay_sources "$client" "pool client")
req_c=$(overlay_sources "$req" "request decoding")
# Files removed from host-pool/store/, host-pool/client/ or qemu-device/req/
# leave the build too.
for f in "$src"/hw/virtio/vtmem/*.c "$src"/hw/virtio/vtmem/*.h; do
	[ -e "$f" ] || continue
	b=$(basename "$f")
	[ "$b" = virtio_tmem.h ] || [ -e "$store/$b" ] || [ -e "$client/$b" ] ||
		[ -e "$req/$b" ] || rm -f "$f"
done

install_text "$src/hw/virtio/vtmem/meson.build" <<EOM
# Generated by vtmem's qemu-device/build-qemu.sh
vtmem_lz4 = dependency('liblz4', required: true)
vtmem_dep = declare_dependency(include_directories: include_directories('.'),
                               dependencies: [vtmem_lz4])
specific_ss.add(when: 'CONFIG_VIRTIO_TMEM',
                if_true: [files('../virtio-tmem.c', $store_c $client_c $req_c), vtmem_dep])
specific_ss.add(when: ['CONFIG_VIRTIO_TMEM', 'CONFIG_VIRTIO_PCI'],
                if_true: [files('../virtio-tmem-pci.c'), vtmem_dep])
EOM

# 4. Idempotent edits of QEMU's own files.
grep -q "subdir('vtmem')" "$src/hw/virtio/meson.build" ||
	printf "\nsubdir('vtmem')\n" | append_text "$src/hw/virtio/meson.build"
grep -q "config VIRTIO_TMEM" "$src/hw/virtio/Kconfig" ||
	printf '\nconfig VIRTIO_TMEM\n    bool\n    default y\n    depends on VIRTIO\n' |
	append_text "$src/hw/virtio/Kconfig"
# virtio.c (10.0: and virtio-qmp.c) and hw/virtio/trace-events are
# regenerated from the pristine files on every run (so an older edit never
# stays behind).
# virtio.c: our name in virtio_device_names[] (virtio_init() asserts one),
# and our feature names for x-query-virtio-status (its decoder asserts on
# an unknown device ID); the IDs come from include/virtio_tmem.h.
# QEMU 10.0 has the feature decoder in virtio-qmp.c.
case $series in
7.2) edits="virtio.c:include name map case" ;;
*) edits="virtio.c:include name
virtio-qmp.c:include map case" ;;
esac
echo "$edits" | while IFS=: read -r file parts; do
	awk -v want="$parts" -f "$here/virtio-c.awk" "$pristine/hw/virtio/$file" \
		>"$work/$file.new" ||
		{ echo "build-qemu.sh: $file edit failed" >&2; exit 1; }
	install_text "$src/hw/virtio/$file" <"$work/$file.new"
done
cat "$pristine/hw/virtio/trace-events" "$here/hw/virtio/trace-events" |
	install_text "$src/hw/virtio/trace-events"
grep -q "virtio-tmem-test.c" "$src/tests/qtest/meson.build" ||
	sed -i -e "/^tpmemu_files = /i qos_test_ss.add(files('virtio-tmem-test.c'))\n" \
		"$src/tests/qtest/meson.build"
grep -q "virtio-tmem-test.c" "$src/tests/qtest/meson.build" || { echo "build-qemu.sh: qtest meson edit failed" >&2; exit 1; }

# 5. Configure (once per variant) and build.
pyconf=
if [ "$series" = 10.0 ]; then
	# Debian's python3 (it sees Debian's meson when that is new enough).
	pyconf=--python=/usr/bin/python3
	if [ -n "$mesonpath" ]; then
		# configure's venv and ninja's meson re-runs both import it.
		PYTHONPATH=$mesonpath${PYTHONPATH:+:$PYTHONPATH}
		export PYTHONPATH
	fi
fi
for v in $variants; do
	b=$work/$v
	case $v in
	plain) extra="" ;;
	sanitized)
		# 9.1 split --enable-sanitizers into ASan and UBSan options.
		case $series in
		7.2) extra="--enable-sanitizers" ;;
		*) extra="--enable-asan --enable-ubsan" ;;
		esac
		;;
	*) echo "build-qemu.sh: unknown variant $v" >&2; exit 2 ;;
	esac
	if [ ! -f "$b/build.ninja" ]; then
		rm -rf "$b"
		mkdir -p "$b"
		# shellcheck disable=SC2086 # $pyconf, $extra: options, one a word
		(cd "$b" && "$src/configure" --target-list=x86_64-softmmu \
			--without-default-features --enable-kvm --enable-tcg \
			--enable-fdt=system --disable-docs --disable-werror \
			--disable-install-blobs $pyconf $extra) >"$work/configure-$v.log" 2>&1 || {
			tail -n 30 "$work/configure-$v.log" >&2
			rm -f "$b/build.ninja"
			exit 1
		}
	fi
	ninja -C "$b" -j "$jobs" qemu-system-x86_64 tests/qtest/qos-test
	# Firmware from Debian's packages where the binary in the build dir
	# looks for it (no -L needed).
	data=$b/qemu-bundle/usr/local/share/qemu
	mkdir -p "$data"
	for f in /usr/share/qemu/* /usr/share/seabios/* /usr/lib/ipxe/qemu/*; do
		[ -e "$f" ] || continue
		t=$data/$(basename "$f")
		[ -e "$t" ] || [ -L "$t" ] || ln -s "$f" "$t"
	done
	if [ -n "${VTMEM_OUT_DIR:-}" ]; then
		# 7.2: qemu-system-x86_64[-sanitized];
		# 10.0: qemu-system-x86_64-10.0[-sanitized]
		sfx=
		[ "$series" = 7.2 ] || sfx=-$series
		[ "$v" = plain ] || sfx=$sfx-$v
		mkdir -p "$VTMEM_OUT_DIR"
		ln -sfn "$b/qemu-system-x86_64" "$VTMEM_OUT_DIR/qemu-system-x86_64$sfx"
		ln -sfn "$b/tests/qtest/qos-test" "$VTMEM_OUT_DIR/qos-test$sfx"
	fi
done
