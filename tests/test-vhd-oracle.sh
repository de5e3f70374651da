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
#    exact per-sector check of the bitmap is in test-vhd.c); and it returns the
#    parent's data for a read that spans blocks of a child, so it reads in
#    pieces that never do.
# The disk is driven through libdiskcore by ctypes.
set -eu

for tool in qemu-img qemu-io vhdiinfo; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool is not installed (qemu-utils, libvhdi-utils)" >&2
		exit 77
	fi
done
# python3-libvhdi installs for the system interpreter only.
PY=/usr/bin/python3
if ! "$PY" -c 'import pyvhdi' 2>/dev/null; then
	echo "SKIP: python3-libvhdi is not installed for $PY" >&2
	exit 77
fi
: "${DISKCORE_BUILD_ROOT:?run through meson test}"
if [ -n "${DISKCORE_SANITIZED:-}" ]; then
	# The oracle drives libdiskcore from the system python through ctypes; an
	# ASan-built library in an uninstrumented interpreter fails in realpath().
	# The C tests cover this plugin under the sanitizers.
	echo "SKIP: ctypes oracle does not run against a sanitizer build" >&2
	exit 77
fi
lib="$DISKCORE_BUILD_ROOT/core/libdiskcore.so"
if [ ! -e "$lib" ]; then
	echo "FAIL: $lib not found" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/diskcore-vhd-oracle-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

LIB="$lib" WORK="$work" "$PY" - <<'EOF'
import ctypes, os, random, subprocess, sys
import pyvhdi

work = os.environ["WORK"]
lib = ctypes.CDLL(os.environ["LIB"], mode=ctypes.RTLD_GLOBAL)
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_close.argtypes = [ctypes.c_void_p]
lib.dc_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_uint32]
lib.dc_flush.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.restype = ctypes.c_uint64
lib.dc_last_error.restype = ctypes.c_char_p
RO = 1
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL: " + msg, file=sys.stderr)


