/**
 * The etcd NB store driver: the NbStore contract on a real etcd v3 cluster,
 * through the `etcd3` client.
 *
 *   /flowdrake/nb/<kind>/<key>     one JSON document per object
 *   /flowdrake/lock/<name>         lock keys (lease-bound, outside the NB prefix)
 *
 * Mapping onto etcd's own terms:
 *   - object value    = the key's bytes as JSON; bytes that do not parse (a
 *     hand-written `etcdctl put`) come back from get/list/watch as an object
 *     with `malformed` set and no value, never as an error of the whole call;
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
 *
 * A cluster and its failures. The client gets every member's endpoint; each
 * call goes to one member, and a member that failed is skipped for a second.
 * A transient failure (member gone, "leader changed", "no leader", a timed out
 * request) is retried on another member until `retryMs` has passed — the
 * library's own blind retry is switched off, because retrying a write whose
 * first attempt committed but whose answer was lost would apply it twice (or
 * report a conflict with itself). Instead every transaction also writes a
 * per-client *commit marker*, `/flowdrake/txn/<client>/<slot>` = a fresh
 * nonce, guarded by the marker's version; a slot belongs to one transaction
 * at a time. A retry of a transaction whose first attempt did commit then
 * fails its marker guard, and the failure branch reads the marker back: it
 * holds our nonce, so the write is reported as committed (at the marker's
 * revision), exactly once. Locks use the same idea with the holder id.
 *
 * Transport security: `tls` (CA, client certificate and key, as PEM bytes;
 * also implied by `https://` endpoints) and `auth` (etcd's user/password,
 * exchanged for a token the client renews) — src/nb/store/open.ts builds them
 * from an `etcds://…?ca=&cert=&key=&user=` URL. A first contact that fails
 * says what was refused: our client certificate, the member's certificate,
 * the user name or password, or the permission on /flowdrake/ (StoreError
 * with `context.refused` = "tls" | "auth"). A certificate one side refuses is
 * not retried: no other member or later attempt will think otherwise.
 */
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import {
  Etcd3,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
  type Lease as EtcdLease,
  type Watcher,
} from "etcd3";
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
export const TXN_PREFIX = "/flowdrake/txn/";
const LOCK_TTL_SECONDS = 10;
/** How long a call keeps retrying transient failures (leader change, member down). */
const DEFAULT_RETRY_MS = 20_000;
/** Deadline of one unary gRPC call. */
const CALL_DEADLINE_MS = 5_000;
/** How long a member that failed is skipped. */
const HOST_PENALTY_MS = 1_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class HostSkipped extends Error {
  constructor(host: string) {
    super(`etcd member ${host} skipped after a recent failure`);
  }
}

/** A TLS failure no retry can mend: a certificate one side does not accept. */
const TLS_REFUSED =
  /alert (bad certificate|unknown ca|certificate required|certificate unknown|certificate expired|access denied|handshake failure)|unable to verify|unable to get (local )?issuer|self[- ]signed certificate|certificate has expired|certificate is not yet valid|Hostname\/IP does not match|wrong version number/i;

/** A failure that another attempt (possibly on another member) may not have. */
export function isTransient(err: unknown): boolean {
  if (err instanceof ConflictError || err instanceof LockTimeoutError) return false;
  if (!(err instanceof Error)) return false;
  if (TLS_REFUSED.test(err.message)) return false;
  if (err instanceof HostSkipped || isRecoverableError(err)) return true;
  return /leader changed|no leader|timed out|timeout|deadline|unavailable|ECONNREFUSED|ECONNRESET|EPIPE|connection|too many requests|not capable|stopped|member skipped|No connection established|Connection pool has no hosts|circuit/i.test(
    err.message,
  );
}

type FaultHandling = NonNullable<IOptions["faultHandling"]>;
type HostPolicy = ReturnType<NonNullable<FaultHandling["host"]>>;
type Backoff = NonNullable<FaultHandling["watchBackoff"]>;

