#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl create (issue 15 item 1), with qemu-img as the oracle: every image it
# writes has the size qemu-img info reads, passes qemu-img check and reads back
# as zeroes through qemu (qemu-img compare). qemu's vpc driver has no check
# (exit 63, "does not support checks"), so for VHDs the compare, which walks
# the block table, is the structural check; qemu opens no differencing VHDX
# and no VHD parent, so children are checked with libvhdi's vhdiinfo when it
# is installed, and by reading them back through diskctl.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_tools qemu-utils qemu-img
oracle_need_plugin vhd "it is always built"
oracle_need_plugin vhd1 "it is always built"
oracle_need_plugin vhdx "it is always built"
sum() { cksum <"$1"; }
# qok FMT FILE: qemu-img check finds it clean, or has no check for FMT
qok() {
	qemu-img check -f "$1" "$2" >"$T/qcheck" 2>&1 && return 0
	[ $? -eq 63 ] && has "does not support checks" "$T/qcheck"
}
# zeroes FMT FILE SIZE: qemu reads SIZE bytes of zeroes from the image
zeroes() {
	truncate -s "$3" "$T/zero.raw"
	qsame "$1" "$2" raw "$T/zero.raw"
}
# made NAME FMT FILE SIZE: the last run made FILE, a FMT image of SIZE bytes
made() {
	check "$1: create succeeds" [ "$rc" -eq 0 ]
	check "$1: says what it made" has "^created .*: $4 bytes" "$T/out"
	check "$1: qemu-img info reads $4 bytes" [ "$(qsize "$2" "$3")" = "$4" ]
	check "$1: qemu-img check" qok "$2" "$3"
	check "$1: qemu reads zeroes" zeroes "$2" "$3" "$4"
}
vhdi() { command -v vhdiinfo >/dev/null 2>&1; }
# vhdi_has FILE TEXT: vhdiinfo's description of FILE says TEXT
vhdi_has() {
	vhdiinfo "$1" >"$T/vhdi" 2>&1 || return 1
	grep -q -- "$2" "$T/vhdi"
}
# vhdi_id FILE: the image's identifier, as vhdiinfo reads it
vhdi_id() { vhdiinfo "$1" | sed -n 's/^[[:space:]]*Identifier[[:space:]]*: //p'; }

# --- raw ---
run create "file:$T/r.img" 64M
made "raw file:" raw "$T/r.img" 67108864
check "raw: the file is sparse" [ "$(ondisk "$T/r.img")" -lt 1048576 ]
run create "$T/bare.img" 1GiB
made "raw, a bare path, SIZE 1GiB" raw "$T/bare.img" 1073741824
run create "file:$T/lower.img" 3m
made "raw, lower-case SIZE" raw "$T/lower.img" 3145728
# A relative path needs no file: when it holds a '/' or '.', as the core
# reads it; a bare word is a kind.
(cd "$T" && "$DISKCTL" create rel.img 1M) >"$T/out" 2>"$T/err"
rc=$?
made "raw, a relative path" raw "$T/rel.img" 1048576
(cd "$T" && "$DISKCTL" create bareword 1M) >"$T/out" 2>"$T/err"
rc=$?
check "a bare word is refused" [ "$rc" -eq 1 ]
check "... saying how to name such a file" has "file:bareword for this one" "$T/err"
check "... and makes nothing" [ ! -e "$T/bareword" ]

# --- VHD ---
run create "vhd:$T/d.vhd" 64M
made "dynamic VHD" vpc "$T/d.vhd" 67108864
check "dynamic VHD: small on disk" [ "$(stat -c %s "$T/d.vhd")" -lt 65536 ]
if vhdi; then
	check "dynamic VHD: vhdiinfo says dynamic" vhdi_has "$T/d.vhd" "Disk type.*Dynamic"
fi
run create "vhd:$T/b.vhd;block=512K" 8M
made "dynamic VHD, block=512K" vpc "$T/b.vhd" 8388608
# qemu takes a fixed VHD's size from its CHS geometry unless the creator is
# one it knows; vhd1 writes creator and geometry 0 (plugins/vhd1/vhdfmt.c),
# so qemu is told to read current_size, as Hyper-V does.
run create "vhd1:$T/f.vhd" 16M
check "fixed VHD: create succeeds" [ "$rc" -eq 0 ]
check "fixed VHD: data and footer" [ "$(stat -c %s "$T/f.vhd")" -eq $((16777216 + 512)) ]
check "fixed VHD: qemu-img info (current_size) reads 16 MiB" sh -c \
	"qemu-img info --output=json --image-opts \
	'driver=vpc,force_size_calc=current_size,file.filename=$T/f.vhd' |
	grep -q '\"virtual-size\": 16777216'"
