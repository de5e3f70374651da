# shellcheck shell=sh
# SPDX-License-Identifier: MIT
# Sourced (". tests/oracle-lib.sh") by the shell tests that drive libdiskcore
# from Python through ctypes and compare with an oracle: test-crypt-oracle.sh
# and test-luks-oracle.sh (python3-cryptography's AES-XTS), test-vhd-oracle.sh,
# test-vhdx-oracle.sh and test-vhd-crash.sh (qemu-img, libvhdi). It holds what
# they share, once:
#  - the preconditions, each a SKIP (exit 77) with its reason when unmet;
#  - a scratch directory removed at exit, with any loop devices attached;
#  - oracle_python, which runs a Python script after a common prelude: the
#    libdiskcore API through ctypes, Disk (sectors) and ByteDisk (bytes)
#    classes, AES-XTS by data unit (tweak = unit index, little-endian; the
#    cryptography import happens on first use), file, command and loop-device
#    helpers, and failure counting. $ORACLE_PYTHON picks the interpreter
#    (default python3; the libvhdi oracles set /usr/bin/python3, which
#    python3-libvhdi installs for). Under a sanitizer build it runs with the
#    sanitizer runtime preloaded (oracle_need_lib says why).

oracle_skip() {
	echo "SKIP: $*" >&2
	exit 77
}

oracle_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# The interpreter, and the libdiskcore.so built in this tree ($oracle_lib).
#
# Under a sanitizer build ($DISKCORE_SANITIZED) the interpreter is not
# instrumented, and an ASan runtime that arrives by dlopen() with libdiskcore
# comes after libc: its interceptors stay unresolved and the first one called
# (realpath(), in the plugins) fails. So the runtimes that libdiskcore.so links
# (ldd: gcc's libasan and libubsan) are preloaded ($oracle_preload), into the
# Python processes alone: oracle_python starts the real interpreter binary
# ($oracle_py, not a wrapper such as pyenv's shim) with them, and the prelude
# hands the tools it runs (qemu-img, cryptsetup, ...) the environment without
# them (python_env() keeps them for Python children that load libdiskcore).
# Leak detection is off in those Python processes only: the interpreter does
# not free its own heap at exit, and LeakSanitizer cannot tell its blocks from
# ours (every stack of ours runs through the interpreter too); the C tests and
# diskctl still run with leaks failing the run. Address and undefined-behaviour
# errors in libdiskcore and the plugins still end the process.
oracle_need_lib() {
	command -v "${ORACLE_PYTHON:-python3}" >/dev/null 2>&1 ||
		oracle_skip "${ORACLE_PYTHON:-python3} is not installed"
	: "${DISKCORE_BUILD_ROOT:?run through meson test}"
	oracle_lib="$DISKCORE_BUILD_ROOT/core/libdiskcore.so"
	[ -e "$oracle_lib" ] || oracle_fail "$oracle_lib not found"
	oracle_py=${ORACLE_PYTHON:-python3}
	oracle_preload=""
	[ -n "${DISKCORE_SANITIZED:-}" ] || return 0
	oracle_py=$("$oracle_py" -c 'import sys; print(sys.executable)') ||
		oracle_fail "cannot run $oracle_py"
	for rt in libasan libubsan; do
		path=$(ldd "$oracle_lib" | awk -v rt="$rt" \
			'index($1, rt ".so") == 1 && $3 ~ /^\// { print $3; exit }')
		[ -z "$path" ] || oracle_preload="${oracle_preload:+$oracle_preload }$path"
	done
	case $DISKCORE_SANITIZED in
	*address*)
		case $oracle_preload in
		*libasan*) ;;
		*) oracle_fail "no libasan in \`ldd $oracle_lib\` (build with CC=gcc)" ;;
		esac
		;;
	esac
}

# python3-cryptography with its XTS mode.
oracle_need_xts() {
	"${ORACLE_PYTHON:-python3}" -c \
		'from cryptography.hazmat.primitives.ciphers import modes; modes.XTS' \
		2>/dev/null || oracle_skip "python3-cryptography (with XTS) is not installed"
}

