#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The plot of docs/vtmemd.md's policy section: runs the daemon suite's
# pressure test (tests/daemon/test-pressure.c: vtmemd --auto-pool, a memory
# hog in a test cgroup, a thrashing and an idle device) with
# VTMEM_PRESSURE_TRACE and draws pool size, stall share, PSI avg10 and both
# leases over time with gnuplot (scripts/deps.sh bench).
# Usage (root: the test makes cgroups): bench/pressure-plot.sh [BUILD_DIR [PNG]]
# Defaults: ./build and docs/vtmemd-pressure.png; the samples go next to
# the PNG (.txt).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
b=${1:-$src/build}
png=${2:-$src/docs/vtmemd-pressure.png}
data=${png%.png}.txt
command -v gnuplot >/dev/null || { echo "gnuplot missing: scripts/deps.sh bench" >&2; exit 1; }
VTMEMD=$b/host-pool/daemon/vtmemd VTMEM_PRESSURE_TRACE=$data \
	"$b/tests/daemon/test-pressure" --verbose | grep -E '^# (from|pool)|^(not )?ok'
[ -s "$data" ] || { echo "no samples (was the test skipped?)" >&2; exit 1; }
gnuplot <<GP
set terminal pngcairo size 900,480 font ",10"
set output "$png"
set title "vtmemd --auto-pool under a memory hog (the hog runs from 1.5 s until the pool is below 3/4)"
set xlabel "seconds"
set ylabel "MiB"
set y2label "% of wall time"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:100]
set key outside bottom center horizontal
set grid
plot "$data" using 1:2 with steps lw 2 title "pool", \
     "$data" using 1:5 with steps lw 2 title "lease: thrashing VM", \
     "$data" using 1:6 with steps lw 2 title "lease: idle VM", \
     "$data" using 1:3 axes x1y2 with impulses lw 1 title "stall (some) per 200 ms", \
     "$data" using 1:4 axes x1y2 with lines dt 2 title "PSI some avg10"
GP
echo "wrote $png"
