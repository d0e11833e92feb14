#!/usr/bin/env python3
"""blackhole.py: a TCP listener that accepts connections and never answers.

An upstream that is "up" at the TCP level but never sends a byte: what a
hung registry or a dropped-packets firewall looks like to a client with a
connection already made.  Connections are held open (and what arrives is
read and discarded, so the sender never blocks) until the client closes.

    blackhole.py --listen 127.0.0.1:0 [--port-file F]

Prints "listening on HOST:PORT".  Python standard library only.
"""

import argparse
import selectors
import socket


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host or "127.0.0.1", int(port)))
    ls.listen(128)
    ls.setblocking(False)
    p = ls.getsockname()[1]
    print("listening on %s:%d" % (host or "127.0.0.1", p), flush=True)
    if a.port_file:
        with open(a.port_file, "w") as f:
            f.write("%d\n" % p)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
