/**
 * The embedded NB store, shared: the process that holds a data directory (the
 * agent, the demo) serves the NbStore interface on a unix socket inside it,
 * `DIR/nb.sock`, and every other flowdrake process that opens `embedded:DIR`
 * meanwhile (the `nb` CLI, `nb apply`, a script) gets `ServedStoreClient`, a
 * driver that forwards each call there. The directory keeps one writer — the
 * holder's log, its mutexes, its lease clock — and many users, as an OVN
 * operator expects of a running northbound database.
 *
 * Why serving the NbStore contract is enough: the NB API (validation,
 * referential integrity, IPAM, per-tenant locks) runs in the client process on
 * top of NbStore, exactly as it does over etcd. What must hold across the
 * socket is the store's own contract — guarded transactions that fail with a
 * ConflictError naming the op, watches in revision order that resume without
 * gaps, mutual exclusion, leases — and the typed errors the CLI turns into exit
 * codes. The conformance suite runs against this driver to prove it.
 *
 * Protocol: JSON lines over `node:net`, one JSON document per `\n`.
 *
 *   server → client, once on connect
 *     {"t":"hello","proto":"flowdrake-nb/1","pid":1234,"driver":"embedded","dir":"/var/lib/flowdrake/nb"}
 *   client → server, a call
 *     {"id":7,"m":"txn","p":{"ops":[…TxnOp]}}
 *   server → client, its answer (in completion order, matched by id)
 *     {"t":"r","id":7,"ok":true,"r":{"revision":42,"versions":[3]}}
 *     {"t":"r","id":7,"ok":false,"err":{"type":"conflict","message":"…","kind":"lport","key":"p1",…}}
 *   server → client, for a watch the client opened (`w` is the client's id)
 *     {"t":"ev","w":3,"evs":[…WatchEvent]}      whole transactions, in revision order
 *     {"t":"resync","w":3,"rev":42}              the history did not reach back far enough
 *
 * Calls: get {kind,key} → StoredObject | null · list {kind} · revision {} ·
 * txn {ops} · watch {w, fromRevision?, kinds?} → {rev} · unwatch {w} ·
 * lock {name, timeoutMs?} → {token} · unlock {token} · grant {ttl} → {id} ·
 * keepalive {id} · revoke {id}. Objects, ops and events travel as their JSON,
 * unchanged, so any field a StoredObject carries reaches the client. Errors
 * travel typed (ConflictError, LockTimeoutError, StoreError, UsageError, and
 * the model's ValidationError and NotFoundError) with their message and
 * fields, so a client's CLI prints the same line and exits with the same code
 * as the holder would; any other failure arrives as a StoreError.
 *
 * Failures:
 *   - The client rejects every call still in flight with a StoreError (exit 5)
 *     as soon as the connection closes, and gives up on a call the server has
 *     not answered within its deadline (30 s; a lock call: its timeout + 30 s),
 *     so a dead or stopped holder never hangs a caller.
 *   - The next call after a lost connection connects again (once; a StoreError
 *     if nobody serves the directory). Open watches reconnect in the background
 *     until a holder serves again and resume after the last revision they
 *     received, or are told to resync — the etcd driver's semantics.
 *   - A lock a client took lives on its connection: when that connection
 *     closes (the client exited, crashed or was killed) the server releases it
 *     at once. A lease a client granted is refreshed by that client's own
 *     keepalive calls (every ttl/3 unless `keepAlive: false`); when the client
 *     is gone the refreshes stop and the lease expires `ttl` seconds after the
 *     last one, as a crashed etcd client's does.
 *   - The server disconnects a client that stops reading while its unsent
 *     output exceeds 64 MiB; that client's watches reconnect and resume.
 *
 * Who may connect: the socket is created with mode 0600 inside a private
 * (0700) scratch directory and only then renamed to `DIR/nb.sock`, so at no
 * moment can another user connect to it: only the holder's user (and root)
 * can. Those are the users who could already write the store's files in DIR
 * (the log and LOCK belong to that user), so the socket gives nobody a power
 * they did not have; the server does not authenticate further.
 *
 * Stale sockets: a holder killed with SIGKILL leaves `nb.sock` (and its pid in
 * LOCK) behind. Connecting to it is refused, the LOCK names a dead pid, so the
 * next process takes the directory over (src/nb/store/open.ts) and removes the
 * dead socket; a new server replaces any file at the path by rename.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { errorMessage, FlowdrakeError, UsageError } from "../../util/errors.js";
import { logger } from "../../util/log.js";
import { NotFoundError, ValidationError } from "../model/errors.js";
import { ConflictError, LockTimeoutError, StoreError } from "./errors.js";
import type {
  Kind,
  Lease,
  NbStore,
  StoredObject,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from "./types.js";

const log = logger("nb-served");

export const PROTOCOL = "flowdrake-nb/1";
/** The socket's name inside the data directory. */
export const SOCKET_FILE = "nb.sock";
/** Longest line either side accepts (a `list` of a very large kind is one line). */
const MAX_LINE_BYTES = 256 * 1024 * 1024;
/** Unsent output after which the server drops a client that stopped reading. */
const MAX_BACKLOG_BYTES = 64 * 1024 * 1024;
const HELLO_TIMEOUT_MS = 5_000;
const CALL_TIMEOUT_MS = 30_000;
/** The embedded store's own default lock wait (src/nb/store/embedded.ts). */
const DEFAULT_LOCK_WAIT_MS = 30_000;
/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const SUN_PATH_MAX = 107;

