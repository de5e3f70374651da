#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl serve against real NBD clients: nbdinfo and nbdcopy (libnbd), qemu-img and
# qemu-io (QEMU's NBD client), plus a small raw-protocol client for what real
# clients never send (bad magic, oversized/unaligned requests, truncated payloads).
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.
set -u

. "$(dirname "$0")/tap-lib.sh"
for t in nbdinfo nbdcopy qemu-img qemu-io timeout cmp; do
	command -v "$t" >/dev/null || skip "$t is missing (apt-get install libnbd-bin qemu-utils)"
done
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || skip "python3 is needed for the raw client"

tap_tmpdir serve
# pattern BYTE_OCTAL N: N bytes of one value on stdout
pattern() { head -c "$2" /dev/zero | tr '\0' "\\$1"; }

# start NAME ARGS...: diskctl serve ARGS in the background, log in $T/NAME.log;
# waits until the socket (--unix) or the "listening on" line (--port) appears.
start() {
	name=$1; shift
	: >"$T/$name.log"
	"$DISKCTL" serve "$@" 2>>"$T/$name.log" &
	SRV=$!
	PIDS="$PIDS $SRV"
	i=0
	while ! has "listening on" "$T/$name.log"; do
		if ! kill -0 "$SRV" 2>/dev/null || [ $i -ge 200 ]; then
			echo "# server $name did not start:" >&2
			cat "$T/$name.log" >&2
			return 1
		fi
		sleep 0.05
		i=$((i + 1))
	done
}
# reap: wait (at most 20 s, then SIGKILL) for the last server to exit; its status
reap() {
	i=0
	while kill -0 "$SRV" 2>/dev/null && [ $i -lt 400 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -KILL "$SRV" 2>/dev/null
	wait "$SRV"
}
# stop: SIGTERM the last server; it must exit 0
stop() {
	kill -TERM "$SRV"
	reap
	rc=$?
	PIDS=$(echo "$PIDS" | sed "s/ $SRV\$//; s/ $SRV / /")
	return $rc
}
uri() { echo "nbd+unix:///${2:-}?socket=$T/$1.sock"; }
TO="timeout 120"

cat >"$T/client.py" <<'PYEOF'
import socket
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
EPERM, EINVAL, ENOSPC = 1, 22, 28
READ, WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES = 0, 1, 2, 3, 4, 6
MiB = 1 << 20

path, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = sys.argv[4] if len(sys.argv) > 4 else None  # mode "file": the file served
ENOTSUP, NO_HOLE, FAST_ZERO = 95, 2, 0x10
fails = 0


def check(name, cond):
    global fails
    print(("ok" if cond else "not ok") + " - client: " + name)
    if not cond:
        fails += 1


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def recvall(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def closed(s):
    """True when the server closed the connection."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def greet(s, cflags=3):
    magic, opt, _ = struct.unpack(">QQH", recvall(s, 18))
    assert magic == 0x4E42444D41474943 and opt == IHAVEOPT
    s.sendall(struct.pack(">I", cflags))


def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def opt_reply(s):
    magic, opt, typ, n = struct.unpack(">QIII", recvall(s, 20))
    assert magic == 0x3E889045565A9
    return opt, typ, recvall(s, n)


def go(s, name=b""):
    option(s, 7, struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, 3))
    info = {}
    while True:
        _, typ, d = opt_reply(s)
        if typ == 3:
            info[struct.unpack(">H", d[:2])[0]] = d[2:]
        elif typ == 1:
            return info
        else:
            raise RuntimeError("GO refused: 0x%x" % typ)


def session():
    s = connect()
    greet(s)
    go(s)
    return s


def req(s, cmd, off, length, handle, flags=0, data=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, handle, off, length) + data)


def reply(s, datalen=0):
    magic, err, handle = struct.unpack(">IIQ", recvall(s, 16))
    assert magic == 0x67446698
    data = recvall(s, datalen) if not err and datalen else b""
    return err, handle, data


def call(s, cmd, off, length, flags=0, data=b"", datalen=0):
    req(s, cmd, off, length, 7, flags, data)
    err, handle, d = reply(s, datalen)
    assert handle == 7
    return err, d


def handshake_checks():
    s = connect()
    greet(s, 0x10)
    check("unknown client flags: dropped", closed(s))

    s = connect()
    greet(s)
    s.sendall(struct.pack(">QII", 0x1122334455667788, 7, 0))
    check("bad option magic: dropped", closed(s))

    s = connect()
    greet(s)
    option(s, 99, b"xyz")
    check("unknown option: ERR_UNSUP", opt_reply(s)[1] == 0x80000001)
    option(s, 8, b"x")
    check("structured replies with data: ERR_INVALID", opt_reply(s)[1] == 0x80000003)
    option(s, 6, b"\0\0\0\x09ab")
    check("INFO with a bad name length: ERR_INVALID", opt_reply(s)[1] == 0x80000003)
    option(s, 6, struct.pack(">I", 3) + b"zzz" + struct.pack(">H", 0))
    check("INFO for an unknown export: ERR_UNKNOWN", opt_reply(s)[1] == 0x80000006)
    option(s, 3)
    _, typ, d = opt_reply(s)
    check("LIST: one export", typ == 2 and d == struct.pack(">I", 0))
    check("LIST: then ACK", opt_reply(s)[1] == 1)
    option(s, 6, struct.pack(">IH", 0, 0))
    info = {}
    while True:
        _, typ, d = opt_reply(s)
        if typ != 3:
            break
        info[struct.unpack(">H", d[:2])[0]] = d[2:]
    esize, tflags = struct.unpack(">QH", info[0])
    mn, pref, mx = struct.unpack(">III", info[3])
    check("INFO: size, flags and block sizes", typ == 1 and size == esize
          and tflags & 1 and mn == 512 and mx == 32 * MiB)
    check("INFO: read-only flag matches", bool(tflags & 2) == (mode == "ro"))
    option(s, 2)
    check("ABORT: ACK", opt_reply(s)[1] == 1)
    s.close()

    s = connect()
    greet(s)
    option(s, 1, b"nosuchexport")
    check("EXPORT_NAME of an unknown export: dropped", closed(s))

    s = connect()
    greet(s)
    option(s, 1)  # old-style entry: size, flags, no zero padding (NO_ZEROES)
    esize, tflags = struct.unpack(">QH", recvall(s, 10))
    check("EXPORT_NAME: size and flags", esize == size and tflags & 1)
    req(s, DISC, 0, 0, 1)
    check("DISC: server closes", closed(s))


def rw_checks():
    s = session()
    base = 32 * MiB
    check("aligned write", call(s, WRITE, base, 4096, data=b"\x22" * 4096)[0] == 0)
    check("unaligned write", call(s, WRITE, base + 100, 1000, data=b"\x11" * 1000)[0] == 0)
    check("unaligned write across sectors",
          call(s, WRITE, base + 1500, 700, data=b"\x33" * 700)[0] == 0)
    err, d = call(s, READ, base, 4096, datalen=4096)
    want = b"\x22" * 100 + b"\x11" * 1000 + b"\x22" * 400 + b"\x33" * 700 + b"\x22" * 1896
    check("read-modify-write kept the neighbours", err == 0 and d == want)
    err, d = call(s, READ, base + 99, 3, datalen=3)
    check("unaligned read", err == 0 and d == b"\x22\x11\x11")

    # Two unaligned writes into one sector, pipelined: both must land.
    req(s, WRITE, base + 8192, 10, 1, data=b"\x44" * 10)
    req(s, WRITE, base + 8192 + 10, 10, 2, data=b"\x55" * 10)
    got = sorted(reply(s)[:2] for _ in range(2))
    err, d = call(s, READ, base + 8192, 20, datalen=20)
    check("pipelined unaligned writes to one sector",
          got == [(0, 1), (0, 2)] and d == b"\x44" * 10 + b"\x55" * 10)

    check("write zeroes, unaligned", call(s, WRITE_ZEROES, base + 10, 20)[0] == 0)
    err, d = call(s, READ, base, 40, datalen=40)
    check("zeroes read back", d == b"\x22" * 10 + b"\0" * 20 + b"\x22" * 10)
    check("write zeroes, aligned 40 MiB", call(s, WRITE_ZEROES, 0, 40 * MiB)[0] == 0)
    err, d = call(s, READ, base, 4096, datalen=4096)
    check("aligned zeroes read back", err == 0 and d == b"\0" * 4096)
    check("write zeroes with NO_HOLE and FUA",
          call(s, WRITE_ZEROES, MiB, MiB, flags=3)[0] == 0)
    # mem: does not promise that unmapped sectors read as zero: no fast zero.
    check("fast zero where unmap does not zero: ENOTSUP",
          call(s, WRITE_ZEROES, 0, MiB, flags=FAST_ZERO)[0] == ENOTSUP)
    check("trim", call(s, TRIM, 0, MiB)[0] == 0)
    check("trim, unaligned", call(s, TRIM, 100, 1000)[0] == 0)
    check("flush", call(s, FLUSH, 0, 0)[0] == 0)
    check("write with FUA", call(s, WRITE, 0, 512, flags=1, data=b"\1" * 512)[0] == 0)

    check("zero-length read", call(s, READ, 0, 0) == (0, b""))
    check("read past the end: EINVAL", call(s, READ, 64 * MiB - 512, 1024)[0] == EINVAL)
    check("read at 2^64-512: EINVAL", call(s, READ, 2**64 - 512, 1024)[0] == EINVAL)
    check("write past the end: ENOSPC",
          call(s, WRITE, 64 * MiB, 512, data=b"x" * 512)[0] == ENOSPC)
    check("trim past the end: EINVAL", call(s, TRIM, 64 * MiB, 512)[0] == EINVAL)
    check("read over 32 MiB: EINVAL", call(s, READ, 0, 33 * MiB)[0] == EINVAL)
    check("write over 32 MiB: EINVAL (payload skipped)",
          call(s, WRITE, 0, 33 * MiB, data=bytes(33 * MiB))[0] == EINVAL)
    check("unknown command: EINVAL", call(s, 99, 0, 0)[0] == EINVAL)
    check("unknown flag: EINVAL", call(s, READ, 0, 512, flags=0x100)[0] == EINVAL)
    err, d = call(s, READ, 0, 512, datalen=512)
    check("still serving after the errors", err == 0 and d == b"\1" * 512)

    # 64 reads in a row before any reply is read: every handle is answered.
    for i in range(64):
        req(s, READ, i * 4096, 4096, 1000 + i)
    handles = set()
    for _ in range(64):
        err, h, _ = reply(s, 4096)
        handles.add(h if err == 0 else -1)
    check("64 pipelined reads answered", handles == set(range(1000, 1064)))

    # Requests before DISC are still answered.
    req(s, WRITE, 0, 512, 5, data=b"\2" * 512)
    req(s, DISC, 0, 0, 6)
    err, h, _ = reply(s)
    check("write before DISC answered, then closed", (err, h) == (0, 5) and closed(s))

    s = session()
    s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, READ, 1, 0, 512))
    check("bad request magic: dropped", closed(s))

    s = session()
    req(s, WRITE, 0, 65536, 1, data=b"\3" * 100)
    s.close()  # mid-payload
    s = session()
    err, d = call(s, READ, 0, 512, datalen=512)
    check("disconnect mid-payload: nothing written, server alive",
          err == 0 and d == b"\2" * 512)
    s.close()


def meta_query(opt, *queries):
    d = struct.pack(">II", 0, len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q
    return d


def chunk(s):
    """One structured reply chunk: flags, type, handle, payload."""
    magic, flags, typ, handle, n = struct.unpack(">IHHQI", recvall(s, 20))
    assert magic == 0x668E33EF
    return flags, typ, handle, recvall(s, n)


def structured_checks():
    s = connect()
    greet(s)
    option(s, 10, meta_query(10, b"base:allocation"))
    check("SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID",
          opt_reply(s)[1] == 0x80000003)
    option(s, 8)
    check("STRUCTURED_REPLY: ACK", opt_reply(s)[1] == 1)
    option(s, 9, meta_query(9))
    _, typ, d = opt_reply(s)
    check("LIST_META_CONTEXT: base:allocation", typ == 4 and d[4:] == b"base:allocation")
    check("... then ACK", opt_reply(s)[1] == 1)
    option(s, 10, meta_query(10, b"qemu:dirty-bitmap:x", b"base:allocation"))
    _, typ, d = opt_reply(s)
    ctx = struct.unpack(">I", d[:4])[0] if typ == 4 else None
    check("SET_META_CONTEXT: base:allocation, unknown contexts ignored",
          typ == 4 and d[4:] == b"base:allocation" and opt_reply(s)[1] == 1)
    go(s)
    req(s, READ, 0, 4096, 1)
    flags, typ, h, d = chunk(s)
    check("structured read: one OFFSET_DATA chunk, DONE",
          (flags, typ, h) == (1, 1, 1) and len(d) == 8 + 4096 and d[:8] == bytes(8))
    req(s, READ, size, 512, 2)
    flags, typ, h, d = chunk(s)
    check("structured read past the end: ERROR chunk with EINVAL",
          (flags, typ, h) == (1, 0x8001, 2) and struct.unpack(">I", d[:4])[0] == EINVAL)
    req(s, 7, 0, size, 3)
    flags, typ, h, d = chunk(s)
    descs = [struct.unpack(">II", d[i:i + 8]) for i in range(4, len(d), 8)]
    check("BLOCK_STATUS: the context id, descriptors within the request",
          (flags, typ, h) == (1, 5, 3) and struct.unpack(">I", d[:4])[0] == ctx
          and descs and sum(n for n, _ in descs) <= size and all(n for n, _ in descs))
    req(s, 7, 0, size, 4, flags=8)
    flags, typ, h, d = chunk(s)
    check("BLOCK_STATUS with REQ_ONE: one descriptor", typ == 5 and len(d) == 12)
    check("BLOCK_STATUS of 0 bytes: EINVAL", call(s, 7, 0, 0)[0] == EINVAL)
    check("BLOCK_STATUS past the end: EINVAL", call(s, 7, size - 512, 1024)[0] == EINVAL)
    s.close()

    s = session()  # no meta context: no block status
    check("BLOCK_STATUS without a context: EINVAL", call(s, 7, 0, 512)[0] == EINVAL)
    s.close()


def ro_checks():
    s = session()
    check("read-only: write is EPERM", call(s, WRITE, 0, 512, data=b"x" * 512)[0] == EPERM)
    check("read-only: trim is EPERM", call(s, TRIM, 0, 512)[0] == EPERM)
    check("read-only: write zeroes is EPERM", call(s, WRITE_ZEROES, 0, 512)[0] == EPERM)
    check("read-only: read works", call(s, READ, 0, 512, datalen=512)[0] == 0)
    check("read-only: flush works", call(s, FLUSH, 0, 0)[0] == 0)
    s.close()


def allocated(off, length):
    """Bytes of the image file's [off, off + length) that are not holes."""
    import os
    fd = os.open(image, os.O_RDONLY)
    n, pos = 0, off
    try:
        while pos < off + length:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            if data >= off + length:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            n += min(hole, off + length) - data
            pos = hole
    finally:
        os.close(fd)
    return n


def file_checks():
    """Over file: (unmapped sectors read as zero): write-zeroes and trim
    punch holes unless NO_HOLE, FAST_ZERO only when that is how it is done."""
    s = session()
    data = bytes(range(256)) * 4096  # 1 MiB, no zero page
    check("file: write 4 MiB", all(call(s, WRITE, i * MiB, MiB, data=data)[0] == 0
                                   for i in range(4)))
    check("file: written blocks are allocated", allocated(0, 4 * MiB) == 4 * MiB)
    check("file: write zeroes (holes allowed)", call(s, WRITE_ZEROES, 0, MiB)[0] == 0)
    check("file: ... punched a hole", allocated(0, MiB) == 0)
    check("file: fast zero", call(s, WRITE_ZEROES, MiB, MiB, flags=FAST_ZERO)[0] == 0)
    check("file: ... punched a hole too", allocated(MiB, MiB) == 0)
    check("file: write zeroes with NO_HOLE", call(s, WRITE_ZEROES, 2 * MiB, MiB,
                                                 flags=NO_HOLE)[0] == 0)
    check("file: ... stays allocated", allocated(2 * MiB, MiB) == MiB)
    check("file: fast zero with NO_HOLE: ENOTSUP",
          call(s, WRITE_ZEROES, 2 * MiB, MiB, flags=NO_HOLE | FAST_ZERO)[0] == ENOTSUP)
    check("file: unaligned fast zero: ENOTSUP",
          call(s, WRITE_ZEROES, 3 * MiB + 100, 4096, flags=FAST_ZERO)[0] == ENOTSUP)
    check("file: trim", call(s, TRIM, 3 * MiB, MiB)[0] == 0)
    check("file: ... punched a hole", allocated(3 * MiB, MiB) == 0)
    err, d = call(s, READ, 0, 4 * MiB, datalen=4 * MiB)
    check("file: everything zeroed reads as zero", err == 0 and d == bytes(4 * MiB))
    s.close()


try:
    handshake_checks()
    if mode == "file":
        file_checks()
    else:
        rw_checks() if mode == "rw" else ro_checks()
        structured_checks()
except (OSError, EOFError, AssertionError, RuntimeError, struct.error) as e:
    check("client ran to the end (%s: %s)" % (type(e).__name__, e), False)
sys.exit(1 if fails else 0)
PYEOF

# --- usage ---------------------------------------------------------------
"$DISKCTL" serve mem:1M >/dev/null 2>"$T/err"
check "serve without --unix/--port exits 2" [ $? -eq 2 ]
check "... and says what is missing" has "unix PATH" "$T/err"
"$DISKCTL" serve --unix "$T/x.sock" --port 1 mem:1M >/dev/null 2>&1
check "--unix with --port exits 2" [ $? -eq 2 ]
"$DISKCTL" serve --unix "$T/x.sock" nosuchplugin:1 >/dev/null 2>"$T/err"
check "a bad spec exits 1" [ $? -eq 1 ]
check "... with the core's message" has "nosuchplugin" "$T/err"
"$DISKCTL" serve --help >"$T/out"
check "serve --help" has "usage: diskctl serve" "$T/out"
"$DISKCTL" help serve >"$T/help"
check "'diskctl help serve' prints the same" cmp -s "$T/out" "$T/help"
# refused MESSAGE ARGS...: serve ARGS exits 2 (wrong usage), saying MESSAGE
refused() {
	msg=$1
	shift
	"$DISKCTL" serve "$@" >/dev/null 2>"$T/err"
	rc=$?
	check "refused, exit 2 ($rc): $msg" \
		sh -c "[ $rc -eq 2 ] && grep -qF -- \"\$1\" '$T/err' && grep -q 'serve --help' '$T/err'" \
		- "$msg"
}
x=$T/x.sock
refused "--port: 70000 is out of range (0..65535)" --port 70000 mem:1M
refused "--port: '-1' is not a non-negative integer" --port -1 mem:1M
refused "--port: '80x' is not a non-negative integer" --port 80x mem:1M
refused "--handshake-timeout: '-1' is not a number of seconds from 0 to 86400" \
	--unix "$x" --handshake-timeout -1 mem:1M
refused "--handshake-timeout: '86401' is not a number of seconds from 0 to 86400" \
	--unix "$x" --handshake-timeout 86401 mem:1M
refused "--max-connections: 0 is out of range (1..4096)" --unix "$x" --max-connections 0 mem:1M
refused "unknown option '--no-such-option'" --unix "$x" --no-such-option mem:1M
refused "unknown option '-x'" --unix "$x" -x mem:1M
refused "option '--port' needs an argument" --unix "$x" mem:1M --port
refused "--export: NAME is at most 4096 bytes" --unix "$x" --export "$(pattern 141 4097)" mem:1M
refused "--bind needs --port" --unix "$x" --bind 127.0.0.1 mem:1M
refused "missing SPEC" --unix "$x"
refused "unexpected argument 'mem:2M'" --unix "$x" mem:1M mem:2M
# What is accepted arrives: 0 turns the handshake timeout off, fractions count.
for secs in 0:0 0.25:250; do
	if start opts -v --unix "$T/opts.sock" --max-connections 3 \
		--handshake-timeout "${secs%:*}" mem:1M; then
		check "--handshake-timeout ${secs%:*}: ${secs#*:} ms" \
			has "at most 3 connections, handshake timeout ${secs#*:} ms" "$T/opts.log"
		stop
		check "... and the server exits 0" [ $? -eq 0 ]
	else
		fail "serve --handshake-timeout ${secs%:*} starts"
	fi
done

# --- mem:64M: nbdinfo, qemu-io, qemu-img, nbdcopy --------------------------
S=$(uri mem)
if start mem --unix "$T/mem.sock" mem:64M; then
	$TO nbdinfo "$S" >"$T/info" 2>&1
	check "nbdinfo succeeds" [ $? -eq 0 ]
	check "nbdinfo: size 64M" has "export-size: 67108864" "$T/info"
	check "nbdinfo: minimum block 512" has "block_size_minimum: 512" "$T/info"
	check "nbdinfo: writable" has "is_read_only: false" "$T/info"
	check "nbdinfo: flush" has "can_flush: true" "$T/info"
	check "nbdinfo: trim (mem: unmaps)" has "can_trim: true" "$T/info"
	check "nbdinfo: zero" has "can_zero: true" "$T/info"
	check "nbdinfo: multi-conn" has "can_multi_conn: true" "$T/info"
	$TO nbdinfo --list "$S" >"$T/list" 2>&1
	check "nbdinfo --list" [ $? -eq 0 ]

	$TO qemu-img info "$S" >"$T/qinfo" 2>&1
	check "qemu-img info: virtual size" has "(67108864 bytes)" "$T/qinfo"
	$TO qemu-io -f raw -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' \
		-c 'write -P 0xcd 1000 3000' -c 'read -P 0xcd 1000 3000' \
		-c 'read -P 0xab 0 1000' -c 'read -P 0 1M 64k' "$S" >"$T/qio" 2>&1
	check "qemu-io write/read patterns (aligned and not)" \
		sh -c "[ \$(grep -c '^read\|^wrote' '$T/qio') -eq 6 ] && ! grep -q 'fail\|rror' '$T/qio'"

	# 64 MiB of random data in with nbdcopy (4 connections), out with both tools.
	head -c 64M /dev/urandom >"$T/rand.img"
	$TO nbdcopy "$T/rand.img" "$S"
	check "nbdcopy file -> export" [ $? -eq 0 ]
	$TO nbdcopy "$S" "$T/out1.img"
	check "nbdcopy export -> file" [ $? -eq 0 ]
	check "nbdcopy round trip is identical" cmp -s "$T/rand.img" "$T/out1.img"
	$TO qemu-img convert -f raw -O raw "$S" "$T/out2.img"
	check "qemu-img convert export -> file" [ $? -eq 0 ]
	check "qemu-img convert output is identical" cmp -s "$T/rand.img" "$T/out2.img"

	# Mostly-zero source over random data: qemu-img writes zeroes / trims.
	truncate -s 64M "$T/sparse.img"
	qemu-io -f raw -c 'write -P 0x77 1M 1M' -c 'write -P 0x78 40M 12k' "$T/sparse.img" \
		>/dev/null
	$TO qemu-img convert -n -f raw -O raw "$T/sparse.img" "$S"
	check "qemu-img convert -n sparse file -> export" [ $? -eq 0 ]
	$TO nbdcopy "$S" "$T/out3.img"
	check "zeroed regions read back as zero" cmp -s "$T/sparse.img" "$T/out3.img"

	$TO "$PY" "$T/client.py" "$T/mem.sock" rw 67108864
	check "raw protocol client (rw)" [ $? -eq 0 ]
	$TO nbdinfo "$S" >/dev/null 2>&1
	check "still serving after the raw client" [ $? -eq 0 ]
	stop
	check "SIGTERM: exits 0" [ $? -eq 0 ]
	check "SIGTERM: socket removed" [ ! -e "$T/mem.sock" ]
else
	fail "serve mem:64M starts"
fi

# --- delay: completions arrive later and out of submission order -----------
if start delay --unix "$T/delay.sock" delay:2:mem:64M; then
	$TO "$PY" "$T/client.py" "$T/delay.sock" rw 67108864 >"$T/delay.out"
	check "raw protocol client over delay:2 (async completions)" [ $? -eq 0 ]
	$TO qemu-io -f raw -c 'aio_write -P 0x11 0 64k' -c 'aio_write -P 0x22 64k 64k' \
		-c 'aio_flush' -c 'read -P 0x11 0 64k' -c 'read -P 0x22 64k 64k' \
		"$(uri delay)" >"$T/qio" 2>&1
	check "qemu-io aio writes over delay" sh -c "! grep -q 'fail\|rror' '$T/qio'"
	stop
else
	fail "serve delay:2:mem:64M starts"
fi

# --- file:IMG: data lands in the file -------------------------------------
truncate -s 16M "$T/file.img"
if start file --unix "$T/file.sock" "file:$T/file.img"; then
	$TO nbdinfo "$(uri file)" >"$T/info" 2>&1
	check "file: fast zero offered" has "can_fast_zero: true" "$T/info"
	$TO "$PY" "$T/client.py" "$T/file.sock" file 16777216 "$T/file.img"
	check "raw protocol client (file: holes, NO_HOLE, FAST_ZERO)" [ $? -eq 0 ]
	$TO qemu-io -f raw -c 'write -P 0xab 1M 64k' -c 'flush' "$(uri file)" >/dev/null 2>&1
	check "qemu-io writes file:IMG" [ $? -eq 0 ]
	$TO nbdcopy "$(uri file)" "$T/file.out"
	check "nbdcopy reads file:IMG" cmp -s "$T/file.img" "$T/file.out"
	stop
	check "file server exits 0" [ $? -eq 0 ]
	pattern 253 65536 >"$T/ab"
	dd if="$T/file.img" bs=64k skip=16 count=1 2>/dev/null | cmp -s - "$T/ab"
	check "the image holds the pattern at 1M" [ $? -eq 0 ]
else
	fail "serve file: starts"
fi

# --- a driven queue (file: on io_uring) with completions from another thread --
# delay: completes on its timer thread, which must wake the connection's thread
# inside dc_queue_wait() (docs/serve.md, "How it works"); nbdcopy keeps 64
# requests in flight on each of its connections.
head -c 8M /dev/urandom >"$T/rand8"
truncate -s 8M "$T/driven.img"
if start driven --unix "$T/driven.sock" "delay:1:file:$T/driven.img"; then
	$TO nbdcopy "$T/rand8" "$(uri driven)"
	check "driven: nbdcopy writes through delay:1:file:" cmp -s "$T/rand8" "$T/driven.img"
	$TO nbdcopy "$(uri driven)" "$T/driven.out"
	check "driven: nbdcopy reads it back" cmp -s "$T/rand8" "$T/driven.out"
	stop
	check "driven server exits 0" [ $? -eq 0 ]
else
	fail "serve delay:1:file: starts"
fi

# --- read-only --------------------------------------------------------------
cp "$T/file.img" "$T/ro-before.img"
if start ro --ro --unix "$T/ro.sock" "file:$T/file.img"; then
	$TO nbdinfo "$(uri ro)" >"$T/info" 2>&1
	check "--ro: nbdinfo says read-only" has "is_read_only: true" "$T/info"
	$TO qemu-io -f raw -c 'write -P 0x99 0 64k' "$(uri ro)" >"$T/qio" 2>&1
	rc=$?
	check "--ro: qemu-io write refused" sh -c "[ $rc -ne 0 ] || grep -qi 'fail\|denied\|read-only\|not permitted' '$T/qio'"
	$TO nbdcopy "$T/rand.img" "$(uri ro)" >/dev/null 2>&1
	check "--ro: nbdcopy into it fails" [ $? -ne 0 ]
	$TO "$PY" "$T/client.py" "$T/ro.sock" ro 16777216
	check "raw protocol client (ro): EPERM" [ $? -eq 0 ]
	stop
	check "--ro: image unchanged" cmp -s "$T/file.img" "$T/ro-before.img"
else
	fail "serve --ro starts"
fi

# --- a chain: crypt over file, written by qemu-io, read back by diskctl ------
if [ -e "$DISKCORE_BUILD_ROOT/plugins/crypt/crypt.so" ]; then
	head -c 64 /dev/urandom >"$T/key"
	chmod 600 "$T/key"
	truncate -s 8M "$T/crypt.img"
	C="crypt:xts-aes-256:$T/key:file:$T/crypt.img"
	if start crypt --unix "$T/crypt.sock" "$C"; then
		$TO qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0x5b 100k 3000' \
			"$(uri crypt)" >/dev/null 2>&1
		check "qemu-io writes through crypt:" [ $? -eq 0 ]
		stop
		"$DISKCTL" read "$C" 0 128 --raw >"$T/plain"
		pattern 132 65536 >"$T/5a"
		check "diskctl read decrypts what qemu-io wrote" cmp -s "$T/plain" "$T/5a"
		"$DISKCTL" read "$C" 200 8 --raw | head -c 3000 >"$T/plain2"
		pattern 133 3000 >"$T/5b"
		check "... including an unaligned write" cmp -s "$T/plain2" "$T/5b"
		head -c 65536 "$T/crypt.img" | cmp -s - "$T/5a"
		check "the image holds ciphertext" [ $? -ne 0 ]
	else
		fail "serve crypt: starts"
	fi
else
	echo "# crypt plugin not built: chain check skipped"
fi

# --- TCP, export names, --once ----------------------------------------------
if start tcp --port 0 --export disk0 mem:1M; then
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/tcp.log")
	$TO nbdinfo "nbd://127.0.0.1:$port/disk0" >"$T/info" 2>&1
	check "TCP (--port 0) and a named export" has "export-size: 1048576" "$T/info"
	$TO nbdinfo "nbd://127.0.0.1:$port/other" >/dev/null 2>&1
	check "an unknown export name is refused" [ $? -ne 0 ]
	$TO nbdinfo --list "nbd://127.0.0.1:$port" >"$T/list" 2>&1
	check "nbdinfo --list names the export" has "disk0" "$T/list"
	stop
else
	fail "serve --port 0 starts"
fi
# --- base:allocation: nbdinfo --map agrees with diskctl map -------------------
# Both as "offset length flags" (1 hole, 2 zero), adjacent runs of a kind merged.
merge() { awk '$1 == o + n && $3 == k { n += $2; next }
	NR > 1 && n { print o, n, k } { o = $1; n = $2; k = $3 } END { if (n) print o, n, k }'; }
qemu-img create -q -f qcow2 "$T/map.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 1 4M 1M' -c 'write -z 8M 1M' -c 'write -P 2 12M 64k' \
	"$T/map.qcow2" >/dev/null
if start map --ro --unix "$T/map.sock" "qcow2:$T/map.qcow2"; then
	$TO nbdinfo --map "$(uri map)" 2>&1 | awk '{ print $1, $2, $3 }' | merge >"$T/map.nbd"
	"$DISKCTL" map "qcow2:$T/map.qcow2" 2>&1 | awk 'NR > 1 {
		print $1, $2, ($3 == "hole" ? 3 : $3 == "zero" ? 2 : $3 == "data" ? 0 : 1) }' |
		merge >"$T/map.dc"
	check "nbdinfo --map: data, zero and hole" sh -c "grep -qx '4194304 1048576 0' '$T/map.nbd' &&
		grep -qx '8388608 1048576 2' '$T/map.nbd' && grep -qx '0 4194304 3' '$T/map.nbd'"
	check "nbdinfo --map agrees with diskctl map" cmp -s "$T/map.nbd" "$T/map.dc"
	$TO qemu-img convert -f raw -O qcow2 "$(uri map)" "$T/map.copy.qcow2"
	check "qemu-img convert from serve is sparse (data only where written)" \
		sh -c "[ \$(qemu-img map '$T/map.copy.qcow2' | grep -c '^0x') -eq 2 ]"
	check "  and the same disk" $TO qemu-img compare -q "$T/map.copy.qcow2" "$T/map.qcow2"
	$TO nbdcopy "$(uri map)" "$T/map.raw"
	check "nbdcopy (structured reads, zeroes skipped) copies the disk" \
		$TO qemu-img compare -q "$T/map.raw" "$T/map.qcow2"
	stop
else
	fail "serve --ro qcow2: starts"
fi

# --- only loopback addresses without --insecure-listen ------------------------
$TO "$DISKCTL" serve --port 0 --bind 0.0.0.0 mem:1M 2>"$T/err"
check "--bind 0.0.0.0 refused (exit 1)" [ $? -eq 1 ]
check "... pointing at the nbdkit plugin for TLS" sh -c "grep -q 'not a loopback address' '$T/err' &&
	grep -q 'nbdkit --tls=require diskcore' '$T/err' && grep -q -- --insecure-listen '$T/err'"
ext=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v '^127\.\|^$\|:' | head -n 1)
if [ -n "$ext" ]; then
	$TO "$DISKCTL" serve --port 0 --bind "$ext" mem:1M 2>"$T/err"
	check "--bind $ext (this host's address) refused" [ $? -eq 1 ]
fi
if start loop6 --port 0 --bind ::1 mem:1M; then
	ok "--bind ::1 (loopback) accepted"
	stop
else
	fail "--bind ::1 (loopback) accepted"
fi
if start insecure --port 0 --bind 0.0.0.0 --insecure-listen mem:1M; then
	port=$(sed -n 's/.*listening on 0\.0\.0\.0:\([0-9]*\).*/\1/p' "$T/insecure.log")
	$TO nbdinfo --size "nbd://127.0.0.1:$port" >"$T/out" 2>&1
	check "--insecure-listen: 0.0.0.0 serves" grep -qx 1048576 "$T/out"
	stop
else
	fail "--insecure-listen: 0.0.0.0 serves"
fi

# --- multi-conn only where a flush on one connection covers all ---------------
if start mcro --ro --unix "$T/mcro.sock" "file:$T/file.img"; then
	$TO nbdinfo "$(uri mcro)" >"$T/info" 2>&1
	check "multi-conn: read-only export offers it" has "can_multi_conn: true" "$T/info"
	stop
else
	fail "serve --ro file: starts"
fi
if start mcf --unix "$T/mcf.sock" "fault:flush=EIO@100%:mem:1M"; then
	$TO nbdinfo "$(uri mcf)" >"$T/info" 2>&1
	check "multi-conn: not offered by a chain whose flush fails" \
		has "can_multi_conn: false" "$T/info"
	stop
else
	fail "serve fault:flush=EIO starts"
fi

if start once --once --unix "$T/once.sock" mem:1M; then
	$TO nbdinfo "$(uri once)" >/dev/null 2>&1
	rc=$?
	check "--once: served" [ $rc -eq 0 ]
	[ $rc -eq 0 ] || kill "$SRV" # do not wait for a connection that never came
	reap
	check "--once: exits 0 after the connection" [ $? -eq 0 ]
	PIDS=$(echo "$PIDS" | sed "s/ $SRV\$//")
	check "--once: socket removed" [ ! -e "$T/once.sock" ]
else
	fail "serve --once starts"
fi

tap_done
