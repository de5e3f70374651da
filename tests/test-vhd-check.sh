#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl check over vhd, vhdx and vhd1 (their check() callbacks, issue 15
# item 3), with qemu-img check as the oracle where it checks the format (vhdx):
#  - clean images qemu-img made and diskctl made (chains too) are clean in
#    both: exit 0;
#  - a leaked block (the file grown by a block that no BAT entry references,
#    as a crash between an allocation and its flush leaves it) is a leak:
#    exit 3;
#  - a damaged footer copy (VHD) or header copy (VHDX) is a corruption: exit 2;
#  - BAT entries past the end or two at the same block are refused at open
#    (the plugins never read through them): exit 1, naming the entry;
#  - images grown with diskctl resize stay clean, qemu-img reads the new size.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools qemu-utils qemu-img qemu-io

# dcheck NAME WANT SPEC: diskctl check SPEC exits WANT
dcheck() {
	run check "$3"
	check "$1: diskctl check exits $2" [ "$rc" -eq "$2" ]
	[ "$rc" -eq "$2" ] || cat "$T/out" "$T/err" >&2
}

# patch FILE OFFSET HEXBYTES: overwrite bytes in place
patch() {
	"$PY" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(bytes.fromhex(sys.argv[3]))' "$@"
}

qemu-img create -q -f vpc -o subformat=dynamic "$T/q.vhd" 64M
qemu-io -f vpc -c "write -P 0x11 0 64k" -c "write -P 0x22 5M 3M" "$T/q.vhd" >/dev/null
qemu-img create -q -f vhdx -o block_size=1M "$T/q.vhdx" 64M
qemu-io -f vhdx -c "write -P 0x11 0 64k" -c "write -P 0x22 5M 3M" "$T/q.vhdx" >/dev/null
qemu-img create -q -f vpc -o subformat=fixed "$T/f.vhd" 4M
dcheck "qemu-made dynamic VPC" 0 "vhd:$T/q.vhd"
dcheck "qemu-made VHDX" 0 "vhdx:$T/q.vhdx"
check "qemu-made VHDX: qemu-img check is clean" qcheck vhdx "$T/q.vhdx"
dcheck "qemu-made fixed VPC (vhd)" 0 "vhd:$T/f.vhd"
dcheck "qemu-made fixed VPC (vhd1)" 0 "vhd1:$T/f.vhd"

for fmt in vhd vhdx; do
	run create "$fmt:$T/base.$fmt" 8M
	run write "$fmt:$T/base.$fmt" 2048 --pattern 0x77 --count 4096
	run create "$fmt:$T/child.$fmt" --parent "$T/base.$fmt"
	run write "$fmt:$T/child.$fmt" 100 --pattern 0x88 --count 16
	check "$fmt: diskctl made and wrote a chain" [ "$rc" -eq 0 ]
	dcheck "diskctl-made $fmt base" 0 "$fmt:$T/base.$fmt"
	dcheck "diskctl-made $fmt chain" 0 "$fmt:$T/child.$fmt"
	check "$fmt chain: the parent is named" has "parent: .*base.$fmt" "$T/out"
done
check "diskctl-made VHDX: qemu-img check is clean" qcheck vhdx "$T/base.vhdx"

# A leaked VHD block: the footer moved one block (2 MiB and its 512-byte
# bitmap) further on, the space before it written but referenced by nothing.
cp "$T/q.vhd" "$T/leak.vhd"
"$PY" - "$T/leak.vhd" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-512, 2); footer = f.read(512); end = f.tell() - 512
    f.seek(end); f.write(b"\x5a" * (512 + (2 << 20))); f.write(footer)
PY
dcheck "VHD with a leaked block" 3 "vhd:$T/leak.vhd"
check "the leak is named" has "leak:.*referenced by no BAT entry" "$T/out"
# A leaked VHDX block: 1 MiB more at the end of the file.
cp "$T/q.vhdx" "$T/leak.vhdx"
truncate -s +1M "$T/leak.vhdx"
dcheck "VHDX with a leaked block" 3 "vhdx:$T/leak.vhdx"
check "VHDX leak: qemu-img check still finds it usable" qcheck vhdx "$T/leak.vhdx"

# Damaged copies: the VHD footer copy at 0, the second VHDX header.
cp "$T/q.vhd" "$T/copy.vhd"
patch "$T/copy.vhd" 100 ffff
dcheck "VHD with a damaged footer copy" 2 "vhd:$T/copy.vhd"
cp "$T/q.vhdx" "$T/hdr.vhdx"
patch "$T/hdr.vhdx" $((128 * 1024 + 100)) ffff
dcheck "VHDX with a damaged header copy" 2 "vhdx:$T/hdr.vhdx"

# Grown with diskctl resize (dc_resize) within the BAT's room: qemu-img
# reads the new size (a qemu-made VPC sized by CHS, too) and the data on both
# sides of the old end, and both checks stay clean.
cp "$T/q.vhd" "$T/grow.vhd"
cp "$T/q.vhdx" "$T/grow.vhdx"
for img in grow.vhd:vpc grow.vhdx:vhdx; do
	f=${img%%:*} q=${img#*:} fmt=${f##*.}
	run resize "$fmt:$T/$f" 100M
	check "$f: diskctl resize 100M" [ "$rc" -eq 0 ]
	check "$f: qemu-img reads 100 MiB" [ "$(qsize "$q" "$T/$f")" -eq 104857600 ]
	qemu-io -f "$q" -c "write -P 0x33 90M 1M" "$T/$f" >/dev/null
	check "$f: qemu-io reads both sides of the old end" \
		sh -c "qemu-io -f $q -c 'read -P 0x22 5M 3M' -c 'read -P 0x33 90M 1M' '$T/$f' | grep -c '^read' | grep -qx 2"
	dcheck "$f grown" 0 "$fmt:$T/$f"
done
check "grown VHDX: qemu-img check is clean" qcheck vhdx "$T/grow.vhdx"
run resize --shrink "vhd:$T/grow.vhd" 50M
check "shrinking a VHD is refused" has "cannot shrink" "$T/err"
run resize "vhd:$T/grow.vhd" 20G
check "growing past the BAT's room is refused" has "would have to move" "$T/err"

# BAT entries past the end, or two at one block: refused at open.
bat=$("$PY" -c 'import sys, struct
d = open(sys.argv[1], "rb").read(1024)
print(struct.unpack(">Q", d[512 + 16:512 + 24])[0])' "$T/q.vhd")
cp "$T/q.vhd" "$T/past.vhd"
patch "$T/past.vhd" "$bat" 00ffff00
dcheck "VHD BAT entry past the end" 1 "vhd:$T/past.vhd"
check "the entry is named" has "block 0" "$T/err"
cp "$T/q.vhd" "$T/twice.vhd"
first=$(od -An -tx1 -j "$bat" -N4 "$T/q.vhd" | tr -d ' ')
patch "$T/twice.vhd" $((bat + 8)) "$first"
dcheck "VHD: two BAT entries at one block" 1 "vhd:$T/twice.vhd"
check "the overlap is named" has "overlap" "$T/err"

finish
