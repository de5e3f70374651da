#!/bin/sh
# SPDX-License-Identifier: MIT
# The nbd: backend against real NBD servers on unix sockets in a temporary
# directory -- nbdkit (memory, read-only, TLS required, killed mid-copy),
# qemu-nbd (qcow2) and diskctl serve -- with nbdcopy and qemu-io as the
# independent side (docs/spec-strings.md, "nbd"). tests/test-nbd.c runs the
# shared conformance suite through nbd:.
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.
set -u

. "$(dirname "$0")/tap-lib.sh"
[ -f "$DISKCORE_BUILD_ROOT/plugins/nbd/nbd.so" ] || skip "the nbd plugin was not built (libnbd-dev missing)"
for t in nbdkit nbdcopy timeout cmp; do
	command -v "$t" >/dev/null || skip "$t is missing (apt-get install nbdkit libnbd-bin)"
done

tap_tmpdir nbd
# all FILE PATTERN...: every pattern matches a line of FILE
all() { f=$1; shift; for p; do grep -q -- "$p" "$f" || return 1; done; }
dc() { timeout 60 "$DISKCTL" "$@"; }

# wait_for FILE: until FILE exists (a pidfile, a socket), at most 10 s
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		[ $i -ge 200 ] && { echo "# $1 did not appear" >&2; return 1; }
		sleep 0.05
		i=$((i + 1))
	done
}
# nbdkit_start NAME ARGS...: nbdkit on $T/NAME.sock, its pid in $T/NAME.pid
nbdkit_start() {
	name=$1; shift
	nbdkit -U "$T/$name.sock" -P "$T/$name.pid" "$@" 2>"$T/$name.log" || return 1
	wait_for "$T/$name.pid" || return 1
	PIDS="$PIDS $(cat "$T/$name.pid")"
}
uri() { echo "nbd+unix:///${2:-}?socket=$T/$1.sock"; }
# kill_when NAME PATTERN: SIGKILL nbdkit NAME once its log filter's trace
# ($T/NAME.trace) shows PATTERN (at most 10 s)
kill_when() {
	i=0
	while ! grep -q "$2" "$T/$1.trace" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -9 "$(cat "$T/$1.pid")"
}

# --- nbdkit memory: both directions against nbdcopy -------------------------
nbdkit_start mem memory 64M || { echo "nbdkit did not start" >&2; exit 1; }
M="nbd:$(uri mem)"
dc info --rw "$M" >"$T/info" 2>&1 || dc info "$M" >"$T/info" 2>&1
check "info: 64 MiB, FUA respected, unmap unspecified" \
	all "$T/info" '67108864 bytes' 'FUA respected: *yes' 'unmap: *unspecified'
check "info: multi-conn offered" grep -q 'multi-conn' "$T/info"
check "diskctl write through nbd: (FUA)" dc write "$M" 2048 --pattern 0xa5 --count 64 --fua
head -c $((64 * 512)) /dev/zero | tr '\0' '\245' >"$T/a5"
nbdcopy "$(uri mem)" "$T/mem.raw" 2>"$T/nbdcopy.err"
check "nbdcopy reads what diskctl wrote" \
	cmp -s -i $((2048 * 512)):0 -n $((64 * 512)) "$T/mem.raw" "$T/a5"
head -c $((1 << 20)) /dev/urandom >"$T/rand"
nbdkit_start src file "$T/rand" || exit 1
nbdcopy "$(uri src)" "$(uri mem)" 2>>"$T/nbdcopy.err"
dc read "$M" 0 2048 --raw >"$T/back" 2>"$T/read.err"
check "diskctl reads what nbdcopy wrote" cmp -s "$T/back" "$T/rand"
dc cp -q "nbd:$(uri src)" "file:$T/copy.raw;create=1M" 2>"$T/cp.err"
check "diskctl cp nbd: -> file:" cmp -s "$T/copy.raw" "$T/rand"
check "diskctl compare nbd: file:" dc compare -q "nbd:$(uri src)" "file:$T/copy.raw"
check "unaligned to max block size: 40 MiB read splits" \
	sh -c "'$DISKCTL' read '$M' 0 81920 --raw | cmp -s -n 1048576 - '$T/rand'"
