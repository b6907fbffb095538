/**
 * What the NIC should hold, kept in step with OpenFlow changes: the planner
 * over the flows OVS holds, the reasons rules are kept in software, and the
 * two-phase transition that makes a change safe.
 *
 * The ordering invariant (the offload datapath's promise):
 *
 *   The software path is in place before a tc rule that bypasses it is
 *   added, and a tc rule is removed before the OpenFlow state it shortcuts
 *   changes.
 *
 * It is kept by planning every OpenFlow change twice:
 *
 *   begin(changes)  before the OpenFlow bundle: every rule the change
 *                   touches — added, removed, modified, in either version —
 *                   is kept in software ("changing"). The plan that results
 *                   decides in the NIC only packets that no changed rule
 *                   could take, which the old and the new pipeline decide
 *                   alike; everything else reaches OVS untouched (the
 *                   planner's traps and settle). Installing it withdraws
 *                   what the change invalidates.
 *   commit(done)    after the switch confirmed the bundle: the rules it
 *                   applied leave "changing" (removed ones leave the
 *                   planner), and the new plan extends the NIC's share
 *                   again. A rule whose owner the switch refused stays in
 *                   software until a later sync applies it.
 *
 * Both plans are installed through filterOps (order.ts), whose order keeps
 * every intermediate state safe too. Besides "changing", a rule can be kept
 * in software by the kernel ("refused": a filter the kernel or the NIC would
 * not take), by the offload budget ("demoted", budget.ts) and by its own
 * timeouts ("aging": OVS ages a flow out by the packets it counts, and a
 * flow the NIC carries would look idle to it); a rule keeps the most urgent
 * of its reasons, and a rule that leaves the pipeline takes them all along.
 *
 * The planner numbers chains in the order it finds them, which depends on
 * the history of updates; a restarted agent, planning the same flows at
 * once, would number them differently and replace every filter. So the plan
 * this module hands out carries kernel chain numbers derived from each
 * chain's identity (its table and register values, OffloadPlanner.
 * chainIdentity): a hash into 1..maxChain, and where hashes collide the
 * chains of a collision take the numbers from their hash on in the order of
 * their identities (ChainNumbering) — so the same flows give the same chains
 * in every process, whatever order they came in. A new chain whose hash
 * collides with others' can move those after it (their filters are then
 * replaced, safely, like any change).
 */
import { createHash } from "node:crypto";
import type { NicProfile } from "../profiles/index.js";
import type { PipelineRule, PortMap } from "../planner/ir.js";
import { type Exclusion, OffloadPlanner, type Plan, type TcAction } from "../planner/plan.js";
import { type DeviceRule, deviceRules } from "./filters.js";

export type ExclusionSource = "changing" | "refused" | "demoted" | "aging";

const URGENCY: readonly ExclusionSource[] = ["changing", "refused", "demoted", "aging"];

/** The netdevs of a port map: eswitch ports, egress-only uplinks and the tunnel devices. */
export function blockDevices(ports: PortMap): string[] {
  const devs = new Set(ports.hardware.values());
  for (const t of ports.tunnels.values()) devs.add(t === "vxlan" ? "vxlan_sys_4789" : "genev_sys_6081");
  return [...devs].sort();
}

/**
 * Kernel chain numbers from chain identities. Each identity hashes into
 * 1..max; the identities of a plan take numbers in the order (hash,
 * identity), each the first free one from its hash on (wrapping around), so
 * the numbers depend only on which chains there are. (Numbers handed out
 * first come, first served made two colliding chains trade numbers between
 * an agent that saw them come one by one and a restarted one planning them
 * at once: the kernel lane's restart check failed on it.) When every number
 * the NIC takes is used, the rest go beyond max (the NIC refuses them).
 */
export class ChainNumbering {
  private readonly hashes = new Map<string, number>();

  constructor(private readonly max: number) {}

  private hash(identity: string): number {
    let h = this.hashes.get(identity);
    if (h === undefined) {
      h = (createHash("sha256").update(identity).digest().readUInt32BE(0) % Math.max(1, this.max)) + 1;
      this.hashes.set(identity, h);
    }
    return h;
  }

  /** A number for each of `identities`. */
  assign(identities: Iterable<string>): Map<string, number> {
    const span = Math.max(1, this.max);
    const order = [...new Set(identities)]
      .map((id) => [this.hash(id), id] as const)
      .sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    const taken = new Set<number>();
    const out = new Map<string, number>();
    let beyond = span;
    for (const [h, id] of order) {
      let n = h;
      for (let tries = 1; taken.has(n) && tries < span; tries++) n = (n % span) + 1;
      if (taken.has(n)) n = ++beyond;
      taken.add(n);
      out.set(id, n);
    }
    return out;
  }
}

export class OffloadState {
  readonly planner: OffloadPlanner;
  /** The rules the planner holds (OVS's flows, plus new versions during a change), by id. */
  private readonly rules = new Map<string, PipelineRule>();
  /** Rules removed by the change in flight: they leave the planner at commit. */
  private readonly leaving = new Set<string>();
  private readonly reasons = new Map<string, Map<ExclusionSource, Exclusion>>();
  private plan: Plan | undefined;
  private devices: string[];
  private readonly chains: ChainNumbering;

