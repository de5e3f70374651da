#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl convert (issue 15 item 2) with qemu-img as the oracle: DST is made
# when missing (with SRC's size and sector size), passes qemu-img check and
# holds SRC's content (qemu-img compare); --sparse keeps a 1 GiB raw disk with
# 10 MiB of data under 16 MiB as a dynamic VHDX; a progress bar only on a
# terminal; SIGINT stops convert and cp cleanly, saying how much DST holds
# (exit 130), and that much of DST is SRC's.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools qemu-utils qemu-img
oracle_need_plugin vhd "it is always built"
oracle_need_plugin vhdx "it is always built"
oracle_need_plugin delay "it is always built"
MiB=1048576

# put FILE MIB...: 2 MiB of random data at each offset (in MiB) of FILE
put() {
	f=$1
	shift
	for at in "$@"; do
		head -c 2M /dev/urandom | dd of="$f" bs=1M seek="$at" conv=notrunc status=none
	done
}

# --- 1 GiB raw, 10 MiB of data -> dynamic VHDX under 16 MiB ---
truncate -s 1G "$T/big.img"
put "$T/big.img" 0 100 333 512 1022
run convert --sparse "file:$T/big.img" "vhdx:$T/big.vhdx"
check "raw -> dynamic VHDX, --sparse: succeeds" [ "$rc" -eq 0 ]
check "... reports the zeroes it skipped" has "bytes of zeroes skipped" "$T/out"
check "... under 16 MiB on disk" [ "$(ondisk "$T/big.vhdx")" -lt $((16 * MiB)) ]
check "... qemu-img check" qcheck vhdx "$T/big.vhdx"
check "... qemu-img info reads 1 GiB" [ "$(qsize vhdx "$T/big.vhdx")" -eq $((1024 * MiB)) ]
check "... qemu-img compare: same content" qsame raw "$T/big.img" vhdx "$T/big.vhdx"
rm -f "$T/big.img" "$T/big.vhdx"

# --- VHDX -> VHD with nothing made beforehand ---
truncate -s 64M "$T/a.img"
put "$T/a.img" 0 30 62
run convert --sparse "file:$T/a.img" "vhdx:$T/A.vhdx"
check "raw -> VHDX (setting up the source)" [ "$rc" -eq 0 ]
run convert "vhdx:$T/A.vhdx" "vhd:$T/B.vhd"
check "convert vhdx:A.vhdx vhd:B.vhd: succeeds" [ "$rc" -eq 0 ]
check "... B is a VHD of A's size" [ "$(qsize vpc "$T/B.vhd")" -eq $((64 * MiB)) ]
check "... qemu-img compare: same content" qsame vhdx "$T/A.vhdx" vpc "$T/B.vhd"
check "... without --sparse every block is written" \
	[ "$(stat -c %s "$T/B.vhd")" -gt $((64 * MiB)) ]
run convert --sparse "vhdx:$T/A.vhdx" "vhd:$T/C.vhd"
check "VHDX -> VHD, --sparse: succeeds" [ "$rc" -eq 0 ]
check "... only the data's blocks are allocated" \
	[ "$(stat -c %s "$T/C.vhd")" -lt $((16 * MiB)) ]
check "... qemu-img compare: same content" qsame raw "$T/a.img" vpc "$T/C.vhd"
run convert "vhd:$T/C.vhd" "vhdx:$T/D.vhdx;fixed"
check "VHD -> fixed VHDX: succeeds" [ "$rc" -eq 0 ]
check "... qemu-img check" qcheck vhdx "$T/D.vhdx"
check "... qemu-img compare: same content" qsame raw "$T/a.img" vhdx "$T/D.vhdx"
run convert "vhdx:$T/D.vhdx" "file:$T/E.img"
check "VHDX -> raw: succeeds" [ "$rc" -eq 0 ]
check "... byte for byte" cmp -s "$T/a.img" "$T/E.img"
if [ -e "$DISKCORE_BUILD_ROOT/plugins/sqlite/sqlite.so" ]; then
	run convert --sparse "file:$T/a.img" "sql:$T/F.dbhd"
	check "raw -> sql: succeeds" [ "$rc" -eq 0 ]
	run convert "sql:$T/F.dbhd" "file:$T/G.img"
	check "... and back, byte for byte" cmp -s "$T/a.img" "$T/G.img"
fi

# --- the sector size goes with the image ---
run create "vhdx:$T/s4.vhdx;sector=4096" 8M
run write "vhdx:$T/s4.vhdx" 3 --pattern 0x3c --count 2
check "a 4K-sector VHDX with data (the source)" [ "$rc" -eq 0 ]
run convert "vhdx:$T/s4.vhdx" "vhdx:$T/s4b.vhdx"
check "4K-sector VHDX -> new VHDX: succeeds" [ "$rc" -eq 0 ]
run info "vhdx:$T/s4b.vhdx"
check "... with 4096-byte sectors" has "2048 x 4096" "$T/out"
run convert "vhdx:$T/s4.vhdx" "file:$T/s4.raw"
run convert "vhdx:$T/s4b.vhdx" "file:$T/s4b.raw"
check "... and the same content" cmp -s "$T/s4.raw" "$T/s4b.raw"

