#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl end to end: info, plugins, read/write, cp, bench, usage errors, create=
# that never destroys, and I/O errors that name their errno (a full disk: a
# 64 KiB tmpfs when run as root; a file size limit: RLIMIT_FSIZE).
# Needs DISKCORE_BUILD_ROOT (diskctl at tools/diskctl) and DISKCORE_PLUGIN_PATH.
set -u

. "$(dirname "$0")/tap-lib.sh"
# The system python starts fast; a pyenv shim first in PATH takes seconds.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || skip "python3 is needed to check the JSON output"

tap_tmpdir diskctl
full="$T/full"
mounted=false
tap_cleanup_hook() {
	if $mounted; then
		umount "$full" || umount -l "$full"
	fi
}
json() { "$PY" -m json.tool "$1" >/dev/null; }

# --- top level usage ---
run --help
check "--help exits 0" [ "$rc" -eq 0 ]
cp "$T/out" "$T/help"
for c in info plugins cp read write bench serve; do
	check "--help lists $c" has "^  $c " "$T/help"
	run "$c" --help
	check "$c --help exits 0" [ "$rc" -eq 0 ]
done
# Every option a command's --help lists is one its parser takes: each, with
# a value of the kind its argument names, goes through to a later --help
# (exit 0), where a parser without it would stop with a usage error (exit 2).
sample() {
	case $1 in
	SIZE | OFFSET | LEN) echo 4K ;;
	N | BYTE | SEC | SECS) echo 1 ;;
	MODE) echo read ;;
	*) echo x ;;
	esac
}
for c in $(sed -n 's/^  \([a-z]*\)  .*/\1/p' "$T/help"); do
	"$DISKCTL" "$c" --help >"$T/chelp"
	bad=""
	nopts=0
	while read -r opt arg; do
		nopts=$((nopts + 1))
		case $arg in
		[A-Z]*) set -- "$opt" "$(sample "$arg")" ;;
		*) set -- "$opt" ;;
		esac
		"$DISKCTL" "$c" "$@" --help >/dev/null 2>&1 || bad="$bad $*"
	done <<EOF
$(sed -n 's/^  \(-[a-zA-Z], \)\{0,1\}\(--[a-z][a-z0-9-]*\)\( [A-Z]*\)\{0,1\}.*/\2\3/p' "$T/chelp")
EOF
	check "$c: the parser takes each of the $nopts options its --help lists${bad:+ (not:$bad)}" \
		[ -z "$bad" -a "$nopts" -gt 0 ]
	run "$c" -h
	check "$c -h prints the usage" has "^usage: diskctl $c " "$T/out"
done
run cp --bs 3000 mem:1M mem:1M
check "a --bs that is no power of two: exit 2" [ "$rc" -eq 2 ]
check "... saying what it must be" has "power of two from 512 to 1G" "$T/err"
run bench --json=x mem:1M
check "a flag given a value: exit 2, named" sh -c "[ $rc -eq 2 ] && grep -q -- \"'--json=x'\" '$T/err'"
run read mem:1M 010 1
check "a number with a leading zero is decimal, not octal (sector 10)" has "^00001400:" "$T/out"
run read mem:1M 0x10 1
check "... and 0x is hex (sector 16)" has "^00002000:" "$T/out"
run nosuchcommand
check "unknown command exits 2" [ "$rc" -eq 2 ]
run
check "no command exits 2" [ "$rc" -eq 2 ]
run info
check "info without SPEC exits 2" [ "$rc" -eq 2 ]
check "info without SPEC says what is missing" has "missing SPEC" "$T/err"
run bench --rw sideways mem:1M
check "bench bad --rw exits 2" [ "$rc" -eq 2 ]
run serve mem:1M
check "serve exits 2" [ "$rc" -eq 2 ]
check "serve without a listener says how to give one" has "unix PATH" "$T/err"

