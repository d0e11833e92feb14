#!/usr/bin/env bash
# test_badinput.sh: hostile or malformed requests get a 4xx with an OCI
# error document ({"errors":[{"code":...}]}) and the right code, push and
# delete get 405 UNSUPPORTED, none of it reaches the upstream (a counting
# faultproxy.py sits in between) or creates anything under the data
# directory, and the server still answers afterwards.
. "$(dirname "$0")/lib.sh"
t_init badinput

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_proxy PX "$UP_URL" pass || exit 1
start_ccprewarm CCP "$PX_URL" || exit 1
M=$CCP_URL

# Something in the store first, so "nothing new" means something.
if ! skopeo_copy "$CCP_HOSTPORT" test/single-oci:v1 "$T_TMP/warm"; then
	fail badinput/warm "could not pull test/single-oci:v1 through ccprewarm: $(tail -n 1 "$T_OUT/skopeo.log" | cut -c1-300)"
fi
listing() { [ -n "$CCP_DATA" ] && (cd "$CCP_DATA" && find . -mindepth 1 -printf '%y %P\n' | sort); }
# A client has its last byte once the digest verified; the fsync and
# rename into blobs/ follow on a worker: wait for them to settle.
settled() { [ -z "$CCP_DATA" ] || ! ls "$CCP_DATA/tmp" 2>/dev/null | grep -q '^partial-'; }
wait_until() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
wait_until 20 settled || note "partial files still in DATA/tmp after 20 s"
before=$(listing)
proxy_reset PX

repo=test/single-oci
dg=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .platforms[0].layers[0].digest')
man=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .digest')
mt=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .mediaType')
h64=$(printf 'a%.0s' $(seq 64))
long_name=$(printf 'abcdefghij/%.0s' $(seq 24))x    # 265 characters
tag128=$(printf 'a%.0s' $(seq 128))
tag129=${tag128}b
uuid=0f6d3b1e-7c3a-4d7e-9a43-5f0d8a2c6b11
curl -s -o "$T_TMP/manifest.json" "$UP_URL/v2/$repo/manifests/$man" -H "Accept: $mt"

# METHOD PATH STATUS CODES: STATUS is a number or 4xx; CODES the allowed
# errors[0].code values separated by commas, or * for any code.
CASES=$(cat <<EOF
GET /v2/../x 4xx *
GET /v2/../x/manifests/latest 4xx NAME_INVALID
GET /v2/%2e%2e/x/manifests/latest 4xx NAME_INVALID
GET /v2/x/%2e%2e/manifests/latest 4xx NAME_INVALID
GET /v2/x/../../etc/manifests/latest 4xx NAME_INVALID
GET /v2/$repo/blobs/sha256:zz 400 DIGEST_INVALID
GET /v2/$repo/blobs/md5:d41d8cd98f00b204e9800998ecf8427e 400 DIGEST_INVALID
GET /v2/$repo/blobs/sha256:abc 400 DIGEST_INVALID
GET /v2/$repo/blobs/sha256:${h64}a 400 DIGEST_INVALID
GET /v2/$repo/blobs/sha256:${h64^^} 400 DIGEST_INVALID
GET /v2/$repo/blobs/sha256 400 DIGEST_INVALID
GET /v2/$repo/blobs/sha256:../../../${h64:9} 4xx *
GET /v2/$repo/manifests/sha256:zz 404 MANIFEST_UNKNOWN
GET /v2/Test/Single-OCI/manifests/v1 400 NAME_INVALID
GET /v2/test//single-oci/manifests/v1 400 NAME_INVALID
GET /v2/test/single-oci//manifests/v1 400 NAME_INVALID
GET /v2/test/single-oci//tags/list 400 NAME_INVALID
GET /v2/-test/x/manifests/v1 400 NAME_INVALID
GET /v2/test/x./manifests/v1 400 NAME_INVALID
GET /v2/test/single-oci%00/manifests/v1 400 NAME_INVALID
GET /v2/$long_name/manifests/v1 400 NAME_INVALID
GET /v2/$repo/manifests/$tag129 404 MANIFEST_UNKNOWN
GET /v2/$repo/manifests/.v1 404 MANIFEST_UNKNOWN
GET /v2/$repo/manifests/-v1 404 MANIFEST_UNKNOWN
GET /v2/$repo/manifests/v1%2f..%2f.. 4xx MANIFEST_UNKNOWN,NAME_INVALID
PUT /v2/$repo/manifests/v1 405 UNSUPPORTED
PUT /v2/$repo/manifests/$man 405 UNSUPPORTED
DELETE /v2/$repo/manifests/$man 405 UNSUPPORTED
DELETE /v2/$repo/manifests/v1 405 UNSUPPORTED
POST /v2/$repo/manifests/v1 405 UNSUPPORTED
PATCH /v2/$repo/manifests/v1 405 UNSUPPORTED
POST /v2/$repo/blobs/uploads/ 405 UNSUPPORTED
POST /v2/$repo/blobs/uploads/?mount=$dg&from=test/shared-a 405 UNSUPPORTED
POST /v2/$repo/blobs/uploads/?digest=$dg 405 UNSUPPORTED
PATCH /v2/$repo/blobs/uploads/$uuid 405 UNSUPPORTED
PUT /v2/$repo/blobs/uploads/$uuid?digest=$dg 405 UNSUPPORTED
GET /v2/$repo/blobs/uploads/$uuid 4xx UNSUPPORTED,BLOB_UPLOAD_UNKNOWN
DELETE /v2/$repo/blobs/uploads/$uuid 405 UNSUPPORTED
DELETE /v2/$repo/blobs/$dg 405 UNSUPPORTED
PUT /v2/$repo/blobs/$dg 405 UNSUPPORTED
EOF
)

