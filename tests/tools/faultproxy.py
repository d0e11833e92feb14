#!/usr/bin/env python3
"""faultproxy.py: an HTTP reverse proxy that misbehaves on purpose.

Sits between ccprewarm and an upstream registry.  Modes (--mode at start,
POST /_proxy/mode?m=MODE[&seconds=N] at run time):

  pass       forward everything unchanged
  corrupt    every blob GET body gets one byte flipped in its middle;
             Content-Length unchanged
  drop       the FIRST GET of each blob sends half its body and closes the
             connection; later GETs (Range requests included) pass
  stall      blob GETs send the headers, then nothing for --stall seconds
             (or until the mode changes), then the body
  blackhole  requests are read and never answered (until the mode changes)
  error      every request (but /_proxy/*) is answered 503 with an OCI error
  slow       blob GET bodies are sent at --rate KiB/s (full speed again as
             soon as the mode changes)
  bearer     a token-auth registry: every request without a valid
             "Authorization: Bearer" token for its repository is answered
             401 with a Bearer challenge for --realm (tokens are those of
             tests/tools/tokenserver.py with the same --token-secret)
  redirect   blob GETs are answered 307 to --redirect + the same path (a
             CDN); with --realm, every request is first checked as in bearer

With --token-upstream URL, GET /token (query kept, Authorization passed on)
is forwarded there in every mode: the token realm can then be this proxy's
own address, as a registry's usually is.

Every request (method + path, query stripped) is counted; GET /_proxy/stats
returns {"mode", "total", "requests": {"GET /v2/...": n}, "faults": n,
"ranged": requests with a Range header, "payload": {"signed" | "unsigned" |
"mismatch": n}, how each PUT's x-amz-content-sha256 matched its body} (in bearer and redirect modes,
"faults" counts 401 challenges and redirects sent) and
POST /_proxy/reset clears the counts and drop's memory of seen blobs.
"Blob" means a path /v2/<name>/blobs/sha256:<hex>.  The Range header and
every other request header is forwarded; Host is kept as the client sent it.

    faultproxy.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:5000 \
        [--mode pass] [--stall 30] [--port-file F] [--rate KIB]
        [--realm URL --token-secret S [--service NAME]] [--redirect URL]

With --listen port 0 the chosen port is printed on stdout ("listening on
HOST:PORT") and written to --port-file.  Python standard library only.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

BLOB_RE = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
MODES = ("pass", "corrupt", "drop", "stall", "blackhole", "error",
         "slow", "bearer", "redirect")
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
       "transfer-encoding", "upgrade", "proxy-authenticate",
       "proxy-authorization"}
CHUNK = 64 * 1024


class State:
    def __init__(self, mode, stall):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.mode = mode
        self.stall = stall
        self.counts = {}
        self.total = 0
        self.faults = 0
        self.ranged = 0
        self.dropped = set()
        self.payload = {}

    def payload_seen(self, kind):
        with self.lock:
            self.payload[kind] = self.payload.get(kind, 0) + 1

    def count(self, key, ranged=False):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.total += 1
            if ranged:
                self.ranged += 1

    def fault(self):
        with self.lock:
            self.faults += 1

    def set_mode(self, mode, stall=None):
        with self.lock:
            self.mode = mode
            if stall is not None:
                self.stall = stall
            self.changed.notify_all()

    def wait_mode_change(self, mode, timeout):
        """Sleep until the mode is no longer `mode` or timeout passes."""
        end = time.monotonic() + timeout
        with self.lock:
            while self.mode == mode:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    def snapshot(self):
        with self.lock:
            return {"mode": self.mode, "stall": self.stall,
                    "total": self.total, "faults": self.faults,
                    "ranged": self.ranged,
                    "payload": dict(self.payload),
                    "requests": dict(self.counts)}

    def reset(self):
        with self.lock:
            self.counts.clear()
            self.payload.clear()
            self.total = 0
            self.faults = 0
            self.ranged = 0
            self.dropped.clear()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"),
                                      fmt % args))

    # -- control endpoint ---------------------------------------------------

    def _json(self, code, obj):
        body = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _control(self, path, query):
        st = self.server.state
        q = urllib.parse.parse_qs(query)
        if path == "/_proxy/stats" and self.command == "GET":
            return self._json(200, st.snapshot())
        if path == "/_proxy/reset" and self.command == "POST":
            st.reset()
            return self._json(200, st.snapshot())
        if path == "/_proxy/mode" and self.command == "POST":
            m = q.get("m", [""])[0]
            if m not in MODES:
                return self._json(400, {"error": "unknown mode %r" % m,
                                        "modes": MODES})
            stall = q.get("seconds", [None])[0]
            st.set_mode(m, float(stall) if stall is not None else None)
            self.log_message("mode -> %s", m)
            return self._json(200, st.snapshot())
        return self._json(404, {"error": "unknown control request"})

    # -- proxying -----------------------------------------------------------

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else None

    def _payload_check(self, body):
        """S3 in front: how a PUT's x-amz-content-sha256 relates to its
        body (signed: the body's SHA-256; unsigned; mismatch)."""
        amz = self.headers.get("x-amz-content-sha256")
        if amz is None or self.command != "PUT":
            return
        if amz == "UNSIGNED-PAYLOAD":
            kind = "unsigned"
        elif hashlib.sha256(body or b"").hexdigest() == amz:
            kind = "signed"
        else:
            kind = "mismatch"
        self.server.state.payload_seen(kind)

    def _handle(self):
        u = urllib.parse.urlsplit(self.path)
        path = u.path
        if path.startswith("/_proxy/"):
            self._read_body()
            return self._control(path, u.query)
        st = self.server.state
        st.count("%s %s" % (self.command, path),
                 ranged=self.headers.get("Range") is not None)
        body = self._read_body()
        self._payload_check(body)
        mode = st.mode
        if mode == "blackhole":
            st.fault()
            # Hold the connection without a byte until the mode changes or
            # the client gives up.
            st.wait_mode_change("blackhole", 3600)
            self.close_connection = True
            return
        if mode == "error":
            st.fault()
            return self._json(503, {"errors": [{
                "code": "UNAVAILABLE", "message": "faultproxy: error mode"}]})
        # --token-upstream: the token service on this same host and port,
        # as a registry's realm usually is (never challenged itself).
        tok = self.server.token_upstream if path == "/token" else None
        if mode in EXTRA_MODES and tok is None and \
                extra_answer(self, mode, path):
            return
        m = BLOB_RE.match(path)
        is_blob_get = bool(m) and self.command == "GET" and tok is None

        up = tok or self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port or 80,
                                          timeout=300)
        try:
            target = (up.path.rstrip("/") + self.path) if up.path else \
                self.path
            # Header by header: repeated ones (several Accept lines from Go
            # clients) must all go through.
            conn.putrequest(self.command, target, skip_host=True,
                            skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() in HOP or k.lower() == "content-length":
                    continue
                conn.putheader(k, v)
            if body is not None or \
                    self.headers.get("Content-Length") is not None:
                # an empty PUT keeps its "Content-Length: 0" (S3 wants it)
                conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body)
            r = conn.getresponse()
        except OSError as e:
            conn.close()
            return self._json(502, {"errors": [{
                "code": "UNAVAILABLE",
                "message": "faultproxy: upstream: %s" % e}]})
        try:
            self._relay(r, mode, m if is_blob_get else None)
        finally:
            conn.close()

    def _relay(self, r, mode, blob):
        st = self.server.state
        length = r.getheader("Content-Length")
        length = int(length) if length is not None else None
        has_body = self.command != "HEAD" and r.status not in (204, 304) \
            and r.status >= 200
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() in HOP or k.lower() in ("server", "date"):
                continue
            self.send_header(k, v)
        if has_body and length is None:
            # Unknown length: delimit by closing.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not has_body:
            return
        if self.command == "HEAD":
            return

        if blob is not None and r.status in (200, 206) and mode == "slow":
            return relay_slow(self, r, length)
        fault = blob is not None and r.status in (200, 206)
        cut = None      # stop after this many bytes and close (drop)
        flip = None     # flip the byte at this offset (corrupt)
        if fault and mode == "drop":
            digest = blob.group(2)
            with st.lock:
                first = digest not in st.dropped
                st.dropped.add(digest)
            if first and length:
                cut = length // 2
        elif fault and mode == "corrupt" and length:
            flip = length // 2
        if fault and mode == "stall":
            st.fault()
            self.wfile.flush()
            st.wait_mode_change("stall", st.stall)
        if cut is not None or flip is not None:
            st.fault()

        sent = 0
        while True:
            want = CHUNK
            if cut is not None:
                want = min(want, cut - sent)
                if want <= 0:
                    break
            data = r.read(want) if length is None else \
                r.read(min(want, length - sent))
            if not data:
                break
            if flip is not None and sent <= flip < sent + len(data):
                b = bytearray(data)
                b[flip - sent] ^= 0xff
                data = bytes(b)
            try:
                self.wfile.write(data)
            except OSError:
                self.close_connection = True
                return
            sent += len(data)
            if length is not None and sent >= length:
                break
        if cut is not None:
            self.wfile.flush()
            self.log_message("drop: cut %s after %d of %d bytes",
                             blob.group(2)[:19], sent, length)
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

    def _safe(self):
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _safe
    do_OPTIONS = _safe


