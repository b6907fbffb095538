import { describe, expect, it } from "vitest";
import { exact, type Action, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner, type TcRule } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * Incremental planning, one kind of change at a time: whatever part of a tc
 * rule a change touches (device, chain, rewrite value, VLAN, tunnel key, ct
 * zone, match value or mask, ingress device), the diff update() returns must
 * take the installed set to exactly what a full plan installs.
 */
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
    [3, "rep3"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};
const cx6 = profileById("connectx-6-dx");
const key = (r: object) => JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? `${v}` : v));

class Installed {
  readonly planner = new OffloadPlanner(cx6, ports);
  private readonly set = new Set<string>();
  rules: PipelineRule[];
  constructor(rules: PipelineRule[]) {
    this.rules = rules;
    this.planner.setRules(rules);
    for (const r of this.planner.result().tc) this.set.add(key(r));
  }
  change(upsert: PipelineRule[], remove: string[] = []): { added: TcRule[]; removed: TcRule[] } {
    const diff = this.planner.update({ upsert, remove });
    for (const r of diff.removed) expect(this.set.delete(key(r)), `removed ${key(r)}`).toBe(true);
    for (const r of diff.added) this.set.add(key(r));
    const ids = new Set([...upsert.map((r) => r.id), ...remove]);
    this.rules = [...this.rules.filter((r) => !ids.has(r.id)), ...upsert];
    const plan = this.planner.result();
    expect([...this.set].sort()).toEqual(plan.tc.map(key).sort());
    const fresh = OffloadPlanner.plan({ rules: this.rules, profile: cx6, ports });
    expect(plan.tc.map((t) => [t.ruleId, t.role, t.prio]).sort()).toEqual(
      fresh.tc.map((t) => [t.ruleId, t.role, t.prio]).sort(),
    );
    expectSameDecisions(plan, this.rules, ports, [
      { in_port: 1n, eth_type: 0x800n, nw_ttl: 9n, eth_dst: 5n },
      { in_port: 2n, eth_type: 0x86ddn, eth_dst: 5n },
      { in_port: 1n, eth_type: 0x86ddn },
    ]);
    return diff;
  }
}

const rule = (
  id: string,
  table: number,
  actions: Action[],
  match: PipelineRule["match"] = {},
): PipelineRule => ({
  id,
  table,
  priority: 100,
  match,
  actions,
});
const classify = (reg: bigint, table = 10) =>
  rule(
    "classify",
    0,
    [
      { type: "set_field", field: "reg6", value: reg },
      { type: "goto", table },
    ],
    { in_port: exact("in_port", 1) },
  );

