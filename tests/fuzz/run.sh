#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the VHD fuzz targets with clang's libFuzzer (ASan + UBSan) against a
# build tree's libdiskcore, seed them with images the plugins and qemu-img make,
# and run each for a bounded time. Not part of `meson test` (too slow for it);
# CI runs it with a small time budget.
#   usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET]
set -eu

build=$(cd "${1:?usage: $0 BUILD_DIR [SECONDS]}" && pwd)
secs=${2:-30}
src=$(cd "$(dirname "$0")/../.." && pwd)
cc=${CC:-clang-14}
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "SKIP: $cc is not installed (clang-14, libclang-rt-14-dev)" >&2
	exit 77
fi
lib="$build/core/libdiskcore.so"
ctl="$build/tools/diskctl"
if [ ! -e "$lib" ] || [ ! -x "$ctl" ]; then
	echo "FAIL: build $build first" >&2
	exit 1
fi

out="$build/fuzz"
mkdir -p "$out"
for t in vhd vhd1; do
	"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -I"$src/include" \
		"$src/tests/fuzz/fuzz-$t.c" -L"$build/core" -ldiskcore \
		-Wl,-rpath,"$build/core" -lpthread -o "$out/fuzz-$t"
done

# Seeds: small images of every kind. fuzz-vhd takes a leading mode byte
# (bit 0: read-only), fuzz-vhd1 the bare image.
seeds="$out/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/vhd" "$seeds/vhd1" "$out/corpus-vhd" "$out/corpus-vhd1"
img="$seeds/img"
mkdir -p "$img"
if [ -z "${DISKCORE_PLUGIN_PATH:-}" ]; then
	DISKCORE_PLUGIN_PATH=$(find "$build/plugins" -mindepth 1 -maxdepth 1 -type d |
		tr '\n' ':')
	export DISKCORE_PLUGIN_PATH
fi
"$ctl" info "vhd:$img/dyn.vhd;create=64K;block=4K" >/dev/null
"$ctl" write "vhd:$img/dyn.vhd" 3 --pattern 0xab --count 9 >/dev/null
"$ctl" info "vhd:$img/base.vhd;create=64K;block=8K" >/dev/null
"$ctl" write "vhd:$img/base.vhd" 0 --pattern 0x11 --count 20 >/dev/null
"$ctl" info "vhd:$img/child.vhd;parent=$img/base.vhd;block=4K" >/dev/null
"$ctl" write "vhd:$img/child.vhd" 5 --pattern 0x22 --count 3 >/dev/null
"$ctl" info "vhd1:$img/fixed.vhd;create=16K" >/dev/null
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$img/q.vhd" 64K
fi
for f in "$img"/*.vhd; do
	n=$(basename "$f" .vhd)
	{ printf '\001'; cat "$f"; } >"$seeds/vhd/$n-ro"
	{ printf '\000'; cat "$f"; } >"$seeds/vhd/$n-rw"
	cp "$f" "$seeds/vhd1/$n"
done

status=0
for t in vhd vhd1; do
	echo "fuzz-$t: $secs s" >&2
	if ! "$out/fuzz-$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=300000 \
		-print_final_stats=1 "$out/corpus-$t" "$seeds/$t" \
		-artifact_prefix="$out/crash-$t-" 2>"$out/fuzz-$t.log"; then
		tail -40 "$out/fuzz-$t.log" >&2
		status=1
	else
		grep -E "stat::number_of_executed_units|stat::new_units_added" \
			"$out/fuzz-$t.log" >&2 || true
	fi
done
exit $status
