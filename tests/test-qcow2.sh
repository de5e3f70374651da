#!/bin/sh
# SPDX-License-Identifier: MIT
# The qcow2 plugin against qemu-img and qemu-io, which make every image here:
#  - every byte read through `diskctl cp qcow2:IMG` equals `qemu-img convert -O
#    raw` of the same image: v2 (compat=0.10) and v3, clusters of 512 B, 4 KiB,
#    64 KiB and 2 MiB, extended L2 (subclusters), zero clusters (write -z),
#    compressed clusters (convert -c, zlib and zstd), and backing chains
#    (qcow2 over raw, qcow2 over qcow2 over raw, 3 deep);
#  - a backing file outside the image's directory is refused unless the spec
#    says ;parents=any; one whose format the image does not name is taken only
#    when its magic says qcow2;
#  - memdiff:qcow2:IMG takes writes (test-qcow2-write.sh tests qcow2 writing);
#  - diskctl info lists internal snapshots (count and names); ;snapshot=NAME
#    (or ID) reads what qemu-img reads of that snapshot (test-qcow2-snap.sh
#    writes images that hold snapshots);
#  - hostile headers (truncated file, L1 table past the end, huge l1_size,
#    cluster_bits out of range, an unknown incompatible bit, named from the
#    feature table when it is there, encryption) each
#    fail with a clear message: exit status 1, never a signal or a hang.
set -eu
# shellcheck source=tests/oracle-lib.sh
. "$(dirname "$0")/oracle-lib.sh"

# shellcheck source=tests/test-qcow2-lib.sh
. "$(dirname "$0")/test-qcow2-lib.sh"
qcow2_test_setup qcow2 "patch headers"

qio() {
	img=$1
	shift
	for c in "$@"; do
		set -- "$@" -c "$c"
		shift
	done
	qemu-io -f qcow2 "$@" "$img" >/dev/null
}

# same NAME SPEC IMG: every byte of SPEC equals qemu-img's raw conversion of IMG
# (read with `diskctl cp $CPARGS`).
same() {
	rm -f "$W/ref.raw" "$W/got.raw"
	qemu-img convert -O raw "$3" "$W/ref.raw"
	truncate -s "$(stat -c %s "$W/ref.raw")" "$W/got.raw"
	# shellcheck disable=SC2086 # $CPARGS is a list of options
	if ! timeout 120 "$D" cp -q --no-sparse ${CPARGS:-} "$2" "file:$W/got.raw" 2>"$W/err"; then
		bad "$1: diskctl cp failed: $(cat "$W/err")"
	elif cmp -s "$W/ref.raw" "$W/got.raw"; then
		ok "$1"
	else
		bad "$1: $(cmp "$W/ref.raw" "$W/got.raw" 2>&1 | head -1)"
	fi
}