n=0
while read -r method path status codes; do
	n=$((n + 1))
	args=()
	case "$method" in
	PUT | POST | PATCH)
		if [[ $path == */manifests/* ]]; then
			args=(-H "Content-Type: $mt" --data-binary "@$T_TMP/manifest.json")
		else
			args=(-H 'Content-Type: application/octet-stream' --data-binary 'not a blob')
		fi
		;;
	esac
	req "$method" "$M$path" "${args[@]}"
	code=$(oci_error_code)
	name="badinput/$method ${path:0:90}"
	statusok=0
	case "$status" in
	4xx) [[ $R_CODE == 4?? ]] && statusok=1 ;;
	*) [ "$R_CODE" = "$status" ] && statusok=1 ;;
	esac
	if [ "$statusok" != 1 ]; then
		fail "$name" "want $status ${codes//,/|}; $(exchange)"
	elif [ -z "$code" ]; then
		fail "$name" "status $R_CODE but the body is not {\"errors\":[{\"code\":...}]}; $(exchange)"
	elif [ "$codes" != '*' ] && [[ ,$codes, != *",$code,"* ]]; then
		fail "$name" "code $code, want ${codes//,/ or }; $(exchange)"
	elif [[ $(hdr Content-Type) != *json* ]]; then
		fail "$name" "error body served as '$(hdr Content-Type)', want application/json"
	else
		pass "$name"
	fi
done <<<"$CASES"

# HEAD: same status, no body.
for path in "/v2/$repo/blobs/sha256:zz" "/v2/Test/X/manifests/v1" "/v2/$repo/manifests/.v1"; do
	req HEAD "$M$path"
	if [[ $R_CODE == 4?? ]]; then
		pass "badinput/HEAD $path"
	else
		fail "badinput/HEAD $path" "want 4xx; $(exchange)"
	fi
done

# A header block far beyond anything sane, and a huge path.
req GET "$M/v2/$repo/manifests/v1" -H "X-Pad: $(head -c 70000 /dev/zero | tr '\0' a)"
check "badinput/oversized-header" "want a 4xx (431/400/413); $(exchange)" \
	[ "${R_CODE:0:1}" = 4 ]
req GET "$M/v2/$(head -c 20000 /dev/zero | tr '\0' a)/manifests/v1"
check "badinput/oversized-path" "want a 4xx (414/400); $(exchange)" \
	[ "${R_CODE:0:1}" = 4 ]

# None of it went upstream (a health probe, GET /v2/, does not count).
up=$(proxy_stats PX)
total=$(jq '[.requests | to_entries[] | select(.key != "GET /v2/") | .value] | add // 0' <<<"$up")
if [ "$total" = 0 ]; then
	pass badinput/no-upstream-traffic
else
	fail badinput/no-upstream-traffic "invalid requests reached the upstream: $(jq -c '.requests | del(."GET /v2/")' <<<"$up" | cut -c1-400)"
fi

# Nothing new on disk.
if [ -n "$CCP_DATA" ]; then
	after=$(listing)
	if [ "$before" = "$after" ]; then
		pass badinput/store-unchanged
	else
		fail badinput/store-unchanged "new under DATA: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -5 | tr '\n' ' ')"
	fi
else
	skip badinput/store-unchanged "CCPREWARM_DATA not given"
fi

# Valid edge cases still work: a 128-character tag is a tag (unknown: 404).
req GET "$M/v2/$repo/manifests/$tag128"
if [ "$R_CODE" = 404 ] && [ "$(oci_error_code)" = MANIFEST_UNKNOWN ]; then
	pass badinput/tag-128-is-valid
else
	fail badinput/tag-128-is-valid "want 404 MANIFEST_UNKNOWN for a valid 128-char tag; $(exchange)"
fi

req GET "$M/v2/"
check badinput/still-answers "GET /v2/ after the bad input: $(exchange)" [ "$R_CODE" = 200 ]
req GET "$M/v2/$repo/manifests/v1" -H "Accept: $mt"
check badinput/still-serves "GET a manifest after the bad input: $(exchange)" \
	[ "$R_CODE" = 200 ]
if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail badinput/still-running "ccprewarm died during the test"
fi
t_done
