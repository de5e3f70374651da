#!/bin/sh
# SPDX-License-Identifier: MIT
# luks against implementations nobody here wrote. Volumes are made by
# `cryptsetup luksFormat` (LUKS1 and LUKS2; PBKDF2, Argon2i, Argon2id; 512- and
# 4096-byte sectors; 256- and 512-bit keys; aes-xts-plain64, aes-xts-plain,
# aes-cbc-essiv:sha256, aes-cbc-plain64) with a known volume key, and by
# `qemu-img create -f luks` (XTS, and CBC with ESSIV). Then:
#  - data written through luks: is decrypted from the raw payload by
#    python3-cryptography's AES-XTS (tweak = data unit index, little-endian) or
#    AES-CBC (IV = that index, or with ESSIV the index encrypted by AES-256-ECB
#    under SHA-256 of the volume key, hashlib's) at the payload offset
#    `cryptsetup luksDump` reports, and data encrypted by python3-cryptography
#    into the payload reads back through luks:;
#  - data written by qemu-io through qemu's luks driver reads back through
#    luks:, and after luks: writes, `qemu-img convert` (qemu's LUKS1 reader)
#    gives exactly what luks: reads, on qemu's and on cryptsetup's LUKS1 images;
#  - with root and losetup, a LUKS1 volume on a 4096-byte-sector loop device
#    (512-byte encryption units inside 4 KiB disk sectors).
# No step times the CPU: cryptsetup gets fixed iteration counts. qemu-img
# cannot be told any (qemu_create_luks below says why only it is retried).
# The disk is driven through libdiskcore by ctypes (tests/oracle-lib.sh).
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

oracle_need_lib
oracle_need_xts
command -v cryptsetup >/dev/null 2>&1 || oracle_skip "cryptsetup is not installed (cryptsetup-bin)"
oracle_need_plugin luks "no libcrypto, libgcrypt, libargon2 or json-c?"
have_qemu=""
if command -v qemu-img >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1; then
	have_qemu=1
else
	echo "note: qemu-img/qemu-io not installed; the qemu checks are skipped" >&2
fi
oracle_workdir luks-oracle

HAVE_QEMU="$have_qemu" oracle_python <<'EOF'
import hashlib

rng = random.Random(0x1075)

PASS = b"oracle passphrase"
pw_line = os.path.join(work, "pass")       # passphrase-file: first line
pw_raw = os.path.join(work, "pass.raw")    # cryptsetup --key-file / qemu secret
write_file(pw_line, PASS + b"\nignored second line\n")
write_file(pw_raw, PASS)


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


def spec(path):
    return "luks;passphrase-file=%s:file:%s" % (pw_line, path)


