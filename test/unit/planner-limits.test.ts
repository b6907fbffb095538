import { describe, expect, it } from "vitest";
import { exact, type Action, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner, type Plan } from "../../src/offload/planner/plan.js";
import { profileById, type NicProfile } from "../../src/offload/profiles/index.js";
import type { ActionKind } from "../../src/offload/profiles/vocabulary.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * A profile's limits taken exactly (at the limit is allowed), the exact tc
 * rules a trap and a miss become, tie order between equal priorities, and
 * updates that change several tables at once.
 */
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};
const cx6 = profileById("connectx-6-dx");
const without = (...kinds: ActionKind[]): NicProfile => ({
  ...cx6,
  actions: cx6.actions.filter((a) => !kinds.includes(a)),
});
const fromPort1 = { in_port: exact("in_port", 1) };
const r = (
  actions: Action[],
  match: PipelineRule["match"] = fromPort1,
  table = 0,
  id = "r",
): PipelineRule => ({
  id,
  table,
  priority: 100,
  match,
  actions,
});
const plan = (rules: PipelineRule[], profile = cx6): Plan => OffloadPlanner.plan({ rules, profile, ports });
const offloaded = (rules: PipelineRule[], profile = cx6, id = "r") =>
  plan(rules, profile).decisions.get(id)!.offloaded;
const encap = (options?: number): Action => ({
  type: "set_tunnel",
  id: 5n,
  dst: 9n,
  tunnel: "geneve",
  ...(options === undefined ? {} : { options }),
});

describe("profile limits", () => {
  it("allow exactly what the profile claims", () => {
    expect(offloaded([r([encap(1), { type: "output", port: 100 }])])).toBe(true);
    expect(
      offloaded([r([{ type: "goto", table: 10 }]), r([], {}, 10, "t10")], { ...cx6, maxChain: 1001 }),
    ).toBe(true);
    expect(
      offloaded([r([{ type: "goto", table: 10 }]), r([], {}, 10, "t10")], { ...cx6, maxChain: 1000 }),
    ).toBe(false);
    const ct: Action = { type: "ct", zone: 1, commit: false, nat: false, table: 10 };
    expect(offloaded([r([ct]), r([], {}, 10, "t10")], without("ct_nat"))).toBe(true);
    expect(offloaded([r([{ type: "output", port: 2 }])], without("mirror"))).toBe(true);
    // An encapsulating output counts as an output: with another one it is a flood.
    expect(
      offloaded(
        [r([{ type: "output", port: 2 }, encap(), { type: "output", port: 100 }])],
        without("mirror"),
      ),
    ).toBe(false);
  });
});

describe("the tc rules a plan is made of", () => {
  it("a rule kept in software is one trap, whatever it did before failing; a miss is a drop", () => {
    const rules = [r([{ type: "dec_ttl" }, { type: "output", port: 2 }, { type: "controller" }], {})];
    const p = plan(rules);
    expect(p.tc.map((t) => [t.ruleId ?? t.role, t.role, t.actions])).toEqual([
      ["r", "trap", [{ type: "pass" }]],
      ["miss", "miss", [{ type: "drop" }]],
    ]);
  });

  it("a NIC without an embedded switch: every chain reaches software", () => {
    expect(plan([r([{ type: "output", port: 2 }])], profileById("none")).chains).toEqual([
      { chain: 0, table: 0, registers: {}, reachesSoftware: true },
    ]);
  });

  it("a rule with in_port and a field the NIC cannot match is trapped on its port, and the rest stays offloaded", () => {
    const rules = [
      { ...r([{ type: "controller" }], { ...fromPort1, arp_op: exact("arp_op", 1) }), priority: 200 },
      r([{ type: "output", port: 2 }], fromPort1, 0, "fwd"),
    ];
    const p = plan(rules);
    expect(p.tc.find((t) => t.ruleId === "r")).toMatchObject({ role: "trap", indev: "rep1", match: {} });
    expect(p.decisions.get("fwd")!.offloaded).toBe(true);
    expectSameDecisions(p, rules, ports, [{ in_port: 1n, arp_op: 1n }, { in_port: 1n }]);
  });

  it("an encapsulation from a known port needs no hairpin trap on the tunnel", () => {
    const p = plan([r([encap(), { type: "output", port: 100 }])]);
    expect(p.tc.filter((t) => t.ruleId === "r").map((t) => t.role)).toEqual(["offload"]);
  });

  it("a VLAN push followed by a goto is a change like any rewrite", () => {
    const rules = [
      r([
        { type: "push_vlan", vid: 4 },
        { type: "goto", table: 10 },
      ]),
      r([{ type: "controller" }], { eth_type: exact("eth_type", 0x86dd) }, 10, "v6"),
    ];
    expect(plan(rules).decisions.get("r")!.reason).toMatch(/^not offloaded: it rewrites the packet/);
  });

  it("rules of equal priority keep the order of their ids, as OVS's evaluator here does", () => {
    const rules = [
      { ...r([{ type: "output", port: 2 }], {}, 0, "z"), priority: 5 },
      { ...r([encap(), { type: "output", port: 100 }], {}, 0, "y"), priority: 5 },
      { ...r([{ type: "output", port: 1 }], {}, 0, "x"), priority: 5 },
    ];
    const p = plan(rules);
    expect(p.tc.filter((t) => t.role === "offload").map((t) => t.ruleId)).toEqual(["x", "y", "z"]);
    expectSameDecisions(p, rules, ports, [{ in_port: 2n }]);
  });

  it("names the first table that matches conntrack state, whatever order the rules came in", () => {
    // (a commit: a plain lookup is offloaded, its later traps clearing its state; planner-shapes)
    const rules = [
      r(
        [{ type: "ct", zone: 1, commit: true, nat: false, table: 10 }],
        { ct_mark: exact("ct_mark", 0) },
        5,
        "ct",
      ),
      r([{ type: "goto", table: 5 }], { ...fromPort1, ct_state: { value: 0n, mask: 0x20n } }),
      r([{ type: "controller" }], {}, 10, "t10"),
    ];
    expect(plan(rules).decisions.get("ct")!.reason).toMatch(/which table 0 matches/);
  });

  it("traps the flower-expressible part of a rule without in_port instead of poisoning the chain", () => {
    const cx5 = profileById("connectx-5");
    const rules = [
      {
        ...r([{ type: "output", port: 2 }], {
          eth_type: exact("eth_type", 0x800),
          ct_mark: exact("ct_mark", 1),
        }),
        priority: 200,
      },
      r([{ type: "output", port: 2 }], fromPort1, 0, "fwd"),
    ];
    const p = plan(rules, cx5);
    expect(p.tc.find((t) => t.ruleId === "r")).toMatchObject({
      role: "trap",
      match: { eth_type: { value: 0x800n } },
    });
    expect(p.decisions.get("fwd")!.offloaded).toBe(true);
  });
});

