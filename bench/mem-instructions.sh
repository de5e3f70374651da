#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per request for diskctl bench on mem: (4 KiB random reads), counted
# with callgrind: a figure that, unlike IOPS, does not move with machine load.
# Two runs of N and 2N requests; the difference divided by N removes start-up,
# prefill and exit. Also prints the share spent in diskctl itself (the tool's
# overhead) and in memcpy (the data copy every RAM disk must do).
#
#   BUILD=/path/to/builddir bench/mem-instructions.sh
#
# Environment: BUILD or DISKCTL, N (requests, 100000), SPEC (mem:64M).
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need valgrind callgrind_annotate

N=${N:-100000}
SPEC=${SPEC:-mem:64M}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT INT TERM

# count REQUESTS: writes "total diskctl memcpy" instruction counts to stdout.
count() {
	valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$DISKCTL" bench \
		--rw randread --bs 4k --qd 32 --count "$1" --prefill "$SPEC" \
		>"$OUT/log.$1" 2>&1 || { cat "$OUT/log.$1" >&2; exit 1; }
	callgrind_annotate --threshold=100 --auto=no "$OUT/cg.$1" 2>/dev/null | awk '
		/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
		/tools\/diskctl\/[a-z_]+\.c:/ { gsub(",", "", $1); tool += $1 }
		/memmove|memcpy/ { gsub(",", "", $1); copy += $1 }
		END { print total, tool + 0, copy + 0 }'
}

set -- $(count "$N") $(count $((2 * N)))
per() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }'; }
total=$(per "$1" "$4")
tool=$(per "$2" "$5")
copy=$(per "$3" "$6")
bench_machine
echo "callgrind, $SPEC, 4 KiB random reads, prefilled; per request:"
echo "  all instructions:       $total"
echo "  in diskctl (the tool):  $tool ($(awk -v a="$tool" -v b="$total" 'BEGIN { printf "%.1f", 100 * a / b }')%)"
echo "  in memcpy (4 KiB copy): $copy"
echo "  core + plugins (rest):  $((total - tool - copy))"
echo "command: valgrind --tool=callgrind diskctl bench --rw randread --bs 4k --qd 32 --count N --prefill $SPEC"
