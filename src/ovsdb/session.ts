/**
 * A long-lived, self-healing OVSDB session: connect, monitor the requested
 * tables into a Replica, and when the connection is lost (peer closed, echo
 * probe missed, malformed stream) reconnect with bounded exponential backoff
 * and re-establish the monitor.
 *
 * Monitor flavours, best first: monitor_cond_since (resume from the last
 * transaction id: when the server still knows it, only the changes since are
 * sent), monitor_cond (update2 diffs), monitor (update, full row images). The
 * first one the server accepts is used; a server that answers "unknown method"
 * moves the session to the next.
 *
 * After a reconnect without a resumable history the server sends a full
 * snapshot; the replica swaps to it and emits only the difference from what it
 * held before — a consumer never sees a delete-all/insert-all flood.
 *
 * Updates that arrive while the monitor reply is still being applied are
 * queued so the replica always applies them in stream order.
 */
import { EventEmitter } from "node:events";
import { ConnectionError, errorMessage } from "../util/errors.js";
import { type Logger, logger } from "../util/log.js";
import type { SslFiles } from "../util/ssl.js";
import { type MonitorRequests, OvsdbClient, type UpdateMessage } from "./client.js";
import { OvsdbRpcError } from "./errors.js";
import { parseRemote } from "./jsonrpc.js";
import type { OpResult, Operation } from "./ops.js";
import { Replica, type RowChange } from "./replica.js";

export type MonitorMode = "monitor_cond_since" | "monitor_cond" | "monitor";

export interface OvsdbSessionOptions {
  remote: string;
  /** OVS's SSL files (private key, certificate, CA certificate), for an `ssl:` remote. */
  ssl?: SslFiles;
  /** Database name (default "Open_vSwitch"). */
  db?: string;
  /** Tables to monitor, each with the columns to monitor (undefined: all columns). */
  tables: Record<string, string[] | undefined>;
  /** Our echo keepalive interval (default 5000 ms; the peer is dead after two silent intervals). */
  probeIntervalMs?: number;
  /** Reconnect backoff (default 250 ms doubling up to 8000 ms). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Best monitor method to try first (default monitor_cond_since). */
  preferMonitor?: MonitorMode;
}

export interface OvsdbSessionEvents {
  connected: [info: { mode: MonitorMode; resumed: boolean; changes: number }];
  disconnected: [error: Error | undefined];
  change: [change: RowChange];
  batch: [changes: RowChange[]];
}

const MODES: MonitorMode[] = ["monitor_cond_since", "monitor_cond", "monitor"];
const MONITOR_ID = "flowdrake-replica";

export class OvsdbSession extends EventEmitter<OvsdbSessionEvents> {
  readonly db: string;
  private replicaInst: Replica | undefined;
  private clientInst: OvsdbClient | undefined;
  private stopped = false;
  private modeIndex: number;
  private lastTxnId: string | undefined;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly log: Logger;
  private sleepTimer: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** Number of completed (re)connections. */
  connects = 0;

  private constructor(readonly opts: OvsdbSessionOptions) {
    super();
    this.db = opts.db ?? "Open_vSwitch";
    this.modeIndex = Math.max(0, MODES.indexOf(opts.preferMonitor ?? "monitor_cond_since"));
    this.log = logger("ovsdb", { remote: opts.remote, db: this.db });
  }

  /**
   * Starts connecting in the background; `await session.ready()` for the first
   * full replica. A remote this client cannot speak is refused here, at once
   * (UsageError), rather than retried as if the server were down.
   */
  static start(opts: OvsdbSessionOptions): OvsdbSession {
    parseRemote(opts.remote, opts.ssl);
    const s = new OvsdbSession(opts);
    void s.loop();
    return s;
  }

  get mode(): MonitorMode {
    return MODES[this.modeIndex]!;
  }

  get connected(): boolean {
    return !!this.clientInst && !this.clientInst.isClosed;
  }

  get replica(): Replica {
    if (!this.replicaInst)
      throw new ConnectionError("ovsdb session has not synchronised yet", { remote: this.opts.remote });
    return this.replicaInst;
  }

  /** The current connection (for ad-hoc requests); throws when disconnected. */
  get client(): OvsdbClient {
    if (!this.clientInst || this.clientInst.isClosed) {
      throw new ConnectionError("ovsdb session is not connected", { remote: this.opts.remote });
    }
    return this.clientInst;
  }

