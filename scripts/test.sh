#!/bin/bash
# Run the test suite twice: the normal build (./build) and a build with
# AddressSanitizer + UndefinedBehaviorSanitizer (./build-asan); build the tree
# with clang and with gcc -O3; fuzz; then the concurrency tests with
# ThreadSanitizer (./build-tsan). Exits non-zero on any failure; the last
# line sums up every stage: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

total_pass=0
total_fail=0
summaries=()
rm -f failures.log

# sanitized_setup DIR OPTION...: configure a sanitizer build with gcc (reusing
# DIR when it is one, wiping it when its options cannot be changed in place)
# and forget its last results.
sanitized_setup() {
	local dir=$1
	shift
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		meson setup --reconfigure "$dir" "$@" ||
			CC=gcc meson setup --wipe "$dir" "$@"
	else
		rm -rf "$dir"
		CC=gcc meson setup "$dir" "$@"
	fi
	rm -f "$dir/meson-logs/testlog.json"
}

# Add the results of one meson test run (its testlog.json) to the totals.
tally() {
	local name=$1 log=$2/meson-logs/testlog.json counts pass fail skip
	if [ ! -s "$log" ]; then
		summaries+=("$name: no test results (the build failed)")
		total_fail=$((total_fail + 1))
		return
	fi
	counts=$(python3 - "$log" "$name" "$root/failures.log" <<'PY'
import json, sys
ok = bad = skip = 0
names = []
with open(sys.argv[3], "a") as out:
    for line in open(sys.argv[1]):
        if not line.strip():
            continue
        t = json.loads(line)
        r = t.get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif r == "SKIP":
            skip += 1
        else:
            bad += 1
            names.append(t.get("name", "?"))
            # The CI record keeps only the end of the output: keep the
            # end of each failed test's log for the final summary.
            text = (t.get("stdout") or "") + (t.get("stderr") or "")
            tail = "\n".join(text.splitlines()[-40:])
            out.write(f"==== {sys.argv[2]} / {t.get('name')}: {r} "
                      f"(exit {t.get('returncode')}, {t.get('duration', 0):.1f} s)\n"
                      f"{tail}\n")
print(ok, bad, skip, ",".join(names) or "-")
PY
) || counts="0 1 0 -"
	read -r pass fail skip failed <<<"$counts"
	if [ "$failed" = "-" ]; then
		summaries+=("$name: $pass passed, $fail failed, $skip skipped")
	else
		summaries+=("$name: $pass passed, $fail failed ($failed), $skip skipped")
	fi
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail))
}

# 1. The normal build.
if [ ! -f build/meson-private/coredata.dat ]; then
	meson setup build
fi
rm -f build/meson-logs/testlog.json
if ninja -C build; then
	meson test -C build --print-errorlogs
fi
tally build build

# 2. Sanitizers. Everything is instrumented, the plugins too. gcc links the
# ASan runtime as a shared library that libdiskcore.so and every plugin depend
# on, so dlopen'ed plugins and programs built out of tree against this
# libdiskcore (tests/test-out-of-tree.sh) resolve it without extra flags; such a
# program loads the runtime after libc, hence verify_asan_link_order=0 below.
sanitized_setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debug
# Leaks fail the run; one-time allocations inside system libraries are
# suppressed in scripts/lsan.supp, never our own code.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=23:verify_asan_link_order=0:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=24"
# use_tls=0: LeakSanitizer's thread-stopping tracer crashes (signal 11) scanning
# the dynamic TLS of threads when many plugins' libraries are loaded; the core
# keeps everything it caches per thread reachable from globals as well.
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0:use_tls=0"
if ninja -C build-asan; then
	meson test -C build-asan --print-errorlogs --timeout-multiplier 3
fi
tally build-asan build-asan

