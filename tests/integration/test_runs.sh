#!/usr/bin/env bash
# test_runs.sh: pull experiments as data (issue 15).  A run around a cold
# skopeo pull of seeded images that share nothing, a second run around the
# same pull warm: `runs show` reports every image cold with upstream bytes
# equal to the unique bytes the upstream registry logged, then every image
# warm with none; `runs compare` shows the drop (exit 0), the reverse exits
# 1; the HTML reports load in headless Chromium with one bar per image and
# no console errors; a --client filter and an overlapping run; metrics;
# after a restart the runs are still listed and the newest N are kept.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init runs

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL

# Seeded images whose linux/amd64 closures are disjoint (so a cold pull has
# no hits), as in test_stats.sh; the references the run should report.
"$PY" - "$SEED_JSON" >"$T_TMP/plan.txt" <<'EOF'
import json, sys
seed = json.load(open(sys.argv[1]))
seen, refs = set(), []
for img in seed["images"]:
    plat = [p for p in img["platforms"] if p["platform"]["architecture"] == "amd64"][0]
    items = {img["digest"], plat["digest"], plat["config"]["digest"]}
    items |= {l["digest"] for l in plat["layers"]}
    if seen & items:
        continue
    seen |= items
    refs.append(img["ref"])
print(" ".join(refs))
EOF
read -r REFS <"$T_TMP/plan.txt"
NIMG=$(echo "$REFS" | wc -w)
note "images: $REFS"
if [ "$NIMG" -lt 2 ]; then
	fail runs/plan "could not pick images from the seed"
	t_done
fi
WANT_REFS=$(for r in $REFS; do echo "docker.io/$r"; done | sort | tr '\n' ' ')

# expect NAME WHY 'CONDITION': PASS if the shell condition (evaluated
# here, so it may use && and ||) holds, else FAIL with WHY.
expect() {
	if eval "$3"; then pass "$1"; else fail "$1" "$2"; fi
}

pipeline() {
	local phase=$1 ref bad=
	for ref in $REFS; do
		skopeo_copy "$CCP_HOSTPORT" "$ref" "$T_TMP/pull/$phase/${ref//[\/:]/_}" || bad="$bad $ref"
	done
	check "runs/$phase-pull" "skopeo copy failed for$bad" [ -z "$bad" ]
}

# upstream_bytes FROM: body bytes docker-registry logged for GETs of
# manifests and blobs after line FROM of its log, each URI counted once.
upstream_bytes() {
	tail -n +"$(($1 + 1))" "$T_OUT/registry-UP.log" | "$PY" -c '
import re, sys
seen, total = set(), 0
for line in sys.stdin:
    m = re.search(r"http\.request\.method=(\w+)", line)
    u = re.search(r"http\.request\.uri=\"?([^\"\s]+)", line)
    s = re.search(r"http\.response\.status=(\d+)", line)
    w = re.search(r"http\.response\.written=(\d+)", line)
    if not (m and u and s and w) or m.group(1) != "GET":
        continue
    if not ("/manifests/" in u.group(1) or "/blobs/" in u.group(1)):
        continue
    if not s.group(1).startswith("2") or u.group(1) in seen:
        continue
    seen.add(u.group(1))
    total += int(w.group(1))
print(total)'
}

# show_field NAME JQ: one value of `runs show NAME --json`.
show_field() {
	ccp runs show "$1" --server "$M" --json 2>/dev/null | jq -r "$2"
}

# --- the cold run
ccp_run begin-cold run begin cold --label commit=abc123 --label pipeline=42 --server "$M"
check runs/begin "run begin exited $CLI_RC: $(head -c 300 "$CLI_ERR")" [ "$CLI_RC" -eq 0 ]
check_eq runs/metrics/open "$(metric_now "$M" ccprewarm_runs_open)" 1 "ccprewarm_runs_open during a run"
ccp_run begin-dup run begin cold --server "$M"
expect runs/begin-duplicate "a second 'run begin cold' exited $CLI_RC: $(head -c 300 "$CLI_ERR")" \
	'[ "$CLI_RC" -ne 0 ] && grep -q "already open" "$CLI_ERR"'
UP_LINE=$(wc -l <"$T_OUT/registry-UP.log")
pipeline cold
ccp_run end-cold run end cold --server "$M"
check runs/end "run end exited $CLI_RC: $(head -c 300 "$CLI_ERR")" [ "$CLI_RC" -eq 0 ]
LOGGED=$(upstream_bytes "$UP_LINE")
note "upstream logged $LOGGED unique bytes for the cold run"

