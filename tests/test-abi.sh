#!/bin/sh
# SPDX-License-Identifier: MIT
# The ABI baseline check (docs/abi.md, "What the test checks"). It compares the
# built libdiskcore with what was released, recorded in abi/:
#  - abi/symbols.txt: every exported symbol with its version node, and each
#    node's parent (nm -D, readelf -V of core/libdiskcore.so);
#  - abi/layout.txt: size and offsets of every struct in diskcore.h and
#    plugin.h, and the constants programs compile in (tests/abi-layout.c).
# A symbol that disappears or changes node, a struct whose size or fields
# move, or a changed constant fails; a new symbol in a new node, a field
# appended to an appendable struct (dc_plugin, dc_req, dc_open_args) or put
# in a reserved tail passes. It also checks that the numbering agrees (soname,
# nodes, DC_ABI_*, DC_VERSION_*, dc_version(), the project version), that
# every struct member in the headers is in abi-layout.c, and that every plugin
# in the build has libdiskcore as NEEDED. The comparison logic is tested first
# on altered copies of the current ABI, so a comparator that passes
# everything fails here.
#
# Usage: test-abi.sh [--update] BUILD/tests/abi-layout
#   --update rewrites abi/ from the build: do it when a minor is released.
set -eu

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

update=false
if [ "${1:-}" = --update ]; then
	update=true
	shift
fi
printer=${1:?usage: test-abi.sh [--update] BUILD/tests/abi-layout}
printer=$(cd "$(dirname "$printer")" && pwd)/$(basename "$printer")
build=${DISKCORE_BUILD_ROOT:-$(cd "$(dirname "$printer")/.." && pwd)}
src=${DISKCORE_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
for t in nm readelf awk sort; do
	command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (binutils)"
done
lib=$build/core/libdiskcore.so
[ -e "$lib" ] || fail "$lib not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- The ABI as built ------------------------------------------------------

# "node NAME PARENT" (PARENT "-" for the first) and "symbol NAME NODE".
current_symbols() {
	{
		readelf -V -W "$lib" | awk '
			/Version definition section/ { def = 1; next }
			/Version (needs|symbols) section/ { def = 0 }
			def && / Name: / && !/Flags: BASE/ { print "node", $NF, "-" }
			def && /Parent 1: / { print "parent", $NF }' |
			awk '$1 == "node" { if (n) print n, p; n = $1 " " $2; p = "-" }
			     $1 == "parent" { p = $2 }
			     END { if (n) print n, p }'
		nm -D --defined-only "$lib" | awk '$2 != "A" && index($3, "@") {
			n = $3; at = index(n, "@")
			node = substr(n, at + 1); sub(/^@/, "", node)
			print "symbol", substr(n, 1, at - 1), node }'
	} | LC_ALL=C sort
}

current_layout() {
	"$printer" || fail "$printer failed"
}

current_symbols >"$tmp/symbols"
current_layout >"$tmp/layout"
[ -s "$tmp/symbols" ] || fail "no versioned symbols in $lib (nm -D, readelf -V)"

if $update; then
	mkdir -p "$src/abi"
	{
		echo "# libdiskcore's released symbols (docs/abi.md): \"node NAME PARENT\", \"symbol NAME NODE\"."
		echo "# Checked by tests/test-abi.sh; rewritten by it with --update when a minor is released."
		cat "$tmp/symbols"
	} >"$src/abi/symbols.txt"
	{
		echo "# The released layout of diskcore.h and plugin.h (docs/abi.md), printed by tests/abi-layout.c."
		echo "# Checked by tests/test-abi.sh; rewritten by it with --update when a minor is released."
		grep -v '^version ' "$tmp/layout"
	} >"$src/abi/layout.txt"
	echo "updated $src/abi/symbols.txt and $src/abi/layout.txt"
	exit 0
fi

# --- Comparators: print "bad<TAB>why" and "new<TAB>what", sorted -----------

