/**
 * The offload budget (src/offload/datapath/budget.ts) on a pipeline shaped
 * like flowdrake's own: table 0 classifies each VM port into its network and
 * ingress-port registers, so every port gets chains of its own in table 40
 * (destination MAC → output). Demoting a port's classification frees those
 * chains' filters.
 *
 *   - over capacity the idlest ports are demoted until the plan fits, the
 *     busiest stay, and every demotion has a reason with its numbers;
 *   - a demoted flow comes back only after its dwell time and below the
 *     low watermark; at capacity a much busier demoted flow swaps places
 *     with the idlest offloaded one, a slightly busier one does not
 *     (hysteresis: no flapping);
 *   - traffic comes from cumulative counters that may restart from zero.
 */
import { describe, expect, it } from "vitest";
import {
  OffloadBudget,
  ownedFilters,
  TrafficMeter,
  type Counter,
} from "../../src/offload/datapath/budget.js";
import { OffloadState } from "../../src/offload/datapath/state.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { profileById } from "../../src/offload/profiles/index.js";

const PORTS = [1, 2, 3, 4, 5];
const ports: PortMap = { hardware: new Map(PORTS.map((p) => [p, `rep${p}`])), tunnels: new Map() };
const mac = (p: number) => BigInt(0x020000000000 + p);
const classify = (p: number) => `classify-${p}`;

function rules(): PipelineRule[] {
  const out: PipelineRule[] = [];
  for (const p of PORTS) {
    out.push({
      id: classify(p),
      table: 0,
      priority: 100,
      match: { in_port: exact("in_port", p) },
      actions: [
        { type: "set_field", field: "reg14", value: BigInt(p) },
        { type: "set_field", field: "reg6", value: 7n },
        { type: "goto", table: 40 },
      ],
    });
    out.push({
      id: `to-${p}`,
      table: 40,
      priority: 100,
      match: { reg6: exact("reg6", 7), eth_dst: exact("eth_dst", mac(p)) },
      actions: [{ type: "output", port: p }],
    });
  }
  return out;
}

function fresh(): OffloadState {
  const s = new OffloadState(profileById("connectx-6-dx"), ports);
  s.load(rules());
  return s;
}

/** A meter fed with per-flow packet rates (two samples `dtMs` apart). */
function meterWith(pps: Record<string, number>, dtMs = 1000): TrafficMeter {
  const m = new TrafficMeter();
  const at = (k: number) =>
    new Map(Object.entries(pps).map(([id, r]) => [id, { packets: r * k, bytes: r * k * 100 }]));
  m.update(at(0), 0);
  m.update(at(dtMs / 1000), dtMs);
  return m;
}

