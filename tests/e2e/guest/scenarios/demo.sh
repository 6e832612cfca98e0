# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# MIB (workload size) comes from the harness.
sync_host boot
setup -b /dev/vda -s 1G
workload demo "$MIB" 7 96M sync
stat_dump demo
sync_host "done"
vtmem-setup stop
sync_host stopped
