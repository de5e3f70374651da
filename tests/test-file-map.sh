#!/bin/sh
# SPDX-License-Identifier: MIT
# file: and blockdev: extents() (ABI 1.1, lseek SEEK_DATA/SEEK_HOLE) with
# qemu-img as the oracle: diskctl map of a sparse raw file agrees with
# qemu-img map; convert skips what the map says is zeroes, without reading it,
# so a 1 GiB raw disk holding 10 MiB of data becomes a small dynamic VHDX.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools "scripts/setup.sh installs it" qemu-img

# A sparse 64 MiB raw file with data at a few ranges (4 KiB aligned, as the
# filesystem allocates), one range running up to the end of the file.
truncate -s 64M "$T/a.img"
for r in 0:1 300:16 4096:256 10000:7 16380:4; do
	dd if=/dev/urandom of="$T/a.img" bs=4096 seek="${r%:*}" count="${r#*:}" \
		conv=notrunc status=none
done
qemu-img map --output=json -f raw "$T/a.img" >"$T/qemu.json"

# same OURS QEMU: the same data/zero runs from offset 0 to the end, after
# merging neighbours of the same kind (qemu and diskcore split differently)
same() {
	"$PY" - "$1" "$2" <<'PY'
import json, sys
def runs(items):
    out = []
    for start, length, data in items:
        if out and out[-1][2] == data and out[-1][0] + out[-1][1] == start:
            out[-1][1] += length
        else:
            out.append([start, length, data])
    return out
ours = runs((e["start"], e["length"], e["data"] and not e["zero"])
            for e in json.load(open(sys.argv[1])))
theirs = runs((e["start"], e["length"], e["data"] and not e["zero"])
              for e in json.load(open(sys.argv[2])))
assert ours == theirs, (ours, theirs)
assert sum(1 for r in ours if r[2]) == 5, ours
PY
}

for kind in file blockdev; do
	run map --json "$kind:$T/a.img"
	check "$kind: map --json exit 0" [ "$rc" -eq 0 ]
	check "$kind: agrees with qemu-img map" same "$T/out" "$T/qemu.json"
done
run map "file:$T/a.img"
check "file: the first hole is a hole of layer 0" \
	has "^4096  *1224704  *hole  *0" "$T/out"

# 1 GiB with 10 MiB of data: convert reads only the data.
truncate -s 1G "$T/big.img"
for o in 0 100 300 700 1018; do
	dd if=/dev/urandom of="$T/big.img" bs=1M seek="$o" count=2 conv=notrunc \
		status=none
done
run convert --sparse "file:$T/big.img" "vhdx:$T/big.vhdx"
check "convert 1 GiB raw to dynamic vhdx: exit 0" [ "$rc" -eq 0 ]
check "... the holes skipped unread" \
	has "; $((1073741824 - 10485760)) bytes of zeroes skipped" "$T/out"
check "... under 16 MiB on disk" [ "$(ondisk "$T/big.vhdx")" -lt 16777216 ]
check "... qemu-img check finds it clean" qcheck vhdx "$T/big.vhdx"
check "... qemu-img compare finds the same content" \
	qsame raw "$T/big.img" vhdx "$T/big.vhdx"

finish
