#!/usr/bin/env python3
"""check.py: compare what a client or a mirror got with what seed.py pushed.

  check.py dir --seed seed.json --dir D --ref REPO:TAG [--all]
      A `skopeo copy ... dir:D` result: manifest.json is the seeded manifest
      (the image's own, or with a list and no --all the linux/amd64 one),
      every file named by a hex digest hashes to its name, and every blob
      the image needs is there with the seeded size.  Silent and exit 0 when
      right; one line saying what is wrong and exit 1 otherwise.

  check.py http --seed seed.json --mirror URL --upstream URL [--prefix P]
      For every seeded image, through the mirror and straight from the
      upstream: manifests by tag and by digest (GET and HEAD: status,
      Docker-Content-Digest, Content-Type equal to the upstream's,
      Content-Length, body hash) and every blob (HEAD size and digest, GET
      body hash).  Prints PASS:/FAIL: lines, one per image and aspect.

Python standard library only.
"""

import argparse
import hashlib
import http.client
import json
import os
import sys
import urllib.parse

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def find_image(seed, ref):
    repo, _, tag = ref.rpartition(":")
    for img in seed["images"]:
        if img["repo"] == repo and tag in img["tags"]:
            return img
    raise SystemExit("no seeded image %s" % ref)


def cmd_dir(a):
    seed = json.load(open(a.seed))
    img = find_image(seed, a.ref)
    d = a.dir
    problems = []
    if not os.path.exists(os.path.join(d, "manifest.json")):
        print("no manifest.json in the copy")
        return 1
    got = sha256_file(os.path.join(d, "manifest.json"))
    if img["kind"] == "index" and not a.all:
        amd = [p for p in img["platforms"]
               if p["platform"]["architecture"] == "amd64"]
        want_top = amd[0]["digest"]
        plats = amd
    else:
        want_top = img["digest"]
        plats = img["platforms"]
    if got != want_top:
        problems.append("manifest.json is %s, seeded %s" % (got, want_top))
    if img["kind"] == "index" and a.all:
        for p in plats:
            f = os.path.join(d, p["digest"][7:] + ".manifest.json")
            if not os.path.exists(f):
                problems.append("platform manifest %s missing" % p["digest"])
            elif sha256_file(f) != p["digest"]:
                problems.append("platform manifest %s has digest %s"
                                % (p["digest"], sha256_file(f)))
    # Every digest-named file is what its name says.
    for name in sorted(os.listdir(d)):
        base = name[:-len(".manifest.json")] if name.endswith(
            ".manifest.json") else name
        if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
            h = sha256_file(os.path.join(d, name))
            if h != "sha256:" + base:
                problems.append("%s hashes to %s" % (name, h))
    need = {}
    for p in plats:
        need[p["config"]["digest"]] = p["config"]["size"]
        for layer in p["layers"]:
            need[layer["digest"]] = layer["size"]
    for dg, size in sorted(need.items()):
        f = os.path.join(d, dg[7:])
        if not os.path.exists(f):
            problems.append("blob %s missing" % dg)
        elif os.path.getsize(f) != size:
            problems.append("blob %s is %d bytes, seeded %d"
                            % (dg, os.path.getsize(f), size))
    if problems:
        print("; ".join(problems[:4]) +
              ("; and %d more" % (len(problems) - 4)
               if len(problems) > 4 else ""))
        return 1
    return 0


