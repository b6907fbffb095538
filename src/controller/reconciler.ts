/**
 * Desired vs installed, per owner and per output (OVN's ofctrl, in spirit).
 *
 *   engine OwnerChange[] ──► desired index (owner → items, key → owners)
 *                                   │ affected keys
 *                                   ▼
 *          installed state ◄─── sync(conn): only dirty keys are compared
 *          (read from the switch at every new session, never flushed)
 *
 * An output is one kind of state the switch holds: OpenFlow flows (keyed by
 * OVS's own identity: table, priority, normalised match) and OpenFlow meters
 * (keyed by id) today; tc-flower filters are the next one. Each output keeps
 * a `DesiredIndex` — items by owner and by key, where two owners wanting the
 * same key resolve to the lowest owner key, so the winner does not depend on
 * the order changes arrived in — and its installed state.
 *
 * A sync compares only the keys the changes touched, and sends:
 *   1. meter adds and modifies (a flow may only name a meter that exists);
 *   2. one ONF bundle with the flow deletes, adds and modifies
 *      (modify_strict when only actions or cookie differ, so counters stay),
 *      committed after a barrier showed every message was accepted;
 *   3. meter deletes (after the flows that used them are gone).
 * The installed state is updated from what the switch accepted, so a
 * restarted agent — which reads what the switch holds at session start —
 * sends nothing when nothing changed, and nothing is ever flushed. Flows
 * whose cookie does not carry flowdrake's mark, and meters outside the ids
 * flowdrake hands out (src/datapath/allocators.ts), are never touched.
 *
 * A message the switch rejects fails only its owner: the bundle is
 * discarded, the owner is marked failed (reason kept, counted in metrics),
 * its keys are left as installed, the rest is sent again without it, and the
 * owner is retried with exponential backoff (1 s doubling to 60 s) — or at
 * once when its output changes. If a bundle commit itself fails, the same
 * messages go again as plain flow_mods, so each error can be attributed.
 *
 * Reactive flows (a packet-in handler's, which must be in place before the
 * packet is sent on) take a fast path when no sync is running: `pushNow`
 * writes their flow_mods at once, without a bundle or waiting for a
 * barrier, and the handler's packet_out follows them on the same session,
 * which the switch processes in order — one write instead of two round
 * trips. An error for one of them later undoes its key and fails its owner
 * as above; a barrier after the write (one outstanding at a time, covering
 * every write before it) tells when no error can come any more, so an
 * accepted flow_mod's xid is kept one round trip, not the whole error
 * window. Flows whose packet has left already (`unhurried`: sent through the flow's own actions)
 * are coalesced when they come fast (COALESCE_BURST writes at once in a quiet
 * window of COALESCE_MS, none in a busy one of up to COALESCE_MAX_MS; the
 * rest held to the window's end and written together, in one bundle, each
 * encoded into it when it is held): OVS
 * revalidates every datapath flow after each change to its tables, and
 * changes that arrive together cost it one round instead of one each. Held
 * flow_mods go out before anything else the reconciler sends, which waits for
 * the switch's answer to them, so the switch sees its flow_mods in the order
 * they were decided; they go at once when one of them is pushed again (its
 * flow's next packet was punted while it waited).
 *
 * A flow the agent deletes that reports its removal (send_flow_rem) comes
 * back as a flow_removed — not with the answer to the delete: OVS sends it
 * when it frees the rule, after an RCU grace period, so it can follow the
 * barrier or commit reply and a later flow_mod for the same key. So each
 * such delete leaves a claim on its key, and the next flow_removed at that
 * key is taken as the agent's own (or as the timeout the delete overtook,
 * the only other removal of that flow there can be) and changes nothing:
 * the agent may have installed the key again meanwhile, and that flow stays
 * installed and owned. A delete the switch rejected withdraws its claim; a
 * claim no flow_removed answered within REMOVAL_WAIT_MS lapses.
 */
import type { BundleDraft, OfConnection, OfRequest, OpenFlowError } from "../openflow/connection.js";
import { flowFromStats, flowKey, flowToFlowMod, type Flow } from "../openflow/flow.js";
import { OFPBF, OFPFF } from "../openflow/message.js";
import { isOurMeter, isOurs } from "../datapath/index.js";
import { logger } from "../util/log.js";
import { errorMessage } from "../util/errors.js";
import type { DesiredFlow, DesiredMeter, OwnerChange, OwnerKey, OwnerOutput } from "./engine.js";
import { SignedFlow } from "./engine.js";
import { installFlows } from "./flow-installer.js";

const log = logger("reconciler");

const OFPMF_PKTPS = 0x2;
const OFPMF_BURST = 0x4;
const OFPMF_STATS = 0x8;
const METER_FLAGS = OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS;

export const RETRY_MIN_MS = 1000;
export const RETRY_MAX_MS = 60_000;
/**
 * How long a fast-path flow_mod's xid is kept at most to attribute a late
 * error, when no barrier answered for it (OVS answers within one loop of its
 * own; the barrier after each write retires the xids it covers at once).
 */
