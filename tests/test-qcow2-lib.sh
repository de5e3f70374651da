# shellcheck shell=sh
# SPDX-License-Identifier: MIT
# Sourced by the qcow2 shell tests (test-qcow2.sh, test-qcow2-write.sh,
# test-qcow2-snap.sh) after oracle-lib.sh: their preconditions and scratch
# directory (qcow2_test_setup: $D, $PY, $W), TAP counting (ok, bad; $n and
# $fails), random writes through diskctl mirrored into a raw file (ops,
# scribble), the oracle's verdict on an image (verify) and the header's
# incompatible bits (setbit).
fails=0
n=0

# qcow2_test_setup NAME WHY: skip unless diskctl, qemu-img, qemu-io, the
# qcow2 and file plugins and python3 (needed to WHY) are there; scratch
# directory NAME in $W.
qcow2_test_setup() {
	: "${DISKCORE_BUILD_ROOT:?run through meson test}"
	D="$DISKCORE_BUILD_ROOT/tools/diskctl"
	[ -x "$D" ] || oracle_skip "$D was not built"
	oracle_need_tools qemu-utils qemu-img qemu-io
	oracle_need_plugin qcow2 "zlib"
	oracle_need_plugin file "always built"
	PY=/usr/bin/python3
	[ -x "$PY" ] || oracle_skip "python3 is needed to $2"
	oracle_workdir "$1"
	W=$work
}

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}
bad() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
}

# ops SEED COUNT DISK_SECTORS MAX_SECTORS: "SECTOR COUNT" lines, random.
ops() {
	"$PY" -c 'import random, sys
r = random.Random(int(sys.argv[1]))
disk, mx = int(sys.argv[3]), int(sys.argv[4])
for _ in range(int(sys.argv[2])):
    c = r.randint(1, mx)
    print(r.randrange(0, disk - c + 1), c)' "$@"
}

# scribble SPEC REF SEED COUNT MAX: COUNT random writes of up to MAX sectors,
# through diskctl to SPEC and with dd to the raw file REF.
scribble() {
	sectors=$(($(stat -c %s "$2") / 512))
	ops "$3" "$4" "$sectors" "$5" >"$W/ops"
	while read -r s c; do
		head -c $((c * 512)) /dev/urandom >"$W/chunk"
		"$D" write "$1" "$s" --file "$W/chunk" >/dev/null 2>"$W/err" || {
			echo "# write $s+$c: $(cat "$W/err")"
			return 1
		}
		dd if="$W/chunk" of="$2" bs=512 seek="$s" conv=notrunc status=none
	done <"$W/ops"
}

# verify NAME IMG REF: qemu-img check is clean and the image equals REF.
verify() {
	if ! qemu-img check -q "$2" >"$W/check" 2>&1; then
		bad "$1: qemu-img check: $(head -5 "$W/check")"
	elif ! qemu-img compare -q -f qcow2 -F raw "$2" "$3" >"$W/cmp" 2>&1; then
		bad "$1: qemu-img compare: $(cat "$W/cmp") $(qemu-img compare -f qcow2 -F raw "$2" "$3" 2>&1 | head -2)"
	else
		ok "$1"
	fi
}

# setbit IMG BIT: set incompatible feature bit BIT (big-endian field at 72).
setbit() {
	"$PY" -c 'import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(72); v = struct.unpack(">Q", f.read(8))[0] | (1 << int(sys.argv[2]))
    f.seek(72); f.write(struct.pack(">Q", v))' "$@"
}
