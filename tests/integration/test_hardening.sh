#!/usr/bin/env bash
# test_hardening.sh: upstream faults that must fail one request only, a
# chunked upstream reply, redirects into the node, 429 (issue 10, defects
# 5 and 6 and the SSRF and 429 weaknesses).  Runs in its own network
# namespace (root) so that the upstream can sit on a non-loopback address
# (192.0.2.10 on lo): a redirect from it to 127.0.0.1 must be refused.
#
# tests/tools/protofault.py is the upstream: the first component of the
# repository name picks a fault (loop, ftp, http09, empty, chunked,
# ratelimit, tolocal) and is stripped before forwarding to docker-registry.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"

if [ -z "${CCP_HARDENING_NETNS:-}" ]; then
	if ! is_root || ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
		skip hardening/all "needs root, unshare and ip (iproute2)"
		exit 0
	fi
	exec env CCP_HARDENING_NETNS=1 unshare --net -- bash "$0" "$@"
fi

t_init hardening
ip link set lo up
ip addr add 192.0.2.10/32 dev lo
ADDR=192.0.2.10

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_conncount LOCAL || exit 1
PFPORT=$(free_port_on "$ADDR")
_spawn PF "$T_OUT/protofault.log" "$PY" -u "$TOOLS/protofault.py" \
	--listen "$ADDR:$PFPORT" --upstream "$UP_URL" --retry-after 30 \
	--local-target "http://$LOCAL_HOSTPORT"
_wait_listening PF 15 || { fail hardening/start-protofault "protofault.py did not start"; t_done; }
PF_URL=http://$ADDR:$PFPORT
# local.test: the registry itself, on loopback (allowed: it is the upstream)
start_ccprewarm CCP "$PF_URL" --upstream "local.test=$UP_URL" || exit 1
M=$CCP_URL
UPG='ccprewarm_upstream_up{upstream="docker.io"}'
pf_count() { curl -s -m 5 "$PF_URL/_stats" | jq -r --arg f "$1" '.faults[$f] // 0'; }
# pick K: "repo digest" of the K-th distinct layer (each test uses its own,
# so that nothing is already cached)
pick() {
	seed_q '[.images[] | (.ref | split(":")[0]) as $r | .platforms[] | .layers[] | {r: $r, d: .digest}] | unique_by(.d) | .['"$1"'] | "\(.r) \(.d)"'
}
read -r R1 D1 < <(pick 0)
read -r R2 D2 < <(pick 1)
read -r R3 D3 < <(pick 2)
read -r R4 D4 < <(pick 3)
read -r R5 D5 < <(pick 4)
blobfile() { echo "$SEED_BLOBS/${1#sha256:}"; }

# ------------------------------------------------ per-request faults (5)
# Each fails its own request (not 200, promptly); none opens the breaker:
# a healthy blob right after still comes from upstream.
for fault in loop ftp http09 empty; do
	req GET "$M/v2/$fault/$R1/blobs/$D1"
	check "hardening/fault-$fault/fails" "want a 5xx OCI error; $(exchange)" \
		[ "${R_CODE:0:1}" = 5 -a "$(oci_error_code)" != "" ]
	check "hardening/fault-$fault/prompt" "took ${R_TIME}s, want < 10 s" secs_lt "$R_TIME" 10
	g=$(metric "$M" "$UPG")
	check "hardening/fault-$fault/breaker-closed" "$UPG is '$g' after one '$fault' request, want 1" [ "$g" = 1 ]
done
req GET "$M/v2/pass/$R1/blobs/$D1"
check hardening/fault-then-healthy "a healthy blob after the faults: $(exchange)" \
	[ "$R_CODE" = 200 -a "$(sha256_of "$R_BODY")" = "${D1#sha256:}" ]
n=$(grep -c "unreachable" "$CCP_LOG")
check hardening/faults-never-tripped "the breaker opened $n times" [ "$n" = 0 ]

