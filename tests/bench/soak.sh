#!/usr/bin/env bash
# tests/bench/soak.sh: the soak (part of `make bench`, not of CI).  A seeded
# docker-registry behind tests/tools/faultproxy.py, ccprewarm (the optimised
# build) in front with a small store budget (max_bytes, when the binary
# knows the key: the budget and eviction come with the store-lifecycle
# work), then tests/bench/soak.py: SOAK_SECONDS (1800) of mixed traffic
# from SOAK_CLIENTS (4) clients, an upstream fault every SOAK_FAULT_EVERY
# (60) s for SOAK_FAULT_SECONDS (10) s, RSS and fds sampled every 10 s,
# every store file hashed at the end.  The report goes to
# docs/perf/soak-YYYY-MM-DD-HHMM.md and .json (SOAK_REPORT=0: not).
#
# Environment: SOAK_SECONDS SOAK_CLIENTS SOAK_SIZE_MB (200: the seeded set)
# SOAK_BUDGET_MB (60) SOAK_FAULT_EVERY SOAK_FAULT_SECONDS SOAK_REPORT
# SOAK_LABEL (a note for the report, e.g. "shortened run")
# CCPREWARM_BIN (build/ccprewarm).  Exit status 0 if the soak held.
set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
	PY=/usr/bin/python3
else
	PY=${PYTHON:-python3}
fi
SECS=${SOAK_SECONDS:-1800}
CLIENTS=${SOAK_CLIENTS:-4}
SIZE_MB=${SOAK_SIZE_MB:-200}
BUDGET_MB=${SOAK_BUDGET_MB:-60}
BIN=${CCPREWARM_BIN:-$TOP/build/ccprewarm}
[ -x "$BIN" ] || make -C "$TOP" -s all || exit 1

TMP=$(mktemp -d /tmp/ccp-soak.XXXXXX)
OUT=$TOP/build/soak-out
mkdir -p "$OUT"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM -- "-$p" 2>/dev/null
	done
	sleep 1
	for p in "${PIDS[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
spawn() {	# spawn LOG CMD...: own process group, pid in SPAWNED
	local log=$1
	shift
	setsid "$@" </dev/null >"$log" 2>&1 &
	SPAWNED=$!
	PIDS+=("$SPAWNED")
}
wait_http() {
	local end=$((SECONDS + 30))
	until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1")" = 200 ]; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

UPP=$(port)
cat >"$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $TMP/registry
http:
  addr: 127.0.0.1:$UPP
EOF
spawn "$OUT/registry.log" /usr/bin/docker-registry serve "$TMP/registry.yml"
wait_http "http://127.0.0.1:$UPP/v2/" || { echo "soak: docker-registry did not start" >&2; exit 1; }
echo "soak: seeding ${SIZE_MB} MB" >&2
"$PY" "$TOP/tests/tools/seed.py" --registry "http://127.0.0.1:$UPP" \
	--size-mb "$SIZE_MB" --cache "$TOP/build/bench-cache" --out "$TMP/seed.json" \
	2>"$OUT/seed.log" || { echo "soak: seed.py failed (see $OUT/seed.log)" >&2; exit 1; }

PXP=$(port)
spawn "$OUT/proxy.log" "$PY" -u "$TOP/tests/tools/faultproxy.py" \
	--listen "127.0.0.1:$PXP" --upstream "http://127.0.0.1:$UPP" --stall 5
wait_http "http://127.0.0.1:$PXP/_proxy/stats" || { echo "soak: faultproxy did not start" >&2; exit 1; }

# The budget only when this binary knows the key (it names an unknown key
# and stops at start-up; a config check is cheap).
budget=$((BUDGET_MB * 1024 * 1024))
echo "{\"max_bytes\": $budget}" >"$TMP/probe.json"
probe=$(timeout 3 "$BIN" serve --config "$TMP/probe.json" \
	--listen "127.0.0.1:$(port)" --data "$TMP/probe" 2>&1)
if ! grep -q "max_bytes: unknown key" <<<"$probe"; then
	EVICT=1
	echo "{\"max_bytes\": $budget, \"response_timeout_ms\": 3000}" >"$TMP/ccp.json"
	echo "soak: store budget max_bytes $budget (${BUDGET_MB} MiB of a ${SIZE_MB} MB set)" >&2
else
	EVICT=0
	echo '{"response_timeout_ms": 3000}' >"$TMP/ccp.json"
	echo "soak: this ccprewarm has no max_bytes: no budget, no evictions" >&2
fi

CCPP=$(port)
mkdir -p "$TMP/data"
spawn "$OUT/ccprewarm.log" "$BIN" serve --listen "127.0.0.1:$CCPP" --data "$TMP/data" \
	--upstream "http://127.0.0.1:$PXP" --config "$TMP/ccp.json" --access-log ''
CCP_PID=$SPAWNED
wait_http "http://127.0.0.1:$CCPP/v2/" || { echo "soak: ccprewarm did not start" >&2; exit 1; }

