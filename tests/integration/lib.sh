# tests/integration/lib.sh: shared helpers for the integration tests.
# Sourced by tests/integration/test_*.sh.  Each test calls t_init NAME, then
# starts what it needs (docker-registry, ccprewarm, the fault proxy, a private
# dockerd) on free loopback ports; an EXIT trap stops everything it started
# (each daemon is its own process group) and, if a check failed, prints the
# tail of every log.  Logs stay under tests/out/NAME/.
#
# Result lines, counted by tests/run.sh:  PASS: name | FAIL: name (why) |
# SKIP: name (why).  A test exits 1 if any check failed.
#
# Environment:
#   CCPREWARM_BIN      binary to test (default build-san/ccprewarm if it
#                      exists, else build/ccprewarm)
#   CCPREWARM_URL      reuse an already-running ccprewarm (under gdb, say)
#                      instead of starting one; CCPREWARM_DATA names its
#                      --data directory (store checks are skipped without it)
#   CCP_PORT_<NAME>    fixed port for the daemon NAME (UP, PROXY, CCP, ...),
#                      so that a ccprewarm started by hand can point at it:
#       CCP_PORT_UP=5000 CCPREWARM_URL=http://127.0.0.1:5001 \
#       CCPREWARM_DATA=/tmp/d tests/integration/test_skopeo.sh
#       gdb --args build/ccprewarm serve --listen 127.0.0.1:5001 \
#           --data /tmp/d --upstream http://127.0.0.1:5000
#   CCP_KEEP=1         keep the temporary directories
#   CCP_TRACE_SIGNALS=1  (root, perf installed) record every SIGTERM/SIGKILL
#                      sent on the machine during the test, with sender and
#                      target, into tests/out/NAME/signals.log: for daemons
#                      that die of a signal nobody in the test sent

set -u
set +m

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=$TOP/tests/tools
# Debian's python3 when there is one: a pyenv shim costs ~1 s per start.
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
	PY=/usr/bin/python3
else
	PY=${PYTHON:-python3}
fi
if [ -x /usr/bin/docker ]; then
	DOCKER_CLI=/usr/bin/docker	# the CLI of the docker.io we run
else
	DOCKER_CLI=docker
fi

T_NAME=
T_OUT=
T_TMP=
T_FAILED=0
T_DAEMONS=()		# names, in start order

# ---------------------------------------------------------------- results

pass() { echo "PASS: $1"; }
fail() {
	echo "FAIL: $1 (${2:-failed})"
	T_FAILED=$((T_FAILED + 1))
}
skip() { echo "SKIP: $1 (${2:-skipped})"; }
note() { echo "# $*"; }
# check NAME WHY CMD...: PASS if CMD succeeds, else FAIL with WHY.
check() {
	local name=$1 why=$2
	shift 2
	if "$@"; then pass "$name"; else fail "$name" "$why"; fi
}
# relay CMD...: run a checker that prints PASS/FAIL/SKIP lines itself and
# count its FAIL lines (and a non-zero exit without one) as failures.
relay() {
	local out rc nf
	out=$("$@" 2>>"$T_OUT/checks.log")
	rc=$?
	[ -n "$out" ] && printf '%s\n' "$out"
	nf=$(printf '%s\n' "$out" | grep -c '^FAIL: ')
	T_FAILED=$((T_FAILED + nf))
	if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then
		fail "$T_NAME/checker" "$(basename "$1") $2 exited $rc, see checks.log"
	fi
	return "$rc"
}

# ---------------------------------------------------------------- setup

