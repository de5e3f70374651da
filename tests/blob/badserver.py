#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small HTTP/1.1 server for the blob plugin's tests: it serves one file at
/MODE/NAME, well or badly depending on MODE, on 127.0.0.1.

    badserver.py FILE [--cert PEM --key PEM]

It binds free ports and prints "PORT" (or "PORT TLSPORT" with --cert) on one
line on stdout, then serves until it is killed. HEAD always answers well
(Content-Length, Accept-Ranges: bytes) unless MODE says otherwise, so that the
open succeeds and the bad behaviour shows on reads.

Modes (GET with "Range: bytes=A-B"):
  ok           206 with the exact Content-Range; 416 past the end; 400 without Range
  short        206, Content-Range as asked, but 100 bytes less body
  long         206, Content-Range as asked, but 100 bytes more body
  badrange     206 with the range 512 bytes further on (and a Content-Range saying so)
  norange      200 with the whole file (the Range header ignored)
  noaccept     HEAD says Accept-Ranges: none; GET as norange
  norange-short  200 with the whole file but its last 512 bytes
  bignorange   HEAD and GET say the file is 64 MiB + 512 bytes (over the limit of
               a blob read whole); GET answers 200, sends 64 KiB and hangs up
  bignoaccept  HEAD as bignorange, with Accept-Ranges: none
  416          416 Range Not Satisfiable for every GET
  close        206, full Content-Length, half the body, then the connection closes
  hang         reads the request and never answers (the connection stays open)
  flaky-KEY    503 for the first two GETs of each KEY, then as ok
  redirect-N   HEAD and GET answer 302 to redirect-(N-1), and redirect-0 to ok
               (N + 1 redirects in all)
  nolength     HEAD without Content-Length
  tohttp       (TLS listener only) 302 to the same path on the plain listener, as ok
  pct          as ok, but only when the raw request target holds "%3B" and no
               ';' (a percent-encoded ';' must reach the server as written)
  semi         as ok, but only when the raw request target holds a literal ';'
  pages        an Azure page blob (x-ms-blob-type: PageBlob): GET ?comp=pagelist
               answers in two parts joined by a NextMarker that needs escaping,
               pages at [0, 4 KiB) and [128 KiB, 192 KiB); ranged GETs as ok
  pages-dtd    the page list carries a DOCTYPE
  pages-noend  a PageRange without an End
  pages-cut    the page list is cut off mid-element (not well-formed)
  pages-other  the page list answer is another XML document (an Error)