# oracle_need_plugin NAME WHY: NAME.so is on $DISKCORE_PLUGIN_PATH, or skip
# saying WHY it may not have been built.
oracle_need_plugin() {
	for dir in $(echo "${DISKCORE_PLUGIN_PATH:-}" | tr ':' ' '); do
		[ -e "$dir/$1.so" ] && return 0
	done
	oracle_skip "the $1 plugin was not built ($2)"
}

# oracle_need_tools WHERE TOOL...: each TOOL is on $PATH, or skip naming the
# packages (WHERE) that provide them.
oracle_need_tools() {
	where=$1
	shift
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 ||
			oracle_skip "$tool is not installed ($where)"
	done
}

# oracle_workdir NAME: sets $work to a fresh directory, removed at exit after
# detaching the loop devices listed in $work/loops.
oracle_workdir() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/diskcore-$1-XXXXXX")
	: >"$work/loops"
	trap oracle_cleanup EXIT INT TERM
}

oracle_cleanup() {
	while read -r dev; do
		[ -z "$dev" ] || losetup -d "$dev" 2>/dev/null || true
	done <"$work/loops"
	rm -rf "$work"
}

# oracle_python: run the Python script on stdin after the prelude.
oracle_python() {
	{
		oracle_prelude
		cat
	} | if [ -n "$oracle_preload" ]; then
		tool_preload=${LD_PRELOAD-}
		tool_asan=${ASAN_OPTIONS-}
		ORACLE_TOOL_LD_PRELOAD=$tool_preload ORACLE_TOOL_ASAN_OPTIONS=$tool_asan \
			LD_PRELOAD="$oracle_preload${tool_preload:+ $tool_preload}" \
			ASAN_OPTIONS="${tool_asan:+$tool_asan:}detect_leaks=0" \
			LIB="$oracle_lib" WORK="$work" "$oracle_py" -
	else
		LIB="$oracle_lib" WORK="$work" "$oracle_py" -
	fi
}

oracle_prelude() {
	cat <<'EOF'
import ctypes, os, random, re, shutil, subprocess, sys

# Global, so that the plugins it loads find the core services.
lib = ctypes.CDLL(os.environ["LIB"], mode=ctypes.RTLD_GLOBAL)
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_close.argtypes = [ctypes.c_void_p]
lib.dc_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_uint32]
lib.dc_unmap.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32]
lib.dc_flush.argtypes = [ctypes.c_void_p]
lib.dc_sector_size.argtypes = [ctypes.c_void_p]
lib.dc_sector_size.restype = ctypes.c_uint32
lib.dc_sector_count.argtypes = [ctypes.c_void_p]
lib.dc_sector_count.restype = ctypes.c_uint64
lib.dc_last_error.restype = ctypes.c_char_p
RO = 1  # DC_OPEN_READ_ONLY

# Under a sanitizer build this interpreter runs with the sanitizer runtime
# preloaded and leak detection off (oracle-lib.sh, oracle_need_lib). Python
# children that load libdiskcore get the same (env=python_env()); every other
# command it runs gets the environment the test itself had.
_python_env = dict(os.environ)
for _var in ("LD_PRELOAD", "ASAN_OPTIONS"):
    _outer = os.environ.pop("ORACLE_TOOL_" + _var, None)
    _python_env.pop("ORACLE_TOOL_" + _var, None)
    if _outer is not None:
        if _outer:
            os.environ[_var] = _outer
        else:
            os.environ.pop(_var, None)


def python_env():
    """The environment for a Python child process that loads libdiskcore."""
    return dict(_python_env)

work = os.environ["WORK"]
failures = []


def fail(what):
    """Count a failed check and go on, so one run reports every mismatch."""
    failures.append(what)
    print("FAIL:", what, file=sys.stderr)


def check(cond, what):
    if not cond:
        fail(what)
    return cond


def finish():
    if failures:
        sys.exit("%d check(s) failed" % len(failures))


