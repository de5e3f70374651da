#!/bin/bash
# SPDX-License-Identifier: MIT
# The blob plugin against the Azure Blob emulator (Azurite, from npm), started
# here on 127.0.0.1 and stopped at exit. Blobs are made by tests/blob/azure_setup.py
# (its own Shared Key and SAS code), then read back with diskctl:
#  - a page blob with some pages written, through an account SAS and through
#    Shared Key ($DISKCORE_AZURE_KEY and ;sharedkey=FILE): byte-identical, and the
#    ranges without pages are never fetched (counted in the emulator's log);
#  - a fixed VHD stored as a page blob through blob:vhd1: (disk id, contents);
#  - a block blob through blob:flat:;
#  - a tampered SAS and a wrong key: a clear 403, and no signature in the message;
#  - a writable open (diskctl info --rw): refused as OpenVMM refuses it.
# Exits 77 when Azurite is not installed and cannot be installed.
#
# Azurite is looked up on PATH, then in $DISKCORE_AZURITE_DIR (default
# /var/cache/diskcore/azurite, where scripts/setup.sh installs it); if absent,
# `npm install azurite` into that directory is tried once.
set -euo pipefail

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
pass=0
ok() { pass=$((pass + 1)); echo "ok $pass - $*"; }

build=${DISKCORE_BUILD_ROOT:?run through meson test}
src=${DISKCORE_SOURCE_ROOT:?run through meson test}
diskctl=$build/tools/diskctl
[ -x "$diskctl" ] || skip "diskctl is not built"
[ -f "$build/plugins/blob/blob.so" ] || skip "the blob plugin is not built (libcurl missing?)"
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || skip "python3 is not installed"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy DISKCORE_AZURE_KEY

azdir=${DISKCORE_AZURITE_DIR:-/var/cache/diskcore/azurite}
azurite=$(command -v azurite-blob || true)
[ -n "$azurite" ] || [ ! -x "$azdir/node_modules/.bin/azurite-blob" ] ||
	azurite=$azdir/node_modules/.bin/azurite-blob
if [ -z "$azurite" ]; then
	command -v npm >/dev/null || skip "azurite is not installed and npm is missing"
	echo "# installing azurite into $azdir (npm)" >&2
	mkdir -p "$azdir" 2>/dev/null || skip "cannot create $azdir"
	timeout 400 npm install --prefix "$azdir" --no-audit --no-fund azurite >&2 ||
		skip "npm install azurite failed"
	azurite=$azdir/node_modules/.bin/azurite-blob
	[ -x "$azurite" ] || skip "npm install azurite did not install azurite-blob"
fi
command -v node >/dev/null || skip "node is not installed"

