# SPDX-License-Identifier: GPL-2.0-or-later
"""Failing, logging and the checks that several scenarios make."""

import time

# Swapped-out pages of processes that outlive a workload (init's shell).
RESIDUE = 64
MiB = 1 << 20
LOG_PREFIX = "e2e"          # the libvirt suite logs as "libvirt"


class Fail(Exception):
    pass


def log(msg):
    print("[%s %s] %s" % (LOG_PREFIX, time.strftime("%H:%M:%S"), msg), flush=True)


def expect(cond, what):
    if not cond:
        raise Fail(what)
    log("ok: " + what)


def result_ok(run, tag):
    """Workload tag exited 0 and verified every byte."""
    r = run.results.get(tag)
    expect(r is not None and r["status"] == "ok" and r["rc"] == 0 and
           r.get("bad", 1) == 0, "workload %s verified: %s" % (tag, r))
    return r


def all_verified(results, n, what):
    """Exactly n workload results, each verified."""
    expect(len(results) == n and all(r["status"] == "ok" and r["bad"] == 0
                                     for r in results),
           "%s verified: %s" % (what, results))


def no_failed_io(run, tag, *extra):
    """No failed reads or writes (and the extra counters 0) at tag."""
    keys = ("failed_reads", "failed_writes") + extra
    expect(all(run.st(tag, k) == 0 for k in keys),
           "no failed I/O" + "".join(", no " + k for k in extra))


def host_agrees(run, tag="end"):
    """The host holds exactly the pages the guest says it has there."""
    expect(run.host[tag]["stored-pages"] == run.st(tag, "pages_host"),
           "host and guest agree on the pages held (no leak)")


def host_empty_after_stop(run):
    expect(run.host["stopped"]["stored-pages"] == 0, "host empty after stop")
