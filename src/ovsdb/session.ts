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
 *
 * An update the replica cannot apply (a diff for a row it does not hold)
 * means the replica lost the stream: the session cancels that monitor and
 * starts a new one on the same connection, and the replica swaps to its
 * snapshot as after a reconnect. Requests in flight on the connection are not
 * disturbed. (A replica that fails again after three such snapshots in a row,
 * with no update applied between, falls back to a reconnect.)
 * An exception thrown by one of the session's own listeners is not
 * the replica's fault: it is logged and counted (`listenerFailures`), the
 * listeners after it still get the event, and the stream carries on.
 */
import { EventEmitter } from "node:events";
import { ConnectionError, errorFields, errorMessage } from "../util/errors.js";
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
const MAX_RESYNCS_IN_A_ROW = 3;

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
  /** Times the replica could not follow the update stream and was rebuilt on the same connection. */
  resyncs = 0;
  /** Exceptions thrown by this session's event listeners (logged; the replica carries on). */
  listenerFailures = 0;

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
    if (this.connected && this.replicaInst && this.synced) return Promise.resolve();
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

  /** The current connection's first monitor reply is in the replica. */
  private synced = false;
  /** The monitor whose updates the replica follows (one per monitor request, so a cancelled one's stragglers are told apart). */
  private monitorId: string | undefined;
  private monitorSeq = 0;
  /** In-place resyncs since the replica last applied an update. */
  private failedInARow = 0;
  /** Updates held back while a monitor reply is outstanding. */
  private held: UpdateMessage[] | undefined;

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
        this.synced = false;
        await this.sync(client);
        delay = initial;
        const err = await closed;
        this.log.warn({ err: err ? errorMessage(err) : undefined }, "ovsdb session lost its connection");
        this.deliver("disconnected", err);
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
    const schema = await client.getSchema(this.db);
    if (!this.replicaInst) {
      this.replicaInst = new Replica(schema, this.opts.tables);
      this.replicaInst.on("change", (c) => this.deliver("change", c));
      this.replicaInst.on("batch", (b) => this.deliver("batch", b));
    }
    const replica = this.replicaInst;
    client.on("update", (msg) => this.onUpdate(replica, msg, client));
    const { resumed, changes } = await this.monitor(client, replica);
    this.synced = true;
    this.connects++;
    this.log.info({ mode: this.mode, resumed, changes }, "ovsdb replica synchronised");
    this.deliver("connected", { mode: this.mode, resumed, changes });
    for (const w of this.readyWaiters) w.resolve();
    this.readyWaiters = [];
  }

  /**
   * Starts a monitor under a fresh id and loads its reply into the replica.
   * Updates that arrive meanwhile are held back and applied after the reply,
   * in stream order; updates still arriving for an earlier id are dropped.
   */
  private async monitor(
    client: OvsdbClient,
    replica: Replica,
  ): Promise<{ resumed: boolean; changes: number }> {
    const id = `${MONITOR_ID}-${++this.monitorSeq}`;
    this.monitorId = id;
    const held: UpdateMessage[] = [];
    this.held = held;
    const requests = this.monitorRequests();
    let resumed = false;
    let changes = 0;
    for (;;) {
      try {
        if (this.mode === "monitor_cond_since") {
          const r = await client.monitorCondSince(this.db, id, requests, this.lastTxnId);
          resumed = r.found && this.lastTxnId !== undefined;
          try {
            changes = (
              resumed ? replica.applyUpdate2(r.updates) : replica.resync(replica.snapshotFrom2(r.updates))
            ).length;
          } catch (err) {
            this.lastTxnId = undefined; // what cannot be resumed is fetched whole next time
            throw err;
          }
          this.lastTxnId = r.lastTxnId;
        } else if (this.mode === "monitor_cond") {
          changes = replica.resync(
            replica.snapshotFrom2(await client.monitorCond(this.db, id, requests)),
          ).length;
        } else {
          changes = replica.resync(replica.snapshotFrom1(await client.monitor(this.db, id, requests))).length;
        }
        break;
      } catch (err) {
        const unknown = err instanceof OvsdbRpcError && /unknown method/i.test(err.message);
        if (!unknown || this.modeIndex === MODES.length - 1) throw err;
        this.log.info({ method: this.mode }, "ovsdb server lacks this monitor method; falling back");
        this.modeIndex++;
      }
    }
    this.held = undefined;
    for (const msg of held) this.onUpdate(replica, msg, client);
    return { resumed, changes };
  }

  private onUpdate(replica: Replica, msg: UpdateMessage, client: OvsdbClient): void {
    if (msg.monitorId !== this.monitorId) return;
    if (this.held) {
      this.held.push(msg);
      return;
    }
    try {
      if (msg.version === 1) replica.applyUpdate1(msg.updates);
      else replica.applyUpdate2(msg.updates);
      if (msg.version === 3 && msg.lastTxnId) this.lastTxnId = msg.lastTxnId;
      this.failedInARow = 0;
    } catch (err) {
      // The replica cannot follow the stream: rebuild it from a fresh snapshot on
      // this very connection, so requests in flight on it are not lost.
      this.log.error({ err: errorMessage(err) }, "ovsdb update could not be applied; resynchronising");
      void this.resyncInPlace(client, replica);
    }
  }

  private async resyncInPlace(client: OvsdbClient, replica: Replica): Promise<void> {
    const stale = this.monitorId;
    this.monitorId = undefined; // from here on, the stale monitor's updates are dropped
    this.lastTxnId = undefined;
    if (++this.failedInARow > MAX_RESYNCS_IN_A_ROW) {
      // A stream the replica keeps failing on right after fresh snapshots: start over on a new connection.
      this.log.error({ failures: this.failedInARow }, "ovsdb replica keeps failing; reconnecting");
      this.failedInARow = 0;
      client.close();
      return;
    }
    this.resyncs++;
    try {
      // A server that no longer knows the old monitor has nothing more to send for it.
      await client.monitorCancel(stale).catch((err: unknown) => {
        if (!(err instanceof OvsdbRpcError)) throw err;
      });
      const { changes } = await this.monitor(client, replica);
      this.log.info({ mode: this.mode, changes }, "ovsdb replica resynchronised on the same connection");
    } catch (err) {
      if (client.isClosed) return; // the reconnect loop takes over
      this.log.error({ err: errorMessage(err) }, "ovsdb in-place resync failed; reconnecting");
      client.close();
    }
  }

  /**
   * Hands an event to each of the session's listeners in turn. A listener that
   * throws is a bug in that consumer, not in the replica: it is logged and
   * counted, the listeners after it still get the event, and the replica and
   * the connection carry on.
   */
  private deliver<K extends keyof OvsdbSessionEvents>(event: K, ...args: OvsdbSessionEvents[K]): void {
    // rawListeners: a `once` listener's wrapper, which removes itself when called
    for (const listener of this.rawListeners(event) as ((...a: OvsdbSessionEvents[K]) => void)[]) {
      try {
        listener.apply(this, args);
      } catch (err) {
        this.listenerFailures++;
        this.log.error(
          { event, ...errorFields(err) },
          "an ovsdb session listener threw; the replica is intact",
        );
      }
    }
  }
}
