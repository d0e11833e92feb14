#!/usr/bin/env bash
# test_stall.sh: an upstream body that stalls after the headers (issue 10).
# Each attempt is cut after upstream_stall_seconds without a byte and
# resumed, but once nothing has arrived for upstream_stall_total_seconds
# over all attempts the fill gives up: the client is cut in bounded time
# (it used to be 4 x 30 s whatever the configuration), and a cached blob
# is served meanwhile.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init stall

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_proxy PX "$UP_URL" pass || exit 1
echo '{"upstream_stall_seconds": 2, "upstream_stall_total_seconds": 5}' >"$T_TMP/ccp.json"
start_ccprewarm CCP "$PX_URL" --config "$T_TMP/ccp.json" || exit 1
M=$CCP_URL
pick() {
	seed_q '[.images[] | (.ref | split(":")[0]) as $r | .platforms[] | .layers[] | {r: $r, d: .digest}] | unique_by(.d) | .['"$1"'] | "\(.r) \(.d)"'
}
read -r R1 D1 < <(pick 0)
read -r R2 D2 < <(pick 1)
req GET "$M/v2/$R1/blobs/$D1"
[ "$R_CODE" = 200 ] || fail stall/warm "$(exchange)"
proxy_mode PX stall 600
BG_TIMEOUT=60 bg_get stalled "$M/v2/$R2/blobs/$D2"
sleep 1
req GET "$M/v2/$R1/blobs/$D1"
check stall/hit-meanwhile "a cached blob while a fill stalls: $(exchange) in ${R_TIME}s" \
	[ "$R_CODE" = 200 -a "$(awk -v t="$R_TIME" 'BEGIN { print (t < 1) }')" = 1 ]
if ! bg_wait stalled 40; then
	fail stall/bounded "the stalled client was still waiting after 40 s"
else
	t=$(cut -d' ' -f2 "$T_TMP/bg-stalled.out")
	note "stalled client: curl rc $(bg_rc stalled), $(cat "$T_TMP/bg-stalled.out") after ${t}s"
	check stall/bounded "stalled client ended after ${t}s; want within the 5 s total plus one 2 s stall and backoff (< 15 s)" \
		secs_lt "$t" 15
	check stall/not-complete "the stalled client must not get a complete blob (curl rc $(bg_rc stalled))" \
		[ "$(bg_rc stalled)" != 0 ]
	n=$(proxy_count PX "^GET /v2/.*/blobs/$D2\$")
	check stall/resumed "upstream saw $n GETs of the stalled blob; want a resume before giving up (>= 2)" [ "$n" -ge 2 ]
fi
proxy_mode PX pass
req GET "$M/v2/$R2/blobs/$D2"
check stall/later-ok "after the stall ends the blob comes through: $(exchange)" \
	[ "$R_CODE" = 200 -a "$(sha256_of "$R_BODY")" = "${D2#sha256:}" ]
stop_clean CCP stall
t_done
