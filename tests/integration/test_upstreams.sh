#!/usr/bin/env bash
# test_upstreams.sh: several registries behind one mirror (issue 4).
# docker.io=A, ghcr.io=B, quay.io=C, each a docker-registry holding the SAME
# repository names with DIFFERENT content.  Un-prefixed names go to A, a
# host-like first path component (/v2/ghcr.io/...) or containerd's ?ns=HOST
# picks the registry, the tag cache keeps them apart, skopeo works through
# the path prefix, and a registry that is not configured is refused with
# NAME_UNKNOWN without any outbound connection.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init upstreams

# Each registry behind a pass-through faultproxy: its counters say which
# upstream a request reached.
for x in A B C; do
	start_registry "UP$x" || exit 1
done
seed_one() {	# seed_one X SEED: push the set with that seed to UPX
	local urlvar="UP${1}_URL"
	seed_registry "${!urlvar}" --seed "$2" --size-mb 4 || exit 1
	cp "$SEED_JSON" "$T_OUT/seed-$1.json"
}
seed_one C 3
seed_one B 2
seed_one A 1	# last: SEED_JSON/SEED_BLOBS stay A's
for x in A B C; do
	urlvar="UP${x}_URL"
	start_proxy "PX$x" "${!urlvar}" pass || exit 1
done
start_ccprewarm CCP "docker.io=$PXA_URL" --upstream "ghcr.io=$PXB_URL" \
	--upstream "quay.io=$PXC_URL" || exit 1
M=$CCP_URL

# sq X JQ: query registry X's seed JSON.
sq() { jq -r "${@:2}" "$T_OUT/seed-$1.json"; }
REF=test/single-oci:v1
MT=$(sq A --arg r "$REF" '.images[] | select(.ref == $r) | .mediaType')
for x in A B C; do
	printf -v "DIG_$x" '%s' "$(sq "$x" --arg r "$REF" '.images[] | select(.ref == $r) | .digest')"
done
if [ "$DIG_A" = "$DIG_B" ] || [ "$DIG_B" = "$DIG_C" ] || [ "$DIG_A" = "$DIG_C" ]; then
	fail upstreams/seed-differs "the three registries hold the same $REF ($DIG_A): the test would prove nothing"
fi
px_total() { proxy_stats "PX$1" | jq .total; }

# routed NAME URL WANT-X: the manifest comes from registry WANT-X and only
# that registry's proxy saw a request.
routed() {
	local name=$1 url=$2 want=$3 x before after wantdig why=
	for x in A B C; do printf -v "before_$x" '%s' "$(px_total "$x")"; done
	req GET "$url" -H "Accept: $MT"
	wantdig="DIG_$want"
	wantdig=${!wantdig}
	for x in A B C; do
		before="before_$x"
		after=$(px_total "$x")
		if [ "$x" != "$want" ] && [ "$after" != "${!before}" ]; then
			why="$why registry $x was asked ($((after - ${!before})) requests);"
		fi
	done
	if [ "$R_CODE" != 200 ]; then
		fail "$name" "want 200 from registry $want; $(exchange)"
	elif [ "sha256:$(sha256_of "$R_BODY")" != "$wantdig" ] ||
		[ "$(hdr Docker-Content-Digest)" != "$wantdig" ]; then
		fail "$name" "want registry $want's $wantdig, got Docker-Content-Digest $(hdr Docker-Content-Digest), body sha256:$(sha256_of "$R_BODY") (A=$DIG_A B=$DIG_B C=$DIG_C)"
	elif [ -n "$why" ]; then
		fail "$name" "right digest, but$why"
	else
		pass "$name"
		note "$name: $wantdig, X-Cache $(hdr X-Cache)"
	fi
}
routed upstreams/default-is-docker.io "$M/v2/test/single-oci/manifests/v1" A
routed upstreams/prefix-ghcr.io "$M/v2/ghcr.io/test/single-oci/manifests/v1" B
routed upstreams/ns-ghcr.io "$M/v2/test/single-oci/manifests/v1?ns=ghcr.io" B
routed upstreams/ns-quay.io "$M/v2/test/single-oci/manifests/v1?ns=quay.io" C
routed upstreams/prefix-quay.io "$M/v2/quay.io/test/single-oci/manifests/v1" C
routed upstreams/ns-docker.io "$M/v2/test/single-oci/manifests/v1?ns=docker.io" A
# Cached now: each name still maps to its own registry's digest.
routed upstreams/cached-default "$M/v2/test/single-oci/manifests/v1" A
routed upstreams/cached-ghcr.io "$M/v2/ghcr.io/test/single-oci/manifests/v1" B
routed upstreams/cached-quay.io "$M/v2/test/single-oci/manifests/v1?ns=quay.io" C
# Docker Hub's library/ for one-component names.
MT=$(sq A '.images[] | select(.ref == "library/alpine:3.19") | .mediaType')
DIG_A=$(sq A '.images[] | select(.ref == "library/alpine:3.19") | .digest')
DIG_B=$(sq B '.images[] | select(.ref == "library/alpine:3.19") | .digest')
routed upstreams/docker.io-library "$M/v2/alpine/manifests/3.19" A
routed upstreams/ghcr.io-library-name "$M/v2/ghcr.io/library/alpine/manifests/3.19" B

