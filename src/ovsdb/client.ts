/**
 * The OVSDB client (RFC 7047 §4.1, plus the ovsdb-server extensions
 * monitor_cond, monitor_cond_change and monitor_cond_since documented in
 * ovsdb-server(7)): one JSON-RPC connection, one method per RPC, typed results.
 *
 * Notifications are re-emitted as events: "update" for update, update2 and
 * update3 (normalised into {monitorId, version, updates, lastTxnId}), "locked"
 * and "stolen" for locks, "close" when the connection ends. transact() turns a
 * failed operation or commit into an OvsdbTxnError; every other refusal is an
 * OvsdbRpcError; a lost connection is a ConnectionError.
 */
import { EventEmitter } from "node:events";
import { type Logger, logger } from "../util/log.js";
import { type DatabaseSchema, normalizeSchema } from "./datum.js";
import { OvsdbTxnError } from "./errors.js";
import { JsonRpcConnection, type JsonRpcOptions } from "./jsonrpc.js";
import type { Condition, OpResult, Operation } from "./ops.js";

/** RFC 7047 §4.1.5 <monitor-select>. */
export interface MonitorSelect {
  initial?: boolean;
  insert?: boolean;
  delete?: boolean;
  modify?: boolean;
}

/** One entry of a <monitor-request> (or <monitor-cond-request> when `where` is set). */
export interface MonitorRequest {
  columns?: string[];
  select?: MonitorSelect;
  where?: Condition[] | [true] | [false];
}

export type MonitorRequests = Record<string, MonitorRequest | MonitorRequest[]>;

/** <row-update> of "update" (v1): old/new full or partial rows, wire form. */
export interface RowUpdate1 {
  old?: Record<string, unknown>;
  new?: Record<string, unknown>;
}

/** <row-update2> of update2/update3. */
export type RowUpdate2 =
  | { initial: Record<string, unknown> }
  | { insert: Record<string, unknown> }
  | { modify: Record<string, unknown> }
  | { delete: null };

export type TableUpdates1 = Record<string, Record<string, RowUpdate1>>;
export type TableUpdates2 = Record<string, Record<string, RowUpdate2>>;

export type UpdateMessage =
  | { version: 1; monitorId: unknown; updates: TableUpdates1 }
  | { version: 2 | 3; monitorId: unknown; updates: TableUpdates2; lastTxnId?: string };

export interface MonitorCondSinceResult {
  found: boolean;
  lastTxnId: string;
  updates: TableUpdates2;
}

export interface OvsdbClientEvents {
  update: [msg: UpdateMessage];
  locked: [lockId: string];
  stolen: [lockId: string];
  close: [error: Error | undefined];
}

export interface TransactOptions {
  /** Cancel the request (RFC 7047 §4.1.4 "cancel") when this aborts. */
  signal?: AbortSignal;
}

export class OvsdbClient extends EventEmitter<OvsdbClientEvents> {
  private readonly log: Logger;
  private readonly schemas = new Map<string, DatabaseSchema>();

  private constructor(readonly rpc: JsonRpcConnection) {
    super();
    this.log = logger("ovsdb", { remote: rpc.remote });
    rpc.on("notification", (method, params) => this.onNotification(method, params));
    rpc.on("close", (err) => this.emit("close", err));
  }

  static async connect(remote: string, opts: JsonRpcOptions = {}): Promise<OvsdbClient> {
    const rpc = await JsonRpcConnection.connect(remote, opts);
    return new OvsdbClient(rpc);
  }

  get remote(): string {
    return this.rpc.remote;
  }
  get isClosed(): boolean {
    return this.rpc.isClosed;
  }

  close(): void {
    this.rpc.close();
  }

  async listDbs(): Promise<string[]> {
    return (await this.rpc.request("list_dbs", [])) as string[];
  }

  async getSchema(db: string): Promise<DatabaseSchema> {
    const cached = this.schemas.get(db);
    if (cached) return cached;
    const schema = normalizeSchema(await this.rpc.request("get_schema", [db]));
    this.schemas.set(db, schema);
    return schema;
  }

