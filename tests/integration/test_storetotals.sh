#!/usr/bin/env bash
# test_storetotals.sh: the store gauges of /metrics (ccprewarm_store_blobs,
# ccprewarm_store_bytes, ccprewarm_pinned_bytes) are kept by the index, not
# counted per scrape: they must equal what is on disk after pulls, after an
# enrolled (pinned) image, after evictions under a budget, and after a
# restart.  Truth: the files under <data>/blobs/sha256 and their sizes, and
# the files of the pinned closure.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init storetotals

start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 2 || exit 1
MIB=1048576
declare -A BLOB
for n in 1 2 3 4 5 6; do
	make_blob "$T_TMP/b$n" $MIB
	BLOB[$n]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/b$n") || {
		fail storetotals/push "cannot push blob $n"
		exit 1
	}
done

disk_count() { find "$CCP_DATA/blobs/sha256" -type f | wc -l; }
disk_bytes() { find "$CCP_DATA/blobs/sha256" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
pinned_disk_bytes() {
	local d s=0 f
	for d in "${PINS[@]}"; do
		f=$(store_path "$CCP_DATA" "$d")
		[ -e "$f" ] && s=$((s + $(stat -c %s "$f")))
	done
	echo $s
}
# same WHEN: the three gauges equal the disk (waiting for background
# stores and evictions to settle, 30 s at most).
same() {
	local when=$1 want_pinned=$2
	agree() {
		[ "$(metric_now "$M" ccprewarm_store_blobs)" = "$(disk_count)" ] &&
			[ "$(metric_now "$M" ccprewarm_store_bytes)" = "$(disk_bytes)" ] &&
			[ "$(metric_now "$M" ccprewarm_pinned_bytes)" = "$want_pinned" ]
	}
	if wait_until 30 agree; then
		pass "storetotals/$when"
	else
		fail "storetotals/$when" "metrics blobs $(metric_now "$M" ccprewarm_store_blobs) bytes $(metric_now "$M" ccprewarm_store_bytes) pinned $(metric_now "$M" ccprewarm_pinned_bytes); disk $(disk_count) files, $(disk_bytes) bytes, pinned $want_pinned"
	fi
}
get_blob() {
	req GET "$M/v2/plain/blobs/blobs/${BLOB[$1]}"
	[ "$R_CODE" = 200 ]
}

start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL
same empty 0
# An enrolled image: its closure is pinned.
enroll_images "$M" pinned docker.io/test/single-oci:v1 ||
	fail storetotals/enroll "the enroll API refused the recipe"
check_eq storetotals/warm "$(wait_recipe "$M" pinned 60)" warm "state of the enrolled recipe"
mapfile -t PINS < <(cd "$CCP_DATA/blobs/sha256" && find . -type f -printf '%f\n' | sed 's/^/sha256:/' | sort)
PB=$(pinned_disk_bytes)
check storetotals/pinned-nonzero "pinned closure of ${#PINS[@]} blobs, $PB bytes" [ "$PB" -gt 0 ]
same after-enroll "$PB"
# Pulls: the seeded set and the plain blobs.
for ref in $(seed_refs); do
	skopeo_copy "$CCP_HOSTPORT" "$ref" "$T_TMP/pull" --all >/dev/null 2>&1 ||
		fail "storetotals/pull-$ref" "skopeo copy through ccprewarm failed"
done
for n in 1 2 3; do get_blob $n || fail "storetotals/get-$n" "$(exchange)"; done
same after-pulls "$PB"
P0=$(disk_bytes)
stop_clean CCP storetotals/first

# Restart with a budget that the next three blobs overflow: evictions.
echo "{\"max_bytes\": $((P0 + 2 * MIB)), \"low_water_percent\": 80}" >"$T_TMP/budget.json"
restart_ccprewarm CCP "$UP_URL" --config "$T_TMP/budget.json" || exit 1
same after-restart "$PB"
for n in 4 5 6; do
	get_blob $n || fail "storetotals/get-$n" "$(exchange)"
	sleep 1.1
done
evicted() { [ "$(metric_now "$M" ccprewarm_evictions_total)" -gt 0 ]; }
wait_until 20 evicted || fail storetotals/evicted "no eviction under the budget"
same after-eviction "$PB"
stop_clean CCP storetotals/second
restart_ccprewarm CCP "$UP_URL" --config "$T_TMP/budget.json" || exit 1
same after-second-restart "$PB"
t_done
