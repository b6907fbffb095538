/**
 * Layer 1 of flowdrake's netlink stack: the raw socket, through koffi.
 *
 * The libc prototypes live in `native/netlink-libc.h` (the "native side"); this
 * module loads them, opens AF_NETLINK sockets (NETLINK_ROUTE for tc and links,
 * NETLINK_GENERIC for devlink/ethtool), optionally inside another network
 * namespace, and moves datagrams. It knows nothing about message framing.
 *
 * Why non-blocking + poll in koffi's async mode: a daemon must never block
 * Node's main thread in recv(2). The socket is opened with SOCK_NONBLOCK, so
 * send/recv on the main thread return at once (EAGAIN when nothing is
 * queued); only the wait for readability — poll(2) with a timeout — runs
 * through `poll.async`, on koffi's worker thread. This keeps the hot path
 * (a batch of 10 000 acks already queued) a tight synchronous loop with no
 * thread hop per datagram, while an idle wait costs the event loop nothing.
 * A bounded poll timeout (not -1) lets close() and request timeouts win.
 *
 * Namespaces: setns(2) changes only the calling thread, and koffi's sync calls
 * run on the main thread, so `open({netns})` does open(/var/run/netns/NAME) →
 * setns(CLONE_NEWNET) → socket() → setns back to the saved /proc/self/ns/net.
 * The socket stays bound to the target namespace for its whole life.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import koffi from "koffi";
import { logger } from "../../util/log.js";
import { NetlinkSocketError } from "./errors.js";

const log = logger("netlink");

export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
export const NETLINK_GENERIC = 16;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const POLLIN = 0x1;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;
const EAGAIN = 11;
const EINTR = 4;

/* eslint-disable @typescript-eslint/no-explicit-any */
type Fn = ((...args: any[]) => any) & { async: (...args: any[]) => void };
/* eslint-enable @typescript-eslint/no-explicit-any */

interface Libc {
  socket: Fn;
  bind: Fn;
  getsockname: Fn;
  setsockopt: Fn;
  sendto: Fn;
  recv: Fn;
  poll: Fn;
  close: Fn;
  open: Fn;
  setns: Fn;
}

let libc: Libc | undefined;

/** Find native/netlink-libc.h from src/ (tests) or dist/src/ (built). */
function headerPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "native", "netlink-libc.h");
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new NetlinkSocketError("load native/netlink-libc.h", 2, { from: import.meta.url });
}

function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load("libc.so.6");
  const fns: Record<string, Fn> = {};
  const text = readFileSync(headerPath(), "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  for (const line of text.split("\n")) {
    const proto = line.trim().replace(/;$/, "");
    if (!proto) continue;
    const name = /([A-Za-z_]\w*)\s*\(/.exec(proto)?.[1];
    if (name) fns[name] = lib.func(proto) as Fn;
  }
  libc = fns as unknown as Libc;
  return libc;
}

export interface NetlinkSocketOptions {
  /** Name under /var/run/netns to open the socket in. */
  netns?: string;
  /** SO_RCVBUF in bytes (forced as root); large for batches of acks. */
  rcvbuf?: number;
  sndbuf?: number;
  /** NETLINK_EXT_ACK (default on): the kernel explains errors. */
  extAck?: boolean;
  /** NETLINK_CAP_ACK (default on): acks do not echo the request payload. */
  capAck?: boolean;
  /** NETLINK_GET_STRICT_CHK (default off). */
  strictCheck?: boolean;
}

export class NetlinkSocket {
  private closed = false;
  private readonly recvBuf = Buffer.allocUnsafe(1 << 18);
  private readonly kernelAddr = Buffer.alloc(12);

  private constructor(
    readonly fd: number,
    readonly protocol: number,
    readonly portId: number,
    readonly netns: string | undefined,
  ) {
    this.kernelAddr.writeUInt16LE(AF_NETLINK, 0);
  }

  static open(protocol: number, opts: NetlinkSocketOptions = {}): NetlinkSocket {
    const c = loadLibc();
    const fd = opts.netns ? socketInNetns(c, protocol, opts.netns) : rawSocket(c, protocol);
    try {
      const addr = Buffer.alloc(12);
      addr.writeUInt16LE(AF_NETLINK, 0);
      if (c.bind(fd, addr, 12) < 0) throw new NetlinkSocketError("bind", koffi.errno());
      const len = Buffer.alloc(4);
      len.writeUInt32LE(12, 0);
      if (c.getsockname(fd, addr, len) < 0) throw new NetlinkSocketError("getsockname", koffi.errno());
      const sock = new NetlinkSocket(fd, protocol, addr.readUInt32LE(4), opts.netns);
      if (opts.extAck !== false) sock.setNetlinkOption(NETLINK_EXT_ACK, 1);
      if (opts.capAck !== false) sock.setNetlinkOption(NETLINK_CAP_ACK, 1);
      if (opts.strictCheck) sock.setNetlinkOption(NETLINK_GET_STRICT_CHK, 1);
      if (opts.rcvbuf) sock.setBuffer(SO_RCVBUFFORCE, SO_RCVBUF, opts.rcvbuf);
      if (opts.sndbuf) sock.setBuffer(SO_SNDBUFFORCE, SO_SNDBUF, opts.sndbuf);
      log.debug({ fd, protocol, portId: sock.portId, netns: opts.netns }, "netlink socket open");
      return sock;
    } catch (err) {
      c.close(fd);
      throw err;
    }
  }

