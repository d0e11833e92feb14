#!/usr/bin/env bash
# test_shared.sh: two (then more) ccprewarm nodes sharing one bucket on a
# real S3 server (radosgw on a one-node Ceph cluster, lib_s3.sh).  Node A
# pulls the set cold from upstream and uploads it in the background; node B
# (empty store, upstream stopped) serves the same set from the bucket; a
# corrupted object is detected, reported and refetched from upstream (and
# the bucket repaired); the bucket going away mid-pull falls back to
# upstream.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
t_init shared

start_s3
rc=$?
if [ "$rc" -eq 2 ]; then
	skip shared/all "Ceph not installed (tests/deps.sh test installs ceph-mon ceph-osd ceph-mgr radosgw)"
	exit 0
elif [ "$rc" -ne 0 ]; then
	fail shared/start-s3 "the Ceph cluster did not come up; see ceph-*.log"
	exit 1
fi
pass shared/start-s3
BUCKET=ccp-shared
check shared/make-bucket "cannot create bucket $BUCKET" s3_mb "$BUCKET"

start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 24 --large-layers 1 || exit 1
start_proxy PX "$UP_URL" pass || exit 1

# cfg NAME [URL]: a config file with the shared store (multipart from 5
# MiB, so the large layer goes up in parts); URL: the bucket's endpoint
# (default: radosgw itself).
cfg() {
	cat >"$T_TMP/$1.json" <<-JSON
	{"shared_store": {"url": "${2:-$S3_URL}", "bucket": "$BUCKET",
	  "region": "$S3_REGION", "credentials_file": "$S3_CREDS",
	  "prefix": "ci/", "multipart_min_bytes": 5242880,
	  "part_size_bytes": 5242880, "node": "node-$1",
	  "pins_publish_seconds": 1}}
	JSON
	echo "$T_TMP/$1.json"
}

# metric URL NAME: a metric's value (0 if absent).
metric() {
	curl -sf "$1/metrics" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'
}

# Node A reaches the bucket through a proxy that checks each PUT's signed
# payload hash (x-amz-content-sha256) against its body.
start_proxy S3PX "$S3_URL" pass || exit 1
start_ccprewarm A "$UP_URL" --config "$(cfg A "$S3PX_URL")" || exit 1
pull_all "$A_HOSTPORT" shared/node-a

# Every blob and manifest of the set is in the bucket once A's background
# uploads are done.
nblobs=$(seed_q '[.blobs[]?] | length' 2>/dev/null)
end=$((SECONDS + 120))
while [ $SECONDS -lt $end ]; do
	[ "$(metric "$A_URL" ccprewarm_shared_store_uploads_in_flight)" = 0 ] && break
	sleep 0.5
done
ups=$(metric "$A_URL" ccprewarm_shared_store_uploads_total)
note "node A uploaded $ups objects"
missing=0
for d in $(ls "$SEED_BLOBS"); do
	code=$(s3_cli -o /dev/null -w '%{http_code}' -I "$S3_URL/$BUCKET/ci/blobs/sha256/$d")
	[ "$code" = 200 ] || missing=$((missing + 1))
done
check shared/bucket-has-every-blob "$missing of $(ls "$SEED_BLOBS" | wc -l) seeded blobs not in the bucket" [ "$missing" -eq 0 ]
big=$(ls -S "$SEED_BLOBS" | head -n 1)
got=$(s3_cli "$S3_URL/$BUCKET/ci/blobs/sha256/$big" | sha256sum | cut -d' ' -f1)
etag=$(s3_cli -I "$S3_URL/$BUCKET/ci/blobs/sha256/$big" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }')
# S3's ETag of a multipart object is "<md5 of the part md5s>-<parts>".
check shared/multipart-upload "ETag $etag is not a multipart one" grep -q -- '-[0-9]*"$' <<<"$etag"
check shared/multipart-object-intact "the largest blob ($(stat -c %s "$SEED_BLOBS/$big") bytes, multipart) reads back as $got" [ "$got" = "$big" ]
# Every PUT (single blobs, parts, tag mappings) is signed with its body's
# own SHA-256: none UNSIGNED-PAYLOAD, none that does not match.
pl=$(proxy_stats S3PX | jq -c '.payload')
check shared/payloads-signed "PUTs to the bucket, by x-amz-content-sha256: $pl" \
	[ "$(jq '.unsigned // 0' <<<"$pl")" = 0 ] && [ "$(jq '.mismatch // 0' <<<"$pl")" = 0 ] &&
	[ "$(jq '.signed // 0' <<<"$pl")" -gt "$nblobs" ]
