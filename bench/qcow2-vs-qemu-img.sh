#!/bin/sh
# SPDX-License-Identifier: MIT
# The qcow2 plugin against qemu-img on the same 1 GiB qcow2 image (64 KiB
# clusters, every cluster allocated, made by qemu-img convert from random
# data), alternating, ROUNDS each:
#  - 4 KiB random reads at queue depth 32 against qemu-img bench -f qcow2
#    -i io_uring;
#  - 4 KiB random writes at queue depth 32 into a copy of the image (every
#    cluster allocated, refcount 1: in-place writes, diskcore's through the
#    file engine) against qemu-img bench -w (WRITES=0 skips them);
#  - the whole image converted to a raw file in DST_DIR (default /dev/shm, so
#    the destination's disk does not decide it) by diskctl convert against
#    qemu-img convert, both flushing the destination at the end (qemu-img's
#    default -t unsafe skips that flush: also measured, as its own row);
#    and the same data as a raw file converted by both, which tells the
#    qcow2 reader's share from the copy engine's and the raw writer's.
#
#   BUILD=/path/to/builddir bench/qcow2-vs-qemu-img.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the image goes, default
# /var/tmp), ROUNDS (3), COUNT (requests per run, 200000), CACHE (qemu-img -t,
# default writeback: the qcow2 plugin reads through the page cache, so both
# sides do), THREADS (diskctl --threads, 1), KEEP=1 keeps the image,
# DST_DIR (the convert destinations, removed after each run), CONVERT=0
# skips the convert runs.
#
# qemu-img bench walks the image with a fixed step; the odd step 4K * 40009
# visits every 4 KiB block of the 1 GiB disk once in an order with no
# locality, which is what random reads measure (diskctl --rw randread).
set -eu
. "$(dirname "$0")/common.sh"
bench_init qemu-img python3 /usr/bin/time

COUNT=${COUNT:-200000}
CACHE=${CACHE:-writeback}
THREADS=${THREADS:-1}
IMG="$DIR/diskcore-bench-1g.qcow2"
STEP=$((4096 * 40009))
DST_DIR=${DST_DIR:-/dev/shm}
CONVERT=${CONVERT:-1}
WRITES=${WRITES:-1}
DST="$DST_DIR/diskcore-bench-convert.$$.raw"
RAW="$DIR/diskcore-bench-1g.raw"
WIMG="$DIR/diskcore-bench-1g-w.$$.qcow2"
bench_scratch "$DST" "$WIMG"
bench_inputs "$IMG" "$RAW"

if ! qemu-img info "$IMG" 2>/dev/null | grep -q 'virtual size: 1 GiB'; then
	echo "creating $IMG (1 GiB of random data as qcow2)..." >&2
	head -c 1G /dev/urandom >"$OUT/raw"
	qemu-img convert -O qcow2 -o cluster_size=64k "$OUT/raw" "$IMG"
	rm -f "$OUT/raw"
	sync "$IMG"
fi
if [ "$CONVERT" = 1 ] && [ "$(stat -c %s "$RAW" 2>/dev/null || echo 0)" -ne 1073741824 ]; then
	qemu-img convert -f qcow2 -O raw "$IMG" "$RAW"
fi
[ "$WRITES" != 1 ] || cp "$IMG" "$WIMG"
# Warm the page cache for both sides alike.
cat "$IMG" >/dev/null
[ "$CONVERT" != 1 ] || cat "$RAW" >/dev/null

# "IOPS PER_CPU" of one qemu-img bench run.
qemu_run() {
	bench_qemu_img -f qcow2 -t "$CACHE" -i io_uring -d 32 -s 4k -S "$STEP" "$IMG"
}

# "IOPS PER_CPU" of one diskctl bench run.
diskctl_run() {
	bench_diskctl --rw randread --bs 4k --qd 32 --threads "$THREADS" --ro "qcow2:$IMG"
}

# conv_run KIND CMD...: convert $IMG into $DST with CMD; records the MiB/s
# (wall) and MiB per CPU-second of the process under KIND.
conv_run() {
	kind=$1
	shift
	rm -f "$DST"
	start=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$OUT/t" "$@" >"$OUT/c" 2>&1 || { cat "$OUT/c" >&2; exit 1; }
	end=$(date +%s.%N)
	rm -f "$DST"
	echo "$start $end" | awk '{ printf "%.1f\n", 1024 / ($2 - $1) }' >>"$OUT/cmbs.$kind"
	awk '{ c = $1 + $2; printf "%.1f\n", (c > 0 ? 1024 / c : 0) }' "$OUT/t" >>"$OUT/ccpu.$kind"
}

