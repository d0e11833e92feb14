#!/usr/bin/env bash
# test_prometheus.sh: a real Prometheus scrapes ccprewarm every second
# (issue 5).  A cold pull (skopeo, every seeded image, linux/amd64) and a
# warm pull of the same images; after each phase, wait for a scrape that
# started after it, then query Prometheus's HTTP API: hits, misses and
# upstream bytes equal what the seeded image set implies (computed from the
# seed, not read from ccprewarm).  The target is healthy: Prometheus parses
# the exposition.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init prometheus

if ! command -v prometheus >/dev/null; then
	skip prometheus/all "prometheus not installed (Debian package prometheus)"
	exit 0
fi

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" --access-log "$T_OUT/access.log" || exit 1

# -- Prometheus on a free loopback port, its own TSDB, 1 s scrapes.
PROM_PORT=$(free_port PROM)
PROM_URL=http://127.0.0.1:$PROM_PORT
mkdir -p "$T_TMP/prom-data"
cat >"$T_TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ccprewarm
    scrape_interval: 1s
    scrape_timeout: 1s
    metrics_path: /metrics
    static_configs:
      - targets: ['$CCP_HOSTPORT']
EOF
_spawn PROM "$T_OUT/prometheus.log" prometheus \
	--config.file="$T_TMP/prometheus.yml" \
	--storage.tsdb.path="$T_TMP/prom-data" \
	--storage.tsdb.retention.time=1h \
	--web.listen-address="127.0.0.1:$PROM_PORT" \
	--log.level=info
if ! wait_http "$PROM_URL/-/ready" 60 PROM; then
	fail prometheus/start "prometheus did not become ready on port $PROM_PORT (see prometheus.log)"
	exit 1
fi
pass prometheus/start

# promq QUERY: the first sample's value of an instant query (empty if none).
promq() {
	curl -sf -m 5 --get --data-urlencode "query=$1" "$PROM_URL/api/v1/query" 2>/dev/null |
		jq -r '.data.result[0].value[1] // empty' 2>/dev/null
}

# wait_scrape AFTER SECONDS: until Prometheus holds a scrape of ccprewarm
# that started after the Unix time AFTER.
wait_scrape() {
	local after=$1 end=$((SECONDS + $2)) ts
	while [ $SECONDS -lt $end ]; do
		ts=$(promq 'timestamp(ccprewarm_build_info)')
		if [ -n "$ts" ] && awk -v a="$after" -v t="$ts" 'BEGIN { exit !(t > a) }'; then
			return 0
		fi
		sleep 0.25
	done
	return 1
}

if wait_scrape "$(date +%s.%N)" 30 && [ "$(promq 'up{job="ccprewarm"}')" = 1 ]; then
	pass prometheus/target-up
else
	fail prometheus/target-up "no successful scrape of ccprewarm in 30s: $(curl -s "$PROM_URL/api/v1/targets" | jq -c '.data.activeTargets[0] | {health, lastError}' 2>/dev/null)"
fi

# -- Expected counts from the seed.  Every seeded image once, in order,
# with skopeo (one platform): its tag, the amd64 manifest by digest if the
# tag is an index, the config, the layers.  Cold: a tag is always a miss;
# a digest is a miss the first time the store sees it, a hit after (shared
# layers); each miss brings its bytes from upstream.  Warm: all hits.
"$PY" - "$SEED_JSON" >"$T_TMP/expect.txt" <<'EOF'
import json, sys
seed = json.load(open(sys.argv[1]))
stored = set()
c = dict(bmiss=0, bhit=0, mmiss=0, mhit=0, up=0, reqs=0)
for img in seed["images"]:
    plat = [p for p in img["platforms"] if p["platform"]["architecture"] == "amd64"][0]
    c["mmiss"] += 1                       # the tag
    c["up"] += img["size"]
    stored.add(img["digest"])
    reqs = []
    if img["kind"] == "index":
        reqs.append(("m", plat["digest"], plat["size"]))
    reqs.append(("b", plat["config"]["digest"], plat["config"]["size"]))
    reqs += [("b", l["digest"], l["size"]) for l in plat["layers"]]
    c["reqs"] += 1 + len(reqs)
    for kind, d, size in reqs:
        if d in stored:
            c[kind + "hit"] += 1
        else:
            c[kind + "miss"] += 1
            c["up"] += size
            stored.add(d)
