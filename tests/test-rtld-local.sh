#!/bin/sh
# SPDX-License-Identifier: MIT
# A host that loads libdiskcore with RTLD_LOCAL (Python ctypes here; a VMM's
# own module loader likewise) opens chains and moves data through them. The
# core's symbols are then not in the global scope, so each plugin must find
# them through its own NEEDED libdiskcore.so.1 (docs/abi.md). Chains: a timer
# decorator over a RAM diff layer, crypt (its large requests run on the
# worker pool), and striped over two RAM disks. Each write is read back.
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

oracle_need_lib
# Under a sanitizer build the uninstrumented interpreter needs the sanitizer
# runtime preloaded: oracle-lib.sh finds ASan's and UBSan's ($oracle_preload),
# not TSan's.
if [ -n "${DISKCORE_SANITIZED:-}" ] && [ -z "$oracle_preload" ]; then
	oracle_skip "sanitizer build ($DISKCORE_SANITIZED): python3 cannot load" \
		"libdiskcore without its runtime preloaded, and oracle-lib.sh has none for it"
fi
oracle_workdir rtld-local
crypt=
for dir in $(echo "${DISKCORE_PLUGIN_PATH:-}" | tr ':' ' '); do
	[ -e "$dir/crypt.so" ] && crypt=yes
done

if [ -n "$oracle_preload" ]; then
	# Leaks off in the interpreter alone: it never frees its own heap.
	LD_PRELOAD="$oracle_preload${LD_PRELOAD:+ $LD_PRELOAD}"
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	export LD_PRELOAD ASAN_OPTIONS
fi
LIB="$DISKCORE_BUILD_ROOT/core/libdiskcore.so.1" WORK="$work" CRYPT="$crypt" \
	"$oracle_py" - <<'EOF'
import ctypes, os, random, sys

lib = ctypes.CDLL(os.environ["LIB"], mode=os.RTLD_LOCAL)
try:
    ctypes.CDLL(None).dc_open
    sys.exit("dc_open is in the global scope: the library was not loaded RTLD_LOCAL")
except AttributeError:
    pass

lib.dc_version.restype = ctypes.c_uint32
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_close.argtypes = [ctypes.c_void_p]
lib.dc_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_uint32]
lib.dc_flush.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.restype = ctypes.c_uint64
lib.dc_last_error.restype = ctypes.c_char_p

if lib.dc_version() >> 16 != 1:
    sys.exit("dc_version() = %#x: expected major 1" % lib.dc_version())


def roundtrip(spec, writes):
    """Open spec, write each (sector, bytes), flush, read every write back."""
    d = ctypes.c_void_p()
    rc = lib.dc_open(spec.encode(), 0, ctypes.byref(d))
    if rc != 0:
        sys.exit("dc_open(%s): %d %s" % (spec, rc, lib.dc_last_error().decode()))
    if lib.dc_sector_count(d) != 2048 * (2 if spec.startswith("striped") else 1):
        sys.exit("%s: %d sectors" % (spec, lib.dc_sector_count(d)))
    for sector, data in writes:
        rc = lib.dc_write(d, sector, data, len(data), 0)
        if rc != 0:
            sys.exit("%s: dc_write(%d, %d bytes): %d" % (spec, sector, len(data), rc))
    rc = lib.dc_flush(d)
    if rc != 0:
        sys.exit("%s: dc_flush: %d" % (spec, rc))
    for sector, data in writes:
        buf = ctypes.create_string_buffer(len(data))
        rc = lib.dc_read(d, sector, buf, len(data))
        if rc != 0:
            sys.exit("%s: dc_read(%d, %d bytes): %d" % (spec, sector, len(data), rc))
        if buf.raw != data:
            sys.exit("%s: sector %d reads back other data than was written" % (spec, sector))
    lib.dc_close(d)
    print("ok: %s (%d writes read back)" % (spec, len(writes)))


rng = random.Random(11)
small = [(s, rng.randbytes(n * 512)) for s, n in ((0, 1), (7, 9), (2047, 1), (1000, 64))]
roundtrip("delay:0:memdiff:mem:1M", small)
roundtrip("delay:1:mem:1M", small[:2])
# Across the 128K chunk boundary, so both members hold part of one request.
roundtrip("striped:[mem:1M,mem:1M]", small + [(200, rng.randbytes(128 << 10))])
if os.environ["CRYPT"]:
    key = os.path.join(os.environ["WORK"], "key")
    with open(key, "wb") as f:
        f.write(rng.randbytes(64))
    os.chmod(key, 0o600)
    spec = "crypt:xts-aes-256:%s:mem:1M" % key
    roundtrip(spec, small)
    # The whole disk in one request: crypt splits it across worker threads.
    roundtrip(spec, [(0, rng.randbytes(1 << 20))])
else:
    print("note: the crypt plugin was not built (libgcrypt); skipped its chain")
EOF
