#!/bin/sh
# SPDX-License-Identifier: MIT
# docs/security.md names, for each rule, the tests that prove it: every Check
# case it names must exist (START_TEST in tests/), every fuzz target must have
# its source, and every shell test its script, so the page cannot point at a
# test that is gone or renamed.
set -u
: "${DISKCORE_SOURCE_ROOT:?DISKCORE_SOURCE_ROOT is not set}"
doc="$DISKCORE_SOURCE_ROOT/docs/security.md"
tests="$DISKCORE_SOURCE_ROOT/tests"
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }

[ -f "$doc" ] || { echo "not ok 1 - $doc exists"; exit 1; }
# Check cases: backticked words of the shapes the test programs use.
for t in $(grep -o '`\(hostile\|limit\|test\|conf\|luks2\)_[a-z0-9_]*`' "$doc" | tr -d '`' | sort -u); do
	if grep -rqs "START_TEST($t)" "$tests"; then ok "Check case $t exists"; else fail "Check case $t named in security.md exists"; fi
done
for t in $(grep -o '`fuzz-[a-z0-9]*`' "$doc" | tr -d '`' | sort -u); do
	if [ -f "$tests/fuzz/$t.c" ]; then ok "fuzz target $t exists"; else fail "fuzz target $t named in security.md exists"; fi
done
for t in $(grep -o 'test-[a-z0-9-]*\.sh' "$doc" | sort -u); do
	if [ -f "$tests/$t" ]; then ok "script $t exists"; else fail "script $t named in security.md exists"; fi
done
for t in $(grep -o 'test-[a-z0-9-]*[^.a-z0-9-]' "$doc" | grep -v '\.sh' | sed 's/.$//' | sort -u); do
	if [ -f "$tests/$t.c" ] || [ -f "$tests/$t.sh" ]; then ok "test program $t exists"; else fail "test program $t named in security.md exists"; fi
done
echo "1..$n"
[ "$fails" -eq 0 ]
