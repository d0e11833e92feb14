#!/usr/bin/env bash
# test_enroll_errors.sh: broken recipes are refused by `ccprewarm enroll`
# (issue 6) with one line naming the file and line, a non-zero status, and
# nothing enrolled: every fixture of tests/data/recipes-bad, a missing
# recipe directory, an unreachable server.  A floating tag is refused, and
# accepted with --allow-floating.  An image on a registry ccprewarm is not
# configured for fails the job for that image with a message naming the
# registry: the recipe is failed and nothing is pinned.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init enroll_errors

BAD=$TOP/tests/data/recipes-bad
IT=$TOP/tests/data/recipes-it

start_registry UP || exit 1
# What the floating fixture and unknown-registry's fetchable image name.
seed_recipe "$T_OUT/seed.json" --image nginx:1.27.2 --image nginx:latest \
	--image redis:latest --registry "docker.io=$UP_URL" || exit 1
ccp_config "$T_TMP/ccp.json" linux/amd64
start_ccprewarm CCP "$UP_URL" --config "$T_TMP/ccp.json" || exit 1
M=$CCP_URL

# refused NAME WANT ARGS...: `enroll ARGS` exits non-zero with exactly one
# line on stderr containing WANT, nothing on stdout.
refused() {
	local name=$1 want=$2 n
	shift 2
	ccp_run "$name" enroll "$@" --server "$M"
	n=$(nlines "$CLI_ERR")
	if [ "$CLI_RC" -ne 0 ] && [ "$n" -eq 1 ] && grep -qF -- "$want" "$CLI_ERR" && [ ! -s "$CLI_OUT" ]; then
		pass "enroll_errors/$name"
	else
		fail "enroll_errors/$name" "want a non-zero exit and one stderr line with '$want'; exit $CLI_RC, $n lines: $(head -c 300 "$CLI_ERR" | tr '\n' '|')$( [ -s "$CLI_OUT" ] && echo "; stdout: $(head -c 200 "$CLI_OUT" | tr '\n' '|')")"
	fi
}

refused missing-dir "cannot open recipe '$BAD/nope': No such file or directory" nope --recipes-dir "$BAD"
refused yaml-syntax "compose.yml:6: did not find expected ',' or ']'" yaml-syntax --recipes-dir "$BAD"
refused yaml-syntax-path "compose.yml:6: did not find expected ',' or ']'" "$BAD/yaml-syntax/"
refused floating "compose.yml:6: floating reference 'nginx' (no tag or :latest); pin it or pass --allow-floating" \
	floating --recipes-dir "$BAD"
refused unset-var "compose.yml:4: variable 'NGINX_IMAGE' is not set in .env.sample and has no default" \
	unset-var --recipes-dir "$BAD"
refused invalid-ref "compose.yml:6: invalid image reference 'Nginx:1.27'" invalid-ref --recipes-dir "$BAD"
refused missing-overlay ".env.sample:3: cannot open 'compose.nope.yml' named by COMPOSE_FILE" \
	missing-overlay --recipes-dir "$BAD"
refused overlay-error "compose.extra.yml:5: found unexpected end of stream" \
	overlay-error --all-overlays --recipes-dir "$BAD"
refused outside ".env.sample:2: COMPOSE_FILE entry '../escape.yml' is outside the recipe" \
	outside --recipes-dir "$BAD"
refused no-compose "cannot open 'compose.yml': no such file" no-compose --recipes-dir "$BAD"
refused bad-services "compose.yml:3: services is not a mapping" bad-services --recipes-dir "$BAD"

# None of them reached the daemon.
ccp_run list-after-errors list --server "$M" --json
check_eq enroll_errors/nothing-enrolled "$CLI_RC $(jq -c 'length' "$CLI_OUT" 2>/dev/null)" "0 0" \
	"list --json after the refused recipes: exit and number of recipes"

# A valid recipe, but no daemon: one line, non-zero.
ccp_run no-server enroll overlay-error --recipes-dir "$BAD" --server http://127.0.0.1:1
n=$(nlines "$CLI_ERR")
if [ "$CLI_RC" -ne 0 ] && [ "$n" -eq 1 ] && grep -q '127.0.0.1:1' "$CLI_ERR"; then
	pass enroll_errors/no-server
