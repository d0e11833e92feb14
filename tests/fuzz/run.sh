#!/bin/sh
# tests/fuzz/run.sh: builds every tests/fuzz/fuzz_*.c with clang's libFuzzer
# plus ASan+UBSan against the library sources into build-fuzz/, then runs
# each for SECONDS (default 30) with its .dict and a corpus under
# build-fuzz/corpus/<name>, seeded from tests/fuzz/corpus/<name>/ and
# tests/data.  Crashers land in build-fuzz/crashes/; each one belongs in
# tests/fuzz/crashers/<name>/, which is replayed first (a regression test).
# Prints PASS:/FAIL: lines (tests/run.sh counts them).
#
#   tests/fuzz/run.sh [SECONDS [fuzz_name...]]
set -eu

cd "$(dirname "$0")/../.."
secs=${1:-30}
[ $# -gt 0 ] && shift
CC=${FUZZ_CC:-clang}
OUT=build-fuzz

# The dependency list lives in the Makefile; read it from there.  No
# -Werror: the compiler gate is make's gcc build, and clang warns more.
pkgs=$(sed -n 's/^PKGS *= *//p' Makefile)
cflags="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wformat=2 -Wshadow \
-Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings \
-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
-fno-sanitize-recover=undefined -DCCPREWARM_VERSION=\"fuzz\" \
$(pkg-config --cflags $pkgs)"
libs="$(pkg-config --libs $pkgs) -lpthread"

mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/crashes"

# The library, instrumented for coverage but without libFuzzer's main.
objs=
for src in common/*.c storage/*.c registry/*.c prewarm/*.c; do
	[ -f "$src" ] || continue
	obj="$OUT/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] ||
	    [ -n "$(find common storage registry prewarm -name '*.h' -newer "$obj")" ]; then
		$CC $cflags -fsanitize=fuzzer-no-link -c -o "$obj" "$src"
	fi
	objs="$objs $obj"
done
rm -f "$OUT/libccprewarm-fuzz.a"
ar rcs "$OUT/libccprewarm-fuzz.a" $objs

# Objects from cmd/ that a target needs besides the library.
extra_fuzz_config=cmd/config.c

# Seeds: the checked-in corpus tests/fuzz/corpus/<name>/, plus one file per
# golden input line, or the fixture files.
seed_fuzz_ref() {
	n=0
	while IFS= read -r line; do
		n=$((n + 1))
		printf '%s' "$line" > "$1/seed-$n"
	done < tests/data/ref.in
}
seed_fuzz_recipe() {
	n=0
	find tests/data/recipes tests/data/recipes-bad -name 'compose*.yml' |
	    sort | while IFS= read -r f; do
		n=$((n + 1))
		cp "$f" "$1/seed-$n"
	done
}

seed_fuzz_range() {
	n=0
	grep -v '^#' tests/data/range.in | while IFS= read -r line; do
		n=$((n + 1))
		# 8 bytes of size, little-endian, then the header
		"${PYTHON:-python3}" -c 'import struct, sys
size, h = sys.argv[1].split("\t", 1)
sys.stdout.buffer.write(struct.pack("<Q", int(size) % 2**64) + h.encode())' \
		    "$line" > "$1/golden-$n"
	done
}

names=${*:-$(ls tests/fuzz/fuzz_*.c | sed 's|.*/||; s|\.c$||')}
failed=0
for name in $names; do
	src=tests/fuzz/$name.c
	bin=$OUT/$name
	extra=
	eval "extra_src=\${extra_$name:-}"
	for x in $extra_src; do
		obj="$OUT/obj/$(echo "$x" | tr / _ | sed 's/\.c$/.o/')"
		$CC $cflags -fsanitize=fuzzer-no-link -c -o "$obj" "$x"
		extra="$extra $obj"
	done
	if ! $CC $cflags -fsanitize=fuzzer -o "$bin" "$src" $extra \
	    "$OUT/libccprewarm-fuzz.a" $libs; then
		echo "FAIL: fuzz/$name (does not build)"
		failed=1
		continue
	fi
	corpus=$OUT/corpus/$name
	mkdir -p "$corpus"
	if [ -d "tests/fuzz/corpus/$name" ]; then
		cp tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
	fi
	if command -v "seed_$name" >/dev/null 2>&1; then
		"seed_$name" "$corpus"
	fi
	# Every crasher found so far is a regression test: each input once.
	crashers=tests/fuzz/crashers/$name
	if [ -d "$crashers" ] && [ -n "$(ls -A "$crashers")" ]; then
		if "$bin" -runs=1 "$crashers"/* > "$OUT/$name-regress.log" 2>&1; then
			echo "PASS: fuzz/$name/regressions ($(ls "$crashers" | wc -l) inputs)"
		else
			echo "FAIL: fuzz/$name/regressions (a former crasher fails again; see $OUT/$name-regress.log)"
			tail -n 30 "$OUT/$name-regress.log"
			failed=1
		fi
	fi
	maxlen=$(sed -n 's/^#define FUZZ_MAX_LEN *(*\([0-9 *]*\))*.*/\1/p' \
	    "$src" | head -n 1)
	set -- -max_total_time="$secs" -print_final_stats=1 \
	    -artifact_prefix="$OUT/crashes/$name-"
	[ -n "$maxlen" ] && set -- "$@" -max_len=$(($maxlen))
	[ -f "tests/fuzz/$name.dict" ] && set -- "$@" \
	    -dict="tests/fuzz/$name.dict"
	echo "fuzz: $name for ${secs}s"
	if ! "$bin" "$@" "$corpus" > "$OUT/$name.log" 2>&1; then
		echo "FAIL: fuzz/$name (crash; see $OUT/$name.log and $OUT/crashes/; add the input to tests/fuzz/crashers/$name/)"
		tail -n 30 "$OUT/$name.log"
		failed=1
	else
		grep -E 'stat::(number_of_executed_units|new_units_added)' \
		    "$OUT/$name.log" | sed "s/^/# fuzz: $name /"
		echo "PASS: fuzz/$name (${secs}s, no crash)"
	fi
done
exit $failed
