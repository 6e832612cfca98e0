# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
setup -b /dev/vda -s 256M
VTMEM_HOOK='if echo mem > /sys/power/state; then echo VTMEM-MARK suspended-with-host-pages; else echo VTMEM-MARK suspend-refused; fi'
export VTMEM_HOOK
workload one 96 13 48M sync
unset VTMEM_HOOK
stat_dump one
vtmem-setup stop
if echo mem > /sys/power/state; then echo VTMEM-MARK resumed; else echo VTMEM-FAIL suspend without host pages; fi
stat_dump resumed
setup -b /dev/vda -s 256M
workload two 96 14 48M sync
stat_dump two
vtmem-setup -r stop