# --- an existing DST is written like cp writes it ---
head -c 64M /dev/urandom >"$T/stale.img"
run convert --sparse "file:$T/a.img" "file:$T/stale.img"
check "into an existing file with stale data: succeeds" [ "$rc" -eq 0 ]
check "... zero chunks overwrite the stale data" cmp -s "$T/a.img" "$T/stale.img"
truncate -s 1M "$T/small.img"
run convert "file:$T/a.img" "file:$T/small.img"
check "into an existing, smaller file: fails" [ "$rc" -eq 1 ]
check "... saying it is smaller" has "smaller than the source" "$T/err"
run convert "file:$T/a.img" mem:64M
check "into a kind that makes no images (mem:): opened as it is" [ "$rc" -eq 0 ]
run convert "fault:read=EIO@after=3:file:$T/a.img" "vhdx:$T/bad.vhdx"
check "a read error: fails" [ "$rc" -eq 1 ]
check "... naming the errno" has "(EIO)" "$T/err"
check "... and saying DST is incomplete" has "'vhdx:$T/bad.vhdx' is incomplete" "$T/err"

# --- progress on a terminal only ---
run convert "file:$T/a.img" "vhdx:$T/p1.vhdx"
check "no progress bar when stderr is not a terminal" [ ! -s "$T/err" ]
if command -v script >/dev/null 2>&1; then
	script -qec "'$DISKCTL' convert 'file:$T/a.img' 'vhdx:$T/p2.vhdx'" /dev/null \
		>"$T/tty" 2>&1
	check "a progress bar on a terminal" has "100.0% 64.00 MiB / 64.00 MiB" "$T/tty"
	script -qec "'$DISKCTL' convert -q 'file:$T/a.img' 'vhdx:$T/p3.vhdx'" /dev/null \
		>"$T/tty" 2>&1
	check "none with -q" [ ! -s "$T/tty" ]
fi

# --- SIGINT: a clean stop that says how far it got ---
# alive PID: the process runs (a zombie does not count)
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]; }
# stop BYTES CMD...: start diskctl CMD in the background, send it SIGINT once
# $dst takes more than BYTES on disk (data is being copied), wait for it to
# exit; 10 s at most for each. Status in $rc.
stop() {
	least=$1
	shift
	"$DISKCTL" "$@" >"$T/out" 2>"$T/err" &
	pid=$!
	i=0
	while alive $pid && [ $i -lt 400 ] &&
		! { [ -e "$dst" ] && [ "$(ondisk "$dst")" -gt "$least" ]; }; do
		sleep 0.025
		i=$((i + 1))
	done
	kill -INT $pid
	i=0
	while alive $pid && [ $i -lt 400 ]; do
		sleep 0.025
		i=$((i + 1))
	done
	alive $pid && kill -KILL $pid
	wait $pid
	rc=$?
}
# held: the byte count the interruption message names
held() { sed -n 's/.* holds the first \([0-9]*\) of .*/\1/p' "$T/err"; }
head -c 16M /dev/urandom >"$T/src.img"
# 50 ms per request, 4 of 64 KiB in flight: 16 MiB takes 3 s uninterrupted.
dst=$T/int.vhdx
stop $MiB convert --bs 64K --qd 4 "delay:50:file:$T/src.img" "vhdx:$dst"
check "convert, SIGINT: exit 130" [ "$rc" -eq 130 ]
check "... says it was interrupted and DST is incomplete" \
	has "interrupted: 'vhdx:$dst' holds the first [0-9]* of 16777216 bytes .*; it is incomplete" \
	"$T/err"
check "... and stopped early, after some data" [ "$(held)" -gt 0 ] &&
	check "... (some, not all)" [ "$(held)" -lt 16777216 ]
check "... DST passes qemu-img check" qcheck vhdx "$dst"
qemu-img convert -f vhdx -O raw "$dst" "$T/int.raw"
check "... and holds that much of SRC" cmp -s -n "$(held)" "$T/src.img" "$T/int.raw"
check "... and nothing beyond" sh -c "tail -c +$(($(held) + 1)) '$T/int.raw' |
	cmp -s -n $((16777216 - $(held))) - /dev/zero"
dst=$T/int.img
truncate -s 16M "$dst"
stop 0 cp --bs 64K --qd 4 "delay:50:file:$T/src.img" "file:$dst"
check "cp, SIGINT: exit 130" [ "$rc" -eq 130 ]
check "... says what was written" \
	has "interrupted: 'file:$dst' holds the first [0-9]* of 16777216 bytes .*; the rest of it was not written" \
	"$T/err"
check "... and that much of DST is SRC's" cmp -s -n "$(held)" "$T/src.img" "$dst"

# --- usage ---
run convert "file:$T/a.img"
check "no DST is a usage error" [ "$rc" -eq 2 ]
run convert "file:$T/a.img" "$T/../relative-needs-a-kind" --bogus
check "an unknown option is a usage error" [ "$rc" -eq 2 ]

finish