ccp runs show cold --server "$M" --json >"$T_OUT/cold.json" 2>"$T_TMP/show.err"
check_eq runs/cold/images "$(jq -r '[.images[].ref] | sort | join(" ")' "$T_OUT/cold.json") " "$WANT_REFS" "images of the cold run"
check_eq runs/cold/all-cold "$(jq -r '[.images[] | select(.state == "cold")] | length' "$T_OUT/cold.json")" "$NIMG" "images reported cold"
check_eq runs/cold/upstream-bytes "$(jq -r .total.upstream_bytes "$T_OUT/cold.json")" "$LOGGED" "total upstream bytes vs the upstream's log"
check_eq runs/cold/image-bytes "$(jq -r '[.images[].upstream_bytes] | add' "$T_OUT/cold.json")" "$LOGGED" "sum of per-image upstream bytes vs the upstream's log"
check_eq runs/cold/hits "$(jq -r .total.hits "$T_OUT/cold.json")" 0 "hits in the cold run"
check_eq runs/cold/attributed "$(jq -r .unattributed "$T_OUT/cold.json")" 0 "requests no image claimed"
check_eq runs/cold/labels "$(jq -r '.labels.commit + "," + .labels.pipeline' "$T_OUT/cold.json")" "abc123,42" "labels"
check runs/cold/times "an image lacks first request / wall time / upstream wait" \
	jq -e '[.images[] | .first_ms > 0 and .last_ms >= .first_ms and .wall_ms == .last_ms - .first_ms and .upstream_wait_ms >= 0] | all' "$T_OUT/cold.json"

# --- the warm run
ccp_run begin-warm run begin warm --label commit=def456 --server "$M"
pipeline warm
ccp_run end-warm run end warm --server "$M"
check runs/end-warm "run end exited $CLI_RC: $(head -c 300 "$CLI_ERR")" [ "$CLI_RC" -eq 0 ]
ccp runs show warm --server "$M" --json >"$T_OUT/warm.json" 2>/dev/null
check_eq runs/warm/upstream-bytes "$(jq -r .total.upstream_bytes "$T_OUT/warm.json")" 0 "upstream bytes of the warm run"
check_eq runs/warm/all-warm "$(jq -r '[.images[] | select(.state == "warm")] | length' "$T_OUT/warm.json")" "$NIMG" "images reported warm"
check_eq runs/warm/cache-bytes "$(jq -r .total.cache_bytes "$T_OUT/warm.json")" "$LOGGED" "bytes served from the cache in the warm run"

ccp_run show-text runs show cold --server "$M"
expect runs/show-text "runs show prints no table with 'cold' rows (exit $CLI_RC)" \
	'[ "$CLI_RC" -eq 0 ] && [ "$(grep -c " cold " "$CLI_OUT")" -ge "$NIMG" ]'

# --- compare
# Exit 0 means no figure got worse.  Wall-clock figures are noise on a
# loaded box (a warm run took 1.2x a cold one there), so the cold -> warm
# checks allow figures to double before calling them worse; upstream bytes
# going to 0 (-100%) is still "better", the reverse (from 0) still worse.
TH=(--threshold 99)
ccp_run cmp-drop runs compare cold warm "${TH[@]}" --server "$M"
check runs/compare/exit0 "compare cold -> warm exited $CLI_RC (want 0): $(head -c 300 "$CLI_ERR")" [ "$CLI_RC" -eq 0 ]
check runs/compare/drop "compare output does not mark upstream bytes better" grep -qE 'upstream bytes .*-100\.0% +better' "$CLI_OUT"
ccp runs compare cold warm "${TH[@]}" --server "$M" --json >"$T_OUT/compare.json" 2>/dev/null
check runs/compare/json-drop "compare --json total: want upstream $LOGGED -> 0, better" \
	jq -e --argjson b "$LOGGED" '.rows[-1].ref == null and .rows[-1].upstream_bytes.base == $b and .rows[-1].upstream_bytes.run == 0 and .rows[-1].upstream_bytes.mark == "better" and .worse == false' "$T_OUT/compare.json"
ccp_run cmp-rev runs compare warm cold --server "$M"
check runs/compare/reverse-exit1 "compare warm -> cold exited $CLI_RC (want 1)" [ "$CLI_RC" -eq 1 ]
check runs/compare/reverse-worse "reverse compare marks nothing worse" grep -q 'worse' "$CLI_OUT"
ccp_run cmp-nobase runs compare warm --server "$M"
expect runs/compare/no-baseline "compare without a baseline exited $CLI_RC (want 2)" \
	'[ "$CLI_RC" -eq 2 ] && grep -q baseline "$CLI_ERR"'
