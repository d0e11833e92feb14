#!/usr/bin/env bash
# tests/deps.sh: install the Debian packages ccprewarm needs, only those
# missing.  `deps.sh run`: building and running (make run);  `deps.sh test`:
# also what the tests drive (docker-registry, skopeo, dockerd, ...).
# `deps.sh list [run|test|s3]` prints the package names (s3: the part of
# test that the shared-store tests need).  apt-get update runs
# only when something is missing.  Debian 12 (bookworm) package names.
set -eu

BUILD_PKGS="build-essential pkg-config libevent-dev libcurl4-openssl-dev
	liblmdb-dev libjansson-dev libyaml-dev libssl-dev"
RUN_PKGS="$BUILD_PKGS ca-certificates"
# The shared-store tests' S3 server: a one-node Ceph cluster with radosgw
# (tests/integration/lib_s3.sh); about 2 minutes to install, once.
S3_PKGS="ceph-mon ceph-osd ceph-mgr radosgw ceph-common"
TEST_PKGS="$RUN_PKGS git clang libclang-rt-14-dev clang-format
	docker-registry skopeo docker.io containerd runc
	python3 curl jq nginx-light prometheus procps iproute2 util-linux strace
	chromium nix-bin systemd
	$S3_PKGS"

usage() {
	echo "usage: tests/deps.sh run|test|list [run|test]" >&2
	exit 2
}

want() {
	case "$1" in
	run) echo $RUN_PKGS ;;
	test) echo $TEST_PKGS ;;
	s3) echo $S3_PKGS ;;
	*) usage ;;
	esac
}

missing() {
	local p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$st" = installed ] || echo "$p"
	done
}

[ $# -ge 1 ] || usage
case "$1" in
list)
	want "${2:-test}" | tr ' ' '\n'
	exit 0
	;;
run | test) ;;
*) usage ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps.sh: this is not a Debian system; install by hand: $(want "$1")" >&2
	exit 1
fi

# shellcheck disable=SC2046
miss=$(missing $(want "$1") | tr '\n' ' ')
miss=${miss% }
if [ -z "$miss" ]; then
	echo "deps.sh: all $1 dependencies installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages: $miss; install them as root: sudo apt-get install -y --no-install-recommends $miss" >&2
	exit 1
fi

echo "deps.sh: installing: $miss"
export DEBIAN_FRONTEND=noninteractive
apt_get() {
	apt-get -q -y -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold "$@"
}
if ! apt_get update >/tmp/deps-apt-update.log 2>&1; then
	sleep 5
	apt_get update || {
		echo "deps.sh: apt-get update failed (see above)" >&2
		exit 1
	}
fi
# shellcheck disable=SC2086
if ! apt_get install --no-install-recommends $miss; then
	echo "deps.sh: apt-get install failed for: $miss" >&2
	exit 1
fi
# shellcheck disable=SC2046
still=$(missing $(want "$1") | tr '\n' ' ')
if [ -n "$still" ]; then
	echo "deps.sh: still missing after install: $still" >&2
	exit 1
fi
echo "deps.sh: done"
