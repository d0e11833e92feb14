#!/usr/bin/env bash
# test_resume.sh: an upstream connection that drops in the middle of a blob
# body is resumed with Range from where it stopped (issue 3): the client
# gets the whole verified blob, the upstream serves the rest as a 206 (not
# the whole blob again), and the store ends up with exactly that blob.
#
# Upstream: docker-registry behind tests/tools/faultproxy.py --mode drop
# (the first GET of each blob sends half its body and closes).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init resume

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_proxy PX "$UP_URL" drop || exit 1
start_ccprewarm CCP "$PX_URL" || exit 1
M=$CCP_URL

# The largest blob of the set (a few MB).
D=$(seed_q '.blobs | to_entries | max_by(.value.size) | .key')
REPO=$(seed_q --arg d "$D" '.blobs[$d].repo')
SIZE=$(seed_q --arg d "$D" '.blobs[$d].size')
HALF=$((SIZE / 2))
note "blob $D of $REPO, $SIZE bytes; the proxy cuts it after $HALF"

ub0=$(metric "$M" ccprewarm_upstream_bytes_total)
REQ_TIMEOUT=60 req GET "$M/v2/$REPO/blobs/$D"
if [ "$R_RC" = 0 ] && [ "$R_CODE" = 200 ] && [ "$(stat -c %s "$R_BODY")" = "$SIZE" ] &&
	[ "sha256:$(sha256_of "$R_BODY")" = "$D" ]; then
	pass resume/client-gets-verified-blob
	note "X-Cache $(hdr X-Cache), ${R_TIME}s"
else
	fail resume/client-gets-verified-blob "want 200 with all $SIZE bytes and sha256 = digest; $(exchange)"
fi

# What the upstream saw: the cut GET and one ranged GET for the rest.
st=$(proxy_stats PX)
gets=$(jq --arg d "$D" '[.requests | to_entries[] | select(.key | test("^GET .*/blobs/" + $d + "$")) | .value] | add // 0' <<<"$st")
ranged=$(jq .ranged <<<"$st")
faults=$(jq .faults <<<"$st")
check resume/upstream-cut-once "the proxy cut $faults bodies, want 1 (else nothing was tested)" [ "$faults" = 1 ]
check resume/upstream-two-gets-one-ranged \
	"upstream saw $gets GETs of the blob ($ranged with Range), want 2 (1 with Range)" \
	[ "$gets/$ranged" = 2/1 ]
# docker-registry's access log: the second GET was answered 206 with
# exactly the remainder.
line=$(grep -F "GET /v2/$REPO/blobs/$D HTTP/1.1\" 206" "$UP_LOG" | tail -n 1)
rest=$(awk '{print $10}' <<<"$line")
check resume/upstream-206-remainder \
	"want the upstream's 206 for the remaining $((SIZE - HALF)) bytes; its access log: ${line:-no 206 for the blob}" \
	[ "$rest" = $((SIZE - HALF)) ]
ub1=$(metric "$M" ccprewarm_upstream_bytes_total)
check resume/upstream-bytes-once \
	"ccprewarm received $((ub1 - ub0)) body bytes from upstream for a $SIZE-byte blob (a restart from 0 would be $((SIZE + HALF)))" \
	[ "$((ub1 - ub0))" = "$SIZE" ]

# The store: exactly that blob, whole, and no temp file left.
if [ -n "$CCP_DATA" ]; then
	one_blob() { [ "$(find "$CCP_DATA/blobs" -type f | wc -l)" -ge 1 ]; }
	wait_until 10 one_blob
	files=$(cd "$CCP_DATA/blobs" && find . -type f | sort)
	f=$(store_path "$CCP_DATA" "$D")
	if [ "$files" = "./sha256/${D:7:2}/${D#sha256:}" ] && [ "$(sha256_of "$f")" = "${D#sha256:}" ]; then
		pass resume/store-holds-exactly-the-blob
	else
		fail resume/store-holds-exactly-the-blob "want only blobs/sha256/${D:7:2}/${D#sha256:} with that content; store has: $(tr "\n" " " <<<"$files")"
	fi
	tmp_empty() { [ -z "$(find "$CCP_DATA/tmp" -type f 2>/dev/null)" ]; }
	wait_until 10 tmp_empty
	check resume/no-temp-left "files left in tmp/: $(find "$CCP_DATA/tmp" -type f 2>/dev/null | head -3 | tr '\n' ' ')" tmp_empty
else
	skip resume/store-holds-exactly-the-blob "no data dir (CCPREWARM_URL without CCPREWARM_DATA)"
fi

# And it is a plain hit now.
req GET "$M/v2/$REPO/blobs/$D"
check resume/then-hit "want 200 HIT with the same bytes; $(exchange), X-Cache $(hdr X-Cache)" \
	[ "$R_CODE/$(hdr X-Cache)/sha256:$(sha256_of "$R_BODY")" = "200/HIT/$D" ]
stop_clean CCP resume
t_done