# Node A published what it learned of each tag (digest, when confirmed).
missing=
for ref in $(seed_refs); do
	dg=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .digest')
	# ':' percent-encoded, as SigV4's canonical path has it
	s3_cli "$S3_URL/$BUCKET/ci/tags/docker.io/${ref/:/%3A}" | head -n 1 | grep -qx "$dg" || missing="$missing $ref"
done
check shared/tags-published "tag mappings missing or wrong in the bucket:$missing" [ -z "$missing" ]

# Node B: empty store, its upstream gone.  A blob HEAD is answered from
# the bucket; the set is served by tag (the mapping A published, said
# STALE) and by digest (manifests and blobs from the bucket, verified).
stop PX
start_ccprewarm B "$PX_URL" --config "$(cfg B)" || exit 1
req HEAD "$B_URL/v2/test/single-docker/blobs/sha256:$big"
check shared/node-b-head-from-bucket "HEAD of a blob B lacks: $(exchange)" \
	[ "$R_CODE" = 200 ] && [ "$(hdr Content-Length)" = "$(stat -c %s "$SEED_BLOBS/$big")" ] &&
	[ "$(hdr Docker-Content-Digest)" = "sha256:$big" ]
pull_all "$B_HOSTPORT" shared/node-b-by-tag
req GET "$B_URL/v2/test/single-oci/manifests/v1" -H "Accept: application/vnd.oci.image.manifest.v1+json"
check shared/node-b-tag-stale "tag at B with its upstream down: $(exchange), X-Cache '$(hdr X-Cache)'" \
	[ "$R_CODE" = 200 ] && [ "$(hdr X-Cache)" = STALE ] &&
	[ "$(hdr Docker-Content-Digest)" = "$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .digest')" ]
check shared/node-b-stale-counted "ccprewarm_stale_responses_total at B is $(metric "$B_URL" ccprewarm_stale_responses_total)" \
	[ "$(metric "$B_URL" ccprewarm_stale_responses_total)" -ge 1 ]
