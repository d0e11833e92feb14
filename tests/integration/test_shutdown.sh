#!/usr/bin/env bash
# test_shutdown.sh: SIGTERM ends ccprewarm promptly with exit status 0 and,
# under the ASan+UBSan build, without a sanitizer or leak report: idle,
# after traffic, with a fill stalled mid-way (the upstream sends headers
# then nothing) and with a client that does not read.  The store survives
# a restart and serves with the upstream failing; temp files of an
# interrupted fill are gone after the restart.
. "$(dirname "$0")/lib.sh"
t_init shutdown

if [ -n "${CCPREWARM_URL:-}" ]; then
	skip shutdown/all "CCPREWARM_URL given: this test starts and stops its own ccprewarm"
	exit 0
fi

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_proxy PX "$UP_URL" pass --stall 120 || exit 1

# term_check NAME MAXSECS [DAEMON]: SIGTERM the running ccprewarm DAEMON
# (default CCP); it must exit 0 within MAXSECS and leave no sanitizer
# report in its log.
term_check() {
	local name=$1 max=$2 d=${3:-CCP} rep mark
	local logvar="${d}_LOG"
	local log=${!logvar}
	mark=$(wc -l <"$log")
	stop "$d" $((max + 20))
	rep=$(tail -n +"$((mark + 1))" "$log" | grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: .*Sanitizer' | head -3 | tr '\n' ' ')
	if [ "$STOP_KILLED" = 1 ]; then
		fail "$name" "still running $((max + 20))s after SIGTERM (killed)"
	elif [ -n "$rep" ]; then
		fail "$name" "exit $STOP_RC after ${STOP_SECS}s with a sanitizer report: $rep"
	elif [ "$STOP_RC" -ne 0 ]; then
		fail "$name" "exit status $STOP_RC after SIGTERM, want 0 (see ${log##*/})"
	elif ! awk -v t="$STOP_SECS" -v m="$max" 'BEGIN { exit !(t < m) }'; then
		fail "$name" "exit 0 but took ${STOP_SECS}s, want < ${max}s"
	else
		pass "$name"
		note "$name: exit 0 in ${STOP_SECS}s"
	fi
}

# 1. Idle.
start_ccprewarm CCP "$PX_URL" || exit 1
term_check shutdown/idle 10

# 2. After traffic: a full pull, then SIGTERM.
restart_ccprewarm CCP "$PX_URL" || exit 1
pull_all "$CCP_HOSTPORT" shutdown/pull
term_check shutdown/after-traffic 10

# 3. The store survives a restart and serves with the upstream failing.
proxy_mode PX error
restart_ccprewarm CCP "$PX_URL" || exit 1
ref=test/multi-oci:v1
if skopeo_copy "$CCP_HOSTPORT" "$ref" "$T_TMP/again" --all &&
	why=$(verify_dir "$T_TMP/again" "$ref" --all); then
	pass shutdown/restart-serves-store
else
	fail shutdown/restart-serves-store "pull after restart with the upstream failing: ${why:-$(tail -n 1 "$T_OUT/skopeo.log" | cut -c1-300)}"
fi
proxy_mode PX pass

# 4. A client that does not read a big cached blob.
big=$(seed_q '[.blobs | to_entries[] | {d: .key, s: .value.size, r: .value.repo}] | max_by(.s) | "\(.r) \(.d)"')
"$PY" - "$CCP_PORT" ${big} >"$T_TMP/slow.out" 2>&1 <<'EOF' &
import socket, sys, time
port, repo, digest = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(("GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (repo, digest)).encode())
time.sleep(120)  # never read
EOF
slow=$!
sleep 1
term_check shutdown/slow-client 30
kill "$slow" 2>/dev/null
wait "$slow" 2>/dev/null

# 5. A fill stalled mid-way (upstream sent headers, then nothing), in a
# fresh instance so that the blob is not in its store yet.
start_ccprewarm FILL "$PX_URL" || exit 1
fresh=$(seed_q '.images[] | select(.ref == "test/multi-docker:v1") | .platforms[1].layers[-1].digest')
proxy_reset PX
proxy_mode PX stall 120
: >"$T_TMP/stalled.body"
curl -s -m 120 -o "$T_TMP/stalled.body" -w '%{http_code}' \
	"$FILL_URL/v2/test/multi-docker/blobs/$fresh" >"$T_TMP/stalled.code" 2>/dev/null &
client=$!
for _ in $(seq 1 100); do
	[ "$(proxy_stats PX | jq '.faults')" -ge 1 ] 2>/dev/null && break
	sleep 0.1
done
if [ "$(proxy_stats PX | jq '.faults')" -ge 1 ] 2>/dev/null; then
	sleep 0.5
	term_check shutdown/stalled-fill 30 FILL
	wait "$client"
	note "client of the stalled fill: HTTP $(cat "$T_TMP/stalled.code"), $(stat -c %s "$T_TMP/stalled.body") bytes"
	check shutdown/stalled-client-not-served-bad-bytes "the client got a 200 with bytes that are not the blob" \
		bash -c '[ "$(cat "$1")" != 200 ] || [ "sha256:$(sha256sum <"$2" | cut -d" " -f1)" = "$3" ] || [ "$(stat -c %s "$2")" -lt "$4" ]' _ \
		"$T_TMP/stalled.code" "$T_TMP/stalled.body" "$fresh" "$(seed_q --arg d "$fresh" '.blobs[$d].size')"
else
	fail shutdown/stalled-fill "the blob GET never reached the upstream: $(proxy_stats PX | jq -c .requests)"
	kill "$client" 2>/dev/null
fi
proxy_mode PX pass

# After the restart, no leftovers of the interrupted fill.
restart_ccprewarm FILL "$PX_URL" || exit 1
left=$(find "$FILL_DATA/tmp" -type f 2>/dev/null | head -3 | tr '\n' ' ')
check shutdown/tmp-clean-after-restart "temp files of the interrupted fill survive a restart: $left" [ -z "$left" ]
f=$(store_path "$FILL_DATA" "$fresh")
check shutdown/no-partial-blob "a partial blob was committed to the store" [ ! -e "$f" ]
req GET "$FILL_URL/v2/test/multi-docker/blobs/$fresh"
if [ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "$fresh" ]; then
	pass shutdown/refetch-after-interrupt
else
	fail shutdown/refetch-after-interrupt "want 200 with the blob; $(exchange)"
fi
term_check shutdown/final 10 FILL
t_done