one_round() {
	bench_record q "$(qemu_run)"
	bench_record d "$(diskctl_run)"
	if [ "$WRITES" = 1 ]; then
		bench_record qw "$(bench_qemu_img -f qcow2 -t "$CACHE" -i io_uring -w -d 32 -s 4k \
			-S "$STEP" "$WIMG")"
		bench_record dw "$(bench_diskctl --rw randwrite --bs 4k --qd 32 --threads "$THREADS" \
			"qcow2:$WIMG")"
	fi
	[ "$CONVERT" = 1 ] || return 0
	conv_run q qemu-img convert -f qcow2 -O raw -T "$CACHE" -t writeback "$IMG" "$DST"
	conv_run u qemu-img convert -f qcow2 -O raw -T "$CACHE" "$IMG" "$DST"
	conv_run d "$DISKCTL" convert -q "qcow2:$IMG" "file:$DST"
	conv_run qr qemu-img convert -f raw -O raw -T "$CACHE" -t writeback "$RAW" "$DST"
	conv_run dr "$DISKCTL" convert -q "file:$RAW" "file:$DST"
}
bench_rounds one_round

# table KIND TITLE HEAD: one table of $OUT/KIND.* rows, then the ratios.
table() {
	k=$1 t=$2 h=$3
	shift 3
	if [ "$WRITES" = 1 ]; then
		set -- "qemu-img bench -w -f qcow2 -i io_uring" qw \
			"diskctl bench qcow2: --rw randwrite" dw
	fi
	bench_table "$k" "$t" "$h" \
		"qemu-img bench -f qcow2 -i io_uring" q \
		"diskctl bench qcow2: --rw randread" d "$@"
	bench_say_ratio "ratio diskctl/qemu-img, reads:" "$k.d" "$k.q"
	[ "$WRITES" != 1 ] ||
		bench_say_ratio "ratio diskctl/qemu-img, writes:" "$k.dw" "$k.qw"
	echo
}

bench_machine
echo "image: $IMG (qcow2, 64 KiB clusters), $COUNT requests per run"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second (user + system time of the process):" "requests / CPU-s"
if [ "$CONVERT" = 1 ]; then
	for k in cmbs ccpu; do
		case $k in
		cmbs) title="convert qcow2 -> raw, MiB/s (wall):" head="MiB/s" ;;
		*) title="convert qcow2 -> raw, MiB per CPU-second (user + system):" head="MiB / CPU-s" ;;
		esac
		bench_table "$k" "$title" "$head" \
			"qemu-img convert -t writeback (flushes)" q \
			"qemu-img convert (default -t unsafe)" u \
			"diskctl convert (flushes)" d \
			"raw source: qemu-img convert -t writeback" qr \
			"raw source: diskctl convert file:" dr
		bench_say_ratio "ratio diskctl/qemu-img -t writeback:" "$k.d" "$k.q"
		bench_say_ratio "ratio diskctl/qemu-img default:" "$k.d" "$k.u"
		bench_say_ratio "ratio diskctl/qemu-img, raw source:" "$k.dr" "$k.qr"
		echo
	done
fi
echo "commands:"
echo "  qemu-img bench -f qcow2 -t $CACHE -i io_uring -c $COUNT -d 32 -s 4k -S $STEP IMG"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --threads $THREADS --count $COUNT --ro --json qcow2:IMG"
echo "  qemu-img bench -f qcow2 -t $CACHE -i io_uring -w -c $COUNT -d 32 -s 4k -S $STEP COPY"
echo "  diskctl bench --rw randwrite --bs 4k --qd 32 --threads $THREADS --count $COUNT --json qcow2:COPY"
echo "  qemu-img convert -f qcow2 -O raw -T $CACHE [-t writeback] IMG $DST_DIR/X.raw"
echo "  diskctl convert -q qcow2:IMG file:$DST_DIR/X.raw"
echo "  qemu-img convert -f raw -O raw -T $CACHE -t writeback RAW $DST_DIR/X.raw; diskctl convert -q file:RAW file:$DST_DIR/X.raw"
