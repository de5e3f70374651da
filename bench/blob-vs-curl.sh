#!/bin/sh
# SPDX-License-Identifier: MIT
# The blob plugin against curl, over nginx on 127.0.0.1 serving a 1 GiB file of
# random data, alternating, ROUNDS each:
#   copy:   diskctl cp blob:flat:URL out.raw   vs   curl -o out.raw URL   (MB/s)
#   random: diskctl bench, 4 KiB random reads at queue depth 32 vs depth 1 (IOPS)
#
#   BUILD=/path/to/builddir bench/blob-vs-curl.sh
#
# Environment: BUILD or DISKCTL, BENCH_DIR (where the 1 GiB file goes, default
# /dev/shm: the page cache here is reclaimed in the background, and random reads
# that reach the disk would measure the disk, not HTTP), OUT_DIR (where out.raw
# goes, default /dev/shm for the same reason), ROUNDS (3), SECS (seconds per random
# run, 5), CONNECTIONS (blob connections=, default the plugin's), NGINX_WORKERS
# (2), KEEP=1 keeps the 1 GiB file.
# nginx is started here with a private configuration and stopped at the end.
set -eu
. "$(dirname "$0")/common.sh"
bench_find_diskctl
bench_need nginx curl /usr/bin/time "${PYTHON:-python3}"

DIR=${BENCH_DIR:-/dev/shm}
[ -d "$DIR" ] || DIR=/var/tmp
OUT_DIR=${OUT_DIR:-/dev/shm}
[ -d "$OUT_DIR" ] || OUT_DIR=/tmp
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
FILE="$DIR/diskcore-bench-blob-1g.img"
OUT=$(mktemp -d)
RAW="$OUT_DIR/diskcore-bench-out-$$.raw"
NGINX_PID=
cleanup() {
	[ -z "$NGINX_PID" ] || { kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; } || true
	rm -rf "$OUT" "$RAW"
	[ "${KEEP:-0}" = 1 ] || rm -f "$FILE"
}
trap cleanup EXIT INT TERM
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

bench_random_file "$FILE"
chmod 644 "$FILE"

# nginx on a free port, serving $FILE as /disk.img.
PORT=$("${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$OUT/www"
chmod 755 "$OUT" "$OUT/www"
ln -s "$FILE" "$OUT/www/disk.img"
USER_LINE=
[ "$(id -u)" != 0 ] || USER_LINE="user root;"
cat >"$OUT/nginx.conf" <<EOF
daemon off;
$USER_LINE
worker_processes ${NGINX_WORKERS:-2};
pid $OUT/nginx.pid;
error_log $OUT/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	default_type application/octet-stream;
	client_body_temp_path $OUT/t1;
	proxy_temp_path $OUT/t2;
	fastcgi_temp_path $OUT/t3;
	uwsgi_temp_path $OUT/t4;
	scgi_temp_path $OUT/t5;
	sendfile on;
	aio threads;
	keepalive_requests 1000000;
	server { listen 127.0.0.1:$PORT; root $OUT/www; location / { } }
}
EOF
nginx -c "$OUT/nginx.conf" -p "$OUT/" &
NGINX_PID=$!
URL="http://127.0.0.1:$PORT/disk.img"
i=0
until curl -sfI "$URL" >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -lt 100 ] || { cat "$OUT/error.log" >&2; echo "error: nginx did not start" >&2; exit 1; }
	sleep 0.1
done
SPEC="blob:flat:$URL"
[ -z "${CONNECTIONS:-}" ] || SPEC="$SPEC;connections=$CONNECTIONS"

# Warm the page cache so that every run reads from memory.
cat "$FILE" >/dev/null

# MB/s of a copy whose wall time /usr/bin/time wrote to $OUT/t.
mbps() {
	awk '{ printf "%.0f\n", 1073.741824 / $1 }' "$OUT/t"
}

curl_run() {
	rm -f "$RAW"
	/usr/bin/time -f "%e" -o "$OUT/t" curl -sf -o "$RAW" "$URL" || exit 1
	[ "$(stat -c %s "$RAW")" -eq 1073741824 ] || { echo "error: curl copy is short" >&2; exit 1; }
	mbps
}

diskctl_cp_run() {
	rm -f "$RAW"
	/usr/bin/time -f "%e" -o "$OUT/t" "$DISKCTL" cp -q "$SPEC" "file:$RAW;create=1G" || exit 1
	mbps
}

# IOPS of diskctl bench at queue depth $1.
rand_run() {
	"$DISKCTL" bench --ro --rw randread --bs 4k --qd "$1" --time "$SECS" --json "$SPEC" \
		>"$OUT/d" || exit 1
	bench_json "$OUT/d" 'round(d["iops"])'
}

one_round() {
	curl_run >>"$OUT/curl"
	diskctl_cp_run >>"$OUT/cp"
	rand_run 1 >>"$OUT/qd1"
	rand_run 32 >>"$OUT/qd32"
}
bench_rounds one_round
cmp -s "$RAW" "$FILE" || { echo "error: the last diskctl copy differs from the file" >&2; exit 1; }

name_cp="diskctl cp blob:flat:URL out.raw"
name_q1="diskctl bench blob:flat:URL 4K rand QD1"
name_q32="diskctl bench blob:flat:URL 4K rand QD32"
# shellcheck disable=SC2046
{
	echo "Copy of a 1 GiB file from nginx on 127.0.0.1 (MB/s, 10^6 bytes; out.raw in $OUT_DIR)"
	echo
	bench_header "$ROUNDS" "MB/s"
	bench_row "curl -o out.raw URL" $(cat "$OUT/curl")
	bench_row "$name_cp" $(cat "$OUT/cp")
	echo
	echo "ratio diskctl cp / curl (medians): $(bench_ratio "$(bench_median $(cat "$OUT/cp"))" "$(bench_median $(cat "$OUT/curl"))")"
	echo
	echo "4 KiB random reads over the same URL (IOPS, ${SECS} s each)"
	echo
	bench_header "$ROUNDS" "IOPS"
	bench_row "$name_q1" $(cat "$OUT/qd1")
	bench_row "$name_q32" $(cat "$OUT/qd32")
	echo
	echo "ratio QD32 / QD1 (medians): $(bench_ratio "$(bench_median $(cat "$OUT/qd32"))" "$(bench_median $(cat "$OUT/qd1"))")"
	echo
	echo "spec: $SPEC"
	bench_machine
}
