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
seed_registry "$UP_URL" --size-mb 80 --large-layers 3 || exit 1
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

# ------------------------------------------------ duplicate Content-Length
# Two values that disagree: 400 SIZE_INVALID and the connection closed
# (nginx answers 400 too); the same value twice is harmless.
raw() {
	"$PY" - "$CCP_PORT" "$1" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
data = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
except socket.timeout:
    pass
print(data.decode("latin-1").split("\r\n")[0])
print("SIZE_INVALID" if b"SIZE_INVALID" in data else "-")
print("closed")
PYEOF
}
out=$(raw 'POST /_ccprewarm/v1/warm HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
check clientguard/dup-content-length "two different Content-Length values: got '$(echo "$out" | tr '\n' ' ')', want a 400 SIZE_INVALID" \
	eval '[[ $(echo "$out" | head -n 1) == "HTTP/1.1 400"* && $(echo "$out" | sed -n 2p) == SIZE_INVALID ]]'
out=$(raw 'GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
check clientguard/same-content-length "the same Content-Length twice: got '$(echo "$out" | head -n 1)', want 200" \
	eval '[[ $(echo "$out" | head -n 1) == "HTTP/1.1 200"* ]]'

# ------------------------------------------------ admin API
A=$M/_ccprewarm/v1
req GET "$A/stats"
check clientguard/admin-plain "GET stats from the CLI's way: $(exchange)" [ "$R_CODE" = 200 ]
req GET "$A/stats" -H "Origin: http://127.0.0.1:$CCP_PORT"
check clientguard/admin-loopback-origin "a loopback Origin: $(exchange)" [ "$R_CODE" = 200 ]
req GET "$A/stats" -H 'Host: rebind.example:5000'
check clientguard/admin-foreign-host "Host rebind.example (DNS rebinding): $(exchange)" \
	[ "$R_CODE" = 403 -a "$(oci_error_code)" = DENIED ]
req GET "$A/stats" -H 'Origin: http://evil.example'
check clientguard/admin-foreign-origin "Origin evil.example (CSRF): $(exchange)" \
	[ "$R_CODE" = 403 -a "$(oci_error_code)" = DENIED ]
req POST "$A/warm" -H 'Content-Type: text/plain' --data-binary '{}'
check clientguard/admin-post-text "POST warm as text/plain (a form a page can send): $(exchange)" \
	[ "$R_CODE" = 403 -a "$(oci_error_code)" = DENIED ]
req POST "$A/warm" --data-binary '{}'
check clientguard/admin-post-form "POST warm as a urlencoded form: $(exchange)" \
	[ "$R_CODE" = 403 -a "$(oci_error_code)" = DENIED ]
req POST "$A/warm" -H 'Content-Type: application/json' --data-binary '{}'
check clientguard/admin-post-json "POST warm as JSON (the CLI): $(exchange)" [ "${R_CODE:0:1}" = 2 ]

# ------------------------------------------------ access log
# bytes = bytes sent, duration_ms = until the last byte went to the
# kernel, cache = X-Cache.  A large hit read at 8 MB/s takes seconds (more
# than the socket buffers hold); a reader that gives up early was sent less
# than the blob.
L=$(seed_q '.images[] | select(.ref == "bench/large:v1") | .platforms[0].layers[0].digest')
LSIZE=$(seed_q --arg d "$L" '.blobs[$d].size')
req GET "$M/v2/bench/large/blobs/$L"
[ "$R_CODE" = 200 ] || fail clientguard/log-warm "$(exchange)"
logline() { access_log CCP | jq -c --arg p "$1" 'select(.path == $p)' | tail -n 1; }
curl -s -o /dev/null --limit-rate 8M -m 60 "$M/v2/bench/large/blobs/$L?t=slow"
sleep 0.5
line=$(logline "/v2/bench/large/blobs/$L?t=slow")
d=$(jq -r .duration_ms <<<"$line")
b=$(jq -r .bytes <<<"$line")
check clientguard/log-hit-duration "a $LSIZE-byte hit read at 8 MB/s logged $line; want duration_ms >= 500" \
	[ "${d:-0}" -ge 500 ]
check clientguard/log-hit-bytes "bytes $b, want $LSIZE" [ "$b" = "$LSIZE" ]
curl -s -o /dev/null --limit-rate 2M -m 2 "$M/v2/bench/large/blobs/$L?t=quit"
wait_until 10 eval '[ -n "$(logline "/v2/bench/large/blobs/$L?t=quit")" ]'
line=$(logline "/v2/bench/large/blobs/$L?t=quit")
b=$(jq -r .bytes <<<"$line")
check clientguard/log-cut-bytes "a reader that left after 2 s: $line; want bytes < $LSIZE" \
	[ "${b:-$LSIZE}" -lt "$LSIZE" ]
line=$(logline "/v2/")
c=$(jq -r .cache <<<"$line")
check clientguard/log-local-cache "GET /v2/ logged cache '$c', want MISS as X-Cache says" [ "$c" = MISS ]
stop_clean CCP clientguard
t_done
