#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end tests of vtmem: boot a Debian 6.1 guest in our QEMU with the
virtio-tmem device, swap through /dev/vtmem0, verify data and statistics.

Usage: vtmem_e2e.py [options] SCENARIO
The scenarios are in vtmem_harness/scenarios/ (guest side:
guest/scenarios/SCENARIO.sh); how one runs: vtmem_harness/runner.py.
"""

import sys

from vtmem_harness import cli
from vtmem_harness.scenarios import TESTS

if __name__ == "__main__":
    sys.exit(cli.main(TESTS, __doc__ + "\n" + cli.__doc__))
