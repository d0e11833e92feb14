#!/usr/bin/env bash
# test_enroll.sh: pre-warming a recipe (issue 6).  Three docker-registry
# instances stand in for docker.io, ghcr.io and quay.io, seeded by
# tests/tools/seed_recipe.py with generated images under exactly the
# repositories and tags of tests/data/recipes/lasuite-docs (multi-arch
# indexes and single manifests, Docker and OCI media types, layers shared
# between images and across registries).  `ccprewarm enroll` exits 0; the
# store holds every digest of the linux/amd64 closure and nothing
# arm64-only; each blob came from upstream once; the recipe is pinned and
# listed warm; enrolling it again makes no blob request upstream; with
# every upstream stopped, skopeo (and a private dockerd, as root) pull each
# image through ccprewarm; unenroll releases the pins.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init enroll

RECIPE=lasuite-docs
mkdir -p "$T_TMP/recipes"
cp -r "$TOP/tests/data/recipes/$RECIPE" "$T_TMP/recipes/"

start_registry HUB || exit 1
start_registry GHCR || exit 1
start_registry QUAY || exit 1
seed_recipe "$T_OUT/seed.json" --expected "$TOP/tests/data/recipes/expected-images.json" \
	--recipe "$RECIPE" --layers 2 --size-kb 3072 \
	--registry "docker.io=$HUB_URL" --registry "ghcr.io=$GHCR_URL" \
	--registry "quay.io=$QUAY_URL" || exit 1
NIMG=$(seed_q '.images | length')
NCLOSURE=$(seed_q '.amd64_closure | length')
CLOSURE_BYTES=$(seed_q '[.amd64_closure[]] | add')
note "seeded $NIMG images; amd64 closure: $NCLOSURE digests, $CLOSURE_BYTES bytes; $(seed_q '.arm64_only | length') arm64-only digests"
# What the seed must exercise: every registry, indexes and single
# manifests, Docker and OCI media types, a layer shared by exactly two
# images and one shared by more.
variety=$(seed_q '[
	([.images[].host] | unique | length == 3),
	(any(.images[]; .kind == "index") and any(.images[]; .kind == "manifest")),
	(any(.images[]; .mediaType | test("docker")) and any(.images[]; .mediaType | test("oci"))),
	([.images[] | .amd64_closure[]] | group_by(.) | map(length) | (any(. == 2) and any(. > 2)))
	] | map(tostring) | join(" ")')
check_eq enroll/seed-variety "$variety" "true true true true" \
	"seed: 3 registries, index+manifest, docker+oci, layers shared by 2 and by more"

# Tags are re-checked upstream after FRESH seconds: `warm` below runs past
# that, and the offline pulls get the cached tags as STALE.
FRESH=3
ccp_config "$T_TMP/ccp.json" linux/amd64
start_ccprewarm CCP "$HUB_URL" --config "$T_TMP/ccp.json" \
	--upstream "ghcr.io=$GHCR_URL" --upstream "quay.io=$QUAY_URL" \
	--access-log "$T_OUT/access.log" --tag-freshness "$FRESH" || exit 1
M=$CCP_URL
UPLOGS=("$HUB_LOG" "$GHCR_LOG" "$QUAY_LOG")
# upstream_blob_gets: "status digest" per blob GET the three upstreams
# answered (seed_recipe.py only HEADs and PUTs, so all are ccprewarm's).
upstream_blob_gets() {
	local f
	for f in "${UPLOGS[@]}"; do registry_blob_gets "$f"; done
}

# -- enroll
t0=$SECONDS
ccp_run enroll enroll "$RECIPE" --recipes-dir "$T_TMP/recipes" --server "$M"
if [ "$CLI_RC" -eq 0 ]; then
	pass enroll/exit-0
else
	fail enroll/exit-0 "enroll exited $CLI_RC after $((SECONDS - t0))s: $(tail -n 12 "$CLI_OUT" "$CLI_ERR" | tr '\n' '|' | cut -c1-600)"
fi
note "enroll took $((SECONDS - t0))s"

# -- the store: the whole amd64 closure, verified; nothing arm64-only.
missing=
for d in $(seed_q '.amd64_closure | keys[]'); do
	store_has "$CCP_DATA" "$d" || missing="$missing ${d:7:12}"
done
if [ -z "$missing" ]; then
	pass enroll/store-has-amd64-closure
else
	fail enroll/store-has-amd64-closure "missing or corrupt in DATA/blobs:$missing"
fi
stray=
for d in $(seed_q '.arm64_only[]'); do
	[ -e "$(store_path "$CCP_DATA" "$d")" ] && stray="$stray ${d:7:12}"
done
if [ -z "$stray" ]; then
	pass enroll/store-no-arm64
else
	fail enroll/store-no-arm64 "arm64-only digests in DATA/blobs:$stray"
