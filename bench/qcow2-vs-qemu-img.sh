#!/bin/sh
# SPDX-License-Identifier: MIT
# The qcow2 plugin against qemu-img bench -f qcow2 -i io_uring on the same
# 1 GiB qcow2 image (64 KiB clusters, every cluster allocated, made by
# qemu-img convert from random data): 4 KiB reads at queue depth 32,
# alternating, ROUNDS each.
#
#   BUILD=/path/to/builddir bench/qcow2-vs-qemu-img.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the image goes, default
# /var/tmp), ROUNDS (3), COUNT (requests per run, 200000), CACHE (qemu-img -t,
# default writeback: the qcow2 plugin reads through the page cache, so both
# sides do), THREADS (diskctl --threads, 1), KEEP=1 keeps the image.
#
# qemu-img bench walks the image with a fixed step; the odd step 4K * 40009
# visits every 4 KiB block of the 1 GiB disk once in an order with no
# locality, which is what random reads measure (diskctl --rw randread).
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need qemu-img python3 /usr/bin/time

DIR=${BENCH_DIR:-/var/tmp}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-200000}
CACHE=${CACHE:-writeback}
THREADS=${THREADS:-1}
IMG="$DIR/diskcore-bench-1g.qcow2"
STEP=$((4096 * 40009))
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; [ "${KEEP:-0}" = 1 ] || rm -f "$IMG"' EXIT INT TERM

if ! qemu-img info "$IMG" 2>/dev/null | grep -q 'virtual size: 1 GiB'; then
	echo "creating $IMG (1 GiB of random data as qcow2)..." >&2
	head -c 1G /dev/urandom >"$OUT/raw"
	qemu-img convert -O qcow2 -o cluster_size=64k "$OUT/raw" "$IMG"
	rm -f "$OUT/raw"
	sync "$IMG"
fi
# Warm the page cache for both sides alike.
cat "$IMG" >/dev/null

# "IOPS PER_CPU" of one qemu-img bench run.
qemu_run() {
	bench_qemu_img -f qcow2 -t "$CACHE" -i io_uring -d 32 -s 4k -S "$STEP" "$IMG"
}

# "IOPS PER_CPU" of one diskctl bench run.
diskctl_run() {
	bench_diskctl --rw randread --bs 4k --qd 32 --threads "$THREADS" --ro "qcow2:$IMG"
}

one_round() {
	bench_record q "$(qemu_run)"
	bench_record d "$(diskctl_run)"
}
bench_rounds one_round

# table KIND TITLE HEAD: one table of $OUT/KIND.* rows, then the ratio.
table() {
	bench_table "$1" "$2" "$3" \
		"qemu-img bench -f qcow2 -i io_uring" q \
		"diskctl bench qcow2: --rw randread" d
	echo "ratio diskctl/qemu-img: $(bench_ratio "$(bench_med "$1.d")" "$(bench_med "$1.q")")"
	echo
}

bench_machine
echo "image: $IMG (qcow2, 64 KiB clusters), $COUNT requests per run"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second (user + system time of the process):" "requests / CPU-s"
echo "commands:"
echo "  qemu-img bench -f qcow2 -t $CACHE -i io_uring -c $COUNT -d 32 -s 4k -S $STEP IMG"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --threads $THREADS --count $COUNT --ro --json qcow2:IMG"
