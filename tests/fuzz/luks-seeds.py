#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Make the seed corpus of fuzz-luks (tests/fuzz/corpus/luks/).

    tests/fuzz/luks-seeds.py OUT_DIR [NAME...]

cryptsetup formats small LUKS1 and LUKS2 volumes (passphrase "fuzz") with a
known volume key; each is then made cheap to fuzz while it stays a volume the
passphrase opens: key slot 0 is rewritten with one anti-forensic stripe (the
format allows any count; cryptsetup writes 4000, which would make the key
material most of every input) and KDF costs of a few iterations, the volume
key digest is recomputed to match, the payload moves right behind the key
material, and LUKS2 headers get their checksums again. The result is written
in fuzz-luks's sparse input format (see fuzz-luks.c): a mode byte, the file
size in 4 KiB units, then runs of 512-byte sectors that are not all zero.
Some seeds then ask for more than fuzz-luks's limits allow (4 GiB of Argon2
memory, 2^31 - 1 PBKDF2 iterations, an 8 MiB LUKS2 header), so that the
fuzzer starts at the checks that refuse them. With NAMEs, only those seeds
are written.

Needs cryptsetup, python3-cryptography and libargon2 (all of them installed by
scripts/setup.sh).
"""
import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PASS = b"fuzz"
ITER = 10  # PBKDF2 iterations of the rewritten slots and digests


def argon2(kind, passwd, salt, t, m, p, n):
    lib = ctypes.CDLL(ctypes.util.find_library("argon2") or "libargon2.so.1")
    out = ctypes.create_string_buffer(n)
    # Declared: the lengths are size_t, which bare Python ints do not fill.
    u32, size = ctypes.c_uint32, ctypes.c_size_t
    lib.argon2_hash.argtypes = [u32, u32, u32, ctypes.c_char_p, size, ctypes.c_char_p,
                                size, ctypes.c_void_p, size, ctypes.c_char_p, size,
                                ctypes.c_int, ctypes.c_int]
    # argon2_hash(t, m, p, pwd, pwdlen, salt, saltlen, hash, hashlen, encoded,
    # encodedlen, type, version); Argon2_i = 1, Argon2_id = 2, version 0x13.
    rc = lib.argon2_hash(t, m, p, passwd, len(passwd), salt, len(salt), out, n, None, 0,
                         1 if kind == "argon2i" else 2, 0x13)
    if rc != 0:
        sys.exit("argon2_hash failed: %d" % rc)
    return out.raw


def xts_encrypt(key, data, unit=512):
    out = b""
    for i in range(0, len(data), unit):
        enc = Cipher(algorithms.AES(key), modes.XTS(struct.pack("<QQ", i // unit, 0)))
        e = enc.encryptor()
        out += e.update(data[i:i + unit]) + e.finalize()
    return out


def cbc_essiv_encrypt(key, data, unit=512):
    salt = hashlib.sha256(key).digest()
    out = b""
    for i in range(0, len(data), unit):
        iv = Cipher(algorithms.AES(salt), modes.ECB()).encryptor().update(
            struct.pack("<QQ", i // unit, 0))
        e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        out += e.update(data[i:i + unit]) + e.finalize()
    return out


def material(vk, dkey, cipher="aes-xts-plain64"):
    """Key material of one stripe: the volume key itself, encrypted."""
    enc = cbc_essiv_encrypt if cipher == "aes-cbc-essiv:sha256" else xts_encrypt
    return enc(dkey, vk + bytes(512 - len(vk)))


def luksformat(path, size, vk, args):
    with open(path, "wb") as f:
        f.truncate(size)
    with tempfile.NamedTemporaryFile() as k, tempfile.NamedTemporaryFile() as p:
        k.write(vk)
        k.flush()
        p.write(PASS)
        p.flush()
        subprocess.run(["cryptsetup", "luksFormat", "-q", "--batch-mode", "--key-file",
                        p.name, "--volume-key-file", k.name] + args + [path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path, "rb") as f:
        return bytearray(f.read())


def luks1(vk, args, slot_iter=None):
    with tempfile.TemporaryDirectory() as d:
        img = luksformat(os.path.join(d, "v.img"), 4 << 20, vk, ["--type", "luks1"] + args)
    hashname = img[72:104].rstrip(b"\0").decode()
    cipher = (img[8:40].rstrip(b"\0") + b"-" + img[40:72].rstrip(b"\0")).decode()
    key_bytes = struct.unpack(">I", img[108:112])[0]
    # The volume key digest, with fewer iterations.
    struct.pack_into(">I", img, 164, ITER)
    img[112:132] = hashlib.pbkdf2_hmac(hashname, vk, bytes(img[132:164]), ITER, 20)
    # Slot 0: one stripe at sector 8, a few iterations; the payload at sector 16.
    slot = 208
    struct.pack_into(">I", img, slot + 4, ITER)
    struct.pack_into(">II", img, slot + 40, 8, 1)
    dkey = hashlib.pbkdf2_hmac(hashname, PASS, bytes(img[slot + 8:slot + 40]), ITER,
                               key_bytes)
    struct.pack_into(">I", img, 104, 16)
    out = bytearray(16 * 512 + 16 * 512)
    out[:592] = img[:592]
    out[8 * 512:9 * 512] = material(vk, dkey, cipher)
    if slot_iter:  # past the limits: refused before any work
        struct.pack_into(">I", out, slot + 4, slot_iter)
    # The payload (16 sectors) stays zero: it decrypts to noise, which will do.
    return bytes(out)


def luks2(vk, args, payload_sectors=16, kdf_over=None, hdr_over=None):
    with tempfile.TemporaryDirectory() as d:
        img = luksformat(os.path.join(d, "v.img"), 8 << 20, vk,
                         ["--type", "luks2", "--luks2-metadata-size", "16k",
                          "--luks2-keyslots-size", "256k"] + args)
    hdr = struct.unpack(">Q", img[8:16])[0]
    meta = json.loads(img[4096:hdr].rstrip(b"\0"))
    ks = meta["keyslots"]["0"]
    kdf = ks["kdf"]
    salt = base64.b64decode(kdf["salt"])
    area_key = ks["area"]["key_size"]
    if kdf["type"] == "pbkdf2":
        kdf["iterations"] = ITER
        dkey = hashlib.pbkdf2_hmac(kdf["hash"], PASS, salt, ITER, area_key)
    else:
        kdf.update(time=1, memory=8, cpus=1)
        dkey = argon2(kdf["type"], PASS, salt, 1, 8, 1, area_key)
    ks["af"]["stripes"] = 1
    area = 2 * hdr
    ks["area"]["offset"] = str(area)
    ks["area"]["size"] = "4096"
    dg = meta["digests"]["0"]
    dg["iterations"] = ITER
    dsalt = base64.b64decode(dg["salt"])
    dlen = len(base64.b64decode(dg["digest"]))
    dg["digest"] = base64.b64encode(
        hashlib.pbkdf2_hmac(dg["hash"], vk, dsalt, ITER, dlen)).decode()
    meta["segments"]["0"]["offset"] = str(area + 4096)
    meta["config"]["keyslots_size"] = "4096"
    if kdf_over:  # past the limits: refused before any work
        kdf.update(kdf_over)
    text = json.dumps(meta, separators=(",", ":")).encode()
    out = bytearray(area + 4096 + payload_sectors * 512)
    for copy in (0, 1):
        h = bytearray(img[copy * hdr:copy * hdr + 4096])
        h += text + bytes(hdr - 4096 - len(text))
        h[448:512] = bytes(64)
        h[448:480] = hashlib.sha256(h).digest()
        if hdr_over:  # a header size LUKS2 does not allow
            struct.pack_into(">Q", h, 8, hdr_over)
        out[copy * hdr:(copy + 1) * hdr] = h
    out[area:area + 512] = material(vk, dkey, ks["area"]["encryption"])
    return bytes(out)


def sparse(img, mode):
    runs = b""
    i = 0
    while i < len(img) // 512:
        if not img[i * 512:(i + 1) * 512].strip(b"\0"):
            i += 1
            continue
        j = i
        while j < len(img) // 512 and img[j * 512:(j + 1) * 512].strip(b"\0") and \
                j - i < 127:
            j += 1
        runs += struct.pack("<HH", i, (j - i) * 512) + img[i * 512:j * 512]
        i = j
    return bytes([mode]) + struct.pack("<H", (len(img) + 4095) // 4096) + runs


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cheap = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
    argon = ["--pbkdf-memory", "32", "--pbkdf-parallel", "1", "--pbkdf-force-iterations",
             "4"]
    seeds = {
        # mode bits: 0 read-only, 1 fix LUKS2 checksums, 2 keyfile=, 3 slot=0
        "luks1-sha256": (luks1(os.urandom(64), cheap), 0),
        "luks1-sha1-aes128-ro": (luks1(os.urandom(32), cheap + ["--hash", "sha1",
                                                                 "--key-size", "256"]), 1 | 4),
        "luks2-pbkdf2": (luks2(os.urandom(64), cheap + ["--sector-size", "512"]), 2),
        "luks2-argon2id-4k": (luks2(os.urandom(64), ["--pbkdf", "argon2id",
                                                     "--sector-size", "4096"] + argon), 2 | 8),
        "luks2-argon2i-ro": (luks2(os.urandom(32), ["--pbkdf", "argon2i", "--key-size", "256",
                                                    "--sector-size", "512"] + argon), 2 | 1),
    }
    essiv = ["--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"]
    seeds.update({
        "luks1-cbc-essiv": (luks1(os.urandom(32), cheap + essiv), 0),
        "luks2-cbc-essiv": (luks2(os.urandom(32), cheap + essiv), 2),
        "luks1-iterations-over": (luks1(os.urandom(64), cheap, slot_iter=0x7fffffff), 0),
        "luks2-argon2-4g": (luks2(os.urandom(64), ["--pbkdf", "argon2id"] + argon,
                                  kdf_over={"memory": 4194304}), 2),
        "luks2-pbkdf2-over": (luks2(os.urandom(64), cheap,
                                    kdf_over={"iterations": 0x7fffffff}), 2),
        "luks2-header-8m": (luks2(os.urandom(64), cheap, hdr_over=8 << 20), 0),
    })
    for name, (img, mode) in seeds.items():
        if sys.argv[2:] and name not in sys.argv[2:]:
            continue
        with open(os.path.join(out, name), "wb") as f:
            f.write(sparse(img, mode))


if __name__ == "__main__":
    main()
