#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl info (issue 15): it opens read-only unless --rw says otherwise, so it
# can look at an image another process holds and never creates or writes one;
# --json is valid JSON whatever bytes a path holds (a byte that is not part of
# well-formed UTF-8 is written as \u00XX, XX its value).
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_plugin vhd "it is always built"
sum() { cksum <"$1"; }

# --- read-only by default ---
truncate -s 1M "$T/a.img"
run info "file:$T/a.img"
check "info succeeds" [ "$rc" -eq 0 ]
check "info opens read-only by default" has "^read-only: *yes" "$T/out"
run info --json "file:$T/a.img"
check "info --json says read_only" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["read_only"] is True and d["chain"][0]["read_only"] is True, d
' "$T/out"
run info --rw "file:$T/a.img"
check "info --rw succeeds" [ "$rc" -eq 0 ]
check "info --rw opens read-write" has "^read-only: *no" "$T/out"
run info --rw --ro "file:$T/a.img"
check "the last of --rw and --ro counts" has "^read-only: *yes" "$T/out"

# An image another process holds (a shared flock, as a reader's open takes):
# looking at it works, a writable open is refused.
run info --rw "vhd:$T/held.vhd;create=4M"
check "info --rw with create= makes a VHD" [ "$rc" -eq 0 ]
before=$(sum "$T/held.vhd")
flock -s "$T/held.vhd" "$DISKCTL" info "vhd:$T/held.vhd" >"$T/out" 2>"$T/err"
rc=$?
check "info of an image another process holds succeeds" [ "$rc" -eq 0 ]
check "... showing its size" has "4194304 bytes" "$T/out"
flock -s "$T/held.vhd" "$DISKCTL" info --rw "vhd:$T/held.vhd" >"$T/out" 2>"$T/err"
rc=$?
check "info --rw of an image another process holds fails" [ "$rc" -eq 1 ]
check "... without the old hint to use --ro" sh -c "! grep -q -- '--ro' '$T/err'"
check "... and the image is byte-identical" [ "$(sum "$T/held.vhd")" = "$before" ]

# map opens read-only too (issue 15 item 4); a writer's exclusive lock still
# keeps both out (there is no --force-share yet, docs/diskctl.md).
flock -s "$T/held.vhd" "$DISKCTL" map "vhd:$T/held.vhd" >"$T/out" 2>"$T/err"
rc=$?
check "map of an image another reader holds succeeds" [ "$rc" -eq 0 ]
check "... and the image is byte-identical" [ "$(sum "$T/held.vhd")" = "$before" ]
flock -x "$T/held.vhd" "$DISKCTL" info "vhd:$T/held.vhd" >"$T/out" 2>"$T/err"
rc=$?
check "info of an image a writer holds fails" [ "$rc" -eq 1 ]
check "... saying it is locked for writing" has "locked for writing" "$T/err"

# Read-only never creates: a create= spec for a missing file fails plainly.
run info "file:$T/new.img;create=1M"
check "info with create= of a missing file fails" [ "$rc" -eq 1 ]
check "... saying a read-only open never creates" has "never creates an image" "$T/err"
check "... and creates nothing" [ ! -e "$T/new.img" ]

# --- JSON for any bytes ---
# 0xff and 0xfe are never UTF-8, 0xe2 0x82 is a truncated sequence, 0xc0 0xaf
# an overlong '/', 0xed 0xa0 0x80 a surrogate; é and U+1F600 are well formed.
name=$(printf 'odd-\377\376-\342\202-\300\257-\355\240\200-\303\251-\360\237\230\200.img')
truncate -s 1M "$T/$name"
run info --json "file:$T/$name"
check "info --json of a path with non-UTF-8 bytes succeeds" [ "$rc" -eq 0 ]
check "... and is valid JSON" json "$T/out"
check "... strict UTF-8 throughout" "$PY" -c '
import sys
open(sys.argv[1], "rb").read().decode("utf-8", "strict")
' "$T/out"
check "... each stray byte as \\u00XX, well-formed text as it is" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
want = "odd-\u00ff\u00fe-\u00e2\u0082-\u00c0\u00af-\u00ed\u00a0\u0080-\u00e9-\U0001F600.img"
assert d["spec"].endswith("/" + want), ascii(d["spec"])
assert d["chain"][0]["details"]["path"].endswith("/" + want), d["chain"][0]
' "$T/out"
check "... escaped, not raw, in the text" has '\\u00ff\\u00fe' "$T/out"
run plugins --json
check "plugins --json is still valid JSON" json "$T/out"
# Control characters, DEL, a quote and a backslash are escaped too.
name=$(printf 'ctl-\001\037\177-"\\-\t.img')
truncate -s 1M "$T/$name"
run info --json "file:$T/$name"
check "info --json of a path with control characters is valid JSON" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d["spec"].endswith("/ctl-\x01\x1f\x7f-\"\\-\t.img"), ascii(d["spec"])
' "$T/out"
check "... with no raw control byte in the text" "$PY" -c '
import sys
t = open(sys.argv[1], "rb").read()
assert not any(b < 0x20 and b != 0x0a or b == 0x7f for b in t), t
' "$T/out"

# plugins --json: a plugin directory whose name holds 0xFF (the search path
# and every plugin's path are strings of it).
ram=$DISKCORE_BUILD_ROOT/plugins/ram/ram.so
pdir=$T/$(printf 'plug-\377')
mkdir -m 0755 "$pdir"
chmod 0755 "$T"
cp "$ram" "$pdir/ram.so"
chmod 0755 "$pdir/ram.so"
ln -s ram.so "$pdir/mem.so"
DISKCORE_PLUGIN_PATH=$pdir "$DISKCTL" plugins --json >"$T/out" 2>"$T/err"
check "plugins --json with a 0xFF byte in the search path succeeds" [ $? -eq 0 ]
check "... and is valid JSON, 0xFF as \u00ff" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d["search_path"].endswith("/plug-\u00ff"), ascii(d["search_path"])
assert d["plugins"][0]["path"].endswith("/plug-\u00ff/ram.so"), d["plugins"][0]
' "$T/out"
DISKCORE_PLUGIN_PATH=$pdir "$DISKCTL" info --json mem:1M >"$T/out" 2>"$T/err"
check "info --json through that plugin is valid JSON" json "$T/out"

finish
