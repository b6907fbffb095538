/**
 * The etcd NB store driver: the NbStore contract on a real etcd v3 cluster,
 * through the `etcd3` client.
 *
 *   /flowdrake/nb/<kind>/<key>     one JSON document per object
 *   /flowdrake/lock/<name>         lock keys (lease-bound, outside the NB prefix)
 *
 * Mapping onto etcd's own terms:
 *   - object version  = the key's etcd `version` (1 on create, +1 per update,
 *     0 when absent — exactly what a guard `expectVersion: 0` compares with);
 *   - store revision  = the response header revision; modRevision = mod_revision;
 *   - a transaction   = one etcd Txn: every guard becomes a `version ==` compare,
 *     every op a put/delete in the success branch; the failure branch reads the
 *     guarded keys back so the ConflictError can name the op that lost;
 *   - watch           = one etcd watch on the NB prefix. The driver keeps the
 *     revision it has fully delivered and, when the stream breaks, re-creates
 *     the etcd watch from that revision + 1 (the client library's own resume
 *     point is the response header, which can run ahead of what was delivered
 *     while a watcher is catching up). A compacted start revision is reported
 *     through `onResync` and the watch carries on from the current revision;
 *   - leases          = etcd leases with the client's background keepalive;
 *   - withLock        = a lease-bound key created by a `version == 0` txn,
 *     retried until the timeout (then LockTimeoutError); the lease makes a
 *     crashed holder's lock vanish after its TTL.
 */
import { randomBytes } from "node:crypto";
import { Etcd3, type IKeyValue, type Lease as EtcdLease, type Watcher } from "etcd3";
import { errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";
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

const log = logger("nb-etcd");

export const NB_PREFIX = "/flowdrake/nb/";
export const LOCK_PREFIX = "/flowdrake/lock/";
const LOCK_TTL_SECONDS = 10;

function objectKey(kind: Kind, key: string): string {
  if (!kind || kind.includes("/"))
    throw new StoreError(`invalid kind ${JSON.stringify(kind)}`, { kind, key });
  return `${NB_PREFIX}${kind}/${key}`;
}

function kindPrefix(kind: Kind): string {
  return objectKey(kind, "");
}

/** The end of a prefix range: the prefix with its last byte incremented. */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1] = b[b.length - 1]! + 1;
  return b;
}

