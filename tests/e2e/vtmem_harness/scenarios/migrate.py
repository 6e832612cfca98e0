# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration of a VM whose swapped-out pages are on the host (issue 15).

The guest (guest/scenarios/migrate.sh) writes a verifying workload (part
of it on the host, the rest on the backing disk: a small limit) and stops
at "written", while a second workload keeps swapping. There the host:
  migrate         live-migrates it to a second QEMU on this machine over a
                  unix socket (-incoming), mid-workload;
  migrate-file    saves it to a file with the VM paused, quits the source
                  and restores it in a new QEMU;
  migrate-cancel  starts a slow migration and cancels it.
After a migration the harness reads the destination's console (both QEMUs
have one: the guest's serial line moves with it) and the workloads verify
every byte there; the source quits cleanly and gives its pages back.
"""

import os
import time

from .. import image
from ..checks import Fail, expect, log, no_failed_io, result_ok
from ..console import parse_line
from ..machine import Guest
from ..runner import Scenario

MIG_TIMEOUT = 240


def mig_status(g):
    return g.qmp.cmd("query-migrate")


def wait_migration(g, want, timeout=MIG_TIMEOUT):
    """Poll query-migrate until its status is one of want; returns it."""
    deadline = time.time() + timeout
    while True:
        info = mig_status(g)
        if info.get("status") in want:
            return info
        if info.get("status") == "failed":
            raise Fail("migration failed: %s" % info.get("error-desc", info))
        if time.time() > deadline:
            raise Fail("migration not %s after %d s: %s"
                       % ("/".join(want), timeout, info))
        time.sleep(0.1)


def wait_incoming(dst, timeout=MIG_TIMEOUT):
    """The destination (-S) has loaded the whole stream."""
    deadline = time.time() + timeout
    while True:
        if dst.proc.poll() is not None:
            raise Fail("destination QEMU exited with status %d (see %s)"
                       % (dst.proc.returncode, dst.stderr_path))
        if mig_status(dst).get("status") == "completed":
            return
        if time.time() > deadline:
            raise Fail("destination did not load in %d s" % timeout)
        time.sleep(0.1)


class Migrate(Scenario):
    """Live: the disk is idle while the VM moves (no second workload).
    With virtio-blk requests in flight, QEMU 7.2 (TCG) migrations leave
    the guest's virtio-blk ring inconsistent: a request completes twice
    (Oops in blk_mq_complete_request_remote) right after the switchover,
    also without virtio-tmem (a control run without the device, 50 s of
    pre-copy, crashed the same way)."""
    name = "migrate"
    tm = "limit=16M"
    timeout = 600
    params = {"BG": 0}

    def guest_script(self):
        return image.shell_script(os.path.join(image.GUEST_DIR, "scenarios",
                                               "migrate.sh"), self.params)

    def on_sync(self, g, run, name):
        if name == "written":
            run.host["written"] = g.qmp.host_stats()
            self.migrate(g, run)
            return "go"
        if name == "end":
            run.host["end"] = g.qmp.host_stats()
        return super().on_sync(g, run, name)

    def destination(self, g, incoming):
        """A second QEMU with the source's command line, -incoming and -S
        (it stays paused after loading); the disks are the source's files
        (not created again)."""
        d = os.path.join(g.workdir, "dest")
        os.makedirs(d, exist_ok=True)
        extra = []
        for i, (path, _) in enumerate(self.disks(g.workdir)):
            extra += ["-drive", "file=%s,format=raw,if=none,id=d%d,cache=unsafe"
                      % (path, i), "-device", "virtio-blk-pci,drive=d%d" % i]
        extra += list(self.extra) + ["-S", "-incoming", incoming]
        opt = dict(zip(g.cmd, g.cmd[1:]))
        args = type("Args", (), {"qemu": g.cmd[0]})()
        dst = Guest(args, d, opt["-kernel"], opt["-initrd"], tm=self.tm,
                    accel=opt["-accel"], mem=opt["-m"], extra=extra)
        log("destination: " + " ".join(dst.cmd))
        return dst

    def wait_destination(self, dst, run):
        """Loaded (and paused): its figures before the guest runs there."""
        wait_incoming(dst)
        run.host["dest"] = dst.qmp.host_stats()

    def finish_source(self, g, run):
        """The source quits (its store is freed: the pool's pages are given
        back) and must have run without a QEMU error. Its console reader
        (a thread bound to g) ends first, and the lines it printed before
        it stopped are parsed."""
        run.host["source-after"] = g.qmp.host_stats()
        g.qmp.cmd("quit")
        try:
            rc = g.proc.wait(timeout=30)
        except Exception:
            rc = None
        g.reader.join(timeout=30)
        while not g.lines.empty():
            line = g.lines.get_nowait()
            if line is not None:
                parse_line(run, line)
        g.stop()
        run.host["source-rc"] = rc
        run.host["source-errors"] = g.qemu_errors()

    def switch_to(self, g, dst):
        """From now on g is the destination: run_guest reads its console
        and answers there. Then the guest runs there."""
        g.__dict__.update(dst.__dict__)
        g.qmp.cmd("cont")

    def migrate(self, g, run):
        sock = os.path.join(g.workdir, "mig.sock")
        dst = self.destination(g, "unix:" + sock)
        t0 = time.time()
        g.qmp.cmd("migrate", uri="unix:" + sock)
        info = wait_migration(g, ("completed",))
        run.host["migration"] = info
        run.host["mig-seconds"] = time.time() - t0
        run.host["mig-bytes"] = g.qmp.get("migration-bytes")
        try:
            self.wait_destination(dst, run)
        except Fail:
            dst.stop()
            raise
        self.finish_source(g, run)
        self.switch_to(g, dst)

    def check(self, run):
        result_ok(run, "main")
        if self.params.get("BG", 1):
            result_ok(run, "bg")
        expect(run.st("main-written", "pages_host") > 0 and
               run.st("main-written", "pages_disk") > 0,
               "pages on the host and on the backing disk before migrating")
        no_failed_io(run, "end")
        self.check_migration(run)

    def check_migration(self, run):
        w, d, s = run.host["written"], run.host["dest"], run.host["source-after"]
        info = run.host["migration"]
        ram = info.get("ram", {})
        log("MIGRATION %s: %d pages (%d bytes held, %d compressed) sent as"
            " %d stream bytes (%.2f of their 4 KiB pages); RAM %d bytes;"
            " %.1f s total, downtime %s ms"
            % (self.name, s["stored-pages"], s["memory-held"],
               s["compressed-bytes"], run.host["mig-bytes"],
               run.host["mig-bytes"] / max(1, s["stored-pages"] * 4096),
               ram.get("transferred", 0), run.host["mig-seconds"],
               info.get("downtime", "?")))
        expect(w["stored-pages"] > 0, "host held pages when migrating")
        expect(d["stored-pages"] == s["stored-pages"] and
               d["compressed-bytes"] == s["compressed-bytes"],
               "destination holds what the source held at the switchover"
               " (%s / %s)" % (d, s))
        expect(run.host["mig-bytes"] < s["stored-pages"] * 4096,
               "the store travels compressed (%d bytes for %d pages)"
               % (run.host["mig-bytes"], s["stored-pages"]))
        expect(run.host["source-rc"] == 0 and not run.host["source-errors"],
               "the source quit cleanly after the migration (status %s %s)"
               % (run.host["source-rc"], run.host["source-errors"][:3]))


class MigrateFile(Migrate):
    """Save to a file with the VM paused (virsh save), quit, restore."""
    name = "migrate-file"
    params = {}

    def migrate(self, g, run):
        path = os.path.join(g.workdir, "vm.state")
        g.qmp.cmd("stop")
        t0 = time.time()
        g.qmp.cmd("migrate", uri="exec:cat > %s" % path)
        run.host["migration"] = wait_migration(g, ("completed",))
        run.host["mig-seconds"] = time.time() - t0
        run.host["mig-bytes"] = g.qmp.get("migration-bytes")
        run.host["file-bytes"] = os.path.getsize(path)
        # The source quits first: the restore must not need it.
        self.finish_source(g, run)
        dst = self.destination(g, "exec:cat %s" % path)
        try:
            self.wait_destination(dst, run)
        except Fail:
            dst.stop()
            raise
        self.switch_to(g, dst)

    def check_migration(self, run):
        log("state file %d bytes" % run.host["file-bytes"])
        super().check_migration(run)


class MigrateCancel(Migrate):
    """A slow migration cancelled halfway: the source goes on with every
    page (the destination refuses to run without the end of the stream)."""
    name = "migrate-cancel"
    params = {}

    def migrate(self, g, run):
        sock = os.path.join(g.workdir, "mig.sock")
        dst = self.destination(g, "unix:" + sock)
        g.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20})
        g.qmp.cmd("migrate", uri="unix:" + sock)
        wait_migration(g, ("active",))
        time.sleep(2)
        run.host["cancel-during"] = g.qmp.host_stats()
        g.qmp.cmd("migrate_cancel")
        run.host["migration"] = wait_migration(g, ("cancelled",))
        run.host["status-after"] = g.qmp.cmd("query-status")["status"]
        try:
            rc = dst.proc.wait(timeout=30)
        except Exception:
            rc = None
        dst.stop()
        run.host["dest-rc"] = rc
        run.host["source-after"] = g.qmp.host_stats()

    def check_migration(self, run):
        expect(run.host["status-after"] == "running",
               "the source runs on after the cancel")
        expect(run.host["source-after"]["stored-pages"] > 0,
               "the source still holds pages (%s)" % run.host["source-after"])
        expect(run.host["dest-rc"] not in (0, None),
               "the destination did not start without the whole stream (%s)"
               % run.host["dest-rc"])
