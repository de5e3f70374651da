#!/bin/sh
# SPDX-License-Identifier: MIT
# Third-party plugins, built out of the meson tree the way their authors would:
# install diskcore into a scratch root, then compile tests/out-of-tree/pattern.c
# (a backend), passthru.c (a decorator, docs/plugin-guide.md) and a tiny
# consumer with nothing but `pkg-config diskcore` and cc. The plugins must link
# libdiskcore, export only the entry symbol, load from DISKCORE_PLUGIN_PATH,
# show up in `diskctl plugins`, and read back their data through dc_open():
# pattern alone, passthru over it (its per-queue counters checked), and
# passthru over the installed ram plugin's memdiff layer over it.
set -eu

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v cc >/dev/null 2>&1 || skip "no C compiler (cc) on PATH"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
command -v meson >/dev/null 2>&1 || skip "meson is not on PATH"
build=${DISKCORE_BUILD_ROOT:?run this through meson test}
src=${DISKCORE_SOURCE_ROOT:?run this through meson test}/tests/out-of-tree

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

# --no-rebuild: meson test already built everything; do not start ninja here.
meson install -C "$build" --no-rebuild --destdir "$root" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log" >&2; fail "meson install --destdir failed"; }
pc=$(find "$root" -name diskcore.pc | head -n 1)
[ -n "$pc" ] || fail "diskcore.pc was not installed"

# The sysroot makes pkg-config point into the scratch root.
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$root
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
cflags=$(pkg-config --cflags diskcore)
libs=$(pkg-config --libs diskcore)
# pkgconf adds the sysroot to --variable output and pkg-config does not: -L is
# the same with both.
libdir=$(pkg-config --libs-only-L diskcore | sed 's/^ *-L//; s/ .*//')
case $cflags in *"$root"*) ;; *) fail "pkg-config cflags '$cflags' miss $root" ;; esac

# A sanitizer build of libdiskcore needs its runtime in the consumer too.
san=
if command -v readelf >/dev/null 2>&1; then
	needed=$(readelf -d "$libdir/libdiskcore.so" 2>/dev/null || true)
	case $needed in *libasan*) san="$san -fsanitize=address" ;; esac
	case $needed in *libubsan*) san="$san -fsanitize=undefined" ;; esac
	case $needed in *libtsan*) san="$san -fsanitize=thread" ;; esac
fi
cflags="$cflags$san"

mkdir -m 0755 "$tmp/plugins"
for p in pattern passthru; do
	# shellcheck disable=SC2086
	cc -shared -fPIC -fvisibility=hidden -std=gnu11 -Wall -Wextra -Werror $cflags \
		-o "$tmp/plugins/$p.so" "$src/$p.c" $libs ||
		fail "the example plugin $p.c does not build against the installed headers"
	chmod 0755 "$tmp/plugins/$p.so"
	if command -v nm >/dev/null 2>&1; then
		syms=$(nm -D --defined-only "$tmp/plugins/$p.so" | awk '$2 == "T" { print $3 }')
		[ "$syms" = diskcore_plugin_v1 ] ||
			fail "$p.so exports '$syms', expected only diskcore_plugin_v1"
	fi
	# It names libdiskcore, so it loads in a host that opened the core
	# RTLD_LOCAL.
	if command -v readelf >/dev/null 2>&1; then
		readelf -d "$tmp/plugins/$p.so" | grep -q 'NEEDED.*libdiskcore\.so\.1' ||
			fail "$p.so does not link libdiskcore.so.1"
	fi
done
# shellcheck disable=SC2086
cc -std=gnu11 -Wall -Wextra -Werror $cflags -o "$tmp/consumer" "$src/consumer.c" \
	$libs || fail "the consumer does not build against the installed library"

# The installed ram plugin (memdiff:), for a writable chain over pattern.
ramdir=$(find "$root" -name ram.so -type f | head -n 1)
ramdir=${ramdir%/*}
DISKCORE_PLUGIN_PATH=$tmp/plugins${ramdir:+:$ramdir}
LD_LIBRARY_PATH=$libdir
export DISKCORE_PLUGIN_PATH LD_LIBRARY_PATH

# consume PREFIX: the consumer over PREFIXpattern:1M;seed=7.
consume() {
	out=$("$tmp/consumer" 7 "$1" 2>&1) || fail "consumer over '$1pattern:1M': $out"
	[ "$out" = ok ] || fail "consumer over '$1pattern:1M' printed '$out'"
}
consume ""
consume passthru:
if [ -n "$ramdir" ]; then
	consume passthru:memdiff:
else
	echo "note: the ram plugin was not installed; skipped passthru:memdiff:" >&2
fi

diskctl=$(find "$root" -name diskctl -type f | head -n 1)
if [ -n "$diskctl" ] && [ -x "$diskctl" ]; then
	"$diskctl" plugins >"$tmp/plugins.txt" 2>&1 ||
		{ cat "$tmp/plugins.txt" >&2; fail "diskctl plugins failed"; }
	for want in "^pattern 1.0 (backend" "$tmp/plugins/pattern.so" \
		"pattern:SIZE\[;seed=N\]" "^passthru 1.0 (decorator" "passthru:SPEC"; do
		if ! grep -q "$want" "$tmp/plugins.txt"; then
			cat "$tmp/plugins.txt" >&2
			fail "diskctl plugins does not show '$want'"
		fi
	done
else
	echo "note: diskctl was not built; skipped the 'diskctl plugins' check" >&2
fi

# The trust checks apply to third-party plugins too.
chmod 0777 "$tmp/plugins"
if out=$("$tmp/consumer" 7 2>&1); then
	fail "a plugin in a world-writable directory was loaded"
fi
case $out in
*"writable by group or others (mode 0777)"*) ;;
*) fail "unexpected refusal message: $out" ;;
esac
echo "out-of-tree plugins: ok"
