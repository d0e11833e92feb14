#!/usr/bin/env bash
# test_nixos_module.sh: the NixOS module (issue 11) without NixOS.  Debian's
# nix-instantiate (nix-bin) parses every .nix file and evaluates the module's
# pure part, nixos-module/lib.nix, for the option sets in tests/data/nix/
# (golden JSON).  What it produces is then run for real: the config through
# the module's build-time check script (`ccprewarm serve --check`), bad values
# refused; the unit's directives through `systemd-analyze verify`; the
# ExecStart line starts the daemon; the enroll script enrolls a recipe into a
# private dockerd configured with the module's daemon settings; the hosts.toml
# texts let a private containerd pull through the mirror; and NixOS's prune
# line with the module's flags keeps the pinned images.
# CCP_NIX_UPDATE=1 rewrites the golden files (review the diff).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
t_init nixos_module

if ! command -v nix-instantiate >/dev/null; then
	skip nixos/all "no nix-instantiate (Debian: nix-bin; tests/deps.sh test installs it)"
	exit 0
fi
# No store is needed for parsing and evaluating builtins-only code: the
# dummy store works as root and as any user, with no /nix at all.
export XDG_CACHE_HOME=$T_TMP/xdg-cache HOME=${HOME:-$T_TMP}
nixi() {
	timeout 120 nix-instantiate --store dummy:// \
		--option build-users-group "" "$@" 2>>"$T_OUT/nix.log"
}
LIB=$TOP/nixos-module/lib.nix
DATA=$TOP/tests/data/nix
BIN=$(ccprewarm_bin)
if [ ! -x "$BIN" ]; then
	fail nixos/binary "no binary at $BIN (make, make SANITIZE=1)"
	t_done
fi

# nix_build CASE-EXPR BIN CONFIGFILE: lib.nix's build of an option set, JSON.
nix_build() {
	nixi --eval --strict --json -E \
		"(import $LIB).build ($1) { bin = \"$2\"; configFile = \"$3\"; }"
}

