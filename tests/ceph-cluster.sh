#!/bin/bash
# SPDX-License-Identifier: MIT
# A throwaway single-node Ceph cluster for the rbd tests and bench:
#
#   tests/ceph-cluster.sh start DIR [IMAGE_SIZE]   (default 64M)
#   tests/ceph-cluster.sh stop DIR
#
# start: one ceph-mon and one memstore ceph-osd on 127.0.0.1, cephx on, no mgr,
# with every file (config, keyrings, data, logs, sockets, PIDs) under DIR; waits
# for the OSD to be up (bounded), creates the pool "diskcore" and the image
# "diskcore/disk", writes DIR/env (CEPH_CONF, RBD_POOL, RBD_IMAGE, RBD_KEYRING,
# RBD_MON) and prints its start-up time. On failure it stops what it started
# and exits 1, or 77 when the Ceph tools are not installed.
# stop: kills the PIDs start recorded and waits (bounded) until each is gone;
# a zombie counts as gone (no init reaps daemons here).
#
# The settings a one-OSD cluster needs (pool size 1, chooseleaf type 0, the
# short paxos propose interval that makes start-up take seconds) are in
# docs/performance.md, "rbd".
set -u

die() { echo "ceph-cluster: $*" >&2; exit 1; }

now_ms() { date +%s%3N; }

# Is PID gone (absent, or a zombie)?
gone() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}