export const FAST_PATH_ERROR_WINDOW_MS = 10_000;
/**
 * How long the agent's own delete of a flow that reports its removal waits
 * for that flow_removed (OVS sends it when the rule is freed, after an RCU
 * grace period: milliseconds); a claim older than this no longer explains a
 * removal at its key.
 */
export const REMOVAL_WAIT_MS = 10_000;
/**
 * Unhurried fast-path flow_mods: the first COALESCE_BURST writes of a quiet
 * window go at once, the rest of the window's wait for its end and go in one
 * bundle. A window lasts COALESCE_MS; when one had to hold writes and the
 * next write comes within another window's length, the next window is busy:
 * it lasts twice as long, up to COALESCE_MAX_MS, and nothing in it goes at
 * once (after a window that held nothing, or a longer pause, it is quiet and
 * COALESCE_MS again). Below two first packets in 50 ms nothing waits; at a
 * thousand a second, one bundle carries each 200 ms window's two hundred.
 * Each write is a change to OVS's tables, after which its revalidator
 * translates every datapath flow again, and OVS's main thread, which also
 * receives the packets, applies the flow_mods (plain ones fifty to a round of
 * its loop, a bundle's at once): at a thousand
 * first packets a second, sixty writes a second (50 ms windows) held back a
 * few of the packets arriving at each by 2–6 ms; fifteen (200 ms, two of
 * each window's three at once) held back about a quarter as many in all; five
 * bundles a second (one a window) lowered the median 1,000/s p99 from 4.4 ms
 * to 2.9 (nine and twelve measurements of `npm run bench -- first-packet`'s
 * sequence, alternating, on a two-core machine). A later
 * packet of a flow whose route waits is punted once more (and sent on the
 * same way); its route then stops waiting: the held writes go at once.
 */
export const COALESCE_MS = 50;
export const COALESCE_MAX_MS = 200;
export const COALESCE_BURST = 2;
const HELD_BUNDLE_FLAGS = OFPBF.ATOMIC | OFPBF.ORDERED;

/**
 * Items of one output by owner and by key. Almost every key has one owner,
 * so a key holds its item directly and only a contested key holds a map of
 * owners (the winner is the lowest owner key, whatever the arrival order).
 */
export class DesiredIndex<T extends { owner: OwnerKey }> {
  private readonly byKey = new Map<string, T | Map<OwnerKey, T>>();

  constructor(private readonly keyOf: (t: T) => string) {}

  /** Replace `owner`'s items; adds the keys whose winner may have changed to `affected`. */
  replace(owner: OwnerKey, before: readonly T[], after: readonly T[], affected: Set<string>): void {
    for (const t of before) {
      const k = this.keyOf(t);
      const cur = this.byKey.get(k);
      if (cur === undefined) continue;
      affected.add(k);
      if (!(cur instanceof Map)) {
        if (cur.owner === owner) this.byKey.delete(k);
        continue;
      }
      cur.delete(owner);
      if (cur.size === 1) this.byKey.set(k, cur.values().next().value!);
    }
    for (const t of after) {
      const k = this.keyOf(t);
      const cur = this.byKey.get(k);
      affected.add(k);
      if (cur === undefined || (!(cur instanceof Map) && cur.owner === owner)) {
        this.byKey.set(k, t);
        continue;
      }
      const m = cur instanceof Map ? cur : new Map([[cur.owner, cur]]);
      if (m.has(owner)) log.warn({ owner, key: k }, "owner wants the same key twice; the last one counts");
      m.set(owner, t);
      this.byKey.set(k, m);
    }
  }

  winner(key: string): T | undefined {
    const cur = this.byKey.get(key);
    if (!(cur instanceof Map)) return cur;
    let best: T | undefined;
    for (const t of cur.values()) if (!best || t.owner < best.owner) best = t;
    log.debug({ key, owners: [...cur.keys()], winner: best!.owner }, "owners conflict on a key");
    return best;
  }

  /** Every owner's item for `key` (usually one), the winner not singled out. */
  all(key: string): T[] {
    const cur = this.byKey.get(key);
    if (cur === undefined) return [];
    return cur instanceof Map ? [...cur.values()] : [cur];
  }

  keys(): IterableIterator<string> {
    return this.byKey.keys();
  }

  get size(): number {
    return this.byKey.size;
  }
}

/** What the switch holds at a key (a desired flow once sent: its signature is computed only when compared). */
interface Installed {
  readonly flow: Flow;
  readonly sig: string;
}

/**
 * The installed flows by key, with how many each table holds kept up to date
 * as they change: a metrics scrape reads the counts instead of walking every
 * flow (at 40,000 flows the walk held the agent's event loop for ~10 ms, and
 * first packets with it).
 */
class InstalledFlows extends Map<string, Installed> {
  private readonly tables = new Map<number, number>();

  override set(key: string, v: Installed): this {
    const old = super.get(key);
    if (old) this.count(old.flow.table, -1);
    this.count(v.flow.table, 1);
    return super.set(key, v);
  }

  override delete(key: string): boolean {
    const old = super.get(key);
    if (old) this.count(old.flow.table, -1);
    return super.delete(key);
  }

  override clear(): void {
    this.tables.clear();
    super.clear();
  }

