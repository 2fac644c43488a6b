#!/usr/bin/env bash
# A powcoord front-end on its own "host": a network namespace joined to this
# machine by a veth pair (10.77.0.1 here, 10.77.0.2 in the namespace). NATS
# and a cluster coordinator run here; the front-end and a miner run in the
# namespace. Then the link is cut: the front-end can no longer reach NATS,
# so it must stop acknowledging shares within 5 s and send its miner away,
# and no share it acknowledged may be lost (they are all in the SHARES
# stream). Linux only; needs root (ip netns). Usage: scripts/netns-frontend.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
[ "$(uname)" = Linux ] || { echo "netns-frontend: needs Linux (ip netns); this is $(uname)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "netns-frontend: needs root for ip netns" >&2; exit 1; }
command -v ip >/dev/null || { echo "netns-frontend: needs iproute2 (apt-get install iproute2)" >&2; exit 1; }

NS=powcoord-fe1
HOST_IP=10.77.0.1
NS_IP=10.77.0.2
work=$(mktemp -d)
bin=$work/powcoord
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	ip link del veth-pc0 2>/dev/null || true
	echo "netns-frontend: logs in $work"
}
trap cleanup EXIT

go build -o "$bin" ./cmd/powcoord
nats=$(go tool -n nats-server)

ip netns add "$NS"
ip link add veth-pc0 type veth peer name veth-pc1
ip link set veth-pc1 netns "$NS"
ip addr add $HOST_IP/24 dev veth-pc0
ip link set veth-pc0 up
ip netns exec "$NS" ip addr add $NS_IP/24 dev veth-pc1
ip netns exec "$NS" ip link set veth-pc1 up
ip netns exec "$NS" ip link set lo up

"$nats" -js -a $HOST_IP -p 4222 -m 18222 -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
sleep 1
"$bin" coordinator --cluster nats://$HOST_IP:4222 --replicas 1 --http 127.0.0.1:0 \
	--block-difficulty 0.001 --block-time 2s >"$work/coordinator.log" 2>&1 & pids+=($!)
sleep 2
ip netns exec "$NS" "$bin" frontend --cluster nats://$HOST_IP:4222 --stratum 127.0.0.1:3333 \
	--data "$work/fe1" --replicas 1 --share-difficulty 0.0001 >"$work/frontend.log" 2>&1 & pids+=($!)
sleep 2
ip netns exec "$NS" "$bin" agent --url stratum+tcp://127.0.0.1:3333 --user netns-miner --threads 1 \
	--stats-interval 1s >"$work/agent.log" 2>&1 & pids+=($!)
sleep 8
accepted() { grep -o 'accepted=[0-9]*' "$work/agent.log" | tail -1 | cut -d= -f2; }
# ts LINE: the time= of a log line as seconds since the epoch.
ts() { date -u -d "$(sed -n 's/^time=\([^ ]*\).*/\1/p' <<<"$1")" +%s.%N; }
before=$(accepted)
echo "netns-frontend: the miner in $NS has $before shares accepted through the front-end"

echo "netns-frontend: cutting the front-end's link to NATS"
cut=$(date +%s.%N)
ip link set veth-pc0 down
sleep 7
# The last answer true the miner logged (its stats line each second) and
# the moment the front-end sent it away (client.reconnect, or its
# connection closed).
last_ok=$(awk -v n="$(accepted)" 'match($0, /accepted=[0-9]+/) { a = substr($0, RSTART + 9, RLENGTH - 9); if (a == n) { print; exit } }' "$work/agent.log")
away=$(grep -m1 -E 'pool asked to reconnect|connected=false|pool connection (lost|failed)' "$work/agent.log" || true)
echo "netns-frontend: accepted after the cut (incl. in flight): $(($(accepted) - before))"
if [ -z "$away" ]; then echo "netns-frontend: FAIL: the miner was not sent away within 7 s of the cut" >&2; exit 1; fi
printf 'netns-frontend: the miner'"'"'s count of shares accepted last grew in its stats line (one a second) at %+.1f s from the cut\n' \
	"$(echo "$(ts "$last_ok") - $cut" | bc)"
printf 'netns-frontend: the front-end sent its miner away %.1f s after the cut: %s\n' \
	"$(echo "$(ts "$away") - $cut" | bc)" "$(sed 's/^time=[^ ]* level=[A-Z]* //' <<<"$away" | cut -c1-120)"
# Blocks the front-end found up to now; the highest of them (found while
# cut off, or just before) must reach the chain once the link is back.
top=$(grep 'msg="block found"' "$work/frontend.log" | sed 's/.*height=\([0-9]*\).*/\1/' | sort -n | tail -1)
tophashes=$(grep "msg=\"block found\" height=$top " "$work/frontend.log" | sed 's/.*hash=\([0-9a-f]*\).*/\1/')
ip link set veth-pc0 up
echo "netns-frontend: link restored; waiting for a block the front-end found at height $top to reach the chain"
reached=""
for _ in $(seq 60); do
	for h in $tophashes; do
		grep -q "found block submitted\" hash=$h" "$work/coordinator.log" && reached=$h && break 2
	done
	sleep 0.5
done
kill "${pids[-1]}"; sleep 1 # stop the miner: nothing more in flight
acked=$(accepted)
# SHARES holds batches of shares: count the shares in them.
msgs=$(go run ./scripts/sharecount --cluster "nats://$HOST_IP:4222")
echo "netns-frontend: the miner was told true $acked times; the SHARES stream holds $msgs shares"
if [ "$msgs" -lt "$acked" ]; then echo "netns-frontend: FAIL: acknowledged shares are missing" >&2; exit 1; fi
if [ -z "$reached" ]; then echo "netns-frontend: FAIL: no block found at height $top reached the chain within 30 s of the link's return" >&2; exit 1; fi
echo "netns-frontend: block $reached (height $top) reached the chain after the link came back"
echo "netns-frontend: OK: nothing acknowledged was lost"
