#!/usr/bin/env bash
# test_dockerd.sh: a real docker daemon (a private dockerd, its own roots
# and containerd) pulls through ccprewarm as its --registry-mirror.  There
# is no internet here, so a pull that succeeds with the seeded digest went
# through the mirror.  Then the upstream stops, the images are removed, and
# the pulls must still succeed from the mirror's store.  containerd's ctr
# fetches a multi-arch image (all platforms) straight from the mirror too.
. "$(dirname "$0")/lib.sh"
t_init dockerd

if ! is_root; then
	skip dockerd/all "needs root to run a private dockerd (run as root, or in CI)"
	exit 0
fi
for b in dockerd containerd runc; do
	if ! command -v "$b" >/dev/null; then
		skip dockerd/all "$b not installed (tests/deps.sh test installs docker.io)"
		exit 0
	fi
done

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1

if ! start_dockerd D "$CCP_URL"; then
	fail dockerd/start "private dockerd did not come up (see dockerd-D.log)"
	exit 1
fi
pass dockerd/start

IMAGES="alpine:3.19 test/multi-oci:v1 test/multi-docker:v1 test/single-docker:v1 test/single-oci:v1"

# docker_pull PREFIX NAME:TAG: pull, then check the image is the seeded
# one: RepoDigests has the seeded manifest digest, the image ID is the
# linux/amd64 config digest.
docker_pull() {
	local prefix=$1 ref=$2 sref out want_digest want_id got
	sref=$ref
	[[ $ref == */* ]] || sref=library/$ref
	want_digest=$(seed_q --arg r "$sref" '.images[] | select(.ref == $r) | .digest')
	want_id=$(seed_q --arg r "$sref" '.images[] | select(.ref == $r) | .platforms[] |
		select(.platform.architecture == "amd64") | .config.digest')
	echo "+ docker pull $ref" >>"$T_OUT/docker.log"
	if ! dockercli D pull "$ref" >>"$T_OUT/docker.log" 2>&1; then
		fail "$prefix/$ref" "docker pull failed: $(tail -n 1 "$T_OUT/docker.log" | cut -c1-300)"
		return
	fi
	got=$(dockercli D image inspect "$ref" --format '{{.Id}} {{range .RepoDigests}}{{.}} {{end}}' 2>&1)
	if [[ " $got " != *"@$want_digest "* ]]; then
		fail "$prefix/$ref" "pulled, but RepoDigests lacks $want_digest: $got"
	elif [[ $got != "$want_id "* ]]; then
		fail "$prefix/$ref" "pulled, but image ID is not the seeded config $want_id: $got"
	else
		pass "$prefix/$ref"
	fi
}

for ref in $IMAGES; do
	docker_pull dockerd/pull "$ref"
done

# ctr (containerd 1.6) fetches every platform of a multi-arch index.
if command -v ctr >/dev/null; then
	ref=test/multi-oci:v1
	echo "+ ctr content fetch --all-platforms $CCP_HOSTPORT/$ref" >>"$T_OUT/docker.log"
	if timeout 120 ctr -a "$D_CONTAINERD" -n ccp-ctr content fetch --plain-http \
		--all-platforms "$CCP_HOSTPORT/$ref" >>"$T_OUT/docker.log" 2>&1; then
		have=$(ctr -a "$D_CONTAINERD" -n ccp-ctr content ls -q 2>/dev/null | sort)
		missing=
		for dg in $(seed_q --arg r "$ref" '.images[] | select(.ref == $r) |
			(.digest, .platforms[].digest, .blobs[].digest)'); do
			grep -qx "$dg" <<<"$have" || missing="$missing ${dg:7:12}"
		done
		if [ -z "$missing" ]; then
			pass "dockerd/ctr-fetch-all/$ref"
		else
			fail "dockerd/ctr-fetch-all/$ref" "content missing after fetch:$missing"
		fi
	else
		fail "dockerd/ctr-fetch-all/$ref" "ctr content fetch failed: $(tail -n 1 "$T_OUT/docker.log" | cut -c1-300)"
	fi
else
	skip dockerd/ctr-fetch-all "ctr not installed"
fi

# Upstream gone; images removed; pull again from the mirror's store.
stop UP 10
echo "+ docker rmi $IMAGES" >>"$T_OUT/docker.log"
if dockercli D rmi $IMAGES >>"$T_OUT/docker.log" 2>&1 &&
	[ -z "$(dockercli D images -q 2>/dev/null)" ]; then
	pass dockerd/rmi
else
	fail dockerd/rmi "docker rmi failed or left images: $(dockercli D images 2>&1 | tail -n +2 | tr '\n' ' ')"
fi
for ref in $IMAGES; do
	docker_pull dockerd/pull-offline "$ref"
done

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail dockerd/still-running "ccprewarm died during the test"
fi
t_done
