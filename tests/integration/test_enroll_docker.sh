#!/usr/bin/env bash
# test_enroll_docker.sh: `enroll --docker` pulls a recipe's images into a
# private dockerd (issue 10).  A docker.io image comes by name through
# dockerd's registry-mirrors; an image of another registry (reg.test, here
# the same docker-registry under a second upstream name) comes through the
# mirror's path prefix and must end up under its original name only: no
# extra mirror-prefixed tag (127.0.0.1:PORT/reg.test/...) left behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init enroll_docker

if ! is_root; then
	skip enroll_docker/all "needs root to run a private dockerd"
	exit 0
fi
for b in dockerd containerd runc; do
	if ! command -v "$b" >/dev/null; then
		skip enroll_docker/all "$b not installed (tests/deps.sh test installs docker.io)"
		exit 0
	fi
done
start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" --upstream "reg.test=$UP_URL" || exit 1
if ! start_dockerd D "$CCP_URL"; then
	fail enroll_docker/start "private dockerd did not come up (see dockerd-D.log)"
	t_done
fi
ccp_run enroll enroll docker-app --recipes-dir "$TOP/tests/data/recipes-it" \
	--server "$CCP_URL" --docker="${D_HOST#unix://}"
check enroll_docker/exit-0 "enroll --docker exited $CLI_RC: $(tail -n 5 "$CLI_ERR" | tr '\n' '|' | cut -c1-400)" \
	[ "$CLI_RC" = 0 ]
names=$(dockercli D images --format '{{.Repository}}:{{.Tag}}' 2>>"$T_OUT/docker.log" | sort | tr '\n' ' ')
note "dockerd's images: $names"
check enroll_docker/original-name "want reg.test/test/single-docker:v1 among: $names" \
	eval '[[ " $names" == *" reg.test/test/single-docker:v1 "* ]]'
check enroll_docker/hub-name "want test/single-oci:v1 among: $names" \
	eval '[[ " $names" == *" test/single-oci:v1 "* ]]'
check enroll_docker/no-mirror-tag "a mirror-prefixed name was left: $names" \
	eval '[[ $names != *"$CCP_HOSTPORT/"* ]]'
want=$(seed_q '.images[] | select(.ref == "test/single-docker:v1") | .platforms[0].config.digest')
got=$(dockercli D image inspect --format '{{.Id}}' reg.test/test/single-docker:v1 2>>"$T_OUT/docker.log")
check enroll_docker/image-id "reg.test/test/single-docker:v1 is '$got', want the seeded config $want" [ "$got" = "$want" ]
stop_clean CCP enroll_docker
t_done
