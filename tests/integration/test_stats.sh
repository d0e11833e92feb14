#!/usr/bin/env bash
# test_stats.sh: `ccprewarm stats` around a pipeline run (issue 5).
# Snapshot, cold run (skopeo pulls of seeded images that share nothing),
# `stats --diff` shows exactly the misses, no hits and the upstream bytes
# the images add up to; snapshot again, restart the daemon, warm run of the
# same images: the diff shows as many hits, no misses, every byte served
# saved.  Human output has "hit ratio"; an unreachable server is a one-line
# error and a non-zero status.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init stats

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" --access-log "$T_OUT/access.log" || exit 1
M=$CCP_URL

# The pipeline: seeded images whose linux/amd64 closures are disjoint (so a
# cold run has no hits), pulled with skopeo (one platform).  Expected
# numbers come from the seed: per image, its tag (1 manifest request), the
# amd64 manifest by digest if the tag is an index (1 more), the config and
# every layer; each one request and one upstream fetch, of its seeded size.
"$PY" - "$SEED_JSON" >"$T_TMP/plan.txt" <<'EOF'
import json, sys
seed = json.load(open(sys.argv[1]))
seen, refs, reqs, nbytes = set(), [], 0, 0
for img in seed["images"]:
    plat = [p for p in img["platforms"] if p["platform"]["architecture"] == "amd64"][0]
    items = {img["digest"]: img["size"]}
    if img["kind"] == "index":
        items[plat["digest"]] = plat["size"]
    items[plat["config"]["digest"]] = plat["config"]["size"]
    for layer in plat["layers"]:
        items[layer["digest"]] = layer["size"]
    if seen & set(items):
        continue
    seen |= set(items)
    refs.append(img["ref"])
    reqs += len(items)
    nbytes += sum(items.values())
print(reqs, nbytes, " ".join(refs))
EOF
read -r WANT_REQS WANT_BYTES REFS <"$T_TMP/plan.txt"
note "pipeline: $REFS: $WANT_REQS requests, $WANT_BYTES bytes"
if [ -z "$REFS" ] || [ "${WANT_REQS:-0}" -lt 4 ]; then
	fail stats/plan "could not pick images from the seed"
	t_done
fi

