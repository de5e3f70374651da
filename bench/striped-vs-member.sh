#!/bin/sh
# SPDX-License-Identifier: MIT
# striped over two members against one member, where each member is on a
# device with its own IOPS limit, as striping is used in practice (cloud disks
# with provisioned IOPS). Two loop devices (--direct-io=on), each over its own
# 1 GiB image file, each hold an ext4 file system with one member file of
# random data; a cgroup's block I/O throttle (v2 io.max riops=, or v1
# blkio.throttle.read_iops_device) caps each loop device at CAP reads per
# second, and the benchmark runs inside that cgroup. One member alone then
# reaches its cap, and a stripe over two can reach twice it. 4 KiB random
# reads at queue depth 32, one thread, alternating round by round:
#
#   capped:   diskctl on file:FA;direct and on striped:[file:FA;direct,
#             file:FB;direct] (FA, FB: the member files, O_DIRECT); the same
#             over the raw devices with blockdev:; fio (io_uring, O_DIRECT) on
#             FA, and on FA and FB in one job (a file picked at random per
#             request: what any consumer of two such disks can get);
#   uncapped: diskctl on the files outside the cgroup, for context (the two
#             images then share whatever disk BENCH_DIR is on).
#
#   sudo BUILD=/path/to/builddir bench/striped-vs-member.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the images go; not tmpfs,
# loop direct I/O needs O_DIRECT on them; default /var/tmp), CAP (read IOPS per
# device, 3000, AWS gp3's baseline; 2 x CAP must stay well below what the
# machine does uncapped, which the script checks), ROUNDS (3), SECS (5, per
# run), KEEP=1 keeps the images (and their member files) for the next run,
# WAIT=1 lets diskctl pick how it reaps (by default both sides run with
# --no-wait where diskctl has it, so one member and the stripe take
# completions the same way). Needs root, losetup, mkfs.ext4, mount and the
# kernel's block throttle (CONFIG_BLK_DEV_THROTTLING); fio is optional.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need losetup mkfs.ext4 mount umount python3

DIR=${BENCH_DIR:-/var/tmp}
CAP=${CAP:-3000}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
IMG_A="$DIR/diskcore-bench-striped-a.img"
IMG_B="$DIR/diskcore-bench-striped-b.img"
OUT=$(mktemp -d)
LOOP_A=""
LOOP_B=""
MOUNTED=""
CG=""
CG2_ENABLED="" # the cgroup v2 parent whose io controller this script enabled

