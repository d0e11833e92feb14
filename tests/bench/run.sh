#!/usr/bin/env bash
# tests/bench/run.sh: `make bench`.  ccprewarm beside distribution's proxy,
# nginx and the upstream itself, on this machine, against one seeded
# upstream; the figures, what they mean and how to read them are in
# docs/perf/README.md.  This wrapper installs what is missing (Debian), runs
# tests/bench/bench.py and, whatever happens, stops every process it started.
#
# Environment: BENCH_SIZE_MB (750) BENCH_REPS (3) BENCH_CLIENTS (8)
# BENCH_WRK_SECONDS (10) BENCH_CACHE (build/bench-cache) BENCH_OUT
# (build/bench-out: daemon logs) BENCH_REPORT=0 (no docs/perf files)
# BENCH_KEEP=1 (keep the scratch directory) CCPREWARM_BIN (build/ccprewarm)
# BENCH_TWO_NODES=0 (skip the two-nodes figure, tests/bench/two_nodes.sh)
# BENCH_TWO_NODES_MB (100) BENCH_ENGINE=0 (skip the dockerd figure,
# tests/bench/engine.sh) BENCH_ENGINE_KB BENCH_ENGINE_REPS BENCH_SCALE=0
# BENCH_SCALE_CLIENTS BENCH_SCALE_MB BENCH_SCALE_REPS (how cost grows with
# clients) BENCH_STORE_BLOBS=0 (skip the big-store figures) BENCH_SVG=0.
# The options and what each figure costs: docs/perf/README.md.

set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if [ "${BENCH_SVG:-1}" != 0 ]; then
	command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
fi
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
		exit 1
	fi
	echo "bench: installing ${missing[*]}" >&2
	apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends "${missing[@]}" >&2 || exit 1
fi

BIN=${CCPREWARM_BIN:-$TOP/build/ccprewarm}
if [ ! -x "$BIN" ]; then
	make -C "$TOP" -s all || exit 1
fi
case "$BIN" in
*build-san*) echo "bench: $BIN is the sanitizer build; benchmark build/ccprewarm" >&2 ;;
esac

BENCH_TMP=$(mktemp -d /tmp/ccp-bench.XXXXXX)
export BENCH_TMP
mkdir -p "$BENCH_TMP/pids"
# The binary and the commit it was built from, taken now: a rebuild in the
# tree while the bench runs must not swap the binary between repetitions.
cp "$BIN" "$BENCH_TMP/ccprewarm" || exit 1
export CCPREWARM_BIN=$BENCH_TMP/ccprewarm
BENCH_GIT=$(git -C "$TOP" describe --always --dirty 2>/dev/null || echo unknown)
export BENCH_GIT
BENCH_PID=

cleanup() {
	local rc=$? f pid i
	trap - EXIT INT TERM
	if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
		# bench.py stops its daemons on SIGTERM; give it a moment.
		kill -TERM -- "-$BENCH_PID" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			kill -0 "$BENCH_PID" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL -- "-$BENCH_PID" 2>/dev/null
	fi
	# Whatever daemon is still listed: its whole process group.
	for f in "$BENCH_TMP"/pids/*; do
		[ -e "$f" ] || continue
		pid=${f##*/}
		kill -TERM -- "-$pid" 2>/dev/null
	done
	sleep 0.5
	for f in "$BENCH_TMP"/pids/*; do
		[ -e "$f" ] || continue
		pid=${f##*/}
		kill -KILL -- "-$pid" 2>/dev/null
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: kept $BENCH_TMP" >&2
	else
		rm -rf "$BENCH_TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rc=0
# The "two nodes" figure (shared store on radosgw) and the "real engine"
# figure (a private dockerd): their own scripts, which start and stop their
# daemons themselves (tests/integration/lib.sh).  They run first and leave
# JSON that bench.py puts in the report (a script that fails or is skipped
# leaves none: the report shows the figure as missing).
if [ "${BENCH_TWO_NODES:-1}" != 0 ]; then
	TWO_NODES_JSON=$BENCH_TMP/two-nodes.json \
		"$TOP/tests/bench/two_nodes.sh" || rc=1
fi
if [ "${BENCH_ENGINE:-1}" != 0 ]; then
	ENGINE_JSON=$BENCH_TMP/engine.json "$TOP/tests/bench/engine.sh" || rc=1
fi
# Its own process group (pull clients and wrk included), so that the trap
# can stop all of it; daemons get their own sessions and are listed in pids/.
setsid "$PY" -u "$TOP/tests/bench/bench.py" &
BENCH_PID=$!
wait "$BENCH_PID" || rc=1
BENCH_PID=
exit "$rc"
