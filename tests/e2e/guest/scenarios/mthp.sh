# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
m=/sys/kernel/mm/transparent_hugepage
echo never > $m/enabled
echo always > $m/hugepages-64kB/enabled || echo "VTMEM-FAIL no 64 KiB mTHP"
setup -b /dev/vda -s 512M
workload main 112 5 64M thp sync
stat_dump end
for f in swpout swpin; do
	[ -r $m/hugepages-64kB/stats/$f ] &&
		echo "VTMEM-STAT end mthp_$f $(cat $m/hugepages-64kB/stats/$f)"
done
vtmem-setup stop
