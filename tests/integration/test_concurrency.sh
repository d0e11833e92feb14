#!/usr/bin/env bash
# test_concurrency.sh: single flight under load (issue 3).  Many clients on
# one cold blob cost one upstream GET and all get the same verified bytes;
# a Range request on a blob still being fetched gets its exact slice; a
# stalled upstream fetch blocks nobody else; slow clients do not slow the
# fill down for a fast one; and memory stays bounded (the bytes go through
# the page cache, not RAM) when 16 clients pull ~85 MB of cold blobs.
#
# Upstream: docker-registry behind tests/tools/faultproxy.py, whose per-path
# counters are the upstream GET count, and whose stall/slow modes keep a
# fill in flight for as long as a check needs it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init concurrency

start_registry UP || exit 1
# ~85 MB: the standard set plus three ~25 MB layers (bench/large).
seed_registry "$UP_URL" --size-mb 80 --large-layers 3 || exit 1
start_proxy PX "$UP_URL" pass --rate 8192 || exit 1
start_ccprewarm CCP "$PX_URL" || exit 1
M=$CCP_URL

large() { seed_q ".images[] | select(.ref == \"bench/large:v1\") | .platforms[0].layers[$1].digest"; }
L1=$(large 0)	# 16 clients
L2=$(large 1)	# slow clients and a fast one
L3=$(large 2)	# ranges while in flight
MID=$(seed_q '.images[] | select(.ref == "test/shared-b:v2") | .platforms[0].layers[-1].digest')
CACHED=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .platforms[0].layers[0].digest')
size_of() { seed_q --arg d "$1" '.blobs[$d].size'; }
blobfile() { echo "$SEED_BLOBS/${1#sha256:}"; }
# upstream GETs of a blob digest, through any repository name
up_gets() { proxy_count PX "^GET /v2/.*/blobs/$1\$"; }
# up_started DIGEST: the upstream has seen a GET of it
up_started() { [ "$(up_gets "$1")" -ge 1 ] 2>/dev/null; }
inflight_ge() { [ "$(metric "$M" ccprewarm_inflight_requests)" -ge "$1" ] 2>/dev/null; }
got_upstream_bytes() { [ "$(metric "$M" ccprewarm_upstream_bytes_total)" -gt "$1" ] 2>/dev/null; }

# Warm one manifest and one blob for the "others are not blocked" check.
req GET "$M/v2/test/single-oci/manifests/v1" \
	-H 'Accept: application/vnd.oci.image.manifest.v1+json'
warm_ok=$R_CODE
req GET "$M/v2/test/single-oci/blobs/$CACHED"
if [ "$warm_ok" != 200 ] || [ "$R_CODE" != 200 ]; then
	fail concurrency/warm "could not cache test/single-oci:v1 and a blob; $(exchange)"
fi

# ------------------------------------------------------------ 16 clients
# The upstream stalls after the headers until all 16 are in, so every
# client arrives while the fill is in flight.
proxy_mode PX stall 60
base=$(metric "$M" ccprewarm_inflight_requests)	# counts the /metrics request
for i in $(seq 1 16); do
	bg_get "c$i" "$M/v2/bench/large/blobs/$L1"
done
if ! wait_until 20 inflight_ge $((${base:-1} + 16)); then
	note "only $(metric "$M" ccprewarm_inflight_requests) requests in flight after 20 s"
fi
wait_until 10 up_started "$L1"
proxy_mode PX pass
bad=
for i in $(seq 1 16); do
	bg_wait "c$i" 60 || bad="$bad c$i:hung"
