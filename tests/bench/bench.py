#!/usr/bin/env python3
"""bench.py: ccprewarm side by side with distribution's proxy, nginx and the
upstream itself, on one machine, against one seeded upstream.

Run through tests/bench/run.sh (`make bench`), which installs what is
missing, builds, and cleans up every process this script starts (each is
its own process group; their ids are listed in $BENCH_TMP/pids/).

Servers (all on 127.0.0.1, free ports):
  direct        docker-registry, plain, seeded by tests/tools/seed.py
  ccprewarm     build/ccprewarm serve --upstream <direct>
  distribution  docker-registry with proxy.remoteurl: <direct>
  nginx         the same manifests and blobs as static files, sendfile on

Figures (each timed one BENCH_REPS times, the median reported):
  1 cold pull, 1 client       fresh empty cache per rep
  2 warm pull, 1 client       right after the cold pull, cache full
  3 cold pull, 8 clients      fresh cache per rep; upstream bytes from the
                              upstream's own access log / unique bytes
  4 tag / digest manifest GETs/s, wrk, 32 connections, 10 s
  5 largest blob MB/s, wrk, 4 connections, 10 s
  6 peak RSS of each server during figure 3 (VmRSS every 100 ms)
  7 a real dockerd pulling a lasuite-docs-like set, cold and warm
    (tests/bench/engine.sh, run before this script; its JSON)
  8 two nodes: node B's cold pull from the shared S3 store vs node A's
    from upstream (tests/bench/two_nodes.sh, run before; its JSON)
How cost grows:
  cold fan-in with 1, 8, 32, 128 clients (wall, amplification) for
  direct, ccprewarm and distribution on a small subset of the set, drawn
  as an SVG with gnuplot; tag/digest manifest GETs/s and /metrics scrape
  time with a store of 100 and of 100,000 blobs (filled through
  ccprewarm's own pull path from an nginx upstream of tiny blobs)

Writes docs/perf/YYYY-MM-DD-HHMM.{md,json,-scale.svg} and
docs/perf/latest.json and prints the tables, the change against the
previous report and a warning for every figure more than 10% worse.
Python standard library only.
"""

import datetime
import glob
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(TOP, "tests", "bench")
PERF = os.path.join(TOP, "docs", "perf")
PY = sys.executable

SIZE_MB = float(os.environ.get("BENCH_SIZE_MB", "750"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
LARGE_LAYERS = int(os.environ.get("BENCH_LARGE_LAYERS", "3"))
SEED = int(os.environ.get("BENCH_SEED", "1"))
CACHE = os.environ.get("BENCH_CACHE", os.path.join(TOP, "build",
                                                   "bench-cache"))
OUT = os.environ.get("BENCH_OUT", os.path.join(TOP, "build", "bench-out"))
TMP = os.environ["BENCH_TMP"]
CCP_BIN = os.environ.get("CCPREWARM_BIN", os.path.join(TOP, "build",
                                                       "ccprewarm"))
WRITE_REPORT = os.environ.get("BENCH_REPORT", "1") != "0"
MAIN = os.environ.get("BENCH_MAIN", "1") != "0"     # 0: figures 1-6 skipped
# How cost grows (docs/perf/README.md): fan-in, store size, /metrics.
SCALE = os.environ.get("BENCH_SCALE", "1") != "0"
SCALE_CLIENTS = [int(x) for x in os.environ.get(
    "BENCH_SCALE_CLIENTS", "1 8 32 128").split()]
SCALE_MB = float(os.environ.get("BENCH_SCALE_MB", "10"))
SCALE_REPS = int(os.environ.get("BENCH_SCALE_REPS", "1"))
STORE_BLOBS = int(os.environ.get("BENCH_STORE_BLOBS", "100000"))
STORE_SMALL = 100
# Where those two stores live: tmpfs by default, so that 100,000 fills are
# not 200,000 fsyncs of a shared disk (docs/perf/README.md); "" for $TMP.
STORE_DIR = os.environ.get("BENCH_STORE_DIR", "/dev/shm")
SCRAPES = 401      # /metrics scrapes per measurement (CPU needs many ticks)
SVG = os.environ.get("BENCH_SVG", "1") != "0"
WORSE_PCT = 10.0    # a figure this much worse than the last report: warning

ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
])
MANIFEST_EXT = {
    "application/vnd.docker.distribution.manifest.v2+json": "dm",
    "application/vnd.docker.distribution.manifest.list.v2+json": "dl",
    "application/vnd.oci.image.manifest.v1+json": "om",
    "application/vnd.oci.image.index.v1+json": "oi",
}
SERVERS = ("direct", "ccprewarm", "distribution", "nginx")

# Targets from the issue (13): (figure, server, "vs" server or None, op, value).
TARGETS = [
    ("fanout_amplification", "ccprewarm", None, "==", 1.00,
     "upstream bytes / unique bytes, 8 cold clients"),
    ("cold_pull_s", "ccprewarm", "direct", "<=", 1.5,
     "cold pull wall vs direct (stretch 1.2)"),
    ("warm_pull_s", "ccprewarm", "direct", "<=", 0.8,
     "warm pull wall vs direct"),
    ("fanout_wall_s", "ccprewarm", "direct", "<=", 0.8,
     "8 cold clients wall vs direct"),
    ("tag_manifest_rps", "ccprewarm", "nginx", ">=", 1.0,
     "tag manifest GETs/s vs nginx"),
    ("digest_manifest_rps", "ccprewarm", "nginx", ">=", 1.0,
     "digest manifest GETs/s vs nginx"),
    ("large_blob_MBps", "ccprewarm", "nginx", ">=", 1.0,
     "large blob MB/s vs nginx"),
    ("peak_rss_MB", "ccprewarm", None, "<=", 32.0,
     "peak RSS during 8 cold clients (MB)"),
]

PROBLEMS = []   # human-readable: every failure seen, with detail


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def problem(msg):
    PROBLEMS.append(msg)
    log("PROBLEM: " + msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(url, headers=None, timeout=10):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.netloc, timeout=timeout)
    try:
        c.request("GET", u.path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# ------------------------------------------------------------------ daemons

class Daemon:
    """A process in its own session; its id is in $BENCH_TMP/pids/."""

    def __init__(self, name, argv, logpath, ready_url):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.ready_url = ready_url
        self.proc = None

    def start(self):
        with open(self.logpath, "ab") as lf:
            lf.write(("\n### %s start: %s\n" % (
                time.strftime("%H:%M:%S"), " ".join(self.argv))).encode())
            lf.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=lf, stderr=lf,
                                         start_new_session=True)
        with open(os.path.join(TMP, "pids", str(self.proc.pid)), "w") as f:
            f.write(self.name)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit("bench: %s exited at start-up (%d), see %s"
                                 % (self.name, self.proc.returncode,
                                    self.logpath))
            try:
                st, _, _ = http_get(self.ready_url, timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("bench: %s did not answer %s in 30 s, see %s"
                         % (self.name, self.ready_url, self.logpath))

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=15):
        if not self.proc or self.proc.poll() is not None:
            self._forget()
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            problem("%s did not exit within %d s of SIGTERM: killed"
                    % (self.name, timeout))
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        try:  # anything left in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._forget()

    def _forget(self):
        if self.proc:
            try:
                os.unlink(os.path.join(TMP, "pids", str(self.proc.pid)))
            except FileNotFoundError:
                pass


def registry_config(path, port, root, remote=None):
    cfg = """version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
  secret: ccprewarm-bench-secret
""" % (root, port)
    if remote:
        cfg += "proxy:\n  remoteurl: %s\n" % remote
    with open(path, "w") as f:
        f.write(cfg)