# ------------------------------------------------ chunked upstream (6)
# No Content-Length upstream: the first client must get the whole,
# verified body and a clean end (it used to hang until the idle timeout).
req GET "$M/v2/chunked/$R2/blobs/$D2"
check hardening/chunked/first-client "want 200 and the blob's bytes in < 20 s; $(exchange) in ${R_TIME}s" \
	[ "$R_CODE" = 200 -a "$R_RC" = 0 -a "$(sha256_of "$R_BODY")" = "${D2#sha256:}" ]
check hardening/chunked/stored "the blob is not in the store" \
	cmp -s "$(store_path "$CCP_DATA" "$D2")" "$(blobfile "$D2")"
req GET "$M/v2/pass/$R2/blobs/$D2"
check hardening/chunked/then-hit "want a HIT of the right bytes; $(exchange), X-Cache $(hdr x-cache)" \
	[ "$R_CODE" = 200 -a "$(hdr x-cache)" = HIT -a "$(sha256_of "$R_BODY")" = "${D2#sha256:}" ]

# ------------------------------------------------ redirect into the node
# The upstream (192.0.2.10) redirects to 127.0.0.1: refused, nothing
# connects there, the request fails, the breaker stays closed.
req GET "$M/v2/tolocal/$R3/blobs/$D3"
check hardening/ssrf/refused "want a 5xx; $(exchange)" [ "${R_CODE:0:1}" = 5 ]
n=$(conncount LOCAL)
check hardening/ssrf/no-connection "the loopback target saw $n connections, want 0" [ "$n" = 0 ]
g=$(metric "$M" "$UPG")
check hardening/ssrf/breaker-closed "$UPG is '$g' after a refused redirect, want 1" [ "$g" = 1 ]
# A loopback upstream is fine; and a redirect to its address is refused
# even when curl holds a pooled connection there (no new socket is opened).
req GET "$M/v2/local.test/$R1/blobs/$D1"
check hardening/ssrf/local-upstream-ok "a loopback upstream serves: $(exchange)" [ "$R_CODE" = 200 ]
req GET "$M/v2/local.test/$R5/manifests/does-not-exist"
mark=$(wc -l <"$UP_LOG")
req GET "$M/v2/toup/$R5/blobs/$D5"
check hardening/ssrf/pooled-refused "a redirect to the loopback upstream's address: $(exchange)" \
	[ "${R_CODE:0:1}" = 5 ]
n=$(tail -n +"$((mark + 1))" "$UP_LOG" | grep -c "blobs/$D5")
check hardening/ssrf/pooled-no-request "the loopback registry saw $n requests for the blob, want 0" [ "$n" = 0 ]

# ------------------------------------------------ 429 from upstream
# The client gets 429 TOOMANYREQUESTS with upstream's Retry-After; later
# blob misses within the window are answered locally, upstream untouched.
req GET "$M/v2/ratelimit/$R3/blobs/$D3"
check hardening/429/status "want 429 TOOMANYREQUESTS; $(exchange)" \
	[ "$R_CODE" = 429 -a "$(oci_error_code)" = TOOMANYREQUESTS ]
ra=$(hdr retry-after)
ra_ok() { [ -n "$ra" ] && [ "$ra" -gt 20 ] 2>/dev/null && [ "$ra" -le 30 ]; }
check hardening/429/retry-after "Retry-After is '$ra', want 30 (or a little less)" ra_ok
before=$(pf_count ratelimit)
req GET "$M/v2/ratelimit/$R4/blobs/$D4"
after=$(pf_count ratelimit)
check hardening/429/window-local "second miss in the window: $(exchange), Retry-After '$(hdr retry-after)'; upstream asked $((after - before)) more times, want 429 and 0" \
	[ "$R_CODE" = 429 -a "$after" = "$before" -a -n "$(hdr retry-after)" ]
req GET "$M/v2/pass/$R1/blobs/$D1"
check hardening/429/hits-still-served "a cached blob during the 429 window: $(exchange)" [ "$R_CODE" = 200 ]

stop_clean CCP hardening
t_done
