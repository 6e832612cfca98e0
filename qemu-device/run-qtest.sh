#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run one virtio-tmem qtest through QEMU's qos-test.
# Usage: run-qtest.sh QOS_TEST QEMU_BINARY TEST
#   TEST: a test of the virtio-tmem interface (e.g. put-get), one of the
#   virtio-tmem-iothread interface (iothread-put-get) or of the
#   virtio-tmem-ioeventfd interface (ioeventfd-put-get), or a path below the
#   virtio-tmem-pci node (e.g. virtio-tmem-pci-tests/hotplug)
# Fails if the test fails, if no test ran, or if ASan/UBSan/LSan reported
# anything (from qos-test or from the QEMU it started).
set -u
qos=$1
qemu=$2
name=$3
node=/x86_64/pc/i440FX-pcihost/pci-bus-pc/pci-bus/virtio-tmem-pci
case $name in
*/*) path=$node/$name ;;
iothread-*) path=$node/virtio-tmem-iothread/virtio-tmem-iothread-tests/$name ;;
ioeventfd-*) path=$node/virtio-tmem-ioeventfd/virtio-tmem-ioeventfd-tests/$name ;;
*) path=$node/virtio-tmem/virtio-tmem-tests/$name ;;
esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT

export QTEST_QEMU_BINARY="$qemu"
here=$(cd "$(dirname "$0")" && pwd)
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$here/qemu-ubsan.supp}"
# Whole malloc stacks (glib has no frame pointers): suppressions match
# on the frames past g_malloc.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/qemu-lsan.supp}"
"$qos" -p "$path" >"$log" 2>&1
rc=$?
cat "$log"
if grep -qE 'runtime error:|ERROR: (Address|Leak)Sanitizer|SUMMARY: [A-Za-z]+Sanitizer' "$log"; then
	echo "run-qtest.sh: sanitizer report => failure"
	rc=1
fi
if ! grep -q "^ok [0-9]* $path\$" "$log"; then
	echo "run-qtest.sh: test $path did not pass"
	[ "$rc" != 0 ] || rc=1
fi
exit "$rc"