class Server:
    """One of the four servers under test; start() gives an empty cache."""

    def __init__(self, kind):
        self.kind = kind
        self.daemon = None
        self.port = None
        self.url = None
        self.starts = 0

    def start(self):
        raise NotImplementedError

    def stop(self):
        if self.daemon:
            self.daemon.stop()
            self.daemon = None

    def restart_cold(self):
        self.stop()
        self.start()

    def pids(self):
        """The server's processes (nginx: master and workers)."""
        if not self.daemon:
            return []
        out = [self.daemon.pid]
        try:
            with open("/proc/%d/task/%d/children" % (self.daemon.pid,
                                                     self.daemon.pid)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return out


class Upstream(Server):
    def __init__(self):
        super().__init__("direct")
        self.root = os.path.join(TMP, "upstream")
        self.logpath = os.path.join(OUT, "upstream.log")

    def start(self):
        if self.daemon:
            return
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        cfg = os.path.join(TMP, "upstream.yml")
        registry_config(cfg, self.port, self.root)
        self.daemon = Daemon("upstream", ["docker-registry", "serve", cfg],
                             self.logpath, self.url + "/v2/").start()

    def restart_cold(self):
        self.start()    # the upstream has no cache to empty

    def log_offset(self):
        return os.path.getsize(self.logpath)

    def quiesce(self, idle=1.0, limit=20.0):
        """Wait until the upstream's log stops growing (background fetches
        of a proxy that stores after serving)."""
        end = time.monotonic() + limit
        last = self.log_offset()
        still = time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.2)
            n = self.log_offset()
            if n != last:
                last = n
                still = time.monotonic()
            elif time.monotonic() - still >= idle:
                return

    LINE = re.compile(r'^\S+ - - \[[^]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)')

    def traffic(self, start, end=None):
        """Requests the upstream logged between two offsets."""
        with open(self.logpath, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(end - start)
        t = {"get_bytes": 0, "gets": 0, "heads": 0, "other": 0,
             "blob_gets": 0, "manifest_gets": 0, "non_2xx": 0}
        for line in data.decode("utf-8", "replace").splitlines():
            m = self.LINE.match(line)
            if not m:
                continue
            method, path, status, size = m.groups()
            if path == "/v2/" or path == "/v2":
                continue
            if not status.startswith("2"):
                t["non_2xx"] += 1
            if method == "GET":
                t["gets"] += 1
                t["get_bytes"] += 0 if size == "-" else int(size)
                if "/blobs/" in path:
                    t["blob_gets"] += 1
                elif "/manifests/" in path:
                    t["manifest_gets"] += 1
            elif method == "HEAD":
                t["heads"] += 1
            else:
                t["other"] += 1
        return t


class Ccprewarm(Server):
    def __init__(self, upstream, kind="ccprewarm", root=None):
        super().__init__(kind)
        self.upstream = upstream
        self.logpath = os.path.join(OUT, kind + ".log")
        self.data = os.path.join(root or TMP, kind + "-data")

    def start(self):
        self.starts += 1
        data = self.data
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.daemon = Daemon("ccprewarm", [
            CCP_BIN, "serve", "--listen", "127.0.0.1:%d" % self.port,
            "--data", data, "--upstream", self.upstream.url,
            "--access-log", ""], self.logpath, self.url + "/v2/").start()


class Distribution(Server):
    def __init__(self, upstream):
        super().__init__("distribution")
        self.upstream = upstream
        self.logpath = os.path.join(OUT, "distribution.log")

    def start(self):
        self.starts += 1
        root = os.path.join(TMP, "dist-root")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        cfg = os.path.join(TMP, "dist.yml")
        registry_config(cfg, self.port, root, remote=self.upstream.url)
        self.daemon = Daemon("distribution", ["docker-registry", "serve",
                                              cfg],
                             self.logpath, self.url + "/v2/").start()


NGINX_CONF = """worker_processes auto;
user root;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    types {
        application/vnd.docker.distribution.manifest.v2+json dm;
        application/vnd.docker.distribution.manifest.list.v2+json dl;
        application/vnd.oci.image.manifest.v1+json om;
        application/vnd.oci.image.index.v1+json oi;
    }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
        location = /v2/ {
            default_type application/json;
            return 200 '{}';
        }
        # A manifest file is named <tag|digest>.<ext>, the extension giving
        # its media type (the types above).
        location ~ "^/v2/.+/manifests/[^/]+$" {
            try_files $uri.dm $uri.dl $uri.om $uri.oi =404;
        }
        location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{64}$" {
        }
    }
}
"""


class Nginx(Server):
    """Static files: /v2/<name>/manifests/<ref>.<ext>, /v2/<name>/blobs/<d>."""

    def __init__(self):
        super().__init__("nginx")
        self.dir = os.path.join(TMP, "nginx")
        self.root = os.path.join(self.dir, "root")
        self.logpath = os.path.join(OUT, "nginx.log")

    def populate(self, seed, upstream_url, blobdir):
        """Manifests copied from the upstream (verified); blobs linked from
        the generated set the upstream was seeded with."""
        for sub in ("tmp", "root"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        for img in seed["images"]:
            repo = img["repo"]
            mdir = os.path.join(self.root, "v2", repo, "manifests")
            bdir = os.path.join(self.root, "v2", repo, "blobs")
            os.makedirs(mdir, exist_ok=True)
            os.makedirs(bdir, exist_ok=True)
            refs = [(t, img["digest"]) for t in img["tags"]]
            refs.append((img["digest"], img["digest"]))
            refs += [(p["digest"], p["digest"]) for p in img["platforms"]]
            for ref, digest in refs:
                st, hdrs, body = http_get(
                    "%s/v2/%s/manifests/%s" % (upstream_url, repo, ref),
                    {"Accept": ACCEPT})
                got = "sha256:" + hashlib.sha256(body).hexdigest()
                if st != 200 or got != digest:
                    raise SystemExit("bench: upstream manifest %s:%s: %d %s"
                                     % (repo, ref, st, got))
                ext = MANIFEST_EXT[hdrs["content-type"].split(";")[0]]
                with open(os.path.join(mdir, "%s.%s" % (ref, ext)),
                          "wb") as f:
                    f.write(body)
            for b in img["blobs"]:
                src = os.path.join(blobdir, b["digest"][7:])
                dst = os.path.join(bdir, b["digest"])
                if os.path.exists(dst):
                    continue
                if os.path.getsize(src) != b["size"]:
                    raise SystemExit("bench: generated blob %s has the "
                                     "wrong size" % src)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)

    def start(self):
        if self.daemon:
            return
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % {"dir": self.dir, "port": self.port,
                                  "root": self.root})
        self.daemon = Daemon("nginx", [
            "nginx", "-p", self.dir + "/", "-e", self.dir + "/error.log",
            "-c", conf, "-g", "daemon off;"], self.logpath,
            self.url + "/v2/").start()

    def restart_cold(self):
        self.start()    # nothing to empty: it is the practical limit


# ------------------------------------------------------------------ measuring

class RssSampler:
    """Peak of the summed VmRSS of some servers' processes, every 100 ms."""

    def __init__(self, servers):
        self.servers = servers
        self.peak = {s.kind: 0 for s in servers}
        self.peak_anon = {s.kind: 0 for s in servers}
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    @staticmethod
    def rss_kb(pid, key="VmRSS"):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self):
        for s in self.servers:
            pids = s.pids()
            kb = sum(self.rss_kb(p) for p in pids)
            if kb > self.peak[s.kind]:
                self.peak[s.kind] = kb
            kb = sum(self.rss_kb(p, "RssAnon") for p in pids)
            if kb > self.peak_anon[s.kind]:
                self.peak_anon[s.kind] = kb

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()
        self.sample()
        # A process started for this run: its own high-water mark too.
        for s in self.servers:
            if s.kind in ("ccprewarm", "distribution") and s.daemon:
                hwm = self.rss_kb(s.daemon.pid, "VmHWM")
                self.peak[s.kind] = max(self.peak[s.kind], hwm)


