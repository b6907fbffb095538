/**
 * The agent-side NB cache with selective distribution.
 *
 * An agent tells the cache which logical ports are bound on its chassis; the
 * cache keeps only what those ports need — Dragonflow's selective topology
 * distribution:
 *
 *   local ports ─► their networks (N0)
 *               ─► routers with an interface on N0 (R) ─► networks behind R (N)
 *   N ─► subnets on N, ports on N (peers), chassis hosting those ports
 *   local ports ─► their security groups ─► remote groups of their rules (transitively)
 *               ─► the members of those remote groups (ports in them, any network), whose
 *                  addresses the rules match
 *   SNAT gateways naming this chassis as a gateway candidate ─► their routers, as if
 *               attached to a local network (the chassis may have to do their SNAT)
 *   R ─► SNAT gateways ─► their external networks, and the chassis of their candidates
 *   ports in scope, R ─► floating IPs; local ports' floating IPs ─► their external networks
 *
 * The closure is first computed from a store read (`resync`), and the cache
 * then follows changes from one of two feeds:
 *   - pubsub: a ZeroMQ subscriber (pubsub/subscriber.ts) on exactly the topics
 *     of that scope (n/<net>/, r/<router>/, t/<tenant>/, g/<remote group>/,
 *     c/) — adding the first
 *     local port on a network subscribes to its topic, removing the last one
 *     unsubscribes and evicts what only it needed;
 *   - watch: the store's own watch, filtered by the same scope.
 * A change in scope is applied at once. A change that can move the scope
 * (ports, routers, subnets, security groups, and the local port set) also
 * re-runs the closure over what the cache holds, once per burst of changes:
 * if the scope shrank, what fell out is evicted without a store read; if it
 * grew by chassis or security groups, just those are fetched by key; only
 * when it grew by networks, routers or remote groups — whose members the
 * cache has never seen — is the store read again. So a port joining or leaving a network
 * already in scope costs no read at all. Changes are ordered by store
 * revision, so duplicates and stale messages are harmless.
 * A sequence gap, a publisher restart or a compacted watch triggers a resync,
 * and so does a topic's first sequence baseline (the subscriber's way of
 * saying "everything published before this is in the store now", which
 * closes the window before a new subscription reached the publisher).
 * `synced()` says when nothing is left to catch up.
 *
 * The cache also follows every chassis' liveness key (`chassis-liveness/<name>`,
 * on a lease its agent refreshes), so the agent can tell live chassis from
 * gone ones, and keeps a *revision watermark*: the highest NB revision up to
 * which every model change that concerns this cache has been applied — from
 * watch events (relevant or not), resyncs, and pub/sub heartbeats that show
 * nothing missing. The agent's realised revision stands on it. Agents' own
 * bookkeeping keys (liveness, realised revisions) do not move it, so an
 * agent acknowledging a revision never makes itself acknowledge again.
 *
 * Objects whose stored value is malformed (`StoredObject.malformed`) cost
 * only themselves: they name nothing, so they pull nothing into the scope,
 * and the agent's model guard leaves them out. Every cache holds them
 * whatever its scope (they are rare), so every agent reports them, and a
 * fixed value replaces them like any update.
 *
 * Apps see typed change events: { action: added | updated | removed, kind, key,
 * object, previous }.
 */
import { logger } from "../../util/log.js";
import { StoreError } from "../store/errors.js";
import type { NbStore, StoredObject, Watch, WatchEvent } from "../store/types.js";
import {
  TOPIC_CHASSIS,
  groupTopic,
  networkTopic,
  routerTopic,
  tenantTopic,
  type ChangeMessage,
} from "../pubsub/message.js";
import type { CurveClient } from "../pubsub/curve.js";
import { NbSubscriber, type ResyncReason } from "../pubsub/subscriber.js";
import { AGENT_KIND, KIND, SYNC_KINDS, refsOf } from "./refs.js";

const log = logger("nb-sync");

export type ChangeAction = "added" | "updated" | "removed";