describe("an update changes exactly the tc rules it must", () => {
  const variants: [string, Action[], Action[]][] = [
    ["the output device", [{ type: "output", port: 2 }], [{ type: "output", port: 3 }]],
    [
      "a rewrite value",
      [
        { type: "set_field", field: "eth_dst", value: 1n },
        { type: "output", port: 2 },
      ],
      [
        { type: "set_field", field: "eth_dst", value: 2n },
        { type: "output", port: 2 },
      ],
    ],
    [
      "a VLAN id",
      [
        { type: "push_vlan", vid: 1 },
        { type: "output", port: 2 },
      ],
      [
        { type: "push_vlan", vid: 2 },
        { type: "output", port: 2 },
      ],
    ],
    [
      "a tunnel key",
      [
        { type: "set_tunnel", id: 1n, dst: 9n, tunnel: "geneve" },
        { type: "output", port: 100 },
      ],
      [
        { type: "set_tunnel", id: 2n, dst: 9n, tunnel: "geneve" },
        { type: "output", port: 100 },
      ],
    ],
    [
      "a tunnel destination",
      [
        { type: "set_tunnel", id: 1n, dst: 9n, tunnel: "geneve" },
        { type: "output", port: 100 },
      ],
      [
        { type: "set_tunnel", id: 1n, dst: 8n, tunnel: "geneve" },
        { type: "output", port: 100 },
      ],
    ],
    [
      "a ct zone",
      [{ type: "ct", zone: 1, commit: false, nat: false, table: 20 }],
      [{ type: "ct", zone: 2, commit: false, nat: false, table: 20 }],
    ],
    [
      "ct nat",
      [{ type: "ct", zone: 1, commit: false, nat: false, table: 20 }],
      [{ type: "ct", zone: 1, commit: false, nat: true, table: 20 }],
    ],
    ["the chain a goto leads to", [{ type: "goto", table: 20 }], [{ type: "goto", table: 30 }]],
  ];
  for (const [what, before, after] of variants) {
    it(what, () => {
      const tail = [
        rule("t20", 20, [{ type: "output", port: 3 }], { in_port: exact("in_port", 1) }),
        rule("t30", 30, [{ type: "output", port: 2 }], { in_port: exact("in_port", 1) }),
      ];
      const state = new Installed([
        classify(1n),
        rule("x", 10, before, { in_port: exact("in_port", 1) }),
        ...tail,
      ]);
      const diff = state.change([rule("x", 10, after, { in_port: exact("in_port", 1) })]);
      expect(diff.removed.some((r) => r.ruleId === "x")).toBe(true);
      expect(diff.added.some((r) => r.ruleId === "x")).toBe(true);
    });
  }

  it("a ct commit", () => {
    const state = new Installed([
      classify(1n),
      rule("x", 10, [{ type: "ct", zone: 1, commit: false, nat: false, table: 20 }], {
        in_port: exact("in_port", 1),
      }),
      rule("t20", 20, [{ type: "output", port: 3 }], { in_port: exact("in_port", 1) }),
    ]);
    const diff = state.change([
      rule("x", 10, [{ type: "ct", zone: 1, commit: true, nat: false, table: 20 }], {
        in_port: exact("in_port", 1),
      }),
    ]);
    expect(diff.added.filter((r) => r.ruleId === "x")).toHaveLength(1);
  });

  it("a match value, a match mask and an ingress device", () => {
    const state = new Installed([
      rule("m", 0, [{ type: "output", port: 2 }], {
        in_port: exact("in_port", 1),
        eth_dst: exact("eth_dst", 5),
      }),
    ]);
    for (const match of [
      { in_port: exact("in_port", 1), eth_dst: exact("eth_dst", 6) },
      { in_port: exact("in_port", 1), eth_dst: { value: 6n, mask: 0xffn } },
      { in_port: exact("in_port", 3), eth_dst: { value: 6n, mask: 0xffn } },
    ]) {
      const diff = state.change([rule("m", 0, [{ type: "output", port: 2 }], match)]);
      expect(diff).toMatchObject({ added: [{ ruleId: "m" }], removed: [{ ruleId: "m" }] });
    }
  });

  it("a register value: the chain it led to drops out and a new one comes in, whole", () => {
    const state = new Installed([
      classify(1n),
      rule("one", 10, [{ type: "output", port: 2 }], {
        reg6: exact("reg6", 1),
        in_port: exact("in_port", 1),
      }),
      rule("two", 10, [{ type: "output", port: 3 }], {
        reg6: exact("reg6", 2),
        in_port: exact("in_port", 1),
      }),
    ]);
    const diff = state.change([classify(2n)]);
    expect(diff.removed.map((r) => r.ruleId ?? r.role).sort()).toEqual(["classify", "miss", "one"]);
    expect(diff.added.map((r) => r.ruleId ?? r.role).sort()).toEqual(["classify", "miss", "two"]);
    expect(state.planner.lastPlannedChains).toBe(2);
    // And back: the old chain is reachable again and is installed again as it was.
    const back = state.change([classify(1n)]);
    expect(back.added.map((r) => r.ruleId ?? r.role).sort()).toEqual(["classify", "miss", "one"]);
  });

  it("a trap in a later chain turns an earlier rewrite into a trap, and its removal turns it back", () => {
    const rewrite = rule(
      "rewrite",
      0,
      [
        { type: "set_field", field: "eth_src", value: 7n },
        { type: "goto", table: 10 },
      ],
      { in_port: exact("in_port", 1) },
    );
    const fwd = rule("fwd", 10, [{ type: "output", port: 2 }], { in_port: exact("in_port", 1) });
    const state = new Installed([rewrite, fwd]);
    expect(state.planner.result().decisions.get("rewrite")!.offloaded).toBe(true);
    const trap = {
      ...rule("v6", 10, [{ type: "controller" }], { eth_type: exact("eth_type", 0x86dd) }),
      priority: 200,
    };
    const diff = state.change([trap]);
    expect(diff.added.map((r) => `${r.ruleId}:${r.role}`).sort()).toEqual(["rewrite:trap", "v6:trap"]);
    expect(diff.removed.map((r) => `${r.ruleId}:${r.role}`)).toEqual(["rewrite:offload"]);
    expect(state.planner.result().decisions.get("rewrite")!.offloaded).toBe(false);
    const undo = state.change([], ["v6"]);
    expect(undo.added.map((r) => `${r.ruleId}:${r.role}`)).toEqual(["rewrite:offload"]);
    expect(state.planner.result().decisions.get("rewrite")!.offloaded).toBe(true);
  });

  it("a rule in a table nothing reaches changes nothing installed", () => {
    const state = new Installed([
      rule("a", 0, [{ type: "output", port: 2 }], { in_port: exact("in_port", 1) }),
    ]);
    expect(state.change([rule("lost", 40, [{ type: "output", port: 3 }])])).toEqual({
      added: [],
      removed: [],
    });
    expect(state.planner.lastPlannedChains).toBe(0);
    expect(state.change([], ["lost", "never-there"])).toEqual({ added: [], removed: [] });
  });
});
