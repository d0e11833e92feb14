#!/usr/bin/env bash
# test_loops.sh: several event loops (serve --loops 2).  Many clients, each
# on its own connection (so the kernel's SO_REUSEPORT hash spreads them
# over both loops), pull the same cold blobs and manifests at once: the
# upstream's own access log (docker-registry) shows each fetched exactly
# once, every body hashes to its digest, and both loops served requests
# (ccprewarm_loop_requests_total).  Then four skopeo copies of one cold
# image at once, byte-identical; store hits on both loops; a clean SIGTERM
# (the sanitizer build checks for leaks).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init loops

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
# The proxy holds upstream bodies back until every client is in.
start_proxy PX "$UP_URL" pass || exit 1
start_ccprewarm CCP "$PX_URL" --loops 2 || exit 1
M=$CCP_URL

loop_count() {
	curl -s -m 10 "$M/metrics" |
		awk -v k="ccprewarm_loop_requests_total{loop=\"$1\"}" '$1 == k { print $2; exit }'
}
# registry_gets PATH-SUFFIX: successful GETs docker-registry logged for a
# URI ending in PATH-SUFFIX (any repository).
registry_gets() {
	tail -n +"$((UP_MARK + 1))" "$T_OUT/registry-UP.log" |
		grep -F 'http.request.method=GET' |
		grep -F "http.response.status=200" |
		grep -cE "http\.request\.uri=\"?[^\" ]*$1[\" ]"
}
inflight_ge() { [ "$(metric "$M" ccprewarm_inflight_requests)" -ge "$1" ] 2>/dev/null; }

# both ARG...: every ARG is a positive number.
both() {
	local v
	for v in "$@"; do [ "${v:-0}" -gt 0 ] 2>/dev/null || return 1; done
}
check loops/two-loops "want ccprewarm_loop_requests_total for loops 0 and 1 in /metrics" \
	[ -n "$(loop_count 1)" ]

# ---------------------------------------------------- cold fan-in, curl
# alpine's amd64 manifest (by digest), its config and layer, a shared
# layer, and test/single-oci's tag manifest.
img=test/shared-a
BLOBS=$(seed_q '.images[] | select(.ref == "test/shared-a:v1") | .platforms[0] | [.config.digest] + [.layers[].digest] | .[]')
MDIG=$(seed_q '.images[] | select(.ref == "test/shared-a:v1") | .platforms[0].digest')
OCI=application/vnd.oci.image.manifest.v1+json
DOCKER=application/vnd.docker.distribution.manifest.v2+json
# what docker sends: the index types too, so the tag's mapping is stored
ACCEPT="Accept: $OCI, $DOCKER, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
N=6	# clients per object
UP_MARK=$(wc -l <"$T_OUT/registry-UP.log")	# seeding GETs too
proxy_mode PX stall 60
base=$(metric "$M" ccprewarm_inflight_requests)
nreq=0	# blob requests: the proxy stalls blob bodies (manifests pass)
i=0
for d in $BLOBS; do
	i=$((i + 1))
	for c in $(seq 1 $N); do
		bg_get "b$i-$c" "$M/v2/$img/blobs/$d"
		nreq=$((nreq + 1))
	done
done
for c in $(seq 1 $N); do
	bg_get "m-$c" "$M/v2/$img/manifests/$MDIG" -H "$ACCEPT"
	bg_get "t-$c" "$M/v2/test/single-oci/manifests/v1" -H "$ACCEPT"
done
# (well inside upstream_stall_seconds, 20 s: a stall past it is retried)
if ! wait_until 12 inflight_ge $((${base:-1} + nreq)); then
	note "only $(metric "$M" ccprewarm_inflight_requests) of $nreq blob requests in flight after 12 s"
fi
proxy_mode PX pass
bad=
i=0
for d in $BLOBS; do
	i=$((i + 1))
	for c in $(seq 1 $N); do
		n=b$i-$c
		if ! bg_wait "$n" 60; then
			bad="$bad $n:hung"
		elif [ "$(bg_code "$n")" != 200 ] ||
			[ "$(sha256_of "$(bg_body "$n")")" != "${d#sha256:}" ]; then
			bad="$bad $n:http=$(bg_code "$n"),rc=$(bg_rc "$n")"
		fi
	done
