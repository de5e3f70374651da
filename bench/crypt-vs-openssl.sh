#!/bin/sh
# SPDX-License-Identifier: MIT
# crypt: 64 KiB sequential reads and writes through `crypt:xts-aes-256:K:mem:`
# against `openssl speed -evp aes-256-xts -bytes 65536` (one core, one call per
# 64 KiB), alternating round by round. With 512-byte sectors crypt runs 128
# data units per request, each with its own tweak; with 4096-byte sectors 16.
# The rows marked "libgcrypt" run with DISKCORE_XTS_GENERIC=1: libgcrypt's
# XTS, one call per unit, instead of common/xts/vaes.c (xts.h).
#
#   BUILD=/path/to/builddir bench/crypt-vs-openssl.sh
#
# Environment: BUILD or DISKCTL, ROUNDS (3), SECS (3 per run), NICE (e.g. -20).
#
# openssl speed divides by the user CPU time it spent, so the one-thread
# comparison uses diskctl's bytes per CPU-second (user + system, the whole
# process: mem's copy, the core, the bench loop). The two-thread rows are wall
# clock: what two submitting queues get out of the machine.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need openssl

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
OUT=$(mktemp -d)
KEY="$OUT/key"
trap 'rm -rf "$OUT"' EXIT INT TERM
head -c 64 /dev/urandom >"$KEY"
chmod 600 "$KEY"

# MB/s (10^6) of openssl speed over 64 KiB buffers.
openssl_run() {
	bench_run openssl speed -evp aes-256-xts -bytes 65536 -seconds "$SECS" 2>/dev/null |
		awk '/^AES-256-XTS/ { sub("k$", "", $2); printf "%.0f\n", $2 * 1000 / 1e6 }'
}

# "MB/s MB/s-per-CPU-second" of one diskctl run: $1 read|write, $2 sector
# size, $3 threads, $4 1 for libgcrypt's XTS.
diskctl_run() {
	if [ "$4" = 1 ]; then
		export DISKCORE_XTS_GENERIC=1
	else
		unset DISKCORE_XTS_GENERIC
	fi
	bench_run "$DISKCTL" bench --rw "$1" --bs 64k --qd 8 --threads "$3" --time "$SECS" \
		--prefill --json "crypt:xts-aes-256:$KEY:mem:256M;sector=$2" >"$OUT/d" ||
		exit 1
	bench_json "$OUT/d" '"%d %d" % (round(d["mb_per_s"]), round(d["iops_per_cpu_second"] * d["bs"] / 1e6))'
}

ROWS="r512 w512 r4096 w4096 r512t2 w512t2 r4096t2 w4096t2 r512g w512g r4096g w4096g"
one_round() {
	v=$(openssl_run)
	bench_record ossl "$v $v"
	for row in $ROWS; do
		rw="read"
		case $row in w*) rw="write" ;; esac
		ss=$(echo "$row" | sed 's/^[rw]\([0-9]*\).*/\1/')
		t=1
		case $row in *t2) t=2 ;; esac
		g=0
		case $row in *g) g=1 ;; esac
		bench_record "$row" "$(diskctl_run "$rw" "$ss" "$t" "$g")"
	done
}
bench_rounds one_round

name() {
	case $1 in
	ossl) echo "openssl speed -evp aes-256-xts, 64 KiB" ;;
	r*g | w*g) echo "crypt $(echo "$1" | cut -c1 | sed 's/r/read/;s/w/write/'), $(echo "$1" | sed 's/^[rw]\([0-9]*\).*/\1/') B sectors, libgcrypt" ;;
	r*t2 | w*t2) echo "crypt $(echo "$1" | cut -c1 | sed 's/r/read/;s/w/write/'), $(echo "$1" | sed 's/^[rw]\([0-9]*\).*/\1/') B sectors, 2 threads" ;;
	*) echo "crypt $(echo "$1" | cut -c1 | sed 's/r/read/;s/w/write/'), $(echo "$1" | sed 's/^[rw]\([0-9]*\).*/\1/') B sectors" ;;
	esac
}

bench_machine
echo "$SECS s per run, 64 KiB sequential requests, QD8, crypt:xts-aes-256:K:mem:256M"
echo
# table KIND TITLE HEAD: every row's $OUT/KIND.ROW values.
table() {
	echo "$2"
	echo
	bench_header "$ROUNDS" "$3"
	for row in ossl $ROWS; do
		# shellcheck disable=SC2046
		bench_row "$(name "$row")" $(cat "$OUT/$1.$row")
	done
	echo
}
table cpu "MB/s per CPU-second (openssl: per user CPU-second, as it reports):" \
	"MB/s per CPU-s"
table iops "MB/s (wall clock):" "MB/s"
# shellcheck disable=SC2046
o=$(bench_median $(cat "$OUT/cpu.ossl"))
for row in r512 w512 r4096 w4096 r512g w512g r4096g w4096g; do
	# shellcheck disable=SC2046
	echo "ratio $(name "$row") / openssl, per CPU-s: $(bench_ratio "$(bench_median $(cat "$OUT/cpu.$row"))" "$o")"
done
for row in r512t2 w512t2 r4096t2 w4096t2; do
	# shellcheck disable=SC2046
	echo "ratio $(name "$row") / openssl, wall: $(bench_ratio "$(bench_median $(cat "$OUT/iops.$row"))" "$o")"
done
echo
echo "commands:"
echo "  openssl speed -evp aes-256-xts -bytes 65536 -seconds $SECS"
echo "  diskctl bench --rw read|write --bs 64k --qd 8 --threads 1|2 --time $SECS --prefill --json 'crypt:xts-aes-256:KEY:mem:256M;sector=512|4096'"