def run_pulls(server, refs, n, tag):
    """n pull.py clients released at once; returns (wall, [results])."""
    procs = []
    outs = []
    for i in range(n):
        out = os.path.join(TMP, "pull-%s-%s-%d.json" % (server.kind, tag, i))
        outs.append(out)
        argv = [PY, os.path.join(BENCH, "pull.py"), "--url", server.url,
                "--wait-go", "--out", out]
        for r in refs:
            argv += ["--ref", r]
        procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE))
    time.sleep(0.3 + 0.03 * n)  # let every client import and be ready
    t0 = time.monotonic()
    for p in procs:
        p.stdin.write(b"go\n")
        p.stdin.flush()
    for p in procs:
        p.stdin.close()
    for p in procs:
        p.wait()
    wall = time.monotonic() - t0
    results = []
    for i, out in enumerate(outs):
        try:
            with open(out) as f:
                results.append(json.load(f))
        except (OSError, ValueError) as e:
            results.append({"ok": False, "error": {"what": "no result",
                                                   "error": repr(e)}})
    for i, r in enumerate(results):
        if not r.get("ok"):
            problem("%s %s client %d/%d failed: %s" % (
                server.kind, tag, i + 1, n,
                json.dumps(r.get("error"), sort_keys=True)[:2000]))
    return wall, results


def wrk(url, conns, seconds, headers=()):
    threads = min(2, conns)
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds,
            "--timeout", "60s"]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    p = subprocess.run(argv, capture_output=True, text=True)
    out = p.stdout
    res = {"rps": None, "bytes_per_s": None, "non_2xx": 0, "errors": 0,
           "raw": out.strip()}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if m:
        dur = float(m.group(2)) * {"ms": 1e-3, "s": 1, "m": 60}.get(
            m.group(3), 1)
        unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30,
                "TB": 1 << 40}.get(m.group(5), 1)
        res["bytes_per_s"] = float(m.group(4)) * unit / dur
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non_2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    if p.returncode != 0 or res["rps"] is None:
        problem("wrk %s failed (exit %d): %s %s" % (url, p.returncode,
                                                    out[-500:],
                                                    p.stderr[-500:]))
    elif res["non_2xx"] or res["errors"]:
        problem("wrk %s: %d non-2xx responses, %d socket errors"
                % (url, res["non_2xx"], res["errors"]))
    return res


def tail(path, n):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return [ln for ln in lines if ln.strip()][-n:]
    except OSError:
        return []


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------ report

def fig_entry(runs):
    return {"median": median(runs), "runs": runs}


def ratio(figs, fig, a, b):
    fa = figs.get(fig, {}).get(a, {}).get("median")
    fb = figs.get(fig, {}).get(b, {}).get("median")
    if fa is None or not fb:
        return None
    return fa / fb


FIG_TITLES = [
    ("cold_pull_s", "1. cold pull, 1 client (s)", "s", False),
    ("warm_pull_s", "2. warm pull, 1 client (s)", "s", False),
    ("fanout_wall_s", "3. cold pull, %d clients at once (s)" % CLIENTS, "s",
     False),
    ("fanout_amplification", "3. upstream bytes / unique bytes, %d cold "
     "clients" % CLIENTS, "x", False),
    ("cold_amplification", "1. upstream bytes / unique bytes, 1 cold client",
     "x", False),
    ("tag_manifest_rps", "4. tag manifest GETs/s (32 conns)", "/s", True),
    ("digest_manifest_rps", "4. digest manifest GETs/s (32 conns)", "/s",
     True),
    ("large_blob_MBps", "5. largest blob MB/s (4 conns)", "MB/s", True),
    ("peak_rss_MB", "6. peak RSS during figure 3 (MB)", "MB", False),
    ("peak_anon_MB", "6. of which anonymous (MB)", "MB", False),
    ("engine_cold_s", "7. dockerd pull, lasuite-docs-like, cold (s)", "s",
     False),
    ("engine_warm_s", "7. dockerd pull, lasuite-docs-like, warm (s)", "s",
     False),
    ("two_nodes_s", "8. two nodes: B cold from shared store (s)", "s",
     False),
]

# What the table shows beside each figure: the target, as a ratio
# of ccprewarm to another server (or an absolute value).
TABLE_TARGET = {
    "cold_pull_s": ("direct", "<= 1.5x direct"),
    "warm_pull_s": ("direct", "<= 0.8x direct"),
    "fanout_wall_s": ("direct", "<= 0.8x direct"),
    "fanout_amplification": (None, "== 1.00"),
    "tag_manifest_rps": ("nginx", ">= 1.0x nginx"),
    "digest_manifest_rps": ("nginx", ">= 1.0x nginx"),
    "large_blob_MBps": ("nginx", ">= 1.0x nginx"),
    "peak_rss_MB": ("distribution", "<= 32 MB"),
    "engine_cold_s": ("direct", ""),
    "engine_warm_s": ("direct", ""),
    "two_nodes_s": ("node_a", ""),
}

RATIOS = [
    ("cold_pull_s", "ccprewarm", "direct"),
    ("cold_pull_s", "distribution", "direct"),
    ("cold_pull_s", "nginx", "direct"),
    ("warm_pull_s", "ccprewarm", "direct"),
    ("warm_pull_s", "distribution", "direct"),
    ("warm_pull_s", "ccprewarm", "nginx"),
    ("warm_pull_s", "distribution", "nginx"),
    ("fanout_wall_s", "ccprewarm", "direct"),
    ("fanout_wall_s", "distribution", "direct"),
    ("fanout_wall_s", "ccprewarm", "distribution"),
    ("tag_manifest_rps", "ccprewarm", "nginx"),
    ("tag_manifest_rps", "distribution", "nginx"),
    ("tag_manifest_rps", "ccprewarm", "distribution"),
    ("digest_manifest_rps", "ccprewarm", "nginx"),
    ("digest_manifest_rps", "distribution", "nginx"),
    ("large_blob_MBps", "ccprewarm", "nginx"),
    ("large_blob_MBps", "ccprewarm", "direct"),
    ("large_blob_MBps", "distribution", "nginx"),
    ("peak_rss_MB", "ccprewarm", "distribution"),
    ("engine_cold_s", "ccprewarm", "direct"),
    ("engine_cold_s", "distribution", "direct"),
    ("engine_warm_s", "ccprewarm", "direct"),
    ("engine_warm_s", "distribution", "direct"),
    ("two_nodes_s", "ccprewarm", "node_a"),
]


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "x":
        return "%.4f" % v
    if v and abs(v) < 0.1:
        return "%.3g" % v
    if abs(v) >= 1000:
        return "%.0f" % v
    if abs(v) >= 100:
        return "%.1f" % v
    return "%.2f" % v


def targets_eval(figs):
    out = []
    for fig, who, vs, op, want, what in TARGETS:
        if vs:
            val = ratio(figs, fig, who, vs)
        else:
            val = figs.get(fig, {}).get(who, {}).get("median")
        if val is None:
            met = None
        elif op == "==":
            met = abs(val - want) < 0.005
        elif op == "<=":
            met = val <= want
        else:
            met = val >= want
        out.append({"figure": fig, "server": who, "vs": vs, "op": op,
                    "target": want, "value": val, "met": met, "what": what})
    return out


def table_lines(rep, md=False):
    figs = rep["figures"]
    lines = []
    hdr = ["figure"] + list(SERVERS) + ["ccprewarm vs", "target",
                                        "runs (ccprewarm)"]
    row = "%-46s %9s %9s %12s %9s  %-17s %-15s %s"
    if md:
        lines.append("| " + " | ".join(hdr) + " |")
        lines.append("|" + "---|" * len(hdr))
    else:
        lines.append(row % tuple(hdr))
    for key, title, unit, _ in FIG_TITLES:
        f = figs.get(key, {})
        cells = [fmt(f.get(s, {}).get("median"), unit) for s in SERVERS]
        runs = f.get("ccprewarm", {}).get("runs", [])
        rs = " ".join(fmt(x, unit) for x in runs)
        vs, target = TABLE_TARGET.get(key, (None, ""))
        rel = ""
        if vs:
            r = ratio(figs, key, "ccprewarm", vs)
            rel = "%s x %s" % (fmt(r), vs) if r is not None else "-"
        if target:
            met = [t["met"] for t in rep["targets"] if t["figure"] == key]
            if met and met[0] is not None:
                target += " " + ("ok" if met[0] else "MISSED")
        cells = [title] + cells + [rel, target, rs]
        if md:
            lines.append("| " + " | ".join(cells) + " |")
        else:
            lines.append(row % tuple(cells))
    return lines


