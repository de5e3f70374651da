#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl bench on blockdev: against fio and qemu-img bench, all three on
# io_uring with O_DIRECT, 4 KiB random reads at queue depth 32, alternating
# round by round on the same 1 GiB file of random data; then the same on a loop
# device over that file (as root); then two submitting threads against fio with
# two jobs; then the low queue depths of QDS against fio.
#
# diskctl bench drives its queues with dc_queue_wait() on blockdev (completions
# reaped on the submitting thread); the "--no-wait" rows take the plugin's
# reaper thread instead, for comparison.
#
#   BUILD=/path/to/builddir bench/blockdev-vs-fio.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the file goes; not tmpfs, it
# must take O_DIRECT; default /var/tmp), ROUNDS (3), SECS (5, per fio and
# diskctl run), COUNT (requests per qemu-img run, 200000), NICE (e.g. -20: run
# every side at that priority, to keep other load on a shared machine out of
# the comparison), LOOP=0 skips the loop device, KEEP=1 keeps the file, QDS
# (queue depths of the extra rows, default "1 8"; empty skips them).
#
# qemu-img bench has no random mode; it walks the image with a fixed step that
# wraps. A step of 40009 blocks (odd, so coprime with the power-of-two block
# count) visits every 4 KiB block of the file once, in an order without
# locality, which is what the random reads of the other two measure.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need fio qemu-img python3

DIR=${BENCH_DIR:-/var/tmp}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
COUNT=${COUNT:-200000}
QDS=${QDS-1 8}
FILE="$DIR/diskcore-bench-blockdev-1g.img"
STEP=$((4096 * 40009))
OUT=$(mktemp -d)
LOOPDEV=""
cleanup() {
	[ -n "$LOOPDEV" ] && losetup -d "$LOOPDEV" 2>/dev/null
	rm -rf "$OUT"
	[ "${KEEP:-0}" = 1 ] || rm -f "$FILE"
}
trap cleanup EXIT INT TERM

bench_random_file "$FILE"

# IOPS of one fio run on $1 with $2 jobs (queue depth $3, default 32).
fio_iops() {
	bench_run fio --name=bench --filename="$1" --readonly --ioengine=io_uring --direct=1 \
		--rw=randread --bs=4k --iodepth="${3:-32}" --numjobs="$2" --group_reporting \
		--time_based --runtime="$SECS" --output-format=json >"$OUT/f" 2>"$OUT/fe" ||
		{ cat "$OUT/fe" >&2; exit 1; }
	bench_json "$OUT/f" 'round(d["jobs"][0]["read"]["iops"])'
}

# IOPS of one qemu-img bench run on $1.
qemu_iops() {
	bench_run qemu-img bench -f raw -t none -i io_uring -c "$COUNT" -d 32 -s 4k -S "$STEP" \
		"$1" >"$OUT/q" 2>&1 || { cat "$OUT/q" >&2; exit 1; }
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' "$OUT/q")
	awk -v n="$COUNT" -v s="$secs" 'BEGIN { printf "%.0f\n", n / s }'
}

# IOPS of one diskctl bench run on blockdev:$1 with $2 threads (queue depth
# $3, default 32; $4: more options, e.g. --no-wait).
diskctl_iops() {
	# shellcheck disable=SC2086
	bench_run "$DISKCTL" bench --rw randread --bs 4k --qd "${3:-32}" --threads "$2" \
		--time "$SECS" --ro --json ${4:-} "blockdev:$1;direct" >"$OUT/d" || exit 1
	bench_json "$OUT/d" 'round(d["iops"])'
}

