#!/bin/bash
# SPDX-License-Identifier: MIT
# Online resize of a loop device through a chain, with the real tools: while
# 'delay:0:blockdev:/dev/loopN' is open, grow the backing file with truncate and
# tell the loop driver with 'losetup -c'; the kernel's change/RESIZE=1 uevent
# must reach dc_wait_resize() on the chain within a second. Then shrink it.
# The waiting side is libdiskcore driven from python3 ctypes (no extra binary).
set -eu

skip() {
	echo "SKIP: $*" >&2
	exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root for losetup"
for t in losetup truncate python3; do
	command -v "$t" >/dev/null 2>&1 || skip "$t not installed"
done
BUILD=${DISKCORE_BUILD_ROOT:?DISKCORE_BUILD_ROOT is not set}
LIB="$BUILD/core/libdiskcore.so"
[ -e "$LIB" ] || { echo "error: $LIB not found" >&2; exit 1; }
DISKCTL="$BUILD/tools/diskctl"

TMP=$(mktemp -d)
DEV=""
cleanup() {
	[ -n "$DEV" ] && losetup -d "$DEV" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

IMG="$TMP/disk.img"
truncate -s 1M "$IMG"
DEV=$(losetup -f --show "$IMG" 2>"$TMP/err") || skip "losetup: $(cat "$TMP/err")"

# The waiter: opens the chain, says "ready COUNT", then for each line "wait N"
# on stdin waits up to 1000 ms for the size to differ from N and answers
# "size COUNT MS" (or "timeout MS").
cat >"$TMP/waiter.py" <<'EOF'
import ctypes, sys, time
# Plugins resolve dc_* from the library: load it globally, as a linked program would.
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_last_error.restype = ctypes.c_char_p
lib.dc_sector_count.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.restype = ctypes.c_uint64
lib.dc_wait_resize.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                               ctypes.POINTER(ctypes.c_uint64)]
lib.dc_close.argtypes = [ctypes.c_void_p]
disk = ctypes.c_void_p()
rc = lib.dc_open(sys.argv[2].encode(), 0, ctypes.byref(disk))
if rc != 0:
    print("error", rc, lib.dc_last_error().decode(), flush=True)
    sys.exit(1)
print("ready", lib.dc_sector_count(disk), flush=True)
for line in sys.stdin:
    known = int(line.split()[1])
    t0 = time.monotonic()
    n = ctypes.c_uint64()
    rc = lib.dc_wait_resize(disk, known, 1000, ctypes.byref(n))
    ms = int((time.monotonic() - t0) * 1000)
    if rc == 0:
        print("size", n.value, ms, flush=True)
    else:
        print("timeout", ms, flush=True)
lib.dc_close(disk)
EOF

# A ThreadSanitizer build: its runtime cannot arrive by dlopen() (static TLS),
# so the real interpreter (not a pyenv shim) starts with it preloaded.
PY=python3
PRELOAD=${LD_PRELOAD:-}
if [ "${DISKCORE_SANITIZED:-}" = thread ]; then
	PY=$(python3 -c 'import sys; print(sys.executable)')
	PRELOAD=$(ldd "$LIB" | awk '$1 ~ /^libtsan\.so/ && $3 ~ /^\// { print $3; exit }')
fi
coproc WAITER { LD_PRELOAD="$PRELOAD" "$PY" "$TMP/waiter.py" "$LIB" "delay:0:blockdev:$DEV"; }
read -r -u "${WAITER[0]}" word count rest || { echo "FAIL: the waiter died" >&2; exit 1; }
[ "$word" = ready ] || { echo "FAIL: open: $word $count ${rest:-}" >&2; exit 1; }
[ "$count" = 2048 ] || { echo "FAIL: expected 2048 sectors, got $count" >&2; exit 1; }

# resize SIZE EXPECTED_SECTORS: change the backing file, tell the driver, and
# expect the chain to see it within a second of losetup returning.
resize() {
	truncate -s "$1" "$IMG"
	losetup -c "$DEV"
	echo "wait $count" >&"${WAITER[1]}"
	read -r -u "${WAITER[0]}" word n ms || { echo "FAIL: the waiter died" >&2; exit 1; }
	if [ "$word" != size ]; then
		echo "FAIL: $1: no resize seen through the chain within 1 s ($word $n)" >&2
		exit 1
	fi
	if [ "$n" != "$2" ]; then
		echo "FAIL: $1: chain reports $n sectors, expected $2" >&2
		exit 1
	fi
	echo "ok: $1 seen as $n sectors after $ms ms"
	count=$n
}

resize 3M 6144
resize 512K 1024
resize 64M 131072

# End of input: the waiter closes the disk and exits.
wfd=${WAITER[1]}
exec {wfd}>&-
wait "$WAITER_PID"

# A fresh open agrees.
if [ -x "$DISKCTL" ]; then
	"$DISKCTL" info "blockdev:$DEV" | grep -q '131072 x 512' ||
		{ echo "FAIL: diskctl info does not show 131072 sectors" >&2; exit 1; }
	# A bare device path opens through blockdev, as OpenVMM's raw paths do.
	"$DISKCTL" info "$DEV" | grep -q '^  blockdev \[blockdev\]' ||
		{ echo "FAIL: a bare $DEV did not open as blockdev" >&2; exit 1; }
fi
echo "PASS"