fi
nstore=$(find "$CCP_DATA/blobs" -type f | wc -l)
check_eq enroll/store-exact "$nstore" "$NCLOSURE" "files in DATA/blobs vs digests of the amd64 closure"

# -- upstream traffic of the enroll: every closure blob exactly once
# (shared layers once, across registries too), no arm64-only blob.
upstream_blob_gets >"$T_TMP/gets1.txt"
bad=
for d in $(seed_q '.amd64_closure | keys[]'); do
	if seed_q --arg d "$d" '.blobs[$d] != null' | grep -q true; then
		n=$(grep -c " $d\$" "$T_TMP/gets1.txt")
		[ "$n" -eq 1 ] || bad="$bad ${d:7:12}x$n"
	fi
done
if [ -z "$bad" ]; then
	pass enroll/each-blob-fetched-once
else
	fail enroll/each-blob-fetched-once "blob GETs at the upstreams per digest (want 1 each):$bad"
fi
bad=
for d in $(seed_q '.arm64_only[]'); do
	grep -q " $d\$" "$T_TMP/gets1.txt" && bad="$bad ${d:7:12}"
done
if [ -z "$bad" ]; then
	pass enroll/no-arm64-fetched
else
	fail enroll/no-arm64-fetched "arm64-only blobs asked upstream:$bad"
fi

# -- pinned, listed and reported warm.
scrape "$M" "$T_TMP/m1.txt"
pb=$(metric "$T_TMP/m1.txt" ccprewarm_pinned_bytes)
if [ -n "$pb" ] && [ "$pb" -gt 0 ]; then
	pass enroll/pinned-bytes
else
	fail enroll/pinned-bytes "ccprewarm_pinned_bytes is '$pb', want > 0"
