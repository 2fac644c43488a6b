#!/usr/bin/env bash
# Load benchmark of a powcoord cluster on one machine, all on 127.0.0.1:
# 3 nats-server processes (JetStream, R3), a throwaway PostgreSQL, one
# cluster coordinator, FRONTENDS front-ends, one ledger writer, and one
# `powcoord loadtest --procs FRONTENDS` (a child process per front-end).
# Reports the sessions held, the summed RSS of the front-ends and of every
# powcoord process, shares/s acknowledged
# and shares/s stored in PostgreSQL, the new-block notify latency, and the
# CPU each component used during the share phase. Linux only; run as root
# (PostgreSQL runs as the postgres user) or as a user who can run initdb.
#
#   FRONTENDS=2 SESSIONS_PER_FE=2000 RATE_PER_FE=5000 DURATION=15s scripts/cluster-bench.sh
#
# Env: FRONTENDS (2), SESSIONS_PER_FE (2000), RATE_PER_FE (shares/s offered
# on each front-end, 5000), DURATION (share phase, 15s), BLOCKS (blocks the
# load generator mines for the notify latency, timed at every session, 3), PERF (1: a 10 s `perf record`
# of front-end 1 during the share phase, if perf is installed), LEASE_TTL
# (the front-ends' --lease-ttl, 3s), BLOCK_DELAY (the load generator's
# --block-delay: a wait between the share phase and the first block, so
# the notify is timed after the ledger caught up; 0s). POWCOORD_CPUPROFILE=/dir/%p.prof gives
# every powcoord process a Go CPU profile (by pid; $work/pids names them).
# POWCOORD_BIN runs a binary built elsewhere (an older commit, side by side);
# LOADGEN the load generator binary (default: the same binary).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
[ "$(uname)" = Linux ] || { echo "cluster-bench: needs Linux (/proc); this is $(uname)" >&2; exit 1; }

FRONTENDS=${FRONTENDS:-2}
SESSIONS_PER_FE=${SESSIONS_PER_FE:-2000}
RATE_PER_FE=${RATE_PER_FE:-5000}
DURATION=${DURATION:-15s}
BLOCKS=${BLOCKS:-3}
PERF=${PERF:-0}
LEASE_TTL=${LEASE_TTL:-3s}
BLOCK_DELAY=${BLOCK_DELAY:-0s}

