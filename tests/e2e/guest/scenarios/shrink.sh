# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
sync_host boot
setup -b /dev/vda -s 768M
workload main 192 31 48M sync
end_and_stop
