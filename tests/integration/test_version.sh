#!/usr/bin/env bash
# test_version: the version string is compiled into one object that make
# rebuilds whenever the string changes, so a partial rebuild never reports a
# stale --version (it did: the string was baked into three objects that make
# did not know depended on it).  Works on a copy of build/, so the tree's own
# build is left alone.
. "$(dirname "$0")/lib.sh"
t_init version

if [ ! -x "$TOP/build/ccprewarm" ]; then
	skip version/rebuild "no build/ccprewarm (run make first)"
	t_done
fi
b=$T_TMP/build
cp -a "$TOP/build" "$b"
make -C "$TOP" --no-print-directory -s BUILD="$b" VERSION=test-one \
	"$b/ccprewarm" >"$T_TMP/make1.log" 2>&1
v1=$("$b/ccprewarm" --version)
make -C "$TOP" --no-print-directory -s BUILD="$b" VERSION=test-two \
	"$b/ccprewarm" >"$T_TMP/make2.log" 2>&1
v2=$("$b/ccprewarm" --version)
check version/rebuilt-on-change "first build says '$v1'" \
	[ "$v1" = "ccprewarm test-one" ]
check version/rebuilt-again "second build says '$v2'" \
	[ "$v2" = "ccprewarm test-two" ]
# Same string: nothing is compiled again.
out=$(make -C "$TOP" --no-print-directory BUILD="$b" VERSION=test-two \
	"$b/ccprewarm" 2>&1)
check version/no-rebuild-when-same "make recompiled: $out" \
	[ "$(grep -c -- ' -c ' <<<"$out")" = 0 ]
t_done