compare_symbols() {
	awk -F' ' '
	/^#/ || NF == 0 { next }
	FNR == NR { base[$0] = 1; if ($1 == "node") bnode[$2] = $3; else bsym[$2] = bsym[$2] " " $3; next }
	{ cur[$0] = 1; if ($1 == "node") cnode[$2] = $3; else csym[$2] = csym[$2] " " $3 }
	END {
		for (l in base) {
			if (l in cur) continue
			split(l, f, " ")
			if (f[1] == "node" && !(f[2] in cnode))
				printf "bad\tversion node %s is gone: nodes are never removed within a major; put it back in core/libdiskcore.map\n", f[2]
			else if (f[1] == "node")
				printf "bad\tversion node %s now inherits %s, not %s: keep the chain of core/libdiskcore.map as released\n", f[2], cnode[f[2]], f[3]
			else if (f[2] in csym)
				printf "bad\tsymbol %s moved from node %s to%s: binaries built against it look for %s@%s and no longer load; keep it in %s in core/libdiskcore.map\n", f[2], f[3], csym[f[2]], f[2], f[3], f[3]
			else
				printf "bad\tsymbol %s (%s) is gone: every consumer or plugin that calls it stops loading; restore it (an old function can stay as a wrapper), or removing it needs a new major and soname\n", f[2], f[3]
		}
		for (l in cur) {
			if (l in base) continue
			split(l, f, " ")
			if (f[1] == "node")
				printf "new\tversion node %s\n", f[2]
			else if (!(f[3] in bnode))
				printf "new\tsymbol %s in %s\n", f[2], f[3]
			else if (!(f[2] in bsym))
				printf "bad\tnew symbol %s is in node %s, which is released: put it in a new node DISKCORE_1.N that inherits the newest one, and bump DC_ABI_MINOR and DC_VERSION_MINOR (docs/abi.md, \"Adding a function\")\n", f[2], f[3]
			# else: moved between released nodes, reported above
		}
	}' "$1" "$2" | LC_ALL=C sort
}

compare_layout() {
	awk -F' ' '
	/^#/ || /^version / || NF == 0 { next }
	function fstruct(k) { return substr(k, 1, index(k, ".") - 1) }
	FNR == NR {
		if ($1 == "struct") { bsize[$2] = $3; bmode[$2] = $4 }
		else if ($1 == "field") { bf[$2] = $3 " " $4; boff[$2] = $3; blen[$2] = $4 }
		else if ($1 == "const") bconst[$2] = $3
		next
	}
	$1 == "struct" { csize[$2] = $3; cmode[$2] = $4 }
	$1 == "field" { cf[$2] = $3 " " $4; coff[$2] = $3; clen[$2] = $4 }
	$1 == "const" { cconst[$2] = $3 }
	# Does field k of the current layout lie inside a released reserved field?
	function in_reserved(k,   t, r) {
		t = fstruct(k)
		for (r in bf)
			if (fstruct(r) == t && r ~ /\.reserved/ && coff[k] + 0 >= boff[r] + 0 &&
			    coff[k] + clen[k] <= boff[r] + blen[r])
				return 1
		return 0
	}
	END {
		grow = "new fields go at the end of an appendable struct (dc_plugin, dc_req, dc_open_args) or into a reserved tail (docs/abi.md, \"Growing a struct\")"
		for (t in bsize) {
			if (!(t in csize))
				printf "bad\tstruct %s is gone from the headers: every binary that uses it breaks\n", t
			else if (cmode[t] != bmode[t])
				printf "bad\tstruct %s changed from %s to %s in tests/abi-layout.c: a struct that callers allocate cannot become appendable within a major\n", t, bmode[t], cmode[t]
			else if (bmode[t] == "fixed" && csize[t] != bsize[t])
				printf "bad\tstruct %s is %d bytes, was %d: consumers or plugins allocate it (or arrays of it), so its size is fixed within the major; %s\n", t, csize[t], bsize[t], grow
			else if (csize[t] + 0 < bsize[t] + 0)
				printf "bad\tstruct %s shrank from %d to %d bytes: fields are only ever appended\n", t, bsize[t], csize[t]
		}
		for (k in bf) {
			t = fstruct(k)
			if (k in cf && cf[k] == bf[k])
				continue
			if (k ~ /\.reserved/ && t in csize && csize[t] == bsize[t]) {
				ok = 1
				for (c in cf)
					if (fstruct(c) == t && coff[c] + clen[c] > boff[k] + 0 &&
					    coff[c] + 0 < boff[k] + blen[k] && !in_reserved(c))
						ok = 0
				if (ok)
					continue
			}
			if (k in cf)
				printf "bad\tfield %s moved: offset %d size %d, was offset %d size %d; binaries built against the old layout read the wrong bytes; %s\n", k, coff[k], clen[k], boff[k], blen[k], grow
			else
				printf "bad\tfield %s is gone (removed or renamed): a removal breaks binaries, a rename breaks the source of plugins and consumers; put it back\n", k
		}
		for (k in cf) {
			if (k in bf && cf[k] == bf[k])
				continue
			t = fstruct(k)
			if (!(t in bsize))
				printf "new\tstruct %s field %s\n", t, k
			else if (k in bf)
				continue
			else if (cmode[t] == "append" && coff[k] + 0 >= bsize[t] + 0)
				printf "new\tfield %s appended at offset %d\n", k, coff[k]
			else if (in_reserved(k))
				printf "new\tfield %s in the reserved tail at offset %d\n", k, coff[k]
			else
				printf "bad\tnew field %s at offset %d lies inside the released layout of struct %s; %s\n", k, coff[k], t, grow
		}
		for (c in bconst) {
			if (!(c in cconst))
				printf "bad\tconstant %s is gone: programs compiled with it still pass %s\n", c, bconst[c]
			else if (cconst[c] != bconst[c])
				printf "bad\tconstant %s is %s, was %s: programs compiled against the old value still pass it; add a new constant instead\n", c, cconst[c], bconst[c]
		}
		for (c in cconst)
			if (!(c in bconst))
				printf "new\tconstant %s = %s\n", c, cconst[c]
	}' "$1" "$2" | LC_ALL=C sort
}