export interface ChangeEvent {
  action: ChangeAction;
  kind: string;
  key: string;
  /** The object now (added/updated). */
  object?: StoredObject;
  /** The object before (updated/removed). */
  previous?: StoredObject;
}

export type ChangeListener = (ev: ChangeEvent) => void;

export interface RepairEntry {
  kind: string;
  key: string;
  /** missing: in scope but not cached · stale: older version cached · corrupt: same version, other value · extra: cached but out of scope or deleted */
  problem: "missing" | "stale" | "corrupt" | "extra";
  cachedVersion?: number;
  storeVersion?: number;
}

export interface SyncReport {
  reason: string;
  revision: number;
  changes: RepairEntry[];
}

export type Distribution = { mode: "watch" } | { mode: "pubsub"; endpoint: string; curve?: CurveClient };

export interface CacheOptions {
  store: NbStore;
  distribution: Distribution;
  localPorts?: Iterable<string>;
  /** This chassis: SNAT gateways that name it as a candidate are in scope. */
  chassis?: string;
}

/** The scope of a cache: what its local ports pull in. */
export interface Scope {
  networks: Set<string>;
  routers: Set<string>;
  tenants: Set<string>;
  securityGroups: Set<string>;
  /** Groups named as a remote group by a rule of a group in scope: their member ports are in scope. */
  memberGroups: Set<string>;
  chassis: Set<string>;
}

type Table = Map<string, StoredObject>;
/** A change as a feed delivers it (a removal has no object). */
type Change = { object: StoredObject | undefined; revision: number; kind: string; key: string };

/** Kinds whose changes can move the scope: they re-run the closure. */
const RELATIONAL = new Set<string>([KIND.port, KIND.router, KIND.subnet, KIND.secgroup, KIND.fip, KIND.snat]);

function sameObject(a: StoredObject, b: StoredObject): boolean {
  return (
    a.version === b.version &&
    a.modRevision === b.modRevision &&
    JSON.stringify(a.value) === JSON.stringify(b.value)
  );
}

/** Refs of a stored object, computed once per object (stored objects are never mutated). */
const REFS = new WeakMap<StoredObject, ReturnType<typeof refsOf>>();
function refs(o: StoredObject): ReturnType<typeof refsOf> {
  let r = REFS.get(o);
  if (!r) REFS.set(o, (r = refsOf(o.kind, o.key, o.value)));
  return r;
}

/** The port a floating IP points to. */
function portOf(o: StoredObject): string | undefined {
  const v = (o.value ?? {}) as Record<string, unknown>;
  return typeof v.portId === "string" && v.portId !== "" ? v.portId : undefined;
}

