#!/usr/bin/env bash
# tests/run.sh: the whole test suite.  Builds both flavours (make, make
# SANITIZE=1), runs every unit-test binary of both, then every
# tests/integration/test_*.sh against the sanitizer build, counts the
# PASS:/FAIL:/SKIP: lines, lists the failures and ends with
#   N passed, N failed, N skipped
# Exit status 0 only if nothing failed.  A program that exits non-zero
# without printing a FAIL: line counts as one failure named after it.
#
#   tests/run.sh [--no-build] [--unit] [--integration] [--no-fuzz] [PATTERN...]
#     --no-build      use the binaries as they are
#     --unit          unit tests (and fuzzers) only;  --integration
#                     integration tests only;  --no-fuzz  skip the fuzzers
#     PATTERN         run only integration tests whose name contains it
#   CCPREWARM_BIN     binary for the integration tests (default
#                     build-san/ccprewarm, or build/ccprewarm if the
#                     sanitizer build failed)
#   TEST_TIMEOUT      seconds per test program (default 600)
#   FUZZ_SECONDS      seconds per fuzz target (default 30; 0 skips them)
#
# Output of each program is also kept in tests/out/<name>.log; the exit
# status is written to tests/out/run.status (for .ci/run).
set -u
cd "$(dirname "$0")/.." || exit 2
TOP=$(pwd)
OUT=$TOP/tests/out
mkdir -p "$OUT"
rm -f "$OUT/run.status"

build=1
unit=1
integ=1
fuzz=1
patterns=()
while [ $# -gt 0 ]; do
	case "$1" in
	--no-build) build=0 ;;
	--unit) integ=0 ;;
	--integration) unit=0 ;;
	--no-fuzz) fuzz=0 ;;
	-h | --help)
		sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "run.sh: unknown option $1" >&2
		exit 2
		;;
	*) patterns+=("$1") ;;
	esac
	shift
done

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
passed=0
failed=0
skipped=0
failures=()
t_start=$SECONDS

