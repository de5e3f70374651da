#!/bin/sh
# SPDX-License-Identifier: MIT
# The nvme driver's own instructions per 4 KiB random read, counted with
# callgrind against the emulated controller (the test-only nvme-emu plugin,
# plugins/nvme/emu): the self cost of the driver's files (plugins/nvme/*.[ch]),
# without the emulator, the core, diskctl or the 4 KiB copies. Two runs of N
# and 2N requests; the difference divided by N removes start-up and exit.
# The target is 400 instructions (SPDK's budget; docs/performance.md).
#
#   BUILD=/path/to/builddir bench/nvme-instructions.sh
#
# Environment: BUILD or DISKCTL, N (requests, 50000), SPEC (nvme-emu:64M), QD (32).
set -eu
. "$(dirname "$0")/common.sh"
bench_init valgrind callgrind_annotate

N=${N:-50000}
QD=${QD:-32}
SPEC=${SPEC:-nvme-emu:64M}

# count REQUESTS: "total driver emulator memcpy libc" instruction counts.
count() {
	valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$DISKCTL" bench \
		--rw randread --bs 4k --qd "$QD" --count "$1" --prefill "$SPEC" \
		>"$OUT/log.$1" 2>&1 || { cat "$OUT/log.$1" >&2; exit 1; }
	callgrind_annotate --threshold=100 --auto=no "$OUT/cg.$1" 2>/dev/null | awk '
		/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
		/plugins\/nvme\/[a-z_]+\.[ch]:/ { gsub(",", "", $1); drv += $1 }
		/plugins\/nvme\/emu\// { gsub(",", "", $1); emu += $1 }
		/memmove|memcpy/ { gsub(",", "", $1); copy += $1 }
		/pthread_mutex_(un)?lock|clock_gettime/ { gsub(",", "", $1); lib += $1 }
		END { print total, drv + 0, emu + 0, copy + 0, lib + 0 }'
}

set -- $(count "$N") $(count $((2 * N)))
per() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }'; }
bench_machine
echo "callgrind, $SPEC, 4 KiB random reads, queue depth $QD; per request:"
echo "  all instructions:           $(per "$1" "$6")"
echo "  nvme driver (own code):     $(per "$2" "$7")  (target: 400)"
echo "  emulated controller:        $(per "$3" "$8")"
echo "  memcpy (bounce + emulator): $(per "$4" "$9")"
echo "  mutexes, clock (libc; driver and emulator): $(per "$5" "${10}")"
echo "command: valgrind --tool=callgrind diskctl bench --rw randread --bs 4k --qd $QD --count N --prefill $SPEC"
