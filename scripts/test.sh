#!/bin/sh
# The whole vtmem test suite, from a fresh Debian 12 machine (run as root):
#   unit tests plain, under ASan+UBSan and under valgrind; the device's
#   qtests against QEMU plain and sanitized; end-to-end tests that boot a
#   guest with the device and the driver.
# Installs its own dependencies. Exit status 0 only if everything passed.
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh build test qemu guest libvirt

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
run_suite() {
	label=$1
	shift
	echo "=== $label"
	status=0
	meson test "$@" --print-errorlogs || status=$?
	# meson writes one JSON object per test; count them for the summary.
	log="$2/meson-logs/testlog$( [ "${setup_name:-}" ] && echo "-$setup_name" ).json"
	passed=$(grep -c '"result": "OK"' "$log" 2>/dev/null || true)
	failed=$(grep -vc '"result": "\(OK\|SKIP\)"' "$log" 2>/dev/null || true)
	summary="$summary
$label: ${passed:-0} passed, ${failed:-0} failed"
	total_pass=$((total_pass + ${passed:-0}))
	total_fail=$((total_fail + ${failed:-0}))
	[ "$status" = 0 ] || any_fail=1
}
total_pass=0
total_fail=0
any_fail=0

setup build -Dwerror=true -Dqemu=true -Dqemu_sanitized=true -Dguest=true
meson compile -C build
setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
meson compile -C build-asan

setup_name=
run_suite "unit+daemon (plain)" -C build --suite unit --suite daemon
run_suite "unit+daemon (ASan+UBSan)" -C build-asan --suite unit --suite daemon
setup_name=valgrind
run_suite "unit+daemon (valgrind)" -C build --suite unit --suite daemon --setup valgrind
setup_name=
run_suite "qemu device, end to end" -C build --no-suite unit --no-suite daemon

echo "$summary"
echo "all: $total_pass passed, $total_fail failed"
exit $any_fail
