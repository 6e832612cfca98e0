# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# Functions for the guest's scenario scripts (busybox sh), at
# /lib/vtmem/lib.sh in the initramfs. The VTMEM-* lines they print are
# the console protocol of tests/e2e/vtmem_harness/console.py.

KO=/lib/vtmem/virtio_tmem.ko

# sync_host NAME: wait for the host's answer (in $VTMEM_REPLY).
sync_host() {
	echo "VTMEM-SYNC $1"
	# shellcheck disable=SC2034 # read by the scenario scripts
	read -r VTMEM_REPLY
}

# wait_for_line PATTERN FILE SECONDS WHAT: wait until FILE has a line
# matching PATTERN (grep), polling every 0.2 s; VTMEM-FAIL "WHAT" when
# SECONDS pass first.
wait_for_line() {
	tries=$(($3 * 5))
	until grep -q "$1" "$2" 2>/dev/null; do
		tries=$((tries - 1))
		if [ "$tries" -le 0 ]; then
			echo "VTMEM-FAIL $4"
			return 1
		fi
		sleep 0.2
	done
}

# stat_dump TAG: the driver's statistics and a few of /proc/vmstat.
stat_dump() {
	if [ -d /sys/block/vtmem0/vtmem ]; then
		vtmem-setup stats | sed "s/^/VTMEM-STAT $1 /"
	fi
	sed -n 's/^\(pswpin\|pswpout\|thp_swpout\|thp_swpout_fallback\|oom_kill\) \(.*\)/VTMEM-STAT '"$1"' vm_\1 \2/p' /proc/vmstat
	# Interrupts of the device's virtqueue ("requests"), all CPUs.
	awk -v t="$1" '$NF ~ /^virtio[0-9]+-requests$/ {
		for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i
		print "VTMEM-STAT " t " irq_requests " n }' /proc/interrupts
}

# workload TAG MIB SEED MEMMAX [swapverify args]: swapverify in a cgroup
# limited to MEMMAX; with "sync" it dumps the stats as TAG-written, runs
# $VTMEM_HOOK and waits at "VTMEM-SYNC written".
workload() {
	tag=$1 mib=$2 seed=$3 max=$4
	shift 4
	mkdir -p /sys/fs/cgroup/w
	echo +memory > /sys/fs/cgroup/cgroup.subtree_control
	echo "$max" > /sys/fs/cgroup/w/memory.max
	echo "VTMEM-MARK workload $tag start"
	# shellcheck disable=SC2016 # $$ and $@ are the inner shell's
	VTMEM_STATS_CMD="/bin/sh -c '. /lib/vtmem/lib.sh; stat_dump $tag-written; ${VTMEM_HOOK:-}'" \
		sh -c 'echo $$ > /sys/fs/cgroup/w/cgroup.procs && exec /bin/swapverify "$@"' \
		sv "$mib" "$seed" "$@"
	rc=$?
	echo "VTMEM-RC $tag $rc"
}

# setup [vtmem-setup options]: load the module and swap on /dev/vtmem0.
setup() {
	vtmem-setup -m "$KO" "$@" start || echo "VTMEM-FAIL vtmem-setup start"
}

# end_and_stop: the figures at "end" and the host's look at them, then
# swapoff and the host's look at an empty device.
end_and_stop() {
	stat_dump end
	sync_host end
	vtmem-setup stop
	sync_host stopped
}
