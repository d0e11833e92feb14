#!/usr/bin/env python3
"""seed.py: generate test images deterministically and push them to a registry.

Images are real: layers are gzip-compressed tar archives of generated files,
configs carry the right rootfs.diff_ids, manifests are Docker schema2 and OCI,
single-platform and multi-arch (linux/amd64 + linux/arm64), with layers shared
between images.  The same --seed and --size give the same digests every time.

    seed.py --registry http://127.0.0.1:5000 --out pushed.json
    seed.py --registry URL --size-mb 750 --large-layers 3 --cache DIR --out F
    seed.py --generate-only --cache DIR          # build the blobs, push nothing

The JSON written to --out lists every image (reference, tags, manifest
digest, media type, size, platform manifests, every blob with its size) and
every blob and manifest; the integration tests check a mirror against it.
Python standard library only.
"""

import argparse
import concurrent.futures
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import urllib.parse

GENERATOR_VERSION = 1

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"

PLATFORMS = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}

# Layers of the standard set: name -> weight (share of the small-image
# budget).  "base-*" is shared by alpine, multi-oci, multi-docker and
# single-docker; "lib-shared" and "big-shared" by several repositories.
LAYER_WEIGHTS = {
    "base-amd64": 6,
    "base-arm64": 6,
    "lib-shared": 10,
    "big-shared": 22,
    "app-oci-amd64": 5,
    "app-oci-arm64": 5,
    "app-md-amd64": 5,
    "app-md-arm64": 5,
    "app-so": 8,
    "app-sd": 8,
    "app-a": 6,
    "app-b1": 6,
    "app-b2": 6,
    "tiny": 0,  # one small file: a blob of a few hundred bytes
}

# The image set.  kind: "docker" or "oci"; platforms: arch -> layer names.
# Single-platform images have exactly one entry and no index.
IMAGES = [
    {"repo": "library/alpine", "tags": ["3.19", "3", "latest"],
     "kind": "docker", "multi": True,
     "platforms": {"amd64": ["base-amd64"], "arm64": ["base-arm64"]}},
    {"repo": "test/multi-oci", "tags": ["v1", "latest"],
     "kind": "oci", "multi": True,
     "platforms": {"amd64": ["base-amd64", "app-oci-amd64"],
                   "arm64": ["base-arm64", "app-oci-arm64"]}},
    {"repo": "test/multi-docker", "tags": ["v1"],
     "kind": "docker", "multi": True,
     "platforms": {"amd64": ["base-amd64", "lib-shared", "app-md-amd64"],
                   "arm64": ["base-arm64", "lib-shared", "app-md-arm64"]}},
    {"repo": "test/single-oci", "tags": ["v1"],
     "kind": "oci", "multi": False,
     "platforms": {"amd64": ["lib-shared", "app-so", "tiny"]}},
    {"repo": "test/single-docker", "tags": ["v1"],
     "kind": "docker", "multi": False,
     "platforms": {"amd64": ["base-amd64", "app-sd"]}},
    {"repo": "test/shared-a", "tags": ["v1"],
     "kind": "oci", "multi": False,
     "platforms": {"amd64": ["lib-shared", "big-shared", "app-a"]}},
    {"repo": "test/shared-b", "tags": ["v1"],
     "kind": "docker", "multi": False,
     "platforms": {"amd64": ["lib-shared", "big-shared", "app-b1"]}},
    {"repo": "test/shared-b", "tags": ["v2"],
     "kind": "docker", "multi": False,
     "platforms": {"amd64": ["lib-shared", "big-shared", "app-b1",
                             "app-b2"]}},
]

# With --large-layers N the budget beyond SMALL_SHARE goes to this image,
# N layers of equal size, in a single-platform OCI image plus a
# multi-arch Docker list sharing the first large layer.
LARGE_REPO = "bench/large"


def log(msg):
    print("seed: " + msg, file=sys.stderr, flush=True)


def canon(obj):
    """Deterministic JSON bytes for configs and manifests."""
    return json.dumps(obj, indent=3, sort_keys=False).encode() + b"\n"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


class _HashWriter:
    """File-like: writes through to fp, hashing and counting."""

    def __init__(self, fp):
        self.fp = fp
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.fp.write(b)

    def flush(self):
        self.fp.flush()


