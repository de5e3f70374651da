#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl serve under abuse, and its unix socket's ownership:
#  - a flood of abandoned connections (unix socket, bounded count and time) while
#    a real client (qemu-io) keeps writing and reading: the server's threads and
#    RSS (from /proc/PID/status) stay bounded, connections over --max-connections
#    are closed at once, --handshake-timeout closes the abandoned ones, then
#    nbdcopy works while the flood's sockets are still open;
#  - one client pipelining large reads without reading the replies: the
#    server's RSS stays within the per-connection buffer budget;
#  - oversized requests get EINVAL; a huge write payload ends the connection;
#  - a second server on a live socket exits 1 and the first keeps serving; a
#    stale socket is replaced; at exit a server removes only its own socket.
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.
set -u

. "$(dirname "$0")/tap-lib.sh"
for t in nbdinfo nbdcopy qemu-io stdbuf timeout cmp stat; do
	command -v "$t" >/dev/null || skip "$t is missing (apt-get install libnbd-bin qemu-utils)"
done
[ -r /proc/self/status ] || skip "no /proc"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || skip "python3 is needed for the clients"

tap_tmpdir serve-limits
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
TO="timeout 60"

# start NAME ARGS...: diskctl serve ARGS in the background (pid in SRV, log in
# $T/NAME.log); waits for its "listening on" line.
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
# stop PID: SIGTERM it, wait at most 20 s (then SIGKILL); its exit status
stop() {
	kill -TERM "$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 400 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1"
	rc=$?
	PIDS=$(echo " $PIDS " | sed "s/ $1 / /")
	return $rc
}

cat >"$T/abuse.py" <<'PYEOF'
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
READ, WRITE = 0, 1
EINVAL = 22
MiB = 1 << 20

fails = 0


def check(name, cond, detail=""):
    global fails
    print(("ok" if cond else "not ok") + " - " + name +
          (" (%s)" % detail if detail else ""), flush=True)
    if not cond:
        fails += 1


def rss_check(name, cond, detail):
    """Under ASan freed memory sits in quarantine: RSS says nothing there."""
    if os.environ.get("DISKCORE_SANITIZED"):
        print("ok - %s # SKIP sanitized build (%s)" % (name, detail), flush=True)
    else:
        check(name, cond, detail)


def status(pid):
    """Threads and VmRSS (KiB) of a process."""
    v = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in ("Threads", "VmRSS"):
                v[k] = int(rest.split()[0])
    return v["Threads"], v["VmRSS"]


class Sampler(threading.Thread):
    """Highest thread count and RSS of pid while running."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.threads, self.rss = pid, 0, 0
        self.stop = threading.Event()
        self.sample()

    def sample(self):
        t, r = status(self.pid)
        self.threads, self.rss = max(self.threads, t), max(self.rss, r)

    def run(self):
        while not self.stop.wait(0.005):
            self.sample()

    def finish(self):
        self.stop.set()
        self.join()
        self.sample()


def wait_for(cond, secs):
    """Poll cond until it holds or secs passed; its last value."""
    end = time.monotonic() + secs
    while True:
        v = cond()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.02)


class QemuIo:
    """One long-lived qemu-io connection driven line by line."""

    def __init__(self, uri):
        self.p = subprocess.Popen(["stdbuf", "-oL", "qemu-io", "-f", "raw", uri],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.buf = b""

    def line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise TimeoutError("qemu-io did not answer")
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                raise EOFError("qemu-io exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def cmd(self, c):
        """True when a read or write command succeeded (patterns verified)."""
        self.p.stdin.write((c + "\n").encode())
        self.p.stdin.flush()
        deadline = time.monotonic() + 30
        seen = []
        while True:
            seen.append(self.line(deadline))
            if "bytes at offset" in seen[-1]:
                seen.append(self.line(deadline))  # the timing line
                break
        text = "\n".join(seen)
        return "fail" not in text.lower() and "error" not in text.lower()

    def close(self):
        self.p.stdin.close()
        return self.p.wait(timeout=30)


def is_closed(s):
    """True when the server closed s (its greeting, if any, drained)."""
    try:
        while True:
            if not s.recv(4096):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def connect(path, deadline):
    """A connected non-blocking socket; retried while the backlog is full."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise TimeoutError("the server stopped accepting")
            time.sleep(0.001)


