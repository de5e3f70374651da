#!/bin/sh
# SPDX-License-Identifier: MIT
# nbdkit's diskcore plugin (docs/serve.md, "nbdkit plugin") with real clients:
# nbdinfo, nbdcopy, qemu-img and diskctl's nbd: backend, in plain text, with TLS
# (X.509 certificates from certtool, PSK from psktool) and under socket
# activation (systemd-socket-activate, else a small launcher). Every server is
# an nbdkit in the foreground on a unix socket in a temporary directory.
# tests/test-nbdkit-plugin.c runs the conformance suite through the plugin.
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.
set -u

. "$(dirname "$0")/tap-lib.sh"
PLUGIN="$DISKCORE_BUILD_ROOT/tools/nbdkit-plugin/nbdkit-diskcore-plugin.so"
[ -f "$PLUGIN" ] || skip "the nbdkit plugin was not built (nbdkit-plugin-dev missing)"
for t in nbdkit nbdinfo nbdcopy qemu-img certtool psktool timeout cmp; do
	command -v "$t" >/dev/null ||
		skip "$t is missing (apt-get install nbdkit libnbd-bin qemu-utils gnutls-bin)"
done

tap_tmpdir nbdkit-plugin
# Under a sanitizer build nbdkit, which is not instrumented, loads the
# instrumented plugin: its runtimes must come first, so they are preloaded into
# nbdkit (tests/oracle-lib.sh says why), with leak detection off there only.
# $NBDKIT is the command (words: env execs nbdkit, so $! is nbdkit's pid),
# $SA_ENV the same environment as systemd-socket-activate options.
NBDKIT=nbdkit
SA_ENV=""
if [ -n "${DISKCORE_SANITIZED:-}" ]; then
	pre=$(ldd "$PLUGIN" | awk '$1 ~ /^lib(asan|ubsan)\.so/ && $3 ~ /^\// { print $3 }' |
		paste -sd: -)
	noleak="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	NBDKIT="env LD_PRELOAD=$pre ASAN_OPTIONS=$noleak nbdkit"
	SA_ENV="-E LD_PRELOAD=$pre -E ASAN_OPTIONS=$noleak"
fi
# wait_for FILE: until FILE exists (a pidfile, a socket), at most 10 s
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		[ $i -ge 200 ] && { echo "# $1 did not appear" >&2; return 1; }
		sleep 0.05
		i=$((i + 1))
	done
}
# serve NAME [NBDKIT-OPTIONS...] -- SPEC [PARAMS...]: nbdkit -f with the plugin
# on $T/NAME.sock; returns once its pidfile exists (it listens then)
serve() {
	name=$1; shift
	opts=""
	while [ "$1" != "--" ]; do opts="$opts $1"; shift; done
	shift
	# shellcheck disable=SC2086 # opts and $NBDKIT are words
	$NBDKIT -f -U "$T/$name.sock" -P "$T/$name.pid" $opts "$PLUGIN" "$@" \
		2>"$T/$name.log" &
	PIDS="$PIDS $!"
	wait_for "$T/$name.pid" || { cat "$T/$name.log" >&2; return 1; }
}
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
TO="timeout 60"
head -c $((8 << 20)) /dev/urandom >"$T/rand"
head -c $((1 << 20)) /dev/urandom >"$T/r1"

# --- plain: what nbdinfo sees, nbdcopy and qemu-img both ways ---------------
truncate -s 64M "$T/base.img"
serve plain -- "memdiff:file:$T/base.img" || exit 1
$TO nbdinfo "$(uri plain)" >"$T/info" 2>&1
for want in 'export-size: 67108864' 'description: diskcore layered disk' \
	'can_multi_conn: true' 'can_fua: true' 'can_trim: true' 'can_zero: true' \
	'can_fast_zero: true' 'block_size_minimum: 512' 'is_read_only: false'; do
	check "nbdinfo: $want" grep -q "$want" "$T/info"
