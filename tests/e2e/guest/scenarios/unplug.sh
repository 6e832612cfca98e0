# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# The host unplugs the device at "written" and plugs it back at "replug".
sync_host boot
setup -b /dev/vda -s 512M
workload main 128 9 64M sync
stat_dump end
workload again 96 10 48M
stat_dump end2
sync_host replug
i=0
while [ $i -lt 100 ] && ! grep -q "^attached 1" /sys/block/vtmem0/vtmem/host; do
	sleep 0.1; i=$((i + 1))
done
workload third 96 12 48M
stat_dump end3
vtmem-setup -r stop
echo VTMEM-MARK unloaded
