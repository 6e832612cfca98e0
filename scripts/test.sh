#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The whole vtmem test suite, from a fresh Debian 12 machine (run as root):
#   unit tests plain, under ASan+UBSan and under valgrind; the fuzzers for
#   a bounded time (30 s each); the device's qtests against QEMU plain and
#   sanitized; end-to-end tests that boot a guest with the device and the
#   driver; the style checks.
# Installs its own dependencies. Exit status 0 only if everything passed.
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh build test qemu guest libvirt bench fuzz style root

# Warnings are errors here, as in CI.
setup() {
	dir=$1
	shift
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		set -- --reconfigure "$@"
	fi
	mkdir -p "$dir"
	meson setup "$@" "$dir" >"$dir.setup.log" 2>&1 ||
		{ tail -n 20 "$dir.setup.log"; exit 1; }
}

summary=""
total_pass=0
total_fail=0
any_fail=0
# run_suite LABEL BUILDDIR TESTLOG [meson test arguments...]
run_suite() {
	label=$1 dir=$2 testlog=$3
	shift 3
	echo "=== $label"
	status=0
	meson test -C "$dir" --print-errorlogs "$@" || status=$?
	# meson's JSON log: one line per test, with its "result".
	passed=$(grep -c '"result": "OK"' "$dir/meson-logs/$testlog" || true)
	failed=$(grep -c -v '"result": "\(OK\|SKIP\)"' "$dir/meson-logs/$testlog" || true)
	passed=${passed:-0} failed=${failed:-0}
	if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
		failed=1	# meson itself failed (build error, no log)
	fi
	summary="$summary
$label: $passed passed, $failed failed"
	total_pass=$((total_pass + passed))
	total_fail=$((total_fail + failed))
	if [ "$status" != 0 ]; then
		any_fail=1
	fi
}

setup build -Dwerror=true -Dqemu=true -Dqemu_sanitized=true -Dguest=true
meson compile -C build
setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
meson compile -C build-asan
# libFuzzer harnesses (tests/fuzz), clang with ASan+UBSan.
(CC=clang && export CC && setup build-fuzz -Dwerror=true -Dfuzzing=true)
meson compile -C build-fuzz

run_suite "unit+daemon (plain)" build testlog.json --suite unit --suite daemon
run_suite "unit+daemon (ASan+UBSan)" build-asan testlog.json --suite unit --suite daemon
run_suite "unit+daemon (valgrind)" build testlog-valgrind.json --suite unit --suite daemon --setup valgrind
run_suite "fuzz (30 s per harness)" build-fuzz testlog.json --suite fuzz
run_suite "style, qtest, e2e, libvirt, bench-smoke" build testlog.json --no-suite unit --no-suite daemon

echo "$summary"
echo "all: $total_pass passed, $total_fail failed"
exit $any_fail