ccp_run baseline runs baseline cold --server "$M"
check runs/baseline "runs baseline exited $CLI_RC" [ "$CLI_RC" -eq 0 ]
ccp_run cmp-base runs compare warm "${TH[@]}" --server "$M"
expect runs/compare/baseline "compare against the baseline exited $CLI_RC (want 0)" \
	'[ "$CLI_RC" -eq 0 ] && grep -q "compare cold (base) -> warm" "$CLI_OUT"'

# --- HTML in headless Chromium: one bar per image, no console errors
# html_check NAME FILE BARS: load FILE, count <rect> in the DOM, screenshot.
html_check() {
	local name=$1 file=$2 bars=$3 prof dom got
	if ! command -v chromium >/dev/null; then
		skip "runs/html/$name" "chromium is not installed (tests/deps.sh test)"
		return
	fi
	expect "runs/html/$name/self-contained" "the report references external assets" \
		'[ -s "$file" ] && ! grep -qiE "(src|href)=.?(https?:)?//" "$file"'
	prof=$(mktemp -d "$T_TMP/chromium.XXXXXX")
	dom=$T_OUT/$name.dom.html
	timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$prof" --enable-logging=stderr --v=0 \
		--dump-dom "file://$file" >"$dom" 2>"$T_OUT/$name.chromium.log"
	got=$(grep -o '<rect' "$dom" | wc -l)
	check_eq "runs/html/$name/bars" "$got" "$bars" "<rect> elements in the loaded page"
	expect "runs/html/$name/console" "console errors: $(grep -iE 'CONSOLE|Uncaught' "$T_OUT/$name.chromium.log" | head -n 2)" \
		'! grep -qiE "CONSOLE\(|Uncaught" "$T_OUT/$name.chromium.log"'
	rm -rf "$prof"
	prof=$(mktemp -d "$T_TMP/chromium.XXXXXX")
	(cd "$T_OUT" && timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update \
		--disable-sync --user-data-dir="$prof" --window-size=1100,700 \
		--screenshot="$T_OUT/$name.png" "file://$file" >/dev/null 2>&1)
	expect "runs/html/$name/screenshot" "no screenshot at $T_OUT/$name.png" \
		'[ -s "$T_OUT/$name.png" ] && [ "$(head -c 4 "$T_OUT/$name.png" | tail -c 3)" = PNG ]'
	rm -rf "$prof"
}
ccp_run html-show runs show cold --html "$T_OUT/show.html" --server "$M"
check runs/html/show-exit "runs show --html exited $CLI_RC" [ "$CLI_RC" -eq 0 ]
html_check show "$T_OUT/show.html" "$NIMG"
ccp_run html-cmp runs compare cold warm "${TH[@]}" --html "$T_OUT/compare.html" --server "$M"
check runs/html/compare-exit "runs compare --html exited $CLI_RC" [ "$CLI_RC" -eq 0 ]
html_check compare "$T_OUT/compare.html" "$((2 * NIMG))"

# --- a --client filter and an overlapping unfiltered run
ONE=${REFS%% *}
ccp_run begin-filtered run begin filtered --client 192.0.2.1 --server "$M"
ccp_run begin-overlap run begin overlap --server "$M"
skopeo_copy "$CCP_HOSTPORT" "$ONE" "$T_TMP/pull/overlap" || fail runs/overlap-pull "skopeo copy $ONE failed"
ccp_run end-filtered run end filtered --server "$M"
ccp_run end-overlap run end overlap --server "$M"
ccp runs show filtered --server "$M" --json >"$T_OUT/filtered.json" 2>/dev/null
ccp runs show overlap --server "$M" --json >"$T_OUT/overlap.json" 2>/dev/null
check_eq runs/client-filter "$(jq -r '"\(.total.requests) \(.client)"' "$T_OUT/filtered.json")" "0 192.0.2.1" "requests counted by a run filtered to another client"
check_eq runs/overlap/requests "$(jq -r '"\(.nimages) \(.images[0].ref) \(.images[0].state)"' "$T_OUT/overlap.json")" "1 docker.io/$ONE warm" "the overlapping run's image"
check_eq runs/overlap/noted "$(jq -r '.overlapped | join(",")' "$T_OUT/overlap.json")" filtered "runs the record says overlapped"
ccp_run show-overlap runs show overlap --server "$M"
check runs/overlap/report "runs show does not say the runs overlapped" grep -q 'overlapped with: filtered' "$CLI_OUT"