/** Compute what the local ports (and, for SNAT gateway candidates, `self`) need from a full read of the store. */
export function closure(
  all: Map<string, Table>,
  localPorts: Set<string>,
  self?: string,
): { wanted: Map<string, Table>; scope: Scope } {
  const t = (kind: string): Table => all.get(kind) ?? new Map();
  const subnetNet = new Map<string, string>();
  for (const s of t(KIND.subnet).values()) {
    const net = refs(s).networks.find((n) => n !== s.key);
    if (net) subnetNet.set(s.key, net);
  }
  const netsOf = (o: StoredObject): string[] => {
    const r = refs(o);
    return [
      ...new Set([...r.networks, ...r.subnets.map((s) => subnetNet.get(s)).filter((n): n is string => !!n)]),
    ].filter((n) => o.kind !== KIND.subnet || n !== o.key);
  };

  const local = [...localPorts].map((k) => t(KIND.port).get(k)).filter((p): p is StoredObject => !!p);
  const networks = new Set(local.flatMap(netsOf));
  // routers attached to our networks, then every network behind them
  const routerLinks = [...t(KIND.port).values(), ...t(KIND.router).values()]
    .map((o) => ({ routers: refs(o).routers, nets: netsOf(o) }))
    .filter((l) => l.routers.length);
  const routers = new Set<string>();
  for (const l of routerLinks)
    if (l.nets.some((n) => networks.has(n))) l.routers.forEach((r) => routers.add(r));
  const snats = [...t(KIND.snat).values()];
  if (self !== undefined) {
    for (const o of snats) if (refs(o).chassis.includes(self)) refs(o).routers.forEach((r) => routers.add(r));
  }
  for (const l of routerLinks)
    if (l.routers.some((r) => routers.has(r))) l.nets.forEach((n) => networks.add(n));
  // external networks: of the routers' gateways, and of the local ports' floating IPs
  const fips = [...t(KIND.fip).values()];
  const gateways = snats.filter((o) => refs(o).routers.some((r) => routers.has(r)));
  for (const o of gateways) refs(o).networks.forEach((n) => networks.add(n));
  for (const o of fips) if (localPorts.has(portOf(o) ?? "")) refs(o).networks.forEach((n) => networks.add(n));

  const wanted = new Map<string, Table>(SYNC_KINDS.map((k) => [k, new Map()]));
  const keep = (o: StoredObject) => wanted.get(o.kind)!.set(o.key, o);
  for (const n of networks) {
    const o = t(KIND.network).get(n);
    if (o) keep(o);
  }
  for (const s of t(KIND.subnet).values()) if (netsOf(s).some((n) => networks.has(n))) keep(s);
  for (const r of routers) {
    const o = t(KIND.router).get(r);
    if (o) keep(o);
  }
  const sgs = new Set(local.flatMap((p) => refs(p).securityGroups));
  for (let grew = true; grew;) {
    grew = false;
    for (const g of [...sgs]) {
      const o = t(KIND.secgroup).get(g);
      if (!o) continue;
      for (const rg of refs(o).remoteGroups) {
        if (sgs.has(rg)) continue;
        sgs.add(rg);
        grew = true;
      }
    }
  }
  const memberGroups = new Set<string>();
  for (const g of sgs) {
    const o = t(KIND.secgroup).get(g);
    if (!o) continue;
    keep(o);
    for (const rg of refs(o).remoteGroups) memberGroups.add(rg);
  }
  const ports = [...t(KIND.port).values()].filter(
    (p) =>
      netsOf(p).some((n) => networks.has(n)) ||
      localPorts.has(p.key) ||
      refs(p).securityGroups.some((g) => memberGroups.has(g)),
  );
  ports.forEach(keep);
  gateways.forEach(keep);
  const portKeys = new Set(ports.map((p) => p.key));
  for (const o of fips) {
    if (refs(o).routers.some((x) => routers.has(x)) || portKeys.has(portOf(o) ?? "")) keep(o);
  }
  const chassis = new Set([...ports, ...gateways].flatMap((o) => refs(o).chassis));
  for (const c of chassis) {
    const o = t(KIND.chassis).get(c);
    if (o) keep(o);
  }
  // An object whose stored value is malformed names nothing, so no scope reaches it; every
  // cache keeps it instead, so that every agent reports it (it costs only itself).
  for (const kind of SYNC_KINDS) for (const o of t(kind).values()) if (o.malformed !== undefined) keep(o);
  const tenants = new Set<string>();
  for (const table of wanted.values()) {
    for (const o of table.values()) {
      const tn = refs(o).tenant;
      if (tn && (o.kind === KIND.secgroup || o.kind === KIND.router || localPorts.has(o.key)))
        tenants.add(tn);
    }
  }
  return { wanted, scope: { networks, routers, tenants, securityGroups: sgs, memberGroups, chassis } };
}

