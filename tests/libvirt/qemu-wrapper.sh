#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The emulator of the test domains (vtmem_libvirt.py copies it into the
# work dir): runs VTMEM_QEMU_BIN with Debian's firmware dirs, ASan's leak
# check off (libvirt kills QEMU; reports go to the domain's log, which the
# test checks).
#
# With VTMEM_PROBE_NOFORK=1 (a sanitized QEMU), libvirt's capability probe
# (the only caller that passes -daemonize) runs without -daemonize: a
# sanitized QEMU forks with threads running there and now and then
# deadlocks in ASan's allocator. The probe QEMU runs in the background
# instead, and this script returns once it has written its pid file and
# listens on its QMP socket, as -daemonize's parent would.
set -u
qemu=${VTMEM_QEMU_BIN:?}
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export ASAN_OPTIONS
set -- -L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu "$@"
case "${VTMEM_PROBE_NOFORK:-0} $* " in
1*" -daemonize "*) ;;
*) exec "$qemu" "$@" ;;
esac

pidfile='' sock='' prev=''
for a do
	shift
	case $prev in
	-pidfile) pidfile=$a ;;
	-qmp) sock=${a#unix:} sock=${sock%%,*} ;;
	esac
	prev=$a
	[ "$a" = -daemonize ] || set -- "$@" "$a"
done
if [ -z "$pidfile" ] || [ -z "$sock" ]; then
	echo "qemu-wrapper.sh: -daemonize without -pidfile and -qmp unix:" >&2
	exit 1
fi
# No output to libvirt's pipes: libvirt reads them until they close.
setsid "$qemu" "$@" </dev/null >/dev/null 2>&1 &
qemu_pid=$!
i=0
until [ -s "$pidfile" ] && [ -S "$sock" ]; do
	if ! kill -0 "$qemu_pid" 2>/dev/null || [ "$i" -ge 600 ]; then
		echo "qemu-wrapper.sh: the probe QEMU did not start" >&2
		exit 1
	fi
	i=$((i + 1))
	sleep 0.05
done
