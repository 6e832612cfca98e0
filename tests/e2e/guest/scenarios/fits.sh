# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# A workload that fits the host's limit; then plain block I/O.
sync_host boot
setup -b /dev/vda -s 512M
stat_dump setup
workload main 112 1 64M sync
stat_dump after-exit
sync_host after-exit
vtmem-setup stop
# Quiet now: stat is mm_stat, io_stat, bd_stat and shrink_stat in one.
d=/sys/block/vtmem0/vtmem
cat $d/mm_stat $d/io_stat $d/bd_stat $d/shrink_stat >/tmp/split
if cmp -s $d/stat /tmp/split; then
	echo "VTMEM-MARK stat-split"
else
	echo "VTMEM-FAIL stat differs from mm_stat io_stat bd_stat shrink_stat"
fi
stat_dump after-stop
sync_host after-stop

# Plain block I/O through submit_bio (dd, O_DIRECT), then discard: the host
# drops the range (INVALIDATE_RANGE) and the device reads back zeros.
echo 64M > /sys/block/vtmem0/vtmem/disksize
dd if=/dev/urandom of=/tmp/rnd bs=1M count=16 2>/dev/null
dd if=/tmp/rnd of=/dev/vtmem0 bs=1M oflag=direct 2>/dev/null
dd if=/dev/vtmem0 of=/tmp/back bs=1M count=16 iflag=direct 2>/dev/null
cmp /tmp/rnd /tmp/back && echo "VTMEM-MARK dd-verified"
stat_dump dd
sync_host dd-written
blkdiscard /dev/vtmem0 || echo "VTMEM-FAIL blkdiscard"
stat_dump discarded
sync_host discarded
n=$(dd if=/dev/vtmem0 bs=1M count=16 iflag=direct 2>/dev/null | tr -d '\000' | wc -c)
[ "$n" = 0 ] && echo "VTMEM-MARK discard-zeroes"
echo 1 > /sys/block/vtmem0/vtmem/reset
