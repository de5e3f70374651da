#!/bin/sh
# SPDX-License-Identifier: MIT
# vhdx: (a dynamic VHDX, every block allocated) on the file engine
# (common/ioengine, plugins/vhdx/vhdx_aio.c) against blockdev: on a raw file
# of the same 1 GiB of random data: 4 KiB random reads at queue depth 32, one
# thread, page-cached, every side once per round (docs/performance.md,
# "vhdx: on the engine"). The figure is requests per CPU-second; target
# vhdx:/blockdev: >= 0.8. Beside: the same image with the engine forced onto
# the worker pool (DISKCORE_IO_ENGINE=pool, the fallback), and, when BEFORE
# names a directory holding another vhdx.so (e.g. one built from the commit
# before the engine), that plugin (it comes first on the plugin search path).
#
#   BUILD=/path/to/builddir [BEFORE=/dir/with/old/vhdx.so] bench/vhdx-vs-blockdev.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the files go; default
# /var/tmp), ROUNDS (3), SECS (2, per run), NICE (run every side at that
# priority), KEEP=1 keeps the files.
set -eu
. "$(dirname "$0")/common.sh"
bench_init qemu-img python3

RAW="$DIR/diskcore-bench-vhdx-1g.img"
IMG="$DIR/diskcore-bench-vhdx-dynamic.vhdx"
bench_inputs "$RAW" "$IMG"

bench_random_file "$RAW"
if [ ! -s "$IMG" ] || [ -n "$(find "$RAW" -newer "$IMG")" ]; then
	echo "creating $IMG (qemu-img convert -O vhdx)..." >&2
	qemu-img convert -f raw -O vhdx "$RAW" "$IMG"
fi

one_round() {
	cat "$RAW" "$IMG" >/dev/null
	bench_record bdev "$(bench_randread "blockdev:$RAW")"
	bench_record vhdx "$(bench_randread "vhdx:$IMG")"
	bench_record pool "$(bench_randread "vhdx:$IMG" DISKCORE_IO_ENGINE=pool)"
	if [ -n "${BEFORE:-}" ]; then
		bench_record before "$(bench_randread "vhdx:$IMG" \
			"DISKCORE_PLUGIN_PATH=$BEFORE:$DISKCORE_PLUGIN_PATH")"
	fi
}
bench_rounds one_round

table() {
	kind=$1 title=$2 head=$3
	set -- "diskctl blockdev:RAW" bdev "diskctl vhdx:DYNAMIC (engine)" vhdx \
		"diskctl vhdx:DYNAMIC, DISKCORE_IO_ENGINE=pool" pool
	if [ -n "${BEFORE:-}" ]; then
		set -- "$@" "diskctl vhdx:DYNAMIC, BEFORE's plugin" before
	fi
	bench_table "$kind" "$title" "$head" "$@"
}

bench_machine
echo "files: 1 GiB of random data as raw and as a dynamic VHDX (qemu-img convert," \
	"32 MiB blocks, all present); ${SECS}s per run, 4 KiB random reads, QD32, one" \
	"thread, page cache${NICE:+, nice $NICE}"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second:" "requests / CPU-s"
bench_say_ratio "ratio vhdx:/blockdev: per CPU-second (target >= 0.8):" cpu.vhdx cpu.bdev
bench_say_ratio "ratio vhdx: pool/engine per CPU-second:             " "cpu.pool" "cpu.vhdx"
if [ -n "${BEFORE:-}" ]; then
	bench_say_ratio "ratio vhdx: BEFORE/engine per CPU-second:           " "cpu.before" "cpu.vhdx"
fi
echo
echo "commands:"
echo "  qemu-img convert -f raw -O vhdx RAW IMG"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --time $SECS --ro --json 'blockdev:RAW' | 'vhdx:IMG'"
echo "  DISKCORE_IO_ENGINE=pool diskctl bench ... 'vhdx:IMG'"