  /** Resolves once the replica holds a full copy from the current connection. */
  ready(timeoutMs = 30_000): Promise<void> {
    if (this.connected && this.replicaInst && !this.syncing) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
        reject,
      };
      const t = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
        reject(
          new ConnectionError(`ovsdb session not ready after ${timeoutMs} ms`, { remote: this.opts.remote }),
        );
      }, timeoutMs);
      this.readyWaiters.push(waiter);
    });
  }

  transact(ops: Operation[]): Promise<OpResult[]> {
    return this.client.transact(this.db, ops);
  }

  stop(): void {
    this.stopped = true;
    this.clientInst?.close();
    if (this.sleepTimer) {
      clearTimeout(this.sleepTimer.timer);
      this.sleepTimer.resolve();
    }
    for (const w of this.readyWaiters) w.reject(new ConnectionError("ovsdb session stopped", {}));
    this.readyWaiters = [];
  }

  private syncing = false;

  private async loop(): Promise<void> {
    const initial = this.opts.backoff?.initialMs ?? 250;
    const max = this.opts.backoff?.maxMs ?? 8000;
    let delay = initial;
    while (!this.stopped) {
      let client: OvsdbClient | undefined;
      try {
        client = await OvsdbClient.connect(this.opts.remote, {
          probeIntervalMs: this.opts.probeIntervalMs ?? 5000,
          ...(this.opts.ssl ? { ssl: this.opts.ssl } : {}),
        });
        if (this.stopped) {
          client.close();
          break;
        }
        const closed = new Promise<Error | undefined>((resolve) => client!.once("close", resolve));
        this.clientInst = client;
        await this.sync(client);
        delay = initial;
        const err = await closed;
        this.log.warn({ err: err ? errorMessage(err) : undefined }, "ovsdb session lost its connection");
        this.emit("disconnected", err);
      } catch (err) {
        this.log.info({ err: errorMessage(err), retryInMs: delay }, "ovsdb session connect/sync failed");
        client?.close();
      }
      this.clientInst = undefined;
      if (this.stopped) break;
      await this.sleep(delay);
      delay = Math.min(delay * 2, max);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleepTimer = undefined;
        resolve();
      }, ms);
      this.sleepTimer = { timer, resolve };
    });
  }

  private monitorRequests(): MonitorRequests {
    const req: MonitorRequests = {};
    for (const [t, cols] of Object.entries(this.opts.tables)) req[t] = cols ? { columns: cols } : {};
    return req;
  }

  private async sync(client: OvsdbClient): Promise<void> {
    this.syncing = true;
    const schema = await client.getSchema(this.db);
    if (!this.replicaInst) {
      this.replicaInst = new Replica(schema, this.opts.tables);
      this.replicaInst.on("change", (c) => this.emit("change", c));
      this.replicaInst.on("batch", (b) => this.emit("batch", b));
    }
    const replica = this.replicaInst;
    const queue: UpdateMessage[] = [];
    client.on("update", (msg) => {
      if (msg.monitorId !== MONITOR_ID) return;
      if (this.syncing) queue.push(msg);
      else this.apply(replica, msg, client);
    });
    const requests = this.monitorRequests();
    let resumed = false;
    let changes = 0;
    for (;;) {
      try {
        if (this.mode === "monitor_cond_since") {
          const r = await client.monitorCondSince(this.db, MONITOR_ID, requests, this.lastTxnId);
          resumed = r.found && this.lastTxnId !== undefined;
          changes = (
            resumed ? replica.applyUpdate2(r.updates) : replica.resync(replica.snapshotFrom2(r.updates))
          ).length;
          this.lastTxnId = r.lastTxnId;
        } else if (this.mode === "monitor_cond") {
          changes = replica.resync(
            replica.snapshotFrom2(await client.monitorCond(this.db, MONITOR_ID, requests)),
          ).length;
        } else {
          changes = replica.resync(
            replica.snapshotFrom1(await client.monitor(this.db, MONITOR_ID, requests)),
          ).length;
        }
        break;
      } catch (err) {
        const unknown = err instanceof OvsdbRpcError && /unknown method/i.test(err.message);
        if (!unknown || this.modeIndex === MODES.length - 1) throw err;
        this.log.info({ method: this.mode }, "ovsdb server lacks this monitor method; falling back");
        this.modeIndex++;
      }
    }
    for (const msg of queue) this.apply(replica, msg, client);
    this.syncing = false;
    this.connects++;
    this.log.info({ mode: this.mode, resumed, changes }, "ovsdb replica synchronised");
    this.emit("connected", { mode: this.mode, resumed, changes });
    for (const w of this.readyWaiters) w.resolve();
    this.readyWaiters = [];
  }

  private apply(replica: Replica, msg: UpdateMessage, client: OvsdbClient): void {
    try {
      if (msg.version === 1) replica.applyUpdate1(msg.updates);
      else replica.applyUpdate2(msg.updates);
      if (msg.version === 3 && msg.lastTxnId) this.lastTxnId = msg.lastTxnId;
    } catch (err) {
      // A replica that cannot follow the stream is rebuilt from a fresh snapshot.
      this.log.error({ err: errorMessage(err) }, "ovsdb update could not be applied; resynchronising");
      this.lastTxnId = undefined;
      client.close();
    }
  }
}
