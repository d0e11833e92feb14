#!/usr/bin/env bash
# test_fdlimit.sh: running out of file descriptors (issue 10, defect 4).
# The daemon's fd limit is lowered to 128 (prlimit) and 300 idle
# connections are opened against it.  It must not spin (CPU < 20% of a
# core, accept errors logged a handful of times, not per attempt); a client
# that was connected before still gets a cached blob and a fresh blob from
# upstream (the fd reserve); the upstream's breaker stays closed (a local
# EMFILE is not the upstream's fault); and once the idle connections go,
# new clients are served again.  Also the header deadline (slowloris): a
# client sending its request a byte at a time is cut after
# header_timeout_seconds, while an idle keep-alive connection is not.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init fdlimit

if ! command -v prlimit >/dev/null; then
	skip fdlimit/all "needs prlimit (util-linux)"
	t_done
fi
start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
echo '{"header_timeout_seconds": 2}' >"$T_TMP/ccp.json"
start_ccprewarm CCP "$UP_URL" --config "$T_TMP/ccp.json" || exit 1
M=$CCP_URL
pick() {
	seed_q '[.images[] | (.ref | split(":")[0]) as $r | .platforms[] | .layers[] | {r: $r, d: .digest}] | unique_by(.d) | .['"$1"'] | "\(.r) \(.d)"'
}
read -r R1 D1 < <(pick 0)
read -r R2 D2 < <(pick 1)
req GET "$M/v2/$R1/blobs/$D1"
[ "$R_CODE" = 200 ] || { fail fdlimit/warm "$(exchange)"; t_done; }
if ! prlimit --pid "$CCP_PID" --nofile=128:128; then
	fail fdlimit/prlimit "cannot lower the daemon's fd limit"
	t_done
fi
mark=$(wc -l <"$CCP_LOG")

# The flood: one keep-alive client first, then 300 idle connections; CPU
# is sampled over 3 s while they are held; then the early client asks.
"$PY" - "$CCP_PORT" "$CCP_PID" "/v2/$R1/blobs/$D1" "/v2/$R2/blobs/$D2" \
	>"$T_TMP/flood.json" 2>"$T_OUT/flood.err" <<'EOF'
import hashlib, http.client, json, os, socket, sys, time
port, pid, hit, miss = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return {"status": r.status, "sha": "sha256:" + hashlib.sha256(body).hexdigest(),
            "cache": r.getheader("X-Cache")}
out = {}
early = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
out["early_first"] = get(early, "/v2/")
idle = []
for _ in range(300):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    idle.append(s)
time.sleep(2)
c0, t0 = cpu(), time.time()
time.sleep(3)
out["cpu"] = (cpu() - c0) / (time.time() - t0)
for k, p in (("hit", hit), ("miss", miss), ("metrics", "/metrics")):
    try:
        out[k] = get(early, p)
        if k == "metrics":
            conn_m = out[k]
    except Exception as e:
        out[k] = {"error": str(e)}
try:
    early.request("GET", "/metrics")
    out["up"] = [l for l in early.getresponse().read().decode().splitlines()
                 if l.startswith('ccprewarm_upstream_up{upstream="docker.io"}')]
except Exception as e:
    out["up"] = ["error " + str(e)]
for s in idle:
    s.close()
early.close()
print(json.dumps(out))
EOF
J=$T_TMP/flood.json
note "flood: $(cat "$J")"
cpu=$(jq -r .cpu "$J")
check fdlimit/no-spin "CPU while out of fds: $cpu of a core, want < 0.2" secs_lt "${cpu:-9}" 0.2
n=$(tail -n +"$mark" "$CCP_LOG" | grep -ci 'accept')
check fdlimit/log-once "$n log lines about accept while out of fds, want a handful (< 20)" [ "$n" -lt 20 ]
check fdlimit/early-hit "a connected client's cached blob: $(jq -c .hit "$J")" \
	[ "$(jq -r .hit.status "$J")" = 200 -a "$(jq -r .hit.sha "$J")" = "$D1" ]
check fdlimit/early-miss "a connected client's blob from upstream: $(jq -c .miss "$J")" \
	[ "$(jq -r .miss.status "$J")" = 200 -a "$(jq -r .miss.sha "$J")" = "$D2" ]
up=$(jq -r '.up[0] // ""' "$J")
check fdlimit/breaker-closed "upstream gauge while out of fds: '$up', want 1" [ "${up##* }" = 1 ]
n=$(tail -n +"$mark" "$CCP_LOG" | grep -c "unreachable")
check fdlimit/never-tripped "the breaker opened $n times" [ "$n" = 0 ]
# Once the idle connections are gone, a new client is served.
ok() { req GET "$M/v2/"; [ "$R_CODE" = 200 ]; }
check fdlimit/recovers "no 200 from a new connection within 20 s of the flood ending: $(exchange)" \
	wait_until 20 ok

# ------------------------------------------------ header deadline
"$PY" - "$CCP_PORT" >"$T_TMP/slow.json" 2>>"$T_OUT/flood.err" <<'EOF'
import json, socket, sys, time
port = int(sys.argv[1])
def slow():
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.time()
    req = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 40
    try:
        for b in req:
            s.send(bytes([b]))
            time.sleep(0.25)
            if time.time() - t0 > 15:
                return {"cut": False, "after": time.time() - t0}
        s.settimeout(5)
        return {"cut": s.recv(1) == b"", "after": time.time() - t0}
    except (BrokenPipeError, ConnectionResetError):
        return {"cut": True, "after": time.time() - t0}
def idle():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536)
    time.sleep(5)
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    return {"second_reply": s.recv(12).decode(errors="replace")}
print(json.dumps({"slow": slow(), "idle": idle()}))
EOF
note "header deadline: $(cat "$T_TMP/slow.json")"
cut=$(jq -r .slow.cut "$T_TMP/slow.json")
after=$(jq -r .slow.after "$T_TMP/slow.json")
check fdlimit/slowloris-cut "a byte-a-time request: cut=$cut after ${after}s, want cut within 2 s deadline + slack (< 8 s)" \
	[ "$cut" = true -a "$(awk -v a="$after" 'BEGIN { print (a < 8) }')" = 1 ]
second=$(jq -r .idle.second_reply "$T_TMP/slow.json")
check fdlimit/keepalive-idle-kept "a keep-alive connection idle for 5 s (> deadline) answered '$second', want HTTP/1.1 200" \
	[ "$second" = "HTTP/1.1 200" ]
stop_clean CCP fdlimit
t_done
