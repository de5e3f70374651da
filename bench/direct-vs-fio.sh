#!/bin/sh
# SPDX-License-Identifier: MIT
# 'file:F;direct' against fio --ioengine=io_uring --direct=1 (fio's defaults
# otherwise), 4 KiB random reads at queue depth 32, one thread, on three
# O_DIRECT targets (docs/performance.md, "O_DIRECT against fio"):
#
#  disk   a 1 GiB file on the VM's disk (BENCH_DIR, default /var/tmp): the
#         disk bounds both tools, so IOPS meet at its limit;
#  tmpfs  a 1 GiB file in /dev/shm opened O_DIRECT (tmpfs takes it since
#         Linux 6.6): every read is a copy done inside io_uring_enter, so both
#         tools are CPU-bound and the IOPS measure the software;
#  loop   a loop device (losetup --direct-io=off) over the tmpfs file: a
#         block device completing asynchronously, bound by the loop worker.
#
# A third run per target is diskctl with DISKCORE_IO_ENGINE=uring-shared:
# the same binary without the single-issuer ring a DC_QUEUE_THREAD queue
# (diskctl bench's) otherwise gets, what that ring is worth.
#
# Both tools run pinned to the same CPU (taskset -c $CPU) at the same
# priority ($NICE), alternating which goes first round by round. CPU time is
# measured the same way for both, from outside (/usr/bin/time: user + system
# of every thread, io_uring's workers included; fio's own usr_cpu/sys_cpu
# count only its job thread), less what each tool costs to start and exit
# (measured once, runs of 32 requests), and divides the requests each reports.
#
#   BUILD=/path/to/builddir bench/direct-vs-fio.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR, ROUNDS (5), SECS (2, per run), CPU
# (the CPU both are pinned to; default 1, "" pins nothing), NICE, TARGETS
# ("disk tmpfs loop"), KEEP=1 keeps the files.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need fio python3 taskset losetup

DIR=${BENCH_DIR:-/var/tmp}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-2}
CPU=${CPU-1}
TARGETS=${TARGETS:-disk tmpfs loop}
DISK="$DIR/diskcore-bench-direct-1g.img"
SHM="/dev/shm/diskcore-bench-direct-1g.img"
OUT=$(mktemp -d)
LOOP=
cleanup() {
	[ -z "$LOOP" ] || losetup -d "$LOOP"
	rm -rf "$OUT"
	[ "${KEEP:-0}" = 1 ] || rm -f "$DISK" "$SHM"
}
trap cleanup EXIT INT TERM

# pinned CMD...: CMD on $CPU at $NICE, its user + system seconds in $OUT/t.
pinned() {
	if [ -n "$CPU" ]; then
		set -- taskset -c "$CPU" "$@"
	fi
	bench_run /usr/bin/time -f "%U %S" -o "$OUT/t" "$@"
}

# "IOPS PER_CPU" from IOPS, a request count and the CPU seconds of the tool's
# start and exit ($3, subtracted), with the run's time in $OUT/t.
per_cpu() {
	awk -v iops="$1" -v n="$2" -v b="$3" '{ c = $1 + $2 - b } END { printf "%.0f %.0f\n", iops, (c > 0 ? n / c : 0) }' "$OUT/t"
}

# diskctl_run F [ARG...]: one run on F (ARG... instead of --time $SECS), in
# the engine mode $ENGINE (DISKCORE_IO_ENGINE; empty: the default).
diskctl_run() {
	f=$1
	shift
	[ $# -gt 0 ] || set -- --time "$SECS"
	pinned env ${ENGINE:+DISKCORE_IO_ENGINE=$ENGINE} "$DISKCTL" bench --rw randread --bs 4k --qd 32 "$@" --ro --json \
		"file:$f;direct" >"$OUT/d" || exit 1
	# shellcheck disable=SC2046
	per_cpu $(bench_json "$OUT/d" '"%d %d" % (round(d["iops"]), d["requests"])') "${BASE_D:-0}"
}

fio_run() {
	f=$1
	shift
	[ $# -gt 0 ] || set -- --time_based --runtime="$SECS"
	pinned fio --name=bench --filename="$f" --readonly --ioengine=io_uring --direct=1 \
		--invalidate=0 --rw=randread --bs=4k --iodepth=32 --numjobs=1 "$@" \
		--output-format=json >"$OUT/f" 2>"$OUT/fe" ||
		{ cat "$OUT/fe" >&2; exit 1; }
	# shellcheck disable=SC2046
	per_cpu $(bench_json "$OUT/f" '"%d %d" % (round(d["jobs"][0]["read"]["iops"]), d["jobs"][0]["read"]["total_ios"])') "${BASE_F:-0}"
}

# fixed_cpu RUN F ARG...: the median CPU seconds of three runs of 32 requests,
# what the tool costs whatever it runs (fio: ~0.15 s to start its job process).
fixed_cpu() {
	v=
	for _ in 1 2 3; do
		"$1" "$2" "$3" >/dev/null
		v="$v $(awk '{ print $1 + $2 }' "$OUT/t")"
	done
	bench_median "$v"
}

# The file or device of target $1.
target_path() {
	case $1 in
	disk) echo "$DISK" ;;
	tmpfs) echo "$SHM" ;;
	loop) echo "$LOOP" ;;
	esac
}

