/**
 * The offload budget: how many filters the NIC may hold, and which flows
 * keep their place when the desired share is bigger.
 *
 * OVS's own offload simply fails an insert when the NIC's table is full and
 * the flow silently stays in software. Here every profile has a capacity
 * (profiles/index.ts, with its source; `offload.capacity` overrides it), in
 * device filters — what the hardware holds. When the plan needs more, the
 * flows carrying the least traffic are demoted to software (the planner
 * keeps them as traps, state.ts) until it fits, and demoted flows come back
 * when there is room again:
 *
 *   traffic   per OpenFlow flow, packets per second over a window: the
 *             counters of its tc filters (what the NIC forwarded) plus the
 *             flow's own OpenFlow counter (what OVS forwarded), smoothed
 *             (EWMA, one window's weight 1/2); between equal rates — before
 *             the first window, say, just after a restart — the packets
 *             counted so far decide
 *   cost      the filters that exist only because of the flow: demoting a
 *             flow turns its own filter into a trap, so what it frees is the
 *             chains only its goto leads to (owned chains, computed from the
 *             plan) — a VM's classification owns everything specialised to
 *             that VM's port, a destination MAC the chains of that
 *             destination. Flows that own nothing free nothing and are never
 *             demoted.
 *   demote    over capacity: cheapest-traffic first (ties: the bigger cost
 *             first), until the plan fits — checked by re-planning, not by
 *             estimate;
 *   promote   below the low watermark (90 %): the busiest demoted flows
 *             first, as long as the plan still fits; and at capacity the
 *             busiest demoted flow takes the place of the idlest offloaded
 *             flows whose filters make room for it, when it carries more
 *             than `swapFactor` times their traffic together;
 *   hysteresis  a flow stays demoted (or promoted) for at least `dwellMs`,
 *             and the low watermark and the swap factor keep flows near the
 *             boundary from flapping.
 *
 * Every demotion has a reason with the numbers in it; it shows in `caps
 * --explain` and counts in flowdrake_offload_demotions_total.
 */
import type { Exclusion, Plan } from "../planner/plan.js";
import type { DeviceRule } from "./filters.js";
import type { OffloadState } from "./state.js";

export interface BudgetOptions {
  /** Device filters the NIC may hold. */
  capacity: number;
  /** Promote only below capacity × lowWater. */
  lowWater?: number;
  /** A flow stays demoted (or promoted) at least this long. */
  dwellMs?: number;
  /** A demoted flow replaces an offloaded one when it carries this many times its traffic. */
  swapFactor?: number;
}

export interface Counter {
  packets: number;
  bytes: number;
}

/** Per-flow traffic from cumulative counters (which may restart from zero when a filter is replaced). */
export class TrafficMeter {
  private readonly last = new Map<string, Counter>();
  private readonly pps = new Map<string, number>();
  private readonly bps = new Map<string, number>();
  private lastAt: number | undefined;

  update(samples: ReadonlyMap<string, Counter>, nowMs: number): void {
    const dt = this.lastAt === undefined ? 0 : (nowMs - this.lastAt) / 1000;
    this.lastAt = nowMs;
    for (const [id, c] of samples) {
      const prev = this.last.get(id);
      this.last.set(id, c);
      if (dt <= 0 || !prev) continue;
      const dp = c.packets >= prev.packets ? c.packets - prev.packets : c.packets;
      const db = c.bytes >= prev.bytes ? c.bytes - prev.bytes : c.bytes;
      this.pps.set(id, ((this.pps.get(id) ?? dp / dt) + dp / dt) / 2);
      this.bps.set(id, ((this.bps.get(id) ?? db / dt) + db / dt) / 2);
    }
    for (const id of [...this.last.keys()]) {
      if (samples.has(id)) continue;
      this.last.delete(id);
      this.pps.delete(id);
      this.bps.delete(id);
    }
  }

  /** Packets counted so far (the last cumulative sample). */
  total(id: string): number {
    return this.last.get(id)?.packets ?? 0;
  }

