#!/bin/bash
# tests/bench/fanin_cpu.sh: a cold pull of one large blob through one or more
# ccprewarm binaries, interleaved (A B A B ...), N concurrent curl clients,
# a fresh store each time; prints per run the mirror's own CPU time (all its
# threads, /proc/PID/task/*/schedstat: load on the box does not inflate it
# the way it does wall time) and the wall time.  With CG=1 the mirror runs
# under callgrind and its instruction count (Ir) is printed instead.
#
#   tests/bench/fanin_cpu.sh N_CLIENTS ROUNDS BIN...   (SIZE_MB=64 default)
set -eu
N=$1 ROUNDS=$2
shift 2
SIZE_MB=${SIZE_MB:-64}
W=$(mktemp -d "${TMPDIR:-/tmp}/ccp-fanin.XXXXXX")
REG_PID=
cleanup() {
	[ -n "$REG_PID" ] && kill -TERM "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_v2() { for _ in $(seq 300); do curl -sf "$1/v2/" >/dev/null && return 0; sleep 0.1; done; return 1; }

RP=$(port)
cat >"$W/reg.yml" <<Y
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/reg}}
http: {addr: 127.0.0.1:$RP, secret: bench}
Y
/usr/bin/docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 </dev/null &
REG_PID=$!
wait_v2 "http://127.0.0.1:$RP"
head -c $((SIZE_MB << 20)) /dev/urandom >"$W/blob"
D=sha256:$(sha256sum "$W/blob" | cut -d' ' -f1)
loc=$(curl -si -X POST "http://127.0.0.1:$RP/v2/bench/big/blobs/uploads/" |
	tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
case $loc in http*) ;; *) loc=http://127.0.0.1:$RP$loc ;; esac
curl -sf -X PUT -H 'Content-Type: application/octet-stream' \
	--data-binary @"$W/blob" "$loc&digest=$D" >/dev/null

for _ in $(seq "$ROUNDS"); do
	for bin in "$@"; do
		P=$(port)
		rm -rf "$W/data"
		mkdir -p "$W/data"
		pre=()
		[ "${CG:-0}" = 1 ] && pre=(valgrind --tool=callgrind --callgrind-out-file="$W/cg.out")
		"${pre[@]}" "$bin" serve --listen "127.0.0.1:$P" --data "$W/data" \
			--upstream "http://127.0.0.1:$RP" --access-log /dev/null \
			>"$W/ccp.log" 2>&1 </dev/null &
		CP=$!
		wait_v2 "http://127.0.0.1:$P"
		t0=$(date +%s.%N)
		pids=()
		for c in $(seq "$N"); do
			curl -sf -o "$W/out.$c" "http://127.0.0.1:$P/v2/bench/big/blobs/$D" &
			pids+=($!)
		done
		ok=1
		for p in "${pids[@]}"; do wait "$p" || ok=0; done
		t1=$(date +%s.%N)
		cpu=$(cat /proc/$CP/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s / 1e6}')
		kill -TERM "$CP"
		wait "$CP" || true
		for c in $(seq "$N"); do cmp -s "$W/out.$c" "$W/blob" || ok=0; done
		if [ "${CG:-0}" = 1 ]; then
			cpu="Ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$W/cg.out")"
		else
			cpu="cpu_ms=$cpu"
		fi
		echo "$bin n=$N ok=$ok $cpu wall=$(echo "$t1 - $t0" | bc)"
		rm -f "$W"/out.*
	done
done
