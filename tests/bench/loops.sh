#!/usr/bin/env bash
# tests/bench/loops.sh: tag and digest manifest GETs/s with wrk (32
# connections, 2 threads) against ccprewarm --loops 1, ccprewarm --loops 2
# and nginx (worker_processes 2, sendfile, no access log), interleaved
# (L1 L2 NGX, ROUNDS times), medians and ratios.  Both ccprewarms run with
# the bench's --access-log '' unless LOOPS_ACCESS_LOG is set (then that).
# Uses the integration tests' helpers for the daemons (and their cleanup).
#   ROUNDS=5 SECS=5 tests/bench/loops.sh
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/lib_net.sh"
t_init bench-loops
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
AL=${LOOPS_ACCESS_LOG-}

start_registry UP || exit 1
seed_registry "$UP_URL" --size-mb 5 || exit 1
start_ccprewarm L1 "$UP_URL" --loops 1 --access-log "$AL" || exit 1
start_ccprewarm L2 "$UP_URL" --loops 2 --access-log "$AL" || exit 1

REPO=test/single-oci
OCI=application/vnd.oci.image.manifest.v1+json
ACCEPT="Accept: $OCI, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
DIG=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .digest')

# nginx: the manifest as a static file, 2 workers (one per core)
NG=$T_TMP/nginx
mkdir -p "$NG/root/v2/$REPO/manifests" "$NG/tmp"
curl -sf -H "$ACCEPT" "$UP_URL/v2/$REPO/manifests/v1" >"$NG/root/v2/$REPO/manifests/v1"
cp "$NG/root/v2/$REPO/manifests/v1" "$NG/root/v2/$REPO/manifests/$DIG"
NGPORT=$(free_port NGX)
cat >"$NG/nginx.conf" <<EOF
worker_processes 2;
user root;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path $NG/tmp;
    default_type $OCI;
    server {
        listen 127.0.0.1:$NGPORT;
        root $NG/root;
        location = /v2/ { return 200 '{}'; }
    }
}
EOF
_spawn NGX "$T_OUT/nginx.log" nginx -p "$NG/" -e "$NG/error.log" -c "$NG/nginx.conf" -g 'daemon off;'
wait_http "http://127.0.0.1:$NGPORT/v2/" 10 NGX || exit 1

for s in L1 L2; do
	u=${s}_URL
	curl -sf -o /dev/null -H "$ACCEPT" "${!u}/v2/$REPO/manifests/v1" || exit 1
	curl -sf -o /dev/null -H "$ACCEPT" "${!u}/v2/$REPO/manifests/$DIG" || exit 1
done

rps() {
	wrk -t2 -c32 -d"${SECS}s" -H "$ACCEPT" "$1" 2>/dev/null |
		awk '/Requests\/sec/ { print $2 }'
}
declare -A R
for r in $(seq 1 "$ROUNDS"); do
	for kind in tag digest; do
		ref=v1
		[ $kind = digest ] && ref=$DIG
		for s in L1 L2 NGX; do
			if [ $s = NGX ]; then u=http://127.0.0.1:$NGPORT; else v=${s}_URL; u=${!v}; fi
			R[$kind.$s]+="$(rps "$u/v2/$REPO/manifests/$ref") "
		done
	done
	note "round $r: load $(cut -d' ' -f1-3 /proc/loadavg)"
done
med() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for kind in tag digest; do
	l1=$(echo "${R[$kind.L1]}" | med)
	l2=$(echo "${R[$kind.L2]}" | med)
	ng=$(echo "${R[$kind.NGX]}" | med)
	echo "$kind manifest GETs/s (median of $ROUNDS, ${SECS}s each): loops=1 $l1, loops=2 $l2, nginx(2 workers) $ng; loops=2/loops=1 $(awk -v a="$l2" -v b="$l1" 'BEGIN{printf "%.2f", a/b}'), loops=1/nginx $(awk -v a="$l1" -v b="$ng" 'BEGIN{printf "%.2f", a/b}'), loops=2/nginx $(awk -v a="$l2" -v b="$ng" 'BEGIN{printf "%.2f", a/b}')"
	echo "  runs: loops=1 ${R[$kind.L1]}| loops=2 ${R[$kind.L2]}| nginx ${R[$kind.NGX]}"
done
curl -s "$L2_URL/metrics" | grep '^ccprewarm_loop_requests_total'
t_done