stop() {
	local dir=$1 p pids="" deadline
	for f in "$dir"/*.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		[ -n "$p" ] && pids="$pids $p"
	done
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	deadline=$(($(now_ms) + 10000))
	for p in $pids; do
		until gone "$p"; do
			[ "$(now_ms)" -lt "$deadline" ] || die "process $p did not end"
			sleep 0.05
		done
	done
	rm -f "$dir"/*.pid
}

# A free TCP port on 127.0.0.1 for the monitor: one nobody listens on (ports
# the OSD binds come from its own range, 6800-7300, where it skips used ones).
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		grep -qi ":$(printf %04X "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null ||
			{ echo "$p"; return 0; }
	done
	return 1
}

# The monitor commands, in one client that waits for the monitor (the ceph
# CLI costs ~1.2 s a command): register osd.0 with its key, create the pool.
mon_commands() {
	/usr/bin/python3 - "$conf" "$1" "$2" <<'PY'
import json, os, sys
import rados
conf, uuid, secret = sys.argv[1:4]
c = rados.Rados(conffile=conf, name="client.admin")
c.connect(timeout=20)
for args, inbuf in (({"prefix": "osd new", "uuid": uuid, "id": 0},
                     open(secret, "rb").read()),
                    ({"prefix": "osd pool create", "pool": "diskcore",
                      "pg_num": 8}, b"")):
    r, out, err = c.mon_command(json.dumps(args), inbuf, timeout=20)
    if r != 0:
        sys.exit("%s: %d %s" % (args["prefix"], r, err))
sys.stdout.flush()
os._exit(0)  # skip librados' shutdown, which takes ~0.4 s
PY
}

# Run CMD until it succeeds or ms milliseconds have passed.
retry_until() {
	local ms=$1 deadline
	shift
	deadline=$(($(now_ms) + ms))
	until "$@" >/dev/null 2>&1; do
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

start() {
	local dir=$1 size=${2:-64M} t0 port fsid uuid key t
	for t in ceph-mon ceph-osd ceph-authtool monmaptool rbd /usr/bin/python3; do
		command -v "$t" >/dev/null || {
			echo "ceph-cluster: $t is not installed (ceph-mon ceph-osd ceph-common)" >&2
			exit 77
		}
	done
	t0=$(now_ms)
	mkdir -p "$dir" || die "cannot create $dir"
	dir=$(cd "$dir" && pwd)
	conf=$dir/ceph.conf
	port=$(free_port) || die "no free port"
	fsid=$(cat /proc/sys/kernel/random/uuid)
	mkdir -p "$dir/mon" "$dir/osd" "$dir/run" "$dir/log"
	cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
public addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $dir/keyring.\$name
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file =
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
paxos propose interval = 0.1
mon warn on pool no redundancy = false
ms bind msgr1 = false
[mon]
mon data = $dir/mon
[osd]
osd data = $dir/osd
osd objectstore = memstore
memstore device bytes = 4G
osd max object name len = 256
osd max object namespace len = 64
EOF
	ceph-authtool --create-keyring "$dir/keyring.mon." --gen-key -n mon. \
		--cap mon 'allow *' >/dev/null || die "ceph-authtool mon."
	ceph-authtool --create-keyring "$dir/keyring.client.admin" --gen-key \
		-n client.admin --cap mon 'allow *' --cap osd 'allow *' \
		--cap mds 'allow *' --cap mgr 'allow *' >/dev/null || die "ceph-authtool admin"
	ceph-authtool "$dir/keyring.mon." --import-keyring "$dir/keyring.client.admin" \
		>/dev/null || die "ceph-authtool import"
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" \
		"$dir/monmap" >/dev/null || die "monmaptool"
	ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" \
		--keyring "$dir/keyring.mon." >"$dir/log/mkfs-mon.out" 2>&1 ||
		{ cat "$dir/log/mkfs-mon.out" >&2; die "ceph-mon --mkfs"; }
	ceph-mon -c "$conf" -f -i a >"$dir/log/mon.out" 2>&1 &
	echo $! >"$dir/mon.pid"
	# The OSD's key is made here and handed to `osd new`, so one monitor
	# command registers the OSD and its key.
	uuid=$(cat /proc/sys/kernel/random/uuid)
	ceph-authtool --create-keyring "$dir/keyring.osd.0" --gen-key -n osd.0 \
		>/dev/null || die "ceph-authtool osd.0"
	key=$(sed -n 's/^[[:space:]]*key = //p' "$dir/keyring.osd.0")
	printf '{"cephx_secret": "%s"}\n' "$key" >"$dir/osd-secret.json"
	mon_commands "$uuid" "$dir/osd-secret.json" >"$dir/log/mon-commands.out" 2>&1 ||
		{ cat "$dir/log/mon-commands.out" >&2; tail -20 "$dir/log/mon.a.log" >&2
		  stop "$dir"; die "the monitor commands failed"; }
	# --no-mon-config: mkfs must not ask the monitor for its configuration.
	ceph-osd -c "$conf" --no-mon-config -i 0 --mkfs --osd-uuid "$uuid" \
		--keyring "$dir/keyring.osd.0" >"$dir/log/mkfs-osd.out" 2>&1 ||
		{ cat "$dir/log/mkfs-osd.out" >&2; stop "$dir"; die "ceph-osd --mkfs"; }
	ceph-osd -c "$conf" -f -i 0 >"$dir/log/osd.out" 2>&1 &
	echo $! >"$dir/osd.pid"
	# Wait for the OSD to be up: its own log says so at once, where a client
	# polling the monitor would wait ~1 s a query, and a client started
	# before the OSD is up learns of it only at its objecter's next tick
	# (5 s).
	retry_until 30000 grep -q 'state: booting -> active' "$dir/log/osd.0.log" ||
		{ tail -20 "$dir/log/osd.0.log" >&2; stop "$dir"; die "the OSD is not up after 30 s"; }
	timeout 30 rbd -c "$conf" pool init diskcore >/dev/null 2>&1 ||
		{ tail -20 "$dir/log/osd.0.log" >&2; stop "$dir"; die "the OSD did not serve the pool within 30 s"; }
	rbd -c "$conf" create --size "$size" diskcore/disk >/dev/null 2>&1 ||
		{ stop "$dir"; die "cannot create the image diskcore/disk"; }
	cat >"$dir/env" <<EOF
CEPH_CONF=$conf
RBD_POOL=diskcore
RBD_IMAGE=disk
RBD_KEYRING=$dir/keyring.client.admin
RBD_MON=127.0.0.1:$port
EOF
	t=$(($(now_ms) - t0))
	printf 'ceph-cluster: up in %d.%03d s (mon 127.0.0.1:%s, memstore osd.0, pool diskcore, image diskcore/disk %s)\n' \
		$((t / 1000)) $((t % 1000)) "$port" "$size"
}

case "${1:-}" in
start) [ $# -ge 2 ] || die "usage: $0 start DIR [IMAGE_SIZE]"; start "$2" "${3:-}" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start DIR [IMAGE_SIZE] | stop DIR" ;;
esac