work=$(mktemp -d /tmp/cluster-bench.XXXXXX)
chmod 755 "$work"
bin=$work/powcoord
pids=()
pgdata=$work/pg/data
pgctl=""
runpg=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "$pgctl" ] && "${runpg[@]}" "$pgctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1
	echo "cluster-bench: logs in $work"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cputicks() { # utime+stime of a pid, in clock ticks (0 if gone)
	awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
rsskib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

if [ -n "${POWCOORD_BIN:-}" ]; then
	cp "$POWCOORD_BIN" "$bin"
else
	go build -o "$bin" ./cmd/powcoord
fi
nats=$(go tool -n nats-server)

# NATS: three servers routed into one cluster.
np=() cp=() hp=()
for i in 1 2 3; do np+=("$(freeport)"); cp+=("$(freeport)"); hp+=("$(freeport)"); done
urls=""
for i in 0 1 2; do
	d=$work/n$((i + 1))
	mkdir -p "$d"
	routes=""
	for j in 0 1 2; do [ $j = $i ] || routes+="\"nats://127.0.0.1:${cp[$j]}\", "; done
	cat >"$d/nats.conf" <<EOF
server_name: "n$((i + 1))"
listen: "127.0.0.1:${np[$i]}"
http: "127.0.0.1:${hp[$i]}"
jetstream { store_dir: "$d/js" }
cluster { name: "bench", listen: "127.0.0.1:${cp[$i]}", routes: [${routes%, }] }
EOF
	[ -n "${NATS_PROF:-}" ] && echo "prof_port: $((NATS_PROF + i))" >>"$d/nats.conf"
	"$nats" -c "$d/nats.conf" >"$d/nats.log" 2>&1 &
	pids+=($!)
	natspids+=($!)
	urls+="nats://127.0.0.1:${np[$i]},"
done
urls=${urls%,}
for i in 0 1 2; do
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:${hp[$i]}/healthz?js-enabled-only=true" >/dev/null && break
		sleep 0.2
	done
done

# PostgreSQL: initdb into the work directory, as the postgres user when root.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "cluster-bench: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
pgctl=$pgbin/pg_ctl
mkdir -p "$work/pg/sock"
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$work/pg"
	runpg=(runuser -u postgres --)
fi
pgport=$(freeport)
"${runpg[@]}" "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1
"${runpg[@]}" "$pgctl" -D "$pgdata" -l "$work/pg/postgres.log" -w -t 30 \
	-o "-c listen_addresses=127.0.0.1 -p $pgport -k $work/pg/sock" start >/dev/null
psqlc() { "${runpg[@]}" psql -h 127.0.0.1 -p "$pgport" -U postgres -d powcoord -Atqc "$1"; }
"${runpg[@]}" psql -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -qc 'CREATE DATABASE powcoord'

# The cluster: coordinator, front-ends, ledger writer.
"$bin" coordinator --cluster "$urls" --replicas 3 --http '' --data "$work/coord" \
	--block-difficulty 1e-3 --block-time 2s >"$work/coordinator.log" 2>&1 &
pids+=($!)
coordpid=$!
fe=()
fepids=()
for k in $(seq "$FRONTENDS"); do
	port=$(freeport)
	"$bin" frontend --cluster "$urls" --replicas 3 --stratum "127.0.0.1:$port" --id "fe$k" \
		--data "$work/fe$k" --share-difficulty 1e-9 --shares-per-minute 0 --wait 60s --lease-ttl "$LEASE_TTL" \
		>"$work/fe$k.log" 2>&1 &
	pids+=($!)
	fepids+=($!)
	echo "fe$k $!" >>"$work/pids"
	fe+=("127.0.0.1:$port")
done
"$bin" ledger --cluster "$urls" --replicas 3 \
	--postgres "postgres://postgres@127.0.0.1:$pgport/powcoord?sslmode=disable" ${LEDGER_FLAGS:-} >"$work/ledger.log" 2>&1 &
pids+=($!)
ledgerpid=$!
echo "coordinator $coordpid" >>"$work/pids"
echo "ledger $ledgerpid" >>"$work/pids"
for a in "${fe[@]}"; do
	for _ in $(seq 300); do
		(exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break
		sleep 0.2
	done
done
for _ in $(seq 150); do psqlc 'SELECT 1 FROM shares LIMIT 0' >/dev/null 2>&1 && break; sleep 0.2; done

# Sample the shares table every half second on one connection: time (ns)
# and the highest id (ids are drawn only for inserted rows, so it is the
# row count; a count(*) scan of a million rows every half second would be
# PostgreSQL work the benchmark charged to the ledger).
(while :; do echo "SELECT (extract(epoch FROM clock_timestamp()) * 1e9)::bigint, coalesce(max(id), 0) FROM shares;"; sleep 0.5; done |
	"${runpg[@]}" psql -h 127.0.0.1 -p "$pgport" -U postgres -d powcoord -Atq -F ' ') >"$work/pgcount" 2>/dev/null &
pids+=($!)

echo "cluster-bench: $FRONTENDS front-ends x $SESSIONS_PER_FE sessions, $RATE_PER_FE shares/s offered each for $DURATION, $BLOCKS blocks each"
# One load generator: a process per front-end (--procs, each on its own
# front-end's address), steered in step by the parent, so that each
# block's notify is timed over every session of every front-end and the
# share rates add up.
furls=$(IFS=,; echo "${fe[*]}")
"${LOADGEN:-$bin}" loadtest --url "$furls" --procs "$FRONTENDS" --sessions $((SESSIONS_PER_FE * FRONTENDS)) \
	--rate $((RATE_PER_FE * FRONTENDS)) --duration "$DURATION" --blocks "$BLOCKS" --block-delay "$BLOCK_DELAY" \
	>"$work/lt1.out" 2>"$work/lt1.log" &
ltpid=$!
pids+=($!)
allhave() { grep -q "$1" "$work/lt1.log"; } # the load generator has logged the line $1
alive() { kill -0 "$ltpid" 2>/dev/null; }
ltpids() { echo "$ltpid" $(pgrep -P "$ltpid" || true); } # the parent and its children

# Sessions held by all: read the front-ends' RSS and start the CPU split.
until allhave 'sessions connected'; do alive || break; sleep 0.2; done
rss=0
for p in "${fepids[@]}"; do rss=$((rss + $(rsskib "$p"))); done
rss_cluster=$((rss + $(rsskib "$coordpid") + $(rsskib "$ledgerpid")))
# The load generator's processes, listed once while all are alive (a
# listing per snapshot missed children and gave negative CPU).
ltall=$(ltpids)
rss_lt=0
for p in $ltall; do rss_lt=$((rss_lt + $(rsskib "$p"))); done
group() { # name pid... -> "name ticks"
	local n=$1 t=0 p
	shift
	for p in "$@"; do t=$((t + $(cputicks "$p"))); done
	echo "$n $t"
}
pgpids() { pgrep -u postgres -d ' ' postgres || true; }
snapshot() {
	group nats-server "${natspids[@]}"
	group postgres $(pgpids)
	group ledger "$ledgerpid"
	group coordinator "$coordpid"
	group front-ends "${fepids[@]}"
	group loadtests $ltall
}
snapshot >"$work/cpu0"
t0=$(date +%s%N)
if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
	(sleep 2; perf record -F 499 -g -o "$work/fe1.perf" -p "${fepids[0]}" -- sleep 10 >/dev/null 2>&1) &
fi
if [ -n "${NATS_PROF:-}" ]; then
	for i in 0 1 2; do
		(sleep 2; curl -s -o "$work/n$((i + 1)).prof" "http://127.0.0.1:$((NATS_PROF + i))/debug/pprof/profile?seconds=8") &
	done
fi
until allhave 'share phase done'; do alive || break; sleep 0.2; done
snapshot >"$work/cpu1"
t1=$(date +%s%N)
rss_end=0
for p in "${fepids[@]}"; do rss_end=$((rss_end + $(rsskib "$p"))); done

fail=0
wait "$ltpid" || { echo "cluster-bench: the loadtest failed:" >&2; tail -3 "$work/lt1.log" >&2; fail=1; }
# Let the ledger drain (at most 60 s).
acked=$(awk '/^shares:/{s+=$4} END{print s+0}' "$work/lt1.out")
for _ in $(seq 120); do
	[ "$(psqlc 'SELECT count(*) FROM shares')" -ge "$acked" ] 2>/dev/null && break
	sleep 0.5
done
stored=$(psqlc 'SELECT count(*) FROM shares')

echo
awk -v fes="$FRONTENDS" -v rss="$rss" -v rss_end="$rss_end" -v rss_cluster="$rss_cluster" -v rss_lt="$rss_lt" '
/^sessions held:/ { sess = $3; failed = substr($4, 2) }
/^shares:/ { sent = $2; acc = $4; rate = $8 }
/^new-block notify:/ { p50 = $4; p99 = $6; mx = $8; samples = substr($13, 2); blocks = $16; miss = $18 }
/^notify spread:/ { sp50 = $4; sp99 = $6 }
END {
	printf "sessions held:          %d (%d failed) on %d front-ends\n", sess, failed, fes
	printf "front-end RSS (summed):  %.1f MiB holding them (%.2f KiB per session), %.1f MiB after the share phase\n", rss / 1024, rss / sess, rss_end / 1024
	printf "all powcoord RSS:        %.1f MiB (coordinator, front-ends, ledger) + %.1f MiB (the load generator processes) holding them\n", rss_cluster / 1024, rss_lt / 1024
	printf "shares acknowledged:     %d of %d sent; %.0f /s\n", acc, sent, rate
	if (p50 != "") printf "new-block notify:        p50 %s p99 %s max %s over every session (%d samples, %d blocks, %d missing); spread p50 %s p99 %s\n", p50, p99, mx, samples, blocks, miss, sp50, sp99
}' "$work/lt1.out"
# PostgreSQL: rows per second from the sample before the first growth to
# the first sample holding 99.9% of the rows stored in the end (a few
# shares acknowledged after their loadtest gave up trickle in later and
# must not stretch the interval).
awk -v acked="$acked" -v stored="$stored" '
$2 >= 0 { if (prev != "" && $2 > prev) { if (t0 == "") { t0 = pt; c0 = prev } if (c1 < 0.999 * stored) { t1 = $1; c1 = $2 } } pt = $1; prev = $2 }
END {
	if (t0 != "") printf "shares in PostgreSQL:    %d stored (acknowledged %d); %.0f /s over %.1f s of ingest\n", stored, acked, (c1 - c0) / ((t1 - t0) / 1e9), (t1 - t0) / 1e9
	else printf "shares in PostgreSQL:    %d stored (acknowledged %d)\n", stored, acked
}' "$work/pgcount"
hz=$(getconf CLK_TCK)
echo "CPU during the share phase ($(((t1 - t0) / 1000000)) ms wall, 100% = one core):"
awk -v hz="$hz" -v wall="$(((t1 - t0) / 1000000))" 'NR == FNR { c0[$1] = $2; next }
	{ printf "  %-12s %4.0f%%\n", $1, ($2 - c0[$1]) / hz / (wall / 1000) * 100 }' "$work/cpu0" "$work/cpu1"
if [ -f "$work/fe1.perf" ]; then
	perf report -i "$work/fe1.perf" --stdio --no-children --sort sym 2>/dev/null | grep -E '^ +[0-9]' | head -25 >"$work/fe1.perf.txt" || true
	echo "front-end 1 perf profile (top symbols, self time): $work/fe1.perf.txt"
	head -15 "$work/fe1.perf.txt"
fi
exit $fail
