#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl bench on mem:1G against fio psync on a 1 GiB file in tmpfs: 4 KiB random
# reads, one thread, alternating, ROUNDS each. Both read memory that holds data
# (diskctl --prefill writes the RAM disk first, fio lays its file out).
#
#   BUILD=/path/to/builddir bench/mem-vs-fio.sh
#
# Environment: BUILD or DISKCTL, SHM (a tmpfs directory, default /dev/shm),
# ROUNDS (3), SECS (seconds per run, 5).
#
# fio psync is one synchronous pread per request (queue depth 1); diskctl runs
# at qd 1 (the same shape) and at qd 32 (how a VMM would drive it).
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need fio python3

SHM=${SHM:-/dev/shm}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
FILE="$SHM/diskcore-bench-fio"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; rm -f "$FILE"' EXIT INT TERM

if [ "$(stat -f -c %T "$SHM")" != tmpfs ]; then
	echo "error: $SHM is not tmpfs (set SHM=)" >&2
	exit 1
fi

fio_iops() {
	fio --name=memread --filename="$FILE" --size=1G --rw=randread --bs=4k \
		--ioengine=psync --numjobs=1 --time_based --runtime="$SECS" \
		--output-format=json >"$OUT/f" 2>"$OUT/fe" || { cat "$OUT/fe" >&2; exit 1; }
	bench_json "$OUT/f" 'round(d["jobs"][0]["read"]["iops"])'
}

diskctl_iops() {
	"$DISKCTL" bench --rw randread --bs 4k --qd "$1" --time "$SECS" --prefill \
		--json mem:1G >"$OUT/d" || exit 1
	bench_json "$OUT/d" 'round(d["iops"])'
}

f=""; d1=""; d32=""
r=1
while [ "$r" -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS..." >&2
	f="$f $(fio_iops)"
	d1="$d1 $(diskctl_iops 1)"
	d32="$d32 $(diskctl_iops 32)"
	r=$((r + 1))
done

bench_machine
echo "$SECS s per run, 4 KiB random reads over 1 GiB, one thread"
echo
# shellcheck disable=SC2086
{
	bench_header "$ROUNDS"
	bench_row "fio psync, tmpfs file" $f
	bench_row "diskctl bench mem:1G --qd 1" $d1
	bench_row "diskctl bench mem:1G --qd 32" $d32
}
echo
# shellcheck disable=SC2086
echo "ratio diskctl qd1/fio:  $(bench_ratio "$(bench_median $d1)" "$(bench_median $f)")"
# shellcheck disable=SC2086
echo "ratio diskctl qd32/fio: $(bench_ratio "$(bench_median $d32)" "$(bench_median $f)")"
echo
echo "commands:"
echo "  fio --name=memread --filename=$SHM/FILE --size=1G --rw=randread --bs=4k --ioengine=psync --numjobs=1 --time_based --runtime=$SECS"
echo "  diskctl bench --rw randread --bs 4k --qd 1|32 --time $SECS --prefill --json mem:1G"
