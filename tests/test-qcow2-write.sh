#!/bin/sh
# SPDX-License-Identifier: MIT
# qcow2 writing against qemu-img, the reference implementation: images diskcore
# writes must pass `qemu-img check` (exit status 0) and `qemu-img compare`
# with a raw file that had the same writes.
#  - random writes, partial and whole clusters, for every cluster size from
#    512 B to 2 MiB, v2 (compat=0.10) and v3, over a raw backing file
#    (copy-on-write of partial clusters), a qcow2 backing chain, extended L2
#    (partial subclusters), refcount_bits 1 to 64 (refcount blocks and the
#    refcount table grown), compressed clusters rewritten;
#  - unmaps (diskctl cp --sparse) over allocated clusters and a backing file;
#  - several threads writing at once (diskctl bench randwrite);
#  - diskctl create qcow2: (with --parent) and convert to qcow2;
#  - a corrupt-marked image is refused for writing (test-qcow2-snap.sh
#    repairs dirty ones with lazy refcounts); a clean close leaves the dirty
#    bit clear, a kill -9 set;
#  - kill -9 during allocating writes: qemu-img check finds no corruption
#    (leaks allowed), every write that was flushed reads back, and the image
#    opens for writing again.
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

# shellcheck source=tests/test-qcow2-lib.sh
. "$(dirname "$0")/test-qcow2-lib.sh"
qcow2_test_setup qcow2-write "draw the random writes"

# case NAME SIZE MAX CREATE-OPTIONS [BACKING-RAW]: a qemu-img image (over a
# copy of BACKING-RAW's content when given), NOPS (16) random writes of up to
# MAX sectors, verify.
case_() {
	name=$1 size=$2 max=$3 opts=$4 back=${5:-}
	img="$W/$name.qcow2"
	ref="$W/$name.ref"
	if [ -n "$back" ]; then
		qemu-img create -q -f qcow2 -o "$opts" -b "$(basename "$back")" -F raw "$img" "$size"
		cp "$back" "$ref"
		truncate -s "$size" "$ref"
	else
		qemu-img create -q -f qcow2 -o "$opts" "$img" "$size"
		truncate -s "$size" "$ref"
	fi
	if scribble "qcow2:$img" "$ref" "$(printf %s "$name" | cksum | cut -d' ' -f1)" "${NOPS:-16}" "$max"; then
		verify "$name: random writes" "$img" "$ref"
	else
		bad "$name: random writes"
	fi
}

head -c 4M /dev/urandom >"$W/base.raw"

# --- cluster sizes, versions, backing files ---
case_ c512-v3 2M 24 cluster_size=512
case_ c512-v2 2M 24 cluster_size=512,compat=0.10
case_ c4k-v3 4M 40 cluster_size=4k
case_ c64k-v2 4M 300 cluster_size=64k,compat=0.10
case_ c64k-v3 4M 300 cluster_size=64k
case_ c2M-v3 8M 2000 cluster_size=2M
case_ c4k-backing 4M 40 cluster_size=4k "$W/base.raw"
case_ c64k-backing 4M 300 cluster_size=64k "$W/base.raw"
case_ c64k-v2-backing 4M 300 cluster_size=64k,compat=0.10 "$W/base.raw"
case_ c2M-backing 4M 2000 cluster_size=2M "$W/base.raw"
case_ extl2 4M 300 cluster_size=64k,extended_l2=on
case_ extl2-backing 4M 300 cluster_size=64k,extended_l2=on "$W/base.raw"
# Every other cluster size, over the backing file.
for cs in 1k 2k 8k 16k 32k 128k 256k 512k 1M; do
	NOPS=6 case_ "c$cs" 4M 160 "cluster_size=$cs" "$W/base.raw"
done
for rb in 1 2 4 8 16 32 64; do
	NOPS=10 case_ "refcount$rb" 3M 64 "cluster_size=512,refcount_bits=$rb"
done

# --- a qcow2 chain: writes to the top copy from two layers below ---
qemu-img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw "$W/mid.qcow2" 4M
qemu-io -f qcow2 -c 'write -P 0x6d 100k 300k' -c 'write -z 1M 64k' "$W/mid.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=64k -b mid.qcow2 -F qcow2 "$W/top.qcow2" 4M
qemu-img convert -O raw "$W/top.qcow2" "$W/top.ref"
if scribble "qcow2:$W/top.qcow2" "$W/top.ref" 7 20 200; then
	verify "a qcow2 chain 3 deep: copy-on-write from both layers below" "$W/top.qcow2" "$W/top.ref"
else
	bad "a qcow2 chain 3 deep"
fi