export function socketPathFor(dir: string): string {
  return path.join(dir, SOCKET_FILE);
}

// ---- wire ---------------------------------------------------------------------------

type Params = Record<string, unknown>;

interface Request {
  id: number;
  m: string;
  p?: Params;
}

interface Hello {
  t: "hello";
  proto: string;
  pid: number;
  driver: NbStore["driver"];
  dir?: string;
}

interface WireError {
  type: "conflict" | "lockTimeout" | "validation" | "notFound" | "usage" | "store";
  message: string;
  context?: Record<string, unknown>;
  kind?: string;
  key?: string;
  expectedVersion?: number;
  actualVersion?: number;
  field?: string;
  reason?: string;
  name?: string;
  timeoutMs?: number;
}

type ServerMessage =
  | Hello
  | { t: "r"; id: number; ok: true; r: unknown }
  | { t: "r"; id: number; ok: false; err: WireError }
  | { t: "ev"; w: number; evs: WatchEvent[] }
  | { t: "resync"; w: number; rev: number };

function encodeError(err: unknown): WireError {
  const context = err instanceof FlowdrakeError ? jsonSafe(err.context) : undefined;
  if (err instanceof ConflictError) {
    const e: WireError = {
      type: "conflict",
      message: err.message,
      kind: err.kind,
      key: err.key,
      actualVersion: err.actualVersion,
    };
    if (err.expectedVersion !== undefined) e.expectedVersion = err.expectedVersion;
    return e;
  }
  if (err instanceof LockTimeoutError) {
    return {
      type: "lockTimeout",
      message: err.message,
      name: String(err.context.name),
      timeoutMs: Number(err.context.timeoutMs),
    };
  }
  if (err instanceof ValidationError) {
    return {
      type: "validation",
      message: err.message,
      kind: err.kind,
      key: err.key,
      field: err.field,
      reason: err.reason,
    };
  }
  if (err instanceof NotFoundError)
    return { type: "notFound", message: err.message, kind: err.kind, key: err.key };
  if (err instanceof UsageError)
    return { type: "usage", message: err.message, ...(context ? { context } : {}) };
  if (err instanceof StoreError)
    return { type: "store", message: err.message, ...(context ? { context } : {}) };
  return { type: "store", message: `NB store server: ${errorMessage(err)}` };
}

function decodeError(e: WireError): Error {
  const s = (v: unknown): string => (typeof v === "string" ? v : "");
  switch (e.type) {
    case "conflict":
      return new ConflictError(
        e.message,
        s(e.kind),
        s(e.key),
        e.expectedVersion,
        Number(e.actualVersion ?? 0),
      );
    case "lockTimeout":
      return new LockTimeoutError(s(e.name), Number(e.timeoutMs ?? 0));
    case "validation":
      return new ValidationError(s(e.kind), s(e.key), s(e.field), s(e.reason));
    case "notFound":
      return new NotFoundError(s(e.kind), s(e.key));
    case "usage":
      return new UsageError(e.message, e.context ?? {});
    default:
      return new StoreError(String(e.message), e.context ?? {});
  }
}

function jsonSafe(context: Record<string, unknown>): Record<string, unknown> | undefined {
  try {
    return JSON.parse(JSON.stringify(context)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Splits a byte stream into `\n`-terminated lines (JSON never holds a raw newline). */
class LineReader {
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly onLine: (line: string) => void) {}

  /** Throws StoreError when a line grows past MAX_LINE_BYTES. */
  push(chunk: Buffer): void {
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf(0x0a, start)) >= 0) {
      const piece = chunk.subarray(start, nl);
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.size = 0;
      start = nl + 1;
      this.onLine(line.toString("utf8"));
    }
    if (start < chunk.length) {
      this.parts.push(chunk.subarray(start));
      this.size += chunk.length - start;
      if (this.size > MAX_LINE_BYTES) {
        throw new StoreError(`NB store socket: a line is longer than ${MAX_LINE_BYTES} bytes`);
      }
    }
  }
}