  /** Flows per table id (tables holding none are absent). */
  perTable(): ReadonlyMap<number, number> {
    return this.tables;
  }

  private count(table: number, by: 1 | -1): void {
    const n = (this.tables.get(table) ?? 0) + by;
    if (n > 0) this.tables.set(table, n);
    else this.tables.delete(table);
  }
}

export interface SyncResult {
  added: number;
  modified: number;
  deleted: number;
  meters: number;
  /** Owners that failed in this sync. */
  failed: OwnerKey[];
  durationMs: number;
}

export interface FailedOwner {
  reason: string;
  attempts: number;
  retryAt: number;
}

type FlowOp = {
  kind: "add" | "modify" | "replace" | "delete";
  key: string;
  flow: Flow;
  owner?: OwnerKey;
  /** The desired flow an add or modify sends: what the key holds once the switch took it. */
  entry?: Installed;
};

const meterKey = (m: DesiredMeter): string => String(m.id);

export class OpenFlowReconciler {
  readonly flows = new DesiredIndex<DesiredFlow>((f) => f.key);
  readonly meters = new DesiredIndex<DesiredMeter>(meterKey);
  private installed = new InstalledFlows();
  private installedMeters = new Map<number, number>();
  private dirty = new Set<string>();
  private dirtyMeters = new Set<string>();
  /** Keys changed while a sync was running (see update). */
  private lateDirty = new Set<string>();
  private lateDirtyMeters = new Set<string>();
  private syncing = false;
  private synced = false;
  /** Fast-path flow_mods that may still be answered with an error, by xid. */
  private readonly inFlight = new Map<
    number,
    { owner: OwnerKey | undefined; key: string; prev: Installed | undefined; at: number; removes: boolean }
  >();
  /** Fast-path xids written on `confirmOn` since its last barrier went out. */
  private unconfirmed: number[] = [];
  private confirmOn: OfConnection | undefined;
  private confirming = false;
  /**
   * The agent's own deletes of flows that report their removal whose
   * flow_removed has not come yet, by key: how many, and when the last one
   * was sent (the map is in that order: the lapsed claims are a prefix).
   */
  private readonly ownDeletes = new Map<string, { n: number; at: number }>();
  private errorSource: OfConnection | undefined;
  /** Told when the switch rejected a fast-path flow_mod (the agent schedules a sync to retry). */
  onFastPathError: ((owner: OwnerKey | undefined) => void) | undefined;
  readonly failed = new Map<OwnerKey, FailedOwner>();
  /** Keys held back because their owner failed, by owner. */
  private held = new Map<OwnerKey, Set<string>>();
  readonly totals = { added: 0, modified: 0, deleted: 0, meterMods: 0, syncs: 0, failures: 0 };

  /** The window's held flow_mods: as sent, for the one-by-one fallback; as encoded, in `bundle`. */
  private coalesced:
    { conn: OfConnection; msgs: OfRequest[]; keys: Set<string>; bundle: BundleDraft } | undefined;
  private coalesceTimer: NodeJS.Timeout | undefined;
  /** The held flow_mods on their way, until the switch has answered for them. */
  private releasing: Promise<void> | undefined;
  /** The current window: its start, its length, the writes that went at once in it, whether it held any. */
  private window = { start: Number.NEGATIVE_INFINITY, ms: COALESCE_MS, writes: 0, held: false };

  constructor(private readonly now: () => number = Date.now) {}

  // ── desired ──────────────────────────────────────────────────────────────

  update(changes: readonly OwnerChange[]): void {
    // During a sync, keys changed now must stay dirty after it: the sync clears what it sent.
    this.apply(
      changes,
      this.syncing ? this.lateDirty : this.dirty,
      this.syncing ? this.lateDirtyMeters : this.dirtyMeters,
    );
  }

  private apply(changes: readonly OwnerChange[], flows: Set<string>, meters: Set<string>): void {
    for (const c of changes) {
      const before: OwnerOutput = c.before ?? { flows: [], meters: [] };
      const after: OwnerOutput = c.after ?? { flows: [], meters: [] };
      this.flows.replace(c.owner, before.flows, after.flows, flows);
      this.meters.replace(c.owner, before.meters, after.meters, meters);
      if (this.failed.delete(c.owner)) this.release(c.owner);
    }
  }

  private release(owner: OwnerKey): void {
    for (const k of this.held.get(owner) ?? []) {
      if (k.startsWith("meter:")) (this.syncing ? this.lateDirtyMeters : this.dirtyMeters).add(k.slice(6));
      else (this.syncing ? this.lateDirty : this.dirty).add(k);
    }
    this.held.delete(owner);
  }

  /** Whether something is waiting to be sent (or a failed owner is due for a retry). */
  pending(): boolean {
    this.releaseDue();
    return this.dirty.size > 0 || this.dirtyMeters.size > 0 || !this.synced;
  }

  /** When the next failed owner is due for a retry (ms epoch), if any. */
  nextRetryAt(): number | undefined {
    let next: number | undefined;
    for (const f of this.failed.values()) if (next === undefined || f.retryAt < next) next = f.retryAt;
    return next;
  }

