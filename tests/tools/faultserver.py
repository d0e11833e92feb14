#!/usr/bin/env python3
"""faultserver.py: a programmable faulty upstream for the fault matrix.

A reverse proxy in front of a real registry (--upstream).  The first
component of the repository name picks the fault for that request and is
stripped before forwarding: GET /v2/<fault>/<name>/blobs/<digest> asks the
upstream for /v2/<name>/blobs/<digest>.  GET /v2/ always answers 200 (the
breaker's probe).  Faults apply to blob and manifest GETs; HEADs pass.

  pass       forward unchanged
  corrupt    one byte in the middle of the body flipped, length unchanged
  cut        every GET (resumed Range requests too) sends half of what it
             declares, then closes
  stallhead  reads the request, then sends nothing for --stall seconds
             (then the real answer); a client that gives up ends it
  stallbody  headers and the first half of the body, then nothing for
             --stall seconds, then the rest
  chunked    the body with Transfer-Encoding: chunked, no Content-Length
  longlen    Content-Length 1000 more than the body, the body, then close
  shortlen   Content-Length 1000 less than the body, that many bytes, close
  loop       302 to the same URL, forever
  foreign    307 to --foreign + the path with its fault component replaced
             by --foreign-fault (another host: a CDN that may lie)
  foreignok  307 to --foreign + the path with "pass" (an honest CDN)
  tolocal    307 to --local-target + the stripped path (SSRF)
  5xx        503 with an OCI error body, every time
  429        429 with Retry-After: --retry-after and an OCI error body
  bearer     401 with a Bearer challenge whose realm is this server's
             /token, which never answers (a hanging token server)

GET /_stats returns {"total": n, "faults": {"cut": n, ...}, "range": n}
(requests per fault; /v2/, /token and /_stats not counted).  Python
standard library only.

    faultserver.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:5000 \\
        [--stall 8] [--retry-after 3] [--local-target URL] \\
        [--foreign URL --foreign-fault corrupt]

Prints "listening on HOST:PORT" once it accepts connections.
"""

import argparse
import http.client
import http.server
import json
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

