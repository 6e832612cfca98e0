# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# Same-filled pages (40%) can still be swapped out: the workload should
# get through (slowly) or be OOM-killed; it must never see wrong data.
sync_host boot
setup -s 512M
workload main 96 11 64M
workload big 160 12 32M
stat_dump end
vtmem-setup stop
stat_dump stopped
