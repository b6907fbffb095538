/**
 * The NB API: what the CLI, `nb apply` and integrations (an OpenStack or
 * Kubernetes plugin, scripts) call to write the northbound model.
 *
 * Every write follows the same shape (Dragonflow's consistency design):
 *   1. take the per-tenant lock (`tenant/<id>`; `chassis` for chassis) so
 *      multi-object calls of one tenant are serialised;
 *   2. read what the call depends on and validate — schema rules, referential
 *      integrity, IPAM — throwing a ValidationError that names object, field
 *      and reason before anything is written;
 *   3. commit ONE store transaction holding every object it changes, each put
 *      guarded by the version it was read at (0 = must not exist) and every
 *      unique resource (segmentation id, IP, MAC) as a create-only IPAM
 *      reservation. So a call fully happens or not at all, and a writer that
 *      raced us (another process, a stale `--version`) gets a ConflictError.
 *
 * Reads check what they hand out. A stored object whose bytes are not JSON
 * (the store's `malformed`), whose JSON fails its kind's schema, or whose key
 * field is not its key is *malformed*: `list` leaves it out, `scan` reports it
 * beside the good ones with the reason, `find`/`get` (and so `update`) throw a
 * MalformedObjectError naming it, and `delete` removes it together with every
 * IPAM reservation it owns. So one bad key costs only itself: validating other
 * objects never trips over it, and a malformed reservation counts as taken.
 *
 * Batches. One call at a time costs a lock, the reads and a transaction per
 * object. `batch(locks, fn)` takes the named locks once (sorted, so batches
 * cannot deadlock each other) and runs the same calls on a *view*: reads come
 * from the store once per kind (a kind asked for more than a few single keys
 * is read whole), overlaid with the batch's own writes; each call's ops, with
 * exactly the guards and reservations it would commit alone, are staged. The
 * staged calls are committed in order, as transactions of whole calls with at
 * most BATCH_MAX_OPS ops (etcd's default `--max-txn-ops` is 128; the etcd
 * driver adds one op, its commit marker) and about 1 MiB of values, cut before
 * a call that touches a key already in the transaction; a store that refuses
 * that many ops in one transaction makes the batch halve its size and retry.
 * When a call fails (validation, a lock the batch lacks), the calls staged
 * before it are committed and then its error is thrown, as if they had run
 * one at a time (should that commit fail, its error is thrown instead); when a
 * transaction fails (a guard lost to a racing writer: ConflictError; the store:
 * StoreError), the transactions before it stay committed and nothing of it is.
 * Inside a batch a call returns its object with the version it will have and
 * modRevision 0, which is set when its transaction commits; the objects a
 * batch hands out are shared with its view, so callers must not change them.
 * A batch may be told the reservations its calls will make with values they
 * give (`claims`): the allocators skip those, so a call that allocates never
 * takes what a later call of the batch names. `createMany` is a batch of
 * creates that claims what its items give; `nb apply` runs its whole plan as
 * one batch with the plan's claims.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { FlowdrakeError } from "../util/errors.js";
import { logger } from "../util/log.js";
import { ConflictError, StoreError } from "./store/errors.js";
import type { Kind, NbStore, StoredObject, TxnOp, TxnResult } from "./store/types.js";
import {
  type Chassis,
  DEFAULT_MTU,
  DEVICE_OWNER_ROUTER_INTERFACE,
  type FloatingIp,
  IPAM_KINDS,
  KINDS,
  MalformedObjectError,
  type Network,
  NotFoundError,
  type ObjectKind,
  type Port,
  type Router,
  type RouterInterface,
  SEGMENTATION_RANGES,
  type Secgroup,
  type SecgroupRule,
  type SnatGateway,
  type Subnet,
  type Tenant,
  ValidationError,
  keyOf,
  parseObject,
} from "./model/index.js";
import { bigToIp, cidrContains, cidrsOverlap, hostRange, ipToBig, ipVersion, parseCidr } from "./model/ip.js";

export interface ModelOf {
  chassis: Chassis;
  tenant: Tenant;
  lswitch: Network;
  subnet: Subnet;
  lport: Port;
  lrouter: Router;
  secgroup: Secgroup;
  fip: FloatingIp;
  snat: SnatGateway;
}

export interface Versioned<T> {
  kind: ObjectKind;
  key: string;
  version: number;
  modRevision: number;
  value: T;
}

/** A stored object the API cannot use (see the module comment). */
export interface MalformedObject {
  kind: ObjectKind;
  key: string;
  version: number;
  modRevision: number;
  /** Why: `not JSON: …`, `<field>: <schema reason>`, or `id: is "x", not its key`. */
  malformed: string;
  /** The stored JSON when it parsed (a schema failure); absent for bytes that are not JSON. */
  raw?: unknown;
}

/** `scan`: the usable objects and, apart, the malformed ones. */
export interface ScanResult<T> {
  objects: Versioned<T>[];
  malformed: MalformedObject[];
}

export interface WriteOptions {
  /** CAS: fail with ConflictError unless the object is at this version. */
  expectVersion?: number;
}

export interface ListFilter {
  tenantId?: string;
  networkId?: string;
}

type Obj = Record<string, unknown>;
type Reservations = Map<string, string>; // "<ipam kind>\0<key>" → owner

const log = logger("nb-api");

/** Ops per batch transaction: etcd's default `--max-txn-ops` (128) less the etcd driver's commit marker. */
export const BATCH_MAX_OPS = 127;
/** Bytes of values per batch transaction (etcd refuses requests over 1.5 MiB by default). */
const BATCH_MAX_BYTES = 1 << 20;
/** A batch reads a kind whole once it has been asked for more single keys of it than this. */
const SINGLE_GETS_BEFORE_WHOLE_KIND = 8;
const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/**
 * The lock a write of this object takes: `tenant/<id>` for tenant-owned kinds,
 * the kind's own name otherwise; undefined when a tenant-owned object names no tenant.
 */
export function lockName(kind: ObjectKind, tenantId: unknown): string | undefined {
  if (!KINDS[kind].tenantOwned) return kind;
  return typeof tenantId === "string" && tenantId !== "" ? `tenant/${tenantId}` : undefined;
}

/** A batch call needed a lock the batch was not given. */
export class BatchLockError extends FlowdrakeError {
  constructor(name: string, held: string[]) {
    super("BATCH_LOCK", `the batch does not hold lock ${name} (it holds ${held.join(", ") || "none"})`, {
      name,
      held,
    });
  }
}

/** The calls a batch offers: NbApi's reads and writes, run on the batch's view. */
export type NbBatch = Pick<
  NbApi,
  | "find"
  | "get"
  | "list"
  | "scan"
  | "create"
  | "update"
  | "delete"
  | "routerAddInterface"
  | "routerRemoveInterface"
  | "secgroupRuleAdd"
  | "secgroupRuleDelete"
>;

export interface BatchOptions {
  /** Called after each committed transaction with the number of calls committed so far (in call order). */
  onCommit?: (calls: number) => void | Promise<void>;
  /** Ops per transaction (default BATCH_MAX_OPS). */
  maxOps?: number;
  /**
   * Reservations (`reservationIds`) that calls of this batch give explicitly.
   * The allocators never hand one out, so an object created before the one
   * that names an address, MAC or segment cannot take it first.
   * `createMany` claims what its items give by itself.
   */
  claims?: Iterable<string>;
}

