# SPDX-License-Identifier: MIT
# Shared by the shell tests that print TAP (sourced, not run):
#   . "$(dirname "$0")/tap-lib.sh"
#   tap_tmpdir NAME         # $T, removed at exit with the processes in $PIDS
#   check "what" CMD...     # ok/not ok; tap_done prints the plan and the status
# A test that must undo more at exit (a mount) defines tap_cleanup_hook.
: "${DISKCORE_BUILD_ROOT:?DISKCORE_BUILD_ROOT is not set}"
DISKCTL="$DISKCORE_BUILD_ROOT/tools/diskctl"
skip() { echo "skip: $*" >&2; exit 77; }
[ -x "$DISKCTL" ] || skip "$DISKCTL was not built"

fails=0
n=0
PIDS=""
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
# check NAME CMD...: the command must succeed
check() { name=$1; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }
# run CMD...: diskctl with stdout in $T/out, stderr in $T/err, status in $rc
run() { "$DISKCTL" "$@" >"$T/out" 2>"$T/err"; rc=$?; }
has() { grep -q -- "$1" "$2"; }

# A server that does not exit within 10 s of SIGTERM is killed, and said so:
# nbdkit with TLS under an AddressSanitizer preload can deadlock in libc's
# locale lock from p11-kit's exit-time destructor, outside our code.
tap_cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
			i=$((i + 1))
			sleep 0.1 # waiting for it to exit, with a bound
		done
		if kill -0 "$p" 2>/dev/null; then
			echo "# pid $p did not exit within 10 s of SIGTERM: killed" >&2
			kill -9 "$p" 2>/dev/null
		fi
		wait "$p" 2>/dev/null
	done
	if command -v tap_cleanup_hook >/dev/null 2>&1; then
		tap_cleanup_hook
	fi
	rm -rf "$T"
}

tap_tmpdir() {
	T=$(mktemp -d "/tmp/test-$1.XXXXXX")
	trap tap_cleanup EXIT
	trap 'exit 1' INT TERM HUP
}

tap_done() {
	echo "1..$n"
	[ "$fails" -eq 0 ]
}
