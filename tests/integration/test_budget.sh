#!/usr/bin/env bash
# test_budget.sh: the store's budget (issue 9).  A store filled past a
# small max_bytes with an enrolled (pinned) image and plain blob pulls:
# every pinned blob survives, eviction takes the least recently used
# unpinned blobs first and stops at the low water mark, `gc --dry-run`
# lists exactly what the following `gc` frees, and a blob being sent to a
# slow client is not evicted under it (and its bytes stay correct even if
# its file goes).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init budget

start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 2 || exit 1
MIB=1048576

# Plain blobs: A1 A2 B1 B2 C1 C2 D (1 MiB each) and E (8 MiB).
declare -A BLOB
for n in A1 A2 B1 B2 C1 C2 D; do
	make_blob "$T_TMP/$n" $MIB
	BLOB[$n]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/$n") || { fail budget/push "cannot push $n"; exit 1; }
done
make_blob "$T_TMP/E" $((16 * MIB))
BLOB[E]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/E") || { fail budget/push "cannot push E"; exit 1; }

# First without a budget, to learn what the pinned closure weighs.
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL
REF=docker.io/test/single-oci:v1
enroll_images "$M" pinned "$REF" || fail budget/enroll "the enroll API refused the recipe"
st=$(wait_recipe "$M" pinned 60)
check_eq budget/pinned-warm "$st" warm "state of the enrolled recipe"
PINNED=$(metric_now "$M" ccprewarm_pinned_bytes)
P0=$(store_bytes "$M")
mapfile -t PINS < <(cd "$CCP_DATA/blobs/sha256" && find . -type f -printf '%f\n' | sed 's/^/sha256:/' | sort)
note "pinned closure: ${#PINS[@]} digests, $PINNED bytes (store $P0)"
stop_clean CCP budget/first

# max = everything but D and E, plus half a MiB; low water 60%.
MAX=$((P0 + 6 * MIB + MIB / 2))
LOW_PCT=60
cat >"$T_TMP/budget.json" <<-EOF2
{"max_bytes": $MAX, "low_water_percent": $LOW_PCT}
EOF2
restart_ccprewarm CCP "$UP_URL" --config "$T_TMP/budget.json" || exit 1

get_blob() {
	req GET "$M/v2/plain/blobs/blobs/${BLOB[$1]}"
	[ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "${BLOB[$1]}" ]
}
# One pull per second: access times are kept in seconds.
for n in A1 A2 B1 B2 C1 C2; do
	get_blob "$n" || fail "budget/pull-$n" "$(exchange)"
	sleep 1.1
done
# A used again: now B is the oldest, then C, then A.
get_blob A1 && sleep 1.1 && get_blob A2 || fail budget/reuse-A "$(exchange)"
sleep 1.1
ev0=$(metric_now "$M" ccprewarm_evictions_total)
check_eq budget/no-eviction-under-max "$ev0" 0 "evictions before the store crossed max_bytes"
USED=$(store_bytes "$M")
# D crosses max: the expected victims are the LRU prefix that frees
# USED + D - low (storage/lru.c's arithmetic).
LOWB=$((MAX / 100 * LOW_PCT))
NEED=$((USED + MIB - LOWB))
want=() freed=0
for n in B1 B2 C1 C2 A1 A2; do
	[ $freed -ge $NEED ] && break
	want+=("$n")
	freed=$((freed + MIB))
done
note "store $USED, max $MAX, low $LOWB: D needs $NEED bytes freed; expect ${want[*]}"
get_blob D || fail budget/pull-D "$(exchange)"
settled() { [ "$(metric_now "$M" ccprewarm_evictions_total)" = "${#want[@]}" ]; }
wait_until 20 settled
got=()
for n in B1 B2 C1 C2 A1 A2; do
	indexed "$M" "${BLOB[$n]}" || got+=("$n")
done
check_eq budget/lru-order "${got[*]}" "${want[*]}" "blobs evicted (LRU among the unpinned)"
for n in B1 B2 C1 C2 A1 A2; do
	f=$(store_path "$CCP_DATA" "${BLOB[$n]}")
	if [[ " ${got[*]} " == *" $n "* ]]; then
		gone() { [ ! -e "$f" ]; }
		wait_until 10 gone || fail "budget/file-gone-$n" "evicted $n still has its file $f"
	fi
done
lost=0
for d in "${PINS[@]}"; do
	store_has "$CCP_DATA" "$d" || { lost=$((lost + 1)); note "pinned $d lost"; }