done
for c in $(seq 1 $N); do
	bg_wait "m-$c" 60 || bad="$bad m-$c:hung"
	bg_wait "t-$c" 60 || bad="$bad t-$c:hung"
	[ "$(bg_code "m-$c")" = 200 ] &&
		[ "$(sha256_of "$(bg_body "m-$c")")" = "${MDIG#sha256:}" ] ||
		bad="$bad m-$c:http=$(bg_code "m-$c")"
	[ "$(bg_code "t-$c")" = 200 ] && cmp -s "$(bg_body "t-$c")" "$(bg_body t-1)" ||
		bad="$bad t-$c:http=$(bg_code "t-$c")"
done
check loops/fan-in/verified-bodies "want every body to hash to its digest:$bad" [ -z "$bad" ]

bad=
for d in $BLOBS; do
	n=$(registry_gets "/blobs/$d")
	[ "$n" = 1 ] || bad="$bad ${d:7:12}:$n"
done
n=$(registry_gets "/manifests/$MDIG")
[ "$n" = 1 ] || bad="$bad manifest-by-digest:$n"
n=$(registry_gets "/manifests/v1")
[ "$n" = 1 ] || bad="$bad single-oci-tag:$n"
check loops/fan-in/one-upstream-get-each \
	"docker-registry logged other than exactly one GET per object:$bad" [ -z "$bad" ]
l0=$(loop_count 0)
l1=$(loop_count 1)
note "requests finished per loop after the fan-in: loop 0 $l0, loop 1 $l1"
check loops/fan-in/both-loops-served "loop 0: $l0, loop 1: $l1 requests" \
	both "$l0" "$l1"

# ---------------------------------------------- cold fan-in, skopeo ×4
ref=test/single-docker:v1
pids=()
for c in 1 2 3 4; do
	(skopeo_copy "$CCP_HOSTPORT" "$ref" "$T_TMP/sk$c"; echo $? >"$T_TMP/sk$c.rc") &
	pids+=($!)
done
wait "${pids[@]}"
bad=
for c in 1 2 3 4; do
	if [ "$(cat "$T_TMP/sk$c.rc")" != 0 ]; then
		bad="$bad copy$c:rc=$(cat "$T_TMP/sk$c.rc")"
	elif ! why=$(verify_dir "$T_TMP/sk$c" "$ref"); then
		bad="$bad copy$c:$why"
	fi
done
check loops/skopeo/four-copies-identical "want 4 verified copies of $ref:$bad" [ -z "$bad" ]
bad=
for d in $(seed_q '.images[] | select(.ref == "test/single-docker:v1") | .platforms[0] | [.config.digest] + [.layers[].digest] | .[]'); do
	n=$(registry_gets "/blobs/$d")
	[ "$n" = 1 ] || bad="$bad ${d:7:12}:$n"
done
check loops/skopeo/one-upstream-get-each "docker-registry GETs per blob:$bad" [ -z "$bad" ]

# ------------------------------------------------- hits on both loops
h0=$(loop_count 0)
h1=$(loop_count 1)
bad=
for c in $(seq 1 40); do
	req GET "$M/v2/$img/blobs/$(echo "$BLOBS" | head -n 1)"
	[ "$R_CODE" = 200 ] && [ "$(hdr X-Cache)" = HIT ] || bad="$bad $c:$R_CODE/$(hdr X-Cache)"
	req GET "$M/v2/test/single-oci/manifests/v1" -H "$ACCEPT"
	[ "$R_CODE" = 200 ] && [ "$(hdr X-Cache)" = HIT ] || bad="$bad $c:$R_CODE/$(hdr X-Cache)"
done
check loops/hits/all-hit "want 80 HITs:$bad" [ -z "$bad" ]
d0=$(($(loop_count 0) - h0))
d1=$(($(loop_count 1) - h1))
note "hits per loop: loop 0 $d0, loop 1 $d1 (of 80, plus the /metrics scrapes)"
check loops/hits/both-loops "loop 0 served $d0, loop 1 $d1" both "$d0" "$d1"
n=$(grep -cF 'http.request.method=GET' "$T_OUT/registry-UP.log")
req GET "$M/v2/$img/manifests/$MDIG" -H "$ACCEPT"
check loops/hits/no-upstream "a hit went upstream" [ "$(grep -cF 'http.request.method=GET' "$T_OUT/registry-UP.log")" = "$n" ]

# ------------------------------------------- relayed requests still work
req GET "$M/v2/test/single-oci/tags/list"
tl=$R_CODE
req GET "$M/_ccprewarm/v1/stats"
check loops/relayed/tags-and-admin "tags/list $tl, stats $R_CODE" [ "$tl/$R_CODE" = 200/200 ]

stop_clean CCP loops
t_done
