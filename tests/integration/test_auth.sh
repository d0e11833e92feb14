#!/usr/bin/env bash
# test_auth.sh: upstreams that want a bearer token (issue 4).
#
#   docker-registry <- faultproxy --mode bearer (401 + Bearer challenge unless
#   the request has a valid token) ; tokens from tests/tools/tokenserver.py
#
# Pulls through the mirror succeed anonymously; one token request per
# repository scope however many blobs (the token is cached, and concurrent
# transfers share one fetch); with a credentials_file the token server gets
# Basic credentials; a credentials file readable by others stops start-up;
# the password never shows in the mirror's output; a blob redirect to
# another host does not carry the Authorization header; a token realm on an
# unrelated host, or on the registry's host but another port, is refused
# without a request to it (the bearer proxies therefore serve /token
# themselves, forwarding it to the token server).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init auth

USER_NAME=ccp-user
PASSWORD="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')-secret"
SECRET=tok-$RANDOM$RANDOM

start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 4 || exit 1
# Token servers: anonymous, and one that wants our Basic credentials.
start_tokenserver TOK 127.0.0.1 --secret "$SECRET" || exit 1
start_tokenserver TOKB 127.0.0.1 --secret "$SECRET" --user "$USER_NAME" --password "$PASSWORD" || exit 1
# The "CDN" blobs are redirected to: another host (127.0.0.2), recording
# the headers it gets.
start_tokenserver CDN 127.0.0.2 --cdn "$SEED_BLOBS" || exit 1
# A listener on an unrelated host, named as a token realm: must see nothing.
start_conncount EVIL 127.0.0.2 || exit 1

