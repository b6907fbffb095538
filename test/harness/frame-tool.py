#!/usr/bin/env python3
"""Raw Ethernet frames for the port-security tests, run inside a VM namespace.

  frame-tool.py send IFACE HEX...   send each frame (hex, no FCS) out of IFACE, in
                                    order, through an AF_PACKET socket: the VM
                                    really puts the frame on its wire, whatever
                                    MAC or IP it claims; prints "sent N"
  frame-tool.py send IFACE          the same for every line of stdin (frames in
                                    hex, separated by spaces), "sent N" after
                                    each line, until stdin closes
  frame-tool.py sniff IFACE         print "listening" once bound, then the hex
                                    of every frame IFACE receives (not those it
                                    sends), one a line, flushed at once

Written for the tests: scapy is not installed, and no packaged tool sends an
arbitrary frame given as bytes.
"""
import socket
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def send(iface, frames):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))

    def out(hexes):
        for h in hexes:
            s.send(bytes.fromhex(h))
        print(f"sent {len(hexes)}", flush=True)

    if frames:
        out(frames)
        return
    for line in sys.stdin:
        out(line.split())


def sniff(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind((iface, ETH_P_ALL))
    print("listening", flush=True)
    while True:
        data, addr = s.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        sys.stdout.write(data.hex() + "\n")
        sys.stdout.flush()


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "sniff":
        sniff(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
