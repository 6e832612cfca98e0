# SPDX-License-Identifier: GPL-2.0-or-later
"""The console protocol between a test guest and the harness.

The guest's scripts (tests/e2e/guest/: init, lib.sh, scenarios/*.sh) and
swapverify print lines that start with a VTMEM-* tag on the serial console
(ttyS0, QEMU's stdio; the kernel's own lines are mixed in). The tag may
stand anywhere in a line. Each line, by tag:

  VTMEM-SYNC NAME      The guest stops until it reads one line on ttyS0
                       (sync_host; swapverify's "sync" option prints
                       "VTMEM-SYNC written" after its write pass). The host
                       does what the scenario wants at NAME (reads QMP
                       figures, changes the limit, unplugs...) and writes
                       the answer, which the guest gets in $VTMEM_REPLY:
                       "go", or at "boot" the number of boots so far. No
                       answer: the guest stays blocked (e.g. a reset).
  VTMEM-STAT TAG KEY N One figure N (an integer) named KEY of the snapshot
                       TAG: the driver's `vtmem-setup stats` and vm_* lines
                       of /proc/vmstat (stat_dump TAG).
  VTMEM-RESULT STATUS K=N...  swapverify's verdict: STATUS ok or fail, then
                       pages= bad= write_ms= verify_ms=.
  VTMEM-RC TAG N       The workload TAG exited with status N; it owns the
                       last VTMEM-RESULT printed before it (none: status
                       "none", e.g. OOM-killed).
  VTMEM-MARK TEXT      Something the scenario checks for happened.
  VTMEM-FAIL TEXT      Something went wrong in the guest: fails any run.
  VTMEM-DONE           The scenario script ended (init powers off next).
  VTMEM-OUT TEXT       Output of a workload, for the log (bench).

Beside this protocol, a run fails on kernel complaints (BAD_CONSOLE).
"""

import re

from .checks import Fail

BAD_CONSOLE = re.compile(r"BUG:|Oops|WARNING:|KASAN|UBSAN|Kernel panic|"
                         r"general protection fault|list_del corruption|"
                         r"soft lockup|hung_task|INFO: task .* blocked")
SYNC = re.compile(r"VTMEM-SYNC (\S+)")
STAT = re.compile(r"VTMEM-STAT (\S+) (\S+) (-?\d+)")
RESULT = re.compile(r"VTMEM-RESULT (\w+) (.*)")
RC = re.compile(r"VTMEM-RC (\S+) (\d+)")
FAIL = re.compile(r"VTMEM-FAIL (.*)")
MARK = re.compile(r"VTMEM-MARK (.*)")
DONE = "VTMEM-DONE"
LOGGED = ("VTMEM-RESULT", "VTMEM-RC", "VTMEM-FAIL")


class Run:
    """What the guest reported in one run."""

    def __init__(self):
        self.stats = {}          # tag -> {key: int}
        self.results = {}        # workload tag -> dict(status, rc, pages, bad...)
        self.host = {}           # scenario's host figures, by name
        self.fails = []
        self.marks = []
        self.pending_result = None
        self.all_results = []
        self.boot = 0
        self.done = False

    def st(self, tag, key):
        try:
            return self.stats[tag][key]
        except KeyError:
            raise Fail("no guest stat %s/%s" % (tag, key))


def parse_line(run, line):
    """Adds what line reports to run; returns the sync name or None."""
    if DONE in line:
        run.done = True
    m = SYNC.search(line)
    _parse_report(run, line)
    return m.group(1) if m else None


def _parse_report(run, line):
    m = STAT.search(line)
    if m:
        run.stats.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
        return
    m = RESULT.search(line)
    if m:
        r = {"status": m.group(1)}
        for kv in m.group(2).split():
            k, v = kv.split("=")
            r[k] = int(v)
        run.pending_result = r
        run.all_results.append(r)
        return
    m = RC.search(line)
    if m:
        r = run.pending_result or {"status": "none"}
        r["rc"] = int(m.group(2))
        run.results[m.group(1)] = r
        run.pending_result = None
        return
    m = FAIL.search(line)
    if m:
        run.fails.append(m.group(1))
    m = MARK.search(line)
    if m:
        run.marks.append(m.group(1))


def parse_text(text):
    """A whole console (a file written by libvirt's serial device)."""
    run = Run()
    for line in text.splitlines():
        parse_line(run, line)
    return run


def bad_lines(text):
    return [ln for ln in text.splitlines() if BAD_CONSOLE.search(ln)]