class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url.rstrip("/"))
        self.netloc = u.netloc
        self.conn = None

    def do(self, method, path, headers=None):
        """Returns (status, headers dict lower-cased, body bytes) or raises."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.netloc,
                                                       timeout=60)
            try:
                self.conn.request(method, path, headers=headers or {})
                r = self.conn.getresponse()
                body = r.read()
                h = {k.lower(): v for k, v in r.getheaders()}
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, h, body
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


def cmd_http(a):
    seed = json.load(open(a.seed))
    mir = Client(a.mirror)
    up = Client(a.upstream)
    pre = a.prefix
    failed = 0

    def report(name, problems):
        nonlocal failed
        if problems:
            failed += 1
            print("FAIL: %s/%s (%s)" % (pre, name, "; ".join(problems[:3])))
        else:
            print("PASS: %s/%s" % (pre, name))
        sys.stdout.flush()

    def compare_manifest(repo, ref, digest, size, problems):
        path = "/v2/%s/manifests/%s" % (repo, ref)
        hd = {"Accept": ACCEPT}
        try:
            us, uh, ub = up.do("GET", path, hd)
            ms, mh, mb = mir.do("GET", path, hd)
            hs, hh, hb = mir.do("HEAD", path, hd)
        except (OSError, http.client.HTTPException) as e:
            problems.append("%s: %s" % (path, e))
            return
        if us != 200:
            problems.append("upstream GET %s: %d" % (path, us))
            return
        if ms != 200:
            problems.append("GET %s: %d %s" % (path, ms, mb[:200]))
            return
        got = "sha256:" + hashlib.sha256(mb).hexdigest()
        if got != digest:
            problems.append("GET %s body digest %s, seeded %s"
                            % (path, got, digest))
        if mh.get("docker-content-digest") != digest:
            problems.append("GET %s Docker-Content-Digest %r, want %s"
                            % (path, mh.get("docker-content-digest"), digest))
        if mh.get("content-type") != uh.get("content-type"):
            problems.append("GET %s Content-Type %r, upstream %r"
                            % (path, mh.get("content-type"),
                               uh.get("content-type")))
        if hs != 200:
            problems.append("HEAD %s: %d" % (path, hs))
        else:
            if hh.get("content-length") != str(size):
                problems.append("HEAD %s Content-Length %r, want %d"
                                % (path, hh.get("content-length"), size))
            if hh.get("docker-content-digest") != digest:
                problems.append("HEAD %s Docker-Content-Digest %r"
                                % (path, hh.get("docker-content-digest")))
            if hh.get("content-type") != uh.get("content-type"):
                problems.append("HEAD %s Content-Type %r, upstream %r"
                                % (path, hh.get("content-type"),
                                   uh.get("content-type")))
            if hb:
                problems.append("HEAD %s sent a body" % path)

    def compare_blob(repo, digest, size, problems):
        path = "/v2/%s/blobs/%s" % (repo, digest)
        try:
            hs, hh, hb = mir.do("HEAD", path)
            gs, gh, gb = mir.do("GET", path)
        except (OSError, http.client.HTTPException) as e:
            problems.append("%s: %s" % (path, e))
            return
        if hs != 200:
            problems.append("HEAD %s: %d" % (path, hs))
        else:
            if hh.get("content-length") != str(size):
                problems.append("HEAD %s Content-Length %r, want %d"
                                % (path, hh.get("content-length"), size))
            if hh.get("docker-content-digest") != digest:
                problems.append("HEAD %s Docker-Content-Digest %r"
                                % (path, hh.get("docker-content-digest")))
        if gs != 200:
            problems.append("GET %s: %d %s" % (path, gs, gb[:200]))
        else:
            got = "sha256:" + hashlib.sha256(gb).hexdigest()
            if got != digest or len(gb) != size:
                problems.append("GET %s body %s (%d bytes), want %s (%d)"
                                % (path, got, len(gb), digest, size))
            if gh.get("docker-content-digest") not in (None, digest):
                problems.append("GET %s Docker-Content-Digest %r"
                                % (path, gh.get("docker-content-digest")))

    for img in seed["images"]:
        repo = img["repo"]
        problems = []
        for tag in img["tags"]:
            compare_manifest(repo, tag, img["digest"], img["size"], problems)
        report("manifest-by-tag/%s" % img["ref"], problems)
        problems = []
        compare_manifest(repo, img["digest"], img["digest"], img["size"],
                         problems)
        if img["kind"] == "index":
            for p in img["platforms"]:
                compare_manifest(repo, p["digest"], p["digest"], p["size"],
                                 problems)
        report("manifest-by-digest/%s" % img["ref"], problems)
        problems = []
        for b in img["blobs"]:
            compare_blob(repo, b["digest"], b["size"], problems)
        report("blobs/%s" % img["ref"], problems)
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dir")
    d.add_argument("--seed", required=True)
    d.add_argument("--dir", required=True)
    d.add_argument("--ref", required=True)
    d.add_argument("--all", action="store_true")
    h = sub.add_parser("http")
    h.add_argument("--seed", required=True)
    h.add_argument("--mirror", required=True)
    h.add_argument("--upstream", required=True)
    h.add_argument("--prefix", default="http")
    a = ap.parse_args()
    return cmd_dir(a) if a.cmd == "dir" else cmd_http(a)


if __name__ == "__main__":
    sys.exit(main())