def ratio_lines(rep, md=False):
    lines = []
    if md:
        lines += ["| ratio | median |", "|---|---|"]
    for fig, a, b in RATIOS:
        v = rep["ratios"].get("%s:%s/%s" % (fig, a, b))
        title = "%s: %s / %s" % (fig, a, b)
        if md:
            lines.append("| %s | %s |" % (title, fmt(v)))
        else:
            lines.append("  %-52s %8s" % (title, fmt(v)))
    return lines


def target_lines(rep, md=False):
    lines = []
    if md:
        lines += ["| target | measured | wanted | met |", "|---|---|---|---|"]
    for t in rep["targets"]:
        met = {True: "yes", False: "NO", None: "n/a"}[t["met"]]
        want = "%s %.2f" % (t["op"], t["target"])
        if md:
            lines.append("| %s | %s | %s | %s |" % (
                t["what"], fmt(t["value"], "x"), want, met))
        else:
            lines.append("  %-48s %10s  %-8s %s" % (
                t["what"], fmt(t["value"], "x"), want, met))
    return lines


def previous_report(exclude):
    """The previous report: latest.json when its set has the same size,
    else the newest earlier report of the same size (else the newest)."""
    latest = os.path.join(PERF, "latest.json")
    r = read_json(latest)
    if r and r.get("config", {}).get("size_mb") == SIZE_MB:
        return latest, r
    cands = [p for p in glob.glob(os.path.join(PERF, "[0-9]*.json"))
             if p not in exclude]
    found = []
    for p in sorted(cands):
        try:
            with open(p) as f:
                found.append((p, json.load(f)))
        except (OSError, ValueError):
            continue
    same = [(p, r) for p, r in found
            if r.get("config", {}).get("size_mb") == SIZE_MB]
    pick = same or found
    return pick[-1] if pick else (None, None)


def flat_figures(rep):
    """Every median of a report as {(figure, server): (value, higher is
    better, unit)}: the main figures and the growth tables."""
    out = {}
    units = {k: (u, hb) for k, _, u, hb in FIG_TITLES}
    for key, per in rep.get("figures", {}).items():
        u, hb = units.get(key, ("", key.endswith(("_rps", "MBps"))))
        for srv, e in per.items():
            if isinstance(e, dict) and e.get("median") is not None:
                out[(key, srv)] = (e["median"], hb, u)
    g = rep.get("growth", {})
    for srv, per in (g.get("scale") or {}).items():
        for n, e in per.items():
            for what, key, u in (("wall", "scale_wall_s", "s"),
                                 ("amp", "scale_amplification", "x")):
                v = e.get(what, {}).get("median")
                if v is not None:
                    out[("%s@%s" % (key, n), srv)] = (v, False, u)
    for size, e in (g.get("store") or {}).items():
        for what, hb, u in (("tag_rps", True, "/s"),
                            ("digest_rps", True, "/s"),
                            ("scrape_ms", False, "ms"),
                            ("scrape_cpu_ms", False, "ms")):
            v = e.get(what, {}).get("median")
            if v is not None:
                out[("store_%s@%s" % (what, size), "ccprewarm")] = (v, hb, u)
    return out


def change_lines(rep, prev, prev_path, md=False):
    """The change of every figure against the previous report, and a
    warning for each one more than WORSE_PCT worse.  Returns (lines,
    warnings)."""
    lines, warns = [], []
    if not prev:
        return lines, warns
    pc = prev.get("config", {})
    if pc.get("size_mb") != rep["config"]["size_mb"]:
        lines.append("no earlier report of a %s MB set to compare with "
                     "(newest: %s, %s MB)" % (
                         rep["config"]["size_mb"],
                         os.path.relpath(prev_path, TOP), pc.get("size_mb")))
        return lines, warns
    head = "change vs %s (informational, never fails):" % (
        os.path.relpath(prev_path, TOP))
    lines.append(head)
    if md:
        lines += ["", "| figure | server | then | now | change |",
                  "|---|---|---|---|---|"]
    order = {k: i for i, (k, _, _, _) in enumerate(FIG_TITLES)}
    now_f = flat_figures(rep)
    then_f = flat_figures(prev)
    keys = sorted(now_f, key=lambda ks: (order.get(ks[0], len(order)),
                                         ks[0], ks[1]))
    for key, s in keys:
        now, higher_better, unit = now_f[(key, s)]
        then = then_f.get((key, s), (None,))[0]
        if not then:
            continue
        ch = (now - then) / then * 100
        better = (ch > 0) == higher_better if abs(ch) >= 0.5 else None
        tag = {True: "better", False: "worse", None: "same"}[better]
        if better is False and abs(ch) > WORSE_PCT:
            warns.append("WARNING: %s (%s) is %.1f%% worse than in %s: "
                         "%s -> %s" % (key, s, abs(ch),
                                       os.path.basename(prev_path),
                                       fmt(then, unit), fmt(now, unit)))
        if md:
            lines.append("| %s | %s | %s | %s | %+.1f%% %s |" % (
                key, s, fmt(then, unit), fmt(now, unit), ch, tag))
        else:
            lines.append("  %-28s %-12s %10s -> %-10s %+7.1f%% %s" % (
                key, s, fmt(then, unit), fmt(now, unit), ch, tag))
    return lines, warns


def write_reports(rep, stamp, prev_path, prev):
    os.makedirs(PERF, exist_ok=True)
    jpath = os.path.join(PERF, stamp + ".json")
    mpath = os.path.join(PERF, stamp + ".md")
    with open(jpath, "w") as f:
        json.dump(rep, f, indent=1, sort_keys=True)
        f.write("\n")
    shutil.copyfile(jpath, os.path.join(PERF, "latest.json"))
    c = rep["config"]
    s = rep["set"]
    md = ["# ccprewarm benchmark %s" % rep["date"], "",
          "`make bench` (tests/bench/run.sh); see README.md here for what "
          "each figure means.  Medians of %d runs; shared, noisy 2-core VM: "
          "read the ratios, not the absolute numbers." % c["reps"], "",
          "- commit: `%s`" % rep["git"],
          "- machine: %s, %d cores, %s, kernel %s; load average %s at "
          "the start, %s at the end (other work on the box shows here)" % (
              rep["machine"]["cpu"], rep["machine"]["cores"],
              rep["machine"]["mem"], rep["machine"]["kernel"],
              rep["machine"]["loadavg_start"],
              rep["machine"]["loadavg_end"]),
          "- set: %d images (pulled as linux/amd64), %.1f MB unique per "
          "client pull (%d objects), largest blob %.1f MB; seed.py "
          "--size-mb %s --large-layers %d --seed %d" % (
              len(s["refs"]), s["unique_bytes"] / 1e6, s["unique_objects"],
              s["largest_blob_bytes"] / 1e6, c["size_mb"],
              c["large_layers"], c["seed"]),
          "- versions: %s" % ", ".join("%s %s" % kv for kv in
                                       sorted(rep["versions"].items())),
          "", "## Figures (median)", ""]
    md += table_lines(rep, md=True)
    md += ["", "## Targets (from the issue)", ""]
    md += target_lines(rep, md=True)
    md += ["", "## Ratios", ""]
    md += ratio_lines(rep, md=True)
    md += ["", "## Upstream traffic, figure 3 (median run)", "",
           "| server | GET bytes | unique bytes | GETs | blob GETs | "
           "HEADs |", "|---|---|---|---|---|---|"]
    for srv, t in sorted(rep.get("fanout_traffic", {}).items()):
        md.append("| %s | %d | %d | %d | %d | %d |" % (
            srv, t["get_bytes"], s["unique_bytes"], t["gets"],
            t["blob_gets"], t["heads"]))
    if rep.get("growth"):
        md += ["", "## How cost grows", ""]
        g = rep["growth"]
        if g.get("scale"):
            md += ["Cold fan-in: %.1f MB subset (%s), wall until the last "
                   "client is done and upstream bytes / unique bytes, "
                   "medians of %d." % (g["scale_unique_bytes"] / 1e6,
                                       ", ".join(g["scale_refs"]),
                                       g["scale_reps"]), ""]
            if g.get("svg"):
                md += ["![wall time against clients](%s)" % g["svg"], ""]
        md += growth_lines(rep, md=True)
        if g.get("store"):
            md += ["", "Stores filled through ccprewarm's own pull path "
                   "(one GET per blob from an nginx upstream of tiny "
                   "blobs), then measured interleaved."]
    if prev:
        md += [""] + change_lines(rep, prev, prev_path, md=True)[0]
    md += ["", "## Problems seen", ""]
    md += ["- " + p for p in rep["problems"]] or ["none"]
    if rep.get("notes"):
        md += ["", "## Notes", ""] + rep["notes"]
    if rep.get("warnings"):
        md += ["", "## Warnings: figures more than %.0f%% worse than the "
               "previous report" % WORSE_PCT, ""]
        md += ["- " + w for w in rep["warnings"]]
    with open(mpath, "w") as f:
        f.write("\n".join(md) + "\n")
    return jpath, mpath


