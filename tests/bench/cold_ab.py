#!/usr/bin/env python3
"""cold_ab.py: A/B of the cold pull, one client, for per-byte work.

Seeds one docker-registry (tests/tools/seed.py), then for REPS rounds pulls
the whole set cold (tests/bench/pull.py) directly and through each given
ccprewarm binary in turn (A B ... A B ..., interleaved so that load on the
box hits every variant alike), each time with an empty store.  Prints per
round and the medians: wall seconds and the daemon's CPU seconds (user +
system, from /proc, which load does not inflate as it does wall time).

    cold_ab.py [--size-mb 300] [--large-layers 2] [--reps 5] \
        [--data-root DIR] [--perf-record OUT.data] BIN_A [BIN_B ...]

--perf-record: the first variant's first pull runs under
`perf record -g -e cpu-clock` into that file.  Daemons run in their own
sessions and are stopped by PID.  Python standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "bench"))
os.environ.setdefault("BENCH_TMP", tempfile.gettempdir())  # bench.py wants it
from bench import registry_config, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def wait_http(url, limit=30.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit("cold_ab: no answer from %s" % url)


def spawn(argv, log):
    with open(log, "ab") as lf:
        return subprocess.Popen(argv, stdout=lf, stderr=lf,
                                start_new_session=True)


def stop(p):
    """SIGTERM to the daemon's own process group (a perf or strace
    wrapper and the daemon under it), SIGKILL after 20 s."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    try:
        os.killpg(p.pid, signal.SIGTERM)  # a daemon its wrapper left
    except ProcessLookupError:
        pass


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pull(url, refs):
    argv = [sys.executable, os.path.join(TOP, "tests", "bench", "pull.py"),
            "--url", url]
    for r in refs:
        argv += ["--ref", r]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("cold_ab: pull failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout)["wall"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=300)
    ap.add_argument("--large-layers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--data-root")
    ap.add_argument("--perf-record")
    ap.add_argument("--strace", help="first pull of the first variant "
                    "under strace -f -tt -T into this file")
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ccp-coldab.")
    data_root = a.data_root or tmp
    procs = []
    try:
        port = free_port()
        up = "http://127.0.0.1:%d" % port
        cfg = os.path.join(tmp, "up.yml")
        registry_config(cfg, port, os.path.join(tmp, "up"))
        procs.append(spawn(["docker-registry", "serve", cfg],
                           os.path.join(tmp, "up.log")))
        wait_http(up + "/v2/")
        seed = os.path.join(tmp, "seed.json")
        subprocess.run([sys.executable,
                        os.path.join(TOP, "tests", "tools", "seed.py"),
                        "--registry", up, "--out", seed,
                        "--size-mb", str(a.size_mb),
                        "--large-layers", str(a.large_layers),
                        "--cache", os.path.join(TOP, "build", "bench-cache"),
                        "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        with open(seed) as f:
            refs = [i["ref"] for i in json.load(f)["images"]]
        pull(up, refs)  # upstream's own files into the page cache
        res = {"direct": {"wall": [], "cpu": []}}
        for b in a.bins:
            res[b] = {"wall": [], "cpu": []}
        for rep in range(a.reps):
            res["direct"]["wall"].append(pull(up, refs))
            for i, b in enumerate(a.bins):
                data = os.path.join(data_root, "ccp-data-%d" % i)
                shutil.rmtree(data, ignore_errors=True)
                os.makedirs(data)
                port = free_port()
                url = "http://127.0.0.1:%d" % port
                argv = [b, "serve", "--listen", "127.0.0.1:%d" % port,
                        "--data", data, "--upstream", up,
                        "--access-log",
                        os.environ.get("COLD_AB_ACCESS_LOG", "")]
                rec = (a.perf_record or a.strace) and rep == 0 and i == 0
                if rec and a.perf_record:
                    argv = ["perf", "record", "-e", "cpu-clock"] + os.environ.get("COLD_AB_PERF_G", "-g").split() + [
                            "-o", a.perf_record, "--"] + argv
                elif rec:
                    argv = ["strace", "-f", "-tt", "-T", "-o", a.strace,
                            "--"] + argv
                p = spawn(argv, os.path.join(tmp, "ccp-%d.log" % i))
                procs.append(p)
                wait_http(url + "/v2/")
                pid = p.pid
                if rec:
                    pid = int(subprocess.run(
                        ["pgrep", "-P", str(p.pid)], capture_output=True,
                        text=True).stdout.split()[0])
                c0 = cpu_s(pid)
                w = pull(url, refs)
                time.sleep(0.5)  # the last persist
                c1 = cpu_s(pid)
                stop(p)
                res[b]["wall"].append(w)
                res[b]["cpu"].append(c1 - c0)
                shutil.rmtree(data, ignore_errors=True)
            print("rep %d: %s" % (rep, "  ".join(
                "%s %.2f/%s" % (os.path.basename(k), v["wall"][-1],
                    "%.2f" % v["cpu"][-1] if v["cpu"] else "-")
                for k, v in res.items())), flush=True)
        print("load %s" % open("/proc/loadavg").read().strip())
        d = statistics.median(res["direct"]["wall"])
        print("direct wall median %.2f" % d)
        for b in a.bins:
            w = statistics.median(res[b]["wall"])
            print("%s: wall median %.2f (%.2fx direct), cpu median %.2f s"
                  % (b, w, w / d, statistics.median(res[b]["cpu"])))
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
