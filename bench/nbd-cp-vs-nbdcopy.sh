#!/bin/sh
# SPDX-License-Identifier: MIT
# The nbd: client against nbdcopy, both reading the same nbdkit memory server
# (1 GiB) into the same RAM-backed file, alternating, ROUNDS each:
#   diskctl cp [--qd N] 'nbd:URI[;connections=C]' file:DST
#   nbdcopy URI DST
# Both write into the same existing 1 GiB file in /dev/shm: a file on both
# sides is the fair pair (null: for nbdcopy against file: for diskctl would
# charge only diskctl for the copy into the page cache); tmpfs keeps a disk out.
# The server is filled with random data first: nbdkit memory reports unwritten
# ranges as holes, and cp maps holes and skips them, so an empty server would
# measure nothing.
#
#   BUILD=/path/to/builddir bench/nbd-cp-vs-nbdcopy.sh
#
# Environment: BUILD or DISKCTL, ROUNDS (5), CONNS (4: nbd:'s connections=, one
# per queue), QD (cp's --qd, default 64 like nbdcopy's requests), KEEP=1 keeps
# the random source file.
set -eu
. "$(dirname "$0")/common.sh"
ROUNDS=${ROUNDS:-5}
bench_init nbdkit nbdcopy

CONNS=${CONNS:-4}
QD=${QD:-64}
SRC=/dev/shm/diskcore-bench-nbdcp.src
DST=/dev/shm/diskcore-bench-nbdcp.dst
bench_scratch "$DST"
bench_inputs "$SRC"

bench_random_file "$SRC"
rm -f "$DST"
fallocate -l 1G "$DST"
nbdkit -f -U "$OUT/s.sock" memory 1G 2>"$OUT/nbdkit.log" &
PIDS=$!
bench_wait_sock "$OUT/s.sock"
URI="nbd+unix:///?socket=$OUT/s.sock"
nbdcopy "$SRC" "$URI"

# run ROW CMD...: MiB/s (wall) and CPU ms (user + system of the client) of CMD
run() {
	row=$1
	shift
	t0=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$OUT/t" "$@" >/dev/null 2>"$OUT/err" ||
		{ cat "$OUT/err" >&2; exit 1; }
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", 1024 / (b - a) }' >>"$OUT/mibs.$row"
	awk '{ printf "%.0f\n", ($1 + $2) * 1000 }' "$OUT/t" >>"$OUT/cpu.$row"
}

one_round() {
	run cp "$DISKCTL" cp -q --qd "$QD" "nbd:$URI;connections=$CONNS" "file:$DST"
	run cp1 "$DISKCTL" cp -q "nbd:$URI;connections=1" "file:$DST"
	run nbdcopy nbdcopy "$URI" "$DST"
}
# Check once that cp really moves the data (DST starts as zeros).
"$DISKCTL" cp -q --qd "$QD" "nbd:$URI;connections=$CONNS" "file:$DST"
cmp "$SRC" "$DST" || { echo "error: cp's copy differs from the source" >&2; exit 1; }
bench_rounds one_round

bench_machine
echo "nbdkit memory 1G filled with random data; copies into a 1 GiB file in /dev/shm"
echo
bench_table mibs "Wall clock" "MiB/s" \
	"diskctl cp --qd $QD nbd:...;connections=$CONNS" cp \
	"diskctl cp nbd:...;connections=1 (qd 16)" cp1 \
	"nbdcopy (defaults: 4 conns, 64 reqs)" nbdcopy
bench_table cpu "Client CPU (user + system)" "ms" \
	"diskctl cp --qd $QD nbd:...;connections=$CONNS" cp \
	"diskctl cp nbd:...;connections=1 (qd 16)" cp1 \
	"nbdcopy (defaults: 4 conns, 64 reqs)" nbdcopy
echo "ratio diskctl cp / nbdcopy, MiB/s: $(bench_ratio "$(bench_med mibs.cp)" "$(bench_med mibs.nbdcopy)")"
echo "ratio diskctl cp (1 conn) / nbdcopy, MiB/s: $(bench_ratio "$(bench_med mibs.cp1)" "$(bench_med mibs.nbdcopy)")"
echo "CPU, nbdcopy / diskctl cp: $(bench_ratio "$(bench_med cpu.nbdcopy)" "$(bench_med cpu.cp)")"