if vhdi; then
	check "fixed VHD: vhdiinfo says fixed, 16 MiB" vhdi_has "$T/f.vhd" "Fixed"
fi
run create "$T/g.vmgs" VMGS_DEFAULT
check "a .vmgs file: created" [ "$rc" -eq 0 ]
check "... a 4 MiB fixed VHD" [ "$(stat -c %s "$T/g.vmgs")" -eq $((4194304 + 512)) ]

# --- VHDX ---
run create "vhdx:$T/d.vhdx" 64M
made "dynamic VHDX" vhdx "$T/d.vhdx" 67108864
run create "vhdx:$T/b.vhdx;block=1M" 8M
made "dynamic VHDX, block=1M" vhdx "$T/b.vhdx" 8388608
# qemu opens no VHDX with 4096-byte logical sectors ("Operation not supported").
run create "vhdx:$T/s4.vhdx;sector=4096" 8M
check "4K-sector VHDX: created" [ "$rc" -eq 0 ]
run info "vhdx:$T/s4.vhdx"
check "4K-sector VHDX: diskctl reads 4096-byte sectors" has "2048 x 4096" "$T/out"
if vhdi; then
	check "4K-sector VHDX: vhdiinfo reads 4096-byte sectors" \
		vhdi_has "$T/s4.vhdx" "Bytes per sector.*4096"
fi
run create "vhdx:$T/f.vhdx;fixed" 16M
made "fixed VHDX" vhdx "$T/f.vhdx" 16777216
check "fixed VHDX: allocated" [ "$(stat -c %s "$T/f.vhdx")" -gt 16777216 ]
run create "$T/bare.vhdx" 8M
made "VHDX by a bare path's extension" vhdx "$T/bare.vhdx" 8388608

# --- differencing children, stored relative to themselves ---
mkdir "$T/a"
run create "vhd:$T/a/base.vhd" 4M
check "VHD parent: created" [ "$rc" -eq 0 ]
run write "vhd:$T/a/base.vhd" 16 --pattern 0x5a --count 8
check "VHD parent: data written" [ "$rc" -eq 0 ]
pbefore=$(sum "$T/a/base.vhd")
(cd "$T/a" && "$DISKCTL" create vhd:child.vhd --parent base.vhd) >"$T/out" 2>"$T/err"
rc=$?
check "differencing VHD, a relative --parent: created" [ "$rc" -eq 0 ]
check "... of its parent's size" has "4194304 bytes" "$T/out"
if vhdi; then
	check "... vhdiinfo says differential" vhdi_has "$T/a/child.vhd" "Differential"
	check "... and names the parent's identifier" \
		vhdi_has "$T/a/child.vhd" "Parent identifier.*$(vhdi_id "$T/a/base.vhd")"
fi
run create "vhdx:$T/a/base.vhdx" 4M
run write "vhdx:$T/a/base.vhdx" 16 --pattern 0xa5 --count 8
check "VHDX parent: created and written" [ "$rc" -eq 0 ]
run create "vhdx:$T/a/child.vhdx" --parent "vhdx:$T/a/base.vhdx" 4M
check "differencing VHDX, --parent vhdx:PATH and its SIZE: created" [ "$rc" -eq 0 ]
if vhdi; then
	check "... vhdiinfo says differential" vhdi_has "$T/a/child.vhdx" "Differential"
	check "... and names the parent's identifier" \
		vhdi_has "$T/a/child.vhdx" "Parent identifier.*$(vhdi_id "$T/a/base.vhdx")"
fi
# Moved together elsewhere, the children still find their parents.
mv "$T/a" "$T/moved"
run read "vhd:$T/moved/child.vhd" 16 1 --raw
check "the moved VHD child opens" [ "$rc" -eq 0 ]
check "... reading its parent's data" "$PY" -c '
import sys; assert open(sys.argv[1], "rb").read() == b"\x5a" * 512' "$T/out"
run read "vhdx:$T/moved/child.vhdx" 16 1 --raw
check "the moved VHDX child opens" [ "$rc" -eq 0 ]
check "... reading its parent's data" "$PY" -c '
import sys; assert open(sys.argv[1], "rb").read() == b"\xa5" * 512' "$T/out"
run write "vhd:$T/moved/child.vhd" 16 --pattern 1 --count 1
check "a write to the child succeeds" [ "$rc" -eq 0 ]
check "... and leaves the parent byte-identical" [ "$(sum "$T/moved/base.vhd")" = "$pbefore" ]
run create "vhdx:$T/moved/c2.vhdx" --parent "$T/moved/base.vhdx" 8M
check "a SIZE other than the parent's is refused" [ "$rc" -eq 1 ]
check "... saying so" has "differs from the parent's 4194304 bytes" "$T/err"
check "... and makes nothing" [ ! -e "$T/moved/c2.vhdx" ]