"""
import http.server
import os
import re
import socket
import ssl
import sys
import threading
import urllib.parse

DATA = b""
PLAIN_PORT = 0
FLAKY = {}
FLAKY_LOCK = threading.Lock()
STOP = threading.Event()
BIG = 64 * 1024 * 1024 + 512  # just over the plugin's limit for a blob read whole

MARKER = "m 2&x"  # the continuation token of the "pages" list: must be escaped
PAGELIST = {
    "pages": '<?xml version="1.0" encoding="utf-8"?><PageList>'
             "<PageRange><Start>0</Start><End>4095</End></PageRange>"
             "<ClearRange><Start>4096</Start><End>8191</End></ClearRange>"
             "<NextMarker>m 2&amp;x</NextMarker></PageList>",
    "pages+2": "<PageList>\n  <PageRange>\n    <Start>131072</Start>\n"
               "    <End>196607</End>\n  </PageRange>\n  <NextMarker />\n</PageList>\n",
    "pages-dtd": '<?xml version="1.0"?><!DOCTYPE PageList [<!ENTITY a "0">]>'
                 "<PageList><PageRange><Start>&a;</Start><End>511</End></PageRange>"
                 "</PageList>",
    "pages-noend": "<PageList><PageRange><Start>0</Start></PageRange></PageList>",
    "pages-cut": "<PageList><PageRange><Start>0</Start><End>511</E",
    "pages-other": "<Error><Code>Nope</Code></Error>",
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "badserver/1"

    def log_message(self, fmt, *args):  # quiet: tests read stdout only
        pass

    def split(self):
        parts = self.path.split("?", 1)[0].lstrip("/").split("/", 1)
        return parts[0], (parts[1] if len(parts) > 1 else "")

    def send(self, status, body=b"", headers=(), length=None, close=False):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def redirect(self, mode, rest):
        n = int(mode[len("redirect-"):])
        target = "ok" if n == 0 else "redirect-%d" % (n - 1)
        self.send(302, headers=[("Location", "/%s/%s" % (target, rest))])

    def target_ok(self, mode):
        """The raw request target as the pct and semi modes want it."""
        if mode == "pct":
            return ";" not in self.path and "%3B" in self.path.upper()
        return mode != "semi" or ";" in self.path

    def do_HEAD(self):
        mode, rest = self.split()
        if not self.target_ok(mode):
            return self.send(400)
        if mode.startswith("redirect-"):
            return self.redirect(mode, rest)
        if mode == "tohttp":
            loc = "http://127.0.0.1:%d/ok/%s" % (PLAIN_PORT, rest)
            return self.send(302, headers=[("Location", loc)])
        if mode == "nolength":
            self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            return
        accept = "none" if mode in ("noaccept", "bignoaccept") else "bytes"
        headers = [("Accept-Ranges", accept)]
        if mode.startswith("pages"):
            headers.append(("x-ms-blob-type", "PageBlob"))
        size = BIG if mode.startswith("big") else len(DATA)
        self.send(200, headers=headers, length=size)

    def pagelist(self, mode, query):
        if mode == "pages" and query.get("marker") == [MARKER]:
            mode = "pages+2"
        elif "marker" in query:
            return self.send(400, b"unknown marker\n")
        self.send(200, PAGELIST[mode].encode(), [("Content-Type", "application/xml")])

    def do_GET(self):
        mode, rest = self.split()
        if not self.target_ok(mode):
            return self.send(400, b"unexpected request target %s\n" % self.path.encode())
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if mode.startswith("pages") and query.get("comp") == ["pagelist"]:
            return self.pagelist(mode, query)
        if mode.startswith("redirect-"):
            return self.redirect(mode, rest)
        if mode == "hang":
            STOP.wait(120)
            self.close_connection = True
            return
        if mode == "416":
            return self.send(416, headers=[("Content-Range", "bytes */%d" % len(DATA))])
        if mode.startswith("flaky-"):
            with FLAKY_LOCK:
                n = FLAKY.get(mode, 0)
                FLAKY[mode] = n + 1
            if n < 2:
                return self.send(503, b"busy, try again\n")
        if mode in ("norange", "noaccept"):
            return self.send(200, DATA)
        if mode == "norange-short":
            return self.send(200, DATA[:-512])
        if mode.startswith("big"):
            self.send(200, length=BIG, close=True)
            self.wfile.write(b"\0" * 65536)
            self.wfile.flush()
            return
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if not m:
            return self.send(400, b"a Range header is required\n")
        a, b = int(m.group(1)), int(m.group(2))
        if a >= len(DATA) or b < a:
            return self.send(416, headers=[("Content-Range", "bytes */%d" % len(DATA))])
        b = min(b, len(DATA) - 1)
        body = DATA[a:b + 1]
        crange = [("Content-Range", "bytes %d-%d/%d" % (a, b, len(DATA)))]
        if mode == "short":
            return self.send(206, body[:-100], crange)
        if mode == "long":
            return self.send(206, body + b"\0" * 100, crange)
        if mode == "badrange":
            a2, b2 = a + 512, min(b + 512, len(DATA) - 1)
            return self.send(206, DATA[a2:b2 + 1],
                             [("Content-Range", "bytes %d-%d/%d" % (a2, b2, len(DATA)))])
        if mode == "close":
            self.send(206, headers=crange, length=len(body), close=True)
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            return
        return self.send(206, body, crange)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients that time out or hang up are part of the tests


def main():
    global DATA, PLAIN_PORT
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    with open(args[0], "rb") as f:
        DATA = f.read()
    cert = key = None
    if "--cert" in args:
        cert = args[args.index("--cert") + 1]
        key = args[args.index("--key") + 1]
    plain = Server(("127.0.0.1", 0), Handler)
    PLAIN_PORT = plain.server_address[1]
    servers = [plain]
    if cert:
        tls = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
    print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    # Serve until stdin closes or the process is killed.
    try:
        sys.stdin.read()
    except (OSError, ValueError):
        pass
    STOP.set()
    for s in servers:
        s.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