  private releaseDue(): void {
    const now = this.now();
    for (const [owner, f] of this.failed) {
      if (f.retryAt > now) continue;
      this.release(owner);
      // stays in `failed` (for its attempt count) until it succeeds or changes
      f.retryAt = Number.POSITIVE_INFINITY;
    }
  }

  // ── installed ────────────────────────────────────────────────────────────

  get isSynced(): boolean {
    return this.synced;
  }

  /** Read what the switch holds (every new session); every key is compared again. */
  async readInstalled(conn: OfConnection): Promise<Flow[]> {
    const stats = await conn.flowStats();
    const ours: Flow[] = [];
    this.installed = new InstalledFlows();
    // what the switch holds now is the truth; a flow_removed of the last session changes nothing
    this.ownDeletes.clear();
    for (const s of stats) {
      if (!isOurs(s.cookie)) continue;
      const f = flowFromStats(s);
      ours.push(f);
      this.installed.set(flowKey(f), new SignedFlow(f));
    }
    const parts = await conn.multipart({ mpType: "meter_config", meterId: 0xffffffff });
    this.installedMeters = new Map();
    for (const p of parts) {
      if (p.mpType !== "meter_config") continue;
      for (const m of p.meters) {
        const band = m.bands[0];
        if (band && isOurMeter(m.meterId)) this.installedMeters.set(m.meterId, band.rate);
      }
    }
    for (const k of this.installed.keys()) this.dirty.add(k);
    for (const k of this.flows.keys()) this.dirty.add(k);
    for (const id of this.installedMeters.keys()) this.dirtyMeters.add(String(id));
    for (const k of this.meters.keys()) this.dirtyMeters.add(k);
    this.synced = true;
    log.info(
      { conn: conn.label, flows: this.installed.size, meters: this.installedMeters.size },
      "read installed state",
    );
    return ours;
  }

  /** Take `flows` as what the switch holds (offline planning: what would a change cost?). */
  assumeInstalled(flows: readonly Flow[]): void {
    this.installed = new InstalledFlows();
    for (const f of flows) this.installed.set(flowKey(f), new SignedFlow(f));
    this.dirty = new Set([...this.installed.keys(), ...this.flows.keys()]);
    this.synced = true;
  }

  /** Mark what `planFlows` returned as sent (offline planning). */
  commitPlanned(): void {
    for (const op of this.planFlows()) {
      if (op.kind === "delete") this.installed.delete(op.key);
      else this.installed.set(op.key, op.entry ?? new SignedFlow(op.flow));
      this.dirty.delete(op.key);
    }
  }

  /** The session is gone: the next one reads the switch again. */
  invalidate(): void {
    this.synced = false;
  }

  /**
   * A flow the switch removed (flow_removed: an idle or hard timeout, or a delete); returns its
   * key, or undefined when the agent's own delete explains it (a claim, see the module comment:
   * nothing to forget, the flow was forgotten when the delete went, and the key may hold a newer
   * flow of the same owner).
   * What the key holds now is forgotten only if it is that flow (same cookie): a flow_removed
   * that arrives after another owner's flow took the key does not un-install the newcomer.
   */
  forgetInstalled(f: Flow): string | undefined {
    const key = flowKey(f);
    const own = this.ownDeletes.get(key);
    if (own && this.now() - own.at <= REMOVAL_WAIT_MS) {
      this.withdrawClaim(key);
      return undefined;
    }
    if (own) this.ownDeletes.delete(key);
    if (this.installed.get(key)?.flow.cookie === f.cookie) this.installed.delete(key);
    return key;
  }

  /** `op` is a delete going out: if its flow reports its removal, that flow_removed is the agent's own. */
  private claimRemoval(op: FlowOp): boolean {
    if (op.kind !== "delete" || !((op.flow.flags ?? 0) & OFPFF.SEND_FLOW_REM)) return false;
    const n = (this.ownDeletes.get(op.key)?.n ?? 0) + 1;
    // moved to the end: the map stays in the order of the claims' times
    this.ownDeletes.delete(op.key);
    this.ownDeletes.set(op.key, { n, at: this.now() });
    return true;
  }

  /** One claim on `key` is done with: its flow_removed came, or the switch rejected the delete. */
  private withdrawClaim(key: string): void {
    const own = this.ownDeletes.get(key);
    if (!own) return;
    if (--own.n === 0) this.ownDeletes.delete(key);
  }

  /** How many of the agent's deletes still wait for their flow_removed (tests). */
  get awaitedRemovals(): number {
    let n = 0;
    for (const c of this.ownDeletes.values()) n += c.n;
    return n;
  }

  /** Fast-path xids that may still be answered with an error (tests). */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  installedFlows(): Flow[] {
    return [...this.installed.values()].map((i) => i.flow);
  }

  installedCount(): number {
    return this.installed.size;
  }

  /** How many installed flows each table holds (table id → count), kept as they change. */
  installedPerTable(): ReadonlyMap<number, number> {
    return this.installed.perTable();
  }

  // ── the reactive fast path ───────────────────────────────────────────────