function splitKey(raw: Buffer | string): { kind: Kind; key: string } | undefined {
  const s = raw.toString();
  if (!s.startsWith(NB_PREFIX)) return undefined;
  const rest = s.slice(NB_PREFIX.length);
  const slash = rest.indexOf("/");
  if (slash <= 0) return undefined;
  return { kind: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

function decodeKv(kv: IKeyValue): StoredObject {
  const id = splitKey(kv.key);
  if (!id) throw new StoreError("key outside the NB prefix", { key: kv.key.toString() });
  let value: unknown;
  try {
    value = JSON.parse(kv.value.toString());
  } catch (err) {
    throw new StoreError(`stored value of ${id.kind}/${id.key} is not JSON`, { ...id }, { cause: err });
  }
  return { ...id, value, version: Number(kv.version), modRevision: Number(kv.mod_revision) };
}

/**
 * etcd cancels a watch whose start revision was compacted away; etcd 3.4 sends
 * no cancel_reason for it and the client reports "Watcher canceled: ".
 */
function isCancellation(err: Error): boolean {
  return /canceled|compact/i.test(err.message);
}

/** Parse `etcd://h1:p1,h2:p2` or plain endpoint lists into gRPC host URLs. */
export function etcdEndpoints(spec: string | string[]): string[] {
  const parts = (Array.isArray(spec) ? spec : [spec])
    .flatMap((s) => s.replace(/^etcd:\/\//, "").split(","))
    .map((s) => s.trim())
    .filter(Boolean);
  return parts.map((p) => (/^https?:\/\//.test(p) ? p : `http://${p}`));
}

class EtcdStore implements NbStore {
  readonly driver = "etcd" as const;
  private readonly watches = new Set<EtcdWatch>();
  private readonly leases = new Set<EtcdLease>();
  private closed = false;

  constructor(
    readonly client: Etcd3,
    readonly endpoints: string[],
  ) {}

  private async call<T>(what: string, context: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(`etcd store is closed (${what})`, context);
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoreError || err instanceof ConflictError || err instanceof LockTimeoutError)
        throw err;
      throw new StoreError(
        `etcd ${what} failed: ${errorMessage(err)}`,
        { ...context, endpoints: this.endpoints },
        { cause: err },
      );
    }
  }

  get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    return this.call("get", { kind, key }, async () => {
      const res = await this.client.kv.range({ key: Buffer.from(objectKey(kind, key)) });
      const kv = res.kvs[0];
      return kv ? decodeKv(kv) : undefined;
    });
  }

  list(kind: Kind): Promise<StoredObject[]> {
    return this.call("list", { kind }, async () => {
      const prefix = kindPrefix(kind);
      const res = await this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
      return res.kvs.map(decodeKv);
    });
  }

  revision(): Promise<number> {
    return this.call("revision", {}, async () => {
      const res = await this.client.kv.range({ key: Buffer.from(NB_PREFIX), count_only: true });
      return Number(res.header.revision);
    });
  }

  txn(ops: TxnOp[]): Promise<TxnResult> {
    return this.call("txn", { ops: ops.length }, async () => {
      if (ops.length === 0) return { revision: await this.revision(), versions: [] };
      const seen = new Set<string>();
      for (const op of ops) {
        const k = objectKey(op.kind, op.key);
        if (seen.has(k)) {
          throw new StoreError(`transaction touches ${op.kind}/${op.key} twice`, {
            kind: op.kind,
            key: op.key,
          });
        }
        seen.add(k);
      }
      const guarded = ops.filter((op) => op.expectVersion !== undefined);
      const res = await this.client.kv.txn({
        compare: guarded.map((op) => ({
          key: Buffer.from(objectKey(op.kind, op.key)),
          target: "Version" as const,
          result: "Equal" as const,
          version: op.expectVersion!,
        })),
        success: ops.map((op) =>
          op.op === "put"
            ? {
                request_put: {
                  key: Buffer.from(objectKey(op.kind, op.key)),
                  value: Buffer.from(JSON.stringify(op.value ?? null)),
                  prev_kv: true,
                  ...(op.lease ? { lease: op.lease } : {}),
                },
              }
            : { request_delete_range: { key: Buffer.from(objectKey(op.kind, op.key)) } },
        ),
        failure: guarded.map((op) => ({ request_range: { key: Buffer.from(objectKey(op.kind, op.key)) } })),
      });
      if (!res.succeeded) {
        for (let i = 0; i < guarded.length; i++) {
          const op = guarded[i]!;
          const actual = Number(res.responses[i]?.response_range?.kvs[0]?.version ?? 0);
          if (actual !== op.expectVersion) {
            throw new ConflictError(
              `${op.op} ${op.kind}/${op.key}: expected version ${op.expectVersion}, found ${actual}`,
              op.kind,
              op.key,
              op.expectVersion,
              actual,
            );
          }
        }
        throw new StoreError("transaction guard failed but every guarded key matched on re-read", {
          ops: ops.map((o) => `${o.op} ${o.kind}/${o.key}`),
        });
      }
      const versions = ops.map((op, i) => {
        if (op.op === "delete") return 0;
        const prev = res.responses[i]?.response_put?.prev_kv;
        return prev ? Number(prev.version) + 1 : 1;
      });
      return { revision: Number(res.header.revision), versions };
    });
  }

  async watch(opts: WatchOptions, onEvent: (ev: WatchEvent) => void): Promise<Watch> {
    const from = opts.fromRevision ?? (await this.revision());
    const w = new EtcdWatch(this, opts, onEvent, from);
    this.watches.add(w);
    await this.call("watch", { fromRevision: from }, () => w.start());
    return {
      close: async () => {
        this.watches.delete(w);
        await w.close();
      },
    };
  }

  async withLock<T>(name: string, fn: () => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const lockKey = Buffer.from(`${LOCK_PREFIX}${name}`);
    const lease = this.client.lease(LOCK_TTL_SECONDS, { autoKeepAlive: true });
    lease.on("lost", (err) => log.warn({ err, name }, "lock lease lost"));
    const leaseId = await this.call("lock lease", { name }, () => lease.grant());
    const holder = randomBytes(8).toString("hex");
    const deadline = Date.now() + timeoutMs;
    try {
      for (let attempt = 0; ; attempt++) {
        const res = await this.call("lock", { name }, () =>
          this.client.kv.txn({
            compare: [{ key: lockKey, target: "Version", result: "Equal", version: 0 }],
            success: [{ request_put: { key: lockKey, value: Buffer.from(holder), lease: leaseId } }],
            failure: [],
          }),
        );
        if (res.succeeded) break;
        if (Date.now() >= deadline) throw new LockTimeoutError(name, timeoutMs);
        const pause = Math.min(20 * 2 ** Math.min(attempt, 4), 200) * (0.5 + Math.random());
        await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(1, deadline - Date.now()))));
      }
      try {
        return await fn();
      } finally {
        await this.client.kv
          .txn({
            compare: [{ key: lockKey, target: "Value", result: "Equal", value: Buffer.from(holder) }],
            success: [{ request_delete_range: { key: lockKey } }],
            failure: [],
          })
          .catch((err: unknown) => log.warn({ err, name }, "lock release failed (the lease will expire it)"));
      }
    } finally {
      await lease.revoke().catch(() => undefined);
    }
  }

  async grantLease(ttlSeconds: number, opts: { keepAlive?: boolean } = {}): Promise<Lease> {
    const lease = this.client.lease(ttlSeconds, { autoKeepAlive: opts.keepAlive ?? true });
    lease.on("lost", (err) => log.warn({ err, ttlSeconds }, "lease lost"));
    const id = await this.call("grant lease", { ttlSeconds }, () => lease.grant());
    this.leases.add(lease);
    return {
      id,
      ttlSeconds,
      keepAlive: () =>
        this.call("lease keepalive", { id }, async () => {
          await lease.keepaliveOnce();
        }),
      revoke: () =>
        this.call("lease revoke", { id }, async () => {
          this.leases.delete(lease);
          await lease.revoke();
        }),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const w of [...this.watches]) await w.close().catch(() => undefined);
    this.watches.clear();
    for (const l of [...this.leases]) l.release();
    this.leases.clear();
    this.closed = true;
    this.client.close();
  }
}