t_init() {
	T_NAME=$1
	T_OUT=$TOP/tests/out/$T_NAME
	rm -rf "$T_OUT"
	mkdir -p "$T_OUT"
	# Short: dockerd's unix socket path lives in here.
	T_TMP=$(mktemp -d "/tmp/ccp-${T_NAME:0:12}.XXXXXX")
	T_MAINPID=$BASHPID
	trap t_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	cat >"$T_TMP/policy.json" <<-'EOF'
	{"default": [{"type": "insecureAcceptAnything"}]}
	EOF
	: >"$T_TMP/registries.conf"
	export CONTAINERS_REGISTRIES_CONF=$T_TMP/registries.conf
	export TMPDIR=$T_TMP
	note "test $T_NAME: logs in ${T_OUT#"$TOP"/}, scratch in $T_TMP"
	if [ "${CCP_TRACE_SIGNALS:-0}" = 1 ] && is_root && command -v perf >/dev/null; then
		_spawn SIGTRACE "$T_OUT/perf.log" perf record -q -a \
			-e signal:signal_generate --filter 'sig == 15 || sig == 9' \
			-o "$T_OUT/signals.data"
		sleep 1
	fi
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# free_port NAME: print a free loopback port (CCP_PORT_NAME if set).
free_port() {
	local var="CCP_PORT_${1:-}"
	if [ -n "${1:-}" ] && [ -n "${!var:-}" ]; then
		echo "${!var}"
		return
	fi
	"$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# _spawn NAME LOG CMD...: start CMD in its own session/process group with
# stdout+stderr to LOG; sets NAME_PID and records NAME for cleanup.
_spawn() {
	local name=$1 log=$2
	shift 2
	setsid "$@" </dev/null >>"$log" 2>&1 &
	printf -v "${name}_PID" '%s' "$!"
	printf -v "${name}_LOG" '%s' "$log"
	printf -v "${name}_START" '%s' "$(_proc_start "$!")"
	T_DAEMONS+=("$name")
}

# _proc_start PID: the process's start time (clock ticks since boot), to
# tell it from a later process that got the same PID (PIDs wrap quickly on
# a busy machine).  Empty if there is no such pid.
_proc_start() {
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

# alive NAME: is the daemon we started still running (not a zombie, not
# someone else with a recycled PID)?
alive() {
	local pidvar="${1}_PID" startvar="${1}_START" st
	local pid=${!pidvar:-}
	[ -n "$pid" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $1, $20}') || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ] && [ "${st#* }" = "${!startvar:-}" ]
}

# stop NAME [TIMEOUT] [SIGNAL]: signal the daemon's process group, wait up
# to TIMEOUT seconds (then SIGKILL), set STOP_RC to its exit status and
# STOP_SECS to how long it took.  Returns 0 if it exited by itself in time.
stop() {
	echo "$(date +%T.%N) lib.sh[$BASHPID]: stop $* (from ${FUNCNAME[*]:1})" >>"$T_OUT/lib.log"
	local name=$1 timeout=${2:-15} sig=${3:-TERM}
	local pidvar="${name}_PID" logvar="${name}_LOG" t0 rc
	local pid=${!pidvar:-} log=${!logvar:-/dev/null}
	STOP_RC=
	STOP_SECS=
	STOP_KILLED=0
	[ -n "$pid" ] || return 0
	t0=$(date +%s.%N)
	if ! alive "$name"; then
		# Already gone (crashed?): collect its status, signal nobody.
		wait "$pid" 2>/dev/null
		STOP_RC=$?
		STOP_SECS=0
		printf -v "$pidvar" '%s' ""
		echo "$(date +%T.%N) lib.sh: $name (pid $pid) had already exited: $STOP_RC" >>"$T_OUT/lib.log"
		return 0
	fi
	kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null
	# Poll (a zombie counts as gone), SIGKILL the group at the deadline.
	local end=$((SECONDS + timeout))
	while alive "$name"; do
		if [ $SECONDS -ge "$end" ]; then
			STOP_KILLED=1
			echo "lib.sh: $name did not exit within ${timeout}s of SIG$sig: SIGKILL" >>"$log"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null
	rc=$?
	STOP_RC=$rc
	STOP_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	# Anything left in its group (a daemon's children, e.g. dockerd's
	# containerd) goes too; the group outlives its reaped leader only if
	# members remain, so this cannot hit a stranger.
	pgrep -g "$pid" >/dev/null 2>&1 && kill -KILL -- "-$pid" 2>/dev/null
	printf -v "$pidvar" '%s' ""
	[ "$STOP_KILLED" -eq 0 ]
}

t_cleanup() {
	local rc=$? i name
	# Only the test's own shell cleans up, never a subshell that inherited
	# the trap.
	[ "$BASHPID" = "$T_MAINPID" ] || return 0
	trap - EXIT INT TERM
	for ((i = ${#T_DAEMONS[@]} - 1; i >= 0; i--)); do
		name=${T_DAEMONS[i]}
		if [ "$name" = SIGTRACE ] && alive "$name"; then
			stop "$name" 10 INT >/dev/null 2>&1
		elif alive "$name"; then
			stop "$name" 10 >/dev/null 2>&1
		fi
	done
	if [ -s "$T_OUT/signals.data" ]; then
		perf script -i "$T_OUT/signals.data" >"$T_OUT/signals.log" 2>&1
		rm -f "$T_OUT/signals.data"
	fi
	if [ -n "$T_TMP" ] && [ -d "$T_TMP" ]; then
		# dockerd may leave mounts (netns, shm) under its roots.
		awk -v p="$T_TMP/" 'index($2, p) == 1 {print $2}' /proc/mounts |
			sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
		if [ "${CCP_KEEP:-0}" = 1 ]; then
			note "kept $T_TMP"
		else
			rm -rf "$T_TMP" 2>/dev/null
		fi
	fi
	if [ "$T_FAILED" -gt 0 ]; then
		t_show_logs
		[ "$rc" -ne 0 ] || rc=1
	fi
	exit "$rc"
}

t_show_logs() {
	local f
	for f in "$T_OUT"/*.log; do
		[ -s "$f" ] || continue
		echo "----- ${f#"$TOP"/} (last 30 lines)"
		tail -n 30 "$f" | cut -c1-300 | sed 's/^/| /'
	done
	echo "-----"
}

# t_done: end of a test; the exit status says whether anything failed.
t_done() {
	[ "$T_FAILED" -eq 0 ]
	exit $?
}

# wait_http URL SECONDS [NAME]: wait for URL to answer 200; give up early
# if daemon NAME died.
wait_http() {
	local url=$1 secs=$2 name=${3:-} end code
	end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null)
		[ "$code" = 200 ] && return 0
		if [ -n "$name" ] && ! alive "$name"; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- daemons

# start_registry NAME [REMOTEURL]: docker-registry on a free port with its
# own storage root; with REMOTEURL it is a pull-through cache of it.
# Sets NAME_URL NAME_PORT NAME_ROOT NAME_PID NAME_LOG.
start_registry() {
	local name=$1 remote=${2:-} port root cfg
	port=$(free_port "$name")
	root=$T_TMP/registry-$name
	cfg=$T_TMP/registry-$name.yml
	mkdir -p "$root"
	cat >"$cfg" <<-EOF
	version: 0.1
	log:
	  level: info
	  formatter: text
	storage:
	  filesystem:
	    rootdirectory: $root
	  delete:
	    enabled: true
	  maintenance:
	    uploadpurging:
	      enabled: false
	http:
	  addr: 127.0.0.1:$port
	  secret: ccprewarm-test-secret
	EOF
	if [ -n "$remote" ]; then
		cat >>"$cfg" <<-EOF
		proxy:
		  remoteurl: $remote
		EOF
	fi
	_spawn "$name" "$T_OUT/registry-$name.log" /usr/bin/docker-registry serve "$cfg"
	printf -v "${name}_URL" 'http://127.0.0.1:%s' "$port"
	printf -v "${name}_PORT" '%s' "$port"
	printf -v "${name}_ROOT" '%s' "$root"
	if ! wait_http "http://127.0.0.1:$port/v2/" 20 "$name"; then
		fail "$T_NAME/start-registry-$name" "docker-registry did not answer /v2/ on port $port"
		return 1
	fi
}

# ccprewarm_bin: print the binary under test.
ccprewarm_bin() {
	if [ -n "${CCPREWARM_BIN:-}" ]; then
		echo "$CCPREWARM_BIN"
	elif [ -x "$TOP/build-san/ccprewarm" ]; then
		echo "$TOP/build-san/ccprewarm"
	else
		echo "$TOP/build/ccprewarm"
	fi
}

# ASan/UBSan: report and fail loudly; leaks make the exit status non-zero.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:print_summary=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# start_ccprewarm NAME UPSTREAM_URL [ARGS...]: start the mirror on a free
# port with a fresh data dir; wait for /v2/.  Sets NAME_URL NAME_PORT
# NAME_DATA NAME_PID NAME_LOG NAME_HOSTPORT.  With CCPREWARM_URL set, uses
# that daemon instead (NAME_PID empty, NAME_DATA from CCPREWARM_DATA).
start_ccprewarm() {
	local name=$1 upstream=$2 port data bin
	shift 2
	if [ -n "${CCPREWARM_URL:-}" ]; then
		printf -v "${name}_URL" '%s' "${CCPREWARM_URL%/}"
		printf -v "${name}_HOSTPORT" '%s' "$(echo "$CCPREWARM_URL" | sed -E 's|^https?://||; s|/.*||')"
		printf -v "${name}_DATA" '%s' "${CCPREWARM_DATA:-}"
		printf -v "${name}_PID" '%s' ""
		printf -v "${name}_LOG" '%s' "/dev/null"
		note "using the running ccprewarm at $CCPREWARM_URL (its upstream must be $upstream)"
		if ! wait_http "${CCPREWARM_URL%/}/v2/" 10; then
			fail "$T_NAME/start-ccprewarm" "no answer from CCPREWARM_URL=$CCPREWARM_URL"
			return 1
		fi
		return 0
	fi
	bin=$(ccprewarm_bin)
	if [ ! -x "$bin" ]; then
		fail "$T_NAME/start-ccprewarm" "no binary at $bin (build it: make, make SANITIZE=1)"
		return 1
	fi
	port=$(free_port "$name")
	data=${CCP_DATA_DIR:-$T_TMP/data-$name}
	mkdir -p "$data"
	printf -v "${name}_BIN" '%s' "$bin"
	printf -v "${name}_URL" 'http://127.0.0.1:%s' "$port"
	printf -v "${name}_HOSTPORT" '127.0.0.1:%s' "$port"
	printf -v "${name}_PORT" '%s' "$port"
	printf -v "${name}_DATA" '%s' "$data"
	echo "lib.sh: $bin serve --listen 127.0.0.1:$port --data $data --upstream $upstream $*" \
		>>"$T_OUT/ccprewarm-$name.log"
	# Tests read the access log right after a request: a write per line
	# unless the test asks for the buffer (CCP_ACCESS_LOG_BUFFER=64K).
	_spawn "$name" "$T_OUT/ccprewarm-$name.log" "$bin" serve \
		--listen "127.0.0.1:$port" --data "$data" --upstream "$upstream" \
		--access-log-buffer "${CCP_ACCESS_LOG_BUFFER:-0}" "$@"
	if ! wait_http "http://127.0.0.1:$port/v2/" 30 "$name"; then
		fail "$T_NAME/start-ccprewarm-$name" "ccprewarm did not answer GET /v2/ with 200 within 30s"
		return 1
	fi
}

# restart_ccprewarm NAME UPSTREAM [ARGS...]: same data dir, same port.
restart_ccprewarm() {
	local name=$1
	local datavar="${name}_DATA" portvar="${name}_PORT"
	shift
	printf -v "CCP_PORT_$name" '%s' "${!portvar}"
	CCP_DATA_DIR=${!datavar} start_ccprewarm "$name" "$@"
}

# asan_report LOGFILE: print sanitizer findings in a log (empty if none).
asan_report() {
	grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior|Thread)Sanitizer|WARNING: ThreadSanitizer' "$1" 2>/dev/null | head -5
}

# start_proxy NAME UPSTREAM_URL [MODE] [ARGS...]: tests/tools/faultproxy.py.
# Sets NAME_URL NAME_PORT NAME_PID NAME_LOG.
start_proxy() {
	local name=$1 upstream=$2 mode=${3:-pass} port
	shift 2
	[ $# -gt 0 ] && shift
	port=$(free_port "$name")
	_spawn "$name" "$T_OUT/proxy-$name.log" "$PY" -u "$TOOLS/faultproxy.py" \
		--listen "127.0.0.1:$port" --upstream "$upstream" --mode "$mode" "$@"
	printf -v "${name}_URL" 'http://127.0.0.1:%s' "$port"
	printf -v "${name}_PORT" '%s' "$port"
	if ! wait_http "http://127.0.0.1:$port/_proxy/stats" 15 "$name"; then
		fail "$T_NAME/start-proxy-$name" "faultproxy did not start"
		return 1
	fi
}

# proxy_mode NAME MODE [SECONDS]
proxy_mode() {
	local urlvar="${1}_URL" q="m=$2"
	[ -n "${3:-}" ] && q="$q&seconds=$3"
	curl -sf -o /dev/null -X POST "${!urlvar}/_proxy/mode?$q"
}
proxy_reset() {
	local urlvar="${1}_URL"
	curl -sf -o /dev/null -X POST "${!urlvar}/_proxy/reset"
}
# proxy_stats NAME: the stats JSON on stdout.
proxy_stats() {
	local urlvar="${1}_URL"
	curl -sf "${!urlvar}/_proxy/stats"
}

# start_blackhole NAME: a port that accepts and never answers.
start_blackhole() {
	local name=$1 port
	port=$(free_port "$name")
	_spawn "$name" "$T_OUT/blackhole-$name.log" "$PY" -u "$TOOLS/blackhole.py" \
		--listen "127.0.0.1:$port"
	printf -v "${name}_URL" 'http://127.0.0.1:%s' "$port"
	printf -v "${name}_PORT" '%s' "$port"
	local end=$((SECONDS + 10))
	until grep -q '^listening' "$T_OUT/blackhole-$name.log" 2>/dev/null; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}

# start_dockerd NAME MIRROR_URL [DAEMON_JSON]: a private dockerd (root only)
# beside any other: own data/exec roots, socket, containerd namespaces, no
# networking changes.  With DAEMON_JSON (a file), that is its daemon.json and
# MIRROR_URL may be empty (the file names the mirror).  Sets NAME_HOST (for
# DOCKER_HOST) NAME_ROOT NAME_PID NAME_LOG NAME_CONTAINERD (its containerd
# socket).  Use: dockercli NAME ARGS...
start_dockerd() {
	local name=$1 mirror=$2 d mflag=()
	if ! is_root; then
		return 2
	fi
	d=$T_TMP/dockerd-$name
	mkdir -p "$d/data" "$d/exec" "$d/cli"
	if [ -n "${3:-}" ]; then
		cp "$3" "$d/daemon.json"
	else
		echo '{}' >"$d/daemon.json"
	fi
	[ -n "$mirror" ] && mflag=(--registry-mirror "$mirror")
	echo '{}' >"$d/cli/config.json"
	printf -v "${name}_HOST" 'unix://%s/docker.sock' "$d"
	printf -v "${name}_ROOT" '%s' "$d"
	printf -v "${name}_CONTAINERD" '%s/exec/containerd/containerd.sock' "$d"
	_spawn "$name" "$T_OUT/dockerd-$name.log" dockerd \
		--config-file "$d/daemon.json" \
		"${mflag[@]}" \
		--storage-driver=vfs \
		--iptables=false --ip6tables=false --ip-masq=false --bridge=none \
		--userland-proxy=false \
		--data-root "$d/data" --exec-root "$d/exec" \
		--pidfile "$d/docker.pid" -H "unix://$d/docker.sock" \
		--containerd-namespace ccp-test \
		--containerd-plugins-namespace ccp-test-plugins \
		--log-level=info
	local end=$((SECONDS + 60))
	until dockercli "$name" version >/dev/null 2>&1; do
		if ! alive "$name" || [ $SECONDS -ge $end ]; then
			return 1
		fi
		sleep 0.3
	done
	# dockerd 20.10 uses a system containerd if one is running.
	if [ ! -S "$d/exec/containerd/containerd.sock" ] &&
		[ -S /run/containerd/containerd.sock ]; then
		printf -v "${name}_CONTAINERD" '%s' /run/containerd/containerd.sock
	fi
}

# dockercli NAME ARGS...: the docker CLI talking to that private dockerd.
dockercli() {
	local hostvar="${1}_HOST" rootvar="${1}_ROOT"
	shift
	DOCKER_HOST=${!hostvar} DOCKER_CONFIG=${!rootvar}/cli \
		timeout 300 "$DOCKER_CLI" "$@"
}

# ---------------------------------------------------------------- content

SEED_CACHE=$TOP/tests/out/.cache/seed

# seed_registry URL [SEED.PY ARGS...]: push the standard image set; sets
# SEED_JSON (what was pushed) and SEED_BLOBS (the generated blob files,
# named by hex digest).
seed_registry() {
	local url=$1
	shift
	SEED_JSON=$T_OUT/seed.json
	if ! "$PY" "$TOOLS/seed.py" --registry "$url" --cache "$SEED_CACHE" \
		--out "$SEED_JSON" "$@" 2>>"$T_OUT/seed.log"; then
		fail "$T_NAME/seed" "seed.py could not push to $url (see seed.log)"
		return 1
	fi
	SEED_BLOBS=$(jq -r .blob_dir "$SEED_JSON")
}

# seed_q JQ-FILTER: query the seed JSON (raw output).
seed_q() { jq -r "$@" "$SEED_JSON"; }

# seed_refs: every image reference pushed (repo:tag, primary tags).
seed_refs() { seed_q '.images[].ref'; }

# store_path DATA DIGEST: where ccprewarm keeps a blob.
store_path() {
	local hex=${2#sha256:}
	echo "$1/blobs/sha256/${hex:0:2}/$hex"
}

# skopeo_copy HOSTPORT REF DESTDIR [ARGS...]: copy from the registry at
# HOSTPORT to a dir: layout; output to LOG.  Returns skopeo's status.
skopeo_copy() {
	local hp=$1 ref=$2 dest=$3
	shift 3
	rm -rf "$dest"
	mkdir -p "$(dirname "$dest")"
	echo "+ skopeo copy docker://$hp/$ref dir:$dest $*" >>"$T_OUT/skopeo.log"
	timeout 300 skopeo --policy "$T_TMP/policy.json" copy \
		--src-tls-verify=false --retry-times 0 --preserve-digests "$@" \
		"docker://$hp/$ref" "dir:$dest" >>"$T_OUT/skopeo.log" 2>&1
}

# verify_dir DIR REF [--all]: the copy matches what was seeded.
verify_dir() {
	"$PY" "$TOOLS/check.py" dir --seed "$SEED_JSON" --dir "$1" --ref "$2" "${@:3}" \
		2>>"$T_OUT/checks.log"
}

# pull_all HOSTPORT TAG-PREFIX: skopeo-copy every seeded image (with --all
# for indexes) and check each; PASS/FAIL per image under TAG-PREFIX.
pull_all() {
	local hp=$1 prefix=$2 ref kind dest why
	for ref in $(seed_refs); do
		kind=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .kind')
		dest=$T_TMP/pull/$prefix/${ref//[\/:]/_}
		local extra=()
		[ "$kind" = index ] && extra=(--all)
		if ! skopeo_copy "$hp" "$ref" "$dest" "${extra[@]}"; then
			why=$(grep -v '^+ ' "$T_OUT/skopeo.log" | tail -n 1 | cut -c1-300)
			fail "$prefix/$ref" "skopeo copy failed: $why"
		elif why=$(verify_dir "$dest" "$ref" "${extra[@]}"); then
			pass "$prefix/$ref"
		else
			fail "$prefix/$ref" "$why"
		fi
	done
}

# ---------------------------------------------------------------- http

# req METHOD URL [CURL ARGS...]: one request.  Sets R_CODE (HTTP status,
# 000 if none), R_RC (curl's exit status), R_HDR and R_BODY (files),
# R_TIME (seconds).  Never follows redirects.  Logged to http.log.
R_N=0
req() {
	local method=$1 url=$2 out
	shift 2
	R_N=$((R_N + 1))
	R_HDR=$T_TMP/r$R_N.hdr
	R_BODY=$T_TMP/r$R_N.body
	local m=(-X "$method" -o "$R_BODY")
	# curl --head writes the headers to -o: keep the body file empty.
	[ "$method" = HEAD ] && m=(--head -o /dev/null)
	out=$(curl -sS --path-as-is -m "${REQ_TIMEOUT:-30}" "${m[@]}" \
		-D "$R_HDR" -w '%{http_code} %{time_total}' \
		"$@" "$url" 2>"$T_TMP/r$R_N.err")
	R_RC=$?
	: >>"$R_HDR"
	: >>"$R_BODY"
	R_CODE=${out%% *}
	R_TIME=${out##* }
	[ -n "$R_CODE" ] || R_CODE=000
	{
		echo "> $method $url $*"
		tr -d '\r' <"$R_HDR" | sed 's/^/< /'
		echo "  [curl rc=$R_RC time=${R_TIME}s body=$(stat -c %s "$R_BODY") bytes: $(head -c 300 "$R_BODY" | tr -c '[:print:]' '.')]"
		cat "$T_TMP/r$R_N.err"
	} >>"$T_OUT/http.log"
	return 0
}

# hdr NAME: value of response header NAME of the last req (last one wins).
hdr() {
	tr -d '\r' <"$R_HDR" | awk -v h="$(echo "$1" | tr 'A-Z' 'a-z')" '
		{ i = index($0, ":"); if (!i) next
		  k = tolower(substr($0, 1, i - 1))
		  if (k == h) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v); val = v } }
		END { print val }'
}

# exchange: a one-line summary of the last req, for FAIL reasons.
exchange() {
	local body n
	n=$(stat -c %s "$R_BODY")
	if [ "$n" -eq 0 ]; then
		body="(empty)"
	elif head -c 512 "$R_BODY" | LC_ALL=C grep -q '[^[:print:][:space:]]'; then
		body="($n bytes, binary)"
	else
		body=$(head -c 200 "$R_BODY" | tr -c '[:print:]' ' ')
	fi
	printf 'got %s, curl rc %s, Content-Type %s, Content-Length %s, body: %s' \
		"$R_CODE" "$R_RC" "$(hdr content-type)" "$(hdr content-length)" "$body"
}

# oci_error_code: the first errors[].code of the last body ('' if the body
# is not an OCI error document).
oci_error_code() {
	jq -r 'if (.errors | type) == "array" and (.errors | length) > 0
	       then (.errors[0].code // "") else "" end' "$R_BODY" 2>/dev/null
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
