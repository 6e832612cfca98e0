#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Swap backends side by side: vtmem, a virtio-blk swap disk, in-guest zram (LZ4).

Each setup boots the same Debian 6.1 guest (tests/e2e harness) and runs the
same workloads under a cgroup v2 memory.max that forces heavy swapping:
  swapverify  the e2e tests' verifying page workload (zero, same-filled,
              compressible and random pages, every byte checked)
  stress-ng   --vm with --verify (Debian's stress-ng, copied with its libraries)
Writes DIR/report.md, DIR/results.json, DIR/chart.png (gnuplot).

Paths (options or environment, as tests/e2e/vtmem_harness/cli.py): VTMEM_QEMU,
VTMEM_KO, VTMEM_SETUP, VTMEM_SWAPVERIFY, VTMEM_STORE_BENCH; VTMEM_ACCEL=auto|tcg|kvm.
Uses the e2e harness package: run it through bench/run.sh (which puts
tests/e2e on PYTHONPATH).
Exit status 0 = every workload verified in every setup, 1 = not, 77 = skipped.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from vtmem_harness import cli, image, runner
from vtmem_harness.checks import Fail

HERE = os.path.dirname(os.path.abspath(__file__))

SETUPS = ["vtmem", "disk", "zram"]
# Not run by default: --setups vtmem,vtmem-cached,disk,zram
EXTRA_SETUPS = ["vtmem-cached"]
ORDER = ["vtmem", "vtmem-cached", "disk", "zram"]
WORKLOADS = ["swapverify", "stress-ng"]
SWAP_SIZE = "1G"
SLOTS = (1 << 30) // 4096
# Guest-side metadata that the setups keep per swap slot (not in any counter):
# vtmem: one unsigned long per slot + pending and candidate arrays (4096 each);
# zram (6.1, CONFIG_ZRAM_MEMORY_TRACKING=y in Debian): handle, flags, ac_time.
VTMEM_TABLE = SLOTS * 8 + 2 * 4096 * 8
ZRAM_TABLE = SLOTS * 24


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ------------------------------------------------------------ guest image

def add_extras(workdir, kver, mods, base):
    """Appends stress-ng (+ its shared libraries) and the zram modules to the
    e2e base initramfs (concatenated cpio archives)."""
    st = os.path.join(workdir, "extra-root")
    shutil.rmtree(st, ignore_errors=True)
    os.makedirs(os.path.join(st, "bin"))
    os.makedirs(os.path.join(st, "lib/vtmem/zram"))
    sng = shutil.which("stress-ng")
    if not sng:
        raise Fail("stress-ng not installed (apt-get install stress-ng)")
    shutil.copy(sng, os.path.join(st, "bin/stress-ng"))
    for line in subprocess.check_output(["ldd", sng], text=True).splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if not m:
            continue
        src = os.path.realpath(m.group(1))
        for dst in {m.group(1), os.path.join(os.path.dirname(m.group(1)),
                                             os.path.basename(src))}:
            d = os.path.join(st, dst.lstrip("/"))
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if not os.path.exists(d):
                shutil.copy(src, d)
    image.copy_modules(mods, ["zram", "lz4"], os.path.join(st, "lib/vtmem/zram"),
                       os.path.join(st, "lib/vtmem/zram-order"))
    return image.append_cpio(base, st, os.path.join(workdir, "bench-base.cpio"))


GUEST_LIB = r"""
cs() { u=$(cut -d' ' -f1 /proc/uptime); echo "${u%%.*}${u#*.}"; }
bstat() {
	sed -n 's/^\(pswpin\|pswpout\|oom_kill\) \(.*\)/VTMEM-STAT '"$1"' vm_\1 \2/p' /proc/vmstat
	if [ -e /sys/block/zram0/mm_stat ]; then
		set -- "$1" $(cat /sys/block/zram0/mm_stat)
		echo "VTMEM-STAT $1 zram_orig $2"; echo "VTMEM-STAT $1 zram_compr $3"
		echo "VTMEM-STAT $1 zram_mem $4"; echo "VTMEM-STAT $1 zram_mem_max $6"
		echo "VTMEM-STAT $1 zram_same $7"
	fi
	if [ -e /sys/block/vtmem0/vtmem/stat ]; then
		sed -n 's/^\(pages_host\|pages_same\|pages_disk\|disk_writes\|host_refusals\|failed_reads\|failed_writes\) \(.*\)/VTMEM-STAT '"$1"' vt_\1 \2/p' /sys/block/vtmem0/vtmem/stat
	fi
}
sampler() { i=0; while :; do sleep 1; bstat "smp-$1-$i"; i=$((i + 1)); done; }
# run_wl TAG CMD...
run_wl() {
	tag=$1
	shift
	mkdir -p /sys/fs/cgroup/w
	echo +memory > /sys/fs/cgroup/cgroup.subtree_control
	echo %(memmax)s > /sys/fs/cgroup/w/memory.max
	[ -e /sys/block/zram0/mem_used_max ] && echo 0 > /sys/block/zram0/mem_used_max
	bstat "$tag-pre"
	sync_host "start-$tag"
	t0=$(cs)
	sampler "$tag" &
	spid=$!
	sh -c 'echo $$ > /sys/fs/cgroup/w/cgroup.procs && exec "$@"' wl "$@" > /tmp/wl.out 2>&1
	rc=$?
	t1=$(cs)
	kill $spid
	wait $spid 2>/dev/null
	sync_host "end-$tag"
	bstat "$tag-post"
	echo "VTMEM-STAT $tag wall_cs $((t1 - t0))"
	grep -q 'successful run completed' /tmp/wl.out && echo "VTMEM-STAT $tag sng_ok 1"
	grep -qi 'fail:\|unsuccessful' /tmp/wl.out && echo "VTMEM-STAT $tag sng_fail 1"
	sed -n 's/.*metrc:.* vm  *\([0-9][0-9]*\)  *[0-9.][0-9.]* .*/VTMEM-STAT '"$tag"' sng_bogo_ops \1/p' /tmp/wl.out
	sed 's/^/VTMEM-OUT /' /tmp/wl.out | tail -n 20
	echo "VTMEM-RC $tag $rc"
}
"""

SETUP_ON = {
    "vtmem": "setup -b /dev/vda -s %s\n" % SWAP_SIZE,
    # The driver without rw_page: swap cache, readahead (guest-driver/README.md).
    "vtmem-cached": "setup -o sync_io=0 -b /dev/vda -s %s\n" % SWAP_SIZE,
    "disk": "mkswap /dev/vda >/dev/null && swapon /dev/vda || echo 'VTMEM-FAIL swapon'\n",
    "zram": r"""for m in $(cat /lib/vtmem/zram-order); do
	insmod /lib/vtmem/zram/$m.ko || echo "VTMEM-FAIL insmod $m"
done
echo lz4 > /sys/block/zram0/comp_algorithm || echo "VTMEM-FAIL lz4"
grep -q '\[lz4\]' /sys/block/zram0/comp_algorithm && echo "VTMEM-MARK zram-lz4"
echo %s > /sys/block/zram0/disksize
mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 || echo 'VTMEM-FAIL swapon'
""" % SWAP_SIZE,
}
SETUP_OFF = {
    "vtmem": "vtmem-setup -r stop\n",
    "vtmem-cached": "vtmem-setup -r stop\n",
    "disk": "swapoff /dev/vda\n",
    "zram": "swapoff /dev/zram0\n",
}


class BenchScenario(runner.Scenario):
    """One guest boot: one setup, every workload."""

    def __init__(self, setup, p, workdir):
        self.name = setup
        self.setup = setup
        self.tm = "limit=1G" if setup.startswith("vtmem") else None
        self.disk_mb = 1024 if setup != "zram" else 0
        self.image = os.path.join(workdir, "backing.img")
        self.timeout = p["timeout"]
        wl = {
            "swapverify": "run_wl swapverify /bin/swapverify %d 21" % p["sv_mib"],
            "stress-ng": "run_wl stress-ng /bin/stress-ng --vm 1 --vm-bytes %dM "
                         "--vm-method %s --vm-madvise normal --verify --vm-keep "
                         "--vm-ops %d --metrics-brief "
                         "--timeout %ds" % (p["sng_mib"], p["sng_method"],
                                            p["sng_ops"], p["timeout"] // 2),
        }
        self.script = (GUEST_LIB % {"memmax": p["memmax"]} + "sync_host boot\n" +
                       SETUP_ON[setup] + "swapon -s\n" +
                       "".join(wl[w] + "\n" for w in p["workloads"]) +
                       SETUP_OFF[setup])
        self.samples = {}      # workload -> list of host samples
        self.times = {}
        self.after = {}
        self._stop = None

    def host_sample(self, g):
        s = {"t": time.time()}
        if self.tm is not None:
            s.update(g.qmp.host_stats())
            for k in ("raw-pages", "same-filled-pages"):
                s[k] = g.qmp.get(k)
        if self.setup == "disk":
            s["page_cache"] = fincore(self.image)
        return s

    def on_sync(self, g, run, name):
        m = re.match(r"(start|end)-(.*)", name)
        if m and m.group(1) == "start":
            wl = m.group(2)
            self.samples[wl] = [self.host_sample(g)]
            self._stop = threading.Event()

            def poll():
                while not self._stop.wait(0.5):
                    try:
                        self.samples[wl].append(self.host_sample(g))
                    except Exception:   # QEMU gone: the main loop reports it
                        return
            self._t = threading.Thread(target=poll, daemon=True)
            self._t.start()
            self.times[wl] = [time.time()]
        elif m:
            wl = m.group(2)
            self._stop.set()
            self._t.join()
            self.times[wl].append(time.time())
            self.after[wl] = self.host_sample(g)
            self.samples[wl].append(self.after[wl])
        return super().on_sync(g, run, name)


def fincore(path):
    try:
        out = subprocess.check_output(["fincore", "-b", "-n", "-o", "RES", path],
                                      text=True, stderr=subprocess.DEVNULL)
        return int(out.split()[0])
    except (subprocess.CalledProcessError, OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------- one run

def measure(scn, run, wl):
    """Figures of one workload in one setup (one boot)."""
    st = lambda tag, k, d=None: run.stats.get(tag, {}).get(k, d)  # noqa: E731
    r = run.results.get(wl, {})
    pre, post = wl + "-pre", wl + "-post"
    wall = st(wl, "wall_cs", 0) / 100.0
    out_b = (st(post, "vm_pswpout", 0) - st(pre, "vm_pswpout", 0)) * 4096
    in_b = (st(post, "vm_pswpin", 0) - st(pre, "vm_pswpin", 0)) * 4096
    if wl == "swapverify":
        ok = r.get("status") == "ok" and r.get("rc") == 0 and r.get("bad", 1) == 0
    else:
        ok = (r.get("rc") == 0 and st(wl, "sng_ok") == 1 and not st(wl, "sng_fail"))
    f = {"ok": bool(ok), "rc": r.get("rc"), "wall_s": wall,
         "swapout_mib": out_b / 2**20, "swapin_mib": in_b / 2**20,
         "swapout_mibs": out_b / 2**20 / wall if wall else 0,
         "swapin_mibs": in_b / 2**20 / wall if wall else 0,
         "oom_kills": st(post, "vm_oom_kill", 0) - st(pre, "vm_oom_kill", 0)}
    if wl == "stress-ng":
        f["bogo_ops"] = st(wl, "sng_bogo_ops")
    smp = [v for k, v in run.stats.items() if k.startswith("smp-%s-" % wl)]
    smp += [run.stats.get(post, {})]
    if scn.setup == "zram":
        top = max(smp, key=lambda s: s.get("zram_orig", 0))
        orig, compr = top.get("zram_orig", 0), top.get("zram_compr", 0)
        same = top.get("zram_same", 0) * 4096
        mem_max = max([st(post, "zram_mem_max", 0)] + [s.get("zram_mem", 0) for s in smp])
        f.update(guest_ram=mem_max + ZRAM_TABLE, guest_pool=mem_max,
                 host_ram=0, ratio=orig / compr if compr else None,
                 ratio_nosame=(orig - same) / compr if compr else None,
                 peak_stored_mib=orig / 2**20)
    elif scn.setup.startswith("vtmem"):
        hs = scn.samples.get(wl, [])
        top = max(hs, key=lambda s: s.get("stored-pages", 0)) if hs else {}
        held = max([s.get("memory-held", 0) for s in hs] or [0])
        stored = top.get("stored-pages", 0) * 4096
        # compressed-bytes counts compressed payloads only; raw (incompressible)
        # pages are kept as 4 KiB each (zram's compr_data_size counts them too).
        compr = top.get("compressed-bytes", 0) + top.get("raw-pages", 0) * 4096
        same = max([s.get("vt_pages_same", 0) for s in smp] or [0]) * 4096
        f.update(guest_ram=VTMEM_TABLE, guest_pool=0, host_ram=held,
                 ratio=stored / compr if compr else None,
                 ratio_withsame=(stored + same) / compr if compr else None,
                 peak_stored_mib=stored / 2**20,
                 held_ratio=stored / top["memory-held"] if top.get("memory-held") else None,
                 disk_writes=st(post, "vt_disk_writes", 0),
                 refusals=st(post, "vt_host_refusals", 0))
    else:
        hs = scn.samples.get(wl, [])
        pc = [s["page_cache"] for s in hs if s.get("page_cache") is not None]
        f.update(guest_ram=0, guest_pool=0, host_ram=max(pc) if pc else None,
                 host_ram_after=scn.after.get(wl, {}).get("page_cache"),
                 ratio=None)
    return f


def run_setup(args, p, workdir, vmlinuz, base, setup, accel):
    wd = os.path.join(workdir, setup)
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    scn = BenchScenario(setup, p, wd)
    run, g, elapsed = runner.run_guest(args, wd, vmlinuz, base, scn, accel)
    problems = []
    if g.bad:
        problems.append("console: %s" % g.bad[:3])
    if run.fails:
        problems.append("guest: %s" % run.fails)
    if setup == "zram" and "zram-lz4" not in run.marks:
        problems.append("zram did not select lz4")
    res = {}
    for wl in p["workloads"]:
        res[wl] = measure(scn, run, wl)
        if not res[wl]["ok"]:
            problems.append("%s not verified (%s)" % (wl, run.results.get(wl)))
        if setup.startswith("vtmem") and res[wl].get("disk_writes"):
            problems.append("vtmem wrote %d pages to the backing disk"
                            % res[wl]["disk_writes"])
    return res, problems, elapsed


# --------------------------------------------------------------- report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit == "MiB":
        return "%.1f MiB" % (v / 2**20)
    if unit == "x":
        return "%.2f" % v
    return "%.1f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a" if not (a == 0 and b == 0) else "-"
    return "%.2fx" % (a / b)


ROWS = [("wall time (s)", "wall_s", "", "lower is better"),
        ("swap-out (MiB/s)", "swapout_mibs", "", "pswpout x 4 KiB / wall time"),
        ("swap-in (MiB/s)", "swapin_mibs", "", "pswpin x 4 KiB / wall time"),
        ("swapped out (MiB)", "swapout_mib", "", "pswpout delta"),
        ("swapped in (MiB)", "swapin_mib", "", "pswpin delta"),
        ("guest RAM, backend", "guest_ram", "MiB", "see notes"),
        ("host RAM, swapped data (peak)", "host_ram", "MiB", "see notes"),
        ("compression ratio", "ratio", "x", "stored / compressed bytes")]


def report(p, results, meta, store, out):
    """results[setup][wl] = list of per-rep figure dicts."""
    # Medians over the reps whose workload verified (an OOM kill is not a
    # measurement); the per-rep lines show every rep.
    medians = {s: {w: {k: med([r[k] for r in results[s][w] if k in r and r["ok"]])
                       for k in set().union(*[r.keys() for r in results[s][w]])
                       if k not in ("ok",)}
                   for w in results[s]} for s in results}
    L = ["# vtmem swap benchmark", ""]
    L.append("Date %s, host load average at start %s / end %s, accel **%s**, "
             "%d rep(s), medians shown; total run time %.0f s."
             % (meta["date"], meta["load_start"], meta["load_end"], meta["accel"],
                p["reps"], meta["elapsed"], ))
    L.append("")
    if meta["accel"] == "tcg":
        L += ["**The guests run under TCG (no KVM on this machine).** TCG emulates "
              "every guest instruction, so guest-side CPU work is inflated many "
              "times: zram compresses with LZ4 *inside* the emulated guest, "
              "while vtmem compresses on the host at native speed; but vtmem's "
              "guest side (one synchronous virtio request per page: notify, "
              "interrupt, wake-up) is emulated too, and the disk moves many "
              "pages per request (readahead, large bios). Absolute times and "
              "the ratios are TCG figures, not KVM ones. The benchmark runs "
              "unchanged with KVM where KVM works "
              "(`VTMEM_ACCEL=kvm`, or the default `auto`).", ""]
    L += ["Guest: Debian %s kernel, %s RAM, 1 vCPU; workload cgroup memory.max=%s; "
          "swap size %s in every setup."
          % (meta["kver"], p["guest_mem"], p["memmax"], SWAP_SIZE), "",
          "Workloads: `swapverify %d` (MiB; 25%% zero, 15%% same-filled, "
          "30%% compressible, 30%% random pages; every byte verified) and "
          "`stress-ng --vm 1 --vm-bytes %dM --vm-method %s --vm-madvise normal --verify "
          "--vm-keep --vm-ops %d`." % (p["sv_mib"], p["sng_mib"], p["sng_method"], p["sng_ops"]),
          ""]
    okall = all(r["ok"] for s in results for w in results[s] for r in results[s][w])
    L.append("Verification: %s." % ("every workload verified OK in every setup "
                                    "and every rep" if okall else
                                    "**FAILURES** (see results.json)"))
    L.append("")
    for w in p["workloads"]:
        L += ["## %s" % w, "",
              "| figure | " + " | ".join(SETUPS_OF(results)) + " | " +
              " | ".join("%s / vtmem" % s for s in SETUPS_OF(results) if s != "vtmem") + " |",
              "|---" * (1 + 2 * len(SETUPS_OF(results)) - 1) + "|"]
        for label, key, unit, _ in ROWS:
            vals = [medians[s][w].get(key) for s in SETUPS_OF(results)]
            base = medians.get("vtmem", {}).get(w, {}).get(key)
            L.append("| %s | %s | %s |" % (
                label, " | ".join(fmt(v, unit) for v in vals),
                " | ".join(ratio(medians[s][w].get(key), base)
                           for s in SETUPS_OF(results) if s != "vtmem")))
        L.append("")
        extra = []
        if "zram" in medians:
            z = medians["zram"][w]
            extra.append("zram: mm_stat mem_used_max %s + slot table %s; compression "
                         "ratio without same-filled pages %s."
                         % (fmt(z.get("guest_pool"), "MiB"), fmt(ZRAM_TABLE, "MiB"),
                            fmt(z.get("ratio_nosame"), "x")))
        if "vtmem" in medians:
            v = medians["vtmem"][w]
            extra.append("vtmem: peak %s stored on the host; stored / memory-held "
                         "%s; ratio counting the same-filled pages kept in the "
                         "guest %s; backing-disk writes %s."
                         % (fmt(v.get("peak_stored_mib")) + " MiB",
                            fmt(v.get("held_ratio"), "x"),
                            fmt(v.get("ratio_withsame"), "x"),
                            fmt(v.get("disk_writes"))))
        if "disk" in medians:
            extra.append("disk: host page cache of the image still %s after the "
                         "workload ended." % fmt(medians["disk"][w].get("host_ram_after"),
                                                 "MiB"))
        L += ["- " + e for e in extra] + [""]
        L.append("Per rep (wall s): " + "; ".join(
            "%s %s" % (s, ", ".join("%.1f%s" % (r["wall_s"], "" if r["ok"] else
                                                  " FAILED (rc %s, OOM kills %s)"
                                                  % (r.get("rc"), r.get("oom_kills")))
                                     for r in results[s][w]))
            for s in SETUPS_OF(results)))
        L.append("")
    L += ["![chart](chart.png)", "", "## What the figures mean", "",
          "- **wall time**: guest uptime around the workload command (includes "
          "the cgroup's reclaim and every swap-in).",
          "- **swap-out / swap-in**: /proc/vmstat pswpout / pswpin deltas over the "
          "workload, times 4 KiB, divided by the wall time (an average over the "
          "run, not a device peak).",
          "- **guest RAM, backend**: RAM the swap backend itself takes inside "
          "the guest. zram: the peak of mm_stat mem_used_total (zsmalloc pool) "
          "+ its slot table (24 B/slot with CONFIG_ZRAM_MEMORY_TRACKING, "
          "computed). vtmem: the driver exposes no memory counter: counted is "
          "its slot table (8 B/slot) and two 4096-entry arrays, computed from "
          "the swap size; same-filled pages live inside the slot entries. "
          "disk: 0.",
          "- **host RAM, swapped data**: vtmem: peak of the device's "
          "`memory-held` (QMP qom-get, sampled every 0.5 s). disk: peak of the "
          "image file's host page cache (fincore, sampled every 0.5 s; QEMU uses "
          "cache=unsafe here, with cache=none it would be ~0 but every swap I/O "
          "would hit the host disk). zram: 0 on the host beyond the guest's own "
          "RAM (the pool is inside guest RAM).",
          "- **compression ratio**: vtmem: stored bytes (stored-pages x 4 KiB) / "
          "(compressed-bytes + raw-pages x 4 KiB) from qom-get, at the sample with the most stored "
          "pages (same-filled pages never reach the host). zram: "
          "orig_data_size / compr_data_size from mm_stat at its peak (zram counts "
          "same-filled pages in orig_data_size with 0 compressed bytes, so the "
          "ratio without them is given as well).",
          "- **swapped out** differs between setups for the same workload: vtmem "
          "and zram are synchronous swap devices (rw_page, SWP_SYNCHRONOUS_IO): "
          "a page swapped in skips the swap cache and its slot is freed at once "
          "(the backend drops its copy), so when it is evicted again it is "
          "written again; the disk keeps clean pages in the swap cache and "
          "does not rewrite them (but keeps their stale copies on disk).",
          "- **X / vtmem**: the setup's median divided by vtmem's median.", ""]
    if store:
        L += ["## Page store microbenchmark (vtmem-store-bench --json)", "",
              "Host-side, native; %d reps, medians." % store.get("reps", 0), "",
              "| data set | pages | LZ4 ratio | compress MB/s | store put MB/s | "
              "put/compress | decompress MB/s | store get MB/s | get/decompress | "
              "metadata B/page | space efficiency after compact |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in ("real", "mixed"):
            s = store.get(name)
            if not s:
                continue
            L.append("| %s | %d | %.3f | %.0f | %.0f | %.3f | %.0f | %.0f | %.3f | "
                     "%.2f | %.3f |" % (
                         name, s["pages"], s["lz4_ratio"], s["compress_mbs"],
                         s["put_mbs"], s["put_vs_compress"]["median"],
                         s["decompress_mbs"], s["get_mbs"],
                         s["get_vs_decompress"]["median"], s["metadata_per_page"],
                         s["space_efficiency"]))
        L.append("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    return medians


def SETUPS_OF(results):
    return [s for s in ORDER if s in results]


def chart(p, medians, out):
    """Three panels: wall time, guest+host RAM, throughput."""
    setups = [s for s in ORDER if s in medians]
    dat = os.path.join(out, "chart.dat")
    colour = {"vtmem": 0x4477aa, "vtmem-cached": 0x66aadd, "disk": 0x999999,
              "zram": 0xee7733}
    short = {"swapverify": "verify", "stress-ng": "stress"}
    with open(dat, "w") as f:
        f.write("# label wall_s swapout swapin guest_mib host_mib colour\n")
        for w in p["workloads"]:
            for s in setups:
                m = medians[s][w]
                f.write('"%s\\n%s" %.2f %.2f %.2f %.2f %.2f %d\n' % (
                    s.replace("-", "\\n"), short.get(w, w), m.get("wall_s") or 0,
                    m.get("swapout_mibs") or 0, m.get("swapin_mibs") or 0,
                    (m.get("guest_ram") or 0) / 2**20,
                    (m.get("host_ram") or 0) / 2**20, colour[s]))
    gp = r"""
set terminal pngcairo size %(width)d,560 font "DejaVu Sans,10"
set output '%(png)s'
set multiplot layout 1,3 title "vtmem vs virtio-blk swap disk vs zram (LZ4): medians of %(reps)d rep(s), guest accel %(accel)s" font ",12"
set bmargin 5
set style fill solid 0.85 border -1
set grid ytics
set xtics font ",9" nomirror
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
set key top left
set boxwidth 0.7
set title "workload wall time (s, lower is better)"
plot '%(dat)s' using 0:2:7:xtic(1) with boxes lc rgb variable notitle, \
     '' using 0:2:(sprintf("%%.1f", $2)) with labels offset 0,0.7 notitle
set style data histograms
set style histogram clustered gap 1
set boxwidth 0.9 relative
set offsets 0, 0, 0, 0
set title "swap throughput over the run (MiB/s, higher is better)"
plot '%(dat)s' using 3:xtic(1) title "swap-out" lc rgb "#66ccee", \
     '' using 4 title "swap-in" lc rgb "#228833"
set style histogram rowstacked
set boxwidth 0.7 relative
set title "RAM holding the swapped data (MiB, peak)"
plot '%(dat)s' using 5:xtic(1) title "guest RAM (backend)" lc rgb "#ee6677", \
     '' using 6 title "host RAM" lc rgb "#ccbb44"
unset multiplot
""" % {"png": os.path.join(out, "chart.png"), "dat": dat, "reps": p["reps"],
       "width": max(1500, 3 * (100 + 60 * len(setups) * len(p["workloads"]))),
       "accel": p.get("accel", "?")}
    gpf = os.path.join(out, "chart.gp")
    with open(gpf, "w") as f:
        f.write(gp)
    if not shutil.which("gnuplot"):
        log("gnuplot not installed: no chart (apt-get install gnuplot-nox)")
        return False
    subprocess.run(["gnuplot", gpf], check=True)
    return True


# ----------------------------------------------------------------- main

def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run (~2 min)")
    ap.add_argument("--reps", type=int, help="repetitions (3; --quick: 1)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-store-bench", action="store_true")
    cli.add_path_options(ap)
    ap.add_argument("--store-bench", default=os.environ.get("VTMEM_STORE_BENCH"))
    ap.add_argument("--keep", action="store_true", help="keep the guest work dir")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only write report.md and chart.png from a results.json")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            d = json.load(f)
        os.makedirs(a.out, exist_ok=True)
        medians = report(d["params"], d["results"], d["meta"], d["store"], a.out)
        chart(d["params"], medians, a.out)
        return 0
    p = {"reps": a.reps or (1 if a.quick else 3), "guest_mem": "256M",
         # zram's pool lives in the guest's RAM: at 448 MiB / 96M the guest
         # OOM-kills swapverify under zram (see docs/benchmarks.md).
         "memmax": "64M",
         "sv_mib": 160 if a.quick else 320,
         "sng_mib": 128 if a.quick else 384, "sng_ops": 1 if a.quick else 2,
         "sng_method": "gray", "timeout": 300 if a.quick else 600,
         "workloads": [w for w in a.workloads.split(",") if w]}
    setups = [s for s in a.setups.split(",") if s]
    bad = [s for s in setups if s not in SETUPS + EXTRA_SETUPS]
    if bad:
        ap.error("unknown setup(s) %s" % bad)
    skip = cli.missing_path(a)
    if skip:
        print(skip)
        return 77
    if not shutil.which("stress-ng"):
        print("SKIP: stress-ng not installed (apt-get install stress-ng)")
        return 77
    os.makedirs(a.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="vtmem-bench-")
    t0 = time.time()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_start": loadavg()}
    store = None
    if not a.no_store_bench and a.store_bench and os.path.exists(a.store_bench):
        log("store microbenchmark")
        sj = os.path.join(a.out, "store-bench.json")
        subprocess.run([a.store_bench, "--json", sj, "--reps",
                        "1" if a.quick else "3"] +
                       (["--max-real-pages", "20000", "--synthetic-pages", "10000"]
                        if a.quick else []),
                       check=True, stdout=subprocess.DEVNULL)
        with open(sj) as f:
            store = json.load(f)
    results = {s: {w: [] for w in p["workloads"]} for s in setups}
    problems = []
    try:
        kver, mods, _ = image.find_kernel(a.ko)
        vmlinuz, base = image.build_initramfs(a, workdir)
        base = add_extras(workdir, kver, mods, base)
        accel = runner.pick_accel(a, workdir, vmlinuz, base)
        p["accel"] = meta["accel"] = accel
        meta["kver"] = kver
        for rep in range(p["reps"]):
            # Rotate the order: no setup always runs first (warm host caches).
            order = setups[rep % len(setups):] + setups[:rep % len(setups)]
            for s in order:
                log("rep %d/%d: %s (load %s)" % (rep + 1, p["reps"], s, loadavg()))
                try:
                    res, probs, el = run_setup(a, p, workdir, vmlinuz, base, s, accel)
                except Fail as e:
                    problems.append("rep %d %s: %s" % (rep + 1, s, e))
                    log("FAIL " + problems[-1])
                    continue
                problems += ["rep %d %s: %s" % (rep + 1, s, x) for x in probs]
                for w in p["workloads"]:
                    results[s][w].append(res[w])
                    log("  %s %s: %s" % (s, w, ", ".join(
                        "%s=%s" % (k, ("%.2f" % v) if isinstance(v, float) else v)
                        for k, v in res[w].items())))
    except Fail as e:
        problems.append(str(e))
    meta["elapsed"] = time.time() - t0
    meta["load_end"] = loadavg()
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"params": p, "meta": meta, "results": results,
                   "problems": problems, "store": store}, f, indent=1)
    if all(results[s][w] for s in results for w in results[s]):
        medians = report(p, results, meta, store, a.out)
        chart(p, medians, a.out)
        log("report: %s" % os.path.join(a.out, "report.md"))
    else:
        problems.append("some setup produced no result: no report")
    if not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    for x in problems:
        log("PROBLEM " + x)
    log("%s in %.0f s" % ("FAIL" if problems else "OK", meta["elapsed"]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