  /** Whether any sample was taken. */
  get sampled(): boolean {
    return this.lastAt !== undefined;
  }

  /** Quieter first: by rate, then by packets so far. */
  quieter(a: string, b: string): number {
    return this.rate(a) - this.rate(b) || this.total(a) - this.total(b);
  }

  rate(id: string): number {
    return this.pps.get(id) ?? 0;
  }

  byteRate(id: string): number {
    return this.bps.get(id) ?? 0;
  }
}

/**
 * The filters each flow alone keeps in place: the filters of the chains that
 * only its gotos lead to (directly, or through chains it owns).
 */
export function ownedFilters(plan: Plan, filters: readonly DeviceRule[]): Map<string, number> {
  const table = new Map(plan.chains.map((c) => [c.chain, c.table]));
  const entries = new Map<number, Set<string>>();
  const chainOfRule = new Map<string, Set<number>>();
  for (const r of plan.tc) {
    if (r.role !== "offload" || r.ruleId === undefined) continue;
    let cs = chainOfRule.get(r.ruleId);
    if (!cs) chainOfRule.set(r.ruleId, (cs = new Set()));
    cs.add(r.chain);
    for (const a of r.actions) {
      if (a.type !== "goto") continue;
      let s = entries.get(a.chain);
      if (!s) entries.set(a.chain, (s = new Set()));
      s.add(`${r.ruleId}\u0000${r.chain}`);
    }
  }
  const perChain = new Map<number, number>();
  for (const f of filters) perChain.set(f.rule.chain, (perChain.get(f.rule.chain) ?? 0) + 1);
  const owner = new Map<number, string>();
  const cost = new Map<string, number>();
  const chains = [...entries.keys()].sort((a, b) => (table.get(a) ?? 0) - (table.get(b) ?? 0) || a - b);
  for (const c of chains) {
    const owners = new Set<string>();
    for (const e of entries.get(c)!) {
      const [ruleId, from] = e.split("\u0000") as [string, string];
      owners.add(owner.get(Number(from)) ?? ruleId);
    }
    if (owners.size !== 1) continue;
    const o = [...owners][0]!;
    owner.set(c, o);
    cost.set(o, (cost.get(o) ?? 0) + (perChain.get(c) ?? 0));
  }
  return cost;
}

export interface BudgetDecision {
  demoted: { id: string; reason: string }[];
  promoted: string[];
  /** Device filters the plan needs after the decision. */
  filters: number;
}

export class OffloadBudget {
  readonly capacity: number;
  private readonly lowWater: number;
  private readonly dwellMs: number;
  private readonly swapFactor: number;
  /** When each flow last changed side. */
  private readonly since = new Map<string, number>();

  constructor(opts: BudgetOptions) {
    this.capacity = opts.capacity;
    this.lowWater = opts.lowWater ?? 0.9;
    this.dwellMs = opts.dwellMs ?? 10_000;
    this.swapFactor = opts.swapFactor ?? 2;
  }

  /**
   * Give `busiest` (demoted) its place back if the idlest offloaded flows
   * whose filters make room for it carry less than 1/swapFactor of its
   * traffic together; otherwise leave everything as it was.
   */
  private swap(
    state: OffloadState,
    meter: TrafficMeter,
    busiest: string,
    now: number,
    out: BudgetDecision,
  ): void {
    const plan = state.result();
    const cost = ownedFilters(plan, [...state.desired().values()]);
    const idle = [...cost]
      .filter(
        ([id, c]) =>
          c > 0 && !state.exclusion(id) && this.settled(id, now) && plan.decisions.get(id)?.offloaded,
      )
      .sort(([a], [b]) => meter.quieter(a, b) || (a < b ? -1 : 1));
    const reason = state.exclusion(busiest)!.exclusion;
    state.setExclusions("demoted", new Map([[busiest, undefined]]));
    const need = state.desired().size;
    const picked: string[] = [];
    let freed = 0;
    let rate = 0;
    for (const [id, c] of idle) {
      if (need - freed <= this.capacity) break;
      picked.push(id);
      freed += c;
      rate += meter.rate(id);
    }
    const worth =
      picked.length > 0 && need - freed <= this.capacity && meter.rate(busiest) > this.swapFactor * rate;
    if (worth) {
      state.setExclusions(
        "demoted",
        new Map(
          picked.map((id) => [id, { reason: this.reason(meter.rate(id), need), scope: "actions" as const }]),
        ),
      );
      if (state.desired().size <= this.capacity) {
        for (const id of picked) {
          out.demoted.push({ id, reason: this.reason(meter.rate(id), need) });
          this.since.set(id, now);
        }
        out.promoted.push(busiest);
        this.since.set(busiest, now);
        return;
      }
      state.setExclusions("demoted", new Map(picked.map((id) => [id, undefined])));
    }
    state.setExclusions("demoted", new Map([[busiest, reason]]));
  }