done
check "nbdcopy into the plugin" $TO nbdcopy "$T/rand" "$(uri plain)"
$TO nbdcopy "$(uri plain)" "$T/back"
check "nbdcopy reads it back" cmp -s -n $((8 << 20)) "$T/back" "$T/rand"
check "the rest reads as zero" cmp -s -i $((8 << 20)) -n $((56 << 20)) "$T/back" /dev/zero
"$DISKCTL" read "nbd:$(uri plain)" 4096 2048 --raw >"$T/part" 2>"$T/err"
check "diskctl through nbd: agrees" cmp -s -i $((4096 * 512)):0 -n $((1 << 20)) "$T/rand" "$T/part"
check "the memdiff layer kept the base file zero" cmp -s -n $((64 << 20)) "$T/base.img" /dev/zero
$TO qemu-img convert -f raw -O qcow2 "$(uri plain)" "$T/q.qcow2"
check "qemu-img convert from the plugin" $TO qemu-img compare -q "$T/q.qcow2" "$(uri plain)"
# A mostly-zero image written with -n: qemu-img zeroes (write-zeroes, trim) and writes
truncate -s 64M "$T/sparse.raw"
dd if="$T/rand" of="$T/sparse.raw" bs=1M count=1 seek=40 conv=notrunc status=none
check "qemu-img convert -n into the plugin" \
	$TO qemu-img convert -n -f raw -O raw "$T/sparse.raw" "$(uri plain)"
check "qemu-img compare after zeroing" $TO qemu-img compare -q -f raw -F raw \
	"$T/sparse.raw" "$(uri plain)"

# --- base:allocation: nbdinfo --map agrees with diskctl map -------------------
# extents JSON...: "offset length flags" lines (1 hole, 2 zero), adjacent ones
# of one kind merged, from nbdinfo --map --json or diskctl map --json
extents() {
	/usr/bin/python3 -c '
import json, sys
d, out = json.load(open(sys.argv[1])), []
for e in d:
    k = e["type"] if "type" in e else e["hole"] * 1 + e["zero"] * 2
    o = e.get("offset", e.get("start"))
    if out and out[-1][2] == k and out[-1][0] + out[-1][1] == o:
        out[-1][1] += e["length"]
    else:
        out.append([o, e["length"], k])
for o, n, k in out:
    print(o, n, k)' "$1"
}
qemu-img create -q -f qcow2 "$T/m.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 1 4M 1M' -c 'write -z 8M 1M' -c 'write -P 2 12M 64k' \
	"$T/m.qcow2" >/dev/null
serve map -r -- "qcow2:$T/m.qcow2" readonly=true || exit 1
$TO nbdinfo --map --json "$(uri map)" >"$T/map.nbd.json" 2>&1
"$DISKCTL" map --json "qcow2:$T/m.qcow2" >"$T/map.dc.json" 2>&1
extents "$T/map.nbd.json" >"$T/map.nbd"
extents "$T/map.dc.json" >"$T/map.dc"
check "nbdinfo --map: data, zero and hole extents" \
	sh -c "grep -qx '4194304 1048576 0' '$T/map.nbd' && grep -qx '8388608 1048576 2' '$T/map.nbd' &&
	grep -qx '0 4194304 3' '$T/map.nbd'"
check "nbdinfo --map agrees with diskctl map" cmp -s "$T/map.nbd" "$T/map.dc"
$TO qemu-img convert -f raw -O qcow2 "$(uri map)" "$T/map.copy.qcow2"
qemu-img map --output=json "$T/map.copy.qcow2" >"$T/map.copy.json"
check "qemu-img's copy through the plugin is sparse (only 1 MiB + 64 KiB of data)" \
	/usr/bin/python3 -c 'import json, sys
n = sum(e["length"] for e in json.load(open(sys.argv[1])) if e["data"])
sys.exit(n != 1048576 + 65536)' "$T/map.copy.json"
check "  and the same disk" $TO qemu-img compare -q "$T/map.copy.qcow2" "$T/m.qcow2"
serve mapmem -- "memdiff:file:$T/base.img" || exit 1
$TO nbdcopy "$T/r1" "$(uri mapmem)" 2>/dev/null
$TO nbdinfo --map --json "$(uri mapmem)" >"$T/mapmem.json" 2>&1
extents "$T/mapmem.json" >"$T/mapmem"
check "memdiff over a sparse file: the written MiB is data, the rest the file's hole" \
	sh -c "grep -qx '0 1048576 0' '$T/mapmem' && grep -qx '1048576 $((63 << 20)) 3' '$T/mapmem'"