def flood(path, n, held, done):
    """n abandoned connections, in four flavours of unfinished handshake."""
    deadline = time.monotonic() + 20
    try:
        for i in range(n):
            s = connect(path, deadline)
            held.append(s)
            kind = i % 4
            try:
                if kind >= 1:
                    s.send(struct.pack(">I", 3))  # client flags, then nothing
                if kind == 2:
                    s.send(struct.pack(">Q", IHAVEOPT)[:5])  # half an option header
                if kind == 3:  # GO announcing 1000 bytes of data, sending 10
                    s.send(struct.pack(">QII", IHAVEOPT, 7, 1000) + b"\0" * 10)
            except OSError:
                pass  # closed by the server already: just as good
    finally:
        done.set()


def flood_checks(path, pid, maxconn, timeout, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 200)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    n = min(n, want - 200)
    uri = "nbd+unix:///?socket=" + path

    q = QemuIo(uri)
    check("qemu-io: first write", q.cmd("write -P 0x11 0 1M"))
    base_threads, base_rss = status(pid)
    sampler = Sampler(pid)
    sampler.start()

    held, done = [], threading.Event()
    t0 = time.monotonic()
    th = threading.Thread(target=flood, args=(path, n, held, done), daemon=True)
    th.start()
    # The real client keeps working while the flood goes on.
    rounds, good = 0, 0
    while not done.is_set() or rounds < 3:
        off = (rounds % 60) * 64 * 1024 + MiB
        pat = rounds % 250 + 1
        good += q.cmd("write -P %d %d 64k" % (pat, off))
        good += q.cmd("read -P %d %d 64k" % (pat, off))
        rounds += 1
    th.join()
    took = time.monotonic() - t0
    check("the flood connected", len(held) == n, "%d of %d" % (len(held), n))
    check("qemu-io wrote and read correctly during the flood",
          good == 2 * rounds, "%d of %d commands, %d connections in %.1f s"
          % (good, 2 * rounds, n, took))

    # Over the limit: closed as they came (the others wait for the timeout).
    over = n - (maxconn - 1)
    closed = wait_for(lambda: sum(map(is_closed, held)) >= over, 2)
    check("connections over the limit were closed at once", closed,
          "%d of %d closed" % (sum(map(is_closed, held)), n))
    sampler.finish()
    check("thread count stayed bounded", sampler.threads <= base_threads + maxconn + 2,
          "base %d, max %d, limit %d" % (base_threads, sampler.threads, maxconn))
    rss_check("RSS stayed bounded", sampler.rss <= base_rss + 16 * 1024,
              "base %d KiB, max %d KiB" % (base_rss, sampler.rss))

    # The abandoned handshakes end at the timeout, the qemu-io one does not.
    allgone = wait_for(lambda: all(map(is_closed, held)), timeout + 5)
    check("the handshake timeout closed every abandoned connection", allgone,
          "%d of %d closed" % (sum(map(is_closed, held)), n))
    check("qemu-io still works after the handshake timeout",
          q.cmd("read -P 0x11 0 1M") and q.cmd("write -P 0x22 0 64k")
          and q.cmd("read -P 0x22 0 64k"))
    # The clients saw the shutdown(); the threads end right after it.
    down = wait_for(lambda: status(pid)[0] <= base_threads, 5)
    check("the server's threads went back down", down,
          "base %d, now %d" % (base_threads, status(pid)[0]))

    # New clients get in while the flood's sockets are still held open.
    rnd = os.urandom(8 * MiB)
    with open(os.environ["T"] + "/rnd", "wb") as f:
        f.write(rnd)
    r = subprocess.run(["nbdcopy", os.environ["T"] + "/rnd", uri], timeout=60)
    r2 = subprocess.run(["nbdcopy", uri, os.environ["T"] + "/back"], timeout=60)
    with open(os.environ["T"] + "/back", "rb") as f:
        back = f.read(len(rnd))
    check("nbdcopy round trip with the flood's sockets still open",
          r.returncode == 0 and r2.returncode == 0 and back == rnd)
    check("qemu-io exits cleanly", q.close() == 0)
    for s in held:
        s.close()


