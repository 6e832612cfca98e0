# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# The figures are dumped (as "stuck") the moment the driver reports the
# full disk, while the workload still waits for the host's go.
sync_host boot
setup -o sync_io=0 -b /dev/vda -s 512M
(until dmesg | grep -q 'cannot shrink.*backing disk full'; do sleep 0.2; done; echo VTMEM-MARK cannot-shrink-logged; stat_dump stuck) &
workload main 128 73 48M sync
wait
stat_dump end
vtmem-setup stop
