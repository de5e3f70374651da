#!/bin/sh
# SPDX-License-Identifier: MIT
# luks against implementations nobody here wrote. Volumes are made by
# `cryptsetup luksFormat` (LUKS1 and LUKS2; PBKDF2, Argon2i, Argon2id; 512- and
# 4096-byte sectors; 256- and 512-bit keys) with a known volume key, and by
# `qemu-img create -f luks`. Then:
#  - data written through luks: is decrypted from the raw payload by
#    python3-cryptography's AES-XTS (tweak = data unit index, little-endian) at
#    the payload offset `cryptsetup luksDump` reports, and data encrypted by
#    python3-cryptography into the payload reads back through luks:;
#  - data written by qemu-io through qemu's luks driver reads back through
#    luks:, and after luks: writes, `qemu-img convert` (qemu's LUKS1 reader)
#    gives exactly what luks: reads, on qemu's and on cryptsetup's LUKS1 images;
#  - with root and losetup, a LUKS1 volume on a 4096-byte-sector loop device
#    (512-byte encryption units inside 4 KiB disk sectors).
# The disk is driven through libdiskcore by ctypes.
set -eu

skip() {
	echo "SKIP: $*" >&2
	exit 77
}

command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
python3 -c 'from cryptography.hazmat.primitives.ciphers import modes; modes.XTS' \
	2>/dev/null || skip "python3-cryptography (with XTS) is not installed"
command -v cryptsetup >/dev/null 2>&1 || skip "cryptsetup is not installed (cryptsetup-bin)"
: "${DISKCORE_BUILD_ROOT:?run through meson test}"
lib="$DISKCORE_BUILD_ROOT/core/libdiskcore.so"
[ -e "$lib" ] || {
	echo "FAIL: $lib not found" >&2
	exit 1
}
found=""
for dir in $(echo "${DISKCORE_PLUGIN_PATH:-}" | tr ':' ' '); do
	[ -e "$dir/luks.so" ] && found=1
done
[ -n "$found" ] || skip "the luks plugin was not built (no libcrypto, libargon2 or json-c?)"
have_qemu=""
if command -v qemu-img >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1; then
	have_qemu=1
else
	echo "note: qemu-img/qemu-io not installed; the qemu checks are skipped" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/diskcore-luks-oracle-XXXXXX")
loops="$work/loops"
: >"$loops"
cleanup() {
	while read -r dev; do
		[ -n "$dev" ] && losetup -d "$dev" 2>/dev/null || true
	done <"$loops"
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

can_loop=""
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null 2>&1; then
	truncate -s 1M "$work/probe.img"
	if dev=$(losetup -f --show -b 4096 "$work/probe.img" 2>/dev/null); then
		losetup -d "$dev"
		can_loop=1
	fi
fi
[ -n "$can_loop" ] || echo "note: no 4096-byte loop device (not root or no" \
	"losetup); 512-byte units in 4 KiB sectors not checked" >&2

LIB="$lib" WORK="$work" HAVE_QEMU="$have_qemu" CAN_LOOP="$can_loop" LOOPS="$loops" \
	python3 - <<'EOF'
import ctypes, os, random, re, subprocess, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

lib = ctypes.CDLL(os.environ["LIB"], mode=ctypes.RTLD_GLOBAL)
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_close.argtypes = [ctypes.c_void_p]
lib.dc_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_uint32]
lib.dc_flush.argtypes = [ctypes.c_void_p]
lib.dc_sector_size.argtypes = [ctypes.c_void_p]
lib.dc_sector_size.restype = ctypes.c_uint32
lib.dc_sector_count.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.restype = ctypes.c_uint64
lib.dc_last_error.restype = ctypes.c_char_p

work = os.environ["WORK"]
rng = random.Random(0x1075)
failures = []

PASS = b"oracle passphrase"
pw_line = os.path.join(work, "pass")       # passphrase-file: first line
pw_raw = os.path.join(work, "pass.raw")    # cryptsetup --key-file / qemu secret
for path, data in ((pw_line, PASS + b"\nignored second line\n"), (pw_raw, PASS)):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit("command failed: %s\n%s" % (" ".join(cmd), r.stdout.decode()))
    return r.stdout.decode()


class Disk:
    def __init__(self, spec):
        self.h = ctypes.c_void_p()
        rc = lib.dc_open(spec.encode(), 0, ctypes.byref(self.h))
        if rc != 0:
            sys.exit("dc_open(%s): %d %s" % (spec, rc, lib.dc_last_error().decode()))
        self.ss = lib.dc_sector_size(self.h)
        self.count = lib.dc_sector_count(self.h)

    def read(self, sector, n):
        buf = ctypes.create_string_buffer(n * self.ss)
        rc = lib.dc_read(self.h, sector, buf, n * self.ss)
        if rc != 0:
            sys.exit("dc_read(%d, %d): %d" % (sector, n, rc))
        return buf.raw

    def write(self, sector, data):
        rc = lib.dc_write(self.h, sector, data, len(data), 0)
        if rc != 0:
            sys.exit("dc_write(%d, %d bytes): %d" % (sector, len(data), rc))

    def close(self):
        lib.dc_flush(self.h)
        lib.dc_close(self.h)


