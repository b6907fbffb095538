/**
 * JSON-RPC 1.0 over a stream socket, as OVSDB speaks it (RFC 7047 §4):
 * requests {method, params, id}, responses {result, error, id}, notifications
 * {method, params, id: null}; both peers may send requests.
 *
 * The connection answers the peer's "echo" itself and runs its own keepalive
 * the way OVS's reconnect FSM does: after `probeIntervalMs` with nothing
 * received it sends an echo; if another interval passes with still nothing, the
 * peer is declared dead and every pending request fails with a ConnectionError.
 * A framing error (DecodeError) closes the connection cleanly as well; nothing
 * throws out of a socket callback.
 *
 * Remotes use OVS's syntax: `unix:/path/db.sock`, `tcp:127.0.0.1:6640`,
 * `tcp:[::1]:6640`, and `ssl:HOST:PORT` for an ovsdb-server listening with
 * `--remote=pssl:PORT` (or `ovs-vsctl set-manager pssl:PORT`). An `ssl:`
 * remote needs OVS's three SSL files (`ssl`: private key, certificate, CA
 * certificate; src/util/ssl.ts); without them it is refused at once, as are
 * the passive forms (`pssl:`, `ptcp:`, `punix:`) — flowdrake dials.
 */
import { EventEmitter } from "node:events";
import { type Socket, createConnection } from "node:net";
import { ConnectionError, DecodeError, UsageError } from "../util/errors.js";
import { type Logger, logger } from "../util/log.js";
import { type SslFiles, connectSsl, describeSslFailure } from "../util/ssl.js";
import { JsonFramer, type FramerOptions } from "./framer.js";
import { OvsdbRpcError } from "./errors.js";

export type Remote = { kind: "unix"; path: string } | { kind: "tcp" | "ssl"; host: string; port: number };

/**
 * Parse a remote; `ssl` is what an `ssl:` remote will use — without it such
 * a remote is refused here, before any connection attempt.
 */
export function parseRemote(remote: string, ssl?: SslFiles): Remote {
  if (remote.startsWith("unix:")) {
    const path = remote.slice(5);
    if (!path) throw new UsageError(`empty unix socket path in remote '${remote}'`);
    return { kind: "unix", path };
  }
  const kind = /^(tcp|ssl):/.exec(remote)?.[1] as "tcp" | "ssl" | undefined;
  if (kind) {
    const rest = remote.slice(4);
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(rest) ?? /^([^:]+):(\d+)$/.exec(rest);
    const port = m ? Number(m[2]) : NaN;
    if (!m || !(port > 0 && port < 65536)) {
      throw new UsageError(`bad ${kind} remote '${remote}' (expected ${kind}:HOST:PORT)`, { remote });
    }
    if (kind === "ssl" && !ssl) {
      throw new UsageError(
        `OVSDB remote '${remote}' needs SSL files: a private key, a certificate and the CA certificate ` +
          "that signed ovsdb-server's (agent config ssl.privateKey, ssl.certificate, ssl.caCert); " +
          "or use unix:PATH (the default) or tcp:HOST:PORT",
        { remote },
      );
    }
    return { kind, host: m[1]!, port };
  }
  if (/^p(ssl|tcp|unix):/.test(remote)) {
    throw new UsageError(
      `OVSDB remote '${remote}' is a passive (listening) form: flowdrake connects to ovsdb-server, ` +
        "so give the active form (unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT)",
      { remote },
    );
  }
  throw new UsageError(
    `unsupported OVSDB remote '${remote}' (expected unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT)`,
    { remote },
  );
}

export interface JsonRpcOptions extends FramerOptions {
  /** Keepalive interval; 0 disables our own probes (default 5000 ms, OVS's default). */
  probeIntervalMs?: number;
  /** Connect timeout (default 5000 ms). */
  connectTimeoutMs?: number;
  /** OVS's SSL files, for `ssl:` remotes. */
  ssl?: SslFiles;
  log?: Logger;
}

interface Pending {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export interface JsonRpcConnectionEvents {
  notification: [method: string, params: unknown[]];
  close: [error: Error | undefined];
}

export class JsonRpcConnection extends EventEmitter<JsonRpcConnectionEvents> {
  private readonly framer: JsonFramer;
  private readonly pending = new Map<number | string, Pending>();
  private nextId = 1;
  private closed = false;
  private closeError: Error | undefined;
  private rxSinceTick = false;
  private probeOutstanding = false;
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  /** Handlers for requests the peer sends us, by method; echo is built in. */
  readonly handlers = new Map<string, (params: unknown[]) => unknown>();
  /** How many of the peer's echo requests we answered. */
  echoesAnswered = 0;

