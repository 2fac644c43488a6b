#!/usr/bin/env bash
# Miners reaching several front-ends through one address: HAProxy in TCP
# mode in front of two powcoord front-ends (one NATS server, one cluster
# coordinator, all on 127.0.0.1). Three agents mine through HAProxy's one
# port; then one front-end is killed (SIGKILL) and the agents it served
# must mine again through the other, via the same address. Needs haproxy
# (apt-get install haproxy). Usage: scripts/haproxy-frontends.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
command -v haproxy >/dev/null || { echo "haproxy-frontends: needs haproxy (apt-get install haproxy)" >&2; exit 1; }

work=$(mktemp -d)
bin=$work/powcoord
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "haproxy-frontends: logs in $work"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

go build -o "$bin" ./cmd/powcoord
nats=$(go tool -n nats-server)
np=$(freeport); fe1=$(freeport); fe2=$(freeport); hp=$(freeport); h1=$(freeport); h2=$(freeport)
"$nats" -js -a 127.0.0.1 -p "$np" -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
sleep 1
url=nats://127.0.0.1:$np
"$bin" coordinator --cluster "$url" --replicas 1 --http '' --data "$work/coord" \
	--block-difficulty 0.001 --block-time 2s >"$work/coordinator.log" 2>&1 & pids+=($!)
sleep 1
"$bin" frontend --cluster "$url" --replicas 1 --stratum 127.0.0.1:$fe1 --http 127.0.0.1:$h1 --id fe1 --data "$work/fe1" \
	--share-difficulty 0.0001 >"$work/fe1.log" 2>&1 & pids+=($!); fe1pid=$!
"$bin" frontend --cluster "$url" --replicas 1 --stratum 127.0.0.1:$fe2 --http 127.0.0.1:$h2 --id fe2 --data "$work/fe2" \
	--share-difficulty 0.0001 >"$work/fe2.log" 2>&1 & pids+=($!)

# The HAProxy configuration the README's cluster guide gives: plain TCP,
# the least-loaded front-end, a front-end that stops accepting taken out
# within a few seconds by its TCP health check. (A proxied session is two
# file descriptors: 9,000 connections fit the 20,000 open files a process
# may have here; a real HAProxy host raises its limit or runs several.)
cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 9000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend stratum
    bind 127.0.0.1:$hp
    default_backend powcoord
backend powcoord
    balance leastconn
    option redispatch
    retries 3
    option tcp-check
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
    server fe1 127.0.0.1:$fe1 check
    server fe2 127.0.0.1:$fe2 check
CFG
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 & pids+=($!)
sleep 3
for i in 1 2 3; do
	"$bin" agent --url stratum+tcp://127.0.0.1:$hp --user "miner$i" --threads 1 --stats-interval 1s \
		>"$work/agent$i.log" 2>&1 & pids+=($!)
done
sleep 6
sessions() { # sessions a front-end holds, from its /api/status
	curl -s "http://127.0.0.1:$1/api/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["coordinator"]["sessions"])' 2>/dev/null || echo gone
}
accepted() { grep -o 'accepted=[0-9]*' "$work/agent$1.log" | tail -1 | cut -d= -f2; }
echo "haproxy-frontends: three agents on 127.0.0.1:$hp; accepted so far: $(accepted 1) $(accepted 2) $(accepted 3)"
echo "haproxy-frontends: sessions held: fe1 $(sessions $h1), fe2 $(sessions $h2)"
echo "haproxy-frontends: SIGKILL front-end fe1"
kill -9 "$fe1pid"
killed=$(date +%s)
a1=$(accepted 1) a2=$(accepted 2) a3=$(accepted 3)
sleep 8
b1=$(accepted 1) b2=$(accepted 2) b3=$(accepted 3)
echo "haproxy-frontends: sessions held 8 s after the kill: fe2 $(sessions $h2)"
echo "haproxy-frontends: accepted in the 8 s after the kill: miner1 $((b1 - a1)), miner2 $((b2 - a2)), miner3 $((b3 - a3))"
grep -h -m3 -E 'fe1 is DOWN|Server powcoord/fe1' "$work/haproxy.log" | cut -c1-160 || true
if [ $((b1 - a1)) -le 0 ] || [ $((b2 - a2)) -le 0 ] || [ $((b3 - a3)) -le 0 ]; then
	echo "haproxy-frontends: FAIL: a miner did not mine again through the remaining front-end" >&2; exit 1
fi
echo "haproxy-frontends: OK: every miner mined on through fe2 after fe1 was killed"