FAULTS = ("pass", "corrupt", "cut", "stallhead", "stallbody", "chunked",
          "longlen", "shortlen", "loop", "foreign", "foreignok", "tolocal",
          "5xx", "429", "bearer")
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length"}
CHUNK = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stdout.write("%.3f %s\n" % (time.time(), fmt % args))
        sys.stdout.flush()

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _oci(self, code, c, msg, headers=()):
        body = json.dumps({"errors": [{"code": c, "message": msg}]}).encode()
        self._send(code, body, [("Content-Type", "application/json")] +
                   list(headers))

    def _sleep(self, secs):
        """Sleep up to secs; False if the client went away meanwhile."""
        end = time.time() + secs
        self.connection.settimeout(0.2)
        try:
            while time.time() < end:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except socket.timeout:
                    pass
                except OSError:
                    return False
        finally:
            self.connection.settimeout(None)
        return True

    def _count(self, fault):
        st = self.server.stats
        with self.server.lock:
            st["total"] += 1
            st["faults"][fault] = st["faults"].get(fault, 0) + 1
            if self.headers.get("Range"):
                st["range"] += 1

    def do_HEAD(self):
        self._handle()

    def do_GET(self):
        self._handle()

    def _handle(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_stats":
            with self.server.lock:
                return self._send(200, json.dumps(self.server.stats).encode(),
                                  [("Content-Type", "application/json")])
        if u.path in ("/v2", "/v2/"):
            return self._send(200, b"{}", [
                ("Content-Type", "application/json"),
                ("Docker-Distribution-API-Version", "registry/2.0")])
        if u.path == "/token":
            # The hanging token server: never a byte.
            self._sleep(3600)
            self.close_connection = True
            return
        parts = u.path.split("/")
        # ["", "v2", fault, name..., "blobs"|"manifests", ref]
        if len(parts) < 6 or parts[1] != "v2" or parts[2] not in FAULTS:
            return self._oci(404, "NAME_UNKNOWN", "faultserver: no fault")
        fault = parts[2] if self.command == "GET" else "pass"
        stripped = "/".join(parts[:2] + parts[3:])
        if u.query:
            stripped += "?" + u.query
        self._count(fault)
        a = self.server.args
        if fault == "loop":
            return self._send(302, b"", [("Location", self.path)])
        if fault == "tolocal":
            return self._send(307, b"", [
                ("Location", a.local_target.rstrip("/") + stripped)])
        if fault in ("foreign", "foreignok"):
            to = a.foreign_fault if fault == "foreign" else "pass"
            p = "/".join(parts[:2] + [to] + parts[3:])
            return self._send(307, b"", [
                ("Location", a.foreign.rstrip("/") + p)])
        if fault == "5xx":
            return self._oci(503, "UNAVAILABLE", "faultserver: 5xx storm")
        if fault == "429":
            return self._oci(429, "TOOMANYREQUESTS", "faultserver: slow down",
                             [("Retry-After", str(a.retry_after))])
        if fault == "bearer" and not self.headers.get("Authorization"):
            host = self.headers.get("Host")
            return self._oci(401, "UNAUTHORIZED", "faultserver: token", [(
                "WWW-Authenticate",
                'Bearer realm="http://%s/token",service="fault"' % host)])
        if fault == "stallhead" and not self._sleep(a.stall):
            self.close_connection = True
            return
        self._relay(fault, stripped)

    def _relay(self, fault, path):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port or 80,
                                          timeout=120)
        try:
            conn.putrequest(self.command, path, skip_host=True,
                            skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() in HOP or k.lower() == "authorization":
                    continue
                conn.putheader(k, v)
            conn.endheaders()
            r = conn.getresponse()
            body = r.read() if self.command == "GET" else b""
        except OSError as e:
            conn.close()
            return self._oci(502, "UNAVAILABLE", "faultserver: %s" % e)
        conn.close()
        good = r.status in (200, 206) and self.command == "GET"
        if not good or fault == "pass" or fault == "bearer" or \
                fault == "stallhead":
            return self._reply(r, body, len(body))
        n = len(body)
        if fault == "corrupt" and n:
            b = bytearray(body)
            b[n // 2] ^= 0xff
            return self._reply(r, bytes(b), n)
        if fault == "cut":
            return self._reply(r, body[:n // 2], n, close=True)
        if fault == "stallbody":
            self._reply(r, body[:n // 2], n, flush_only=True)
            if self._sleep(self.server.args.stall):
                self._write(body[n // 2:])
            return
        if fault == "chunked":
            return self._reply(r, body, None)
        if fault == "longlen":
            return self._reply(r, body, n + 1000, close=True)
        if fault == "shortlen":
            return self._reply(r, body[:max(n - 1000, 0)],
                               max(n - 1000, 0), close=True)
        return self._reply(r, body, n)

    def _write(self, data):
        try:
            for i in range(0, len(data), CHUNK):
                self.wfile.write(data[i:i + CHUNK])
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reply(self, r, data, length, close=False, flush_only=False):
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() in HOP or k.lower() in ("server", "date"):
                continue
            self.send_header(k, v)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if length is None:
            for i in range(0, len(data), CHUNK):
                piece = data[i:i + CHUNK]
                self._write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            self._write(b"0\r\n\r\n")
            return
        self._write(data)
        if close:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--stall", type=float, default=8)
    ap.add_argument("--retry-after", type=int, default=3)
    ap.add_argument("--local-target", default="http://127.0.0.1:1")
    ap.add_argument("--foreign", default="http://127.0.0.1:1")
    ap.add_argument("--foreign-fault", default="corrupt")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    srv = Server((host, int(port)), Handler)
    srv.args = a
    srv.upstream = urllib.parse.urlsplit(a.upstream)
    srv.lock = threading.Lock()
    srv.stats = {"total": 0, "faults": {}, "range": 0}
    print("listening on %s:%d" % (host, srv.server_address[1]), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
