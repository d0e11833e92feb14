#!/usr/bin/env bash
# test_offline.sh: what was pulled once can be pulled again with the
# upstream gone (tags past their freshness window included), and what was
# not answers promptly with an OCI error instead of hanging; a hung upstream
# (accepts, never answers) gives an error too, not a hang.
. "$(dirname "$0")/lib.sh"
t_init offline

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" --tag-freshness 1 || exit 1
M=$CCP_URL

pull_all "$CCP_HOSTPORT" offline/warm

stop UP 10
note "upstream stopped (exit $STOP_RC); waiting out the 1 s tag freshness"
if curl -s -m 2 -o /dev/null "$UP_URL/v2/"; then
	fail offline/upstream-down "the upstream still answers after being stopped"
fi
sleep 2

pull_all "$CCP_HOSTPORT" offline/cached

# Tags resolve to the seeded digests, straight from the store.
for ref in $(seed_refs); do
	repo=${ref%:*}
	tag=${ref##*:}
	want=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .digest')
	mt=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .mediaType')
	req GET "$M/v2/$repo/manifests/$tag" -H "Accept: $mt"
	got=sha256:$(sha256_of "$R_BODY")
	if [ "$R_CODE" = 200 ] && [ "$got" = "$want" ] && [ "$(hdr Docker-Content-Digest)" = "$want" ]; then
		pass "offline/tag/$ref"
	else
		fail "offline/tag/$ref" "want 200 with $want; $(exchange)"
	fi
done

# prompt_error NAME URL MAXSECS: a 4xx/5xx OCI error within MAXSECS.
prompt_error() {
	local name=$1 url=$2 max=$3 code
	REQ_TIMEOUT=$((max + 30)) req GET "$url"
	code=$(oci_error_code)
	if [ "$R_RC" -eq 28 ]; then
		fail "$name" "no answer in $((max + 30))s (curl timed out)"
	elif ! awk -v t="$R_TIME" -v m="$max" 'BEGIN { exit !(t < m) }'; then
		fail "$name" "answered after ${R_TIME}s, want < ${max}s; $(exchange)"
	elif [ "$R_CODE" -lt 400 ] || [ "$R_CODE" -gt 599 ]; then
		fail "$name" "want a 4xx/5xx error; $(exchange)"
	elif [ -z "$code" ]; then
		fail "$name" "error body is not {\"errors\":[{\"code\":...}]}; $(exchange)"
	else
		pass "$name"
		note "$name: $R_CODE $code in ${R_TIME}s"
	fi
}

zero=sha256:$(printf '%064d' 0)
prompt_error offline/uncached-repo "$M/v2/test/never-pulled/manifests/latest" 10
prompt_error offline/uncached-tag "$M/v2/test/single-oci/manifests/never-pushed" 10
prompt_error offline/uncached-manifest-digest "$M/v2/test/single-oci/manifests/$zero" 10
prompt_error offline/uncached-blob "$M/v2/test/single-oci/blobs/$zero" 10

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail offline/still-running "ccprewarm died during the test"
fi

# A hung upstream: TCP accepted, not a byte back.
if [ -z "${CCPREWARM_URL:-}" ]; then
	start_blackhole HOLE || fail offline/blackhole "could not start blackhole.py"
	if start_ccprewarm HUNG "$HOLE_URL"; then
		prompt_error offline/hung-upstream-error "$HUNG_URL/v2/test/x/manifests/latest" 60
		req GET "$HUNG_URL/v2/"
		check offline/hung-upstream-v2 "GET /v2/ must not depend on the upstream; $(exchange)" \
			[ "$R_CODE" = 200 ]
	fi
else
	skip offline/hung-upstream-error "CCPREWARM_URL given"
fi
t_done