  private settled(id: string, now: number): boolean {
    const t = this.since.get(id);
    return t === undefined || now - t >= this.dwellMs;
  }

  private reason(rate: number, filters: number): string {
    return `demoted: ${rate.toFixed(1)} pkt/s, among the least busy while the plan needs ${filters} filters and the NIC holds ${this.capacity}`;
  }

  /** Demote or promote flows so that the plan fits; changes `state`'s "demoted" exclusions. */
  decide(state: OffloadState, meter: TrafficMeter, now: number): BudgetDecision {
    const out: BudgetDecision = { demoted: [], promoted: [], filters: 0 };
    let filters = state.desired().size;
    const demote = (ids: string[], need: number): void => {
      const ex = new Map<string, Exclusion>();
      for (const id of ids) {
        const reason = this.reason(meter.rate(id), need);
        ex.set(id, { reason, scope: "actions" });
        out.demoted.push({ id, reason });
        this.since.set(id, now);
      }
      state.setExclusions("demoted", ex);
    };
    const promote = (ids: string[]): void => {
      state.setExclusions("demoted", new Map(ids.map((id) => [id, undefined])));
      for (const id of ids) this.since.set(id, now);
    };

    // Over capacity: demote the least busy flows that free something, cheapest traffic first.
    for (let round = 0; filters > this.capacity && round < 8; round++) {
      const plan = state.result();
      const cost = ownedFilters(plan, [...state.desired().values()]);
      const candidates = [...cost]
        .filter(([id, c]) => c > 0 && !state.exclusion(id) && plan.decisions.get(id)?.offloaded)
        .sort(([a, ca], [b, cb]) => meter.quieter(a, b) || cb - ca || (a < b ? -1 : 1));
      if (!candidates.length) break;
      const pick: string[] = [];
      let freed = 0;
      for (const [id, c] of candidates) {
        if (filters - freed <= this.capacity) break;
        pick.push(id);
        freed += c;
      }
      demote(pick, filters);
      filters = state.desired().size;
    }

    // Room again: bring back the busiest demoted flows while the plan fits.
    const demoted = () =>
      state
        .excludedBy("demoted")
        .filter((id) => this.settled(id, now))
        .sort((a, b) => meter.quieter(b, a) || (a < b ? -1 : 1));
    if (filters < this.capacity * this.lowWater) {
      for (const id of demoted()) {
        const since = this.since.get(id);
        promote([id]);
        const n = state.desired().size;
        if (n > this.capacity) {
          state.setExclusions(
            "demoted",
            new Map([[id, { reason: this.reason(meter.rate(id), n), scope: "actions" }]]),
          );
          if (since === undefined) this.since.delete(id);
          else this.since.set(id, since);
          break;
        }
        filters = n;
        out.promoted.push(id);
      }
    }
    // Still no room for the busiest demoted flow: it may take the place of the idlest offloaded ones.
    if (filters <= this.capacity) {
      const busiest = demoted()[0];
      if (busiest !== undefined && meter.rate(busiest) > 0) this.swap(state, meter, busiest, now, out);
      filters = state.desired().size;
    }
    out.filters = filters;
    return out;
  }
}
