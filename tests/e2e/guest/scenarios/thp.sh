# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
echo always > /sys/kernel/mm/transparent_hugepage/enabled
setup -b /dev/vda -s 512M
workload main 112 5 64M thp sync
stat_dump end
vtmem-setup stop
