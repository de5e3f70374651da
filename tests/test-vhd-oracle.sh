#!/bin/sh
# SPDX-License-Identifier: MIT
# The vhd and vhd1 plugins against readers and writers nobody here wrote:
#  - images made by qemu-img (fixed and dynamic, odd sizes) with patterns written
#    by qemu-io read exactly as `qemu-img convert -O raw` gives them;
#  - images diskcore creates and writes (dynamic, fixed, grown by random writes,
#    and qemu-made images modified by diskcore) read back identically by
#    `qemu-img convert -f vpc` and by libvhdi (python3-libvhdi);
#  - differencing chains diskcore makes read identically by libvhdi, with its
#    parent set explicitly (qemu-img ignores VHD parents). libvhdi 20210425
#    treats the sectors after a run of present sectors, up to the end of that
#    bitmap byte, as present too, so chain writes here are 4 KiB-aligned (an
#    exact per-sector check of the bitmap is in vhd-diff.c); and it returns the
#    parent's data for a read that spans blocks of a child, so it reads in
#    pieces that never do.
# The disk is driven through libdiskcore by ctypes (tests/oracle-lib.sh).
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

oracle_need_tools "qemu-utils, libvhdi-utils" qemu-img qemu-io vhdiinfo
# python3-libvhdi installs for the system interpreter only.
ORACLE_PYTHON=${ORACLE_PYTHON:-/usr/bin/python3}
"$ORACLE_PYTHON" -c 'import pyvhdi' 2>/dev/null ||
	oracle_skip "python3-libvhdi is not installed for $ORACLE_PYTHON"
oracle_need_lib
oracle_workdir vhd-oracle

oracle_python <<'EOF'
import pyvhdi


class VhdDisk(ByteDisk):
    CHUNK = 1 << 20  # whole-disk reads in 1 MiB requests