  private constructor(
    private readonly socket: Socket,
    readonly remote: string,
    opts: JsonRpcOptions,
  ) {
    super();
    this.log = opts.log ?? logger("ovsdb", { remote });
    this.framer = new JsonFramer(opts);
    this.handlers.set("echo", (params) => params);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    const tls = remote.startsWith("ssl:");
    socket.on("error", (err) =>
      this.shutdown(
        new ConnectionError(
          `ovsdb ${remote}: ${tls ? describeSslFailure(err) : err.message}`,
          { remote },
          { cause: err },
        ),
      ),
    );
    socket.on("close", () =>
      this.shutdown(
        this.framer.end() ?? new ConnectionError(`ovsdb ${remote}: connection closed by peer`, { remote }),
      ),
    );
    const interval = opts.probeIntervalMs ?? 5000;
    if (interval > 0) {
      this.probeTimer = setInterval(() => this.tick(interval), interval);
      this.probeTimer.unref();
    }
  }

  static async connect(remote: string, opts: JsonRpcOptions = {}): Promise<JsonRpcConnection> {
    const r = parseRemote(remote, opts.ssl);
    if (r.kind === "ssl") {
      const socket = await connectSsl(r.host, r.port, opts.ssl!, `ovsdb ${remote}`, opts.connectTimeoutMs);
      socket.setNoDelay(true);
      return new JsonRpcConnection(socket, remote, opts);
    }
    return new Promise((resolve, reject) => {
      const socket =
        r.kind === "unix"
          ? createConnection({ path: r.path })
          : createConnection({ host: r.host, port: r.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionError(`ovsdb ${remote}: connect timed out`, { remote }));
      }, opts.connectTimeoutMs ?? 5000);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(new ConnectionError(`ovsdb ${remote}: ${err.message}`, { remote }, { cause: err }));
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        socket.setNoDelay(true);
        resolve(new JsonRpcConnection(socket, remote, opts));
      });
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Send a request; resolves with `result`, rejects with OvsdbRpcError or ConnectionError. */
  request(method: string, params: unknown[]): Promise<unknown> {
    return this.requestWithId(method, params).result;
  }

  /** Like request(), but also returns the id (for "cancel"). */
  requestWithId(method: string, params: unknown[]): { id: number; result: Promise<unknown> } {
    const id = this.nextId++;
    const result = new Promise<unknown>((resolve, reject) => {
      if (this.closed) {
        reject(this.closeError ?? new ConnectionError(`ovsdb ${this.remote}: connection closed`, {}));
        return;
      }
      this.pending.set(id, { method, resolve, reject });
      this.send({ method, params, id });
    });
    return { id, result };
  }

  notify(method: string, params: unknown[]): void {
    if (!this.closed) this.send({ method, params, id: null });
  }

  close(): void {
    this.shutdown(undefined);
  }

  private send(msg: object): void {
    this.socket.write(JSON.stringify(msg));
  }

  private tick(interval: number): void {
    if (this.closed) return;
    if (this.rxSinceTick) {
      this.rxSinceTick = false;
      this.probeOutstanding = false;
      return;
    }
    if (this.probeOutstanding) {
      this.log.warn({ intervalMs: interval }, "ovsdb peer did not answer the echo probe; closing");
      this.shutdown(
        new ConnectionError(`ovsdb ${this.remote}: no reply to echo within ${interval} ms`, {
          remote: this.remote,
          intervalMs: interval,
        }),
      );
      return;
    }
    this.probeOutstanding = true;
    this.requestWithId("echo", []).result.catch(() => undefined);
  }

  private onData(chunk: Buffer): void {
    this.rxSinceTick = true;
    const { messages, error } = this.framer.push(chunk);
    for (const m of messages) {
      if (this.closed) return;
      this.dispatch(m);
    }
    if (error) {
      this.log.warn({ err: error.message, context: error.context }, "ovsdb stream is malformed; closing");
      this.shutdown(error);
    }
  }

  private dispatch(msg: Record<string, unknown>): void {
    const { method, params, id } = msg;
    if (typeof method === "string") {
      const args = Array.isArray(params) ? params : [];
      if (id === null || id === undefined) {
        this.emit("notification", method, args);
        return;
      }
      const handler = this.handlers.get(method);
      if (!handler) {
        this.send({ result: null, error: { error: "unknown method", details: method }, id });
        return;
      }
      try {
        this.send({ result: handler(args) ?? null, error: null, id });
        if (method === "echo") this.echoesAnswered++;
      } catch (err) {
        this.send({ result: null, error: { error: String(err) }, id });
      }
      return;
    }
    if (!("id" in msg) || (typeof id !== "number" && typeof id !== "string")) {
      this.shutdown(new DecodeError("json-rpc message is neither a request nor a response", { msg }));
      return;
    }
    const p = this.pending.get(id);
    if (!p) {
      this.log.debug({ id }, "ovsdb response to an unknown request id");
      return;
    }
    this.pending.delete(id);
    if (msg.error !== null && msg.error !== undefined) p.reject(new OvsdbRpcError(p.method, msg.error));
    else p.resolve(msg.result);
  }

  private shutdown(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError =
      error ?? new ConnectionError(`ovsdb ${this.remote}: connection closed`, { remote: this.remote });
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.socket.destroy();
    for (const p of this.pending.values()) p.reject(this.closeError);
    this.pending.clear();
    if (error) this.log.info({ err: error.message }, "ovsdb connection closed");
    this.emit("close", error);
  }
}
