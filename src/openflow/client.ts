/**
 * The active side: flowdrake dials the switch, the way ovs-ofctl does, at
 * `unix:<rundir>/<bridge>.mgmt` (the bridge's management socket),
 * `tcp:host:port` (a bridge with a `ptcp:` listener) or `ssl:host:port` (a
 * `pssl:` listener, e.g. `ovs-vsctl set-controller br-int pssl:6653`, with
 * OVS's three SSL files in `ssl`: src/util/ssl.ts; an `ssl:` target without
 * them is refused when the client is made). The client keeps the
 * session up: when it drops (vswitchd restarted, socket closed, echo
 * keepalive timed out) it dials again with exponential backoff, and after
 * every successful handshake it calls `onConnect(conn)` — the place to replay
 * desired state (flows, groups, meters), because a restarted vswitchd has
 * none. `ready()` resolves with the current session once `onConnect` ran.
 */
import { EventEmitter } from "node:events";
import { createConnection, type Socket } from "node:net";
import { ConnectionError, UsageError, errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";
import { type SslFiles, connectSsl, describeSslFailure, isSslRefusal } from "../util/ssl.js";
import { OfConnection, type OfConnectionOptions } from "./connection.js";

const log = logger("openflow-client");

export type OfTarget = { kind: "unix"; path: string } | { kind: "tcp" | "ssl"; host: string; port: number };

/**
 * Parse `unix:/path`, `tcp:host:port` or `ssl:host:port` (ovs-ofctl's active
 * connection syntax); `ssl:` only when `ssl` files are given.
 */
export function parseTarget(s: string, ssl?: SslFiles): OfTarget {
  if (s.startsWith("unix:") && s.length > 5) return { kind: "unix", path: s.slice(5) };
  const m = /^(tcp|ssl):(\[[^\]]+\]|[^:]+):(\d+)$/.exec(s);
  if (m) {
    const port = Number(m[3]);
    const kind = m[1] as "tcp" | "ssl";
    if (kind === "ssl" && !ssl) {
      throw new UsageError(
        `OpenFlow target '${s}' needs SSL files: a private key, a certificate and the CA certificate ` +
          "that signed the switch's (agent config ssl.privateKey, ssl.certificate, ssl.caCert)",
        { target: s },
      );
    }
    if (port > 0 && port < 65536) return { kind, host: m[2]!.replace(/^\[|\]$/g, ""), port };
  }
  throw new UsageError(`OpenFlow target '${s}' is not unix:<path>, tcp:<host>:<port> or ssl:<host>:<port>`, {
    target: s,
  });
}

export interface OfDialOptions extends OfConnectionOptions {
  /** OVS's SSL files, for `ssl:` targets. */
  ssl?: SslFiles;
}

/** Dial once and handshake. */
export async function connectOpenFlow(target: string, opts: OfDialOptions = {}): Promise<OfConnection> {
  const { ssl, ...connOpts } = opts;
  const t = parseTarget(target, ssl);
  let socket: Socket;
  if (t.kind === "ssl") socket = await connectSsl(t.host, t.port, ssl!, target);
  else {
    socket = t.kind === "unix" ? createConnection(t.path) : createConnection(t.port, t.host);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", (err) =>
        reject(
          new ConnectionError(`cannot connect to ${target}: ${err.message}`, { target }, { cause: err }),
        ),
      );
    });
  }
  try {
    return await OfConnection.handshake(socket, { label: target, ...connOpts });
  } catch (err) {
    // TLS 1.3: the switch refuses our certificate after our half of the handshake
    const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
    if (t.kind === "ssl" && isSslRefusal(cause)) {
      throw new ConnectionError(`${target}: ${describeSslFailure(cause)}`, { target }, { cause: err });
    }
    throw err;
  }
}

export interface OfClientOptions extends OfDialOptions {
  /** Called after every (re)connect, before `ready()` resolves: replay state here. */
  onConnect?: (conn: OfConnection) => Promise<void>;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface OfClientEvents {
  connected: [OfConnection];
  disconnected: [Error | undefined];
  /** A dial, handshake or onConnect failed; the client retries. */
  retry: [Error, number];
}

export class OfClient extends EventEmitter<OfClientEvents> {
  private conn: OfConnection | undefined;
  private stopped = false;
  private waiters: ((c: OfConnection) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private backoff: number;
  /** How many sessions were established (1 = first connect). */
  connects = 0;

  constructor(
    readonly target: string,
    private readonly opts: OfClientOptions = {},
  ) {
    super();
    parseTarget(target, opts.ssl);
    this.backoff = opts.minBackoffMs ?? 100;
  }

  /** Start dialling; resolves with the first ready session. */
  start(): Promise<OfConnection> {
    void this.dial();
    return this.ready();
  }

  /** The current session once it is up and onConnect has run. */
  ready(): Promise<OfConnection> {
    if (this.conn?.isOpen) return Promise.resolve(this.conn);
    if (this.stopped) return Promise.reject(new ConnectionError(`${this.target}: client stopped`));
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  get connection(): OfConnection | undefined {
    return this.conn?.isOpen ? this.conn : undefined;
  }

  private async dial(): Promise<void> {
    if (this.stopped) return;
    let conn: OfConnection | undefined;
    try {
      conn = await connectOpenFlow(this.target, this.opts);
      if (this.stopped) {
        conn.close();
        return;
      }
      await this.opts.onConnect?.(conn);
      if (!conn.isOpen) throw new ConnectionError(`${this.target}: session closed during onConnect`);
    } catch (err) {
      conn?.destroy();
      const e = err instanceof Error ? err : new Error(String(err));
      log.debug(
        { target: this.target, err: errorMessage(err), backoffMs: this.backoff },
        "OpenFlow dial failed",
      );
      this.emit("retry", e, this.backoff);
      this.schedule();
      return;
    }
    this.backoff = this.opts.minBackoffMs ?? 100;
    this.conn = conn;
    this.connects++;
    conn.once("close", (err) => {
      if (this.conn === conn) this.conn = undefined;
      this.emit("disconnected", err);
      if (!this.stopped) {
        log.info({ target: this.target, err: err?.message }, "OpenFlow session lost, reconnecting");
        this.schedule();
      }
    });
    this.emit("connected", conn);
    for (const w of this.waiters.splice(0)) w(conn);
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 5000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.dial();
    }, delay);
  }

  /** Stop reconnecting and close the session. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.conn?.close();
    this.conn = undefined;
  }
}
