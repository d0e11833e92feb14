#!/usr/bin/env bash
# test_metrics.sh: GET /metrics (issue 5).  On a fresh store, N distinct
# blobs fetched with curl (misses) and then again (hits) give exact
# counters: hits, misses, served bytes by source, bytes saved, upstream
# bytes, the store-lifetime counters and http_requests_total.  A bad path is
# counted as route="invalid",status="400".  After traffic of every kind
# (manifests, 404s, 405s, an enrolled recipe) `promtool check metrics` is
# clean and every documented family has samples.  Store-lifetime counters
# survive a restart on the same data; process counters start at 0.  Every
# response carries X-Cache.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init metrics

N=6
start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" --access-log "$T_OUT/access.log" || exit 1
M=$CCP_URL

# xcache NAME [other]: the last req has an X-Cache header (one of the
# documented values); failures are collected separately for blob/manifest
# responses and for the others (/v2/, /metrics, admin, 400, 405).
XC_BAD=
XC_BAD_OTHER=
xcache() {
	local v
	v=$(hdr X-Cache)
	case "$v" in
	HIT | MISS | COALESCED | REVALIDATED | STALE) ;;
	*)
		if [ "${2:-}" = other ]; then
			XC_BAD_OTHER="$XC_BAD_OTHER $1(status $R_CODE, X-Cache '${v}')"
		else
			XC_BAD="$XC_BAD $1(status $R_CODE, X-Cache '${v}')"
		fi
		;;
	esac
}