done
check_eq budget/pins-survive "$lost" 0 "pinned digests missing from the store"
AFTER=$(store_bytes "$M")
check budget/under-low-mark "store $AFTER bytes after eviction, low mark $LOWB" [ "$AFTER" -le "$LOWB" ]
eb=$(metric_now "$M" ccprewarm_evicted_bytes_total)
check_eq budget/evicted-bytes "$eb" $((${#want[@]} * MIB)) "ccprewarm_evicted_bytes_total"
check_eq budget/budget-metric "$(metric_now "$M" ccprewarm_store_budget_bytes)" "$MAX" "ccprewarm_store_budget_bytes"
fb=$(metric_now "$M" ccprewarm_store_free_bytes)
check budget/free-metric "ccprewarm_store_free_bytes is '$fb'" [ "${fb:-0}" -gt 0 ]
check_eq budget/pins-over-metric "$(metric_now "$M" ccprewarm_store_pins_over_budget)" 0 "pins over budget"
# An evicted blob is fetched again on demand.
get_blob "${want[0]}" && check_eq budget/refetch "$(hdr X-Cache)" MISS "X-Cache of an evicted blob" ||
	fail budget/refetch "$(exchange)"

# -- a slow client reading E while gc wants it gone
get_blob E || fail budget/pull-E "$(exchange)"
sleep 1.1
for n in A1 A2 C1 C2 D; do get_blob "$n" >/dev/null; done
# A small receive buffer and slow reads: the kernel cannot take the whole
# reply off the server's hands, so the server is still sending it.
"$PY" - "$CCP_PORT" "/v2/plain/blobs/blobs/${BLOB[E]}" "$T_TMP/E.slow" <<'PYEOF' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
buf = b""
deadline = time.time() + 60
while time.time() < deadline:
    d = s.recv(65536)
    if not d:
        break
    buf += d
    time.sleep(0.02)
head, _, body = buf.partition(b"\r\n\r\n")
open(sys.argv[3], "wb").write(body)
PYEOF
SLOW=$!
sleep 1.5
ccp_run gc1 gc --server "$M" --json
inplan=$(jq -r --arg d "${BLOB[E]}" '[.items[] | select(.digest == $d)] | length' "$CLI_OUT" 2>/dev/null)
check_eq budget/reader-not-evicted "$inplan" 0 "times gc freed E while it was being sent"
check budget/reader-still-indexed "E is not a HIT while a client reads it" indexed "$M" "${BLOB[E]}"
# Its file may still go (by hand here): the open fd keeps the bytes.
rm -f "$(store_path "$CCP_DATA" "${BLOB[E]}")"
wait $SLOW
check budget/slow-client-correct "the slow client got $(stat -c %s "$T_TMP/E.slow" 2>/dev/null) bytes, sha256 $(sha256_of "$T_TMP/E.slow" | cut -c1-12)" \
	[ "sha256:$(sha256_of "$T_TMP/E.slow")" = "${BLOB[E]}" ]
# Something for the offline gc below: six plain blobs again.
for n in A1 A2 B1 B2 C1 C2; do get_blob "$n" >/dev/null; done
stop_clean CCP budget/second

# -- gc --dry-run lists exactly what gc frees (offline, a smaller budget)
SMALL=$((P0 + 3 * MIB))
ccp_run dry gc --data "$CCP_DATA" --max-bytes "$SMALL" --dry-run --json
jq -c '[.items[] | .digest]' "$CLI_OUT" >"$T_TMP/dry.list" 2>/dev/null
ndry=$(jq length "$T_TMP/dry.list" 2>/dev/null)
ccp_run real gc --data "$CCP_DATA" --max-bytes "$SMALL" --json
jq -c '[.items[] | .digest]' "$CLI_OUT" >"$T_TMP/real.list" 2>/dev/null
check budget/gc-dry-run-exact "dry run: $(cat "$T_TMP/dry.list" | cut -c1-200); real: $(cut -c1-200 "$T_TMP/real.list")" \
	[ "${ndry:-0}" -gt 0 ] && cmp -s "$T_TMP/dry.list" "$T_TMP/real.list"
ccp_run dry2 gc --data "$CCP_DATA" --max-bytes "$SMALL" --dry-run --json
check_eq budget/gc-then-nothing "$(jq .count "$CLI_OUT" 2>/dev/null)" 0 "items a second gc would free"
lost=0
for d in "${PINS[@]}"; do store_has "$CCP_DATA" "$d" || lost=$((lost + 1)); done
check_eq budget/gc-keeps-pins "$lost" 0 "pinned digests missing after gc"
ccp_run v verify --data "$CCP_DATA"
check_eq budget/verify-clean "$CLI_RC" 0 "verify exit status after gc ($(tail -n 1 "$CLI_OUT"))"

# -- pins alone over the budget: said once, served, nothing pinned lost
cat >"$T_TMP/tiny.json" <<-EOF2
{"max_bytes": $((PINNED / 2))}
EOF2
restart_ccprewarm CCP "$UP_URL" --config "$T_TMP/tiny.json" || exit 1
get_blob A1 >/dev/null
over() { [ "$(metric_now "$M" ccprewarm_store_pins_over_budget)" = 1 ]; }
wait_until 20 over
check budget/pins-over-budget-metric "ccprewarm_store_pins_over_budget stayed 0" over
n=$(grep -c 'alone exceeds the store budget' "$CCP_LOG")
check_eq budget/pins-over-logged-once "$n" 1 "log lines about pins over the budget"
lost=0
for d in "${PINS[@]}"; do store_has "$CCP_DATA" "$d" || lost=$((lost + 1)); done
check_eq budget/pins-over-kept "$lost" 0 "pinned digests missing with pins over the budget"
st=$(recipe_json "$M" pinned | jq -r .pins_over_budget 2>/dev/null)
check_eq budget/pins-over-status "$st" true "status's pins_over_budget"
stop_clean CCP budget/third
t_done
