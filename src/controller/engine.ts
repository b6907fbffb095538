/**
 * The incremental engine: which flows and meters the agent wants, indexed by
 * owner, recomputed only where something changed (OVN's inc-proc-eng idea,
 * with dependencies recorded instead of declared).
 *
 *   inputs ──► LocalModel (model.ts) ──► changed entities
 *                    │ reads                    │
 *                    ▼                          ▼
 *   owners: app × kind × id ── deps ──► dirty owners ──► rebuild ──► OwnerChange[]
 *
 * An *owner* is one app's share of one object: `l2/port/vm1`, `tunnel/
 * network/net1`, `arp/router/r1`, plus `pipeline/global/` (the miss flow of
 * every table, and the host-wide punt meter) and reactive owners that
 * packet-in handlers create
 * (`l3/reactive/<key>`). Building an owner runs the app's builder for it with
 * the model recording every read; those reads are the owner's dependencies.
 *
 * `recomputeChanged()` drains the model's changed entities and rebuilds the
 * owners that depend on one of them, plus the owners *of* the changed objects
 * (so a new port gets its owners even though nothing depended on it yet). A
 * reactive owner is never rebuilt: when one of its dependencies changes it is
 * dropped, and its flows go with it. `recomputeAll()` rebuilds every owner
 * from scratch; it is the fallback (after a resync) and the test oracle — a
 * property test drives random change sequences and checks that the owners
 * after each incremental step equal a fresh full recompute.
 *
 * The result of either is the list of owners whose output changed, with the
 * output before and after: what the reconciler (reconciler.ts) turns into
 * flow_mods and meter_mods. An app that throws while building an owner, or
 * puts a flow into a table it did not declare, costs that owner its flows
 * (recorded in `errors`, logged once), nothing else.
 */
