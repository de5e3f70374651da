#!/bin/sh
# SPDX-License-Identifier: MIT
# The vhdx plugin against readers and writers nobody here wrote:
#  - images made by qemu-img (dynamic, with ZERO or NOT_PRESENT blocks, and fixed;
#    block sizes 1, 2, 32 and 256 MiB; sizes that are not a multiple of the block
#    size) with patterns written by qemu-io read exactly as `qemu-img convert -O raw`
#    gives them;
#  - images diskcore creates and writes (512 and 4096-byte sectors, dynamic and
#    fixed, random writes that grow the file, unmap of whole and partial blocks)
#    and qemu-made images diskcore modifies pass `qemu-img check` and read back
#    identically through `qemu-img convert`;
#  - a dirty log crafted here (independently of the plugin) is replayed the same
#    way by diskcore (in memory when read-only, into the file when writable) and
#    by `qemu-img check -r all`; so is the log a killed diskcore writer leaves;
#  - crash test: a diskcore writer doing allocating writes is killed with SIGKILL
#    many times; the image always opens, `qemu-img check` is clean, every write
#    flushed before the kill reads back, and no sector holds anything but its old
#    or its new content;
#  - libvhdi (python3-libvhdi) is tried on a differencing chain diskcore makes;
#    what it does is printed (qemu-img cannot read VHDX differencing images).
# The disk is driven through libdiskcore by ctypes (tests/oracle-lib.sh).
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

oracle_need_tools qemu-utils qemu-img qemu-io
ORACLE_PYTHON=${ORACLE_PYTHON:-/usr/bin/python3}
[ -x "$ORACLE_PYTHON" ] || oracle_skip "$ORACLE_PYTHON is not installed"
oracle_need_lib
oracle_workdir vhdx-oracle

oracle_python <<'EOF'
import struct, threading, time, uuid

LIBPATH = os.environ["LIB"]
MIB = 1 << 20


def qemu_raw(img):
    out = os.path.join(work, "qemu.raw")
    execute("qemu-img", "convert", "-f", "vhdx", "-O", "raw", img, out)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def qemu_check(img, what):
    r = execute("qemu-img", "check", "-f", "vhdx", img, ok=(0, 1, 2, 3))
    if r.returncode != 0 or b"No errors" not in r.stdout:
        fail("%s: qemu-img check: %s%s" % (what, r.stdout.decode(), r.stderr.decode()))


def describe_diff(a, b, ss=512):
    if len(a) != len(b):
        return "sizes %d and %d" % (len(a), len(b))
    if a == b:
        return None
    for o in range(0, len(a), ss):
        if a[o:o + ss] != b[o:o + ss]:
            return "first difference in the sector at byte %d" % o
    return None


def compare(what, got, want):
    d = describe_diff(got, want)
    if d:
        fail("%s: %s" % (what, d))


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


# --- 1. qemu-made images read by diskcore ---------------------------------------

T0 = time.time()