# --- compressed clusters rewritten ---
qemu-img convert -q -c -O qcow2 -o cluster_size=64k "$W/base.raw" "$W/comp.qcow2"
cp "$W/base.raw" "$W/comp.ref"
if scribble "qcow2:$W/comp.qcow2" "$W/comp.ref" 11 20 200; then
	verify "compressed clusters rewritten on write" "$W/comp.qcow2" "$W/comp.ref"
else
	bad "compressed clusters rewritten on write"
fi

# --- unmaps: zero chunks of the source are unmapped on the qcow2 ---
for c in c64k-v3 c64k-backing extl2-backing c512-v2; do
	ref="$W/$c.ref"
	dd if=/dev/zero of="$ref" bs=64k seek=3 count=7 conv=notrunc status=none
	dd if=/dev/zero of="$ref" bs=4k seek=301 count=5 conv=notrunc status=none
	before=$(qemu-img map --output=json "$W/$c.qcow2" | grep -c '"data": true' || true)
	if "$D" cp -q --sparse --bs 64K "file:$ref" "qcow2:$W/$c.qcow2" 2>"$W/err"; then
		verify "$c: unmapped ranges read as zero" "$W/$c.qcow2" "$ref"
	else
		bad "$c: cp --sparse: $(cat "$W/err")"
	fi
	after=$(qemu-img map --output=json "$W/$c.qcow2" | grep -c '"data": true' || true)
	echo "# $c: data extents $before before the unmaps, $after after"
done

# --- several threads allocating at once ---
qemu-img create -q -f qcow2 -o cluster_size=64k -b base.raw -F raw "$W/mt.qcow2" 4M
if "$D" bench --rw randwrite --bs 4K --qd 16 --threads 4 --count 4000 "qcow2:$W/mt.qcow2" \
	>"$W/bench" 2>&1 && qemu-img check -q "$W/mt.qcow2" >"$W/check" 2>&1; then
	ok "4 threads of random 4K writes over a backing file: qemu-img check clean"
else
	bad "4 threads of random writes: $(cat "$W/bench" "$W/check" | tail -5)"
fi

# --- diskctl create and convert ---
if "$D" create -q "qcow2:$W/new.qcow2" 5M && "$D" write "qcow2:$W/new.qcow2" 9 \
	--pattern 0x42 --count 100 >/dev/null && qemu-img check -q "$W/new.qcow2" &&
	qemu-io -f qcow2 -c 'read -P 0x42 4608 51200' -c 'read -P 0 0 4608' "$W/new.qcow2" |
	grep -q "^read 51200/51200"; then
	ok "diskctl create qcow2: makes an image qemu-img reads"
else
	bad "diskctl create qcow2:"
fi
if "$D" create -q --parent "$W/base.raw" "qcow2:$W/child.qcow2" &&
	[ "$(qemu-img info --output=json "$W/child.qcow2" | grep -c '"backing-filename": "base.raw"')" = 1 ] &&
	qemu-img compare -q -F raw "$W/child.qcow2" "$W/base.raw"; then
	ok "diskctl create --parent: a qcow2 over a raw backing file"
else
	bad "diskctl create --parent: $(qemu-img info "$W/child.qcow2" 2>&1 | tail -3)"
fi
if "$D" convert -q "file:$W/base.raw" "qcow2:$W/conv.qcow2" 2>"$W/err" &&
	qemu-img check -q "$W/conv.qcow2" && qemu-img compare -q -F raw "$W/conv.qcow2" "$W/base.raw"; then
	ok "diskctl convert raw to qcow2"
else
	bad "diskctl convert raw to qcow2: $(cat "$W/err")"
fi
for cs in 512 2M; do
	if "$D" create -q "qcow2:$W/n$cs.qcow2;cluster=$cs" 3M && truncate -s 3M "$W/n$cs.ref" &&
		scribble "qcow2:$W/n$cs.qcow2" "$W/n$cs.ref" 5 20 64; then
		verify "a new image with $cs-byte clusters" "$W/n$cs.qcow2" "$W/n$cs.ref"
	else
		bad "a new image with $cs-byte clusters"
	fi
done

# --- images a writer must not touch as they are ---
refused_write() {
	if "$D" write "qcow2:$2" 0 --pattern 1 --count 1 >/dev/null 2>"$W/err"; then
		bad "$1: the write was taken"
	elif grep -q "$3" "$W/err"; then
		ok "$1"
	else
		bad "$1: $(cat "$W/err")"
	fi
}
qemu-img create -q -f qcow2 "$W/corrupt.qcow2" 1M
setbit "$W/corrupt.qcow2" 1
refused_write "a QEMU-marked corrupt image is refused for writing" "$W/corrupt.qcow2" \
	"QEMU marked the image corrupt"
