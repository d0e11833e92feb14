#!/usr/bin/env python3
"""hits.py: manifest hit throughput, A/B, interleaved (issue 13's access log
and manifest cache experiments; docs/perf/experiments.md).

Usage: BENCH_TMP=DIR hits.py NAME=BINARY[,ARG...] ... [--rounds N]
       [--seconds S] [--nginx] [--callgrind N]
Each NAME is a ccprewarm binary with its extra serve arguments (e.g.
"new-nolog=build/ccprewarm,--access-log,"); stderr (the default access log)
goes to a regular file.  One upstream (docker-registry, seeded with
tests/tools/seed.py), one image manifest; every server gets wrk (2 threads,
32 connections) for the tag and then the digest, in rounds rotating the
order; prints medians, ratios to nginx (2 workers) and the server's CPU
time per request (perf stat -e task-clock on its pid, software counter).
With --callgrind N instead: N keep-alive GETs (one curl) of the tag, then
of the digest, are counted: system calls per request (strace -c on the
native process), then instructions per request under valgrind's callgrind
(user space only, load-independent); HITS_COUNT=strace or =cg for one.
"""

import json
import os
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import bench  # noqa: E402


def perf_wrk(pid, url, seconds, headers):
    """wrk against url while perf counts pid's task-clock: (rps, cpu us/req)."""
    out = os.path.join(bench.TMP, "perf.txt")
    perf = None
    if pid is not None:
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "task-clock",
                                 "-p", str(pid), "-o", out],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.2)
    res = bench.wrk(url, 32, seconds, headers)
    cpu = None
    if perf is not None:
        perf.send_signal(2)
        perf.wait(10)
        try:
            with open(out) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[2] == "task-clock":
                        ms = float(parts[0])
                        n = res.get("requests") or 0
                        if n:
                            cpu = ms * 1000.0 / n
        except (OSError, ValueError):
            pass
    return res["rps"], cpu