# --- info ---
truncate -s 4M "$T/a.img"
run info "file:$T/a.img"
check "info file: succeeds" [ "$rc" -eq 0 ]
check "info shows size" has "4194304 bytes" "$T/out"
check "info shows sectors" has "8192 x 512" "$T/out"
check "info shows the chain" has "^chain:" "$T/out"
run info --json mem:1M
check "info --json succeeds" [ "$rc" -eq 0 ]
check "info --json is valid JSON" json "$T/out"
check "info --json sector_count" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["bytes"] == 1048576, d
assert d["sector_count"] * d["sector_size"] == d["bytes"]
assert d["unmap_behavior"] in ("zeroes", "unspecified", "ignored")
assert isinstance(d["chain"], list) and d["chain"], d
' "$T/out"
run info --json --ro "file:$T/a.img"
check "info --ro --json read_only" "$PY" -c '
import json, sys
assert json.load(open(sys.argv[1]))["read_only"] is True
' "$T/out"
# A path with characters JSON must escape.
q="$T/we\"ird\\name.img"
truncate -s 1M "$q"
run info --json "file:$q"
check "info --json escapes strings" json "$T/out"

# --- bad specs name the element at fault ---
run info nosuchkind:foo
check "unknown kind fails with 1" [ "$rc" -eq 1 ]
check "unknown kind is named" has "nosuchkind" "$T/err"
run info "delay:notanumber:mem:1M"
check "bad delay spec fails" [ "$rc" -eq 1 ]
check "bad delay spec names delay" has "delay" "$T/err"
run info "file:$T/does-not-exist.img"
check "missing file fails" [ "$rc" -eq 1 ]
check "missing file is named" has "does-not-exist.img" "$T/err"

# --- create= never destroys an image (docs/spec-strings.md, Creating images) ---
sum() { cksum <"$1"; }
printf 'precious' | dd of="$T/keep.img" bs=512 seek=7 conv=notrunc 2>/dev/null
truncate -s 512K "$T/keep.img"
before=$(sum "$T/keep.img")
run info --ro "file:$T/keep.img;create=1M"
check "info --ro with create= of another size fails" [ "$rc" -eq 1 ]
check "... naming the file" has "keep.img: exists with 524288 bytes" "$T/err"
check "... and leaves it byte-identical" [ "$(sum "$T/keep.img")" = "$before" ]
run info --ro "file:$T/keep.img;create=512K"
check "info --ro with create= of its size opens it" [ "$rc" -eq 0 ]
check "... and leaves it byte-identical" [ "$(sum "$T/keep.img")" = "$before" ]
run read "memdiff:file:$T/keep.img;create=512K" 7 1
check "read through memdiff: with create= of its size succeeds" [ "$rc" -eq 0 ]
check "... reads the data" has "precious" "$T/out"
check "... and leaves the file byte-identical" [ "$(sum "$T/keep.img")" = "$before" ]
run info --rw "file:$T/keep.img;create=1M"
check "info --rw with create= of another size fails" [ "$rc" -eq 1 ]
check "... and leaves the file byte-identical" [ "$(sum "$T/keep.img")" = "$before" ]
run info --ro "file:$T/new.img;create=1M"
check "info --ro with create= of a missing file fails" [ "$rc" -eq 1 ]
check "... saying a read-only open never creates" has "never creates an image" "$T/err"
check "... and creates nothing" [ ! -e "$T/new.img" ]
run info --ro "file:$T/keep.img;create=1M;overwrite"
check "info --ro with ;overwrite fails" [ "$rc" -eq 1 ]
check "... and leaves the file byte-identical" [ "$(sum "$T/keep.img")" = "$before" ]
run info --rw "file:$T/keep.img;create=1M;overwrite"
check "info --rw with create= and ;overwrite replaces the file" [ "$rc" -eq 0 ]
check "... at the new size" [ "$(stat -c %s "$T/keep.img")" -eq 1048576 ]

# --- plugins ---
run plugins
check "plugins succeeds" [ "$rc" -eq 0 ]
check "plugins prints the search path" has "search path" "$T/out"
check "plugins lists file" has "^file " "$T/out"
check "plugins lists the mem: form" has "mem:" "$T/out"
run plugins --json
check "plugins --json is valid JSON" json "$T/out"
check "plugins --json has file and ram" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
names = {p.get("name") for p in d["plugins"]}
assert {"file", "ram"} <= names, names
forms = [f["name"] for p in d["plugins"] if "forms" in p for f in p["forms"]]
assert "mem" in forms and "file" in forms, forms
' "$T/out"

