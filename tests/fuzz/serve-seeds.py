#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of fuzz-serve (tests/fuzz/corpus/serve): client byte
streams, each after fuzz-serve's mode byte (bits 0-1 disk, 2 read-only, 3 the
export named "fz"). Run it again after changing it and commit the result:
    python3 tests/fuzz/serve-seeds.py tests/fuzz/corpus/serve
"""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513
READ, WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES = 0, 1, 2, 3, 4, 6
FUA, NO_HOLE = 1, 2


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def info(o, name=b"", reqs=(1, 2, 3)):
    return opt(o, struct.pack(">I", len(name)) + name + struct.pack(">H", len(reqs))
               + b"".join(struct.pack(">H", r) for r in reqs))


def req(cmd, off, length, handle=1, flags=0, data=b""):
    return struct.pack(">IHHQQI", REQ, flags, cmd, handle, off, length) + data


FLAGS = struct.pack(">I", 3)
GO = FLAGS + info(7)

seeds = {
    # The usual libnbd-like session on a writable 512-byte-sector disk.
    "rw": bytes([0]) + FLAGS + info(6) + opt(3) + info(7)
    + req(WRITE, 0, 4096, 1, data=b"\x22" * 4096)
    + req(READ, 0, 4096, 2)
    + req(WRITE, 1000, 100, 3, data=b"\x11" * 100)
    + req(READ, 99, 3, 4)
    + req(WRITE_ZEROES, 10, 20, 5)
    + req(WRITE_ZEROES, 8192, 8192, 6, NO_HOLE | FUA)
    + req(WRITE_ZEROES, 16384, 4096, 7)
    + req(TRIM, 0, 1024, 8)
    + req(TRIM, 100, 1000, 9, FUA)
    + req(FLUSH, 0, 0, 10)
    + req(WRITE, 512, 512, 11, FUA, b"\x01" * 512)
    + req(READ, 65536 - 512, 1024, 12)
    + req(WRITE, 65536, 512, 13, data=b"x" * 512)
    + req(99, 0, 0, 14)
    + req(READ, 0, 512, 15, 0x100)
    + req(READ, 0, 0, 16)
    + req(DISC, 0, 0, 17),
    # Old-style entry with a named export and the 124 zero bytes.
    "export-name": bytes([8]) + struct.pack(">I", 1) + opt(1, b"fz")
    + req(READ, 0, 512, 1) + req(DISC, 0, 0, 2),
    "export-name-unknown": bytes([8]) + FLAGS + opt(1, b"nope"),
    # Read-only: refused writes keep the stream framed.
    "ro": bytes([4]) + GO
    + req(WRITE, 0, 512, 1, data=b"y" * 512)
    + req(TRIM, 0, 512, 2) + req(WRITE_ZEROES, 0, 512, 3)
    + req(READ, 0, 512, 4) + req(FLUSH, 0, 0, 5) + req(DISC, 0, 0, 6),
    # 4 KiB sectors: read-modify-write across sector edges, pipelined.
    "4k": bytes([1]) + GO
    + req(WRITE, 4090, 20, 1, data=b"\x44" * 20)
    + req(WRITE, 4100, 10, 2, data=b"\x55" * 10)
    + req(READ, 4000, 200, 3)
    + req(WRITE_ZEROES, 100, 5000, 4)
    + req(TRIM, 100, 9000, 5)
    + req(DISC, 0, 0, 6),
    # memdiff: unmap that may be refused, write-zeroes falling back to writes.
    "memdiff": bytes([2]) + GO
    + req(WRITE, 0, 8192, 1, data=b"\x66" * 8192)
    + req(WRITE_ZEROES, 0, 8192, 2) + req(TRIM, 0, 65536, 3, FUA)
    + req(READ, 0, 8192, 4) + req(DISC, 0, 0, 5),
    # Option haggling oddities, then a clean ABORT.
    "options": bytes([8]) + FLAGS + opt(99, b"xyz") + opt(8) + opt(5)
    + opt(6, b"\0\0\0\x09ab") + info(6, b"zzz") + info(6, b"fz", ())
    + opt(3, b"junk") + opt(7, struct.pack(">IH", 0, 1)) + opt(2),
    "option-too-long": bytes([0]) + FLAGS
    + struct.pack(">QII", IHAVEOPT, 99, 70000) + b"\0" * 64,
    "bad-flags": bytes([0]) + struct.pack(">I", 0x10),
    "bad-option-magic": bytes([0]) + FLAGS + struct.pack(">QII", 1, 7, 0),
    "bad-request-magic": bytes([0]) + GO + struct.pack(">IHHQQI", 0xDEADBEEF, 0, 0, 1, 0, 512),
    # A write whose payload is never worth reading, and one cut short.
    "huge-write": bytes([0]) + GO + req(WRITE, 0, 100 << 20, 1) + b"z" * 100,
    "short-write": bytes([0]) + GO + req(WRITE, 0, 65536, 1) + b"\3" * 100,
    "oversized-read": bytes([0]) + GO + req(READ, 0, 33 << 20, 1)
    + req(WRITE, 0, 33 << 20, 2) + b"\0" * 1000,
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "corpus", "serve")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
