#!/usr/bin/env bash
# test_enroll_resume.sh: a pre-warm job survives kill -9 (issue 6).  The
# upstream sits behind tests/tools/faultproxy.py in "slow" mode (blob bodies
# at RATE KiB/s each), so the job advances a few blobs at a time.  Once
# some blobs of the closure are stored but not all, the daemon is killed
# with SIGKILL (blobs in flight, half written) and started again on the same
# data, the proxy at full speed: the job resumes by itself (no enroll
# call), completes and is pinned; no blob stored before the kill is asked
# upstream again (per-digest GET counts at the proxy; blobs in flight get a
# second GET: the count is reported), and the half-fetched ones are
# continued from their partial files (tmp/partial-<hex>) with Range, not
# downloaded again: after the restart ccprewarm receives exactly the bytes
# that were still missing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init enroll_resume

RECIPE=resume-app
RATE=160
mkdir -p "$T_TMP/recipes"
cp -r "$TOP/tests/data/recipes-it/$RECIPE" "$T_TMP/recipes/"

start_registry UP || exit 1
# The references of tests/data/recipes-it/resume-app/compose.yml.
seed_recipe "$T_OUT/seed.json" --layers 4 --size-kb 12288 \
	--image ccp-it/resume-api:1.0.0 --image ccp-it/resume-web:1.0.0 \
	--image ccp-it/resume-worker:1.0.0 --registry "docker.io=$UP_URL" || exit 1
