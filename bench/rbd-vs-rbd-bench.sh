#!/bin/sh
# SPDX-License-Identifier: MIT
# The rbd plugin against Ceph's own `rbd bench` on the same image of a
# throwaway one-OSD cluster (tests/ceph-cluster.sh, memstore), alternating,
# ROUNDS each: 4 KiB random reads at 32 in flight,
#   diskctl bench --ro --rw randread --bs 4K --qd 32 rbd:diskcore/disk
#   rbd bench --io-type read --io-pattern rand --io-size 4K --io-threads 32
# (IOPS, and requests per CPU-second of the client process).
#
#   BUILD=/path/to/builddir bench/rbd-vs-rbd-bench.sh
#
# Environment: BUILD or DISKCTL, ROUNDS (3), SECS (seconds per diskctl run, 5;
# rbd bench runs the same number of requests its first round managed in SECS),
# SIZE (the image, 1G, written in full first so reads find data), MODE (extra
# diskctl bench flags, e.g. --poll), NICE.
# The cluster is started here and stopped at the end; its start-up time is
# printed.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need rbd /usr/bin/time ceph-mon ceph-osd

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
SIZE=${SIZE:-1G}
MODE=${MODE:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mktemp -d)
cleanup() {
	"$SRC/tests/ceph-cluster.sh" stop "$OUT/ceph" || true
	rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

"$SRC/tests/ceph-cluster.sh" start "$OUT/ceph" "$SIZE" | tee "$OUT/startup"
. "$OUT/ceph/env"
CONF=$CEPH_CONF
SPEC="rbd:$RBD_POOL/$RBD_IMAGE;conf=$CONF"
echo "filling $RBD_POOL/$RBD_IMAGE ($SIZE)..." >&2
rbd -c "$CONF" bench --io-type write --io-pattern seq --io-size 4M --io-threads 8 \
	--io-total "$SIZE" "$RBD_POOL/$RBD_IMAGE" >/dev/null

# IOPS and requests per CPU-second of diskctl bench.
diskctl_run() {
	# shellcheck disable=SC2086 # MODE is a list of flags
	bench_run "$DISKCTL" bench --ro --rw randread --bs 4K --qd 32 --time "$SECS" \
		$MODE --json "$SPEC" >"$OUT/d"
	bench_json "$OUT/d" 'str(round(d["iops"])) + " " + str(round(d["iops_per_cpu_second"]))'
}

# The same for rbd bench, over OPS requests (CPU from /usr/bin/time).
rbd_run() {
	bench_run /usr/bin/time -f "%U %S" -o "$OUT/t" rbd -c "$CONF" bench --io-type read \
		--io-pattern rand --io-size 4K --io-threads 32 --io-total "$(($1 * 4096))" \
		"$RBD_POOL/$RBD_IMAGE" >"$OUT/r"
	iops=$(awk '/^elapsed:/ { printf "%.0f", $6 }' "$OUT/r")
	awk -v n="$1" -v iops="$iops" '{ cpu = $1 + $2; printf "%s %.0f\n", iops, (cpu > 0 ? n / cpu : 0) }' "$OUT/t"
}

OPS=
one_round() {
	res=$(diskctl_run)
	bench_record diskctl "$res"
	[ -n "$OPS" ] || OPS=$(bench_json "$OUT/d" 'd["requests"]')
	bench_record rbd "$(rbd_run "$OPS")"
}
bench_rounds one_round

name_d="diskctl bench rbd: 4K randread QD32${MODE:+ $MODE}"
name_r="rbd bench read rand 4K io-threads 32"
# shellcheck disable=SC2046
{
	echo "4 KiB random reads, 32 in flight, image $RBD_POOL/$RBD_IMAGE ($SIZE, written in full)"
	echo
	bench_header "$ROUNDS" "IOPS"
	bench_row "$name_r" $(cat "$OUT/iops.rbd")
	bench_row "$name_d" $(cat "$OUT/iops.diskctl")
	echo
	echo "ratio diskctl / rbd bench (medians): $(bench_ratio "$(bench_median $(cat "$OUT/iops.diskctl"))" "$(bench_median $(cat "$OUT/iops.rbd"))")"
	echo
	bench_header "$ROUNDS" "requests per CPU-second (client)"
	bench_row "$name_r" $(cat "$OUT/cpu.rbd")
	bench_row "$name_d" $(cat "$OUT/cpu.diskctl")
	echo
	echo "ratio diskctl / rbd bench (medians): $(bench_ratio "$(bench_median $(cat "$OUT/cpu.diskctl"))" "$(bench_median $(cat "$OUT/cpu.rbd"))")"
	echo
	cat "$OUT/startup"
	echo "spec: $SPEC"
	bench_machine
}
