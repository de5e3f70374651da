#!/bin/bash
# SPDX-License-Identifier: MIT
# The rbd tests: starts one throwaway Ceph cluster (tests/ceph-cluster.sh) for
# the whole run, stops it at exit whatever happens (trap), and runs the Check
# program given as $1 (tests/test-rbd.c) against it. Exits 77 when the plugin
# or the Ceph daemons are missing, with the reason.
set -u
prog=${1:?usage: test-rbd.sh TEST-RBD-PROGRAM}
build=${DISKCORE_BUILD_ROOT:?run through meson test}
src=${DISKCORE_SOURCE_ROOT:?run through meson test}
skip() { echo "SKIP: $*" >&2; exit 77; }
[ -f "$build/plugins/rbd/rbd.so" ] || skip "the rbd plugin is not built (librbd-dev missing)"

dir=$(mktemp -d /tmp/test-rbd.XXXXXX)
cleanup() {
	"$src/tests/ceph-cluster.sh" stop "$dir/ceph"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

"$src/tests/ceph-cluster.sh" start "$dir/ceph"
rc=$?
[ "$rc" -ne 77 ] || skip "the Ceph daemons are not installed (ceph-mon ceph-osd ceph-common)"
if [ "$rc" -ne 0 ]; then
	echo "FAIL: the Ceph cluster did not start" >&2
	exit 1
fi
set -a
. "$dir/ceph/env"
set +a
"$prog"