/** Where the API's calls read and write: the store itself, or a batch's view. */
interface Session {
  get(kind: Kind, key: string): Promise<StoredObject | undefined>;
  list(kind: Kind): Promise<StoredObject[]>;
  /** Commit one call's ops (a batch stages them and answers with the versions they will get). */
  commit(ops: TxnOp[]): Promise<TxnResult>;
  locked<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Set `modRevision` of these results once the ops that answered `res` are committed. */
  settle(res: TxnResult, ...results: { modRevision: number }[]): void;
  /** A stored object checked against its kind's schema (readObject; a batch remembers the answer). */
  read<T>(kind: ObjectKind, o: StoredObject): Versioned<T> | MalformedObject;
  /** Every object of a kind, for many lookups by key. */
  index(kind: Kind): Promise<{ get(key: string): StoredObject | undefined; size: number }>;
  /**
   * Allocator memory (a batch's only): a number remembered under `key` until
   * the batch deletes an object of `kind`; a plain call remembers nothing.
   */
  recall(kind: Kind, key: string): bigint | undefined;
  remember(kind: Kind, key: string, n: bigint): void;
  /** Reservations a call of this batch will make with a value it gives: not for allocating (BatchOptions.claims). */
  readonly claims: ReadonlySet<string>;
}

class DirectSession implements Session {
  constructor(
    private readonly store: NbStore,
    private readonly lockTimeoutMs: number,
    readonly claims: ReadonlySet<string> = new Set(),
  ) {}

  get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    return this.store.get(kind, key);
  }

  list(kind: Kind): Promise<StoredObject[]> {
    return this.store.list(kind);
  }

  commit(ops: TxnOp[]): Promise<TxnResult> {
    return this.store.txn(ops);
  }

  locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.store.withLock(name, fn, { timeoutMs: this.lockTimeoutMs });
  }

  settle(): void {}

  read<T>(kind: ObjectKind, o: StoredObject): Versioned<T> | MalformedObject {
    return readObject<T>(kind, o);
  }

  async index(kind: Kind): Promise<{ get(key: string): StoredObject | undefined; size: number }> {
    const all = new Map((await this.store.list(kind)).map((o) => [o.key, o]));
    return { get: (key) => all.get(key), size: all.size };
  }

  recall(): undefined {
    return undefined;
  }

  remember(): void {}
}

interface StagedCall {
  ops: TxnOp[];
  bytes: number;
  res: TxnResult;
  results: { modRevision: number }[];
}

const isTooManyOps = (err: unknown): boolean =>
  err instanceof StoreError && /too many operations in txn/i.test(err.message);

/** A batch's view and staging area; see the module comment. */
class BatchSession implements Session {
  /** Kinds read whole: key → object as last read from the store. */
  private readonly whole = new Map<Kind, Map<string, StoredObject>>();
  /** Single keys read from the store ("kind\0key"; null = absent), and how many per kind. */
  private readonly singles = new Map<string, StoredObject | null>();
  private readonly singleGets = new Map<Kind, number>();
  /** This batch's writes (staged or committed) over what the store returned; null = deleted. */
  private readonly overlay = new Map<Kind, Map<string, StoredObject | null>>();
  private staged: StagedCall[] = [];
  private stagedKeys = new Set<string>();
  private committedCalls = 0;
  private failed: unknown;
  private readonly parsed = new WeakMap<StoredObject, Versioned<unknown> | MalformedObject>();
  /** Deletes staged per kind: allocator memory of a kind is valid while this count stands. */
  private readonly deletes = new Map<Kind, number>();
  private readonly memory = new Map<string, { n: bigint; deletes: number }>();
  readonly claims: ReadonlySet<string>;

  constructor(
    private readonly store: NbStore,
    private readonly held: Set<string>,
    private readonly opts: BatchOptions,
    private maxOps = opts.maxOps ?? BATCH_MAX_OPS,
  ) {
    this.claims = new Set(opts.claims ?? []);
  }

  async get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    const over = this.overlay.get(kind);
    if (over?.has(key)) return over.get(key) ?? undefined;
    const all = this.whole.get(kind);
    if (all) return all.get(key);
    const n = (this.singleGets.get(kind) ?? 0) + 1;
    this.singleGets.set(kind, n);
    if (n > SINGLE_GETS_BEFORE_WHOLE_KIND) return (await this.load(kind)).get(key);
    const id = `${kind}\u0000${key}`;
    if (this.singles.has(id)) return this.singles.get(id) ?? undefined;
    const got = await this.store.get(kind, key);
    this.singles.set(id, got ?? null);
    return got;
  }

  async list(kind: Kind): Promise<StoredObject[]> {
    const all = await this.load(kind);
    const over = this.overlay.get(kind);
    if (!over) return [...all.values()];
    const out: StoredObject[] = [];
    for (const [key, o] of all) if (!over.has(key)) out.push(o);
    for (const o of over.values()) if (o) out.push(o);
    return out;
  }

  read<T>(kind: ObjectKind, o: StoredObject): Versioned<T> | MalformedObject {
    let r = this.parsed.get(o);
    if (!r) this.parsed.set(o, (r = readObject<unknown>(kind, o)));
    return r as Versioned<T> | MalformedObject;
  }

  async index(kind: Kind): Promise<{ get(key: string): StoredObject | undefined; size: number }> {
    const all = await this.load(kind);
    const over = this.overlay.get(kind);
    return {
      get: (key) => (over?.has(key) ? (over.get(key) ?? undefined) : all.get(key)),
      size: all.size + (over?.size ?? 0),
    };
  }

  recall(kind: Kind, key: string): bigint | undefined {
    const m = this.memory.get(`${kind}\u0000${key}`);
    return m && m.deletes === (this.deletes.get(kind) ?? 0) ? m.n : undefined;
  }

  remember(kind: Kind, key: string, n: bigint): void {
    this.memory.set(`${kind}\u0000${key}`, { n, deletes: this.deletes.get(kind) ?? 0 });
  }

  private async load(kind: Kind): Promise<Map<string, StoredObject>> {
    let all = this.whole.get(kind);
    if (!all) {
      all = new Map((await this.store.list(kind)).map((o) => [o.key, o]));
      this.whole.set(kind, all);
    }
    return all;
  }

  async commit(ops: TxnOp[]): Promise<TxnResult> {
    if (this.failed) throw this.failed;
    const keys = ops.map((op) => `${op.kind}\u0000${op.key}`);
    const bytes = ops.reduce(
      (n, op) => n + (op.op === "put" ? JSON.stringify(op.value ?? null).length : 0),
      0,
    );
    const size = this.staged.reduce((n, c) => n + c.ops.length, 0);
    const bytesStaged = this.staged.reduce((n, c) => n + c.bytes, 0);
    if (
      keys.some((k) => this.stagedKeys.has(k)) ||
      (this.staged.length > 0 && (size + ops.length > this.maxOps || bytesStaged + bytes > BATCH_MAX_BYTES))
    ) {
      await this.flush();
    }
    const versions: number[] = [];
    for (const op of ops) {
      let over = this.overlay.get(op.kind);
      if (!over) this.overlay.set(op.kind, (over = new Map()));
      if (op.op === "delete") {
        versions.push(0);
        over.set(op.key, null);
        this.deletes.set(op.kind, (this.deletes.get(op.kind) ?? 0) + 1);
        continue;
      }
      const version =
        op.expectVersion !== undefined
          ? op.expectVersion + 1
          : ((await this.get(op.kind, op.key))?.version ?? 0) + 1;
      versions.push(version);
      over.set(op.key, { kind: op.kind, key: op.key, value: op.value, version, modRevision: 0 });
    }
    const res: TxnResult = { revision: 0, versions };
    this.staged.push({ ops, bytes, res, results: [] });
    for (const k of keys) this.stagedKeys.add(k);
    return res;
  }

  settle(res: TxnResult, ...results: { modRevision: number }[]): void {
    const call = this.staged.find((c) => c.res === res);
    if (call) call.results.push(...results);
    else for (const r of results) r.modRevision = res.revision;
  }

  locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (!this.held.has(name)) throw new BatchLockError(name, [...this.held]);
    return fn();
  }

  /** Commit every staged call, in order, in transactions of whole calls. */
  async flush(): Promise<void> {
    if (this.failed) throw this.failed;
    const calls = this.staged;
    this.staged = [];
    this.stagedKeys = new Set();
    let i = 0;
    while (i < calls.length) {
      let n = 0;
      let size = 0;
      let bytes = 0;
      while (i + n < calls.length) {
        const c = calls[i + n]!;
        if (n > 0 && (size + c.ops.length > this.maxOps || bytes + c.bytes > BATCH_MAX_BYTES)) break;
        size += c.ops.length;
        bytes += c.bytes;
        n++;
      }
      const chunk = calls.slice(i, i + n);
      let res: TxnResult;
      try {
        res = await this.store.txn(chunk.flatMap((c) => c.ops));
      } catch (err) {
        if (isTooManyOps(err) && size > 1 && n > 1) {
          this.maxOps = Math.max(1, Math.floor(size / 2));
          log.info({ maxOps: this.maxOps }, "store refused the transaction size; batching fewer ops");
          continue;
        }
        this.failed = err;
        throw err;
      }
      let at = 0;
      for (const c of chunk) {
        c.res.revision = res.revision;
        c.res.versions.splice(0, c.ops.length, ...res.versions.slice(at, at + c.ops.length));
        c.ops.forEach((op, j) => {
          const over = this.overlay.get(op.kind);
          const o = over?.get(op.key);
          if (o) over!.set(op.key, { ...o, version: c.res.versions[j]!, modRevision: res.revision });
        });
        for (const r of c.results) r.modRevision = res.revision;
        at += c.ops.length;
      }
      this.committedCalls += chunk.length;
      i += n;
      await this.opts.onCommit?.(this.committedCalls);
    }
  }

  /** The calls staged before a failure: commit them unless a transaction already failed. */
  async settleAfterError(): Promise<void> {
    if (!this.failed) await this.flush();
  }
}