def session(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    magic, opt, _ = struct.unpack(">QQH", recvall(s, 18))
    assert magic == 0x4E42444D41474943 and opt == IHAVEOPT
    s.sendall(struct.pack(">I", 3))
    s.sendall(struct.pack(">QII", IHAVEOPT, 7, 6) + struct.pack(">IH", 0, 0))
    while True:
        _, _, typ, ln = struct.unpack(">QIII", recvall(s, 20))
        recvall(s, ln)
        if typ == 1:
            return s
        assert typ == 3, "GO refused: 0x%x" % typ


def recvall(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return bytes(b)


def recv_into(s, buf):
    """Fill buf from s (one buffer for every large reply: no allocations)."""
    mv, pos = memoryview(buf), 0
    while pos < len(buf):
        k = s.recv_into(mv[pos:])
        if not k:
            raise EOFError
        pos += k


def req(s, cmd, off, length, handle):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, handle, off, length))


def reply(s):
    magic, err, handle = struct.unpack(">IIQ", recvall(s, 16))
    assert magic == 0x67446698
    return err, handle


def closed(s):
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def budget_checks(path, pid, budget_mib):
    s = session(path)
    req(s, READ, 0, 64 * MiB, 1)
    check("read over the maximum payload: EINVAL", reply(s) == (EINVAL, 1))
    req(s, WRITE, 0, 1 << 30, 2)  # header only: the 1 GiB never comes
    check("write of 1 GiB: EINVAL without reading the payload", reply(s) == (EINVAL, 2))
    check("... and the connection is closed", closed(s))

    # 24 reads of 32 MiB at once over a disk that answers late: the server
    # reads every request header at once and must wait for replies to go out
    # rather than allocate 768 MiB.
    s = session(path)
    base_threads, base_rss = status(pid)
    sampler = Sampler(pid)
    sampler.start()
    for h in range(24):
        req(s, READ, (h % 2) * 32 * MiB, 32 * MiB, 100 + h)
    got = set()
    buf, zeros = bytearray(32 * MiB), bytes(32 * MiB)
    for _ in range(24):
        err, h = reply(s)
        if not err:
            buf[0] = buf[-1] = 1  # so stale bytes cannot pass for a reply
            recv_into(s, buf)
            if buf == zeros:
                got.add(h)
    sampler.finish()
    check("24 pipelined 32 MiB reads answered", got == set(range(100, 124)))
    rss_check("RSS stayed within the connection's buffer budget",
              sampler.rss <= base_rss + (budget_mib + 16) * 1024,
              "base %d KiB, max %d KiB, budget %d MiB"
              % (base_rss, sampler.rss, budget_mib))
    s.close()