qemu-img create -q -f qcow2 "$W/clean.qcow2" 1M
"$D" write "qcow2:$W/clean.qcow2" 0 --pattern 1 --count 1 >/dev/null
if qemu-img info "$W/clean.qcow2" | grep -q "corrupt: false" &&
	[ "$(od -An -tx1 -j79 -N1 "$W/clean.qcow2" | tr -d ' ')" = 00 ]; then
	ok "a clean close leaves the dirty bit clear"
else
	bad "a clean close leaves the dirty bit clear"
fi

# --- kill -9 during allocating writes ---
# A writer loop: each diskctl write flushes before it exits 0, and the loop
# then logs it; the writes never overlap. Killed at a random moment.
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=2 -b base.raw -F raw \
	"$W/crash.qcow2" 8M
cat >"$W/writer.sh" <<EOF
i=0
while [ \$i -lt 300 ]; do
	s=\$((i * 48 + (i * 37) % 16))
	head -c 16384 /dev/urandom >"$W/c\$i"
	"$D" write "qcow2:$W/crash.qcow2" "\$s" --file "$W/c\$i" >/dev/null 2>&1 || exit 1
	echo "\$i \$s" >>"$W/done"
	i=\$((i + 1))
done
EOF
: >"$W/done"
setsid sh "$W/writer.sh" &
wpid=$!
# Killed once a random number of writes are done: inside the next one's life.
want=$(shuf -i 3-60 -n 1)
end=$(($(date +%s) + 60))
while [ "$(wc -l <"$W/done")" -lt "$want" ] && [ "$(date +%s)" -lt "$end" ]; do
	sleep 0.01
done
kill -KILL "-$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
rc=0
qemu-img check "$W/crash.qcow2" >"$W/check" 2>&1 || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; then
	ok "kill -9 mid-write: qemu-img check finds no corruption (exit $rc, $(wc -l <"$W/done") writes done)"
else
	bad "kill -9 mid-write: qemu-img check exit $rc: $(head -5 "$W/check")"
fi
qemu-img convert -O raw "$W/crash.qcow2" "$W/crash.raw"
lost=0
while read -r i s; do
	dd if="$W/crash.raw" of="$W/got" bs=512 skip="$s" count=32 status=none
	cmp -s "$W/got" "$W/c$i" || lost=$((lost + 1))
done <"$W/done"
if [ "$lost" -eq 0 ]; then
	ok "kill -9 mid-write: every flushed write reads back"
else
	bad "kill -9 mid-write: $lost flushed writes lost"
fi
if "$D" write "qcow2:$W/crash.qcow2" 0 --pattern 7 --count 3 >/dev/null 2>"$W/err" &&
	qemu-img check -q "$W/crash.qcow2" >/dev/null 2>&1 || [ $? -eq 3 ]; then
	ok "kill -9 mid-write: the image opens for writing again"
else
	bad "kill -9 mid-write: reopening: $(cat "$W/err")"
fi
# One process with writes in flight, killed mid-run; a two-table L2 cache of
# 512-byte clusters makes it flush (evicting dirty tables) all the time.
qemu-img create -q -f qcow2 -o cluster_size=512 "$W/crash2.qcow2" 4M
"$D" bench --rw randwrite --bs 4K --qd 32 --threads 2 --time 10 "qcow2:$W/crash2.qcow2;l2-cache=1k" \
	>/dev/null 2>&1 &
bpid=$!
sleep "0.$(shuf -i 3-9 -n 1)"
kill -9 "$bpid" 2>/dev/null || true
wait "$bpid" 2>/dev/null || true
if [ "$(od -An -tx1 -j79 -N1 "$W/crash2.qcow2" | tr -d ' ')" = 01 ]; then
	ok "kill -9 with writes in flight: the dirty bit is left set"
else
	bad "kill -9 with writes in flight: the dirty bit is not set"
fi
rc=0
qemu-img check "$W/crash2.qcow2" >"$W/check" 2>&1 || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; then
	ok "kill -9 with 64 writes in flight: no corruption (exit $rc)"
else
	bad "kill -9 with 64 writes in flight: qemu-img check exit $rc: $(head -5 "$W/check")"
fi

