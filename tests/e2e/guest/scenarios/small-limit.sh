# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
setup -b /dev/vda -s 512M
workload main 112 1 64M sync
stat_dump end
vtmem-setup stop
