#!/usr/bin/env python3
"""pull.py: an engine-like pull client for the benchmark.

For each image reference, as dockerd does: GET the tag manifest (Accept:
index, list, OCI and Docker manifests); if it is an index/list, pick the
linux/amd64 entry and GET that manifest by digest; then GET the config and
every layer, three downloads at once.  Everything is verified: each body's
SHA-256 must equal its digest (the tag manifest's against
Docker-Content-Digest when the server sends one) and its length the size
the manifest declares.  A blob this client already has (shared layers) is
not fetched again, as an engine skips layers it has.

    pull.py --url http://127.0.0.1:5000 --ref library/alpine:3.19 ... \
        [--wait-go] [--out result.json]

With --wait-go it connects nothing until a line arrives on stdin (so that
several clients can be started first and released at once).  Writes one
JSON object: wall seconds, bytes and requests, unique bytes (every distinct
digest fetched), X-Cache counts, and on failure "error" with the request
and response that failed.  Exit 0 on success, 1 on any failure.  Python
standard library only.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import sys
import threading
import time
import urllib.parse

ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
])
INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json",
               "application/vnd.oci.image.index.v1+json")
LAYER_JOBS = 3
BUF = 1 << 20


class PullError(Exception):
    def __init__(self, what, **detail):
        super().__init__(what)
        self.detail = dict(what=what, **detail)


class Client:
    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url.rstrip("/"))
        self.netloc = u.netloc
        self.timeout = timeout
        self.local = threading.local()
        self.lock = threading.Lock()
        self.bytes = 0
        self.requests = 0
        self.cache = {}

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.netloc, timeout=self.timeout)
            self.local.conn = c
        return c

    def _drop(self):
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
        self.local.conn = None

    def get(self, path, digest=None, size=None, accept=None, keep=False):
        """GET path; verify digest/size; return (headers, body or None)."""
        headers = {"User-Agent": "ccprewarm-bench-pull/1"}
        if accept:
            headers["Accept"] = accept
        c = self._conn()
        try:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self._drop()
            raise PullError("request failed", path=path, error=repr(e))
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if r.status != 200:
            body = r.read(2048)
            self._drop()
            raise PullError("unexpected status", path=path, status=r.status,
                            headers=hdrs,
                            body=body.decode("utf-8", "replace"))
        h = hashlib.sha256()
        n = 0
        parts = [] if keep else None
        buf = bytearray(BUF)
        mv = memoryview(buf)
        try:
            while True:
                k = r.readinto(mv)
                if not k:
                    break
                h.update(mv[:k])
                if keep:
                    parts.append(bytes(mv[:k]))
                n += k
        except (OSError, http.client.HTTPException) as e:
            self._drop()
            raise PullError("body read failed", path=path, got=n,
                            headers=hdrs, error=repr(e))
        cl = hdrs.get("content-length")
        if cl is not None and int(cl) != n:
            self._drop()
            raise PullError("short body", path=path, got=n, headers=hdrs)
        got = "sha256:" + h.hexdigest()
        want = digest or hdrs.get("docker-content-digest")
        if want and got != want:
            raise PullError("digest mismatch", path=path, want=want, got=got,
                            bytes=n, headers=hdrs)
        if size is not None and n != size:
            raise PullError("size mismatch", path=path, want=size, got=n,
                            headers=hdrs)
        xc = hdrs.get("x-cache")
        with self.lock:
            self.bytes += n
            self.requests += 1
            if xc:
                self.cache[xc] = self.cache.get(xc, 0) + 1
        return hdrs, (b"".join(parts) if keep else None), got, n


def pull(cl, refs, unique):
    """Pull every ref; unique: digest -> size of everything fetched."""
    have = set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=LAYER_JOBS) as ex:
        for ref in refs:
            repo, tag = ref.rsplit(":", 1)
            hdrs, body, dg, n = cl.get("/v2/%s/manifests/%s" % (repo, tag),
                                       accept=ACCEPT, keep=True)
            unique[dg] = n
            man = json.loads(body)
            mt = man.get("mediaType") or hdrs.get("content-type", "")
            if mt in INDEX_TYPES or "manifests" in man:
                pick = [m for m in man["manifests"]
                        if m.get("platform", {}).get("os") == "linux"
                        and m["platform"].get("architecture") == "amd64"]
                if not pick:
                    raise PullError("no linux/amd64 manifest", ref=ref)
                d = pick[0]["digest"]
                hdrs, body, dg, n = cl.get(
                    "/v2/%s/manifests/%s" % (repo, d), digest=d,
                    size=pick[0].get("size"), accept=ACCEPT, keep=True)
                unique[dg] = n
                man = json.loads(body)
            want = [man["config"]] + man["layers"]
            todo = []
            for b in want:
                if b["digest"] in have:
                    continue
                have.add(b["digest"])
                todo.append(b)
            futs = [ex.submit(cl.get, "/v2/%s/blobs/%s" % (repo, b["digest"]),
                              b["digest"], b["size"]) for b in todo]
            for f in futs:
                _, _, dg, n = f.result()
                unique[dg] = n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--ref", action="append", required=True)
    ap.add_argument("--wait-go", action="store_true")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out")
    a = ap.parse_args()
    cl = Client(a.url, a.timeout)
    if a.wait_go:
        sys.stdin.readline()
    unique = {}
    res = {"url": a.url}
    t0 = time.monotonic()
    try:
        pull(cl, a.ref, unique)
        ok = True
    except PullError as e:
        res["error"] = e.detail
        ok = False
    except Exception as e:  # a bug here, or the server said nonsense
        res["error"] = {"what": "client exception", "error": repr(e)}
        ok = False
    res.update(wall=time.monotonic() - t0, bytes=cl.bytes,
               requests=cl.requests, unique_bytes=sum(unique.values()),
               unique_objects=len(unique), x_cache=cl.cache, ok=ok,
               digests=unique)
    out = json.dumps(res)
    if a.out:
        with open(a.out, "w") as f:
            f.write(out)
    else:
        print(out)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
