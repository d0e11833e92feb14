#!/usr/bin/env bash
# tests/bench/loops_cpu.sh: CPU per tag-manifest hit (perf stat -e task-clock on the
# daemon while wrk runs 5 s, divided by the requests it finished) for --loops 1,
# --loops 2, and --loops 2 with the default access log; three rounds,
# interleaved; then perf record -g of the loops=2 daemon (report in /tmp/i13l).
#   CCPREWARM_BIN=build/ccprewarm tests/bench/loops_cpu.sh
. "$(dirname "$0")"/../integration/lib.sh
. "$(dirname "$0")"/../integration/lib_net.sh
t_init bench-loops-cpu
mkdir -p /tmp/i13l
start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 5 || exit 1
start_ccprewarm L1 "$UP_URL" --loops 1 --access-log '' || exit 1
start_ccprewarm L2 "$UP_URL" --loops 2 --access-log '' || exit 1
start_ccprewarm D2 "$UP_URL" --loops 2 || exit 1
REPO=test/single-oci
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
for s in L1 L2 D2; do u=${s}_URL; curl -sf -o /dev/null -H "$ACCEPT" "${!u}/v2/$REPO/manifests/v1" || exit 1; done
total() { curl -s "$1/metrics" | awk '/^ccprewarm_loop_requests_total/ { s += $2 } END { print s }'; }
for round in 1 2 3; do
for s in L1 L2 D2; do
	u=${s}_URL; p=${s}_PID
	pid=$(pgrep -g "${!p}" ccprewarm | head -1)
	a=$(total "${!u}")
	perf stat -x, -e task-clock,context-switches -p "$pid" -o /tmp/i13l/perf-$s.txt -- sleep 6 &
	ps=$!
	wrk -t2 -c32 -d5s -H "$ACCEPT" "${!u}/v2/$REPO/manifests/v1" > /tmp/i13l/wrk-$s.txt
	wait $ps
	b=$(total "${!u}")
	n=$((b - a - 1))
	ins=$(awk -F, '$3 == "task-clock" { print $1 }' /tmp/i13l/perf-$s.txt)
	cyc=$(awk -F, '$3 == "task-clock" { print $1 }' /tmp/i13l/perf-$s.txt)
	cs=$(awk -F, '$3 == "context-switches" { print $1 }' /tmp/i13l/perf-$s.txt)
	echo "round $round $s: $n requests, $(awk -v i="$ins" -v n="$n" 'BEGIN{printf "%.1f", i/n*1000}') us CPU/request (task-clock), $(awk -v i="$cs" -v n="$n" 'BEGIN{printf "%.3f", i/n}') context switches/request, wrk $(awk '/Requests\/sec/ {print $2}' /tmp/i13l/wrk-$s.txt)/s, load $(cut -d' ' -f1 /proc/loadavg)"
done
done
pid=$(pgrep -g "$L2_PID" ccprewarm | head -1)
perf record -g -o /tmp/i13l/perf-L2.data -p "$pid" -- sleep 5 >/dev/null 2>&1 &
ps=$!
wrk -t2 -c32 -d4s -H "$ACCEPT" "$L2_URL/v2/$REPO/manifests/v1" > /dev/null
wait $ps
perf report -i /tmp/i13l/perf-L2.data --no-children --sort dso,sym --stdio 2>/dev/null | grep -v "^#" | grep "%" | head -40 > /tmp/i13l/report-L2.txt
perf report -i /tmp/i13l/perf-L2.data --no-children --sort tid --stdio 2>/dev/null | grep "%" | head -5 >> /tmp/i13l/report-L2.txt
t_done