check "bench --threads 2 --qd 16 --time 1 randwrite" \
	dc bench --rw randwrite --threads 2 --qd 16 --time 1 "$M"
check "bench randread" dc bench --threads 2 --qd 16 --time 1 --ro "$M"

# --- FUA and flush reach the server (nbdkit's log filter) -----------------------
nbdkit_start log --filter=log memory 1M logfile="$T/log.trace" || exit 1
dc write "nbd:$(uri log)" 0 --pattern 1 --count 8 --fua >/dev/null
check "FUA write sent with NBD_CMD_FLAG_FUA" grep -q "Write .*count=0x1000 fua=1" "$T/log.trace"
check "flush sent as NBD_CMD_FLUSH" grep -q "Flush id=" "$T/log.trace"

# --- block-size constraints (nbdkit's blocksize-policy filter) -------------------
head -c $((1 << 20)) /dev/zero >"$T/bs.img"
nbdkit_start bs4k --filter=blocksize-policy file "$T/bs.img" blocksize-minimum=4096 \
	blocksize-preferred=4096 blocksize-maximum=65536 || exit 1
dc info "nbd:$(uri bs4k)" >"$T/bs.info" 2>&1
check "minimum block size 4096: 4096-byte sectors" has 'sectors: *256 x 4096 bytes' "$T/bs.info"
dc write "nbd:$(uri bs4k)" 1 --pattern 7 --count 32 >/dev/null
{ head -c 4096 /dev/zero; head -c $((32 * 4096)) /dev/zero | tr '\0' '\7'; } >"$T/bs.want"
nbdcopy "$(uri bs4k)" "$T/bs.got"
check "128 KiB write split at the 64 KiB maximum, read back by nbdcopy" \
	cmp -s -n $((33 * 4096)) "$T/bs.got" "$T/bs.want"
nbdkit_start bs8k --filter=blocksize-policy file "$T/bs.img" blocksize-minimum=8192 \
	blocksize-preferred=8192 blocksize-maximum=65536 || exit 1
dc info "nbd:$(uri bs8k)" >/dev/null 2>"$T/bs8k.err" && fail "minimum 8192 refused" ||
	check "minimum block size 8192 refused clearly" has "minimum block size 8192 is larger than 4096" "$T/bs8k.err"

# --- a read-only export -----------------------------------------------------
nbdkit_start ro --readonly memory 1M || exit 1
dc info "nbd:$(uri ro)" >"$T/ro.info" 2>&1
check "read-only export shows read-only" has 'read-only: *yes' "$T/ro.info"
if dc write "nbd:$(uri ro)" 0 --pattern 1 --count 1 2>"$T/ro.err"; then
	fail "write to a read-only export fails"
else
	check "write to a read-only export fails read-only" grep -qi "read-only" "$T/ro.err"
fi

# --- open errors name the URI, password redacted -------------------------------
dc info "nbd:nbd+unix:///?socket=$T/none.sock" >/dev/null 2>"$T/e1" && fail "unreachable server" ||
	check "unreachable server: error names the URI and the cause" \
		grep -q "cannot connect to nbd+unix:///.*No such file" "$T/e1"
dc info "nbd:nbd://bob:hunter2@127.0.0.1:1/x" >/dev/null 2>"$T/e2" && fail "redaction" ||
	check "password redacted in the error" sh -c "grep -q 'bob:\*\*\*@' $T/e2 && ! grep -q hunter2 $T/e2"
printf 'alice:%s\n' 0123456789abcdef0123456789abcdef >"$T/psk"
nbdkit_start tls --tls=require --tls-psk="$T/psk" memory 1M || exit 1
dc info "nbd:$(uri tls)" >/dev/null 2>"$T/e3" && fail "TLS-only server refuses plain" ||
	check "TLS-only server: clear refusal" grep -qi "nbd+unix:///.*tls" "$T/e3"
dc info "nbd:nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/psk" \
	>"$T/tls.info" 2>"$T/e4"
check "nbds+unix with PSK" has 'tls: yes' "$T/tls.info"

