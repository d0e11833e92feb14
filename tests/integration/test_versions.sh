#!/usr/bin/env bash
# test_versions.sh: version windows (issue 14).  A recipe checkout built
# here as a real git repository with tagged versions (compose files
# changing images between tags, an image and a base layer shared between
# versions, one pre-release tag), images seeded into a docker-registry:
# `enroll --versions 2` pins exactly the two newest release closures, each
# shared blob fetched once; a new tag then `warm`: the new closure is
# fetched and pinned, the oldest version unpinned (its blobs kept); with a
# small budget `gc` (offline, on the data dir) evicts exactly the blobs no
# pinned version uses; `--catalogue` enrolls the same closures as the git
# route; a wrong catalogue digest is a one-line error naming recipe,
# version and service; with the upstream stopped both versions pull.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init versions

R=vrecipe
RD=$T_TMP/recipes/$R
APP=ccp-it/vapp
DB=ccp-it/vdb

start_registry HUB || exit 1
seed_recipe "$T_OUT/seed.json" --layers 1 --size-kb 256 \
	--image "$APP:1.0" --image "$APP:1.1" --image "$DB:15" \
	--image "$APP:1.2-rc" --image "$APP:1.3" --image "$DB:16" \
	--registry "docker.io=$HUB_URL" || exit 1

# closure REF...: the amd64 closure digests of the images, one per line.
closure() {
	local r
	for r in "$@"; do
		seed_q --arg c "docker.io/$r" '.images[] | select(.canonical == $c) | .amd64_closure[]'
	done | sort -u
}
# bytes_of FILE: the total size of the digests listed in FILE.
bytes_of() {
	seed_q --rawfile l "$1" '. as $s | [$l | split("\n")[] | select(. != "") | $s.amd64_closure[.]] | add // 0'
}

# -- the recipe checkout: three tags, one of them a pre-release
compose() {
	printf 'version: "3.8"\nservices:\n  app:\n    image: %s\n  db:\n    image: %s\n' "$1" "$2" >"$RD/compose.yml"
}
git_rd() { git -C "$RD" -c user.name=t -c user.email=t@t "$@" >>"$T_OUT/git.log" 2>&1; }
mkdir -p "$RD"
git_rd init -q
compose "$APP:1.0" "$DB:15"
git_rd add compose.yml && git_rd commit -qm 0.1.0
c1=$(git -C "$RD" rev-parse HEAD)
compose "$APP:1.1" "$DB:15"
git_rd commit -qam 0.2.0

closure "$APP:1.0" "$DB:15" >"$T_TMP/c010"
closure "$APP:1.1" "$DB:15" >"$T_TMP/c020"
closure "$APP:1.3" "$DB:16" >"$T_TMP/c030"
closure "$APP:1.2-rc" >"$T_TMP/crc"
sort -u "$T_TMP/c010" "$T_TMP/c020" >"$T_TMP/win1"
sort -u "$T_TMP/c020" "$T_TMP/c030" >"$T_TMP/win2"
comm -23 "$T_TMP/crc" "$T_TMP/win1" >"$T_TMP/rc-only"
comm -23 "$T_TMP/c010" "$T_TMP/win2" >"$T_TMP/old-only"
shared=$(comm -12 "$T_TMP/c010" "$T_TMP/c020" | wc -l)
note "closures: 0.1.0 $(nlines "$T_TMP/c010"), 0.2.0 $(nlines "$T_TMP/c020"), shared $shared; 0.3.0 $(nlines "$T_TMP/c030")"

ccp_config "$T_TMP/ccp.json" linux/amd64
start_ccprewarm CCP "$HUB_URL" --config "$T_TMP/ccp.json" || exit 1
M=$CCP_URL

# -- no release tags yet: the checkout is enrolled as it is
ccp_run enroll-checkout enroll "$R" --recipes-dir "$T_TMP/recipes" --server "$M" --json
check_eq versions/checkout "$CLI_RC $(jq -c '[.state, [.versions[] | .version, .pinned, (.reasons | join(","))]]' "$CLI_OUT" 2>/dev/null)" \
	'0 ["warm",["",true,"checkout"]]' "enroll of an untagged checkout: exit, state, versions, why"
ccp_run enroll-checkout-n enroll "$R" --recipes-dir "$T_TMP/recipes" --versions 2 --server "$M"
if [ "$CLI_RC" -ne 0 ] && [ "$(nlines "$CLI_ERR")" -eq 1 ] && grep -q "no release tags" "$CLI_ERR"; then
	pass versions/checkout-versions-refused
else
	fail versions/checkout-versions-refused "want one error line about release tags; exit $CLI_RC: $(head -c 300 "$CLI_ERR")"
