#!/usr/bin/env bash
# Side-by-side capacity benchmark of powcoord binaries (README,
# "Coordinator capacity"): for each run, each coordinator binary in turn
# serves the embedded chain on 127.0.0.1 and each load generator in turn
# measures it (a fresh coordinator for every measurement). Prints one line
# per run, binary and load generator; the README reports medians.
#
#   scripts/capacity-bench.sh RUNS BIN_A [BIN_B...] -- LOADTEST_FLAGS...
#   e.g. scripts/capacity-bench.sh 5 /tmp/powcoord-base /tmp/powcoord-new -- --sessions 10000 --rate 0 --blocks 5
#
# LOADGEN names the load generator (default: the last binary); several,
# separated by commas, are run one after the other against the same
# coordinator binary, each with its own extra flags if given, e.g.
#   LOADGEN='/tmp/lg-old,/tmp/lg-new --readers goroutines,/tmp/lg-new' ...
# BLOCK_DIFFICULTY sets the coordinator's block difficulty (1e-3);
# COORD_LOG keeps the coordinator's log in that file.
set -euo pipefail
runs=$1; shift
bins=()
while [ "$1" != "--" ]; do bins+=("$1"); shift; done
shift
IFS=',' read -r -a loadgens <<< "${LOADGEN:-${bins[-1]}}"
blockdiff=${BLOCK_DIFFICULTY:-1e-3}
for r in $(seq 1 "$runs"); do
	for bin in "${bins[@]}"; do
		for lg in "${loadgens[@]}"; do
			read -r -a lgcmd <<< "$lg"
			dir=$(mktemp -d)
			port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
			"$bin" coordinator --stratum 127.0.0.1:$port --http '' --data "$dir" --share-difficulty 1e-9 \
				--shares-per-minute 0 --block-difficulty "$blockdiff" --log-level warn > "${COORD_LOG:-$dir/coord.log}" 2>&1 &
			pid=$!
			for _ in $(seq 1 100); do
				(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
				sleep 0.1
			done
			out=$("${lgcmd[0]}" loadtest "${lgcmd[@]:1}" --url 127.0.0.1:$port --pid $pid --log-level warn "$@" 2>&1 || true)
			kill $pid; wait $pid 2>/dev/null || true
			rm -rf "$dir"
			label=$(basename "$bin")
			if [ "${#loadgens[@]}" -gt 1 ]; then
				label="$label [loadgen ${lg}]"
			fi
			echo "run $r $label: $(echo "$out" | tr '\n' ' ' | sed 's/  */ /g')"
		done
	done
done
