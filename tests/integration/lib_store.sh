# tests/integration/lib_store.sh: helpers for the store-lifecycle tests
# (budget, gc, verify, crash, disk full).  Source after lib.sh and
# lib_prewarm.sh.

# make_blob FILE BYTES: random content.
make_blob() {
	head -c "$2" /dev/urandom >"$1"
}

# push_blob REGISTRY_URL REPO FILE: a monolithic upload to docker-registry;
# prints the digest.
push_blob() {
	local url=$1 repo=$2 file=$3 d loc
	d=sha256:$(sha256_of "$file")
	loc=$(curl -sS -m 30 -X POST -D - -o /dev/null "$url/v2/$repo/blobs/uploads/" |
		tr -d '\r' | awk -F': ' 'tolower($1) == "location" { print $2 }')
	case "$loc" in
	http*) ;;
	*) loc=$url$loc ;;
	esac
	case "$loc" in
	*\?*) loc="$loc&digest=$d" ;;
	*) loc="$loc?digest=$d" ;;
	esac
	curl -sS -m 60 -f -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary "@$file" "$loc" -o /dev/null || return 1
	echo "$d"
}

# indexed URL DIGEST: the mirror serves DIGEST from its store (HEAD: 200
# HIT); a HEAD of a blob it lacks is asked upstream and is not a HIT.
indexed() {
	local h
	h=$(curl -sS -m 10 -I "$1/v2/any/blobs/$2" 2>/dev/null | tr -d '\r')
	grep -qi '^x-cache: HIT' <<<"$h"
}

# store_bytes URL: ccprewarm_store_bytes from /metrics.
store_bytes() { metric_now "$1" ccprewarm_store_bytes; }

# enroll_images URL RECIPE REF...: enroll a recipe by its image list
# through the admin API (what `ccprewarm enroll` sends).
enroll_images() {
	local url=$1 recipe=$2 imgs
	shift 2
	imgs=$(printf '%s\n' "$@" | jq -R . | jq -s -c .)
	curl -sS -m 30 -f -X POST -H 'Content-Type: application/json' \
		--data "{\"recipe\":\"$recipe\",\"images\":$imgs,\"platforms\":[\"linux/amd64\"]}" \
		"$url/_ccprewarm/v1/enroll" -o /dev/null
}

# partial_of DATA DIGEST: the kept partial file of an interrupted fill.
partial_of() { echo "$1/tmp/partial-${2#sha256:}"; }

# make_partial NAME UPSTREAM DIGEST REPO MINBYTES ARGS...: start ccprewarm
# NAME (its data dir kept), GET the blob through it while the upstream
# proxy PX sends slowly, and kill -9 the daemon once MINBYTES are in the
# partial file.  Leaves NAME stopped.
make_partial() {
	local name=$1 up=$2 d=$3 repo=$4 min=$5 datavar="${1}_DATA" urlvar="${1}_URL" p cpid
	shift 5
	restart_ccprewarm "$name" "$up" "$@" || return 1
	p=$(partial_of "${!datavar}" "$d")
	curl -s -m 60 -o /dev/null "${!urlvar}/v2/$repo/blobs/$d" &
	cpid=$!
	big() { [ "$(stat -c %s "$p" 2>/dev/null || echo 0)" -ge "$min" ]; }
	wait_until 30 big || { kill "$cpid" 2>/dev/null; return 1; }
	stop "$name" 5 KILL
	wait "$cpid" 2>/dev/null
	return 0
}
