#!/usr/bin/env python3
"""tokenserver.py: a registry token server (and a header-recording "CDN").

Token mode (default): GET /token?service=S&scope=SCOPE[&scope=...] answers
{"token", "access_token", "expires_in", "issued_at"} as distribution's token
spec says.  A token is base64url(JSON {"scopes", "service", "exp"}) "." hex
HMAC-SHA256 with --secret; tests/tools/faultproxy.py --mode bearer checks
it with the same --token-secret.  With --user/--password the token request
must carry those Basic credentials (else 401 with a Basic challenge).

CDN mode (--cdn DIR): GET/HEAD /v2/<name>/blobs/sha256:<hex> serves the file
DIR/<hex> (tests/tools/seed.py's blob directory), as a registry's blob
storage behind a redirect would; anything else is 404.

Both record every request: GET /_stats returns
  {"total": n, "tokens": {"<scope>": n, ...},
   "requests": [{"method", "path", "query", "headers": {...}, "status"}]}
(Authorization values included: this is a test fixture), and
POST /_reset clears it.

    tokenserver.py --listen 127.0.0.1:0 [--secret S] [--expires 300]
        [--user U --password P] [--cdn DIR] [--port-file F]

Prints "listening on HOST:PORT".  Python standard library only.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import socketserver
import sys
import threading
import time
import urllib.parse

BLOB_RE = re.compile(r"^/v2/(.+)/blobs/sha256:([0-9a-f]{64})$")


def make_token(secret, scopes, service, expires):
    claims = {"scopes": scopes, "service": service,
              "exp": int(time.time()) + expires}
    payload = base64.urlsafe_b64encode(
        json.dumps(claims, sort_keys=True).encode()).decode().rstrip("=")
    sig = hmac.new(secret.encode(), payload.encode(),
                   hashlib.sha256).hexdigest()
    return payload + "." + sig


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tokenserver"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"),
                                      fmt % args))

    def _send(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return code

    def _json(self, code, obj, extra=()):
        return self._send(code, (json.dumps(obj, indent=1, sort_keys=True)
                                 + "\n").encode(), extra=extra)

    def _record(self, u, status):
        srv = self.server
        with srv.lock:
            srv.log.append({"method": self.command, "path": u.path,
                            "query": u.query, "status": status,
                            "headers": {k: v for k, v in
                                        self.headers.items()}})

    def _token(self, u):
        srv = self.server
        q = urllib.parse.parse_qs(u.query)
        if srv.user is not None:
            want = "Basic " + base64.b64encode(
                ("%s:%s" % (srv.user, srv.password)).encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._json(401, {"errors": [{
                    "code": "UNAUTHORIZED",
                    "message": "token server: credentials required"}]},
                    extra=[("WWW-Authenticate", 'Basic realm="token"')])
        scopes = q.get("scope", [])
        with srv.lock:
            for s in scopes or [""]:
                srv.tokens[s] = srv.tokens.get(s, 0) + 1
        tok = make_token(srv.secret, scopes, q.get("service", [""])[0],
                         srv.expires)
        return self._json(200, {"token": tok, "access_token": tok,
                                "expires_in": srv.expires,
                                "issued_at": time.strftime(
                                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def _cdn(self, u):
        m = BLOB_RE.match(u.path)
        f = os.path.join(self.server.cdn, m.group(2)) if m else None
        if f is None or not os.path.isfile(f):
            return self._json(404, {"errors": [{
                "code": "BLOB_UNKNOWN", "message": "cdn: no such blob"}]})
        size = os.path.getsize(f)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Docker-Content-Digest", "sha256:" + m.group(2))
        self.end_headers()
        if self.command != "HEAD":
            with open(f, "rb") as fp:
                while True:
                    b = fp.read(64 * 1024)
                    if not b:
                        break
                    self.wfile.write(b)
        return 200

    def _handle(self):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        if n > 0:
            self.rfile.read(n)
        srv = self.server
        if u.path == "/_stats":
            with srv.lock:
                return self._json(200, {"total": len(srv.log),
                                        "tokens": dict(srv.tokens),
                                        "requests": list(srv.log)})
        if u.path == "/_reset":
            with srv.lock:
                srv.log.clear()
                srv.tokens.clear()
            return self._json(200, {})
        if srv.cdn is not None:
            status = self._cdn(u)
        elif u.path == "/token":
            status = self._token(u)
        else:
            status = self._json(404, {"error": "not here"})
        self._record(u, status)

    def _safe(self):
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = _safe


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--secret", default="ccprewarm-test")
    ap.add_argument("--expires", type=int, default=300)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--cdn", help="serve blobs from this directory instead")
    ap.add_argument("--port-file")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    srv = Server((host or "127.0.0.1", int(port)), Handler)
    srv.lock = threading.Lock()
    srv.log = []
    srv.tokens = {}
    srv.secret = a.secret
    srv.expires = a.expires
    srv.user = a.user
    srv.password = a.password or ""
    srv.cdn = a.cdn
    h, p = srv.server_address[:2]
    print("listening on %s:%d" % (h, p), flush=True)
    if a.port_file:
        with open(a.port_file, "w") as f:
            f.write("%d\n" % p)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
