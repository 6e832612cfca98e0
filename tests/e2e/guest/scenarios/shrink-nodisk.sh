# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
setup -o sync_io=0 -s 512M
workload main 128 71 48M sync
stat_dump end
dmesg | grep -q 'cannot shrink.*no backing disk' && echo VTMEM-MARK cannot-shrink-logged
vtmem-setup stop
