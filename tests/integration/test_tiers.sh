#!/usr/bin/env bash
# test_tiers.sh: a tier of caches (issue 16, tiers part; what works today).
# One parent ccprewarm in front of the origin (docker-registry), three
# children whose upstream is the parent, three clients per child pulling the
# same cold set at once.  The origin's own access log must show each blob
# fetched exactly once, each tag asked once although the children re-check
# tags on every request, every pull byte-identical; a HEAD at a child warms
# the parent; with the origin stopped every child still serves the set.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init tiers

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm P "$UP_URL" || exit 1
# Children re-check tags on every request (--tag-freshness 0), the parent
# keeps its default window: the origin must see each tag once.
for c in C1 C2 C3; do
	start_ccprewarm "$c" "$P_URL" --tag-freshness 0 || exit 1
done
REFS=(test/single-oci:v1 test/single-docker:v1 test/shared-a:v1 test/shared-b:v1)
# Start counting the origin's blob GETs from here.
: >"$T_TMP/mark"
up_before=$(wc -l <"$UP_LOG")

pids=()
for c in C1 C2 C3; do
	hpv="${c}_HOSTPORT"
	for k in 1 2 3; do
		(
			for ref in "${REFS[@]}"; do
				d=$T_TMP/pull/$c-$k/${ref//[\/:]/_}
				rm -rf "$d"
				mkdir -p "$(dirname "$d")"
				timeout 300 skopeo --policy "$T_TMP/policy.json" copy \
					--src-tls-verify=false --retry-times 0 --preserve-digests \
					"docker://${!hpv}/$ref" "dir:$d" >>"$T_OUT/skopeo-$c-$k.log" 2>&1 ||
					echo "$ref" >>"$T_TMP/failed-$c-$k"
			done
		) &
		pids+=($!)
	done
done
wait "${pids[@]}"
bad=
for c in C1 C2 C3; do
	for k in 1 2 3; do
		[ -s "$T_TMP/failed-$c-$k" ] && bad="$bad $c-$k:$(tr '\n' ',' <"$T_TMP/failed-$c-$k")"
		for ref in "${REFS[@]}"; do
			why=$(verify_dir "$T_TMP/pull/$c-$k/${ref//[\/:]/_}" "$ref") || bad="$bad $c-$k:$ref:$why"
		done
	done
done
check tiers/nine-clients-identical "pulls failed or differ:${bad:0:600}" [ -z "$bad" ]

tail -n +"$((up_before + 1))" "$UP_LOG" >"$T_TMP/up.log"
counts=$(registry_blob_gets "$T_TMP/up.log" | awk '$1 == 200 { n[$2]++ } END { for (d in n) print n[d], d }' | sort -k2)
want=$(for ref in "${REFS[@]}"; do
	seed_q --arg r "$ref" '.images[] | select(.ref == $r) | (.platforms[].layers[].digest, .platforms[].config.digest)'
done | sort -u)
nwant=$(echo "$want" | wc -l)
ngot=$(echo "$counts" | grep -c .)
multi=$(echo "$counts" | awk '$1 > 1' | head -5 | tr '\n' ' ')
tagreqs=$(grep -oE '"(GET|HEAD) /v2/[^ ]+/manifests/[^ @:]+ HTTP' "$T_TMP/up.log" |
	grep -v '/manifests/sha256' | awk '{ n[$2]++ } END { for (k in n) print n[k], k }' | sort -k2)
ntag=$(echo "$tagreqs" | grep -c .)
tagmulti=$(echo "$tagreqs" | awk '$1 > 1' | tr '\n' ' ')
check tiers/tag-freshness-not-stacked "origin saw $ntag tags (want ${#REFS[@]}), more than once: ${tagmulti:-none}" \
	[ "$ntag" -eq "${#REFS[@]}" ] && [ -z "$tagmulti" ]
# and the children did re-check: their parent saw more than one request per tag
nrecheck=$(grep -c '/manifests/v1"' "$P_LOG")
check tiers/children-rechecked "children made $nrecheck tag requests to the parent" \
	[ "$nrecheck" -gt $((3 * ${#REFS[@]})) ]
check tiers/origin-each-blob-once "origin served $ngot distinct blobs (want $nwant), more than once: ${multi:-none}" \
	[ "$ngot" -eq "$nwant" ] && [ -z "$multi" ]

# A client HEADs a blob nobody has at child C1: the parent fills it (a
# parent that fills only on GET leaves the tier cold).
hd=$(seed_q '.images[] | select(.ref == "test/multi-docker:v1") | .platforms[0].layers[-1].digest')
req HEAD "$C1_URL/v2/test/multi-docker/blobs/$hd"
check tiers/child-head "HEAD at the child answered $R_CODE" [ "$R_CODE" = 200 ]
end=$((SECONDS + 30))
until store_has "$P_DATA" "$hd" || [ $SECONDS -ge $end ]; do sleep 0.2; done
check tiers/parent-fills-on-head "the parent did not store $hd after the child's HEAD" store_has "$P_DATA" "$hd"

# X-Cache says which tier served: a blob cold everywhere is "MISS, MISS"
# at a child, one the parent has is "MISS, HIT".
# a layer of multi-docker that no image pulled so far has
cold=$(seed_q '.images[] | select(.ref == "test/multi-docker:v1") | .platforms[].layers[].digest' |
	grep -vxF -e "$hd" -f <(echo "$want") | head -n 1)
req GET "$C1_URL/v2/test/multi-docker/blobs/$cold"
check tiers/x-cache-cold "X-Cache '$(hdr X-Cache)', HTTP $R_CODE" [ "$(hdr X-Cache)" = "MISS, MISS" ]

# A client's Range on a blob cold everywhere, at a child that knows its
# upstream is a parent (a reply carried its X-Cache): the child forwards
# the Range (the proxy between them counts ranged requests), relays the
# parent's 206 byte for byte, and fills the whole blob beside it; the
# origin serves the blob once.
start_proxy TPX "$P_URL" pass || exit 1
start_ccprewarm C4 "$TPX_URL" || exit 1
req GET "$C4_URL/v2/test/single-oci/manifests/v1"
rg=$(seed_q '.images[] | select(.ref == "test/multi-docker:v1") | .platforms[].layers[].digest' |
	grep -vxF -e "$hd" -e "$cold" -f <(echo "$want") | head -n 1)
rgsize=$(stat -c %s "$SEED_BLOBS/${rg#sha256:}")
rgoff=$((rgsize / 3))
req GET "$C4_URL/v2/test/multi-docker/blobs/$rg" -H "Range: bytes=$rgoff-"
tail -c +$((rgoff + 1)) "$SEED_BLOBS/${rg#sha256:}" >"$T_TMP/range-want"
check tiers/range-at-child "ranged GET of a cold blob at a child: $(exchange), Content-Range '$(hdr Content-Range)'" \
	[ "$R_CODE" = 206 ] && cmp -s "$R_BODY" "$T_TMP/range-want" &&
	[ "$(hdr Content-Range)" = "bytes $rgoff-$((rgsize - 1))/$rgsize" ]
nr=$(proxy_stats TPX | jq '.ranged')
check tiers/range-forwarded "the parent saw $nr ranged requests from the child" [ "$nr" -ge 1 ]
end=$((SECONDS + 30))
until store_has "$C4_DATA" "$rg" || [ $SECONDS -ge $end ]; do sleep 0.2; done
check tiers/range-child-filled "the child did not store $rg beside the range" store_has "$C4_DATA" "$rg"
n=$(registry_blob_gets "$UP_LOG" | awk -v d="$rg" '$2 == d' | wc -l)
check tiers/range-origin-once "the origin served $rg $n times" [ "$n" -eq 1 ]
# Bytes corrupted between parent and child: the relayed range is never a
# clean 206 with wrong bytes (its last byte waits for the blob to verify
# here and for the relayed bytes to match it).
rcline=$(seed_q '.images[] | (.ref | split(":")[0]) as $r | .platforms[].layers[] | select(.size > 4096) | "\($r) \(.digest)"' |
	grep -vF -e "$hd" -e "$cold" -e "$rg" -f <(echo "$want") | head -n 1)
rcrepo=${rcline% *}
rc2=${rcline#* }
[ -n "$rc2" ] || fail tiers/range-corrupt-blob "no cold layer left in the seed"
curl -sf -o /dev/null -X POST "$TPX_URL/_proxy/mode?m=corrupt"
rcsize=$(stat -c %s "$SEED_BLOBS/${rc2#sha256:}")
req GET "$C4_URL/v2/$rcrepo/blobs/$rc2" -H "Range: bytes=$((rcsize / 3))-"
tail -c +$((rcsize / 3 + 1)) "$SEED_BLOBS/${rc2#sha256:}" >"$T_TMP/range-want2"
if [ "$R_RC" -eq 0 ] && [ "$R_CODE" = 206 ] && ! cmp -s "$R_BODY" "$T_TMP/range-want2"; then
	fail tiers/range-corrupt-never-clean "a clean 206 with wrong bytes"
else
	pass tiers/range-corrupt-never-clean
fi
curl -sf -o /dev/null -X POST "$TPX_URL/_proxy/mode?m=pass"

# The Accept list goes up as the client sent it: a client that takes no
# index gets the linux/amd64 manifest of a multi-platform tag through the
# tier (as from the origin), and one that takes indexes gets the index.
amd=$(seed_q '.images[] | select(.ref == "test/multi-docker:v1") | .platforms[] | select(.platform.architecture == "amd64") | .digest')
idx=$(seed_q '.images[] | select(.ref == "test/multi-docker:v1") | .digest')
req GET "$C3_URL/v2/test/multi-docker/manifests/v1" -H "Accept: application/vnd.docker.distribution.manifest.v2+json"
check tiers/accept-narrow "no-index Accept at a child: $(exchange), digest $(hdr Docker-Content-Digest)" \
	[ "$R_CODE" = 200 ] && [ "$(hdr Docker-Content-Digest)" = "$amd" ] &&
	[ "$(hdr Content-Type)" = application/vnd.docker.distribution.manifest.v2+json ]
req GET "$C3_URL/v2/test/multi-docker/manifests/v1" -H "Accept: application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"
check tiers/accept-index "index Accept at a child: $(exchange), digest $(hdr Docker-Content-Digest)" \
	[ "$R_CODE" = 200 ] && [ "$(hdr Docker-Content-Digest)" = "$idx" ]

stop UP
req GET "$C2_URL/v2/test/multi-docker/blobs/$hd"
check tiers/head-warmed-tier "GET at another child with the origin stopped: $R_CODE" \
	[ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "$hd" ]
check tiers/x-cache-parent "X-Cache '$(hdr X-Cache)'" [ "$(hdr X-Cache)" = "MISS, HIT" ]
req GET "$C2_URL/v2/test/multi-docker/blobs/$hd"
check tiers/x-cache-own "X-Cache '$(hdr X-Cache)'" [ "$(hdr X-Cache)" = "HIT" ]
tf=$(curl -sf "$C2_URL/metrics" | awk '$1 == "ccprewarm_tier_fills_total{tier=\"parent\"}" { print $2 }')
check tiers/metrics-tier "C2's ccprewarm_tier_fills_total{tier=\"parent\"} is '$tf'" [ "${tf:-0}" -ge 1 ]
bad=
for c in C1 C2 C3; do
	hpv="${c}_HOSTPORT"
	for ref in "${REFS[@]}"; do
		d=$T_TMP/pull/offline-$c/${ref//[\/:]/_}
		if ! skopeo_copy "${!hpv}" "$ref" "$d"; then
			bad="$bad $c:$ref"
		elif ! why=$(verify_dir "$d" "$ref"); then
			bad="$bad $c:$ref:$why"
		fi
	done
done
check tiers/origin-stopped "children could not serve:${bad:0:600}" [ -z "$bad" ]
for n in C1 C2 C3 C4 P; do
	stop "$n" 20
	lv="${n}_LOG"
	r=$(asan_report "${!lv}")
	check "tiers/exit-$n" "exit $STOP_RC ${r}" [ "$STOP_RC" = 0 ] && [ -z "$r" ]
done
t_done
