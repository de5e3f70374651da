#!/bin/sh
# SPDX-License-Identifier: MIT
# qcow2 images that hold internal snapshots, written by diskcore, and images
# QEMU left dirty with lazy refcounts, opened for writing; qemu-img is the
# oracle:
#  - random writes and unmaps over clusters a snapshot shares (v2 and v3,
#    512 B to 64 KiB clusters, extended L2, compressed clusters, 4-bit
#    refcounts, two snapshots deep): qemu-img check is clean, the image
#    reads the new data, `qemu-img convert -l` still reads each snapshot,
#    `qemu-img snapshot -a` brings a snapshot back (and checks clean), and
#    deleting every snapshot leaves no leak (the refcounts were exact);
#  - dirty with lazy refcounts: one written by hand (the dirty bit set, a
#    data cluster's refcount zeroed, over a snapshot) and one qemu-io
#    abort()ed mid-run: qemu-img check sees the damage, a writable diskctl
#    open rebuilds the refcounts, then qemu-img check is clean and the disk
#    reads what it held plus the new write;
#  - in-place writes (the file engine) racing allocating ones into the same
#    extended-L2 clusters, several threads: qemu-img check is clean.
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

# shellcheck source=tests/test-qcow2-lib.sh
. "$(dirname "$0")/test-qcow2-lib.sh"
qcow2_test_setup qcow2-snap "draw the random writes"

# snapread NAME IMG SNAP RAW: snapshot SNAP of IMG reads as RAW.
snapread() {
	rm -f "$W/snapgot"
	if qemu-img convert -l "snapshot.name=$3" -O raw "$2" "$W/snapgot" 2>"$W/err" &&
		cmp -s "$W/snapgot" "$4"; then
		ok "$1"
	else
		bad "$1: $(cat "$W/err") $(cmp "$W/snapgot" "$4" 2>&1 | head -1)"
	fi
}

# applied NAME IMG SNAP RAW: qemu-img snapshot -a SNAP, then IMG checks
# clean and equals RAW.
applied() {
	if qemu-img snapshot -a "$3" "$2" 2>"$W/err"; then
		verify "$1" "$2" "$4"
	else
		bad "$1: qemu-img snapshot -a: $(cat "$W/err")"
	fi
}

# snap_case NAME SIZE MAX CONVERT-ARGS...: random data with zero holes made
# a qcow2 by qemu-img convert CONVERT-ARGS, snapshot s1, random writes and
# unmaps, snapshot s2, more writes; then each state checked.
snap_case() {
	name=$1 size=$2 max=$3
	shift 3
	img="$W/$name.qcow2" ref="$W/$name.ref"
	head -c "$size" /dev/urandom >"$W/$name.s1"
	dd if=/dev/zero of="$W/$name.s1" bs=4k seek=40 count=40 conv=notrunc status=none
	qemu-img convert -O qcow2 "$@" "$W/$name.s1" "$img"
	qemu-img snapshot -c s1 "$img"
	cp "$W/$name.s1" "$ref"
	seed=$(printf %s "$name" | cksum | cut -d' ' -f1)
	if scribble "qcow2:$img" "$ref" "$seed" 12 "$max"; then
		verify "$name: writes over snapshot s1" "$img" "$ref"
	else
		bad "$name: writes over snapshot s1"
	fi
	dd if=/dev/zero of="$ref" bs=4k seek=100 count=30 conv=notrunc status=none
	if "$D" cp -q --sparse --bs 16K "file:$ref" "qcow2:$img" 2>"$W/err"; then
		verify "$name: unmaps over snapshot s1" "$img" "$ref"
	else
		bad "$name: cp --sparse: $(cat "$W/err")"
	fi
	qemu-img snapshot -c s2 "$img"
	cp "$ref" "$W/$name.s2"
	if scribble "qcow2:$img" "$ref" "$((seed + 1))" 12 "$max"; then
		verify "$name: writes over snapshots s1 and s2" "$img" "$ref"
	else
		bad "$name: writes over snapshots s1 and s2"
	fi
	snapread "$name: snapshot s1 reads as taken" "$img" s1 "$W/$name.s1"
	snapread "$name: snapshot s2 reads as taken" "$img" s2 "$W/$name.s2"
	applied "$name: snapshot -a s1 restores it" "$img" s1 "$W/$name.s1"
	applied "$name: snapshot -a s2 restores it" "$img" s2 "$W/$name.s2"
	if qemu-img snapshot -d s1 "$img" && qemu-img snapshot -d s2 "$img"; then
		verify "$name: no leak once the snapshots are deleted" "$img" "$W/$name.s2"
	else
		bad "$name: qemu-img snapshot -d"
	fi
}

