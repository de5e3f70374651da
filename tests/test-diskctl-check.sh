#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl check (issue 15 item 3) and dc_check() under it: every element that
# can check itself does, findings name their element, and the exit status is
# qemu-img check's (0 clean, 2 corruptions, 3 leaks only, 63 nothing can
# check, 1 the check could not run). The test layer (tests/layers) reports
# what its options say.
set -u
# shellcheck source=tests/test-diskctl-lib.sh
. "$(dirname "$0")/test-diskctl-lib.sh"
DISKCORE_PLUGIN_PATH="$DISKCORE_PLUGIN_PATH:$DISKCORE_BUILD_ROOT/tests/layers"
export DISKCORE_PLUGIN_PATH

run check mem:1M
check "raw data: exit 63, as qemu-img check on a format without checks" [ "$rc" -eq 63 ]
check "... saying nothing can check itself" has "can check itself" "$T/out"

run check "tlay:tpat:64K"
check "two clean layers: exit 0" [ "$rc" -eq 0 ]
check "... no errors, both checked" has "no errors were found (2 elements checked)" "$T/out"

run check "tlay;corrupt=2;leaks=1:tpat:64K"
check "corruptions and a leak: exit 2" [ "$rc" -eq 2 ]
check "... each corruption named with its element" \
	has "^corruption: tlay;corrupt=2;leaks=1:tpat:64K: corruption 1$" "$T/out"
check "... the summary counts them" has "^2 corruptions, 1 leak$" "$T/out"

run check "tlay:tpat;leaks=3:64K"
check "leaks only, in the lower layer: exit 3" [ "$rc" -eq 3 ]

run check -q "tlay;leaks=1:tpat:64K"
check "-q: notes are not printed" sh -c "! grep -q '^note:' '$T/out'"
check "-q: leaks are" has "^leak: " "$T/out"

run check --json "tlay;corrupt=1:tpat:64K"
check "--json: valid JSON" json "$T/out"
check "--json: the totals" "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["checked"]==2 and r["corruptions"]==1 and r["leaks"]==0 and len(r["findings"])==3, r' "$T/out"

run check "tlay;checkfail:tpat:64K"
check "a check that cannot run: exit 1" [ "$rc" -eq 1 ]
check "... with the plugin's reason" has "cannot read the metadata" "$T/err"

run check -U mem:1M
check "-U: a warning on stderr" has "force-share" "$T/err"

run check
check "no SPEC: exit 2 (usage)" [ "$rc" -eq 2 ]

finish
