/**
 * One OpenFlow 1.3 session over a stream socket (unix or TCP), either side of
 * who dialled: the switch (ovs-vswitchd) is always the peer.
 *
 *   socket bytes ─► OfFramer ─► decodeMessage ─┬─► echo_request: answered here
 *                                              ├─► reply/error with a pending xid: settles that request
 *                                              │   (multipart parts collected until no OFPMPF_MORE)
 *                                              └─► packet_in / port_status / flow_removed / errors for
 *                                                  fire-and-forget sends: typed events
 *
 * `OfConnection.handshake()` sends HELLO with a version bitmap offering 1.3,
 * checks the peer's HELLO (no common version: OFPET_HELLO_FAILED/INCOMPATIBLE
 * is sent and the handshake rejects with an OpenFlowError), then asks for the
 * features (datapath id). After that:
 *
 * - `request()` assigns an xid, waits for the matching reply with a timeout,
 *   and rejects with an OpenFlowError (named "OFPET_…/OFP…C_…") when the switch
 *   answers with an error. At most `maxInFlight` requests wait at once; more
 *   callers queue for a slot.
 * - `send()`/`sendAll()` are fire-and-forget (flow_mods): they resolve when the
 *   socket accepted the bytes and wait for 'drain' when it is full, so a
 *   producer of 100k flow_mods is paced by the switch instead of buffering
 *   them. Errors for them arrive as `of_error` events carrying their xid; a
 *   `barrier()` afterwards says everything before it was processed.
 * - Echo keepalive: when nothing arrived for `echoIntervalMs` an ECHO_REQUEST
 *   goes out; nothing at all for `deadAfterMs` means a dead peer, and the
 *   socket is destroyed with a ConnectionError.
 * - Bundles (ONF EXT-230 on 1.3): `bundle(msgs)` = open, add, commit (atomic,
 *   ordered); the commit rejects when any bundled message failed. A
 *   `draftBundle()` encodes its messages as they are added; `sendDraft()`
 *   writes it, open to commit, in one burst.
 *
 * A framing error (length < 8) or a stream that ends mid-message closes the
 * connection with a FramingError; a well-framed message whose body does not
 * decode is reported (`decode_error`) and skipped, and its request (if any)
 * rejected — the session survives. So does a listener that throws: it is
 * logged and counted (`listenerFailures`), and the next message is read as
 * usual. 'close' is emitted exactly once.
 */
