#!/usr/bin/env bash
# test_range.sh: Range on blobs by RFC 9110 section 14, through the real
# daemon, on a stored blob (sendfile path) and on a miss (fill path):
# numbers too large for 64 bits are still numbers (a first-pos past the end
# is 416 with Content-Range: bytes */size, never a silent 200), a bad
# range-set is ignored (bytes=--1 is a whole 200, never a 206), several
# ranges that touch are coalesced into one 206, disjoint ones give the
# whole blob, HEAD ignores Range, If-Range with another validator gives the
# whole blob.  The pure parser's table is tests/data/range.in/.out.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init range

start_registry UP || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL

# push_blob REPO FILE: a monolithic upload; prints the digest.
push_blob() {
	local repo=$1 f=$2 d loc
	d=sha256:$(sha256_of "$f")
	loc=$(curl -sS -X POST -D - -o /dev/null "$UP_URL/v2/$repo/blobs/uploads/" |
		tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
	case "$loc" in http*) ;; *) loc=$UP_URL$loc ;; esac
	case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
	curl -sSf -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary @"$f" -o /dev/null "$loc" || return 1
	echo "$d"
}

SIZE=100000
head -c $SIZE /dev/urandom >"$T_TMP/blob"
HIT=$(push_blob test/range "$T_TMP/blob") || { fail range/setup "cannot push to docker-registry"; exit 1; }
req GET "$M/v2/test/range/blobs/$HIT"
check range/setup-hit-stored "first GET: $(exchange)" [ "$R_CODE" = 200 ]

# want NAME RANGE STATUS [FIRST LAST] [CURL ARGS...]: GET of the stored
# blob with that Range; 206 must carry that slice and Content-Range, 200
# the whole blob and no Content-Range, 416 "bytes */SIZE".
want() {
	local name=$1 range=$2 status=$3 first= last= url=${URL:-$M/v2/test/range/blobs/$HIT}
	shift 3
	if [ "$status" = 206 ]; then
		first=$1 last=$2
		shift 2
	fi
	req GET "$url" -H "Range: $range" "$@"
	local cr why=
	cr=$(hdr Content-Range)
	case "$status" in
	206)
		tail -c +$((first + 1)) "$T_TMP/blob" | head -c $((last - first + 1)) >"$T_TMP/want"
		[ "$R_CODE" = 206 ] && [ "$cr" = "bytes $first-$last/$SIZE" ] &&
			cmp -s "$T_TMP/want" "$R_BODY" || why="want 206 bytes $first-$last/$SIZE"
		;;
	200)
		[ "$R_CODE" = 200 ] && [ -z "$cr" ] && cmp -s "$T_TMP/blob" "$R_BODY" ||
			why="want the whole blob, 200, no Content-Range"
		;;
	416)
		[ "$R_CODE" = 416 ] && [ "$cr" = "bytes */$SIZE" ] &&
			[ "$(oci_error_code)" = RANGE_INVALID ] ||
			why="want 416 RANGE_INVALID with Content-Range: bytes */$SIZE"
		;;
	esac
	if [ -z "$why" ]; then
		pass "$name"
	else
		fail "$name" "Range: $range: $why; $(exchange), Content-Range '$cr'"
	fi
}

huge=99999999999999999999999
want range/hit/overflow-first-pos "bytes=$huge-" 416
want range/hit/overflow-both "bytes=18446744073709551616-18446744073709551617" 416
want range/hit/overflow-last-pos "bytes=10-$huge" 206 10 $((SIZE - 1))
want range/hit/overflow-suffix "bytes=-$huge" 206 0 $((SIZE - 1))
want range/hit/double-minus "bytes=--1" 200
want range/hit/plus-sign "bytes=+1-2" 200
want range/hit/inverted "bytes=5-3" 200
want range/hit/other-unit "items=0-9" 200
want range/hit/unit-case "BYTES=0-9" 206 0 9
want range/hit/suffix "bytes=-500" 206 $((SIZE - 500)) $((SIZE - 1))
want range/hit/suffix-zero "bytes=-0" 416
want range/hit/past-end "bytes=$SIZE-" 416
want range/hit/multi-touching "bytes=100-199,0-99" 206 0 199
want range/hit/multi-overlapping "bytes=0-499, 100-999" 206 0 999
want range/hit/multi-disjoint "bytes=0-9,20-29" 200
want range/hit/multi-one-satisfiable "bytes=$SIZE-,0-9" 206 0 9
want range/hit/multi-none-satisfiable "bytes=$SIZE-,-0" 416
want range/hit/if-range-match "bytes=0-9" 206 0 9 -H "If-Range: \"$HIT\""
want range/hit/if-range-other "bytes=0-9" 200 -H 'If-Range: "sha256:0000"'
want range/hit/if-range-date "bytes=0-9" 200 -H 'If-Range: Sat, 29 Oct 1994 19:43:31 GMT'

# HEAD: RFC 9110 defines range handling for GET only.
req HEAD "$M/v2/test/range/blobs/$HIT" -H "Range: bytes=0-9"
check range/hit/head-ignores-range "$(exchange)" \
	[ "$R_CODE" = 200 ] && [ "$(hdr Content-Length)" = $SIZE ] && [ -z "$(hdr Content-Range)" ]

# Misses: the same parser on the fill path (each its own cold blob).
n=0
miss() {
	n=$((n + 1))
	head -c $SIZE /dev/urandom >"$T_TMP/blob"
	local d
	d=$(push_blob test/range "$T_TMP/blob") || { fail "$1" "push failed"; return; }
	URL=$M/v2/test/range/blobs/$d want "$@"
}
miss range/miss/overflow-first-pos "bytes=$huge-" 416
miss range/miss/double-minus "bytes=--1" 200
miss range/miss/multi-touching "bytes=0-9,10-19" 206 0 19
miss range/miss/suffix "bytes=-10" 206 $((SIZE - 10)) $((SIZE - 1))

stop_clean CCP range
t_done
