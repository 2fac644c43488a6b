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
before=$(accepted)
echo "netns-frontend: the miner in $NS has $before shares accepted through the front-end"

echo "netns-frontend: cutting the front-end's link to NATS"
cut=$(date +%s.%N)
ip link set veth-pc0 down
sleep 7
after=$(accepted)
echo "netns-frontend: accepted after the cut (incl. in flight): $((after - before))"
lost=$(grep -m1 'lease lost' "$work/frontend.log" | sed 's/^time=\([^ ]*\).*/\1/')
echo "netns-frontend: link cut at $(date -u -d @"$cut" +%H:%M:%S.%N | cut -c1-12); front-end closed its sessions (lease lost) at ${lost:-never}"
grep -m2 -E 'lease lost|not acknowledged' "$work/frontend.log" | cut -c1-200 || true
ip link set veth-pc0 up
sleep 4
kill "${pids[-1]}"; sleep 1 # stop the miner: nothing more in flight
acked=$(accepted)
# SHARES holds batches of shares: count the shares in them.
msgs=$(go run ./scripts/sharecount --cluster "nats://$HOST_IP:4222")
echo "netns-frontend: the miner was told true $acked times; the SHARES stream holds $msgs shares"
if [ "$msgs" -lt "$acked" ]; then echo "netns-frontend: FAIL: acknowledged shares are missing" >&2; exit 1; fi
echo "netns-frontend: OK: nothing acknowledged was lost"
