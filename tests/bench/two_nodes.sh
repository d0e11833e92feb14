#!/usr/bin/env bash
# tests/bench/two_nodes.sh: the "two nodes" figure of `make bench`.  Two
# ccprewarm nodes (build/ccprewarm) share one bucket on radosgw (a one-node
# Ceph cluster, tests/integration/lib_s3.sh): node A pulls the seeded set
# cold from the upstream (docker-registry on loopback) and uploads it in the
# background; node B, with an empty store, then pulls the same set cold,
# which it gets from the bucket.  Each repetition uses fresh stores and a
# fresh prefix in the bucket; the medians are printed and written as JSON
# to $TWO_NODES_JSON (make bench sets it: bench.py puts the figure in the
# main report) or, run alone and unless BENCH_REPORT=0, to
# docs/perf/two-nodes-latest.json.
#
# Environment: BENCH_TWO_NODES_MB (100) BENCH_REPS (3) CCPREWARM_BIN
# (build/ccprewarm) TWO_NODES_JSON.  Skipped (exit 0, with a message)
# without Ceph.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CCPREWARM_BIN=${CCPREWARM_BIN:-$TOP/build/ccprewarm}
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/integration/lib_s3.sh"
t_init bench-two-nodes

MB=${BENCH_TWO_NODES_MB:-100}
REPS=${BENCH_REPS:-3}

start_s3
rc=$?
if [ "$rc" -eq 2 ]; then
	echo "two nodes: skipped: Ceph is not installed (tests/deps.sh test)"
	exit 0
elif [ "$rc" -ne 0 ]; then
	fail bench/start-s3 "the Ceph cluster did not come up; see tests/out/bench-two-nodes/"
	exit 1
fi
s3_mb bench || {
	fail bench/bucket "cannot create the bucket"
	exit 1
}
start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb "$MB" || exit 1
bytes=$(du -sb "$SEED_BLOBS" | cut -f1)

# pull_set HOSTPORT DIR: skopeo-copy every seeded image; 0 if all did.
pull_set() {
	local hp=$1 dir=$2 ref kind extra
	for ref in $(seed_refs); do
		kind=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .kind')
		extra=()
		[ "$kind" = index ] && extra=(--all)
		skopeo_copy "$hp" "$ref" "$dir/${ref//[\/:]/_}" "${extra[@]}" || return 1
	done
}

metric() {
	curl -sf "$1/metrics" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

a_times=()
b_times=()
for ((i = 1; i <= REPS; i++)); do
	cat >"$T_TMP/cfg$i.json" <<-JSON
	{"shared_store": {"url": "$S3_URL", "bucket": "bench",
	  "region": "$S3_REGION", "credentials_file": "$S3_CREDS",
	  "prefix": "rep$i/", "node": "bench", "pins_publish_seconds": 0},
	 "access_log": ""}
	JSON
	CCP_DATA_DIR=$T_TMP/a$i start_ccprewarm A "$UP_URL" --config "$T_TMP/cfg$i.json" || exit 1
	t0=$(now)
	pull_set "$A_HOSTPORT" "$T_TMP/pa$i" || fail "bench/rep$i-a" "node A's pull failed"
	ta=$(secs "$t0" "$(now)")
	end=$((SECONDS + 300))
	while [ "$(metric "$A_URL" ccprewarm_shared_store_uploads_in_flight)" != 0 ] &&
		[ $SECONDS -lt $end ]; do
		sleep 0.2
	done
	stop A 20
	CCP_DATA_DIR=$T_TMP/b$i start_ccprewarm B "$UP_URL" --config "$T_TMP/cfg$i.json" || exit 1
	t0=$(now)
	pull_set "$B_HOSTPORT" "$T_TMP/pb$i" || fail "bench/rep$i-b" "node B's pull failed"
	tb=$(secs "$t0" "$(now)")
	hits=$(metric "$B_URL" ccprewarm_shared_store_hits_total)
	upb=$(metric "$B_URL" ccprewarm_upstream_bytes_total)
	stop B 20
	rm -rf "$T_TMP/a$i" "$T_TMP/b$i" "$T_TMP/pa$i" "$T_TMP/pb$i"
	echo "two nodes, rep $i: node A (upstream) ${ta}s, node B (shared store) ${tb}s; B: $hits bucket hits, $upb upstream bytes"
	a_times+=("$ta")
	b_times+=("$tb")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ma=$(median "${a_times[@]}")
mb=$(median "${b_times[@]}")
mbs() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", (s > 0 ? b / 1048576 / s : 0) }'; }
line="two nodes: cold pull of $((bytes / 1048576)) MiB (skopeo, 1 client), median of $REPS: node A from upstream ${ma}s ($(mbs "$ma") MiB/s), node B from the shared store ${mb}s ($(mbs "$mb") MiB/s); ceph up in ${S3_SECS}s; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$line"
OUTJ=${TWO_NODES_JSON:-}
if [ -z "$OUTJ" ] && [ "${BENCH_REPORT:-1}" != 0 ]; then
	OUTJ=$TOP/docs/perf/two-nodes-latest.json
fi
if [ -n "$OUTJ" ]; then
	jq -n --arg line "$line" --argjson bytes "$bytes" --argjson reps "$REPS" \
		--argjson a "$ma" --argjson b "$mb" --arg git "$(git -C "$TOP" describe --always --dirty 2>/dev/null)" \
		--arg when "$(date -u +%Y-%m-%dT%H:%MZ)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
		--argjson ar "$(printf '%s\n' "${a_times[@]}" | jq -s -c .)" \
		--argjson br "$(printf '%s\n' "${b_times[@]}" | jq -s -c .)" \
		'{when: $when, git: $git, bytes: $bytes, reps: $reps, node_a_upstream_s: $a,
		  node_b_shared_store_s: $b, node_a_runs: $ar, node_b_runs: $br,
		  load: $load, summary: $line}' >"$OUTJ"
fi
t_done