// ---- server -------------------------------------------------------------------------

export interface ServedStore {
  readonly path: string;
  /** Stop serving: remove the socket, disconnect every client, release their locks. */
  close(): Promise<void>;
}

interface HeldLock {
  release: () => void;
  done: Promise<unknown>;
}

/**
 * Serve `store` on a unix socket at `socketPath` (mode 0600). A live server
 * already answering there is an error; a dead one's socket file is replaced.
 * The caller keeps owning the store: closing the server does not close it.
 */
export async function serveStore(
  store: NbStore,
  socketPath: string,
  opts: { dir?: string } = {},
): Promise<ServedStore> {
  const scratchName = `.${SOCKET_FILE}-XXXXXX/s`;
  for (const p of [socketPath, path.join(path.dirname(socketPath), scratchName)]) {
    if (Buffer.byteLength(p) > SUN_PATH_MAX) {
      throw new StoreError(
        `cannot serve the NB store on ${socketPath}: a unix socket path is limited to ${SUN_PATH_MAX} bytes`,
        {
          socket: socketPath,
        },
      );
    }
  }
  const other = await ServedStoreClient.connect(socketPath).catch(() => undefined);
  if (other) {
    const pid = other.serverPid;
    await other.close();
    throw new StoreError(`${socketPath} is already served by process ${pid}`, { socket: socketPath, pid });
  }

  const conns = new Set<ServerConn>();
  const hello: Hello = { t: "hello", proto: PROTOCOL, pid: process.pid, driver: store.driver };
  if (opts.dir !== undefined) hello.dir = opts.dir;
  const server = net.createServer((sock) => {
    const c = new ServerConn(store, sock, hello, () => conns.delete(c));
    conns.add(c);
  });
  server.on("error", (err) => log.error({ err, socket: socketPath }, "NB store server error"));

  let scratch: string;
  try {
    scratch = fs.mkdtempSync(path.join(path.dirname(socketPath), `.${SOCKET_FILE}-`));
  } catch (err) {
    throw new StoreError(`cannot serve the NB store on ${socketPath}: ${errorMessage(err)}`, {
      socket: socketPath,
    });
  }
  const tmpSock = path.join(scratch, "s");
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(tmpSock, () => {
        server.off("error", reject);
        resolve();
      });
    });
    fs.chmodSync(tmpSock, 0o600);
    fs.renameSync(tmpSock, socketPath);
  } catch (err) {
    server.close();
    throw new StoreError(`cannot serve the NB store on ${socketPath}: ${errorMessage(err)}`, {
      socket: socketPath,
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  server.unref();
  log.info({ socket: socketPath }, "serving the NB store");

  let closed = false;
  return {
    path: socketPath,
    close: async () => {
      if (closed) return;
      closed = true;
      const stopped = new Promise<void>((r) => server.close(() => r()));
      try {
        const st = fs.lstatSync(socketPath);
        if (st.isSocket()) fs.rmSync(socketPath, { force: true });
      } catch {
        // already gone
      }
      await Promise.all([...conns].map((c) => c.shutdown()));
      await stopped;
    },
  };
}

/** One client connection, with the watches, locks and leases it opened. */
class ServerConn {
  private readonly watches = new Map<number, Watch>();
  private readonly locks = new Map<number, HeldLock>();
  private readonly leases = new Map<string, Lease>();
  private nextToken = 1;
  private closed = false;
  private cleaned: Promise<void> | undefined;

  constructor(
    private readonly store: NbStore,
    private readonly sock: net.Socket,
    hello: Hello,
    private readonly onGone: () => void,
  ) {
    sock.unref();
    const reader = new LineReader((line) => this.onLine(line));
    sock.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        log.warn({ err: errorMessage(err) }, "NB store client sent an oversized line: disconnecting it");
        sock.destroy();
      }
    });
    sock.on("error", (err) => log.debug({ err: errorMessage(err) }, "NB store client connection error"));
    sock.on("close", () => void this.cleanup());
    this.send(hello);
  }

  /** Disconnect and release everything this client held. */
  async shutdown(): Promise<void> {
    this.sock.destroy();
    await this.cleanup();
  }

  private cleanup(): Promise<void> {
    this.cleaned ??= (async () => {
      this.closed = true;
      for (const w of this.watches.values()) await w.close().catch(() => undefined);
      this.watches.clear();
      for (const l of this.locks.values()) l.release();
      await Promise.all([...this.locks.values()].map((l) => l.done.catch(() => undefined)));
      if (this.locks.size || this.leases.size) {
        log.info(
          { locks: this.locks.size, leases: [...this.leases.keys()] },
          "NB store client gone: its locks are released, its leases expire unless refreshed",
        );
      }
      this.locks.clear();
      this.leases.clear();
      this.onGone();
    })();
    return this.cleaned;
  }

  private send(msg: ServerMessage): void {
    if (this.closed || this.sock.destroyed) return;
    let line: string;
    try {
      line = `${JSON.stringify(msg)}\n`;
    } catch (err) {
      if (msg.t !== "r") throw err;
      line = `${JSON.stringify({ t: "r", id: msg.id, ok: false, err: encodeError(err) })}\n`;
    }
    if (this.sock.writableLength > MAX_BACKLOG_BYTES) {
      log.warn({ backlog: this.sock.writableLength }, "NB store client stopped reading: disconnecting it");
      this.sock.destroy();
      return;
    }
    this.sock.write(line);
  }

  private onLine(line: string): void {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
      if (typeof req !== "object" || req === null || typeof req.id !== "number" || typeof req.m !== "string")
        throw new Error("not a call");
    } catch (err) {
      log.warn({ err: errorMessage(err) }, "NB store client sent a malformed line: disconnecting it");
      this.sock.destroy();
      return;
    }
    void this.dispatch(req.m, req.p ?? {}).then(
      (r) => this.send({ t: "r", id: req.id, ok: true, r: r ?? null }),
      (err: unknown) => this.send({ t: "r", id: req.id, ok: false, err: encodeError(err) }),
    );
  }

  private async dispatch(m: string, p: Params): Promise<unknown> {
    const st = this.store;
    switch (m) {
      case "get":
        return (await st.get(str(p.kind), str(p.key))) ?? null;
      case "list":
        return st.list(str(p.kind));
      case "revision":
        return st.revision();
      case "txn":
        if (!Array.isArray(p.ops)) throw new StoreError("txn: ops must be an array");
        return st.txn(p.ops as TxnOp[]);
      case "watch":
        return this.watch(p);
      case "unwatch": {
        const w = this.watches.get(Number(p.w));
        this.watches.delete(Number(p.w));
        await w?.close();
        return null;
      }
      case "lock":
        return this.lock(str(p.name), typeof p.timeoutMs === "number" ? p.timeoutMs : undefined);
      case "unlock": {
        const l = this.locks.get(Number(p.token));
        if (!l) return { released: false };
        this.locks.delete(Number(p.token));
        l.release();
        await l.done.catch(() => undefined);
        return { released: true };
      }
      case "grant": {
        const lease = await st.grantLease(Number(p.ttl), { keepAlive: false });
        if (this.closed) return null;
        this.leases.set(lease.id, lease);
        return { id: lease.id };
      }
      case "keepalive": {
        const lease = this.leases.get(str(p.id));
        if (!lease) throw new StoreError(`lease ${str(p.id)} has expired or was revoked`, { lease: p.id });
        try {
          await lease.keepAlive();
        } catch (err) {
          this.leases.delete(lease.id);
          throw err;
        }
        return null;
      }
      case "revoke": {
        const lease = this.leases.get(str(p.id));
        this.leases.delete(str(p.id));
        await lease?.revoke();
        return null;
      }
      default:
        throw new StoreError(`NB store server: unknown call "${m}"`, { call: m });
    }
  }

  private async watch(p: Params): Promise<{ rev: number }> {
    const w = Number(p.w);
    if (!Number.isInteger(w) || this.watches.has(w))
      throw new StoreError(`watch id ${String(p.w)} is not usable`);
    const fromRevision = typeof p.fromRevision === "number" ? p.fromRevision : await this.store.revision();
    let batch: WatchEvent[] = [];
    const flush = (): void => {
      if (batch.length === 0) return;
      this.send({ t: "ev", w, evs: batch });
      batch = [];
    };
    const opts: WatchOptions = {
      fromRevision,
      onResync: (rev) => {
        flush();
        this.send({ t: "resync", w, rev });
      },
    };
    if (Array.isArray(p.kinds)) opts.kinds = p.kinds.map(String);
    // the store hands over all events of a transaction in one synchronous run:
    // sending the batch from a microtask keeps every line whole transactions
    const watch = await this.store.watch(opts, (ev) => {
      if (batch.length === 0) queueMicrotask(flush);
      batch.push(ev);
    });
    if (this.closed) {
      await watch.close();
      throw new StoreError("connection closed");
    }
    this.watches.set(w, watch);
    return { rev: fromRevision };
  }

  private async lock(name: string, timeoutMs: number | undefined): Promise<{ token: number }> {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let acquired!: () => void;
    const got = new Promise<void>((r) => (acquired = r));
    const done = this.store.withLock(
      name,
      async () => {
        acquired();
        await gate;
      },
      timeoutMs === undefined ? {} : { timeoutMs },
    );
    done.catch(() => undefined);
    await Promise.race([got, done]);
    if (this.closed) {
      release();
      await done.catch(() => undefined);
      throw new StoreError("connection closed");
    }
    const token = this.nextToken++;
    this.locks.set(token, { release, done });
    return { token };
  }
}