  /**
   * A packet-in handler's flows, before it sends the packet on: apply
   * `changes` and, when no sync is running and the switch's state is known,
   * write the flow_mods they need at once as plain messages, without waiting
   * for an answer. A switch processes one session's messages in order, so a
   * packet_out sent after this resolves meets the flows. The keys count as
   * installed; a rejection (an error with one of these xids) un-installs its
   * key, fails its owner and leaves the key dirty for the next sync. Returns
   * how many flow_mods went out, or undefined when the changes wait for a
   * sync (one is running, the session is new, or meters are involved).
   */
  async pushNow(
    conn: OfConnection,
    changes: readonly OwnerChange[],
    opts: { unhurried?: boolean } = {},
  ): Promise<number | undefined> {
    const meters = changes.some((c) => (c.before?.meters.length ?? 0) + (c.after?.meters.length ?? 0) > 0);
    if (this.syncing || !this.synced || meters) {
      this.update(changes);
      return undefined;
    }
    // A flow whose flow_mod is held came back (its route's later packet was punted): traffic is
    // waiting for it, so the held writes go now.
    if (this.coalesced && changes.some((c) => c.after?.flows.some((f) => this.coalesced!.keys.has(f.key)))) {
      await this.releaseCoalesced();
    }
    const keys = new Set<string>();
    this.apply(changes, keys, this.dirtyMeters);
    const ops = this.planFlows(keys);
    if (!ops.length) return 0;
    this.watchErrors(conn);
    const now = this.now();
    // Entries are in the order they were sent, so the expired ones are a prefix: a scan of the
    // whole map on every packet-in cost the agent more than the rest of its first-packet path.
    for (const [xid, f] of this.inFlight) {
      if (now - f.at <= FAST_PATH_ERROR_WINDOW_MS) break;
      this.inFlight.delete(xid);
    }
    for (const [key, c] of this.ownDeletes) {
      if (now - c.at <= REMOVAL_WAIT_MS) break;
      this.ownDeletes.delete(key);
    }
    const msgs = ops.map((op) => ({
      ...flowToFlowMod(op.flow, {
        command:
          op.kind === "delete" ? "delete_strict" : op.kind === "modify" ? "modify_strict" : ("add" as const),
      }),
      xid: conn.allocXid(),
    }));
    ops.forEach((op, i) => {
      const xid = msgs[i]!.xid;
      this.inFlight.set(xid, {
        owner: op.owner,
        key: op.key,
        prev: this.installed.get(op.key),
        at: now,
        removes: this.claimRemoval(op),
      });
      this.dirty.delete(op.key);
      if (op.kind === "delete") this.installed.delete(op.key);
      else this.installed.set(op.key, op.entry ?? new SignedFlow(op.flow));
    });
    if (opts.unhurried)
      this.coalesce(
        conn,
        msgs,
        ops.map((o) => o.key),
      );
    else {
      if (this.coalesced || this.releasing) await this.releaseCoalesced();
      await conn.sendAll(msgs);
      this.written(conn, msgs);
    }
    this.totals.added += ops.filter((o) => o.kind !== "delete" && o.kind !== "modify").length;
    this.totals.modified += ops.filter((o) => o.kind === "modify").length;
    this.totals.deleted += ops.filter((o) => o.kind === "delete").length;
    return ops.length;
  }

  /** Write `msgs` now while the window has writes left, else with the window's last write. */
  private coalesce(conn: OfConnection, msgs: OfRequest[], keys: readonly string[]): void {
    const now = this.now();
    if (this.coalesced && this.coalesced.conn !== conn) void this.releaseCoalesced();
    const end = this.window.start + this.window.ms;
    if (now >= end) {
      // busy: the window had to hold writes and the next write came within another window's length
      const busy = this.window.held && now - end < this.window.ms;
      const ms = busy ? Math.min(2 * this.window.ms, COALESCE_MAX_MS) : COALESCE_MS;
      this.window = { start: now, ms, writes: 0, held: false };
    }
    // A busy window (one that followed a window that held writes) has no burst: at a thousand first
    // packets a second the burst spared two flows of two hundred a wait and cost two of each
    // window's three changes to OVS's tables. Nothing goes past held flow_mods still on their way.
    const burst = this.window.ms > COALESCE_MS ? 0 : COALESCE_BURST;
    if (!this.coalesced && !this.releasing && this.window.writes < burst) {
      this.window.writes++;
      void this.write(conn, msgs);
      return;
    }
    this.window.held = true;
    const held = (this.coalesced ??= {
      conn,
      msgs: [],
      keys: new Set(),
      bundle: conn.draftBundle(HELD_BUNDLE_FLAGS),
    });
    held.msgs.push(...msgs);
    for (const m of msgs) held.bundle.add(m);
    for (const k of keys) held.keys.add(k);
    this.coalesceTimer ??= setTimeout(
      () => void this.releaseCoalesced(),
      Math.max(0, this.window.start + this.window.ms - now),
    );
  }

  /**
   * Write the held flow_mods, after any still on their way; resolves when the switch has answered
   * for them (until then the reconciler sends nothing else, see writeHeld).
   */
  releaseCoalesced(): Promise<void> {
    clearTimeout(this.coalesceTimer);
    this.coalesceTimer = undefined;
    const held = this.coalesced;
    this.coalesced = undefined;
    if (!held) return this.releasing ?? Promise.resolve();
    const release: Promise<void> = (this.releasing ?? Promise.resolve())
      .then(() => this.writeHeld(held.conn, held.msgs, held.bundle))
      .finally(() => {
        if (this.releasing === release) this.releasing = undefined;
      });
    this.releasing = release;
    return release;
  }

