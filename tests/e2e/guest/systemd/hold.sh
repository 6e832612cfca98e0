#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# vtmem-e2e-hold.service's commands:
#   hold.sh start  swapverify writes 48 MiB in the unit's 16 MiB and waits
#                  on a FIFO (its VTMEM-* lines go to a log, not the console)
#   hold.sh stop   runs after vtmem.service stopped (swapoff done): reports
#                  the swaps and the driver's figures, waits for the host's
#                  look ("VTMEM-SYNC stoppedN"), lets swapverify verify the
#                  pages swapoff brought back and prints its result; on the
#                  last boot VTMEM-DONE.
set -u
run=/run/vtmem-e2e
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. /usr/local/lib/vtmem-e2e/lib.sh
boot=$(cat "$run/boot")

case ${1:-} in
start)
	rm -f "$run/hold.fifo"
	mkfifo "$run/hold.fifo"
	# <>: opening a FIFO read-write does not wait for a writer.
	/usr/local/bin/swapverify 48 "$((boot + 10))" sync <>"$run/hold.fifo" >"$run/hold.log" 2>&1
	echo "VTMEM-RC hold$boot $?" >>"$run/hold.log"
	;;
stop)
	if grep -q "^/dev/vtmem0 " /proc/swaps; then
		echo "VTMEM-FAIL /dev/vtmem0 still swap after vtmem.service stopped"
	else
		echo "VTMEM-MARK swapoff done $boot"
	fi
	stat_dump "stopped$boot"
	sync_host "stopped$boot" </dev/ttyS0
	echo go >"$run/hold.fifo"
	wait_for_line "VTMEM-RC hold" "$run/hold.log" 240 "hold workload did not end"
	grep -v "VTMEM-SYNC" "$run/hold.log"
	if [ -f "$run/last" ]; then
		echo VTMEM-DONE
	fi
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