def run(*args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise SystemExit("FAIL: %s: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout


class Disk:
    def __init__(self, spec, flags=0):
        self.h = ctypes.c_void_p()
        rc = lib.dc_open(spec.encode(), flags, ctypes.byref(self.h))
        if rc != 0:
            raise SystemExit("FAIL: dc_open(%s) = %d: %s"
                             % (spec, rc, lib.dc_last_error().decode()))

    def size(self):
        return lib.dc_sector_count(self.h) * 512

    def read(self, off, n):
        buf = ctypes.create_string_buffer(n)
        rc = lib.dc_read(self.h, off // 512, buf, n)
        if rc != 0:
            raise SystemExit("FAIL: read(%d, %d) = %d" % (off, n, rc))
        return buf.raw

    def read_all(self):
        out, size = [], self.size()
        for off in range(0, size, 1 << 20):
            out.append(self.read(off, min(1 << 20, size - off)))
        return b"".join(out)

    def write(self, off, data):
        rc = lib.dc_write(self.h, off // 512, data, len(data), 0)
        if rc != 0:
            raise SystemExit("FAIL: write(%d, %d) = %d" % (off, len(data), rc))

    def flush(self):
        if lib.dc_flush(self.h) != 0:
            raise SystemExit("FAIL: flush")

    def close(self):
        lib.dc_close(self.h)


def qemu_raw(img, opts=None):
    out = os.path.join(work, "qemu.raw")
    if opts:
        run("qemu-img", "convert", "--image-opts",
            "driver=vpc,%s,file.filename=%s" % (opts, img), "-O", "raw", out)
    else:
        run("qemu-img", "convert", "-f", "vpc", "-O", "raw", img, out)
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
    run("qemu-img", "create", "-q", "-f", "vpc", "-o",
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
    run("qemu-io", "-f", "vpc", *sum((["-c", c] for c in cmds), []), img)
    want = qemu_raw(img)
    for spec in ["vhd:" + img, "file:" + img] + (["vhd1:" + img] if sub == "fixed" else []):
        d = Disk(spec, RO)
        compare("%s (%s, %d bytes) read by diskcore" % (spec.split(":")[0], sub, size),
                d.read_all(), want)
        d.close()
    data, _ = vhdi_read(img)
    compare("qemu %s image read by libvhdi (sanity of the oracles)" % sub, data, want)

# --- 2. diskcore writes, qemu and libvhdi read --------------------------------------


def random_writes(d, model, seed, count, max_len):
    rnd = random.Random(seed)
    size = len(model)
    for i in range(count):
        length = rnd.randrange(1, max_len // 512 + 1) * 512
        off = rnd.randrange(0, (size - length) // 512 + 1) * 512
        data = pattern(seed * 1000 + i, length)
        d.write(off, data)
        model[off:off + length] = data


for n, (opts, size) in enumerate([("block=2M", 9 * MiB + 1536), ("block=512K", 4 * MiB),
                                  ("block=4K", MiB), ("block=1M", 8 * MiB)]):
    img = os.path.join(work, "d%d.vhd" % n)
    d = Disk("vhd:%s;create=%d;%s" % (img, size, opts))
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
    info = run("qemu-img", "info", "-f", "vpc", img).decode()
    if "virtual size: " not in info or "(%d bytes)" % size not in info:
        fail("qemu-img info does not report %d bytes:\n%s" % (size, info))
    # qemu-io allocates more blocks in the image diskcore made.
    run("qemu-io", "-f", "vpc", "-c", "write -P 0x5c 0 64k",
        "-c", "write -P 0x5d %d 4096" % (size - 8192), img)
    model[0:65536] = b"\x5c" * 65536
    model[size - 8192:size - 4096] = b"\x5d" * 4096
    d = Disk("vhd:" + img, RO)
    compare("dynamic %s written by diskcore then qemu-io, read by diskcore" % opts,
            d.read_all(), bytes(model))
    d.close()

# A qemu-made dynamic image grown and overwritten by diskcore.
img = os.path.join(work, "qgrow.vhd")
run("qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
    img, str(12 * MiB))
run("qemu-io", "-f", "vpc", "-c", "write -P 0x33 1M 3M", img)
model = bytearray(qemu_raw(img))
d = Disk("vhd:" + img)
random_writes(d, model, 7, 40, 512 * 1024)
d.close()
compare("qemu image modified by diskcore, read by qemu-img", qemu_raw(img), bytes(model))
data, _ = vhdi_read(img)
compare("qemu image modified by diskcore, read by libvhdi", data, bytes(model))
run("qemu-io", "-f", "vpc", "-c", "write -P 0x44 8M 1M", img)
model[8 * MiB:9 * MiB] = b"\x44" * MiB
d = Disk("vhd:" + img, RO)
compare("diskcore image modified again by qemu-io, read by diskcore", d.read_all(),
        bytes(model))
d.close()

# Fixed VHDs diskcore creates (OpenVMM's footer: geometry 0, so qemu must be told
# to use the footer's size).
for spec in ["vhd1:%s;create=%d", "file:%s;create=%d"]:
    img = os.path.join(work, "f.vhd")
    size = 3 * MiB
    d = Disk(spec % (img, size))
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


def aligned_writes(d, model, seed, count, max_len):
    rnd = random.Random(seed)
    size = len(model)
    for i in range(count):
        length = rnd.randrange(1, max_len // 4096 + 1) * 4096
        off = rnd.randrange(0, (size - length) // 4096 + 1) * 4096
        data = pattern(seed * 1000 + i, length)
        d.write(off, data)
        model[off:off + length] = data


size = 6 * MiB
base = os.path.join(work, "base.vhd")
run("qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
    base, str(size))
run("qemu-io", "-f", "vpc", "-c", "write -P 0x71 0 3M", "-c", "write -P 0x72 5M 64k", base)
model = bytearray(qemu_raw(base))
mid = os.path.join(work, "mid.vhd")
d = Disk("vhd:%s;parent=%s;block=512K" % (mid, base))
aligned_writes(d, model, 11, 30, 200 * 1024)
d.close()
sub = os.path.join(work, "sub")
os.mkdir(sub)
top = os.path.join(sub, "top.vhd")
d = Disk("vhd:%s;parent=%s" % (top, mid))
aligned_writes(d, model, 12, 30, 300 * 1024)
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
info = run("vhdiinfo", top).decode()
if "Differential" not in info:
    fail("vhdiinfo does not call the child differential:\n" + info)
# The chain still opens after moving it (the relative locator).
moved = os.path.join(work, "moved")
os.mkdir(moved)
os.mkdir(os.path.join(moved, "sub"))
for p, q in [(base, "base.vhd"), (mid, "mid.vhd"), (top, "sub/top.vhd")]:
    os.rename(p, os.path.join(moved, q))
d = Disk("vhd:" + os.path.join(moved, "sub", "top.vhd"), RO)
compare("moved chain read by diskcore (relative locators)", d.read_all(), bytes(model))
d.close()

if failures:
    sys.exit(1)
print("all oracle checks passed")
EOF