if [ "${LOOP:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
	LOOPDEV=$(losetup -f --show --direct-io=on -r "$FILE" 2>/dev/null) || LOOPDEV=""
fi
[ -n "$LOOPDEV" ] || echo "no loop device (needs root and losetup): loop rows skipped" >&2

f_fio=""; f_qemu=""; f_dc=""; f_nw=""; l_fio=""; l_qemu=""; l_dc=""; t_fio=""; t_dc=""
t_nw=""
for qd in $QDS; do
	eval "q${qd}_fio=''; q${qd}_dc=''; q${qd}_nw=''"
done
one_round() {
	f_fio="$f_fio $(fio_iops "$FILE" 1)"
	f_qemu="$f_qemu $(qemu_iops "$FILE")"
	f_dc="$f_dc $(diskctl_iops "$FILE" 1)"
	f_nw="$f_nw $(diskctl_iops "$FILE" 1 32 --no-wait)"
	if [ -n "$LOOPDEV" ]; then
		l_fio="$l_fio $(fio_iops "$LOOPDEV" 1)"
		l_qemu="$l_qemu $(qemu_iops "$LOOPDEV")"
		l_dc="$l_dc $(diskctl_iops "$LOOPDEV" 1)"
	fi
	t_fio="$t_fio $(fio_iops "$FILE" 2)"
	t_dc="$t_dc $(diskctl_iops "$FILE" 2)"
	t_nw="$t_nw $(diskctl_iops "$FILE" 2 32 --no-wait)"
	for qd in $QDS; do
		eval "q${qd}_fio=\"\$q${qd}_fio $(fio_iops "$FILE" 1 "$qd")\""
		eval "q${qd}_dc=\"\$q${qd}_dc $(diskctl_iops "$FILE" 1 "$qd")\""
		eval "q${qd}_nw=\"\$q${qd}_nw $(diskctl_iops "$FILE" 1 "$qd" --no-wait)\""
	done
}
bench_rounds one_round

bench_machine
echo "file: $FILE (1 GiB)${LOOPDEV:+, loop device: $LOOPDEV (--direct-io=on)};" \
	"${SECS}s per fio/diskctl run, $COUNT requests per qemu-img run${NICE:+, nice $NICE}"
echo
# shellcheck disable=SC2086
{
	bench_header "$ROUNDS"
	bench_row "fio io_uring, file" $f_fio
	bench_row "qemu-img bench -i io_uring, file" $f_qemu
	bench_row "diskctl bench blockdev:file;direct" $f_dc
	bench_row "diskctl ... --no-wait, file" $f_nw
	if [ -n "$LOOPDEV" ]; then
		bench_row "fio io_uring, loop" $l_fio
		bench_row "qemu-img bench -i io_uring, loop" $l_qemu
		bench_row "diskctl bench blockdev:loop;direct" $l_dc
	fi
	bench_row "fio io_uring, file, 2 jobs" $t_fio
	bench_row "diskctl blockdev:file;direct, 2 threads" $t_dc
	bench_row "diskctl ... --no-wait, 2 threads" $t_nw
	for qd in $QDS; do
		eval "bench_row \"fio io_uring, file, QD$qd\" \$q${qd}_fio"
		eval "bench_row \"diskctl blockdev:file;direct, QD$qd\" \$q${qd}_dc"
		eval "bench_row \"diskctl ... --no-wait, QD$qd\" \$q${qd}_nw"
	done
}
echo
echo "ratio diskctl/fio, file:          $(bench_ratio "$(bench_median "$f_dc")" "$(bench_median "$f_fio")")"
echo "ratio diskctl/qemu-img, file:     $(bench_ratio "$(bench_median "$f_dc")" "$(bench_median "$f_qemu")")"
if [ -n "$LOOPDEV" ]; then
	echo "ratio diskctl/fio, loop:          $(bench_ratio "$(bench_median "$l_dc")" "$(bench_median "$l_fio")")"
	echo "ratio diskctl/qemu-img, loop:     $(bench_ratio "$(bench_median "$l_dc")" "$(bench_median "$l_qemu")")"
fi
echo "ratio diskctl --no-wait/fio, file: $(bench_ratio "$(bench_median "$f_nw")" "$(bench_median "$f_fio")")"
echo "ratio diskctl/fio, 2 threads:     $(bench_ratio "$(bench_median "$t_dc")" "$(bench_median "$t_fio")")"
echo "ratio --no-wait/fio, 2 threads:   $(bench_ratio "$(bench_median "$t_nw")" "$(bench_median "$t_fio")")"
a=""; b=""; c=""
for qd in $QDS; do
	eval "a=\$q${qd}_dc; b=\$q${qd}_fio; c=\$q${qd}_nw"
	echo "ratio diskctl/fio, QD$qd:           $(bench_ratio "$(bench_median "$a")" "$(bench_median "$b")")" \
		"(--no-wait $(bench_ratio "$(bench_median "$c")" "$(bench_median "$b")"))"
done
echo "scaling 1 -> 2 threads: diskctl $(bench_ratio "$(bench_median "$t_dc")" "$(bench_median "$f_dc")")," \
	"fio $(bench_ratio "$(bench_median "$t_fio")" "$(bench_median "$f_fio")")"
echo
echo "commands:"
echo "  fio --name=bench --filename=F --readonly --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=32|QD --numjobs=1|2 --group_reporting --time_based --runtime=$SECS"
echo "  qemu-img bench -f raw -t none -i io_uring -c $COUNT -d 32 -s 4k -S $STEP F"
echo "  diskctl bench --rw randread --bs 4k --qd 32|QD --threads 1|2 --time $SECS --ro --json [--no-wait] 'blockdev:F;direct'"
