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
# A second table gives requests per CPU-second (fio: its usr_cpu + sys_cpu;
# diskctl: the process's CPU time during the run), which moves less than IOPS
# when the machine is busy and is the per-core figure.
set -eu
. "$(dirname "$0")/common.sh"
SECS=${SECS:-5}
bench_init fio python3

SHM=${SHM:-/dev/shm}
FILE="$SHM/diskcore-bench-fio"
bench_scratch "$FILE"

if [ "$(stat -f -c %T "$SHM")" != tmpfs ]; then
	echo "error: $SHM is not tmpfs (set SHM=)" >&2
	exit 1
fi

# "IOPS PER_CPU" of one fio run.
fio_run() {
	fio --name=memread --filename="$FILE" --size=1G --rw=randread --bs=4k \
		--ioengine=psync --numjobs=1 --time_based --runtime="$SECS" \
		--output-format=json >"$OUT/f" 2>"$OUT/fe" || { cat "$OUT/fe" >&2; exit 1; }
	bench_json "$OUT/f" '"%d %d" % (round(d["jobs"][0]["read"]["iops"]), round(d["jobs"][0]["read"]["iops"] * 100 / max(d["jobs"][0]["usr_cpu"] + d["jobs"][0]["sys_cpu"], 1e-9)))'
}

# "IOPS PER_CPU" of one diskctl run at queue depth $1.
diskctl_run() {
	"$DISKCTL" bench --rw randread --bs 4k --qd "$1" --time "$SECS" --prefill \
		--json mem:1G >"$OUT/d" || exit 1
	bench_json "$OUT/d" '"%d %d" % (round(d["iops"]), round(d["iops_per_cpu_second"]))'
}

one_round() {
	bench_record fio "$(fio_run)"
	bench_record d1 "$(diskctl_run 1)"
	bench_record d32 "$(diskctl_run 32)"
}
bench_rounds one_round

# table KIND TITLE HEAD: one table of $OUT/KIND.* rows.
table() {
	bench_table "$1" "$2" "$3" \
		"fio psync, tmpfs file" fio \
		"diskctl bench mem:1G --qd 1" d1 \
		"diskctl bench mem:1G --qd 32" d32
	f=$(bench_med "$1.fio")
	echo "ratio diskctl qd1/fio:  $(bench_ratio "$(bench_med "$1.d1")" "$f")"
	echo "ratio diskctl qd32/fio: $(bench_ratio "$(bench_med "$1.d32")" "$f")"
	echo
}

bench_machine
echo "$SECS s per run, 4 KiB random reads over 1 GiB, one thread"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second:" "requests / CPU-s"
echo "commands:"
echo "  fio --name=memread --filename=$SHM/FILE --size=1G --rw=randread --bs=4k --ioengine=psync --numjobs=1 --time_based --runtime=$SECS"
echo "  diskctl bench --rw randread --bs 4k --qd 1|32 --time $SECS --prefill --json mem:1G"