def run(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit("command failed: %s\n%s" % (" ".join(cmd), r.stdout.decode()))
    return r.stdout.decode()


def execute(*cmd, ok=(0,), env=None):
    """The finished process, stdout and stderr apart (bytes); the test ends
    unless its exit status is in ok."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if r.returncode not in ok:
        sys.exit("command failed: %s\n%s%s" % (" ".join(cmd), r.stdout.decode(),
                                              r.stderr.decode()))
    return r


class Disk:
    """A disk opened through libdiskcore; any failed call ends the test."""

    def __init__(self, spec, flags=0):
        self.spec = spec
        self.h = ctypes.c_void_p()
        rc = lib.dc_open(spec.encode(), flags, ctypes.byref(self.h))
        if rc != 0:
            sys.exit("dc_open(%s): %d %s" % (spec, rc, lib.dc_last_error().decode()))
        self.ss = lib.dc_sector_size(self.h)
        self.count = lib.dc_sector_count(self.h)

    def read(self, sector, n):
        buf = ctypes.create_string_buffer(n * self.ss)
        rc = lib.dc_read(self.h, sector, buf, n * self.ss)
        if rc != 0:
            sys.exit("%s: dc_read(%d, %d): %d" % (self.spec, sector, n, rc))
        return buf.raw

    def write(self, sector, data):
        rc = lib.dc_write(self.h, sector, data, len(data), 0)
        if rc != 0:
            sys.exit("%s: dc_write(%d, %d bytes): %d" % (self.spec, sector, len(data), rc))

    def close(self):
        rc = lib.dc_flush(self.h)
        lib.dc_close(self.h)
        if rc != 0:
            sys.exit("%s: dc_flush: %d" % (self.spec, rc))


class ByteDisk(Disk):
    """A Disk addressed in bytes (multiples of its sector size); close() is
    dc_close() alone, and whole-disk reads go in requests of CHUNK bytes."""

    CHUNK = 4 << 20

    def size(self):
        return lib.dc_sector_count(self.h) * self.ss

    def read(self, off, n):
        return Disk.read(self, off // self.ss, n // self.ss)

    def read_all(self):
        size = self.size()
        return b"".join(self.read(o, min(self.CHUNK, size - o))
                        for o in range(0, size, self.CHUNK))

    def write(self, off, data):
        Disk.write(self, off // self.ss, data)

    def unmap(self, off, n):
        rc = lib.dc_unmap(self.h, off // self.ss, n // self.ss, 0)
        if rc != 0:
            sys.exit("%s: dc_unmap(%d, %d bytes): %d" % (self.spec, off, n, rc))

    def flush(self):
        rc = lib.dc_flush(self.h)
        if rc != 0:
            sys.exit("%s: dc_flush: %d" % (self.spec, rc))

    def close(self):
        lib.dc_close(self.h)


def xts(key, unit, data, enc):
    """AES-XTS of one data unit, tweaked with its index (little-endian)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    c = Cipher(algorithms.AES(key), modes.XTS(unit.to_bytes(16, "little")))
    op = c.encryptor() if enc else c.decryptor()
    return op.update(data) + op.finalize()


def xts_units(key, us, first_unit, data, enc):
    """AES-XTS of consecutive us-byte units, the first with index first_unit."""
    return b"".join(xts(key, first_unit + i, data[i * us:(i + 1) * us], enc)
                    for i in range(len(data) // us))


def first_diff(a, b, us):
    """Index of the first us-byte unit where a and b differ."""
    return next(i for i in range(0, len(a), us) if a[i:i + us] != b[i:i + us]) // us


def write_file(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def sparse_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def pread(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def pwrite(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def loop4k(path):
    """path attached as a loop device with 4096-byte sectors (detached at
    exit), or None without root or losetup."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        return None
    r = subprocess.run(["losetup", "-f", "--show", "-b", "4096", path],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        return None
    dev = r.stdout.decode().strip()
    with open(os.path.join(work, "loops"), "a") as f:
        f.write(dev + "\n")
    return dev


EOF
}
