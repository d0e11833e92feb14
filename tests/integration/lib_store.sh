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
