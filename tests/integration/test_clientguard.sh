#!/usr/bin/env bash
# test_clientguard.sh: what hostile or sloppy clients get (issue 10: defect
# 7 and the client-side weaknesses).  A manifest GET/HEAD of a reference
# that cannot exist is 404 MANIFEST_UNKNOWN with a detail that says what is
# wrong; a request with two different Content-Length values is refused;
# the admin API wants JSON and a loopback Host/Origin; a client that sends
# its headers a byte at a time is cut at the header deadline; the access
# log's bytes/duration_ms/cache are what was sent, when, and X-Cache.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init clientguard

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL
repo=test/single-oci

# ------------------------------------------------ invalid references (7)
for ref in .v1 -v1 "$(printf 'a%.0s' $(seq 1 129))" sha256:totallywrong md5:abc; do
	for method in GET HEAD; do
		req "$method" "$M/v2/$repo/manifests/$ref"
		name="clientguard/manifest-$method-${ref:0:24}"
		if [ "$method" = HEAD ]; then
			check "$name" "want 404; $(exchange)" [ "$R_CODE" = 404 ]
		else
			check "$name" "want 404 MANIFEST_UNKNOWN; $(exchange)" \
				[ "$R_CODE" = 404 -a "$(oci_error_code)" = MANIFEST_UNKNOWN ]
		fi
	done
done
detail() { jq -r '.errors[0].detail // ""' "$R_BODY"; }
req GET "$M/v2/$repo/manifests/sha256:totallywrong"
d=$(detail)
check clientguard/detail-sha256-hex "detail for sha256:totallywrong is '$d', want it to say the hex part is wrong (not the algorithm)" \
	eval '[[ $d == *"64 hex digits"* && $d != *"only sha256"* ]]'
req GET "$M/v2/$repo/blobs/md5:0123"
d=$(detail)
check clientguard/detail-algorithm "detail for md5:0123 is '$d', want it to name the algorithm" \
	eval '[[ $d == *"only sha256"* ]]'
req GET "$M/v2/$repo/blobs/sha256:$(printf '0%.0s' $(seq 1 63))Z"
d=$(detail)
check clientguard/detail-hex-chars "detail for a 64-char digest with a bad character is '$d'" \
	eval '[[ $d == *"hex digits"* && $d != *"only sha256"* ]]'

t_done
