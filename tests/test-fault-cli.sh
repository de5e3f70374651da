#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl over fault: (issue 18): a copy that hits an injected error fails and
# names the errno; one with a rule that never fires copies every byte; read,
# write and info show the errno and the counters.
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.
set -u

. "$(dirname "$0")/tap-lib.sh"
[ -e "$DISKCORE_BUILD_ROOT/plugins/fault/fault.so" ] || skip "the fault plugin was not built"
tap_tmpdir fault-cli
count() { grep -c -- "$1" "$2"; }

head -c 16M /dev/urandom >"$T/src.img"
truncate -s 16M "$T/dst.img"

# --- cp: an error after 100 reads ---
# --bs 64K: 256 reads of the 16 MiB source (the default 1 MiB chunk makes 16,
# too few for after=100 to fire).
run cp --bs 64K 'fault:read=EIO@after=100;seed=1:mem:16M' "file:$T/dst.img"
check "cp over read=EIO@after=100 fails" [ "$rc" -eq 1 ]
check "cp names the errno (EIO)" has "I/O error: Input/output error (EIO)" "$T/err"
check "cp says which read failed" \
	has "read 'fault:read=EIO@after=100;seed=1:mem:16M' at byte " "$T/err"
check "cp reports no success" [ ! -s "$T/out" ]
run cp 'fault:read=EIO@after=10;seed=1:mem:16M' "file:$T/dst.img"
check "cp with the default chunk over after=10 fails" [ "$rc" -eq 1 ]
check "only reads past the 10th fail (at most 6 of 16)" \
	[ "$(count '(EIO)' "$T/err")" -ge 1 -a "$(count '(EIO)' "$T/err")" -le 6 ]

# --- cp: a rule that never fires copies everything ---
run cp 'fault:read=EIO@0%:mem:16M' "file:$T/dst.img"
check "cp over read=EIO@0% succeeds" [ "$rc" -eq 0 ]
check "cp over read=EIO@0% copies 16 MiB" has "copied 16777216 bytes" "$T/out"
truncate -s 0 "$T/dst.img"
truncate -s 16M "$T/dst.img"
run cp --bs 64K "fault:read=EIO@0%,write=EIO@0%:file:$T/src.img" \
	"fault:any=EIO@0%;seed=3:file:$T/dst.img"
check "cp file through fault: succeeds" [ "$rc" -eq 0 ]
check "cp through fault: copies every byte" cmp -s "$T/src.img" "$T/dst.img"

# --- cp: a full destination ---
run cp --bs 64K "file:$T/src.img" "fault:write=ENOSPC@after=3:mem:16M"
check "cp to write=ENOSPC fails" [ "$rc" -eq 1 ]
check "cp names ENOSPC" has "No space left on device (ENOSPC)" "$T/err"

# --- read and write keep the errno ---
run read 'fault:read=ENOSPC@100%:mem:1M' 0 1
check "read over read=ENOSPC fails" [ "$rc" -eq 1 ]
check "read names ENOSPC" has "sectors 0+1 (disk has 2048): I/O error: No space left on device (ENOSPC)" "$T/err"
run read 'fault:read=EIO@sectors=8-15:mem:1M' 0 8
check "read beside the faulty sectors succeeds" [ "$rc" -eq 0 ]
run write --pattern 7 --count 1 'fault:write=EIO@100%:mem:1M' 0
check "write over write=EIO fails" [ "$rc" -eq 1 ]
check "write names EIO" has "I/O error: Input/output error (EIO)" "$T/err"
run write --pattern 7 --count 1 'fault:write=EROFS@100%:mem:1M' 0
check "write over write=EROFS fails as read-only" has "disk is read-only" "$T/err"

# --- info: the rules, the seed and the counters ---
run info 'fault:read=EIO@5%,delay=write/2@after=1;seed=9:mem:1M'
check "info over fault: succeeds" [ "$rc" -eq 0 ]
check "info shows the seed" has "seed: 9" "$T/out"
check "info shows rule 0" has "rule0: read=EIO@5%" "$T/out"
check "info shows rule 1" has "rule1: delay=write/2@after=1" "$T/out"
check "info shows the counters" has "rule1_injected: 0" "$T/out"
run info 'fault:read=EFOO@5%:mem:1M'
check "info refuses an unknown errno" [ "$rc" -eq 1 ]
check "the refusal lists the accepted names" \
	has 'fault: rule "read=EFOO@5%": unknown errno "EFOO": accepted: EIO, ENOSPC' "$T/err"

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "$fails of $n checks failed" >&2
	exit 1
fi
exit 0