class _GenReader:
    """File-like reader of n deterministic bytes for one file of a layer."""

    CHUNK = 1 << 20

    def __init__(self, key, n, text):
        self.key = key
        self.left = n
        self.text = text
        self.idx = 0
        self.buf = b""
        self.pos = 0

    def _more(self):
        k = ("%s/%d" % (self.key, self.idx)).encode()
        self.idx += 1
        raw = hashlib.shake_128(k).digest(self.CHUNK)
        if not self.text:
            return raw
        # Compressible text: a random 4 KiB block of lowercase words and
        # newlines, repeated with a counter, so gzip shrinks it like real
        # files and layers are not all incompressible noise.
        alpha = b"abcdefghijklmnopqrstuvwxyz      \n"
        block = bytes(alpha[c % len(alpha)] for c in raw[:4096])
        out = io.BytesIO()
        i = 0
        while out.tell() < self.CHUNK:
            out.write(b"%08d " % i)
            out.write(block)
            i += 1
        return out.getvalue()[:self.CHUNK]

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.left
        n = min(n, self.left)
        out = []
        while n > 0:
            if self.pos >= len(self.buf):
                self.buf = self._more()
                self.pos = 0
            take = min(n, len(self.buf) - self.pos)
            out.append(self.buf[self.pos:self.pos + take])
            self.pos += take
            self.left -= take
            n -= take
        return b"".join(out)