export class NbCache {
  readonly store: NbStore;
  private readonly tables = new Map<string, Table>(SYNC_KINDS.map((k) => [k, new Map()]));
  private readonly listeners = new Set<ChangeListener>();
  private readonly kindListeners = new Map<string, Set<ChangeListener>>();
  private readonly localPorts = new Set<string>();
  private readonly chassis: string | undefined;
  private scopeNow: Scope = {
    networks: new Set(),
    routers: new Set(),
    tenants: new Set(),
    securityGroups: new Set(),
    memberGroups: new Set(),
    chassis: new Set(),
  };
  private subscriber: NbSubscriber | undefined;
  private watch: Watch | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<SyncReport> | undefined;
  private running = 0;
  /**
   * Changes that came while a resync was queued or running: the highest
   * revision among them, and the ones the scope then in force left out. The
   * resync's read may predate them, so when it ends those left out are judged
   * again against the scope it computed, and the watermark moves past them
   * all (it used to stop at the resync's read, short of a change applied
   * meanwhile, until the next change came).
   */
  private duringResync: { revision: number; ignored: Change[] } = { revision: 0, ignored: [] };
  private closed = false;
  private watermark = 0;
  private readonly progressListeners = new Set<(revision: number) => void>();
  private readonly liveness: Table = new Map();
  private recloseQueued = false;
  private settling: Promise<void> = Promise.resolve();
  /** Counters for tests and operators. */
  readonly stats = { resyncs: 0, applied: 0, ignored: 0, reclosures: 0, fetches: 0 };

  private constructor(opts: CacheOptions) {
    this.store = opts.store;
    this.chassis = opts.chassis;
    for (const p of opts.localPorts ?? []) this.localPorts.add(p);
  }

  static async start(opts: CacheOptions): Promise<NbCache> {
    const cache = new NbCache(opts);
    const d = opts.distribution;
    if (d.mode === "pubsub") {
      cache.subscriber = NbSubscriber.connect(
        d.endpoint,
        {
          onChange: (m) => cache.onMessage(m),
          onResync: (r) => void cache.requestResync(describe(r)),
          onCaughtUp: (revision) => {
            if (!cache.queued && cache.running === 0) cache.advance(revision);
          },
        },
        { curve: d.curve },
      );
      cache.subscriber.subscribe(TOPIC_CHASSIS);
    }
    const first = await cache.requestResync("start");
    if (d.mode === "watch") {
      cache.watch = await cache.store.watch(
        { fromRevision: first.revision, onResync: () => void cache.requestResync("watch compacted") },
        (ev) => cache.onWatch(ev),
      );
    }
    return cache;
  }

  // ── what apps use ────────────────────────────────────────────────────────

