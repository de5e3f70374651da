#!/bin/sh
# SPDX-License-Identifier: MIT
# First writes into `mem:` through the NBD server against writes into a file on
# tmpfs (issue 16: nbdcopy into `serve mem:1G` >= 0.8x into `serve file:`):
#   diskctl serve --unix S mem:1G               a fresh server each round
#   diskctl serve --unix S file:/dev/shm/X      a fresh sparse 1 GiB file each round
#   the same mem: server written a second time  (overwrites: the ceiling)
#   diskctl serve --unix S 'mem:1G;prealloc'    (memory faulted in at open)
# each filled by `nbdcopy SRC nbd+unix:///?socket=S` from 1 GiB of random data
# in /dev/shm, alternating, ROUNDS each; MiB/s (wall clock, the open of the
# server excluded) and the server's CPU milliseconds per run. The last line
# gives the target's ratio (medians of the rounds); the line before it each
# round's own ratio, which a loaded machine disturbs less.
#
#   BUILD=/path/to/builddir bench/mem-serve-vs-file.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (/dev/shm), ROUNDS (3; the target: 5), KEEP=1
# keeps the source file, NICE. Needs nbdcopy (libnbd-bin).
set -eu
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/dev/shm}
bench_init nbdcopy

SRC="$DIR/diskcore-bench-memserve.src"
DST="$DIR/diskcore-bench-memserve.img"
bench_scratch "$DST"
bench_inputs "$SRC"
PID=""
stop_server() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null || :
		wait "$PID" 2>/dev/null || :
	fi
	PID=""
}
bench_at_exit() {
	stop_server
}
bench_random_file "$SRC"

# start_server SPEC: a server on $OUT/s.sock, waited for (60 s at the most:
# ;prealloc faults 1 GiB in before it listens).
start_server() {
	rm -f "$OUT/s.sock"
	# Not through bench_run: $! must be the server itself (kill, /proc stat).
	if [ -n "${NICE:-}" ]; then
		nice -n "$NICE" "$DISKCTL" serve --unix "$OUT/s.sock" "$1" 2>"$OUT/serve.log" &
	else
		"$DISKCTL" serve --unix "$OUT/s.sock" "$1" 2>"$OUT/serve.log" &
	fi
	PID=$!
	i=0
	while [ ! -S "$OUT/s.sock" ]; do
		if [ $i -ge 1200 ] || ! kill -0 "$PID" 2>/dev/null; then
			echo "error: no server for $1:" >&2
			cat "$OUT/serve.log" >&2
			exit 1
		fi
		sleep 0.05
		i=$((i + 1))
	done
}

# copy ROW: nbdcopy SRC into the server; MiB/s to $OUT/iops.ROW, the server's
# CPU ms (user + system) to $OUT/cpu.ROW.
copy() {
	c0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
	t0=$(date +%s.%N)
	bench_run nbdcopy "$SRC" "nbd+unix:///?socket=$OUT/s.sock" ||
		{ echo "error: nbdcopy into $1 failed" >&2; exit 1; }
	t1=$(date +%s.%N)
	c1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", 1024 / (b - a) }' >>"$OUT/iops.$1"
	awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" \
		'BEGIN { printf "%.0f\n", (b - a) * 1000 / t }' >>"$OUT/cpu.$1"
}

one_round() {
	rm -f "$DST"
	truncate -s 1G "$DST"
	start_server "file:$DST"
	copy file
	stop_server
	rm -f "$DST"
	start_server "mem:1G"
	copy mem
	copy over
	stop_server
	start_server "mem:1G;prealloc"
	copy pre
	stop_server
}
bench_rounds one_round

bench_machine
echo "1 GiB of random data from $SRC, nbdcopy defaults (4 connections, 64 requests of 256 KiB)"
echo
# table KIND TITLE HEAD: the four rows of $OUT/KIND.*.
table() {
	bench_table "$1" "$2" "$3" \
		"serve file: (fresh sparse file on $DIR)" file \
		"serve mem:1G, first writes" mem \
		"serve mem:1G, overwrites" over \
		"serve mem:1G;prealloc, first writes" pre
}
table iops "MiB/s (wall clock):" "nbdcopy into, MiB/s"
table cpu "Server CPU ms (user + system) per GiB:" "nbdcopy into, CPU ms"
file=$(bench_med iops.file)
for row in "mem=mem:1G first writes" "over=mem:1G overwrites" "pre=mem:1G;prealloc"; do
	echo "ratio ${row#*=} / file:, MiB/s: $(bench_ratio "$(bench_med "iops.${row%%=*}")" "$file")"
done
echo "ratio server CPU, file: / mem:1G first writes: $(bench_ratio "$(bench_med cpu.file)" "$(bench_med cpu.mem)")"
# Each round's own ratio: both of its runs saw the same load.
paste -d' ' "$OUT/iops.mem" "$OUT/iops.file" | awk '{ printf "%.2f\n", $1 / $2 }' >"$OUT/round"
echo "ratio mem:1G first writes / file:, MiB/s, each round: $(paste -sd' ' "$OUT/round"); median $(bench_med round)"
ratio=$(bench_ratio "$(bench_med iops.mem)" "$file")
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.8 ? "met" : "not met") }')
echo
echo "TARGET (issue 16 item 4): nbdcopy into serve mem:1G >= 0.8x into serve file:, medians of MiB/s: $ratio ($verdict)"
echo
echo "commands:"
echo "  diskctl serve --unix S mem:1G | 'mem:1G;prealloc' | file:$DST (truncate -s 1G)"
echo "  nbdcopy $SRC 'nbd+unix:///?socket=S'"
