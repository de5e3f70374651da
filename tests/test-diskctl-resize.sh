#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl resize (issue 15 item 3): dc_resize() on the chains whose plugins
# can (mem:, qcow2: and vhd: grow, sql:, rbd: on a throwaway Ceph cluster,
# memdiff: over anything, vhdx: once it has resize), the new size seen by
# qemu-img and rbd, data kept; a clear error from those that cannot (file:,
# vhd1:) with the image left as it was; SIZE not a whole number of sectors; shrinking refused without
# --shrink, and with it a warning counting the data dropped.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools "scripts/setup.sh" qemu-img qemu-io

run resize mem:1M 2M
check "mem: exit 0" [ "$rc" -eq 0 ]
check "... the new size printed" \
	has "^resized 'mem:1M' from 1048576 to 2097152 bytes (2.00 MiB)$" "$T/out"
run resize -q mem:1M +1MiB
check "-q, +SIZE: exit 0, nothing printed" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/out' ]"
run resize mem:1M 1000
check "SIZE not a whole number of sectors: exit 1" [ "$rc" -eq 1 ]
check "... saying so, with the size that would be" \
	has "1000 is not a whole.*512-byte sectors.*(1024 would be)" "$T/err"
run resize mem:1M 512K
check "shrinking without --shrink: exit 1" [ "$rc" -eq 1 ]
check "... naming --shrink" has "pass --shrink" "$T/err"
run resize --shrink mem:1M 512K
check "--shrink: exit 0" [ "$rc" -eq 0 ]
check "... nothing dropped, no warning" [ ! -s "$T/err" ]
run resize mem:1M -2M
check "-SIZE past zero: usage error" [ "$rc" -eq 2 ]
run resize mem:1M 1q
check "SIZE that is not a size: usage error" [ "$rc" -eq 2 ]
run resize mem:1M
check "no SIZE: usage error" [ "$rc" -eq 2 ]

# qcow2: grows (qemu-img made it, qemu-img reads the new size, the data stays).
qemu-img create -q -f qcow2 "$T/q.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x5a 960k 64k" "$T/q.qcow2" >/dev/null
run resize "qcow2:$T/q.qcow2" 3M
check "qcow2: grown, exit 0" [ "$rc" -eq 0 ]
check "... qemu-img reads 3 MiB" [ "$(qsize qcow2 "$T/q.qcow2")" -eq 3145728 ]
check "... qemu-img check is clean" qcheck qcow2 "$T/q.qcow2"
check "... the data before the old end is kept" \
	sh -c "qemu-io -f qcow2 -c 'read -P 0x5a 960k 64k' -c 'read -P 0 1M 2M' \
		'$T/q.qcow2' | grep -q '^read 2097152'"
run resize --shrink "qcow2:$T/q.qcow2" 1M
check "qcow2 --shrink: the plugin refuses, exit 1" [ "$rc" -eq 1 ]
check "... with its reason" has "only grows" "$T/err"

# memdiff: over sql: the RAM layer resizes; shrinking past the data warns.
run write "sql:$T/s.db;create=2M" 2048 --pattern 0x11 --count 16
run resize --shrink "memdiff:sql:$T/s.db" 1M
check "memdiff:sql: --shrink past data: exit 0" [ "$rc" -eq 0 ]
check "... a warning counts the data dropped" \
	has "warning: --shrink drops 8192 bytes (8.00 KiB) of data past byte 1048576" "$T/err"

# vhd: a dynamic VHD grows within its BAT's room; a shrink is refused by it.
qemu-img create -q -f vpc "$T/a.vhd" 4M
qemu-io -f vpc -c "write -P 0x3c 0 64k" "$T/a.vhd" >/dev/null
run resize "vhd:$T/a.vhd" 8M
check "vhd: grown, exit 0" [ "$rc" -eq 0 ]
check "... diskctl reads 8 MiB" sh -c "'$DISKCTL' info --json 'vhd:$T/a.vhd' | grep -q '\"bytes\": 8388608'"
run check "vhd:$T/a.vhd"
check "... diskctl check is clean" [ "$rc" -eq 0 ]
check "... the data is kept" \
	sh -c "qemu-io -f vpc -c 'read -P 0x3c 0 64k' '$T/a.vhd' | grep -q '^read 65536'"
run resize --shrink "vhd:$T/a.vhd" 4M
check "vhd --shrink: the plugin refuses, exit 1" [ "$rc" -eq 1 ]
check "... with its reason" has "cannot shrink" "$T/err"

