#!/usr/bin/env bash
# test_breaker.sh: the per-upstream circuit breaker (issue 4).  Images are
# pulled through the mirror from a working upstream (tag freshness 0: every
# tag pull would ask upstream); then the upstream's address becomes a black
# hole (TCP connects time out, connect_timeout_ms is 1000).  The first
# request may cost one connect timeout; after that cached images pull in
# under a second each (tags STALE, nothing asked), an uncached name fails at
# once with 503 UNAVAILABLE, and ccprewarm_upstream_up is 0.  When the
# upstream is back, a probe closes the breaker and pulls work again.
#
# The upstream address 127.0.0.1:P is first a faultproxy (pass) in front of
# docker-registry, then a listener whose accept queue is full (lib_net.sh
# start_synhole: SYNs are dropped, as for a dead host or a dropping
# firewall), then the faultproxy again.  (blackhole.py would not do: it
# accepts, so the connection succeeds and only the 30 s low-speed timeout
# ends the request: a hung server, not an unreachable one.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init breaker

CONNECT_MS=1000
start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 4 || exit 1
P=$(free_port FWD)
CCP_PORT_FWD=$P start_proxy FWD "$UP_URL" pass || exit 1
echo "{\"connect_timeout_ms\": $CONNECT_MS}" >"$T_TMP/ccp.json"
start_ccprewarm CCP "http://127.0.0.1:$P" --tag-freshness 0 --config "$T_TMP/ccp.json" || exit 1
M=$CCP_URL
UPG='ccprewarm_upstream_up{upstream="docker.io"}'

# alias tag never pulled: uncached while the upstream is away
UNCACHED_REF=library/alpine:3
pull_all "$CCP_HOSTPORT" breaker/warm
g=$(metric "$M" "$UPG")
check breaker/up-gauge-1 "$UPG is '$g' with the upstream up, want 1" [ "$g" = 1 ]

# ------------------------------------------------------------ black hole
stop FWD 10
if ! start_synhole HOLE "$P"; then
	fail breaker/blackhole "127.0.0.1:$P does not time out connects: the test would test nothing"
	t_done
fi
note "upstream 127.0.0.1:$P is now a black hole"
mark=$(access_log CCP | wc -l)

# pull_timed NAME REF MAXSECS: skopeo copy through the mirror, verified,
# within MAXSECS of wall time.
pull_timed() {
	local name=$1 ref=$2 max=$3 kind dest extra=() t0 secs why
	kind=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .kind')
	[ "$kind" = index ] && extra=(--all)
	dest=$T_TMP/pull/$name
	t0=$EPOCHREALTIME
	if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest" "${extra[@]}"; then
		fail "$name" "skopeo copy failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
		return
	fi
	secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
	PULL_SECS=$secs
	if ! why=$(verify_dir "$dest" "$ref" "${extra[@]}"); then
		fail "$name" "$why"
	elif ! secs_lt "$secs" "$max"; then
		fail "$name" "took ${secs}s, want < ${max}s"
	else
		pass "$name"
		note "$name: ${secs}s"
	fi
}
first=$(seed_refs | head -n 1)
pull_timed breaker/down/first-pull "$first" 5
note "first pull after the upstream went away: ${PULL_SECS}s (may include one ${CONNECT_MS} ms connect timeout)"
g=$(metric "$M" "$UPG")
check breaker/down/up-gauge-0 "$UPG is '$g' after a connect timeout, want 0" [ "$g" = 0 ]
mark2=$(access_log CCP | wc -l)
for ref in $(seed_refs); do
	pull_timed "breaker/down/cached/$ref" "$ref" 1
done
# The mirror's side of it: every request of those pulls answered at once,
# tags from the cache marked STALE.
slow=$(access_log CCP | tail -n +$((mark2 + 1)) | jq -r "select(.duration_ms >= $CONNECT_MS) | \"\(.path) \(.duration_ms)ms\"" | head -3)
check breaker/down/no-request-waits "requests that took a connect timeout or more: $slow" [ -z "$slow" ]
tags=$(access_log CCP | tail -n +$((mark2 + 1)) | jq -r 'select(.path | test("/manifests/sha256:") | not) | select(.path | test("/manifests/")) | .cache' | sort | uniq -c | tr '\n' ' ')
nonstale=$(access_log CCP | tail -n +$((mark2 + 1)) | jq -r 'select(.path | test("/manifests/sha256:") | not) | select(.path | test("/manifests/")) | select(.cache != "STALE") | "\(.path) \(.cache)"' | head -3)
check breaker/down/tags-stale "tag requests not STALE: $nonstale (all tag requests: $tags)" [ -z "$nonstale" ]

