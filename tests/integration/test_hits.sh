#!/usr/bin/env bash
# test_hits.sh: the hit path's memory (issue 13).  Manifests served from the
# in-memory cache carry exactly the headers and bytes of the on-disk path
# (GET, HEAD, Range; by tag and by digest); a tag moved upstream is served
# by its new digest once the freshness window has passed; a manifest the
# store evicts is not served from memory afterwards.  The access log is
# buffered (the default): no line is lost or torn under concurrent load,
# and every line is written by a clean exit (SIGTERM).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init hits

start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 2 || exit 1
MIB=1048576
FRESH=2

# An image manifest (not an index) to move later: its tag and digest.
REF=$(seed_q '[.images[] | select(.kind != "index")][0].ref')
REPO=${REF%:*}
TAG=${REF##*:}
MT=$(seed_q --arg r "$REF" '.images[] | select(.ref == $r) | .mediaType')
DIG=$(seed_q --arg r "$REF" '.images[] | select(.ref == $r) | .digest')
# What docker sends: indexes too, so the tag's mapping is recorded.
ACC="$MT, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
note "image $REF ($MT) $DIG"

# The buffered access log (the default) on stderr; a second mirror with
# no manifest cache gives the on-disk path's answers to compare with.
echo '{"manifest_cache_bytes": 0}' >"$T_TMP/nocache.json"
CCP_ACCESS_LOG_BUFFER=64K start_ccprewarm CCP "$UP_URL" --tag-freshness 60 || exit 1
start_ccprewarm DISK "$UP_URL" --tag-freshness 60 --config "$T_TMP/nocache.json" || exit 1

# ------------------------------------------------ same headers, same bytes
# summary URL METHOD [CURL ARGS]: status, the headers a client relies on,
# the body's digest.
summary() {
	local url=$1 method=$2
	shift 2
	req "$method" "$url" "$@"
	printf '%s|%s|%s|%s|%s|%s|%s|%s|%s' "$R_CODE" "$(hdr Content-Type)" \
		"$(hdr Docker-Content-Digest)" "$(hdr Content-Length)" "$(hdr ETag)" \
		"$(hdr Content-Range)" "$(hdr Accept-Ranges)" "$(hdr X-Cache)" \
		"$(sha256_of "$R_BODY")"
}

for p in "$CCP_URL" "$DISK_URL"; do # fill both, then hits
	req GET "$p/v2/$REPO/manifests/$TAG" -H "Accept: $ACC"
done
for case in "GET tag" "HEAD tag" "GET digest" "HEAD digest" "RANGE digest" "RANGE tag"; do
	set -- $case
	ref=$TAG
	[ "$2" = digest ] && ref=$DIG
	method=$1
	extra=(-H "Accept: $ACC")
	[ "$1" = RANGE ] && method=GET && extra+=(-H "Range: bytes=10-99")
	ram=$(summary "$CCP_URL/v2/$REPO/manifests/$ref" "$method" "${extra[@]}")
	disk=$(summary "$DISK_URL/v2/$REPO/manifests/$ref" "$method" "${extra[@]}")
	check_eq "hits/same-reply/$1-$2" "$ram" "$disk" "memory vs on-disk path (status|type|digest|length|etag|range|accept-ranges|x-cache|body)"
done
case "$ram" in
206\|*\|HIT\|*) pass hits/range-is-partial-hit ;;
*) fail hits/range-is-partial-hit "want a 206 HIT; got $ram" ;;
esac
hits=$(metric_now "$CCP_URL" ccprewarm_manifest_cache_hits_total)
check hits/metric-hits "ccprewarm_manifest_cache_hits_total is '$hits' after 6 memory hits, want >= 6" \
	[ "${hits:-0}" -ge 6 ]
mb=$(metric_now "$CCP_URL" ccprewarm_manifest_cache_bytes)
check hits/metric-bytes "ccprewarm_manifest_cache_bytes is '$mb', want > 0" [ "${mb:-0}" -gt 0 ]
off=$(metric_now "$DISK_URL" ccprewarm_manifest_cache_hits_total)
check_eq hits/metric-off "${off:-absent}" absent "the cache's metrics with manifest_cache_bytes 0"
stop DISK 10

# ------------------------------------------------ buffered access log
# 400 requests from 8 clients: every one has its line, whole, once the
# daemon stops cleanly (most are still in the buffer when SIGTERM comes).
mark=$(access_log CCP | wc -l)
loops=()
for c in $(seq 8); do
	(for i in $(seq 50); do
		curl -s -m 10 -o /dev/null -H "Accept: $ACC" "$CCP_URL/v2/$REPO/manifests/$TAG?c=$c&i=$i"
	done) &
	loops+=($!)
