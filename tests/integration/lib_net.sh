# tests/integration/lib_net.sh: helpers for the network-behaviour tests
# (concurrency, resume, upstreams, auth, breaker, containerd).  Source it
# after lib.sh; it uses lib.sh's _spawn/free_port/alive and its T_* state,
# so whatever it starts is stopped by lib.sh's EXIT trap.

# The tools need only the standard library: prefer Debian's python3 to a
# pyenv shim, which costs over a second per start (free_port, every tool).
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
	PY=/usr/bin/python3
fi

# free_port_on ADDR: a free port on a loopback address other than 127.0.0.1.
free_port_on() {
	"$PY" -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "$1"
}

# _wait_listening NAME SECONDS: until the daemon's log says "listening".
_wait_listening() {
	local logvar="${1}_LOG" end=$((SECONDS + $2))
	until grep -q '^listening' "${!logvar}" 2>/dev/null; do
		if [ $SECONDS -ge $end ] || ! alive "$1"; then
			return 1
		fi
		sleep 0.1
	done
}

# start_tokenserver NAME [ADDR] [ARGS...]: tests/tools/tokenserver.py on a
# free port of ADDR (default 127.0.0.1).  Sets NAME_URL NAME_PORT NAME_PID
# NAME_LOG.  ARGS: --user U --password P, --cdn DIR, --secret S, ...
start_tokenserver() {
	local name=$1 addr=${2:-127.0.0.1} port
	shift
	[ $# -gt 0 ] && shift
	if [ "$addr" = 127.0.0.1 ]; then
		port=$(free_port "$name")
	else
		port=$(free_port_on "$addr")
	fi
	_spawn "$name" "$T_OUT/tokenserver-$name.log" "$PY" -u \
		"$TOOLS/tokenserver.py" --listen "$addr:$port" "$@"
	printf -v "${name}_URL" 'http://%s:%s' "$addr" "$port"
	printf -v "${name}_PORT" '%s' "$port"
	if ! _wait_listening "$name" 15; then
		fail "$T_NAME/start-tokenserver-$name" "tokenserver.py did not start on $addr:$port"
		return 1
	fi
}

# token_stats NAME: tokenserver.py's /_stats JSON on stdout.
token_stats() {
	local urlvar="${1}_URL"
	curl -sf -m 10 "${!urlvar}/_stats"
}

# start_conncount NAME [ADDR]: a TCP listener that counts connections
# (accepts, logs one "accept" line each, closes).  To prove that nothing
# was even attempted.  Sets NAME_PORT NAME_HOSTPORT; conncount NAME prints
# the count.
start_conncount() {
	local name=$1 addr=${2:-127.0.0.1} port
	if [ "$addr" = 127.0.0.1 ]; then
		port=$(free_port "$name")
	else
		port=$(free_port_on "$addr")
	fi
	_spawn "$name" "$T_OUT/conncount-$name.log" "$PY" -u -c '
import socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(64)
print("listening on %s:%s" % (sys.argv[1], sys.argv[2]), flush=True)
while True:
    c, peer = ls.accept()
    print("accept from %s:%d" % peer, flush=True)
    c.close()
' "$addr" "$port"
	printf -v "${name}_PORT" '%s' "$port"
	printf -v "${name}_HOSTPORT" '%s:%s' "$addr" "$port"
	_wait_listening "$name" 15
}
conncount() {
	local logvar="${1}_LOG"
	grep -c '^accept' "${!logvar}" 2>/dev/null
}

# start_synhole NAME PORT: a port on 127.0.0.1 where TCP connects time out.
# A listener with a full accept queue that never accepts: the kernel drops
# further SYNs, so a client's connect() hangs until its own timeout; what a
# firewall that drops packets, or a dead host, looks like.  (blackhole.py
# accepts the connection and then says nothing: that is a hung server, not
# an unreachable one.)  stop NAME frees the port.
start_synhole() {
	local name=$1 port=$2
	_spawn "$name" "$T_OUT/synhole-$name.log" "$PY" -u -c '
import socket, sys, time
port = int(sys.argv[1])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(0)
# Fill the accept queue (backlog 0 holds one connection); later SYNs drop.
fill = []
for _ in range(3):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fill.append(c)
time.sleep(0.3)
print("listening on 127.0.0.1:%d (accept queue full)" % port, flush=True)
while True:
    time.sleep(3600)
' "$port"
	printf -v "${name}_URL" 'http://127.0.0.1:%s' "$port"
	printf -v "${name}_PORT" '%s' "$port"
	_wait_listening "$name" 15 || return 1
	# It must really time out, not refuse or answer.
	curl -s -o /dev/null --connect-timeout 1 -m 3 "http://127.0.0.1:$port/v2/"
	[ $? -eq 28 ]
}

# access_log NAME: the access-log JSON lines of ccprewarm NAME.
access_log() {
	local logvar="${1}_LOG"
	grep '^{' "${!logvar}" | jq -c 'select(.method != null)' 2>/dev/null
}

# cache_count NAME PATH CACHE: access-log lines for PATH with that X-Cache.
cache_count() {
	access_log "$1" | jq -r --arg p "$2" --arg c "$3" \
		'select(.path == $p and .cache == $c) | .path' | grep -c .
}

# metric URL NAME{LABELS}: one value from GET URL/metrics (empty if absent).
metric() {
	curl -s -m 10 "$1/metrics" | awk -v k="$2" '$1 == k { print $2; exit }'
}

# proxy_count NAME REGEX: requests the faultproxy saw whose "METHOD path"
# matches REGEX (jq test()).
proxy_count() {
	proxy_stats "$1" | jq --arg r "$2" \
		'[.requests | to_entries[] | select(.key | test($r)) | .value] | add // 0'
}

# bg_get NAME URL [CURL ARGS...]: a GET in the background; the body goes to
# $T_TMP/bg-NAME.body, "HTTP_CODE TIME" to .out, curl's status to .rc once it
# ends.  Sets BG_NAME_PID (the subshell's pid, ours to kill).
bg_get() {
	local name=$1 url=$2
	shift 2
	rm -f "$T_TMP/bg-$name".*
	(
		curl -sS -m "${BG_TIMEOUT:-60}" -o "$T_TMP/bg-$name.body" \
			-D "$T_TMP/bg-$name.hdr" -w '%{http_code} %{time_total}' \
			"$@" "$url" >"$T_TMP/bg-$name.out" 2>"$T_TMP/bg-$name.err"
		echo $? >"$T_TMP/bg-$name.rc.tmp"
		mv "$T_TMP/bg-$name.rc.tmp" "$T_TMP/bg-$name.rc"
	) &
	printf -v "BG_${name}_PID" '%s' "$!"
}
bg_done() { [ -e "$T_TMP/bg-$1.rc" ]; }
bg_rc() { cat "$T_TMP/bg-$1.rc" 2>/dev/null; }
bg_code() { cut -d' ' -f1 "$T_TMP/bg-$1.out" 2>/dev/null; }
bg_body() { echo "$T_TMP/bg-$1.body"; }
# bg_wait NAME SECONDS: until it has ended; 1 if it has not by then.
bg_wait() {
	local end=$((SECONDS + $2))
	until bg_done "$1"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
# bg_kill NAME: stop a background GET we started (the subshell and its curl).
bg_kill() {
	local pidvar="BG_${1}_PID"
	local pid=${!pidvar:-}
	[ -n "$pid" ] || return 0
	kill $(pgrep -P "$pid") 2>/dev/null
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	printf -v "$pidvar" '%s' ""
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s; 1 if it never succeeded.
wait_until() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}

# secs_lt A B: A < B as decimals.
secs_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# stop_clean NAME CHECK-PREFIX: stop ccprewarm NAME with SIGTERM and check
# that it exited 0 by itself with no sanitizer report (leaks included).
# Nothing to check for a daemon we did not start (CCPREWARM_URL).
stop_clean() {
	local name=$1 prefix=$2 pidvar="${1}_PID" logvar="${1}_LOG" rep
	[ -n "${!pidvar:-}" ] || return 0
	if ! alive "$name"; then
		stop "$name" 5
		fail "$prefix/still-running" "ccprewarm $name had died (exit $STOP_RC): $(asan_report "${!logvar}" | head -n 2 | tr '\n' ' ')"
		return
	fi
	stop "$name" 30
	rep=$(asan_report "${!logvar}" | head -n 3 | tr '\n' ' ')
	if [ "$STOP_RC" = 0 ] && [ -z "$rep" ]; then
		pass "$prefix/clean-exit"
	else
		fail "$prefix/clean-exit" "SIGTERM: exit $STOP_RC (killed: $STOP_KILLED) ${STOP_SECS}s; ${rep:-no sanitizer report}"
	fi
}
