#!/usr/bin/env python3
"""
The traffic of the offload benchmark (bench/offload.ts), run inside a VM
namespace of the kernel lane with `ip netns exec`.

  sink   binds UDP `--port` and counts datagrams and payload bytes until
         SIGTERM or SIGINT, then prints one JSON line {"received": N,
         "payloadBytes": B}; prints "ready" once bound.
  send   opens `--flows` UDP sockets (one source port each: one flow each),
         flow i to the i-th destination address (cycling through them), and
         sends `--packets` rounds: one datagram on every flow, then a pause of
         `--gap-ms`. Flow i's datagrams carry `--size` bytes of payload, or,
         with `--size-max`, a size between the two that differs from flow to
         flow (size + (i * 389) mod (size-max - size + 1)). Prints one JSON
         line: flows, packets, payload bytes, seconds, and with `--times` the
         send time of every datagram in ms from the first (for a single flow:
         which datagram was the first on the tc path, and when).
"""
import argparse
import json
import signal
import socket
import sys
import time


def sink(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("0.0.0.0", args.port))
    s.settimeout(0.2)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)
    n = 0
    nbytes = 0
    while not stop:
        try:
            nbytes += len(s.recv(65536))
            n += 1
        except socket.timeout:
            pass
        except InterruptedError:
            pass
    print(json.dumps({"received": n, "payloadBytes": nbytes}), flush=True)


def send(args):
    socks = []
    span = max(0, args.size_max - args.size) + 1 if args.size_max else 1
    for i in range(args.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        s.connect((args.dest[i % len(args.dest)], args.port))
        socks.append((s, b"\xfd" * (args.size + (i * 389) % span)))
    times = []
    t0 = time.monotonic()
    sent = 0
    nbytes = 0
    for r in range(args.packets):
        for s, payload in socks:
            if args.times:
                times.append(round((time.monotonic() - t0) * 1000, 3))
            s.send(payload)
            sent += 1
            nbytes += len(payload)
        if r + 1 < args.packets:
            time.sleep(args.gap_ms / 1000)
    out = {"flows": args.flows, "packets": sent, "payloadBytes": nbytes, "seconds": time.monotonic() - t0}
    if args.times:
        out["times"] = times
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("sink")
    k.add_argument("--port", type=int, default=9000)
    d = sub.add_parser("send")
    d.add_argument("--flows", type=int, required=True)
    d.add_argument("--packets", type=int, required=True)
    d.add_argument("--gap-ms", type=float, default=20)
    d.add_argument("--size", type=int, default=64)
    d.add_argument("--size-max", type=int, default=0)
    d.add_argument("--times", action="store_true")
    d.add_argument("--port", type=int, default=9000)
    d.add_argument("dest", nargs="+")
    args = p.parse_args()
    sink(args) if args.cmd == "sink" else send(args)


if __name__ == "__main__":
    sys.exit(main())
