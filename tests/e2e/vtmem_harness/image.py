# SPDX-License-Identifier: GPL-2.0-or-later
"""The guest: its kernel and its initramfs.

Kernel selection is all here (CACHE, find_kernel): the kernel is
the one the module was built for (its vermagic, or VTMEM_KVER), unpacked
by tests/e2e/guest-kernel.sh under VTMEM_CACHE/kernel-KVER.

The initramfs is two concatenated cpio archives: a base (busybox, the
virtio modules, virtio_tmem.ko, vtmem-setup, swapverify and the scripts of
tests/e2e/guest/) built once per run, plus /scenario.sh for each boot.
"""

import os
import shlex
import shutil
import struct
import subprocess
import tempfile

from .checks import Fail

E2E_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST_DIR = os.path.join(E2E_DIR, "guest")
CACHE = os.environ.get("VTMEM_CACHE", os.path.expanduser("~/.cache/vtmem"))
VIRTIO_MODS = ["virtio", "virtio_ring", "virtio_pci_modern_dev",
               "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"]


def find_kernel(ko):
    """(kver, modules dir, vmlinuz) of the kernel the module was built for;
    guest-kernel.sh fetches it into CACHE when missing. Kernels from 7.x
    keep vmlinuz in the modules dir, under /usr/lib."""
    kver = os.environ.get("VTMEM_KVER") or subprocess.check_output(
        ["modinfo", "-F", "vermagic", ko], text=True).split()[0]
    root = os.path.join(CACHE, "kernel-" + kver)
    if not os.path.exists(os.path.join(root, ".done")):
        env = dict(os.environ, VTMEM_KVER=kver)
        subprocess.check_call(["sh", os.path.join(E2E_DIR, "guest-kernel.sh"), "fetch"],
                              stdout=subprocess.DEVNULL, env=env)
    for lib in ("lib", "usr/lib"):
        mods = os.path.join(root, lib, "modules", kver)
        if os.path.isdir(os.path.join(mods, "kernel")):
            break
    vmlinuz = os.path.join(root, "boot", "vmlinuz-" + kver)
    if not os.path.exists(vmlinuz):
        vmlinuz = os.path.join(mods, "vmlinuz")
    return kver, mods, pvh_kernel(vmlinuz, os.path.join(root, "vmlinux-pvh"))