# --- qemu-nbd on a qcow2 image, qemu-io as the other side ---------------------
if command -v qemu-nbd >/dev/null && command -v qemu-img >/dev/null; then
	qemu-img create -q -f qcow2 "$T/q.qcow2" 16M
	qemu-nbd -k "$T/q.sock" -x img -f qcow2 --pid-file="$T/q.pid" -t "$T/q.qcow2" \
		2>"$T/q.log" &
	wait_for "$T/q.pid" && PIDS="$PIDS $(cat "$T/q.pid")" && wait_for "$T/q.sock"
	Q="nbd:$(uri q img)"
	check "qemu-nbd: diskctl write" dc write "$Q" 8 --pattern 0x3c --count 8
	check "qemu-nbd: qemu-io reads it" sh -c "qemu-io -f raw -c 'read -P 0x3c 4096 4096' \
		'$(uri q img)' | grep -q 'read 4096/4096'"
	qemu-io -f raw -c 'write -P 0x5a 65536 65536' "$(uri q img)" >/dev/null
	head -c 65536 /dev/zero | tr '\0' '\132' >"$T/5a"
	check "qemu-nbd: diskctl reads what qemu-io wrote" sh -c "'$DISKCTL' read '$Q' 128 128 --raw |
		cmp -s - '$T/5a'"
	dc info "nbd:$(uri q nope)" >/dev/null 2>"$T/e5" && fail "missing export" ||
		check "missing export: error names the URI" has "nope" "$T/e5"
else
	echo "# qemu-nbd missing: its checks are left out"
fi

# --- diskctl serve as the server --------------------------------------------
"$DISKCTL" serve --unix "$T/d.sock" mem:16M 2>"$T/d.log" &
PIDS="$PIDS $!"
wait_for "$T/d.sock"
D="nbd:$(uri d)"
check "serve: diskctl write" dc write "$D" 0 --pattern 0xa5 --count 64
nbdcopy "$(uri d)" "$T/d.raw"
check "serve: nbdcopy reads it" cmp -s -n $((64 * 512)) "$T/d.raw" "$T/a5"
check "serve: flush via cp" dc cp -q "nbd:$(uri src)" "$D"

# --- the server killed mid-copy: errors, no hang (one connection, so the
# reads in flight are on the connection that dies; a pattern, not an empty
# memory disk, which cp would map as holes and not read) ---------------------
nbdkit_start slow --filter=log --filter=delay pattern 64M rdelay=500ms \
	logfile="$T/slow.trace" || exit 1
timeout 30 "$DISKCTL" cp -q "nbd:$(uri slow);connections=1" "mem:64M" 2>"$T/kill.err" &
CP=$!
kill_when slow "connection=1 Read"
wait "$CP"
rc=$?
check "killed server: cp fails ($rc), no hang" sh -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
cat "$T/kill.err"
check "killed server: the error says why" grep -qiE "ENOTCONN|ECONNRESET|not connected|connection reset|Input/output" "$T/kill.err"

# --- killed under a multi-queue bench: each queue's own connection, driven by
# queue_poll() on the bench threads ---------------------------------------------
nbdkit_start slow2 --filter=log --filter=delay memory 64M rdelay=200ms \
	logfile="$T/slow2.trace" || exit 1
timeout 30 "$DISKCTL" bench --rw read --bs 64K --qd 4 --threads 2 --time 10 \
	"nbd:$(uri slow2)" >"$T/bench.out" 2>&1 &
B=$!
kill_when slow2 "connection=3 Read"
wait "$B"
rc=$?
check "killed server under bench: fails ($rc), no hang" sh -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "killed server under bench: ENOTCONN" grep -q "ENOTCONN" "$T/bench.out"

# --- a server that accepts and never answers: the open fails in time ------------
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
conns = [s.accept()[0] for _ in range(2)]
time.sleep(30)
' "$T/silent.sock" &
PIDS="$PIDS $!"
wait_for "$T/silent.sock"
start=$(date +%s)
dc info "nbd:nbd+unix:///?socket=$T/silent.sock;timeout=2" >/dev/null 2>"$T/silent.err"
rc=$?
took=$(($(date +%s) - start))
check "silent server: the open fails ($rc), not a hang (${took}s)" \
	sh -c "[ $rc -eq 1 ] && [ $took -le 10 ]"
check "silent server: the error says no handshake came" has "no NBD handshake within 2 s" "$T/silent.err"

tap_done