# ------------------------------------------------------------------ growth

def scale_refs(seed):
    """The small subset of the set the fan-in figure pulls: images by
    ascending size while their blobs sum to at most BENCH_SCALE_MB (at
    least one image)."""
    sized = sorted(((sum(b["size"] for b in img["blobs"]), img["ref"])
                    for img in seed["images"]))
    refs, total = [], 0
    for size, ref in sized:
        if refs and total + size > SCALE_MB * (1 << 20):
            break
        refs.append(ref)
        total += size
    return refs


def metric_value(url, name):
    st, _, body = http_get(url + "/metrics", timeout=60)
    if st != 200:
        return None
    for line in body.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def scrape_ms(url, n, pid=None):
    """Median wall time of n GET /metrics, each on a new connection, the
    size of the last body, and (with pid) the server's CPU time per scrape
    in ms over the n (less sensitive to the load on the box than wall)."""
    times, size = [], 0
    c0 = cpu_ticks(pid) if pid else None
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, body = http_get(url + "/metrics", timeout=60)
        dt = (time.perf_counter() - t0) * 1000.0
        if st != 200:
            problem("GET %s/metrics: %d" % (url, st))
            continue
        times.append(dt)
        size = len(body)
    c1 = cpu_ticks(pid) if pid else None
    cpu = None
    if c0 is not None and c1 is not None and times:
        cpu = (c1 - c0) * 1000.0 / os.sysconf("SC_CLK_TCK") / len(times)
    return median(times), size, cpu


def make_filler(root, n, where=None):
    """n tiny distinct blobs as static files under nginx's root (repository
    bench/filler; the files in directory `where`, linked from the root, when
    given); returns the file of their paths, one a line."""
    fdir = os.path.join(root, "v2", "bench", "filler")
    bdir = os.path.join(fdir, "blobs")
    if where and not os.path.exists(fdir):
        os.makedirs(os.path.join(where, "filler-blobs"), exist_ok=True)
        os.makedirs(fdir)
        os.symlink(os.path.join(where, "filler-blobs"), bdir)
    os.makedirs(bdir, exist_ok=True)
    lst = os.path.join(TMP, "filler-%d.txt" % n)
    with open(lst, "w") as out:
        for i in range(n):
            body = b"ccprewarm bench filler blob %d\n" % i
            hexd = hashlib.sha256(body).hexdigest()
            path = os.path.join(bdir, "sha256:" + hexd)
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(body)
            out.write("/v2/bench/filler/blobs/sha256:%s\n" % hexd)
    return lst