def make_layer(seed, name, target, path):
    """Write a .tar.gz layer of about `target` bytes compressed to path.

    Returns (digest, size, diff_id).
    """
    rng_key = "seed%d/%s" % (seed, name)
    hk = hashlib.sha256(rng_key.encode()).digest()
    with open(path, "wb") as raw:
        outer = _HashWriter(raw)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=outer,
                           mtime=0, compresslevel=1)
        inner = _HashWriter(gz)
        tf = tarfile.open(fileobj=inner, mode="w|",
                          format=tarfile.GNU_FORMAT)

        def info(p, typ, size=0, mode=0o644):
            ti = tarfile.TarInfo(p)
            ti.type = typ
            ti.size = size
            ti.mode = mode
            ti.mtime = FIXED_MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            return ti

        top = "opt/seed/" + name
        parts = top.split("/")
        for i in range(1, len(parts) + 1):
            tf.addfile(info("/".join(parts[:i]), tarfile.DIRTYPE,
                            mode=0o755))
        tf.addfile(info("etc", tarfile.DIRTYPE, mode=0o755))
        ident = ("%s seed=%d\n" % (name, seed)).encode()
        tf.addfile(info("etc/seed-%s" % name, tarfile.REGTYPE, len(ident)),
                   io.BytesIO(ident))
        if name.startswith("base-"):
            # Something a shell-less image still has: a /bin to point at.
            tf.addfile(info("bin", tarfile.DIRTYPE, mode=0o755))
            ti = info("bin/sh", tarfile.SYMTYPE, mode=0o777)
            ti.linkname = "../opt/seed/%s/README" % name
            tf.addfile(ti)
        readme = ("layer %s, generated by tests/tools/seed.py\n"
                  % name).encode()
        tf.addfile(info(top + "/README", tarfile.REGTYPE, len(readme)),
                   io.BytesIO(readme))
        # Files: sizes drawn from the layer's own key; two thirds random
        # bytes (incompressible: they make up the compressed size), one
        # third compressible text (almost free once gzipped).
        i = 0
        est = 0
        while est < target:
            r = hk[i % 32] ^ (i * 37 & 0xff)
            remaining = target - est
            if remaining > (8 << 20):
                fsize = (4 << 20) + (r << 14)
            else:
                fsize = max(256, min(remaining, (64 << 10) + (r << 10)))
            text = (i % 3 == 2)
            sub = "d%02d" % (i // 50)
            if i % 50 == 0:
                tf.addfile(info("%s/%s" % (top, sub), tarfile.DIRTYPE,
                                mode=0o755))
            fname = "%s/%s/f%05d.%s" % (top, sub, i, "txt" if text else "bin")
            tf.addfile(info(fname, tarfile.REGTYPE, fsize),
                       _GenReader("%s/%d" % (rng_key, i), fsize, text))
            if not text:
                est += fsize
            i += 1
        tf.close()
        gz.close()
    return "sha256:" + outer.h.hexdigest(), outer.n, \
        "sha256:" + inner.h.hexdigest()


def layer_targets(total, large_layers):
    """Bytes per layer name for a total budget."""
    if large_layers > 0:
        small = min(total // 10, 20 << 20)
        large_each = max(1 << 20, (total - small) // large_layers)
    else:
        small = total
        large_each = 0
    wsum = sum(LAYER_WEIGHTS.values())
    out = {}
    for name, w in LAYER_WEIGHTS.items():
        out[name] = small * w // wsum if w else 0
    for i in range(large_layers):
        out["large-%d" % i] = large_each
    # A small per-arch top layer for the large multi-arch list.
    if large_layers > 0:
        out["large-top-amd64"] = 256 << 10
        out["large-top-arm64"] = 256 << 10
    return out


def image_set(large_layers):
    imgs = [dict(i) for i in IMAGES]
    if large_layers > 0:
        big = ["large-%d" % i for i in range(large_layers)]
        imgs.append({"repo": LARGE_REPO, "tags": ["v1"], "kind": "oci",
                     "multi": False, "platforms": {"amd64": big}})
        imgs.append({"repo": LARGE_REPO + "-multi", "tags": ["v1"],
                     "kind": "docker", "multi": True,
                     "platforms": {
                         "amd64": [big[0], "large-top-amd64"],
                         "arm64": [big[0], "large-top-arm64"]}})
    return imgs


def generate(seed, total, large_layers, outdir):
    """Build every blob and manifest into outdir/blobs/<hex>; return plan."""
    blobdir = os.path.join(outdir, "blobs")
    os.makedirs(blobdir, exist_ok=True)
    targets = layer_targets(total, large_layers)
    layers = {}

    def build(name):
        fd, tmp = tempfile.mkstemp(dir=outdir, prefix=".layer-")
        os.close(fd)
        digest, size, diff_id = make_layer(seed, name, targets[name], tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(blobdir, digest[7:]))
        return name, {"digest": digest, "size": size, "diff_id": diff_id}

    names = sorted(targets)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        for name, meta in ex.map(build, names):
            layers[name] = meta

    def put(data):
        d = "sha256:" + sha256_hex(data)
        with open(os.path.join(blobdir, d[7:]), "wb") as f:
            f.write(data)
        return d

    images = []
    for spec in image_set(large_layers):
        docker = spec["kind"] == "docker"
        plats = []
        for arch, lnames in spec["platforms"].items():
            plat = PLATFORMS[arch]
            cfg = {
                "architecture": plat["architecture"],
                "os": plat["os"],
            }
            if "variant" in plat:
                cfg["variant"] = plat["variant"]
            cfg.update({
                "created": CREATED,
                "config": {
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:"
                            "/usr/sbin:/usr/bin:/sbin:/bin"],
                    "Cmd": ["/bin/sh"],
                    "Labels": {"org.ccprewarm.seed": str(seed),
                               "org.ccprewarm.image": spec["repo"]},
                },
                "rootfs": {"type": "layers",
                           "diff_ids": [layers[n]["diff_id"]
                                        for n in lnames]},
                "history": [{"created": CREATED,
                             "created_by": "seed.py layer " + n}
                            for n in lnames],
            })
            cfg_bytes = canon(cfg)
            cfg_digest = put(cfg_bytes)
            lmt = MT_DOCKER_LAYER if docker else MT_OCI_LAYER
            cmt = MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG
            man = {"schemaVersion": 2,
                   "mediaType": MT_DOCKER_MANIFEST if docker
                   else MT_OCI_MANIFEST,
                   "config": {"mediaType": cmt, "size": len(cfg_bytes),
                              "digest": cfg_digest},
                   "layers": [{"mediaType": lmt,
                               "size": layers[n]["size"],
                               "digest": layers[n]["digest"]}
                              for n in lnames]}
            if not docker:
                man["annotations"] = {
                    "org.opencontainers.image.created": CREATED}
            man_bytes = canon(man)
            plats.append({
                "digest": put(man_bytes),
                "mediaType": man["mediaType"],
                "size": len(man_bytes),
                "platform": plat,
                "config": {"digest": cfg_digest, "size": len(cfg_bytes),
                           "mediaType": cmt},
                "layers": [{"digest": layers[n]["digest"],
                            "size": layers[n]["size"],
                            "diff_id": layers[n]["diff_id"],
                            "mediaType": lmt, "name": n}
                           for n in lnames],
            })
        if spec["multi"]:
            idx = {"schemaVersion": 2,
                   "mediaType": MT_DOCKER_LIST if docker else MT_OCI_INDEX,
                   "manifests": [{"mediaType": p["mediaType"],
                                  "size": p["size"], "digest": p["digest"],
                                  "platform": p["platform"]}
                                 for p in plats]}
            idx_bytes = canon(idx)
            top = {"digest": put(idx_bytes), "mediaType": idx["mediaType"],
                   "size": len(idx_bytes), "kind": "index"}
        else:
            p = plats[0]
            top = {"digest": p["digest"], "mediaType": p["mediaType"],
                   "size": p["size"], "kind": "manifest"}
        blobs = {}
        for p in plats:
            blobs[p["config"]["digest"]] = p["config"]
            for layer in p["layers"]:
                blobs[layer["digest"]] = layer
        images.append(dict(
            ref="%s:%s" % (spec["repo"], spec["tags"][0]),
            repo=spec["repo"], tags=spec["tags"], platforms=plats,
            blobs=[{"digest": d, "size": b["size"],
                    "mediaType": b["mediaType"]}
                   for d, b in sorted(blobs.items())],
            **top))
    return {"generator": GENERATOR_VERSION, "seed": seed,
            "size_bytes": total, "large_layers": large_layers,
            "layers": layers, "images": images}


def cached_generate(seed, total, large_layers, cache):
    key = "g%d-s%d-b%d-l%d" % (GENERATOR_VERSION, seed, total, large_layers)
    final = os.path.join(cache, key)
    plan_path = os.path.join(final, "plan.json")
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            plan = json.load(f)
        return plan, os.path.join(final, "blobs")
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache, prefix=".gen-")
    try:
        plan = generate(seed, total, large_layers, tmp)
        with open(os.path.join(tmp, "plan.json"), "w") as f:
            json.dump(plan, f, indent=1)
        try:
            os.rename(tmp, final)
        except OSError:
            # Someone else generated the same set concurrently: use theirs.
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    with open(plan_path) as f:
        plan = json.load(f)
    return plan, os.path.join(final, "blobs")


class Registry:
    """Minimal distribution push client (one connection per thread)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url.rstrip("/"))
        if u.scheme not in ("http", "https"):
            raise SystemExit("seed: --registry must be http(s)://host:port")
        self.scheme = u.scheme
        self.netloc = u.netloc
        self.prefix = u.path
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            cls = (http.client.HTTPSConnection if self.scheme == "https"
                   else http.client.HTTPConnection)
            c = cls(self.netloc, timeout=120)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, headers=None):
        if path.startswith("http://") or path.startswith("https://"):
            u = urllib.parse.urlsplit(path)
            path = u.path + ("?" + u.query if u.query else "")
        elif not path.startswith(self.prefix + "/v2"):
            path = self.prefix + path
        for attempt in range(3):
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                data = r.read()
                return r.status, r.headers, data
            except (ConnectionError, http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt == 2 or hasattr(body, "read"):
                    raise
        raise AssertionError("unreachable")

    def has_blob(self, repo, digest):
        st, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        return st == 200

    def mount(self, repo, digest, src):
        st, hdr, _ = self.request(
            "POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s"
            % (repo, digest, src), body=b"",
            headers={"Content-Length": "0"})
        if st == 201:
            return True
        if st == 202:
            # Mount refused; an upload session was opened: cancel it.
            loc = hdr.get("Location")
            if loc:
                self.request("DELETE", loc)
        return False

    def upload(self, repo, digest, path, size):
        st, hdr, body = self.request(
            "POST", "/v2/%s/blobs/uploads/" % repo, body=b"",
            headers={"Content-Length": "0"})
        if st != 202:
            raise RuntimeError("POST upload %s: %d %s" % (repo, st, body[:200]))
        loc = hdr["Location"]
        sep = "&" if "?" in loc else "?"
        with open(path, "rb") as f:
            st, _, body = self.request(
                "PUT", loc + sep + "digest=" + urllib.parse.quote(digest),
                body=f, headers={"Content-Length": str(size),
                                 "Content-Type": "application/octet-stream"})
        if st != 201:
            raise RuntimeError("PUT blob %s %s: %d %s"
                               % (repo, digest, st, body[:200]))

    def put_manifest(self, repo, ref, mediatype, data):
        st, hdr, body = self.request(
            "PUT", "/v2/%s/manifests/%s" % (repo, ref), body=data,
            headers={"Content-Type": mediatype,
                     "Content-Length": str(len(data))})
        if st != 201:
            raise RuntimeError("PUT manifest %s:%s: %d %s"
                               % (repo, ref, st, body[:300]))
        return hdr.get("Docker-Content-Digest")


def push(plan, blobdir, url, jobs):
    reg = Registry(url)
    where = {}  # digest -> a repo that already has it (for mounts)
    lock = threading.Lock()

    def push_blob(repo, b):
        d, size = b["digest"], b["size"]
        if reg.has_blob(repo, d):
            return 0
        with lock:
            src = where.get(d)
        if src and src != repo and reg.mount(repo, d, src):
            return 0
        reg.upload(repo, d, os.path.join(blobdir, d[7:]), size)
        with lock:
            where.setdefault(d, repo)
        return size

    def manifest_bytes(d):
        with open(os.path.join(blobdir, d[7:]), "rb") as f:
            return f.read()

    sent = 0
    for img in plan["images"]:
        repo = img["repo"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
            sent += sum(ex.map(lambda b: push_blob(repo, b), img["blobs"]))
        for p in img["platforms"]:
            if img["kind"] == "index":
                got = reg.put_manifest(repo, p["digest"], p["mediaType"],
                                       manifest_bytes(p["digest"]))
                if got and got != p["digest"]:
                    raise RuntimeError("registry digest %s != %s"
                                       % (got, p["digest"]))
        for tag in img["tags"]:
            got = reg.put_manifest(repo, tag, img["mediaType"],
                                   manifest_bytes(img["digest"]))
            if got and got != img["digest"]:
                raise RuntimeError("registry digest %s != %s for %s:%s"
                                   % (got, img["digest"], repo, tag))
        log("pushed %s:%s %s" % (repo, ",".join(img["tags"]), img["digest"]))
    return sent


def summary(plan, url, blobdir):
    blobs = {}
    manifests = {}
    repos = {}
    for img in plan["images"]:
        r = repos.setdefault(img["repo"], {"tags": []})
        r["tags"] = sorted(set(r["tags"]) | set(img["tags"]))
        manifests[img["digest"]] = {"mediaType": img["mediaType"],
                                    "size": img["size"], "repo": img["repo"]}
        for p in img["platforms"]:
            manifests[p["digest"]] = {"mediaType": p["mediaType"],
                                      "size": p["size"], "repo": img["repo"]}
        for b in img["blobs"]:
            blobs[b["digest"]] = {"size": b["size"],
                                  "mediaType": b["mediaType"],
                                  "repo": img["repo"]}
    return {"registry": url, "seed": plan["seed"],
            "blob_dir": os.path.abspath(blobdir) if blobdir else None,
            "size_bytes": plan["size_bytes"],
            "total_blob_bytes": sum(b["size"] for b in blobs.values()),
            "images": plan["images"], "repos": repos, "blobs": blobs,
            "manifests": manifests}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--registry", help="registry base URL, http://host:port")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size-mb", type=float, default=20,
                    help="approximate total of all blobs (default 20)")
    ap.add_argument("--large-layers", type=int, default=0,
                    help=("put 90%% of the size into N large layers of an "
                          "extra image " + LARGE_REPO + " (for benchmarks)"))
    ap.add_argument("--cache", help="keep generated blobs here and reuse "
                    "them for the same seed and size")
    ap.add_argument("--out", help="write the JSON of what was pushed here")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--generate-only", action="store_true")
    a = ap.parse_args()
    if not a.generate_only and not a.registry:
        ap.error("--registry is required (or --generate-only)")
    total = int(a.size_mb * (1 << 20))
    tmpcache = None
    if a.cache:
        cache = a.cache
    else:
        cache = tmpcache = tempfile.mkdtemp(prefix="ccp-seed-")
    try:
        plan, blobdir = cached_generate(a.seed, total, a.large_layers, cache)
        url = a.registry.rstrip("/") if a.registry else None
        if not a.generate_only:
            sent = push(plan, blobdir, url, a.jobs)
            log("done: %d images, %.1f MB uploaded"
                % (len(plan["images"]), sent / 1e6))
        if a.out:
            tmp = a.out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(summary(plan, url, None if tmpcache else blobdir), f,
                          indent=1)
            os.replace(tmp, a.out)
    finally:
        if tmpcache:
            shutil.rmtree(tmpcache, ignore_errors=True)


if __name__ == "__main__":
    main()
