#!/bin/sh
# SPDX-License-Identifier: MIT
# The man pages meson builds (docs/man/) cannot drift from what they describe:
# groff finds no problem in them; every command of `diskctl --help` has a
# section in diskctl.1 and every option of each command's --help appears in
# it; every kind `diskctl plugins --json` lists has a section in
# diskcore-spec.7; the example plugin of diskcore-plugin.3 builds against the
# headers and opens through diskctl.
set -u
# shellcheck source=tests/tap-lib.sh
. "$(dirname "$0")/tap-lib.sh"
command -v groff >/dev/null 2>&1 || skip "groff is not installed (groff-base)"
PY=$(command -v python3) || skip "python3 is not installed"
tap_tmpdir man
man_dir=$DISKCORE_BUILD_ROOT/docs/man
for page in diskctl.1 diskcore-spec.7 diskcore-plugin.3; do
	f=$man_dir/$page
	check "$page was built" [ -s "$f" ]
	groff -man -Tutf8 -ww -z "$f" >"$T/groff" 2>&1
	check "$page: groff -ww reports nothing" [ ! -s "$T/groff" ]
	[ -s "$T/groff" ] && sed 's/^/# /' "$T/groff"
	if command -v man >/dev/null 2>&1; then
		check "$page: man -l renders it" sh -c \
			"MANWIDTH=80 man -l '$f' >'$T/man' 2>&1 && [ -s '$T/man' ]"
	fi
	case $(sed -n '/^\.TH/p' "$f") in
	*@*) fail "$page: an @VARIABLE@ was left unset" ;;
	*) ok "$page: its header is filled in" ;;
	esac
done
grep -q '@[A-Z]*@' "$man_dir"/*.[137] && fail "a page holds an unset @VARIABLE@"

# section PAGE NAME: the page has ".SS NAME" (quoted or not)
section() { grep -Eq "^\.SS \"?$2(\"| |$)" "$man_dir/$1"; }

# --- diskctl.1: every command, every option -----------------------------------
# Hyphens as the reader types them: ASCII rendering of the page.
groff -man -Tascii "$man_dir/diskctl.1" 2>/dev/null | sed 's/.\x08//g' >"$T/diskctl.txt"
"$DISKCTL" --help >"$T/help" 2>&1
cmds=$(sed -n '/^commands:/,/^$/s/^  \([a-z][a-z0-9-]*\)  .*/\1/p' "$T/help")
check "diskctl --help lists commands" [ -n "$cmds" ]
for c in $cmds; do
	if section diskctl.1 "$c"; then ok "diskctl.1 has a section for '$c'"; else
		fail "diskctl.1 has no section for '$c'"; fi
	"$DISKCTL" "$c" --help >"$T/chelp" 2>&1
	opts=$(sed 's/[][ (|,=]/\n/g' "$T/chelp" | grep -E '^--?[a-zA-Z][a-z0-9-]*$' | sort -u)
	missing=""
	for o in $opts; do
		[ "$o" = --help ] && continue
		grep -qe "$o\\b" "$T/diskctl.txt" || missing="$missing $o"
	done
	check "diskctl.1 has every option of '$c'${missing:+ (missing:$missing)}" [ -z "$missing" ]
done

# --- diskcore-spec.7: every kind ----------------------------------------------
"$DISKCTL" plugins --json >"$T/plugins.json" 2>"$T/err"
kinds=$("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("\n".join(sorted({f["name"] for p in d["plugins"] for f in p.get("forms", [])})))
' "$T/plugins.json")
check "diskctl plugins lists kinds" [ -n "$kinds" ]
for k in $kinds; do
	if section diskcore-spec.7 "$k"; then ok "diskcore-spec.7 has a section for '$k'"; else
		fail "diskcore-spec.7 has no section for kind '$k'"; fi
done

# --- diskcore-plugin.3: the example plugin builds and opens --------------------
if command -v cc >/dev/null 2>&1; then
	mkdir -m 0755 "$T/p"
	chmod 0755 "$T"
	sed -n '/^#include <diskcore\/plugin.h>/,/^\.EE/p' "$man_dir/diskcore-plugin.3" |
		grep -v '^\.EE' | sed 's/\\-/-/g; s/\\e/\\/g' >"$T/zero.c"
	check "the example plugin compiles" cc -shared -fPIC -fvisibility=hidden \
		-std=gnu11 -Wall -Wextra -Werror -I"$DISKCORE_SOURCE_ROOT/include" \
		-o "$T/p/zero.so" "$T/zero.c" -L"$DISKCORE_BUILD_ROOT/core" -ldiskcore
	chmod 0755 "$T/p/zero.so" 2>/dev/null
	DISKCORE_PLUGIN_PATH=$T/p "$DISKCTL" info 'zero;size=1M' >"$T/out" 2>&1
	check "... and opens: 2048 sectors, read-only" sh -c \
		"grep -q '2048 x 512' '$T/out' && grep -q 'read-only: *yes' '$T/out'"
else
	echo "# no C compiler: the example plugin is not built"
fi

tap_done