for ref in $(seed_refs); do
	repo=${ref%%:*}
	dg=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .digest')
	kind=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .kind')
	extra=()
	[ "$kind" = index ] && extra=(--all)
	dest=$T_TMP/pull/b/${ref//[\/:]/_}
	if ! skopeo_copy "$B_HOSTPORT" "$repo@$dg" "$dest" "${extra[@]}"; then
		fail "shared/node-b/$ref" "skopeo copy by digest failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(verify_dir "$dest" "$ref" "${extra[@]}"); then
		pass "shared/node-b/$ref"
	else
		fail "shared/node-b/$ref" "$why"
	fi
done
hits=$(metric "$B_URL" ccprewarm_shared_store_hits_total)
upb=$(metric "$B_URL" ccprewarm_upstream_bytes_total)
check shared/node-b-from-bucket "node B: $hits shared-store hits, $upb upstream bytes" [ "$hits" -gt 0 ] && [ "$upb" = 0 ]

if command -v promtool >/dev/null; then
	curl -sf "$B_URL/metrics" >"$T_TMP/b-metrics.txt"
	check shared/promtool "$(promtool check metrics <"$T_TMP/b-metrics.txt" 2>&1 | head -c 300)" \
		promtool check metrics <"$T_TMP/b-metrics.txt"
fi

# A corrupted object: same size, one byte changed.  Node C (empty store,
# upstream back) must not serve it as good, must report it, fetch the blob
# from upstream, and a retry gets the right bytes.
CCP_PORT_PX=$PX_PORT start_proxy PX "$UP_URL" pass || exit 1
victim=$(seed_q '.images[] | select(.ref == "test/single-docker:v1") | .platforms[0].layers[-1].digest')
victim=${victim#sha256:}
python3 - "$SEED_BLOBS/$victim" "$T_TMP/corrupt" <<-'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0xff
open(sys.argv[2], "wb").write(b)
PY
code=$(s3_cli -o /dev/null -w '%{http_code}' -T "$T_TMP/corrupt" "$S3_URL/$BUCKET/ci/blobs/sha256/$victim")
check shared/corrupt-object-planted "PUT of the corrupted object answered $code" [ "$code" = 200 ]
start_ccprewarm C "$PX_URL" --config "$(cfg C)" || exit 1
req GET "$C_URL/v2/test/single-docker/blobs/sha256:$victim"
first=$(sha256_of "$R_BODY")
if [ "$R_RC" -eq 0 ] && [ "$R_CODE" = 200 ] && [ "$first" != "$victim" ]; then
	fail shared/corrupt-never-clean "a clean 200 with the corrupted bytes"
else
	pass shared/corrupt-never-clean
fi
req GET "$C_URL/v2/test/single-docker/blobs/sha256:$victim"
check shared/corrupt-refetched "second GET: HTTP $R_CODE rc $R_RC, sha256 $(sha256_of "$R_BODY")" \
	[ "$R_CODE" = 200 ] && [ "$(sha256_of "$R_BODY")" = "$victim" ]
check shared/corrupt-reported "ccprewarm_shared_store_corrupt_total is $(metric "$C_URL" ccprewarm_shared_store_corrupt_total)" \
	[ "$(metric "$C_URL" ccprewarm_shared_store_corrupt_total)" -ge 1 ]
check shared/corrupt-logged "no warning in C's log" \
	grep -q "shared store object for sha256:$victim does not match its digest" "$C_LOG"
# The bucket's mapping is a fallback for an unreachable upstream only: a
# tag upstream answers "not found" for stays not found.
printf '%s\n%s\n%s\n' "$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .digest')" "$(date +%s)" \
	application/vnd.oci.image.manifest.v1+json >"$T_TMP/gone-tag"
s3_cli -o /dev/null -T "$T_TMP/gone-tag" "$S3_URL/$BUCKET/ci/tags/docker.io/test/single-oci%3Agone"
req GET "$C_URL/v2/test/single-oci/manifests/gone"
check shared/tag-not-found-not-stale "a tag upstream does not know: $(exchange), X-Cache '$(hdr X-Cache)'" \
	[ "$R_CODE" = 404 ] && [ "$(hdr X-Cache)" != STALE ]
n=$(proxy_stats PX | jq --arg d "sha256:$victim" '[.requests | to_entries[] | select(.key | endswith($d)) | .value] | add // 0')
check shared/corrupt-from-upstream "upstream saw $n GETs for the blob" [ "$n" -ge 1 ]
end=$((SECONDS + 60))
repaired=
while [ $SECONDS -lt $end ]; do
	repaired=$(s3_cli "$S3_URL/$BUCKET/ci/blobs/sha256/$victim" | sha256sum | cut -d' ' -f1)
	[ "$repaired" = "$victim" ] && break
	sleep 0.5
done
check shared/corrupt-repaired "the bucket still holds $repaired" [ "$repaired" = "$victim" ]

# shared-gc: node A pins three images (a recipe) and publishes its pin
# set; shared-gc keeps exactly the pinned blobs and deletes the rest.
PINNED=("library/alpine:3.19" "test/single-oci:v1" "test/shared-a:v1")
body=$(printf '"%s",' "${PINNED[@]}")
curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"recipe\": \"gc-test\", \"images\": [${body%,}]}" \
	"$A_URL/_ccprewarm/v1/enroll" || fail shared/gc-enroll "POST enroll to node A failed"
end=$((SECONDS + 120))
until [ "$(curl -sf "$A_URL/_ccprewarm/v1/recipes/gc-test" | jq -r .state)" = warm ] ||
	[ $SECONDS -ge $end ]; do
	sleep 0.3
done
PINS=$T_TMP/pins-a.txt
end=$((SECONDS + 30))
while [ $SECONDS -lt $end ]; do
	s3_cli -o "$PINS" "$S3_URL/$BUCKET/ci/pins/node-A.txt"
	[ -s "$PINS" ] && break
	sleep 0.5
done
want=0
for ref in "${PINNED[@]}"; do
	for dg in $(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | (.platforms[0].layers[].digest, .platforms[0].config.digest)'); do
		grep -qx "$dg" "$PINS" || want=$((want + 1))
	done
done
check shared/pins-published "node A's published pin set ($(wc -l <"$PINS") lines) lacks $want layers/configs of its pinned images" \
	[ -s "$PINS" ] && [ "$want" -eq 0 ]
GC=$(ccprewarm_bin)
# shared-gc talks to radosgw itself (A.json names the checking proxy)
cfg A >/dev/null
"$GC" shared-gc --config "$T_TMP/A.json" --min-age 0 --dry-run >"$T_TMP/gc-dry.out" 2>>"$T_OUT/gc.log"
rc=$?
note "$(cat "$T_TMP/gc-dry.out")"
inbucket() { [ "$(s3_cli -o /dev/null -w '%{http_code}' -I "$S3_URL/$BUCKET/ci/blobs/sha256/$1")" = 200 ]; }
check shared/gc-dry-run "dry run exited $rc or deleted something" [ "$rc" -eq 0 ] && inbucket "$big"
"$GC" shared-gc --config "$T_TMP/A.json" --min-age 0 >"$T_TMP/gc.out" 2>>"$T_OUT/gc.log"
rc=$?
note "$(cat "$T_TMP/gc.out")"
kept_bad=0
gone_bad=0
for d in $(ls "$SEED_BLOBS"); do
	if grep -qx "sha256:$d" "$PINS"; then
		inbucket "$d" || kept_bad=$((kept_bad + 1))
	else
		! inbucket "$d" || { gone_bad=$((gone_bad + 1)); note "unpinned, still in the bucket: $d"; }
	fi
done
check shared/gc-keeps-pinned "shared-gc exited $rc; $kept_bad pinned blobs missing after it" [ "$rc" -eq 0 ] && [ "$kept_bad" -eq 0 ]
check shared/gc-deletes-unpinned "$gone_bad unpinned blobs still in the bucket" [ "$gone_bad" -eq 0 ]
# Pin sets that are all empty: nothing is pinned, everything old goes.
sed 's|"prefix": "ci/"|"prefix": "nopins/"|' "$T_TMP/A.json" >"$T_TMP/N.json"
: >"$T_TMP/empty"
s3_cli -o /dev/null -T "$T_TMP/empty" "$S3_URL/$BUCKET/nopins/pins/node-x.txt"
s3_cli -o /dev/null -T "$SEED_BLOBS/$big" "$S3_URL/$BUCKET/nopins/blobs/sha256/$big"
"$GC" shared-gc --config "$T_TMP/N.json" --min-age 0 >"$T_TMP/gc-n.out" 2>>"$T_OUT/gc.log"
rc=$?
check shared/gc-empty-pin-sets "exit $rc: $(cat "$T_TMP/gc-n.out")" \
	[ "$rc" -eq 0 ] && [ "$(s3_cli -o /dev/null -w '%{http_code}' -I "$S3_URL/$BUCKET/nopins/blobs/sha256/$big")" = 404 ]
# No pin set under another prefix: shared-gc refuses, deletes nothing.
sed 's|"prefix": "ci/"|"prefix": "empty/"|' "$T_TMP/A.json" >"$T_TMP/E.json"
s3_cli -o /dev/null -T "$SEED_BLOBS/$big" "$S3_URL/$BUCKET/empty/blobs/sha256/$big"
"$GC" shared-gc --config "$T_TMP/E.json" --min-age 0 >/dev/null 2>"$T_TMP/gc-e.err"
rc=$?
check shared/gc-refuses-without-pins "exit $rc, $(head -c 300 "$T_TMP/gc-e.err")" \
	[ "$rc" -ne 0 ] && grep -q "no node has published a pin set" "$T_TMP/gc-e.err" &&
	[ "$(s3_cli -o /dev/null -w '%{http_code}' -I "$S3_URL/$BUCKET/empty/blobs/sha256/$big")" = 200 ]

# The bucket goes away while node D (empty store) pulls the set: every
# pull still completes, byte-identical, from upstream.
start_ccprewarm D "$PX_URL" --config "$(cfg D)" || exit 1
# radosgw is killed once D has served some blobs from the bucket.
(
	end=$((SECONDS + 120))
	until [ "$(metric "$D_URL" ccprewarm_shared_store_hits_total)" -ge 3 ] ||
		[ $SECONDS -ge $end ]; do
		sleep 0.05
	done
	kill -KILL -- "-$S3RGW_PID"
) &
killer=$!
pull_all "$D_HOSTPORT" shared/node-d-bucket-gone
wait "$killer"
errs=$(metric "$D_URL" ccprewarm_shared_store_errors_total)
skipped=$(metric "$D_URL" ccprewarm_shared_store_skipped_total)
note "node D: $errs shared-store errors, $skipped requests skipped (breaker open), $(metric "$D_URL" ccprewarm_shared_store_hits_total) hits"
dh=$(metric "$D_URL" ccprewarm_shared_store_hits_total)
check shared/node-d-noticed "node D: $dh hits before, $errs errors + $skipped skipped after" [ "$dh" -ge 3 ] && [ $((errs + skipped)) -gt 0 ]

# A bucket that accepts connections and never answers: node E's pulls
# still complete from upstream (one lookup waits response_timeout_ms, then
# the breaker skips the bucket).
start_blackhole BH || exit 1
sed "s|\"url\": \"$S3_URL\"|\"url\": \"$BH_URL\"|" "$(cfg E)" >"$T_TMP/E-bh.json"
start_ccprewarm E "$PX_URL" --config "$T_TMP/E-bh.json" || exit 1
t0=$SECONDS
ref=test/single-oci:v1
dest=$T_TMP/pull/e
if ! skopeo_copy "$E_HOSTPORT" "$ref" "$dest"; then
	fail shared/node-e-blackholed-bucket "skopeo copy failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
elif why=$(verify_dir "$dest" "$ref"); then
	pass shared/node-e-blackholed-bucket
else
	fail shared/node-e-blackholed-bucket "$why"
fi
note "node E: pull with a black-holed bucket took $((SECONDS - t0)) s; $(metric "$E_URL" ccprewarm_shared_store_errors_total) errors, $(metric "$E_URL" ccprewarm_shared_store_skipped_total) skipped"
check shared/node-e-breaker "breaker never opened" [ "$(metric "$E_URL" ccprewarm_shared_store_breaker_opens_total)" -ge 1 ]

for n in A B C D E; do
	stop "$n" 20
	check "shared/exit-$n" "exited $STOP_RC" [ "$STOP_RC" = 0 ]
	lv="${n}_LOG"
	r=$(asan_report "${!lv}")
	check "shared/sanitizers-$n" "$r" [ -z "$r" ]
done
t_done
