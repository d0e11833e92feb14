#!/usr/bin/env bash
# test_coldpath.sh: the cold path's commit order (issue 13).  A manifest is
# answered as soon as its digest matched, and written, fsynced and indexed
# afterwards (worker pool, then the loop).
#  - kill -9 while cold manifests are being answered, several rounds, each
#    on a fresh store: the store as the kill left it (offline `verify`,
#    re-hashing, before any restart repairs it) has no index entry without
#    its complete, correct file ("missing", "corrupt"): nothing was indexed
#    before its file was in place.  Files not yet indexed ("orphan") and
#    temp files are what a kill may leave; the restart's reconcile removes
#    them, and every manifest is then served with the seeded bytes.
#  - a manifest by digest asked right after its tag's reply joins the tag's
#    fill (or hits the store): upstream never sees a GET by that digest.
#    (The window between the reply and the index is a few ms of fsyncs, so
#    this guards the outcome; it did not catch a build without the join.)
#  - a blob's blocks are reserved when its length is known (fallocate, size
#    kept); a partial kept for resuming holds none past its end, and resumes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init coldpath

ROUNDS=${COLDPATH_ROUNDS:-8}
ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
mapfile -t REFS < <(seed_refs)
declare -A WANT
for ref in "${REFS[@]}"; do
	WANT[$ref]=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .digest')
done

# manifest_path REF: /v2/<repo>/manifests/<tag>
manifest_path() { echo "/v2/${1%:*}/manifests/${1##*:}"; }

bad_index=0 bad_bytes=0 kills=0
for ((round = 1; round <= ROUNDS; round++)); do
	CCP_DATA_DIR=$T_TMP/data-$round start_ccprewarm CCP "$UP_URL" || exit 1
	data=$CCP_DATA
	pids=()
	for ref in "${REFS[@]}"; do
		curl -s -m 20 -H "Accept: $ACCEPT" -o "$T_TMP/m.$round.${ref//[\/:]/_}" \
			"$CCP_URL$(manifest_path "$ref")" &
		pids+=($!)
	done
	# kill at a random moment in the first ~60 ms of replies
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", (r % 60) / 1000 }')"
	stop CCP 5 KILL
	kills=$((kills + 1))
	for p in "${pids[@]}"; do wait "$p"; done
	# the store exactly as the kill left it
	"$CCP_BIN" verify --json --data "$data" >"$T_TMP/verify.$round.json" 2>"$T_TMP/verify.$round.err"
	n=$(jq '[.problems[] | select(.kind != "orphan" and .kind != "temp")] | length' \
		"$T_TMP/verify.$round.json" 2>/dev/null)
	if [ "$n" != 0 ]; then
		bad_index=$((bad_index + 1))
		note "round $round: $(tr -d '\n' <"$T_TMP/verify.$round.json" | cut -c1-400) $(head -c 200 "$T_TMP/verify.$round.err")"
	fi
	CCP_DATA_DIR=$data start_ccprewarm CCP "$UP_URL" || exit 1
	for ref in "${REFS[@]}"; do
		req GET "$CCP_URL$(manifest_path "$ref")" -H "Accept: $ACCEPT"
		if [ "$R_CODE" != 200 ] || [ "sha256:$(sha256_of "$R_BODY")" != "${WANT[$ref]}" ]; then
			bad_bytes=$((bad_bytes + 1))
			note "round $round: $ref: $(exchange)"
		fi
	done
	stop CCP 10
done
check "coldpath/kill-indexed-only-when-stored" \
	"$bad_index of $kills kills left an index entry without its file" [ "$bad_index" -eq 0 ]
check "coldpath/kill-then-served-identical" \
	"$bad_bytes manifests wrong after a kill and restart" [ "$bad_bytes" -eq 0 ]

# A tag, then at once the same manifest by digest: no upstream GET by digest.
CCP_DATA_DIR=$T_TMP/data-join start_ccprewarm CCP "$UP_URL" || exit 1
before=$(wc -l <"$T_OUT/registry-UP.log")
bad_join=0
for ref in "${REFS[@]}"; do
	req GET "$CCP_URL$(manifest_path "$ref")" -H "Accept: $ACCEPT"
	d=$(hdr Docker-Content-Digest)
	req GET "$CCP_URL/v2/${ref%:*}/manifests/$d" -H "Accept: $ACCEPT"
	if [ "$R_CODE" != 200 ] || [ "sha256:$(sha256_of "$R_BODY")" != "$d" ] || [ "$d" != "${WANT[$ref]}" ]; then
		bad_join=$((bad_join + 1))
		note "$ref by digest: $(exchange)"
	fi
done
stop CCP 10
ups=$(tail -n +"$((before + 1))" "$T_OUT/registry-UP.log" |
	grep -cE '"GET /v2/[^ ]+/manifests/sha256:[0-9a-f]{64} HTTP')
check "coldpath/digest-after-tag-served" "$bad_join wrong" [ "$bad_join" -eq 0 ]
check "coldpath/digest-after-tag-no-upstream" \
	"upstream saw $ups manifest GETs by digest" [ "$ups" -eq 0 ]

# Reserved blocks: a 4 MiB blob through a 64 KiB/s proxy, abandoned by a
# stop (SIGTERM) after about a second.
MIB=1048576
make_blob "$T_TMP/big" $((4 * MIB))
D=$(push_blob "$UP_URL" plain/blobs "$T_TMP/big") || { fail coldpath/push "cannot push the blob"; exit 1; }
start_proxy PX "$UP_URL" slow --rate 64 || exit 1
CCP_DATA_DIR=$T_TMP/data-partial start_ccprewarm CCP "$PX_URL" || exit 1
p=$(partial_of "$CCP_DATA" "$D")
curl -s -m 1 -o /dev/null "$CCP_URL/v2/plain/blobs/blobs/$D"
reserved=$(stat -c '%b %B' "$p" 2>/dev/null | awk '{ print $1 * $2 }')
stop CCP 10
read -r size blocks < <(stat -c "%s %b" "$p" 2>/dev/null | awk '{ print $1, $2 * 512 }')
note "while streaming: ${reserved:-?} bytes allocated; kept partial: ${size:-?} bytes, ${blocks:-?} allocated"
check "coldpath/blocks-reserved" "only ${reserved:-no} bytes allocated while streaming" \
	[ "${reserved:-0}" -ge $((4 * MIB)) ]
check "coldpath/partial-kept" "no partial file" \
	[ "${size:-0}" -gt 0 -a "${size:-0}" -lt $((4 * MIB)) ]
check "coldpath/partial-no-reserved-tail" "$blocks bytes allocated for $size" \
	[ "${blocks:-0}" -le $(((${size:-0} + 8191) / 4096 * 4096)) ]
CCP_DATA_DIR=$CCP_DATA start_ccprewarm CCP "$UP_URL" || exit 1
req GET "$CCP_URL/v2/plain/blobs/blobs/$D"
got=$R_CODE:sha256:$(sha256_of "$R_BODY")
check "coldpath/partial-resumed" "$(exchange)" [ "$got" = "200:$D" ]
stop CCP 10
t_done