# sql: grows and shrinks (the rows past the end dropped).
run resize "sql:$T/s.db" 4M
check "sql: grown, exit 0" [ "$rc" -eq 0 ]
run resize --shrink "sql:$T/s.db" 1M
check "sql: --shrink, exit 0" [ "$rc" -eq 0 ]
check "... a warning counts what lies past the end" has "warning: --shrink drops" "$T/err"
run check "sql:$T/s.db"
check "... diskctl check is clean" [ "$rc" -eq 0 ]

# vhdx: grows where its plugin has resize (qemu-img reads the new size and
# finds the image clean); else refused, naming the element, image unchanged.
qemu-img create -q -f vhdx "$T/a.vhdx" 4M
run resize "vhdx:$T/a.vhdx" 8M
if [ "$rc" -eq 0 ]; then
	check "vhdx: grown: qemu-img reads 8 MiB" [ "$(qsize vhdx "$T/a.vhdx")" -eq 8388608 ]
	check "... qemu-img check is clean" qcheck vhdx "$T/a.vhdx"
else
	check "vhdx: no resize, exit 1" [ "$rc" -eq 1 ]
	check "... the element that cannot is named" \
		has "cannot resize 'vhdx:$T/a.vhdx': .*vhdx.*cannot be resized" "$T/err"
	check "... qemu-img reads the old size" [ "$(qsize vhdx "$T/a.vhdx")" -eq 4194304 ]
fi

# The kinds without a resize callback: refused, named, image unchanged.
qemu-img create -q -f raw "$T/a.img" 4M
run resize "file:$T/a.img" 8M
check "file: no resize, exit 1" [ "$rc" -eq 1 ]
check "... the element that cannot is named" \
	has "cannot resize 'file:$T/a.img': file: resize is not supported" "$T/err"
check "... the file keeps its size" [ "$(stat -c %s "$T/a.img")" -eq 4194304 ]
run create -q "vhd1:$T/f.vhd" 1M
run resize "vhd1:$T/f.vhd" 8M
check "vhd1: no resize, exit 1" [ "$rc" -eq 1 ]
check "... named" has "vhd1.*not supported" "$T/err"

# rbd: on a throwaway single-node cluster (tests/ceph-cluster.sh).
if [ -f "$DISKCORE_BUILD_ROOT/plugins/rbd/rbd.so" ] && command -v ceph-mon >/dev/null &&
	command -v rbd >/dev/null; then
	src=$(cd "$(dirname "$0")/.." && pwd)
	trap '"$src/tests/ceph-cluster.sh" stop "$T/ceph" >/dev/null; rm -rf "$T"' EXIT
	if "$src/tests/ceph-cluster.sh" start "$T/ceph" 8M >"$T/ceph.log" 2>&1; then
		# shellcheck source=/dev/null # written by ceph-cluster.sh
		. "$T/ceph/env"
		R="rbd:$RBD_POOL/$RBD_IMAGE;conf=$CEPH_CONF;keyring=$RBD_KEYRING"
		rbdsize() {
			rbd -c "$CEPH_CONF" --keyring "$RBD_KEYRING" info --format json \
				"$RBD_POOL/$RBD_IMAGE" |
				"$PY" -c 'import json,sys; print(json.load(sys.stdin)["size"])'
		}
		run resize "$R" 16M
		check "rbd: grown, exit 0" [ "$rc" -eq 0 ]
		check "... rbd info reads 16 MiB" [ "$(rbdsize)" -eq 16777216 ]
		run write "$R" 30000 --pattern 0x77 --count 8
		run resize "$R" 12M
		check "rbd: shrinking without --shrink: exit 1" [ "$rc" -eq 1 ]
		check "... rbd info still reads 16 MiB" [ "$(rbdsize)" -eq 16777216 ]
		run resize --shrink "$R" 12M
		check "rbd --shrink: exit 0" [ "$rc" -eq 0 ]
		check "... warned of the data past the end" has "warning: --shrink drops" "$T/err"
		check "... rbd info reads 12 MiB" [ "$(rbdsize)" -eq 12582912 ]
	else
		sed 's/^/# /' "$T/ceph.log"
		fail "rbd: the Ceph cluster did not start"
	fi
else
	fail "rbd: the rbd plugin and the Ceph daemons are installed by scripts/setup.sh"
fi

finish
