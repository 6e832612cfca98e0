# SPDX-License-Identifier: GPL-2.0-or-later
"""The e2e test scenarios, by name (tests/e2e/meson.build lists them too)."""

from .basic import Churn, Fits, LimitChange, Mthp, NoDevice, NoDiskFull, SmallLimit, Thp
from .churn_rss import ChurnRss
from .lifecycle import CycleReboot, Suspend, Unplug
from .migrate import Migrate, MigrateCancel, MigrateFile
from .shrink import Shrink, ShrinkDiskFull, ShrinkNoDisk, ShrinkSwapin, ShrinkUpDown
from .systemd import SystemdGuest

TESTS = {c.name: c for c in [Fits, SmallLimit, LimitChange, NoDiskFull, NoDevice,
                             CycleReboot, Thp, Mthp, Unplug, Churn, Suspend, Shrink,
                             ShrinkUpDown, ShrinkSwapin, ShrinkNoDisk,
                             ShrinkDiskFull, Migrate, MigrateFile,
                             MigrateCancel, ChurnRss, SystemdGuest]}
