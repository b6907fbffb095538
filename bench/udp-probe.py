#!/usr/bin/env python3
"""
The packet ends of the first-packet benchmark (bench/first-packet.ts), run
inside a VM namespace with `ip netns exec`. Python and not node because it
gives what the measurement needs with nothing in between: a synchronous
`sendto` right after reading the clock, and the kernel's own receive
timestamp (SO_TIMESTAMPNS) on every datagram.

  send   reads destination addresses from stdin, one per line, and sends one
         small UDP datagram to each at a fixed rate (`--rate` per second;
         `--count` datagrams in all, cycling through the addresses), paced to
         absolute deadlines t0 + i/rate: a late datagram goes at once and
         lateness never accumulates. Each payload carries a magic number, its
         index and CLOCK_REALTIME nanoseconds read immediately before the
         `sendto`. Prints one JSON line: sent, first and last send time, the
         rate achieved, and how late the latest datagram left.
  recv   binds UDP `--port` on every address (the sink's addresses are all
         local) with SO_TIMESTAMPNS, prints "ready", then one line per
         datagram of ours: "<index> <send ns> <receive ns>"; the receive time
         is the kernel's, stamped as the packet came in from the interface.
  icmp   a raw ICMP socket: one line "<type> <code> <receive ns>" per ICMP
         destination-unreachable or time-exceeded message that arrives.

Both receivers run until SIGTERM or SIGINT and flush each line as it is
written, so the caller sees arrivals as they happen. Same host, same clock:
receive - send is the one-way latency through the switch (and, for a first
packet, through its controller).
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import time

MAGIC = 0xF1D8_0001
PAYLOAD = struct.Struct("!IIQ")  # magic, index, send time (ns, CLOCK_REALTIME)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def send(args: argparse.Namespace) -> None:
    dsts = [line.strip() for line in sys.stdin if line.strip()]
    if not dsts:
        sys.exit("udp-probe send: no destination addresses on stdin")
    count = args.count or len(dsts)
    interval = 1e9 / args.rate
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    clock, mono, sleep, pack, sendto = time.time_ns, time.monotonic_ns, time.sleep, PAYLOAD.pack, s.sendto
    port = args.port
    t0 = mono() + 2_000_000
    first = last = 0
    worst_late = 0
    errors = 0
    for i in range(count):
        deadline = t0 + int(i * interval)
        wait = deadline - mono()
        if wait > 0:
            sleep(wait / 1e9)
        else:
            worst_late = max(worst_late, -wait)
        now = clock()
        try:
            sendto(pack(MAGIC, i, now), (dsts[i % len(dsts)], port))
        except OSError:
            errors += 1  # ENOBUFS on a full queue: the datagram was not sent
            continue
        if i == 0:
            first = now
        last = now
    span = (last - first) / 1e9
    print(
        json.dumps(
            {
                "sent": count - errors,
                "errors": errors,
                "firstNs": first,
                "lastNs": last,
                "rate": round((count - 1) / span, 1) if span > 0 else None,
                "worstLateUs": round(worst_late / 1000, 1),
            }
        ),
        flush=True,
    )


def _stop(*_: object) -> None:
    raise SystemExit(0)


def recv(args: argparse.Namespace) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind(("0.0.0.0", args.port))
    out = sys.stdout
    print("ready", flush=True)
    while True:
        data, anc, _flags, _addr = s.recvmsg(64, socket.CMSG_SPACE(16))
        if len(data) < PAYLOAD.size:
            continue
        magic, index, sent = PAYLOAD.unpack_from(data)
        if magic != MAGIC:
            continue
        recv_ns = 0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                recv_ns = sec * 1_000_000_000 + nsec
        out.write(f"{index} {sent} {recv_ns or time.time_ns()}\n")
        out.flush()


def icmp(_args: argparse.Namespace) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    out = sys.stdout
    print("ready", flush=True)
    while True:
        data, anc, _flags, _addr = s.recvmsg(2048, socket.CMSG_SPACE(16))
        ihl = (data[0] & 15) * 4
        if len(data) < ihl + 2 or data[ihl] not in (3, 11):
            continue
        recv_ns = 0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                recv_ns = sec * 1_000_000_000 + nsec
        out.write(f"{data[ihl]} {data[ihl + 1]} {recv_ns or time.time_ns()}\n")
        out.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("send")
    ps.add_argument("--rate", type=float, required=True)
    ps.add_argument("--port", type=int, default=9000)
    ps.add_argument("--count", type=int, default=0)
    pr = sub.add_parser("recv")
    pr.add_argument("--port", type=int, default=9000)
    sub.add_parser("icmp")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        {"send": send, "recv": recv, "icmp": icmp}[args.cmd](args)
    except (SystemExit, KeyboardInterrupt):
        pass
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":
    main()
