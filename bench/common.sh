# SPDX-License-Identifier: MIT
# Shared helpers for the bench/ scripts (sourced, not run).
# Benchmarks are not tests: they print a table of IOPS and ratios that goes into
# docs/performance.md. Always run the peer and diskctl in the same script,
# alternating, so background noise (page-cache reclaim, other load) hits both.

bench_find_diskctl() {
	# DISKCTL may name the binary; otherwise look in $BUILD (default ./build).
	if [ -n "${DISKCTL:-}" ]; then
		:
	elif [ -n "${BUILD:-}" ]; then
		DISKCTL="$BUILD/tools/diskctl"
	else
		DISKCTL="$(pwd)/build/tools/diskctl"
	fi
	if [ ! -x "$DISKCTL" ]; then
		echo "error: diskctl not found at $DISKCTL (set BUILD=builddir or DISKCTL=path)" >&2
		exit 1
	fi
	# Plugins: from the build tree unless the caller set a path.
	if [ -z "${DISKCORE_PLUGIN_PATH:-}" ]; then
		root=$(dirname "$(dirname "$DISKCTL")")
		DISKCORE_PLUGIN_PATH=$(find "$root/plugins" -name '*.so' -printf '%h\n' \
			2>/dev/null | sort -u | paste -sd: -)
		export DISKCORE_PLUGIN_PATH
	fi
}

# bench_init TOOL...: the start of every script: find diskctl, check that each
# TOOL is installed, make the scratch directory $OUT, and clean up at exit
# (bench_exit). Servers a script starts go into $PIDS. The settings the
# scripts share get their defaults: DIR (where the files go: $BENCH_DIR, else
# /var/tmp), ROUNDS (3) and SECS (2, per run); a script whose defaults differ
# sets BENCH_DIR, ROUNDS or SECS first.
bench_init() {
	bench_find_diskctl
	bench_need "$@"
	DIR=${BENCH_DIR:-/var/tmp}
	ROUNDS=${ROUNDS:-3}
	SECS=${SECS:-2}
	OUT=$(mktemp -d)
	PIDS=""
	BENCH_SCRATCH=""
	BENCH_INPUTS=""
	trap bench_exit EXIT INT TERM
}

# bench_scratch FILE...: files removed at exit. bench_inputs FILE...: input
# files removed at exit unless KEEP=1 (the next run reuses them).
bench_scratch() {
	for f; do BENCH_SCRATCH="$BENCH_SCRATCH$f
"; done
}
bench_inputs() {
	for f; do BENCH_INPUTS="$BENCH_INPUTS$f
"; done
}

# bench_rm LIST: remove the files of a newline-separated list.
bench_rm() {
	printf '%s' "$1" | while IFS= read -r f; do rm -f -- "$f"; done
}

# At exit: the script's bench_at_exit hook if it has one, the servers in
# $PIDS stopped, then $OUT and the files named above removed.
bench_exit() {
	if command -v bench_at_exit >/dev/null 2>&1; then
		bench_at_exit
	fi
	for p in $PIDS; do kill "$p" 2>/dev/null || :; done
	for p in $PIDS; do wait "$p" 2>/dev/null || :; done
	rm -rf "$OUT"
	bench_rm "$BENCH_SCRATCH"
	[ "${KEEP:-0}" = 1 ] || bench_rm "$BENCH_INPUTS"
}

# bench_wait_sock PATH: until the socket exists, at most 10 s.
bench_wait_sock() {
	i=0
	while [ ! -S "$1" ]; do
		[ $i -ge 200 ] && { echo "error: no server on $1" >&2; exit 1; }
		sleep 0.05
		i=$((i + 1))
	done
}

# The system python starts fast; a pyenv shim first in PATH takes seconds.
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
	PYTHON=/usr/bin/python3
fi

