#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prepare blobs in an Azure Blob emulator (Azurite) for the blob plugin's tests,
with nothing but the standard library (Shared Key signing and an account SAS
written here, independently of the plugin).

    azure_setup.py wait PORT SECONDS      wait until the emulator answers
    azure_setup.py setup PORT OUTDIR      make the blobs below, print the SAS query

Blobs in container "disks" of devstoreaccount1, and their expected contents in OUTDIR:
  page.img   4 MiB page blob; pages written at [0, 8K), [2M+4K, 2M+12K) and the
             last 512 bytes; the rest was never written (reads as zeroes)
             -> OUTDIR/page.raw
  disk.vhd   fixed VHD as a page blob: 1 MiB disk, data pages at [4K, 12K) and the
             footer page -> OUTDIR/disk.raw (the 1 MiB disk), OUTDIR/disk.uid (hex)
  block.img  256 KiB block blob -> OUTDIR/block.raw
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import os
import random
import sys
import time
import urllib.parse

ACCOUNT = "devstoreaccount1"
# The emulator's well-known development key (public, documented by Azure).
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
       "KBHBeksoGMGw==")
VERSION = "2020-08-04"
MIB = 1024 * 1024


def sign(data):
    mac = hmac.new(base64.b64decode(KEY), data.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def request(port, method, path, query=None, headers=None, body=b""):
    """One Shared Key signed request; returns (status, body)."""
    query = query or {}
    headers = dict(headers or {})
    headers["x-ms-date"] = datetime.datetime.utcnow().strftime("%a, %d %b %Y %H:%M:%S GMT")
    headers["x-ms-version"] = VERSION
    length = str(len(body)) if body else ""
    canon_headers = "".join("%s:%s\n" % (k, headers[k])
                            for k in sorted(h for h in headers if h.startswith("x-ms-")))
    canon_res = "/%s/%s/%s" % (ACCOUNT, ACCOUNT, path)
    for k in sorted(query):
        canon_res += "\n%s:%s" % (k, query[k])
    sts = "\n".join([method, "", "", length, "", headers.get("Content-Type", ""), "",
                     "", "", "", "", headers.get("Range", "")]) + "\n"
    sts += canon_headers + canon_res
    headers["Authorization"] = "SharedKey %s:%s" % (ACCOUNT, sign(sts))
    headers["Content-Length"] = str(len(body))
    url = "/%s/%s" % (ACCOUNT, path)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, url, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def must(what, status, data, ok=(200, 201)):
    if status not in ok:
        sys.exit("azure_setup: %s: HTTP %d %s" % (what, status, data[:300]))


def account_sas():
    """An account SAS (read + list, blob service, all resource types), valid 1 day."""
    expiry = (datetime.datetime.utcnow() + datetime.timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    fields = {"sv": VERSION, "ss": "b", "srt": "sco", "sp": "rl", "se": expiry,
              "spr": "https,http"}
    sts = "\n".join([ACCOUNT, fields["sp"], fields["ss"], fields["srt"], "",
                     fields["se"], "", fields["spr"], fields["sv"]]) + "\n"
    fields["sig"] = sign(sts)
    return urllib.parse.urlencode(fields)


def put_pages(port, name, data, ranges):
    for a, b in ranges:
        st, body = request(port, "PUT", "disks/" + name, {"comp": "page"},
                           {"x-ms-page-write": "update",
                            "x-ms-range": "bytes=%d-%d" % (a, b - 1)}, data[a:b])
        must("put page %s %d-%d" % (name, a, b), st, body)


def page_blob(port, name, size):
    st, body = request(port, "PUT", "disks/" + name, headers={
        "x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": str(size)})
    must("create page blob " + name, st, body)


def vhd_footer(size, uid):
    f = bytearray(512)
    f[0:8] = b"conectix"
    f[8:12] = (2).to_bytes(4, "big")
    f[12:16] = (0x00010000).to_bytes(4, "big")
    f[16:24] = b"\xff" * 8
    f[40:48] = size.to_bytes(8, "big")
    f[48:56] = size.to_bytes(8, "big")
    f[60:64] = (2).to_bytes(4, "big")
    f[68:84] = uid
    csum = (~sum(f)) & 0xffffffff
    f[64:68] = csum.to_bytes(4, "big")
    return bytes(f)


def setup(port, out):
    rnd = random.Random(20240611)
    must("create container", *request(port, "PUT", "disks", {"restype": "container"}),
         ok=(201, 409))

    size = 4 * MIB
    data = bytearray(size)
    ranges = [(0, 8192), (2 * MIB + 4096, 2 * MIB + 12288), (size - 512, size)]
    for a, b in ranges:
        data[a:b] = rnd.randbytes(b - a)
    page_blob(port, "page.img", size)
    put_pages(port, "page.img", data, ranges)
    with open(os.path.join(out, "page.raw"), "wb") as f:
        f.write(data)

    disk = bytearray(MIB)
    disk[4096:12288] = rnd.randbytes(8192)
    uid = rnd.randbytes(16)
    blob = bytes(disk) + vhd_footer(MIB, uid)
    page_blob(port, "disk.vhd", len(blob))
    put_pages(port, "disk.vhd", blob, [(4096, 12288), (MIB, MIB + 512)])
    with open(os.path.join(out, "disk.raw"), "wb") as f:
        f.write(disk)
    with open(os.path.join(out, "disk.uid"), "w") as f:
        f.write(uid.hex() + "\n")

    block = rnd.randbytes(256 * 1024)
    st, body = request(port, "PUT", "disks/block.img", headers={"x-ms-blob-type": "BlockBlob"},
                       body=block)
    must("create block blob", st, body)
    with open(os.path.join(out, "block.raw"), "wb") as f:
        f.write(block)
    print(account_sas())


def wait(port, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/%s?comp=list" % ACCOUNT)
            conn.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("azure_setup: the emulator did not answer on port %d in %d s"
                         % (port, seconds))
            time.sleep(0.2)  # waiting for a port to open


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("wait", "setup"):
        sys.exit(__doc__)
    port = int(sys.argv[2])
    if sys.argv[1] == "wait":
        wait(port, int(sys.argv[3]))
    else:
        setup(port, sys.argv[3])


if __name__ == "__main__":
    main()
