#!/usr/bin/env bash
# test_containerd.sh: containerd pulls through the mirror with hosts.toml
# mirror entries (issue 4; root only).  A private containerd (own root,
# state, socket; CRI disabled) and `ctr images pull --hosts-dir` for
# docker.io/library/alpine:3.19 and for an image of a second registry,
# registry.test:5000 (configured in ccprewarm as that host name, reached only
# through the mirror: the name is never resolved).  containerd sends
# ?ns=<registry> with every request, which is how ccprewarm routes them; the
# pulled images must be exactly the seeded ones.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init containerd

if ! is_root; then
	skip containerd/all "needs root (a private containerd)"
	exit 0
fi
for c in containerd ctr; do
	if ! command -v "$c" >/dev/null; then
		skip containerd/all "no $c (Debian: containerd)"
		exit 0
	fi
done

REG2=registry.test:5000
start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 4 --seed 1 || exit 1
cp "$SEED_JSON" "$T_OUT/seed-1.json"
start_registry UP2 || exit 1
seed_registry "$UP2_URL" --size-mb 4 --seed 2 || exit 1
cp "$SEED_JSON" "$T_OUT/seed-2.json"
start_ccprewarm CCP "$UP_URL" --upstream "$REG2=$UP2_URL" || exit 1

# A private containerd: nothing shared with a system one.
CD=$T_TMP/ctd
SOCK=$CD/containerd.sock
mkdir -p "$CD/root" "$CD/state" "$CD/opt"
cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
EOF
_spawn CTD "$T_OUT/containerd.log" containerd --config "$CD/config.toml"
ctr_() { timeout 120 ctr --address "$SOCK" --namespace ccp-test "$@"; }
ctd_up() { ctr_ version >/dev/null 2>&1; }
if ! wait_until 30 ctd_up; then
	fail containerd/start "containerd did not answer on $SOCK within 30 s (see containerd.log)"
	t_done
fi

# hosts.toml, one directory per registry: the mirror first, the registry
# itself as the server (never reached here).
HOSTS=$T_TMP/certs.d
mkdir -p "$HOSTS/docker.io" "$HOSTS/$REG2"
cat >"$HOSTS/docker.io/hosts.toml" <<EOF
server = "https://registry-1.docker.io"

[host."http://$CCP_HOSTPORT"]
  capabilities = ["pull", "resolve"]
EOF
cat >"$HOSTS/$REG2/hosts.toml" <<EOF
server = "https://$REG2"

[host."http://$CCP_HOSTPORT"]
  capabilities = ["pull", "resolve"]
EOF
cp -r "$HOSTS" "$T_OUT/certs.d"

# ctr_pull NAME REF SEEDFILE SEEDREF: pull, then compare with the seed.
ctr_pull() {
	local name=$1 ref=$2 seed=$3 sref=$4 want got missing d mark
	mark=$(access_log CCP | wc -l)
	echo "+ ctr images pull --hosts-dir $HOSTS --snapshotter native --platform linux/amd64 $ref" >>"$T_OUT/ctr.log"
	if ! ctr_ images pull --hosts-dir "$HOSTS" --snapshotter native \
		--platform linux/amd64 "$ref" >>"$T_OUT/ctr.log" 2>&1; then
		fail "$name/pull" "ctr images pull $ref failed: $(grep -v '^+ ' "$T_OUT/ctr.log" | grep -v -E '^(elapsed|[a-z]+-|manifest-|index-|config-|layer-)' | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
		return
	fi
	pass "$name/pull"
	want=$(jq -r --arg r "$sref" '.images[] | select(.ref == $r) | .digest' "$seed")
	got=$(ctr_ images ls | awk -v r="$ref" '$1 == r { print $3 }')
	check "$name/digest" "image $ref has digest '$got', the seeded one is $want" [ "$got" = "$want" ]
	# Every amd64 blob of it is in containerd's content store.
	missing=
	for d in $(jq -r --arg r "$sref" '.images[] | select(.ref == $r) | .platforms[] | select(.platform.architecture == "amd64") | .digest, .config.digest, .layers[].digest' "$seed"); do
		ctr_ content ls -q | grep -q -x "$d" || missing="$missing ${d:7:12}"
	done
	check "$name/content" "not in containerd's content store:$missing" [ -z "$missing" ]
	# ccprewarm saw it with ?ns=, and answered from the right upstream.
	local host=$5 ns
	ns=$(access_log CCP | tail -n +$((mark + 1)) | jq -r '.path' | grep -c -E "[?&]ns=$host(&|$)")
	check "$name/ns-routing" "no '?ns=$host' request in ccprewarm's access log for this pull: $(access_log CCP | tail -n +$((mark + 1)) | jq -r .path | head -3 | tr '\n' ' ')" \
		[ "$ns" -ge 1 ]
	note "$name: $ns requests with ?ns=$host; $(access_log CCP | tail -n +$((mark + 1)) | jq -r .path | head -2 | tr '\n' ' ')"
}
ctr_pull containerd/docker.io docker.io/library/alpine:3.19 "$T_OUT/seed-1.json" library/alpine:3.19 'docker\.io'
ctr_pull containerd/second-registry "$REG2/test/single-oci:v1" "$T_OUT/seed-2.json" test/single-oci:v1 'registry\.test(:|%3A|%3a)5000'
ctr_pull containerd/second-registry-index "$REG2/test/multi-docker:v1" "$T_OUT/seed-2.json" test/multi-docker:v1 'registry\.test(:|%3A|%3a)5000'

# The upstreams really were the ones named: registry 2's content differs.
d1=$(jq -r '.images[] | select(.ref == "test/single-oci:v1") | .digest' "$T_OUT/seed-1.json")
d2=$(jq -r '.images[] | select(.ref == "test/single-oci:v1") | .digest' "$T_OUT/seed-2.json")
check containerd/seeds-differ "both registries hold the same test/single-oci:v1" [ "$d1" != "$d2" ]

stop_clean CCP containerd
t_done
