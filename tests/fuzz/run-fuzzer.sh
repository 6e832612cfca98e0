#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run one libFuzzer harness for a bounded time on a copy of its committed
# seed corpus; fail on any crash, leak, timeout or sanitizer report.
#   run-fuzzer.sh FUZZER SEED_DIR [MAX_LEN [SECONDS]]
# MAX_LEN (longest input, default 4096) must hold the harness's largest
# meaningful input; SECONDS defaults to $VTMEM_FUZZ_SECONDS, else 30. Findings (crash-*,
# leak-*, timeout-*) are kept in $VTMEM_FUZZ_ARTIFACTS (default:
# artifacts/ beside the fuzzer) to turn into regression seeds.
set -eu
fuzzer=$1
seeds=$2
max_len=${3:-4096}
seconds=${4:-${VTMEM_FUZZ_SECONDS:-30}}
name=$(basename "$fuzzer")
work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
artifacts=${VTMEM_FUZZ_ARTIFACTS:-$(dirname "$fuzzer")/artifacts}
mkdir -p "$artifacts" "$work/corpus"
cp -r "$seeds"/. "$work/corpus/"

status=0
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
	"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-max_len="$max_len" -print_final_stats=1 \
	-artifact_prefix="$artifacts/$name-" \
	"$work/corpus" >"$work/log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
if [ "$status" != 0 ] || grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$work/log"; then
	tail -n 60 "$work/log"
	echo "$name: FAILED (exit $status) after ${runs:-?} executions; artifacts in $artifacts"
	exit 1
fi
echo "$name: ${runs:-?} executions in $seconds s, ${rate:-?} exec/s, no finding"
