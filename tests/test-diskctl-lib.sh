# shellcheck shell=sh
# SPDX-License-Identifier: MIT
# Sourced (". tests/test-diskctl-lib.sh") by the tests/test-diskctl-*.sh tests;
# not a test itself. It holds what they share: the preconditions (a SKIP, exit
# 77, with its reason when one is unmet; oracle-lib.sh's), a scratch directory
# $T removed at exit, TAP-style counting, and helpers that run diskctl and
# qemu-img.
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.

: "${DISKCORE_BUILD_ROOT:?DISKCORE_BUILD_ROOT is not set}"
DISKCTL="$DISKCORE_BUILD_ROOT/tools/diskctl"

# oracle_skip, oracle_need_plugin NAME WHY, oracle_need_tools WHERE TOOL...
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

[ -x "$DISKCTL" ] || oracle_skip "$DISKCTL was not built"
# The system python starts fast; a pyenv shim first in PATH takes seconds.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || oracle_skip "python3 is needed to check output"

T=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM
fails=0
n=0

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}
fail() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
}
# check NAME CMD...: the command must succeed
check() {
	name=$1
	shift
	if "$@"; then ok "$name"; else fail "$name"; fi
}
# run CMD...: diskctl with stdout in $T/out, stderr in $T/err, status in $rc
# shellcheck disable=SC2034 # rc is read by the tests that source this file
run() {
	"$DISKCTL" "$@" >"$T/out" 2>"$T/err"
	rc=$?
}
has() { grep -q -- "$1" "$2"; }
json() { "$PY" -m json.tool "$1" >/dev/null; }
# qcheck FMT FILE: qemu-img check finds the image clean
qcheck() { qemu-img check -q -f "$1" "$2"; }
# qsize FMT FILE: the virtual size qemu-img reads
qsize() {
	qemu-img info -U --output=json -f "$1" "$2" |
		"$PY" -c 'import json, sys; print(json.load(sys.stdin)["virtual-size"])'
}
# qsame FMT1 FILE1 FMT2 FILE2: qemu-img compare finds the same content
qsame() { qemu-img compare -q -f "$1" -F "$3" "$2" "$4"; }
# ondisk FILE: bytes the file takes on disk
ondisk() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }

# finish: the plan line, and the exit status
finish() {
	echo "1..$n"
	if [ "$fails" -ne 0 ]; then
		echo "$fails of $n checks failed" >&2
		exit 1
	fi
	exit 0
}
