#!/usr/bin/env bash
# test_drop.sh: an upstream that cuts every blob's first GET off half-way
# (faultproxy.py drop).  Clients of the mirror must still get whole,
# correct blobs: the mirror resumes or retries, and never commits or
# serves the truncated body as the blob.
. "$(dirname "$0")/lib.sh"
t_init drop

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_proxy PX "$UP_URL" drop || exit 1
start_ccprewarm CCP "$PX_URL" || exit 1
M=$CCP_URL

# One client, a fresh blob.
d=$(seed_q '.images[] | select(.ref == "test/shared-a:v1") | .platforms[0].layers[1].digest')
req GET "$M/v2/test/shared-a/blobs/$d"
if [ "$R_RC" -eq 0 ] && [ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "$d" ]; then
	pass drop/curl-blob
else
	fail drop/curl-blob "want a clean 200 with the whole blob; $(exchange)"
fi

# Two clients at once on another fresh blob.
d2=$(seed_q '.images[] | select(.ref == "test/shared-b:v2") | .platforms[0].layers[-1].digest')
pids=()
for i in 1 2; do
	(
		curl -sS -m 60 -o "$T_TMP/par$i.body" -w '%{http_code}' \
			"$M/v2/test/shared-b/blobs/$d2" >"$T_TMP/par$i.code" 2>/dev/null
		echo $? >"$T_TMP/par$i.rc"
	) &
	pids+=($!)
done
wait "${pids[@]}"
bad=
for i in 1 2; do
	if [ "$(cat "$T_TMP/par$i.rc")" != 0 ] || [ "$(cat "$T_TMP/par$i.code")" != 200 ] ||
		[ "sha256:$(sha256_of "$T_TMP/par$i.body")" != "$d2" ]; then
		bad="$bad client$i:rc=$(cat "$T_TMP/par$i.rc"),http=$(cat "$T_TMP/par$i.code"),bytes=$(stat -c %s "$T_TMP/par$i.body")"
	fi
done
check drop/concurrent-clients "want both clients to get the whole blob:$bad" [ -z "$bad" ]

# Whole images, every platform.
pull_all "$CCP_HOSTPORT" drop/pull

st=$(proxy_stats PX)
faults=$(jq .faults <<<"$st")
check drop/faults-injected "the proxy cut no blob: the test tested nothing" [ "$faults" -ge 1 ]
note "upstream: $faults blob GETs cut, $(jq .ranged <<<"$st") requests with Range, $(jq '[.requests | to_entries[] | select(.key | test("^GET .*/blobs/")) | .value] | add' <<<"$st") blob GETs in all"

# Everything in the store is whole.
if [ -n "$CCP_DATA" ]; then
	bad=
	for f in $(find "$CCP_DATA/blobs" -type f 2>/dev/null); do
		[ "$(sha256_of "$f")" = "$(basename "$f")" ] || bad="$bad $(basename "$f" | cut -c1-12)"
	done
	check drop/store-verified "store files whose content is not their name:$bad" [ -z "$bad" ]
fi
if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail drop/still-running "ccprewarm died during the test"
fi
t_done