# A blob of B through the prefix, and of C through ns.
for x in B C; do
	d=$(sq "$x" --arg r "$REF" '.images[] | select(.ref == $r) | .platforms[0].layers[0].digest')
	if [ "$x" = B ]; then u="$M/v2/ghcr.io/test/single-oci/blobs/$d"; else u="$M/v2/test/single-oci/blobs/$d?ns=quay.io"; fi
	req GET "$u"
	check "upstreams/blob-$x" "want 200 with $d; $(exchange)" \
		[ "$R_CODE/sha256:$(sha256_of "$R_BODY")" = "200/$d" ]
done

# skopeo through the path prefix (what podman's mirror config does).
skopeo_check() {	# skopeo_check NAME X REF PREFIX [--all]
	local name=$1 x=$2 ref=$3 prefix=$4 dest why
	shift 4
	dest=$T_TMP/skopeo/$name
	if ! skopeo_copy "$CCP_HOSTPORT" "$prefix$ref" "$dest" "$@"; then
		fail "$name" "skopeo copy docker://$CCP_HOSTPORT/$prefix$ref failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(SEED_JSON=$T_OUT/seed-$x.json verify_dir "$dest" "$ref" "$@"); then
		pass "$name"
	else
		fail "$name" "not registry $x's image: $why"
	fi
}
skopeo_check upstreams/skopeo-ghcr.io-prefix B test/single-docker:v1 ghcr.io/
skopeo_check upstreams/skopeo-quay.io-prefix-index C test/multi-oci:v1 quay.io/ --all
skopeo_check upstreams/skopeo-default A test/single-docker:v1 ""
skopeo_check upstreams/skopeo-docker.io-prefix A test/shared-b:v2 docker.io/

# ------------------------------------------------------------ not configured
# NAME_UNKNOWN, and nothing goes out: no configured upstream is asked, no
# upstream request is counted, a listener named as the registry sees no
# connection, and (with strace) ccprewarm makes no connect() at all.
start_conncount SENT || fail upstreams/sentinel "could not start the connection counter"
up_requests() {
	curl -s "$M/metrics" | awk '$1 ~ /^ccprewarm_upstream_requests_total\{/ { n += $2 } END { print n + 0 }'
}
pxsum() { echo $(($(px_total A) + $(px_total B) + $(px_total C))); }
STRACE_OUT=
if command -v strace >/dev/null && [ -n "${CCP_PID:-}" ]; then
	STRACE_OUT=$T_OUT/strace.log
	# The pid we started is ccprewarm itself (setsid exec).
	_spawn STRACE "$T_OUT/strace-run.log" strace -f -e trace=connect \
		-o "$STRACE_OUT" -p "$CCP_PID"
	attached() { grep -q 'attached' "$T_OUT/strace-run.log"; }
	if wait_until 10 attached; then
		sleep 0.5	# every thread
	else
		stop STRACE 5 INT
		STRACE_OUT=
		note "strace could not attach: $(head -c 300 "$T_OUT/strace-run.log")"
	fi
