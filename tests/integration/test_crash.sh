#!/usr/bin/env bash
# test_crash.sh: kill -9 at random moments during ingest (issue 9).  30
# rounds: start the mirror on the same data directory, pull large blobs
# through an upstream that sends them at a bounded rate, kill -9 the
# daemon after a random delay.  A budget of about three blobs keeps
# evicting, so every round ingests.  After every restart `verify` (re-hashing
# everything) is clean, and every pull that completed in any round still
# gets byte-identical content.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init crash

ROUNDS=${CRASH_ROUNDS:-30}
MIB=1048576
start_registry UP || exit 1
declare -a DIG
for i in 0 1 2 3 4 5; do
	make_blob "$T_TMP/b$i" $(((4 + i) * MIB / 2))
	DIG[i]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/b$i") || { fail crash/push "cannot push b$i"; exit 1; }
done
start_proxy PX "$UP_URL" slow --rate 8192 || exit 1
# A budget of about three blobs: pulls keep ingesting (and evicting).
BUDGET=(--max-bytes $((9 * MIB)))
start_ccprewarm CCP "$PX_URL" "${BUDGET[@]}" || exit 1
M=$CCP_URL
declare -A DONE
# check_pulls IDX...: each still gets byte-identical content.
check_pulls() {
	local i
	for i in "$@"; do
		req GET "$M/v2/plain/blobs/blobs/${DIG[i]}"
		if [ "$R_CODE" != 200 ] || [ "sha256:$(sha256_of "$R_BODY")" != "${DIG[i]}" ]; then
			bad_bytes=$((bad_bytes + 1))
			note "round $round: b$i: $(exchange)"
		fi
		rm -f "$R_BODY"
	done
}
bad_verify=0 bad_bytes=0 completed=0 nospace=0
for ((round = 1; round <= ROUNDS; round++)); do
	# two pulls at a time, of random blobs, cut by a kill after 0.1-1.3 s
	pids=() outs=() which=() now=()
	for k in 0 1; do
		i=$((RANDOM % 6))
		o=$T_TMP/pull.$round.$k
		curl -s -m 30 -o "$o" "$M/v2/plain/blobs/blobs/${DIG[i]}" &
		pids+=($!) outs+=("$o") which+=("$i")
	done
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.1 + (r % 120) / 100 }')"
	stop CCP 5 KILL
	for k in 0 1; do
		wait "${pids[k]}" && [ "sha256:$(sha256_of "${outs[k]}")" = "${DIG[which[k]]}" ] &&
			DONE[${which[k]}]=1 && now+=("${which[k]}") && completed=$((completed + 1))
		rm -f "${outs[k]}"
	done
	restart_ccprewarm CCP "$PX_URL" "${BUDGET[@]}" || { fail crash/restart "round $round: the mirror did not come back"; break; }
	if ! ccp verify --server "$M" >"$T_TMP/verify.out" 2>&1; then
		bad_verify=$((bad_verify + 1))
		note "round $round: verify: $(tr '\n' ' ' <"$T_TMP/verify.out" | cut -c1-300)"
	fi
	check_pulls "${now[@]}"
done
check_pulls "${!DONE[@]}"
note "$ROUNDS rounds, $completed pulls completed before a kill, blobs completed at least once: ${!DONE[*]}"
check_eq crash/verify-clean-every-restart "$bad_verify" 0 "restarts after which verify was not clean"
check_eq crash/completed-pulls-identical "$bad_bytes" 0 "completed pulls that later got other bytes or no 200"
check crash/some-pulls-completed "no pull completed before a kill: nothing was compared" [ "${#DONE[@]}" -gt 0 ]
rep=$(asan_report "$CCP_LOG")
check crash/no-sanitizer-report "$rep" [ -z "$rep" ]
stop_clean CCP crash
t_done
