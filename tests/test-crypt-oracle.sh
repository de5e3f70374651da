#!/bin/sh
# SPDX-License-Identifier: MIT
# crypt against an implementation nobody here wrote: python3-cryptography's
# AES-256-XTS decrypts, sector by sector, the raw file written through
# crypt:xts-aes-256 (tweak = sector number, little-endian), and the other way
# round crypt: reads what it encrypted. 512-byte sectors on a file; 4096-byte
# sectors on a loop device when we are root and losetup works (dm-crypt's
# iv_large_sectors convention). The disk is driven through libdiskcore by ctypes
# (tests/oracle-lib.sh).
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

oracle_need_lib
oracle_need_xts
oracle_need_plugin crypt "no libgcrypt?"
oracle_workdir crypt-oracle

oracle_python <<'EOF'
rng = random.Random(1619)


def key_file(name):
    while True:
        key = bytes(rng.getrandbits(8) for _ in range(64))
        if key[:32] != key[32:]:
            break
    path = os.path.join(work, name)
    write_file(path, key)
    return path, key


def write_through_crypt(spec, plain, ss):
    """Write plain through the disk in requests of assorted sizes."""
    disk = Disk(spec)
    check(disk.ss == ss, "%s: sector size %d, expected %d" % (spec, disk.ss, ss))
    nsec = len(plain) // ss
    s = 0
    while s < nsec:
        n = min(nsec - s, rng.choice([1, 2, 3, 8, 64, 200, 700]))
        disk.write(s, plain[s * ss:(s + n) * ss])
        s += n
    disk.close()


def check_xts(name, target, path, ss, prefix="crypt"):
    key_path, key = key_file(name + ".key")
    size = os.path.getsize(path) if not path.startswith("/dev/") else 1 << 20
    spec = "%s:xts-aes-256:%s:%s" % (prefix, key_path, target)

    # crypt: writes, the oracle decrypts.
    plain = rng.randbytes(size)
    write_through_crypt(spec, plain, ss)
    raw = pread(path, 0, size)
    check(raw != plain, "%s: the backing store holds plaintext" % name)
    got = xts_units(key, ss, 0, raw, False)
    if check(got == plain, "%s: the oracle's decryption of sector %d differs"
             % (name, first_diff(got, plain, ss) if got != plain else -1)):
        print("ok: %s: oracle decrypts what crypt: wrote (%d x %d bytes)"
              % (name, size // ss, ss))

    # The oracle encrypts, crypt: reads.
    plain = rng.randbytes(size)
    pwrite(path, 0, xts_units(key, ss, 0, plain, True))
    disk = Disk(spec)
    got = disk.read(0, size // ss)
    disk.close()
    if check(got == plain, "%s: crypt: reads sector %d of the oracle's ciphertext wrong"
             % (name, first_diff(got, plain, ss) if got != plain else -1)):
        print("ok: %s: crypt: decrypts what the oracle wrote" % name)


img = os.path.join(work, "disk512.img")
sparse_file(img, 1 << 20)
check_xts("file-512", "file:" + img, img, 512)
check_xts("file-512-split", "file:" + img, img, 512, prefix="crypt;threads=4;split=64K")

backing = os.path.join(work, "loop4k.img")
sparse_file(backing, 1 << 20)
loop = loop4k(backing)
if loop:
    # Raw access through the device itself, so its page cache stays coherent.
    check_xts("loop-4096", "file:" + loop, loop, 4096)
else:
    print("note: no 4096-byte loop device (not root or no losetup); 4 KiB sectors "
          "not checked against the oracle", file=sys.stderr)
finish()
EOF