fi
git_rd tag 0.1.0+1.0 "$c1" && git_rd tag 0.2.0+1.1
compose "$APP:1.2-rc" "$DB:15"
git_rd commit -qam rc && git_rd tag 0.3.0-rc1+1.2

# -- enroll --versions 2 (the window replaces the checkout version)
ccp_run enroll enroll "$R" --recipes-dir "$T_TMP/recipes" --versions 2 --server "$M" --json
check_eq versions/enroll-exit-0 "$CLI_RC $(jq -r .state "$CLI_OUT" 2>/dev/null)" "0 warm" "enroll --versions 2: exit and state"
check_eq versions/enroll-window \
	"$(jq -c '[.versions[] | [.version, .pinned, (.reasons | join(","))]]' "$CLI_OUT" 2>/dev/null)" \
	'[["0.2.0+1.1",true,"window"],["0.1.0+1.0",true,"window"]]' \
	"versions (newest first), pinned, why; the pre-release is not in the window"
missing=
while read -r d; do store_has "$CCP_DATA" "$d" || missing="$missing ${d:7:12}"; done <"$T_TMP/win1"
check_eq versions/enroll-store "${missing:-none}" none "closure digests missing from the store"
stray=
while read -r d; do [ -e "$(store_path "$CCP_DATA" "$d")" ] && stray="$stray ${d:7:12}"; done <"$T_TMP/rc-only"
check_eq versions/prerelease-not-fetched "${stray:-none}" none "digests only the pre-release uses, in the store"
check_eq versions/enroll-store-exact "$(find "$CCP_DATA/blobs" -type f | wc -l)" "$(nlines "$T_TMP/win1")" "files in the store vs the two closures"
registry_blob_gets "$HUB_LOG" >"$T_TMP/gets1"
bad=
while read -r d; do
	if seed_q --arg d "$d" '.blobs[$d] != null' | grep -q true; then
		n=$(grep -c " $d\$" "$T_TMP/gets1")
		[ "$n" -eq 1 ] || bad="$bad ${d:7:12}x$n"
	fi
done <"$T_TMP/win1"
check_eq versions/shared-fetched-once "${bad:-none}" none "blob GETs at the upstream per digest (want 1 each, shared ones too)"
scrape "$M" "$T_TMP/m1"
check_eq versions/pinned-bytes "$(metric "$T_TMP/m1" ccprewarm_pinned_bytes)" "$(bytes_of "$T_TMP/win1")" "ccprewarm_pinned_bytes vs the union of both closures"
check_eq versions/metric-versions-warm "$(metric "$T_TMP/m1" "ccprewarm_recipe_versions{recipe=\"$R\",state=\"warm\"}")" 2 "ccprewarm_recipe_versions{state=warm}"
check_eq versions/bytes-once "$(jq -r .bytes_total "$CLI_OUT")" "$(seed_q --rawfile l "$T_TMP/win1" '. as $s | [$l | split("\n")[] | select(. != "") | select($s.blobs[.] != null) | $s.amd64_closure[.]] | add')" \
	"status bytes_total (blobs of both versions, shared ones once)"
ccp_run list list --server "$M"
if [ "$(grep -cE "^$R +0\.(2\.0\+1\.1|1\.0\+1\.0) .* window +warm\$" "$CLI_OUT")" -eq 2 ]; then
	pass versions/list-per-version
else
	fail versions/list-per-version "list: $(tr '\n' '|' <"$CLI_OUT" | cut -c1-400)"
fi

# -- a new release tag, then warm
compose "$APP:1.3" "$DB:16"
git_rd commit -qam 0.3.0 && git_rd tag 0.3.0+1.3
ccp_run warm warm --server "$M" --json
check_eq versions/warm-changes "$CLI_RC $(jq -c '[.state, .added, .unpinned]' "$CLI_OUT" 2>/dev/null)" \
	'0 ["warm",["0.3.0+1.3"],["0.1.0+1.0"]]' "warm --json: exit, state, added, unpinned"
check_eq versions/warm-window "$(jq -c '[.versions[] | [.version, .pinned]]' "$CLI_OUT" 2>/dev/null)" \
	'[["0.3.0+1.3",true],["0.2.0+1.1",true]]' "versions after warm"