describe("the offload budget", () => {
  const full = fresh().desired().size;
  const owned = ownedFilters(fresh().result(), [...fresh().desired().values()]);

  it("knows what each port's classification alone keeps on the NIC", () => {
    for (const p of PORTS) expect(owned.get(classify(p)), classify(p)).toBeGreaterThan(0);
    // destination rules are reached from every port's chain: nobody owns anything through them
    for (const p of PORTS) expect(owned.get(`to-${p}`) ?? 0).toBe(0);
  });

  it("demotes the idlest flows until the plan fits, keeps the busiest, and says why", () => {
    const state = fresh();
    const per = owned.get(classify(1))!;
    const capacity = full - 2 * per;
    const budget = new OffloadBudget({ capacity, dwellMs: 10_000 });
    const meter = meterWith({
      [classify(1)]: 900,
      [classify(2)]: 500,
      [classify(3)]: 3,
      [classify(4)]: 1,
      [classify(5)]: 400,
    });
    const d = budget.decide(state, meter, 0);
    expect(d.demoted.map((x) => x.id).sort()).toEqual([classify(3), classify(4)]);
    expect(d.filters).toBeLessThanOrEqual(capacity);
    expect(state.desired().size).toBe(d.filters);
    expect(d.demoted.find((x) => x.id === classify(4))!.reason).toBe(
      `demoted: 1.0 pkt/s, among the least busy while the plan needs ${full} filters and the NIC holds ${capacity}`,
    );
    const plan = state.result();
    for (const p of [1, 2, 5]) expect(plan.decisions.get(classify(p))!.offloaded).toBe(true);
    expect(plan.decisions.get(classify(4))).toMatchObject({
      offloaded: false,
      reason: `not offloaded: ${d.demoted[0]!.reason}`,
    });
    expect(state.exclusion(classify(3))?.source).toBe("demoted");
  });

  it("brings demoted flows back after their dwell time, once there is room below the low watermark", () => {
    const state = fresh();
    const per = owned.get(classify(1))!;
    const budget = new OffloadBudget({ capacity: full - per, dwellMs: 10_000, lowWater: 0.9 });
    const quiet = meterWith({
      [classify(1)]: 50,
      [classify(2)]: 40,
      [classify(3)]: 30,
      [classify(4)]: 20,
      [classify(5)]: 0,
    });
    expect(budget.decide(state, quiet, 0).demoted.map((x) => x.id)).toEqual([classify(5)]);
    // port 4 goes away: room again, but not before the dwell time
    state.begin(
      new Map([
        [classify(4), undefined],
        ["to-4", undefined],
      ]),
    );
    state.commit();
    expect(budget.decide(state, quiet, 5_000).promoted).toEqual([]);
    expect(state.exclusion(classify(5))?.source).toBe("demoted");
    const d = budget.decide(state, quiet, 10_000);
    expect(d.promoted).toEqual([classify(5)]);
    expect(state.exclusion(classify(5))).toBeUndefined();
    expect(state.result().decisions.get(classify(5))!.offloaded).toBe(true);
    expect(state.desired().size).toBeLessThanOrEqual(full - per);
  });

  it("swaps a much busier demoted flow with the idlest offloaded one, and leaves a slightly busier one", () => {
    const state = fresh();
    const per = owned.get(classify(1))!;
    const budget = new OffloadBudget({ capacity: full - per, dwellMs: 1_000, swapFactor: 2 });
    const before = meterWith({
      [classify(1)]: 50,
      [classify(2)]: 40,
      [classify(3)]: 30,
      [classify(4)]: 20,
      [classify(5)]: 10,
    });
    expect(budget.decide(state, before, 0).demoted.map((x) => x.id)).toEqual([classify(5)]);
    // port 5 gets busier than port 4, but not twice as busy: nothing moves, however often we ask
    const slightly = meterWith({
      [classify(1)]: 50,
      [classify(2)]: 40,
      [classify(3)]: 30,
      [classify(4)]: 20,
      [classify(5)]: 35,
    });
    for (const t of [2_000, 4_000, 6_000]) {
      const d = budget.decide(state, slightly, t);
      expect([d.demoted, d.promoted]).toEqual([[], []]);
    }
    // three times as busy: it takes port 4's place
    const much = meterWith({
      [classify(1)]: 50,
      [classify(2)]: 40,
      [classify(3)]: 30,
      [classify(4)]: 20,
      [classify(5)]: 60,
    });
    const d = budget.decide(state, much, 8_000);
    expect(d.promoted).toEqual([classify(5)]);
    expect(d.demoted.map((x) => x.id)).toEqual([classify(4)]);
    expect(state.desired().size).toBeLessThanOrEqual(full - per);
    // and not straight back: port 4 dwells in software even when it gets busy at once
    const back = meterWith({
      [classify(1)]: 50,
      [classify(2)]: 40,
      [classify(3)]: 30,
      [classify(4)]: 500,
      [classify(5)]: 60,
    });
    expect(budget.decide(state, back, 8_500).promoted).toEqual([]);
    expect(budget.decide(state, back, 9_500).promoted).toEqual([classify(4)]);
  });

  it("before the first window (just after a restart) keeps the flows that counted the most packets so far", () => {
    const state = fresh();
    const per = owned.get(classify(1))!;
    const budget = new OffloadBudget({ capacity: full - per });
    const m = new TrafficMeter();
    const totals: Record<string, number> = {
      [classify(1)]: 90_000,
      [classify(2)]: 500,
      [classify(3)]: 7,
      [classify(4)]: 12_000,
      [classify(5)]: 800,
    };
    m.update(
      new Map(Object.entries(totals).map(([id, packets]) => [id, { packets, bytes: packets * 100 }])),
      0,
    );
    expect(m.sampled).toBe(true);
    expect(m.rate(classify(1))).toBe(0);
    expect(budget.decide(state, m, 0).demoted.map((x) => x.id)).toEqual([classify(3)]);
  });

  it("demotes nothing that frees nothing, and stops when nothing more can go", () => {
    const state = fresh();
    const budget = new OffloadBudget({ capacity: 1 });
    const d = budget.decide(state, meterWith({}), 0);
    expect(d.demoted.map((x) => x.id).sort()).toEqual(PORTS.map(classify).sort());
    expect(state.excludedBy("demoted").every((id) => id.startsWith("classify-"))).toBe(true);
    expect(d.filters).toBeGreaterThan(1);
  });
});

describe("traffic from counters", () => {
  const c = (packets: number): Counter => ({ packets, bytes: packets * 64 });
  it("is a smoothed rate per flow, and survives a counter that restarts (a replaced filter)", () => {
    const m = new TrafficMeter();
    m.update(new Map([["a", c(0)]]), 0);
    m.update(new Map([["a", c(100)]]), 1000);
    expect(m.rate("a")).toBe(100);
    m.update(new Map([["a", c(300)]]), 2000);
    expect(m.rate("a")).toBe(150);
    m.update(new Map([["a", c(50)]]), 3000);
    expect(m.rate("a")).toBe(100);
    expect(m.byteRate("a")).toBe(6400);
    m.update(new Map(), 4000);
    expect(m.rate("a")).toBe(0);
  });
});