describe("updates", () => {
  it("that change several tables at once re-plan each", () => {
    const rules = [
      r([{ type: "goto", table: 10 }]),
      r([{ type: "output", port: 2 }], fromPort1, 10, "a"),
      r([{ type: "goto", table: 20 }], { in_port: exact("in_port", 2) }, 0, "b"),
      r([{ type: "output", port: 1 }], { in_port: exact("in_port", 2) }, 20, "c"),
    ];
    const planner = new OffloadPlanner(cx6, ports);
    planner.setRules(rules);
    const key = (t: object) => JSON.stringify(t, (_k, v: unknown) => (typeof v === "bigint" ? `${v}` : v));
    const installed = new Set(planner.result().tc.map(key));
    const changed = [
      { ...rules[1]!, actions: [encap(), { type: "output", port: 100 }] as Action[] },
      { ...rules[3]!, actions: [{ type: "controller" } as Action] },
    ];
    const diff = planner.update({ upsert: changed });
    for (const t of diff.removed) expect(installed.delete(key(t))).toBe(true);
    for (const t of diff.added) installed.add(key(t));
    expect([...installed].sort()).toEqual(planner.result().tc.map(key).sort());
    expect(planner.lastPlannedChains).toBe(2);
  });

  it("list chains by id, also when an update adds one that is reached before older ones", () => {
    const planner = new OffloadPlanner(cx6, ports);
    const toTen = (reg: bigint) =>
      r(
        [
          { type: "set_field", field: "reg6", value: reg },
          { type: "goto", table: 10 },
        ],
        fromPort1,
        0,
        "a",
      );
    planner.setRules([
      toTen(1n),
      r([{ type: "goto", table: 20 }], { in_port: exact("in_port", 2) }, 0, "b"),
      r([{ type: "output", port: 2 }], fromPort1, 10, "t10"),
      r([{ type: "output", port: 1 }], { in_port: exact("in_port", 2) }, 20, "t20"),
    ]);
    planner.update({ upsert: [toTen(5n)] });
    const ids = planner.result().chains.map((c) => c.chain);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(ids).toHaveLength(3);
  });

  it("that add a conntrack match re-plan the lookups of other chains of that table", () => {
    const rules = [
      r([
        { type: "set_field", field: "reg6", value: 1n },
        { type: "goto", table: 5 },
      ]),
      r(
        [
          { type: "set_field", field: "reg6", value: 2n },
          { type: "goto", table: 5 },
        ],
        { in_port: exact("in_port", 2) },
        0,
        "b",
      ),
      r([{ type: "ct", zone: 1, commit: false, nat: false, table: 10 }], { reg6: exact("reg6", 2) }, 5, "ct"),
      r([{ type: "controller" }], { eth_type: exact("eth_type", 0x86dd) }, 10, "v6"),
    ];
    const planner = new OffloadPlanner(cx6, ports);
    planner.setRules(rules);
    expect(planner.result().decisions.get("ct")!.offloaded).toBe(true);
    const v6Trap = () =>
      planner
        .result()
        .tc.find((t) => t.ruleId === "v6")!
        .actions.map((a) => a.type);
    expect(v6Trap()).toEqual(["pass"]);
    const tracked = r([], { reg6: exact("reg6", 1), ct_state: { value: 0x20n, mask: 0x20n } }, 5, "tracked");
    planner.update({ upsert: [tracked] });
    // the lookup's state is now seen at its own table: it stays on the NIC, and the trap after it clears it
    expect(planner.result().decisions.get("ct")!.offloaded).toBe(true);
    expect(v6Trap()).toEqual(["ct_clear", "pass"]);
    // as planned from scratch, but for the chains' numbers
    const shape = (p: Plan) =>
      p.tc.map((t) => `${t.ruleId}:${t.role}:${t.actions.map((a) => a.type)}`).sort();
    expect(shape(planner.result())).toEqual(
      shape(OffloadPlanner.plan({ rules: [...rules, tracked], profile: cx6, ports })),
    );
  });
});