missing=
while read -r d; do store_has "$CCP_DATA" "$d" || missing="$missing ${d:7:12}"; done <"$T_TMP/c030"
check_eq versions/warm-new-stored "${missing:-none}" none "new closure digests missing"
missing=
while read -r d; do [ -e "$(store_path "$CCP_DATA" "$d")" ] || missing="$missing ${d:7:12}"; done <"$T_TMP/old-only"
check_eq versions/warm-old-kept "${missing:-none}" none "the unpinned version's digests deleted outright"
check_eq versions/warm-pinned-bytes "$(metric_now "$M" ccprewarm_pinned_bytes)" "$(bytes_of "$T_TMP/win2")" "ccprewarm_pinned_bytes after warm"
registry_blob_gets "$HUB_LOG" >"$T_TMP/gets2"
bad=
while read -r d; do
	if seed_q --arg d "$d" '.blobs[$d] != null' | grep -q true; then
		n=$(grep -c " $d\$" "$T_TMP/gets2")
		[ "$n" -eq 1 ] || bad="$bad ${d:7:12}x$n"
	fi
done < <(sort -u "$T_TMP/win1" "$T_TMP/win2")
check_eq versions/warm-fetched-once "${bad:-none}" none "blob GETs per digest after warm (want 1 each)"
ccp_run warm-again warm --server "$M"
if [ "$CLI_RC" -eq 0 ] && grep -q "^$R: no version changes" "$CLI_OUT"; then
	pass versions/warm-again-no-change
else
	fail versions/warm-again-no-change "exit $CLI_RC: $(tr '\n' '|' <"$CLI_OUT" | cut -c1-300)"
fi

# -- catalogue: the same closures as the git route
dig() { seed_q --arg c "docker.io/$1" '.images[] | select(.canonical == $c) | .digest'; }
cat_entry() { # VERSION APP-TAG DB-TAG APP-DIGEST
	jq -n --arg v "$1" --arg a "$APP" --arg at "$2" --arg d "$DB" --arg dt "$3" --arg ad "$4" \
		'{($v): {app: {image: $a, tag: $at, digest: $ad}, db: {image: $d, tag: $dt, digest: "unknown"}}}'
}
mkcat() { # FILE APP-1.3-DIGEST
	jq -n --arg r "$R" --argjson a "$(cat_entry 0.1.0+1.0 1.0 15 "$(dig "$APP:1.0")")" \
		--argjson b "$(cat_entry 0.2.0+1.1 1.1 15 "$(dig "$APP:1.1")")" \
		--argjson c "$(cat_entry 0.3.0-rc1+1.2 1.2-rc 15 unknown)" \
		--argjson d "$(cat_entry 0.3.0+1.3 1.3 16 "$2")" \
		'{($r): {name: $r, versions: [$a, $b, $c, $d]}}' >"$1"
}
mkcat "$T_TMP/cat.json" "$(dig "$APP:1.3")"
mkcat "$T_TMP/bad.json" "$(dig "$APP:1.0")"
ccp_run cat-list catalogue list --catalogue "$T_TMP/cat.json" --json
check_eq versions/catalogue-list "$CLI_RC $(jq -c '[.[] | .recipe, [.versions[].version]]' "$CLI_OUT" 2>/dev/null)" \
	"0 [\"$R\",[\"0.3.0+1.3\",\"0.2.0+1.1\"]]" "catalogue list --json: the window"
start_ccprewarm CCP2 "$HUB_URL" --config "$T_TMP/ccp.json" || exit 1
ccp_run cat-enroll enroll "$R" --catalogue "$T_TMP/cat.json" --server "$CCP2_URL" --json
check_eq versions/catalogue-enroll "$CLI_RC $(jq -r .state "$CLI_OUT" 2>/dev/null)" "0 warm" "enroll --catalogue FILE: exit and state"
sumv='[.versions[] | [.version, .digests, .bytes_total, ([.images[].ref] | sort)]]'
check_eq versions/catalogue-same-closure "$(jq -c "$sumv" "$CLI_OUT" 2>/dev/null)" \
	"$(recipe_json "$M" "$R" | jq -c "$sumv")" "per version: digests, bytes, images (catalogue vs git)"
check_eq versions/catalogue-same-store "$(cd "$CCP2_DATA/blobs" && find . -type f | sort | md5sum)" \
	"$(while read -r d; do echo "./sha256/${d:7:2}/${d:7}"; done <"$T_TMP/win2" | sort | md5sum)" \
	"store files of the catalogue route vs the git closures"
ccp_run cat-bad enroll "$R" "--catalogue=$T_TMP/bad.json" --version 0.3.0+1.3 --server "$CCP2_URL"
if [ "$CLI_RC" -ne 0 ] && [ "$(nlines "$CLI_ERR")" -eq 1 ] &&
	grep -q "'$R'" "$CLI_ERR" && grep -q "'0.3.0+1.3'" "$CLI_ERR" && grep -q "service 'app'" "$CLI_ERR"; then
	pass versions/catalogue-bad-digest
