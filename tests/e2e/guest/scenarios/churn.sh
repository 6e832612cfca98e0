# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# A tiny pending array: the overflow path (table scan) is used too.
sync_host boot
setup -o pend_max=16 -b /dev/vda -s 512M
workload a 48 41 56M passes=3 &
workload b 48 42 56M passes=3 &
workload c 48 43 56M passes=3 &
wait
end_and_stop
