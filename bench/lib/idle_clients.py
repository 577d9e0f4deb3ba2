#!/usr/bin/env python3
"""Hold N mostly idle PostgreSQL client connections open through a proxy.

Speaks just enough of protocol 3.0 over raw non-blocking sockets (one epoll loop, so 10,000
connections cost a few MB here): StartupMessage, then read until ReadyForQuery; trust auth only
(AuthenticationOk), anything else counts as a failed login. Each connection can run one
`SELECT 1` right after login (proof that it really reaches a server through the pool) and then a
`SELECT 1` every --interval seconds on average, spread at random, which is the "mostly" in mostly
idle.

When every login has finished (ok or failed) it writes one JSON line to --status and to stdout;
on SIGTERM/SIGINT it rewrites --status with the final counts (drops, queries, errors) and exits.
Progress goes to stderr.
"""

import argparse
import errno
import heapq
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time

CONNECTING, STARTUP, IDLE, QUERY = range(4)
QUERY_MSG = b"Q" + struct.pack("!i", 4 + len(b"SELECT 1\0")) + b"SELECT 1\0"


def startup_message(user, database):
    body = struct.pack("!i", 196608)  # protocol 3.0
    for key, value in (("user", user), ("database", database), ("application_name", "idle")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", 4 + len(body)) + body


class Conn:
    __slots__ = ("sock", "buf", "state", "started", "next_query")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.state = CONNECTING
        self.started = time.monotonic()
        self.next_query = 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--database", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--inflight", type=int, default=256, help="logins in progress at once")
    ap.add_argument("--interval", type=float, default=60.0,
                    help="mean seconds between queries per connection; 0 = never")
    ap.add_argument("--no-query-on-connect", action="store_true")
    ap.add_argument("--login-timeout", type=float, default=60.0)
    ap.add_argument("--status", required=True, help="file for the JSON status")
    args = ap.parse_args()

    startup = startup_message(args.user, args.database)
    sel = selectors.DefaultSelector()
    stats = {"target": args.count, "connected": 0, "failed": 0, "dropped": 0, "queries": 0,
             "query_errors": 0, "login_seconds": None, "errors": {}}
    conns = {}
    opened = 0
    in_login = 0
    t0 = time.monotonic()
    ready_reported = False
    stopping = False

    def note_error(text):
        stats["errors"][text] = stats["errors"].get(text, 0) + 1

    def write_status():
        with open(args.status + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(args.status + ".tmp", args.status)

    def close(c, counter, why):
        nonlocal in_login
        if c.state in (CONNECTING, STARTUP):
            in_login -= 1
        stats[counter] += 1
        if why:
            note_error(why)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        conns.pop(id(c), None)

    due = []  # heap of (time, seq, conn): the next query of each idle connection

    def schedule(c, now):
        if args.interval > 0:
            c.next_query = now + random.uniform(0, 2 * args.interval)
            heapq.heappush(due, (c.next_query, id(c), c))

    def send_query(c):
        try:
            c.sock.send(QUERY_MSG)
            c.state = QUERY
            stats["queries"] += 1
        except OSError as e:
            close(c, "dropped", "send: " + e.strerror)

    def on_message(c, kind, payload, now):
        nonlocal in_login
        if kind == b"E":
            fields = dict((f[:1], f[1:]) for f in payload.split(b"\0") if f)
            text = (fields.get(b"C", b"?") + b" " + fields.get(b"M", b"")).decode(errors="replace")
            if c.state == STARTUP:
                close(c, "failed", text)
                return False
            stats["query_errors"] += 1
            note_error(text)
        elif kind == b"R" and c.state == STARTUP:
            code = struct.unpack("!i", payload[:4])[0]
            if code != 0:
                close(c, "failed", "authentication request %d (only trust is supported)" % code)
                return False
        elif kind == b"Z":
            if c.state == STARTUP:
                in_login -= 1
                stats["connected"] += 1
                c.state = IDLE
                schedule(c, now)
                if not args.no_query_on_connect:
                    send_query(c)
            elif c.state == QUERY:
                c.state = IDLE
        return True

    def on_readable(c, now):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            close(c, "failed" if c.state == STARTUP else "dropped", "recv: " + e.strerror)
            return
        if not data:
            close(c, "failed" if c.state == STARTUP else "dropped",
                  "closed by proxy during login" if c.state == STARTUP else "")
            return
        c.buf += data
        while len(c.buf) >= 5:
            length = struct.unpack("!i", c.buf[1:5])[0]
            if len(c.buf) < 1 + length:
                break
            kind, payload, c.buf = c.buf[:1], c.buf[5:1 + length], c.buf[1 + length:]
            if not on_message(c, kind, payload, now):
                return

    def on_writable(c):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            close(c, "failed", "connect: " + errno.errorcode.get(err, str(err)))
            return
        c.sock.send(startup)
        c.state = STARTUP
        sel.modify(c.sock, selectors.EVENT_READ, c)

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last_progress = 0.0
    while not stopping:
        now = time.monotonic()
        while opened < args.count and in_login < args.inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(s)
            conns[id(c)] = c
            opened += 1
            in_login += 1
            rc = s.connect_ex((args.host, args.port))
            if rc not in (0, errno.EINPROGRESS):
                close(c, "failed", "connect: " + errno.errorcode.get(rc, str(rc)))
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, events in sel.select(timeout=0.2):
            c = key.data
            if c.state == CONNECTING:
                on_writable(c)
            else:
                on_readable(c, now)
        now = time.monotonic()
        if not ready_reported:
            for c in [c for c in conns.values() if c.state in (CONNECTING, STARTUP)
                      and now - c.started > args.login_timeout]:
                close(c, "failed", "login timeout")
            if now - last_progress > 2:
                last_progress = now
                print("idle_clients: %d connected, %d failed, %d in login" %
                      (stats["connected"], stats["failed"], in_login), file=sys.stderr)
            if stats["connected"] + stats["failed"] >= args.count:
                ready_reported = True
                stats["login_seconds"] = round(now - t0, 3)
                write_status()
                print(json.dumps(stats), flush=True)
        while due and due[0][0] <= now:
            _, _, c = heapq.heappop(due)
            if conns.get(id(c)) is c:
                schedule(c, now)
                if c.state == IDLE:
                    send_query(c)
    stats["still_open"] = len(conns)
    write_status()
    for c in list(conns.values()):
        c.sock.close()


if __name__ == "__main__":
    main()