# Uncached: fail fast, 503 UNAVAILABLE.
fast_fail() {	# fast_fail NAME URL
	REQ_TIMEOUT=20 req GET "$2"
	if [ "$R_CODE" = 503 ] && [ "$(oci_error_code)" = UNAVAILABLE ] && secs_lt "$R_TIME" 0.5; then
		pass "$1"
		note "$1: 503 UNAVAILABLE in ${R_TIME}s"
	else
		fail "$1" "want 503 UNAVAILABLE well under the ${CONNECT_MS} ms connect timeout (< 0.5 s); ${R_TIME}s, $(exchange)"
	fi
}
fast_fail breaker/down/uncached-tag "$M/v2/${UNCACHED_REF%:*}/manifests/${UNCACHED_REF##*:}"
fast_fail breaker/down/uncached-repo "$M/v2/test/never-pulled/manifests/v1"
fast_fail breaker/down/uncached-blob "$M/v2/test/single-oci/blobs/sha256:$(printf '%064d' 7)"
fast_fail breaker/down/uncached-tag-again "$M/v2/${UNCACHED_REF%:*}/manifests/${UNCACHED_REF##*:}"
g=$(metric "$M" "$UPG")
check breaker/down/up-gauge-still-0 "$UPG is '$g' while the upstream is away, want 0" [ "$g" = 0 ]
grep -E "unreachable|circuit" "$CCP_LOG" | head -3 | while read -r l; do note "log: $l"; done

# ------------------------------------------------------------ back
stop HOLE 10
CCP_PORT_FWD2=$P start_proxy FWD2 "$UP_URL" pass || exit 1
t0=$SECONDS
gauge_up() { [ "$(metric "$M" "$UPG")" = 1 ]; }
if wait_until 40 gauge_up; then
	pass breaker/back/up-gauge-1
	note "breaker closed $((SECONDS - t0)) s after the upstream came back"
else
	fail breaker/back/up-gauge-1 "$UPG still '$(metric "$M" "$UPG")' 40 s after the upstream came back"
fi
probes=$(proxy_stats FWD2 | jq '.requests["GET /v2/"] // 0')
check breaker/back/probe-seen "the upstream saw $probes GET /v2/ probes, want >= 1" [ "$probes" -ge 1 ]
mark3=$(access_log CCP | wc -l)
pull_all "$CCP_HOSTPORT" breaker/back
reval=$(access_log CCP | tail -n +$((mark3 + 1)) | jq -r 'select(.path | test("/manifests/sha256:") | not) | select(.path | test("/manifests/")) | .cache' | sort | uniq -c | tr '\n' ' ')
bad=$(access_log CCP | tail -n +$((mark3 + 1)) | jq -r 'select(.path | test("/manifests/sha256:") | not) | select(.path | test("/manifests/")) | select(.cache != "REVALIDATED") | "\(.path) \(.cache)"' | head -3)
check breaker/back/tags-revalidated "tag pulls after recovery must be checked upstream (REVALIDATED); got: $bad (all: $reval)" [ -z "$bad" ]
req GET "$M/v2/${UNCACHED_REF%:*}/manifests/${UNCACHED_REF##*:}" \
	-H "Accept: $(seed_q '.images[] | select(.ref == "library/alpine:3.19") | .mediaType')"
want=$(seed_q '.images[] | select(.ref == "library/alpine:3.19") | .digest')
check breaker/back/uncached-tag-works "want 200 MISS with $want; $(exchange), X-Cache $(hdr X-Cache)" \
	[ "$R_CODE/$(hdr Docker-Content-Digest)" = "200/$want" ]

stop_clean CCP breaker
t_done
