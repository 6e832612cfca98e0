# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# The host's memory under churn (vtmem_harness/scenarios/churn_rss.py):
# swapverify writes 192 MiB, then 3 rounds of freeing a random half of
# its pages, swapping the rest in (verify) and writing the freed ones
# again (swapped out); a last random half is freed and the host looks at
# what it holds ("churned"); then every page is verified, the workload
# exits and swap goes off, while the host samples QEMU's memory.
sync_host boot
setup -b /dev/vda -s 512M
workload main 192 31 48M churn=3 sync
stat_dump after-exit
sync_host after-exit
vtmem-setup stop
stat_dump stopped
sync_host stopped