function str(v: unknown): string {
  if (typeof v !== "string")
    throw new StoreError(`NB store server: expected a string, got ${JSON.stringify(v)}`);
  return v;
}

// ---- client -------------------------------------------------------------------------

interface Pending {
  m: string;
  resolve: (r: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** One connection to a server; dies with its socket (the driver makes a new one). */
class ClientConn {
  closed = false;
  private readonly pending = new Map<number, Pending>();
  /** Lock calls given up on: a late grant is released at once. */
  private readonly abandoned = new Set<number>();
  private nextId = 1;

  private constructor(
    private readonly sock: net.Socket,
    readonly hello: Hello,
    readonly socketPath: string,
    private readonly onMessage: (msg: ServerMessage) => void,
    private readonly onClose: (conn: ClientConn) => void,
  ) {}

  /**
   * Connect and read the hello; undefined when nothing serves at `socketPath`
   * (no socket, a dead holder's socket, or a server closing as we connect).
   */
  static open(
    socketPath: string,
    onMessage: (msg: ServerMessage) => void,
    onClose: (conn: ClientConn) => void,
  ): Promise<ClientConn | undefined> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      let conn: ClientConn | undefined;
      let settled = false;
      const fail = (err: Error | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(undefined);
      };
      const timer = setTimeout(
        () =>
          fail(
            new StoreError(
              `NB store server at ${socketPath} did not say hello within ${HELLO_TIMEOUT_MS} ms`,
            ),
          ),
        HELLO_TIMEOUT_MS,
      );
      const reader = new LineReader((line) => {
        let msg: ServerMessage;
        try {
          msg = JSON.parse(line) as ServerMessage;
        } catch {
          if (conn) conn.drop(new StoreError(`NB store server at ${socketPath} sent a malformed line`));
          else fail(new StoreError(`${socketPath} does not speak ${PROTOCOL}`, { socket: socketPath }));
          return;
        }
        if (conn) {
          conn.onLine(msg);
          return;
        }
        if (msg.t !== "hello" || msg.proto !== PROTOCOL) {
          fail(
            new StoreError(
              `${socketPath} speaks ${msg.t === "hello" ? msg.proto : "an unknown protocol"}, not ${PROTOCOL} (a different flowdrake version?)`,
              { socket: socketPath },
            ),
          );
          return;
        }
        settled = true;
        clearTimeout(timer);
        conn = new ClientConn(sock, msg, socketPath, onMessage, onClose);
        sock.unref();
        resolve(conn);
      });
      sock.on("data", (chunk: Buffer) => {
        try {
          reader.push(chunk);
        } catch (err) {
          if (conn) conn.drop(err as Error);
          else fail(err as Error);
        }
      });
      sock.on("error", (err: NodeJS.ErrnoException) => {
        if (conn) return; // "close" follows
        if (["ENOENT", "ECONNREFUSED", "ENOTSOCK", "ECONNRESET", "EPIPE"].includes(err.code ?? "")) {
          fail(undefined);
        } else if (err.code === "EACCES" || err.code === "EPERM") {
          fail(
            new StoreError(
              `cannot connect to the NB store server ${socketPath}: permission denied (it serves only its own user; run as that user)`,
              { socket: socketPath },
            ),
          );
        } else {
          fail(
            new StoreError(`cannot connect to the NB store server ${socketPath}: ${err.message}`, {
              socket: socketPath,
            }),
          );
        }
      });
      sock.on("close", () => {
        if (conn) conn.drop(new StoreError(ClientConn.goneMessage(socketPath, conn.hello.pid)));
        else fail(undefined); // a server shutting down: as good as none
      });
    });
  }

  private static goneMessage(socketPath: string, pid: number): string {
    return `the NB store server (process ${pid}, ${socketPath}) went away`;
  }

  call(m: string, p: Params, timeoutMs = CALL_TIMEOUT_MS): Promise<unknown> {
    if (this.closed) {
      return Promise.reject(
        new StoreError(`${ClientConn.goneMessage(this.socketPath, this.hello.pid)} (${m})`),
      );
    }
    const id = this.nextId++;
    let line: string;
    try {
      line = `${JSON.stringify({ id, m, p })}\n`;
    } catch (err) {
      return Promise.reject(new StoreError(`${m}: arguments are not JSON: ${errorMessage(err)}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        if (m === "lock") this.abandoned.add(id);
        this.refresh();
        reject(
          new StoreError(
            `the NB store server (process ${this.hello.pid}) did not answer ${m} within ${timeoutMs} ms${m === "txn" ? "; the transaction may or may not have committed" : ""}`,
            { socket: this.socketPath, call: m },
          ),
        );
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { m, resolve, reject, timer });
      this.refresh();
      this.sock.write(line);
    });
  }

  private onLine(msg: ServerMessage): void {
    if (msg.t !== "r") {
      this.onMessage(msg);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) {
      if (this.abandoned.delete(msg.id) && msg.ok) {
        const token = (msg.r as { token?: number } | null)?.token;
        void this.call("unlock", { token }).catch(() => undefined);
      }
      return;
    }
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    this.refresh();
    if (msg.ok) p.resolve(msg.r);
    else p.reject(decodeError(msg.err));
  }

  /** Keep the process alive only while a call waits for its answer. */
  private refresh(): void {
    if (this.pending.size > 0) this.sock.ref();
    else this.sock.unref();
  }

  /** The connection is over: fail what is in flight, tell the driver. */
  drop(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new StoreError(`${err.message} during ${p.m}`, { socket: this.socketPath, call: p.m }));
    }
    this.pending.clear();
    this.onClose(this);
  }
}

interface ClientWatch {
  id: number;
  kinds?: Kind[];
  onEvent: (ev: WatchEvent) => void;
  onResync?: (rev: number) => void;
  /** Highest revision received (the resume point after a reconnect). */
  received: number;
  queue: (WatchEvent | { resync: number })[];
  scheduled: boolean;
  closed: boolean;
  conn: ClientConn | undefined;
}

const sleep = (ms: number): Promise<void> =>
  new Promise((r) => {
    const t = setTimeout(r, ms);
    t.unref();
  });

/**
 * The NbStore driver for a store another process serves (see the module
 * comment). `connect` answers undefined when nothing listens at the path.
 */
export class ServedStoreClient implements NbStore {
  readonly driver: NbStore["driver"];
  /** The data directory the server holds. */
  readonly dir: string;
  private readonly firstPid: number;
  private conn: ClientConn | undefined;
  private connecting: Promise<ClientConn> | undefined;
  private readonly watches = new Map<number, ClientWatch>();
  private readonly leaseTimers = new Set<NodeJS.Timeout>();
  private nextWatch = 1;
  private resuming = false;
  private closed = false;

  private constructor(
    readonly socketPath: string,
    first: Hello,
  ) {
    this.driver = first.driver;
    this.dir = first.dir ?? path.dirname(socketPath);
    this.firstPid = first.pid;
  }

  static async connect(socketPath: string): Promise<ServedStoreClient | undefined> {
    const ref: { client?: ServedStoreClient } = {};
    const conn = await ClientConn.open(
      socketPath,
      (msg) => ref.client?.onServerMessage(msg),
      (c) => ref.client?.onConnClosed(c),
    );
    if (!conn) return undefined;
    const client = new ServedStoreClient(socketPath, conn.hello);
    client.conn = conn.closed ? undefined : conn;
    ref.client = client;
    return client;
  }

  /** The pid of the process serving the store (the holder of the data directory). */
  get serverPid(): number {
    return this.conn?.hello.pid ?? this.firstPid;
  }

  private async ensureConn(): Promise<ClientConn> {
    if (this.closed) throw new StoreError(`NB store ${this.dir} is closed`, { dir: this.dir });
    if (this.conn && !this.conn.closed) return this.conn;
    this.connecting ??= (async () => {
      try {
        const conn = await ClientConn.open(
          this.socketPath,
          (msg) => this.onServerMessage(msg),
          (c) => this.onConnClosed(c),
        );
        if (!conn) {
          throw new StoreError(
            `the NB store ${this.dir} is not served any more: nothing answers on ${this.socketPath} (its holder exited)`,
            { dir: this.dir, socket: this.socketPath },
          );
        }
        if (this.closed) {
          conn.drop(new StoreError("closed"));
          throw new StoreError(`NB store ${this.dir} is closed`, { dir: this.dir });
        }
        this.conn = conn;
        return conn;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  private async call(m: string, p: Params, timeoutMs?: number): Promise<unknown> {
    const conn = await this.ensureConn();
    return conn.call(m, p, timeoutMs);
  }

  // ---- reads and writes -----------------------------------------------------------

  async get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    const r = await this.call("get", { kind, key });
    return r === null ? undefined : (r as StoredObject);
  }

  async list(kind: Kind): Promise<StoredObject[]> {
    return (await this.call("list", { kind })) as StoredObject[];
  }

  async revision(): Promise<number> {
    return (await this.call("revision", {})) as number;
  }

  async txn(ops: TxnOp[]): Promise<TxnResult> {
    for (const op of ops) {
      if (op.op !== "put") continue;
      try {
        JSON.stringify(op.value ?? null);
      } catch (err) {
        throw new StoreError(`value of ${op.kind}/${op.key} is not JSON: ${errorMessage(err)}`, {
          kind: op.kind,
          key: op.key,
        });
      }
    }
    return (await this.call("txn", { ops })) as TxnResult;
  }

  // ---- watch ------------------------------------------------------------------------

  async watch(opts: WatchOptions, onEvent: (ev: WatchEvent) => void): Promise<Watch> {
    const conn = await this.ensureConn();
    const w: ClientWatch = {
      id: this.nextWatch++,
      onEvent,
      received: opts.fromRevision ?? -1,
      queue: [],
      scheduled: false,
      closed: false,
      conn,
    };
    if (opts.kinds) w.kinds = [...opts.kinds];
    if (opts.onResync) w.onResync = opts.onResync;
    this.watches.set(w.id, w);
    try {
      await this.subscribe(conn, w, opts.fromRevision);
    } catch (err) {
      this.watches.delete(w.id);
      throw err;
    }
    return {
      close: async () => {
        if (w.closed) return;
        w.closed = true;
        w.queue.length = 0;
        this.watches.delete(w.id);
        if (w.conn && !w.conn.closed) await w.conn.call("unwatch", { w: w.id }).catch(() => undefined);
      },
    };
  }

  private async subscribe(conn: ClientConn, w: ClientWatch, fromRevision: number | undefined): Promise<void> {
    const p: Params = { w: w.id };
    if (fromRevision !== undefined) p.fromRevision = fromRevision;
    if (w.kinds) p.kinds = w.kinds;
    w.conn = conn;
    const r = (await conn.call("watch", p)) as { rev: number };
    w.received = Math.max(w.received, r.rev);
  }

  private onServerMessage(msg: ServerMessage): void {
    if (msg.t !== "ev" && msg.t !== "resync") return;
    const w = this.watches.get(msg.w);
    if (!w || w.closed) return;
    if (msg.t === "ev") {
      for (const ev of msg.evs) {
        w.queue.push(ev);
        w.received = ev.revision;
      }
    } else {
      w.queue.push({ resync: msg.rev });
      w.received = msg.rev;
    }
    if (!w.scheduled) {
      w.scheduled = true;
      setImmediate(() => this.drain(w));
    }
  }

  private drain(w: ClientWatch): void {
    w.scheduled = false;
    while (!w.closed && w.queue.length > 0) {
      const item = w.queue.shift()!;
      try {
        if ("resync" in item) w.onResync?.(item.resync);
        else w.onEvent(item);
      } catch (err) {
        log.error({ err }, "watch callback threw");
      }
    }
  }

  private onConnClosed(conn: ClientConn): void {
    if (this.conn === conn) this.conn = undefined;
    if (this.closed) return;
    if ([...this.watches.values()].some((w) => w.conn === conn)) void this.resume();
  }

  /** Reconnect until a holder serves again, then resume every watch where it stopped. */
  private async resume(): Promise<void> {
    if (this.resuming) return;
    this.resuming = true;
    log.warn({ socket: this.socketPath }, "NB store server went away: watches will resume when it is back");
    try {
      for (let attempt = 0; !this.closed; attempt++) {
        const stale = [...this.watches.values()].filter((w) => !w.closed && (!w.conn || w.conn.closed));
        if (stale.length === 0) break;
        try {
          const conn = await this.ensureConn();
          for (const w of stale) if (!w.closed) await this.subscribe(conn, w, w.received);
          log.info(
            { socket: this.socketPath, watches: stale.length, pid: conn.hello.pid },
            "watches resumed",
          );
        } catch (err) {
          if (attempt % 25 === 0)
            log.warn(
              { err: errorMessage(err), socket: this.socketPath },
              "NB store not served yet, retrying",
            );
          await sleep(Math.min(50 * 2 ** Math.min(attempt, 5), 1000));
        }
      }
    } finally {
      this.resuming = false;
    }
  }

  // ---- locks and leases -------------------------------------------------------------

  async withLock<T>(name: string, fn: () => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
    const conn = await this.ensureConn();
    const p: Params = { name };
    if (opts.timeoutMs !== undefined) p.timeoutMs = opts.timeoutMs;
    const r = (await conn.call("lock", p, (opts.timeoutMs ?? DEFAULT_LOCK_WAIT_MS) + CALL_TIMEOUT_MS)) as {
      token: number;
    };
    try {
      return await fn();
    } finally {
      if (!conn.closed) {
        await conn
          .call("unlock", { token: r.token })
          .catch((err: unknown) => log.warn({ err: errorMessage(err), name }, "lock release failed"));
      }
    }
  }

  async grantLease(ttlSeconds: number, opts: { keepAlive?: boolean } = {}): Promise<Lease> {
    const conn = await this.ensureConn();
    const { id } = (await conn.call("grant", { ttl: ttlSeconds })) as { id: string };
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      if (!timer) return;
      clearInterval(timer);
      this.leaseTimers.delete(timer);
      timer = undefined;
    };
    if (opts.keepAlive ?? true) {
      timer = setInterval(
        () => {
          if (conn.closed) {
            log.warn({ lease: id }, "lease keepalive stopped: the NB store server went away");
            stop();
            return;
          }
          conn.call("keepalive", { id }).catch((err: unknown) => {
            log.warn({ lease: id, err: errorMessage(err) }, "lease lost");
            stop();
          });
        },
        Math.max(50, (ttlSeconds * 1000) / 3),
      );
      timer.unref();
      this.leaseTimers.add(timer);
    }
    return {
      id,
      ttlSeconds,
      keepAlive: async () => {
        if (this.closed) throw new StoreError(`NB store ${this.dir} is closed`, { dir: this.dir });
        await conn.call("keepalive", { id });
      },
      revoke: async () => {
        stop();
        if (this.closed) return;
        await conn.call("revoke", { id });
      },
    };
  }

  // ---- lifecycle --------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.leaseTimers) clearInterval(t);
    this.leaseTimers.clear();
    for (const w of this.watches.values()) {
      w.closed = true;
      w.queue.length = 0;
    }
    this.watches.clear();
    this.conn?.drop(new StoreError(`NB store ${this.dir} is closed`, { dir: this.dir }));
    this.conn = undefined;
  }
}

/**
 * A store this process holds and serves: every NbStore call goes to `inner`;
 * `close()` stops serving (clients see their calls fail with StoreError) and
 * then closes the store.
 */
export class ServingStore implements NbStore {
  readonly driver: NbStore["driver"];

  constructor(
    readonly inner: NbStore,
    readonly served: ServedStore,
  ) {
    this.driver = inner.driver;
  }

  get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    return this.inner.get(kind, key);
  }
  list(kind: Kind): Promise<StoredObject[]> {
    return this.inner.list(kind);
  }
  revision(): Promise<number> {
    return this.inner.revision();
  }
  txn(ops: TxnOp[]): Promise<TxnResult> {
    return this.inner.txn(ops);
  }
  watch(opts: WatchOptions, onEvent: (ev: WatchEvent) => void): Promise<Watch> {
    return this.inner.watch(opts, onEvent);
  }
  withLock<T>(name: string, fn: () => Promise<T>, opts?: { timeoutMs?: number }): Promise<T> {
    return this.inner.withLock(name, fn, opts);
  }
  grantLease(ttlSeconds: number, opts?: { keepAlive?: boolean }): Promise<Lease> {
    return this.inner.grantLease(ttlSeconds, opts);
  }
  async close(): Promise<void> {
    await this.served
      .close()
      .catch((err: unknown) => log.warn({ err }, "stopping the NB store server failed"));
    await this.inner.close();
  }
}

/** A socket file left at `socketPath` by a holder that died (call only while holding the directory). */
export function removeStaleSocket(socketPath: string): void {
  try {
    if (!fs.lstatSync(socketPath).isSocket()) return;
    fs.rmSync(socketPath, { force: true });
    log.info({ socket: socketPath }, "removed the socket of a dead NB store holder");
  } catch {
    // none there
  }
}