# refused NAME REGEX SPEC [COMMAND [ARG...]]: `diskctl COMMAND SPEC ARG...`
# (COMMAND: info) fails with exit status 1, saying REGEX.
refused() {
	name=$1 re=$2 spec=$3
	shift 3
	[ $# -gt 0 ] || set -- info
	cmd=$1
	shift
	rc=0
	timeout 30 "$D" "$cmd" "$spec" "$@" >/dev/null 2>"$W/err" || rc=$?
	if [ "$rc" -ne 1 ]; then
		bad "$name: exit status $rc (expected 1): $(cat "$W/err")"
	elif grep -Eq "$re" "$W/err"; then
		ok "$name"
	else
		bad "$name: message does not match '$re': $(cat "$W/err")"
	fi
}

# patch IMG OFFSET FORMAT VALUE: store VALUE (struct FORMAT, big-endian) at OFFSET.
patch() {
	"$PY" -c 'import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    f.write(struct.pack(sys.argv[3], int(sys.argv[4], 0)))' "$@"
}

# Patterns across a 6 MiB disk: cluster-aligned and unaligned, crossing L2
# tables for small clusters, zeroes written both ways.
fill() {
	qio "$1" 'write -P 0xa1 0 64k' 'write -P 0x5c 70k 3k' 'write -P 0x33 1M 5k' \
		'write -P 0x7e 2047k 2k' 'write -z 2M 64k' 'write -P 0x19 3M 1M' \
		'write -z 3200k 8k' 'write -P 0xee 6143k 1k'
}

# --- data, zero and plain clusters of every size, v2 and v3 ---
for cs in 512 4k 64k 2M; do
	for compat in 0.10 1.1; do
		img="$W/c$cs-$compat.qcow2"
		qemu-img create -q -f qcow2 -o "cluster_size=$cs,compat=$compat" "$img" 6M
		fill "$img"
		same "cluster $cs compat=$compat" "qcow2:$img" "$img"
	done
done
same "small l2-cache (one table)" "qcow2:$W/c4k-1.1.qcow2;l2-cache=4k" "$W/c4k-1.1.qcow2"
# Many small requests in flight at once through one cache entry.
CPARGS="--bs 4K --qd 32" same "512 B clusters, a one-table cache, 32 requests in flight" \
	"qcow2:$W/c512-1.1.qcow2;l2-cache=512" "$W/c512-1.1.qcow2"

# --- extended L2: subclusters allocated, zero and unallocated over a backing ---
base="$W/base.raw"
"$PY" -c 'import os, sys
open(sys.argv[1], "wb").write(bytes((i * 7 + 3) & 255 for i in range(6 << 20)))' "$base"
for cs in 64k 2M; do
	img="$W/ext$cs.qcow2"
	qemu-img create -q -f qcow2 -o "cluster_size=$cs,extended_l2=on" \
		-b base.raw -F raw "$img" 6M
	qio "$img" 'write -P 0x42 4k 4k' 'write -z 12k 2k' 'write -P 0x43 128k 64k' \
		'write -z 1M 32k' 'write -P 0x44 1030k 10k' 'write -P 0x45 5M 1536'
	same "extended L2, $cs clusters, over raw" "qcow2:$img" "$img"
done
img="$W/ext-alone.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=32k,extended_l2=on "$img" 6M
fill "$img"
same "extended L2 without backing" "qcow2:$img" "$img"

# --- compressed clusters ---
for ct in zlib zstd; do
	for cs in 4k 64k; do
		img="$W/z$ct$cs.qcow2"
		if ! qemu-img convert -c -f raw -O qcow2 \
			-o "cluster_size=$cs,compression_type=$ct" "$base" "$img" 2>"$W/err"; then
			echo "# qemu-img cannot write $ct: $(cat "$W/err")"
			continue
		fi
		qio "$img" 'write -P 0x66 8k 4k' 'write -z 1M 64k'
		same "compressed $ct, $cs clusters (and overwrites)" "qcow2:$img" "$img"
		CPARGS="--bs 4K --qd 32" same "compressed $ct, $cs clusters, 4K reads" \
			"qcow2:$img" "$img"
	done
done

# --- compressed clusters an image cannot talk past (docs/security.md) ---
# zpatch IMG MODE [STREAM]: the L2 entry of a compressed cluster patched.
# bomb: the first one now names a raw deflate stream (or the file STREAM) of
# two clusters of 'A' appended to the file; huge: the last one (nearest the end of the file) gets the largest
# compressed size its entry can say, which runs past the end of the file.
zpatch() {
	"$PY" - "$@" <<'PYEOF'
import struct, sys, zlib
path, mode = sys.argv[1], sys.argv[2]
f = open(path, "r+b")
h = f.read(48)
cb = struct.unpack(">I", h[20:24])[0]
l1n = struct.unpack(">I", h[36:40])[0]
l1o = struct.unpack(">Q", h[40:48])[0]
cs, shift = 1 << cb, 62 - (cb - 8)
f.seek(l1o)
l1 = struct.unpack(">%dQ" % l1n, f.read(8 * l1n))
ents = []
for l2 in (e & 0x00fffffffffffe00 for e in l1 if e & 0x00fffffffffffe00):
    f.seek(l2)
    t = struct.unpack(">%dQ" % (cs // 8), f.read(cs))
    ents += [(l2 + 8 * i, e) for i, e in enumerate(t) if e & (1 << 62)]
at, e = min(ents, key=lambda x: x[1] & ((1 << shift) - 1)) if mode == "bomb" else \
    max(ents, key=lambda x: x[1] & ((1 << shift) - 1))
if mode == "bomb":
    c = zlib.compressobj(9, zlib.DEFLATED, -12)
    z = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else \
        c.compress(b"A" * (2 * cs)) + c.flush()
    end = f.seek(0, 2)
    off = (end + 511) & ~511
    f.write(b"\0" * (off - end) + z + b"\0" * (-len(z) % 512))
    e = (1 << 62) | (((len(z) + 511) // 512 - 1) << shift) | off
else:
    e |= ((1 << (cb - 8)) - 1) << shift
f.seek(at)
f.write(struct.pack(">Q", e))
PYEOF
}
zimg="$W/zzlib64k.qcow2"
qemu-img convert -O raw "$zimg" "$W/zref.raw"
cp "$zimg" "$W/zbomb.qcow2"
zpatch "$W/zbomb.qcow2" bomb
rc=0
DISKCORE_DEBUG=1 timeout 60 "$D" cp -q --no-sparse "qcow2:$W/zbomb.qcow2" "file:$W/got.raw" \
	>/dev/null 2>"$W/err" || rc=$?
if [ "$rc" -eq 1 ] && grep -q "inflates past one cluster (65536 bytes): refused" "$W/err"; then
	ok "a compressed cluster that inflates to two clusters is an I/O error, named"
else
	bad "a compressed cluster that inflates to two clusters: status $rc: $(grep -v '^diskcore: loaded' "$W/err" | head -3)"
fi
if [ -e "$W/zzstd64k.qcow2" ] && command -v zstd >/dev/null; then
	head -c 131072 /dev/zero | tr '\0' A | zstd -q -c >"$W/bomb.zst"
	cp "$W/zzstd64k.qcow2" "$W/zbomb.qcow2"
	zpatch "$W/zbomb.qcow2" bomb "$W/bomb.zst"
	rc=0
	DISKCORE_DEBUG=1 timeout 60 "$D" cp -q --no-sparse "qcow2:$W/zbomb.qcow2" \
		"file:$W/got.raw" >/dev/null 2>"$W/err" || rc=$?
	if [ "$rc" -eq 1 ] && grep -q "inflates past one cluster" "$W/err"; then
		ok "a zstd frame that inflates to two clusters is an I/O error, named"
	else
		bad "a zstd frame of two clusters: status $rc: $(grep -v '^diskcore: loaded' "$W/err" | head -3)"
	fi
fi
cp "$zimg" "$W/zhuge.qcow2"
zpatch "$W/zhuge.qcow2" huge
rm -f "$W/got.raw"
truncate -s "$(stat -c %s "$W/zref.raw")" "$W/got.raw"
if timeout 60 "$D" cp -q --no-sparse "qcow2:$W/zhuge.qcow2" "file:$W/got.raw" 2>"$W/err" &&
	cmp -s "$W/zref.raw" "$W/got.raw"; then
	ok "a compressed size past the end of the file is bounded by it (reads unchanged)"
else
	bad "a compressed size past the end of the file: $(cat "$W/err")"
fi

# --- backing chains: relative names, 3 deep, the format probed or named ---
qemu-img create -q -f qcow2 -b base.raw -F raw "$W/mid.qcow2" 6M
qio "$W/mid.qcow2" 'write -P 0x71 0 1M' 'write -z 2M 4k'
qemu-img create -q -f qcow2 -o cluster_size=4k -b mid.qcow2 -F qcow2 "$W/top.qcow2"
qio "$W/top.qcow2" 'write -P 0x72 512k 1M' 'write -z 3M 8k'
same "qcow2 over raw" "qcow2:$W/mid.qcow2" "$W/mid.qcow2"
same "qcow2 over qcow2 over raw" "qcow2:$W/top.qcow2" "$W/top.qcow2"
same "memdiff over a chain" "memdiff:qcow2:$W/top.qcow2" "$W/top.qcow2"
same "a bare .qcow2 path picks the plugin" "$W/top.qcow2" "$W/top.qcow2"
if "$D" info "qcow2:$W/top.qcow2" 2>&1 | grep -q "backing format: qcow2"; then
	ok "info names the backing format"
else
	bad "info names the backing format"
fi

# A backing format extension nobody recognises: the format is not named.
unnamed() {
	"$PY" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    d = f.read(65536)
    i = d.index(bytes.fromhex("e2792aca"))
    f.seek(i)
    f.write(bytes.fromhex("0badf00d"))' "$1"
}
cp "$W/top.qcow2" "$W/top-nofmt.qcow2"
unnamed "$W/top-nofmt.qcow2"
same "an unnamed backing format whose magic says qcow2" "qcow2:$W/top-nofmt.qcow2" \
	"$W/top.qcow2"
cp "$W/mid.qcow2" "$W/mid-nofmt.qcow2"
unnamed "$W/mid-nofmt.qcow2"
refused "an unnamed backing format over raw" "does not name its backing file's format" \
	"qcow2:$W/mid-nofmt.qcow2"

# Escaping the image's directory.
mkdir "$W/sub"
qemu-img create -q -f qcow2 -b ../base.raw -F raw "$W/sub/esc.qcow2" 6M
qio "$W/sub/esc.qcow2" 'write -P 0x09 1M 4k'
refused "a backing file above the directory" "outside the image's directory.*parents=any" \
	"qcow2:$W/sub/esc.qcow2"
same "the same with ;parents=any" "qcow2:$W/sub/esc.qcow2;parents=any" "$W/sub/esc.qcow2"
qemu-img create -q -f qcow2 -b "$W/base.raw" -F raw "$W/abs.qcow2" 6M
same "an absolute backing name inside the directory" "qcow2:$W/abs.qcow2" "$W/abs.qcow2"
ln -s ../base.raw "$W/sub/link.raw"
qemu-img create -q -f qcow2 -b link.raw -F raw -u "$W/sub/viasym.qcow2" 6M
refused "a symlink that climbs out" "outside the image's directory" "qcow2:$W/sub/viasym.qcow2"

# --- internal snapshots are listed ---
cp "$W/c4k-1.1.qcow2" "$W/snap.qcow2"
qemu-img snapshot -c first "$W/snap.qcow2"
qemu-img snapshot -c second "$W/snap.qcow2"
qio "$W/snap.qcow2" 'write -P 0x99 0 4k'
"$D" info "qcow2:$W/snap.qcow2" >"$W/info" 2>&1 || true
if grep -q "internal snapshots: *2" "$W/info" && grep -q "snapshot names: *first, second" "$W/info"; then
	ok "info lists internal snapshots"
else
	bad "info lists internal snapshots: $(cat "$W/info")"
fi
same "an image with snapshots reads its current state" "qcow2:$W/snap.qcow2" "$W/snap.qcow2"
# snapshot=NAME against qemu-img's view of the snapshot (the first one was
# taken before the 0x99 write, so the two differ).
for sn in first 2; do
	rm -f "$W/snapref.raw" "$W/snapgot.raw"
	case $sn in first) opt=snapshot.name=first ;; *) opt=snapshot.id=$sn ;; esac
	qemu-img convert -l "$opt" -O raw "$W/snap.qcow2" "$W/snapref.raw"
	truncate -s "$(stat -c %s "$W/snapref.raw")" "$W/snapgot.raw"
	if timeout 60 "$D" cp -q --no-sparse "qcow2:$W/snap.qcow2;snapshot=$sn" \
		"file:$W/snapgot.raw" 2>"$W/err" && cmp -s "$W/snapref.raw" "$W/snapgot.raw"; then
		ok "snapshot=$sn reads the snapshot"
	else
		bad "snapshot=$sn reads the snapshot: $(cat "$W/err")"
	fi
done
refused "an unknown snapshot" "no internal snapshot named 'nope'" "qcow2:$W/snap.qcow2;snapshot=nope"

# A loop: each image the other's backing file.
qemu-img create -q -f qcow2 -u -b loop2.qcow2 -F qcow2 "$W/loop1.qcow2" 1M
qemu-img create -q -f qcow2 -u -b loop1.qcow2 -F qcow2 "$W/loop2.qcow2" 1M
refused "a backing loop" "the parent chain loops" "qcow2:$W/loop1.qcow2"

# --- writes ---
if timeout 30 "$D" write "memdiff:qcow2:$W/top.qcow2" 0 --pattern 1 --count 8 >/dev/null 2>"$W/err"; then
	ok "memdiff:qcow2: takes writes"
else
	bad "memdiff:qcow2: takes writes: $(cat "$W/err")"
fi

# --- hostile images ---
good="$W/c64k-1.1.qcow2"
mk() {
	cp "$good" "$W/h.qcow2"
}
mk
truncate -s 50 "$W/h.qcow2"
refused "a file shorter than a header" "shorter than a header" "qcow2:$W/h.qcow2"
mk
truncate -s 200k "$W/h.qcow2"
rc=0
timeout 60 "$D" cp -q --no-sparse "qcow2:$W/h.qcow2" "file:$W/got.raw" 2>"$W/err" || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; then
	ok "a truncated file reads or fails cleanly (status $rc)"
else
	bad "a truncated file: status $rc: $(cat "$W/err")"
fi
mk
patch "$W/h.qcow2" 40 '>Q' 0x10000000000
refused "L1 table past the end of the file" "L1 table .* past the end of the file" \
	"qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 36 '>I' 0x7fffffff
refused "a huge l1_size" "L1 table" "qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 36 '>I' 0
refused "l1_size too small for the virtual size" "l1_size 0 is too small" "qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 20 '>I' 30
refused "cluster_bits out of range" "cluster_bits 30" "qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 72 '>Q' 0x20
refused "an unknown incompatible bit" "incompatible feature bit 5" "qcow2:$W/h.qcow2"
# The feature-name table names the bit: rename its entry for bit 0 to bit 5.
mk
"$PY" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    d = f.read(65536)
    t = d.index(bytes.fromhex("6803f857")) + 8
    while d[t] != 0 or d[t + 1] != 0:
        t += 48
    f.seek(t + 1)
    f.write(bytes([5]))' "$W/h.qcow2"
patch "$W/h.qcow2" 72 '>Q' 0x20
refused "an unknown incompatible bit, named" "incompatible feature bit 5 \\('dirty bit'\\)" \
	"qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 72 '>Q' 0x4
refused "an external data file" "external data file" "qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 32 '>I' 1
refused "AES encryption" "encrypted \\(AES-CBC\\).*not supported" "qcow2:$W/h.qcow2"
if qemu-img create -q -f qcow2 --object secret,id=s0,data=pw \
	-o encrypt.format=luks,encrypt.key-secret=s0 "$W/luks.qcow2" 1M 2>/dev/null; then
	refused "LUKS encryption" "encrypted \\(LUKS\\).*not supported" "qcow2:$W/luks.qcow2"
fi
mk
patch "$W/h.qcow2" 4 '>I' 4
refused "version 4" "version 4 is not supported" "qcow2:$W/h.qcow2"
mk
patch "$W/h.qcow2" 0 '>I' 0
refused "no magic" "not a qcow2 image" "qcow2:$W/h.qcow2"

echo "1..$n"
[ "$fails" -eq 0 ]