fi
u0=$(up_requests)
p0=$(pxsum)
unknown() {	# unknown NAME URL
	req GET "$2"
	if [ "$R_CODE" = 404 ] && [ "$(oci_error_code)" = NAME_UNKNOWN ]; then
		pass "$1"
	else
		fail "$1" "want 404 NAME_UNKNOWN; $(exchange)"
	fi
}
unknown upstreams/unknown/prefix-manifest "$M/v2/evil.example/x/manifests/t"
unknown upstreams/unknown/prefix-blob "$M/v2/evil.example/x/y/blobs/sha256:$(printf '%064d' 1)"
unknown upstreams/unknown/ns-manifest "$M/v2/x/manifests/t?ns=evil.example"
unknown upstreams/unknown/ns-tags "$M/v2/x/y/tags/list?ns=evil.example"
unknown upstreams/unknown/prefix-hostport "$M/v2/$SENT_HOSTPORT/x/manifests/t"
unknown upstreams/unknown/ns-hostport "$M/v2/x/manifests/t?ns=$SENT_HOSTPORT"
unknown upstreams/unknown/prefix-localhost "$M/v2/localhost:$SENT_PORT/x/manifests/t"
sleep 0.5
check upstreams/unknown/no-upstream-request \
	"ccprewarm_upstream_requests_total went from $u0 to $(up_requests)" [ "$(up_requests)" = "$u0" ]
check upstreams/unknown/no-configured-upstream-asked \
	"the configured registries saw $(($(pxsum) - p0)) requests" [ "$(pxsum)" = "$p0" ]
check upstreams/unknown/no-connection-to-named-host \
	"the listener at $SENT_HOSTPORT, named as the registry, got $(conncount SENT) connections" \
	[ "$(conncount SENT)" = 0 ]
if [ -n "$STRACE_OUT" ]; then
	stop STRACE 5 INT
	check upstreams/unknown/no-connect-syscall \
		"ccprewarm called connect() while answering the unconfigured names: $(grep 'connect(' "$STRACE_OUT" | head -3 | tr '\n' ' ')" \
		[ -z "$(grep 'connect(' "$STRACE_OUT")" ]
else
	skip upstreams/unknown/no-connect-syscall "no strace, or it could not attach"
fi
stop_clean CCP upstreams

# ------------------------------------------------------------ two upstreams
# Another mirror with only docker.io=A and ghcr.io=B: quay.io is now unknown.
if [ -z "${CCPREWARM_URL:-}" ]; then
	start_ccprewarm TWO "docker.io=$PXA_URL" --upstream "ghcr.io=$PXB_URL" || exit 1
	MT=$(sq A --arg r "$REF" '.images[] | select(.ref == $r) | .mediaType')
	DIG_A=$(sq A --arg r "$REF" '.images[] | select(.ref == $r) | .digest')
	DIG_B=$(sq B --arg r "$REF" '.images[] | select(.ref == $r) | .digest')
	M=$TWO_URL
	routed upstreams/two/default "$M/v2/test/single-oci/manifests/v1" A
	routed upstreams/two/ns-ghcr.io "$M/v2/test/single-oci/manifests/v1?ns=ghcr.io" B
	routed upstreams/two/prefix-ghcr.io "$M/v2/ghcr.io/test/single-oci/manifests/v1" B
	c0=$(px_total C)
	unknown upstreams/two/quay.io-unknown "$M/v2/test/single-oci/manifests/v1?ns=quay.io"
	unknown upstreams/two/quay.io-prefix-unknown "$M/v2/quay.io/test/single-oci/manifests/v1"
	check upstreams/two/quay.io-not-asked "registry C saw $(($(px_total C) - c0)) requests" \
		[ "$(px_total C)" = "$c0" ]
	stop_clean TWO upstreams/two
fi
t_done
