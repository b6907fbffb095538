#!/usr/bin/env python3
"""TCP endpoints for the security-group tests, run inside a VM namespace.

  tcp-tool.py serve PORT...            echo server on every PORT (IPv4 and IPv6);
                                       prints "listening" once all are bound
  tcp-tool.py connect HOST PORT SECS   one connection: prints "connected" and
                                       exits 0 when an echo came back within
                                       SECS, else prints why and exits 1
  tcp-tool.py stream HOST PORT         one long connection: sends a line every
                                       50 ms and prints "echo N" for every echo
                                       received (line-buffered), "closed" or
                                       "error …" when it ends

Written for the tests (no nc variant offers all three in one tool).
"""
import socket
import sys
import threading
import time


def serve(ports):
    socks = []
    for p in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", p))
        s.listen(64)
        socks.append(s)

    def echo(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def accept(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    for s in socks:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("listening", flush=True)
    threading.Event().wait()


def connect(host, port, secs):
    try:
        s = socket.create_connection((host, port), timeout=secs)
        s.sendall(b"hello\n")
        if s.recv(100) != b"hello\n":
            print("no echo", flush=True)
            return 1
        print("connected", flush=True)
        return 0
    except OSError as e:
        print(f"failed {e}", flush=True)
        return 1


def stream(host, port):
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        print(f"error {e}", flush=True)
        return 1
    s.settimeout(None)
    print("connected", flush=True)

    def reader():
        n = 0
        buf = b""
        while True:
            try:
                data = s.recv(4096)
            except OSError as e:
                print(f"error {e}", flush=True)
                return
            if not data:
                print("closed", flush=True)
                return
            buf += data
            while b"\n" in buf:
                _, buf = buf.split(b"\n", 1)
                n += 1
                print(f"echo {n}", flush=True)

    threading.Thread(target=reader, daemon=True).start()
    i = 0
    while True:
        i += 1
        try:
            s.sendall(f"line {i}\n".encode())
        except OSError as e:
            print(f"error {e}", flush=True)
            return 1
        time.sleep(0.05)


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        serve([int(p) for p in sys.argv[2:]])
    elif cmd == "connect":
        sys.exit(connect(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    elif cmd == "stream":
        sys.exit(stream(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
