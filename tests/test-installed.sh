#!/bin/sh
# SPDX-License-Identifier: MIT
# diskcore installed at the default prefix while a build tree is tested on
# the same machine (issue 15): `meson install` of this build into a scratch
# root, bind-mounted over the prefix (/usr/local) in a private mount namespace,
# so that, for this test alone, diskcore is installed where a user's would be.
# Then:
#  - the installed diskctl finds the installed plugins (the built-in
#    directory), `man diskctl` shows the installed page, the installed bash
#    completion offers the installed kinds, pkg-config names the directory;
#  - the build tree's registry and diskctl-info tests pass with the search
#    path meson test sets (it replaces the built-in directory), and again
#    with the built-in directory after it (an empty element): the build's
#    plugins win, a warning names both files, the installed ones never load.
set -u
# shellcheck source=tests/tap-lib.sh
. "$(dirname "$0")/tap-lib.sh"
B=$DISKCORE_BUILD_ROOT
S=${DISKCORE_SOURCE_ROOT:?run this through meson test}
PY=$(command -v python3) || skip "python3 is not installed"
command -v meson >/dev/null 2>&1 || skip "meson is not on PATH"

if [ -z "${DC_TEST_IN_NS-}" ]; then
	[ "$(id -u)" -eq 0 ] || skip "a private mount namespace needs root"
	command -v unshare >/dev/null 2>&1 || skip "unshare (util-linux) is missing"
	unshare -m --propagation private true 2>/dev/null ||
		skip "unshare -m is not permitted here (no CAP_SYS_ADMIN)"
	DC_TEST_IN_NS=1 exec unshare -m --propagation private "$0" "$@"
fi

