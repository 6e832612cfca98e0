# SPDX-License-Identifier: GPL-2.0-or-later
"""Command line of the harness's entry points (tests, measurements, demo).

Paths come from options or the environment:
  --qemu / VTMEM_QEMU (else VTMEM_QEMU_DEFAULT)  our qemu-system-x86_64
  --ko / VTMEM_KO              virtio_tmem.ko
  --setup / VTMEM_SETUP        guest-driver/vtmem-setup
  --swapverify / VTMEM_SWAPVERIFY   static workload binary
  --workdir / VTMEM_E2E_WORKDIR     scratch dir (default: a temp dir)
  VTMEM_CACHE (default ~/.cache/vtmem): where guest-kernel.sh unpacked the kernel
  VTMEM_KVER: the guest kernel (default: the module's vermagic)
  VTMEM_ACCEL: auto (default: if /dev/kvm is usable, boot once with KVM and
    cache in VTMEM_CACHE whether it works; nested KVM hangs on some hosts), tcg, kvm
  VTMEM_LOGLEVEL: guest console loglevel (default 4)
  VTMEM_QEMU_PYTHON: QEMU's python/ folder (default: found from the QEMU
    binary or in VTMEM_CACHE; see qmp.py)
Exit status 0 = pass, 77 = skipped, 1 = fail.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

from . import image
from .checks import Fail, log
from .runner import check_run, pick_accel, run_guest

SOURCE_ROOT = os.path.dirname(os.path.dirname(image.E2E_DIR))


def add_path_options(ap):
    """--qemu, --ko, --setup and --swapverify, defaults from the environment."""
    ap.add_argument("--qemu", default=os.environ.get(
        "VTMEM_QEMU", os.environ.get("VTMEM_QEMU_DEFAULT")))
    ap.add_argument("--ko", default=os.environ.get("VTMEM_KO"))
    ap.add_argument("--setup", default=os.environ.get(
        "VTMEM_SETUP", os.path.join(SOURCE_ROOT, "guest-driver", "vtmem-setup")))
    ap.add_argument("--swapverify", default=os.environ.get("VTMEM_SWAPVERIFY"))


def missing_path(args, names=("qemu", "ko", "swapverify")):
    """The SKIP message for the first of names that does not exist, or None."""
    for what in names:
        p = getattr(args, what)
        if not p or not os.path.exists(p):
            return "SKIP: %s not found (%s)" % (what, p)
    return None


def print_tails(workdir):
    for name, n in (("console.log", 40), ("qemu-stderr.log", 10)):
        try:
            with open(os.path.join(workdir, name), errors="replace") as f:
                tail = f.readlines()[-n:]
            sys.stdout.write("--- %s:\n%s" % (name, "".join(tail)))
        except OSError:
            pass


def main(registry, description, argv=None):
    """Runs the scenario named on the command line, one of registry
    (name -> Scenario class); returns the exit status."""
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if len(registry) == 1:
        ap.add_argument("scenario", nargs="?", choices=sorted(registry),
                        default=next(iter(registry)))
    else:
        ap.add_argument("scenario", choices=sorted(registry))
    add_path_options(ap)
    ap.add_argument("--workdir", default=os.environ.get("VTMEM_E2E_WORKDIR"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args(argv)

    skip = missing_path(args)
    if skip:
        print(skip)
        return 77
    scn = registry[args.scenario]()
    if args.workdir:
        workdir = os.path.join(args.workdir, scn.name)
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
    else:
        workdir = tempfile.mkdtemp(prefix="vtmem-e2e-")
    t0 = time.time()
    try:
        vmlinuz, base = image.build_initramfs(args, workdir)
        accel = pick_accel(args, workdir, vmlinuz, base)
        run, g, elapsed = run_guest(args, workdir, vmlinuz, base, scn, accel)
        check_run(run, g)
        scn.check(run)
    except Fail as e:
        print("FAIL: %s: %s (console: %s)" % (scn.name, e,
                                              os.path.join(workdir, "console.log")))
        print_tails(workdir)
        return 1
    log("PASS %s in %.1f s (guest %.1f s, accel %s)"
        % (scn.name, time.time() - t0, elapsed, accel))
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
