#!/usr/bin/env bash
# test_dns.sh: a black-holed resolver never stalls the event loop (issue 10,
# defect 1).  The test re-runs itself in its own network and mount
# namespaces: loopback up, a default route into lo (so packets to the
# resolver vanish: no answer, no ICMP), and a resolv.conf naming a resolver
# on a TEST-NET address.  docker-registry is the docker.io upstream (by IP,
# no lookup); a second upstream "dns.test" needs a name lookup that never
# answers.  While a miss for dns.test waits on the resolver, cached blob
# hits must keep answering fast (libcurl's threaded resolver used to be
# joined on the loop: every request froze ~5 s); the miss must answer 503
# UNAVAILABLE within the connect timeout (plus slack), the breaker opens
# (ccprewarm_upstream_up 0, later misses fail at once), and the breaker's
# probes (also lookups) must not freeze hits either.  Then a resolver that
# answers NXDOMAIN: that miss fails at once and opens its breaker too.
# Root only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"

if [ -z "${CCP_DNS_NETNS:-}" ]; then
	if ! is_root || ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
		skip dns/all "needs root, unshare and ip (iproute2)"
		exit 0
	fi
	exec env CCP_DNS_NETNS=1 unshare --net --mount --propagation private -- bash "$0" "$@"
fi

t_init dns
ip link set lo up
ip route add default dev lo
printf 'nameserver 192.0.2.53\noptions timeout:5 attempts:2\n' >"$T_TMP/resolv.conf"
mount --bind "$T_TMP/resolv.conf" /etc/resolv.conf
NAME=registry.blackhole.test
# The resolver must really be a black hole (no answer at all), or the test
# would test nothing.
t0=$SECONDS
timeout 3 getent ahosts "$NAME" >/dev/null 2>&1
rc=$?
if [ $rc -ne 124 ]; then
	fail dns/blackhole "getent ahosts $NAME ended with status $rc after $((SECONDS - t0)) s; want a lookup that hangs"
	t_done
fi

CONNECT_MS=2000
start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
echo "{\"connect_timeout_ms\": $CONNECT_MS}" >"$T_TMP/ccp.json"
start_ccprewarm CCP "$UP_URL" --config "$T_TMP/ccp.json" \
	--upstream "dns.test=http://$NAME:5000" \
	--upstream "nx.test=http://registry.nx.test:5000" || exit 1
M=$CCP_URL
UPG='ccprewarm_upstream_up{upstream="dns.test"}'
CACHED=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .platforms[0].layers[0].digest')
req GET "$M/v2/test/single-oci/blobs/$CACHED"
if [ "$R_CODE" != 200 ]; then
	fail dns/warm "could not cache a blob: $(exchange)"
	t_done
fi

