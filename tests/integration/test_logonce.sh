#!/usr/bin/env bash
# test_logonce: one upstream failure is logged once, where it happens
# (issue 12): a manifest fetch from an upstream that refuses connections
# leaves one warning naming the transfer in the operator's log, not a second
# one from the fill that asked for it.
. "$(dirname "$0")/lib.sh"
t_init logonce

# A port nothing listens on: the connection is refused at once.
dead=$(free_port DEAD)
start_ccprewarm CCP "http://127.0.0.1:$dead" || exit 1
req GET "$CCP_URL/v2/test/logonce/manifests/v1"
check logonce/unavailable "GET of a manifest from a dead upstream: $(exchange)" \
	[ "$R_CODE" = 503 ]
n=$(grep -c 'warn: .*test/logonce' "$CCP_LOG")
check logonce/one-warning "the failure was logged $n times: $(grep 'test/logonce' "$CCP_LOG" | grep -v '^{' | tr '\n' '|')" \
	[ "$n" = 1 ]
t_done
