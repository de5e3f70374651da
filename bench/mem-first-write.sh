#!/bin/sh
# SPDX-License-Identifier: MIT
# mem: first writes against overwrites: 1 GiB written once, sequentially, in
# 256 KiB requests at QD8, into a fresh `mem:1G` (every write allocates),
# into `mem:1G;prealloc` (memory faulted in at open, not timed) and into a
# `mem:1G` that --prefill wrote first (every write overwrites), alternating
# round by round. See docs/performance.md.
#
#   BUILD=/path/to/builddir bench/mem-first-write.sh
#
# Environment: BUILD or DISKCTL, ROUNDS (5), SIZE (1G), NICE.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl

ROUNDS=${ROUNDS:-5}
SIZE=${SIZE:-1G}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT INT TERM
# Requests of 256 KiB that cover SIZE once.
COUNT=$("${PYTHON:-python3}" -c 'import sys; s = sys.argv[1]; m = {"M": 20, "G": 30}[s[-1]]; print((int(s[:-1]) << m) // 262144)' "$SIZE")

# "MB/s MB/s-per-CPU-second" of one run: $1 spec, $2 extra option.
run() {
	# shellcheck disable=SC2086
	bench_run "$DISKCTL" bench --rw write --bs 256k --qd 8 --count "$COUNT" $2 --json \
		"$1" >"$OUT/d" || exit 1
	bench_json "$OUT/d" '"%d %d" % (round(d["mb_per_s"]), round(d["iops_per_cpu_second"] * d["bs"] / 1e6))'
}

one_round() {
	bench_record first "$(run "mem:$SIZE" "")"
	bench_record prealloc "$(run "mem:$SIZE;prealloc" "")"
	bench_record over "$(run "mem:$SIZE" --prefill)"
}
bench_rounds one_round

name() {
	case $1 in
	first) echo "first writes, mem:$SIZE" ;;
	prealloc) echo "first writes, mem:$SIZE;prealloc" ;;
	over) echo "overwrites, mem:$SIZE after --prefill" ;;
	esac
}

bench_machine
echo "$SIZE written once, 256 KiB sequential writes, QD8"
echo
for kind in iops cpu; do
	[ "$kind" = iops ] && echo "MB/s (wall clock):" || echo "MB/s per CPU-second:"
	echo
	bench_header "$ROUNDS" "MB/s"
	for row in first prealloc over; do
		# shellcheck disable=SC2046
		bench_row "$(name "$row")" $(cat "$OUT/$kind.$row")
	done
	echo
	for row in first prealloc; do
		# shellcheck disable=SC2046
		echo "ratio $(name "$row") / overwrites: $(bench_ratio \
			"$(bench_median $(cat "$OUT/$kind.$row"))" \
			"$(bench_median $(cat "$OUT/$kind.over"))")"
	done
	echo
done
echo "command: diskctl bench --rw write --bs 256k --qd 8 --count $COUNT [--prefill] --json 'mem:${SIZE}[;prealloc]'"
