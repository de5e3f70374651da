#!/bin/sh
# SPDX-License-Identifier: MIT
# Kill a writer of a sql: disk with SIGKILL at random moments, many times. After
# each kill the database must pass PRAGMA integrity_check, and the disk must
# hold everything written before the writer's last completed flush: exactly the
# state after some prefix of its operations (test-sqlite crash-verify).
set -eu

skip() { echo "SKIP: $*" >&2; exit 77; }

prog=${DISKCORE_BUILD_ROOT:-.}/tests/test-sqlite
[ -x "$prog" ] || skip "$prog is not built"
command -v sqlite3 >/dev/null || skip "the sqlite3 shell is needed (apt-get install sqlite3)"

dir=$(mktemp -d "${TMPDIR:-/tmp}/sqlite-crash-XXXXXX")
trap 'rm -rf "$dir"' EXIT
db=$dir/crash.dbhd

rc=0
"$prog" crash-init "$db" || rc=$?
[ "$rc" -eq 77 ] && skip "the sqlite plugin is not built"
[ "$rc" -eq 0 ] || exit 1

iterations=${SQLITE_CRASH_ITERATIONS:-20}
i=1
while [ "$i" -le "$iterations" ]; do
	# The writer kills itself with SIGKILL from a timer thread at a random
	# moment 0..150 ms after opening the disk, wherever its threads are.
	status=0
	"$prog" crash-writer "$db" "$dir/log" "$i" &
	wait $! 2>/dev/null || status=$?
	if [ "$status" -ne 137 ]; then
		echo "iteration $i: the writer exited with $status, not by SIGKILL" >&2
		exit 1
	fi
	# The shell opens the crashed database first, so SQLite recovers the WAL.
	check=$(sqlite3 "$db" 'PRAGMA integrity_check;' 2>&1)
	if [ "$check" != ok ]; then
		echo "iteration $i: integrity_check: $check" >&2
		exit 1
	fi
	"$prog" crash-verify "$db" "$dir/log" "$dir/state" "$i"
	i=$((i + 1))
done
echo "$iterations kills survived"
