/**
 * The offload datapath's state machine without a kernel: the plan as
 * per-device filters (filters.ts), the order differences are sent in
 * (order.ts), and the two-phase transition (state.ts).
 *
 * The ordering invariant is checked under churn: random pipelines get random
 * changes (rules added, removed, reprioritised) and random budget demotions;
 * the tc state is changed ONE filter operation at a time, and after every
 * single operation every packet of a random sequence must be decided by the
 * split datapath (tc as installed, OVS for what it hands over) exactly as by
 * the OpenFlow pipeline OVS holds at that moment — the old one and the new
 * one while the change is in flight, the new one after the bundle.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runSoftware, runSplit, type Packet } from "../../src/offload/planner/evaluate.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner, type Plan, type TcRule } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { type DeviceRule, deviceRules, SOFTWARE_MISS_PRIO } from "../../src/offload/datapath/filters.js";
import { filterOps, type InstalledRef } from "../../src/offload/datapath/order.js";
import { ChainNumbering, OffloadState } from "../../src/offload/datapath/state.js";
import { extraRules, flowArb, pipeline, portsOf, show, topoArb } from "../harness/planner-pipeline.js";

const cx6 = profileById("connectx-6-dx");
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
    [3, "rep3"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};
const rule = (id: string, table: number, priority: number, r: Pick<PipelineRule, "match" | "actions">) => ({
  id,
  table,
  priority,
  ...r,
});

describe("the plan as per-device filters", () => {
  const rules: PipelineRule[] = [
    rule("vm1", 0, 100, {
      match: { in_port: exact("in_port", 1) },
      actions: [
        { type: "set_field", field: "reg6", value: 7n },
        { type: "goto", table: 40 },
      ],
    }),
    rule("vm2", 0, 100, {
      match: { in_port: exact("in_port", 2) },
      actions: [
        { type: "set_field", field: "reg6", value: 7n },
        { type: "goto", table: 40 },
      ],
    }),
    rule("arp-a", 40, 200, {
      match: { eth_type: exact("eth_type", 0x806), arp_op: exact("arp_op", 1) },
      actions: [{ type: "controller" }],
    }),
    rule("arp-b", 40, 200, {
      match: { eth_type: exact("eth_type", 0x806), arp_op: exact("arp_op", 2) },
      actions: [{ type: "controller" }],
    }),
    rule("to3", 40, 100, {
      match: { reg6: exact("reg6", 7), eth_dst: exact("eth_dst", 0x020000000003n) },
      actions: [{ type: "output", port: 3 }],
    }),
  ];
  const plan = OffloadPlanner.plan({ rules, profile: cx6, ports });
  const filters = deviceRules(plan, ["genev_sys_6081", "rep1", "rep2", "rep3"]);
  const on = (dev: string) => filters.filter((f) => f.dev === dev);

  it("puts a rule with indev on that device only, and a chain's rules on every device that reaches it", () => {
    const chain40 = plan.chains.find((c) => c.table === 40)!.chain;
    // chain 0: each VM's classification on its own representor; the table miss on every device
    expect(
      on("rep1")
        .filter((f) => f.rule.chain === 0)
        .map((f) => f.origins),
    ).toEqual(expect.arrayContaining([["vm1"], []]));
    expect(
      on("rep3")
        .filter((f) => f.rule.chain === 0)
        .map((f) => f.kind),
    ).toEqual(["drop"]);
    // chain 40 is reached from rep1 and rep2, not from rep3 or the tunnel
    const devs40 = new Set(filters.filter((f) => f.rule.chain === chain40).map((f) => f.dev));
    expect([...devs40].sort()).toEqual(["rep1", "rep2"]);
    for (const f of filters) expect(f.rule.indev).toBe(f.dev);
  });

  it("merges rules that land on one filter (the coarse ARP traps) and keeps their origins", () => {
    const traps = on("rep1").filter((f) => f.kind === "trap" && f.rule.match.eth_type);
    expect(traps).toHaveLength(1);
    expect(traps[0]!.origins.sort()).toEqual(["arp-a", "arp-b"]);
  });

  it("gives a chain without a catch-all an explicit one that passes to OVS", () => {
    const poisoned: PipelineRule[] = [
      rules[0]!,
      rule("opaque", 40, 200, { match: {}, actions: [{ type: "controller" }] }),
    ];
    const p = OffloadPlanner.plan({
      rules: [...poisoned, { ...poisoned[1]!, id: "x", opaqueMatch: ["arp_sha"] }],
      profile: cx6,
      ports,
    });
    const chain40 = p.chains.find((c) => c.table === 40)!;
    expect(p.tc.some((t) => t.chain === chain40.chain && t.role === "miss")).toBe(false);
    const miss = deviceRules(p, ["rep1", "rep2"]).filter(
      (f) => f.rule.chain === chain40.chain && f.origins.length === 0,
    );
    expect(miss.map((f) => [f.dev, f.rule.prio, f.kind])).toEqual([["rep1", SOFTWARE_MISS_PRIO, "trap"]]);
  });

  it("turns a filter two rules disagree on into a trap", () => {
    const t = (ruleId: string, dev: string): TcRule => ({
      chain: 0,
      prio: 10,
      match: {},
      indev: "rep1",
      ruleId,
      role: "offload",
      actions: [{ type: "redirect", dev }],
    });
    const p: Plan = {
      tc: [t("a", "rep2"), t("b", "rep3")],
      decisions: new Map(),
      chains: [{ chain: 0, table: 0, registers: {}, reachesSoftware: false }],
    };
    const [f] = deviceRules(p, ["rep1"]).filter((x) => x.rule.prio === 10);
    expect(f).toMatchObject({ kind: "trap", origins: ["a", "b"] });
  });
});

interface Installed extends InstalledRef {
  want: DeviceRule;
}

function apply(installed: Map<string, Installed>, op: ReturnType<typeof filterOps<Installed>>[number]): void {
  if (op.op === "delete") installed.delete(op.have.key);
  else {
    const w = op.want;
    installed.set(w.key, { key: w.key, sig: w.sig, chain: w.rule.chain, table: w.table, want: w });
  }
}

function asPlan(installed: Map<string, Installed>): Plan {
  return { tc: [...installed.values()].map((i) => i.want.rule), decisions: new Map(), chains: [] };
}

/** Every packet, each on its own, decided alike by tc-as-installed + OVS(rules) and by OVS(rules) alone. */
function expectSafe(
  installed: Map<string, Installed>,
  rules: PipelineRule[],
  p: PortMap,
  packets: Packet[],
  what: string,
): void {
  const plan = asPlan(installed);
  for (const pkt of packets) {
    expect(runSplit(plan, rules, p, pkt), `${what}: ${show(pkt)}`).toEqual(runSoftware(rules, p, pkt));
  }
}

