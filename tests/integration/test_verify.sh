#!/usr/bin/env bash
# test_verify.sh: `ccprewarm verify` (issue 9).  A blob whose bytes were
# altered on disk, an index entry whose file was deleted and an orphan file
# are all found (exit status not 0), `verify --repair` fixes all three
# (the altered one quarantined, not deleted) and a second verify is clean.
# A leftover temp file is found and removed as well.
# Online (admin API, re-hashing on a worker) and offline (--data).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init verify

start_registry UP || exit 1
declare -A BLOB
for n in X Y Z W; do
	make_blob "$T_TMP/$n" $((256 * 1024 + RANDOM))
	BLOB[$n]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/$n") || { fail verify/push "cannot push $n"; exit 1; }
done
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL
D=$CCP_DATA
for n in X Y Z; do
	req GET "$M/v2/plain/blobs/blobs/${BLOB[$n]}"
	[ "$R_CODE" = 200 ] || fail "verify/pull-$n" "$(exchange)"
done
stored() { [ -f "$(store_path "$D" "${BLOB[Z]}")" ]; }
wait_until 10 stored

ccp_run clean0 verify --server "$M"
check_eq verify/clean-store "$CLI_RC" 0 "verify of an untouched store ($(tail -n 1 "$CLI_OUT"))"

damage() {
	# X: one byte changed in the middle, same size
	f=$(store_path "$D" "${BLOB[X]}")
	printf '\x5a' | dd of="$f" bs=1 seek=1000 conv=notrunc status=none
	# Y: its file deleted, the index entry left
	rm -f "$(store_path "$D" "${BLOB[Y]}")"
	# W: a file no index entry names
	w=$(store_path "$D" "${BLOB[W]}")
	mkdir -p "$(dirname "$w")"
	cp "$T_TMP/W" "$w"
	# a temp file nothing will finish
	echo leftover >"$D/tmp/fill-leftover"
}

check_found() {
	local prefix=$1 kinds
	kinds=$(jq -r '.problems[] | "\(.kind) \(.digest)"' "$CLI_OUT" 2>/dev/null | sort | tr '\n' ' ')
	want=$(printf '%s\n' "corrupt ${BLOB[X]}" "missing ${BLOB[Y]}" "orphan ${BLOB[W]}" "temp null" | sort | tr '\n' ' ')
	check_eq "$prefix/finds-all" "$kinds" "$want" "problems verify reported"
}

for mode in online offline; do
	if [ $mode = online ]; then
		where=(--server "$M")
	else
		stop_clean CCP verify/online
		where=(--data "$D")
	fi
	damage
	ccp_run found verify "${where[@]}" --json
	check "verify/$mode/exit-not-0" "verify exited $CLI_RC on a damaged store" [ "$CLI_RC" != 0 ]
	check_found "verify/$mode"
	ccp_run repair verify "${where[@]}" --repair --json
	check_found "verify/$mode/repair"
	check_eq "verify/$mode/repair-exit" "$CLI_RC" 1 "verify --repair exit status (1: found and repaired)"
	rep=$(jq -r '[.problems[] | .repaired] | all' "$CLI_OUT" 2>/dev/null)
	check_eq "verify/$mode/all-repaired" "$rep" true "every problem repaired"
	q=$(ls "$D/quarantine" 2>/dev/null | grep -c "^${BLOB[X]#sha256:}")
	check "verify/$mode/corrupt-quarantined" "quarantine/ has: $(ls "$D/quarantine" 2>/dev/null | tr '\n' ' ')" [ "$q" -ge 1 ]
	ccp_run again verify "${where[@]}"
	check_eq "verify/$mode/then-clean" "$CLI_RC" 0 "second verify ($(tail -n 1 "$CLI_OUT"))"
	if [ $mode = online ]; then
		# the repaired store serves the right bytes again (from upstream)
		for n in X Y; do
			req GET "$M/v2/plain/blobs/blobs/${BLOB[$n]}"
			check "verify/online/refetch-$n" "$(exchange)" \
				[ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "${BLOB[$n]}" ]
		done
		wait_until 10 stored
	fi
done

# offline verify refuses a store a server holds
restart_ccprewarm CCP "$UP_URL" || exit 1
ccp_run locked verify --data "$D"
check verify/offline-refuses-live-store "exit $CLI_RC: $(head -c 200 "$CLI_ERR")" \
	[ "$CLI_RC" = 2 ] && grep -q "in use" "$CLI_ERR"
stop_clean CCP verify/last
t_done