  /**
   * Held flow_mods go in one bundle (atomic, ordered): OVS applies a bundle as one change to its
   * tables, where it reads plain flow_mods fifty to a round of its main loop, and after every round
   * that changed its tables its main thread (which also reads the ports and sends the packet-ins)
   * waits for its other threads to quiesce and sets off a revalidator round. A commit the switch
   * refused applied none of them: the one it blamed has had its error (its key undone, its owner
   * failed), and the others go again as plain flow_mods. Nothing else of the reconciler's goes
   * out before the answer, so nothing can overtake them. Each was encoded into the bundle when it
   * was held, so the window's end only writes it: encoding a 1,000/s window's two hundred then
   * kept the agent from its packet-ins for 0.7–0.9 ms a window (0.1–0.3 ms for the write alone).
   */
  private async writeHeld(conn: OfConnection, msgs: OfRequest[], bundle: BundleDraft): Promise<void> {
    if (msgs.length === 1) return this.write(conn, msgs);
    try {
      await conn.sendDraft(bundle);
    } catch (err) {
      const again = msgs.filter((m) => this.inFlight.has(m.xid!));
      log.debug(
        { err: errorMessage(err), flows: msgs.length, again: again.length },
        "held flow_mods' bundle not applied; they go again one by one",
      );
      if (again.length) await this.write(conn, again);
      return;
    }
    this.written(conn, msgs);
  }

  /**
   * A fast-path write that nobody awaits. If the session is gone the flows
   * were not installed; the next session's sync reads the switch and repairs.
   */
  private write(conn: OfConnection, msgs: OfRequest[]): Promise<void> {
    return conn.sendAll(msgs).then(
      () => this.written(conn, msgs),
      (err: unknown) =>
        log.debug({ err: errorMessage(err), flows: msgs.length }, "held flow_mods not written"),
    );
  }

  /** Fast-path flow_mods went out on `conn`: a barrier will tell when they were all answered. */
  private written(conn: OfConnection, msgs: readonly OfRequest[]): void {
    if (this.confirmOn !== conn) {
      // a new session: the last one's xids are left to the error window
      this.confirmOn = conn;
      this.unconfirmed = [];
      this.confirming = false;
    }
    for (const m of msgs) this.unconfirmed.push(m.xid!);
    this.confirm(conn);
  }

  /**
   * One barrier at a time, for every fast-path write before it: the switch answers a session's
   * messages in order, so an error for one of them would have come before the barrier's reply.
   * The xids it covers are done with; writes made while it was out wait for the next one. (A
   * delete's flow_removed is another matter: it may come later, see the module comment.)
   */
  private confirm(conn: OfConnection): void {
    if (this.confirming || !this.unconfirmed.length) return;
    const xids = this.unconfirmed;
    this.unconfirmed = [];
    this.confirming = true;
    conn.barrier().then(
      () => {
        for (const x of xids) {
          const f = this.inFlight.get(x);
          if (!f) continue; // rejected (the error came first) or past the error window
          this.inFlight.delete(x);
        }
        this.confirmed(conn);
      },
      (err: unknown) => {
        // the session is gone or did not answer: the error window retires these xids
        log.debug({ err: errorMessage(err), flowMods: xids.length }, "fast-path barrier not answered");
        this.confirmed(conn);
      },
    );
  }

  private confirmed(conn: OfConnection): void {
    if (this.confirmOn !== conn) return;
    this.confirming = false;
    this.confirm(conn);
  }

  /** Drop the held flow_mods' timer (the agent stops). */
  close(): void {
    // (held flow_mods already on their way finish on their own)
    clearTimeout(this.coalesceTimer);
    this.coalesceTimer = undefined;
    this.coalesced = undefined;
  }

  private watchErrors(conn: OfConnection): void {
    if (this.errorSource === conn) return;
    this.errorSource = conn;
    conn.on("of_error", (e: OpenFlowError) => {
      const f = this.inFlight.get(e.xid);
      if (!f) return;
      this.inFlight.delete(e.xid);
      if (f.removes) this.withdrawClaim(f.key);
      if (f.prev) this.installed.set(f.key, f.prev);
      else this.installed.delete(f.key);
      (this.syncing ? this.lateDirty : this.dirty).add(f.key);
      if (f.owner !== undefined) this.fail(f.owner, e.message);
      this.onFastPathError?.(f.owner);
    });
  }

  // ── sync ─────────────────────────────────────────────────────────────────

  private isHeld(owner: OwnerKey | undefined, key: string): boolean {
    if (owner === undefined) return false;
    const f = this.failed.get(owner);
    // A failed owner's keys wait for its retry; once it is due (retryAt Infinity) they go out again.
    if (f === undefined || f.retryAt === Number.POSITIVE_INFINITY) return false;
    let s = this.held.get(owner);
    if (!s) this.held.set(owner, (s = new Set()));
    s.add(key);
    return true;
  }

