#!/usr/bin/env bash
# test_skopeo.sh: ccprewarm as a pull-through mirror of a seeded
# docker-registry, driven by skopeo and curl: every image copies with
# byte-identical blobs and the seeded manifest digests; manifests and blobs
# answer like the upstream (digest, Content-Type, sizes); Range, 416,
# tags/list, 404s and GET /v2/.
. "$(dirname "$0")/lib.sh"
t_init skopeo

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL

# -- GET /v2/
req GET "$M/v2/"
if [ "$R_CODE" = 200 ] && [ "$(hdr Docker-Distribution-API-Version)" = registry/2.0 ]; then
	pass skopeo/api-version
else
	fail skopeo/api-version "want 200 with Docker-Distribution-API-Version: registry/2.0; $(exchange)"
fi

# range_check NAME REPO DIGEST SIZE RANGE FIRST LAST: a 206 with that slice.
range_check() {
	local name=$1 repo=$2 d=$3 size=$4 range=$5 first=$6 last=$7
	local want=$T_TMP/want.slice
	req GET "$M/v2/$repo/blobs/$d" -H "Range: bytes=$range"
	tail -c +$((first + 1)) "$SEED_BLOBS/${d#sha256:}" | head -c $((last - first + 1)) >"$want"
	local cr
	cr=$(hdr Content-Range)
	if [ "$R_CODE" != 206 ]; then
		fail "$name" "Range: bytes=$range: want 206; $(exchange)"
	elif [ "$cr" != "bytes $first-$last/$size" ]; then
		fail "$name" "Range: bytes=$range: Content-Range '$cr', want 'bytes $first-$last/$size'"
	elif ! cmp -s "$want" "$R_BODY"; then
		fail "$name" "Range: bytes=$range: body ($(stat -c %s "$R_BODY") bytes) is not bytes $first-$last of the blob"
	elif [ "$(hdr Content-Length)" != $((last - first + 1)) ]; then
		fail "$name" "Range: bytes=$range: Content-Length '$(hdr Content-Length)', want $((last - first + 1))"
	else
		pass "$name"
	fi
}

# A layer nobody has pulled yet: the first Range request is a miss.
repo=test/single-docker
layer=$(seed_q '.images[] | select(.ref == "test/single-docker:v1") | .platforms[0].layers[-1]')
d=$(echo "$layer" | jq -r .digest)
size=$(echo "$layer" | jq -r .size)
range_check skopeo/range-miss "$repo" "$d" "$size" 100-1099 100 1099

# -- every image through skopeo, single platform and --all.
for ref in $(seed_refs); do
	kind=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .kind')
	dest=$T_TMP/pull/one/${ref//[\/:]/_}
	if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest"; then
		fail "skopeo/copy/$ref" "skopeo copy failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(verify_dir "$dest" "$ref"); then
		pass "skopeo/copy/$ref"
	else
		fail "skopeo/copy/$ref" "$why"
	fi
done
for ref in $(seed_q '.images[] | select(.kind == "index") | .ref'); do
	dest=$T_TMP/pull/all/${ref//[\/:]/_}
	if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest" --all; then
		fail "skopeo/copy-all/$ref" "skopeo copy --all failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(verify_dir "$dest" "$ref" --all); then
		pass "skopeo/copy-all/$ref"
	else
		fail "skopeo/copy-all/$ref" "$why"
	fi
done

# -- the same blob again (a hit), other range forms, and 416.
range_check skopeo/range-hit "$repo" "$d" "$size" 100-1099 100 1099
range_check skopeo/range-suffix "$repo" "$d" "$size" -500 $((size - 500)) $((size - 1))
range_check skopeo/range-open "$repo" "$d" "$size" $((size - 10))- $((size - 10)) $((size - 1))
range_check skopeo/range-past-end "$repo" "$d" "$size" $((size - 10))-$((size + 1000)) $((size - 10)) $((size - 1))
req GET "$M/v2/$repo/blobs/$d" -H "Range: bytes=$size-"
if [ "$R_CODE" = 416 ]; then
	pass skopeo/range-unsatisfiable
else
	fail skopeo/range-unsatisfiable "Range: bytes=$size- on a $size-byte blob: want 416; $(exchange)"
fi

# -- tags/list passes the upstream's through.
for repo in $(seed_q '.repos | keys[]'); do
	req GET "$UP_URL/v2/$repo/tags/list"
	want=$(jq -c '{name, tags: (.tags | sort)}' "$R_BODY")
	req GET "$M/v2/$repo/tags/list"
	got=$(jq -c '{name, tags: (.tags | sort)}' "$R_BODY" 2>/dev/null)
	if [ "$R_CODE" = 200 ] && [ "$got" = "$want" ]; then
		pass "skopeo/tags-list/$repo"
	else
		fail "skopeo/tags-list/$repo" "want 200 $want; $(exchange)"
	fi
done

# -- manifests and blobs compared with the upstream, header by header.
relay "$PY" "$TOOLS/check.py" http --seed "$SEED_JSON" --mirror "$M" \
	--upstream "$UP_URL" --prefix skopeo/http

# -- unknown things are 404s with the right codes.
zero=sha256:$(printf '%064d' 0)
req GET "$M/v2/test/single-oci/blobs/$zero"
code=$(oci_error_code)
if [ "$R_CODE" = 404 ] && [ "$code" = BLOB_UNKNOWN ]; then
	pass skopeo/unknown-blob
else
	fail skopeo/unknown-blob "want 404 BLOB_UNKNOWN; $(exchange)"
fi
req HEAD "$M/v2/test/single-oci/blobs/$zero"
if [ "$R_CODE" = 404 ] && [ ! -s "$R_BODY" ]; then
	pass skopeo/unknown-blob-head
else
	fail skopeo/unknown-blob-head "want 404 without a body; $(exchange)"
fi
req GET "$M/v2/test/single-oci/manifests/no-such-tag"
code=$(oci_error_code)
if [ "$R_CODE" = 404 ] && [ "$code" = MANIFEST_UNKNOWN ]; then
	pass skopeo/unknown-tag
else
	fail skopeo/unknown-tag "want 404 MANIFEST_UNKNOWN; $(exchange)"
fi
req GET "$M/v2/test/no-such-repo/manifests/latest"
code=$(oci_error_code)
if [ "$R_CODE" = 404 ] && { [ "$code" = MANIFEST_UNKNOWN ] || [ "$code" = NAME_UNKNOWN ]; }; then
	pass skopeo/unknown-repo
else
	fail skopeo/unknown-repo "want 404 MANIFEST_UNKNOWN or NAME_UNKNOWN; $(exchange)"
fi

# -- the store holds every blob pulled, verified, where DESIGN.md says.
if [ -n "$CCP_DATA" ]; then
	bad=
	for dg in $(seed_q '.blobs | keys[]'); do
		f=$(store_path "$CCP_DATA" "$dg")
		if [ ! -f "$f" ]; then
			bad="$bad missing:${dg:7:12}"
		elif [ "sha256:$(sha256_of "$f")" != "$dg" ]; then
			bad="$bad corrupt:${dg:7:12}"
		fi
	done
	if [ -z "$bad" ]; then
		pass skopeo/store-layout
	else
		fail skopeo/store-layout "blobs not in DATA/blobs/sha256/<ab>/<hex>:$(echo "$bad" | cut -c1-300)"
	fi
else
	skip skopeo/store-layout "CCPREWARM_DATA not given"
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail skopeo/still-running "ccprewarm died during the test"
fi
t_done
