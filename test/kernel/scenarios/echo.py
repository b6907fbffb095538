"""ICMP echo for the kernel lane's counted pings: exactly COUNT requests, then the late answers too.

    echo.py COUNT INTERVAL [-I SOURCE] DEST

Sends COUNT echo requests to DEST, one every INTERVAL seconds (icmp_seq 1..COUNT), and prints
{"sent": COUNT, "received": R, "missing": [seq, ...]}: R requests answered, the others listed.
After the last request it waits until every request is answered, or WAIT_S seconds.

Why not iputils ping: with -c and no -w deadline, ping exits max(2 × the slowest round trip so
far, the interval) after its last request, so on a guest slowed by a loaded host a last answer a
little late counts as lost; with a deadline, ping sends more requests while any answer is
missing, and the lane's counters (tc, OVS, conntrack zones) count every request.
"""

import json
import os
import select
import socket
import struct
import sys
import time

WAIT_S = 5.0
ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def request(ident: int, seq: int) -> bytes:
    # 56 bytes of payload, as ping sends: 84-byte IPv4 packets
    payload = struct.pack("!d", time.time()) + bytes(range(48))
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(head + payload), ident, seq) + payload


def main(argv: list[str]) -> None:
    rest = argv[3:]
    source = None
    if rest[:1] == ["-I"] and len(rest) == 3:
        source, rest = rest[1], rest[2:]
    if len(argv) < 3 or len(rest) != 1:
        sys.exit(__doc__)
    count, interval, dest = int(argv[1]), float(argv[2]), rest[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    if source:
        sock.bind((source, 0))
    ident = os.getpid() & 0xFFFF
    answered: set[int] = set()

    def receive(until: float) -> None:
        while len(answered) < count:
            left = until - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                return
            pkt, (src, _) = sock.recvfrom(2048)
            icmp = pkt[(pkt[0] & 0x0F) * 4 :]
            if len(icmp) < 8 or src != dest:
                continue
            kind, _, _, rid, seq = struct.unpack("!BBHHH", icmp[:8])
            if kind == ECHO_REPLY and rid == ident and 1 <= seq <= count:
                answered.add(seq)

    start = time.monotonic()
    for seq in range(1, count + 1):
        try:
            sock.sendto(request(ident, seq), (dest, 0))
        except OSError:
            pass  # no route, for one: a request not answered
        if seq < count:
            receive(start + seq * interval)
    receive(time.monotonic() + WAIT_S)
    missing = [s for s in range(1, count + 1) if s not in answered]
    print(json.dumps({"sent": count, "received": len(answered), "missing": missing}))


if __name__ == "__main__":
    main(sys.argv)
