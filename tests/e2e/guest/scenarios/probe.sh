# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# Boots and answers: the harness's KVM probe.
sync_host boot
