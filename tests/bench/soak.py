#!/usr/bin/env python3
"""soak.py: mixed traffic against a running ccprewarm for a long time.

Driven by tests/bench/soak.sh, which starts docker-registry (seeded by
seed.py), tests/tools/faultproxy.py in front of it and ccprewarm (with a
small max_bytes budget when the binary knows the key).  This script:

  - runs --clients threads of mixed traffic for --seconds: blob GETs (every
    complete 200 hashed against its digest), Range GETs (the slice compared
    with the seeded file), blob HEADs, manifest GETs by tag and by digest;
  - every --fault-every seconds switches the fault proxy to the next fault
    mode (corrupt, drop, stall, error, blackhole) for --fault-seconds, then
    back to pass;
  - every --sample-every seconds samples the daemon's RSS (VmRSS) and open
    fds (/proc/PID/fd);
  - at the end hashes every file in the store (--data/blobs/sha256/..)
    against its name and writes a JSON summary (--out).

Exit status 0 when: no wrong byte in any complete reply, no store file
whose hash is not its name, RSS and fds flat (the last quarter's median
within 20 % + 8 MiB / + 16 fds of the second quarter's).  Python standard
library only.
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.parse

FAULTS = ("corrupt", "drop", "stall", "error", "blackhole")
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])


def log(msg):
    sys.stderr.write("soak: %s\n" % msg)
    sys.stderr.flush()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {}
        self.status = {}
        self.bad_bytes = []
        self.errors = 0
        self.lat = []

    def add(self, op, status, secs):
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1
            k = "%s %s" % (op, status)
            self.status[k] = self.status.get(k, 0) + 1
            if len(self.lat) < 200000:
                self.lat.append((op, status, secs))


def rss_fds(pid):
    rss = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])  # KiB
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, fds


def worker(a, seed, stop, st, rnd):
    u = urllib.parse.urlsplit(a.mirror)
    conn = None
    blobs = list(seed["blobs"].items())
    images = seed["images"]
    manifests = list(seed["manifests"].items())
    blob_dir = seed["blob_dir"]
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        r = rnd.random()
        headers = {}
        method = "GET"
        if r < 0.55:
            op = "blob"
            d, meta = rnd.choice(blobs)
            path = "/v2/%s/blobs/%s" % (meta["repo"], d)
        elif r < 0.70:
            op = "range"
            d, meta = rnd.choice(blobs)
            size = meta["size"]
            first = rnd.randrange(size)
            last = min(size - 1, first + rnd.randrange(1, 1 << 20))
            headers["Range"] = "bytes=%d-%d" % (first, last)
            path = "/v2/%s/blobs/%s" % (meta["repo"], d)
        elif r < 0.80:
            op = "head"
            method = "HEAD"
            d, meta = rnd.choice(blobs)
            path = "/v2/%s/blobs/%s" % (meta["repo"], d)
        elif r < 0.92:
            op = "tag"
            img = rnd.choice(images)
            headers["Accept"] = MANIFEST_ACCEPT
            path = "/v2/%s/manifests/%s" % (img["repo"], rnd.choice(img["tags"]))
        else:
            op = "manifest"
            d, meta = rnd.choice(manifests)
            headers["Accept"] = MANIFEST_ACCEPT
            path = "/v2/%s/manifests/%s" % (meta["repo"], d)
        t0 = time.monotonic()
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            complete = True
        except (OSError, http.client.HTTPException):
            # Cut replies (a failed verification, a fault) land here:
            # they are never complete, so never wrong.
            conn.close()
            conn = None
            st.add(op, "cut", time.monotonic() - t0)
            continue
        secs = time.monotonic() - t0
        st.add(op, resp.status, secs)
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
        if not complete or method != "GET":
            continue
        if op == "blob" and resp.status == 200:
            if "sha256:" + hashlib.sha256(body).hexdigest() != d:
                with st.lock:
                    st.bad_bytes.append(path)
        elif op == "range" and resp.status == 206:
            cr = resp.getheader("Content-Range", "")
            try:
                a0, a1 = cr.split(" ")[1].split("/")[0].split("-")
                a0, a1 = int(a0), int(a1)
                with open(os.path.join(blob_dir, d[7:]), "rb") as f:
                    f.seek(a0)
                    want = f.read(a1 - a0 + 1)
                ok = body == want and a0 == first
            except (ValueError, IndexError, OSError):
                ok = False
            if not ok:
                with st.lock:
                    st.bad_bytes.append(path + " " + headers["Range"])
        elif op in ("tag", "manifest") and resp.status == 200:
            dg = resp.getheader("Docker-Content-Digest", "")
            if dg and "sha256:" + hashlib.sha256(body).hexdigest() != dg:
                with st.lock:
                    st.bad_bytes.append(path)


def proxy_mode(url, mode):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        c.request("POST", "/_proxy/mode?m=%s" % mode)
        c.getresponse().read()
    finally:
        c.close()


def faulter(a, stop, events):
    i = 0
    t_start = time.monotonic()
    while not stop.wait(a.fault_every):
        mode = FAULTS[i % len(FAULTS)]
        i += 1
        events.append({"t": round(time.monotonic() - t_start, 1),
                       "fault": mode})
        try:
            proxy_mode(a.proxy, mode)
            stop.wait(a.fault_seconds)
        finally:
            proxy_mode(a.proxy, "pass")


def verify_store(data):
    bad, n, size = [], 0, 0
    root = os.path.join(data, "blobs", "sha256")
    for dirpath, _, files in os.walk(root):
        for fn in files:
            p = os.path.join(dirpath, fn)
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            n += 1
            size += os.path.getsize(p)
            if h.hexdigest() != fn:
                bad.append(p)
    return n, size, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mirror", required=True)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--seed-json", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seconds", type=int, default=1800)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--fault-every", type=float, default=60)
    ap.add_argument("--fault-seconds", type=float, default=10)
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.seed_json) as f:
        seed = json.load(f)
    st = Stats()
    stop = threading.Event()
    events = []
    threads = [threading.Thread(target=worker,
                                args=(a, seed, stop, st, random.Random(i)),
                                daemon=True) for i in range(a.clients)]
    ft = threading.Thread(target=faulter, args=(a, stop, events), daemon=True)
    for t in threads:
        t.start()
    ft.start()
    samples = []
    t0 = time.monotonic()
    end = t0 + a.seconds
    while time.monotonic() < end:
        try:
            rss, fds = rss_fds(a.pid)
        except OSError:
            log("the daemon (pid %d) is gone" % a.pid)
            break
        samples.append({"t": round(time.monotonic() - t0, 1),
                        "rss_kib": rss, "fds": fds})
        time.sleep(min(a.sample_every, max(0, end - time.monotonic())))
    stop.set()
    for t in threads:
        t.join(70)
    ft.join(20)
    try:
        proxy_mode(a.proxy, "pass")
    except OSError:
        pass
    alive = os.path.exists("/proc/%d" % a.pid)
    nfiles, store_bytes, bad_store = verify_store(a.data)

    # Flat: the last quarter against the second (the first is warm-up).
    q = max(1, len(samples) // 4)
    mid, last = samples[q:2 * q], samples[-q:]
    med = lambda xs, k: statistics.median(x[k] for x in xs) if xs else 0
    rss_mid, rss_last = med(mid, "rss_kib"), med(last, "rss_kib")
    fds_mid, fds_last = med(mid, "fds"), med(last, "fds")
    rss_flat = rss_last <= rss_mid * 1.2 + 8192
    fds_flat = fds_last <= fds_mid + 16
    lat = sorted(x[2] for x in st.lat if x[0] in ("blob", "range", "head")
                 and x[1] in (200, 206))
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 4) \
        if lat else None
    res = {
        "seconds": round(time.monotonic() - t0, 1),
        "clients": a.clients,
        "requests": sum(st.ops.values()),
        "ops": st.ops,
        "status": dict(sorted(st.status.items())),
        "faults": events,
        "bad_bytes": st.bad_bytes[:20],
        "bad_bytes_count": len(st.bad_bytes),
        "store_files": nfiles,
        "store_bytes": store_bytes,
        "store_bad": bad_store[:20],
        "store_bad_count": len(bad_store),
        "daemon_alive": alive,
        "rss_kib": {"min": min((s["rss_kib"] for s in samples), default=0),
                    "max": max((s["rss_kib"] for s in samples), default=0),
                    "q2_median": rss_mid, "q4_median": rss_last,
                    "flat": rss_flat},
        "fds": {"min": min((s["fds"] for s in samples), default=0),
                "max": max((s["fds"] for s in samples), default=0),
                "q2_median": fds_mid, "q4_median": fds_last,
                "flat": fds_flat},
        "hit_latency_s": {"p50": pct(0.5), "p99": pct(0.99),
                          "max": lat[-1] if lat else None},
        "samples": samples,
    }
    res["ok"] = (alive and not st.bad_bytes and not bad_store and rss_flat
                 and fds_flat and len(samples) >= 4)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log("%d requests, %d wrong bytes, %d bad store files, RSS %s->%s KiB, "
        "fds %s->%s: %s" % (res["requests"], len(st.bad_bytes),
                            len(bad_store), rss_mid, rss_last, fds_mid,
                            fds_last, "ok" if res["ok"] else "FAILED"))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
