# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP to the guest's QEMU, through QEMU's own client.

The client is QEMUMonitorProtocol from python/qemu/qmp/legacy.py of the
QEMU tree we build (standard library only; runs on Debian 12's python3
3.11 without pip). That tree is found, in order, at $VTMEM_QEMU_PYTHON,
beside the QEMU binary (build-qemu.sh's WORKDIR/src/python: the binary is
a link into WORKDIR), or in the cache's unpacked source
(VTMEM_CACHE/qemu-src/qemu-*/python).

QEMU's QEMUMachine (python/qemu/machine) is not used: it talks to the
console through a socket of its own and drains it for its log, while a
scenario answers the guest on the console line by line (console.py).

The legacy client runs an asyncio loop of the thread that created it for
each call; scenarios also call from helper threads (a limit toggler, a
waker, pollers), so Monitor serialises every call with a lock.
"""

import glob
import os
import sys
import threading
import time

from .checks import Fail
from .image import CACHE

TM = "/machine/peripheral/tm0"
HOST_STATS = ["stored-pages", "compressed-bytes", "memory-held", "refusals",
              "invalidations", "limit"]


def qemu_python_dir(qemu):
    """The python/ folder of the QEMU source that built qemu."""
    cands = [os.environ.get("VTMEM_QEMU_PYTHON", "")]
    d = os.path.dirname(os.path.realpath(qemu))
    while d != os.path.dirname(d):
        cands.append(os.path.join(d, "src", "python"))
        d = os.path.dirname(d)
    cands += sorted(glob.glob(os.path.join(CACHE, "qemu-src", "qemu-*", "python")))
    for c in cands:
        if c and os.path.exists(os.path.join(c, "qemu", "qmp", "legacy.py")):
            return c
    raise Fail("QEMU's python/qemu/qmp not found (tried %s); set VTMEM_QEMU_PYTHON"
               % ", ".join(c for c in cands if c))


def _legacy(qemu):
    path = qemu_python_dir(qemu)
    if path not in sys.path:
        sys.path.insert(0, path)
    from qemu.qmp import QMPError
    from qemu.qmp.legacy import QEMUMonitorProtocol
    return QEMUMonitorProtocol, QMPError


class Monitor:
    """QMP to one QEMU process; the virtio-tmem device is TM."""

    def __init__(self, qemu, path, proc, timeout=30):
        client, self.error = _legacy(qemu)
        self.lock = threading.Lock()
        self.events = []
        deadline = time.time() + timeout
        while True:
            # Connect once QEMU has made the socket (a failed attempt is
            # logged by the client).
            self.mon = client(path)
            try:
                if os.path.exists(path):
                    self.mon.connect()
                    break
            except (self.error, OSError):
                pass
            if proc.poll() is not None:
                raise Fail("QEMU exited with status %d" % proc.returncode)
            if time.time() > deadline:
                raise Fail("QMP socket %s did not appear" % path)
            time.sleep(0.1)
        # The call that returns the command's result: command() in QEMU
        # 7.2's client, cmd() in 10.0's (7.2's cmd() returns the raw reply).
        self.execute = getattr(self.mon, "command", None) or self.mon.cmd

    def cmd(self, name, **arguments):
        with self.lock:
            try:
                ret = self.execute(name, **arguments)
            except (self.error, EOFError, OSError) as e:
                raise Fail("QMP %s: %s" % (name, e))
            finally:
                self.events += self.mon.get_events()
            return ret

    def get(self, prop):
        return self.cmd("qom-get", path=TM, property=prop)

    def set(self, prop, value):
        return self.cmd("qom-set", path=TM, property=prop, value=value)

    def host_stats(self):
        return {p: self.get(p) for p in HOST_STATS}

    def close(self):
        with self.lock:
            try:
                self.mon.close()
            except (self.error, EOFError, OSError):
                pass      # QEMU gone: its end is checked elsewhere
