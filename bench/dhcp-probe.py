#!/usr/bin/env python3
"""
The neighbour's DHCP prober of the punt-flood benchmark (bench/punt-flood.ts),
run inside a VM namespace with `ip netns exec`:

  dhcp-probe.py IFACE --count N --interval-ms MS --timeout-ms MS

sends N DHCPDISCOVERs out of IFACE, one every MS milliseconds (paced to
absolute deadlines t0 + i * MS: a late probe goes at once and lateness never
accumulates), each from the interface's own MAC with its own transaction id,
and times the DISCOVER -> OFFER round trip of each. The send time is
CLOCK_REALTIME read just before the send; the receive time is the kernel's
timestamp on the OFFER (SO_TIMESTAMPNS on the packet socket), so the round
trip holds no Python scheduling delay on the way back. An OFFER counts when
it carries our MAC as chaddr, a transaction id still waiting, and message
type 2; a probe without one within --timeout-ms of its send is lost.

Prints one line per probe, in send order, after the last one has its answer
or timed out:

  probe <index> <send ns> <receive ns | ->

then one JSON line: sent, answered, how late the latest probe left (µs), and
how many OFFERs arrived that were not for a waiting probe (late or foreign).

A UDP socket bound to port 68 absorbs the OFFERs the kernel also receives, so
the namespace answers none of them with ICMP port unreachable. Python and not
node for the same reason as bench/udp-probe.py: a synchronous send right
after reading the clock and the kernel's own receive stamp.
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
DHCP_MAGIC = b"\x63\x82\x53\x63"
BOOTREPLY = 2
DHCPOFFER = 2


def checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def discover(mac: bytes, xid: int) -> bytes:
    """A DHCPDISCOVER from `mac` to the broadcast address (test/harness/dhcp-flood.py's, without the broadcast flag)."""
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 0, xid, 0, 0,
        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"", b"",
    )
    bootp += DHCP_MAGIC + b"\x35\x01\x01" + b"\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + struct.pack("!H", ETH_P_IP) + ip + udp


def offer_xid(frame: bytes, mac: bytes):
    """The transaction id of a DHCPOFFER to `mac` in an Ethernet frame, or None."""
    if len(frame) < 14 + 20 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return None
    ihl = (frame[14] & 15) * 4
    if frame[14 + 9] != 17:
        return None
    udp = 14 + ihl
    bootp = udp + 8
    if len(frame) < bootp + 240 or struct.unpack_from("!H", frame, udp + 2)[0] != 68:
        return None
    if frame[bootp] != BOOTREPLY or frame[bootp + 28 : bootp + 34] != mac:
        return None
    if frame[bootp + 236 : bootp + 240] != DHCP_MAGIC:
        return None
    i = bootp + 240
    while i < len(frame) and frame[i] != 255:
        if frame[i] == 0:
            i += 1
            continue
        if i + 1 >= len(frame):
            return None
        code, length = frame[i], frame[i + 1]
        if code == 53 and length >= 1 and i + 2 < len(frame):
            return struct.unpack_from("!I", frame, bootp + 4)[0] if frame[i + 2] == DHCPOFFER else None
        i += 2 + length
    return None


def kernel_ns(anc) -> int:
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    p.add_argument("iface")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--interval-ms", type=float, required=True)
    p.add_argument("--timeout-ms", type=float, default=2000)
    a = p.parse_args()
    if a.count < 1 or a.interval_ms <= 0 or a.timeout_ms <= 0:
        sys.exit("dhcp-probe: --count, --interval-ms and --timeout-ms must be positive")
    mac = bytes.fromhex(open(f"/sys/class/net/{a.iface}/address").read().strip().replace(":", ""))

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((a.iface, ETH_P_IP))
    absorb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    absorb.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    absorb.bind(("0.0.0.0", 68))
    absorb.setblocking(False)

    base = int.from_bytes(os.urandom(4), "big")
    xids = [(base + i) & 0xFFFFFFFF for i in range(a.count)]
    index_of = {x: i for i, x in enumerate(xids)}
    sent_ns = [0] * a.count
    recv_ns = [0] * a.count
    waiting = set()
    foreign = 0
    worst_late = 0
    interval = int(a.interval_ms * 1e6)
    timeout = int(a.timeout_ms * 1e6)
    mono = time.monotonic_ns
    t0 = mono() + 2_000_000
    nxt = 0
    last_deadline = 0

    while True:
        now = mono()
        if nxt < a.count and now >= t0 + nxt * interval:
            worst_late = max(worst_late, now - (t0 + nxt * interval))
            frame = discover(mac, xids[nxt])
            sent_ns[nxt] = time.time_ns()
            s.send(frame)
            waiting.add(nxt)
            last_deadline = now + timeout
            nxt += 1
            continue
        if nxt >= a.count and (not waiting or now >= last_deadline):
            break
        until = t0 + nxt * interval if nxt < a.count else last_deadline
        ready, _, _ = select.select([s, absorb], [], [], max(0, until - now) / 1e9)
        if absorb in ready:
            try:
                while True:
                    absorb.recv(2048)
            except BlockingIOError:
                pass
        if s in ready:
            frame, anc, _flags, addr = s.recvmsg(2048, socket.CMSG_SPACE(16))
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            xid = offer_xid(frame, mac)
            if xid is None:
                continue
            i = index_of.get(xid)
            if i is None or i not in waiting:
                foreign += 1
                continue
            t = kernel_ns(anc)
            if t - sent_ns[i] > timeout:
                foreign += 1
            else:
                recv_ns[i] = t
            waiting.discard(i)

    out = sys.stdout
    for i in range(a.count):
        out.write(f"probe {i} {sent_ns[i]} {recv_ns[i] or '-'}\n")
    answered = sum(1 for r in recv_ns if r)
    out.write(
        json.dumps(
            {
                "sent": a.count,
                "answered": answered,
                "worstLateUs": round(worst_late / 1000, 1),
                "foreign": foreign,
            }
        )
        + "\n"
    )
    out.flush()


if __name__ == "__main__":
    main()
