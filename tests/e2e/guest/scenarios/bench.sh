# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# MIB (workload size) comes from the harness.
sync_host boot
setup -b /dev/vda -s 1G
workload vtmem "$MIB" 21 96M
stat_dump vtmem
vtmem-setup -r stop
setup -o sync_io=0 -b /dev/vda -s 1G
workload vtmem-cached "$MIB" 21 96M
stat_dump vtmem-cached
vtmem-setup -r stop
mkswap /dev/vdb >/dev/null && swapon /dev/vdb
workload disk "$MIB" 21 96M
stat_dump disk
swapoff /dev/vdb