# A file that is not a plugin is listed as refused, with the reason.
mkdir "$T/bad"
chmod 755 "$T/bad"
echo "not a shared object" >"$T/bad/bogus.so"
chmod 644 "$T/bad/bogus.so"
DISKCORE_PLUGIN_PATH="$T/bad:${DISKCORE_PLUGIN_PATH:-}" run plugins --json
check "plugins with a refused file succeeds" [ "$rc" -eq 0 ]
check "plugins --json says why a file was refused" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
bad = [p for p in d["plugins"] if p["path"].endswith("/bogus.so")]
assert len(bad) == 1 and bad[0]["refused"], d["plugins"]
assert any(p.get("name") == "ram" for p in d["plugins"])
' "$T/out"

# --- write, then read back ---
run write "file:$T/a.img" 8 --pattern 0xab --count 2
check "write pattern succeeds" [ "$rc" -eq 0 ]
run read "file:$T/a.img" 8 2 --raw
check "read --raw succeeds" [ "$rc" -eq 0 ]
"$PY" -c 'import sys; sys.stdout.buffer.write(b"\xab" * 1024)' >"$T/expect"
check "read back the pattern" cmp -s "$T/out" "$T/expect"
check "pattern is in the file" sh -c \
	"dd if='$T/a.img' bs=512 skip=8 count=2 status=none | cmp -s - '$T/expect'"
run read "file:$T/a.img" 7 2 --hex
check "read --hex succeeds" [ "$rc" -eq 0 ]
check "hex dump has the offset of sector 8" has "^00001000: abab abab" "$T/out"
check "hex dump has zero sector 7" has "^00000e00: 0000 0000" "$T/out"
head -c 512 /dev/urandom >"$T/blk"
run write "file:$T/a.img" 100 --file "$T/blk" --fua
check "write --file succeeds" [ "$rc" -eq 0 ]
run read "file:$T/a.img" 100 1 --raw
check "read back --file data" cmp -s "$T/out" "$T/blk"
run write "file:$T/a.img" 8192 --pattern 1 --count 1
check "write past the end fails" [ "$rc" -eq 1 ]
check "write past the end says illegal block" has "illegal block" "$T/err"
run read "file:$T/a.img" 8191 2
check "read past the end fails" [ "$rc" -eq 1 ]
run write "file:$T/a.img" 0 --pattern 1
check "--pattern without --count exits 2" [ "$rc" -eq 2 ]

# --- cp ---
# Source: random data, a zero hole, more data.
head -c 1M /dev/urandom >"$T/src.img"
head -c 2M /dev/zero >>"$T/src.img"
head -c 1536K /dev/urandom >>"$T/src.img"
truncate -s 4608K "$T/dst1.img"
run cp "file:$T/src.img" "file:$T/dst1.img"
check "cp file->file succeeds" [ "$rc" -eq 0 ]
check "cp prints bytes copied" has "copied 4718592 bytes" "$T/out"
check "cp file->file preserves content" cmp -s "$T/src.img" "$T/dst1.img"
# Stale data in the destination must be overwritten, sparse or not.
head -c 4608K /dev/urandom >"$T/dst2.img"
run cp --sparse "file:$T/src.img" "file:$T/dst2.img"
check "cp --sparse over stale data preserves content" cmp -s "$T/src.img" "$T/dst2.img"
head -c 4608K /dev/urandom >"$T/dst3.img"
run cp --no-sparse -q "file:$T/src.img" "file:$T/dst3.img"
check "cp --no-sparse preserves content" cmp -s "$T/src.img" "$T/dst3.img"
check "cp -q prints nothing" [ ! -s "$T/out" ]
# Through mem: layers: a RAM diff over the file, and into a RAM disk.
truncate -s 4608K "$T/dst4.img"
run cp "memdiff:file:$T/src.img" "file:$T/dst4.img"
check "cp memdiff:file: -> file: preserves content" cmp -s "$T/src.img" "$T/dst4.img"
run cp "file:$T/src.img" mem:8M
check "cp file: -> mem: succeeds" [ "$rc" -eq 0 ]
head -c 4608K /dev/urandom >"$T/dst5.img"
run cp mem:4608K "file:$T/dst5.img"
check "cp mem: -> file: succeeds" [ "$rc" -eq 0 ]
check "cp mem: -> file: content is all zero" "$PY" -c '
import sys
assert open(sys.argv[1], "rb").read() == bytes(4608 * 1024)
' "$T/dst5.img"
# Refuse a smaller destination.
truncate -s 1M "$T/small.img"
run cp "file:$T/src.img" "file:$T/small.img"
check "cp to a smaller destination fails" [ "$rc" -eq 1 ]
check "cp says the destination is smaller" has "smaller than the source" "$T/err"
run cp "file:$T/src.img" mem:1M
check "cp to a smaller mem: fails" [ "$rc" -eq 1 ]