print(c["bmiss"], c["bhit"], c["mmiss"], c["mhit"], c["up"], c["reqs"],
      " ".join(i["ref"] for i in seed["images"]))
EOF
read -r BMISS BHIT MMISS MHIT UPBYTES REQS REFS <"$T_TMP/expect.txt"
note "expected: cold blob misses $BMISS, blob hits $BHIT, manifest misses $MMISS, manifest hits $MHIT, upstream bytes $UPBYTES; $REQS requests per pull of every image"

pull_phase() {
	local phase=$1 ref bad=
	for ref in $REFS; do
		skopeo_copy "$CCP_HOSTPORT" "$ref" "$T_TMP/pull/$phase/${ref//[\/:]/_}" || bad="$bad $ref"
	done
	if [ -z "$bad" ]; then
		pass "prometheus/$phase-pull"
	else
		fail "prometheus/$phase-pull" "skopeo copy failed for$bad: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	fi
}

# pq NAME QUERY WANT: the query's value is WANT.
pq() {
	local got
	got=$(promq "$2")
	if [ -n "$got" ] && [ "$got" = "$3" ]; then
		pass "$1"
	else
		fail "$1" "Prometheus: $2 = '${got}', want $3"
	fi
}

# -- cold
pull_phase cold
t=$(date +%s.%N)
if ! wait_scrape "$t" 30; then
	fail prometheus/cold-scrape "no scrape within 30s after the cold pull"
else
	pq prometheus/cold/blob-misses 'ccprewarm_cache_misses_total{kind="blob"}' "$BMISS"
	pq prometheus/cold/manifest-misses 'ccprewarm_cache_misses_total{kind="manifest"}' "$MMISS"
	pq prometheus/cold/all-hits 'sum(ccprewarm_cache_hits_total)' $((BHIT + MHIT))
	pq prometheus/cold/blob-hits 'ccprewarm_cache_hits_total{kind="blob"}' "$BHIT"
	pq prometheus/cold/upstream-bytes 'ccprewarm_upstream_bytes_total' "$UPBYTES"
	pq prometheus/cold/served-upstream 'ccprewarm_served_bytes_total{source="upstream"}' "$UPBYTES"
fi

# -- warm
pull_phase warm
t=$(date +%s.%N)
if ! wait_scrape "$t" 30; then
	fail prometheus/warm-scrape "no scrape within 30s after the warm pull"
else
	pq prometheus/warm/all-hits 'sum(ccprewarm_cache_hits_total)' $((BHIT + MHIT + REQS))
	pq prometheus/warm/all-misses 'sum(ccprewarm_cache_misses_total)' $((BMISS + MMISS))
	pq prometheus/warm/blob-misses 'ccprewarm_cache_misses_total{kind="blob"}' "$BMISS"
	pq prometheus/warm/upstream-bytes 'ccprewarm_upstream_bytes_total' "$UPBYTES"
	pq prometheus/warm/hit-requests 'sum(ccprewarm_http_requests_total{route=~"blob|manifest",status="200"})' $((2 * REQS))
fi

tgt=$(curl -s "$PROM_URL/api/v1/targets" | jq -r '.data.activeTargets[0] | "\(.health) \(.lastError)"' 2>/dev/null)
if [ "$tgt" = "up " ]; then
	pass prometheus/target-healthy
else
	fail prometheus/target-healthy "target health/lastError: $tgt"
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail prometheus/still-running "ccprewarm died during the test"
fi
t_done
