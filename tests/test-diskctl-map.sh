#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl map (issue 15 item 3): extents in order, covering the disk, each
# with its kind and the layer of the chain that holds it; --json is valid
# JSON that says the same.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_plugin sqlite "it is built when libsqlite3-dev is installed"

# covers FILE SIZE: the JSON extents of FILE are in order, contiguous, and
# cover [0, SIZE)
covers() {
	"$PY" - "$1" "$2" <<'PY'
import json, sys
ex = json.load(open(sys.argv[1]))
pos = 0
for e in ex:
    assert e["start"] == pos, (e, pos)
    assert e["length"] > 0
    pos += e["length"]
assert pos == int(sys.argv[2]), (pos, sys.argv[2])
PY
}

run map mem:1M
check "mem: exit 0" [ "$rc" -eq 0 ]
check "mem: one hole that no layer holds" \
	has "^0  *1048576  *hole  *-$" "$T/out"

# A sql layer with 16 KiB of data under a RAM layer written at 4 KiB.
run write "sql:$T/base.db;create=1M" 0 --pattern 0x5a --count 32
check "write the sql layer" [ "$rc" -eq 0 ]
run map --json "sql:$T/base.db"
check "sql: --json is valid JSON" json "$T/out"
check "sql: the extents cover the disk in order" covers "$T/out" 1048576

# One process: memdiff over sql, written through diskctl's own chain is not
# possible across processes, so map a chain whose top layer is empty.
run map "memdiff:sql:$T/base.db"
check "memdiff:sql: exit 0" [ "$rc" -eq 0 ]
check "memdiff:sql: the data is layer 1, named by its spec" \
	has "^0  *[0-9]*  *data  *1 sql:$T/base.db$" "$T/out"

run map --json --start 4096 --length 8192 "sql:$T/base.db"
check "--start/--length: valid JSON" json "$T/out"
check "--start/--length: clipped to the range" \
	"$PY" -c 'import json,sys; e=json.load(open(sys.argv[1])); assert e[0]["start"]==4096 and sum(x["length"] for x in e)==8192, e' "$T/out"

# nbd: base:allocation from a real server agrees with nbdinfo --map.
if command -v nbdkit >/dev/null && command -v nbdinfo >/dev/null &&
	[ -f "$DISKCORE_BUILD_ROOT/plugins/nbd/nbd.so" ]; then
	nbdkit -f -U "$T/nbd.sock" memory 64M &
	nbdpid=$!
	i=0
	while [ ! -S "$T/nbd.sock" ] && [ $i -lt 100 ]; do
		i=$((i + 1))
		sleep 0.05 # waiting for the socket, with a bound
	done
	U="nbd+unix:///?socket=$T/nbd.sock"
	run write "nbd:$U" 2048 --pattern 0x11 --count 128
	check "nbd: write 64K at 1M" [ "$rc" -eq 0 ]
	run map --json "nbd:$U"
	nbdinfo --map --json "$U" >"$T/nbdinfo.json"
	check "nbd: diskctl map agrees with nbdinfo --map" "$PY" - "$T/out" "$T/nbdinfo.json" <<'PY'
import json, sys
ours = [(e["start"], e["length"], (1 if e["hole"] else 0) | (2 if e["zero"] else 0))
        for e in json.load(open(sys.argv[1]))]
theirs = [(e["offset"], e["length"], e["type"]) for e in json.load(open(sys.argv[2]))]
assert ours == theirs, (ours, theirs)
assert (1048576, 65536, 0) in ours, ours
PY
	kill "$nbdpid"
	wait "$nbdpid" 2>/dev/null
else
	fail "nbd: nbdkit, nbdinfo and the nbd plugin are installed by scripts/setup.sh"
fi

# qcow2 made by qemu-img, over a qcow2 backing file: the same extents as
# qemu-img map, and each allocated extent's layer is qemu's depth.
if [ -f "$DISKCORE_BUILD_ROOT/plugins/qcow2/qcow2.so" ] && command -v qemu-img >/dev/null; then
	qemu-img create -q -f qcow2 "$T/qb.qcow2" 16M
	qemu-io -f qcow2 -c 'write -P 1 4M 1M' -c 'write -P 3 14M 1M' "$T/qb.qcow2" >/dev/null
	qemu-img create -q -f qcow2 -b qb.qcow2 -F qcow2 "$T/qt.qcow2"
	qemu-io -f qcow2 -c 'write -z 8M 1M' -c 'write -P 2 12M 64k' -c 'write -P 4 4M 64k' \
		"$T/qt.qcow2" >/dev/null
	qemu-img map --output=json "$T/qt.qcow2" >"$T/qmap.json"
	run map --json "qcow2:$T/qt.qcow2"
	check "qcow2 chain: diskctl map agrees with qemu-img map (and layer = depth)" \
		"$PY" - "$T/out" "$T/qmap.json" <<'PY'
import json, sys
def merge(xs):
    out = []
    for x in xs:
        if out and out[-1][2:] == x[2:] and out[-1][0] + out[-1][1] == x[0]:
            out[-1] = (out[-1][0], out[-1][1] + x[1]) + x[2:]
        else:
            out.append(x)
    return out
ours = merge([(e["start"], e["length"], e["data"], e["zero"],
               e["layer"] if e["layer"] is not None else -1)
              for e in json.load(open(sys.argv[1]))])
theirs = merge([(e["start"], e["length"], e["data"], e["zero"],
                 e["depth"] if e["present"] else -1)
                for e in json.load(open(sys.argv[2]))])
assert ours == theirs, (ours, theirs)
assert any(x[4] == 1 for x in ours) and any(x[4] == 0 for x in ours), ours
PY
else
	fail "qcow2: the plugin and qemu-img are installed by scripts/setup.sh"
fi

run map "file:$T/missing.img"
check "a disk that does not open: exit 1" [ "$rc" -eq 1 ]
check "... with the core's message" has "missing.img" "$T/err"

run map
check "no SPEC: exit 2" [ "$rc" -eq 2 ]

finish
