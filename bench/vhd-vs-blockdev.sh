#!/bin/sh
# SPDX-License-Identifier: MIT
# vhd1: (fixed VHD) and vhd: (dynamic VHD, every block allocated) on the file
# engine (common/ioengine) against blockdev: on a raw file of the same 1 GiB
# of random data: 4 KiB random reads at queue depth 32, one thread,
# page-cached, alternating round by round (docs/performance.md, "vhd1: and
# vhd: on the engine"). The figure is requests per CPU-second; target
# vhd1:/blockdev: and vhd:/blockdev: >= 0.8. The same images with the engine
# forced onto the worker pool (DISKCORE_IO_ENGINE=pool, the fallback) beside,
# and a dynamic VHD that diskctl convert made: its blocks' data starts on a
# 4 KiB boundary, where qemu-img's follows the 512-byte bitmap (every 4 KiB
# read then spans two pages of the page cache).
#
#   BUILD=/path/to/builddir bench/vhd-vs-blockdev.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the files go; default
# /var/tmp), ROUNDS (3), SECS (2, per run), NICE (run every side at that
# priority), KEEP=1 keeps the files.
set -eu
. "$(dirname "$0")/common.sh"
bench_init qemu-img python3

RAW="$DIR/diskcore-bench-vhd-1g.img"
FIX="$DIR/diskcore-bench-vhd-fixed.vhd"
DYN="$DIR/diskcore-bench-vhd-dynamic.vhd"
OWN="$DIR/diskcore-bench-vhd-aligned.vhd"
bench_inputs "$RAW" "$FIX" "$DYN" "$OWN"

bench_random_file "$RAW"
for sub in fixed dynamic; do
	img=$FIX
	[ "$sub" = dynamic ] && img=$DYN
	if [ ! -s "$img" ] || [ "$img" -ot "$RAW" ]; then
		echo "creating $img (qemu-img convert -O vpc -o subformat=$sub)..." >&2
		qemu-img convert -f raw -O vpc -o subformat=$sub "$RAW" "$img"
	fi
done
if [ ! -s "$OWN" ] || [ "$OWN" -ot "$RAW" ]; then
	echo "creating $OWN (diskctl convert)..." >&2
	rm -f "$OWN"
	"$DISKCTL" convert -q "blockdev:$RAW" "vhd:$OWN"
fi

one_round() {
	cat "$RAW" "$FIX" "$DYN" "$OWN" >/dev/null
	bench_record bdev "$(bench_randread "blockdev:$RAW")"
	bench_record vhd1 "$(bench_randread "vhd1:$FIX")"
	bench_record vhdfix "$(bench_randread "vhd:$FIX")"
	bench_record vhd "$(bench_randread "vhd:$DYN")"
	bench_record vhdown "$(bench_randread "vhd:$OWN")"
	bench_record vhd1pool "$(bench_randread "vhd1:$FIX" DISKCORE_IO_ENGINE=pool)"
	bench_record vhdpool "$(bench_randread "vhd:$DYN" DISKCORE_IO_ENGINE=pool)"
}
bench_rounds one_round

table() {
	bench_table "$1" "$2" "$3" \
		"diskctl blockdev:RAW" bdev \
		"diskctl vhd1:FIXED" vhd1 \
		"diskctl vhd:FIXED" vhdfix \
		"diskctl vhd:DYNAMIC" vhd \
		"diskctl vhd:DYNAMIC (diskctl convert)" vhdown \
		"diskctl vhd1:FIXED, DISKCORE_IO_ENGINE=pool" vhd1pool \
		"diskctl vhd:DYNAMIC, DISKCORE_IO_ENGINE=pool" vhdpool
}

bench_machine
echo "images: 1 GiB of random data as raw, fixed VHD and dynamic VHD (qemu-img convert);" \
	"${SECS}s per run, 4 KiB random reads, QD32, one thread, page cache${NICE:+, nice $NICE}"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second:" "requests / CPU-s"
bench_say_ratio "ratio vhd1:/blockdev: per CPU-second (target >= 0.8):   " cpu.vhd1 cpu.bdev
bench_say_ratio "ratio vhd:fixed/blockdev: per CPU-second:               " cpu.vhdfix cpu.bdev
bench_say_ratio "ratio vhd:dynamic/blockdev: per CPU-second (target >= 0.8):" cpu.vhd cpu.bdev
bench_say_ratio "ratio vhd:dynamic (diskctl convert)/blockdev: per CPU-second:" cpu.vhdown cpu.bdev
bench_say_ratio "ratio vhd:dynamic pool/engine per CPU-second:           " cpu.vhdpool cpu.vhd
echo
echo "commands:"
echo "  qemu-img convert -f raw -O vpc -o subformat=fixed|dynamic RAW IMG; diskctl convert blockdev:RAW vhd:ALIGNED"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --time $SECS --ro --json 'blockdev:RAW' | 'vhd1:FIXED' | 'vhd:FIXED' | 'vhd:DYNAMIC' | 'vhd:ALIGNED'"
echo "  DISKCORE_IO_ENGINE=pool diskctl bench ... 'vhd1:FIXED' | 'vhd:DYNAMIC'"