def cbc(key, unit, data, enc, essiv):
    """AES-CBC of one data unit with dm-crypt's plain64 or essiv:sha256 IV."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    iv = unit.to_bytes(16, "little")
    if essiv:
        ecb = Cipher(algorithms.AES(hashlib.sha256(key).digest()), modes.ECB())
        iv = ecb.encryptor().update(iv)
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.encryptor() if enc else c.decryptor()
    return op.update(data) + op.finalize()


def unit_crypt(args, key, unit, data, enc):
    """The cipher the luksFormat arguments chose, on one data unit."""
    cipher = args[args.index("--cipher") + 1] if "--cipher" in args else "aes-xts-plain64"
    if cipher.startswith("aes-cbc-"):
        return cbc(key, unit, data, enc, cipher == "aes-cbc-essiv:sha256")
    return xts(key, unit, data, enc)


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
    # cryptsetup's LUKS1 default for years; with LUKS2 and 4 KiB sectors the
    # IV counts 4 KiB units (iv_large_sectors), as for XTS.
    ("luks1-cbc-essiv", 4, 32, ["--type", "luks1", "--cipher", "aes-cbc-essiv:sha256",
                                "--key-size", "256"] + cheap_pbkdf2),
    ("luks2-cbc-essiv-4096", 3, 32, ["--type", "luks2", "--cipher",
                                     "aes-cbc-essiv:sha256", "--key-size", "256",
                                     "--sector-size", "4096"] + cheap_pbkdf2 + small2),
    ("luks1-cbc-plain64-aes128", 4, 16, ["--type", "luks1", "--cipher",
                                         "aes-cbc-plain64", "--key-size", "128"]
     + cheap_pbkdf2),
]

for name, mib, key_bytes, args in volumes:
    path = os.path.join(work, name + ".img")
    key = os.urandom(key_bytes)
    vkfile = os.path.join(work, name + ".vk")
    write_file(vkfile, key)
    sparse_file(path, mib << 20)
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
        unit_crypt(args, key, s, pread(path, off + s * us, us), False) == pt
        for s, pt in written.items())
    check(raw_ok, "%s: python3-cryptography does not decrypt what luks: wrote" % name)
    check(pread(path, 0, off) == header, "%s: the header changed" % name)

    # python3-cryptography encrypts into the payload; luks: reads it.
    fresh = {}
    for s in rng.sample([x for x in range(d.count) if x not in written], 12):
        pt = os.urandom(us)
        pwrite(path, off + s * us, unit_crypt(args, key, s, pt, True))
        fresh[s] = pt
    d = Disk(spec(path))
    check(all(d.read(s, 1) == pt for s, pt in fresh.items()),
          "%s: luks: does not read what python3-cryptography encrypted" % name)
    d.close()
    print("ok: %s (payload at %d, %d-byte units, %d-bit key)" % (name, off, us,
                                                                 key_bytes * 8))

# aes-xts-plain (dm-crypt's 32-bit "plain" IV, qemu's default name): the same
# as plain64 below 2^32 sectors, the tweak wraps above. A sparse volume a
# little over 2 TiB puts sectors on both sides.
path = os.path.join(work, "plain32.img")
key = os.urandom(64)
vkfile = os.path.join(work, "plain32.vk")
write_file(vkfile, key)
sparse_file(path, (2 << 40) + (64 << 20))
run("cryptsetup", "luksFormat", "-q", "--batch-mode", "--type", "luks1",
    "--cipher", "aes-xts-plain", "--key-size", "512", "--key-file", pw_raw,
    "--volume-key-file", vkfile, "--pbkdf-force-iterations", "1000", path)
off, us = luks_geometry(path)
d = Disk(spec(path))
check(d.ss == 512, "plain32: sector size %d" % d.ss)
written = {}
for s in (5, (1 << 32) - 1, 1 << 32, (1 << 32) + 9):
    data = os.urandom(us)
    d.write(s, data)
    written[s] = data
d.close()
check(all(xts(key, s & 0xffffffff, pread(path, off + s * us, us), False) == pt
          for s, pt in written.items()),
      "plain32: python3-cryptography (tweak = sector mod 2^32) does not decrypt "
      "what luks: wrote")
print("ok: plain32 (aes-xts-plain over 2 TiB: the tweak wraps at 2^32)")

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


def qemu_create_luks(path, size, opts=""):
    """qemu-img create -f luks, retrying its one timing step. cryptsetup takes
    fixed iteration counts (--pbkdf-force-iterations above: no benchmark runs),
    but qemu-img has no such option: it always measures PBKDF2 first
    (qcrypto_pbkdf2_count_iters, crypto/pbkdf.c) by the thread's user CPU time
    from getrusage(RUSAGE_THREAD), which the kernel accounts by tick, and fails
    with "Unable to get accurate CPU usage" when that time did not advance across
    a run of 32768 iterations: 1 to 4 runs in 100 here, idle or loaded. Only
    that failure is retried; any other ends the test."""
    cmd = ["qemu-img", "create", "-q", "-f", "luks", "--object",
           "secret,id=s0,file=" + pw_raw, "-o", "key-secret=s0,iter-time=10" + opts,
           path, size]
    for attempt in range(1, 11):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = r.stdout.decode()
        if r.returncode == 0:
            return
        if "Unable to get accurate CPU usage" not in out:
            break
        print("note: qemu-img's PBKDF2 timing failed (try %d): %s" % (attempt, out.strip()),
              file=sys.stderr)
    sys.exit("command failed: %s\n%s" % (" ".join(cmd), out))


def qemu_both_ways(q, name):
    """qemu-io writes, luks: reads; luks: writes, qemu-io and qemu-img read."""
    patterns = [(0xab, 0, 65536), (0x5c, 1 << 20, 4096), (0x11, (4 << 20) - 8192, 8192)]
    for byte, off, n in patterns:
        run("qemu-io", *qemu_opts(q), "-c", "write -P 0x%02x %d %d" % (byte, off, n))
    d = Disk(spec(q))
    check(d.ss == 512 and d.count == 8192,
          "%s: %d x %d, expected 8192 x 512" % (name, d.count, d.ss))
    for byte, off, n in patterns:
        check(d.read(off // 512, n // 512) == bytes([byte]) * n,
              "%s: luks: does not read qemu-io's 0x%02x at %d" % (name, byte, off))
    # luks: writes; qemu reads the same bytes everywhere.
    d.write(2048, bytes([0xcd]) * 65536)
    d.write(5000, os.urandom(512 * 7))
    d.close()
    out = run("qemu-io", *qemu_opts(q), "-c", "read -P 0xcd %d 65536" % (2048 * 512))
    check("Pattern verification failed" not in out,
          "%s: qemu-io does not read luks:'s 0xcd" % name)
    check(qemu_raw(q, q + ".raw") == luks_whole(q),
          "%s: qemu-img convert and luks: disagree" % name)


if os.environ["HAVE_QEMU"]:
    q = os.path.join(work, "qemu.img")
    qemu_create_luks(q, "4M")
    qemu_both_ways(q, "qemu image")
    print("ok: qemu-img LUKS1 image, both directions")

    # qemu's AES-256-CBC with ESSIV (SHA-256), as cryptsetup names it.
    q = os.path.join(work, "qemu-cbc-essiv.img")
    qemu_create_luks(q, "4M", ",cipher-mode=cbc,ivgen-alg=essiv")
    dump = run("cryptsetup", "luksDump", q)
    check(re.search(r"Cipher mode:\s*cbc-essiv:sha256", dump) is not None,
          "qemu cbc image: cryptsetup luksDump shows no cbc-essiv:sha256:\n" + dump)
    qemu_both_ways(q, "qemu cbc-essiv image")
    print("ok: qemu-img LUKS1 aes-cbc-essiv:sha256 image, both directions")

    # cryptsetup's LUKS1 volumes (written through luks: above) through qemu.
    for name in ("luks1-pbkdf2-512", "luks1-cbc-essiv", "luks1-cbc-plain64-aes128"):
        c = os.path.join(work, name + ".img")
        check(qemu_raw(c, c + ".raw") == luks_whole(c),
              "cryptsetup %s image: qemu-img convert and luks: disagree" % name)
        print("ok: cryptsetup %s image read by qemu" % name)

# --- 512-byte units in 4 KiB sectors (loop device) ---------------------------

path = os.path.join(work, "loop.img")
key = os.urandom(64)
vkfile = os.path.join(work, "loop.vk")
write_file(vkfile, key)
sparse_file(path, 4 << 20)
run("cryptsetup", "luksFormat", "-q", "--batch-mode", "--key-file", pw_raw,
    "--volume-key-file", vkfile, "--type", "luks1", *cheap_pbkdf2, path)
off, us = luks_geometry(path)
dev = loop4k(path)
if dev:
    d = Disk(spec(dev))
    check(d.ss == 4096 and d.count == ((4 << 20) - off) // 4096,
          "loop: %d x %d, expected 4096-byte sectors" % (d.count, d.ss))
    data = os.urandom(3 * 4096)
    d.write(5, data)
    got = d.read(5, 3)
    d.close()
    run("losetup", "-d", dev)  # its writes are all in the file now
    check(got == data, "loop: luks: does not read back what it wrote")
    raw = pread(path, off + 5 * 4096, len(data))
    check(xts_units(key, 512, 5 * 8, raw, False) == data,
          "loop: python3-cryptography does not decrypt 512-byte units in 4 KiB "
          "sectors")
    print("ok: LUKS1 on a 4096-byte-sector loop device")
else:
    print("note: no 4096-byte loop device (not root or no losetup); 512-byte units "
          "in 4 KiB sectors not checked", file=sys.stderr)
finish()
EOF
