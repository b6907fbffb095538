#!/usr/bin/env python3
"""Send DHCPDISCOVERs from an interface as fast as asked, until killed.

  dhcp-flood.py IFACE PPS

Each frame is a broadcast DISCOVER from the interface's own MAC with a new
xid (a client that never gets its lease), for tests that drive packet-ins
into the agent (soak, punt budgets). Written for the tests.
"""
import os
import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def discover(mac, xid):
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"", b"")
    bootp += b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def main():
    iface, pps = sys.argv[1], float(sys.argv[2])
    mac = bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    xid = int.from_bytes(os.urandom(4), "big")
    gap = 1.0 / pps
    nxt = time.monotonic()
    while True:
        xid = (xid + 1) & 0xFFFFFFFF
        s.send(discover(mac, xid))
        nxt += gap
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    main()
