# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# Migration scenarios (vtmem_harness/scenarios/migrate.py): at "written"
# the host migrates the VM (live, to a file and back, or a cancelled try)
# while a second workload keeps swapping (unless BG=0); every byte is
# verified after it.
sync_host boot
setup -b /dev/vda -s 512M
# BG=0: no second workload (the live migration: see migrate.py)
if [ "${BG:-1}" = 1 ]; then
	workload bg 64 52 32M passes=2 &
fi
workload main 128 51 48M sync
wait
stat_dump end
sync_host end