def qemu_raw(img, opts=None):
    out = os.path.join(work, "qemu.raw")
    if opts:
        execute("qemu-img", "convert", "--image-opts",
                "driver=vpc,%s,file.filename=%s" % (opts, img), "-O", "raw", out)
    else:
        execute("qemu-img", "convert", "-f", "vpc", "-O", "raw", img, out)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def vhdi_read(path, parents=()):
    """Read an image with libvhdi; parents listed nearest first. libvhdi 20210425
    misreads differencing images when one read spans blocks of the child (it
    returns the parent's data), so it is read in 64 KiB pieces, which never do."""
    files = []
    for p in (path,) + tuple(parents):
        f = pyvhdi.file()
        f.open(p)
        files.append(f)
    for child, parent in zip(files, files[1:]):
        child.set_parent(parent)
    size = files[0].get_media_size()
    data = b"".join(files[0].read_buffer_at_offset(min(1 << 16, size - off), off)
                    for off in range(0, size, 1 << 16))
    return data, files


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def compare(what, got, want):
    if len(got) != len(want):
        fail("%s: %d bytes, expected %d" % (what, len(got), len(want)))
        return
    if got != want:
        first = next(i for i in range(len(want)) if got[i] != want[i])
        fail("%s: differs first at byte %d (sector %d)" % (what, first, first // 512))
    else:
        print("ok: " + what)


# --- 1. qemu writes, diskcore reads -------------------------------------------------

MiB = 1 << 20
cases = [("fixed", MiB), ("fixed", 3 * MiB + 512), ("dynamic", MiB),
         ("dynamic", 5 * MiB + 4096), ("dynamic", 24 * MiB + 512), ("dynamic", 2 * MiB)]
for n, (sub, size) in enumerate(cases):
    img = os.path.join(work, "q%d.vhd" % n)
    execute("qemu-img", "create", "-q", "-f", "vpc", "-o",
            "subformat=%s,force_size=on" % sub, img, str(size))
    rnd = random.Random(n)
    cmds = ["write -P 0xab 0 64k", "write -P 0x11 %d 512" % (size - 512)]
    for _ in range(12):
        length = rnd.choice([512, 4096, 65536, 3 * 512, 2 * MiB + 512])
        off = rnd.randrange(0, max(1, (size - length) // 512)) * 512
        if off + length <= size:
            cmds.append("write -P 0x%02x %d %d" % (rnd.randrange(1, 256), off, length))
    # Around a 2 MiB block boundary.
    if size > 2 * MiB + 4096:
        cmds.append("write -P 0x5a %d 4096" % (2 * MiB - 2048))
    execute("qemu-io", "-f", "vpc", *sum((["-c", c] for c in cmds), []), img)
    want = qemu_raw(img)
    for spec in ["vhd:" + img, "file:" + img] + (["vhd1:" + img] if sub == "fixed" else []):
        d = VhdDisk(spec, RO)
        compare("%s (%s, %d bytes) read by diskcore" % (spec.split(":")[0], sub, size),
                d.read_all(), want)
        d.close()
    data, _ = vhdi_read(img)
    compare("qemu %s image read by libvhdi (sanity of the oracles)" % sub, data, want)

# --- 2. diskcore writes, qemu and libvhdi read --------------------------------------


def random_writes(d, model, seed, count, max_len, unit=512):
    rnd = random.Random(seed)
    size = len(model)
    for i in range(count):
        length = rnd.randrange(1, max_len // unit + 1) * unit
        off = rnd.randrange(0, (size - length) // unit + 1) * unit
        data = pattern(seed * 1000 + i, length)
        d.write(off, data)
        model[off:off + length] = data


for n, (opts, size) in enumerate([("block=2M", 9 * MiB + 1536), ("block=512K", 4 * MiB),
                                  ("block=4K", MiB), ("block=1M", 8 * MiB)]):
    img = os.path.join(work, "d%d.vhd" % n)
    d = VhdDisk("vhd:%s;create=%d;%s" % (img, size, opts))
    model = bytearray(size)
    random_writes(d, model, n, 60, 300 * 1024)
    d.write(size - 512, pattern(99, 512))
    model[size - 512:] = pattern(99, 512)
    d.flush()
    compare("dynamic %s written by diskcore, read back by diskcore" % opts,
            d.read_all(), bytes(model))
    d.close()
    compare("dynamic %s written by diskcore, read by qemu-img" % opts,
            qemu_raw(img), bytes(model))
    data, _ = vhdi_read(img)
    compare("dynamic %s written by diskcore, read by libvhdi" % opts, data, bytes(model))
    info = execute("qemu-img", "info", "-f", "vpc", img).stdout.decode()
    if "virtual size: " not in info or "(%d bytes)" % size not in info:
        fail("qemu-img info does not report %d bytes:\n%s" % (size, info))
    # qemu-io allocates more blocks in the image diskcore made.
    execute("qemu-io", "-f", "vpc", "-c", "write -P 0x5c 0 64k",
            "-c", "write -P 0x5d %d 4096" % (size - 8192), img)
    model[0:65536] = b"\x5c" * 65536
    model[size - 8192:size - 4096] = b"\x5d" * 4096
    d = VhdDisk("vhd:" + img, RO)
    compare("dynamic %s written by diskcore then qemu-io, read by diskcore" % opts,
            d.read_all(), bytes(model))
    d.close()

# A qemu-made dynamic image grown and overwritten by diskcore.
img = os.path.join(work, "qgrow.vhd")
execute("qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
        img, str(12 * MiB))
execute("qemu-io", "-f", "vpc", "-c", "write -P 0x33 1M 3M", img)
model = bytearray(qemu_raw(img))
d = VhdDisk("vhd:" + img)
random_writes(d, model, 7, 40, 512 * 1024)
d.close()
compare("qemu image modified by diskcore, read by qemu-img", qemu_raw(img), bytes(model))
data, _ = vhdi_read(img)
compare("qemu image modified by diskcore, read by libvhdi", data, bytes(model))
execute("qemu-io", "-f", "vpc", "-c", "write -P 0x44 8M 1M", img)
model[8 * MiB:9 * MiB] = b"\x44" * MiB
d = VhdDisk("vhd:" + img, RO)
compare("diskcore image modified again by qemu-io, read by diskcore", d.read_all(),
        bytes(model))
d.close()

# Fixed VHDs diskcore creates (OpenVMM's footer: geometry 0, so qemu must be told
# to use the footer's size).
for spec in ["vhd1:%s;create=%d", "file:%s;create=%d"]:
    img = os.path.join(work, "f.vhd")
    size = 3 * MiB
    d = VhdDisk(spec % (img, size))
    model = bytearray(size)
    random_writes(d, model, 3, 20, 256 * 1024)
    d.close()
    compare("fixed (%s) written by diskcore, read by qemu-img" % spec.split(":")[0],
            qemu_raw(img, "force_size_calc=current_size"), bytes(model))
    data, _ = vhdi_read(img)
    compare("fixed (%s) written by diskcore, read by libvhdi" % spec.split(":")[0],
            data, bytes(model))
    os.unlink(img)

# --- 3. differencing chains, read by libvhdi ----------------------------------------

size = 6 * MiB
base = os.path.join(work, "base.vhd")
execute("qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
        base, str(size))
execute("qemu-io", "-f", "vpc", "-c", "write -P 0x71 0 3M", "-c", "write -P 0x72 5M 64k",
        base)
model = bytearray(qemu_raw(base))
mid = os.path.join(work, "mid.vhd")
d = VhdDisk("vhd:%s;parent=%s;block=512K" % (mid, base))
random_writes(d, model, 11, 30, 200 * 1024, 4096)
d.close()
sub = os.path.join(work, "sub")
os.mkdir(sub)
top = os.path.join(sub, "top.vhd")
d = VhdDisk("vhd:%s;parent=%s" % (top, mid))
random_writes(d, model, 12, 30, 300 * 1024, 4096)
compare("3-level chain read by diskcore", d.read_all(), bytes(model))
d.close()
data, files = vhdi_read(top, (mid, base))
compare("3-level chain (qemu base) read by libvhdi", data, bytes(model))
ids = [f.get_identifier() for f in files]
if files[0].get_parent_identifier() != ids[1] or files[1].get_parent_identifier() != ids[2]:
    fail("libvhdi: parent identifiers do not link the chain: %r" % ids)
pname = files[0].get_parent_filename()
if not pname or not pname.endswith("mid.vhd"):
    fail("libvhdi: parent file name of top is %r" % pname)
info = execute("vhdiinfo", top).stdout.decode()
if "Differential" not in info:
    fail("vhdiinfo does not call the child differential:\n" + info)
# The chain still opens after moving it (the relative locator): with
# ;parents=any, since top's locator (..\mid.vhd) leaves its directory.
moved = os.path.join(work, "moved")
os.mkdir(moved)
os.mkdir(os.path.join(moved, "sub"))
for p, q in [(base, "base.vhd"), (mid, "mid.vhd"), (top, "sub/top.vhd")]:
    os.rename(p, os.path.join(moved, q))
d = VhdDisk("vhd:" + os.path.join(moved, "sub", "top.vhd") + ";parents=any", RO)
compare("moved chain read by diskcore (relative locators)", d.read_all(), bytes(model))
d.close()

finish()
print("all oracle checks passed")
EOF