  /** The flow ops the dirty keys (or `keys`) need, without sending them. */
  planFlows(keys: Iterable<string> = this.dirty): FlowOp[] {
    const ops: FlowOp[] = [];
    for (const key of keys) {
      const want = this.flows.winner(key);
      const have = this.installed.get(key);
      if (want && this.isHeld(want.owner, key)) continue;
      if (!want) {
        if (have) ops.push({ kind: "delete", key, flow: have.flow });
        continue;
      }
      if (!have) ops.push({ kind: "add", key, flow: want.flow, owner: want.owner, entry: want });
      else if (have.sig !== want.sig) {
        const sameAttrs =
          (have.flow.idleTimeout ?? 0) === (want.flow.idleTimeout ?? 0) &&
          (have.flow.hardTimeout ?? 0) === (want.flow.hardTimeout ?? 0) &&
          (have.flow.flags ?? 0) === (want.flow.flags ?? 0);
        ops.push({
          kind: sameAttrs ? "modify" : "replace",
          key,
          flow: want.flow,
          owner: want.owner,
          entry: want,
        });
      }
    }
    return ops;
  }

  private planMeters(): { upserts: [DesiredMeter, boolean][]; deletes: number[] } {
    const upserts: [DesiredMeter, boolean][] = [];
    const deletes: number[] = [];
    for (const k of this.dirtyMeters) {
      const want = this.meters.winner(k);
      const id = Number(k);
      const have = this.installedMeters.get(id);
      if (want && this.isHeld(want.owner, `meter:${k}`)) continue;
      if (!want) {
        if (have !== undefined) deletes.push(id);
      } else if (have === undefined) upserts.push([want, true]);
      else if (have !== want.ratePps) upserts.push([want, false]);
    }
    return { upserts, deletes };
  }

  private fail(owner: OwnerKey, reason: string): void {
    const prev = this.failed.get(owner);
    const attempts = (prev?.attempts ?? 0) + 1;
    const delay = Math.min(RETRY_MIN_MS * 2 ** (attempts - 1), RETRY_MAX_MS);
    this.failed.set(owner, { reason, attempts, retryAt: this.now() + delay });
    this.totals.failures++;
    log.warn(
      { owner, reason, attempts, retryInMs: delay },
      "the switch rejected an owner's state; retrying later",
    );
  }

  /** Send what the dirty keys need; see the module comment. */
  async sync(conn: OfConnection, opts: { timeoutMs?: number } = {}): Promise<SyncResult> {
    if (this.syncing) throw new Error("reconciler: sync while another sync is running");
    this.releaseDue();
    this.syncing = true;
    try {
      return await this.syncOnce(conn, opts);
    } finally {
      this.syncing = false;
      for (const k of this.lateDirty) this.dirty.add(k);
      for (const k of this.lateDirtyMeters) this.dirtyMeters.add(k);
      this.lateDirty.clear();
      this.lateDirtyMeters.clear();
    }
  }