# --- errors are one line and a non-zero exit
ccp_run end-unknown run end nosuchrun --server "$M"
expect runs/errors/end-unknown "run end of an unknown run: exit $CLI_RC, stderr $(head -c 200 "$CLI_ERR")" \
	'[ "$CLI_RC" -ne 0 ] && [ "$(nlines "$CLI_ERR")" -eq 1 ] && grep -q "no open run" "$CLI_ERR"'
ccp_run bad-name run begin 'bad/name' --server "$M"
expect runs/errors/bad-name "run begin bad/name: exit $CLI_RC" \
	'[ "$CLI_RC" -ne 0 ] && [ "$(nlines "$CLI_ERR")" -eq 1 ]'
ccp_run show-unknown runs show nosuchrun --server "$M"
expect runs/errors/show-unknown "runs show of an unknown run: exit $CLI_RC" \
	'[ "$CLI_RC" -ne 0 ] && grep -q "no such run" "$CLI_ERR"'

# --- metrics: the last finished run's totals
scrape "$M" "$T_TMP/m.txt"
check_eq runs/metrics/open-after "$(metric "$T_TMP/m.txt" ccprewarm_runs_open)" 0 "ccprewarm_runs_open"
check_eq runs/metrics/last "$(metric "$T_TMP/m.txt" 'ccprewarm_run_last_images{run="overlap"}')" 1 "last run's images gauge"
check_eq runs/metrics/last-bytes "$(metric "$T_TMP/m.txt" 'ccprewarm_run_last_bytes{run="overlap",source="upstream"}')" 0 "last run's upstream bytes gauge"
if command -v promtool >/dev/null; then
	expect runs/metrics/promtool "promtool check metrics: $(promtool check metrics <"$T_TMP/m.txt" 2>&1 | head -n 3 | tr '\n' ' ')" \
		'promtool check metrics <"$T_TMP/m.txt" >/dev/null 2>&1'
fi

# --- restart: still listed; then only the newest runs_keep (and the baseline)
if [ -n "${CCP_PID:-}" ]; then
	stop CCP 20
	check runs/restart/clean-exit "SIGTERM: exit $STOP_RC; $(asan_report "$CCP_LOG" | head -n 1)" [ "$STOP_RC" = 0 ]
	echo '{"runs_keep": 2}' >"$T_TMP/keep.json"
	restart_ccprewarm CCP "$UP_URL" --config "$T_TMP/keep.json" || t_done
	check_eq runs/restart/listed "$(ccp runs --server "$M" --json | jq -r '[.runs[].name] | sort | join(" ")')" \
		"cold filtered overlap warm" "runs listed after a restart"
	check_eq runs/restart/baseline "$(ccp runs --server "$M" --json | jq -r .baseline)" cold "baseline after a restart"
	check_eq runs/restart/metrics "$(metric_now "$M" 'ccprewarm_run_last_images{run="overlap"}')" 1 "last run's gauge after a restart"
	ccp_run list-text runs --server "$M"
	check runs/restart/list-text "runs (text) lacks the baseline mark" grep -qE '^cold .*\[baseline\]' "$CLI_OUT"
	ccp_run begin-extra run begin extra --server "$M"
	ccp_run end-extra run end extra --server "$M"
	check_eq runs/keep "$(ccp runs --server "$M" --json | jq -r '[.runs[].name] | sort | join(" ")')" \
		"cold extra overlap" "runs kept with runs_keep 2 (plus the baseline)"
fi

# --- dockerd as the client (HEAD/GET by tag, then by digest): the image is
# resolved the same way, and is warm by now
if [ -n "${CCP_PID:-}" ]; then
	start_dockerd D "$CCP_URL"
	case $? in
	0)
		ccp_run begin-docker run begin docker --client 127.0.0.1 --server "$M"
		dockercli D pull "$ONE" >>"$T_OUT/docker.log" 2>&1 || fail runs/docker/pull "docker pull $ONE failed (docker.log)"
		ccp_run end-docker run end docker --server "$M"
		ccp runs show docker --server "$M" --json >"$T_OUT/docker.json" 2>/dev/null
		check_eq runs/docker/image "$(jq -r '"\(.nimages) \(.images[0].ref) \(.images[0].state) \(.unattributed)"' "$T_OUT/docker.json")" \
			"1 docker.io/$ONE warm 0" "images, state, unattributed requests of a dockerd pull"
		check runs/docker/requests "a dockerd pull counted fewer than 3 requests" \
			jq -e '.images[0].requests >= 3 and .images[0].cache_bytes > 0' "$T_OUT/docker.json"
		;;
	2) skip runs/docker "dockerd needs root" ;;
	*) fail runs/docker "dockerd did not start (dockerd-D.log)" ;;
	esac
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail runs/still-running "ccprewarm died during the test"
fi
t_done