def xts(key, unit, data, enc):
    c = Cipher(algorithms.AES(key), modes.XTS(unit.to_bytes(16, "little")))
    op = c.encryptor() if enc else c.decryptor()
    return op.update(data) + op.finalize()


def xts_units(key, us, first_unit, data, enc):
    return b"".join(xts(key, first_unit + i, data[i * us:(i + 1) * us], enc)
                    for i in range(len(data) // us))


def luks_geometry(path):
    """Payload offset (bytes) and encryption sector size, as cryptsetup sees them."""
    dump = run("cryptsetup", "luksDump", path)
    m = re.search(r"Payload offset:\s*(\d+)", dump)
    if m:
        return int(m.group(1)) * 512, 512
    seg = dump[dump.index("Data segments:"):]
    off = int(re.search(r"offset:\s*(\d+) \[bytes\]", seg).group(1))
    ss = int(re.search(r"sector:\s*(\d+) \[bytes\]", seg).group(1))
    return off, ss


def pread(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def pwrite(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def spec(path):
    return "luks;passphrase-file=%s:file:%s" % (pw_line, path)


# --- cryptsetup volumes, checked with python3-cryptography --------------------

cheap_pbkdf2 = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
# Argon2 at 8 MiB (32 MiB for one volume) and 4 passes: seconds, not minutes.
cheap_argon = ["--pbkdf-memory", "8192", "--pbkdf-parallel", "1",
               "--pbkdf-force-iterations", "4"]
small2 = ["--luks2-metadata-size", "16k", "--luks2-keyslots-size", "256k"]
volumes = [
    ("luks1-pbkdf2-512", 4, 64, ["--type", "luks1"] + cheap_pbkdf2),
    ("luks1-sha1-aes128", 4, 32, ["--type", "luks1", "--hash", "sha1",
                                  "--key-size", "256"] + cheap_pbkdf2),
    ("luks2-pbkdf2-512", 3, 64, ["--type", "luks2", "--sector-size", "512"]
     + cheap_pbkdf2 + small2),
    ("luks2-argon2id-512", 3, 64, ["--type", "luks2", "--sector-size", "512",
                                   "--pbkdf", "argon2id"] + cheap_argon + small2),
    ("luks2-argon2id-4096", 3, 64, ["--type", "luks2", "--sector-size", "4096",
                                    "--pbkdf", "argon2id"] + cheap_argon + small2),
    ("luks2-argon2i-4096-aes128", 3, 32, ["--type", "luks2", "--sector-size", "4096",
                                          "--key-size", "256", "--pbkdf", "argon2i"]
     + cheap_argon + small2),
    ("luks2-default-header", 20, 64, ["--type", "luks2", "--pbkdf", "argon2id",
                                      "--pbkdf-memory", "32768", "--pbkdf-parallel", "2",
                                      "--pbkdf-force-iterations", "4"]),
]

for name, mib, key_bytes, args in volumes:
    path = os.path.join(work, name + ".img")
    key = os.urandom(key_bytes)
    vkfile = os.path.join(work, name + ".vk")
    with open(vkfile, "wb") as f:
        f.write(key)
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    run("cryptsetup", "luksFormat", "-q", "--batch-mode", "--key-file", pw_raw,
        "--volume-key-file", vkfile, *args, path)
    off, us = luks_geometry(path)
    header = pread(path, 0, off)

    d = Disk(spec(path))
    check(d.ss == us, "%s: sector size %d, cryptsetup says %d" % (name, d.ss, us))
    check(d.count == ((mib << 20) - off) // us,
          "%s: %d sectors, expected %d" % (name, d.count, ((mib << 20) - off) // us))
    # Writes through luks:, at the start, the end and in between.
    spans = [(0, 8), (d.count - 3, 3)] + \
        [(s, rng.randint(1, 16)) for s in rng.sample(range(16, d.count - 40), 6)]
    spans = [(s, n) for s, n in spans if s + n <= d.count]
    written = {}
    for s, n in spans:
        data = os.urandom(n * us)
        d.write(s, data)
        for i in range(n):
            written[s + i] = data[i * us:(i + 1) * us]
    d.close()
    raw_ok = all(
        xts(key, s, pread(path, off + s * us, us), False) == pt
        for s, pt in written.items())
    check(raw_ok, "%s: python3-cryptography does not decrypt what luks: wrote" % name)
    check(pread(path, 0, off) == header, "%s: the header changed" % name)

    # python3-cryptography encrypts into the payload; luks: reads it.
    fresh = {}
    for s in rng.sample([x for x in range(d.count) if x not in written], 12):
        pt = os.urandom(us)
        pwrite(path, off + s * us, xts(key, s, pt, True))
        fresh[s] = pt
    d = Disk(spec(path))
    check(all(d.read(s, 1) == pt for s, pt in fresh.items()),
          "%s: luks: does not read what python3-cryptography encrypted" % name)
    d.close()
    print("ok: %s (payload at %d, %d-byte units, %d-bit key)" % (name, off, us,
                                                                 key_bytes * 8))

# --- qemu -------------------------------------------------------------------

def qemu_opts(path):
    return ["--object", "secret,id=s0,file=" + pw_raw, "--image-opts",
            "driver=luks,key-secret=s0,file.filename=" + path]


def qemu_raw(path, out):
    run("qemu-img", "convert", "--object", "secret,id=s0,file=" + pw_raw,
        "--image-opts", "driver=luks,key-secret=s0,file.filename=" + path,
        "-O", "raw", out)
    with open(out, "rb") as f:
        return f.read()


def luks_whole(path):
    d = Disk(spec(path))
    data = d.read(0, d.count)
    d.close()
    return data


if os.environ["HAVE_QEMU"]:
    q = os.path.join(work, "qemu.img")
    run("qemu-img", "create", "-f", "luks", "--object", "secret,id=s0,file=" + pw_raw,
        "-o", "key-secret=s0,iter-time=10", q, "4M")
    patterns = [(0xab, 0, 65536), (0x5c, 1 << 20, 4096), (0x11, (4 << 20) - 8192, 8192)]
    for byte, off, n in patterns:
        run("qemu-io", *qemu_opts(q), "-c", "write -P 0x%02x %d %d" % (byte, off, n))
    d = Disk(spec(q))
    check(d.ss == 512 and d.count == 8192,
          "qemu image: %d x %d, expected 8192 x 512" % (d.count, d.ss))
    for byte, off, n in patterns:
        check(d.read(off // 512, n // 512) == bytes([byte]) * n,
              "qemu image: luks: does not read qemu-io's 0x%02x at %d" % (byte, off))
    # luks: writes; qemu reads the same bytes everywhere.
    d.write(2048, bytes([0xcd]) * 65536)
    d.write(5000, os.urandom(512 * 7))
    d.close()
    out = run("qemu-io", *qemu_opts(q), "-c", "read -P 0xcd %d 65536" % (2048 * 512))
    check("Pattern verification failed" not in out,
          "qemu image: qemu-io does not read luks:'s 0xcd")
    check(qemu_raw(q, os.path.join(work, "qemu.raw")) == luks_whole(q),
          "qemu image: qemu-img convert and luks: disagree")
    print("ok: qemu-img LUKS1 image, both directions")

    # cryptsetup's LUKS1 volume (written through luks: above) through qemu.
    c = os.path.join(work, "luks1-pbkdf2-512.img")
    check(qemu_raw(c, os.path.join(work, "c.raw")) == luks_whole(c),
          "cryptsetup LUKS1 image: qemu-img convert and luks: disagree")
    print("ok: cryptsetup LUKS1 image read by qemu")

# --- 512-byte units in 4 KiB sectors (loop device) ---------------------------

if os.environ["CAN_LOOP"]:
    path = os.path.join(work, "loop.img")
    key = os.urandom(64)
    vkfile = os.path.join(work, "loop.vk")
    with open(vkfile, "wb") as f:
        f.write(key)
    with open(path, "wb") as f:
        f.truncate(4 << 20)
    run("cryptsetup", "luksFormat", "-q", "--batch-mode", "--key-file", pw_raw,
        "--volume-key-file", vkfile, "--type", "luks1", *cheap_pbkdf2, path)
    off, us = luks_geometry(path)
    dev = run("losetup", "-f", "--show", "-b", "4096", path).strip()
    with open(os.environ["LOOPS"], "a") as f:
        f.write(dev + "\n")
    d = Disk(spec(dev))
    check(d.ss == 4096 and d.count == ((4 << 20) - off) // 4096,
          "loop: %d x %d, expected 4096-byte sectors" % (d.count, d.ss))
    data = os.urandom(3 * 4096)
    d.write(5, data)
    got = d.read(5, 3)
    d.close()
    run("losetup", "-d", dev)
    check(got == data, "loop: luks: does not read back what it wrote")
    raw = pread(path, off + 5 * 4096, len(data))
    check(xts_units(key, 512, 5 * 8, raw, False) == data,
          "loop: python3-cryptography does not decrypt 512-byte units in 4 KiB "
          "sectors")
    print("ok: LUKS1 on a 4096-byte-sector loop device")

if failures:
    sys.exit("%d check(s) failed" % len(failures))
EOF
