# tests/integration/lib_prewarm.sh: helpers for the metrics, stats and
# pre-warm tests.  Source it after lib.sh:
#     . "$(dirname "$0")/lib.sh"
#     . "$(dirname "$0")/lib_prewarm.sh"
# Uses lib.sh's state (T_OUT, T_TMP, daemons, SEED_JSON) and adds:
#   scrapes of /metrics and single samples from them; the ccprewarm CLI
#   against a daemon; recipe job states; registries standing in for
#   docker.io, ghcr.io and quay.io seeded with a recipe's exact images
#   (tests/tools/seed_recipe.py); per-digest upstream GET counts.

# ---------------------------------------------------------------- metrics

# scrape URL FILE: GET URL/metrics into FILE; returns curl's status.
scrape() {
	curl -sf -m 10 -o "$2" "${1%/}/metrics"
}

# metric FILE SAMPLE: the value of the sample written exactly SAMPLE
# (name{labels} as ccprewarm prints it) in a scrape; empty if absent.
metric() {
	awk -v s="$2" '$1 == s { print $2; exit }' "$1"
}

# metric_now URL SAMPLE: scrape and print one sample's value.
metric_now() {
	local f=$T_TMP/scrape.$$.$RANDOM
	scrape "$1" "$f" || return 1
	metric "$f" "$2"
	rm -f "$f"
}

# check_eq NAME GOT WANT WHAT: PASS if GOT equals WANT (as strings; both
# non-empty), else FAIL with "WHAT: got GOT, want WANT".
check_eq() {
	if [ -n "$2" ] && [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1" "$4: got '${2}', want '$3'"
	fi
}

# ---------------------------------------------------------------- CLI

# ccp ARGS...: the ccprewarm CLI under test (same binary as the daemon),
# bounded in time.  Stdout and stderr are the caller's.
ccp() {
	timeout "${CCP_CLI_TIMEOUT:-120}" "$(ccprewarm_bin)" "$@"
}

# ccp_run NAME ARGS...: run the CLI, stdout to $T_TMP/NAME.out, stderr to
# $T_TMP/NAME.err (both copied to cli.log); sets CLI_RC, CLI_OUT, CLI_ERR.
ccp_run() {
	local name=$1
	shift
	CLI_OUT=$T_TMP/$name.out
	CLI_ERR=$T_TMP/$name.err
	ccp "$@" >"$CLI_OUT" 2>"$CLI_ERR"
	CLI_RC=$?
	{
		echo "+ ccprewarm $* -> exit $CLI_RC"
		sed 's/^/  out| /' "$CLI_OUT" | cut -c1-400
		sed 's/^/  err| /' "$CLI_ERR" | cut -c1-400
	} >>"$T_OUT/cli.log"
	return 0
}

# recipe_json SERVER RECIPE: `status --json` of a recipe (empty if none).
recipe_json() {
	ccp status "$2" --server "$1" --json 2>/dev/null
}

# recipe_state SERVER RECIPE: its job state (queued, running, warm,
# failed), or empty.
recipe_state() {
	recipe_json "$1" "$2" | jq -r '.state // empty' 2>/dev/null
}

# wait_recipe SERVER RECIPE SECONDS: until the job is neither queued nor
# running; prints the last state.  Returns 1 on timeout.
wait_recipe() {
	local end=$((SECONDS + $3)) st
	while :; do
		st=$(recipe_state "$1" "$2")
		case "$st" in
		warm | failed)
			echo "$st"
			return 0
			;;
		esac
		if [ $SECONDS -ge $end ]; then
			echo "${st:-none}"
			return 1
		fi
		sleep 0.3
	done
}

# ---------------------------------------------------------------- upstreams

# seed_recipe OUT ARGS...: tests/tools/seed_recipe.py ARGS; sets SEED_JSON
# (and RSEED_JSON) to OUT, so seed_q and check.py work on it.
# shellcheck disable=SC2034  # SEED_* are lib.sh's
seed_recipe() {
	local out=$1
	shift
	if ! "$PY" "$TOOLS/seed_recipe.py" --cache "$SEED_CACHE" --out "$out" \
		"$@" 2>>"$T_OUT/seed.log"; then
		fail "$T_NAME/seed-recipe" "seed_recipe.py failed (see seed.log)"
		return 1
	fi
	SEED_JSON=$out
	RSEED_JSON=$out
	SEED_BLOBS=$(jq -r .blob_dir "$out")
}

# registry_blob_gets LOG: blob GETs a docker-registry answered (its access
# log lines), one "status digest" per line.
registry_blob_gets() {
	grep -oE '"GET /v2/[^ ]+/blobs/sha256:[0-9a-f]{64} HTTP/[0-9.]+" [0-9]+' "$1" 2>/dev/null |
		sed -E 's|^"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" ([0-9]+)$|\2 \1|'
}

# proxy_digest_gets NAME: "count digest" per blob digest GET through the
# faultproxy NAME (summed over repositories).
proxy_digest_gets() {
	proxy_stats "$1" | jq -r '.requests | to_entries[] |
		select(.key | test("^GET /v2/.+/blobs/sha256:[0-9a-f]{64}$")) |
		"\(.value) \(.key | capture("(?<d>sha256:[0-9a-f]{64})$").d)"' |
		awk '{ n[$2] += $1 } END { for (d in n) print n[d], d }' | sort -k2
}

# store_has DATA DIGEST: the store holds DIGEST with the right content.
store_has() {
	local f
	f=$(store_path "$1" "$2")
	[ -f "$f" ] && [ "sha256:$(sha256_of "$f")" = "$2" ]
}

# ccp_config FILE PLATFORM...: a config file that fixes the pre-warm
# platforms (flags still give listen, data and upstreams).
ccp_config() {
	local f=$1
	shift
	printf '%s\n' "$@" | jq -R . | jq -s '{platforms: .}' >"$f"
}

# nlines FILE: how many lines FILE has (0 if empty or missing).
nlines() {
	if [ -s "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}
