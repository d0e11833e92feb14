#!/usr/bin/env python3
"""fakemirror.py: stand in for ccprewarm with docker-registry's proxy mode.

Takes ccprewarm's command line (serve --listen H:P --data DIR --upstream URL
[--tag-freshness S] [--config F]) and runs docker-registry as a pull-through
cache of URL with its storage under DIR/registry.  For validating the test
harness before ccprewarm exists, or to compare behaviour:

    CCPREWARM_BIN=tests/tools/fakemirror.py tests/integration/test_skopeo.sh

It is not ccprewarm: its store layout, error codes and fault handling
differ, so the store and fault checks are expected to fail against it.
"""

import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["serve"])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--tag-freshness", type=int)
    ap.add_argument("--config")
    a = ap.parse_args()
    root = os.path.join(a.data, "registry")
    os.makedirs(root, exist_ok=True)
    cfg = os.path.join(a.data, "fakemirror.yml")
    with open(cfg, "w") as f:
        f.write("""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: fakemirror
proxy:
  remoteurl: %s
""" % (root, a.listen, a.upstream))
    sys.stdout.flush()
    os.execv("/usr/bin/docker-registry", ["docker-registry", "serve", cfg])


if __name__ == "__main__":
    main()