  setNetlinkOption(option: number, value: number): void {
    this.setInt(SOL_NETLINK, option, value, `setsockopt(SOL_NETLINK, ${option})`);
  }

  private setBuffer(force: number, plain: number, bytes: number): void {
    try {
      this.setInt(SOL_SOCKET, force, bytes, "setsockopt(SO_*BUFFORCE)");
    } catch {
      this.setInt(SOL_SOCKET, plain, bytes, "setsockopt(SO_*BUF)");
    }
  }

  private setInt(level: number, option: number, value: number, what: string): void {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value, 0);
    if (loadLibc().setsockopt(this.fd, level, option, v, 4) < 0) {
      throw new NetlinkSocketError(what, koffi.errno());
    }
  }

  /** Send one datagram (one or many netlink messages) to the kernel. */
  send(buf: Buffer): void {
    this.assertOpen();
    const c = loadLibc();
    for (;;) {
      const n = Number(c.sendto(this.fd, buf, buf.length, 0, this.kernelAddr, 12));
      if (n >= 0) return;
      const errno = koffi.errno();
      if (errno === EINTR) continue;
      throw new NetlinkSocketError("sendto", errno, { bytes: buf.length });
    }
  }

  /** One queued datagram, or undefined if none is waiting (never blocks). */
  tryRecv(): Buffer | undefined {
    this.assertOpen();
    const c = loadLibc();
    for (;;) {
      const n = Number(c.recv(this.fd, this.recvBuf, this.recvBuf.length, MSG_DONTWAIT | MSG_TRUNC));
      if (n >= 0) {
        if (n > this.recvBuf.length) {
          throw new NetlinkSocketError("recv", 90 /* EMSGSIZE */, {
            datagram: n,
            buffer: this.recvBuf.length,
          });
        }
        return Buffer.from(this.recvBuf.subarray(0, n));
      }
      const errno = koffi.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return undefined;
      throw new NetlinkSocketError("recv", errno);
    }
  }

  /** Wait (off the main thread) until a datagram arrives; undefined on timeout. */
  async recv(timeoutMs: number): Promise<Buffer | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.tryRecv();
      if (got) return got;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await this.waitReadable(Math.min(left, 200));
    }
  }

  private waitReadable(timeoutMs: number): Promise<void> {
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(this.fd, 0);
    pfd.writeInt16LE(POLLIN, 4);
    return new Promise((resolve, reject) => {
      loadLibc().poll.async(pfd, 1, timeoutMs, (err: unknown) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve();
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    loadLibc().close(this.fd);
  }

  private assertOpen(): void {
    if (this.closed) throw new NetlinkSocketError("use after close", 9 /* EBADF */, { fd: this.fd });
  }
}

function rawSocket(c: Libc, protocol: number): number {
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol) as number;
  if (fd < 0) throw new NetlinkSocketError("socket", koffi.errno(), { protocol });
  return fd;
}

function socketInNetns(c: Libc, protocol: number, netns: string): number {
  const path = netns.includes("/") ? netns : `/var/run/netns/${netns}`;
  const target = c.open(path, O_RDONLY | O_CLOEXEC, 0) as number;
  if (target < 0) throw new NetlinkSocketError(`open ${path}`, koffi.errno(), { netns });
  const home = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC, 0) as number;
  if (home < 0) {
    c.close(target);
    throw new NetlinkSocketError("open /proc/thread-self/ns/net", koffi.errno());
  }
  try {
    if (c.setns(target, CLONE_NEWNET) < 0) throw new NetlinkSocketError("setns", koffi.errno(), { netns });
    let fd = -1;
    let failure: unknown;
    try {
      fd = rawSocket(c, protocol);
    } catch (err) {
      failure = err;
    }
    if (c.setns(home, CLONE_NEWNET) < 0) {
      // Staying in the wrong namespace would corrupt every later socket.
      if (fd >= 0) c.close(fd);
      throw new NetlinkSocketError("setns back to the original namespace", koffi.errno(), { netns });
    }
    if (failure !== undefined) throw failure;
    return fd;
  } finally {
    c.close(target);
    c.close(home);
  }
}
