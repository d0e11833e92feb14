#!/usr/bin/env bash
# test_fdleak.sh: with a store budget and mixed traffic (hits, ranges,
# misses, clients that hang up mid-body) the daemon's open files return to
# their baseline once the traffic stops, and no fd of an evicted (deleted)
# blob file stays open (the soak's defect, docs/perf/soak-2026-11-30-0315.md:
# every stored blob sent as a file segment left its fd open).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init fdleak

start_registry UP || exit 1
MIB=1048576
NBLOB=8
BLOBS=()
for i in $(seq 1 $NBLOB); do
	make_blob "$T_TMP/b$i" $MIB
	BLOBS+=("$(push_blob "$UP_URL" plain/blobs "$T_TMP/b$i")") || { fail fdleak/push "cannot push b$i"; exit 1; }
done

# Room for about three of the eight: every round evicts.
cat >"$T_TMP/budget.json" <<-EOF
{"max_bytes": $((3 * MIB + MIB / 2))}
EOF
start_ccprewarm CCP "$UP_URL" --config "$T_TMP/budget.json" || exit 1
M=$CCP_URL
PID=$CCP_PID
if [ -z "$PID" ]; then
	skip fdleak/all "needs a daemon this test starts (CCPREWARM_URL is set)"
	t_done
	exit 0
fi

nfds() { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Open fds on store files (blobs, whether still there or deleted).
store_fds() {
	find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
		grep -c "^$CCP_DATA/blobs/"
}
deleted_fds() {
	find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
		grep -c ' (deleted)$'
}

req GET "$M/v2/"
BASE=$(nfds)
note "baseline: $BASE open fds"

# cut N PATH BYTES: N clients that read the headers and BYTES of the body
# through a small receive buffer, then hang up (the server is mid-send).
cut_clients() {
	"$PY" - "$CCP_PORT" "$2" "$3" "$1" <<-'PYEOF'
	import socket, sys, time
	port, path, want, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
	socks = []
	for _ in range(n):
	    s = socket.socket()
	    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
	    s.settimeout(20)
	    s.connect(("127.0.0.1", port))
	    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
	    socks.append(s)
	for s in socks:
	    got = b""
	    try:
	        while b"\r\n\r\n" not in got or len(got) < want:
	            d = s.recv(4096)
	            if not d:
	                break
	            got += d
	    except OSError:
	        pass
	    s.close()
	PYEOF
}

bad=0
for round in 1 2 3; do
	for i in $(seq 0 $((NBLOB - 1))); do
		d=${BLOBS[$i]}
		u="$M/v2/plain/blobs/blobs/$d"
		# A miss (or a hit), then a hit, then a range, of the same blob.
		req GET "$u"
		[ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "$d" ] ||
			{ bad=$((bad + 1)); note "GET $d: $(exchange)"; }
		req GET "$u"
		[ "$R_CODE" = 200 ] || { bad=$((bad + 1)); note "GET again $d: $(exchange)"; }
		req GET "$u" -H 'Range: bytes=100000-899999'
		[ "$R_CODE" = 206 ] || { bad=$((bad + 1)); note "range $d: $(exchange)"; }
		# Clients that hang up mid-body: on a blob stored now (a hit) and
		# on the next one, likely evicted (a miss: the fill's stream).
		cut_clients 2 "/v2/plain/blobs/blobs/$d" 200000
		cut_clients 2 "/v2/plain/blobs/blobs/${BLOBS[$(((i + 1) % NBLOB))]}" 200000
	done
done
check_eq fdleak/replies "$bad" 0 "wrong or failed replies"
ev=$(metric_now "$M" ccprewarm_evictions_total)
check fdleak/evicted "evictions: '$ev' (the budget must make the traffic evict)" [ "${ev:-0}" -ge $NBLOB ]

# Traffic has stopped: what is still open drains (condition-based wait).
# Slack for upstream connections libcurl keeps pooled.
SLACK=8
drained() { [ "$(store_fds)" -eq 0 ] && [ "$(deleted_fds)" -eq 0 ] && [ "$(nfds)" -le $((BASE + SLACK)) ]; }
wait_until 30 drained
ls -l "/proc/$PID/fd" >"$T_OUT/fds-after.txt" 2>&1
note "after: $(nfds) open fds ($(store_fds) on store files, $(deleted_fds) deleted); baseline $BASE"
check_eq fdleak/no-deleted-fds "$(deleted_fds)" 0 "fds still open on deleted files (see fds-after.txt)"
check_eq fdleak/no-store-fds "$(store_fds)" 0 "fds still open on store files (see fds-after.txt)"
check fdleak/fds-at-baseline "$(nfds) open fds, baseline $BASE (+$SLACK)" [ "$(nfds)" -le $((BASE + SLACK)) ]
# The evicted files' space is free: the store holds no more than its files.
du_kib=$(du -sk "$CCP_DATA/blobs" | cut -f1)
note "store files: $du_kib KiB on disk"
stop_clean CCP fdleak
t_done