else
	fail versions/catalogue-bad-digest "want non-zero and one line naming recipe, version, service; exit $CLI_RC: $(tr '\n' '|' <"$CLI_ERR" | cut -c1-400)"
fi
# warm re-reads the catalogue file: a new version there is fetched and
# pinned, the oldest of the window unpinned
jq --argjson e "$(cat_entry 0.4.0+1.4 1.0 15 "$(dig "$APP:1.0")")" --arg r "$R" \
	'.[$r].versions += [$e]' "$T_TMP/cat.json" >"$T_TMP/cat2.json" && mv "$T_TMP/cat2.json" "$T_TMP/cat.json"
ccp_run cat-warm warm --server "$CCP2_URL" --json
check_eq versions/catalogue-warm "$CLI_RC $(jq -c '[.state, .added, .unpinned, [.versions[] | .version, (.reasons | join(","))]]' "$CLI_OUT" 2>/dev/null)" \
	'0 ["warm",["0.4.0+1.4"],["0.2.0+1.1"],["0.4.0+1.4","window","0.3.0+1.3","window,explicit"]]' \
	"warm --json on a catalogue enrolment: exit, state, added, unpinned, versions and why"
# an explicit pin outside the window, then unenroll --version: only the
# explicit reason goes; a version the window pins stays pinned
ccp_run cat-explicit enroll "$R" --catalogue "$T_TMP/cat.json" --version 0.1.0+1.0 --server "$CCP2_URL" --json
check_eq versions/explicit-pin "$CLI_RC $(jq -c '[.versions[] | .version, .pinned, (.reasons | join(","))]' "$CLI_OUT" 2>/dev/null)" \
	'0 ["0.4.0+1.4",true,"window","0.3.0+1.3",true,"window,explicit","0.1.0+1.0",true,"explicit"]' \
	"enroll --version V (outside the window): versions, pinned, why"
ccp_run unenroll-v3 unenroll "$R" --version 0.3.0+1.3 --server "$CCP2_URL" --json
ccp_run unenroll-v1 unenroll "$R" --version 0.1.0+1.0 --server "$CCP2_URL" --json
check_eq versions/unenroll-version "$CLI_RC $(jq -c '[.unpinned, [.versions[] | .version, (.reasons | join(","))]]' "$CLI_OUT" 2>/dev/null)" \
	'0 [["0.1.0+1.0"],["0.4.0+1.4","window","0.3.0+1.3","window"]]' \
	"unenroll --version: unpinned, the versions left and why"
stop CCP2 20

# -- gc with a small budget, on the data dir: exactly what no pinned
# version uses goes.
if ! stop CCP 20; then
	fail versions/stop "ccprewarm did not stop on SIGTERM"
fi
ccp_run gc gc --data "$CCP_DATA" --max-bytes 1 --json
if [ "$CLI_RC" -ne 0 ] || ! jq -e . "$CLI_OUT" >/dev/null 2>&1; then
	skip versions/gc-unpinned-only "gc --data failed: exit $CLI_RC: $(head -c 300 "$CLI_ERR")"
else
	jq -r '.items[] | select(.kind != "partial") | .digest' "$CLI_OUT" | sort >"$T_TMP/evicted"
	check_eq versions/gc-unpinned-only "$(md5sum <"$T_TMP/evicted")" "$(md5sum <"$T_TMP/old-only")" \
		"evicted digests vs those only the unpinned version uses ($(nlines "$T_TMP/evicted") vs $(nlines "$T_TMP/old-only"))"
	missing=
	while read -r d; do store_has "$CCP_DATA" "$d" || missing="$missing ${d:7:12}"; done <"$T_TMP/win2"
	check_eq versions/gc-pinned-kept "${missing:-none}" none "pinned digests gone after gc"
fi

# -- upstream stopped: both versions pull through the mirror
restart_ccprewarm CCP "$HUB_URL" --config "$T_TMP/ccp.json" || exit 1
stop HUB 10
for ref in "$APP:1.3" "$DB:16" "$APP:1.1" "$DB:15"; do
	dest=$T_TMP/pull/${ref//[\/:]/_}
	if ! skopeo_copy "$CCP_HOSTPORT" "$ref" "$dest"; then
		fail "versions/offline/$ref" "skopeo copy failed: $(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)"
	elif why=$(verify_dir "$dest" "$ref"); then
		pass "versions/offline/$ref"
	else
		fail "versions/offline/$ref" "$why"
	fi
done
if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail versions/still-running "ccprewarm died during the test"
fi
t_done
