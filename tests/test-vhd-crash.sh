#!/bin/sh
# SPDX-License-Identifier: MIT
# Kill -9 a process that is writing through the vhd plugin (allocating blocks,
# flushing now and then, some FUA writes), many times, for a few seconds; after
# every kill the image must open, every write that was flushed (or FUA) before
# the kill must read back, and every other sector must hold a value some write
# could have left there. Runs on a dynamic image and on a differencing child.
# When qemu-img and libvhdi are installed, they must open the image too. The
# checker drives libdiskcore by ctypes (tests/oracle-lib.sh).
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

# The libvhdi oracles' interpreter when there is one.
if [ -z "${ORACLE_PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
	ORACLE_PYTHON=/usr/bin/python3
fi
oracle_need_lib
oracle_workdir vhd-crash

cat >"$work/writer.py" <<'EOF'
# writer.py LIB SPEC SEED: the writes of plan(SEED), printing "F n" once writes
# 0..n are durable (after a flush or a FUA write).
import ctypes, sys
sys.path.insert(0, sys.argv[4])
from plan import plan

lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
lib.dc_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.dc_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_uint32]
lib.dc_flush.argtypes = [ctypes.c_void_p]
d = ctypes.c_void_p()
if lib.dc_open(sys.argv[2].encode(), 0, ctypes.byref(d)) != 0:
    sys.exit(3)
print("S", flush=True)
for i, (sector, data, op) in enumerate(plan(int(sys.argv[3]))):
    if lib.dc_write(d, sector, data, len(data), 1 if op == "fua" else 0) != 0:
        sys.exit(4)
    if op == "fua" or (op == "flush" and lib.dc_flush(d) == 0):
        print("F %d" % i, flush=True)
EOF

cat >"$work/plan.py" <<'EOF'
import random

SECTORS = 8 * 1024 * 1024 // 512
COUNT = 400


def plan(seed):
    """(sector, data, op) for each write: op is 'fua', 'flush' (flush after
    it) or ''. Lengths and offsets are odd on purpose."""
    rnd = random.Random(seed)
    out = []
    for i in range(COUNT):
        n = rnd.choice([1, 3, 8, 16, 64, 130])
        sector = rnd.randrange(0, SECTORS - n + 1)
        data = bytes([(seed * 7 + i) % 251 + 1]) * (512 * n)
        op = rnd.choice(["", "", "", "flush", "fua"])
        out.append((sector, data, op))
    return out
EOF

oracle_python <<'EOF'
import signal, time
sys.path.insert(0, work)
from plan import plan, SECTORS

libpath = os.environ["LIB"]
have_qemu = shutil.which("qemu-img") is not None
have_vhdi = shutil.which("vhdiinfo") is not None


def read_all(spec):
    d = ByteDisk(spec, RO)
    data = d.read(0, SECTORS * 512)
    d.close()
    return data


def campaign(name, spec, img, seconds, start_seed):
    state = read_all(spec)  # what every sector holds now
    rounds = 0
    deadline = time.time() + seconds
    seed = start_seed
    kills_mid_write = 0
    while rounds < 5 or time.time() < deadline:
        seed += 1
        p = subprocess.Popen([sys.executable, os.path.join(work, "writer.py"), libpath,
                              spec, str(seed), work], env=python_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "S":
            p.wait()
            raise SystemExit("FAIL: %s: writer did not start: %s" % (name, p.stderr.read()))
        time.sleep(random.Random(seed).uniform(0.02, 0.15))
        os.kill(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        if p.returncode != -signal.SIGKILL:
            # Finished before the kill (or failed): that is fine only if clean.
            if p.returncode != 0:
                raise SystemExit("FAIL: %s: writer exited %d: %s" % (name, p.returncode, err))
        else:
            kills_mid_write += 1
        flushed = -1
        for line in out.splitlines():
            if line.startswith("F "):
                flushed = int(line[2:])
        writes = plan(seed)
        # Expected: the state before, with writes 0..flushed applied; any sector
        # may instead hold a value from a later write of this round.
        want = bytearray(state)
        for sector, data, _ in writes[:flushed + 1]:
            want[sector * 512:sector * 512 + len(data)] = data
        later = {}
        for sector, data, _ in writes[flushed + 1:]:
            for s in range(sector, sector + len(data) // 512):
                later.setdefault(s, set()).add(data[0])
        got = read_all(spec)  # must open after the kill
        for s in range(SECTORS):
            a, b = s * 512, s * 512 + 512
            if got[a:b] == want[a:b]:
                continue
            if got[a:b] == bytes([got[a]]) * 512 and got[a] in later.get(s, ()):
                continue
            raise SystemExit("FAIL: %s round %d (seed %d, flushed through write %d): "
                             "sector %d holds %r..., expected %r..."
                             % (name, rounds, seed, flushed, s, got[a:a + 4],
                                want[a:a + 4]))
        # Other readers too (every few rounds: starting them is slow here).
        if have_vhdi and rounds % 3 == 0:
            r = subprocess.run(["vhdiinfo", img], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise SystemExit("FAIL: %s: vhdiinfo cannot open the image after a "
                                 "kill: %s" % (name, r.stderr.decode()))
        if have_qemu and rounds % 3 == 0:
            r = subprocess.run(["qemu-img", "info", "-f", "vpc", img],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise SystemExit("FAIL: %s: qemu-img cannot open the image after a "
                                 "kill: %s" % (name, r.stderr.decode()))
        state = got
        rounds += 1
    print("ok: %s: %d kills (%d in the middle of writing), every flushed write "
          "read back" % (name, rounds, kills_mid_write))
    return state


dyn = os.path.join(work, "dyn.vhd")
ByteDisk("vhd:%s;create=%d;block=64K" % (dyn, SECTORS * 512)).close()
final = campaign("dynamic", "vhd:" + dyn, dyn, 2.0, 0)
if have_qemu:
    raw = os.path.join(work, "dyn.raw")
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", dyn, raw], check=True)
    with open(raw, "rb") as f:
        if f.read() != final:
            raise SystemExit("FAIL: qemu-img reads the crashed image differently")
    print("ok: qemu-img reads the crashed dynamic image as diskcore does")

base = os.path.join(work, "base.vhd")
d = ByteDisk("vhd:%s;create=%d;block=512K" % (base, SECTORS * 512))
pattern = bytes(range(256)) * 2
for s in range(0, SECTORS, 64):
    if lib.dc_write(d.h, s, pattern * 8, 4096, 0) != 0:
        raise SystemExit("FAIL: filling the base at sector %d: %s"
                         % (s, lib.dc_last_error().decode()))
d.close()
child = os.path.join(work, "child.vhd")
ByteDisk("vhd:%s;parent=%s;block=128K" % (child, base)).close()
campaign("differencing", "vhd:" + child, child, 2.0, 10000)
EOF