# tally NAME LOG RC: count the result lines of one program's output.
tally() {
	local name=$1 log=$2 rc=$3 p f s
	p=$(grep -c '^PASS: ' "$log")
	f=$(grep -c '^FAIL: ' "$log")
	s=$(grep -c '^SKIP: ' "$log")
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	while IFS= read -r line; do
		failures+=("${line#FAIL: }")
	done < <(grep '^FAIL: ' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		local why="exited $rc without a FAIL line"
		[ "$rc" -eq 124 ] && why="timed out after ${TEST_TIMEOUT}s"
		[ "$rc" -gt 128 ] && [ "$rc" -ne 124 ] && why="killed by signal $((rc - 128))"
		echo "FAIL: $name ($why)"
		failed=$((failed + 1))
		failures+=("$name ($why)")
	fi
	if [ "$rc" -eq 0 ] && [ $((p + f + s)) -eq 0 ]; then
		echo "# warning: $name printed no PASS/FAIL/SKIP line"
	fi
}

# run NAME LOG [--san] CMD...: run a test program, output to the terminal
# and LOG; with --san its result names get a "san:" prefix.
run() {
	local name=$1 log=$2 san=0 rc
	shift 2
	if [ "$1" = --san ]; then
		san=1
		shift
	fi
	mkdir -p "$(dirname "$log")"
	if [ "$san" = 1 ]; then
		timeout -k 20 "$TEST_TIMEOUT" "$@" 2>&1 </dev/null |
			sed -u -E 's/^(PASS|FAIL|SKIP): /\1: san:/' | tee "$log"
	else
		timeout -k 20 "$TEST_TIMEOUT" "$@" 2>&1 </dev/null | tee "$log"
	fi
	rc=${PIPESTATUS[0]}
	tally "$name" "$log" "$rc"
}

# build FLAVOUR MAKEARGS...: returns make's status; log in tests/out.
build_ok_plain=1
build_ok_san=1
do_build() {
	local flavour=$1 log=$OUT/build-$1.log
	shift
	echo "# make $* (log: ${log#"$TOP"/})"
	if make -j"$JOBS" "$@" all >"$log" 2>&1; then
		pass_line "build/$flavour"
		return 0
	fi
	echo "FAIL: build/$flavour (make $* failed)"
	failed=$((failed + 1))
	failures+=("build/$flavour (make $* failed: $(grep -m1 -E 'error|Error' "$log" | cut -c1-200))")
	tail -n 30 "$log" | sed 's/^/| /'
	return 1
}
pass_line() {
	echo "PASS: $1"
	passed=$((passed + 1))
}

if [ "$build" = 1 ]; then
	do_build plain || build_ok_plain=0
	do_build san SANITIZE=1 || build_ok_san=0
fi

# House style: every C file as the checked-in .clang-format has it.
if [ "$build" = 1 ]; then
	if command -v clang-format >/dev/null 2>&1; then
		if make --no-print-directory check-format >"$OUT/format.log" 2>&1; then
			pass_line "format/check-format"
		else
			echo "FAIL: format/check-format (run make format; see tests/out/format.log)"
			failed=$((failed + 1))
			failures+=("format/check-format")
			head -n 20 "$OUT/format.log" | sed 's/^/| /'
		fi
	else
		echo "SKIP: format/check-format (clang-format is not installed)"
		skipped=$((skipped + 1))
	fi
fi

# The layers: no include of a higher layer's header or of another
# directory's internal.h.
if [ "$build" = 1 ] || [ "$unit" = 1 ]; then
	if make --no-print-directory check-deps >"$OUT/deps.log" 2>&1; then
		pass_line "deps/check-deps"
	else
		echo "FAIL: deps/check-deps (see tests/out/deps.log)"
		failed=$((failed + 1))
		failures+=("deps/check-deps")
		head -n 20 "$OUT/deps.log" | sed 's/^/| /'
	fi
fi

if [ "$unit" = 1 ]; then
	for flavour in build build-san; do
		if [ "$flavour" = build ] && [ "$build_ok_plain" = 0 ]; then continue; fi
		if [ "$flavour" = build-san ] && [ "$build_ok_san" = 0 ]; then continue; fi
		found=0
		for t in "$flavour"/tests/test_*; do
			[ -x "$t" ] && [ -f "$t" ] || continue
			found=1
			name=$(basename "$t")
			echo "# $t"
			if [ "$flavour" = build-san ]; then
				run "san:$name" "$OUT/unit-san/$name.log" --san "$t"
			else
				run "$name" "$OUT/unit/$name.log" "$t"
			fi
		done
		if [ "$found" = 0 ]; then
			echo "# no unit-test binaries in $flavour/tests"
		fi
	done
fi

# Fuzzers (clang's libFuzzer, ASan+UBSan): former crashers replayed, then
# FUZZ_SECONDS (default 30) per target; a crash is a failure.
if [ "$unit" = 1 ] && [ "$fuzz" = 1 ] && [ "${FUZZ_SECONDS:-30}" != 0 ]; then
	if command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
		echo "# tests/fuzz/run.sh ${FUZZ_SECONDS:-30}"
		t0=$SECONDS
		run fuzz "$OUT/fuzz.log" tests/fuzz/run.sh "${FUZZ_SECONDS:-30}"
		echo "# fuzz: $((SECONDS - t0))s"
	else
		echo "SKIP: fuzz (clang is not installed: tests/deps.sh test installs it)"
		skipped=$((skipped + 1))
	fi
fi

if [ "$integ" = 1 ]; then
	if [ -z "${CCPREWARM_BIN:-}" ]; then
		if [ "$build_ok_san" = 1 ] && [ -x build-san/ccprewarm ]; then
			CCPREWARM_BIN=$TOP/build-san/ccprewarm
		elif [ "$build_ok_plain" = 1 ] && [ -x build/ccprewarm ]; then
			CCPREWARM_BIN=$TOP/build/ccprewarm
		fi
	fi
	if [ -z "${CCPREWARM_BIN:-}" ]; then
		echo "FAIL: integration (no ccprewarm binary: the build failed)"
		failed=$((failed + 1))
		failures+=("integration (no ccprewarm binary: the build failed)")
	else
		export CCPREWARM_BIN
		echo "# integration tests against $CCPREWARM_BIN"
		for t in tests/integration/test_*.sh; do
			[ -f "$t" ] || continue
			name=$(basename "$t" .sh)
			if [ ${#patterns[@]} -gt 0 ]; then
				hit=0
				for p in "${patterns[@]}"; do
					[[ $name == *"$p"* ]] && hit=1
				done
				[ "$hit" = 1 ] || continue
			fi
			echo "# $t"
			t0=$SECONDS
			run "$name" "$OUT/$name.log" bash "$t"
			echo "# $name: $((SECONDS - t0))s"
		done
	fi
fi

echo "# total time $((SECONDS - t_start))s"
if [ ${#failures[@]} -gt 0 ]; then
	echo "# failures:"
	for f in "${failures[@]}"; do
		echo "#   $f" | cut -c1-400
	done
fi
status=0
[ "$failed" -eq 0 ] || status=1
echo "$status" >"$OUT/run.status"
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
