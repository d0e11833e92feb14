#!/usr/bin/env bash
# test_corrupt.sh: an upstream that serves wrong bytes (faultproxy.py
# corrupt: one byte flipped mid-blob, Content-Length kept).  A client must
# never get a clean 200 with the bad bytes, nothing unverified may land in
# the store, and once the upstream is healthy again the same pull works.
. "$(dirname "$0")/lib.sh"
t_init corrupt

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_proxy PX "$UP_URL" corrupt || exit 1
start_ccprewarm CCP "$PX_URL" || exit 1
M=$CCP_URL

ref=test/single-oci:v1
dest=$T_TMP/pull/corrupt
if skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest"; then
	fail corrupt/skopeo-fails "skopeo copy of $ref succeeded through a corrupting upstream"
else
	pass corrupt/skopeo-fails
fi

# blob_not_clean NAME REPO DIGEST: GET must be cut short or an error.
blob_not_clean() {
	local name=$1 repo=$2 d=$3 got
	req GET "$M/v2/$repo/blobs/$d"
	got=sha256:$(sha256_of "$R_BODY")
	if [ "$R_RC" -ne 0 ] || [ "$R_CODE" -ge 400 ]; then
		pass "$name"
		note "$name: HTTP $R_CODE, curl rc $R_RC after $(stat -c %s "$R_BODY") bytes"
	elif [ "$got" = "$d" ]; then
		fail "$name" "a clean $R_CODE with the right bytes from a corrupting upstream?"
	else
		fail "$name" "clean $R_CODE with corrupted content ($got); $(exchange)"
	fi
}

# A layer skopeo already tried, and one nobody asked for yet.
tried=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .platforms[0].layers[1].digest')
fresh=$(seed_q '.images[] | select(.ref == "test/single-docker:v1") | .platforms[0].layers[-1].digest')
blob_not_clean corrupt/curl-retried-blob test/single-oci "$tried"
blob_not_clean corrupt/curl-fresh-blob test/single-docker "$fresh"
# Two clients at once on a fresh blob: neither gets a clean 200.
fresh2=$(seed_q '.images[] | select(.ref == "test/shared-a:v1") | .platforms[0].layers[-1].digest')
pids=()
for i in 1 2; do
	(
		curl -sS -m 60 -o "$T_TMP/par$i.body" -w '%{http_code}' \
			"$M/v2/test/shared-a/blobs/$fresh2" >"$T_TMP/par$i.code" 2>/dev/null
		echo $? >"$T_TMP/par$i.rc"
	) &
	pids+=($!)
done
wait "${pids[@]}"
bad=
for i in 1 2; do
	code=$(cat "$T_TMP/par$i.code") rc=$(cat "$T_TMP/par$i.rc")
	if [ "$rc" -eq 0 ] && [ "$code" = 200 ]; then
		bad="$bad client$i:clean-200-$([ "sha256:$(sha256_of "$T_TMP/par$i.body")" = "$fresh2" ] && echo good || echo corrupt)-bytes"
	fi
done
check corrupt/concurrent-clients "$bad" [ -z "$bad" ]

# Nothing unverified in the store, no temp files left behind.
if [ -n "$CCP_DATA" ]; then
	bad=
	for dg in $(seed_q '.blobs | keys[]'); do
		[ -e "$(store_path "$CCP_DATA" "$dg")" ] && bad="$bad ${dg:7:12}"
	done
	check corrupt/store-clean "blobs stored despite digest mismatch:$bad" [ -z "$bad" ]
	left=
	for _ in $(seq 1 50); do
		left=$(find "$CCP_DATA/tmp" -type f 2>/dev/null | head -3)
		[ -z "$left" ] && break
		sleep 0.1
	done
	check corrupt/tmp-clean "temp files left 5s after the failed fills: $left" [ -z "$left" ]
else
	skip corrupt/store-clean "CCPREWARM_DATA not given"
fi
hits=$(proxy_stats PX | jq '[.requests | to_entries[] | select(.key | test("^GET /v2/.*/blobs/")) | .value] | add // 0')
note "upstream blob GETs while corrupting: $hits"

# Healthy upstream: the same pull now works, and the blob is clean.
proxy_mode PX pass
if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest"; then
	fail corrupt/recovered-pull "skopeo copy still fails after the upstream healed: $(tail -n 1 "$T_OUT/skopeo.log" | cut -c1-300)"
elif why=$(verify_dir "$dest" "$ref"); then
	pass corrupt/recovered-pull
else
	fail corrupt/recovered-pull "$why"
fi
req GET "$M/v2/test/single-docker/blobs/$fresh"
if [ "$R_RC" -eq 0 ] && [ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "$fresh" ]; then
	pass corrupt/recovered-blob
else
	fail corrupt/recovered-blob "want a clean 200 of $fresh; $(exchange)"
fi
if [ -n "$CCP_DATA" ]; then
	f=$(store_path "$CCP_DATA" "$fresh")
	if [ -f "$f" ] && [ "sha256:$(sha256_of "$f")" = "$fresh" ]; then
		pass corrupt/recovered-stored
	else
		fail corrupt/recovered-stored "$fresh not in the store (or wrong) after a good fetch"
	fi
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail corrupt/still-running "ccprewarm died during the test"
fi
t_done