# --- daemon mode (fork, pidfile) over a chain whose element starts a thread ----
# The chain opens after nbdkit forked (.after_fork): nbd:'s reaper thread would
# not survive the fork otherwise. The daemon serves nbd: -> the first server,
# and is stopped here, before that server.
if [ -f "$DISKCORE_BUILD_ROOT/plugins/nbd/nbd.so" ]; then
	# shellcheck disable=SC2086
	$TO $NBDKIT -U "$T/daemon.sock" -P "$T/daemon.pid" "$PLUGIN" \
		"memdiff:nbd:$(uri plain)" 2>"$T/daemon.log" >/dev/null
	check "daemon mode: nbdkit forks and exits 0" [ $? -eq 0 ]
	if wait_for "$T/daemon.pid"; then
		dpid=$(cat "$T/daemon.pid")
		PIDS="$PIDS $dpid"
		$TO nbdcopy "$(uri daemon)" "$T/daemon.back"
		check "daemon mode: memdiff:nbd: reads the first server's data" \
			cmp -s "$T/daemon.back" "$T/sparse.raw"
		kill "$dpid"
		i=0
		while kill -0 "$dpid" 2>/dev/null && [ $i -lt 200 ]; do
			sleep 0.05
			i=$((i + 1))
		done
		check "daemon mode: SIGTERM stops it" sh -c "! kill -0 $dpid 2>/dev/null"
		kill -9 "$dpid" 2>/dev/null
	else
		fail "daemon mode: the pidfile appears"
	fi
fi

# --- a read-only server (nbdkit -r) ------------------------------------------
cp "$T/rand" "$T/ro.img"
serve ro -r -- "file:$T/ro.img" readonly=true || exit 1
$TO nbdinfo "$(uri ro)" >"$T/ro.info" 2>&1
check "nbdkit -r: read-only export" grep -q 'is_read_only: true' "$T/ro.info"
if $TO nbdcopy "$T/rand" "$(uri ro)" 2>"$T/ro.err"; then
	fail "nbdkit -r: a write is refused"
else
	check "nbdkit -r: a write is refused" grep -qi "read-only\|permitted\|EPERM" "$T/ro.err"
fi
$TO nbdcopy "$(uri ro)" "$T/ro.back"
check "nbdkit -r: reads" cmp -s "$T/ro.back" "$T/rand"

# --- the spec parameter: spec=, a spec with '=' and ';', a bad spec -----------
serve named -- "spec=file:$T/new1.img;create=4M" || exit 1
check "spec=SPEC with ;create=4M" sh -c "nbdinfo --size '$(uri named)' | grep -qx $((4 << 20))"
serve magic -- "file:$T/new2.img;create=2M" || exit 1
check "bare SPEC containing '='" sh -c "nbdinfo --size '$(uri magic)' | grep -qx $((2 << 20))"
# shellcheck disable=SC2086
$TO $NBDKIT -f -U "$T/bad.sock" "$PLUGIN" "memdiff:nosuch:x" 2>"$T/bad.log"
rc=$?
check "bad spec: nbdkit exits 1 ($rc) with the chain's message" \
	sh -c "[ $rc -eq 1 ] && grep -q \"invalid disk kind 'nosuch'\" '$T/bad.log'"

# --- TLS with X.509 certificates ---------------------------------------------
P="$T/pki"
mkdir "$P"
certtool --generate-privkey --key-type=ecdsa --outfile "$P/ca-key.pem" 2>/dev/null
printf 'cn = diskcore test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$P/ca.info"
certtool --generate-self-signed --load-privkey "$P/ca-key.pem" --template "$P/ca.info" \
	--outfile "$P/ca-cert.pem" 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile "$P/server-key.pem" 2>/dev/null
printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' \
	>"$P/server.info"
certtool --generate-certificate --load-ca-certificate "$P/ca-cert.pem" \
	--load-ca-privkey "$P/ca-key.pem" --load-privkey "$P/server-key.pem" \
	--template "$P/server.info" --outfile "$P/server-cert.pem" 2>/dev/null
check "certtool made a CA and a server certificate" test -s "$P/server-cert.pem"
head -c $((8 << 20)) /dev/zero >"$T/tls.img"
serve x509 --tls=require --tls-certificates="$P" -- "file:$T/tls.img" || exit 1
TLSURI="nbds+unix:///?socket=$T/x509.sock&tls-certificates=$P"
if $TO nbdinfo "$(uri x509)" >/dev/null 2>"$T/x509.plain"; then
	fail "--tls=require: a plain client is refused"
else
	ok "--tls=require: a plain client is refused"