prefix=$(meson introspect --buildoptions "$B" | "$PY" -c '
import json, sys
print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')
[ "$prefix" = /usr/local ] ||
	skip "the build's prefix is $prefix, not the default /usr/local"
tap_tmpdir installed
chmod 0755 "$T"
builtin=$(env -u DISKCORE_PLUGIN_PATH "$DISKCTL" plugins --json 2>/dev/null | "$PY" -c '
import json, sys
print(json.load(sys.stdin)["search_path"])')
case $builtin in
"$prefix"/*) ;;
*) skip "the built-in plugin directory $builtin is not under $prefix" ;;
esac

# --- install, and make it the machine's /usr/local ----------------------------
umask 022
# --no-rebuild: meson test built everything already.
meson install -C "$B" --no-rebuild --destdir "$T/root" --quiet >"$T/install.log" 2>&1
check "meson install --destdir succeeds" [ $? -eq 0 ] || sed 's/^/# /' "$T/install.log"
check "the plugins are installed in the built-in directory" [ -f "$T/root$builtin/file.so" ]
mount --bind "$T/root$prefix" "$prefix"
check "the install is at $prefix (in this namespace only)" [ -f "$builtin/file.so" ]
check "LICENSE and NEWS are installed" \
	[ -s "$prefix/share/doc/diskcore/LICENSE" -a -s "$prefix/share/doc/diskcore/NEWS" ]

# --- the installed system on its own -------------------------------------------
libdir=$(dirname "$(find "$prefix" -name libdiskcore.so.1 | head -n 1)")
idiskctl=$prefix/bin/diskctl
# No ldconfig in a test: the loader is told where the installed library is.
installed() { env -u DISKCORE_PLUGIN_PATH LD_LIBRARY_PATH="$libdir" "$idiskctl" "$@"; }
installed plugins >"$T/out" 2>"$T/err"
check "installed diskctl plugins: the built-in directory, nothing refused" sh -c \
	"grep -q '^plugin search path: $builtin\$' '$T/out' && grep -q '$builtin/ram.so' '$T/out' &&
	 ! grep -q '^refused' '$T/out' && [ ! -s '$T/err' ]"
installed info mem:1M >"$T/out" 2>"$T/err"
check "installed diskctl opens mem:1M, no warning" sh -c \
	"grep -q '2048 x 512' '$T/out' && [ ! -s '$T/err' ]"
check "pkg-config names the same plugin directory" sh -c \
	"[ \"\$(PKG_CONFIG_PATH='$libdir/pkgconfig' pkg-config --variable=plugindir diskcore)\" = '$builtin' ]"
if command -v man >/dev/null 2>&1; then
	check "man -w diskctl finds the installed page" \
		[ "$(man -w diskctl 2>/dev/null)" = "$prefix/share/man/man1/diskctl.1" ]
	for page in diskcore-spec.7 diskcore-plugin.3; do
		check "man -w ${page%.*} finds it in section ${page##*.}" \
			[ "$(man -w "${page##*.}" "${page%.*}" 2>/dev/null)" = "$prefix/share/man/man${page##*.}/$page" ]
	done
	MANWIDTH=80 man -P cat diskctl >"$T/man" 2>"$T/err"
	check "man diskctl shows it" grep -q "diskctl info" "$T/man"
else
	echo "# man (man-db) is not installed: man diskctl not checked"
fi
comp=$(find "$prefix/share" -path '*bash-completion/completions/diskctl' | head -n 1)
check "the bash completion is installed" [ -n "$comp" ]
if [ -n "$comp" ] && command -v bash >/dev/null 2>&1; then
	# shellcheck disable=SC2016
	env -u DISKCORE_PLUGIN_PATH LD_LIBRARY_PATH="$libdir" bash -c '
		. "$1"; COMP_LINE="$2 info mem"; COMP_POINT=${#COMP_LINE}; _diskctl
		echo "${COMPREPLY[*]}"' sh "$comp" "$idiskctl" >"$T/out" 2>&1
	check "... and offers the installed kinds (diskctl info mem<TAB>)" \
		[ "$(cat "$T/out")" = "mem: memdiff:" ]
fi

# --- the build tree beside it ---------------------------------------------------
# As meson test sets it: the build's plugins only, nothing installed is seen.
check "meson test's search path does not include the built-in directory" \
	sh -c "! \"$DISKCTL\" plugins | grep -q '$builtin'"
"$DISKCTL" info mem:1M >"$T/out" 2>"$T/err"
check "... mem:1M opens with no warning" sh -c \
	"grep -q '2048 x 512' '$T/out' && [ ! -s '$T/err' ]"
for t in registry-trust diskctl-info; do
	"$S/tests/test-$t.sh" >"$T/t.out" 2>&1
	check "the build tree's $t test passes" [ $? -eq 0 ] || sed 's/^/# /' "$T/t.out"
done
"$B/tests/test-registry" >"$T/t.out" 2>&1
check "the build tree's registry test passes" [ $? -eq 0 ] || sed 's/^/# /' "$T/t.out"

# The built-in directory after the build's (an empty element): the build's
# plugin serves the kind, a warning names both files, the installed one is
# never loaded.
both="$DISKCORE_PLUGIN_PATH:"
mine=$(echo "$DISKCORE_PLUGIN_PATH" | tr ':' '\n' | grep '/plugins/ram$')
DISKCORE_PLUGIN_PATH=$both DISKCORE_DEBUG=1 "$DISKCTL" info mem:1M >"$T/out" 2>"$T/err"
check "with the built-in directory after the build's, mem:1M opens" grep -q '2048 x 512' "$T/out"
check "... a warning names both mem.so files, the build's used" grep -qF \
	"diskcore: warning: two plugins claim 'mem': $mine/mem.so and $builtin/mem.so; using $mine/mem.so, the first on the plugin search path" \
	"$T/err"
check "... the build's ram.so is loaded" grep -qF "loaded plugin $mine/ram.so" "$T/err"
check "... no installed plugin is loaded" sh -c "! grep -F 'loaded plugin $builtin' '$T/err'"
DISKCORE_PLUGIN_PATH=$both "$DISKCTL" plugins >"$T/out" 2>"$T/err"
check "diskctl plugins lists the installed ram.so as not used" grep -qF \
	"why: plugin $builtin/ram.so: not used: $mine/ram.so, earlier on the search path, has its name" \
	"$T/out"
DISKCORE_PLUGIN_PATH=$both "$S/tests/test-diskctl-info.sh" >"$T/t.out" 2>&1
check "the build tree's diskctl-info test passes with both on the path" [ $? -eq 0 ] ||
	sed 's/^/# /' "$T/t.out"

tap_done