for t in $TARGETS; do
	case $t in
	disk) bench_random_file "$DISK" ;;
	tmpfs | loop)
		[ -f "$SHM" ] || { echo "copying 1 GiB to $SHM..." >&2; head -c 1G /dev/urandom >"$SHM"; }
		if [ "$t" = tmpfs ] && ! dd if="$SHM" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
			echo "error: O_DIRECT on tmpfs needs Linux 6.6 or later (TARGETS=\"disk loop\")" >&2
			exit 1
		fi
		if [ "$t" = loop ]; then
			LOOP=$(losetup -f --show --direct-io=off "$SHM")
		fi
		;;
	*) echo "error: unknown target $t" >&2; exit 1 ;;
	esac
done

first=$(target_path "${TARGETS%% *}")
BASE_D=$(fixed_cpu diskctl_run "$first" "--count=32")
BASE_F=$(fixed_cpu fio_run "$first" "--number_ios=32")

ROUND=0
one_round() {
	ROUND=$((ROUND + 1))
	for t in $TARGETS; do
		p=$(target_path "$t")
		if [ $((ROUND % 2)) = 1 ]; then
			bench_record "d$t" "$(diskctl_run "$p")"
			bench_record "f$t" "$(fio_run "$p")"
			bench_record "s$t" "$(ENGINE=uring-shared diskctl_run "$p")"
		else
			bench_record "s$t" "$(ENGINE=uring-shared diskctl_run "$p")"
			bench_record "f$t" "$(fio_run "$p")"
			bench_record "d$t" "$(diskctl_run "$p")"
		fi
	done
}
bench_rounds one_round

# rows KIND: "LABEL NAME" pairs of every target, for bench_table.
label() {
	case $1 in
	disk) echo "VM disk ($DISK)" ;;
	tmpfs) echo "tmpfs O_DIRECT ($SHM)" ;;
	loop) echo "loop --direct-io=off over tmpfs" ;;
	esac
}
table() {
	set -- "$1" "$2" "$3"
	for t in $TARGETS; do
		set -- "$@" "diskctl file:;direct, $t" "d$t" "fio io_uring, $t" "f$t" \
			"diskctl, shared rings, $t" "s$t"
	done
	bench_table "$@"
}

bench_machine
echo "4 KiB random reads, QD32, one thread, ${SECS}s per run, ${ROUNDS} rounds;" \
	"pinned to CPU ${CPU:-none}${NICE:+, nice $NICE}"
echo "CPU = user + system of the whole process (/usr/bin/time) less its start and exit" \
	"(a run of 32 requests: diskctl ${BASE_D}s, fio ${BASE_F}s)"
for t in $TARGETS; do echo "  $t: $(label "$t")"; done
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second:" "requests / CPU-s"
echo "ratios file:;direct/fio: of the medians; and paired, the median (lowest-highest)"
echo "of the rounds' ratios, each round's two runs back to back, with a 95% interval"
echo "for that median (bench_paired_ci): above, level or below fio"
for t in $TARGETS; do
	# shellcheck disable=SC2046
	set -- $(bench_paired "iops.d$t" "iops.f$t") $(bench_paired_ci "iops.d$t" "iops.f$t") \
		$(bench_paired "cpu.d$t" "cpu.f$t")
	verdict=$(awk -v lo="$4" -v hi="$5" 'BEGIN { print (lo > 1 ? "above" : hi < 1 ? "below" : "level") }')
	printf '  %-6s IOPS (target >= 1.0): %s, paired %s (%s-%s), 95%% %s-%s: %s   per CPU-second: %s, paired %s\n' \
		"$t" "$(bench_ratio "$(bench_med "iops.d$t")" "$(bench_med "iops.f$t")")" \
		"$1" "$2" "$3" "$4" "$5" "$verdict" \
		"$(bench_ratio "$(bench_med "cpu.d$t")" "$(bench_med "cpu.f$t")")" "$6"
done
echo "its own ring against shared rings (DISKCORE_IO_ENGINE=uring-shared), paired:"
for t in $TARGETS; do
	# shellcheck disable=SC2046
	set -- $(bench_paired "iops.d$t" "iops.s$t") $(bench_paired "cpu.d$t" "cpu.s$t")
	printf '  %-6s IOPS %s (%s-%s)   per CPU-second %s (%s-%s)\n' "$t" "$@"
done
echo
pin=${CPU:+taskset -c $CPU }
echo "commands (F = the target's file or device):"
echo "  ${pin}diskctl bench --rw randread --bs 4k --qd 32 --time $SECS --ro --json 'file:F;direct'"
echo "  ${pin}fio --name=bench --filename=F --readonly --ioengine=io_uring --direct=1 --invalidate=0 --rw=randread --bs=4k --iodepth=32 --numjobs=1 --time_based --runtime=$SECS --output-format=json"