mode = sys.argv[1]
try:
    if mode == "flood":
        flood_checks(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                     float(sys.argv[5]), int(sys.argv[6]))
    else:
        budget_checks(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
except (OSError, EOFError, AssertionError, TimeoutError, struct.error,
        subprocess.SubprocessError) as e:
    check("client ran to the end (%s: %s)" % (type(e).__name__, e), False)
sys.exit(1 if fails else 0)
PYEOF
export T

# --- options ------------------------------------------------------------------
for bad in "--max-connections 0" "--max-connections x" "--max-connections 99999" \
	"--handshake-timeout -1" "--handshake-timeout 1s"; do
	# shellcheck disable=SC2086 # split on purpose
	"$DISKCTL" serve $bad --unix "$T/x.sock" mem:1M >/dev/null 2>"$T/err"
	check "serve $bad exits 2" [ $? -eq 2 ]
done
check "... naming the option" has "handshake-timeout" "$T/err"
"$DISKCTL" serve --help >"$T/out"
check "--help documents --max-connections" has "max-connections" "$T/out"
check "--help documents --handshake-timeout" has "handshake-timeout" "$T/out"

# --- a flood of abandoned connections ---------------------------------------
if start flood --unix "$T/flood.sock" --max-connections 8 --handshake-timeout 2 \
	mem:64M; then
	F=$SRV
	$TO "$PY" "$T/abuse.py" flood "$T/flood.sock" "$F" 8 2 2000
	check "flood: every client check passed" [ $? -eq 0 ]
	check "flood: the refusals were logged" has "refusing new ones" "$T/flood.log"
	check "flood: the handshake timeouts were logged" has "no handshake within" \
		"$T/flood.log"
	stop "$F"
	check "flood: the server exits 0" [ $? -eq 0 ]
else
	fail "serve --max-connections 8 starts"
fi

# --- per-connection memory, oversized requests --------------------------------
if start budget --unix "$T/budget.sock" delay:20:mem:64M; then
	B=$SRV
	$TO "$PY" "$T/abuse.py" budget "$T/budget.sock" "$B" 96
	check "budget: every client check passed" [ $? -eq 0 ]
	stop "$B"
else
	fail "serve (budget) starts"
fi

# --- memory with 1 and with 16 clients at once ---------------------------------
# The peak RSS (VmHWM) of a fresh server over a file while N nbdcopy clients
# read it at once: each connection stays within its buffer budget (96 MiB).
head -c 64M /dev/urandom >"$T/rss.img"
# peak N: "IDLE PEAK" in KiB
peak() {
	start "rss$1" --unix "$T/rss$1.sock" --max-connections 32 "file:$T/rss.img" || return 1
	idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$SRV/status")
	pids=""
	i=0
	while [ $i -lt "$1" ]; do
		$TO nbdcopy --connections=1 "$(uri "rss$1")" null: &
		pids="$pids $!"
		i=$((i + 1))
	done
	for p in $pids; do wait "$p" || echo "# nbdcopy $p failed" >&2; done
	hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$SRV/status")
	stop "$SRV"
	echo "$idle $hwm"
}
one=$(peak 1)
sixteen=$(peak 16)
echo "# idle and peak RSS (KiB): 1 client: $one; 16 clients: $sixteen"
up1=$(echo "$one" | awk '{ print $2 - $1 }')
up16=$(echo "$sixteen" | awk '{ print $2 - $1 }')
if [ -n "${DISKCORE_SANITIZED:-}" ]; then
	ok "16 clients: RSS within the budget # SKIP sanitized build"
else
	check "1 client: at most 96 MiB above idle ($up1 KiB)" [ "$up1" -le $((96 * 1024)) ]
	check "16 clients: at most 16 x 96 MiB above idle ($up16 KiB)" \
		[ "$up16" -le $((16 * 96 * 1024)) ]
	check "16 clients: each costs at most twice what one alone does" \
		[ $((up16 / 16)) -le $((2 * up1 + 4096)) ]
fi

# --- the socket path: live, stale, owned ------------------------------------
S="$T/live.sock"
if start live --unix "$S" mem:1M; then
	A=$SRV
	ino=$(stat -c %i "$S")
	timeout 20 "$DISKCTL" serve --unix "$S" mem:2M >/dev/null 2>"$T/second.log"
	check "a second server on a live socket exits 1" [ $? -eq 1 ]
	check "... saying the path is in use" has "is in use" "$T/second.log"
	check "... and the socket is the first server's still" \
		[ "$(stat -c %i "$S" 2>/dev/null)" = "$ino" ]
	$TO nbdinfo "$(uri live)" >"$T/info" 2>&1
	check "the first server still serves" has "export-size: 1048576" "$T/info"

	kill -KILL "$A"
	wait "$A" 2>/dev/null
	PIDS=$(echo " $PIDS " | sed "s/ $A / /")
	check "a killed server leaves a stale socket" [ -S "$S" ]
	if start stale --unix "$S" mem:2M; then
		B=$SRV
		check "a stale socket is replaced" has "removed stale socket" "$T/stale.log"
		$TO nbdinfo "$(uri live)" >"$T/info" 2>&1
		check "... and served on" has "export-size: 2097152" "$T/info"

		# Someone moves our socket away and another server takes the path:
		# stopping must not remove the newcomer's socket.
		mv "$S" "$T/moved.sock"
		if start third --unix "$S" mem:3M; then
			C=$SRV
			stop "$B"
			check "a server whose socket was replaced exits 0" [ $? -eq 0 ]
			check "... and says it left the path alone" has "no longer our socket" \
				"$T/stale.log"
			$TO nbdinfo "$(uri live)" >"$T/info" 2>&1
			check "... the newcomer still serves" has "export-size: 3145728" \
				"$T/info"
			stop "$C"
			check "the newcomer removes its own socket at exit" [ ! -e "$S" ]
		else
			fail "a server starts on the freed path"
			stop "$B"
		fi
	else
		fail "serve on a stale socket starts"
	fi
else
	fail "serve --unix starts"
fi
echo "not a socket" >"$T/plain"
timeout 20 "$DISKCTL" serve --unix "$T/plain" mem:1M >/dev/null 2>"$T/err"
check "a regular file at PATH is refused (exit 1)" [ $? -eq 1 ]
check "... and left intact" [ "$(cat "$T/plain")" = "not a socket" ]

tap_done
