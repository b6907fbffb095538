/**
 * The northbound store interface: what every driver (embedded, etcd) offers
 * and what the conformance suite checks. The model layer (src/nb/model) stores
 * typed objects through it; drivers see only kinds, keys and JSON values.
 *
 * Consistency (Dragonflow's design, on etcd's terms):
 *   - every object has a `version` (1 on create, +1 on each update; the etcd
 *     driver maps it to the key's `version`) and the store has a global
 *     `revision` that increases with every committed transaction;
 *   - writes are transactions of puts/deletes, each optionally guarded by the
 *     expected version (0 = must not exist): all apply or none does;
 *   - `watch(fromRevision)` delivers every committed change after that
 *     revision, in revision order, without gaps — also across a reconnect;
 *   - `lock(name)` is a distributed mutex (per tenant for multi-object API calls);
 *   - leases expire keys whose owner stopped refreshing them (chassis liveness).
 */

export type Kind = string;

export interface StoredObject {
  kind: Kind;
  key: string;
  /** The stored JSON document; `undefined` when `malformed` is set. */
  value: unknown;
  /**
   * Set when the stored bytes are not a JSON document (someone wrote the key
   * with another tool): why they could not be read. `value` is then
   * `undefined`. get/list return such objects and watch delivers them (a put
   * of a malformed value is a put event with `malformed` set), so one bad key
   * costs only itself; deleting it works like deleting any object.
   */
  malformed?: string;
  /** Per-object version: 1 on create, +1 on every update. */
  version: number;
  /** Store revision at which this version was written. */
  modRevision: number;
}

export type TxnOp =
  | {
      op: "put";
      kind: Kind;
      key: string;
      value: unknown;
      /** Expected current version; 0 means "must not exist"; undefined means unconditional. */
      expectVersion?: number;
      /** Attach to a lease: the key disappears when the lease expires. */
      lease?: string;
    }
  | { op: "delete"; kind: Kind; key: string; expectVersion?: number };

export interface TxnResult {
  revision: number;
  /** The resulting version per put (in op order; deletes give 0). */
  versions: number[];
}

export type WatchEvent =
  | { type: "put"; object: StoredObject; revision: number }
  | { type: "delete"; kind: Kind; key: string; prevVersion: number; revision: number };

export interface Watch {
  close(): Promise<void>;
}

export interface WatchOptions {
  /** Deliver changes with revision > fromRevision (default: from now). */
  fromRevision?: number;
  /** Only these kinds (default: all). */
  kinds?: Kind[];
  /** Called when the driver lost the stream and could not resume (compacted): the caller must resync. */
  onResync?: (currentRevision: number) => void;
}

export interface Lease {
  id: string;
  ttlSeconds: number;
  /** Refresh now (drivers also keep it alive in the background until revoked). */
  keepAlive(): Promise<void>;
  revoke(): Promise<void>;
}

export interface NbStore {
  readonly driver: "embedded" | "etcd";
  get(kind: Kind, key: string): Promise<StoredObject | undefined>;
  list(kind: Kind): Promise<StoredObject[]>;
  /** Current store revision. */
  revision(): Promise<number>;
  /** All-or-nothing; a failed guard throws ConflictError naming the op. */
  txn(ops: TxnOp[]): Promise<TxnResult>;
  watch(opts: WatchOptions, onEvent: (ev: WatchEvent) => void): Promise<Watch>;
  /** Run fn while holding the named distributed lock. */
  withLock<T>(name: string, fn: () => Promise<T>, opts?: { timeoutMs?: number }): Promise<T>;
  /**
   * Grant a lease. By default the driver keeps it alive in the background until
   * revoked or the store is closed; `{ keepAlive: false }` leaves refreshing to the
   * caller (`lease.keepAlive()`), so the lease expires `ttlSeconds` after the last
   * refresh — how the conformance suite proves expiry.
   */
  grantLease(ttlSeconds: number, opts?: { keepAlive?: boolean }): Promise<Lease>;
  close(): Promise<void>;
}