# Blobs (configs and layers) of the amd64 closure, and every digest.
mapfile -t CBLOBS < <(seed_q '. as $s | .amd64_closure | keys[] | select($s.blobs[.] != null)')
NBLOBS=${#CBLOBS[@]}
NCLOSURE=$(seed_q '.amd64_closure | length')
CLOSURE_BYTES=$(seed_q '[.amd64_closure[]] | add')
note "closure: $NCLOSURE digests, $NBLOBS of them blobs, $CLOSURE_BYTES bytes"
if [ "$NBLOBS" -lt 8 ]; then
	fail enroll_resume/setup "the seeded closure has only $NBLOBS blobs"
	t_done
fi

start_proxy P "$UP_URL" slow --rate "$RATE" || exit 1
ccp_config "$T_TMP/ccp.json" linux/amd64
start_ccprewarm CCP "$P_URL" --config "$T_TMP/ccp.json" || exit 1
M=$CCP_URL

if [ -z "${CCP_PID:-}" ]; then
	skip enroll_resume/all "needs to kill and restart the daemon (not with CCPREWARM_URL)"
	exit 0
fi

# stored_blobs: the closure's blobs now in DATA/blobs, one per line.
stored_blobs() {
	local d
	for d in "${CBLOBS[@]}"; do
		[ -e "$(store_path "$CCP_DATA" "$d")" ] && echo "$d"
	done
}

ccp_run enroll enroll "$RECIPE" --recipes-dir "$T_TMP/recipes" --server "$M" --no-wait --json
st=$(jq -r .state "$CLI_OUT" 2>/dev/null)
if [ "$CLI_RC" -eq 0 ] && [ "$st" = running ]; then
	pass enroll_resume/enroll-no-wait
else
	fail enroll_resume/enroll-no-wait "enroll --no-wait: exit $CLI_RC, state '$st': $(head -c 300 "$CLI_ERR")"
fi

# Wait until a third of the blobs are stored (bounded), then SIGKILL.
want=$((NBLOBS / 3))
end=$((SECONDS + 60))
n=0
while [ $SECONDS -lt $end ]; do
	n=$(stored_blobs | wc -l)
	[ "$n" -ge "$want" ] && break
	sleep 0.1
done
stop CCP 5 KILL
stored_blobs >"$T_TMP/before-kill.txt"
nbefore=$(nlines "$T_TMP/before-kill.txt")
# Every closure digest (manifests too) already stored, and the partial
# files the killed daemon left: "size digest".
for d in $(seed_q '.amd64_closure | keys[]'); do
	[ -e "$(store_path "$CCP_DATA" "$d")" ] && echo "$d"
done >"$T_TMP/stored-all.txt"
for f in "$CCP_DATA"/tmp/partial-*; do
	[ -f "$f" ] || continue
	h=${f##*/partial-}
	grep -qx "sha256:$h" "$T_TMP/stored-all.txt" && continue
	echo "$(stat -c %s "$f") sha256:$h"
done >"$T_TMP/partials.txt"
cp "$T_TMP/partials.txt" "$T_OUT/partials-at-kill.txt"
npartial=$(awk '$1 > 0' "$T_TMP/partials.txt" | wc -l)
note "SIGKILL with $nbefore of $NBLOBS blobs stored, $npartial partly written"
if [ "$nbefore" -gt 0 ] && [ "$nbefore" -lt "$NBLOBS" ]; then
	pass enroll_resume/killed-mid-job
else
	fail enroll_resume/killed-mid-job "at the kill $nbefore of $NBLOBS blobs were stored (want some, not all)"
	t_done
fi
if [ "$npartial" -gt 0 ]; then
	pass enroll_resume/partials-kept
else
	fail enroll_resume/partials-kept "no non-empty tmp/partial-<hex> of an unstored closure blob after the kill (design: per-digest partial files survive a restart): $(ls -l "$CCP_DATA/tmp" 2>&1 | tail -n +2 | head -n 5 | tr '\n' '|')"
fi
# What the restarted daemon still has to receive: every closure digest not
# stored, less what its partial file holds.
REMAINING=$("$PY" - "$SEED_JSON" "$T_TMP/stored-all.txt" "$T_TMP/partials.txt" <<'EOF2'
import json, sys
closure = json.load(open(sys.argv[1]))["amd64_closure"]
stored = set(open(sys.argv[2]).read().split())
part = {}
for line in open(sys.argv[3]):
    n, d = line.split()
    part[d] = int(n)
print(sum(size - min(part.get(d, 0), size)
          for d, size in closure.items() if d not in stored))
EOF2
)
ranged0=$(proxy_stats P | jq -r .ranged)

# Same data, same port, upstream at full speed; no enroll call.
proxy_mode P pass
restart_ccprewarm CCP "$P_URL" --config "$T_TMP/ccp.json" || t_done
st=$(wait_recipe "$M" "$RECIPE" 60)
if [ "$st" = warm ]; then
	pass enroll_resume/resumed-warm
else
	fail enroll_resume/resumed-warm "after the restart the job is '$st' (want warm within 60s): $(recipe_json "$M" "$RECIPE" | head -c 400)"
fi
if grep -q "pre-warm '$RECIPE': resuming an interrupted job" "$CCP_LOG"; then
	pass enroll_resume/resume-logged
else
	fail enroll_resume/resume-logged "no \"resuming an interrupted job\" line in ccprewarm-CCP.log"
fi

# Complete, verified, pinned.
missing=
for d in $(seed_q '.amd64_closure | keys[]'); do
	store_has "$CCP_DATA" "$d" || missing="$missing ${d:7:12}"
done
if [ -z "$missing" ]; then
	pass enroll_resume/store-complete
else
	fail enroll_resume/store-complete "missing or corrupt after the resumed job:$missing"
fi
check_eq enroll_resume/pinned-bytes "$(metric_now "$M" ccprewarm_pinned_bytes)" "$CLOSURE_BYTES" \
	"ccprewarm_pinned_bytes vs the closure's bytes"
left=$(find "$CCP_DATA/tmp" -type f 2>/dev/null | wc -l)
check_eq enroll_resume/tmp-empty "$left" 0 "files left in DATA/tmp once the job is warm"

# The half-fetched blobs were continued, not fetched again: exactly the
# missing bytes came from upstream after the restart, each partial was
# resumed from its size, with a Range request.
check_eq enroll_resume/only-missing-bytes "$(metric_now "$M" ccprewarm_upstream_bytes_total)" "$REMAINING" \
	"upstream_bytes_total after the restart vs the closure's bytes neither stored nor in a partial file"
bad=
while read -r n d; do
	[ "$n" -gt 0 ] || continue
	grep -qF "resuming '$d' from byte $n" "$CCP_LOG" || bad="$bad ${d:7:12}@$n"
done <"$T_TMP/partials.txt"
if [ -z "$bad" ]; then
	pass enroll_resume/partials-resumed
else
	fail enroll_resume/partials-resumed "no \"resuming '<digest>' from byte <partial size>\" log line for:$bad"
fi
ranged=$(($(proxy_stats P | jq -r .ranged) - ranged0))
if [ "$ranged" -ge "$npartial" ]; then
	pass enroll_resume/partials-ranged
else
	fail enroll_resume/partials-ranged "$ranged Range requests upstream after the restart for $npartial partial blobs"
fi

# Per-digest blob GETs at the proxy over both runs.
proxy_digest_gets P >"$T_TMP/gets.txt"
cp "$T_TMP/gets.txt" "$T_OUT/gets-per-digest.txt"
again=
twice=0
never=
over=
for d in "${CBLOBS[@]}"; do
	n=$(awk -v d="$d" '$2 == d { print $1 }' "$T_TMP/gets.txt")
	n=${n:-0}
	if grep -qx "$d" "$T_TMP/before-kill.txt"; then
		[ "$n" -eq 1 ] || again="$again ${d:7:12}x$n"
	elif [ "$n" -eq 0 ]; then
		never="$never ${d:7:12}"
	elif [ "$n" -eq 2 ]; then
		twice=$((twice + 1))
	elif [ "$n" -gt 2 ]; then
		over="$over ${d:7:12}x$n"
	fi
done
if [ -z "$again" ]; then
	pass enroll_resume/stored-not-refetched
else
	fail enroll_resume/stored-not-refetched "blobs stored before the kill were GET again (digest x GETs):$again"
fi
if [ -z "$never$over" ]; then
	pass enroll_resume/others-fetched
	note "blobs in flight at the kill and asked upstream again (Range): $twice"
else
	fail enroll_resume/others-fetched "blobs never fetched:${never:- none}; fetched more than twice:${over:- none}"
fi
ccp_run status status "$RECIPE" --server "$M" --json
check_eq enroll_resume/status "$CLI_RC $(jq -r '"\(.state) \(.images_done)/\(.images_total) \(.digests)"' "$CLI_OUT" 2>/dev/null)" \
	"0 warm 3/3 $NCLOSURE" "status --json after the resume: exit, state, images, digests"

if [ -n "$(asan_report "$CCP_LOG")" ]; then
	fail enroll_resume/sanitizer "$(asan_report "$CCP_LOG" | head -n 2 | tr '\n' ' ')"
fi
if ! alive CCP; then
	fail enroll_resume/still-running "ccprewarm died during the test"
fi
t_done
