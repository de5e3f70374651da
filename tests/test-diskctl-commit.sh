#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl commit (issue 15 item 3): the top layer of a differencing chain
# merged into the layer below. For a VHD and a VHDX child over a base qemu-img
# made and wrote, and for sqldiff: over sql:, written at a few ranges: the
# base alone then reads what the chain read (qemu-img compare against a raw
# image built independently with dd), qemu-img check of a VHDX base is clean
# (qemu has no check for VHD: diskctl check), only the child's bytes are
# copied; the child is left as it was (a VHDX child is orphaned, and says
# so). Refusals: no lower layer, a parent another process holds. A failed
# write and SIGINT stop it, saying how far it got, and a second run finishes.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools "scripts/setup.sh" qemu-img qemu-io flock
oracle_need_plugin sqlite "it is built when libsqlite3-dev is installed"

# patch RAW SECTOR COUNT BYTE: what 'diskctl write SPEC SECTOR --pattern BYTE
# --count COUNT' writes, applied to the raw expectation with dd.
patch() {
	"$PY" -c 'import sys; sys.stdout.buffer.write(bytes([int(sys.argv[1], 0)]) * int(sys.argv[2]))' \
		"$4" $(($3 * 512)) |
		dd of="$1" bs=512 seek="$2" conv=notrunc status=none
}
# put SPEC RAW SECTOR COUNT BYTE: write through diskctl and into the expectation
put() {
	"$DISKCTL" write "$1" "$3" --pattern "$5" --count "$4" >/dev/null &&
		patch "$2" "$3" "$4" "$5"
}
# committed N: the summary says N bytes were committed
# shellcheck disable=SC2317 # called through check
committed() { has "^committed $1 bytes " "$T/out"; }

# --- VHD: a dynamic base by qemu-img, a child by diskctl create --parent ------
qemu-img create -q -f vpc "$T/base.vhd" 4M
qemu-io -f vpc -c "write -P 0x11 0 1M" -c "write -P 0x12 3M 512k" "$T/base.vhd" >/dev/null
qemu-img convert -f vpc -O raw "$T/base.vhd" "$T/vhd.raw"
run create -q --parent "$T/base.vhd" "vhd:$T/child.vhd"
check "vhd: child made" [ "$rc" -eq 0 ]
# At the start, across the 2 MiB block boundary, and at the very end.
put "vhd:$T/child.vhd" "$T/vhd.raw" 16 8 0x21
put "vhd:$T/child.vhd" "$T/vhd.raw" 4000 200 0x22
vsec=$(($(stat -c %s "$T/vhd.raw") / 512))
put "vhd:$T/child.vhd" "$T/vhd.raw" $((vsec - 8)) 8 0x23
check "vhd: the chain reads the expectation" \
	"$DISKCTL" compare -q "vhd:$T/child.vhd" "$T/vhd.raw"
cp "$T/child.vhd" "$T/child.before"
run commit "vhd:$T/child.vhd"
check "vhd: commit exit 0" [ "$rc" -eq 0 ]
check "vhd: only the child's 216 sectors committed" committed $((216 * 512))
check "vhd: names the parent" has "into 'vhd:$T/base.vhd'" "$T/out"
check "vhd: the base alone reads what the chain read (qemu-img compare)" \
	qsame vpc "$T/base.vhd" raw "$T/vhd.raw"
run check "vhd:$T/base.vhd"
check "vhd: diskctl check of the base is clean" [ "$rc" -eq 0 ]
check "vhd: the child file is unchanged" cmp -s "$T/child.vhd" "$T/child.before"
check "vhd: the chain still opens and reads the same" \
	"$DISKCTL" compare -q "vhd:$T/child.vhd" "$T/vhd.raw"

# --- VHDX: qemu-img base, diskctl child ----------------------------------------
qemu-img create -q -f vhdx -o block_size=1M "$T/base.vhdx" 8M
qemu-io -f vhdx -c "write -P 0x31 0 3M" "$T/base.vhdx" >/dev/null
qemu-img convert -f vhdx -O raw "$T/base.vhdx" "$T/vhdx.raw"
run create -q --parent "$T/base.vhdx" "vhdx:$T/child.vhdx"
check "vhdx: child made" [ "$rc" -eq 0 ]
put "vhdx:$T/child.vhdx" "$T/vhdx.raw" 8 8 0x41
put "vhdx:$T/child.vhdx" "$T/vhdx.raw" 6000 4000 0x42
put "vhdx:$T/child.vhdx" "$T/vhdx.raw" 16376 8 0x43
run commit --qd 4 --bs 64K "vhdx:$T/child.vhdx"
check "vhdx: commit exit 0" [ "$rc" -eq 0 ]
check "vhdx: only the child's 4016 sectors committed" committed $((4016 * 512))
check "vhdx: the base alone reads what the chain read (qemu-img compare)" \
	qsame vhdx "$T/base.vhdx" raw "$T/vhdx.raw"
check "vhdx: qemu-img check of the base is clean" qcheck vhdx "$T/base.vhdx"
check "vhdx: the child is orphaned (its parent's DataWriteGuid changed), and said so" \
	sh -c "has() { grep -q -- \"\$1\" \"\$2\"; }; has 'orphaned' '$T/out' &&
		has 'no longer opens over the changed' '$T/err'"