# --- bench ---
run bench --time 1 mem:64M
check "bench 1 s succeeds" [ "$rc" -eq 0 ]
check "bench prints IOPS" has "^IOPS:" "$T/out"
check "bench prints p99" has "p99" "$T/out"
run bench --rw randwrite --bs 8K --qd 4 --count 2000 --json mem:16M
check "bench --count --json succeeds" [ "$rc" -eq 0 ]
check "bench --json is valid and counted" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["requests"] == 2000 and d["iops"] > 0, d
' "$T/out"
run bench --rw read --threads 2 --poll --count 1000 --ro "file:$T/src.img"
check "bench poll mode, 2 threads on file:" [ "$rc" -eq 0 ]
check "bench poll mode counted" has "requests: 1000 " "$T/out"
run bench --bs 1000 --count 10 mem:1M
check "bench --bs not a sector multiple fails" [ "$rc" -eq 1 ]

# --- I/O errors name their errno (ENOSPC stays ENOSPC) ---
# failed_with NAME ERRNO TEXT: the last run failed (exit 1), naming the errno
failed_with() {
	check "$1 fails" [ "$rc" -eq 1 ]
	check "$1 names $2" has "($2)" "$T/err"
	check "$1 says what it means" has "I/O error: $3" "$T/err"
}
mkdir "$full"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=64k tmpfs "$full" 2>/dev/null; then
	mounted=true
	nospc="No space left on device"
	truncate -s 1M "$full/x.img"
	head -c 64 /dev/urandom >"$T/key"
	chmod 600 "$T/key"
	head -c 1M /dev/urandom >"$T/src1m.img"
	run write "file:$full/x.img" 0 --pattern 0x5a --count 2048
	failed_with "write to a full disk" ENOSPC "$nospc"
	run cp "file:$T/src1m.img" "file:$full/x.img"
	failed_with "cp to a full disk" ENOSPC "$nospc"
	run write "crypt:xts-aes-256:$T/key:file:$full/x.img" 0 --pattern 1 --count 2048
	failed_with "write through crypt: to a full disk" ENOSPC "$nospc"
	run bench --rw write --prefill --count 1 "file:$full/x.img"
	failed_with "bench --prefill of a full disk" ENOSPC "$nospc"
	check "... in the prefill message" has "prefill '" "$T/err"
	rm -f "$full/x.img"
	run info --rw "vhd:$full/y.vhd;create=1M;block=4K"
	check "a dynamic VHD on a full disk is made" [ "$rc" -eq 0 ]
	run write "vhd:$full/y.vhd" 0 --pattern 7 --count 2048
	failed_with "write allocating VHD blocks on a full disk" ENOSPC "$nospc"
	rm -f "$full/y.vhd"
	run info --rw "vhd1:$full/z.vhd;create=1M"
	check "a fixed VHD (sparse) on a full disk is made" [ "$rc" -eq 0 ]
	run write "vhd1:$full/z.vhd" 0 --pattern 7 --count 2048
	failed_with "write to a fixed VHD on a full disk" ENOSPC "$nospc"
else
	echo "# no 64 KiB tmpfs (needs root and mount): ENOSPC not checked" >&2
fi
# RLIMIT_FSIZE below the end of the image, SIGXFSZ ignored: write() fails with
# EFBIG. ulimit -f counts 512-byte blocks in POSIX sh, 1024 in bash: either is
# below the 1 MiB the write reaches.
truncate -s 1M "$T/big.img"
(trap '' XFSZ && ulimit -f 256 && exec "$DISKCTL" write "file:$T/big.img" 0 \
	--pattern 1 --count 2048) >"$T/out" 2>"$T/err"
rc=$?
failed_with "write past RLIMIT_FSIZE" EFBIG "File too large"

echo "1..$n"
if [ "$fails" -ne 0 ]; then
	echo "$fails of $n checks failed" >&2
	exit 1
fi
exit 0