import { EventEmitter, once } from "node:events";
import type { Socket } from "node:net";
import { ConnectionError, DecodeError, FlowdrakeError, errorFields, errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";
import { FramingError, OfFramer } from "./framing.js";
import {
  OFPBF,
  OFPCR_ROLE,
  OFPMPF_MORE,
  OFP_VERSION_1_3,
  decodeMessage,
  encodeMessage,
  readHeader,
  type MessageOf,
  type OfMessage,
  type PacketIn,
  type PacketIn2,
} from "./message.js";
import type { FlowStats, FlowStatsRequest, MultipartReplyBody, MultipartRequestBody } from "./multipart.js";
import { OFPT, errorName } from "./names.js";
import { OfWireWriter } from "./wire-writer.js";

const log = logger("openflow");

/** Bytes handed to the socket per write by sendAll/bundleAdd. */
const FLUSH_BYTES = 256 * 1024;

/** The switch answered with OFPT_ERROR. `errorName` is "OFPET_…/OFP…C_…". */
export class OpenFlowError extends FlowdrakeError {
  readonly errType: number;
  readonly errCode: number;
  readonly errorName: string;
  readonly xid: number;
  /** The type of the message that caused it, from the error's data (the offending request's header). */
  readonly requestType: string | undefined;

  constructor(msg: MessageOf<"error">, what?: string) {
    const name = errorName(msg.errType, msg.code, msg.experimenter);
    const reqType = msg.data.length >= 8 ? OFPT_NAMES.get(msg.data[1]!) : undefined;
    super("OPENFLOW_ERROR", `${what ? `${what}: ` : ""}switch answered ${name}`, {
      xid: msg.xid,
      errType: msg.errType,
      errCode: msg.code,
      requestType: reqType,
    });
    this.errType = msg.errType;
    this.errCode = msg.code;
    this.errorName = name;
    this.xid = msg.xid;
    this.requestType = reqType;
  }
}

const OFPT_NAMES = new Map<number, string>(Object.entries(OFPT).map(([k, v]) => [v, k.toLowerCase()]));

/** OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE. */
const OFPET_HELLO_FAILED = 0;
const OFPHFC_INCOMPATIBLE = 0;

type NoXid<M> = M extends unknown ? Omit<M, "xid"> & { xid?: number } : never;
/** A message to send; the connection assigns the xid when none is given. */
export type OfRequest = NoXid<OfMessage>;

export interface OfConnectionOptions {
  /** Versions offered in HELLO (default [4] = OpenFlow 1.3; only 1.3 is spoken). */
  versions?: number[];
  helloTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Send ECHO_REQUEST after this long without input (default 5 s; 0 = never). */
  echoIntervalMs?: number;
  /** Declare the peer dead after this long without input (default 3 × echoIntervalMs). */
  deadAfterMs?: number;
  /** Requests awaiting a reply at once (default 1024). */
  maxInFlight?: number;
  /** For logs. */
  label?: string;
}

export interface SwitchFeatures {
  datapathId: bigint;
  nBuffers: number;
  nTables: number;
  auxiliaryId: number;
  capabilities: number;
}

export interface OfConnectionEvents {
  packet_in: [PacketIn | PacketIn2];
  port_status: [MessageOf<"port_status">];
  flow_removed: [MessageOf<"flow_removed">];
  /** An error whose xid belongs to no pending request (e.g. a fire-and-forget flow_mod). */
  of_error: [OpenFlowError];
  /** A well-framed message that did not decode; the session goes on. */
  decode_error: [DecodeError];
  /** Any other unsolicited message. */
  message: [OfMessage];
  close: [Error | undefined];
}

interface Pending {
  resolve: (m: OfMessage | OfMessage[]) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  what: string;
  parts?: OfMessage[];
}

/** A draft's first buffer: a route-write window's bundle is tens of kilobytes (it grows if need be). */
const DRAFT_CHUNK = 256 * 1024;

/**
 * The messages of a bundle not yet sent (`OfConnection.draftBundle`), as the
 * bundle_add_messages that will carry them, each with the xid it is added
 * with.
 */
export class BundleDraft {
  private readonly w = new OfWireWriter(DRAFT_CHUNK);
  private error: unknown;
  private n = 0;

  constructor(
    readonly bundleId: number,
    readonly flags: number,
  ) {}

  /** How many messages were added. */
  get count(): number {
    return this.n;
  }

  /** Encode `msg` now, with `xid` (its own when not given). An error is kept for sendDraft. */
  add(msg: OfRequest, xid = msg.xid): void {
    if (xid === undefined) throw new FlowdrakeError("USAGE", "a drafted bundle message needs its xid");
    this.n++;
    if (this.error !== undefined) return;
    try {
      this.w.writeBundleAdd(this.bundleId, this.flags, msg, xid);
    } catch (err) {
      this.error = err;
    }
  }

  /** The bytes of every message added; throws the first encoding error instead. */
  take(): Buffer {
    if (this.error !== undefined) throw this.error;
    return this.w.take();
  }
}

export class OfConnection extends EventEmitter<OfConnectionEvents> {
  readonly label: string;
  version = OFP_VERSION_1_3;
  features!: SwitchFeatures;
  /** Messages and bytes received / sent, for stats and benchmarks. */
  readonly counters = { rxMessages: 0, txMessages: 0, rxBytes: 0, txBytes: 0 };
  /** Exceptions thrown by this session's listeners (logged; the session goes on). */
  listenerFailures = 0;

  private readonly framer = new OfFramer();
  /**
   * The bulk encoder of sendAll/bundleAdd, one per connection: a take() is a
   * view the writer never overwrites, so writers need not be per call, and a
   * one-flow_mod send (a packet-in's reactive flow) costs no chunk allocation
   * of its own — a fresh 1 MiB chunk per call made the agent's packet-in path
   * a garbage-collector workload.
   */
  private readonly writer = new OfWireWriter();
  private readonly pending = new Map<number, Pending>();
  private readonly slotWaiters: (() => void)[] = [];
  private nextXid = (Math.random() * 0x7fffffff) >>> 0;
  private nextBundleId = 1;
  private lastRx = Date.now();
  private keepalive: NodeJS.Timeout | undefined;
  private closed = false;
  private closeError: Error | undefined;
  private helloWaiter: ((m: MessageOf<"hello">) => void) | undefined;
  private readonly opts: Required<Omit<OfConnectionOptions, "label">>;

  private constructor(
    readonly socket: Socket,
    opts: OfConnectionOptions,
  ) {
    super();
    this.label = opts.label ?? "openflow";
    const echo = opts.echoIntervalMs ?? 5000;
    this.opts = {
      versions: opts.versions ?? [OFP_VERSION_1_3],
      helloTimeoutMs: opts.helloTimeoutMs ?? 5000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 30_000,
      echoIntervalMs: echo,
      deadAfterMs: opts.deadAfterMs ?? echo * 3,
      maxInFlight: opts.maxInFlight ?? 1024,
    };
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => {
      try {
        this.framer.end();
        this.shutdown(new ConnectionError(`${this.label}: peer closed the connection`));
      } catch (err) {
        this.shutdown(err as Error);
      }
    });
    socket.on("error", (err) =>
      this.shutdown(new ConnectionError(`${this.label}: ${err.message}`, {}, { cause: err })),
    );
    socket.on("close", () => this.shutdown(new ConnectionError(`${this.label}: connection closed`)));
  }

  /**
   * Negotiate the version and read the features on a connected socket. On
   * failure the socket is destroyed and the promise rejects (OpenFlowError for
   * an incompatible peer, ConnectionError/FramingError otherwise).
   */
  static async handshake(socket: Socket, opts: OfConnectionOptions = {}): Promise<OfConnection> {
    const conn = new OfConnection(socket, opts);
    try {
      await conn.negotiate();
      const f = (await conn.request({ type: "features_request" })) as MessageOf<"features_reply">;
      conn.features = {
        datapathId: f.datapathId,
        nBuffers: f.nBuffers,
        nTables: f.nTables,
        auxiliaryId: f.auxiliaryId,
        capabilities: f.capabilities,
      };
      conn.startKeepalive();
      log.debug({ conn: conn.label, dpid: f.datapathId.toString(16) }, "OpenFlow session up");
      return conn;
    } catch (err) {
      conn.destroy(err as Error);
      throw err;
    }
  }

  get isOpen(): boolean {
    return !this.closed;
  }
  get inFlight(): number {
    return this.pending.size;
  }

  private async negotiate(): Promise<void> {
    const hello = new Promise<MessageOf<"hello">>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new ConnectionError(`${this.label}: no HELLO within ${this.opts.helloTimeoutMs} ms`)),
        this.opts.helloTimeoutMs,
      );
      this.helloWaiter = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
      this.once("close", (err) => {
        clearTimeout(timer);
        reject(err ?? new ConnectionError(`${this.label}: closed before HELLO`));
      });
    });
    this.writeRaw(encodeMessage({ type: "hello", xid: this.allocXid(), versions: this.opts.versions }));
    const peer = await hello;
    const common = this.opts.versions.filter((v) => peer.versions.includes(v));
    if (!common.length) {
      const text = `flowdrake supports OpenFlow version(s) ${this.opts.versions.join(",")}, peer offers ${peer.versions.join(",") || "none"}`;
      const err: MessageOf<"error"> = {
        type: "error",
        xid: peer.xid,
        errType: OFPET_HELLO_FAILED,
        code: OFPHFC_INCOMPATIBLE,
        data: Buffer.from(text),
      };
      this.writeRaw(encodeMessage(err));
      this.socket.end();
      throw new OpenFlowError(err, `${this.label}: version negotiation failed (${text})`);
    }
    this.version = Math.max(...common);
  }

  private startKeepalive(): void {
    const every = this.opts.echoIntervalMs;
    if (!every) return;
    this.keepalive = setInterval(
      () => {
        const idle = Date.now() - this.lastRx;
        if (idle >= this.opts.deadAfterMs) {
          this.destroy(
            new ConnectionError(`${this.label}: peer silent for ${idle} ms (echo keepalive)`, { idle }),
          );
        } else if (idle >= every) {
          this.writeRaw(encodeMessage({ type: "echo_request", xid: this.allocXid(), data: Buffer.alloc(0) }));
        }
      },
      Math.max(50, Math.floor(every / 2)),
    );
    this.keepalive.unref();
  }

  allocXid(): number {
    this.nextXid = (this.nextXid + 1) >>> 0 || 1;
    return this.nextXid;
  }

  // ---- receive ----------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.lastRx = Date.now();
    this.counters.rxBytes += chunk.length;
    try {
      this.framer.push(chunk, (m) => this.receive(m));
    } catch (err) {
      if (err instanceof FramingError) this.destroy(err);
      else throw err;
    }
  }

  /**
   * One message, guarded: a listener that throws is a bug in that consumer, not
   * in the stream. It is logged and counted, and the session goes on with the
   * next message (the exception would otherwise leave the socket's data
   * handler: the rest of the chunk unread, the process's uncaught exception).
   */
  private receive(buf: Buffer): void {
    try {
      this.onMessage(buf);
    } catch (err) {
      this.listenerFailures++;
      log.error(
        { conn: this.label, ...errorFields(err) },
        "an OpenFlow session listener threw; the session goes on",
      );
    }
  }

  private onMessage(buf: Buffer): void {
    this.counters.rxMessages++;
    let msg: OfMessage;
    try {
      msg = decodeMessage(buf);
    } catch (err) {
      const h = readHeader(buf);
      const de =
        err instanceof DecodeError ? err : new DecodeError(`${this.label}: ${errorMessage(err)}`, { ...h });
      log.warn({ conn: this.label, err: de.message, ...h }, "undecodable OpenFlow message skipped");
      const p = this.pending.get(h.xid);
      if (p) this.settle(h.xid, p, undefined, de);
      else this.emit("decode_error", de);
      return;
    }
    switch (msg.type) {
      case "hello":
        this.helloWaiter?.(msg);
        this.helloWaiter = undefined;
        return;
      case "echo_request":
        this.writeRaw(encodeMessage({ type: "echo_reply", xid: msg.xid, data: msg.data }));
        return;
      case "packet_in":
      case "nx_packet_in2":
        this.emit("packet_in", msg);
        return;
      case "port_status":
        this.emit("port_status", msg);
        return;
      case "flow_removed":
        this.emit("flow_removed", msg);
        return;
    }
    const p = this.pending.get(msg.xid);
    if (msg.type === "error") {
      const err = new OpenFlowError(msg, p?.what);
      if (p) this.settle(msg.xid, p, undefined, err);
      else if (this.listenerCount("of_error")) this.emit("of_error", err);
      else log.warn({ conn: this.label, err: err.message, xid: msg.xid }, "unsolicited OpenFlow error");
      return;
    }
    if (!p) {
      if (msg.type !== "echo_reply") this.emit("message", msg);
      return;
    }
    if (msg.type === "multipart_reply") {
      (p.parts ??= []).push(msg);
      if (msg.flags & OFPMPF_MORE) return;
      this.settle(msg.xid, p, p.parts);
      return;
    }
    this.settle(msg.xid, p, msg);
  }

  private settle(xid: number, p: Pending, value: OfMessage | OfMessage[] | undefined, err?: Error): void {
    clearTimeout(p.timer);
    this.pending.delete(xid);
    this.slotWaiters.shift()?.();
    if (err) p.reject(err);
    else p.resolve(value!);
  }

  // ---- send -------------------------------------------------------------------------------------

  private writeRaw(buf: Buffer): boolean {
    if (this.closed) return true;
    this.counters.txBytes += buf.length;
    return this.socket.write(buf);
  }

  private withXid(m: OfRequest): OfMessage {
    return (m.xid === undefined ? { ...m, xid: this.allocXid() } : m) as OfMessage;
  }

  private async drained(): Promise<void> {
    if (this.closed) throw this.closedError();
    if (!this.socket.writableNeedDrain) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.socket.off("drain", done);
        this.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.on("close", done);
    });
    if (this.closed) throw this.closedError();
  }

  private closedError(): ConnectionError {
    return new ConnectionError(`${this.label}: connection is closed`, {}, { cause: this.closeError });
  }

  /** Send one message without waiting for an answer; resolves to its xid once the socket took it. */
  async send(m: OfRequest): Promise<number> {
    if (this.closed) throw this.closedError();
    const msg = this.withXid(m);
    this.counters.txMessages++;
    if (!this.writeRaw(encodeMessage(msg))) await this.drained();
    return msg.xid;
  }

  /**
   * Send many messages in large socket writes (~256 KiB each); returns their
   * xids in order. `xids[i]`, when given, is the xid message i goes out with
   * (callers that must know every xid before the first byte leaves — to
   * match errors — allocate them with allocXid first). Messages are encoded
   * by the bulk encoder (wire-writer.ts) one chunk ahead of the socket: while
   * the switch reads one chunk the next is being encoded, and at most two
   * chunks are held.
   */
  async sendAll(ms: readonly OfRequest[], xids?: readonly number[]): Promise<number[]> {
    return this.stream(ms.length, xids, (w, i, xid) => w.write(ms[i]!, xid), ms);
  }

  private async stream(
    n: number,
    given: readonly number[] | undefined,
    put: (w: OfWireWriter, i: number, xid: number) => void,
    ms: readonly OfRequest[],
  ): Promise<number[]> {
    if (this.closed) throw this.closedError();
    const out: number[] = new Array<number>(n);
    const w = this.writer;
    let waiting = false;
    const flush = async (): Promise<void> => {
      // Taken before any wait: the writer is the connection's, and another
      // stream may write into it while this one waits for 'drain'.
      const chunk = w.take();
      if (waiting) await this.drained();
      if (this.closed) throw this.closedError();
      waiting = !this.writeRaw(chunk);
    };
    for (let i = 0; i < n; i++) {
      const xid = given?.[i] ?? ms[i]!.xid ?? this.allocXid();
      out[i] = xid;
      try {
        put(w, i, xid);
      } catch (err) {
        w.take(); // this call's unsent messages go with it, not out with the next call's
        throw err;
      }
      this.counters.txMessages++;
      if (w.pending >= FLUSH_BYTES) await flush();
    }
    if (w.pending) await flush();
    if (waiting) await this.drained();
    return out;
  }

  /**
   * Send a request and wait for the reply with its xid (for multipart: every
   * part, as an array). Rejects with OpenFlowError if the switch says no, with
   * ConnectionError on timeout or close.
   */
  async request(m: OfRequest, timeoutMs = this.opts.requestTimeoutMs): Promise<OfMessage> {
    const r = await this.transact(m, timeoutMs);
    return Array.isArray(r) ? r[r.length - 1]! : r;
  }

  private async transact(m: OfRequest, timeoutMs: number): Promise<OfMessage | OfMessage[]> {
    while (this.pending.size >= this.opts.maxInFlight && !this.closed) {
      await new Promise<void>((r) => this.slotWaiters.push(r));
    }
    if (this.closed) throw this.closedError();
    const msg = this.withXid(m);
    const what = `${msg.type} xid ${msg.xid}`;
    const reply = new Promise<OfMessage | OfMessage[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        const p = this.pending.get(msg.xid);
        if (p)
          this.settle(
            msg.xid,
            p,
            undefined,
            new ConnectionError(`${this.label}: ${what}: no reply in ${timeoutMs} ms`),
          );
      }, timeoutMs);
      this.pending.set(msg.xid, { resolve, reject, timer, what });
    });
    // The reply is the caller's once this returns; until then, a session that dies while the
    // socket drains rejects it here, unawaited (the close rejects every pending reply): it must not
    // count as unhandled, which would end the process. The caller gets the close's error instead.
    reply.catch(() => undefined);
    this.counters.txMessages++;
    if (!this.writeRaw(encodeMessage(msg))) await this.drained();
    return reply;
  }

  /** A multipart request; resolves with every reply body once the last part (no OFPMPF_MORE) arrived. */
  async multipart(
    body: MultipartRequestBody,
    timeoutMs = this.opts.requestTimeoutMs,
  ): Promise<MultipartReplyBody[]> {
    const r = await this.transact({ type: "multipart_request", flags: 0, body }, timeoutMs);
    const parts = Array.isArray(r) ? r : [r];
    return parts.map((p) => {
      if (p.type !== "multipart_reply")
        throw new ConnectionError(`${this.label}: expected multipart_reply, got ${p.type}`);
      return p.body;
    });
  }

  /** Flow stats (OFPMP_FLOW), every part merged. Defaults: all tables, any port/group, any cookie. */
  async flowStats(filter: Partial<FlowStatsRequest> = {}): Promise<FlowStats[]> {
    const parts = await this.multipart({
      mpType: "flow",
      tableId: filter.tableId ?? 0xff,
      outPort: filter.outPort ?? 0xffffffff,
      outGroup: filter.outGroup ?? 0xffffffff,
      cookie: filter.cookie ?? 0n,
      cookieMask: filter.cookieMask ?? 0n,
      match: filter.match ?? [],
    });
    return parts.flatMap((p) => (p.mpType === "flow" ? p.flows : []));
  }

  /** BARRIER_REQUEST → BARRIER_REPLY: every message sent before it has been processed. */
  async barrier(timeoutMs = this.opts.requestTimeoutMs): Promise<void> {
    await this.request({ type: "barrier_request" }, timeoutMs);
  }

  async echo(data = Buffer.alloc(0)): Promise<Buffer> {
    const r = await this.request({ type: "echo_request", data });
    return r.type === "echo_reply" ? r.data : Buffer.alloc(0);
  }

  /** Role request (OFPCR_ROLE_*); "primary" is MASTER. Returns the role and generation the switch reports. */
  async role(
    role: "primary" | "secondary" | "equal" | "nochange",
    generationId = 0n,
  ): Promise<{ role: number; generationId: bigint }> {
    const wire = {
      primary: OFPCR_ROLE.MASTER,
      secondary: OFPCR_ROLE.SLAVE,
      equal: OFPCR_ROLE.EQUAL,
      nochange: OFPCR_ROLE.NOCHANGE,
    }[role];
    const r = await this.request({ type: "role_request", role: wire, generationId });
    if (r.type !== "role_reply")
      throw new ConnectionError(`${this.label}: expected role_reply, got ${r.type}`);
    return { role: r.role, generationId: r.generationId };
  }

  // ---- bundles ----------------------------------------------------------------------------------

  async bundleOpen(flags = OFPBF.ATOMIC | OFPBF.ORDERED): Promise<number> {
    const bundleId = this.nextBundleId++;
    await this.bundleCtrl(bundleId, "open_request", flags);
    return bundleId;
  }

  /**
   * Open a bundle without waiting for the switch's answer, so that the adds
   * that follow share its round trip: the open_request is on the wire when
   * this resolves (messages go out in call order), and `opened` settles with
   * the reply. When the in-flight limit is reached the open is awaited
   * instead, since it could not be written ahead of the adds.
   */
  async bundleOpenPipelined(
    flags = OFPBF.ATOMIC | OFPBF.ORDERED,
  ): Promise<{ bundleId: number; opened: Promise<void> }> {
    return this.openPipelined(this.nextBundleId++, flags);
  }

  private async openPipelined(
    bundleId: number,
    flags: number,
  ): Promise<{ bundleId: number; opened: Promise<void> }> {
    if (this.pending.size >= this.opts.maxInFlight) {
      await this.bundleCtrl(bundleId, "open_request", flags);
      return { bundleId, opened: Promise.resolve() };
    }
    const opened = this.bundleCtrl(bundleId, "open_request", flags);
    opened.catch(() => undefined);
    return { bundleId, opened };
  }

  /**
   * Add messages to an open bundle (fire-and-forget; failures surface at
   * commit, or as of_error events for the add). Each bundle_add_message has
   * the xid of the message it carries; `xids` as for sendAll.
   */
  async bundleAdd(
    bundleId: number,
    ms: readonly OfRequest[],
    flags = OFPBF.ATOMIC | OFPBF.ORDERED,
    xids?: readonly number[],
  ): Promise<number[]> {
    return this.stream(ms.length, xids, (w, i, xid) => w.writeBundleAdd(bundleId, flags, ms[i]!, xid), ms);
  }

  /**
   * A bundle to be written later in one burst (`sendDraft`), its messages
   * encoded as they are added: the encoding is spread over the calls that
   * add them instead of being done all at once when it goes.
   */
  draftBundle(flags = OFPBF.ATOMIC | OFPBF.ORDERED): BundleDraft {
    return new BundleDraft(this.nextBundleId++, flags);
  }

  /**
   * Write a draft's open, its bundle_add_messages and its commit, and resolve
   * with the commit's reply (as bundleOpenPipelined + bundleAdd +
   * bundleCommit would, without encoding anything now). A draft one of whose
   * messages could not be encoded rejects with that error and writes nothing.
   */
  async sendDraft(draft: BundleDraft): Promise<void> {
    if (this.closed) throw this.closedError();
    const bytes = draft.take();
    const { opened } = await this.openPipelined(draft.bundleId, draft.flags);
    this.counters.txMessages += draft.count;
    if (!this.writeRaw(bytes)) await this.drained();
    await Promise.all([opened, this.bundleCommit(draft.bundleId, draft.flags)]);
  }

  async bundleCommit(bundleId: number, flags = OFPBF.ATOMIC | OFPBF.ORDERED): Promise<void> {
    await this.bundleCtrl(bundleId, "commit_request", flags);
  }

  async bundleDiscard(bundleId: number, flags = OFPBF.ATOMIC | OFPBF.ORDERED): Promise<void> {
    await this.bundleCtrl(bundleId, "discard_request", flags);
  }

  /** Open, add every message, commit: all of them take effect, or none. */
  async bundle(ms: readonly OfRequest[], flags = OFPBF.ATOMIC | OFPBF.ORDERED): Promise<void> {
    const id = await this.bundleOpen(flags);
    await this.bundleAdd(id, ms, flags);
    await this.bundleCommit(id, flags);
  }

  private async bundleCtrl(
    bundleId: number,
    ctrlType: "open_request" | "commit_request" | "discard_request",
    flags: number,
  ): Promise<void> {
    const r = await this.request({
      type: "bundle_control",
      bundleId,
      ctrlType,
      flags,
      properties: Buffer.alloc(0),
    });
    const want = ctrlType.replace("_request", "_reply");
    if (r.type !== "bundle_control" || r.ctrlType !== want) {
      throw new ConnectionError(`${this.label}: bundle ${bundleId}: expected ${want}, got ${r.type}`);
    }
  }

  // ---- close ------------------------------------------------------------------------------------

  /** Close gracefully (pending requests are rejected). */
  close(): void {
    this.socket.end();
    this.shutdown(undefined);
  }

  /** Close at once with a reason. */
  destroy(err?: Error): void {
    this.shutdown(err);
    this.socket.destroy();
  }

  /** Resolves when the connection is closed (with the reason, if any). */
  async closedPromise(): Promise<Error | undefined> {
    if (this.closed) return this.closeError;
    const [err] = await once(this, "close");
    return err as Error | undefined;
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err;
    if (this.keepalive) clearInterval(this.keepalive);
    for (const [xid, p] of [...this.pending]) {
      this.settle(
        xid,
        p,
        undefined,
        new ConnectionError(`${this.label}: ${p.what}: connection closed`, {}, { cause: err }),
      );
    }
    for (const w of this.slotWaiters.splice(0)) w();
    if (err) log.debug({ conn: this.label, err: err.message }, "OpenFlow session closed");
    this.emit("close", err);
  }
}