# -- N distinct blobs of known sizes: misses, then hits.
mapfile -t BLOBS < <(seed_q '.blobs | to_entries | sort_by(.value.size) | .[] |
	"\(.key) \(.value.size) \(.value.repo)"' | awk 'NR % 4 == 1' | head -n "$N")
if [ "${#BLOBS[@]}" -ne "$N" ]; then
	fail metrics/setup "the seed has fewer than $((4 * N)) blobs"
	t_done
fi
SUM=0
for b in "${BLOBS[@]}"; do
	read -r _ size _ <<<"$b"
	SUM=$((SUM + size))
done
note "blobs: $N, $SUM bytes in all"

round() {
	local want=$1 bad="" d size repo
	for b in "${BLOBS[@]}"; do
		read -r d size repo <<<"$b"
		req GET "$M/v2/$repo/blobs/$d"
		xcache "blob-$want"
		if [ "$R_CODE" != 200 ] || [ "$(stat -c %s "$R_BODY")" != "$size" ] ||
			[ "sha256:$(sha256_of "$R_BODY")" != "$d" ] || [ "$(hdr X-Cache)" != "$want" ]; then
			bad="$bad ${d:7:12}: $(exchange), X-Cache $(hdr X-Cache);"
		fi
	done
	if [ -z "$bad" ]; then
		pass "metrics/blobs-$want"
	else
		fail "metrics/blobs-$want" "want 200 with the seeded body and X-Cache $want:$(echo "$bad" | cut -c1-300)"
	fi
}
round MISS
round HIT

scrape "$M" "$T_TMP/m1.txt" || fail metrics/scrape "GET /metrics failed"
cp "$T_TMP/m1.txt" "$T_OUT/scrape-exact.txt"
m() { metric "$T_TMP/m1.txt" "$1"; }
check_eq metrics/exact/misses-blob "$(m 'ccprewarm_cache_misses_total{kind="blob"}')" "$N" 'cache_misses_total{kind="blob"}'
check_eq metrics/exact/hits-blob "$(m 'ccprewarm_cache_hits_total{kind="blob"}')" "$N" 'cache_hits_total{kind="blob"}'
check_eq metrics/exact/misses-manifest "$(m 'ccprewarm_cache_misses_total{kind="manifest"}')" 0 'cache_misses_total{kind="manifest"}'
check_eq metrics/exact/hits-manifest "$(m 'ccprewarm_cache_hits_total{kind="manifest"}')" 0 'cache_hits_total{kind="manifest"}'
check_eq metrics/exact/served-upstream "$(m 'ccprewarm_served_bytes_total{source="upstream"}')" "$SUM" 'served_bytes_total{source="upstream"}'
check_eq metrics/exact/served-cache "$(m 'ccprewarm_served_bytes_total{source="cache"}')" "$SUM" 'served_bytes_total{source="cache"}'
check_eq metrics/exact/bytes-saved "$(m ccprewarm_bytes_saved_total)" "$SUM" bytes_saved_total
check_eq metrics/exact/upstream-bytes "$(m ccprewarm_upstream_bytes_total)" "$SUM" upstream_bytes_total
check_eq metrics/exact/coalesced "$(m ccprewarm_coalesced_requests_total)" 0 coalesced_requests_total
check_eq metrics/exact/store-blobs "$(m ccprewarm_store_blobs)" "$N" store_blobs
check_eq metrics/exact/store-bytes "$(m ccprewarm_store_bytes)" "$SUM" store_bytes
check_eq metrics/exact/store-hits "$(m ccprewarm_store_hits_total)" "$N" store_hits_total
check_eq metrics/exact/store-misses "$(m ccprewarm_store_misses_total)" "$N" store_misses_total
check_eq metrics/exact/store-served "$(m ccprewarm_store_served_bytes_total)" $((2 * SUM)) store_served_bytes_total
check_eq metrics/exact/store-saved "$(m ccprewarm_store_bytes_saved_total)" "$SUM" store_bytes_saved_total
check_eq metrics/exact/store-upstream "$(m ccprewarm_store_upstream_bytes_total)" "$SUM" store_upstream_bytes_total
check_eq metrics/exact/http-blob-200 "$(m 'ccprewarm_http_requests_total{route="blob",status="200"}')" $((2 * N)) 'http_requests_total{route="blob",status="200"}'
check_eq metrics/exact/upstream-requests "$(m "ccprewarm_upstream_requests_total{upstream=\"docker.io\",code=\"200\"}")" "$N" 'upstream_requests_total{upstream="docker.io",code="200"}'
check_eq metrics/exact/upstream-duration-count "$(m 'ccprewarm_upstream_request_duration_seconds_count{upstream="docker.io"}')" "$N" 'upstream_request_duration_seconds_count{upstream="docker.io"}'
check_eq metrics/exact/inflight "$(m ccprewarm_inflight_fetches)" 0 inflight_fetches

# -- a bad request is counted under route="invalid".
req GET "$M/v2/Not_A..Name/blobs/sha256:xyz"
xcache invalid-path other
if [ "$R_CODE" = 400 ]; then
	pass metrics/invalid-400
else
	fail metrics/invalid-400 "GET /v2/Not_A..Name/blobs/sha256:xyz: want 400; $(exchange)"
fi
check_eq metrics/invalid-counted \
	"$(metric_now "$M" 'ccprewarm_http_requests_total{route="invalid",status="400"}')" 1 \
	'http_requests_total{route="invalid",status="400"} after one bad request'

# -- traffic of every other kind, each response checked for X-Cache.
img=$(seed_q '.images[] | select(.kind == "index") | .ref' | head -n 1)
repo=${img%:*}
tag=${img##*:}
acc='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
req GET "$M/v2/$repo/manifests/$tag" -H "$acc"
xcache manifest-tag-miss
req GET "$M/v2/$repo/manifests/$tag" -H "$acc"
xcache manifest-tag-hit
req HEAD "$M/v2/$repo/manifests/$tag" -H "$acc"
xcache manifest-head
d=$(seed_q --arg r "$img" '.images[] | select(.ref == $r) | .platforms[0].digest')
req GET "$M/v2/$repo/manifests/$d" -H "$acc"
xcache manifest-digest
read -r d0 _ r0 <<<"${BLOBS[0]}"
req HEAD "$M/v2/$r0/blobs/$d0"
xcache blob-head
req GET "$M/v2/$r0/blobs/$d0" -H 'Range: bytes=0-9'
xcache blob-range
req GET "$M/v2/$repo/blobs/sha256:$(printf '%064d' 0)"
xcache blob-404
req GET "$M/v2/$repo/manifests/no-such-tag" -H "$acc"
xcache manifest-404
req GET "$M/v2/$repo/tags/list"
xcache tags-list other
req POST "$M/v2/$repo/blobs/uploads/"
xcache upload-405 other
req DELETE "$M/v2/$repo/manifests/$d"
xcache delete-405 other
req GET "$M/v2/"
xcache base other
req GET "$M/metrics"
xcache metrics other
req GET "$M/_ccprewarm/v1/stats"
xcache admin-stats other
req GET "$M/nothing-here"
xcache not-v2 other
if [ -z "$XC_BAD" ]; then
	pass metrics/x-cache-content
else
	fail metrics/x-cache-content "blob/manifest replies without X-Cache:$(echo "$XC_BAD" | cut -c1-600)"
fi
if [ -z "$XC_BAD_OTHER" ]; then
	pass metrics/x-cache-every-response
else
	fail metrics/x-cache-every-response "README: every reply carries X-Cache; these did not:$(echo "$XC_BAD_OTHER" | cut -c1-600)"
fi

# Upstream 404s (the unknown blob and tag above) are answers, not failed
# attempts: README counts "connection, body, 5xx" in upstream_errors_total.
check_eq metrics/upstream-errors-404 "$(metric_now "$M" ccprewarm_upstream_errors_total)" 0 \
	'upstream_errors_total after two upstream 404s and no failure'
check_eq metrics/upstream-404-counted \
	"$(metric_now "$M" 'ccprewarm_upstream_requests_total{upstream="docker.io",code="404"}')" 2 \
	'upstream_requests_total{code="404"} after two upstream 404s'

# A tiny recipe (one seeded image) so that the pre-warm families have
# samples too.
mkdir -p "$T_TMP/recipes/tiny"
printf 'version: "3.8"\nservices:\n  app:\n    image: %s\n' "$img" >"$T_TMP/recipes/tiny/compose.yml"
echo 'TYPE=tiny' >"$T_TMP/recipes/tiny/.env.sample"
ccp_run enroll-tiny enroll tiny --recipes-dir "$T_TMP/recipes" --server "$M" --json
if [ "$CLI_RC" -ne 0 ]; then
	fail metrics/enroll-tiny "enroll of a one-image recipe exited $CLI_RC: $(head -c 300 "$CLI_ERR" "$CLI_OUT" | tr '\n' ' ')"
fi

# -- promtool on a scrape with every family populated.
scrape "$M" "$T_TMP/m2.txt"
cp "$T_TMP/m2.txt" "$T_OUT/scrape-full.txt"
if promtool check metrics <"$T_TMP/m2.txt" >"$T_TMP/promtool.out" 2>&1; then
	pass metrics/promtool
else
	fail metrics/promtool "promtool check metrics: $(head -n 5 "$T_TMP/promtool.out" | tr '\n' ' ' | cut -c1-400)"
fi
cp "$T_TMP/promtool.out" "$T_OUT/promtool.log"

# Every family of the README's table has at least one sample
# (ratelimit_remaining only exists for an upstream that sends Docker Hub's
# headers, which docker-registry does not).
empty=
for fam in ccprewarm_cache_hits_total ccprewarm_cache_misses_total \
	ccprewarm_coalesced_requests_total ccprewarm_served_bytes_total \
	ccprewarm_bytes_saved_total ccprewarm_upstream_bytes_total \
	ccprewarm_upstream_requests_total ccprewarm_upstream_request_duration_seconds \
	ccprewarm_upstream_up ccprewarm_upstream_errors_total \
	ccprewarm_inflight_fetches ccprewarm_inflight_requests \
	ccprewarm_digest_mismatches_total ccprewarm_store_blobs ccprewarm_store_bytes \
	ccprewarm_store_hits_total ccprewarm_store_misses_total \
	ccprewarm_store_served_bytes_total ccprewarm_store_bytes_saved_total \
	ccprewarm_store_upstream_bytes_total ccprewarm_http_requests_total \
	ccprewarm_http_request_duration_seconds ccprewarm_recipe_images \
	ccprewarm_pinned_bytes ccprewarm_build_info; do
	if ! grep -qE "^${fam}(_bucket|_sum|_count)?(\{| )" "$T_TMP/m2.txt"; then
		empty="$empty $fam"
	fi
done
if [ -z "$empty" ]; then
	pass metrics/families
else
	fail metrics/families "families without a sample:$empty"
fi

# -- store-lifetime counters survive a restart; process counters do not.
sleep 0.2
scrape "$M" "$T_TMP/m3.txt"
declare -A BEFORE
for c in hits misses served_bytes bytes_saved upstream_bytes; do
	BEFORE[$c]=$(metric "$T_TMP/m3.txt" "ccprewarm_store_${c}_total")
done
if [ -n "${CCP_PID:-}" ]; then
	stop CCP 20
	if [ "$STOP_RC" = 0 ]; then
		pass metrics/sigterm-exit
	else
		fail metrics/sigterm-exit "SIGTERM: exit status $STOP_RC (killed: $STOP_KILLED); $(asan_report "$CCP_LOG" | head -n 1)"
	fi
	restart_ccprewarm CCP "$UP_URL" --access-log "$T_OUT/access.log" || t_done
	scrape "$M" "$T_TMP/m4.txt"
	bad=
	for c in hits misses served_bytes bytes_saved upstream_bytes; do
		got=$(metric "$T_TMP/m4.txt" "ccprewarm_store_${c}_total")
		[ -n "$got" ] && [ "$got" = "${BEFORE[$c]}" ] || bad="$bad store_${c}_total ${BEFORE[$c]} -> '$got';"
	done
	if [ -z "$bad" ] && [ "${BEFORE[hits]:-0}" -gt 0 ]; then
		pass metrics/restart/store-counters-kept
	else
		fail metrics/restart/store-counters-kept "after a restart on the same data:$bad (hits before: '${BEFORE[hits]}')"
	fi
	bad=
	for s in 'ccprewarm_cache_hits_total{kind="blob"}' 'ccprewarm_cache_hits_total{kind="manifest"}' \
		'ccprewarm_cache_misses_total{kind="blob"}' 'ccprewarm_cache_misses_total{kind="manifest"}' \
		'ccprewarm_served_bytes_total{source="cache"}' 'ccprewarm_served_bytes_total{source="upstream"}' \
		ccprewarm_bytes_saved_total ccprewarm_upstream_bytes_total ccprewarm_coalesced_requests_total; do
		got=$(metric "$T_TMP/m4.txt" "$s")
		[ "$got" = 0 ] || bad="$bad $s='$got'"
	done
	if grep -q '^ccprewarm_http_requests_total{route="blob"' "$T_TMP/m4.txt"; then
		bad="$bad http_requests_total{route=\"blob\"} still has samples"
	fi
	if [ -z "$bad" ]; then
		pass metrics/restart/process-counters-zero
	else
		fail metrics/restart/process-counters-zero "after a restart:$bad"
	fi
	# One more hit after the restart moves the store counter by exactly 1.
	read -r d0 _ r0 <<<"${BLOBS[0]}"
	req GET "$M/v2/$r0/blobs/$d0"
	check_eq metrics/restart/store-hits-continue \
		"$(metric_now "$M" ccprewarm_store_hits_total)" $((BEFORE[hits] + 1)) \
		'store_hits_total after one more hit'
else
	skip metrics/restart "using an external ccprewarm (CCPREWARM_URL)"
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail metrics/still-running "ccprewarm died during the test"
fi
t_done
