#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the VHD, VHDX and NBD fuzz targets with clang's libFuzzer (ASan + UBSan) against a
# build tree's libdiskcore, and the spec, layered-disk, LUKS and SQLite targets
# against an instrumented build of the tree (below); seed them with images the
# plugins and qemu-img make, or the committed corpora (tests/fuzz/corpus/), and
# run each for a bounded time. Not part of `meson test` (too slow for it);
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
for t in vhd vhd1 vhdx serve; do
	"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -I"$src/include" -I"$src/common" \
		"$src/tests/fuzz/fuzz-$t.c" -L"$build/core" -ldiskcore \
		-Wl,-rpath,"$build/core" -lpthread -o "$out/fuzz-$t"
done
# fuzz-qcow2 compiles in the plugin and the common/ code it links.
"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -DQCOW2_HAVE_ZSTD -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$src/include" -I"$src/common" \
	"$src/tests/fuzz/fuzz-qcow2.c" -L"$build/core" -ldiskcore \
	-Wl,-rpath,"$build/core" -lz -lzstd -lpthread -o "$out/fuzz-qcow2"

# Seeds: small images of every kind. fuzz-vhd takes a leading mode byte
# (bit 0: read-only), fuzz-vhd1 the bare image, fuzz-vhdx a sparse image (see
# fuzz-vhdx.c).
seeds="$out/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/vhd" "$seeds/vhd1" "$seeds/vhdx" "$out/corpus-vhd" "$out/corpus-vhd1" \
	"$out/corpus-vhdx"
# fuzz-serve: committed client streams (tests/fuzz/serve-seeds.py writes them).
cp -r "$src/tests/fuzz/corpus/serve" "$seeds/serve"
mkdir -p "$out/corpus-serve"
# fuzz-qcow2: committed images qemu-img made.
cp -r "$src/tests/fuzz/corpus/qcow2" "$seeds/qcow2"
mkdir -p "$out/corpus-qcow2"
img="$seeds/img"
mkdir -p "$img"
if [ -z "${DISKCORE_PLUGIN_PATH:-}" ]; then
	DISKCORE_PLUGIN_PATH=$(find "$build/plugins" -mindepth 1 -maxdepth 1 -type d |
		tr '\n' ':')
	export DISKCORE_PLUGIN_PATH