def qemu_made(subformat, bs, size, extra=""):
    img = os.path.join(work, "q-%s-%s.vhdx" % (subformat, bs))
    opts = "subformat=%s,block_size=%s%s" % (subformat, bs, extra)
    execute("qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, img, str(size))
    cmds = ["write -P 0xab 0 64k", "write -P 0x5c %d 1536" % (size - 1536),
            "write -P 0x21 %d 200k" % (MIB - 100 * 1024),
            "write -P 0x77 %d 4k" % (size // 2 // 4096 * 4096)]
    execute("qemu-io", "-f", "vhdx", *[a for c in cmds for a in ("-c", c)], img)
    return img


sizes = {"1M": 5 * MIB + 7 * 512, "2M": 5 * MIB + 7 * 512,
         "32M": 40 * MIB + 3 * 4096, "256M": 40 * MIB + 512}
for subformat in ("dynamic", "fixed"):
    for bs, size in sizes.items():
        extras = [""]
        # A fixed image made with block_state_zero=off ends with the disk,
        # inside its last block (issue 14): the file is shorter than the
        # block its BAT entry names.
        if bs in ("1M", "32M"):
            extras.append(",block_state_zero=off")
        for extra in extras:
            what = "qemu %s %s%s" % (subformat, bs, extra)
            img = qemu_made(subformat, bs, size, extra)
            want = qemu_raw(img)
            d = ByteDisk("vhdx:" + img, RO)
            if d.size() != size:
                fail("%s: size %d, qemu says %d" % (what, d.size(), size))
            compare(what, d.read_all(), want)
            d.close()
            # A writable open that changes nothing leaves the image as it was.
            d = ByteDisk(img)
            d.close()
            qemu_check(img, what + " after a writable open")
            compare(what + " after a writable open", qemu_raw(img), want)
            os.unlink(img)
print("qemu-made images: read identically (%.1f s)" % (time.time() - T0))


# --- 2. Images diskcore writes, read by qemu --------------------------------------

def exercise(d, model, rnd, n, max_len, unmaps):
    ss = d.ss
    size = len(model)
    for i in range(n):
        ln = rnd.randrange(1, max_len // ss + 1) * ss
        off = rnd.randrange(0, size // ss) * ss
        ln = min(ln, size - off)
        data = pattern(rnd.random(), ln)
        d.write(off, data)
        model[off:off + ln] = data
        if i % 7 == 6:
            d.flush()
        if unmaps and i % 5 == 4:
            uo = rnd.randrange(0, size // ss) * ss
            ul = min(rnd.randrange(1, 3 * MIB // ss) * ss, size - uo)
            d.unmap(uo, ul)
            model[uo:uo + ul] = bytes(ul)


variants = [("create=%d;block=1M" % (9 * MIB + 3 * 512), 512),
            ("create=%d;block=2M;sector=4096" % (11 * MIB + 4096), 4096),
            ("create=%d;block=32M;fixed" % (20 * MIB + 512), 512),
            ("create=%d;block=1M;sector=4096;fixed" % (5 * MIB), 4096)]


def libvhdi_raw(img, size):
    """The image as libvhdi reads it, or None without python3-libvhdi."""
    try:
        import pyvhdi
    except ImportError:
        return None
    f = pyvhdi.file()
    f.open(img)
    data = b"".join(f.read_buffer_at_offset(min(MIB, size - o), o)
                    for o in range(0, size, MIB))
    f.close()
    return data


def independent_check(img, ss, model, what):
    """qemu 7.2 opens only 512-byte-sector VHDX ("Operation not supported"
    otherwise); images with 4096-byte sectors are read by libvhdi instead."""
    if ss == 512:
        qemu_check(img, what)
        compare(what + " (qemu)", qemu_raw(img), bytes(model))
        return
    got = libvhdi_raw(img, len(model))
    if got is None:
        print("note: %s: no python3-libvhdi to read 4096-byte sectors" % what)
    else:
        compare(what + " (libvhdi)", got, bytes(model))


T0 = time.time()
r = None
for i, (opts, ss) in enumerate(variants):
    img = os.path.join(work, "dc%d.vhdx" % i)
    what = "diskcore %s" % opts
    d = ByteDisk("vhdx:%s;%s" % (img, opts))
    model = bytearray(d.size())
    rnd = random.Random(i)
    exercise(d, model, rnd, 40, 3 * MIB, "fixed" not in opts)
    compare(what + " (diskcore)", d.read_all(), bytes(model))
    d.close()
    independent_check(img, ss, model, what)
    if ss == 4096 and r is None:
        r = execute("qemu-img", "check", "-f", "vhdx", img, ok=(0, 1, 2, 3))
        print("qemu-img on 4096-byte sectors: %s" % r.stderr.decode().strip()[-80:])
    # Reopened and written again: the log is reused across opens.
    d = ByteDisk("vhdx:" + img)
    exercise(d, model, rnd, 10, MIB, "fixed" not in opts)
    d.close()
    independent_check(img, ss, model, what + ", second open")
    d = ByteDisk("vhdx:" + img, RO)
    compare(what + ", second open (diskcore)", d.read_all(), bytes(model))
    d.close()

# A qemu-made image (ZERO blocks) written and unmapped by diskcore.
img = qemu_made("dynamic", "1M", 6 * MIB + 512)
model = bytearray(qemu_raw(img))
d = ByteDisk("vhdx:" + img)
exercise(d, model, random.Random(99), 30, 2 * MIB, True)
d.close()
qemu_check(img, "qemu-made, written by diskcore")
compare("qemu-made, written by diskcore", qemu_raw(img), bytes(model))
# ... and qemu writes after diskcore.
execute("qemu-io", "-f", "vhdx", "-c", "write -P 0x3d 1000k 300k", img)
model[1000 * 1024:1300 * 1024] = b"\x3d" * (300 * 1024)
d = ByteDisk("vhdx:" + img, RO)
compare("qemu after diskcore", d.read_all(), bytes(model))
d.close()
print("diskcore-written images: qemu-img check clean, read identically (%.1f s)"
      % (time.time() - T0))
T0 = time.time()


# --- 3. The log ------------------------------------------------------------------

def crc32c(data, skip=None):
    c = 0xffffffff
    for i, b in enumerate(data):
        if skip is not None and skip <= i < skip + 4:
            b = 0
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff


def crc32c_fast(data, skip):
    # Table-driven, built here, for the larger structures.
    if not hasattr(crc32c_fast, "t"):
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
            t.append(c)
        crc32c_fast.t = t
    t = crc32c_fast.t
    data = bytearray(data)
    data[skip:skip + 4] = bytes(4)
    c = 0xffffffff
    for b in data:
        c = t[(c ^ b) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff


assert crc32c(b"123456789") == 0xe3069283


def layout(img):
    with open(img, "rb") as f:
        raw = f.read(320 * 1024)
        hs = []
        for slot in (0, 1):
            h = raw[(64 + 64 * slot) * 1024:][:4096]
            ok = h[:4] == b"head" and struct.unpack_from("<I", h, 4)[0] == crc32c_fast(h, 4)
            hs.append((ok, struct.unpack_from("<Q", h, 8)[0], h))
        cur = 1 if (not hs[0][0] or (hs[1][0] and hs[1][1] > hs[0][1])) else 0
        h = hs[cur][2]
        log_len, log_off = struct.unpack_from("<IQ", h, 68)
        rt = raw[192 * 1024:256 * 1024]
        regions = {}
        for i in range(struct.unpack_from("<I", rt, 8)[0]):
            g, off, ln = struct.unpack_from("<16sQI", rt, 16 + 32 * i)
            regions[str(uuid.UUID(bytes_le=g))] = (off, ln)
    return {"slot": cur, "hdr": h, "log_off": log_off, "log_len": log_len,
            "bat": regions["2dc27766-f623-4200-9d64-115e9bfd4a08"][0]}


def craft_log(img, secs, flushed, last):
    """Write one log entry updating the 4 KiB sectors {offset: bytes}, and a
    header naming its LogGuid: what a writer leaves when it dies after making
    the entry durable and before applying it."""
    L = layout(img)
    guid = uuid.uuid4().bytes_le
    seq = 7
    n = len(secs)
    ent = bytearray(4096 * (1 + n))
    struct.pack_into("<4sIIIQII16sQQ", ent, 0, b"loge", 0, len(ent), 0, seq, n, 0, guid,
                     flushed, last)
    for i, (off, sec) in enumerate(sorted(secs.items())):
        struct.pack_into("<4s4s8sQQ", ent, 64 + 32 * i, b"desc", sec[4092:], sec[:8], off, seq)
        struct.pack_into("<4sI", ent, 4096 * (1 + i), b"data", seq >> 32)
        ent[4096 * (1 + i) + 8:4096 * (2 + i) - 4] = sec[8:4092]
        struct.pack_into("<I", ent, 4096 * (2 + i) - 4, seq & 0xffffffff)
    struct.pack_into("<I", ent, 4, crc32c_fast(ent, 4))
    h = bytearray(L["hdr"])
    struct.pack_into("<Q", h, 8, struct.unpack_from("<Q", h, 8)[0] + 1)
    h[48:64] = guid
    struct.pack_into("<I", h, 4, crc32c_fast(h, 4))
    with open(img, "r+b") as f:
        f.seek(L["log_off"])
        f.write(ent)
        f.seek((64 + 64 * (1 - L["slot"])) * 1024)
        f.write(h)


def log_guid(img):
    return layout(img)["hdr"][48:64]


# 3a. A crafted entry on a qemu-made image: block 2 gets space at the end of the
# file (its data written first, as a writer does) and block 0 becomes ZERO.
img = qemu_made("dynamic", "1M", 4 * MIB, ",block_state_zero=off")
before = qemu_raw(img)
L = layout(img)
size = os.path.getsize(img)
new = (size + MIB - 1) // MIB * MIB
blk = pattern(3, MIB)
with open(img, "r+b") as f:
    f.seek(new)
    f.write(blk)
    f.seek(L["bat"])
    bat = bytearray(f.read(4096))
struct.pack_into("<QQQ", bat, 0, 2, struct.unpack_from("<Q", bat, 8)[0], new | 6)
craft_log(img, {L["bat"]: bytes(bat)}, new + MIB, new + MIB)
after = bytearray(before)
after[0:MIB] = bytes(MIB)
after[2 * MIB:3 * MIB] = blk
after = bytes(after)
d = ByteDisk("vhdx:" + img, RO)
compare("crafted log, diskcore read-only (in memory)", d.read_all(), after)
d.close()
if log_guid(img) == bytes(16):
    fail("a read-only open changed the header")
r = execute("qemu-img", "convert", "-f", "vhdx", "-O", "raw", img,
            os.path.join(work, "x.raw"), ok=(0, 1))
print("qemu-img convert (read-only) on an image whose log needs replay: exit %d, %s"
      % (r.returncode, (r.stderr.decode().strip() or "no message")[:160]))
qcopy = img + ".qemu.vhdx"
shutil.copy(img, qcopy)
execute("qemu-img", "check", "-f", "vhdx", "-r", "all", qcopy, ok=(0, 1, 2, 3))
compare("crafted log, replayed by qemu-img check -r all", qemu_raw(qcopy), after)
d = ByteDisk("vhdx:" + img)
compare("crafted log, diskcore writable (replayed)", d.read_all(), after)
d.close()
if log_guid(img) != bytes(16):
    fail("LogGuid still set after a writable open and close")
qemu_check(img, "crafted log replayed by diskcore")
compare("crafted log replayed by diskcore, read by qemu", qemu_raw(img), after)
print("crafted log: replayed identically by diskcore and qemu")

# 3b. The log a killed diskcore writer leaves.
WRITER = os.path.join(work, "writer.py")
with open(WRITER, "w") as f:
    f.write(r'''
import ctypes, os, random, sys
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_uint32]
lib.dc_flush.argtypes = [ctypes.c_void_p]
h = ctypes.c_void_p()
if lib.dc_open(("vhdx:" + sys.argv[2]).encode(), 0, ctypes.byref(h)) != 0:
    sys.exit(2)
sys.stdout.write("R\n")
sys.stdout.flush()
slots = [int(x) for x in sys.argv[3].split(",")]
every = int(sys.argv[4])
for i, s in enumerate(slots):
    data = random.Random(s).randbytes(65536)
    if lib.dc_write(h, s * 128, data, 65536, 0) != 0:
        sys.exit(3)
    if i % every == every - 1:
        if lib.dc_flush(h) != 0:
            sys.exit(4)
        sys.stdout.write("F %d\n" % (i + 1))
        sys.stdout.flush()
if sys.argv[5] == "exit":
    os._exit(0)  # no close: the log stays live
sys.stdout.write("DONE\n")
sys.stdout.flush()
import time
time.sleep(60)
''')

SLOT = 65536
img = os.path.join(work, "killed.vhdx")
d = ByteDisk("vhdx:%s;create=16M;block=1M" % img)
d.close()
slots = random.Random(5).sample(range(16 * MIB // SLOT), 40)
execute(sys.executable, WRITER, LIBPATH, img, ",".join(map(str, slots)), "40", "exit",
        env=python_env())
if log_guid(img) == bytes(16):
    fail("a writer that exited without closing left no live log")
model = bytearray(16 * MIB)
for s in slots:
    model[s * SLOT:(s + 1) * SLOT] = random.Random(s).randbytes(SLOT)
d = ByteDisk("vhdx:" + img, RO)
compare("killed writer, diskcore read-only", d.read_all(), bytes(model))
d.close()
qcopy = img + ".qemu.vhdx"
shutil.copy(img, qcopy)
r = execute("qemu-img", "check", "-f", "vhdx", "-r", "all", qcopy, ok=(0, 1, 2, 3))
compare("killed writer, replayed by qemu", qemu_raw(qcopy), bytes(model))
d = ByteDisk("vhdx:" + img)
d.close()
qemu_check(img, "killed writer, replayed by diskcore")
compare("killed writer, replayed by diskcore, read by qemu", qemu_raw(img), bytes(model))
print("a killed writer's log: replayed identically by diskcore and qemu (%.1f s)"
      % (time.time() - T0))


# --- 4. Crash test: SIGKILL during allocating writes ---------------------------------

def crash_round(k):
    img = os.path.join(work, "crash.vhdx")
    if os.path.exists(img):
        os.unlink(img)
    d = ByteDisk("vhdx:%s;create=32M;block=1M" % img)
    d.close()
    rnd = random.Random(1000 + k)
    slots = rnd.sample(range(32 * MIB // SLOT), 500)
    p = subprocess.Popen([sys.executable, WRITER, LIBPATH, img, ",".join(map(str, slots)),
                          str(rnd.choice([1, 3, 8])), "sleep"], env=python_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    flushed = [0]
    ready = threading.Event()

    def reader():
        for line in p.stdout:
            if line.startswith(b"R"):
                ready.set()
            if line.startswith(b"F "):
                flushed[0] = int(line.split()[1])
        ready.set()

    t = threading.Thread(target=reader)
    t.start()
    # The kill lands somewhere in the writes, not in the writer's start-up.
    ready.wait(30)
    time.sleep(rnd.uniform(0.02, 0.3))
    p.kill()
    p.wait()
    t.join()
    n = flushed[0]
    # The image opens (replaying its log), qemu finds nothing wrong.
    d = ByteDisk("vhdx:" + img)
    d.close()
    qemu_check(img, "crash round %d" % k)
    data = qemu_raw(img)
    d = ByteDisk("vhdx:" + img, RO)
    mine = d.read_all()
    d.close()
    compare("crash round %d: diskcore and qemu" % k, mine, data)
    for i, s in enumerate(slots):
        got = data[s * SLOT:(s + 1) * SLOT]
        if i >= n and got == bytes(SLOT):
            continue  # not written (or lost, unflushed)
        want = random.Random(s).randbytes(SLOT)
        if got == want:
            continue
        if i < n:
            fail("crash round %d: write %d was flushed but does not read back" % (k, i))
            break
        for o in range(0, SLOT, 512):
            g = got[o:o + 512]
            if g != want[o:o + 512] and g != bytes(512):
                fail("crash round %d: slot %d sector %d is neither old nor new" % (k, i, o))
                return n
    return n


start = time.time()
rounds = flushed_total = 0
while rounds < 20 and time.time() - start < 8:
    flushed_total += crash_round(rounds)
    rounds += 1
print("crash test: %d kills, %d flushed writes checked (%.1f s)"
      % (rounds, flushed_total, time.time() - start))
if flushed_total == 0:
    fail("the crash test never saw a flush complete")


# --- 5. libvhdi on a VHDX differencing chain ---------------------------------------

base = os.path.join(work, "base.vhdx")
child = os.path.join(work, "child.vhdx")
d = ByteDisk("vhdx:%s;create=8M;block=1M" % base)
model = bytearray(8 * MIB)
exercise(d, model, random.Random(7), 10, MIB, False)
d.close()
d = ByteDisk("vhdx:%s;parent=%s" % (child, base))
for off, ln, seed in ((4096, 8192, 1), (3 * MIB, MIB, 2), (5 * MIB + 512 * 3, 512 * 5, 3)):
    data = pattern(seed, ln)
    d.write(off, data)
    model[off:off + ln] = data
d.close()
d = ByteDisk("vhdx:" + child, RO)
compare("diskcore chain", d.read_all(), bytes(model))
d.close()
try:
    import pyvhdi
except ImportError:
    print("libvhdi: python3-libvhdi is not installed; not tried")
else:
    r = subprocess.run(["vhdiinfo", child], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print("libvhdi: vhdiinfo on the child:")
    for line in r.stdout.decode().splitlines():
        if line.strip():
            print("    " + line.strip())
    try:
        p = pyvhdi.file()
        p.open(base)
        c = pyvhdi.file()
        c.open(child)
        c.set_parent(p)
        got = b"".join(c.read_buffer_at_offset(min(MIB, 8 * MIB - o), o)
                       for o in range(0, 8 * MIB, MIB))
        diff = describe_diff(got, bytes(model))
        print("libvhdi: reading the chain with set_parent(): %s"
              % ("identical to diskcore" if not diff else "differs (%s)" % diff))
    except Exception as e:  # record what it does, whatever it is
        print("libvhdi: reading the chain failed: %s" % e)

finish()
print("vhdx oracle: all checks passed")
EOF
