#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl bench under ThreadSanitizer over the two chains of issue 11 ("Done
# when"): delay over crypt and crypt over delay, delay:0;p99=1 so that every
# 100th request completes on the core's timer thread, 32 requests in flight on
# each of two threads, writes then reads, by callback and by polling. Zero
# reports is the bar: any report fails the run (TSAN_OPTIONS exitcode=66, and
# the log is searched as well). Runs only in the TSan build (scripts/test.sh,
# stage 4); elsewhere it is skipped.
set -eu

if [ "${DISKCORE_SANITIZED:-}" != thread ]; then
	echo "SKIP: not a ThreadSanitizer build (DISKCORE_SANITIZED=${DISKCORE_SANITIZED:-})"
	exit 77
fi
diskctl=${DISKCORE_BUILD_ROOT:?run through meson test}/tools/diskctl
src=${DISKCORE_SOURCE_ROOT:?run through meson test}
if [ ! -x "$diskctl" ]; then
	echo "SKIP: $diskctl was not built"
	exit 77
fi
if ! "$diskctl" plugins 2>/dev/null | grep -q '^crypt '; then
	echo "SKIP: the crypt plugin was not built (no libgcrypt?)"
	exit 77
fi
: "${TSAN_OPTIONS:=halt_on_error=1:second_deadlock_stack=1:exitcode=66:suppressions=$src/scripts/tsan.supp}"
export TSAN_OPTIONS

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
key=$work/k.bin
head -c 64 /dev/urandom >"$key"
chmod 600 "$key"

fail=0
for spec in "delay:0;p99=1:crypt:xts-aes-256:$key:mem:16M" \
	"crypt:xts-aes-256:$key:delay:0;p99=1:mem:16M"; do
	for mode in "" --poll; do
		for rw in randwrite randread; do
			log=$work/bench.log
			rc=0
			"$diskctl" bench --rw "$rw" --qd 32 --threads 2 --time 2 ${mode:+"$mode"} \
				"$spec" >"$log" 2>&1 || rc=$?
			reports=$(grep -c 'WARNING: ThreadSanitizer' "$log" || true)
			echo "bench --rw $rw --qd 32 --threads 2 $mode '$spec': exit $rc, $reports reports, $(grep '^IOPS' "$log" | tr -s ' ')"
			if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
				cat "$log"
				fail=1
			fi
		done
	done
done
exit "$fail"