done
want=${L1#sha256:}
for i in $(seq 1 16); do
	b=$(bg_body "c$i")
	if [ "$(bg_rc "c$i")" != 0 ] || [ "$(bg_code "c$i")" != 200 ]; then
		bad="$bad c$i:rc=$(bg_rc "c$i"),http=$(bg_code "c$i"),bytes=$(stat -c %s "$b" 2>/dev/null)"
	elif ! cmp -s "$b" "$(bg_body c1)"; then
		bad="$bad c$i:differs-from-c1"
	fi
done
got=$(sha256_of "$(bg_body c1)")
[ "$got" = "$want" ] || bad="$bad sha256=$got"
check concurrency/16-clients-identical-verified \
	"want 16 × 200 with identical bodies whose sha256 is the digest:$bad" [ -z "$bad" ]
n=$(up_gets "$L1")
check concurrency/16-clients-one-upstream-get \
	"upstream saw $n GETs of $L1, want exactly 1" [ "$n" = 1 ]
miss=$(cache_count CCP "/v2/bench/large/blobs/$L1" MISS)
coal=$(cache_count CCP "/v2/bench/large/blobs/$L1" COALESCED)
check concurrency/16-clients-1-miss-15-coalesced \
	"access log: $miss MISS, $coal COALESCED for $L1 ($(access_log CCP | jq -r --arg p "/v2/bench/large/blobs/$L1" 'select(.path == $p) | .cache' | sort | uniq -c | tr '\n' ' '))" \
	[ "$miss/$coal" = 1/15 ]
for i in $(seq 1 16); do rm -f "$(bg_body "c$i")"; done

# ------------------------------------------------------------ a stalled fetch
# blocks nobody else: the event loop keeps answering.
proxy_mode PX stall 60
bg_get stalled "$M/v2/test/shared-b/blobs/$MID"
wait_until 10 up_started "$MID"
sleep 0.3
prompt() {	# prompt NAME WANT-CODE CMD-ARGS...: answered within 2 s
	local name=$1 code=$2
	shift 2
	REQ_TIMEOUT=10 req GET "$@"
	if [ "$R_CODE" = "$code" ] && secs_lt "$R_TIME" 2; then
		pass "$name"
	else
		fail "$name" "want $code within 2 s while another fetch is stalled; took ${R_TIME}s, $(exchange)"
	fi
}
prompt concurrency/stalled-fetch/v2 200 "$M/v2/"
prompt concurrency/stalled-fetch/cached-manifest 200 "$M/v2/test/single-oci/manifests/v1" \
	-H 'Accept: application/vnd.oci.image.manifest.v1+json'
prompt concurrency/stalled-fetch/cached-blob 200 "$M/v2/test/single-oci/blobs/$CACHED"
if [ "$R_CODE" = 200 ] && [ "$(sha256_of "$R_BODY")" != "${CACHED#sha256:}" ]; then
	fail concurrency/stalled-fetch/cached-blob-body "cached blob body does not match its digest"
fi
prompt concurrency/stalled-fetch/metrics 200 "$M/metrics"
if bg_done stalled; then
	fail concurrency/stalled-fetch/still-stalled "the stalled GET ended early (rc $(bg_rc stalled), http $(bg_code stalled)): the check tested nothing"
fi
proxy_mode PX pass
if bg_wait stalled 30 && [ "$(bg_rc stalled)" = 0 ] &&
	[ "$(sha256_of "$(bg_body stalled)")" = "${MID#sha256:}" ]; then
	pass concurrency/stalled-fetch/completes
else
	fail concurrency/stalled-fetch/completes "after the stall the blob must arrive whole: rc $(bg_rc stalled), http $(bg_code stalled), $(stat -c %s "$(bg_body stalled)" 2>/dev/null) bytes"
fi

# ------------------------------------------------------------ Range in flight
# The upstream sends L3 at 8 MiB/s (~3 s): one slice is already written when
# asked for, one is not yet.
proxy_mode PX slow
size3=$(size_of "$L3")
bg_get full3 "$M/v2/bench/large/blobs/$L3"
ub0=$(metric "$M" ccprewarm_upstream_bytes_total)
wait_until 10 got_upstream_bytes "${ub0:-0}"
sleep 0.5
inflight=$(metric "$M" ccprewarm_inflight_fetches)
full_done_first=0
bg_done full3 && full_done_first=1
r1s=65536 r1e=1114111			# early: likely written already
r2s=$((size3 - 3000000)) r2e=$((size3 - 1000001))	# late: not yet
bg_get range1 "$M/v2/bench/large/blobs/$L3" -H "Range: bytes=$r1s-$r1e"
bg_get range2 "$M/v2/bench/large/blobs/$L3" -H "Range: bytes=$r2s-$r2e"
bg_wait range1 30
bg_wait range2 30
bg_wait full3 60
proxy_mode PX pass
if [ "$inflight" != 1 ] || [ "$full_done_first" = 1 ]; then
	fail concurrency/range-in-flight/setup "the fill was not in flight when the ranges were asked (inflight_fetches $inflight, full GET done: $full_done_first)"
fi
check_range() {	# check_range NAME BG START END
	local name=$1 bg=$2 s=$3 e=$4 want got cr xc
	want=$(tail -c +$((s + 1)) "$(blobfile "$L3")" | head -c $((e - s + 1)) | sha256sum | cut -d' ' -f1)
	got=$(sha256_of "$(bg_body "$bg")")
	cr=$(tr -d '\r' <"$T_TMP/bg-$bg.hdr" | awk -F': ' 'tolower($1) == "content-range" {print $2}')
	xc=$(tr -d '\r' <"$T_TMP/bg-$bg.hdr" | awk -F': ' 'tolower($1) == "x-cache" {print $2}')
	if [ "$(bg_rc "$bg")" = 0 ] && [ "$(bg_code "$bg")" = 206 ] && [ "$got" = "$want" ] &&
		[ "$cr" = "bytes $s-$e/$size3" ]; then
		pass "$name"
		note "$name: 206 $cr, X-Cache $xc, $(cut -d' ' -f2 "$T_TMP/bg-$bg.out")s"
	else
		fail "$name" "want 206 'Content-Range: bytes $s-$e/$size3' with exactly that slice; got rc $(bg_rc "$bg"), http $(bg_code "$bg"), Content-Range '$cr', X-Cache '$xc', $(stat -c %s "$(bg_body "$bg")") bytes, slice sha256 match: $([ "$got" = "$want" ] && echo yes || echo no)"
	fi
}
check_range concurrency/range-in-flight/written-part range1 $r1s $r1e
check_range concurrency/range-in-flight/unwritten-part range2 $r2s $r2e
if [ "$(bg_rc full3)" = 0 ] && [ "$(sha256_of "$(bg_body full3)")" = "${L3#sha256:}" ]; then
	pass concurrency/range-in-flight/full-get
else
	fail concurrency/range-in-flight/full-get "the full GET beside the ranges: rc $(bg_rc full3), http $(bg_code full3), $(stat -c %s "$(bg_body full3)" 2>/dev/null) bytes"
fi
n=$(up_gets "$L3")
check concurrency/range-in-flight/one-upstream-get "upstream saw $n GETs of $L3, want 1" [ "$n" = 1 ]

# ------------------------------------------------------------ slow clients
# Four clients reading at 200 KiB/s start the fill; a fast one joins while
# it is in flight (the upstream sends at 8 MiB/s, ~3 s).  The fast one must
# be done (and the blob stored) long before any slow one.
proxy_mode PX slow
for i in 1 2 3 4; do
	BG_TIMEOUT=120 bg_get "slow$i" "$M/v2/bench/large/blobs/$L2" --limit-rate 200k
done
wait_until 10 up_started "$L2"
sleep 0.3
bg_get fast "$M/v2/bench/large/blobs/$L2"
bg_wait fast 40
# (the rename into the store happens on a worker thread just after)
in_store() { [ -n "$CCP_DATA" ] && [ -f "$(store_path "$CCP_DATA" "$1")" ]; }
stored=no
wait_until 10 in_store "$L2" && stored=yes
slow_done=
for i in 1 2 3 4; do bg_done "slow$i" && slow_done="$slow_done slow$i"; done
if [ "$(bg_rc fast)" = 0 ] && [ "$(bg_code fast)" = 200 ] &&
	[ "$(sha256_of "$(bg_body fast)")" = "${L2#sha256:}" ] && [ -z "$slow_done" ]; then
	pass concurrency/slow-clients/fast-finishes-first
	note "fast client: $(cut -d' ' -f2 "$T_TMP/bg-fast.out")s for $(size_of "$L2") bytes, X-Cache $(tr -d '\r' <"$T_TMP/bg-fast.hdr" | awk -F': ' 'tolower($1) == "x-cache" {print $2}')"
else
	fail concurrency/slow-clients/fast-finishes-first "fast client rc $(bg_rc fast), http $(bg_code fast), $(cut -d' ' -f2 "$T_TMP/bg-fast.out" 2>/dev/null)s, $(stat -c %s "$(bg_body fast)" 2>/dev/null) bytes; slow clients already done:${slow_done:- none}"
fi
check concurrency/slow-clients/fill-completed \
	"the blob is not in the store while the slow clients are still reading: the fill is held back" \
	[ "$stored" = yes ]
n=$(up_gets "$L2")
check concurrency/slow-clients/one-upstream-get "upstream saw $n GETs of $L2, want 1" [ "$n" = 1 ]
fastxc=$(tr -d '\r' <"$T_TMP/bg-fast.hdr" | awk -F': ' 'tolower($1) == "x-cache" {print $2}')
check concurrency/slow-clients/fast-joined-the-fill \
	"the fast client must join the in-flight fill (X-Cache COALESCED), got '$fastxc': the check tested nothing" \
	[ "$fastxc" = COALESCED ]
proxy_mode PX pass
for i in 1 2 3 4; do bg_kill "slow$i"; done
sleep 0.5
req GET "$M/v2/"
check concurrency/slow-clients/alive-after-disconnects "after 4 clients hung up mid-body: $(exchange)" \
	[ "$R_CODE" = 200 ]

stop_clean CCP concurrency

# ------------------------------------------------------------ memory
# 16 clients pull every blob of the set (~85 MB, cold) at once through the
# optimized build (ASan's shadow memory would swamp the number); peak RSS
# must stay under 64 MB.
OPT=$TOP/build/ccprewarm
if [ -n "${CCPREWARM_URL:-}" ]; then
	skip concurrency/rss "CCPREWARM_URL given"
elif [ ! -x "$OPT" ]; then
	skip concurrency/rss "no optimized build at build/ccprewarm (run make)"
else
	CCPREWARM_BIN=$OPT start_ccprewarm RSS "$UP_URL" || exit 1
	seed_q '.blobs | to_entries[] | "\(.value.repo) \(.key) \(.value.size)"' >"$T_TMP/blobs.txt"
	nb=$(wc -l <"$T_TMP/blobs.txt")
	for i in $(seq 1 16); do
		# One curl per client, every blob in turn; each client starts at
		# a different blob so that fills overlap.  Status and size are
		# checked here (the bytes themselves above).
		k=$(((i * 3) % nb))
		args=()
		while read -r repo d size; do
			args+=(-o /dev/null "$RSS_URL/v2/$repo/blobs/$d")
		done < <(tail -n +$((k + 1)) "$T_TMP/blobs.txt"; head -n "$k" "$T_TMP/blobs.txt")
		(
			curl -sS -m 120 -w '%{http_code} %{size_download} %{url}\n' "${args[@]}" \
				>"$T_TMP/rss-$i.out" 2>"$T_TMP/rss-$i.err"
			echo $? >"$T_TMP/rss-$i.rc"
		) &
	done
	rss_done() { [ "$(ls "$T_TMP"/rss-*.rc 2>/dev/null | wc -l)" -ge 16 ]; }
	wait_until 120 rss_done || fail concurrency/rss/clients-done "not all 16 clients done in 120 s"
	bad=$(cat "$T_TMP"/rss-*.out | while read -r code n url; do
		d=${url##*/}
		want=$(awk -v d="$d" '$2 == d {print $3}' "$T_TMP/blobs.txt")
		[ "$code/$n" = "200/$want" ] || echo "${d:7:12}:$code/$n"
	done | sort | uniq -c | head -5 | tr '\n' ' ')
	n=$(cat "$T_TMP"/rss-*.out | wc -l)
	[ "$n" = $((16 * nb)) ] || bad="$bad only $n of $((16 * nb)) transfers ended"
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$RSS_PID/status")
	note "RSS check: $nb blobs, $(seed_q .total_blob_bytes) bytes, 16 clients; VmHWM ${hwm} kB"
	check concurrency/rss/all-transfers-ok "transfers without a 200 of the blob's size: $bad" [ -z "$bad" ]
	check concurrency/rss/vmhwm-under-64mb "VmHWM ${hwm} kB, want < 65536 kB" \
		[ "${hwm:-999999}" -lt 65536 ]
fi
t_done