else
	fail enroll_errors/no-server "want non-zero and one line naming the server; exit $CLI_RC, $n lines: $(head -c 300 "$CLI_ERR" | tr '\n' '|')"
fi

# -- a registry that is not configured: the job fails for that image.
R=unknown-registry
ccp_run unknown enroll "$R" --recipes-dir "$IT" --server "$M"
if [ "$CLI_RC" -ne 0 ] && grep -q "registry\.example\.org/team/app:1\.0\.0: .*registry\.example\.org" "$CLI_OUT"; then
	pass enroll_errors/unknown-registry-exit
else
	fail enroll_errors/unknown-registry-exit "want non-zero and the image's error naming registry.example.org; exit $CLI_RC: $(head -c 400 "$CLI_OUT" "$CLI_ERR" | tr '\n' '|')"
fi
ccp_run unknown-status status "$R" --server "$M" --json
J=$CLI_OUT
check_eq enroll_errors/unknown-registry-state "$(jq -r .state "$J" 2>/dev/null)" failed "recipe state"
img=$(jq -c '.images[] | select(.ref == "registry.example.org/team/app:1.0.0")' "$J" 2>/dev/null)
if [ "$(jq -r .state <<<"$img" 2>/dev/null)" = failed ] &&
	jq -r .error <<<"$img" 2>/dev/null | grep -q "registry.example.org"; then
	pass enroll_errors/unknown-registry-image
	note "image error: $(jq -r .error <<<"$img")"
else
	fail enroll_errors/unknown-registry-image "want the image failed with an error naming registry.example.org: ${img:-no such image in status}"
fi
check_eq enroll_errors/unknown-registry-other-image \
	"$(jq -r '.images[] | select(.ref == "docker.io/library/nginx:1.27.2") | .state' "$J" 2>/dev/null)" warm \
	"state of the fetchable image docker.io/library/nginx:1.27.2"
scrape "$M" "$T_TMP/m1.txt"
check_eq enroll_errors/unknown-registry-not-pinned "$(metric "$T_TMP/m1.txt" ccprewarm_pinned_bytes)" 0 \
	"ccprewarm_pinned_bytes with the only recipe failed"
check_eq enroll_errors/unknown-registry-metric \
	"$(metric "$T_TMP/m1.txt" "ccprewarm_recipe_images{recipe=\"$R\",state=\"failed\"}") $(metric "$T_TMP/m1.txt" "ccprewarm_recipe_images{recipe=\"$R\",state=\"warm\"}")" \
	"1 1" "ccprewarm_recipe_images{recipe=\"$R\"} failed and warm"

# -- floating references with --allow-floating: enrolled and warm.
ccp_run floating-allowed enroll floating --allow-floating --recipes-dir "$BAD" --server "$M" --json
if [ "$CLI_RC" -eq 0 ] && [ "$(jq -r .state "$CLI_OUT" 2>/dev/null)" = warm ]; then
	pass enroll_errors/floating-allowed
else
	fail enroll_errors/floating-allowed "enroll --allow-floating: exit $CLI_RC: $(head -c 400 "$CLI_OUT" "$CLI_ERR" | tr '\n' '|')"
fi
got=$(jq -r '[.images[].ref] | sort | join(" ")' "$CLI_OUT" 2>/dev/null)
check_eq enroll_errors/floating-refs "$got" \
	"docker.io/library/nginx:1.27.2 docker.io/library/nginx:latest docker.io/library/redis:latest" \
	"images of the floating recipe (untagged written as :latest)"
pb=$(metric_now "$M" ccprewarm_pinned_bytes)
if [ -n "$pb" ] && [ "$pb" -gt 0 ]; then
	pass enroll_errors/floating-pinned
else
	fail enroll_errors/floating-pinned "ccprewarm_pinned_bytes is '$pb' after a warm recipe, want > 0"
fi

if [ -n "${CCP_PID:-}" ] && ! alive CCP; then
	fail enroll_errors/still-running "ccprewarm died during the test"
fi
t_done
