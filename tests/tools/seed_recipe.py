#!/usr/bin/env python3
"""seed_recipe.py: generate images for a recipe's exact references and push
each to the registry that stands in for its host.

The pre-warm tests need upstreams that hold precisely the repositories and
tags a recipe names (docker.io/lasuite/impress-backend:v5.7.0,
ghcr.io/docspec/api:1.21.4, quay.io/minio/mc:RELEASE...).  This builds them
with tests/tools/seed.py's generator (imported: same deterministic layers,
configs and Docker/OCI manifests) and pushes them with its push client.

    seed_recipe.py --expected tests/data/recipes/expected-images.json \\
        --recipe lasuite-docs \\
        --registry docker.io=http://127.0.0.1:5001 \\
        --registry ghcr.io=http://127.0.0.1:5002 \\
        --registry quay.io=http://127.0.0.1:5003 \\
        --cache tests/out/.cache/seed --out seeded.json
    seed_recipe.py --image nginx:1.27.2 --image redis:latest ...

References are normalised like ccprewarm does (nginx:1.25 ->
docker.io/library/nginx:1.25).  Each image gets a layout from its position
i in the list (deterministic, so the test can rely on it):

  - media types: i even -> Docker schema2 (list), i odd -> OCI (index)
  - i % 3 != 2 -> multi-arch: an index of linux/amd64 and linux/arm64/v8;
    otherwise a single linux/amd64 manifest
  - layers per platform: "base-<arch>" (shared by every image), then for
    the first two images a layer "pair-<arch>" (shared by exactly those
    two), then --layers own layers; arm64 layers are never amd64 layers,
    so everything of an arm64 manifest is arm64-only.

The JSON written to --out has seed.py's shape (check.py dir works on it):
images[] with ref/repo as a client of ccprewarm names them (docker.io
images plain, others with the registry as path prefix: ghcr.io/docspec/api),
plus per image "host", "upstream_repo", "canonical" and "amd64_closure"
(top manifest, the amd64 manifest, config, layers); at the top level
"amd64_closure" (every digest the linux/amd64 pre-warm must store, with its
size), "arm64_only" (digests only an arm64 pull needs) and "blobs",
"manifests", "registries".  Python standard library only.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402  (tests/tools/seed.py)

RECIPE_GENERATOR_VERSION = 1


def normalise(ref):
    """docker reference -> (host, repository, tag), as ccprewarm does."""
    name, tag = ref, "latest"
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "docker.io", name
    if host == "docker.io" and "/" not in repo:
        repo = "library/" + repo
    return host, repo, tag


def slug(s):
    return "".join(c if c.isalnum() else "-" for c in s).strip("-")


def plan_specs(refs, own_layers):
    """seed.py image specs and layer weights for the reference list."""
    specs, weights = [], {}
    for i, (host, repo, tag) in enumerate(refs):
        multi = i % 3 != 2
        archs = ["amd64", "arm64"] if multi else ["amd64"]
        plats = {}
        for arch in archs:
            names = ["base-" + arch]
            weights["base-" + arch] = 3
            if i < 2 and len(refs) > 1:
                names.append("pair-" + arch)
                weights["pair-" + arch] = 3
            for k in range(own_layers):
                n = "%s-%s-%s-l%d-%s" % (slug(host), slug(repo), slug(tag),
                                         k, arch)
                names.append(n)
                weights[n] = 2
            plats[arch] = names
        specs.append({"repo": "%s/%s" % (host, repo), "tags": [tag],
                      "kind": "docker" if i % 2 == 0 else "oci",
                      "multi": multi, "platforms": plats})
    return specs, weights


def generate(refs, seed_n, total, own_layers, cache):
    """Build (or reuse from cache) every blob; returns (plan, blobdir)."""
    specs, weights = plan_specs(refs, own_layers)
    key = hashlib.sha256(json.dumps(
        [RECIPE_GENERATOR_VERSION, seed.GENERATOR_VERSION, seed_n, total,
         specs, weights], sort_keys=True).encode()).hexdigest()[:20]
    final = os.path.join(cache, "recipe-" + key)
    plan_path = os.path.join(final, "plan.json")
    if not os.path.exists(plan_path):
        os.makedirs(cache, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=cache, prefix=".gen-recipe-")
        saved = (seed.IMAGES, seed.LAYER_WEIGHTS)
        try:
            # seed.generate() builds seed.IMAGES from seed.LAYER_WEIGHTS.
            seed.IMAGES, seed.LAYER_WEIGHTS = specs, weights
            plan = seed.generate(seed_n, total, 0, tmp)
            with open(os.path.join(tmp, "plan.json"), "w") as f:
                json.dump(plan, f, indent=1)
            try:
                os.rename(tmp, final)
            except OSError:
                pass  # generated concurrently: use the other one
        finally:
            seed.IMAGES, seed.LAYER_WEIGHTS = saved
            shutil.rmtree(tmp, ignore_errors=True)
    with open(plan_path) as f:
        plan = json.load(f)
    return plan, os.path.join(final, "blobs")


def describe(plan, refs, blobdir, registries):
    """seed.py-shaped summary with client names and closures."""
    images = []
    closure, every = {}, {}
    for img, (host, repo, tag) in zip(plan["images"], refs):
        img = dict(img)
        img["host"] = host
        img["upstream_repo"] = repo
        img["canonical"] = "%s/%s:%s" % (host, repo, tag)
        img["repo"] = repo if host == "docker.io" else "%s/%s" % (host, repo)
        img["ref"] = "%s:%s" % (img["repo"], tag)
        mine = {img["digest"]: img["size"]}
        every[img["digest"]] = img["size"]
        for p in img["platforms"]:
            every[p["digest"]] = p["size"]
            every[p["config"]["digest"]] = p["config"]["size"]
            for layer in p["layers"]:
                every[layer["digest"]] = layer["size"]
            if p["platform"]["architecture"] != "amd64":
                continue
            mine[p["digest"]] = p["size"]
            mine[p["config"]["digest"]] = p["config"]["size"]
            for layer in p["layers"]:
                mine[layer["digest"]] = layer["size"]
        img["amd64_closure"] = sorted(mine)
        closure.update(mine)
        images.append(img)
    blobs, manifests, repos = {}, {}, {}
    for img in images:
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
    return {"registries": registries, "seed": plan["seed"],
            "blob_dir": os.path.abspath(blobdir),
            "size_bytes": plan["size_bytes"],
            "total_blob_bytes": sum(b["size"] for b in blobs.values()),
            "images": images, "repos": repos, "blobs": blobs,
            "manifests": manifests,
            "amd64_closure": {d: closure[d] for d in sorted(closure)},
            "arm64_only": sorted(set(every) - set(closure))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", action="append", default=[],
                    help="an image reference to seed (repeatable)")
    ap.add_argument("--expected", help="expected-images.json: take the "
                    "default_images of --recipe from it")
    ap.add_argument("--recipe")
    ap.add_argument("--registry", action="append", default=[],
                    metavar="HOST=URL", help="push HOST's images to URL")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size-kb", type=int, default=1024,
                    help="approximate total of all layers (default 1024)")
    ap.add_argument("--layers", type=int, default=1,
                    help="own layers per image and platform (default 1)")
    ap.add_argument("--cache", help="keep generated blobs here")
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()

    raw = list(a.image)
    if a.expected:
        if not a.recipe:
            ap.error("--expected needs --recipe")
        with open(a.expected) as f:
            raw += json.load(f)[a.recipe]["default_images"]
    refs = []
    for r in raw:
        n = normalise(r)
        if n not in refs:
            refs.append(n)
    if not refs:
        ap.error("no images (--image or --expected/--recipe)")
    registries = {}
    for r in a.registry:
        host, sep, url = r.partition("=")
        if not sep or not url.startswith("http"):
            ap.error("--registry wants HOST=http://host:port, got %r" % r)
        registries[host] = url.rstrip("/")
    missing = sorted({h for h, _, _ in refs} - set(registries))
    if missing:
        ap.error("no --registry for %s" % ", ".join(missing))

    tmpcache = None
    cache = a.cache or tempfile.mkdtemp(prefix="ccp-seed-recipe-")
    if not a.cache:
        tmpcache = cache
    try:
        plan, blobdir = generate(refs, a.seed, a.size_kb << 10, a.layers,
                                 cache)
        for host, url in sorted(registries.items()):
            mine = []
            for img, (h, repo, _) in zip(plan["images"], refs):
                if h == host:
                    img = dict(img)
                    img["repo"] = repo
                    mine.append(img)
            if mine:
                sent = seed.push({"images": mine}, blobdir, url, a.jobs)
                seed.log("%s (%s): %d images, %.1f MB uploaded"
                         % (host, url, len(mine), sent / 1e6))
        out = describe(plan, refs, blobdir, registries)
        if tmpcache:
            out["blob_dir"] = None
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, a.out)
    finally:
        if tmpcache:
            shutil.rmtree(tmpcache, ignore_errors=True)


if __name__ == "__main__":
    main()
