# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
setup -b /dev/vda -s 512M
workload main 160 7 64M sync
stat_dump end
sync_host end
vtmem-setup stop
