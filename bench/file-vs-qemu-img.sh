#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl bench on file: (O_DIRECT) against qemu-img bench (-t none) on the same
# 1 GiB file of real data, 4 KiB reads at queue depth 32, alternating, ROUNDS each.
#
#   BUILD=/path/to/builddir bench/file-vs-qemu-img.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the 1 GiB file goes; not tmpfs,
# O_DIRECT must work there; default /var/tmp), ROUNDS (3), COUNT (requests per
# run, 200000), AIO (qemu-img -i: threads, the default, or io_uring / native),
# KEEP=1 keeps the file.
#
# qemu-img bench only walks the image with a fixed step, so there are two pairs:
#   sequential: qemu-img bench (step 4K)             vs diskctl --rw read
#   scattered:  qemu-img bench (step 4K * 40009)     vs diskctl --rw randread
# The odd step visits every 4 KiB block of the power-of-two-sized file once, in
# an order with no locality, which is what random reads measure.
# A second table gives requests per CPU-second of each process (user + system,
# from /usr/bin/time), which moves less than IOPS when the machine is busy.
set -eu
. "$(dirname "$0")/common.sh"
bench_init qemu-img python3 /usr/bin/time

COUNT=${COUNT:-200000}
AIO=${AIO:-threads}
FILE="$DIR/diskcore-bench-1g.img"
STEP=$((4096 * 40009))
bench_inputs "$FILE"

bench_random_file "$FILE"

# "IOPS PER_CPU" of one qemu-img bench run with step $1.
qemu_run() {
	bench_qemu_img -f raw -t none -i "$AIO" -d 32 -s 4k -S "$1" "$FILE"
}

# "IOPS PER_CPU" of one diskctl bench run with --rw $1.
diskctl_run() {
	bench_diskctl --rw "$1" --bs 4k --qd 32 --ro "file:$FILE;direct"
}

one_round() {
	bench_record q_seq "$(qemu_run 4096)"
	bench_record d_seq "$(diskctl_run read)"
	bench_record q_rnd "$(qemu_run $STEP)"
	bench_record d_rnd "$(diskctl_run randread)"
}
bench_rounds one_round

# table KIND TITLE HEAD: one table of $OUT/KIND.* rows, then the ratios.
table() {
	bench_table "$1" "$2" "$3" \
		"qemu-img bench -t none, sequential" q_seq \
		"diskctl bench file:;direct --rw read" d_seq \
		"qemu-img bench -t none, step 4K*40009" q_rnd \
		"diskctl bench file:;direct --rw randread" d_rnd
	bench_say_ratio "ratio diskctl/qemu-img, sequential:" "$1.d_seq" "$1.q_seq"
	bench_say_ratio "ratio diskctl/qemu-img, scattered: " "$1.d_rnd" "$1.q_rnd"
	echo
}

bench_machine
echo "file: $FILE, $COUNT requests per run, qemu-img -i $AIO"
echo
table iops "IOPS:" IOPS
table cpu "Requests per CPU-second (user + system time of the process):" "requests / CPU-s"
echo "commands:"
echo "  qemu-img bench -f raw -t none -i $AIO -c $COUNT -d 32 -s 4k [-S 4096 | -S $STEP] FILE"
echo "  diskctl bench --rw read|randread --bs 4k --qd 32 --count $COUNT --ro --json 'file:FILE;direct'"