/** No retry at all: our own loop retries, knowing which calls are safe to repeat. */
function passThrough(): HostPolicy {
  return {
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T) =>
      fn({ signal: new AbortController().signal }),
  } as unknown as HostPolicy;
}

/** Skip a member for HOST_PENALTY_MS after a transient failure; the pool then picks another. */
function hostPenalty(host: string, others: boolean): HostPolicy {
  let skipUntil = 0;
  return {
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T) => {
      if (Date.now() < skipUntil) throw new HostSkipped(host);
      try {
        return await fn({ signal: new AbortController().signal });
      } catch (err) {
        // a cancelled stream is our own doing (a closed watch), not the member's fault
        if (others && isTransient(err) && !/CANCELLED/.test(errorMessage(err))) {
          log.debug({ host, err: errorMessage(err) }, "etcd member failed; skipping it for a moment");
          skipUntil = Date.now() + HOST_PENALTY_MS;
        }
        throw err;
      }
    },
  } as unknown as HostPolicy;
}

/** Watch stream reconnect backoff: 50 ms doubling to 1 s (the library default grows to 30 s). */
function watchBackoff(ms = 50): Backoff {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, 1000)) } as unknown as Backoff;
}

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

/**
 * One etcd key-value as a StoredObject. Bytes that are not a JSON document
 * (written with etcdctl or another client) give an object with `malformed`
 * set instead of an error, so one bad key costs only itself.
 */
