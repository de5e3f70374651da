#!/bin/sh
# SPDX-License-Identifier: MIT
# sqlite's extents() and check() (ABI 1.1) through diskctl: map names the
# layer of a sqldiff: chain each extent comes from; check finds a clean
# database clean (exit 0) and one broken with the sqlite3 shell corrupt
# (exit 2), naming each problem; resize grows and shrinks a database (a
# shrink drops the rows past the end).
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
oracle_need_plugin sqlite "it is built when libsqlite3-dev is installed"
oracle_need_tools "scripts/setup.sh installs it" sqlite3

B="$T/base.db"
D="$T/diff.db"
run write "sql:$B;create=1M" 0 --pattern 0x5a --count 32
check "write 16K into the sql layer" [ "$rc" -eq 0 ]
run write "sqldiff:$D;create:sql:$B" 256 --pattern 0x11 --count 8
check "write 4K at 128K into the sqldiff layer" [ "$rc" -eq 0 ]

run map --json "sqldiff:$D:sql:$B"
check "map sqldiff:sql: exit 0" [ "$rc" -eq 0 ]
check "... the diff's write is layer 0, the base's data layer 1, the rest a hole" \
	"$PY" - "$T/out" <<'PY'
import json, sys
ex = [(e["start"], e["length"], e["data"], e["hole"], e["layer"])
      for e in json.load(open(sys.argv[1]))]
assert ex == [(0, 16384, True, False, 1), (16384, 114688, False, True, ex[1][4]),
              (131072, 4096, True, False, 0),
              (135168, 913408, False, True, ex[3][4])], ex
PY

run check "sql:$B"
check "a clean database: exit 0" [ "$rc" -eq 0 ]
check "... no errors" has "no errors were found" "$T/out"
run check "sqldiff:$D:sql:$B"
check "a clean sqldiff over sql: exit 0, both layers checked" \
	has "no errors were found (2 elements checked)" "$T/out"

cp "$B" "$T/broken.db"
sqlite3 "$T/broken.db" "UPDATE sectors SET data = x'00' WHERE sector = 3;
	INSERT INTO sectors VALUES (5000, zeroblob(512));"
run check "sql:$T/broken.db"
check "a short sector row and a row past the end: exit 2" [ "$rc" -eq 2 ]
check "... the short row named" \
	has "sector 3 holds a blob of 1 bytes, not 512" "$T/out"
check "... the row past the end named" \
	has "sector 5000 is past the end of the 2048-sector disk" "$T/out"
check "... two corruptions counted" has "^2 corruptions" "$T/out"

cp "$B" "$T/meta.db"
sqlite3 "$T/meta.db" "INSERT INTO meta SELECT metadata FROM meta;"
run check "sql:$T/meta.db"
check "two meta rows: exit 2, named" has "the meta table has 2 rows, not 1" "$T/out"

cp "$B" "$T/text.db"
sqlite3 "$T/text.db" "UPDATE sectors SET data = CAST(data AS TEXT) WHERE sector = 7;"
run check --json "sql:$T/text.db"
check "a text sector row: valid JSON, one corruption" "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["corruptions"]==1, r' "$T/out"

# resize(): the meta row follows, a shrink drops the rows past the end.
R="$T/resize.db"
run write "sql:$R;create=1M" 0 --pattern 0x5a --count 2048
run resize "sql:$R" 2M
check "resize 1M to 2M: exit 0" [ "$rc" -eq 0 ]
check "... the meta row says 4096 sectors" \
	[ "$(sqlite3 "$R" "SELECT json_extract(metadata, '\$.sector_count') FROM meta")" = 4096 ]
run write "sql:$R" 4000 --pattern 0x11 --count 96
check "... a write at the new end" [ "$rc" -eq 0 ]
run resize --shrink "sql:$R" 512K
check "shrink to 512K: exit 0" [ "$rc" -eq 0 ]
check "... the rows past the end are gone" \
	[ "$(sqlite3 "$R" "SELECT count(*), max(sector) FROM sectors")" = "1024|1023" ]
run check "sql:$R"
check "... and it checks clean" [ "$rc" -eq 0 ]
run info --json "sql:$R"
check "... a reopen sees 512K" has '"bytes": 524288' "$T/out"
run resize "sql:$R" 0
check "resize to 0: refused" [ "$rc" -ne 0 ]

finish