# bench_run CMD...: run CMD at the priority $NICE names (e.g. -20), if set, so
# that every side of a comparison runs at the same one.
bench_run() {
	if [ -n "${NICE:-}" ]; then
		nice -n "$NICE" "$@"
	else
		"$@"
	fi
}

bench_need() {
	for t in "$@"; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "error: $t is needed (apt-get install ...)" >&2
			exit 1
		fi
	done
}

# A JSON field of a file: bench_json FILE EXPR (python expression over d).
bench_json() {
	"${PYTHON:-python3}" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# bench_rounds FUNCTION: run FUNCTION ROUNDS times, saying which round on stderr.
bench_rounds() {
	r=1
	while [ "$r" -le "$ROUNDS" ]; do
		echo "round $r/$ROUNDS..." >&2
		"$1"
		r=$((r + 1))
	done
}

# bench_record ROW "IOPS PER_CPU": append one round's results to $OUT/iops.ROW and
# $OUT/cpu.ROW ($OUT is the calling script's scratch directory).
bench_record() {
	echo "$2" | cut -d' ' -f1 >>"$OUT/iops.$1"
	echo "$2" | cut -d' ' -f2 >>"$OUT/cpu.$1"
}

# Median of the numbers given as arguments, or as one space-separated list.
bench_median() {
	echo "$@" | tr ' ' '\n' | sort -g | awk 'NF { v[++n] = $1 }
		END { if (!n) print ""; else if (n % 2) print v[(n + 1) / 2]; else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# bench_med NAME: the median of the numbers in $OUT/NAME (one a line).
bench_med() {
	# shellcheck disable=SC2046
	bench_median $(cat "$OUT/$1")
}

# ratio A B: A / B with two decimals.
bench_ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'
}

# bench_pair_ratios A B: round i of $OUT/A over round i of $OUT/B, one a line.
bench_pair_ratios() {
	paste -d' ' "$OUT/$1" "$OUT/$2" | awk '$2 > 0 { printf "%.4f\n", $1 / $2 }'
}

# bench_paired A B: the per-round ratios of $OUT/A to $OUT/B (round i against
# round i, run back to back), as "MEDIAN MIN MAX" with two decimals. A drift
# over the rounds (a VM disk warming up) moves both sides of a pair alike,
# where it can tip a ratio of medians.
bench_paired() {
	# shellcheck disable=SC2046
	set -- $(bench_pair_ratios "$1" "$2")
	[ $# -gt 0 ] || { echo "n/a n/a n/a"; return; }
	printf '%.2f %s\n' "$(bench_median "$@")" \
		"$(echo "$@" | tr ' ' '\n' | sort -g | awk 'NF { v[++n] = $1 } END { printf "%.2f %.2f", v[1], v[n] }')"
}

# bench_paired_ci A B: a 95% interval for the median of the per-round ratios
# of $OUT/A to $OUT/B (bench_paired), as "LOW HIGH" with two decimals: the
# 2.5th and 97.5th percentiles of the medians of 2000 resamples (bootstrap,
# fixed seed, so the same rounds always give the same interval). An interval
# that holds 1.0 says the two are level on this machine, whatever the median.
bench_paired_ci() {
	bench_pair_ratios "$1" "$2" | awk '
		function isort(a, n,   i, j, t) {
			for (i = 2; i <= n; i++)
				for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
					t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
				}
		}
		{ r[++n] = $1 }
		END {
			if (n < 2) exit
			srand(1)
			for (b = 1; b <= 2000; b++) {
				for (i = 1; i <= n; i++)
					s[i] = r[int(rand() * n) + 1]
				isort(s, n)
				print n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
			}
		}' | sort -g | awk 'NR == 50 { lo = $1 } NR == 1951 { hi = $1 }
		END { if (NR < 2000) print "n/a n/a"; else printf "%.2f %.2f\n", lo, hi }'
}

# bench_say_ratio TEXT A B: TEXT, then the ratio of the medians of $OUT/A and
# $OUT/B.
bench_say_ratio() {
	echo "$1 $(bench_ratio "$(bench_med "$2")" "$(bench_med "$3")")"
}

# A table row: NAME then the per-round values, then the median.
bench_row() {
	name=$1
	shift
	printf '| %-44s |' "$name"
	for v in "$@"; do
		printf ' %9.0f |' "$v"
	done
	printf ' %9.0f |\n' "$(bench_median "$@")"
}

# bench_header ROUNDS [TITLE]: the head of a table of ROUNDS rounds and a median.
bench_header() {
	awk -v n="$1" -v t="${2:-IOPS}" 'BEGIN {
		head = sprintf("| %-44s |", t); rule = "|" sprintf("%46s", "") "|"
		for (i = 1; i <= n + 1; i++) {
			head = head sprintf(" %9s |", i <= n ? "round " i : "median")
			rule = rule "-----------|"
		}
		gsub(" ", "-", rule)
		print head; print rule
	}'
}

# bench_table KIND TITLE HEAD [LABEL NAME]...: TITLE, then a table of rounds
# headed HEAD with a row LABEL of the numbers in $OUT/KIND.NAME for each pair.
bench_table() {
	kind=$1
	echo "$2"
	echo
	bench_header "$ROUNDS" "$3"
	shift 3
	while [ $# -ge 2 ]; do
		# shellcheck disable=SC2046
		bench_row "$1" $(cat "$OUT/$kind.$2")
		shift 2
	done
	echo
}

# bench_random_file FILE: a 1 GiB file of random data, made unless FILE is one
# already (a file of another size is replaced). KEEP=1 keeps it for the next run.
bench_random_file() {
	if [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ne 1073741824 ]; then
		echo "creating $1 (1 GiB of random data)..." >&2
		head -c 1G /dev/urandom >"$1.tmp"
		mv "$1.tmp" "$1"
		sync "$1"
	fi
}

# Requests per CPU-second of a run of $COUNT requests whose /usr/bin/time
# -f "%U %S" output is in $OUT/t.
bench_per_cpu() {
	awk -v n="$COUNT" '{ c = $1 + $2 } END { printf "%.0f\n", (c > 0 ? n / c : 0) }' "$OUT/t"
}

# bench_qemu_img ARG...: "IOPS PER_CPU" of qemu-img bench -c $COUNT ARG...
bench_qemu_img() {
	/usr/bin/time -f "%U %S" -o "$OUT/t" qemu-img bench -c "$COUNT" "$@" >"$OUT/q" 2>&1 ||
		{ cat "$OUT/q" >&2; exit 1; }
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' "$OUT/q")
	echo "$(awk -v n="$COUNT" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" \
		"$(bench_per_cpu)"
}

# bench_diskctl ARG...: "IOPS PER_CPU" of diskctl bench --count $COUNT --json
# ARG..., the CPU time of the process as /usr/bin/time measures it.
bench_diskctl() {
	/usr/bin/time -f "%U %S" -o "$OUT/t" "$DISKCTL" bench --count "$COUNT" --json "$@" \
		>"$OUT/d" || exit 1
	echo "$(bench_json "$OUT/d" 'round(d["iops"])')" "$(bench_per_cpu)"
}

# bench_randread SPEC [ENV]: "IOPS PER_CPU" of one diskctl bench run of 4 KiB
# random reads at queue depth 32 for $SECS seconds on SPEC (read-only), with
# the environment assignments ENV (space-separated) set.
bench_randread() {
	# shellcheck disable=SC2086
	bench_run env ${2:-} "$DISKCTL" bench --rw randread --bs 4k --qd 32 --time "$SECS" --ro \
		--json "$1" >"$OUT/d" || exit 1
	bench_json "$OUT/d" '"%d %d" % (round(d["iops"]), round(d["iops_per_cpu_second"]))'
}

bench_machine() {
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores," \
		"$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
		"$(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//');" \
		"load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
}
