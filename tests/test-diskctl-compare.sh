#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl compare (issue 15 item 3) against qemu-img compare on the same
# images: the same exit status (0 same, 1 differ, 2 error) and the same first
# difference. qemu names the 512-byte sector that holds it, diskctl the byte
# (which cmp(1) names too, counting from 1).
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools qemu-utils qemu-img
oracle_need_plugin vhd "it is always built"
oracle_need_plugin vhdx "it is always built"

# spec FILE: the spec of FILE and the qemu format name, by its extension
fmt() {
	case $1 in
	*.vhdx) echo vhdx ;;
	*.vhd) echo vpc ;;
	*) echo raw ;;
	esac
}
# same NAME A B [OPTION]: diskctl and qemu-img compare agree on files A and B:
# the exit status, and for a difference the sector it is in
same() {
	name=$1
	a=$2
	b=$3
	shift 3
	"$DISKCTL" compare "$@" "file:$a" "file:$b" >"$T/out" 2>"$T/err"
	rc=$?
	qemu-img compare "$@" -f "$(fmt "$a")" -F "$(fmt "$b")" "$a" "$b" >"$T/qout" 2>&1
	qrc=$?
	check "$name: exit $qrc, as qemu-img compare" [ "$rc" -eq "$qrc" ]
	[ "$qrc" -eq 1 ] || return 0
	byte=$(sed -n 's/^differ at byte \([0-9]*\) .*/\1/p' "$T/out")
	qoff=$(sed -n 's/^Content mismatch at offset \([0-9]*\)!/\1/p' "$T/qout")
	if [ -z "$qoff" ] && has "Strict mode: Image size mismatch" "$T/qout"; then
		qoff=$byte # qemu names no offset for a size difference
	fi
	check "$name: the difference is in qemu's sector ($qoff)" \
		[ -n "$byte" ] && [ $((byte / 512 * 512)) -eq "$qoff" ]
}
# at FILE BYTE: flip the byte at offset BYTE of FILE
at() {
	"$PY" -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x5a]))' "$1" "$2"
}

head -c 8M /dev/urandom >"$T/a.img"
truncate -s 16M "$T/a.img"
run convert --sparse "file:$T/a.img" "vhdx:$T/a.vhdx"
run convert --sparse "file:$T/a.img" "vhd:$T/a.vhd"
check "the VHDX and VHD copies are made" [ -e "$T/a.vhdx" ] && [ -e "$T/a.vhd" ]

same "raw, itself" "$T/a.img" "$T/a.img"
same "raw and its VHDX copy" "$T/a.img" "$T/a.vhdx"
check "... prints identical" has "^identical: 16777216 bytes" "$T/out"
same "VHD and VHDX copies" "$T/a.vhd" "$T/a.vhdx"

# One byte changed: the first, one in the data, one in the zeroes, the last.
for off in 0 1000 4194303 4194304 12345678 16777215; do
	cp "$T/a.img" "$T/b.img"
	at "$T/b.img" "$off"
	same "byte $off changed, raw vs VHDX" "$T/b.img" "$T/a.vhdx"
	check "... diskctl names byte $off" has "^differ at byte $off " "$T/out"
	run compare "file:$T/a.img" "file:$T/b.img"
	check "... as cmp does (raw vs raw)" [ "$(cmp "$T/a.img" "$T/b.img" |
		sed -n 's/.* differ: byte \([0-9]*\),.*/\1/p')" -eq $((off + 1)) ]
done

# Several differences, many chunks in flight: the first one is named, even
# when a later chunk finishes first.
cp "$T/a.img" "$T/c.img"
at "$T/c.img" 9000000
at "$T/c.img" 100000
at "$T/c.img" 70000
run compare --bs 4K --qd 64 "file:$T/c.img" "vhdx:$T/a.vhdx"
check "three differences, 4K chunks, 64 in flight: exit 1" [ "$rc" -eq 1 ]
check "... names the first" has "^differ at byte 70000 " "$T/out"
same "three differences, raw vs VHD" "$T/c.img" "$T/a.vhd"

# Sizes that differ: equal while the larger holds zeroes past the smaller.
cp "$T/a.img" "$T/long.img"
truncate -s 32M "$T/long.img"
same "a longer copy with a zero tail" "$T/a.vhdx" "$T/long.img"
check "... says the sizes differ" has "^sizes differ" "$T/out"
same "... in strict mode" "$T/a.vhdx" "$T/long.img" -s
run compare --strict "file:$T/a.img" "file:$T/long.img"
check "... which names the smaller's end" has "^differ at byte 16777216 " "$T/out"
at "$T/long.img" 30000000
same "a longer copy with data in the tail" "$T/long.img" "$T/a.vhdx"
check "... named where it is" has "^differ at byte 30000000 " "$T/out"

# Errors: exit 2, like qemu-img.
same "a missing image" "$T/a.img" "$T/missing.img"
run compare -q "file:$T/a.img" "file:$T/b.img"
check "-q: still exit 1" [ "$rc" -eq 1 ]
check "... printing nothing" [ ! -s "$T/out" ]
run compare "file:$T/a.img"
check "one disk is a usage error (exit 2)" [ "$rc" -eq 2 ]
run compare "fault:read=EIO@after=2:file:$T/a.img" "file:$T/a.img"
check "a read error: exit 2" [ "$rc" -eq 2 ]
check "... naming the errno" has "(EIO)" "$T/err"

# Disks of different sector sizes compare by bytes.
run create "vhdx:$T/s4.vhdx;sector=4096" 16M
run cp "file:$T/a.img" "vhdx:$T/s4.vhdx"
run compare "vhdx:$T/s4.vhdx" "file:$T/a.img"
check "a 4K-sector VHDX and its raw source: identical" [ "$rc" -eq 0 ]
run compare "vhdx:$T/s4.vhdx" "file:$T/c.img"
check "... and a changed source: the first difference" has "^differ at byte 70000 " "$T/out"

finish
