#!/usr/bin/env python3
"""
The TCP ends of the security-group benchmark (bench/secgroup.ts), run inside
a VM namespace with `ip netns exec`. One thread and epoll on each side, so
that the switch, not thread start-up, is what a run measures.

  serve PORT...  echo server on every PORT (IPv4): accepts every connection,
               echoes what it receives, closes when the client has closed.
               Prints "listening" once bound, then runs until SIGTERM.
  crr HOST PORT --count N --concurrency C [--timeout S]
               N new connections, at most C in flight, each one: non-blocking
               connect, send one byte, wait for its echo, close — netperf's
               TCP_CRR with a one-byte request. A connection that fails, or
               has not echoed within S seconds (default 3) of its connect,
               counts as failed and is closed. Prints one JSON line: count,
               ok, failed, seconds (first connect to last completion), rate
               (ok / seconds), and p50/p99 of the per-connection time from
               connect to echo, in ms.

The client closes first, so its ports go into TIME_WAIT for a minute: the
caller widens the namespace's ephemeral port range and leaves tcp_tw_reuse
off, so that no connection reuses the addresses and ports of one the
switch's conntrack may still hold.
"""
import argparse
import errno
import json
import selectors
import signal
import socket
import sys
import time


def serve(args: argparse.Namespace) -> None:
    sel = selectors.DefaultSelector()
    for port in args.ports:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(4096)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        conn, _ = key.fileobj.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, conn)
                continue
            conn = key.data
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if data:
                try:
                    conn.send(data)
                    continue
                except OSError:
                    pass
            sel.unregister(conn)
            conn.close()


def percentile(sorted_ms: list, q: float):
    if not sorted_ms:
        return None
    i = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return round(sorted_ms[i], 3)


def crr(args: argparse.Namespace) -> None:
    sel = selectors.DefaultSelector()
    started = 0
    ok = 0
    failed = 0
    times = []
    inflight = {}  # fd -> (socket, start time, phase)
    t0 = time.monotonic()
    last = t0

    def finish(fd: int, good: bool) -> None:
        nonlocal ok, failed, last
        s, at, _ = inflight.pop(fd)
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        now = time.monotonic()
        last = now
        if good:
            ok += 1
            times.append((now - at) * 1000)
        else:
            failed += 1

    def start() -> None:
        nonlocal started, failed
        started += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        at = time.monotonic()
        rc = s.connect_ex((args.host, args.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            failed += 1
            return
        inflight[s.fileno()] = (s, at, "connect")
        sel.register(s, selectors.EVENT_WRITE, None)

    while started < args.count or inflight:
        while started < args.count and len(inflight) < args.concurrency:
            start()
        now = time.monotonic()
        for fd in [fd for fd, (_, at, _) in inflight.items() if now - at > args.timeout]:
            finish(fd, False)
        if not inflight:
            continue
        for key, _ in sel.select(timeout=0.1):
            fd = key.fd
            if fd not in inflight:
                continue
            s, at, phase = inflight[fd]
            if phase == "connect":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    finish(fd, False)
                    continue
                try:
                    s.send(b"x")
                except OSError:
                    finish(fd, False)
                    continue
                inflight[fd] = (s, at, "echo")
                sel.modify(s, selectors.EVENT_READ, None)
            else:
                try:
                    data = s.recv(16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                finish(fd, data == b"x")
    seconds = last - t0
    times.sort()
    print(
        json.dumps(
            {
                "count": args.count,
                "ok": ok,
                "failed": failed,
                "seconds": round(seconds, 4),
                "rate": round(ok / seconds, 1) if seconds > 0 else None,
                "p50Ms": percentile(times, 0.5),
                "p99Ms": percentile(times, 0.99),
            }
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("ports", type=int, nargs="+")
    c = sub.add_parser("crr")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--concurrency", type=int, default=1)
    c.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args()
    if args.cmd == "serve":
        serve(args)
    else:
        crr(args)


if __name__ == "__main__":
    main()
