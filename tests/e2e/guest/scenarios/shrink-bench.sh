# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# SHRINK_OPTS (driver options) and MIB (workload size) come from the harness.
sync_host boot
setup -o "$SHRINK_OPTS" -b /dev/vda -s 1200M
workload main "$MIB" 91 64M sync
end_and_stop