bearer_proxy() {	# bearer_proxy NAME REALM [MODE ARGS...]
	local name=$1 realm=$2 mode=${3:-bearer}
	shift 2
	[ $# -gt 0 ] && shift
	start_proxy "$name" "$UP_URL" "$mode" --realm "$realm" --service test \
		--token-secret "$SECRET" "$@"
}
# own_realm_proxy NAME TOKENSERVER [MODE ARGS...]: the realm is the proxy's
# own address (a realm elsewhere on the host, another port, is refused),
# and the proxy forwards /token to the token server.
own_realm_proxy() {
	local name=$1 tok=$2 port urlvar="${2}_URL"
	shift 2
	port=$(free_port)
	printf -v "CCP_PORT_$name" '%s' "$port"
	bearer_proxy "$name" "http://127.0.0.1:$port/token" "${@:-bearer}" \
		--token-upstream "${!urlvar}"
}
own_realm_proxy PXA TOK || exit 1
own_realm_proxy PXB TOKB || exit 1
own_realm_proxy PXR TOK redirect --redirect "$CDN_URL" || exit 1
# A realm on the registry's host but another port: refused (issue 10).
bearer_proxy PXP "$TOKB_URL/token" || exit 1
bearer_proxy PXE "http://$EVIL_HOSTPORT/token" || exit 1
bearer_proxy PXE2 "http://evil.example/token" || exit 1

# oci_err_reply: the last reply is a 4xx/5xx with an OCI error body.
oci_err_reply() { [ "$R_CODE" -ge 400 ] 2>/dev/null && [ -n "$(oci_error_code)" ]; }
challenged() { [ "$R_CODE" = 401 ] && [[ $(hdr WWW-Authenticate) == Bearer* ]]; }

# The proxy really wants a token (else the test tests nothing).
req GET "$PXA_URL/v2/test/single-oci/manifests/v1"
check auth/upstream-challenges "the bearer proxy must answer 401 with a Bearer challenge; $(exchange), WWW-Authenticate: $(hdr WWW-Authenticate)" \
	challenged

CREDS=$T_TMP/creds.json
printf '{"username": "%s", "password": "%s"}\n' "$USER_NAME" "$PASSWORD" >"$CREDS"
chmod 600 "$CREDS"
BADCREDS=$T_TMP/badcreds.json
printf '{"username": "%s", "password": "%s"}\n' "$USER_NAME" "wrong-$PASSWORD" >"$BADCREDS"
chmod 600 "$BADCREDS"
CFG=$T_TMP/ccp.json
cat >"$CFG" <<EOF
{
  "upstreams": {
    "creds.test": {"url": "$PXB_URL", "credentials_file": "$CREDS"},
    "badcreds.test": {"url": "$PXB_URL", "credentials_file": "$BADCREDS"},
    "cdn.test": "$PXR_URL",
    "evil.test": "$PXE_URL",
    "evil2.test": "$PXE2_URL",
    "otherport.test": {"url": "$PXP_URL", "credentials_file": "$CREDS"}
  }
}
EOF
# Debug logging: the most chances to leak a secret.
start_ccprewarm CCP "$PXA_URL" --config "$CFG" --log-level debug || exit 1
M=$CCP_URL

# tokens NAME SCOPE: token requests the token server NAME got for SCOPE.
tokens() { token_stats "$1" | jq --arg s "$2" '.tokens[$s] // 0'; }
# pull_one NAME PREFIX REF [--all]: skopeo copy through the mirror, verified.
pull_one() {
	local name=$1 prefix=$2 ref=$3 dest why
	shift 3
	dest=$T_TMP/pull/$name
	if ! skopeo_copy "$CCP_HOSTPORT" "$prefix$ref" "$dest" "$@"; then
		fail "$name" "skopeo copy docker://$CCP_HOSTPORT/$prefix$ref failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(verify_dir "$dest" "$ref" "$@"); then
		pass "$name"
	else
		fail "$name" "$why"
	fi
}
nblobs() { seed_q --arg r "$1" '[.images[] | select(.ref == $r) | .platforms[] | .config.digest, .layers[].digest] | unique | length'; }

# ------------------------------------------------------------ anonymous
pull_one auth/anon/pull-single-oci "" test/single-oci:v1
pull_one auth/anon/pull-multi-docker "" test/multi-docker:v1 --all
n=$(tokens TOK repository:test/single-oci:pull)
check auth/anon/one-token-per-scope-single-oci \
	"token server got $n requests for repository:test/single-oci:pull while $(nblobs test/single-oci:v1) blobs and the manifest were fetched; want 1" \
	[ "$n" = 1 ]
n=$(tokens TOK repository:test/multi-docker:pull)
check auth/anon/one-token-per-scope-multi-docker \
	"token server got $n requests for repository:test/multi-docker:pull ($(nblobs test/multi-docker:v1) blobs, 3 manifests); want 1" \
	[ "$n" = 1 ]
# Many cold blobs of one more repository at once: one token fetch for all.
repo=test/shared-a
blobs=$(seed_q --arg r "$repo:v1" '.images[] | select(.ref == $r) | .platforms[] | .config.digest, .layers[].digest' | sort -u)
i=0
for d in $blobs; do
	i=$((i + 1))
	bg_get "par$i" "$M/v2/$repo/blobs/$d"
done
bad=
j=0
for d in $blobs; do
	j=$((j + 1))
	bg_wait "par$j" 60
	[ "$(bg_code "par$j")/$(sha256_of "$(bg_body "par$j")")" = "200/${d#sha256:}" ] ||
		bad="$bad ${d:7:12}:http=$(bg_code "par$j")"
done
check auth/anon/concurrent-blobs "want every blob whole:$bad" [ -z "$bad" ]
n=$(tokens TOK "repository:$repo:pull")
check auth/anon/concurrent-one-token \
	"$i cold blobs of $repo at once caused $n token requests; want 1" [ "$n" = 1 ]
note "anonymous token requests: $(token_stats TOK | jq -c .tokens)"

# ------------------------------------------------------------ credentials
pull_one auth/creds/pull "creds.test/" test/single-docker:v1
st=$(token_stats TOKB)
n=$(jq '.tokens["repository:test/single-docker:pull"] // 0' <<<"$st")
check auth/creds/one-token-per-scope "token server got $n token grants for the scope; want 1" [ "$n" = 1 ]
basic="Basic $(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)"
nb=$(jq --arg b "$basic" '[.requests[] | select(.path == "/token" and .headers.Authorization == $b)] | length' <<<"$st")
check auth/creds/basic-sent-to-realm "want the token request with the configured Basic credentials; got $nb such requests ($(jq -c '[.requests[] | {status, auth: (.headers.Authorization // "" | .[0:6])}]' <<<"$st"))" \
	[ "$nb" -ge 1 ]
# Wrong password: the pull fails with an OCI error, not a hang or a 200.
REQ_TIMEOUT=30 req GET "$M/v2/badcreds.test/test/single-oci/manifests/v1"
check auth/creds/wrong-password-fails "want a 4xx/5xx OCI error; $(exchange)" \
	oci_err_reply
note "wrong password: $R_CODE $(oci_error_code)"

# A credentials file readable by others: no start, one line naming it.
LOOSE=$T_TMP/loose.json
cp "$CREDS" "$LOOSE"
chmod 644 "$LOOSE"
cat >"$T_TMP/loose-cfg.json" <<EOF
{"upstreams": {"creds.test": {"url": "$PXB_URL", "credentials_file": "$LOOSE"}}}
EOF
lport=$(free_port)
timeout 20 "$CCP_BIN" serve --listen "127.0.0.1:$lport" --data "$T_TMP/data-loose" \
	--upstream "$PXA_URL" --config "$T_TMP/loose-cfg.json" >"$T_OUT/loose.out" 2>"$T_OUT/loose.err"
rc=$?
named=$(grep -c -F "$LOOSE" "$T_OUT/loose.err")
lines=$(grep -c . "$T_OUT/loose.err")
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$named" = 1 ] && [ "$lines" -le 2 ] &&
	! curl -s -m 1 -o /dev/null "http://127.0.0.1:$lport/v2/"; then
	pass auth/creds/mode-0644-refused
	note "mode 0644: exit $rc: $(grep -F "$LOOSE" "$T_OUT/loose.err")"
else
	fail auth/creds/mode-0644-refused "want a non-zero exit at once with one line naming $LOOSE; exit $rc, $lines lines: $(head -c 400 "$T_OUT/loose.err" | tr '\n' '|')"
fi
timeout 20 "$CCP_BIN" serve --check --data "$T_TMP/data-loose" --upstream "$PXA_URL" \
	--config "$T_TMP/loose-cfg.json" >"$T_OUT/loose-check.out" 2>&1
rc=$?
names_loose() { [ "$rc" = 1 ] && grep -q -F "$LOOSE" "$T_OUT/loose-check.out"; }
check auth/creds/mode-0644-check "serve --check must exit 1 naming the file; exit $rc: $(head -c 300 "$T_OUT/loose-check.out")" \
	names_loose

# ------------------------------------------------------------ redirect
# Blobs of cdn.test are redirected to 127.0.0.2 after the token check: the
# CDN must get the requests, without our Authorization header.  (Blobs are
# content-addressed and shared between upstreams: only those not stored
# yet are fetched.)
cold=0
for d in $(seed_q '.images[] | select(.ref == "test/shared-b:v2") | .platforms[] | .config.digest, .layers[].digest' | sort -u); do
	[ -f "$(store_path "$CCP_DATA" "$d")" ] || cold=$((cold + 1))
done
pull_one auth/redirect/pull "cdn.test/" test/shared-b:v2
st=$(token_stats CDN)
ncdn=$(jq '[.requests[] | select(.path | test("/blobs/"))] | length' <<<"$st")
nauth=$(jq '[.requests[] | select(.headers | keys | map(ascii_downcase) | index("authorization"))] | length' <<<"$st")
check auth/redirect/cdn-reached "the CDN got $ncdn blob requests; want one per blob not stored yet ($cold)" \
	[ "$ncdn/$((cold >= 1))" = "$cold/1" ]
check auth/redirect/no-authorization-to-other-host \
	"$nauth of $ncdn requests to the other host carried Authorization: $(jq -c '[.requests[] | .headers.Authorization // empty | .[0:20]] | .[0:3]' <<<"$st")" \
	[ "$nauth" = 0 ]
nred=$(proxy_stats PXR | jq .faults)
note "redirect upstream: $nred 401s and 307s sent, CDN served $ncdn blobs"

# ------------------------------------------------------------ foreign realms
# The challenge names a realm on another host: refused, never asked.
foreign_realm() {	# foreign_realm NAME HOST
	REQ_TIMEOUT=30 req GET "$M/v2/$2/test/single-oci/manifests/v1"
	if oci_err_reply; then
		pass "$1"
		note "$1: $R_CODE $(oci_error_code) in ${R_TIME}s"
	else
		fail "$1" "want a 4xx/5xx OCI error; $(exchange)"
	fi
}
foreign_realm auth/realm/other-ip-refused evil.test
# (a blob not stored yet: a stored one is served from the store)
d=$(seed_q '.images[] | select(.ref == "test/multi-oci:v1") | .platforms[0].layers[-1].digest')
[ -f "$(store_path "$CCP_DATA" "$d")" ] && note "warning: $d is already stored"
REQ_TIMEOUT=30 req GET "$M/v2/evil.test/test/multi-oci/blobs/$d"
check auth/realm/other-ip-blob-refused "want a 4xx/5xx OCI error; $(exchange)" \
	oci_err_reply
sleep 0.3
check auth/realm/other-ip-not-contacted "the realm's host got $(conncount EVIL) connections; want 0" \
	[ "$(conncount EVIL)" = 0 ]
foreign_realm auth/realm/evil.example-refused evil2.test
if grep -q "token realm 'http://evil.example/token' refused" "$CCP_LOG"; then
	pass auth/realm/evil.example-logged
else
	fail auth/realm/evil.example-logged "no 'token realm ... refused' line in the log: $(grep -i realm "$CCP_LOG" | tail -n 2 | tr '\n' '|')"
fi

# A realm on the registry's own host but another port: refused, and the
# credentials never reach it.
before=$(token_stats TOKB | jq '.total')
foreign_realm auth/realm/other-port-refused otherport.test
after=$(token_stats TOKB | jq '.total')
check auth/realm/other-port-no-credentials "the other port's token server got $((after - before)) requests; want 0" \
	[ "$after" = "$before" ]

# ------------------------------------------------------------ secrets
b64=$(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)
curl -s "$M/metrics" >"$T_OUT/metrics.txt"
leaks=
for f in "$CCP_LOG" "$T_OUT/loose.err" "$T_OUT/loose.out" "$T_OUT/loose-check.out" "$T_OUT/metrics.txt"; do
	grep -q -F -e "$PASSWORD" -e "$b64" "$f" && leaks="$leaks ${f#"$T_OUT"/}"
done
check auth/secrets/password-never-logged "the password (or its Basic encoding) appears in:$leaks" [ -z "$leaks" ]
check auth/secrets/tokens-not-logged "a bearer token appears in the log" \
	bash -c '! grep -q -E "Bearer [A-Za-z0-9_-]{20,}\\.[0-9a-f]{64}|[A-Za-z0-9_-]{20,}\\.[0-9a-f]{64}" "$1"' _ "$CCP_LOG"

stop_clean CCP auth
t_done