def count(name, binary, extra, up_url, paths, n, mode):
    """mode "cg": instructions (Ir) per request under callgrind; "strace":
    system calls per request of the native process."""
    data = os.path.join(bench.TMP, "%s-data-%s" % (mode, name))
    os.makedirs(data, exist_ok=True)
    port = bench.free_port()
    url = "http://127.0.0.1:%d" % port
    out = os.path.join(bench.TMP, "%s-%s.out" % (mode, name))
    wrap = []
    if mode == "cg":
        wrap = ["valgrind", "--tool=callgrind",
                "--callgrind-out-file=" + out + ".%p"]
    d = bench.Daemon(name, wrap + [binary, "serve", "--listen",
                                   "127.0.0.1:%d" % port, "--data", data,
                                   "--upstream", up_url] + extra,
                     os.path.join(bench.OUT, "%s-%s.log" % (mode, name)),
                     url + "/v2/").start()
    res = {}
    for fig, p in paths:
        for _ in range(3):
            bench.http_get(url + p, {"Accept": bench.ACCEPT})
        cfg = os.path.join(bench.TMP, "curl.cfg")
        with open(cfg, "w") as f:
            for _ in range(n):
                f.write('url = "%s%s"\noutput = "/dev/null"\n' % (url, p))
        st = None
        if mode == "cg":
            subprocess.run(["callgrind_control", "-z", str(d.pid)],
                           stdout=subprocess.DEVNULL, check=True)
        else:
            st = subprocess.Popen(["strace", "-c", "-f", "-o",
                                   out + ".strace", "-p", str(d.pid)],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        subprocess.run(["curl", "-s", "-K", cfg, "-H",
                        "Accept: " + bench.ACCEPT], check=True)
        if mode == "cg":
            subprocess.run(["callgrind_control", "-d", str(d.pid)],
                           stdout=subprocess.DEVNULL, check=True)
            time.sleep(0.5)
            dumps = sorted(f for f in os.listdir(bench.TMP)
                           if f.startswith("%s-%s.out.%d." % (
                               mode, name, d.pid)))
            ir = None
            with open(os.path.join(bench.TMP, dumps[-1])) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        ir = int(line.split()[1])
            res[fig] = ir / n
            print("%-12s %-6s %8.0f Ir/req" % (name, fig, ir / n),
                  flush=True)
        else:
            time.sleep(1.5)  # the last lines: the log's flush timer
            st.send_signal(2)
            st.wait(30)
            calls, top = 0, []
            with open(out + ".strace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[0][0].isdigit() and \
                            parts[-1] != "total":
                        c = int(parts[3])
                        calls += c
                        top.append((c, parts[-1]))
            top.sort(reverse=True)
            res[fig] = calls / n
            print("%-12s %-6s %6.2f syscalls/req (%s)" % (
                name, fig, calls / n,
                " ".join("%s %.2f" % (s_, c / n) for c, s_ in top[:8])),
                flush=True)
    d.stop(60)
    return res


def main():
    args = sys.argv[1:]
    rounds, seconds, with_nginx, cg_n = 3, 5, False, 0
    variants = []
    while args:
        a = args.pop(0)
        if a == "--rounds":
            rounds = int(args.pop(0))
        elif a == "--seconds":
            seconds = int(args.pop(0))
        elif a == "--nginx":
            with_nginx = True
        elif a == "--callgrind":
            cg_n = int(args.pop(0))
        else:
            name, spec = a.split("=", 1)
            parts = spec.split(",")
            variants.append((name, parts[0], parts[1:]))
    os.makedirs(bench.OUT, exist_ok=True)
    os.makedirs(os.path.join(bench.TMP, "pids"), exist_ok=True)
    up = bench.Upstream()
    up.start()
    seed_out = os.path.join(bench.TMP, "seed.json")
    subprocess.run([bench.PY, os.path.join(bench.TOP, "tests", "tools",
                                           "seed.py"),
                    "--registry", up.url, "--cache",
                    os.path.join(bench.CACHE, "hits"), "--size-mb", "2",
                    "--out", seed_out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(seed_out) as f:
        seed = json.load(f)
    img = [i for i in seed["images"] if i["kind"] != "index"][0]
    tag_path = "/v2/%s/manifests/%s" % (img["repo"], img["tags"][0])
    dig_path = "/v2/%s/manifests/%s" % (img["repo"], img["digest"])
    hdrs = ["Accept: " + bench.ACCEPT]
    if cg_n:
        for mode in os.environ.get("HITS_COUNT", "strace,cg").split(","):
            for name, binary, extra in variants:
                count(name, binary, extra, up.url,
                      (("tag", tag_path), ("digest", dig_path)), cg_n,
                      mode)
        up.stop()
        return
    servers = {}
    for name, binary, extra in variants:
        data = os.path.join(bench.TMP, "data-" + name)
        os.makedirs(data, exist_ok=True)
        port = bench.free_port()
        url = "http://127.0.0.1:%d" % port
        d = bench.Daemon(name, [binary, "serve", "--listen",
                                "127.0.0.1:%d" % port, "--data", data,
                                "--upstream", up.url] + extra,
                         os.path.join(bench.OUT, name + ".log"),
                         url + "/v2/").start()
        for p in (tag_path, dig_path, tag_path):
            bench.http_get(url + p, {"Accept": bench.ACCEPT})
        servers[name] = (url, d)
    if with_nginx:
        ng = bench.Nginx()
        # only the manifests (bench.Nginx.populate links blobs too)
        mdir = os.path.join(ng.root, "v2", img["repo"], "manifests")
        os.makedirs(mdir, exist_ok=True)
        os.makedirs(os.path.join(ng.dir, "tmp"), exist_ok=True)
        for ref in (img["tags"][0], img["digest"]):
            st, h, body = bench.http_get(up.url + "/v2/%s/manifests/%s" % (
                img["repo"], ref), {"Accept": bench.ACCEPT})
            ext = bench.MANIFEST_EXT[h["content-type"].split(";")[0]]
            with open(os.path.join(mdir, "%s.%s" % (ref, ext)), "wb") as f:
                f.write(body)
        ng.start()
        servers["nginx"] = (ng.url, None)
    names = list(servers)
    res = {n: {"tag": [], "digest": [], "tag_cpu": [], "digest_cpu": []}
           for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            url, d = servers[n]
            pid = d.pid if d is not None else None
            for fig, p in (("tag", tag_path), ("digest", dig_path)):
                rps, cpu = perf_wrk(pid, url + p, seconds, hdrs)
                res[n][fig].append(rps)
                if cpu is not None:
                    res[n][fig + "_cpu"].append(cpu)
                print("round %d %-14s %-6s %8.0f/s cpu %s us/req load %s"
                      % (r + 1, n, fig, rps or 0,
                         "%.1f" % cpu if cpu else "-",
                         open("/proc/loadavg").read().split()[0]),
                      flush=True)
    ng_tag = bench.median(res["nginx"]["tag"]) if "nginx" in res else None
    ng_dig = bench.median(res["nginx"]["digest"]) if "nginx" in res else None
    print("\n| server | tag GETs/s | vs nginx | CPU us/req | digest GETs/s "
          "| vs nginx | CPU us/req |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        t = bench.median(res[n]["tag"])
        dg = bench.median(res[n]["digest"])
        tc = bench.median(res[n]["tag_cpu"]) if res[n]["tag_cpu"] else None
        dc = (bench.median(res[n]["digest_cpu"]) if res[n]["digest_cpu"]
              else None)
        print("| %s | %.0f | %s | %s | %.0f | %s | %s |" % (
            n, t, "%.2fx" % (t / ng_tag) if ng_tag else "-",
            "%.1f" % tc if tc else "-", dg,
            "%.2fx" % (dg / ng_dig) if ng_dig else "-",
            "%.1f" % dc if dc else "-"))
    for n, (url, d) in servers.items():
        if d is not None:
            d.stop()
    if with_nginx:
        ng.stop()
    up.stop()


if __name__ == "__main__":
    try:
        main()
    finally:  # whatever happened: stop every daemon this started
        pids = os.path.join(bench.TMP, "pids")
        for p in os.listdir(pids) if os.path.isdir(pids) else []:
            try:
                os.killpg(int(p), 15)
            except (ProcessLookupError, ValueError):
                pass
