#!/bin/sh
# SPDX-License-Identifier: MIT
# Plugin trust as an operator sees it: a real plugin (ram.so) copied into a
# scratch plugin directory, its permissions changed, and `diskctl` asked to
# open mem:1M and to list the plugins. Every refusal must say why.
set -eu

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

build=${DISKCORE_BUILD_ROOT:?run this through meson test}
diskctl=$build/tools/diskctl
ram=$build/plugins/ram/ram.so
[ -x "$diskctl" ] || skip "diskctl was not built"
[ -f "$ram" ] || skip "the ram plugin was not built"

tmp=$(mktemp -d)
trap 'cd /; rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
dir=$tmp/plugins
mkdir -m 0755 "$dir"
cp "$ram" "$dir/ram.so"
chmod 0755 "$dir/ram.so"
# The kind is the file name: mem.so is the alias an install makes.
ln -s ram.so "$dir/mem.so"
DISKCORE_PLUGIN_PATH=$dir
export DISKCORE_PLUGIN_PATH

# opens SPEC: diskctl info must succeed
opens() {
	"$diskctl" info "$1" >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; fail "$2"; }
}

# refused SPEC TEXT: diskctl info must fail and say TEXT; so must the listing
refused() {
	if "$diskctl" info "$1" >"$tmp/out" 2>&1; then
		fail "$1 opened although $2"
	fi
	grep -qF "$2" "$tmp/out" || { cat "$tmp/out" >&2; fail "no '$2' in the error"; }
	"$diskctl" plugins >"$tmp/list" 2>&1 || true
	grep -qF "$2" "$tmp/list" || { cat "$tmp/list" >&2; fail "no '$2' in the listing"; }
}

opens mem:1M "a trusted copy of ram.so does not load"

chmod 0664 "$dir/ram.so"
refused mem:1M "plugin $dir/ram.so: writable by group or others (mode 0664)"
chmod 0755 "$dir/ram.so"

chmod 0775 "$dir"
refused mem:1M "directory $dir is writable by group or others (mode 0775)"
chmod 0755 "$dir"

# A symlink in a trusted directory to a plugin in an untrusted one: the
# directory the real file lives in is checked too.
mkdir -m 0755 "$tmp/links" "$tmp/open"
cp "$ram" "$tmp/open/ram.so"
chmod 0755 "$tmp/open/ram.so"
chmod 0777 "$tmp/open"
ln -s "$tmp/open/ram.so" "$tmp/links/mem.so"
DISKCORE_PLUGIN_PATH=$tmp/links
refused mem:1M "directory $tmp/open is writable by group or others (mode 0777)"

# A symlinked search directory that resolves to a trusted one is fine.
ln -s "$dir" "$tmp/dirlink"
DISKCORE_PLUGIN_PATH=$tmp/dirlink
opens mem:1M "a plugin reached through a symlinked directory does not load"

# Nothing is loaded from the current directory, however the path is written.
builtin_dir=$("$diskctl" plugins | sed -n 's/^plugin search path: //p' | tr ':' '\n' | tail -n 1)
if ls "$builtin_dir"/*.so >/dev/null 2>&1; then
	echo "note: $builtin_dir holds plugins; skipped the current-directory check" >&2
else
	cd "$dir"
	for path in "" "." "./" "plugins" ":.:"; do
		DISKCORE_PLUGIN_PATH=$path
		if "$diskctl" info mem:1M >"$tmp/out" 2>&1; then
			fail "ram.so was loaded from the current directory (path '$path')"
		fi
		grep -q "invalid disk kind 'mem'" "$tmp/out" ||
			{ cat "$tmp/out" >&2; fail "unexpected error for path '$path'"; }
	done
	cd /
fi

DISKCORE_PLUGIN_PATH=$dir
if [ "$(id -u)" -eq 0 ]; then
	chown nobody "$dir/ram.so"
	uid=$(id -u nobody)
	refused mem:1M "plugin $dir/ram.so: owned by uid $uid, expected root or uid 0"
	chown 0 "$dir/ram.so"
	chown nobody "$dir"
	refused mem:1M "directory $dir is owned by uid $uid"
	chown 0 "$dir"
	opens mem:1M "ram.so does not load once its owner is restored"
else
	echo "note: not root; skipped the owner checks (they need chown)" >&2
fi
echo "registry trust: ok"
