#!/bin/sh
# SPDX-License-Identifier: MIT
# crypt against an implementation nobody here wrote: python3-cryptography's
# AES-256-XTS decrypts, sector by sector, the raw file written through
# crypt:xts-aes-256 (tweak = sector number, little-endian), and the other way
# round crypt: reads what it encrypted. 512-byte sectors on a file; 4096-byte
# sectors on a loop device when we are root and losetup works (dm-crypt's
# iv_large_sectors convention). The disk is driven through libdiskcore by ctypes.
set -eu

if ! command -v python3 >/dev/null 2>&1; then
	echo "SKIP: python3 is not installed" >&2
	exit 77
fi
if ! python3 -c 'from cryptography.hazmat.primitives.ciphers import modes; modes.XTS' \
	2>/dev/null; then
	echo "SKIP: python3-cryptography (with XTS) is not installed" >&2
	exit 77
fi
: "${DISKCORE_BUILD_ROOT:?run through meson test}"
lib="$DISKCORE_BUILD_ROOT/core/libdiskcore.so"
if [ ! -e "$lib" ]; then
	echo "FAIL: $lib not found" >&2
	exit 1
fi

found=""
for dir in $(echo "${DISKCORE_PLUGIN_PATH:-}" | tr ':' ' '); do
	[ -e "$dir/crypt.so" ] && found=1
done
if [ -z "$found" ]; then
	echo "SKIP: the crypt plugin was not built (no libcrypto?)" >&2
	exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/diskcore-crypt-oracle-XXXXXX")
loops="$work/loops"
: >"$loops"
cleanup() {
	while read -r dev; do
		if [ -n "$dev" ]; then
			losetup -d "$dev" 2>/dev/null || true
		fi
	done <"$loops"
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A loop device with 4096-byte logical sectors, or nothing.
loop4k=""
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null 2>&1; then
	truncate -s 1M "$work/loop4k.img"
	if dev=$(losetup -f --show -b 4096 "$work/loop4k.img" 2>/dev/null); then
		echo "$dev" >>"$loops"
		loop4k="$dev"
	fi
fi
[ -n "$loop4k" ] || echo "note: no 4096-byte loop device (not root or no losetup);" \
	"4 KiB sectors not checked against the oracle" >&2

LIB="$lib" WORK="$work" LOOP4K="$loop4k" python3 - <<'EOF'
import ctypes, os, random, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# Global, so that the plugins it loads find the core services.
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
rng = random.Random(1619)
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL: " + msg, file=sys.stderr)


def key_file(name):
    while True:
        key = bytes(rng.getrandbits(8) for _ in range(64))
        if key[:32] != key[32:]:
            break
    path = os.path.join(work, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, key)
    os.close(fd)
    return path, key


def dc_open(spec):
    disk = ctypes.c_void_p()
    rc = lib.dc_open(spec.encode(), 0, ctypes.byref(disk))
    if rc != 0:
        raise SystemExit("FAIL: dc_open(%s): %d %s" % (spec, rc, lib.dc_last_error().decode()))
    return disk


def xts(key, sector):
    return Cipher(algorithms.AES(key), modes.XTS(sector.to_bytes(16, "little")))


def oracle_decrypt(key, raw, ss):
    return b"".join(xts(key, i).decryptor().update(raw[i * ss:(i + 1) * ss])
                    for i in range(len(raw) // ss))


def oracle_encrypt(key, plain, ss):
    return b"".join(xts(key, i).encryptor().update(plain[i * ss:(i + 1) * ss])
                    for i in range(len(plain) // ss))


def write_through_crypt(spec, plain, ss):
    """Write plain through the disk in requests of assorted sizes."""
    disk = dc_open(spec)
    if lib.dc_sector_size(disk) != ss:
        fail("%s: sector size %d, expected %d" % (spec, lib.dc_sector_size(disk), ss))
    nsec = len(plain) // ss
    s = 0
    while s < nsec:
        n = min(nsec - s, rng.choice([1, 2, 3, 8, 64, 200, 700]))
        buf = ctypes.create_string_buffer(plain[s * ss:(s + n) * ss], n * ss)
        rc = lib.dc_write(disk, s, buf, n * ss, 0)
        if rc != 0:
            fail("%s: write %d+%d: %d" % (spec, s, n, rc))
        s += n
    lib.dc_flush(disk)
    lib.dc_close(disk)


def read_through_crypt(spec, length):
    disk = dc_open(spec)
    buf = ctypes.create_string_buffer(length)
    rc = lib.dc_read(disk, 0, buf, length)
    lib.dc_close(disk)
    if rc != 0:
        fail("%s: read: %d" % (spec, rc))
    return buf.raw


def check(name, target, path, ss, prefix="crypt"):
    key_path, key = key_file(name + ".key")
    size = os.path.getsize(path) if not path.startswith("/dev/") else 1 << 20
    spec = "%s:xts-aes-256:%s:%s" % (prefix, key_path, target)

    # crypt: writes, the oracle decrypts.
    plain = rng.randbytes(size)
    write_through_crypt(spec, plain, ss)
    with open(path, "rb") as f:
        raw = f.read(size)
    if raw == plain:
        fail("%s: the backing store holds plaintext" % name)
    got = oracle_decrypt(key, raw, ss)
    if got != plain:
        bad = next(i for i in range(0, size, ss) if got[i:i + ss] != plain[i:i + ss])
        fail("%s: the oracle's decryption of sector %d differs" % (name, bad // ss))
    else:
        print("ok: %s: oracle decrypts what crypt: wrote (%d x %d bytes)"
              % (name, size // ss, ss))

    # The oracle encrypts, crypt: reads.
    plain = rng.randbytes(size)
    with open(path, "r+b") as f:
        f.write(oracle_encrypt(key, plain, ss))
        f.flush()
        os.fsync(f.fileno())
    got = read_through_crypt(spec, size)
    if got != plain:
        bad = next(i for i in range(0, size, ss) if got[i:i + ss] != plain[i:i + ss])
        fail("%s: crypt: reads sector %d of the oracle's ciphertext wrong" % (name, bad // ss))
    else:
        print("ok: %s: crypt: decrypts what the oracle wrote" % name)


img = os.path.join(work, "disk512.img")
with open(img, "wb") as f:
    f.truncate(1 << 20)
check("file-512", "file:" + img, img, 512)
check("file-512-split", "file:" + img, img, 512, prefix="crypt;threads=4;split=64K")

loop = os.environ.get("LOOP4K")
if loop:
    # Raw access through the device itself, so its page cache stays coherent.
    check("loop-4096", "file:" + loop, loop, 4096)

sys.exit(1 if failures else 0)
EOF