snap_case c64k-v3 2M 300 -o cluster_size=64k
snap_case c512-v2 1M 40 -o cluster_size=512,compat=0.10
snap_case c4k-rc4 1M 40 -o cluster_size=4k,refcount_bits=4
snap_case extl2 2M 300 -o cluster_size=64k,extended_l2=on
snap_case compressed 2M 300 -c -o cluster_size=64k

# --- dirty with lazy refcounts ---
# rc_zero IMG: the refcount of the data cluster of guest cluster 0 set to 0
# (16-bit refcounts, the first refcount block).
rc_zero() {
	"$PY" -c 'import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(104)
cs = 1 << struct.unpack(">I", h[20:24])[0]
mask = 0x00fffffffffffe00
def q(off):
    f.seek(off)
    return struct.unpack(">Q", f.read(8))[0]
host = q(q(q(40) & mask) & mask) & mask
f.seek(q(q(48)) + 2 * (host // cs))
f.write(b"\0\0")' "$1"
}

# repaired NAME IMG REF: a diskctl write repairs IMG (dirty, lazy refcounts;
# qemu-img check must see damage first), then it checks clean and reads REF
# plus the write.
repaired() {
	rc=0
	qemu-img check -q "$2" >/dev/null 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || echo "# $1: qemu-img check found nothing before the repair"
	[ "$rc" -ne 0 ] || [ "${4:-}" = any ] || bad "$1: the damage was not there"
	head -c 8192 /dev/urandom >"$W/chunk"
	dd if="$W/chunk" of="$3" bs=512 seek=3 conv=notrunc status=none
	if ! "$D" write "qcow2:$2" 3 --file "$W/chunk" >/dev/null 2>"$W/err"; then
		bad "$1: the write after the repair: $(cat "$W/err")"
	else
		verify "$1 (qemu-img check exit $rc before)" "$2" "$3"
	fi
}

img="$W/lazy.qcow2"
qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k "$img" 4M
qemu-io -f qcow2 -c "write -P 0x33 0 1M" "$img" >/dev/null
qemu-img snapshot -c s "$img"
qemu-io -f qcow2 -c "write -P 0x44 512k 1M" "$img" >/dev/null
qemu-img convert -O raw "$img" "$W/lazy.ref"
qemu-img convert -l snapshot.name=s -O raw "$img" "$W/lazy.snap"
rc_zero "$img"
setbit "$img" 0
repaired "lazy refcounts, a refcount zeroed by hand: rebuilt" "$img" "$W/lazy.ref"
snapread "lazy refcounts: the snapshot survives the rebuild" "$img" s "$W/lazy.snap"

img="$W/abort.qcow2"
qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k "$img" 8M
# A two-table L2 cache: tables go out while the refcounts wait for a flush
# that abort() never runs.
(
	ulimit -c 0
	qemu-io --image-opts -c "write -P 0x55 0 6M" -c "write -P 0x66 1M 64k" -c abort \
		"driver=qcow2,file.filename=$img,l2-cache-size=8k" >/dev/null 2>&1 || true
) 2>/dev/null
if od -An -tx1 -j79 -N1 "$img" | grep -q 01; then
	qemu-img convert -O raw "$img" "$W/abort.ref"
	repaired "lazy refcounts, qemu-io aborted mid-run: rebuilt" "$img" "$W/abort.ref" any
else
	bad "qemu-io abort left the dirty bit clear"
fi

# --- in-place and allocating writes into the same clusters at once ---
img="$W/race.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=64k,extended_l2=on "$img" 4M
# Every other 2 KiB subcluster allocated: 2 KiB writes land on both kinds.
i=0
while [ $i -lt 64 ]; do
	set -- "$@" -c "write -P 0x77 $((i * 65536)) 2k" -c "write -P 0x77 $((i * 65536 + 8192)) 16k"
	i=$((i + 1))
done
qemu-io -f qcow2 "$@" "$img" >/dev/null
if "$D" bench --rw randwrite --bs 2K --qd 16 --threads 4 --count 6000 "qcow2:$img" \
	>"$W/bench" 2>&1 && qemu-img check -q "$img" >"$W/check" 2>&1; then
	ok "4 threads writing in place and allocating in the same clusters: check clean"
else
	bad "in-place and allocating writes at once: $(cat "$W/bench" "$W/check" | tail -5)"
fi

echo "1..$n"
[ "$fails" -eq 0 ]