pipeline() {
	local phase=$1 ref bad=
	for ref in $REFS; do
		if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$T_TMP/pull/$phase/${ref//[\/:]/_}"; then
			bad="$bad $ref"
		fi
	done
	if [ -z "$bad" ]; then
		pass "stats/$phase-run"
	else
		fail "stats/$phase-run" "skopeo copy failed for$bad: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	fi
}

# diff_field FILE KEY: one number of a `stats --diff --json` output.
diff_field() { jq -r --arg k "$2" '.[$k] // empty' "$1" 2>/dev/null; }

ccp_run before stats --server "$M" --json
cp "$CLI_OUT" "$T_TMP/before.json"
if [ "$CLI_RC" -eq 0 ] && jq -e '.store.hits >= 0' "$T_TMP/before.json" >/dev/null 2>&1; then
	pass stats/snapshot
else
	fail stats/snapshot "stats --json exited $CLI_RC: $(head -c 300 "$CLI_OUT" "$CLI_ERR" | tr '\n' ' ')"
fi

pipeline cold
sleep 0.2
ccp_run diff-cold stats --server "$M" --diff "$T_TMP/before.json" --json
cp "$CLI_OUT" "$T_OUT/diff-cold.json"
if [ "$CLI_RC" -ne 0 ]; then
	fail stats/diff-cold "stats --diff exited $CLI_RC: $(head -c 300 "$CLI_ERR")"
else
	D=$CLI_OUT
	check_eq stats/cold/misses "$(diff_field "$D" misses)" "$WANT_REQS" "misses in the diff"
	check_eq stats/cold/hits "$(diff_field "$D" hits)" 0 "hits in the diff"
	check_eq stats/cold/upstream-bytes "$(diff_field "$D" upstream_bytes)" "$WANT_BYTES" "upstream_bytes in the diff"
	check_eq stats/cold/served-bytes "$(diff_field "$D" served_bytes)" "$WANT_BYTES" "served_bytes in the diff"
	check_eq stats/cold/bytes-saved "$(diff_field "$D" bytes_saved)" 0 "bytes_saved in the diff"
	check_eq stats/cold/hit-ratio "$(jq -r '.hit_ratio == 0' "$D")" true "hit_ratio == 0 in the diff ($(diff_field "$D" hit_ratio))"
fi

ccp_run mid stats --server "$M" --json
cp "$CLI_OUT" "$T_TMP/mid.json"

# The diff is made of store-lifetime counters: a restart in between must
# not matter.
if [ -n "${CCP_PID:-}" ]; then
	stop CCP 20
	[ "$STOP_RC" = 0 ] || fail stats/restart "SIGTERM: exit $STOP_RC; $(asan_report "$CCP_LOG" | head -n 1)"
	restart_ccprewarm CCP "$UP_URL" --access-log "$T_OUT/access.log" || t_done
fi

pipeline warm
sleep 0.2
ccp_run diff-warm stats --server "$M" --diff "$T_TMP/mid.json" --json
cp "$CLI_OUT" "$T_OUT/diff-warm.json"
if [ "$CLI_RC" -ne 0 ]; then
	fail stats/diff-warm "stats --diff exited $CLI_RC: $(head -c 300 "$CLI_ERR")"
else
	D=$CLI_OUT
	check_eq stats/warm/hits "$(diff_field "$D" hits)" "$WANT_REQS" "hits in the diff"
	check_eq stats/warm/misses "$(diff_field "$D" misses)" 0 "misses in the diff"
	check_eq stats/warm/served-bytes "$(diff_field "$D" served_bytes)" "$WANT_BYTES" "served_bytes in the diff"
	check_eq stats/warm/bytes-saved "$(diff_field "$D" bytes_saved)" "$(diff_field "$D" served_bytes)" "bytes_saved vs served_bytes in the diff"
	check_eq stats/warm/upstream-bytes "$(diff_field "$D" upstream_bytes)" 0 "upstream_bytes in the diff"
	check_eq stats/warm/hit-ratio "$(jq -r '.hit_ratio == 1' "$D")" true "hit_ratio == 1 in the diff ($(diff_field "$D" hit_ratio))"
fi

# Human-readable output.
ccp_run human-diff stats --server "$M" --diff "$T_TMP/mid.json"
if [ "$CLI_RC" -eq 0 ] && grep -q 'hit ratio' "$CLI_OUT" && grep -qE 'hits +'"$WANT_REQS"'$' "$CLI_OUT"; then
	pass stats/human-diff
else
	fail stats/human-diff "stats --diff (exit $CLI_RC) lacks 'hit ratio' or 'hits $WANT_REQS': $(head -c 400 "$CLI_OUT" | tr '\n' '|')"
fi
ccp_run human stats --server "$M"
if [ "$CLI_RC" -eq 0 ] && grep -q 'hit ratio' "$CLI_OUT"; then
	pass stats/human
else
	fail stats/human "stats (exit $CLI_RC) lacks 'hit ratio': $(head -c 400 "$CLI_OUT" | tr '\n' '|')"
fi

# Nobody listening: one line on stderr naming the server, non-zero exit.
ccp_run unreachable stats --server http://127.0.0.1:1
n=$(nlines "$CLI_ERR")
if [ "$CLI_RC" -ne 0 ] && [ "$n" -eq 1 ] && grep -q '127.0.0.1:1' "$CLI_ERR" && [ ! -s "$CLI_OUT" ]; then
	pass stats/unreachable
else
	fail stats/unreachable "want exit != 0 and one stderr line naming the server; exit $CLI_RC, $n stderr lines: $(head -c 300 "$CLI_ERR" | tr '\n' '|')"
fi
ccp_run unreachable-diff stats --server http://127.0.0.1:1 --diff "$T_TMP/mid.json" --json
n=$(nlines "$CLI_ERR")
if [ "$CLI_RC" -ne 0 ] && [ "$n" -eq 1 ] && [ ! -s "$CLI_OUT" ]; then
	pass stats/unreachable-diff
else
	fail stats/unreachable-diff "want exit != 0 and one stderr line; exit $CLI_RC, $n stderr lines: $(head -c 300 "$CLI_ERR" | tr '\n' '|')"
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail stats/still-running "ccprewarm died during the test"
fi
t_done