done
wait "${loops[@]}" # not a bare wait: the daemons are this shell's children too
before=$(access_log CCP | wc -l)
note "access lines visible before the stop: $((before - mark)) of 400"
stop CCP 15
check_eq hits/alog-clean-exit "$STOP_RC" 0 "ccprewarm's exit status after SIGTERM"
total=$(grep -c '^{"time"' "$CCP_LOG")
got=$(access_log CCP | jq -r 'select(.path | test("[?]c=[0-9]+&i=")) | .path' | sort -u | wc -l)
check_eq hits/alog-all-lines "$got" 400 "distinct access lines of the 400 requests after a clean exit"
torn=$(grep '"method":' "$CCP_LOG" | grep -vc '^{"time".*}$')
parsed=$(access_log CCP | wc -l)
check_eq hits/alog-no-torn "$torn/$((total - parsed))" "0/0" "access lines torn (not one whole {...} line) / not JSON"

# ------------------------------------------------ a tag moves upstream
restart_ccprewarm CCP "$UP_URL" --tag-freshness "$FRESH" || exit 1
M=$CCP_URL
req GET "$M/v2/$REPO/manifests/$TAG" -H "Accept: $ACC"
req GET "$M/v2/$REPO/manifests/$TAG" -H "Accept: $ACC"
check_eq hits/tag-hit "$(hdr X-Cache) $(hdr Docker-Content-Digest)" "HIT $DIG" "a fresh tag's second GET"
# The same manifest with an annotation: a new digest, the same blobs.
curl -sf -H "Accept: $MT" "$UP_URL/v2/$REPO/manifests/$DIG" |
	jq -c '.annotations = {"test.hits": "moved"}' | tr -d '\n' >"$T_TMP/moved.json"
NEW=sha256:$(sha256_of "$T_TMP/moved.json")
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $MT" \
	--data-binary "@$T_TMP/moved.json" "$UP_URL/v2/$REPO/manifests/$TAG")
check_eq hits/tag-moved-upstream "$code" 201 "PUT of the moved tag to the upstream"
sleep $((FRESH + 1))
req GET "$M/v2/$REPO/manifests/$TAG" -H "Accept: $ACC"
check_eq hits/tag-new-digest "$(hdr Docker-Content-Digest) sha256:$(sha256_of "$R_BODY")" "$NEW $NEW" \
	"the moved tag after its freshness window ($(hdr X-Cache))"
req GET "$M/v2/$REPO/manifests/$TAG" -H "Accept: $ACC"
check_eq hits/tag-new-digest-hit "$(hdr X-Cache) $(hdr Docker-Content-Digest) sha256:$(sha256_of "$R_BODY")" \
	"HIT $NEW $NEW" "the moved tag's next GET"
stop CCP 10

# ------------------------------------------------ eviction
# A budget of 3 MiB: the manifest is read first, then 1 MiB blobs push it
# out as the least recently used.  Afterwards it is fetched again (MISS),
# not answered from memory.
declare -A B
for n in A1 A2 A3 A4; do
	make_blob "$T_TMP/$n" $MIB
	B[$n]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/$n") || { fail hits/push "cannot push $n"; t_done; }
done
echo "{\"max_bytes\": $((3 * MIB)), \"low_water_percent\": 50}" >"$T_TMP/budget.json"
restart_ccprewarm CCP "$UP_URL" --tag-freshness 60 --config "$T_TMP/budget.json" || exit 1
M=$CCP_URL
req GET "$M/v2/$REPO/manifests/$NEW" -H "Accept: $ACC"
req GET "$M/v2/$REPO/manifests/$NEW" -H "Accept: $ACC"
check_eq hits/evict-cached "$(hdr X-Cache)" HIT "the manifest's second GET before eviction"
sleep 1.1 # access times are in seconds: the manifest is the oldest
for n in A1 A2 A3 A4; do
	curl -s -o /dev/null "$M/v2/plain/blobs/blobs/${B[$n]}"
done
gone() { [ ! -e "$(store_path "$CCP_DATA" "$NEW")" ]; }
if wait_until 30 gone; then
	pass hits/evict-file-gone
	req GET "$M/v2/$REPO/manifests/$NEW" -H "Accept: $ACC"
	check_eq hits/evict-not-from-memory "$(hdr X-Cache) sha256:$(sha256_of "$R_BODY")" "MISS $NEW" \
		"an evicted manifest's next GET by digest (fetched again, not from memory)"
else
	fail hits/evict-file-gone "the manifest's file is still in the store after 30 s over a 3 MiB budget (evictions: $(metric_now "$M" ccprewarm_store_evictions_total))"
fi
stop CCP 10
t_done