cleanup() {
	keep_out=0
	for m in $MOUNTED; do
		umount "$m" 2>/dev/null || keep_out=1
	done
	[ -n "$LOOP_A" ] && losetup -d "$LOOP_A" 2>/dev/null
	[ -n "$LOOP_B" ] && losetup -d "$LOOP_B" 2>/dev/null
	# The bench processes have exited; the kernel may take a moment to let
	# the group go.
	i=0
	while [ -n "$CG" ] && [ -d "$CG" ] && ! rmdir "$CG" 2>/dev/null && [ $i -lt 20 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -n "$CG2_ENABLED" ] && echo "-io" >"$CG2_ENABLED/cgroup.subtree_control" 2>/dev/null
	if [ "$keep_out" = 1 ]; then
		echo "could not unmount under $OUT: left as it is" >&2
	else
		rm -rf "$OUT"
	fi
	[ "${KEEP:-0}" = 1 ] || rm -f "$IMG_A" "$IMG_B"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cannot() {
	echo "cannot measure here: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || cannot "needs root (loop devices, mounts and a cgroup I/O limit)"

# The images: 1 GiB each, with an ext4 file system, made on first use.
for img in "$IMG_A" "$IMG_B"; do
	if [ "$(stat -c %s "$img" 2>/dev/null || echo 0)" -ne 1073741824 ]; then
		rm -f "$img"
		truncate -s 1G "$img"
		mkfs.ext4 -q -F "$img" >"$OUT/le" 2>&1 ||
			cannot "mkfs.ext4 on $img failed: $(cat "$OUT/le")"
	fi
done

# A loop device over $1, with direct I/O to the image when it takes it.
loop_attach() {
	losetup -f --show --direct-io=on "$1" 2>/dev/null ||
		losetup -f --show "$1" 2>"$OUT/le" ||
		cannot "losetup on $1 failed: $(cat "$OUT/le")"
}

# Mount device $1 on $2 and give it its member file: 768 MiB of random data
# (written, so that reads reach the device).
member_mount() {
	mkdir -p "$2"
	mount "$1" "$2" 2>"$OUT/le" ||
		cannot "mount $1 failed (an old image? KEEP=0 removes it): $(cat "$OUT/le")"
	MOUNTED="$MOUNTED $2"
	if [ "$(stat -c %s "$2/member" 2>/dev/null || echo 0)" -ne 805306368 ]; then
		echo "writing the member file on $1 (768 MiB of random data)..." >&2
		head -c 768M /dev/urandom >"$2/member"
		sync "$2/member"
	fi
}
LOOP_A=$(loop_attach "$IMG_A")
LOOP_B=$(loop_attach "$IMG_B")
member_mount "$LOOP_A" "$OUT/a"
member_mount "$LOOP_B" "$OUT/b"
FA="$OUT/a/member"
FB="$OUT/b/member"
DIO=$(cat "/sys/block/${LOOP_A#/dev/}/loop/dio" 2>/dev/null || echo 0)
DEV_A=$(cat "/sys/class/block/${LOOP_A#/dev/}/dev")
DEV_B=$(cat "/sys/class/block/${LOOP_B#/dev/}/dev")

# The cgroup: v2 when a cgroup2 hierarchy offers the io controller, else v1 blkio.
cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
cg1=$(awk '$3 == "cgroup" && $4 ~ /(^|,)blkio(,|$)/ { print $2; exit }' /proc/mounts)
if [ -n "$cg2" ] && grep -qw io "$cg2/cgroup.controllers" 2>/dev/null; then
	if ! grep -qw io "$cg2/cgroup.subtree_control"; then
		echo "+io" >"$cg2/cgroup.subtree_control" 2>"$OUT/ce" ||
			cannot "enabling the io controller in $cg2 failed: $(cat "$OUT/ce")"
		CG2_ENABLED=$cg2
	fi
	cg_root=$cg2
	cg_file=io.max
	cg_value="riops=$CAP"
elif [ -n "$cg1" ] && [ -e "$cg1/blkio.throttle.read_iops_device" ]; then
	cg_root=$cg1
	cg_file=blkio.throttle.read_iops_device
	cg_value=$CAP
else
	cannot "no cgroup with a block I/O throttle (cgroup v2 without the io" \
		"controller in ${cg2:-<no cgroup2 mount>}/cgroup.controllers, and no v1" \
		"blkio hierarchy with blkio.throttle.read_iops_device)"
fi
CG="$cg_root/diskcore-bench-striped.$$"
mkdir "$CG" 2>"$OUT/ce" || cannot "mkdir $CG: $(cat "$OUT/ce")"
for dev in "$DEV_A" "$DEV_B"; do
	echo "$dev $cg_value" >"$CG/$cg_file" 2>"$OUT/ce" ||
		cannot "writing '$dev $cg_value' to $CG/$cg_file failed: $(cat "$OUT/ce")"
done
LIMIT="$cg_file '$DEV_A $cg_value', '$DEV_B $cg_value'"

# Run a command inside the capped cgroup (its threads and io_uring workers too),
# or outside it.
capped() {
	sh -c 'echo $$ >"$0" && exec "$@"' "$CG/cgroup.procs" "$@"
}
uncapped() {
	"$@"
}

FLAGS=""
if [ "${WAIT:-0}" != 1 ] && "$DISKCTL" bench --help 2>&1 | grep -q -- --no-wait; then
	FLAGS="--no-wait"
fi

# IOPS of one diskctl run on spec $2; $1 is capped or uncapped.
diskctl_iops() {
	# shellcheck disable=SC2086
	"$1" "$DISKCTL" bench --rw randread --bs 4k --qd 32 --time "$SECS" --ro $FLAGS \
		--json "$2" >"$OUT/d" || exit 1
	bench_json "$OUT/d" 'round(d["iops"])'
}

# IOPS of one capped fio run over the files named in $1 (colon-separated).
fio_iops() {
	capped fio --name=bench --filename="$1" --file_service_type=random --readonly \
		--ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=32 \
		--time_based --runtime="$SECS" --output-format=json >"$OUT/f" 2>"$OUT/fe" ||
		{ cat "$OUT/fe" >&2; exit 1; }
	bench_json "$OUT/f" 'round(d["jobs"][0]["read"]["iops"])'
}

FIO=0
command -v fio >/dev/null 2>&1 && FIO=1
[ "$FIO" = 1 ] || echo "fio not found: fio rows skipped" >&2

F_ONE="file:$FA;direct"
F_TWO="striped:[file:$FA;direct,file:$FB;direct]"
B_ONE="blockdev:$LOOP_A;direct"
B_TWO="striped:[blockdev:$LOOP_A;direct,blockdev:$LOOP_B;direct]"

cf1=""; cf2=""; cb1=""; cb2=""; fo1=""; fo2=""; uf1=""; uf2=""
one_round() {
	cf1="$cf1 $(diskctl_iops capped "$F_ONE")"
	cf2="$cf2 $(diskctl_iops capped "$F_TWO")"
	cb1="$cb1 $(diskctl_iops capped "$B_ONE")"
	cb2="$cb2 $(diskctl_iops capped "$B_TWO")"
	if [ "$FIO" = 1 ]; then
		fo1="$fo1 $(fio_iops "$FA")"
		fo2="$fo2 $(fio_iops "$FA:$FB")"
	fi
	uf1="$uf1 $(diskctl_iops uncapped "$F_ONE")"
	uf2="$uf2 $(diskctl_iops uncapped "$F_TWO")"
}
bench_rounds one_round

bench_machine
echo "members: FA, FB = 768 MiB files on ext4 on $LOOP_A ($DEV_A) and $LOOP_B ($DEV_B)," \
	"loop devices over $IMG_A and $IMG_B (loop direct I/O" \
	"$([ "$DIO" = 1 ] && echo on || echo off)); cap per device: $LIMIT;" \
	"4 KiB random reads, QD 32, 1 thread, ${SECS}s per run"
echo
# shellcheck disable=SC2086
{
	bench_header "$ROUNDS"
	bench_row "capped: diskctl file:FA;direct" $cf1
	bench_row "capped: diskctl striped:[file:FA,file:FB]" $cf2
	bench_row "capped: diskctl blockdev:A;direct" $cb1
	bench_row "capped: diskctl striped:[blockdev:A,B]" $cb2
	if [ "$FIO" = 1 ]; then
		bench_row "capped: fio io_uring, FA" $fo1
		bench_row "capped: fio io_uring, FA and FB (random)" $fo2
	fi
	bench_row "uncapped: diskctl file:FA;direct" $uf1
	bench_row "uncapped: diskctl striped:[file:FA,file:FB]" $uf2
}
echo
echo "striped / one member, capped, file:      $(bench_ratio "$(bench_median "$cf2")" "$(bench_median "$cf1")")"
echo "striped / one member, capped, blockdev:  $(bench_ratio "$(bench_median "$cb2")" "$(bench_median "$cb1")")"
if [ "$FIO" = 1 ]; then
	echo "fio FA and FB / fio FA, capped:          $(bench_ratio "$(bench_median "$fo2")" "$(bench_median "$fo1")")"
	echo "striped file: / fio FA and FB, capped:   $(bench_ratio "$(bench_median "$cf2")" "$(bench_median "$fo2")")"
fi
echo "one member / cap (file:):                $(bench_ratio "$(bench_median "$cf1")" "$CAP")"
echo "striped / one member, uncapped, file:    $(bench_ratio "$(bench_median "$uf2")" "$(bench_median "$uf1")")"
# The capped comparison is about the stripe only when the machine has room for
# both caps at once, and when one member does reach its cap.
if awk -v u="$(bench_median "$uf2")" -v c="$CAP" 'BEGIN { exit !(u < 2.2 * c) }'; then
	echo "warning: uncapped, the stripe does only $(bench_median "$uf2") IOPS, below" \
		"2.2 x CAP: the machine, not the caps, limits it; lower CAP" >&2
fi
if awk -v m="$(bench_median "$cf1")" -v c="$CAP" 'BEGIN { exit !(m < 0.9 * c) }'; then
	echo "warning: one member reaches only $(bench_median "$cf1") of its cap $CAP; lower CAP" >&2
fi
echo
echo "commands (A, B: the loop devices; FA, FB: the member files on them; capped:"
echo "run inside the cgroup):"
echo "  diskctl bench --rw randread --bs 4k --qd 32 --time $SECS --ro${FLAGS:+ $FLAGS} --json SPEC"
echo "    SPEC: 'file:FA;direct' 'striped:[file:FA;direct,file:FB;direct]'"
echo "          'blockdev:A;direct' 'striped:[blockdev:A;direct,blockdev:B;direct]'"
echo "  fio --name=bench --filename=FA|FA:FB --file_service_type=random --readonly --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=32 --time_based --runtime=$SECS"
