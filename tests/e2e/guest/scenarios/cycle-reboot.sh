# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# First boot: load/unload cycles, then a reset from the host while pages
# are on it; second boot: the device starts empty and works.
sync_host boot
if [ "$VTMEM_REPLY" = 1 ]; then
	for i in 1 2 3; do
		setup -b /dev/vda -s 128M
		grep -q vtmem0 /proc/swaps || echo "VTMEM-FAIL swap not active"
		if rmmod virtio_tmem 2>/dev/null; then echo "VTMEM-FAIL rmmod while swapon"; else echo "VTMEM-MARK rmmod-refused $i"; fi
		vtmem-setup -r stop || echo "VTMEM-FAIL stop"
		[ -d /sys/block/vtmem0 ] && echo "VTMEM-FAIL still loaded"
		echo "VTMEM-MARK cycle $i"
	done
	setup -b /dev/vda -s 256M
	workload pre 96 3 48M sync
	echo "VTMEM-FAIL no reset happened"
else
	setup -b /dev/vda -s 256M
	stat_dump boot2
	workload post 96 4 48M
	stat_dump end
	vtmem-setup -r stop
fi
