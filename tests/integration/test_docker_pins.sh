#!/usr/bin/env bash
# test_docker_pins.sh: pinned images survive docker's autoPrune (issue 9).
# Against a private dockerd whose registry mirror is ccprewarm: enroll a
# recipe with --docker, pull one unrelated image, `docker-pins sync`, then
# the exact command NixOS's docker-prune unit runs with the flags the README
# gives, with --all as many nodes set (`docker system prune -f --all --filter
# label!=ccprewarm.pin`): the
# pinned images are all still there, the unrelated unused one is gone.
# sync is idempotent; after unenroll it removes its placeholders.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init docker_pins

if ! is_root; then
	skip docker_pins/all "needs root for a private dockerd"
	t_done
	exit 0
fi
if ! command -v dockerd >/dev/null; then
	skip docker_pins/all "dockerd not installed"
	t_done
	exit 0
fi
start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 2 || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL
if ! start_dockerd D "$M"; then
	fail docker_pins/dockerd "private dockerd did not come up (see dockerd-D.log)"
	exit 1
fi
SOCK=${D_HOST#unix://}
# The prune flags, exactly as README.md's "docker autoPrune" section has them.
FLAGS=$(awk '/^### docker autoPrune/ { s = 1 } s && /^    --/ { sub(/^    /, ""); print; exit }' "$TOP/README.md")
note "autoPrune flags from the README: $FLAGS"
check docker_pins/readme-flags "no flags line under '### docker autoPrune' in README.md" [ -n "$FLAGS" ]

mkdir -p "$T_TMP/recipes/pinapp"
cat >"$T_TMP/recipes/pinapp/compose.yml" <<-'EOF2'
services:
  app:
    image: test/single-oci:v1
  db:
    image: test/single-docker:v1
EOF2
ccp_run enroll enroll pinapp --recipes-dir "$T_TMP/recipes" --docker="$SOCK" --server "$M"
check_eq docker_pins/enroll-docker "$CLI_RC" 0 "enroll --docker exit status ($(tail -n 2 "$CLI_ERR" | tr '\n' ' '))"
echo "+ docker pull test/shared-a:v1" >>"$T_OUT/docker.log"
dockercli D pull test/shared-a:v1 >>"$T_OUT/docker.log" 2>&1 ||
	fail docker_pins/pull-unrelated "$(tail -n 1 "$T_OUT/docker.log")"
has() { dockercli D image inspect "$1" >/dev/null 2>&1; }
for i in test/single-oci:v1 test/single-docker:v1 test/shared-a:v1; do
	has "$i" || fail "docker_pins/present-$i" "dockerd does not have $i before the prune"
done

ccp_run sync1 docker-pins sync --docker "$SOCK" --server "$M" --json
check_eq docker_pins/sync-creates "$(jq -c '[.created, .kept, .removed]' "$CLI_OUT" 2>/dev/null)" "[2,0,0]" \
	"[created, kept, removed] ($(cat "$CLI_ERR" | tr '\n' ' ' | cut -c1-200))"
labels=$(dockercli D ps -a --filter label=ccprewarm.pin --format '{{.Label "ccprewarm.pin"}} {{.Image}} {{.Status}}' | sort | tr '\n' ';')
note "placeholders: $labels"
check docker_pins/placeholders-labelled "placeholders: $labels" \
	[ "$(grep -o 'pinapp' <<<"$labels" | wc -l)" = 2 ]
check docker_pins/never-started "placeholders: $labels" [ "$(grep -c Up <<<"$labels")" = 0 ]
t0=$(date +%s.%N)
ccp_run sync2 docker-pins sync --docker "$SOCK" --server "$M" --json
t1=$(date +%s.%N)
check_eq docker_pins/sync-idempotent "$(jq -c '[.created, .kept, .removed]' "$CLI_OUT" 2>/dev/null)" "[0,2,0]" \
	"[created, kept, removed] of a second sync"
note "second sync took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')s"

# An ordinary stopped container (of the unrelated image) is still pruned.
dockercli D create --name stray test/shared-a:v1 /stray >>"$T_OUT/docker.log" 2>&1 ||
	fail docker_pins/stray-container "cannot create a stopped container"
# What the docker-prune unit runs: docker system prune -f ${autoPrune.flags}
# shellcheck disable=SC2086  # the flags are words
echo "+ docker system prune -f --all $FLAGS" >>"$T_OUT/docker.log"
dockercli D system prune -f --all $FLAGS >>"$T_OUT/docker.log" 2>&1 ||
	fail docker_pins/prune "the prune failed: $(tail -n 2 "$T_OUT/docker.log" | tr '\n' ' ')"
for i in test/single-oci:v1 test/single-docker:v1; do
	check "docker_pins/pinned-kept-$i" "pinned $i was pruned" has "$i"
done
check docker_pins/stray-container-pruned "the unlabelled stopped container survived the prune" \
	eval '! dockercli D container inspect stray >/dev/null 2>&1'
check docker_pins/unrelated-pruned "the unrelated unused test/shared-a:v1 survived the prune" eval '! has test/shared-a:v1'

# Without the sync the same prune takes the pinned images: the test bites.
ccp_run unenroll unenroll pinapp --server "$M"
ccp_run sync3 docker-pins sync --docker "$SOCK" --server "$M" --json
check_eq docker_pins/sync-removes "$(jq -c '[.created, .kept, .removed]' "$CLI_OUT" 2>/dev/null)" "[0,0,2]" \
	"[created, kept, removed] after unenroll"
# shellcheck disable=SC2086
dockercli D system prune -f --all $FLAGS >>"$T_OUT/docker.log" 2>&1
check docker_pins/unpinned-then-pruned "test/single-oci:v1 survived a prune after unenroll" eval '! has test/single-oci:v1'
stop D 30
stop_clean CCP docker_pins
t_done