  constructor(
    readonly profile: NicProfile,
    readonly ports: PortMap,
  ) {
    this.planner = new OffloadPlanner(profile, ports);
    this.devices = blockDevices(ports);
    this.chains = new ChainNumbering(profile.maxChain);
  }

  /** Start from the flows OVS holds (no transition: the NIC is assumed to match them or nothing). */
  load(rules: Iterable<PipelineRule>): void {
    this.rules.clear();
    this.leaving.clear();
    for (const r of rules) this.rules.set(r.id, r);
    this.planner.setRules([...this.rules.values()]);
    this.plan = undefined;
  }

  ruleById(id: string): PipelineRule | undefined {
    return this.rules.get(id);
  }

  allRules(): IterableIterator<PipelineRule> {
    return this.rules.values();
  }

  /** Set or clear one source's reason to keep rules in software. */
  setExclusions(source: ExclusionSource, changes: ReadonlyMap<string, Exclusion | undefined>): void {
    const effective = new Map<string, Exclusion | undefined>();
    for (const [id, ex] of changes) {
      let m = this.reasons.get(id);
      if (ex) {
        if (!m) this.reasons.set(id, (m = new Map()));
        m.set(source, ex);
      } else if (m) {
        m.delete(source);
        if (!m.size) this.reasons.delete(id);
      }
      effective.set(id, this.effective(id));
    }
    if (effective.size) {
      this.planner.exclude(effective);
      this.plan = undefined;
    }
  }

  private effective(id: string): Exclusion | undefined {
    const m = this.reasons.get(id);
    if (!m) return undefined;
    for (const s of URGENCY) {
      const ex = m.get(s);
      if (ex) return ex;
    }
    return undefined;
  }

  /** Why a rule is kept in software, by its most urgent source. */
  exclusion(id: string): { source: ExclusionSource; exclusion: Exclusion } | undefined {
    const m = this.reasons.get(id);
    for (const s of URGENCY) {
      const ex = m?.get(s);
      if (ex) return { source: s, exclusion: ex };
    }
    return undefined;
  }

  excludedBy(source: ExclusionSource): string[] {
    return [...this.reasons].filter(([, m]) => m.has(source)).map(([id]) => id);
  }

  /**
   * Phase one of a change: `changes` maps every rule id the change touches to
   * its new version (undefined: removed). Both versions stay in software.
   */
  begin(changes: ReadonlyMap<string, PipelineRule | undefined>): void {
    const upsert: PipelineRule[] = [];
    const changing = new Map<string, Exclusion>();
    for (const [id, next] of changes) {
      changing.set(id, { reason: "its OpenFlow flow is changing", scope: "actions" });
      if (next) {
        this.rules.set(id, next);
        this.leaving.delete(id);
        upsert.push(next);
      } else if (this.rules.has(id)) this.leaving.add(id);
    }
    this.setExclusions("changing", changing);
    if (upsert.length) this.planner.update({ upsert });
    this.plan = undefined;
  }

  /** Phase two: the switch holds the new versions of `done` (by default, every changing rule). */
  commit(done?: ReadonlySet<string>): void {
    const ids = done ?? new Set(this.excludedBy("changing"));
    const remove: string[] = [];
    for (const id of ids) {
      if (!this.leaving.delete(id)) continue;
      this.rules.delete(id);
      remove.push(id);
    }
    if (remove.length) this.planner.update({ remove });
    this.setExclusions("changing", new Map([...ids].map((id) => [id, undefined])));
    // A removed rule takes its other reasons with it.
    const gone = new Map<string, undefined>();
    for (const id of remove) {
      if (this.reasons.delete(id)) gone.set(id, undefined);
    }
    if (gone.size) this.planner.exclude(gone);
    this.plan = undefined;
  }

  /** Ids in the middle of a change. */
  changing(): string[] {
    return this.excludedBy("changing");
  }

  /** The planner's plan, with kernel chain numbers. */
  result(): Plan {
    this.plan ??= this.numbered(this.planner.result());
    return this.plan;
  }

  private numbered(p: Plan): Plan {
    const identities = new Map<number, string>();
    for (const c of p.chains) {
      const identity = this.planner.chainIdentity(c.chain);
      if (c.chain !== 0 && identity !== undefined) identities.set(c.chain, identity);
    }
    const numbers = this.chains.assign(identities.values());
    const map = new Map<number, number>([[0, 0]]);
    for (const [c, identity] of identities) map.set(c, numbers.get(identity)!);
    const to = (c: number) => map.get(c) ?? c;
    const action = (a: TcAction): TcAction => (a.type === "goto" ? { type: "goto", chain: to(a.chain) } : a);
    const decisions = new Map(
      [...p.decisions].map(([id, d]) => {
        const chains = d.chains.map(to);
        const reason = d.offloaded
          ? `offloaded in chain${chains.length > 1 ? "s" : ""} ${chains.join(", ")}`
          : d.reason;
        return [id, { ...d, chains, reason }];
      }),
    );
    return {
      tc: p.tc.map((r) => ({ ...r, chain: to(r.chain), actions: r.actions.map(action) })),
      decisions,
      chains: p.chains.map((c) => ({ ...c, chain: to(c.chain) })),
    };
  }

  blockDevices(): readonly string[] {
    return this.devices;
  }

  /** The filters every device should hold now, by key. */
  desired(): Map<string, DeviceRule> {
    return new Map(deviceRules(this.result(), this.devices).map((d) => [d.key, d]));
  }
}