  /** Runs `ops` atomically; resolves with the per-op results or throws OvsdbTxnError. */
  async transact(db: string, ops: Operation[], opts: TransactOptions = {}): Promise<OpResult[]> {
    const { id, result } = this.rpc.requestWithId("transact", [db, ...ops]);
    const onAbort = (): void => this.cancel(id);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let raw: unknown;
    try {
      raw = await result;
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
    const results = (Array.isArray(raw) ? raw : []) as (OpResult & { error?: string; details?: string })[];
    for (let i = 0; i < results.length; i++) {
      const r = results[i];
      if (r && typeof r === "object" && typeof r.error === "string") {
        const err = new OvsdbTxnError(r.error, r.details, i, ops[i], results);
        this.log.debug({ error: r.error, details: r.details, opIndex: i }, "ovsdb transaction failed");
        throw err;
      }
    }
    return results;
  }

  /** RFC 7047 §4.1.4: ask the server to abandon an outstanding request. */
  cancel(requestId: number): void {
    this.rpc.notify("cancel", [requestId]);
  }

  async echo(...params: unknown[]): Promise<unknown[]> {
    return (await this.rpc.request("echo", params)) as unknown[];
  }

  async monitor(db: string, monitorId: unknown, requests: MonitorRequests): Promise<TableUpdates1> {
    return ((await this.rpc.request("monitor", [db, monitorId, requests])) ?? {}) as TableUpdates1;
  }

  async monitorCond(db: string, monitorId: unknown, requests: MonitorRequests): Promise<TableUpdates2> {
    return ((await this.rpc.request("monitor_cond", [db, monitorId, requests])) ?? {}) as TableUpdates2;
  }

  /** Resumes from `lastTxnId` when the server still has it (found=true: only the changes since). */
  async monitorCondSince(
    db: string,
    monitorId: unknown,
    requests: MonitorRequests,
    lastTxnId: string = "00000000-0000-0000-0000-000000000000",
  ): Promise<MonitorCondSinceResult> {
    const r = (await this.rpc.request("monitor_cond_since", [db, monitorId, requests, lastTxnId])) as [
      boolean,
      string,
      TableUpdates2 | null,
    ];
    return { found: r[0], lastTxnId: r[1], updates: r[2] ?? {} };
  }

  async monitorCondChange(
    monitorId: unknown,
    newMonitorId: unknown,
    requests: MonitorRequests,
  ): Promise<void> {
    await this.rpc.request("monitor_cond_change", [monitorId, newMonitorId, requests]);
  }

  async monitorCancel(monitorId: unknown): Promise<void> {
    await this.rpc.request("monitor_cancel", [monitorId]);
  }

  async lock(id: string): Promise<boolean> {
    return ((await this.rpc.request("lock", [id])) as { locked: boolean }).locked;
  }
  async steal(id: string): Promise<boolean> {
    return ((await this.rpc.request("steal", [id])) as { locked: boolean }).locked;
  }
  async unlock(id: string): Promise<void> {
    await this.rpc.request("unlock", [id]);
  }

  private onNotification(method: string, params: unknown[]): void {
    switch (method) {
      case "update":
        this.emit("update", {
          version: 1,
          monitorId: params[0],
          updates: (params[1] ?? {}) as TableUpdates1,
        });
        return;
      case "update2":
        this.emit("update", {
          version: 2,
          monitorId: params[0],
          updates: (params[1] ?? {}) as TableUpdates2,
        });
        return;
      case "update3":
        this.emit("update", {
          version: 3,
          monitorId: params[0],
          lastTxnId: params[1] as string,
          updates: (params[2] ?? {}) as TableUpdates2,
        });
        return;
      case "locked":
      case "stolen":
        this.emit(method, String(params[0]));
        return;
      default:
        this.log.debug({ method }, "ignoring unknown ovsdb notification");
    }
  }
}