# -- extra modes: slow, bearer, redirect -----------------------------------
# (used by test_concurrency.sh and test_auth.sh; hooked into Handler by one
# line each in _handle and _relay)

EXTRA_MODES = ("bearer", "redirect")
REPO_RE = re.compile(r"^/v2/(.+)/(?:manifests|blobs|tags)/")


def token_valid(secret, token, scope):
    """A tokenserver.py token: base64url(JSON claims) "." hex HMAC-SHA256.
    Valid if signed with secret, not expired and (scope given) granting it."""
    payload, _, sig = token.rpartition(".")
    if not payload:
        return False
    good = hmac.new(secret.encode(), payload.encode(),
                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, sig):
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(
            payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return False
    if claims.get("exp", 0) < time.time():
        return False
    return scope is None or scope in claims.get("scopes", [])


def extra_answer(h, mode, path):
    """bearer/redirect: answer the request here (401 challenge or 307) and
    return True, or return False to let it be proxied as usual."""
    st = h.server.state
    x = h.server.extra
    if x.realm and (mode == "bearer" or mode == "redirect"):
        m = REPO_RE.match(path)
        scope = "repository:%s:pull" % m.group(1) if m else None
        auth = h.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not (token and token_valid(x.token_secret, token, scope)):
            st.fault()
            chal = 'Bearer realm="%s",service="%s"' % (x.realm, x.service)
            if scope:
                chal += ',scope="%s"' % scope
            body = (json.dumps({"errors": [{
                "code": "UNAUTHORIZED",
                "message": "authentication required",
                "detail": [{"Type": "repository", "Name":
                            m.group(1) if m else "", "Action": "pull"}]}]})
                + "\n").encode()
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.send_header("Docker-Distribution-API-Version", "registry/2.0")
            h.send_header("WWW-Authenticate", chal)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            return True
    if mode == "redirect" and x.redirect and h.command == "GET" and \
            BLOB_RE.match(path):
        st.fault()
        h.send_response(307)
        h.send_header("Location", x.redirect.rstrip("/") + h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return True
    return False


def relay_slow(h, r, length):
    """slow: copy the body at --rate KiB/s while the mode stays slow."""
    st = h.server.state
    rate = max(1.0, h.server.extra.rate) * 1024
    st.fault()
    sent = 0
    t0 = time.monotonic()
    while length is None or sent < length:
        want = 16 * 1024 if length is None else min(16 * 1024, length - sent)
        data = r.read(want)
        if not data:
            break
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            break
        sent += len(data)
        if st.mode == "slow":
            ahead = t0 + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    if length is None or sent < length:
        h.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--mode", default="pass", choices=MODES)
    ap.add_argument("--stall", type=float, default=30,
                    help="seconds a stalled blob waits (default 30)")
    ap.add_argument("--port-file")
    # extra modes
    ap.add_argument("--rate", type=float, default=1024,
                    help="slow: KiB/s per blob body (default 1024)")
    ap.add_argument("--realm", help="bearer/redirect: token realm URL")
    ap.add_argument("--service", default="test",
                    help="bearer: the challenge's service (default test)")
    ap.add_argument("--token-secret", default="ccprewarm-test",
                    help="bearer: HMAC key shared with tokenserver.py")
    ap.add_argument("--redirect", help="redirect: base URL blobs go to")
    ap.add_argument("--token-upstream",
                    help="forward GET /token here (tokenserver.py)")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    srv = Server((host or "127.0.0.1", int(port)), Handler)
    srv.state = State(a.mode, a.stall)
    srv.extra = a
    srv.upstream = urllib.parse.urlsplit(a.upstream.rstrip("/"))
    srv.token_upstream = urllib.parse.urlsplit(a.token_upstream.rstrip("/")) \
        if a.token_upstream else None
    if srv.upstream.scheme != "http":
        ap.error("--upstream must be http://")
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
