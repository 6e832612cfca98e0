# SPDX-License-Identifier: GPL-2.0-or-later
"""One QEMU process: its command line, its console and its QMP monitor.

The console is QEMU's stdio (ttyS0): a thread reads it line by line into a
queue and a log (console.log, with seconds since the start); answers to the
guest go to QEMU's stdin. QEMU's stderr goes to qemu-stderr.log.
"""

import os
import queue
import re
import subprocess
import threading
import time

from .checks import Fail
from .console import BAD_CONSOLE
from .qmp import Monitor

QEMU_BAD = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                      r"runtime error:|Assertion .* failed|core dumped")
# Reports in QEMU's own code that a sanitized QEMU's runs ignore (the
# files say which and why).
SUPPRESSIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))), "qemu-device")
SANITIZER_SUPPRESSIONS = {
    "UBSAN_OPTIONS": os.path.join(SUPPRESSIONS, "qemu-ubsan.supp"),
    "LSAN_OPTIONS": os.path.join(SUPPRESSIONS, "qemu-lsan.supp"),
}
SANITIZER_ENV = {var: "suppressions=" + path
                 for var, path in SANITIZER_SUPPRESSIONS.items()}
KERNEL_CMDLINE = ("console=ttyS0 rdinit=/init panic=-1 random.trust_cpu=on "
                  "transparent_hugepage=madvise zswap.enabled=0")
FIRMWARE_DIRS = ["/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"]


class Guest:
    """One QEMU run; reads the console line by line."""

    def __init__(self, args, workdir, vmlinuz, initrd, tm=None, disks=(),
                 mem="256M", reboot=False, accel="tcg", extra=(), append=""):
        self.workdir = workdir
        self.accel = accel
        self.qmp_path = os.path.join(workdir, "qmp-%d.sock" % os.getpid())
        if os.path.exists(self.qmp_path):
            os.unlink(self.qmp_path)
        cmd = [args.qemu, "-accel", accel, "-smp", "1", "-m", mem,
               "-display", "none", "-monitor", "none", "-nic", "none",
               "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
               "-kernel", vmlinuz, "-initrd", initrd,
               "-append", "%s loglevel=%s %s"
               % (KERNEL_CMDLINE, os.environ.get("VTMEM_LOGLEVEL", "4"), append),
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        for d in FIRMWARE_DIRS:
            if os.path.isdir(d):
                cmd += ["-L", d]
        if not reboot:
            cmd.append("-no-reboot")
        if tm is not None:
            cmd += ["-device", "virtio-tmem-pci,id=tm0," + tm]
        for i, (path, size_mb) in enumerate(disks):
            with open(path, "wb") as f:
                f.truncate(size_mb << 20)
            cmd += ["-drive", "file=%s,format=raw,if=none,id=d%d,cache=unsafe"
                    % (path, i), "-device", "virtio-blk-pci,drive=d%d" % i]
        cmd += list(extra)
        self.cmd = cmd
        self.console = open(os.path.join(workdir, "console.log"), "w")
        self.lines = queue.Queue()
        self.start = time.time()
        self.stderr_path = os.path.join(workdir, "qemu-stderr.log")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.stderr,
                                     env=dict(SANITIZER_ENV, **os.environ))
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()
        try:
            self.qmp = Monitor(args.qemu, self.qmp_path, self.proc)
        except Fail:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            time.sleep(0.2)
            self.console.close()
            self.stderr.close()
            raise
        self.bad = []

    def _reader(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.console.write("%7.2f %s\n" % (time.time() - self.start, line))
            self.console.flush()
            self.lines.put(line)
        self.lines.put(None)

    def reply(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def next_line(self, deadline):
        """The next console line (None: QEMU ended); Fail after deadline."""
        left = deadline - time.time()
        if left <= 0:
            raise Fail("timeout")
        try:
            line = self.lines.get(timeout=left)
        except queue.Empty:
            raise Fail("timeout")
        if line is not None and BAD_CONSOLE.search(line):
            self.bad.append(line)
        return line

    def stop(self):
        self.qmp.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.console.close()
        self.stderr.close()

    def qemu_errors(self):
        """Sanitizer reports or assertion failures of QEMU itself."""
        with open(self.stderr_path, errors="replace") as f:
            return [ln.rstrip() for ln in f if QEMU_BAD.search(ln)]