fi
check_eq enroll/pinned-bytes-exact "$pb" "$CLOSURE_BYTES" "ccprewarm_pinned_bytes vs the amd64 closure's bytes"
check_eq enroll/metric-recipe-warm \
	"$(metric "$T_TMP/m1.txt" "ccprewarm_recipe_images{recipe=\"$RECIPE\",state=\"warm\"}")" "$NIMG" \
	"ccprewarm_recipe_images{recipe=\"$RECIPE\",state=\"warm\"}"

ccp_run status status "$RECIPE" --server "$M" --json
st=$(jq -r '"\(.state) \(.images_done)/\(.images_total) \(.digests)"' "$CLI_OUT" 2>/dev/null)
check_eq enroll/status-warm "$CLI_RC $st" "0 warm $NIMG/$NIMG $NCLOSURE" \
	"status --json: exit, state, images done/total, digests"
bad=$(jq -r '.images[] | select(.state != "warm") | .ref' "$CLI_OUT" 2>/dev/null)
want=$(seed_q '.images[].canonical' | sort)
got=$(jq -r '.images[].ref' "$CLI_OUT" 2>/dev/null | sort)
if [ -z "$bad" ] && [ "$got" = "$want" ]; then
	pass enroll/status-images
else
	fail enroll/status-images "images not warm: $bad; refs: $(echo "$got" | tr '\n' ' ')"
fi

CCPREWARM_SERVER=$M ccp_run list list --json
st=$(jq -r --arg r "$RECIPE" '.[] | select(.recipe == $r) | .state' "$CLI_OUT" 2>/dev/null)
check_eq enroll/list-warm "$CLI_RC $st" "0 warm" "list --json (server from CCPREWARM_SERVER): exit and state"
CCPREWARM_SERVER=$M ccp_run list-human list
if [ "$CLI_RC" -eq 0 ] && grep -qE "^$RECIPE .* warm\$" "$CLI_OUT"; then
	pass enroll/list-human
else
	fail enroll/list-human "list: exit $CLI_RC: $(head -c 300 "$CLI_OUT" | tr '\n' '|')"
fi

# -- enrolling the warm recipe again: no blob request upstream.
gets1=$(upstream_blob_gets | wc -l)
ccp_run enroll-again enroll "$RECIPE" --recipes-dir "$T_TMP/recipes" --server "$M" --json
gets2=$(upstream_blob_gets | wc -l)
if [ "$CLI_RC" -eq 0 ] && [ "$(jq -r .state "$CLI_OUT" 2>/dev/null)" = warm ]; then
	pass enroll/again-exit-0
else
	fail enroll/again-exit-0 "second enroll: exit $CLI_RC, $(head -c 300 "$CLI_OUT" "$CLI_ERR" | tr '\n' ' ')"
fi
check_eq enroll/again-no-blob-requests $((gets2 - gets1)) 0 "blob GETs at the upstreams during the second enroll"
check_eq enroll/again-nothing-fetched "$(jq -r .bytes_fetched "$CLI_OUT" 2>/dev/null)" 0 "bytes_fetched of the second enroll"

# `warm` once the tags are past their freshness: tags are asked again,
# blobs are not.
sleep $((FRESH + 1))
gets1=$(upstream_blob_gets | wc -l)
ccp_run warm warm --server "$M" --json
gets2=$(upstream_blob_gets | wc -l)
if [ "$CLI_RC" -eq 0 ] && [ "$(jq -r .state "$CLI_OUT" 2>/dev/null)" = warm ]; then
	pass enroll/warm-exit-0
else
	fail enroll/warm-exit-0 "warm: exit $CLI_RC, $(head -c 300 "$CLI_OUT" "$CLI_ERR" | tr '\n' ' ')"
fi
check_eq enroll/warm-no-blob-requests $((gets2 - gets1)) 0 "blob GETs at the upstreams during \`warm\` with stale tags"

# -- every upstream stopped: pulls come from the store.
stop HUB 10
stop GHCR 10
stop QUAY 10
if curl -s -m 2 -o /dev/null "$HUB_URL/v2/" || curl -s -m 2 -o /dev/null "$QUAY_URL/v2/"; then
	fail enroll/upstreams-down "an upstream still answers after being stopped"
fi
for ref in $(seed_q '.images[].ref'); do
	dest=$T_TMP/pull/offline/${ref//[\/:]/_}
	if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest"; then
		fail "enroll/offline-skopeo/$ref" "skopeo copy failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(verify_dir "$dest" "$ref"); then
		pass "enroll/offline-skopeo/$ref"
	else
		fail "enroll/offline-skopeo/$ref" "$why"
	fi
done

# A private dockerd with ccprewarm as its registry mirror: docker.io
# images only (dockerd sends nothing else through a mirror).
if ! is_root; then
	skip enroll/offline-dockerd "needs root for a private dockerd"
elif ! command -v dockerd >/dev/null; then
	skip enroll/offline-dockerd "dockerd not installed"
elif ! start_dockerd D "$M"; then
	fail enroll/offline-dockerd "private dockerd did not come up (see dockerd-D.log)"
else
	for ref in $(seed_q '.images[] | select(.host == "docker.io") | .ref'); do
		want_digest=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .digest')
		want_id=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .platforms[] |
			select(.platform.architecture == "amd64") | .config.digest')
		short=${ref#library/}
		echo "+ docker pull $short" >>"$T_OUT/docker.log"
		if ! dockercli D pull "$short" >>"$T_OUT/docker.log" 2>&1; then
			fail "enroll/offline-dockerd/$short" "docker pull failed: $(tail -n 1 "$T_OUT/docker.log" | cut -c1-300)"
			continue
		fi
		got=$(dockercli D image inspect "$short" --format '{{.Id}} {{range .RepoDigests}}{{.}} {{end}}' 2>&1)
		if [[ " $got " == *"@$want_digest "* ]] && [[ $got == "$want_id "* ]]; then
			pass "enroll/offline-dockerd/$short"
		else
			fail "enroll/offline-dockerd/$short" "pulled, but want ID $want_id and RepoDigest @$want_digest: $got"
		fi
	done
	stop D 30
fi

# -- unenroll: the pins go.
ccp_run unenroll unenroll "$RECIPE" --server "$M"
if [ "$CLI_RC" -eq 0 ]; then
	pass enroll/unenroll-exit-0
else
	fail enroll/unenroll-exit-0 "unenroll exited $CLI_RC: $(head -c 300 "$CLI_ERR")"
fi
scrape "$M" "$T_TMP/m2.txt"
check_eq enroll/unenroll-pinned-0 "$(metric "$T_TMP/m2.txt" ccprewarm_pinned_bytes)" 0 "ccprewarm_pinned_bytes after unenroll"
if grep -q "^ccprewarm_recipe_images{recipe=\"$RECIPE\"" "$T_TMP/m2.txt"; then
	fail enroll/unenroll-metrics "ccprewarm_recipe_images still has $RECIPE samples"
else
	pass enroll/unenroll-metrics
fi
ccp_run list-after list --server "$M" --json
check_eq enroll/unenroll-list "$CLI_RC $(jq -c --arg r "$RECIPE" '[.[] | select(.recipe == $r)]' "$CLI_OUT" 2>/dev/null)" "0 []" \
	"list --json after unenroll: exit and the recipe's entries"
ccp_run status-after status "$RECIPE" --server "$M" --json
if [ "$CLI_RC" -ne 0 ] && [ "$(nlines "$CLI_ERR")" -eq 1 ]; then
	pass enroll/unenroll-status
else
	fail enroll/unenroll-status "status after unenroll: want non-zero and one error line; exit $CLI_RC: $(head -c 300 "$CLI_OUT" "$CLI_ERR" | tr '\n' ' ')"
fi
# The blobs themselves stay (no eviction yet): the store still serves them.
check_eq enroll/unenroll-store-kept "$(find "$CCP_DATA/blobs" -type f | wc -l)" "$NCLOSURE" "files in DATA/blobs after unenroll"

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail enroll/still-running "ccprewarm died during the test"
fi
t_done