  on(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onKind(kind: string, listener: ChangeListener): () => void {
    let set = this.kindListeners.get(kind);
    if (!set) this.kindListeners.set(kind, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  get(kind: string, key: string): StoredObject | undefined {
    if (kind === AGENT_KIND.liveness) return this.liveness.get(key);
    return this.tables.get(kind)?.get(key);
  }

  list(kind: string): StoredObject[] {
    if (kind === AGENT_KIND.liveness) return [...this.liveness.values()];
    return [...(this.tables.get(kind)?.values() ?? [])];
  }

  /** Whether a chassis' agent is alive (its liveness key exists). */
  isAlive(chassis: string): boolean {
    return this.liveness.has(chassis);
  }

  /** The revision watermark (see the module comment). */
  revision(): number {
    return this.watermark;
  }

  /** Called whenever the watermark moves. */
  onProgress(listener: (revision: number) => void): () => void {
    this.progressListeners.add(listener);
    return () => this.progressListeners.delete(listener);
  }

  private advance(revision: number): void {
    if (revision <= this.watermark) return;
    this.watermark = revision;
    for (const l of this.progressListeners) {
      try {
        l(revision);
      } catch (err) {
        log.error({ err }, "progress listener threw");
      }
    }
  }

  scope(): Scope {
    return this.scopeNow;
  }

  /** The pub/sub topics this cache listens to (empty in watch mode). */
  topics(): string[] {
    return this.subscriber?.subscribed() ?? [];
  }

  get publisherId(): string | undefined {
    return this.subscriber?.publisherId;
  }

  /** Pub/sub counters (messages, sequence gaps, publisher restarts); undefined in watch mode. */
  pubsubStats(): Readonly<NbSubscriber["stats"]> | undefined {
    return this.subscriber ? { ...this.subscriber.stats } : undefined;
  }

  /**
   * True when the cache has nothing left to catch up: no resync queued or
   * running and (pub/sub) every topic it follows has a sequence baseline from
   * the current publisher, so nothing published so far can still be missing.
   */
  synced(): boolean {
    return !this.queued && this.running === 0 && (this.subscriber?.hasBaselines() ?? true);
  }

  async addLocalPort(id: string): Promise<void> {
    await this.setLocalPorts([...this.localPorts, id]);
  }

  async removeLocalPort(id: string): Promise<void> {
    await this.setLocalPorts([...this.localPorts].filter((p) => p !== id));
  }

  /**
   * The ports bound on this chassis. A new one the cache does not hold is
   * fetched by key; then the closure is re-run (see the module comment).
   * Resolves when the cache reflects the new set.
   */
  async setLocalPorts(ids: Iterable<string>): Promise<void> {
    const want = new Set(ids);
    const added = [...want].filter((id) => !this.localPorts.has(id));
    const removed = [...this.localPorts].filter((id) => !want.has(id));
    if (!added.length && !removed.length) return this.settling;
    for (const id of removed) this.localPorts.delete(id);
    for (const id of added) this.localPorts.add(id);
    const missing = added.filter((id) => !this.tables.get(KIND.port)!.has(id));
    if (missing.length) await this.fetch(KIND.port, missing);
    this.queueReclosure();
    await this.settled();
  }

  /** Resolves when no re-closure or resync is pending. */
  async settled(): Promise<void> {
    for (;;) {
      const s = this.settling;
      await s;
      await this.chain.catch(() => undefined);
      if (s === this.settling && !this.recloseQueued && !this.queued && this.running === 0) return;
    }
  }

  /**
   * Recompute the scope from the store and repair the cache to match it. Calls
   * queue behind each other; a call made while one is queued joins it.
   */
  requestResync(reason: string): Promise<SyncReport> {
    if (this.queued) return this.queued;
    const p = this.chain.then(async () => {
      this.queued = undefined;
      this.running++;
      try {
        return await this.resync(reason);
      } finally {
        this.running--;
      }
    });
    this.queued = p;
    this.chain = p.catch((err: unknown) => log.error({ err, reason }, "resync failed"));
    return p;
  }

  /** Test hook: overwrite a cached entry without telling anyone (what a lost message leaves behind). */
  corruptForTest(kind: string, key: string, value: unknown): void {
    const o = this.get(kind, key);
    if (!o) throw new StoreError(`${kind}/${key} is not cached`, { kind, key });
    this.tables.get(kind)!.set(key, { ...o, value });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watch?.close().catch(() => undefined);
    await this.subscriber?.close();
    await this.chain.catch(() => undefined);
  }

  // ── internals ────────────────────────────────────────────────────────────

  private emit(ev: ChangeEvent): void {
    for (const l of [...this.listeners, ...(this.kindListeners.get(ev.kind) ?? [])]) {
      try {
        l(ev);
      } catch (err) {
        log.error({ err, kind: ev.kind, key: ev.key }, "change listener threw");
      }
    }
  }

  private async resync(reason: string): Promise<SyncReport> {
    if (this.closed) return { reason, revision: 0, changes: [] };
    this.stats.resyncs++;
    const revision = await this.store.revision();
    const all = new Map<string, Table>();
    await Promise.all(
      [...SYNC_KINDS, AGENT_KIND.liveness].map(async (kind) =>
        all.set(kind, new Map((await this.store.list(kind)).map((o) => [o.key, o]))),
      ),
    );
    this.syncLiveness(all.get(AGENT_KIND.liveness)!, revision);
    const { wanted, scope } = closure(all, this.localPorts, this.chassis);
    const changes: RepairEntry[] = [];
    for (const kind of SYNC_KINDS) {
      const have = this.tables.get(kind)!;
      const want = wanted.get(kind)!;
      for (const [key, o] of want) {
        const cur = have.get(key);
        if (cur && cur.modRevision > o.modRevision) continue;
        if (cur && sameObject(cur, o)) continue;
        have.set(key, o);
        if (!cur) {
          changes.push({ kind, key, problem: "missing", storeVersion: o.version });
          this.emit({ action: "added", kind, key, object: o });
        } else {
          const problem =
            cur.version === o.version && cur.modRevision === o.modRevision ? "corrupt" : "stale";
          changes.push({ kind, key, problem, cachedVersion: cur.version, storeVersion: o.version });
          this.emit({ action: "updated", kind, key, object: o, previous: cur });
        }
      }
      for (const [key, cur] of [...have]) {
        if (want.has(key)) continue;
        if (cur.modRevision > revision && all.get(kind)?.get(key) === undefined) continue;
        have.delete(key);
        changes.push({ kind, key, problem: "extra", cachedVersion: cur.version });
        this.emit({ action: "removed", kind, key, previous: cur });
      }
    }
    this.scopeNow = scope;
    // a new topic is caught up by the resync its first sequence baseline asks for
    this.updateTopics(scope);
    if (changes.length) log.info({ reason, revision, changes: changes.length }, "cache resynced");
    const missed = this.duringResync;
    this.duringResync = { revision: 0, ignored: [] };
    for (const c of missed.ignored)
      if (c.revision > revision) this.onChange(c.object, c.revision, c.kind, c.key);
    // what the replay leaves out again is outside the scope this resync computed: nothing to keep
    this.duringResync.ignored = [];
    if (!this.subscriber || this.subscriber.hasBaselines()) {
      this.advance(revision);
      const after = missed.revision;
      if (after > revision) {
        if (!this.recloseQueued) this.advance(after);
        else void this.settling.then(() => this.advance(after));
      }
    }
    return { reason, revision, changes };
  }

  private syncLiveness(now: Table, revision: number): void {
    for (const [key, o] of now) {
      const cur = this.liveness.get(key);
      if (cur && cur.modRevision >= o.modRevision) continue;
      this.liveness.set(key, o);
      this.emit({
        action: cur ? "updated" : "added",
        kind: AGENT_KIND.liveness,
        key,
        object: o,
        ...(cur ? { previous: cur } : {}),
      });
    }
    for (const [key, cur] of [...this.liveness]) {
      if (now.has(key) || cur.modRevision > revision) continue;
      this.liveness.delete(key);
      this.emit({ action: "removed", kind: AGENT_KIND.liveness, key, previous: cur });
    }
  }

  /** Fetch objects by key into the cache (those that exist), emitting their events. */
  private async fetch(kind: string, keys: string[]): Promise<void> {
    this.stats.fetches++;
    const got = await Promise.all(keys.map((k) => this.store.get(kind, k)));
    const table = this.tables.get(kind)!;
    for (const o of got) {
      if (!o) continue;
      const cur = table.get(o.key);
      if (cur && cur.modRevision >= o.modRevision) continue;
      table.set(o.key, o);
      this.emit({
        action: cur ? "updated" : "added",
        kind,
        key: o.key,
        object: o,
        ...(cur ? { previous: cur } : {}),
      });
    }
  }

  private queueReclosure(): void {
    if (this.recloseQueued || this.closed) return;
    this.recloseQueued = true;
    const run = this.settling.then(async () => {
      await new Promise<void>((r) => setImmediate(r));
      this.recloseQueued = false;
      await this.reclose();
    });
    this.settling = run.catch((err: unknown) => {
      log.error({ err }, "re-closure failed; resyncing");
      void this.requestResync("re-closure failed");
    });
  }

  /** Re-run the closure over what the cache holds; see the module comment. */
  private async reclose(): Promise<void> {
    if (this.closed) return;
    this.stats.reclosures++;
    for (let round = 0; round < 4; round++) {
      const { wanted, scope } = closure(this.tables, this.localPorts, this.chassis);
      const grew = (a: Set<string>, b: Set<string>): string[] => [...a].filter((x) => !b.has(x));
      const now = this.scopeNow;
      if (
        grew(scope.networks, now.networks).length ||
        grew(scope.routers, now.routers).length ||
        grew(scope.memberGroups, now.memberGroups).length
      ) {
        await this.requestResync("scope grew");
        return;
      }
      const sgs = grew(scope.securityGroups, now.securityGroups).filter(
        (g) => !this.tables.get(KIND.secgroup)!.has(g),
      );
      const chassis = grew(scope.chassis, now.chassis).filter((c) => !this.tables.get(KIND.chassis)!.has(c));
      if (sgs.length || chassis.length) {
        if (sgs.length) await this.fetch(KIND.secgroup, sgs);
        if (chassis.length) await this.fetch(KIND.chassis, chassis);
        this.scopeNow = {
          ...now,
          securityGroups: new Set([...now.securityGroups, ...sgs]),
          chassis: new Set([...now.chassis, ...chassis]),
        };
        continue;
      }
      for (const kind of SYNC_KINDS) {
        const have = this.tables.get(kind)!;
        const want = wanted.get(kind)!;
        for (const [key, cur] of [...have]) {
          if (want.has(key)) continue;
          have.delete(key);
          this.emit({ action: "removed", kind, key, previous: cur });
        }
      }
      this.scopeNow = scope;
      this.updateTopics(scope);
      return;
    }
    await this.requestResync("scope did not settle");
  }

  private updateTopics(scope: Scope): void {
    const sub = this.subscriber;
    if (!sub) return;
    const want = new Set([
      TOPIC_CHASSIS,
      ...[...scope.networks].map(networkTopic),
      ...[...scope.routers].map(routerTopic),
      ...[...scope.tenants].map(tenantTopic),
      ...[...scope.memberGroups].map(groupTopic),
    ]);
    for (const t of sub.subscribed()) if (!want.has(t)) sub.unsubscribe(t);
    for (const t of want) sub.subscribe(t);
  }

  private onMessage(m: ChangeMessage): void {
    if (m.type === "put") {
      this.onChange(
        {
          kind: m.kind,
          key: m.key,
          value: m.value,
          version: m.version,
          modRevision: m.revision,
          ...(m.malformed !== undefined ? { malformed: m.malformed } : {}),
        },
        m.revision,
      );
    } else {
      this.onChange(undefined, m.revision, m.kind, m.key);
    }
  }

  private onWatch(ev: WatchEvent): void {
    if (ev.type === "put") this.onChange(ev.object, ev.revision);
    else this.onChange(undefined, ev.revision, ev.kind, ev.key);
  }

  /** Whether a change touches what this cache holds or follows. */
  private relevant(kind: string, key: string, value: unknown, malformed?: string): boolean {
    if (this.get(kind, key) || malformed !== undefined) return true;
    if (kind === KIND.port && this.localPorts.has(key)) return true;
    if (value === undefined) return false;
    const r = refsOf(kind, key, value);
    const s = this.scopeNow;
    // Floating IPs and SNAT gateways by what needs them, not by their (shared) external network.
    if (kind === KIND.fip) {
      const port = (value as Record<string, unknown>).portId;
      return (
        r.routers.some((x) => s.routers.has(x)) ||
        (typeof port === "string" && this.tables.get(KIND.port)!.has(port))
      );
    }
    if (kind === KIND.snat) {
      return r.routers.some((x) => s.routers.has(x)) || (!!this.chassis && r.chassis.includes(this.chassis));
    }
    return (
      r.networks.some((n) => s.networks.has(n)) ||
      r.routers.some((x) => s.routers.has(x)) ||
      r.subnets.some((x) => this.tables.get(KIND.subnet)!.has(x)) ||
      (kind === KIND.secgroup && s.securityGroups.has(key)) ||
      (kind === KIND.port && r.securityGroups.some((g) => s.memberGroups.has(g))) ||
      (kind === KIND.chassis && s.chassis.has(key))
    );
  }

  private onChange(object: StoredObject | undefined, revision: number, dkind?: string, dkey?: string): void {
    if (this.closed) return;
    const kind = object?.kind ?? dkind!;
    const key = object?.key ?? dkey!;
    if (kind === AGENT_KIND.liveness) {
      this.onLiveness(object, revision, key);
      return;
    }
    const table = this.tables.get(kind);
    if (!table || !this.relevant(kind, key, object?.value, object?.malformed)) {
      this.stats.ignored++;
      if (!table) return;
      if (this.queued || this.running > 0) this.duringResync.ignored.push({ object, revision, kind, key });
      this.advanceAfter(revision);
      return;
    }
    const cur = table.get(key);
    if (cur && cur.modRevision >= revision) {
      this.stats.ignored++;
      this.advanceAfter(revision);
      return;
    }
    this.stats.applied++;
    if (object) {
      table.set(key, object);
      this.emit({ action: cur ? "updated" : "added", kind, key, object, ...(cur ? { previous: cur } : {}) });
    } else if (cur) {
      table.delete(key);
      this.emit({ action: "removed", kind, key, previous: cur });
    }
    if (RELATIONAL.has(kind) && this.mayMoveScope(kind, key, cur, object)) this.queueReclosure();
    this.advanceAfter(revision);
  }

  /**
   * Whether a change can move the scope, so the closure must run again. Most
   * changes cannot: a peer port joining or changing on a network in scope, on
   * a chassis in scope; a subnet of a network in scope; a group whose remote
   * groups are in scope. (A peer port leaving may leave an unreferenced
   * chassis cached: harmless, and the recovery pass evicts it.)
   */
  private mayMoveScope(kind: string, key: string, before?: StoredObject, after?: StoredObject): boolean {
    if (kind === KIND.router) return true;
    const local = kind === KIND.port && this.localPorts.has(key);
    if (!after) return kind !== KIND.port || local;
    const s = this.scopeNow;
    const r = refsOf(kind, key, after.value);
    const old = before ? refsOf(kind, key, before.value) : undefined;
    const within = (xs: string[], set: Set<string>) => xs.every((x) => set.has(x));
    if (old && old.networks.join() !== r.networks.join()) return true;
    // a local port pulls in its networks, groups and routers: only a change of those moves the scope
    if (local) {
      const shrinks =
        !!old &&
        (old.securityGroups.join() !== r.securityGroups.join() || old.routers.join() !== r.routers.join());
      return (
        shrinks ||
        !within(r.networks, s.networks) ||
        !within(r.securityGroups, s.securityGroups) ||
        !within(r.routers, s.routers)
      );
    }
    switch (kind) {
      case KIND.port:
        return (
          !within(r.networks, s.networks) || !within(r.chassis, s.chassis) || !within(r.routers, s.routers)
        );
      case KIND.subnet:
        return !within(
          r.networks.filter((n) => n !== key),
          s.networks,
        );
      case KIND.secgroup:
        return !within(r.remoteGroups, s.securityGroups);
      default:
        return true;
    }
  }

  /** Move the watermark once the change's consequences (a re-closure) are applied. */
  private advanceAfter(revision: number): void {
    if (this.queued || this.running > 0) {
      // the resync in flight advances it, when it ends (see duringResync)
      this.duringResync.revision = Math.max(this.duringResync.revision, revision);
      return;
    }
    if (!this.recloseQueued) {
      this.advance(revision);
      return;
    }
    void this.settling.then(() => {
      if (!this.queued && this.running === 0) this.advance(revision);
    });
  }

  private onLiveness(object: StoredObject | undefined, revision: number, key: string): void {
    const cur = this.liveness.get(key);
    if (cur && cur.modRevision >= revision) return;
    if (object) {
      this.liveness.set(key, object);
      this.emit({
        action: cur ? "updated" : "added",
        kind: AGENT_KIND.liveness,
        key,
        object,
        ...(cur ? { previous: cur } : {}),
      });
    } else if (cur) {
      this.liveness.delete(key);
      this.emit({ action: "removed", kind: AGENT_KIND.liveness, key, previous: cur });
    }
  }
}

function describe(r: ResyncReason): string {
  switch (r.reason) {
    case "gap":
      return `sequence gap on ${r.topic} (expected ${r.expected}, got ${r.got})`;
    case "restart":
      return `publisher restarted (${r.previous} → ${r.current})`;
    case "baseline":
      return `sequence baseline on ${r.topics.join(" ")}`;
  }
}