import type { App, OwnerKind, OwnerOut } from "../apps/types.js";
import {
  CONTROLLER_METER,
  MISS_PRIORITY,
  PIPELINE,
  cookieFor,
  flow as flowOf,
  table,
  type CookieAppName,
  type FlowBuilder,
  type TableName,
} from "../datapath/index.js";
import { flowKey, type Flow } from "../openflow/flow.js";
import { formatInstructions } from "../openflow/text.js";
import { errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";
import type { LocalModel } from "./model.js";

const log = logger("engine");

export type OwnerKey = string;

export interface DesiredFlow {
  readonly owner: OwnerKey;
  readonly flow: Flow;
  /** OVS's identity of the flow: table, priority, normalised match. */
  readonly key: string;
  /** Everything else that must match what is installed: cookie, timeouts, flags, instructions. */
  readonly sig: string;
}

export interface DesiredMeter {
  owner: OwnerKey;
  id: number;
  ratePps: number;
}

export interface OwnerOutput {
  flows: DesiredFlow[];
  readonly meters: readonly DesiredMeter[];
}

export interface OwnerChange {
  owner: OwnerKey;
  before: OwnerOutput | undefined;
  after: OwnerOutput | undefined;
}

type Kind = OwnerKind | "reactive";

interface OwnerRecord {
  app: CookieAppName;
  kind: Kind;
  id: string;
  /**
   * The entities it read, each once, as the index's own copies of the strings. An array, not a
   * set: it is only walked, and there is one per reactive route (a set cost each ~150 bytes more).
   */
  deps: readonly string[];
  output: OwnerOutput;
}

/** A freshly built owner: its reads as recorded. */
type Built = Omit<OwnerRecord, "deps"> & { deps: Set<string> };

const OWNER_KINDS: readonly OwnerKind[] = ["port", "network", "router", "global"];

/**
 * Joined, not a template: a template of this length is a tree of string pieces that the engine, the
 * reconciler and every flow of the owner keep alive; a join is one flat string (a reactive owner
 * per route, so it is most of what a route costs the young generation's collector).
 */
export function ownerKey(app: CookieAppName, kind: Kind, id: string): OwnerKey {
  return [app, kind, id].join("/");
}

export function flowSig(f: Flow): string {
  return `${f.cookie}|${f.idleTimeout ?? 0}|${f.hardTimeout ?? 0}|${f.flags ?? 0}|${formatInstructions(f.instructions)}`;
}

/**
 * A flow and its signature, the signature worked out when it is first read:
 * only a comparison with another flow at the same key needs it, and a
 * reactive flow (a host route a first packet asked for) usually meets none
 * in its life. Its text was a sixth of the agent's work for such a flow and
 * of what it kept for it.
 */
export class SignedFlow {
  private text: string | undefined;

  constructor(readonly flow: Flow) {}

  get sig(): string {
    return (this.text ??= flowSig(this.flow));
  }
}

class Desired extends SignedFlow implements DesiredFlow {
  constructor(
    readonly owner: OwnerKey,
    flow: Flow,
    readonly key: string,
  ) {
    super(flow);
  }
}

export function desiredFlow(owner: OwnerKey, f: Flow): DesiredFlow {
  return new Desired(owner, f, flowKey(f));
}

const NONE: OwnerOutput = { flows: [], meters: [] };
/** A reactive owner's meters: none, one shared array (there is an owner per route). */
const NO_METERS: readonly DesiredMeter[] = Object.freeze([]);

function sameOutput(x: OwnerOutput | undefined, y: OwnerOutput | undefined): boolean {
  const a = x ?? NONE;
  const b = y ?? NONE;
  if (a.flows.length !== b.flows.length || a.meters.length !== b.meters.length) return false;
  for (let i = 0; i < a.flows.length; i++) {
    if (a.flows[i]!.key !== b.flows[i]!.key || a.flows[i]!.sig !== b.flows[i]!.sig) return false;
  }
  for (let i = 0; i < a.meters.length; i++) {
    if (a.meters[i]!.id !== b.meters[i]!.id || a.meters[i]!.ratePps !== b.meters[i]!.ratePps) return false;
  }
  return true;
}

function empty(o: OwnerOutput): boolean {
  return o.flows.length === 0 && o.meters.length === 0;
}

export class AppBuildError extends Error {}

export interface EngineOptions {
  /** The "controller" meter on every punt of the host, packets per second; 0 = none. */
  switchPuntPps?: number;
}

export class Engine {
  private readonly owners = new Map<OwnerKey, OwnerRecord>();
  /**
   * Entity → the owners that read it; `key` is the one copy of the entity string owners keep.
   * An entity one owner reads (a reactive route's destination address) holds that owner itself,
   * not a set: a set and its table cost ~150 bytes and two objects more per route.
   */
  private readonly depIndex = new Map<string, { key: string; owners: OwnerKey | Set<OwnerKey> }>();
  private readonly appByName: Map<string, App>;
  private readonly allowedTables = new Map<string, ReadonlySet<number>>();
  private readonly kindsOf = new Map<OwnerKind, App[]>();
  /** Owners whose last build threw: owner → message. */
  readonly errors = new Map<OwnerKey, string>();
  readonly stats = { builds: 0, fullRecomputes: 0, incrementalRecomputes: 0 };
  /** Flows with a ct action, counted by `table/in_port` (`table/*` when they match no in_port). */
  private readonly conntrackFlows = new Map<string, number>();

  constructor(
    readonly model: LocalModel,
    readonly apps: readonly App[],
    private readonly opts: EngineOptions = {},
  ) {
    this.appByName = new Map(apps.map((a) => [a.name, a]));
    for (const k of OWNER_KINDS)
      this.kindsOf.set(
        k,
        apps.filter((a) => a.owners[k]),
      );
  }

  // ── building ─────────────────────────────────────────────────────────────

  private build(app: CookieAppName, kind: OwnerKind, id: string): Built {
    const key = ownerKey(app, kind, id);
    const deps = new Set<string>();
    const meters: DesiredMeter[] = [];
    const output: OwnerOutput = { flows: [], meters };
    const cookie = cookieFor(app, `${kind}/${id}`);
    this.stats.builds++;
    try {
      if (app === "pipeline") {
        output.flows = missFlows(key, cookie);
        const pps = this.opts.switchPuntPps ?? 0;
        if (pps > 0) meters.push({ owner: key, id: CONTROLLER_METER, ratePps: pps });
      } else {
        const a = this.appByName.get(app)!;
        const allowed = this.tablesOf(app);
        const out: OwnerOut = {
          flow: (b: FlowBuilder) => {
            const f = b.build(cookie);
            if (!allowed.has(f.table)) {
              throw new AppBuildError(`app ${app} wrote table ${b.tableName}, not in its tables`);
            }
            output.flows.push(desiredFlow(key, f));
          },
          meter: (meterId, ratePps) => meters.push({ owner: key, id: meterId, ratePps }),
        };
        this.model.tracking(deps, () => a.owners[kind]!(id, this.model, out));
      }
      if (this.errors.delete(key)) log.info({ owner: key }, "owner builds again");
    } catch (err) {
      output.flows = [];
      meters.length = 0;
      const msg = errorMessage(err);
      if (this.errors.get(key) !== msg) log.error({ owner: key, err: msg }, "app failed to build an owner");
      this.errors.set(key, msg);
    }
    return { app, kind, id, deps, output };
  }

  /** The table ids app `app` declared (the only ones its owners may write). */
  private tablesOf(app: CookieAppName): ReadonlySet<number> {
    let t = this.allowedTables.get(app);
    if (!t) {
      t = new Set((this.appByName.get(app)?.tables ?? []).map((n) => table(n)));
      this.allowedTables.set(app, t);
    }
    return t;
  }

  /** Index `rec` under `key`; its deps become the index's own copies of the entity strings. */
  private install(rec: Omit<OwnerRecord, "deps"> & { deps: Iterable<string> }, key: OwnerKey): void {
    const old = this.owners.get(key);
    if (old) {
      this.unindex(key, old.deps);
      this.countConntrack(old.output, -1);
    }
    this.countConntrack(rec.output, 1);
    const deps: string[] = [];
    for (const d of rec.deps) {
      const e = this.depIndex.get(d);
      if (!e) {
        this.depIndex.set(d, { key: d, owners: key });
        deps.push(d);
        continue;
      }
      if (e.owners === key || (typeof e.owners !== "string" && e.owners.has(key))) continue; // listed twice
      if (typeof e.owners === "string") e.owners = new Set([e.owners, key]);
      else e.owners.add(key);
      deps.push(e.key);
    }
    // an exact copy: a pushed-to array keeps room for seventeen, and there is one per reactive route
    this.owners.set(key, { app: rec.app, kind: rec.kind, id: rec.id, deps: [...deps], output: rec.output });
  }

  private unindex(key: OwnerKey, deps: readonly string[]): void {
    for (const d of deps) {
      const e = this.depIndex.get(d);
      if (!e) continue;
      if (e.owners === key) this.depIndex.delete(d);
      else if (typeof e.owners !== "string") {
        e.owners.delete(key);
        if (e.owners.size === 1) e.owners = e.owners.values().next().value!;
      }
    }
  }

  private remove(key: OwnerKey): OwnerRecord | undefined {
    const old = this.owners.get(key);
    if (!old) return undefined;
    this.unindex(key, old.deps);
    this.countConntrack(old.output, -1);
    this.owners.delete(key);
    this.errors.delete(key);
    return old;
  }

  /** Rebuild one owner; the change when its output differs. */
  private rebuild(app: CookieAppName, kind: OwnerKind, id: string, changes: OwnerChange[]): void {
    const key = ownerKey(app, kind, id);
    const rec = this.build(app, kind, id);
    const before = this.owners.get(key)?.output;
    const keep = !empty(rec.output) || rec.deps.size > 0;
    if (keep) this.install(rec, key);
    else this.remove(key);
    if (!sameOutput(before, rec.output)) {
      changes.push({
        owner: key,
        before: before && !empty(before) ? before : undefined,
        after: empty(rec.output) ? undefined : rec.output,
      });
    }
  }

  // ── recomputation ────────────────────────────────────────────────────────

  /** Every owner the model implies, as [app, kind, id]. */
  private *enumerate(): Generator<[CookieAppName, OwnerKind, string]> {
    yield ["pipeline", "global", ""];
    for (const a of this.kindsOf.get("global")!) yield [a.name, "global", ""];
    for (const id of this.model.portIds())
      for (const a of this.kindsOf.get("port")!) yield [a.name, "port", id];
    for (const id of this.model.networkIds()) {
      for (const a of this.kindsOf.get("network")!) yield [a.name, "network", id];
    }
    for (const id of this.model.routerIds()) {
      for (const a of this.kindsOf.get("router")!) yield [a.name, "router", id];
    }
  }

  /** Rebuild every proactive owner from scratch; reactive owners are kept. */
  recomputeAll(): OwnerChange[] {
    this.stats.fullRecomputes++;
    this.model.drainChanged();
    const changes: OwnerChange[] = [];
    const seen = new Set<OwnerKey>();
    for (const [app, kind, id] of this.enumerate()) {
      seen.add(ownerKey(app, kind, id));
      this.rebuild(app, kind, id, changes);
    }
    for (const [key, rec] of [...this.owners]) {
      if (seen.has(key) || rec.kind === "reactive") continue;
      this.remove(key);
      if (!empty(rec.output)) changes.push({ owner: key, before: rec.output, after: undefined });
    }
    return changes;
  }

  /** Rebuild the owners the model's changes since the last call touch. */
  recomputeChanged(): OwnerChange[] {
    const changed = this.model.drainChanged();
    if (changed.size === 0) return [];
    this.stats.incrementalRecomputes++;
    const dirty = new Map<OwnerKey, [CookieAppName, OwnerKind, string] | "reactive">();
    for (const entity of changed) {
      const readers = this.depIndex.get(entity)?.owners;
      for (const key of typeof readers === "string" ? [readers] : (readers ?? [])) {
        const rec = this.owners.get(key)!;
        dirty.set(key, rec.kind === "reactive" ? "reactive" : [rec.app, rec.kind, rec.id]);
      }
      const colon = entity.indexOf(":");
      const type = entity.slice(0, colon);
      const id = entity.slice(colon + 1);
      const kind: OwnerKind | undefined =
        type === "port" || type === "binding"
          ? "port"
          : type === "network"
            ? "network"
            : type === "router"
              ? "router"
              : undefined;
      if (!kind) continue;
      for (const a of this.kindsOf.get(kind)!) dirty.set(ownerKey(a.name, kind, id), [a.name, kind, id]);
    }
    const changes: OwnerChange[] = [];
    for (const [key, what] of dirty) {
      if (what === "reactive") {
        const old = this.remove(key);
        if (old && !empty(old.output)) changes.push({ owner: key, before: old.output, after: undefined });
      } else this.rebuild(what[0], what[1], what[2], changes);
    }
    return changes;
  }

  // ── reactive owners ──────────────────────────────────────────────────────

  /** Install (or replace) the reactive flows of `app` under `key`. */
  setReactive(
    app: CookieAppName,
    key: string,
    flows: readonly FlowBuilder[],
    deps: readonly string[],
  ): OwnerChange {
    const owner = ownerKey(app, "reactive", key);
    const cookie = cookieFor(app, `reactive/${key}`, "reactive");
    const allowed = this.tablesOf(app);
    const output: OwnerOutput = {
      flows: flows.map((b) => {
        const f = b.build(cookie);
        if (!allowed.has(f.table))
          throw new AppBuildError(`app ${app} wrote table ${b.tableName}, not in its tables`);
        return desiredFlow(owner, f);
      }),
      meters: NO_METERS,
    };
    const before = this.owners.get(owner)?.output;
    this.install({ app, kind: "reactive", id: key, deps, output }, owner);
    return { owner, before, after: output };
  }

  /** Forget a reactive owner (its flows expired or were removed); the change, if it had any. */
  dropReactive(owner: OwnerKey): OwnerChange | undefined {
    const rec = this.owners.get(owner);
    if (!rec || rec.kind !== "reactive") return undefined;
    this.remove(owner);
    return { owner, before: rec.output, after: undefined };
  }

  /** Adopt a reactive flow found installed after a restart (no change: it is installed already). */
  adoptReactive(app: CookieAppName, key: string, f: Flow, deps: readonly string[]): OwnerKey {
    const owner = ownerKey(app, "reactive", key);
    const rec = this.owners.get(owner);
    const flows = [...(rec?.output.flows ?? []), desiredFlow(owner, f)];
    this.install({ app, kind: "reactive", id: key, deps, output: { flows, meters: NO_METERS } }, owner);
    return owner;
  }

  /** Count (+1) or uncount (-1) the flows of `out` that send packets through conntrack. */
  private countConntrack(out: OwnerOutput, by: 1 | -1): void {
    for (const d of out.flows) {
      const f = d.flow;
      if (!f.instructions.some((i) => i.type === "apply_actions" && i.actions.some((a) => a.type === "ct"))) {
        continue;
      }
      const port = f.match.find((m) => m.field === "in_port")?.value;
      const k = `${f.table}/${port ?? "*"}`;
      const n = (this.conntrackFlows.get(k) ?? 0) + by;
      if (n > 0) this.conntrackFlows.set(k, n);
      else this.conntrackFlows.delete(k);
    }
  }

  // ── reading ──────────────────────────────────────────────────────────────

  /**
   * Whether a packet from `inPort` may meet conntrack (a flow with a ct
   * action for that port, or for any port) in a table before `tableId`.
   */
  conntrackBefore(tableId: number, inPort: number): boolean {
    for (const t of PIPELINE) {
      if (t.id >= tableId) return false;
      if (this.conntrackFlows.has(`${t.id}/${inPort}`) || this.conntrackFlows.has(`${t.id}/*`)) return true;
    }
    return false;
  }

  output(owner: OwnerKey): OwnerOutput | undefined {
    return this.owners.get(owner)?.output;
  }

  ownerKeys(): IterableIterator<OwnerKey> {
    return this.owners.keys();
  }

  depsOf(owner: OwnerKey): ReadonlySet<string> | undefined {
    const deps = this.owners.get(owner)?.deps;
    return deps && new Set(deps);
  }

  /** Every desired flow of every owner (tests, status). */
  allFlows(): DesiredFlow[] {
    return [...this.owners.values()].flatMap((o) => o.output.flows);
  }

  allMeters(): DesiredMeter[] {
    return [...this.owners.values()].flatMap((o) => o.output.meters);
  }

  get ownerCount(): number {
    return this.owners.size;
  }
}

/** The miss flow of every pipeline table. */
function missFlows(owner: OwnerKey, cookie: bigint): DesiredFlow[] {
  return PIPELINE.map((t) => {
    const b = flowOf(t.name as TableName, MISS_PRIORITY);
    if (t.miss !== "drop") b.goto(t.miss.goto as TableName);
    return desiredFlow(owner, b.build(cookie));
  });
}
