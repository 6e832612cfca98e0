#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The systemd guest's test, run by vtmem-e2e.service on every boot (after
# vtmem.service): reports the swaps vtmem.service set up from
# /etc/vtmem.conf, runs a verifying workload that swaps through
# /dev/vtmem0, starts vtmem-e2e-hold.service (pages that stay swapped out
# until shutdown), then reboots on the first boot and powers off on the
# second. Console protocol: tests/e2e/vtmem_harness/console.py; the host
# side: vtmem_harness/scenarios/systemd.py.
set -u
run=/run/vtmem-e2e
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. /usr/local/lib/vtmem-e2e/lib.sh
mkdir -p "$run"

sync_host boot
boot=$VTMEM_REPLY
echo "$boot" >"$run/boot"

# The boot: failed units, and the journal's warnings for the log.
systemctl --failed --no-legend --plain | sed 's/^/VTMEM-OUT failed unit: /'
echo "VTMEM-STAT boot$boot failed_units $(systemctl --failed --no-legend --plain | wc -l)"
journalctl -b -p warning --no-pager -q | sed 's/^/VTMEM-OUT journal: /'
systemd-analyze critical-chain --no-pager vtmem-e2e.service 2>&1 | sed 's/^/VTMEM-OUT boot: /'

# What vtmem.service did before this unit started.
systemctl is-active -q vtmem.service && echo "VTMEM-MARK vtmem.service active $boot"
awk -v t="swaps$boot" '
	$1 == "/dev/vtmem0" { print "VTMEM-STAT " t " vtmem_prio " $5; n++ }
	NR > 1 && $1 != "/dev/vtmem0" { print "VTMEM-STAT " t " disk_prio " $5; d++ }
	END { print "VTMEM-STAT " t " vtmem_active " n + 0
	      print "VTMEM-STAT " t " disk_swaps " d + 0 }' /proc/swaps
backing=$(cat /sys/block/vtmem0/vtmem/backing_dev 2>/dev/null)
[ "$(readlink -f "$backing")" = "$(readlink -f /dev/disk/by-id/virtio-vtmem-backing)" ] &&
	echo "VTMEM-MARK backing attached $boot"
stat_dump "setup$boot"

# workload TAG MIB SEED MEMMAX: swapverify in a scope limited to MEMMAX,
# stopping at "VTMEM-SYNC written" for the host's look.
workload() {
	# shellcheck disable=SC2016 # $1 is the inner shell's
	VTMEM_STATS_CMD="/bin/sh -c '. /usr/local/lib/vtmem-e2e/lib.sh; stat_dump $1-written'" \
		systemd-run --quiet --scope -p MemoryMax="$4" -p MemorySwapMax=infinity \
		/usr/local/bin/swapverify "$2" "$3" sync
	echo "VTMEM-RC $1 $?"
}
workload "main$boot" 64 "$boot" 32M

# Pages that stay swapped out until vtmem.service's swapoff at shutdown.
systemctl start vtmem-e2e-hold.service
wait_for_line "VTMEM-SYNC written" "$run/hold.log" 300 "hold workload did not write its pages"
# swapoff charges the pages it reads back to the hold's cgroup.
systemctl set-property --runtime vtmem-e2e-hold.service MemoryMax=infinity
stat_dump "held$boot"
sync_host "held$boot"
if [ "$boot" = 1 ]; then
	echo "VTMEM-MARK reboot"
	systemctl reboot
else
	touch "$run/last"
	echo "VTMEM-MARK poweroff"
	systemctl poweroff
fi