echo "soak: ${SECS}s, $CLIENTS clients, a fault every ${SOAK_FAULT_EVERY:-60}s" >&2
"$PY" "$TOP/tests/bench/soak.py" --mirror "http://127.0.0.1:$CCPP" \
	--proxy "http://127.0.0.1:$PXP" --seed-json "$TMP/seed.json" \
	--pid "$CCP_PID" --data "$TMP/data" --seconds "$SECS" --clients "$CLIENTS" \
	--fault-every "${SOAK_FAULT_EVERY:-60}" --fault-seconds "${SOAK_FAULT_SECONDS:-10}" \
	--out "$TMP/soak.json"
rc=$?

# Evictions and what the daemon counted, from its own metrics.
curl -s -m 10 "http://127.0.0.1:$CCPP/metrics" >"$OUT/metrics.txt"
curl -s -m 10 "http://127.0.0.1:$PXP/_proxy/stats" >"$OUT/proxy-stats.json"
m() { awk -v k="$1" '$1 == k { print $2; exit }' "$OUT/metrics.txt"; }
"$PY" - "$TMP/soak.json" "$EVICT" "$(m ccprewarm_evictions_total)" \
	"$(m ccprewarm_digest_mismatches_total)" "$(m ccprewarm_store_bytes)" \
	"${SOAK_LABEL:-}" "$("$BIN" --version 2>/dev/null | head -n 1)" "$OUT/proxy-stats.json" <<'EOF'
import json, sys
p, evict, ev, mism, sb, label, ver, px = sys.argv[1:9]
r = json.load(open(p))
try:
    ps = json.load(open(px))
    r["upstream_requests"] = ps.get("total")
    r["upstream_faulted"] = ps.get("faults")
except (OSError, ValueError):
    r["upstream_requests"] = r["upstream_faulted"] = None
r["budget"] = bool(int(evict))
r["evictions_total"] = ev or None
r["digest_mismatches_total"] = mism or None
r["store_bytes_metric"] = sb or None
r["label"] = label
r["version"] = ver
json.dump(r, open(p, "w"), indent=1)
EOF

if [ "${SOAK_REPORT:-1}" != 0 ]; then
	stamp=$(date -u +%Y-%m-%d-%H%M)
	cp "$TMP/soak.json" "$TOP/docs/perf/soak-$stamp.json"
	"$PY" - "$TMP/soak.json" "$SECS" >"$TOP/docs/perf/soak-$stamp.md" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
secs = int(sys.argv[2])
print("# Soak %s\n" % ("(" + r["label"] + ")" if r["label"] else ""))
print("`tests/bench/soak.sh` (`make bench`), ccprewarm %s, %d s of mixed "
      "traffic from %d clients (the full soak is 1800 s)%s.\n"
      % (r["version"], secs, r["clients"],
         "" if secs >= 1800 else ": **a shortened run**"))
print("| | |\n|---|---|")
print("| result | %s |" % ("held" if r["ok"] else "**FAILED**"))
print("| requests | %d (%s) |" % (r["requests"], ", ".join(
    "%s %d" % kv for kv in sorted(r["ops"].items()))))
print("| upstream faults | %d: %s |" % (len(r["faults"]), ", ".join(
    "%s at %ss" % (f["fault"], f["t"]) for f in r["faults"])))
print("| requests upstream (through the fault proxy) | %s, %s of them "
      "faulted |" % (r["upstream_requests"], r["upstream_faulted"]))
print("| store budget | %s |" % (
    "max_bytes, evictions: %s" % r["evictions_total"] if r["budget"]
    else "none (this build has no max_bytes)"))
print("| wrong bytes in complete replies | %d |" % r["bad_bytes_count"])
print("| store files whose hash is not their name | %d of %d |"
      % (r["store_bad_count"], r["store_files"]))
print("| digest mismatches counted by the daemon | %s |"
      % r["digest_mismatches_total"])
for k, unit in (("rss_kib", "KiB"), ("fds", "")):
    v = r[k]
    print("| %s | min %s, max %s; median of the 2nd quarter %s, of the last "
          "%s: %s |" % ("RSS" if k == "rss_kib" else "open fds", v["min"],
                        v["max"], v["q2_median"], v["q4_median"],
                        "flat" if v["flat"] else "**growing**"))
h = r["hit_latency_s"]
print("| blob/range/HEAD 2xx latency | p50 %s s, p99 %s s, max %s s |"
      % (h["p50"], h["p99"], h["max"]))
print("\nStatus counts: " + ", ".join(
    "`%s` %d" % kv for kv in r["status"].items()) + ".\n")
print("Samples (every 10 s), t: RSS KiB / fds:\n")
print(" ".join("%s:%s/%s" % (s["t"], s["rss_kib"], s["fds"])
               for s in r["samples"]))
EOF
	echo "soak: report docs/perf/soak-$stamp.md" >&2
fi
exit $rc
