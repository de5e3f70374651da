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
bench_find_diskctl
bench_need qemu-img python3

DIR=${BENCH_DIR:-/var/tmp}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-2}
RAW="$DIR/diskcore-bench-vhdx-1g.img"
IMG="$DIR/diskcore-bench-vhdx-dynamic.vhdx"
OUT=$(mktemp -d)
cleanup() {
	rm -rf "$OUT"
	[ "${KEEP:-0}" = 1 ] || rm -f "$RAW" "$IMG"
}
trap cleanup EXIT INT TERM

bench_random_file "$RAW"
if [ ! -s "$IMG" ] || [ -n "$(find "$RAW" -newer "$IMG")" ]; then
	echo "creating $IMG (qemu-img convert -O vhdx)..." >&2
	qemu-img convert -f raw -O vhdx "$RAW" "$IMG"
fi

# "IOPS PER_CPU" of one diskctl bench run on spec $1 (more env in $2).
diskctl_run() {
	# shellcheck disable=SC2086
	bench_run env ${2:-} "$DISKCTL" bench --rw randread --bs 4k --qd 32 --time "$SECS" --ro \
		--json "$1" >"$OUT/d" || exit 1
	bench_json "$OUT/d" '"%d %d" % (round(d["iops"]), round(d["iops_per_cpu_second"]))'
}

one_round() {
	cat "$RAW" "$IMG" >/dev/null
	bench_record bdev "$(diskctl_run "blockdev:$RAW")"
	bench_record vhdx "$(diskctl_run "vhdx:$IMG")"
	bench_record pool "$(diskctl_run "vhdx:$IMG" DISKCORE_IO_ENGINE=pool)"
	if [ -n "${BEFORE:-}" ]; then
		bench_record before "$(diskctl_run "vhdx:$IMG" \
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
b=$(bench_med cpu.bdev)
echo "ratio vhdx:/blockdev: per CPU-second (target >= 0.8): $(bench_ratio "$(bench_med cpu.vhdx)" "$b")"
echo "ratio vhdx: pool/engine per CPU-second:              $(bench_ratio "$(bench_med cpu.pool)" "$(bench_med cpu.vhdx)")"
if [ -n "${BEFORE:-}" ]; then
	echo "ratio vhdx: BEFORE/engine per CPU-second:            $(bench_ratio "$(bench_med cpu.before)" "$(bench_med cpu.vhdx)")"
fi
echo
echo "commands:"
echo "  qemu-img convert -f raw -O vhdx RAW IMG"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --time $SECS --ro --json 'blockdev:RAW' | 'vhdx:IMG'"
echo "  DISKCORE_IO_ENGINE=pool diskctl bench ... 'vhdx:IMG'"