def fill_store(srv, paths_file, n):
    """GET the first n paths of paths_file through srv once each (wrk,
    tests/bench/fill.lua): every one a cold fill through ccprewarm's own
    pull path.  Done when /metrics counts n blobs in the store (wrk itself
    runs for its whole -d); then wrk is interrupted and its counts read.
    Returns (seconds, requests, non_2xx + errors)."""
    part = paths_file + ".%d" % n
    with open(paths_file) as f, open(part, "w") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    threads = 2 if n >= 2 else 1
    limit = max(120, n // 20)
    argv = ["wrk", "-t%d" % threads, "-c%d" % min(16, max(threads, n)),
            "-d%ds" % limit, "--timeout", "60s", "-s",
            os.path.join(BENCH, "fill.lua"), srv.url, "--", part,
            str(threads)]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    secs = None
    while time.monotonic() - t0 < limit and p.poll() is None:
        time.sleep(0.2)
        nb = metric_value(srv.url, "ccprewarm_store_blobs")
        if nb is not None and nb >= n:
            secs = time.monotonic() - t0
            break
    if p.poll() is None:
        p.send_signal(signal.SIGINT)    # wrk prints its summary
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    if secs is None:
        problem("filling %s: %d blobs not in the store within %d s"
                % (srv.kind, n, limit))
        secs = time.monotonic() - t0
    m = re.search(r"(\d+) requests in", out)
    reqs = int(m.group(1)) if m else 0
    bad = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        bad += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        bad += sum(int(x) for x in m.groups())
    if bad:
        problem("filling %s with %d blobs: %d bad answers: %s"
                % (srv.kind, n, bad, (out + err)[-500:]))
    return secs, reqs, bad


def write_svg(path, scale, unique_bytes):
    """Wall time against clients (median), one line per server, through
    gnuplot; returns path, or None when gnuplot is missing or failed."""
    if not shutil.which("gnuplot"):
        problem("gnuplot not installed: no SVG (apt-get install gnuplot-nox)")
        return None
    kinds = [k for k in ("ccprewarm", "distribution", "direct")
             if scale.get(k)]
    dat = os.path.join(TMP, "scale.dat")
    with open(dat, "w") as f:
        f.write("# clients " + " ".join(kinds) + "\n")
        for n in SCALE_CLIENTS:
            row = [str(n)]
            for k in kinds:
                v = scale[k].get(str(n), {}).get("wall", {}).get("median")
                row.append("NaN" if v is None else "%.3f" % v)
            f.write(" ".join(row) + "\n")
    plots = ", ".join(
        "'%s' using 1:%d with linespoints linewidth 2 pointtype 7 "
        "title '%s'" % (dat, i + 2, k) for i, k in enumerate(kinds))
    script = "\n".join([
        "set terminal svg size 720,480 dynamic enhanced "
        "font 'sans,12' background rgb 'white'",
        "set output '%s'" % path,
        "set title 'Cold pull of a %.1f MB subset by each client: wall "
        "time against concurrent clients'" % (unique_bytes / 1e6),
        "set xlabel 'concurrent clients (log scale)'",
        "set ylabel 'wall time until the last client is done (s)'",
        "set logscale x 2",
        "set xrange [%g:%g]" % (min(SCALE_CLIENTS) / 1.3,
                                max(SCALE_CLIENTS) * 1.3),
        "set xtics (%s)" % ", ".join(str(n) for n in SCALE_CLIENTS),
        "set key top left",
        "set grid",
        "set yrange [0:*]",
        "plot " + plots, ""])
    p = subprocess.run(["gnuplot"], input=script, capture_output=True,
                       text=True)
    if p.returncode != 0 or not os.path.exists(path):
        problem("gnuplot failed: %s" % p.stderr[-500:])
        return None
    return path


def growth_lines(rep, md=False):
    """The 'how cost grows' tables."""
    lines = []
    g = rep.get("growth", {})
    sc = g.get("scale")
    if sc:
        kinds = ("direct", "ccprewarm", "distribution")
        hdr = ["clients"] + ["%s wall (s)" % k for k in kinds] + [
            "%s upstream/unique" % k for k in kinds]
        if md:
            lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        else:
            lines.append("cold fan-in, %.1f MB subset (%s), medians of %d:"
                         % (g["scale_unique_bytes"] / 1e6,
                            " ".join(g["scale_refs"]), g["scale_reps"]))
            lines.append("  %7s %10s %10s %13s %11s %11s %13s" % (
                "clients", "direct s", "ccprewarm", "distribution",
                "direct amp", "ccp amp", "dist amp"))
        for n in SCALE_CLIENTS:
            cell = []
            for what in ("wall", "amp"):
                for k in kinds:
                    v = sc.get(k, {}).get(str(n), {}).get(what, {}).get(
                        "median")
                    cell.append(fmt(v, "x" if what == "amp" else ""))
            if md:
                lines.append("| %d | %s |" % (n, " | ".join(cell)))
            else:
                lines.append("  %7d %10s %10s %13s %11s %11s %13s"
                             % tuple([n] + cell))
    st = g.get("store")
    if st:
        if md:
            lines += ["", "| store (blobs in /metrics) | filled in (s) | "
                      "tag GETs/s | digest GETs/s | /metrics scrape (ms) | "
                      "its CPU (ms) | /metrics bytes |",
                      "|---|---|---|---|---|---|---|"]
        else:
            lines += ["", "ccprewarm with a store of N blobs (filled through "
                      "its pull path), medians of %d:" % rep["config"]["reps"],
                      "  %-22s %10s %10s %13s %10s %8s %7s" % (
                          "store (blobs)", "fill s", "tag GET/s",
                          "digest GET/s", "scrape ms", "CPU ms", "bytes")]
        for size in sorted(st, key=int):
            e = st[size]
            cells = ["%s (%s)" % (size, fmt(e.get("store_blobs"))),
                     fmt(e.get("fill_s")),
                     fmt(e.get("tag_rps", {}).get("median")),
                     fmt(e.get("digest_rps", {}).get("median")),
                     fmt(e.get("scrape_ms", {}).get("median")),
                     fmt(e.get("scrape_cpu_ms", {}).get("median")),
                     str(e.get("scrape_bytes", "-"))]
            if md:
                lines.append("| " + " | ".join(cells) + " |")
            else:
                lines.append("  %-22s %10s %10s %13s %10s %8s %7s"
                             % tuple(cells))
    return lines


def scale_phase(servers, up, seed, died):
    """Cold fan-in with BENCH_SCALE_CLIENTS clients (direct, ccprewarm,
    distribution, interleaved), on the small subset of scale_refs()."""
    t_phase = time.monotonic()
    srefs = scale_refs(seed)
    _, res = run_pulls(up, srefs, 1, "scaleprobe")
    if not res[0].get("ok"):
        problem("fan-in figure skipped: the probe pull failed")
        return {}
    s_unique = res[0]["unique_bytes"]
    kinds = ("direct", "ccprewarm", "distribution")
    runs = {k: {n: {"wall": [], "amp": []} for n in SCALE_CLIENTS}
            for k in kinds}
    for rep in range(SCALE_REPS):
        for n in SCALE_CLIENTS:
            for kind in kinds:
                srv = servers[kind]
                srv.restart_cold()
                up.quiesce(idle=0.5)
                off = up.log_offset()
                wall, res = run_pulls(srv, srefs, n, "scale%d-%d" % (n, rep))
                if died(srv, "fan-in %d clients" % n):
                    srv.start()
                    continue
                if not all(r.get("ok") for r in res):
                    log("fan-in rep %d %-12s %d clients: failed, not "
                        "counted" % (rep + 1, kind, n))
                    continue
                up.quiesce()
                t = up.traffic(off)
                amp = t["get_bytes"] / s_unique
                if kind == "direct" and t["get_bytes"] != n * s_unique:
                    problem("measurement: the upstream logged %d GET bytes "
                            "for %d direct clients, expected %d" % (
                                t["get_bytes"], n, n * s_unique))
                runs[kind][n]["wall"].append(wall)
                runs[kind][n]["amp"].append(amp)
                log("fan-in rep %d %-12s %3d clients %.2f s, upstream/"
                    "unique %.4f" % (rep + 1, kind, n, wall, amp))
    log("fan-in: %.0f s" % (time.monotonic() - t_phase))
    scale = {k: {str(n): {w: fig_entry(v) for w, v in e.items() if v}
                 for n, e in per.items()} for k, per in runs.items()}
    return {"scale": scale, "scale_refs": srefs,
            "scale_unique_bytes": s_unique, "scale_reps": SCALE_REPS}


def store_phase(servers, img, tag, pdig):
    """Manifest GETs/s and /metrics scrape time with a store of 100 and of
    BENCH_STORE_BLOBS blobs.  Each store is a ccprewarm of its own whose
    upstream is the bench's nginx, filled through ccprewarm's own pull
    path: one GET per tiny blob (a cold fill each: fetched, hashed,
    written, indexed).  Both stay up and are measured interleaved."""
    t_phase = time.monotonic()
    root = None
    if STORE_DIR:
        root = tempfile.mkdtemp(prefix="ccp-bench-store.", dir=STORE_DIR)
    try:
        return store_sizes(servers, img, tag, pdig, root, t_phase)
    finally:
        if root:
            shutil.rmtree(root, ignore_errors=True)


def store_sizes(servers, img, tag, pdig, root, t_phase):
    ngx = servers["nginx"]
    ngx.start()
    lst = make_filler(ngx.root, STORE_BLOBS, root)
    log("%d filler blobs under nginx in %.1f s" % (
        STORE_BLOBS, time.monotonic() - t_phase))
    paths = {"tag_rps": "/v2/%s/manifests/%s" % (img["repo"], tag),
             "digest_rps": "/v2/%s/manifests/%s" % (img["repo"], pdig)}
    sizes = sorted({min(STORE_SMALL, STORE_BLOBS), STORE_BLOBS})
    st = {}
    for size in sizes:
        c = Ccprewarm(ngx, kind="ccprewarm-store%d" % size, root=root)
        servers[c.kind] = c     # stopped with the others
        c.start()
        secs, reqs, bad = fill_store(c, lst, size)
        for path in paths.values():
            code, _, body = http_get(c.url + path, {"Accept": ACCEPT},
                                     timeout=60)
            if code != 200:
                problem("%s GET %s: %d %s" % (c.kind, path, code,
                                              body[:300]))
        nb = metric_value(c.url, "ccprewarm_store_blobs")
        if nb is None or nb < size:
            problem("%s: /metrics says %s blobs in the store after %d "
                    "fills" % (c.kind, nb, size))
        st[size] = {"srv": c, "fill_s": secs, "fill_requests": reqs,
                    "fill_bad": bad, "store_blobs": nb, "tag_rps": [],
                    "digest_rps": [], "scrape_ms": [], "scrape_cpu_ms": [],
                    "scrape_bytes": 0}
        log("store of %d: filled in %.1f s (%.0f fills/s), /metrics says "
            "%s blobs" % (size, secs, size / secs if secs else 0, nb))
    for rep in range(REPS):
        for size in sizes:
            e = st[size]
            c = e["srv"]
            for key, path in paths.items():
                w = wrk(c.url + path, 32, WRK_SECONDS, ["Accept: " + ACCEPT])
                if w["rps"] and not (w["non_2xx"] or w["errors"]):
                    e[key].append(w["rps"])
            ms, nbytes, cpu = scrape_ms(c.url, SCRAPES, c.daemon.pid)
            if ms is not None:
                e["scrape_ms"].append(ms)
            if cpu is not None:
                e["scrape_cpu_ms"].append(cpu)
            e["scrape_bytes"] = nbytes
            log("rep %d store of %6d: tag %s/s, digest %s/s, /metrics %s ms "
                "(%s ms CPU)" % (
                    rep + 1, size,
                    fmt(e["tag_rps"][-1] if e["tag_rps"] else None),
                    fmt(e["digest_rps"][-1] if e["digest_rps"] else None),
                    fmt(ms), fmt(cpu)))
    for size in sizes:
        st[size]["srv"].stop()
        del servers[st[size]["srv"].kind]
    log("store sizes: %.0f s" % (time.monotonic() - t_phase))
    return {str(size): {"fill_s": round(e["fill_s"], 2),
                        "fill_requests": e["fill_requests"],
                        "store_blobs": e["store_blobs"],
                        "tag_rps": fig_entry(e["tag_rps"]),
                        "digest_rps": fig_entry(e["digest_rps"]),
                        "scrape_ms": fig_entry(e["scrape_ms"]),
                        "scrape_cpu_ms": fig_entry(e["scrape_cpu_ms"]),
                        "scrape_bytes": e["scrape_bytes"]}
            for size, e in st.items()}


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def outside_figures(figs):
    """Figures 7 and 8 from the scripts run.sh ran before this one."""
    eng = read_json(os.path.join(TMP, "engine.json"))
    if eng:
        for k in ("direct", "ccprewarm", "distribution"):
            if k in eng:
                figs["engine_cold_s"][k] = fig_entry(eng[k]["cold_runs"])
                figs["engine_warm_s"][k] = fig_entry(eng[k]["warm_runs"])
    two = read_json(os.path.join(TMP, "two-nodes.json"))
    if two:
        figs["two_nodes_s"]["ccprewarm"] = fig_entry(
            two.get("node_b_runs") or [two["node_b_shared_store_s"]])
        figs["two_nodes_s"]["node_a"] = fig_entry(
            two.get("node_a_runs") or [two["node_a_upstream_s"]])
    return eng, two


# ------------------------------------------------------------------ main

def versions():
    v = {}

    def first(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    v["ccprewarm"] = first([CCP_BIN, "version"]).split()[-1]
    v["docker-registry"] = first(["docker-registry", "--version"]).split()[-1]
    v["nginx"] = first(["nginx", "-v"]).split("/")[-1]
    v["wrk"] = first(["wrk", "--version"]).split()[1]
    v["python"] = platform.python_version()
    return v


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.0f GB RAM" % (int(f.readline().split()[1]) / 1e6)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem": mem,
            "kernel": platform.release(), "loadavg_end": loadavg()}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def git_rev():
    try:
        return subprocess.run(["git", "-C", TOP, "describe", "--always",
                               "--dirty"], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def seed_upstream(up):
    seed_json = os.path.join(TMP, "seed.json")
    argv = [PY, os.path.join(TOP, "tests", "tools", "seed.py"),
            "--registry", up.url, "--out", seed_json,
            "--size-mb", str(SIZE_MB), "--large-layers", str(LARGE_LAYERS),
            "--cache", CACHE, "--seed", str(SEED)]
    t0 = time.monotonic()
    with open(os.path.join(OUT, "seed.log"), "ab") as lf:
        p = subprocess.run(argv, stdout=lf, stderr=lf)
    if p.returncode != 0:
        raise SystemExit("bench: seed.py failed, see %s"
                         % os.path.join(OUT, "seed.log"))
    log("seeded %s in %.1f s" % (up.url, time.monotonic() - t0))
    with open(seed_json) as f:
        return json.load(f)


def on_term(signum, frame):
    raise SystemExit("bench: signal %d, stopping" % signum)


def main():
    signal.signal(signal.SIGTERM, on_term)
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(os.path.join(TMP, "pids"), exist_ok=True)
    for name in ("upstream.log", "ccprewarm.log", "distribution.log",
                 "nginx.log", "seed.log"):
        open(os.path.join(OUT, name), "w").close()
    t_start = time.monotonic()
    load_start = loadavg()
    vers = versions()
    git = os.environ.get("BENCH_GIT") or git_rev()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    log("set %.0f MB, %d reps, %d clients for figure 3; logs in %s"
        % (SIZE_MB, REPS, CLIENTS, os.path.relpath(OUT, TOP)))

    up = Upstream()
    servers = {}
    try:
        up.start()
        seed = seed_upstream(up)
        refs = [img["ref"] for img in seed["images"]]
        blobdir = os.path.join(CACHE, "g1-s%d-b%d-l%d" % (
            SEED, int(SIZE_MB * (1 << 20)), LARGE_LAYERS), "blobs")
        if not os.path.isdir(blobdir):
            raise SystemExit("bench: generated blobs not at %s" % blobdir)
        ngx = Nginx()
        ngx.populate(seed, up.url, blobdir)
        servers = {"direct": up, "ccprewarm": Ccprewarm(up),
                   "distribution": Distribution(up), "nginx": ngx}

        # The set one client pulls (from a first pull of the upstream, which
        # also warms the upstream's page cache and checks the seed).
        wall, res = run_pulls(up, refs, 1, "probe")
        if not res[0].get("ok"):
            raise SystemExit("bench: pulling from the upstream itself "
                             "failed: %s" % res[0].get("error"))
        unique = res[0]["digests"]
        unique_bytes = sum(unique.values())
        blob_sizes = {d: b["size"] for d, b in seed["blobs"].items()}
        big = max((d for d in unique if d in blob_sizes),
                  key=lambda d: blob_sizes[d])
        big_repo = seed["blobs"][big]["repo"]
        log("one pull: %d objects, %.1f MB; largest blob %.1f MB"
            % (len(unique), unique_bytes / 1e6, blob_sizes[big] / 1e6))

        figs = {k: {} for k, _, _, _ in FIG_TITLES}
        runs = {k: {s: [] for s in SERVERS} for k, _, _, _ in FIG_TITLES}
        cold_traffic = {s: [] for s in SERVERS}
        fan_traffic = {s: [] for s in SERVERS}

        def check_unique(srv, r, what):
            if r.get("ok") and r["unique_bytes"] != unique_bytes:
                problem("%s %s: pulled %d unique bytes, the upstream gives "
                        "%d" % (srv, what, r["unique_bytes"], unique_bytes))

        def died(srv, what):
            """Did the server exit during a run (nobody here stopped it)?"""
            d = srv.daemon
            if d is None or d.proc.poll() is None:
                return False
            problem("%s exited during %s (status %s), not stopped by the "
                    "bench; the run is repeated.  Last log lines: %s" % (
                        srv.kind, what, d.proc.returncode,
                        " | ".join(tail(d.logpath, 4))))
            srv.daemon = None
            d._forget()
            return True

        def single(rep, kind):
            """Figures 1 and 2 for one server; False to do it again."""
            srv = servers[kind]
            srv.restart_cold()
            up.quiesce(idle=0.5)
            off = up.log_offset()
            wall, res = run_pulls(srv, refs, 1, "cold%d" % rep)
            if died(srv, "cold pull %d" % (rep + 1)):
                return False
            r = res[0]
            check_unique(kind, r, "cold pull")
            if r.get("ok"):
                runs["cold_pull_s"][kind].append(wall)
                if kind != "nginx":
                    up.quiesce()
                    t = up.traffic(off)
                    cold_traffic[kind].append(t)
                    runs["cold_amplification"][kind].append(
                        t["get_bytes"] / unique_bytes)
            # The upstream and nginx have no cache: warm is measured again
            # all the same, so that it has its own runs.
            wall2, res2 = run_pulls(srv, refs, 1, "warm%d" % rep)
            if died(srv, "warm pull %d" % (rep + 1)):
                return False
            check_unique(kind, res2[0], "warm pull")
            if res2[0].get("ok"):
                runs["warm_pull_s"][kind].append(wall2)
                xc = res2[0].get("x_cache", {})
                if kind == "ccprewarm" and set(xc) - {"HIT"}:
                    problem("ccprewarm warm pull: X-Cache %s (expected only "
                            "HIT)" % xc)
            log("rep %d %-12s cold %.2f s  warm %.2f s" % (
                rep + 1, kind, wall, wall2))
            return True

        def fanout(rep, kind):
            """Figures 3 and 6 for one server; False to do it again."""
            srv = servers[kind]
            srv.restart_cold()
            up.quiesce(idle=0.5)
            off = up.log_offset()
            with RssSampler([srv]) as rss:
                wall, res = run_pulls(srv, refs, CLIENTS, "fan%d" % rep)
            if died(srv, "figure 3 run %d" % (rep + 1)):
                return False
            for r in res:
                check_unique(kind, r, "figure 3 pull")
            if not all(r.get("ok") for r in res):
                log("rep %d %-12s %d clients: failed, not counted"
                    % (rep + 1, kind, CLIENTS))
                return True
            runs["fanout_wall_s"][kind].append(wall)
            runs["peak_rss_MB"][kind].append(rss.peak[kind] / 1024.0)
            runs["peak_anon_MB"][kind].append(rss.peak_anon[kind] / 1024.0)
            amp = ""
            if kind != "nginx":
                up.quiesce()
                t = up.traffic(off)
                fan_traffic[kind].append(t)
                runs["fanout_amplification"][kind].append(
                    t["get_bytes"] / unique_bytes)
                amp = ", upstream/unique %.4f" % (t["get_bytes"]
                                                  / unique_bytes)
                if kind == "direct" and t["get_bytes"] != \
                        CLIENTS * unique_bytes:
                    problem("measurement: the upstream logged %d GET bytes "
                            "for %d direct clients, expected %d" % (
                                t["get_bytes"], CLIENTS,
                                CLIENTS * unique_bytes))
            log("rep %d %-12s %d clients %.2f s, peak RSS %.1f MB%s" % (
                rep + 1, kind, CLIENTS, wall, rss.peak[kind] / 1024.0, amp))
            return True

        # Servers interleaved within each rep so that noise spreads over
        # all of them.
        t_phase = time.monotonic()
        for fn in (single, fanout) if MAIN else ():
            for rep in range(REPS):
                for kind in ("direct", "nginx", "ccprewarm", "distribution"):
                    if not fn(rep, kind):
                        fn(rep, kind)
            log("%s: %.0f s" % (fn.__name__, time.monotonic() - t_phase))
            t_phase = time.monotonic()

        # Figures 4 and 5 on the warm servers (the last figure 3 filled
        # them).  A tag is read once first, so that the run starts warm.
        big_img = [i for i in seed["images"] if i["repo"] == "library/alpine"]
        img = big_img[0] if big_img else seed["images"][0]
        tag = img["tags"][0]
        pdig = [p["digest"] for p in img["platforms"]
                if p["platform"]["architecture"] == "amd64"][0]
        wrk_targets = [
            ("tag_manifest_rps", "/v2/%s/manifests/%s" % (img["repo"], tag),
             32, ["Accept: " + ACCEPT], "rps"),
            ("digest_manifest_rps", "/v2/%s/manifests/%s"
             % (img["repo"], pdig), 32, ["Accept: " + ACCEPT], "rps"),
            ("large_blob_MBps", "/v2/%s/blobs/%s" % (big_repo, big), 4, [],
             "bytes_per_s"),
        ]
        wrk_raw = {}
        for rep in range(REPS if MAIN else 0):
            for key, path, conns, hdrs, field in wrk_targets:
                for kind in ("nginx", "ccprewarm", "distribution", "direct"):
                    if kind == "direct" and key != "large_blob_MBps":
                        continue
                    srv = servers[kind]
                    if died(srv, "figures 4-5") or srv.daemon is None:
                        srv.start()
                        run_pulls(srv, refs, 1, "rewarm")
                    st, _, body = http_get(srv.url + path,
                                           {"Accept": ACCEPT}, timeout=600)
                    if st != 200:
                        problem("%s GET %s before wrk: %d %s" % (
                            kind, path, st, body[:300]))
                        continue
                    w = wrk(srv.url + path, conns, WRK_SECONDS, hdrs)
                    if died(srv, "wrk %s" % key):
                        continue
                    wrk_raw.setdefault("%s %s" % (key, kind), []).append(
                        w["raw"])
                    v = w[field]
                    if v is not None and field == "bytes_per_s":
                        v = v / 1e6
                    if not (w["non_2xx"] or w["errors"]):
                        runs[key][kind].append(v)
                    log("rep %d %-20s %-12s %s" % (rep + 1, key, kind,
                                                   fmt(v)))

        for key in runs:
            for kind in SERVERS:
                if runs[key][kind]:
                    figs[key][kind] = fig_entry(runs[key][kind])

        growth = {}
        if SCALE and SCALE_CLIENTS:
            growth.update(scale_phase(servers, up, seed, died))
        if STORE_BLOBS > 0:
            growth["store"] = store_phase(servers, img, tag, pdig)
    finally:
        for s in list(servers.values())[::-1]:
            if s is not up:
                s.stop()
        up.stop()

    def med_traffic(ts):
        if not ts:
            return None
        ts = sorted(ts, key=lambda t: t["get_bytes"])
        return ts[len(ts) // 2]

    rep = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git": git,
        "machine": dict(machine(), loadavg_start=load_start),
        "versions": vers,
        "config": {"size_mb": SIZE_MB, "reps": REPS, "clients": CLIENTS,
                   "wrk_seconds": WRK_SECONDS, "large_layers": LARGE_LAYERS,
                   "seed": SEED, "layer_downloads_per_client": 3,
                   "wrk_manifest_connections": 32,
                   "wrk_blob_connections": 4,
                   "manifest_image": img["repo"] + ":" + tag,
                   "scale_clients": SCALE_CLIENTS if SCALE else [],
                   "scale_mb": SCALE_MB, "scale_reps": SCALE_REPS,
                   "store_blobs": STORE_BLOBS, "scrapes": SCRAPES},
        "set": {"refs": refs, "unique_bytes": unique_bytes,
                "unique_objects": len(unique),
                "largest_blob": big, "largest_blob_bytes": blob_sizes[big],
                "seed_total_blob_bytes": seed["total_blob_bytes"]},
        "figures": figs,
        "units": {k: u for k, _, u, _ in FIG_TITLES},
        "cold_traffic": {k: med_traffic(v) for k, v in cold_traffic.items()
                         if v},
        "fanout_traffic": {k: med_traffic(v) for k, v in fan_traffic.items()
                           if v},
        "wrk_output": wrk_raw,
        "growth": growth,
        "problems": PROBLEMS,
        "runtime_s": round(time.monotonic() - t_start, 1),
    }
    eng, two = outside_figures(figs)
    rep["engine"] = eng
    rep["two_nodes"] = two
    if growth.get("scale") and SVG:
        svg = os.path.join(PERF, stamp + "-scale.svg") if WRITE_REPORT \
            else os.path.join(OUT, "scale.svg")
        if write_svg(svg, growth["scale"], growth["scale_unique_bytes"]):
            growth["svg"] = os.path.basename(svg)
            log("wrote %s" % os.path.relpath(svg, TOP))
    prev_path, prev = previous_report(set())
    rep["previous"] = os.path.basename(prev_path) if prev_path else None
    rep["ratios"] = {"%s:%s/%s" % (f, a, b): ratio(figs, f, a, b)
                     for f, a, b in RATIOS}
    rep["targets"] = targets_eval(figs)

    print()
    print("ccprewarm bench: %.0f MB set (%.1f MB per pull, largest blob "
          "%.1f MB), medians of %d, %s" % (
              SIZE_MB, unique_bytes / 1e6, blob_sizes[big] / 1e6, REPS,
              rep["git"]))
    print("shared, noisy %d-core VM (load average %s at the start, %s at "
          "the end): read medians and ratios, not absolutes" % (
              os.cpu_count(), load_start, rep["machine"]["loadavg_end"]))
    print()
    print("\n".join(table_lines(rep)))
    print()
    print("targets (from the issue):")
    print("\n".join(target_lines(rep)))
    print()
    print("ratios:")
    print("\n".join(ratio_lines(rep)))
    if growth:
        print()
        print("how cost grows:")
        print("\n".join(growth_lines(rep)))
        if growth.get("svg"):
            print("  drawn: %s" % growth["svg"])
    changes, rep["warnings"] = change_lines(rep, prev, prev_path)
    if changes:
        print()
        print("\n".join(changes))
    if WRITE_REPORT:
        jpath, mpath = write_reports(rep, stamp, prev_path, prev)
        print()
        print("report: %s, %s, docs/perf/latest.json" % (
            os.path.relpath(mpath, TOP), os.path.relpath(jpath, TOP)))
    print()
    if PROBLEMS:
        print("problems seen (%d):" % len(PROBLEMS))
        for p in PROBLEMS:
            print("  - " + p)
    else:
        print("problems seen: none")
    print("runtime %.0f s" % rep["runtime_s"])
    if rep["warnings"]:
        print()
        print("%d figure(s) more than %.0f%% worse than %s:" % (
            len(rep["warnings"]), WORSE_PCT, rep["previous"]))
        for w in rep["warnings"]:
            print(w)


if __name__ == "__main__":
    main()