# 3. Build-only stages: the whole tree builds -Werror clean with clang (its
# warnings differ from gcc's: -Waddress-of-packed-member caught a packed
# struct once) and with gcc at -O3 (buildtype=release, what a packager uses:
# its inlining finds maybe-uninitialized and array-bounds cases -O2 misses).
# Each is under two minutes.
build_only() { # DIR WHAT CC MESON_ARGS...
	local dir=$1 what=$2 cc=$3

	shift 3
	if [ ! -f "$dir/meson-private/coredata.dat" ]; then
		rm -rf "$dir"
		CC=$cc meson setup "$dir" "$@" >/dev/null
	fi
	if ninja -C "$dir" >"$dir.log" 2>&1; then
		summaries+=("$what: the tree builds clean")
		total_pass=$((total_pass + 1))
	else
		grep -E -B2 -A6 'error:' "$dir.log" | head -60 >>failures.log
		summaries+=("$what: the build FAILED (the first errors are printed above)")
		total_fail=$((total_fail + 1))
	fi
}
build_only build-clang clang clang-14
build_only build-release "gcc -O3" gcc -Dbuildtype=release

# The sources are formatted with the repo's .clang-format (clang-format 14).
if command -v clang-format-14 >/dev/null; then
	if git ls-files -z '*.c' '*.h' | xargs -0 clang-format-14 --dry-run -Werror \
		>clang-format.log 2>&1; then
		summaries+=("format: every .c and .h file as .clang-format says")
		total_pass=$((total_pass + 1))
	else
		grep 'error:' clang-format.log | head -20 >>failures.log
		summaries+=("format: FAILED (clang-format-14 -i the files printed above)")
		total_fail=$((total_fail + 1))
	fi
fi

# 4. Fuzz for a bounded time (libFuzzer, clang): the image formats, the NBD
# server, the spec parser, the layered disk, LUKS headers and SQLite tables;
# 15 s per target keeps the stage near 3 minutes (DISKCORE_FUZZ_SECONDS).
fuzz_secs=${DISKCORE_FUZZ_SECONDS:-15}
tests/fuzz/run.sh build "$fuzz_secs"
case $? in
0)
	summaries+=("fuzz: passed (${fuzz_secs}s per target)")
	total_pass=$((total_pass + 1))
	;;
77) summaries+=("fuzz: skipped (see above)") ;;
*)
	summaries+=("fuzz: FAILED")
	total_fail=$((total_fail + 1))
	;;
esac

# 5. ThreadSanitizer over the tests that drive many queues at once, the
# concurrency matrix and the model test among them, and diskctl bench over the
# delay/crypt chains (docs/reliability.md, "ThreadSanitizer"). Any report
# fails its test (exitcode=66); scripts/tsan.supp names system libraries
# only. DISKCORE_SANITIZED=thread (tests/meson.build) scales the iterations.
sanitized_setup build-tsan -Db_sanitize=thread -Dbuildtype=debugoptimized
if ninja -C build-tsan; then
	# Only the names this build defines (a test whose file is absent is
	# not); --list prints "project[:suite] / name".
	tsan_tests=()
	tsan_known=$(meson test -C build-tsan --list 2>/dev/null | sed 's|^.* / ||')
	for t in concurrency queue matrix model delay crypt striped blockdev tsan-bench vhd-aio vhdx-aio qcow2 serve ram common-ioengine file file-pool; do
		if grep -qx "$t" <<<"$tsan_known"; then
			tsan_tests+=("$t")
		fi
	done
	if [ ${#tsan_tests[@]} -gt 0 ]; then
		TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:exitcode=66:suppressions=$root/scripts/tsan.supp" \
			meson test -C build-tsan --print-errorlogs --timeout-multiplier 3 "${tsan_tests[@]}"
	fi
fi
tally build-tsan build-tsan

echo
if [ -s failures.log ]; then
	echo "The end of each failed test's log (all of it: meson-logs/testlog.txt):"
	cat failures.log
	echo
fi
printf '%s\n' "${summaries[@]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
