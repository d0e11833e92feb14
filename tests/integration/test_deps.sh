#!/usr/bin/env bash
# test_deps: a fresh Debian 12 machine gets what the tests need from `make
# test` itself (issue 10, defect 8): the test target runs `tests/deps.sh
# test` before anything else; the test package list holds what the
# integration tests drive (strace included: without it a check always
# skips); as non-root with a package missing, deps.sh names it with the
# apt-get line and fails instead of running tests that cannot pass.
. "$(dirname "$0")/lib.sh"
t_init deps

first=$(make -C "$TOP" --no-print-directory -n test 2>/dev/null | head -n 1)
check deps/make-test-installs-first "make -n test starts with '$first'" \
	[ "$first" = "tests/deps.sh test" ]

list=$("$TOP/tests/deps.sh" list test)
for p in strace python3 docker-registry skopeo docker.io containerd clang \
	libclang-rt-14-dev prometheus jq curl iproute2; do
	check "deps/test-list-has-$p" "tests/deps.sh list test lacks $p" \
		grep -qx "$p" <<<"$list"
done

# Non-root with one package missing: a fake dpkg-query first on PATH says
# strace is not installed (the rest is asked of the real one).
fake=$T_TMP/fakebin
mkdir -p "$fake"
chmod 755 "$T_TMP" "$fake"	# nobody runs it
cat >"$fake/dpkg-query" <<'EOS'
#!/bin/sh
for a; do last=$a; done
[ "$last" = strace ] && exit 1
exec /usr/bin/dpkg-query "$@"
EOS
chmod +x "$fake/dpkg-query"
# A copy nobody can read: the checkout may sit under a private home (/root).
cp "$TOP/tests/deps.sh" "$fake/deps.sh"
chmod 755 "$fake/deps.sh"
if is_root && command -v setpriv >/dev/null; then
	out=$(PATH=$fake:$PATH setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$fake/deps.sh" test 2>&1)
	rc=$?
elif ! is_root; then
	out=$(PATH=$fake:$PATH "$TOP/tests/deps.sh" test 2>&1)
	rc=$?
else
	rc=
fi
if [ -n "$rc" ]; then
	note "deps.sh as non-root: rc $rc: $out"
	check deps/non-root-fails "exit $rc" [ "$rc" -ne 0 ]
	check deps/non-root-names-missing "said: $out" \
		grep -q 'missing Debian packages: strace; install them as root: sudo apt-get install -y --no-install-recommends strace' <<<"$out"
else
	skip deps/non-root "root without setpriv"
fi

# Installed already: the second run (after .ci/run's) is a no-op.
if is_root; then
	out=$("$TOP/tests/deps.sh" test 2>&1)
	check deps/idempotent "said: $out" [ "$out" = "deps.sh: all test dependencies installed" ]
fi
t_done