fi
$TO nbdinfo "$TLSURI" >"$T/x509.info" 2>&1
check "nbdinfo over TLS (certificates)" grep -q 'with TLS' "$T/x509.info"
check "nbdcopy into the plugin over TLS" $TO nbdcopy "$T/rand" "$TLSURI"
$TO nbdcopy "$TLSURI" "$T/x509.back"
check "nbdcopy back over TLS" cmp -s "$T/x509.back" "$T/rand"
check "the file behind the plugin holds the data" cmp -s "$T/tls.img" "$T/rand"
QTLS="--object tls-creds-x509,id=tls0,dir=$P,endpoint=client"
QOPTS="driver=nbd,server.type=unix,server.path=$T/x509.sock,tls-creds=tls0,tls-hostname=localhost"
# shellcheck disable=SC2086 # QTLS is words
$TO qemu-img convert $QTLS --image-opts "$QOPTS" -O raw "$T/x509.qemu" 2>"$T/x509.qerr"
check "qemu-img convert over TLS (certificates)" cmp -s "$T/x509.qemu" "$T/rand"
truncate -s 8M "$T/sparse8.raw"
dd if="$T/rand" of="$T/sparse8.raw" bs=1M count=1 seek=3 conv=notrunc status=none
# shellcheck disable=SC2086
check "qemu-img convert -n into the plugin over TLS" $TO qemu-img convert -n $QTLS \
	-f raw "$T/sparse8.raw" --target-image-opts "$QOPTS" 2>>"$T/x509.qerr"
check "  the file behind it is the image" cmp -s "$T/tls.img" "$T/sparse8.raw"

# --- TLS with a pre-shared key -------------------------------------------------
psktool -u alice -p "$T/keys.psk" >/dev/null 2>&1
check "psktool made a key" grep -q '^alice:' "$T/keys.psk"
serve psk --tls=require --tls-psk="$T/keys.psk" -- "memdiff:file:$T/ro.img" || exit 1
PSKURI="nbds+unix://alice@/?socket=$T/psk.sock&tls-psk-file=$T/keys.psk"
$TO nbdinfo "$PSKURI" >"$T/psk.info" 2>&1
check "nbdinfo over TLS (PSK)" grep -q 'with TLS' "$T/psk.info"
printf 'alice:%s\n' 00112233445566778899aabbccddeeff >"$T/wrong.psk"
if $TO nbdinfo "nbds+unix://alice@/?socket=$T/psk.sock&tls-psk-file=$T/wrong.psk" \
	>/dev/null 2>&1; then
	fail "PSK: a wrong key is refused"
else
	ok "PSK: a wrong key is refused"
fi
check "nbdcopy into the plugin over TLS (PSK)" $TO nbdcopy "$T/r1" "$PSKURI"
$TO nbdcopy "$PSKURI" "$T/psk.back"
check "nbdcopy back over TLS (PSK)" sh -c "cmp -s -n 1048576 '$T/psk.back' '$T/r1' &&
	cmp -s -i 1048576 '$T/psk.back' '$T/rand'"
mkdir "$T/pskdir" && cp "$T/keys.psk" "$T/pskdir/keys.psk"
$TO qemu-img convert --object "tls-creds-psk,id=tls0,dir=$T/pskdir,username=alice,endpoint=client" \
	--image-opts "driver=nbd,server.type=unix,server.path=$T/psk.sock,tls-creds=tls0" \
	-O raw "$T/psk.qemu" 2>"$T/psk.qerr"
check "qemu-img convert over TLS (PSK)" cmp -s "$T/psk.qemu" "$T/psk.back"

# --- socket activation: the listening socket is handed to nbdkit ---------------
SA="$T/sa.sock"
if command -v systemd-socket-activate >/dev/null; then
	how=systemd-socket-activate
	# shellcheck disable=SC2086 # the -E options are words
	systemd-socket-activate -l "$SA" -E DISKCORE_PLUGIN_PATH $SA_ENV \
		nbdkit -f "$PLUGIN" "memdiff:file:$T/ro.img" 2>"$T/sa.log" &
else
	# The protocol of sd_listen_fds(3): fd 3, LISTEN_FDS=1, LISTEN_PID = us.
	how=launcher
	python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(16)
os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execvp(sys.argv[2], sys.argv[2:])' "$SA" $NBDKIT -f "$PLUGIN" \
		"memdiff:file:$T/ro.img" 2>"$T/sa.log" &
fi
PIDS="$PIDS $!"
wait_for "$SA"
$TO nbdinfo "nbd+unix:///?socket=$SA" >"$T/sa.info" 2>&1
check "socket activation ($how): nbdinfo" grep -q 'description: diskcore layered disk' "$T/sa.info"
check "socket activation: nbdcopy into it" $TO nbdcopy "$T/r1" "nbd+unix:///?socket=$SA"
$TO nbdcopy "nbd+unix:///?socket=$SA" "$T/sa.back"
check "socket activation: the same server kept the write" cmp -s -n 1048576 "$T/sa.back" "$T/r1"

tap_done