# -- every .nix file parses
n=0
while IFS= read -r f; do
	n=$((n + 1))
	rel=${f#"$TOP"/}
	if nixi --parse "$f" >/dev/null; then
		pass "nixos/parse/$rel"
	else
		fail "nixos/parse/$rel" "nix-instantiate --parse: $(tail -n 3 "$T_OUT/nix.log" | tr '\n' ' ' | cut -c1-300)"
	fi
done < <(find "$TOP/flake.nix" "$TOP/nixos-module" "$DATA" -name '*.nix' | sort)
check nixos/parse-count "found only $n .nix files" [ "$n" -ge 8 ]

# -- golden JSON for every good option set
for f in "$DATA"/*.nix; do
	c=$(basename "$f" .nix)
	case $c in bad-*) continue ;; esac
	if ! nix_build "import $f" @bin@ @config@ >"$T_TMP/$c.json"; then
		fail "nixos/eval/$c" "evaluation failed: $(tail -n 3 "$T_OUT/nix.log" | tr '\n' ' ' | cut -c1-300)"
		continue
	fi
	jq -S . "$T_TMP/$c.json" >"$T_OUT/$c.json"
	if [ "${CCP_NIX_UPDATE:-0}" = 1 ]; then
		cp "$T_OUT/$c.json" "$DATA/$c.json"
		note "wrote $DATA/$c.json"
	fi
	if [ ! -f "$DATA/$c.json" ]; then
		fail "nixos/eval/$c" "no golden $DATA/$c.json (CCP_NIX_UPDATE=1 writes it)"
	elif diff -u "$DATA/$c.json" "$T_OUT/$c.json" >"$T_OUT/$c.diff"; then
		pass "nixos/eval/$c"
	else
		fail "nixos/eval/$c" "differs from the golden file: $(grep -E '^[-+] ' "$T_OUT/$c.diff" | head -n 4 | tr '\n' ' ' | cut -c1-300)"
	fi
done

# -- bad option values: refused by evaluation, with the option's name
for f in "$DATA"/bad-eval-*.nix; do
	c=$(basename "$f" .nix)
	if nix_build "import $f" @bin@ @config@ >/dev/null 2>"$T_TMP/$c.err"; then
		fail "nixos/refused/$c" "evaluated without error"
	elif tail -n 20 "$T_OUT/nix.log" | grep -q 'error:.*services\.ccprewarm\.'; then
		pass "nixos/refused/$c"
		note "$c: $(grep 'error:' "$T_OUT/nix.log" | tail -n 1)"
	else
		fail "nixos/refused/$c" "error does not name the option: $(tail -n 3 "$T_OUT/nix.log" | tr '\n' ' ' | cut -c1-300)"
	fi
done

# Does this build of the daemon know the store budget keys (issue 9)?
echo '{"max_bytes": 1000000, "min_free_bytes": 1, "min_free_percent": 1}' >"$T_TMP/budget.json"
if "$BIN" serve --check --config "$T_TMP/budget.json" >"$T_TMP/budget.out" 2>&1; then
	BUDGET=1
else
	BUDGET=0
	BUDGET_WHY="this ccprewarm's serve --check refuses the budget keys (issue 9 not merged): $(grep -m1 -E 'max_bytes|min_free' "$T_TMP/budget.out" | cut -c1-160)"
	note "$BUDGET_WHY"
fi

# check_case CASE FILE: run the module's build-time check (checkScript, as the
# runCommand runs it: in an empty directory, under `set -eu`).  Returns its
# status; output in $T_TMP/CASE.check/out.
check_case() {
	local c=$1 d=$T_TMP/$1.check
	rm -rf "$d"
	mkdir -p "$d"
	if ! nix_build "import $2" "$BIN" /nix/store/x-ccprewarm.json >"$d/build.json"; then
		echo "evaluation failed" >"$d/out"
		return 3
	fi
	jq .checkConfig "$d/build.json" >"$d/check.json"
	jq -r .checkScript "$d/build.json" >"$d/check.sh"
	(cd "$d" && checkConfigFile=$d/check.json timeout 60 bash -eu check.sh) >"$d/out" 2>&1
}

# -- the produced config passes the daemon's own check (build time)
for f in "$DATA"/*.nix; do
	c=$(basename "$f" .nix)
	case $c in bad-*) continue ;; esac
	if [ "$BUDGET" = 0 ] && jq -e '.config | has("max_bytes") or has("min_free_bytes") or has("min_free_percent")' "$T_OUT/$c.json" >/dev/null 2>&1; then
		skip "nixos/check/$c" "$BUDGET_WHY"
		continue
	fi
	if check_case "$c" "$f"; then
		pass "nixos/check/$c"
	else
		fail "nixos/check/$c" "the build-time check failed: $(tr '\n' ' ' <"$T_TMP/$c.check/out" | cut -c1-300)"
	fi
	# Without credentials the check config is the config itself.
	if ! jq -e '.loadCredential | length > 0' "$T_OUT/$c.json" >/dev/null; then
		check "nixos/check-same/$c" "checkConfig differs from config without credentials" \
			jq -e '.config == .checkConfig' "$T_OUT/$c.json"
	fi
done
# Credentials never reach the config's text; the check uses a stand-in.
check nixos/credentials-not-inlined "full.json's config has a credentials path that is not under /run/credentials/ccprewarm.service" \
	jq -e '[.config.upstreams[] | objects | .credentials_file // empty] | length == 2 and all(startswith("/run/credentials/ccprewarm.service/"))' "$T_OUT/full.json"
check nixos/load-credential "full.json's LoadCredential does not load both secret files" \
	jq -e '.loadCredential | sort == ["upstream-ghcr.io:/run/secrets/ghcr.json", "upstream-registry.example.org_5000:/run/secrets/example.json"]' "$T_OUT/full.json"

# -- bad values the daemon refuses: the build-time check fails, naming the key
for f in "$DATA"/bad-check-*.nix; do
	c=$(basename "$f" .nix)
	check_case "$c" "$f"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "nixos/check-refuses/$c" "serve --check accepted it: $(tr '\n' ' ' <"$T_TMP/$c.check/out" | cut -c1-200)"
	elif [ "$rc" -eq 3 ]; then
		fail "nixos/check-refuses/$c" "did not even evaluate: $(tail -n 2 "$T_OUT/nix.log" | tr '\n' ' ' | cut -c1-200)"
	elif grep -q -E 'upstreams\.registry|max_requests' "$T_TMP/$c.check/out"; then
		pass "nixos/check-refuses/$c"
		note "$c: $(grep -m1 -E 'upstreams\.registry|max_requests' "$T_TMP/$c.check/out")"
	else
		fail "nixos/check-refuses/$c" "refused without naming the key: $(tr '\n' ' ' <"$T_TMP/$c.check/out" | cut -c1-200)"
	fi
done

# -- the unit's directives: systemd's own parser (no systemd needed)
if command -v systemd-analyze >/dev/null; then
	for c in defaults full privileged; do
		d=$T_TMP/unit-$c
		mkdir -p "$d"
		nix_build "import $DATA/$c.nix" "$BIN" "$d/ccprewarm.json" >"$d/build.json"
		jq .config "$d/build.json" >"$d/ccprewarm.json"
		{
			echo "[Unit]"
			echo "Description=ccprewarm (test_nixos_module $c)"
			echo "[Service]"
			echo "ExecStart=$(jq -r .execStart "$d/build.json")"
			jq -r '.loadCredential[] | "LoadCredential=" + .' "$d/build.json"
			jq -r '.hardening | to_entries[] | .key as $k | .value |
				if type == "array" then .[] | "\($k)=\(.)"
				else "\($k)=\(.)" end' "$d/build.json"
			echo "[Install]"
			echo "WantedBy=multi-user.target"
		} >"$d/ccprewarm.service"
		cp "$d/ccprewarm.service" "$T_OUT/ccprewarm-$c.service"
		SYSTEMD_LOG_LEVEL=notice timeout 60 systemd-analyze verify --man=no \
			"$d/ccprewarm.service" >"$d/verify.out" 2>&1
		bad=$(grep -E -i 'unknown|failed to parse|invalid|ignoring' "$d/verify.out" | head -n 3)
		check "nixos/unit-verify/$c" "systemd-analyze verify: $(echo "$bad" | tr '\n' ' ' | cut -c1-300)" [ -z "$bad" ]
	done
	# The enroll and warm units' directives (full: with the docker group).
	d=$T_TMP/unit-full
	{
		echo "[Unit]"
		echo "Description=ccprewarm-enroll (test_nixos_module)"
		echo "[Service]"
		echo "Type=oneshot"
		echo "ExecStart=/bin/true"
		jq -r '.clientHardening | to_entries[] | .key as $k | .value |
			if type == "array" then .[] | "\($k)=\(.)"
			else "\($k)=\(.)" end' "$d/build.json"
	} >"$d/ccprewarm-enroll.service"
	cp "$d/ccprewarm-enroll.service" "$T_OUT/ccprewarm-enroll-full.service"
	SYSTEMD_LOG_LEVEL=notice timeout 60 systemd-analyze verify --man=no \
		"$d/ccprewarm-enroll.service" >"$d/verify-enroll.out" 2>&1
	bad=$(grep -E -i 'unknown|failed to parse|invalid|ignoring' "$d/verify-enroll.out" | head -n 3)
	check nixos/unit-verify/enroll "systemd-analyze verify: $(echo "$bad" | tr '\n' ' ' | cut -c1-300)" [ -z "$bad" ]
else
	skip nixos/unit-verify "no systemd-analyze"
fi

# -- run what the module produces: daemon, dockerd, containerd
if ! is_root; then
	skip nixos/run "needs root (private dockerd and containerd)"
	t_done
fi
for c in dockerd containerd ctr; do
	if ! command -v "$c" >/dev/null; then
		skip nixos/run "no $c (tests/deps.sh test installs docker.io, containerd)"
		t_done
	fi
done

REG2=registry.test:5000
start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 4 --seed 1 || exit 1
cp "$SEED_JSON" "$T_OUT/seed-1.json"
start_registry UP2 || exit 1
seed_registry "$UP2_URL" --size-mb 4 --seed 2 || exit 1
cp "$SEED_JSON" "$T_OUT/seed-2.json"

mkdir -p "$T_TMP/recipes/demo"
cat >"$T_TMP/recipes/demo/compose.yml" <<'EOF'
services:
  app:
    image: alpine:3.19
  web:
    image: test/multi-docker:v1
EOF
: >"$T_TMP/recipes/demo/.env.sample"

PORT=$(free_port CCP)
DSOCK=$T_TMP/dockerd-D/docker.sock # start_dockerd's socket for D
budget=
[ "$BUDGET" = 1 ] && budget='maxBytes = "10G"; minFree = "1%";'
cat >"$T_TMP/run.nix" <<EOF
{
  listen = "127.0.0.1:$PORT";
  dataDir = "$T_TMP/data";
  upstreams = {
    "docker.io".url = "$UP_URL";
    "$REG2".url = "$UP2_URL";
  };
  $budget
  recipesDir = "$T_TMP/recipes";
  recipes = [ "demo" ];
  dockerWarm = true;
  dockerSocket = "$DSOCK";
  containerdHosts = true;
  pinProtection = true;
  settings.access_log = "$T_OUT/access.log";
  # read right after each pull: a write per line
  settings.access_log_buffer_bytes = 0;
}
EOF
cp "$T_TMP/run.nix" "$T_OUT/run.nix"
if ! nix_build "import $T_TMP/run.nix" "$BIN" "$T_TMP/ccprewarm.json" >"$T_OUT/run.json"; then
	fail nixos/run/eval "evaluation failed: $(tail -n 3 "$T_OUT/nix.log" | tr '\n' ' ' | cut -c1-300)"
	t_done
fi
R() { jq -r "$@" "$T_OUT/run.json"; }
R .config >"$T_TMP/ccprewarm.json"
mkdir -p "$T_TMP/data"

# The ExecStart line, as systemd would run it.
read -r -a argv <<<"$(R .execStart)"
_spawn CCP "$T_OUT/ccprewarm-CCP.log" "${argv[@]}"
CCP_URL=$(R .serverUrl)
if wait_http "$CCP_URL/v2/" 30 CCP; then
	pass nixos/run/execstart
else
	fail nixos/run/execstart "the daemon started by '$(R .execStart)' did not answer $CCP_URL/v2/"
	t_done
fi

# dockerd with exactly the module's daemon settings (registry-mirrors,
# insecure-registries).
R .dockerDaemonSettings >"$T_TMP/daemon.json"
cp "$T_TMP/daemon.json" "$T_OUT/daemon.json"
if ! start_dockerd D "" "$T_TMP/daemon.json"; then
	fail nixos/run/dockerd "private dockerd with the module's daemon.json did not come up (see dockerd-D.log)"
	t_done
fi
check nixos/run/dockerd-socket "start_dockerd's socket is not where run.nix said" [ -S "$DSOCK" ]

# The enroll unit's script (waits for the daemon, enrolls with --docker).
R .enrollScript >"$T_TMP/enroll.sh"
cp "$T_TMP/enroll.sh" "$T_OUT/enroll.sh"
if timeout 600 bash -e "$T_TMP/enroll.sh" >"$T_OUT/enroll.out" 2>&1; then
	pass nixos/run/enroll-script
else
	fail nixos/run/enroll-script "exit $?: $(tail -n 4 "$T_OUT/enroll.out" | tr '\n' ' ' | cut -c1-300)"
fi
st=$(recipe_state "$CCP_URL" demo)
check_eq nixos/run/enrolled-warm "$st" warm "state of recipe demo after the enroll script"
for img in alpine:3.19 test/multi-docker:v1; do
	if dockercli D image inspect "$img" >/dev/null 2>&1; then
		pass "nixos/run/docker-has/$img"
	else
		fail "nixos/run/docker-has/$img" "dockerd has no $img after the enroll script (enroll --docker)"
	fi
done

# A plain pull goes through the mirror the module registered.
mark=$(wc -l <"$T_OUT/access.log")
if dockercli D pull test/single-docker:v1 >>"$T_OUT/docker.log" 2>&1; then
	pass nixos/run/docker-pull
else
	fail nixos/run/docker-pull "docker pull test/single-docker:v1: $(tail -n 1 "$T_OUT/docker.log" | cut -c1-200)"
fi
n=$(tail -n +$((mark + 1)) "$T_OUT/access.log" | jq -r .path | grep -c 'test/single-docker/manifests/')
check nixos/run/docker-pull-via-mirror "no manifest request for test/single-docker reached ccprewarm: dockerd did not use the registered mirror" \
	[ "$n" -ge 1 ]

# The warm timer's script: re-enrolls (kept enrolled) and warms.
ccp unenroll demo --server "$CCP_URL" >>"$T_OUT/cli.log" 2>&1
R .warmScript >"$T_TMP/warm.sh"
if timeout 600 bash -e "$T_TMP/warm.sh" >"$T_OUT/warm.out" 2>&1; then
	pass nixos/run/warm-script
else
	fail nixos/run/warm-script "exit $?: $(tail -n 4 "$T_OUT/warm.out" | tr '\n' ' ' | cut -c1-300)"
fi
check_eq nixos/run/kept-enrolled "$(recipe_state "$CCP_URL" demo)" warm \
	"state of recipe demo after unenroll + the warm script"

# docker-prune: ExecStartPre (pins sync), then NixOS's line with the user's
# --all and the module's flags.
prune=$(nixi --eval --strict --json -E "let l = import $LIB; in
	l.dockerPruneCommand \"$DOCKER_CLI\" ([ \"--all\" ] ++ (builtins.fromJSON (builtins.readFile $T_OUT/run.json)).autoPruneFlags)" | jq -r .)
echo "$prune" >"$T_OUT/prune.cmd"
note "prune: $prune"
check nixos/run/prune-flags "the module's flags are not in the prune line: $prune" \
	grep -q -- '--all --filter label!=ccprewarm.pin$' "$T_OUT/prune.cmd"
sync_cmd=$(R .pinsSyncCommand)
"$BIN" docker-pins sync --help >"$T_TMP/pins-help.out" 2>&1
if grep -q -E "unknown command 'docker-pins'|docker-pins: not built yet" "$T_TMP/pins-help.out"; then
	PINS_WHY="this ccprewarm has no working 'docker-pins sync' (issue 9): $(head -n 1 "$T_TMP/pins-help.out" | cut -c1-120)"
	skip nixos/run/pins-sync "$PINS_WHY"
	# The line itself is still a valid docker command.
	if DOCKER_HOST=$D_HOST DOCKER_CONFIG=$D_ROOT/cli timeout 300 bash -c "$prune" >>"$T_OUT/docker.log" 2>&1; then
		pass nixos/run/prune-runs
	else
		fail nixos/run/prune-runs "docker refused the prune line: $(tail -n 1 "$T_OUT/docker.log" | cut -c1-200)"
	fi
	skip nixos/run/prune-keeps-pins "$PINS_WHY"
else
	if timeout 300 bash -c "$sync_cmd" >"$T_OUT/pins-sync.out" 2>&1; then
		pass nixos/run/pins-sync
	else
		fail nixos/run/pins-sync "'$sync_cmd' failed: $(tail -n 2 "$T_OUT/pins-sync.out" | tr '\n' ' ' | cut -c1-200)"
	fi
	if DOCKER_HOST=$D_HOST DOCKER_CONFIG=$D_ROOT/cli timeout 300 bash -c "$prune" >>"$T_OUT/docker.log" 2>&1; then
		pass nixos/run/prune-runs
	else
		fail nixos/run/prune-runs "docker refused the prune line: $(tail -n 1 "$T_OUT/docker.log" | cut -c1-200)"
	fi
	for img in alpine:3.19 test/multi-docker:v1; do
		check "nixos/run/prune-keeps-pins/$img" "the pinned image $img is gone after the prune" \
			dockercli D image inspect "$img" -f '{{.Id}}'
	done
	if dockercli D image inspect test/single-docker:v1 >/dev/null 2>&1; then
		fail nixos/run/prune-removes-unpinned "test/single-docker:v1 (not pinned, unused) survived docker system prune --all"
	else
		pass nixos/run/prune-removes-unpinned
	fi
fi

# containerd with the module's hosts.toml files.
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
ctr_() { timeout 120 ctr --address "$SOCK" --namespace ccp-nixos "$@"; }
ctd_up() { ctr_ version >/dev/null 2>&1; }
if ! wait_until 30 ctd_up; then
	fail nixos/run/containerd "containerd did not answer on $SOCK within 30 s (see containerd.log)"
	t_done
fi
HOSTS=$T_TMP/certs.d
for h in $(R '.hostsToml | keys[]'); do
	mkdir -p "$HOSTS/$h"
	R --arg h "$h" '.hostsToml[$h]' >"$HOSTS/$h/hosts.toml"
done
cp -r "$HOSTS" "$T_OUT/certs.d"
check nixos/run/hosts-dirs "hosts.toml directories: $(ls "$HOSTS" | tr '\n' ' ')" \
	[ "$(ls "$HOSTS" | tr '\n' ' ')" = "docker.io $REG2 " ]
# ctr_pull NAME REF SEEDFILE SEEDREF NS-REGEX
ctr_pull() {
	local name=$1 ref=$2 seed=$3 sref=$4 nsre=$5 want got mark ns
	mark=$(wc -l <"$T_OUT/access.log")
	if ! ctr_ images pull --hosts-dir "$HOSTS" --snapshotter native \
		--platform linux/amd64 "$ref" >>"$T_OUT/ctr.log" 2>&1; then
		fail "$name" "ctr images pull $ref failed: $(tail -n 2 "$T_OUT/ctr.log" | tr '\n' ' ' | cut -c1-300)"
		return
	fi
	want=$(jq -r --arg r "$sref" '.images[] | select(.ref == $r) | .digest' "$seed")
	got=$(ctr_ images ls | awk -v r="$ref" '$1 == r { print $3 }')
	ns=$(tail -n +$((mark + 1)) "$T_OUT/access.log" | jq -r .path | grep -c -E "[?&]ns=$nsre(&|$)")
	if [ "$got" != "$want" ]; then
		fail "$name" "image $ref has digest '$got', the seeded one is $want"
	elif [ "$ns" -lt 1 ]; then
		fail "$name" "the pull did not go through the mirror (no ?ns= request in its access log)"
	else
		pass "$name"
	fi
}
ctr_pull nixos/run/containerd-docker.io docker.io/library/alpine:3.19 "$T_OUT/seed-1.json" library/alpine:3.19 'docker\.io'
ctr_pull nixos/run/containerd-second-registry "$REG2/test/single-oci:v1" "$T_OUT/seed-2.json" test/single-oci:v1 'registry\.test(:|%3A|%3a)5000'

stop_clean CCP nixos_module
t_done