/** Ids as the agent has them: a flow's identity is its table, priority and match. */
const keyed = (r: PipelineRule): PipelineRule => ({ ...r, id: `${r.id}@${r.table}/${r.priority}` });

describe("the ordering invariant, under churn", () => {
  it("every single tc operation leaves every packet decided as OVS decides it", () => {
    fc.assert(
      fc.property(
        topoArb.chain((t) =>
          fc.tuple(
            fc.constant(t),
            fc.array(
              fc.tuple(
                fc.nat(),
                fc.constantFrom("remove", "reprioritise", "insert", "demote", "promote"),
                fc.integer({ min: 1, max: 300 }),
              ),
              { minLength: 1, maxLength: 5 },
            ),
            flowArb(t, { minLength: 6, maxLength: 12 }),
          ),
        ),
        ([topo, edits, packets]) => {
          const tp = portsOf(topo);
          const original = pipeline(topo).map(keyed);
          const extra = extraRules(topo).map(keyed);
          let rules = original;
          const state = new OffloadState(cx6, tp);
          state.load(rules);
          const installed = new Map<string, Installed>();
          for (const op of filterOps(state.desired(), installed)) apply(installed, op);
          expectSafe(installed, rules, tp, packets, "initial");
          for (const [pick, kind, prio] of edits) {
            if (kind === "demote" || kind === "promote") {
              const id = rules[pick % rules.length]?.id;
              if (!id) continue;
              const ex =
                kind === "demote" ? { reason: "demoted: idle", scope: "actions" as const } : undefined;
              state.setExclusions("demoted", new Map([[id, ex]]));
              for (const op of filterOps(state.desired(), installed)) {
                apply(installed, op);
                expectSafe(installed, rules, tp, packets, `${kind} ${id}, after ${op.op}`);
              }
              continue;
            }
            const pool = kind === "insert" || rules.length === 0 ? [...extra, ...original] : rules;
            const victim = pool[pick % pool.length]!;
            let next: PipelineRule[];
            if (kind === "remove") next = rules.filter((r) => r.id !== victim.id);
            else {
              const moved = keyed({ ...victim, id: victim.id.split("@")[0]!, priority: prio });
              next = [...rules.filter((r) => r.id !== victim.id && r.id !== moved.id), moved];
            }
            const before = new Map(rules.map((r) => [r.id, r]));
            const after = new Map(next.map((r) => [r.id, r]));
            const changes = new Map<string, PipelineRule | undefined>();
            for (const [id, r] of after) if (before.get(id) !== r) changes.set(id, r);
            for (const id of before.keys()) if (!after.has(id)) changes.set(id, undefined);
            // phase one, while OVS still holds `rules` — and may switch to `next` at any moment
            state.begin(changes);
            for (const op of filterOps(state.desired(), installed)) {
              apply(installed, op);
              expectSafe(installed, rules, tp, packets, `${kind} (begin, old pipeline), after ${op.op}`);
              expectSafe(installed, next, tp, packets, `${kind} (begin, new pipeline), after ${op.op}`);
            }
            rules = next;
            // phase two, after the bundle
            state.commit();
            for (const op of filterOps(state.desired(), installed)) {
              apply(installed, op);
              expectSafe(installed, rules, tp, packets, `${kind} (commit), after ${op.op}`);
            }
          }
          expect([...installed.keys()].sort()).toEqual([...state.desired().keys()].sort());
          expect(state.changing()).toEqual([]);
        },
      ),
      { numRuns: 80, seed: 0x0ff1 },
    );
  });

  it.each([
    ["the NIC's chain numbers", cx6],
    // few numbers: chains' hashes collide, and the colliding ones must not trade numbers
    ["eight chain numbers", { ...cx6, maxChain: 8 }],
  ])(
    "numbers chains by their identity (%s): a restarted agent planning the same flows at once wants the same filters",
    (_, profile) => {
      fc.assert(
        fc.property(topoArb, fc.nat(), (topo, seed) => {
          const tp = portsOf(topo);
          const all = pipeline(topo).map(keyed);
          // one process saw the flows arrive in batches, in some order …
          const order = [...all].sort(
            (a, b) => ((a.id.length * 31 + seed) % 7) - ((b.id.length * 31 + seed) % 7),
          );
          const grown = new OffloadState(profile, tp);
          grown.load(order.slice(0, Math.ceil(order.length / 3)));
          for (const part of [order.slice(Math.ceil(order.length / 3)), []]) {
            grown.begin(new Map(part.map((r) => [r.id, r])));
            grown.commit();
          }
          // … the restarted one plans them all at once
          const fresh = new OffloadState(profile, tp);
          fresh.load(all);
          const sigs = (s: OffloadState) => [...s.desired().values()].map((d) => d.sig).sort();
          expect(sigs(grown)).toEqual(sigs(fresh));
        }),
        { numRuns: 40, seed: 0x5eed },
      );
    },
  );

  it("chain numbers depend on which chains there are, not on the order they came in", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 }),
        fc.nat(),
        (ids, seed) => {
          const shuffled = [...ids].sort(
            (a, b) => ((a.charCodeAt(0) * 7 + seed) % 5) - ((b.charCodeAt(0) * 7 + seed) % 5),
          );
          // one numbering that saw the identities come one by one (growing sets), one that sees them at once
          const grown = new ChainNumbering(4);
          for (let i = 1; i < shuffled.length; i++) grown.assign(shuffled.slice(0, i));
          const a = grown.assign(shuffled);
          const b = new ChainNumbering(4).assign(ids);
          expect(new Map([...a].sort())).toEqual(new Map([...b].sort()));
          // every identity a number of its own; the NIC's four first, the rest beyond them
          const numbers = [...a.values()].sort((x, y) => x - y);
          expect(new Set(numbers).size).toBe(ids.length);
          expect(numbers.filter((n) => n <= 4)).toHaveLength(Math.min(ids.length, 4));
          expect(numbers.filter((n) => n > 4)).toEqual(
            [...Array(Math.max(0, ids.length - 4)).keys()].map((i) => i + 5),
          );
        },
      ),
      { numRuns: 200, seed: 0xc4a1 },
    );
  });

  it("a change the switch did not apply stays in software until it is", () => {
    const rules = pipeline({
      networks: [{ vni: 10, ports: [1, 2], remoteMacs: [50] }],
      portSecurity: false,
      conntrack: "none",
      routing: false,
      dhcpPunt: false,
      oddRule: false,
      localFlood: false,
      arpResponder: false,
      tunnelTable: 10,
      tunnelKeyFlood: false,
    }).map(keyed);
    const state = new OffloadState(cx6, ports);
    state.load(rules);
    const victim = rules.find((r) => r.table === 10 && r.actions.some((a) => a.type === "output"))!;
    state.begin(new Map([[victim.id, { ...victim, actions: [{ type: "output", port: 3 }] }]]));
    state.commit(new Set());
    expect(state.changing()).toEqual([victim.id]);
    expect(state.result().decisions.get(victim.id)).toMatchObject({
      offloaded: false,
      reason: "not offloaded: its OpenFlow flow is changing",
    });
    state.commit(new Set([victim.id]));
    expect(state.changing()).toEqual([]);
    expect(state.result().decisions.get(victim.id)!.offloaded).toBe(true);
  });

  it("keeps the most urgent reason a rule is in software, and offloads it again when the last one goes", () => {
    const rules = [
      rule("vm1", 0, 100, {
        match: { in_port: exact("in_port", 1) },
        actions: [{ type: "output", port: 2 }],
      }),
    ];
    const state = new OffloadState(cx6, ports);
    state.load(rules);
    state.setExclusions("demoted", new Map([["vm1", { reason: "demoted: idle", scope: "actions" }]]));
    state.setExclusions("refused", new Map([["vm1", { reason: "refused: EOPNOTSUPP", scope: "actions" }]]));
    expect(state.exclusion("vm1")).toMatchObject({ source: "refused" });
    expect(state.result().decisions.get("vm1")!.reason).toBe("not offloaded: refused: EOPNOTSUPP");
    state.setExclusions("refused", new Map([["vm1", undefined]]));
    expect(state.result().decisions.get("vm1")!.reason).toBe("not offloaded: demoted: idle");
    state.setExclusions("demoted", new Map([["vm1", undefined]]));
    expect(state.result().decisions.get("vm1")!.offloaded).toBe(true);
  });
});
