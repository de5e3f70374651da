#!/bin/sh
# SPDX-License-Identifier: MIT
# diskctl serve's memory per client: the server's peak RSS (VmHWM) with 1 and
# with 16 clients at once, a fresh server for each run, over a RAM-backed file
# (its pages are the page cache's, not the server's).
#
#   BUILD=/path/to/builddir bench/serve-rss.sh
#
# Clients:
#   nbdcopy   nbdcopy --connections=1 reading the whole export (64 requests of
#             256 KiB in flight: what a real copy keeps busy)
#   greedy    a raw client that pipelines 8 reads of 32 MiB and reads no reply
#             until all are sent (the worst a client can do; the server's
#             per-connection budget, 96 MiB of request buffers, bounds it)
# Environment: BUILD or DISKCTL, BENCH_DIR (/dev/shm), SIZE_MIB (256).
set -eu
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/dev/shm}
bench_init nbdcopy

SIZE_MIB=${SIZE_MIB:-256}
FILE="$DIR/diskcore-bench-rss.img"
bench_scratch "$FILE"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"

cat >"$OUT/greedy.py" <<'PYEOF'
import socket, struct, sys
MiB = 1 << 20
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
size = int(sys.argv[2])


def recvall(n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


recvall(18)
s.sendall(struct.pack(">I", 3))
s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 6) + struct.pack(">IH", 0, 0))
while True:  # infos, then ACK
    _, _, typ, n = struct.unpack(">QIII", recvall(20))
    recvall(n)
    if typ == 1:
        break
for h in range(8):
    off = (h * 32 * MiB) % (size - 32 * MiB + 1)
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, h, off, 32 * MiB))
for _ in range(8):
    magic, err, h = struct.unpack(">IIQ", recvall(16))
    assert err == 0
    recvall(32 * MiB)
PYEOF

# run KIND N: peak RSS (KiB) of a fresh server while N clients of KIND run at once
run() {
	sock="$OUT/s.sock"
	rm -f "$sock"
	"$DISKCTL" serve --unix "$sock" --max-connections 32 "file:$FILE" 2>"$OUT/log" &
	SRV=$!
	PIDS=$SRV
	bench_wait_sock "$sock"
	base=$(awk '/^VmRSS/ { print $2 }' "/proc/$SRV/status")
	pids=""
	i=0
	while [ $i -lt "$2" ]; do
		if [ "$1" = nbdcopy ]; then
			nbdcopy --connections=1 "nbd+unix:///?socket=$sock" null: &
		else
			"${PYTHON:-python3}" "$OUT/greedy.py" "$sock" $((SIZE_MIB << 20)) &
		fi
		pids="$pids $!"
		i=$((i + 1))
	done
	for p in $pids; do wait "$p"; done
	peak=$(awk '/^VmHWM/ { print $2 }' "/proc/$SRV/status")
	kill "$SRV"
	wait "$SRV" || :
	PIDS=""
	echo "$base $peak"
}

bench_machine
echo "export: file:$FILE ($SIZE_MIB MiB, RAM-backed); peak RSS (VmHWM) of a fresh server"
echo
echo "| clients              | RSS idle (MiB) | peak RSS (MiB) | above idle per client (MiB) |"
echo "|----------------------|----------------|----------------|-----------------------------|"
for kind in nbdcopy greedy; do
	for n in 1 16; do
		set -- $(run "$kind" "$n")
		awk -v k="$kind" -v n="$n" -v b="$1" -v p="$2" 'BEGIN {
			printf "| %2d x %-15s | %14.1f | %14.1f | %27.1f |\n",
				n, k, b / 1024, p / 1024, (p - b) / 1024 / n }'
	done
done
echo
echo "commands: diskctl serve --unix S --max-connections 32 file:F;"
echo "  N x nbdcopy --connections=1 'nbd+unix:///?socket=S' null:; N x greedy (8 x 32 MiB reads in flight)"