# diskctl check against qemu-img check, on the same images: both exit 0
# (clean), 3 (leaks only) or 2 (corruption).
# patch_rc IMG WHICH VALUE: set the 16-bit refcount of cluster 0 (WHICH=hdr)
# or of the first data cluster of L1 entry 0 (WHICH=data) to VALUE; with
# WHICH=l2: move that data cluster's L2 entry 512 bytes (misaligned); with
# WHICH=copied: clear its copied flag (refcount 1 says it must be set).
patch_rc() {
	"$PY" - "$@" <<'PYEOF'
import struct, sys
path, which, val = sys.argv[1], sys.argv[2], int(sys.argv[3])
f = open(path, "r+b")
h = f.read(104)
cb = struct.unpack(">I", h[20:24])[0]
l1 = struct.unpack(">Q", h[40:48])[0]
rct = struct.unpack(">Q", h[48:56])[0]
assert struct.unpack(">I", h[96:100])[0] == 4
cs = 1 << cb
f.seek(l1)
l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2)
tab = f.read(cs)
i = next(i for i in range(cs // 8) if struct.unpack(">Q", tab[8*i:8*i+8])[0] & 0x00fffffffffffe00)
e = struct.unpack(">Q", tab[8*i:8*i+8])[0]
if which in ("l2", "copied"):
    f.seek(l2 + 8 * i)
    f.write(struct.pack(">Q", e + 512 if which == "l2" else e & ~(1 << 63)))
    sys.exit(0)
ci = 0 if which == "hdr" else (e & 0x00fffffffffffe00) >> cb
per = cs // 2
f.seek(rct + 8 * (ci // per))
rb = struct.unpack(">Q", f.read(8))[0]
f.seek(rb + 2 * (ci % per))
f.write(struct.pack(">H", val))
PYEOF
}
# checkboth NAME IMG WANT: qemu-img check and diskctl check both exit WANT.
checkboth() {
	qrc=0 drc=0
	qemu-img check "$2" >"$W/qcheck" 2>&1 || qrc=$?
	"$D" check "qcow2:$2" >"$W/dcheck" 2>&1 || drc=$?
	if [ "$qrc" -eq "$3" ] && [ "$drc" -eq "$3" ]; then
		ok "check: $1: qemu-img check and diskctl check exit $3"
	else
		bad "check: $1: qemu-img exit $qrc, diskctl exit $drc (want $3): $(head -3 "$W/qcheck") / $(head -4 "$W/dcheck")"
	fi
}
qemu-img create -q -f qcow2 "$W/ck.qcow2" 4M
qemu-io -f qcow2 -c "write -P 1 0 300k" -c "write -P 2 2M 64k" "$W/ck.qcow2" >/dev/null
checkboth "qemu-made image" "$W/ck.qcow2" 0
qemu-img snapshot -c s1 "$W/ck.qcow2"
qemu-io -f qcow2 -c "write -P 3 64k 64k" "$W/ck.qcow2" >/dev/null
checkboth "qemu-made image with a snapshot" "$W/ck.qcow2" 0
qemu-img convert -c -O qcow2 -o cluster_size=4k "$W/ck.qcow2" "$W/ckz.qcow2"
checkboth "compressed 4K clusters" "$W/ckz.qcow2" 0
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k,refcount_bits=1 "$W/ckx.qcow2" 4M
qemu-io -f qcow2 -c "write -P 4 4k 8k" "$W/ckx.qcow2" >/dev/null
checkboth "extended L2, refcount_bits=1" "$W/ckx.qcow2" 0
"$D" create -q "qcow2:$W/ckd.qcow2;cluster=4k" 8M
"$D" write "qcow2:$W/ckd.qcow2" 3 --pattern 0x42 --count 200 >/dev/null
checkboth "diskcore-made image" "$W/ckd.qcow2" 0
checkboth "kill -9 with writes in flight" "$W/crash2.qcow2" \
	"$(qemu-img check "$W/crash2.qcow2" >/dev/null 2>&1 && echo 0 || echo $?)"
ql=$(grep -c "^Leaked cluster" "$W/qcheck" || true)
dl=$(grep -c "^leak: " "$W/dcheck" || true)
if [ "$ql" -eq "$dl" ]; then
	ok "check: kill -9 with writes in flight: the same $ql leaked clusters"
else
	bad "check: kill -9 with writes in flight: qemu-img finds $ql leaks, diskctl $dl"
fi
cp "$W/ckd.qcow2" "$W/ckl.qcow2"
patch_rc "$W/ckl.qcow2" hdr 2
checkboth "the header's refcount patched up to 2 (a leak)" "$W/ckl.qcow2" 3
cp "$W/ckd.qcow2" "$W/ckc.qcow2"
patch_rc "$W/ckc.qcow2" data 0
checkboth "a used data cluster's refcount patched to 0" "$W/ckc.qcow2" 2
grep -q "refcount 0 below its 1 references" "$W/dcheck" ||
	bad "check: the finding names the refcount: $(head -3 "$W/dcheck")"
cp "$W/ckd.qcow2" "$W/cka.qcow2"
patch_rc "$W/cka.qcow2" l2 0
checkboth "a misaligned L2 entry" "$W/cka.qcow2" 2
cp "$W/ckd.qcow2" "$W/ckf.qcow2"
patch_rc "$W/ckf.qcow2" copied 0
checkboth "an L2 entry without the copied flag over refcount 1" "$W/ckf.qcow2" 2

echo "1..$n"
[ "$fails" -eq 0 ]
