#!/bin/sh
# SPDX-License-Identifier: MIT
# The AES-256-XTS options for many data units with their own tweaks, alone (no
# disk, a 64 KiB buffer that stays in cache), MB per CPU-second: libgcrypt one
# call per unit, OpenSSL EVP re-keying the IV per unit on one context, OpenSSL
# over the buffer as one unit (what `openssl speed` measures) and common/xts's
# vaes.c. See bench/crypt-units.c and docs/performance.md.
#
#   BUILD=/path/to/builddir bench/crypt-units.sh
#
# Environment: BUILD (./build), ROUNDS (3), SECS (2 per option), NICE.
set -eu
. "$(dirname "$0")/common.sh"
bench_need cc pkg-config

BUILD=${BUILD:-$(pwd)/build}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-2}
SRC=$(cd "$(dirname "$0")/.." && pwd)
LIB="$BUILD/common/xts/libxts.a"
[ -f "$LIB" ] || {
	echo "error: $LIB not found (set BUILD=builddir)" >&2
	exit 1
}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT INT TERM
# shellcheck disable=SC2046
cc -O2 -I"$SRC/common" -I"$SRC/include" -o "$OUT/crypt-units" "$SRC/bench/crypt-units.c" \
	"$LIB" $(pkg-config --cflags --libs libgcrypt libcrypto)

one_round() {
	bench_run "$OUT/crypt-units" "$SECS" | while read -r unit name v; do
		echo "$v" >>"$OUT/v.$name.$unit"
		echo "$unit $name" >>"$OUT/rows"
	done
}
bench_rounds one_round

bench_machine
echo "MB per CPU-second, AES-256-XTS decryption of 64 KiB in cache, $SECS s per option:"
echo
bench_header "$ROUNDS" "option, unit size"
sort -u "$OUT/rows" | sort -k1,1n -k2 | while read -r unit name; do
	# shellcheck disable=SC2046
	bench_row "$name, $unit B" $(cat "$OUT/v.$name.$unit")
done
