#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl map over vhd and vhdx (their extents() callbacks, issue 15 item 3):
#  - images qemu-img and qemu-io made (dynamic VPC, dynamic VHDX with 1 MiB and
#    32 MiB blocks, a fixed one of each): the blocks written are data, the rest
#    reads as zeroes in qemu-img's raw conversion; for VPC `qemu-img map` calls
#    the same bytes data (qemu's vhdx driver reports no block status: to
#    qemu-img map all of a VHDX is data, which the test checks too);
#  - an empty 1 TiB VHDX is one hole;
#  - differencing chains diskctl made: in memdiff:vhdx:child.vhdx (and vhd) an
#    extent the child wrote is the child's layer, one only the parent wrote the
#    parent's, and the rest no layer's hole.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools qemu-utils qemu-img qemu-io

# The ranges qwrite writes: at 0, inside a block, across a block boundary
# and at 63M; the disks are 256M.
WRITES="0:64K 5M:1M 31M:2M 63M:1M"
qwrite() {
	fmt=$1
	img=$2
	shift 2
	for w in $WRITES; do
		set -- "$@" -c "write -P 0x5a ${w%%:*} ${w#*:}"
	done
	qemu-io -f "$fmt" "$@" "$img" >/dev/null
}

# expect OURS.json RAW BLOCK [QEMU.json]: the data extents are the written
# blocks and nothing else, every non-zero byte of qemu-img's raw conversion
# lies in one, and where given, qemu-img map calls the same bytes data.
expect() {
	"$PY" - "$@" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
raw = open(sys.argv[2], "rb").read()
bs = int(sys.argv[3])
M = 1 << 20

def runs(ex, start, data):
    out = []
    for e in ex:
        s, l, d = e[start], e["length"], data(e)
        if out and out[-1][2] == d and out[-1][0] + out[-1][1] == s:
            out[-1][1] += l
        else:
            out.append([s, l, d])
    return out

blocks = set()
for off, ln in [(0, 64 << 10), (5 * M, M), (31 * M, 2 * M), (63 * M, M)]:
    blocks.update(range(off // bs, (off + ln - 1) // bs + 1))
want = runs([{"start": b * bs, "length": min(bs, len(raw) - b * bs), "d": b in blocks}
             for b in range((len(raw) + bs - 1) // bs)], "start", lambda e: e["d"])
got = runs(ours, "start", lambda e: e["data"])
assert got == want, ("diskctl", got, "expected", want)
for s, l, d in got:
    assert d or raw[s:s + l].count(0) == l, ("non-zero bytes in", s, l)
    assert d or all(e["zero"] for e in ours if s <= e["start"] < s + l)
if len(sys.argv) > 4:
    theirs = runs(json.load(open(sys.argv[4])), "start", lambda e: e["data"])
    assert got == theirs, ("diskctl", got, "qemu-img", theirs)
PY
}

# qmap NAME FMT FILE BLOCK: diskctl map --json against the written blocks,
# the raw content, and (vpc) qemu-img map
qmap() {
	q=$(echo "$2" | sed 's/^vhd$/vpc/')
	run map --json "$2:$3"
	check "$1: diskctl map exits 0" [ "$rc" -eq 0 ]
	check "$1: valid JSON" json "$T/out"
	qemu-img convert -f "$q" -O raw "$3" "$T/raw"
	qemu-img map -f "$q" --output=json "$3" >"$T/q.json"
	if [ "$q" = vpc ]; then
		check "$1: the written blocks are data, as qemu-img map says" \
			expect "$T/out" "$T/raw" "$4" "$T/q.json"
	else
		# qemu's vhdx driver has no block status: all of it is data to
		# qemu-img map, which is true of no extent we call a hole.
		check "$1: qemu-img map calls it all data" "$PY" -c '
import json, sys
e = json.load(open(sys.argv[1])); assert all(x["data"] for x in e), e' "$T/q.json"
		check "$1: the written blocks are data, the rest zeroes" \
			expect "$T/out" "$T/raw" "$4"
	fi
}

qemu-img create -q -f vpc -o subformat=dynamic "$T/dyn.vhd" 256M
qwrite vpc "$T/dyn.vhd"
qmap "dynamic VPC" vhd "$T/dyn.vhd" $((2 << 20))

for bs in 1 32; do
	qemu-img create -q -f vhdx -o block_size=${bs}M "$T/dyn$bs.vhdx" 256M
	qwrite vhdx "$T/dyn$bs.vhdx"
	qmap "dynamic VHDX, ${bs}M blocks" vhdx "$T/dyn$bs.vhdx" $((bs << 20))
done

# fixed: all data (VPC); qemu-img makes a fixed VHDX's blocks PAYLOAD_BLOCK_ZERO
# (with no file offset in the entry) when its file reads as zeroes, so they
# are holes until written.
qemu-img create -q -f vpc -o subformat=fixed "$T/fixed.vhd" 8M
run map --json "vhd:$T/fixed.vhd"
check "fixed VPC: one data extent" "$PY" -c '
import json, sys
e = json.load(open(sys.argv[1])); assert len(e) == 1 and e[0]["start"] == 0 and e[0]["data"], e' "$T/out"
run map --json "vhd1:$T/fixed.vhd"
check "fixed VPC through vhd1: one data extent" "$PY" -c '
import json, sys
e = json.load(open(sys.argv[1])); assert len(e) == 1 and e[0]["start"] == 0 and e[0]["data"], e' "$T/out"
qemu-img create -q -f vhdx -o subformat=fixed,block_size=1M "$T/fixed.vhdx" 8M
qemu-io -f vhdx -c "write -P 0x55 1M 1M" "$T/fixed.vhdx" >/dev/null
run map --json "vhdx:$T/fixed.vhdx"
check "fixed VHDX: the written block data, the ZERO ones holes" "$PY" -c '
import json, sys
e = json.load(open(sys.argv[1]))
got = [(x["start"], x["length"], x["data"], x["zero"], x["hole"]) for x in e]
M = 1 << 20
assert got == [(0, M, False, True, True), (M, M, True, False, False),
               (2 * M, 6 * M, False, True, True)], got' "$T/out"

# An empty 1 TiB VHDX maps as one hole.
qemu-img create -q -f vhdx "$T/big.vhdx" 1T
run map --json "vhdx:$T/big.vhdx"
check "empty 1 TiB VHDX: one hole" "$PY" -c '
import json, sys
e = json.load(open(sys.argv[1]))
assert len(e) == 1 and e[0]["hole"] and e[0]["zero"] and e[0]["length"] == 1 << 40, e' "$T/out"

# layers CHILD PARENT: child wrote [1M, 1M+8K) and [3M+512, 3M+1024) (one
# sector of a block), the parent [0, 64K) and [1M, 2M): its blocks of 1 MiB
# [0, 2M) are data (a plain image's allocated block is data throughout),
# the rest is a hole.
layers() {
	"$PY" - "$T/out" "$1" "$2" <<'PY'
import json, sys
ex, child, parent = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
def owner(off):
    for e in ex:
        if e["start"] <= off < e["start"] + e["length"]:
            return (e["layer_spec"] or "-") if e["data"] else "hole"
    raise AssertionError(off)
want = {0: parent, 65535: parent, 65536: parent, 1 << 20: child,
        (1 << 20) + 8191: child, (1 << 20) + 8192: parent, (2 << 20) - 1: parent,
        2 << 20: "hole", (3 << 20) + 511: "hole", (3 << 20) + 512: child,
        (3 << 20) + 1023: child, (3 << 20) + 1024: "hole", (8 << 20) - 1: "hole"}
for off, who in want.items():
    got = owner(off)
    assert got.endswith(who) or got == who, (off, got, who, ex)
PY
}

for fmt in vhd vhdx; do
	run create "$fmt:$T/base.$fmt;block=1M" 8M
	check "$fmt chain: create the parent" [ "$rc" -eq 0 ]
	run write "$fmt:$T/base.$fmt" 0 --pattern 0x66 --count 128
	run write "$fmt:$T/base.$fmt" 2048 --pattern 0x77 --count 2048
	check "$fmt chain: write the parent" [ "$rc" -eq 0 ]
	run create "$fmt:$T/child.$fmt" --parent "$T/base.$fmt"
	check "$fmt chain: create the child" [ "$rc" -eq 0 ]
	run write "$fmt:$T/child.$fmt" 2048 --pattern 0x88 --count 16
	run write "$fmt:$T/child.$fmt" 6145 --pattern 0x99 --count 1
	check "$fmt chain: write the child" [ "$rc" -eq 0 ]
	run map --json "memdiff:$fmt:$T/child.$fmt"
	check "$fmt chain: map exits 0" [ "$rc" -eq 0 ]
	check "$fmt chain: each extent from the layer that wrote it" \
		layers "$fmt:$T/child.$fmt" "$fmt:$T/base.$fmt"
done

finish
