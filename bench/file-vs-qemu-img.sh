#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl bench on file: (O_DIRECT) against qemu-img bench (-t none) on the same
# 1 GiB file of real data, 4 KiB reads at queue depth 32, alternating, ROUNDS each.
#
#   BUILD=/path/to/builddir bench/file-vs-qemu-img.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the 1 GiB file goes; not tmpfs,
# O_DIRECT must work there; default /var/tmp), ROUNDS (3), COUNT (requests per
# run, 200000), AIO (qemu-img -i: threads, the default, or io_uring / native),
# KEEP=1 keeps the file.
#
# qemu-img bench only walks the image with a fixed step, so there are two pairs:
#   sequential: qemu-img bench (step 4K)             vs diskctl --rw read
#   scattered:  qemu-img bench (step 4K * 40009)     vs diskctl --rw randread
# The odd step visits every 4 KiB block of the power-of-two-sized file once, in
# an order with no locality, which is what random reads measure.
# A second table gives requests per CPU-second of each process (user + system,
# from /usr/bin/time), which moves less than IOPS when the machine is busy.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need qemu-img python3 /usr/bin/time

DIR=${BENCH_DIR:-/var/tmp}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-200000}
AIO=${AIO:-threads}
FILE="$DIR/diskcore-bench-1g.img"
STEP=$((4096 * 40009))
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; [ "${KEEP:-0}" = 1 ] || rm -f "$FILE"' EXIT INT TERM

if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" -ne 1073741824 ]; then
	echo "creating $FILE (1 GiB of random data)..." >&2
	head -c 1G /dev/urandom >"$FILE.tmp"
	mv "$FILE.tmp" "$FILE"
	sync "$FILE"
fi

# Requests per CPU-second of the run whose /usr/bin/time output is in $OUT/t.
per_cpu() {
	awk -v n="$COUNT" '{ c = $1 + $2 } END { printf "%.0f\n", (c > 0 ? n / c : 0) }' "$OUT/t"
}

# "IOPS PER_CPU" of one qemu-img bench run with step $1.
qemu_run() {
	/usr/bin/time -f "%U %S" -o "$OUT/t" qemu-img bench -f raw -t none -i "$AIO" \
		-c "$COUNT" -d 32 -s 4k -S "$1" "$FILE" >"$OUT/q" 2>&1 ||
		{ cat "$OUT/q" >&2; exit 1; }
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' "$OUT/q")
	echo "$(awk -v n="$COUNT" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" \
		"$(per_cpu)"
}

# "IOPS PER_CPU" of one diskctl bench run with --rw $1.
diskctl_run() {
	/usr/bin/time -f "%U %S" -o "$OUT/t" "$DISKCTL" bench --rw "$1" --bs 4k --qd 32 \
		--count "$COUNT" --ro --json "file:$FILE;direct" >"$OUT/d" || exit 1
	echo "$(bench_json "$OUT/d" 'round(d["iops"])')" "$(per_cpu)"
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS..." >&2
	bench_record q_seq "$(qemu_run 4096)"
	bench_record d_seq "$(diskctl_run read)"
	bench_record q_rnd "$(qemu_run $STEP)"
	bench_record d_rnd "$(diskctl_run randread)"
	r=$((r + 1))
done

# table KIND TITLE: one table of $OUT/KIND.* rows.
table() {
	echo "$2"
	echo
	bench_header "$ROUNDS" "$3"
	# shellcheck disable=SC2046
	{
		bench_row "qemu-img bench -t none, sequential" $(cat "$OUT/$1.q_seq")
		bench_row "diskctl bench file:;direct --rw read" $(cat "$OUT/$1.d_seq")
		bench_row "qemu-img bench -t none, step 4K*40009" $(cat "$OUT/$1.q_rnd")
		bench_row "diskctl bench file:;direct --rw randread" $(cat "$OUT/$1.d_rnd")
	}
	echo
	# shellcheck disable=SC2046
	echo "ratio diskctl/qemu-img, sequential: $(bench_ratio \
		"$(bench_median $(cat "$OUT/$1.d_seq"))" "$(bench_median $(cat "$OUT/$1.q_seq"))")"
	# shellcheck disable=SC2046
	echo "ratio diskctl/qemu-img, scattered:  $(bench_ratio \
		"$(bench_median $(cat "$OUT/$1.d_rnd"))" "$(bench_median $(cat "$OUT/$1.q_rnd"))")"
	echo
}

bench_machine
echo "file: $FILE, $COUNT requests per run, qemu-img -i $AIO"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second (user + system time of the process):" "requests / CPU-s"
echo "commands:"
echo "  qemu-img bench -f raw -t none -i $AIO -c $COUNT -d 32 -s 4k [-S 4096 | -S $STEP] FILE"
echo "  diskctl bench --rw read|randread --bs 4k --qd 32 --count $COUNT --ro --json 'file:FILE;direct'"
