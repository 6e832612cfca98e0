# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
setup -b /dev/vda -s 768M
workload hold 96 61 48M passes=3 &
workload main 160 62 48M sync
wait
end_and_stop
