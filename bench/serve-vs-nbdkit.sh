#!/bin/sh
# SPDX-License-Identifier: MIT
# NBD servers on the same RAM-backed 1 GiB file, copied in and out by nbdcopy:
#   diskctl serve file:F                       (the built-in server)
#   nbdkit file F                              (nbdkit's own file plugin)
#   nbdkit diskcore file:F                     (the chain through the nbdkit plugin)
# alternating, ROUNDS each, unix sockets; MiB/s per run and the medians' ratios.
#
#   BUILD=/path/to/builddir bench/serve-vs-nbdkit.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (default /dev/shm: RAM-backed, so the
# servers and not a disk are measured), ROUNDS (5), SIZE_MIB (1024), KEEP=1
# keeps the files. Needs nbdkit, nbdcopy (libnbd-bin) and, for the third row,
# the nbdkit plugin built (nbdkit-plugin-dev). DISKCTL_B=/other/diskctl adds a
# row for a second build of diskctl serve (an A/B of two versions in one run),
# with DISKCTL_B_PLUGINS as its DISKCORE_PLUGIN_PATH when it needs its own.
set -eu
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/dev/shm}
ROUNDS=${ROUNDS:-5}
bench_init nbdkit nbdcopy

SIZE_MIB=${SIZE_MIB:-1024}
FILE="$DIR/diskcore-bench-serve.img"
SRC="$DIR/diskcore-bench-serve.src"
PLUGIN="$(dirname "$(dirname "$DISKCTL")")/tools/nbdkit-plugin/nbdkit-diskcore-plugin.so"
bench_inputs "$FILE" "$SRC"

if [ "$(stat -c %s "$SRC" 2>/dev/null || echo 0)" -ne $((SIZE_MIB << 20)) ]; then
	echo "creating $SRC ($SIZE_MIB MiB of random data)..." >&2
	head -c $((SIZE_MIB << 20)) /dev/urandom >"$SRC"
fi
cp "$SRC" "$FILE"

"$DISKCTL" serve --unix "$OUT/serve.sock" "file:$FILE" 2>"$OUT/serve.log" &
echo $! >"$OUT/pid.serve"
nbdkit -f -U "$OUT/nbdkit.sock" file "$FILE" 2>"$OUT/nbdkit.log" &
echo $! >"$OUT/pid.nbdkit"
SERVERS="serve nbdkit"
if [ -n "${DISKCTL_B:-}" ]; then
	env ${DISKCTL_B_PLUGINS:+DISKCORE_PLUGIN_PATH="$DISKCTL_B_PLUGINS"} \
		"$DISKCTL_B" serve --unix "$OUT/serveb.sock" "file:$FILE" 2>"$OUT/serveb.log" &
	echo $! >"$OUT/pid.serveb"
	SERVERS="$SERVERS serveb"
fi
if [ -f "$PLUGIN" ]; then
	nbdkit -f -U "$OUT/plugin.sock" "$PLUGIN" "file:$FILE" \
		2>"$OUT/plugin.log" &
	echo $! >"$OUT/pid.plugin"
	SERVERS="$SERVERS plugin"
else
	echo "note: $PLUGIN not built: the plugin row is left out" >&2
fi
for s in $SERVERS; do
	PIDS="$PIDS $(cat "$OUT/pid.$s")"
	bench_wait_sock "$OUT/$s.sock"
done

# ticks SERVER: user + system clock ticks the server process has used so far
ticks() {
	awk '{ print $14 + $15 }' "/proc/$(cat "$OUT/pid.$1")/stat"
}

# mibs CMD...: MiB/s of one run of CMD moving SIZE_MIB MiB
mibs() {
	t0=$(date +%s.%N)
	bench_run "$@" || { echo "error: $* failed" >&2; exit 1; }
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" -v m="$SIZE_MIB" 'BEGIN { printf "%.0f\n", m / (b - a) }'
}

one_round() {
	for s in $SERVERS; do
		u="nbd+unix:///?socket=$OUT/$s.sock"
		for op in read write; do
			c0=$(ticks "$s")
			if [ $op = read ]; then
				mibs nbdcopy "$u" null: >>"$OUT/read.$s"
			else
				mibs nbdcopy "$SRC" "$u" >>"$OUT/write.$s"
			fi
			# the server's CPU milliseconds for the run
			echo "$c0 $(ticks "$s") $(getconf CLK_TCK)" |
				awk '{ printf "%.0f\n", ($2 - $1) * 1000 / $3 }' >>"$OUT/cpu$op.$s"
		done
	done
}
bench_rounds one_round

name() {
	case $1 in
	serve) echo "diskctl serve file:F" ;;
	nbdkit) echo "nbdkit file F" ;;
	plugin) echo "nbdkit diskcore file:F" ;;
	serveb) echo "diskctl serve file:F (B)" ;;
	esac
}
bench_machine
echo "file: $FILE ($SIZE_MIB MiB), nbdcopy defaults (multi-conn: 4 connections, 64 requests of 256 KiB)"
# The MiB/s tables, then the server CPU ones ($OUT/cpuread.*, cpuwrite.*).
for kind in "" cpu; do
	for op in read write; do
		echo
		if [ -z "$kind" ]; then
			bench_header "$ROUNDS" "nbdcopy $op, MiB/s"
		else
			bench_header "$ROUNDS" "server CPU ms (user + system), $op"
		fi
		for s in $SERVERS; do
			# shellcheck disable=SC2046
			bench_row "$(name "$s")" $(cat "$OUT/$kind$op.$s")
		done
	done
done
echo
for op in read write; do
	echo "ratio diskctl serve / nbdkit file, $op: $(bench_ratio "$(bench_med "$op.serve")" "$(bench_med "$op.nbdkit")")"
	echo "server CPU per GiB, nbdkit file / diskctl serve, $op: $(bench_ratio "$(bench_med "cpu$op.nbdkit")" "$(bench_med "cpu$op.serve")")"
	case " $SERVERS " in *" serveb "*)
		echo "ratio diskctl serve (B) / nbdkit file, $op: $(bench_ratio "$(bench_med "$op.serveb")" "$(bench_med "$op.nbdkit")")"
		echo "server CPU per GiB, nbdkit file / diskctl serve (B), $op: $(bench_ratio "$(bench_med "cpu$op.nbdkit")" "$(bench_med "cpu$op.serveb")")" ;;
	esac
	case " $SERVERS " in *" plugin "*)
		echo "ratio diskctl serve / nbdkit diskcore, $op: $(bench_ratio "$(bench_med "$op.serve")" "$(bench_med "$op.plugin")")"
		echo "ratio nbdkit diskcore / nbdkit file, $op: $(bench_ratio "$(bench_med "$op.plugin")" "$(bench_med "$op.nbdkit")")" ;;
	esac
done
echo
echo "commands:"
echo "  diskctl serve --unix S file:F;  nbdkit -f -U S file F;  nbdkit -f -U S nbdkit-diskcore-plugin.so file:F"
echo "  read:  nbdcopy 'nbd+unix:///?socket=S' null:"
echo "  write: nbdcopy SRC 'nbd+unix:///?socket=S'"
