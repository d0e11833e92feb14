#!/usr/bin/env python3
"""protofault.py: an upstream whose faults are chosen per request by path.

A reverse proxy in front of a real registry (--upstream).  The first
component of the repository name picks what happens to that request, and is
stripped before forwarding: GET /v2/<fault>/<name>/blobs/<digest> asks the
upstream for /v2/<name>/blobs/<digest>.  GET /v2/ always answers 200 (the
breaker's probe).

  pass       forward unchanged (with Content-Length)
  chunked    forward, but send the body with Transfer-Encoding: chunked
             and no Content-Length, 32 KiB every 20 ms (so that a client
             is streaming before the last byte has arrived)
  loop       302 to the same URL, forever (a redirect loop)
  ftp        302 to ftp://127.0.0.1:1/x (a protocol curl must not follow)
  http09     a bare body with no status line, then close (HTTP/0.9)
  empty      close the connection without a byte (an empty reply)
  ratelimit  429 with Retry-After: --retry-after (an OCI error body)
  tolocal    307 to --local-target + the stripped path (a redirect to a
             loopback address: SSRF)
  toup       307 to --upstream + the stripped path (the upstream registry
             on loopback, which the mirror may already hold a connection to)

GET /_stats returns {"total": n, "faults": {"loop": n, ...}} (requests per
fault, /v2/ and /_stats not counted).  Python standard library only.

    protofault.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:5000 \\
        [--retry-after 30] [--local-target http://127.0.0.1:5000]
"""

import argparse
import http.client
import http.server
import json
import socketserver
import sys
import threading
import time
import urllib.parse

FAULTS = ("pass", "chunked", "loop", "ftp", "http09", "empty", "ratelimit",
          "tolocal", "toup")
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.command, fmt % args))
        sys.stdout.flush()

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code, obj, headers=()):
        self._send(code, json.dumps(obj).encode(),
                   [("Content-Type", "application/json")] + list(headers))

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        srv = self.server
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_stats":
            with srv.lock:
                return self._json(200, {"total": srv.total,
                                        "faults": dict(srv.counts)})
        if path == "/v2/" or path == "/v2":
            return self._json(200, {})
        parts = path.split("/")
        if len(parts) < 4 or parts[1] != "v2" or parts[2] not in FAULTS:
            return self._json(404, {"errors": [{"code": "NAME_UNKNOWN",
                                                "message": "no such fault"}]})
        fault = parts[2]
        rest = "/v2/" + "/".join(parts[3:])
        with srv.lock:
            srv.total += 1
            srv.counts[fault] = srv.counts.get(fault, 0) + 1
        if fault == "loop":
            return self._send(302, headers=[("Location", self.path)])
        if fault == "ftp":
            return self._send(302, headers=[("Location",
                                             "ftp://127.0.0.1:1/x")])
        if fault == "tolocal":
            return self._send(307, headers=[("Location",
                                             srv.local_target + rest)])
        if fault == "toup":
            u = srv.upstream
            return self._send(307, headers=[(
                "Location", "%s://%s%s" % (u.scheme, u.netloc, rest))])
        if fault == "http09":
            self.wfile.write(b"this is not a status line\n" * 4)
            self.close_connection = True
            return
        if fault == "empty":
            self.close_connection = True
            return
        if fault == "ratelimit":
            return self._json(429, {"errors": [{
                "code": "TOOMANYREQUESTS", "message": "slow down"}]},
                [("Retry-After", str(srv.retry_after))])
        return self._forward(rest, chunked=(fault == "chunked"))

    def _forward(self, path, chunked):
        u = self.server.upstream
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in HOP and k.lower() != "host"}
        conn.request(self.command, path, headers=hdrs)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if not chunked:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        for i in range(0, len(body), 32 * 1024):
            piece = body[i:i + 32 * 1024]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(0.02)
        self.wfile.write(b"0\r\n\r\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--retry-after", type=int, default=30)
    ap.add_argument("--local-target", default="http://127.0.0.1:1")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = Server((host, int(port)), Handler)
    srv.upstream = urllib.parse.urlsplit(a.upstream)
    srv.retry_after = a.retry_after
    srv.local_target = a.local_target.rstrip("/")
    srv.lock = threading.Lock()
    srv.total = 0
    srv.counts = {}
    print("listening on %s:%d" % srv.server_address[:2], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