# hits_while NAME SECS: GET the cached blob over and over for SECS seconds
# (bounded: at most 400 requests); every one must be 200 and take < 1 s
# (a frozen loop took ~5 s).  Reports the slowest.
hits_while() {
	local name=$1 end=$((SECONDS + $2)) n=0 bad=0 max=0 out code t
	while [ $SECONDS -lt $end ] && [ $n -lt 400 ]; do
		out=$(curl -s -o /dev/null -m 20 -w '%{http_code} %{time_total}' \
			"$M/v2/test/single-oci/blobs/$CACHED")
		code=${out%% *}
		t=${out##* }
		n=$((n + 1))
		secs_lt "$max" "$t" && max=$t
		if [ "$code" != 200 ] || ! secs_lt "$t" 1; then
			bad=$((bad + 1))
		fi
		sleep 0.05
	done
	note "$name: $n hits, slowest ${max}s"
	check "$name" "$bad of $n cached-blob hits failed or took >= 1 s (slowest ${max}s) while a lookup hung" \
		[ "$bad" -eq 0 -a "$n" -gt 5 ]
}

# ------------------------------------------------------------ first miss
bg_get miss "$M/v2/dns.test/some/app/manifests/1.0"
hits_while dns/hits-during-lookup $((CONNECT_MS / 1000 + 2))
if ! bg_wait miss 30; then
	fail dns/miss-answers "no answer to the miss after 30 s"
else
	t=$(cut -d' ' -f2 "$T_TMP/bg-miss.out")
	check dns/miss-503 "the miss answered $(bg_code miss), want 503" [ "$(bg_code miss)" = 503 ]
	code=$(jq -r '.errors[0].code' "$(bg_body miss)" 2>/dev/null)
	check dns/miss-unavailable "the miss's error code is '$code', want UNAVAILABLE" [ "$code" = UNAVAILABLE ]
	# the connect timeout covers the lookup; 3 s of slack for a busy box
	check dns/miss-within-connect-timeout "the miss took ${t}s, want < $((CONNECT_MS / 1000 + 3)) s" \
		secs_lt "$t" $((CONNECT_MS / 1000 + 3))
fi
g=$(metric "$M" "$UPG")
check dns/breaker-open "$UPG is '$g' after a lookup that timed out, want 0" [ "$g" = 0 ]

# A second miss fails at once while the breaker is open.
req GET "$M/v2/dns.test/other/app/manifests/2.0"
check dns/second-miss-fast "second miss: $R_CODE in ${R_TIME}s, want 503 in < 1 s" \
	[ "$R_CODE" = 503 -a "$(awk -v t="$R_TIME" 'BEGIN { print (t < 1) }')" = 1 ]

# The breaker's probes look the name up again (after 2 s, then 4 s): hits
# stay fast through them.
hits_while dns/hits-during-probes 8
n=$(grep -c "upstream 'dns.test' unreachable" "$CCP_LOG")
check dns/probes-tried "the breaker opened $n times, want a failed probe too (>= 2)" [ "$n" -ge 2 ]

# ------------------------------------------------------------ NXDOMAIN
# Now a resolver that answers at once that the name does not exist (glibc
# re-reads resolv.conf when it changes): the miss fails at once, and the
# breaker opens as for a dead connect.
_spawn NXDNS "$T_OUT/nxdns.log" "$PY" -u -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.53", 53))
print("listening on 127.0.0.53:53", flush=True)
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    # same id and question; QR=1, RD and RA set, RCODE 3 (NXDOMAIN)
    flags = 0x8000 | (q[2] & 0x01) << 8 | 0x0080 | 3
    s.sendto(q[:2] + flags.to_bytes(2, "big") + q[4:6] + bytes(6) + q[12:], peer)
'
_wait_listening NXDNS 10 || fail dns/nxdns-start "the NXDOMAIN resolver did not start"
printf 'nameserver 127.0.0.53\n' >"$T_TMP/resolv.conf"
timeout 3 getent ahosts registry.nx.test >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then	# getent: "not found", at once
	req GET "$M/v2/nx.test/some/app/manifests/1.0"
	check dns/nxdomain-fails-fast "a name that does not exist: $R_CODE in ${R_TIME}s, want 503 in < 2 s" \
		[ "$R_CODE" = 503 -a "$(awk -v t="$R_TIME" 'BEGIN { print (t < 2) }')" = 1 ]
	g=$(metric "$M" 'ccprewarm_upstream_up{upstream="nx.test"}')
	check dns/nxdomain-breaker-open "nx.test's breaker gauge is '$g' after NXDOMAIN, want 0" [ "$g" = 0 ]
else
	fail dns/nxdomain-resolver "getent ended with $rc, want 2 (not found) from the test resolver"
fi

# The docker.io upstream is untouched.
g=$(metric "$M" 'ccprewarm_upstream_up{upstream="docker.io"}')
check dns/other-upstream-up "docker.io's breaker is '$g', want 1" [ "$g" = 1 ]
stop_clean CCP dns
t_done