# --- The comparators on altered copies of the current ABI --------------------

# selftest WANT NAME FILE [AWK]: compare the current ABI (as the baseline)
# with a copy of FILE (symbols or layout) altered by AWK; WANT: pass or fail.
selftest() {
	cmpfn=compare_$3
	if [ $# -gt 3 ]; then
		awk "$4" "$tmp/$3" >"$tmp/altered"
		! cmp -s "$tmp/$3" "$tmp/altered" || fail "self-test '$2' altered nothing"
	else
		cp "$tmp/$3" "$tmp/altered"
	fi
	if "$cmpfn" "$tmp/$3" "$tmp/altered" | grep -q '^bad'; then got=fail; else got=pass; fi
	[ "$got" = "$1" ] || fail "comparator self-test '$2': expected $1, got $got"
	selftests=$((selftests + 1))
}
selftests=0
sym=$(awk '$1 == "symbol" { print $2; exit }' "$tmp/symbols")
node=$(awk '$1 == "node" { print $2; exit }' "$tmp/symbols")
psize=$(awk '$1 == "struct" && $2 == "dc_plugin" { print $3 }' "$tmp/layout")
isize=$(awk '$1 == "struct" && $2 == "dc_info" { print $3 }' "$tmp/layout")
if [ -z "$sym" ] || [ -z "$node" ] || [ -z "$psize" ] || [ -z "$isize" ]; then
	fail "unexpected printer or nm output: $(head -n 3 "$tmp/layout" "$tmp/symbols")"
fi

selftest pass "unchanged symbols" symbols
selftest fail "symbol removed" symbols "!(\$2 == \"$sym\")"
selftest fail "symbol moved to a new node" symbols "
	\$2 == \"$sym\" { \$3 = \"DISKCORE_1.99\" } { print }
	END { print \"node DISKCORE_1.99 x\" }"
selftest pass "symbol added in a new node" symbols "{ print }
	END { print \"node DISKCORE_1.99 x\"; print \"symbol dc_zz_new DISKCORE_1.99\" }"
selftest fail "symbol added to a released node" symbols \
	"{ print } END { print \"symbol dc_zz_new $node\" }"
selftest pass "unchanged layout" layout
selftest pass "field appended to dc_plugin" layout "
	\$2 == \"dc_plugin\" { \$3 += 8 } { print }
	END { print \"field dc_plugin.zz_new $psize 8\" }"
selftest fail "dc_info grew" layout "
	\$2 == \"dc_info\" { \$3 += 8 } { print }
	END { print \"field dc_info.zz_new $isize 8\" }"
selftest fail "field moved" layout "\$2 == \"dc_info.flags\" { \$3 += 4 } { print }"
selftest fail "field inserted into dc_plugin" layout \
	"{ print } END { print \"field dc_plugin.zz_new 8 4\" }"
selftest pass "reserved tail of dc_info given a meaning" layout "
	\$2 == \"dc_info.reserved\" { print \"field dc_info.zz_new\", \$3, 4; \$3 += 4; \$4 -= 4 }
	{ print }"
selftest fail "reserved tail split past its end" layout "
	\$2 == \"dc_info.reserved\" { print \"field dc_info.zz_new\", \$3 + \$4 - 4, 8 } { print }"
selftest fail "constant changed" layout "\$2 == \"DC_OP_WRITE\" { \$3 = 7 } { print }"
echo "ok: $selftests comparator self-tests"

# --- Every struct member of the headers is in abi-layout.c ------------------

# "STRUCT.MEMBER" for each member of each struct defined in the headers
# (one declaration per line as .clang-format writes them; comments dropped).
header_members() {
	awk '
	/^struct [a-z_0-9]+ \{/ { name = $2; body = ""; inside = 1; next }
	inside && /^\};/ {
		gsub(/\/\*([^*]|\*+[^*\/])*\*+\//, "", body)
		n = split(body, decl, ";")
		for (i = 1; i <= n; i++) {
			d = decl[i]
			if (d ~ /^[ \t]*$/)
				continue
			if (match(d, /\(\*[ \t]*[A-Za-z_0-9]+/)) {
				m = substr(d, RSTART + 2, RLENGTH - 2)
				gsub(/[ \t]/, "", m)
			} else {
				sub(/(\[[^]]*\])*[ \t]*$/, "", d)
				match(d, /[A-Za-z_0-9]+$/)
				m = substr(d, RSTART, RLENGTH)
			}
			print name "." m
		}
		inside = 0
		next
	}
	inside { body = body " " $0 }' "$@"
}
header_members "$src/include/diskcore/diskcore.h" "$src/include/diskcore/plugin.h" |
	LC_ALL=C sort >"$tmp/members"
[ "$(wc -l <"$tmp/members")" -gt 50 ] ||
	fail "read only $(wc -l <"$tmp/members") struct members from the headers: has their format changed?"
awk '$1 == "field" { print $2 }' "$tmp/layout" | LC_ALL=C sort >"$tmp/listed"
missing=$(LC_ALL=C comm -23 "$tmp/members" "$tmp/listed")
[ -z "$missing" ] || fail "struct members in the headers that tests/abi-layout.c does not list:
$missing
Add a FIELD() line for each (and STRUCT() for a new struct, \"fixed\" unless the
core allocates it and plugins only read it); the baseline takes them at the next
--update (docs/abi.md)."
echo "ok: abi-layout.c lists all $(wc -l <"$tmp/members") struct members of the headers"

# --- One numbering scheme (docs/abi.md) ------------------------------------

header=$(awk '$1 == "version" && $2 == "header" { print $3 }' "$tmp/layout")
abi=$(awk '$1 == "version" && $2 == "abi" { print $3 }' "$tmp/layout")
runtime=$(awk '$1 == "version" && $2 == "runtime" { print $3 }' "$tmp/layout")
if [ "$header" != "$abi" ] || [ "$abi" != "$runtime" ]; then
	fail "versions disagree: DC_VERSION_* $header, DC_ABI_* $abi, dc_version() $runtime; they are one number (docs/abi.md)"
fi
major=${abi%.*}
minor=${abi#*.}
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libdiskcore.so.$major" ] ||
	fail "soname is '$soname' but DC_ABI_MAJOR is $major: they are one number (core/meson.build soversion)"
nodes=$(awk '$1 == "node"' "$tmp/symbols" | awk -v major="$major" -v minor="$minor" '
	{ if ($2 !~ "^DISKCORE_" major "\\.[0-9]+$") { print "node " $2 " is not named DISKCORE_" major ".N"; bad = 1 }
	  k = substr($2, length("DISKCORE_" major ".") + 1) + 0
	  seen[k] = 1; parent[k] = $3; if (k > max) max = k }
	END {
		for (k = 0; k <= max; k++)
			if (!(k in seen)) { print "node DISKCORE_" major "." k " is missing"; bad = 1 }
			else if (k > 0 && parent[k] != "DISKCORE_" major "." (k - 1)) {
				print "node DISKCORE_" major "." k " inherits " parent[k] ", not DISKCORE_" major "." (k - 1); bad = 1 }
		if (max != minor + 0) { print "the newest node is DISKCORE_" major "." max " but DC_ABI_MINOR is " minor; bad = 1 }
		exit bad }') ||
	fail "version nodes of core/libdiskcore.map: $nodes (docs/abi.md, \"Adding a function\")"
pc=$build/meson-private/diskcore.pc
if [ -r "$pc" ]; then
	project=$(sed -n 's/^Version: *//p' "$pc")
	case $project in
	"$major.$minor".*) ;;
	*) fail "project version is $project but the ABI is $major.$minor: meson.build's version is $major.$minor.PATCH (docs/abi.md)" ;;
	esac
fi
echo "ok: ABI $abi: soname $soname, nodes DISKCORE_$major.0..$minor, dc_version() $runtime, project ${project:-?}"

# --- Against the released baseline -----------------------------------------

report() { # report WHAT BASELINE CURRENT COMPARATOR
	[ -r "$2" ] || fail "no baseline $2: create it with tests/test-abi.sh --update $printer"
	"$4" "$2" "$3" >"$tmp/report"
	if grep -q '^bad' "$tmp/report"; then
		echo "FAIL: the $1 of this build break the released ABI (docs/abi.md):" >&2
		sed -n 's/^bad\t/  - /p' "$tmp/report" >&2
		echo "If the change is intended (this minor was never released, or a new major" >&2
		echo "starts), record the new baseline and commit abi/ with it:" >&2
		echo "  tests/test-abi.sh --update $printer" >&2
		exit 1
	fi
	n=$(grep -c '^new' "$tmp/report" || true)
	echo "ok: $1 match the baseline ($n addition(s) not in it yet)"
	if [ "$n" -gt 0 ]; then
		sed -n 's/^new\t/  + /p' "$tmp/report"
		echo "  (record them with 'tests/test-abi.sh --update $printer' when this minor is released)"
	fi
}
report symbols "$src/abi/symbols.txt" "$tmp/symbols" compare_symbols
report "struct layouts and constants" "$src/abi/layout.txt" "$tmp/layout" compare_layout

# --- Every plugin names libdiskcore (it loads in an RTLD_LOCAL host) --------

# tests/plugins/tiny holds deliberately broken plugins for the registry tests.
count=0
for so in $(find "$build/plugins" "$build/tests" -name '*.so' -type f \
	-not -path '*/tests/plugins/tiny/*' | LC_ALL=C sort); do
	count=$((count + 1))
	readelf -d "$so" | grep -q "(NEEDED).*\[$soname\]" ||
		fail "$so does not have $soname as NEEDED (readelf -d): it cannot load in a host that opened libdiskcore with RTLD_LOCAL; link it with diskcore_dep (meson) or \$(pkg-config --libs diskcore)"
done
[ "$count" -gt 0 ] || fail "no plugin .so under $build/plugins"
echo "ok: $count plugin(s) have $soname as NEEDED"