# The bzImage payload's compression, by magic: what decompresses it.
PAYLOAD_TOOLS = [(b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                 (b"\x1f\x8b", "gzip")]
XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_entry(elf):
    """elf (bytes) is a 64-bit ELF with Xen's PHYS32_ENTRY note: QEMU's
    -kernel boots it through the PVH entry (pvh.bin option ROM)."""
    if elf[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", elf, phoff + i * phentsize)
        if ptype != 4:                  # PT_NOTE
            continue
        off, = struct.unpack_from("<Q", elf, phoff + i * phentsize + 8)
        size, = struct.unpack_from("<Q", elf, phoff + i * phentsize + 32)
        at = off
        while at + 12 <= off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, at)
            name = elf[at + 12:at + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


# The bzImage each unpacked kernel came from (pvh_kernel's out -> vmlinuz).
BZIMAGES = {}


def bzimage(kernel):
    """The bzImage of a kernel pvh_kernel unpacked (else kernel itself):
    for the boots that must go through the firmware and the kernel's own
    setup (S3 resume: a PVH-booted guest does not come back from it)."""
    return BZIMAGES.get(kernel, kernel)


def pvh_kernel(vmlinuz, out):
    """The kernel to boot: out, the uncompressed ELF of the bzImage vmlinuz
    (unpacked once, then cached), when it has a PVH entry (Debian's
    kernels: CONFIG_PVH); else vmlinuz. Booted directly, the kernel skips
    its decompressor: under TCG, unpacking 6.1's xz payload took most of
    the time to /init (a 6.1 boot to /init: ~3x faster)."""
    if os.path.exists(out):
        BZIMAGES[out] = vmlinuz
        return out
    with open(vmlinuz, "rb") as f:
        bz = f.read()
    if bz[0x202:0x206] != b"HdrS" or struct.unpack_from("<H", bz, 0x206)[0] < 0x208:
        return vmlinuz
    setup_sects = bz[0x1f1] or 4
    off, length = struct.unpack_from("<II", bz, 0x248)
    payload = bz[(setup_sects + 1) * 512 + off:][:length]
    tool = next((t for magic, t in PAYLOAD_TOOLS if payload.startswith(magic)), None)
    if tool is None:
        return vmlinuz
    # The payload ends with the uncompressed size (4 bytes, which the
    # tools take for a truncated next frame: their status is not 0); the
    # output must have exactly that size.
    got = subprocess.run([tool, "-dc", "-q"], input=payload, capture_output=True)
    if (len(got.stdout) != struct.unpack_from("<I", payload, len(payload) - 4)[0]
            or not has_pvh_entry(got.stdout)):
        return vmlinuz
    tmp = "%s.%d" % (out, os.getpid())
    with open(tmp, "wb") as f:
        f.write(got.stdout)
    os.replace(tmp, out)                # parallel runs: whole files only
    BZIMAGES[out] = vmlinuz
    return out


def mod_path(mods, name):
    """NAME's .ko or .ko.xz file, or None when it is built in."""
    try:
        with open(os.path.join(mods, "modules.builtin")) as f:
            if any(os.path.basename(line.strip()).split(".ko")[0] == name
                   for line in f):
                return None
    except OSError:
        pass
    for d, _, files in os.walk(os.path.join(mods, "kernel")):
        for f in (name + ".ko", name + ".ko.xz"):
            if f in files:
                return os.path.join(d, f)
    raise Fail("module %s not found in %s" % (name, mods))


def mod_order(mods, names):
    """names and the modules they depend on, each after its dependencies
    (built-in ones left out)."""
    order = []

    def visit(n):
        path = mod_path(mods, n)
        if n in order or path is None:
            return
        deps = subprocess.check_output(
            ["modinfo", "-F", "depends", path], text=True).strip()
        for d in filter(None, deps.split(",")):
            visit(d)
        order.append(n)
    for n in names:
        visit(n)
    return order


def copy_module(src, dst):
    """busybox insmod takes no compressed modules: unpack .ko.xz."""
    if src.endswith(".xz"):
        with open(dst, "wb") as out:
            subprocess.run(["xz", "-dc", src], stdout=out, check=True)
    else:
        shutil.copy(src, dst)


def copy_modules(mods, names, dest, order_file):
    """Copies names (with their dependencies) into dest and writes their
    load order, one a line, to order_file."""
    order = mod_order(mods, names)
    for m in order:
        copy_module(mod_path(mods, m), os.path.join(dest, m + ".ko"))
    with open(order_file, "w") as f:
        f.write("\n".join(order) + "\n")


def append_cpio(base, tree, out, names=None):
    """out = base + a newc archive of tree (all of it, or the paths names)."""
    if names is None:
        names = subprocess.check_output(["find", "."], cwd=tree)
    with open(out, "wb") as o:
        if base:
            with open(base, "rb") as b:
                shutil.copyfileobj(b, o)
            o.flush()
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=tree,
                       input=names, stdout=o, check=True)
    return out


def build_initramfs(args, workdir):
    """The base initramfs; args has ko, setup, swapverify. Returns
    (vmlinuz, base cpio)."""
    kver, mods, vmlinuz = find_kernel(args.ko)
    busybox = shutil.which("busybox") or "/bin/busybox"
    st = os.path.join(workdir, "initramfs-root")
    shutil.rmtree(st, ignore_errors=True)
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "lib/vtmem/mods"]:
        os.makedirs(os.path.join(st, d))
    shutil.copy(busybox, os.path.join(st, "bin", "busybox"))
    applets = subprocess.check_output([busybox, "--list"], text=True).split()
    for a in applets:
        p = os.path.join(st, "bin", a)
        if not os.path.exists(p):
            os.symlink("busybox", p)
    copy_modules(mods, VIRTIO_MODS, os.path.join(st, "lib/vtmem/mods"),
                 os.path.join(st, "lib/vtmem/virtio-order"))
    shutil.copy(args.ko, os.path.join(st, "lib/vtmem/virtio_tmem.ko"))
    shutil.copy(args.setup, os.path.join(st, "bin/vtmem-setup"))
    shutil.copy(args.swapverify, os.path.join(st, "bin/swapverify"))
    shutil.copy(os.path.join(GUEST_DIR, "lib.sh"), os.path.join(st, "lib/vtmem/lib.sh"))
    shutil.copy(os.path.join(GUEST_DIR, "init"), os.path.join(st, "init"))
    for p in ["init", "bin/vtmem-setup", "bin/swapverify"]:
        os.chmod(os.path.join(st, p), 0o755)
    return vmlinuz, append_cpio(None, st, os.path.join(workdir, "base.cpio"))


def shell_script(path, params=None):
    """The text of the script at path, after one NAME=value line per
    parameter (the script reads them as shell variables)."""
    with open(path) as f:
        text = f.read()
    return "".join("%s=%s\n" % (k, shlex.quote(str(v)))
                   for k, v in sorted((params or {}).items())) + text


def scenario_initramfs(workdir, base, script):
    """base + /scenario.sh with the text script, for one boot."""
    d = tempfile.mkdtemp(dir=workdir, prefix="scn-")
    with open(os.path.join(d, "scenario.sh"), "w") as f:
        f.write(script)
    out = os.path.join(workdir, "initrd-%s.cpio" % os.path.basename(d))
    return append_cpio(base, d, out, names=b"scenario.sh\n")