fi
"$ctl" info --rw "vhd:$img/dyn.vhd;create=64K;block=4K" >/dev/null
"$ctl" write "vhd:$img/dyn.vhd" 3 --pattern 0xab --count 9 >/dev/null
"$ctl" info --rw "vhd:$img/base.vhd;create=64K;block=8K" >/dev/null
"$ctl" write "vhd:$img/base.vhd" 0 --pattern 0x11 --count 20 >/dev/null
"$ctl" info --rw "vhd:$img/child.vhd;parent=$img/base.vhd;block=4K" >/dev/null
"$ctl" write "vhd:$img/child.vhd" 5 --pattern 0x22 --count 3 >/dev/null
"$ctl" info --rw "vhd1:$img/fixed.vhd;create=16K" >/dev/null
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$img/q.vhd" 64K
fi
for f in "$img"/*.vhd; do
	n=$(basename "$f" .vhd)
	{ printf '\001'; cat "$f"; } >"$seeds/vhd/$n-ro"
	{ printf '\000'; cat "$f"; } >"$seeds/vhd/$n-rw"
	cp "$f" "$seeds/vhd1/$n"
done

"$ctl" info --rw "vhdx:$img/dyn.vhdx;create=8M;block=1M" >/dev/null
"$ctl" write "vhdx:$img/dyn.vhdx" 7 --pattern 0xab --count 9 >/dev/null
"$ctl" write "vhdx:$img/dyn.vhdx" 4000 --pattern 0xcd --count 300 >/dev/null
"$ctl" info --rw "vhdx:$img/dyn4k.vhdx;create=4M;sector=4096" >/dev/null
"$ctl" write "vhdx:$img/dyn4k.vhdx" 300 --pattern 0x5a --count 2 >/dev/null
"$ctl" info --rw "vhdx:$img/fixed.vhdx;create=2M;block=1M;fixed" >/dev/null
"$ctl" info --rw "vhdx:$img/base.vhdx;create=4M;block=1M" >/dev/null
"$ctl" write "vhdx:$img/base.vhdx" 0 --pattern 0x11 --count 20 >/dev/null
"$ctl" info --rw "vhdx:$img/child.vhdx;parent=$img/base.vhdx" >/dev/null
"$ctl" write "vhdx:$img/child.vhdx" 5 --pattern 0x22 --count 3 >/dev/null
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img create -q -f vhdx "$img/q.vhdx" 4M
	if command -v qemu-io >/dev/null 2>&1; then
		qemu-io -f vhdx -c "write -P 0x5a 1M 64k" "$img/q.vhdx" >/dev/null
	fi
fi
# An image whose header names a log to replay: what a writer killed after a
# flush leaves (a copy taken before close clears the LogGuid). Needs an
# uninstrumented libdiskcore (ctypes); without one there is just no such seed.
cp "$img/dyn.vhdx" "$img/open.vhdx"
python3 - "$lib" "$img/open.vhdx" "$img/dirty.vhdx" <<'EOF' ||
import ctypes, os, shutil, sys
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
d = ctypes.c_void_p()
if lib.dc_open(("vhdx:" + sys.argv[2]).encode(), 0, ctypes.byref(d)) != 0:
    sys.exit(1)
buf = ctypes.create_string_buffer(b"\x77" * 8192)
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p,
                         ctypes.c_size_t, ctypes.c_uint32]
if lib.dc_write(d, 12000, buf, 8192, 0) != 0 or lib.dc_flush(d) != 0:
    sys.exit(1)
shutil.copy(sys.argv[2], sys.argv[3])
os._exit(0)
EOF
	echo "fuzz-vhdx: no seed with a log to replay (ctypes could not use $lib)" >&2
rm -f "$img/open.vhdx"
# Sparse images: mode byte, size in 64 KiB units, then each non-zero 4 KiB page.
python3 - "$seeds/vhdx" "$img"/*.vhdx <<'EOF'
import os, sys
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    runs = bytearray()
    for off in range(0, len(data), 4096):
        page = data[off:off + 4096]
        if page.strip(b"\0"):
            runs += (off // 4096).to_bytes(2, "little") + len(page).to_bytes(2, "little")
            runs += page
    size = ((len(data) + 65535) >> 16).to_bytes(2, "little")
    name = os.path.join(sys.argv[1], os.path.basename(path)[:-5])
    for mode, tag in ((7, "ro"), (6, "rw")):
        with open("%s-%s" % (name, tag), "wb") as f:
            f.write(bytes([mode]) + size + runs)
EOF

status=0
for t in vhd vhd1 vhdx serve qcow2; do
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

# The targets that open disks through dc_open() (fuzz-spec, fuzz-layered,
# fuzz-luks, fuzz-sqlite) need the core and the plugins instrumented too, for
# coverage and for the sanitizers: a build of the tree with this compiler, the
# sanitizers and -fsanitize=fuzzer-no-link, in $out/lib, whose plugins they load
# (DISKCORE_PLUGIN_PATH). Their seeds are committed (tests/fuzz/corpus/); each
# works in a private scratch directory under $TMPDIR (tmpfs when there is one:
# fuzz-layered and fuzz-sqlite make SQLite databases). fuzz-layered and
# fuzz-sqlite run without leak checks between inputs (-detect_leaks=0): the
# worker pool's threads make every input look leaky to libFuzzer, which then
# runs LeakSanitizer after each one and gets 2 to 4 times fewer executions;
# their leaks are the C tests' to find under ASan. -entropic=0 for them too: the threads' coverage
# varies from run to run and entropic scheduling spends its time on it.
dclib="$out/lib"
# That build's UBSan checks recover (meson's b_sanitize adds no
# -fno-sanitize-recover): without halt_on_error a report in the core or a
# plugin would only be printed and the run would pass.
UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1
export UBSAN_OPTIONS
# shellcheck disable=SC2054 # the comma is part of the meson option
if { [ -f "$dclib/build.ninja" ] ||
	CC="$cc" meson setup "$dclib" "$src" -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link -Dtests=false \
		-Dwerror=false -Dbuildtype=debugoptimized >"$out/lib-setup.log" 2>&1; } &&
	ninja -C "$dclib" >"$out/lib-build.log" 2>&1; then
	dcpath=$(find "$dclib/plugins" -mindepth 1 -maxdepth 1 -type d | tr '\n' ':')
	tmp=$out/tmp
	[ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm/diskcore-fuzz-$$
	for t in spec layered luks sqlite; do
		case $t in
		luks) maxlen=65536 libs=-lcrypto ;;
		sqlite) maxlen=4096 libs=-lsqlite3 ;;
		*) maxlen=4096 libs="" ;;
		esac
		if ! "$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
			-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
			-I"$src/include" "$src/tests/fuzz/fuzz-$t.c" -L"$dclib/core" \
			-ldiskcore -Wl,-rpath,"$dclib/core" ${libs:+"$libs"} -lpthread \
			-o "$out/fuzz-$t"; then
			status=1
			continue
		fi
		case $t in
		layered | sqlite) opts="-detect_leaks=0 -entropic=0" ;;
		spec) opts="-malloc_limit_mb=1048576" ;; # see fuzz-spec.c
		*) opts="" ;;
		esac
		mkdir -p "$out/corpus-$t" "$tmp"
		echo "fuzz-$t: $secs s" >&2
		# shellcheck disable=SC2086 # $opts is a list of options
		if ! DISKCORE_PLUGIN_PATH=$dcpath TMPDIR=$tmp "$out/fuzz-$t" \
			-max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 \
			-max_len=$maxlen $opts -print_final_stats=1 "$out/corpus-$t" \
			"$src/tests/fuzz/corpus/$t" -artifact_prefix="$out/crash-$t-" \
			2>"$out/fuzz-$t.log"; then
			tail -40 "$out/fuzz-$t.log" >&2
			status=1
		else
			grep -E "stat::number_of_executed_units|stat::new_units_added" \
				"$out/fuzz-$t.log" >&2 || true
		fi
		rm -rf "$tmp"
	done
else
	echo "FAIL: the instrumented build in $dclib failed:" >&2
	tail -20 "$out/lib-setup.log" "$out/lib-build.log" 2>/dev/null >&2
	status=1
fi
exit $status