# --- SQLite ---
if [ -e "$DISKCORE_BUILD_ROOT/plugins/sqlite/sqlite.so" ]; then
	run create "sql:$T/s.dbhd" 16M
	check "sql: created" [ "$rc" -eq 0 ]
	check "sql: 16 MiB" has "16777216 bytes" "$T/out"
	check "sql: SQLite's integrity check" "$PY" -c '
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]' "$T/s.dbhd"
	run create "sqldiff:$T/sd.dbhd" --parent "file:$T/lower.img"
	check "sqldiff: over --parent SPEC, created" [ "$rc" -eq 0 ]
	check "... sized from the disk below" has "3145728 bytes" "$T/out"
	run create "sqldiff:$T/sd2.dbhd:file:$T/lower.img"
	check "sqldiff: with its inner spec written, created" [ "$rc" -eq 0 ]
	run create "sqldiff:$T/sd3.dbhd"
	check "sqldiff: with nothing below, refused" [ "$rc" -eq 1 ]
	check "... saying what to give" has "give --parent SPEC" "$T/err"
else
	echo "# the sqlite plugin was not built: sql: not checked" >&2
fi

# --- never replaces without --overwrite ---
run write "file:$T/r.img" 0 --pattern 0x77 --count 1
before=$(sum "$T/r.img")
run create "file:$T/r.img" 64M
check "an existing file is refused" [ "$rc" -eq 1 ]
check "... saying how to replace it" has "r.img: exists (add --overwrite" "$T/err"
check "... and left byte-identical" [ "$(sum "$T/r.img")" = "$before" ]
run create "vhd:$T/d.vhd" 32M
check "an existing VHD of another size is refused" [ "$rc" -eq 1 ]
check "... and left as it was" [ "$(qsize vpc "$T/d.vhd")" = 67108864 ]
run create --overwrite "vhd:$T/d.vhd" 32M
made "--overwrite replaces a VHD" vpc "$T/d.vhd" 33554432
before=$(sum "$T/d.vhdx")
flock -s "$T/d.vhdx" "$DISKCTL" create --overwrite "vhdx:$T/d.vhdx" 8M \
	>"$T/out" 2>"$T/err"
rc=$?
check "--overwrite of an image another process holds is refused" [ "$rc" -eq 1 ]
check "... and leaves it byte-identical" [ "$(sum "$T/d.vhdx")" = "$before" ]
ln -s "$T/nowhere.img" "$T/dangling.img"
run create "file:$T/dangling.img" 1M
check "a dangling symbolic link is refused" [ "$rc" -eq 1 ]
check "... and not followed" [ ! -e "$T/nowhere.img" ]

# --- usage ---
run create mem:1M 1M
check "a kind that makes no images is refused" [ "$rc" -eq 1 ]
check "... naming the kinds that do" has "kinds that create: .*vhdx:" "$T/err"
run create "file:$T/nosize.img"
check "no SIZE is refused" [ "$rc" -eq 1 ]
check "... saying so" has "needs a SIZE" "$T/err"
run create "file:$T/zero.img" 0
check "SIZE 0 is a usage error" [ "$rc" -eq 2 ]
run create "file:$T/x.img" 12Q
check "a bad SIZE is a usage error" [ "$rc" -eq 2 ]
run create "file:$T/x.img" 1M --parent "vhd:$T/moved/base.vhd"
check "--parent on a raw file is refused" [ "$rc" -eq 1 ]
check "... naming the kinds that can" has "vhd:, vhdx:.* and sqldiff: do" "$T/err"
check "refusals leave no files behind" sh -c \
	"! ls '$T' | grep -q -e nosize -e zero.img -e x.img -e mem"
run create -q "file:$T/quiet.img" 1M
check "-q prints nothing" [ "$rc" -eq 0 ] && check "... at all" [ ! -s "$T/out" ]

finish