# --- sqldiff: over sql: ----------------------------------------------------------
run write "sql:$T/base.db;create=4M" 0 --pattern 0x51 --count 2048
truncate -s 4M "$T/sql.raw"
patch "$T/sql.raw" 0 2048 0x51
run create -q --parent "sql:$T/base.db" "sqldiff:$T/diff.db"
check "sqldiff: child made" [ "$rc" -eq 0 ]
S="sqldiff:$T/diff.db:sql:$T/base.db"
put "$S" "$T/sql.raw" 100 50 0x61
put "$S" "$T/sql.raw" 5000 300 0x62
run commit "$S"
check "sqldiff: commit exit 0" [ "$rc" -eq 0 ]
check "sqldiff: into sql:" has "into 'sql:$T/base.db'" "$T/out"
check "sqldiff: the base alone reads what the chain read" \
	"$DISKCTL" compare -q "sql:$T/base.db" "$T/sql.raw"
check "sqldiff: the chain still reads the same" "$DISKCTL" compare -q "$S" "$T/sql.raw"

# --- qcow2: a child with a backing file
qemu-img create -q -f qcow2 "$T/base.qcow2" 4M
qemu-io -f qcow2 -c "write -P 0x71 0 2M" "$T/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/child.qcow2"
qemu-io -f qcow2 -c "write -P 0x72 1M 64k" -c "write -P 0x73 3M 4k" "$T/child.qcow2" >/dev/null
qemu-img convert -f qcow2 -O raw "$T/child.qcow2" "$T/qcow2.raw"
run commit "qcow2:$T/child.qcow2"
check "qcow2: commit exit 0" [ "$rc" -eq 0 ]
check "qcow2: the base reads what the chain read" \
	qsame qcow2 "$T/base.qcow2" raw "$T/qcow2.raw"
check "qcow2: qemu-img check of the base is clean" qcheck qcow2 "$T/base.qcow2"

# --- refusals ------------------------------------------------------------------
run commit mem:1M
check "no lower layer: exit 1" [ "$rc" -eq 1 ]
check "... saying so" has "'mem:1M' has no lower layer" "$T/err"

# A parent another process holds (a shared lock, as a reader's open takes).
cp "$T/child.before" "$T/child.vhd"
cp "$T/base.vhd" "$T/base.before"
mkfifo "$T/release"
flock -s "$T/base.vhd" sh -c ": >'$T/held'; read x <'$T/release'" &
holder=$!
i=0
while [ ! -e "$T/held" ] && [ $i -lt 500 ]; do
	i=$((i + 1))
	sleep 0.01 # until the lock is held, with a bound
done
run commit "vhd:$T/child.vhd"
check "a parent that another process holds: exit 1" [ "$rc" -eq 1 ]
check "... it cannot be opened writable, and why" \
	has "'vhd:$T/base.vhd', cannot be opened writable.*lock" "$T/err"
check "... the base is unchanged" cmp -s "$T/base.vhd" "$T/base.before"
echo >"$T/release"
wait "$holder"

# A write that fails (at sector 4096) stops the commit, saying how far it got; run again, it finishes.
run write "sql:$T/fb.db;create=4M" 0 --pattern 0x01 --count 8
run create -q --parent "sql:$T/fb.db" "sqldiff:$T/fd.db"
run write "sqldiff:$T/fd.db:sql:$T/fb.db" 0 --pattern 0x02 --count 8
run write "sqldiff:$T/fd.db:sql:$T/fb.db" 4000 --pattern 0x03 --count 400
run commit --qd 2 --bs 64K "sqldiff:$T/fd.db:fault:write=EIO@sectors=4096-4100:sql:$T/fb.db"
check "a failed write: exit 1" [ "$rc" -eq 1 ]
check "... the write that failed is named" has "write '.*' at byte [0-9]* (65536 bytes)" "$T/err"
check "... how far it got" \
	has "stopped by the error: \(nothing\|[0-9]* of [0-9]* bytes\)" "$T/err"
check "... and that it can be run again" has "can be run again" "$T/err"
"$DISKCTL" convert -q "sqldiff:$T/fd.db:sql:$T/fb.db" "$T/f.raw"
run commit "sqldiff:$T/fd.db:sql:$T/fb.db"
check "run again: exit 0" [ "$rc" -eq 0 ]
check "... the base reads what the chain read" "$DISKCTL" compare -q "sql:$T/fb.db" "$T/f.raw"

# SIGINT: the commit stops cleanly (every write 300 ms late, one in flight).
run write "sql:$T/ib.db;create=4M" 0 --pattern 0x01 --count 8
run create -q --parent "sql:$T/ib.db" "sqldiff:$T/id.db"
run write "sqldiff:$T/id.db:sql:$T/ib.db" 0 --pattern 0x04 --count 8192
"$DISKCTL" commit --qd 1 --bs 64K "sqldiff:$T/id.db:delay:300:sql:$T/ib.db" \
	>"$T/out" 2>"$T/err" &
pid=$!
# Until it catches SIGINT (SigCgt bit 1), with a bound.
i=0
while [ $i -lt 500 ]; do
	m=$(awk '/^SigCgt:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
	[ -n "$m" ] && [ $((0x$m & 2)) -ne 0 ] && break
	i=$((i + 1))
	sleep 0.01
done
kill -INT "$pid"
wait "$pid"
rc=$?
check "SIGINT: exit 130" [ "$rc" -eq 130 ]
check "... says it was interrupted, and how far it got" \
	has "interrupted: \(nothing\|[0-9]* of 4194304 bytes\)" "$T/err"
check "... and that the chain still reads the same" has "can be run again" "$T/err"

run commit
check "no SPEC: exit 2" [ "$rc" -eq 2 ]

finish