tmp=$(mktemp -d)
azpid=
cleanup() {
	if [ -n "$azpid" ]; then
		kill "$azpid" 2>/dev/null || true
		wait "$azpid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$tmp/az"
# --disableTelemetry is required: without it Azurite tries to reach the internet.
(cd "$tmp/az" && exec "$azurite" --blobHost 127.0.0.1 --blobPort "$port" \
	--inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose) \
	>"$tmp/azurite.log" 2>&1 &
azpid=$!
for i in $(seq 1 90); do
	"$py" "$src/tests/blob/azure_setup.py" wait "$port" 1 2>/dev/null && break
	if ! kill -0 "$azpid" 2>/dev/null || [ "$i" = 90 ]; then
		cat "$tmp/azurite.log" >&2
		skip "azurite did not start"
	fi
done
sas=$("$py" "$src/tests/blob/azure_setup.py" setup "$port" "$tmp") ||
	fail "could not create the test blobs in azurite"
base=http://127.0.0.1:$port/devstoreaccount1/disks
key=devstoreaccount1:Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==

# GETs of a blob that the emulator answered with 206 so far.
ranged_gets() {
	grep -c "\"GET /devstoreaccount1/disks/$1[? ].* 206 " "$tmp/azurite.log" || true
}

# copy SPEC SIZE EXPECTED [BS [QD]]: diskctl cp to a new file, compare.
copy() {
	rm -f "$tmp/out.raw"
	"$diskctl" cp -q --bs "${4:-1M}" --qd "${5:-16}" "$1" "file:$tmp/out.raw;create=$2" ||
		fail "diskctl cp $1 failed"
	cmp "$tmp/out.raw" "$3" || fail "$1 does not read as $3"
}

# info SPEC: diskctl info --ro (blob disks open read-only only; --ro is also
# info's default now), its output in $tmp/info.
info() { "$diskctl" info --ro "$1" >"$tmp/info" 2>&1 || { cat "$tmp/info" >&2; fail "diskctl info $1"; }; }
has() { grep -q -- "$1" "$tmp/info" || { cat "$tmp/info" >&2; fail "info lacks '$1'"; }; }

# 1. Page blob through the account SAS: type, page ranges, contents.
info "blob:flat:$base/page.img?$sas"
has "blob_type: PageBlob"
has "page_ranges: 3 (16896 bytes)"
has "auth: sas"
has "url: $base/page.img\$"
ok "page blob opens through an account SAS (PageBlob, 3 page ranges)"

before=$(ranged_gets page.img)
copy "blob:flat:$base/page.img?$sas" 4M "$tmp/page.raw"
after=$(ranged_gets page.img)
# 1 MiB chunks: pages lie in chunks 0, 2 and 3; chunk 1 holds none and must not
# be fetched.
[ $((after - before)) -eq 3 ] ||
	fail "expected 3 ranged GETs for the page blob, the emulator logged $((after - before))"
ok "page blob reads through SAS match, unwritten ranges are not fetched (3 GETs)"

copy "blob:flat:$base/page.img?$sas;readahead=256K" 4M "$tmp/page.raw" 16K 1
ok "page blob read in 16 KiB steps through read-ahead windows matches"

# 2. Shared Key from the environment and from a key file.
DISKCORE_AZURE_KEY=$key copy "blob:flat:$base/page.img" 4M "$tmp/page.raw"
ok "page blob reads through Shared Key (DISKCORE_AZURE_KEY) match"
printf '%s\n' "$key" >"$tmp/key"
chmod 600 "$tmp/key"
copy "blob:flat:$base/page.img;sharedkey=$tmp/key" 4M "$tmp/page.raw"
DISKCORE_AZURE_KEY=$key info "blob:flat:$base/page.img"
has "auth: shared-key"
ok "page blob reads through Shared Key (sharedkey=FILE) match"

# 3. A fixed VHD stored as a page blob.
info "blob:vhd1:$base/disk.vhd?$sas"
has "disk id: *$(cat "$tmp/disk.uid")"
has "sectors: *2048 x 512"
copy "blob:vhd1:$base/disk.vhd?$sas" 1M "$tmp/disk.raw"
ok "fixed VHD page blob: disk id from the footer, contents match"

# 4. A block blob.
info "blob:flat:$base/block.img?$sas"
has "blob_type: BlockBlob"
copy "blob:flat:$base/block.img?$sas" 256K "$tmp/block.raw"
ok "block blob reads match"

# 5. A tampered SAS and a wrong key: 403, said clearly, without the signature.
sig=$(printf '%s' "$sas" | sed -n 's/.*sig=\([^&]*\).*/\1/p')
bad=$(printf '%s' "$sas" | sed 's/sig=./sig=A/')
[ "$bad" != "$sas" ] || bad=$(printf '%s' "$sas" | sed 's/sig=./sig=B/')
if "$diskctl" info --ro "blob:flat:$base/page.img?$bad" >"$tmp/info" 2>&1; then
	fail "a tampered SAS opened"
fi
has "HTTP 403"
has "check the SAS token"
msg=$(sed 's/^.*: blob: //' "$tmp/info")
case "$msg" in *"${sig:1}"* | *sig=*) fail "the blob message shows the signature: $msg" ;; esac
ok "tampered SAS: clear 403 error ($(grep -o 'HTTP 403[^:]*' "$tmp/info" | head -1))"

wrong=devstoreaccount1:$(printf 'x%.0s' $(seq 1 64) | base64 -w0)
if DISKCORE_AZURE_KEY=$wrong "$diskctl" info --ro "blob:flat:$base/page.img" >"$tmp/info" 2>&1; then
	fail "a wrong shared key opened"
fi
has "HTTP 403"
ok "wrong shared key: clear 403 error"

# 6. No credentials at all on a private container.
if "$diskctl" info --ro "blob:flat:$base/page.img" >"$tmp/info" 2>&1; then
	fail "a private blob opened without credentials"
fi
grep -Eq "HTTP (401|403|404)" "$tmp/info" || { cat "$tmp/info" >&2; fail "no status in the message"; }
ok "no credentials: refused with a status"

# 7. A writable open fails before any request, saying to open read-only.
if "$diskctl" info --rw "blob:flat:$base/page.img?$sas" >"$tmp/info" 2>&1; then
	fail "a blob opened writable"
fi
has "writable blob disks not supported: open it read-only"
ok "writable open refused: $(grep -o 'writable blob disks not supported' "$tmp/info")"

echo "$pass passed, 0 failed"
