#!/bin/sh
# SPDX-License-Identifier: MIT
# The file engine (common/ioengine) as file: uses it, against blockdev: and
# fio on the same 1 GiB file of random data, 4 KiB random reads at queue depth
# 32, one thread, alternating round by round (docs/performance.md, "The file
# engine"):
#
#  1. page-cached: diskctl bench file:F, blockdev:F, and file:F with the engine
#     forced onto the worker pool (DISKCORE_IO_ENGINE=pool, the fallback);
#     the figure is requests per CPU-second, target file:/blockdev: >= 0.8;
#  2. O_DIRECT: diskctl bench 'file:F;direct' against fio --ioengine=io_uring
#     --direct=1 --iodepth=32, IOPS, target >= 1.0 (blockdev;direct beside).
#     The VM's disk bounds both here; bench/direct-vs-fio.sh repeats the
#     pair pinned to one CPU on RAM-backed O_DIRECT targets as well, where
#     the software is what is measured.
#
#   BUILD=/path/to/builddir bench/file-vs-blockdev.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the file goes; not tmpfs,
# it must take O_DIRECT; default /var/tmp), ROUNDS (3), SECS (2, per run),
# NICE (run every side at that priority), KEEP=1 keeps the file.
set -eu
. "$(dirname "$0")/common.sh"
bench_init fio python3

FILE="$DIR/diskcore-bench-file-1g.img"
bench_inputs "$FILE"

bench_random_file "$FILE"

# "IOPS PER_CPU" of one diskctl bench run on spec $1 (more env in $2).
diskctl_run() {
	# shellcheck disable=SC2086
	bench_run env ${2:-} "$DISKCTL" bench --rw randread --bs 4k --qd 32 --time "$SECS" --ro \
		--json "$1" >"$OUT/d" || exit 1
	bench_json "$OUT/d" '"%d %d" % (round(d["iops"]), round(d["iops_per_cpu_second"]))'
}

# "IOPS PER_CPU" of one fio run, O_DIRECT on io_uring at queue depth 32.
fio_run() {
	bench_run fio --name=bench --filename="$FILE" --readonly --ioengine=io_uring \
		--direct=1 --invalidate=0 --rw=randread --bs=4k --iodepth=32 --numjobs=1 --time_based \
		--runtime="$SECS" --output-format=json >"$OUT/f" 2>"$OUT/fe" ||
		{ cat "$OUT/fe" >&2; exit 1; }
	bench_json "$OUT/f" '"%d %d" % (round(d["jobs"][0]["read"]["iops"]), round(d["jobs"][0]["read"]["iops"] * 100 / max(d["jobs"][0]["usr_cpu"] + d["jobs"][0]["sys_cpu"], 1e-9)))'
}

one_round() {
	# The whole file in the page cache for the buffered rows (fio is told
	# not to drop it, but memory pressure may have).
	cat "$FILE" >/dev/null
	bench_record file "$(diskctl_run "file:$FILE")"
	bench_record bdev "$(diskctl_run "blockdev:$FILE")"
	bench_record pool "$(diskctl_run "file:$FILE" DISKCORE_IO_ENGINE=pool)"
	bench_record fio "$(fio_run)"
	bench_record dfile "$(diskctl_run "file:$FILE;direct")"
	bench_record dbdev "$(diskctl_run "blockdev:$FILE;direct")"
}
bench_rounds one_round

# table KIND TITLE HEAD: one table of $OUT/KIND.* rows.
table() {
	bench_table "$1" "$2" "$3" \
		"diskctl file:F (page cache)" file \
		"diskctl blockdev:F (page cache)" bdev \
		"diskctl file:F, DISKCORE_IO_ENGINE=pool" pool \
		"fio io_uring --direct=1" fio \
		"diskctl file:F;direct" dfile \
		"diskctl blockdev:F;direct" dbdev
}

bench_machine
echo "file: $FILE (1 GiB); ${SECS}s per run, 4 KiB random reads, QD32, one thread${NICE:+, nice $NICE}"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second:" "requests / CPU-s"
echo "ratio file:/blockdev: per CPU-second, page cache (target >= 0.8): $(bench_ratio "$(bench_med cpu.file)" "$(bench_med cpu.bdev)")"
echo "ratio file:/blockdev: IOPS, page cache:                          $(bench_ratio "$(bench_med iops.file)" "$(bench_med iops.bdev)")"
echo "ratio pool/io_uring file: per CPU-second, page cache:            $(bench_ratio "$(bench_med cpu.pool)" "$(bench_med cpu.file)")"
echo "ratio file:;direct/fio IOPS (target >= 1.0):                     $(bench_ratio "$(bench_med iops.dfile)" "$(bench_med iops.fio)")"
echo "ratio file:;direct/fio per CPU-second:                           $(bench_ratio "$(bench_med cpu.dfile)" "$(bench_med cpu.fio)")"
echo
echo "commands:"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --time $SECS --ro --json 'file:F' | 'blockdev:F' | 'file:F;direct' | 'blockdev:F;direct'"
echo "  DISKCORE_IO_ENGINE=pool diskctl bench ... 'file:F'"
echo "  fio --name=bench --filename=F --readonly --ioengine=io_uring --direct=1 --invalidate=0 --rw=randread --bs=4k --iodepth=32 --numjobs=1 --time_based --runtime=$SECS"