function decodeKv(kv: IKeyValue): StoredObject {
  const id = splitKey(kv.key);
  if (!id) throw new StoreError("key outside the NB prefix", { key: kv.key.toString() });
  const meta = { version: Number(kv.version), modRevision: Number(kv.mod_revision) };
  try {
    return { ...id, value: JSON.parse(kv.value.toString()) as unknown, ...meta };
  } catch (err) {
    const malformed = `not JSON: ${errorMessage(err)}`;
    log.debug({ ...id, ...meta, malformed }, "stored NB value is not JSON");
    return { ...id, value: undefined, malformed, ...meta };
  }
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
  /** Identifies this client's commit markers. */
  private readonly clientId = randomBytes(8).toString("hex");
  /** Commit-marker slots: free ones, and the marker version each slot is at. */
  private readonly freeSlots: number[] = [];
  private readonly slotVersion: number[] = [];

  constructor(
    readonly client: Etcd3,
    readonly endpoints: string[],
    public retryMs = DEFAULT_RETRY_MS,
  ) {}

  private markerKey(slot: number): Buffer {
    return Buffer.from(`${TXN_PREFIX}${this.clientId}/${slot}`);
  }

  /**
   * Run one etcd operation, retrying transient failures until retryMs has
   * passed. `fn` must be safe to repeat (reads, or writes that detect their
   * own earlier commit); errors come out as StoreError.
   */
  private async call<T>(what: string, context: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(`etcd store is closed (${what})`, context);
    const deadline = Date.now() + this.retryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof StoreError || err instanceof ConflictError || err instanceof LockTimeoutError)
          throw err;
        if (!this.closed && isTransient(err) && Date.now() < deadline) {
          if (attempt === 0) log.info({ what, err: errorMessage(err) }, "etcd call failed, retrying");
          await sleep(Math.min(25 * 2 ** Math.min(attempt, 5), 500, Math.max(1, deadline - Date.now())));
          continue;
        }
        throw new StoreError(
          `etcd ${what} failed: ${errorMessage(err)}`,
          { ...context, endpoints: this.endpoints, attempts: attempt + 1 },
          { cause: err },
        );
      }
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

  async txn(ops: TxnOp[]): Promise<TxnResult> {
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
    const slot = this.freeSlots.pop() ?? this.slotVersion.push(0) - 1;
    const nonce = randomBytes(8).toString("hex");
    try {
      return await this.call("txn", { ops: ops.length }, () => this.txnWithMarker(ops, guarded, slot, nonce));
    } finally {
      this.freeSlots.push(slot);
    }
  }

  /** One transaction plus its commit marker; see the module comment. Repeatable. */
  private async txnWithMarker(
    ops: TxnOp[],
    guarded: TxnOp[],
    slot: number,
    nonce: string,
  ): Promise<TxnResult> {
    const marker = this.markerKey(slot);
    for (let stale = 0; ; stale++) {
      const res = await this.client.kv.txn({
        compare: [
          ...guarded.map((op) => ({
            key: Buffer.from(objectKey(op.kind, op.key)),
            target: "Version" as const,
            result: "Equal" as const,
            version: op.expectVersion!,
          })),
          {
            key: marker,
            target: "Version" as const,
            result: "Equal" as const,
            version: this.slotVersion[slot]!,
          },
        ],
        success: [
          ...ops.map((op) =>
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
          { request_put: { key: marker, value: Buffer.from(nonce) } },
        ],
        failure: [
          ...guarded.map((op) => ({ request_range: { key: Buffer.from(objectKey(op.kind, op.key)) } })),
          { request_range: { key: marker } },
        ],
      });
      if (res.succeeded) {
        this.slotVersion[slot] = this.slotVersion[slot]! + 1;
        const versions = ops.map((op, i) => {
          if (op.op === "delete") return 0;
          const prev = res.responses[i]?.response_put?.prev_kv;
          return prev ? Number(prev.version) + 1 : 1;
        });
        return { revision: Number(res.header.revision), versions };
      }
      const m = res.responses[guarded.length]?.response_range?.kvs[0];
      this.slotVersion[slot] = m ? Number(m.version) : 0;
      if (m && m.value.toString() === nonce) {
        // an earlier attempt of this very transaction committed; its answer was lost
        log.info({ revision: Number(m.mod_revision) }, "transaction had committed before the retry");
        return this.committedEarlier(ops, Number(m.mod_revision));
      }
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
      // only the marker moved (a late commit of an older transaction on this slot): try again
      if (stale >= 3) {
        throw new StoreError("transaction guard failed but every guarded key matched on re-read", {
          ops: ops.map((o) => `${o.op} ${o.kind}/${o.key}`),
        });
      }
    }
  }

  /** The result of a transaction found committed at `revision`: versions read at that revision. */
  private async committedEarlier(ops: TxnOp[], revision: number): Promise<TxnResult> {
    const puts = ops.filter((op) => op.op === "put");
    const res = await this.client.kv.txn({
      compare: [],
      success: puts.map((op) => ({
        request_range: { key: Buffer.from(objectKey(op.kind, op.key)), revision },
      })),
      failure: [],
    });
    let i = 0;
    const versions = ops.map((op) =>
      op.op === "delete" ? 0 : Number(res.responses[i++]?.response_range?.kvs[0]?.version ?? 1),
    );
    return { revision, versions };
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

  /** Grant an etcd lease; a failed grant is retried with a fresh lease object. */
  private newLease(
    ttlSeconds: number,
    autoKeepAlive: boolean,
    context: Record<string, unknown>,
  ): Promise<{ lease: EtcdLease; id: string }> {
    return this.call("grant lease", { ...context, ttlSeconds }, async () => {
      const lease = this.client.lease(ttlSeconds, { autoKeepAlive });
      lease.on("lost", (err) => log.warn({ err: errorMessage(err), ...context }, "lease lost"));
      try {
        return { lease, id: await lease.grant() };
      } catch (err) {
        lease.release();
        throw err;
      }
    });
  }

  async withLock<T>(name: string, fn: () => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const lockKey = Buffer.from(`${LOCK_PREFIX}${name}`);
    const { lease, id: leaseId } = await this.newLease(LOCK_TTL_SECONDS, true, { lock: name });
    const holder = randomBytes(8).toString("hex");
    const deadline = Date.now() + timeoutMs;
    try {
      for (let attempt = 0; ; attempt++) {
        // repeatable: an attempt whose answer was lost shows up as our holder id
        const got = await this.call("lock", { name }, async () => {
          const res = await this.client.kv.txn({
            compare: [{ key: lockKey, target: "Version", result: "Equal", version: 0 }],
            success: [{ request_put: { key: lockKey, value: Buffer.from(holder), lease: leaseId } }],
            failure: [{ request_range: { key: lockKey } }],
          });
          return res.succeeded || res.responses[0]?.response_range?.kvs[0]?.value.toString() === holder;
        });
        if (got) break;
        if (Date.now() >= deadline) throw new LockTimeoutError(name, timeoutMs);
        const pause = Math.min(20 * 2 ** Math.min(attempt, 4), 200) * (0.5 + Math.random());
        await sleep(Math.min(pause, Math.max(1, deadline - Date.now())));
      }
      try {
        return await fn();
      } finally {
        await this.call("unlock", { name }, () =>
          this.client.kv.txn({
            compare: [{ key: lockKey, target: "Value", result: "Equal", value: Buffer.from(holder) }],
            success: [{ request_delete_range: { key: lockKey } }],
            failure: [],
          }),
        ).catch((err: unknown) => log.warn({ err, name }, "lock release failed (the lease will expire it)"));
      }
    } finally {
      await this.call("lock lease revoke", { name }, () => lease.revoke()).catch(() => undefined);
    }
  }

  async grantLease(ttlSeconds: number, opts: { keepAlive?: boolean } = {}): Promise<Lease> {
    const { lease, id } = await this.newLease(ttlSeconds, opts.keepAlive ?? true, {});
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
    if (this.slotVersion.length) {
      // drop this client's commit markers (best effort: a crashed client leaves a few small keys)
      const prefix = `${TXN_PREFIX}${this.clientId}/`;
      await this.client.kv
        .deleteRange({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) })
        .catch((err: unknown) => log.debug({ err: errorMessage(err) }, "commit markers not removed"));
    }
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
    // a retried start replaces the attempt that failed; keep it from resurfacing
    const old = this.watcher;
    if (old) {
      old.removeAllListeners();
      old.on("error", () => undefined);
      void old.cancel().catch(() => undefined);
    }
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

/** TLS towards etcd's client port (PEM bytes). */
export interface EtcdTls {
  /** CA that signed the members' certificates; absent = the system's trusted roots. */
  ca?: Buffer;
  /** Client certificate and its key, for members started with `--client-cert-auth`. */
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdStoreOptions {
  /** How long one call keeps retrying transient failures (default 20 s). */
  retryMs?: number;
  /** Talk TLS (also implied by `https://` endpoints). */
  tls?: EtcdTls;
  /** etcd's own user/password authentication (`etcdctl auth enable`). */
  auth?: { username: string; password: string };
}

/** gRPC's message without its hex prefix, timestamps and resolution note. */
function tidy(message: string): string {
  return message
    .replace(/(\s*\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*Resolution note:.*$/s, "")
    .replace(/[0-9A-F]{8,}:error:[0-9A-F]+:SSL routines:[^:]*:/g, "")
    .replace(/:[^:\s]*\.c:\d+:SSL alert number \d+/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * What a failed first contact means, for a person: credentials etcd refused,
 * a certificate one side refused, or simply no answer.
 */
function refusal(err: unknown): { kind: "auth" | "tls" | "unreachable"; hint: string } {
  const m = errorMessage(err);
  if (/authentication failed|invalid user ID or password|user name not found/i.test(m)) {
    return { kind: "auth", hint: "etcd refused the user name or password" };
  }
  if (/user name is empty|invalid auth token/i.test(m)) {
    return {
      kind: "auth",
      hint: "etcd has authentication enabled: give user=NAME in the URL and the password in FLOWDRAKE_NB_PASSWORD or password-file=FILE",
    };
  }
  if (/permission denied/i.test(m)) {
    return { kind: "auth", hint: "the etcd user has no read-write permission on /flowdrake/" };
  }
  if (/alert (bad certificate|unknown ca|certificate required|certificate unknown|access denied)/i.test(m)) {
    return {
      kind: "tls",
      hint: "TLS: the member refused our client certificate (none given with cert=/key=, or not signed by the CA the member trusts, its --trusted-ca-file)",
    };
  }
  if (TLS_REFUSED.test(m)) {
    return {
      kind: "tls",
      hint: "TLS: the member's certificate is not trusted (is ca= the CA that signed it, and does it name the host?)",
    };
  }
  return { kind: "unreachable", hint: "is etcd running there?" };
}

let ipServernameMuted = false;

/**
 * gRPC names a TLS server by the endpoint's host even when it is an IP
 * address, which Node reports once per process as deprecation DEP0123 on
 * stderr — in the middle of a CLI's output, and nothing an operator can act
 * on (certificates for IP endpoints are normal in etcd). That one warning is
 * dropped; every other goes through.
 */
function muteIpServernameWarning(): void {
  if (ipServernameMuted) return;
  ipServernameMuted = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const code = typeof rest[0] === "object" ? (rest[0] as { code?: string } | null)?.code : rest[1];
    if (code === "DEP0123") return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/**
 * Open the etcd driver on these endpoints (`host:port`, `http://host:port`,
 * `https://host:port` or `etcd://h:p,h:p`).
 */
export async function openEtcdStore(endpoints: string[], opts: EtcdStoreOptions = {}): Promise<NbStore> {
  const tls = opts.tls !== undefined || endpoints.some((e) => e.startsWith("https://"));
  const hosts = etcdEndpoints(endpoints).map((h) => (tls ? h.replace(/^http:\/\//, "https://") : h));
  if (hosts.length === 0) throw new StoreError("no etcd endpoints given", { endpoints });
  if ((opts.tls?.cert === undefined) !== (opts.tls?.key === undefined)) {
    throw new StoreError("an etcd client certificate needs its key, and a key its certificate", {
      endpoints: hosts,
    });
  }
  if (
    tls &&
    hosts.some((h) =>
      isIP(
        h
          .replace(/^https:\/\//, "")
          .replace(/:\d+$/, "")
          .replace(/^\[|\]$/g, ""),
      ),
    )
  ) {
    muteIpServernameWarning();
  }
  const client = new Etcd3({
    hosts,
    ...(opts.tls
      ? {
          credentials: {
            // etcd3's type insists on a Buffer; gRPC takes null as "the system's roots"
            rootCertificate: opts.tls.ca ?? (null as unknown as Buffer),
            ...(opts.tls.cert ? { certChain: opts.tls.cert, privateKey: opts.tls.key } : {}),
          },
        }
      : {}),
    ...(opts.auth ? { auth: { username: opts.auth.username, password: opts.auth.password } } : {}),
    dialTimeout: 3000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    faultHandling: {
      global: passThrough(),
      host: (h) => hostPenalty(h, hosts.length > 1),
      watchBackoff: watchBackoff(),
    },
  });
  // the first contact gives up sooner: an unreachable cluster is a setup problem, not a blip
  const store = new EtcdStore(client, hosts, Math.min(opts.retryMs ?? DEFAULT_RETRY_MS, 3000));
  try {
    await store.revision();
    store.retryMs = opts.retryMs ?? DEFAULT_RETRY_MS;
  } catch (err) {
    client.close();
    const r = refusal(err);
    const what = r.kind === "unreachable" ? "cannot reach etcd" : "etcd refused the connection";
    throw new StoreError(
      `${what} at ${hosts.join(",")}: ${r.hint}: ${tidy(errorMessage(err))}`,
      { endpoints: hosts, refused: r.kind === "unreachable" ? undefined : r.kind },
      { cause: err },
    );
  }
  return store;
}