/**
 * One NbStore watch. `delivered` is the highest revision whose events have all
 * been handed to the caller; every (re)connect starts at delivered + 1, and
 * events at or below it are dropped, so a reconnect neither skips nor repeats.
 */
class EtcdWatch {
  private watcher: Watcher | undefined;
  private delivered: number;
  private closed = false;
  private readonly kinds: Set<string> | undefined;

  constructor(
    private readonly store: EtcdStore,
    private readonly opts: WatchOptions,
    private readonly onEvent: (ev: WatchEvent) => void,
    fromRevision: number,
  ) {
    this.delivered = fromRevision;
    this.kinds = opts.kinds ? new Set(opts.kinds) : undefined;
  }

  async start(): Promise<void> {
    const watcher = this.store.client
      .watch()
      .prefix(NB_PREFIX)
      .withPreviousKV()
      .startRevision(String(this.delivered + 1))
      .watcher();
    this.attach(watcher);
    await new Promise<void>((resolve, reject) => {
      const onConnected = () => {
        watcher.off("error", onError);
        resolve();
      };
      const onError = (err: Error) => {
        watcher.off("connected", onConnected);
        if (isCancellation(err)) resolve();
        else reject(err);
      };
      watcher.once("connected", onConnected);
      watcher.once("error", onError);
    });
  }

  private attach(watcher: Watcher): void {
    this.watcher = watcher;
    const request = watcher.request as { start_revision?: string };
    watcher.on("data", (res) => {
      if (this.closed || this.watcher !== watcher) return;
      const events = res.events ?? [];
      let last = this.delivered;
      for (const ev of events) {
        const rev = Number(ev.kv.mod_revision);
        if (rev <= this.delivered) continue;
        last = Math.max(last, rev);
        this.deliver(ev.type, ev.kv, ev.prev_kv, rev);
      }
      this.delivered = last;
    });
    watcher.on("disconnected", (err) => {
      log.debug({ err: errorMessage(err), delivered: this.delivered }, "watch stream lost, will resume");
      request.start_revision = String(this.delivered + 1);
    });
    watcher.on("connected", () => {
      // the library moves its resume point to the header revision; ours is authoritative
      request.start_revision = String(this.delivered + 1);
    });
    watcher.on("error", (err) => {
      if (this.closed || this.watcher !== watcher) return;
      void this.recover(err);
    });
  }

  private deliver(type: string, kv: IKeyValue, prev: IKeyValue | undefined, revision: number): void {
    const id = splitKey(kv.key);
    if (!id || (this.kinds && !this.kinds.has(id.kind))) return;
    try {
      if (type.toLowerCase() === "put") {
        this.onEvent({ type: "put", object: decodeKv(kv), revision });
      } else {
        this.onEvent({
          type: "delete",
          kind: id.kind,
          key: id.key,
          prevVersion: prev ? Number(prev.version) : 0,
          revision,
        });
      }
    } catch (err) {
      log.error({ err, kind: id.kind, key: id.key, revision }, "watch consumer threw");
    }
  }

  /** The watch was cancelled by etcd (compaction): resync from now on. */
  private async recover(err: Error): Promise<void> {
    log.warn({ err: errorMessage(err), delivered: this.delivered }, "watch cancelled by etcd (compacted)");
    // etcd already cancelled it server-side: drop it without a cancel round trip
    this.watcher?.removeAllListeners();
    this.watcher = undefined;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        const current = await this.store.revision();
        this.delivered = current;
        await this.start();
        this.opts.onResync?.(current);
        return;
      } catch (e) {
        log.warn({ err: errorMessage(e) }, "watch restart failed, retrying");
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.watcher;
    this.watcher = undefined;
    await w?.cancel();
  }
}

/** Open the etcd driver on these endpoints (`host:port`, `http://host:port` or `etcd://h:p,h:p`). */
export async function openEtcdStore(endpoints: string[]): Promise<NbStore> {
  const hosts = etcdEndpoints(endpoints);
  if (hosts.length === 0) throw new StoreError("no etcd endpoints given", { endpoints });
  const client = new Etcd3({ hosts, dialTimeout: 3000 });
  const store = new EtcdStore(client, hosts);
  try {
    await store.revision();
  } catch (err) {
    client.close();
    throw new StoreError(
      `cannot reach etcd at ${hosts.join(",")}: ${errorMessage(err)}`,
      { endpoints: hosts },
      {
        cause: err,
      },
    );
  }
  return store;
}