/** Fields that update refuses to change (the object must be deleted and created again). */
export const IMMUTABLE: Partial<Record<ObjectKind, string[]>> = {
  lswitch: ["networkType", "physicalNetwork", "external"],
  subnet: ["networkId", "cidr", "ipVersion"],
  lport: ["networkId", "deviceOwner"],
  fip: ["floatingNetworkId"],
  snat: ["routerId", "externalNetworkId"],
};

export class NbApi {
  /** Where this instance's calls read and write (the store, or a batch's view). */
  private s: Session;

  constructor(
    readonly store: NbStore,
    private readonly opts: {
      lockTimeoutMs?: number;
      /** Where allocated MACs' random bytes come from (default crypto's randomBytes; a test pins it). */
      randomBytes?: (size: number) => Uint8Array;
    } = {},
  ) {
    this.s = new DirectSession(store, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  }

  // ---- reads ----------------------------------------------------------------

  /** The object, or undefined when absent; MalformedObjectError when it is stored but malformed. */
  async find<K extends ObjectKind>(kind: K, key: string): Promise<Versioned<ModelOf[K]> | undefined> {
    const o = await this.inspect<ModelOf[K]>(kind, key);
    if (o && "malformed" in o) throw new MalformedObjectError(kind, key, o.malformed, o.version);
    return o;
  }

  async get<K extends ObjectKind>(kind: K, key: string): Promise<Versioned<ModelOf[K]>> {
    const o = await this.find(kind, key);
    if (!o) throw new NotFoundError(kind, key);
    return o;
  }

  /** The usable objects of a kind (malformed ones are left out; `scan` reports them). */
  async list<K extends ObjectKind>(kind: K, filter: ListFilter = {}): Promise<Versioned<ModelOf[K]>[]> {
    return (await this.scan(kind, filter)).objects;
  }

  /**
   * The usable objects of a kind and, apart, the malformed ones. The filter
   * drops a malformed object only when its stored JSON names another tenant or network.
   */
  async scan<K extends ObjectKind>(kind: K, filter: ListFilter = {}): Promise<ScanResult<ModelOf[K]>> {
    const out: ScanResult<ModelOf[K]> = { objects: [], malformed: [] };
    for (const stored of await this.s.list(kind)) {
      const o = this.s.read<ModelOf[K]>(kind, stored);
      if ("malformed" in o) {
        const raw = (isObj(o.raw) ? o.raw : {}) as Obj;
        const other = (f: keyof ListFilter): boolean =>
          filter[f] !== undefined && typeof raw[f] === "string" && raw[f] !== filter[f];
        if (!other("tenantId") && !other("networkId")) out.malformed.push(o);
        continue;
      }
      const v = o.value as unknown as Obj;
      if (filter.tenantId !== undefined && v.tenantId !== filter.tenantId) continue;
      if (filter.networkId !== undefined && v.networkId !== filter.networkId) continue;
      out.objects.push(o);
    }
    return out;
  }

  /** The object as read, malformed or not; undefined when absent. */
  private async inspect<T>(
    kind: ObjectKind,
    key: string,
  ): Promise<Versioned<T> | MalformedObject | undefined> {
    const o = await this.s.get(kind, key);
    return o ? this.s.read<T>(kind, o) : undefined;
  }

  /** Resolve an id, or a name unique within the tenant (or globally when no tenant is given). */
  async resolve(kind: ObjectKind, idOrName: string, tenantId?: string): Promise<string> {
    if (await this.s.get(kind, idOrName)) return idOrName;
    const matches = (await this.list(kind, tenantId ? { tenantId } : {})).filter(
      (o) => (o.value as unknown as Obj).name === idOrName,
    );
    if (matches.length === 1) return matches[0]!.key;
    if (matches.length > 1) {
      throw new ValidationError(kind, idOrName, "name", `is used by ${matches.length} objects; use the id`);
    }
    throw new NotFoundError(kind, idOrName);
  }

  // ---- generic writes --------------------------------------------------------------

  async create<K extends ObjectKind>(kind: K, input: Obj): Promise<Versioned<ModelOf[K]>> {
    const draft: Obj = { ...input };
    if (KINDS[kind].keyField === "id" && draft.id === undefined) draft.id = randomUUID();
    if (kind === "secgroup") draft.rules = withRuleIds(draft.rules);
    const key = keyOf(kind, draft);
    return this.locked(kind, draft, async () => {
      const existing = await this.inspect(kind, key);
      if (existing) {
        const bad =
          "malformed" in existing
            ? ` (its stored value is malformed: ${existing.malformed}; delete it first)`
            : "";
        throw new ValidationError(kind, key, KINDS[kind].keyField, `already exists${bad}`);
      }
      const parsed = parseObject<Obj>(kind, draft, key);
      const { value, reservations } = await this.prepare(kind, parsed, undefined);
      const ops: TxnOp[] = [{ op: "put", kind, key, value, expectVersion: 0 }];
      ops.push(...(await this.reservationOps(kind, key, new Map(), reservations)));
      return this.commitObject<K>(kind, key, ops, value);
    });
  }

  async update<K extends ObjectKind>(
    kind: K,
    key: string,
    patch: Obj,
    opts: WriteOptions = {},
  ): Promise<Versioned<ModelOf[K]>> {
    const first = await this.get(kind, key);
    return this.locked(kind, first.value as unknown as Obj, async () => {
      const old = await this.get(kind, key);
      checkVersion(kind, key, opts.expectVersion, old.version);
      const oldValue = old.value as unknown as Obj;
      const draft: Obj = { ...oldValue, ...patch };
      for (const f of [KINDS[kind].keyField, "tenantId", ...(IMMUTABLE[kind] ?? [])]) {
        if (f in patch && JSON.stringify(patch[f]) !== JSON.stringify(oldValue[f])) {
          throw new ValidationError(kind, key, f, "cannot be changed after create");
        }
      }
      if (
        kind === "lrouter" &&
        "interfaces" in patch &&
        JSON.stringify(patch.interfaces) !== JSON.stringify(oldValue.interfaces)
      ) {
        throw new ValidationError(
          kind,
          key,
          "interfaces",
          "change interfaces with router add-interface/remove-interface",
        );
      }
      if (kind === "secgroup") draft.rules = withRuleIds(draft.rules);
      const parsed = parseObject<Obj>(kind, draft, key);
      const { value, reservations } = await this.prepare(kind, parsed, oldValue);
      const ops: TxnOp[] = [{ op: "put", kind, key, value, expectVersion: old.version }];
      ops.push(...(await this.reservationOps(kind, key, this.reservationsOf(kind, oldValue), reservations)));
      return this.commitObject<K>(kind, key, ops, value);
    });
  }

  /**
   * Delete after the integrity checks. A malformed object is deleted without
   * them (nothing can be read from it), with every IPAM reservation it owns,
   * under its tenant's lock when its stored JSON names one.
   */
  async delete(kind: ObjectKind, key: string, opts: WriteOptions = {}): Promise<void> {
    const first = await this.inspect(kind, key);
    if (!first) throw new NotFoundError(kind, key);
    const bad = "malformed" in first;
    const tenantValue = (bad ? (isObj(first.raw) ? first.raw : {}) : first.value) as Obj;
    const run = async (): Promise<boolean> => {
      const old = await this.inspect(kind, key);
      if (!old) throw new NotFoundError(kind, key);
      checkVersion(kind, key, opts.expectVersion, old.version);
      if ("malformed" in old) {
        await this.s.commit([
          { op: "delete", kind, key, expectVersion: old.version },
          ...(await this.ownedReservationOps(kind, key)),
        ]);
        return true;
      }
      if (bad) return false; // repaired meanwhile: delete it the ordinary way, under its tenant's lock
      const v = old.value as unknown as Obj;
      await this.checkDelete(kind, key, v);
      const ops: TxnOp[] = [{ op: "delete", kind, key, expectVersion: old.version }];
      ops.push(...(await this.reservationOps(kind, key, this.reservationsOf(kind, v), new Map())));
      await this.s.commit(ops);
      return true;
    };
    const name = lockName(kind, tenantValue.tenantId);
    const done = bad && name === undefined ? await run() : await this.locked(kind, tenantValue, run);
    if (!done) await this.delete(kind, key, opts);
  }

  // ---- multi-object operations ----------------------------------------------------------

  /** Attach a subnet to a router: creates the router's port on the subnet and adds the interface, in one txn. */
  async routerAddInterface(
    routerId: string,
    args: { subnetId: string; ipAddress?: string },
    opts: WriteOptions = {},
  ): Promise<{ router: Versioned<Router>; port: Versioned<Port> }> {
    const first = await this.get("lrouter", routerId);
    return this.withTenantLock(first.value.tenantId, async () => {
      const router = await this.get("lrouter", routerId);
      checkVersion("lrouter", routerId, opts.expectVersion, router.version);
      const r = router.value;
      const subnet = await this.find("subnet", args.subnetId);
      if (!subnet)
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.subnetId",
          `subnet ${args.subnetId} does not exist`,
        );
      const s = subnet.value;
      if (s.tenantId !== r.tenantId) {
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.subnetId",
          `subnet ${s.id} belongs to tenant ${s.tenantId}, not ${r.tenantId}`,
        );
      }
      for (const itf of r.interfaces) {
        if (itf.subnetId === s.id)
          throw new ValidationError(
            "lrouter",
            routerId,
            "interfaces.subnetId",
            `subnet ${s.id} is already attached`,
          );
        if (cidrsOverlap(itf.cidr, s.cidr)) {
          throw new ValidationError(
            "lrouter",
            routerId,
            "interfaces.subnetId",
            `subnet ${s.id} (${s.cidr}) overlaps subnet ${itf.subnetId} (${itf.cidr}) already on the router`,
          );
        }
      }
      const ip = args.ipAddress ?? s.gatewayIp;
      if (!ip)
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.ipAddress",
          `subnet ${s.id} has no gateway; give an ipAddress`,
        );
      const portDraft = parseObject<Obj>("lport", {
        id: randomUUID(),
        tenantId: r.tenantId,
        networkId: s.networkId,
        name: `router-interface ${r.name || r.id}`,
        deviceOwner: DEVICE_OWNER_ROUTER_INTERFACE,
        deviceId: r.id,
        fixedIps: [{ subnetId: s.id, ipAddress: ip }],
        portSecurityEnabled: false,
      });
      const { value: portValue, reservations } = await this.prepare("lport", portDraft, undefined);
      const port = portValue as unknown as Port;
      const itf: RouterInterface = {
        subnetId: s.id,
        portId: port.id,
        networkId: s.networkId,
        ipAddress: port.fixedIps[0]!.ipAddress,
        cidr: s.cidr,
        macAddress: port.macAddress,
      };
      const newRouter: Router = { ...r, interfaces: [...r.interfaces, itf] };
      const ops: TxnOp[] = [
        { op: "put", kind: "lport", key: port.id, value: port, expectVersion: 0 },
        { op: "put", kind: "lrouter", key: r.id, value: newRouter, expectVersion: router.version },
        ...(await this.reservationOps("lport", port.id, new Map(), reservations)),
      ];
      const res = await this.s.commit(ops);
      const out = {
        port: {
          kind: "lport" as const,
          key: port.id,
          version: res.versions[0]!,
          modRevision: res.revision,
          value: port,
        },
        router: {
          kind: "lrouter" as const,
          key: r.id,
          version: res.versions[1]!,
          modRevision: res.revision,
          value: newRouter,
        },
      };
      this.s.settle(res, out.port, out.router);
      return out;
    });
  }

  /** Detach a subnet from a router: deletes the router's port and the interface, in one txn. */
  async routerRemoveInterface(
    routerId: string,
    args: { subnetId: string },
    opts: WriteOptions = {},
  ): Promise<Versioned<Router>> {
    const first = await this.get("lrouter", routerId);
    return this.withTenantLock(first.value.tenantId, async () => {
      const router = await this.get("lrouter", routerId);
      checkVersion("lrouter", routerId, opts.expectVersion, router.version);
      const r = router.value;
      const itf = r.interfaces.find((i) => i.subnetId === args.subnetId);
      if (!itf)
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.subnetId",
          `subnet ${args.subnetId} is not attached`,
        );
      const route = r.routes.find((rt) => cidrContains(itf.cidr, rt.nexthop));
      if (route) {
        throw new ValidationError(
          "lrouter",
          routerId,
          "routes",
          `route ${route.destination} via ${route.nexthop} needs this interface; remove it first`,
        );
      }
      const newRouter: Router = { ...r, interfaces: r.interfaces.filter((i) => i !== itf) };
      const ops: TxnOp[] = [
        { op: "put", kind: "lrouter", key: r.id, value: newRouter, expectVersion: router.version },
      ];
      const port = await this.find("lport", itf.portId);
      if (port) {
        ops.push({ op: "delete", kind: "lport", key: port.key, expectVersion: port.version });
        ops.push(
          ...(await this.reservationOps(
            "lport",
            port.key,
            this.reservationsOf("lport", port.value as unknown as Obj),
            new Map(),
          )),
        );
      }
      const res = await this.s.commit(ops);
      const out: Versioned<Router> = {
        kind: "lrouter",
        key: r.id,
        version: res.versions[0]!,
        modRevision: res.revision,
        value: newRouter,
      };
      this.s.settle(res, out);
      return out;
    });
  }

  async secgroupRuleAdd(
    groupId: string,
    rule: Obj,
    opts: WriteOptions = {},
  ): Promise<{ group: Versioned<Secgroup>; rule: SecgroupRule }> {
    const g = await this.get("secgroup", groupId);
    checkVersion("secgroup", groupId, opts.expectVersion, g.version);
    const id = typeof rule.id === "string" ? rule.id : randomUUID();
    const group = await this.update(
      "secgroup",
      groupId,
      { rules: [...g.value.rules, { ...rule, id }] },
      { expectVersion: g.version },
    );
    return { group, rule: group.value.rules.find((r) => r.id === id)! };
  }

  async secgroupRuleDelete(
    groupId: string,
    ruleId: string,
    opts: WriteOptions = {},
  ): Promise<Versioned<Secgroup>> {
    const g = await this.get("secgroup", groupId);
    checkVersion("secgroup", groupId, opts.expectVersion, g.version);
    if (!g.value.rules.some((r) => r.id === ruleId))
      throw new ValidationError("secgroup", groupId, "rules", `rule ${ruleId} does not exist`);
    return this.update(
      "secgroup",
      groupId,
      { rules: g.value.rules.filter((r) => r.id !== ruleId) },
      { expectVersion: g.version },
    );
  }

  // ---- locking ------------------------------------------------------------------------

  private async locked<T>(kind: ObjectKind, value: Obj, fn: () => Promise<T>): Promise<T> {
    const name = lockName(kind, value.tenantId);
    if (name === undefined) throw new ValidationError(kind, keyOf(kind, value), "tenantId", "is required");
    return this.s.locked(name, fn);
  }

  private withTenantLock<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
    return this.s.locked(`tenant/${tenantId}`, fn);
  }

  // ---- batches ------------------------------------------------------------------------

  /**
   * This API, its plain calls keeping `claims` (BatchOptions.claims) out of
   * allocation: a plan run one call at a time allocates what its batch would.
   */
  claiming(claims: Iterable<string>): NbApi {
    const out = new NbApi(this.store, this.opts);
    out.s = new DirectSession(
      this.store,
      this.opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
      new Set(claims),
    );
    return out;
  }

  /**
   * Run `fn`'s calls as one batch holding `locks` (see the module comment);
   * every lock a call needs must be named (lockName). Returns fn's result once
   * every staged call is committed.
   */
  async batch<T>(
    locks: Iterable<string>,
    fn: (b: NbBatch) => Promise<T>,
    opts: BatchOptions = {},
  ): Promise<T> {
    const names = [...new Set(locks)].sort();
    if (this.s instanceof BatchSession) {
      for (const n of names) await this.s.locked(n, async () => undefined);
      return fn(this);
    }
    const hold = async (i: number): Promise<T> => {
      if (i < names.length) return this.s.locked(names[i]!, () => hold(i + 1));
      const session = new BatchSession(this.store, new Set(names), opts);
      const inner = new NbApi(this.store, this.opts);
      inner.s = session;
      let result: T;
      try {
        result = await fn(inner);
      } catch (err) {
        try {
          await session.settleAfterError();
        } catch (flushErr) {
          // the calls before the failed one could not be committed: that is what stopped the batch
          log.warn({ err }, "batch call failed, and committing the calls before it failed too");
          throw flushErr;
        }
        throw err;
      }
      await session.flush();
      return result;
    };
    return hold(0);
  }

  /** Create many objects in one batch (their locks taken once); returns them as committed. */
  async createMany(
    items: { kind: ObjectKind; input: Obj }[],
    opts: BatchOptions = {},
  ): Promise<Versioned<unknown>[]> {
    const locks = new Set<string>();
    for (const it of items) {
      const name = lockName(it.kind, it.input.tenantId);
      if (name !== undefined) locks.add(name);
    }
    const claims = items.flatMap((it) => reservationIds(it.kind, it.input));
    return this.batch(
      locks,
      async (b) => {
        const out: Versioned<unknown>[] = [];
        for (const it of items) out.push(await b.create(it.kind, it.input));
        return out;
      },
      { ...opts, claims: [...(opts.claims ?? []), ...claims] },
    );
  }

  // ---- integrity and IPAM -------------------------------------------------------------

  /** Check references, fill allocated fields, and return the reservations the object holds. */
  /** Commit a put (plus its reservations) and return the object as stored. */
  private async commitObject<K extends ObjectKind>(
    kind: K,
    key: string,
    ops: TxnOp[],
    value: unknown,
  ): Promise<Versioned<ModelOf[K]>> {
    const r = await this.s.commit(ops);
    const out: Versioned<ModelOf[K]> = {
      kind,
      key,
      version: r.versions[0]!,
      modRevision: r.revision,
      value: value as ModelOf[K],
    };
    this.s.settle(r, out);
    return out;
  }

  private async prepare(
    kind: ObjectKind,
    v: Obj,
    old: Obj | undefined,
  ): Promise<{ value: Obj; reservations: Reservations }> {
    const key = keyOf(kind, v);
    const fail = (field: string, reason: string): never => {
      throw new ValidationError(kind, key, field, reason);
    };
    const owner = `${kind}/${key}`;
    const fresh = old === undefined;
    const taken = new Set<string>();
    switch (kind) {
      case "lswitch": {
        const n = v as unknown as Network;
        n.mtu ??= DEFAULT_MTU[n.networkType];
        const range = SEGMENTATION_RANGES[n.networkType];
        if (range) {
          n.segmentationId ??=
            (old?.segmentationId as number | undefined) ?? (await this.allocateSegmentationId(n, range));
          const holder = await this.reservationOwner(IPAM_KINDS.seg, segKey(n));
          if (holder && holder !== owner)
            fail("segmentationId", `${n.networkType} ${segLabel(n)} is already used by ${holder}`);
        } else {
          const holder = await this.reservationOwner(IPAM_KINDS.seg, segKey(n));
          if (holder && holder !== owner)
            fail("physicalNetwork", `flat network on ${n.physicalNetwork} already exists: ${holder}`);
        }
        break;
      }
      case "subnet": {
        const s = v as unknown as Subnet;
        const net = await this.find("lswitch", s.networkId);
        if (!net) fail("networkId", `network ${s.networkId} does not exist`);
        if (net!.value.tenantId !== s.tenantId && !net!.value.external) {
          fail("networkId", `network ${s.networkId} belongs to tenant ${net!.value.tenantId}`);
        }
        for (const other of await this.list("subnet", { networkId: s.networkId })) {
          if (other.key !== s.id && cidrsOverlap(other.value.cidr, s.cidr)) {
            fail(
              "cidr",
              `${s.cidr} overlaps subnet ${other.key} (${other.value.cidr}) on network ${s.networkId}`,
            );
          }
        }
        const c = parseCidr(s.cidr);
        s.ipVersion = c.version;
        const hosts = hostRange(s.cidr);
        if (s.gatewayIp === undefined) s.gatewayIp = bigToIp(hosts.first, c.version);
        for (const [i, pool] of (s.allocationPools ?? []).entries()) {
          const g = s.gatewayIp ? ipToBig(s.gatewayIp) : undefined;
          if (g !== undefined && g >= ipToBig(pool.start) && g <= ipToBig(pool.end)) {
            fail(`allocationPools[${i}]`, `contains the gateway ${s.gatewayIp}`);
          }
        }
        if (!s.allocationPools || s.allocationPools.length === 0) {
          const g = s.gatewayIp ? ipToBig(s.gatewayIp) : undefined;
          const pools: { start: bigint; end: bigint }[] = [];
          if (g === undefined || g < hosts.first || g > hosts.last)
            pools.push({ start: hosts.first, end: hosts.last });
          else {
            if (g > hosts.first) pools.push({ start: hosts.first, end: g - 1n });
            if (g < hosts.last) pools.push({ start: g + 1n, end: hosts.last });
          }
          s.allocationPools = pools.map((p) => ({
            start: bigToIp(p.start, c.version),
            end: bigToIp(p.end, c.version),
          }));
        }
        break;
      }
      case "lport": {
        const p = v as unknown as Omit<Port, "fixedIps"> & {
          fixedIps?: { subnetId: string; ipAddress?: string }[];
        };
        const net = await this.find("lswitch", p.networkId);
        if (!net) fail("networkId", `network ${p.networkId} does not exist`);
        if (net!.value.tenantId !== p.tenantId && !net!.value.external) {
          fail("networkId", `network ${p.networkId} belongs to tenant ${net!.value.tenantId}`);
        }
        const subnets = await this.list("subnet", { networkId: p.networkId });
        if (p.fixedIps === undefined) {
          const wanted: { subnetId: string }[] = [];
          for (const version of [4, 6]) {
            const s = subnets.find((x) => x.value.ipVersion === version);
            if (s) wanted.push({ subnetId: s.key });
          }
          p.fixedIps = wanted;
        }
        const filled: { subnetId: string; ipAddress: string }[] = [];
        for (const [i, f] of p.fixedIps.entries()) {
          const s = subnets.find((x) => x.key === f.subnetId)?.value;
          if (!s) {
            const exists = await this.find("subnet", f.subnetId);
            fail(
              `fixedIps[${i}].subnetId`,
              exists
                ? `subnet ${f.subnetId} is on network ${exists.value.networkId}, not ${p.networkId}`
                : `subnet ${f.subnetId} does not exist`,
            );
          }
          let ip = f.ipAddress;
          if (ip === undefined) ip = await this.allocateIp(p.networkId, s!, taken, owner, fresh);
          else {
            const field = `fixedIps[${i}].ipAddress`;
            const hosts = hostRange(s!.cidr);
            if (!cidrContains(s!.cidr, ip)) fail(field, `${ip} is not inside subnet ${s!.id} (${s!.cidr})`);
            if (ipToBig(ip) < hosts.first || ipToBig(ip) > hosts.last)
              fail(field, `${ip} is not a host address of ${s!.cidr}`);
            if (ip === s!.gatewayIp && p.deviceOwner !== DEVICE_OWNER_ROUTER_INTERFACE)
              fail(field, `${ip} is the gateway of subnet ${s!.id}`);
            const holder = await this.reservationOwner(IPAM_KINDS.ip, `${p.networkId}/${ip}`);
            if ((holder && holder !== owner) || taken.has(ip))
              fail(field, `${ip} is already used by ${holder ?? "this port"}`);
          }
          taken.add(ip);
          filled.push({ subnetId: f.subnetId, ipAddress: ip });
        }
        p.fixedIps = filled;
        if (p.macAddress === undefined)
          p.macAddress = (old?.macAddress as string | undefined) ?? (await this.allocateMac(p.networkId));
        else {
          const holder = await this.reservationOwner(IPAM_KINDS.mac, `${p.networkId}/${p.macAddress}`);
          if (holder && holder !== owner)
            fail("macAddress", `${p.macAddress} is already used on network ${p.networkId} by ${holder}`);
        }
        for (const [i, g] of p.securityGroups.entries()) {
          const sg = await this.find("secgroup", g);
          if (!sg) fail(`securityGroups[${i}]`, `security group ${g} does not exist`);
          if (sg!.value.tenantId !== p.tenantId)
            fail(`securityGroups[${i}]`, `security group ${g} belongs to tenant ${sg!.value.tenantId}`);
        }
        break;
      }
      case "lrouter": {
        const r = v as unknown as Router;
        if (!old && r.interfaces.length > 0) fail("interfaces", "add interfaces with router add-interface");
        for (const [i, rt] of r.routes.entries()) {
          if (!r.interfaces.some((itf) => cidrContains(itf.cidr, rt.nexthop))) {
            fail(`routes[${i}].nexthop`, `${rt.nexthop} is not on a subnet attached to the router`);
          }
        }
        break;
      }
      case "secgroup": {
        const g = v as unknown as Secgroup;
        for (const [i, rule] of g.rules.entries()) {
          if (rule.remoteGroupId && rule.remoteGroupId !== g.id) {
            const rg = await this.find("secgroup", rule.remoteGroupId);
            if (!rg) fail(`rules[${i}].remoteGroupId`, `security group ${rule.remoteGroupId} does not exist`);
            if (rg!.value.tenantId !== g.tenantId)
              fail(
                `rules[${i}].remoteGroupId`,
                `security group ${rule.remoteGroupId} belongs to tenant ${rg!.value.tenantId}`,
              );
          }
        }
        break;
      }
      case "fip":
      case "snat": {
        const isFip = kind === "fip";
        const netField = isFip ? "floatingNetworkId" : "externalNetworkId";
        const ipField = isFip ? "floatingIpAddress" : "externalIpAddress";
        const netId = v[netField] as string;
        const net = await this.find("lswitch", netId);
        if (!net) fail(netField, `network ${netId} does not exist`);
        if (!net!.value.external) fail(netField, `network ${netId} is not external`);
        const subnets = (await this.list("subnet", { networkId: netId })).map((s) => s.value);
        let ip = v[ipField] as string | undefined;
        // a gateway's own chassis addresses are not free for its address either
        for (const a of (v.chassisAddresses as { ipAddress: string }[] | undefined) ?? [])
          taken.add(a.ipAddress);
        // NAT is IPv4's, as in Neutron: an IPv6 network behind a router is routed, not translated
        if (ip === undefined) {
          const s = subnets.find((x) => x.ipVersion === 4);
          if (!s) fail(ipField, `external network ${netId} has no IPv4 subnet to allocate from`);
          ip = await this.allocateIp(netId, s!, taken, owner, fresh);
        } else {
          if (ipVersion(ip) !== 4) fail(ipField, `${ip} is not an IPv4 address: NAT is IPv4 only`);
          const s = subnets.find((x) => cidrContains(x.cidr, ip!));
          if (!s) fail(ipField, `${ip} is not inside a subnet of network ${netId}`);
          const holder = await this.reservationOwner(IPAM_KINDS.ip, `${netId}/${ip}`);
          if (holder && holder !== owner) fail(ipField, `${ip} is already used by ${holder}`);
          if (ip === s!.gatewayIp) fail(ipField, `${ip} is the gateway of subnet ${s!.id}`);
        }
        v[ipField] = ip;
        if (v.macAddress === undefined)
          v.macAddress = (old?.macAddress as string | undefined) ?? (await this.allocateMac(netId));
        else {
          const holder = await this.reservationOwner(IPAM_KINDS.mac, `${netId}/${String(v.macAddress)}`);
          if (holder && holder !== owner)
            fail("macAddress", `${String(v.macAddress)} is already used on network ${netId} by ${holder}`);
        }
        if (isFip) await this.prepareFip(v as unknown as FloatingIp, fail);
        else {
          const sn = v as unknown as SnatGateway;
          const router = await this.find("lrouter", sn.routerId);
          if (!router) fail("routerId", `router ${sn.routerId} does not exist`);
          if (router!.value.tenantId !== sn.tenantId)
            fail("routerId", `router ${sn.routerId} belongs to tenant ${router!.value.tenantId}`);
          const other = (await this.list("snat", { tenantId: sn.tenantId })).find(
            (o) => o.value.routerId === sn.routerId && o.key !== sn.id,
          );
          if (other) fail("routerId", `router ${sn.routerId} already has SNAT gateway ${other.key}`);
          await this.prepareChassisAddresses(sn, old as SnatGateway | undefined, subnets, owner, fail);
        }
        break;
      }
      default:
        break;
    }
    return { value: v, reservations: this.reservationsOf(kind, v) };
  }

  /**
   * A gateway's per-chassis SNAT addresses: each inside a subnet of the
   * external network, not its gateway, not held by another object; a MAC
   * kept from the stored entry of the same chassis, or allocated.
   */
  private async prepareChassisAddresses(
    sn: SnatGateway,
    old: SnatGateway | undefined,
    subnets: Subnet[],
    owner: string,
    fail: (field: string, reason: string) => never,
  ): Promise<void> {
    const netId = sn.externalNetworkId;
    for (const [i, a] of sn.chassisAddresses.entries()) {
      const field = `chassisAddresses[${i}]`;
      const s = subnets.find((x) => cidrContains(x.cidr, a.ipAddress));
      if (!s) fail(`${field}.ipAddress`, `${a.ipAddress} is not inside a subnet of network ${netId}`);
      if (a.ipAddress === s!.gatewayIp)
        fail(`${field}.ipAddress`, `${a.ipAddress} is the gateway of subnet ${s!.id}`);
      const holder = await this.reservationOwner(IPAM_KINDS.ip, `${netId}/${a.ipAddress}`);
      if (holder && holder !== owner)
        fail(`${field}.ipAddress`, `${a.ipAddress} is already used by ${holder}`);
      if ((a.macAddress as string | undefined) === undefined) {
        const kept = old?.chassisAddresses?.find((o) => o.chassis === a.chassis)?.macAddress;
        a.macAddress = kept ?? (await this.allocateMac(netId));
      } else {
        const h = await this.reservationOwner(IPAM_KINDS.mac, `${netId}/${a.macAddress}`);
        if (h && h !== owner)
          fail(`${field}.macAddress`, `${a.macAddress} is already used on network ${netId} by ${h}`);
      }
    }
    const macs = [sn.macAddress, ...sn.chassisAddresses.map((a) => a.macAddress)];
    macs.forEach((m, i) => {
      if (macs.indexOf(m) !== i)
        fail(`chassisAddresses[${i - 1}].macAddress`, `${m} is used twice by this gateway`);
    });
  }

  private async prepareFip(f: FloatingIp, fail: (field: string, reason: string) => never): Promise<void> {
    if (f.routerId !== undefined) {
      const r = await this.find("lrouter", f.routerId);
      if (!r) fail("routerId", `router ${f.routerId} does not exist`);
    }
    if (f.portId === undefined) {
      if (f.fixedIpAddress !== undefined) fail("fixedIpAddress", "needs a portId");
      return;
    }
    const port = await this.find("lport", f.portId);
    if (!port) fail("portId", `port ${f.portId} does not exist`);
    if (port!.value.tenantId !== f.tenantId)
      fail("portId", `port ${f.portId} belongs to tenant ${port!.value.tenantId}`);
    const ips = port!.value.fixedIps.map((x) => x.ipAddress);
    f.fixedIpAddress ??= ips.find((ip) => ipVersion(ip) === 4);
    if (f.fixedIpAddress === undefined) fail("fixedIpAddress", `port ${f.portId} has no IPv4 address`);
    if (ipVersion(f.fixedIpAddress!) !== 4)
      fail("fixedIpAddress", `${f.fixedIpAddress} is not an IPv4 address: NAT is IPv4 only`);
    if (!ips.includes(f.fixedIpAddress!))
      fail("fixedIpAddress", `${f.fixedIpAddress} is not an address of port ${f.portId}`);
    const other = (await this.list("fip")).find(
      (o) => o.key !== f.id && o.value.portId === f.portId && o.value.fixedIpAddress === f.fixedIpAddress,
    );
    if (other) fail("portId", `${f.fixedIpAddress} of port ${f.portId} already has floating IP ${other.key}`);
  }

  private async checkDelete(kind: ObjectKind, key: string, v: Obj): Promise<void> {
    const fail = (field: string, reason: string): never => {
      throw new ValidationError(kind, key, field, reason);
    };
    switch (kind) {
      case "lswitch": {
        const ports = await this.list("lport", { networkId: key });
        if (ports.length > 0)
          fail("", `network has ${ports.length} port(s), e.g. ${ports[0]!.key}; delete them first`);
        const subnets = await this.list("subnet", { networkId: key });
        if (subnets.length > 0)
          fail("", `network has ${subnets.length} subnet(s), e.g. ${subnets[0]!.key}; delete them first`);
        break;
      }
      case "subnet": {
        const s = v as unknown as Subnet;
        const users = (await this.list("lport", { networkId: s.networkId })).filter((p) =>
          p.value.fixedIps.some((f) => f.subnetId === key),
        );
        if (users.length > 0)
          fail("", `subnet has ${users.length} port(s) with addresses in it, e.g. ${users[0]!.key}`);
        const fips = (await this.list("fip")).filter(
          (f) => f.value.floatingNetworkId === s.networkId && cidrContains(s.cidr, f.value.floatingIpAddress),
        );
        if (fips.length > 0) fail("", `subnet holds floating IP ${fips[0]!.key}`);
        const snats = (await this.list("snat")).filter(
          (g) =>
            g.value.externalNetworkId === s.networkId &&
            [g.value.externalIpAddress, ...(g.value.chassisAddresses ?? []).map((a) => a.ipAddress)].some(
              (ip) => cidrContains(s.cidr, ip),
            ),
        );
        if (snats.length > 0) fail("", `subnet holds SNAT gateway ${snats[0]!.key}`);
        break;
      }
      case "lport": {
        const p = v as unknown as Port;
        if (p.deviceOwner === DEVICE_OWNER_ROUTER_INTERFACE)
          fail("deviceOwner", `port belongs to router ${p.deviceId}; use router remove-interface`);
        const fip = (await this.list("fip")).find((f) => f.value.portId === key);
        if (fip) fail("", `floating IP ${fip.key} points to this port; delete or update it first`);
        break;
      }
      case "lrouter": {
        const r = v as unknown as Router;
        if (r.interfaces.length > 0)
          fail("interfaces", `router has ${r.interfaces.length} interface(s); remove them first`);
        const snat = (await this.list("snat")).find((g) => g.value.routerId === key);
        if (snat) fail("", `router has SNAT gateway ${snat.key}; delete it first`);
        const fip = (await this.list("fip")).find((f) => f.value.routerId === key);
        if (fip) fail("", `floating IP ${fip.key} uses this router`);
        break;
      }
      case "secgroup": {
        const ports = (await this.list("lport")).filter((p) => p.value.securityGroups.includes(key));
        if (ports.length > 0)
          fail("", `security group is used by ${ports.length} port(s), e.g. ${ports[0]!.key}`);
        const groups = (await this.list("secgroup")).filter(
          (g) => g.key !== key && g.value.rules.some((r) => r.remoteGroupId === key),
        );
        if (groups.length > 0) fail("", `security group ${groups[0]!.key} refers to it as a remote group`);
        break;
      }
      default:
        break;
    }
  }

  private reservationsOf(kind: ObjectKind, v: Obj): Reservations {
    const owner = `${kind}/${keyOf(kind, v)}`;
    return new Map(reservationIds(kind, v).map((id) => [id, owner]));
  }

  /** Ops that move an object's reservations from `before` to `after`, guarded. */
  private async reservationOps(
    kind: ObjectKind,
    key: string,
    before: Reservations,
    after: Reservations,
  ): Promise<TxnOp[]> {
    const ops: TxnOp[] = [];
    for (const k of before.keys()) {
      if (after.has(k)) continue;
      const [ipamKind, rkey] = k.split("\u0000") as [string, string];
      const cur = await this.s.get(ipamKind, rkey);
      if (cur && ownerOf(cur) === `${kind}/${key}`) {
        ops.push({ op: "delete", kind: ipamKind, key: rkey, expectVersion: cur.version });
      }
    }
    for (const [k, owner] of after) {
      if (before.has(k)) continue;
      const [ipamKind, rkey] = k.split("\u0000") as [string, string];
      ops.push({ op: "put", kind: ipamKind, key: rkey, value: { owner }, expectVersion: 0 });
    }
    return ops;
  }

  /** Deletes of every reservation `kind/key` owns (for an object whose value cannot say which). */
  private async ownedReservationOps(kind: ObjectKind, key: string): Promise<TxnOp[]> {
    const ops: TxnOp[] = [];
    for (const ipamKind of Object.values(IPAM_KINDS)) {
      for (const r of await this.s.list(ipamKind)) {
        if (ownerOf(r) === `${kind}/${key}`)
          ops.push({ op: "delete", kind: ipamKind, key: r.key, expectVersion: r.version });
      }
    }
    return ops;
  }

  /** Who holds a reservation; a malformed reservation is held by nobody we know, but held. */
  private async reservationOwner(ipamKind: string, key: string): Promise<string | undefined> {
    const r = await this.s.get(ipamKind, key);
    if (!r) return undefined;
    return ownerOf(r) ?? `a malformed reservation (${ipamKind} ${key})`;
  }

  private async allocateSegmentationId(n: Network, range: [number, number]): Promise<number> {
    const prefix = `${n.networkType}/${n.physicalNetwork ?? "-"}/`;
    const used = new Set(
      (await this.s.list(IPAM_KINDS.seg))
        .filter((r) => r.key.startsWith(prefix))
        .map((r) => Number(r.key.slice(prefix.length))),
    );
    for (let id = range[0]; id <= range[1]; id++)
      if (!used.has(id) && !this.s.claims.has(reservationId(IPAM_KINDS.seg, `${prefix}${id}`))) return id;
    throw new ValidationError(
      "lswitch",
      n.id,
      "segmentationId",
      `no free ${n.networkType} segmentation id left`,
    );
  }

  /**
   * The lowest free address of the subnet's pools: not the gateway, not
   * reserved by another object or claimed by the batch, not `taken` by this call. A batch remembers
   * the last address it allocated per pool and starts new objects' searches
   * there (every address below it was taken when it was allocated, and stays
   * taken while the batch deletes no reservation).
   */
  private async allocateIp(
    networkId: string,
    s: Subnet,
    taken: Set<string>,
    owner: string,
    fresh: boolean,
  ): Promise<string> {
    const reserved = await this.s.index(IPAM_KINDS.ip);
    const used = (ip: string): boolean => {
      const r = reserved.get(`${networkId}/${ip}`);
      if (r !== undefined) return ownerOf(r) !== owner;
      return this.s.claims.has(reservationId(IPAM_KINDS.ip, `${networkId}/${ip}`));
    };
    const version = parseCidr(s.cidr).version;
    for (const pool of s.allocationPools) {
      const memo = `${networkId}/${s.id}/${pool.start}-${pool.end}`;
      const start = (fresh ? this.s.recall(IPAM_KINDS.ip, memo) : undefined) ?? ipToBig(pool.start);
      const end = ipToBig(pool.end);
      const bound = reserved.size + taken.size + this.s.claims.size + 2;
      for (let n = start, scanned = 0; n <= end && scanned <= bound; n++, scanned++) {
        const ip = bigToIp(n, version);
        if (ip !== s.gatewayIp && !used(ip) && !taken.has(ip)) {
          if (fresh) this.s.remember(IPAM_KINDS.ip, memo, n);
          return ip;
        }
      }
    }
    throw new ValidationError(
      "subnet",
      s.id,
      "allocationPools",
      `no free address left in subnet ${s.id} (${s.cidr})`,
    );
  }

  private async allocateMac(networkId: string): Promise<string> {
    for (let i = 0; i < 32; i++) {
      const b = (this.opts.randomBytes ?? randomBytes)(3);
      const mac = `fa:16:3e:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
      const key = `${networkId}/${mac}`;
      if (!(await this.s.get(IPAM_KINDS.mac, key)) && !this.s.claims.has(reservationId(IPAM_KINDS.mac, key)))
        return mac;
    }
    throw new ValidationError(
      "lport",
      "",
      "macAddress",
      `could not allocate a free MAC on network ${networkId}`,
    );
  }
}

/**
 * The IPAM reservations an object's value names, as `reservationId`s: a
 * network's segment, a port's, floating IP's or SNAT gateway's MACs and
 * addresses — whichever the value sets (an input, before the API allocates
 * the rest, names only what its writer gave).
 */
export function reservationIds(kind: ObjectKind, v: Obj): string[] {
  const out: string[] = [];
  const add = (ipamKind: string, key: string): void => void out.push(reservationId(ipamKind, key));
  if (kind === "lswitch") {
    const n = v as unknown as Network;
    if (n.segmentationId !== undefined || n.networkType === "flat") add(IPAM_KINDS.seg, segKey(n));
  } else if (kind === "lport") {
    const p = v as unknown as Port;
    if (p.macAddress) add(IPAM_KINDS.mac, `${p.networkId}/${p.macAddress}`);
    for (const f of p.fixedIps ?? []) if (f.ipAddress) add(IPAM_KINDS.ip, `${p.networkId}/${f.ipAddress}`);
  } else if (kind === "fip") {
    const f = v as unknown as FloatingIp;
    if (f.floatingIpAddress) add(IPAM_KINDS.ip, `${f.floatingNetworkId}/${f.floatingIpAddress}`);
    if (f.macAddress) add(IPAM_KINDS.mac, `${f.floatingNetworkId}/${f.macAddress}`);
  } else if (kind === "snat") {
    const g = v as unknown as SnatGateway;
    if (g.externalIpAddress) add(IPAM_KINDS.ip, `${g.externalNetworkId}/${g.externalIpAddress}`);
    if (g.macAddress) add(IPAM_KINDS.mac, `${g.externalNetworkId}/${g.macAddress}`);
    for (const a of g.chassisAddresses ?? []) {
      if (a.ipAddress) add(IPAM_KINDS.ip, `${g.externalNetworkId}/${a.ipAddress}`);
      if (a.macAddress) add(IPAM_KINDS.mac, `${g.externalNetworkId}/${a.macAddress}`);
    }
  }
  return out;
}

/** One IPAM reservation: its kind (IPAM_KINDS) and key, e.g. `ipam.ip` + `net1/10.0.0.5`. */
export function reservationId(ipamKind: string, key: string): string {
  return `${ipamKind}\u0000${key}`;
}

function segKey(n: Network): string {
  return `${n.networkType}/${n.physicalNetwork ?? "-"}/${n.segmentationId ?? "flat"}`;
}

function segLabel(n: Network): string {
  return n.physicalNetwork ? `${n.physicalNetwork}:${n.segmentationId}` : String(n.segmentationId);
}

function withRuleIds(rules: unknown): unknown {
  if (!Array.isArray(rules)) return rules;
  return rules.map((r: unknown) =>
    typeof r === "object" && r !== null && !Array.isArray(r) && (r as Obj).id === undefined
      ? { ...(r as Obj), id: randomUUID() }
      : r,
  );
}

function checkVersion(kind: ObjectKind, key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual) {
    throw new ConflictError(
      `${kind} ${key}: expected version ${expected}, found ${actual}`,
      kind,
      key,
      expected,
      actual,
    );
  }
}

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** The owner a reservation names; undefined when its value is malformed. */
function ownerOf(r: StoredObject): string | undefined {
  const owner = isObj(r.value) ? r.value.owner : undefined;
  return typeof owner === "string" ? owner : undefined;
}

/** A stored object checked against its kind's schema (defaults filled), or why it is malformed. */
function readObject<T>(kind: ObjectKind, o: StoredObject): Versioned<T> | MalformedObject {
  const meta = { kind, key: o.key, version: o.version, modRevision: o.modRevision };
  if (o.malformed !== undefined) return { ...meta, malformed: o.malformed };
  let value: Obj;
  try {
    value = parseObject<Obj>(kind, o.value, o.key);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    return { ...meta, malformed: err.field ? `${err.field}: ${err.reason}` : err.reason, raw: o.value };
  }
  const keyField = KINDS[kind].keyField;
  if (value[keyField] !== o.key)
    return {
      ...meta,
      malformed: `${keyField}: is ${JSON.stringify(value[keyField])}, not its key`,
      raw: o.value,
    };
  return { ...meta, value: value as T };
}