  private async syncOnce(conn: OfConnection, opts: { timeoutMs?: number }): Promise<SyncResult> {
    const started = performance.now();
    if (this.coalesced || this.releasing) await this.releaseCoalesced();
    if (!this.synced) await this.readInstalled(conn);
    const result: SyncResult = { added: 0, modified: 0, deleted: 0, meters: 0, failed: [], durationMs: 0 };
    for (let round = 0; ; round++) {
      const m = this.planMeters();
      const ops = this.planFlows();
      if (m.upserts.length) {
        const msgs: OfRequest[] = m.upserts.map(([dm, isNew]) => ({
          type: "meter_mod",
          xid: conn.allocXid(),
          command: isNew ? "add" : "modify",
          flags: METER_FLAGS,
          meterId: dm.id,
          bands: [{ type: "drop", rate: dm.ratePps, burstSize: dm.ratePps }],
        }));
        const r = await installFlows(conn, msgs, {
          bundle: false,
          throwOnError: false,
          timeoutMs: opts.timeoutMs,
        });
        if (this.blame(r.errors, msgs, (i) => m.upserts[i]![0].owner, result)) continue;
        for (const [dm] of m.upserts) {
          this.installedMeters.set(dm.id, dm.ratePps);
          this.dirtyMeters.delete(String(dm.id));
        }
        result.meters += msgs.length;
      }
      if (ops.length) {
        const msgs = ops.map((op) => ({
          ...flowToFlowMod(op.flow, {
            command:
              op.kind === "delete"
                ? "delete_strict"
                : op.kind === "modify"
                  ? "modify_strict"
                  : ("add" as const),
          }),
          xid: conn.allocXid(),
        }));
        // Deletes first: a delete_strict never touches a key an add of the same bundle installs.
        const order = [...msgs.keys()].sort(
          (a, b) => Number(ops[b]!.kind === "delete") - Number(ops[a]!.kind === "delete"),
        );
        const sorted = order.map((i) => msgs[i]!);
        const sortedOps = order.map((i) => ops[i]!);
        // a flow_removed for one of these deletes may come before the commit's answer, or after it
        const claims = sortedOps.map((op) => this.claimRemoval(op));
        /** The claims of the deletes that did not happen (rejected, or the whole bundle discarded). */
        const withdraw = (happened: (i: number) => boolean): void =>
          claims.forEach((c, i) => c && !happened(i) && this.withdrawClaim(sortedOps[i]!.key));
        const bundled = await installFlows(conn, sorted, {
          bundle: true,
          throwOnError: false,
          timeoutMs: opts.timeoutMs,
        }).catch((err: unknown) => {
          withdraw(() => false);
          throw err;
        });
        if (bundled.errors.length === 0) {
          this.applyAccepted(sortedOps, sorted, [], result);
        } else {
          withdraw(() => false);
          // Nothing of the bundle was applied. Blame the owners of rejected messages and try
          // again without them; if no owner can be blamed (the commit itself failed), send the
          // same messages one by one so that every error names its message.
          const blamed = this.blame(bundled.errors, sorted, (i) => sortedOps[i]!.owner, result);
          if (blamed) continue;
          log.warn(
            { errors: bundled.errors.length },
            "bundle failed as a whole; sending the flow_mods one by one",
          );
          sortedOps.forEach((op, i) => (claims[i] = this.claimRemoval(op)));
          const plain = await installFlows(conn, sorted, {
            bundle: false,
            throwOnError: false,
            timeoutMs: opts.timeoutMs,
          });
          const rejected = new Set(plain.errors.map((e) => e.xid));
          withdraw((i) => !rejected.has(sorted[i]!.xid));
          this.applyAccepted(sortedOps, sorted, plain.errors, result);
          if (this.blame(plain.errors, sorted, (i) => sortedOps[i]!.owner, result)) continue;
        }
      }
      if (m.deletes.length) {
        const msgs: OfRequest[] = m.deletes.map((id) => ({
          type: "meter_mod",
          xid: conn.allocXid(),
          command: "delete",
          flags: METER_FLAGS,
          meterId: id,
          bands: [],
        }));
        await installFlows(conn, msgs, { bundle: false, throwOnError: false, timeoutMs: opts.timeoutMs });
        for (const id of m.deletes) {
          this.installedMeters.delete(id);
          this.dirtyMeters.delete(String(id));
        }
        result.meters += msgs.length;
      }
      // what is left dirty now is held by failed owners
      for (const k of [...this.dirty]) if (!this.isHeldKey(k)) this.dirty.delete(k);
      for (const k of [...this.dirtyMeters]) if (!this.isHeldKey(`meter:${k}`)) this.dirtyMeters.delete(k);
      // every round that ends in `continue` held at least one more owner, so the loop is bounded
      // by the owners; this many rounds means a switch rejecting most of what it is sent
      if (round > 50) log.error({ round }, "reconciler needed more than 50 rounds of rejections in one sync");
      break;
    }
    this.totals.syncs++;
    this.totals.added += result.added;
    this.totals.modified += result.modified;
    this.totals.deleted += result.deleted;
    this.totals.meterMods += result.meters;
    result.durationMs = performance.now() - started;
    if (result.added + result.modified + result.deleted + result.meters > 0) log.debug(result, "reconciled");
    return result;
  }

  private isHeldKey(key: string): boolean {
    for (const s of this.held.values()) if (s.has(key)) return true;
    return false;
  }

  private applyAccepted(ops: FlowOp[], msgs: OfRequest[], errors: OpenFlowError[], r: SyncResult): void {
    const rejected = new Set(errors.map((e) => e.xid));
    const stillFailing = new Set(ops.filter((_, i) => rejected.has(msgs[i]!.xid!)).map((op) => op.owner));
    ops.forEach((op, i) => {
      if (rejected.has(msgs[i]!.xid!)) return;
      // a retried owner whose state the switch took is no longer failed
      const o = op.owner;
      if (o !== undefined && this.failed.get(o)?.retryAt === Number.POSITIVE_INFINITY && !stillFailing.has(o))
        this.failed.delete(o);
      this.dirty.delete(op.key);
      if (op.kind === "delete") {
        this.installed.delete(op.key);
        r.deleted++;
      } else {
        this.installed.set(op.key, op.entry ?? new SignedFlow(op.flow));
        if (op.kind === "add") r.added++;
        else r.modified++;
      }
    });
  }

  /** Mark the owners of rejected messages failed; true when any was. */
  private blame(
    errors: readonly OpenFlowError[],
    msgs: readonly OfRequest[],
    ownerAt: (i: number) => OwnerKey | undefined,
    r: SyncResult,
  ): boolean {
    if (!errors.length) return false;
    let blamed = false;
    for (const e of errors) {
      const i = msgs.findIndex((m) => m.xid === e.xid);
      const owner = i >= 0 ? ownerAt(i) : undefined;
      if (owner === undefined) {
        log.error({ err: errorMessage(e) }, "the switch rejected a message no owner is blamed for");
        continue;
      }
      if (!this.failed.has(owner) || this.failed.get(owner)!.retryAt === Number.POSITIVE_INFINITY) {
        this.fail(owner, e.message);
        r.failed.push(owner);
        blamed = true;
      }
    }
    return blamed;
  }
}
