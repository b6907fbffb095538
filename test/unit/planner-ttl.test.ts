import { describe, expect, it } from "vitest";
import { type Packet, traceSplit } from "../../src/offload/planner/evaluate.js";
import { exact, type Match, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * dec_ttl's traps for TTL 0 and 1, and the rules above that make them
 * needless: a router's TTL punts take every such packet first, so a NAT's
 * ct commit before the decrement is not kept from the NIC by them.
 */
const cx6 = profileById("connectx-6-dx");
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
  ]),
  tunnels: new Map(),
};
const ROUTER = 0xfa163e000001n;
const ip = { eth_type: exact("eth_type", 0x800) };
const toRouter: Match = { ...ip, eth_dst: exact("eth_dst", ROUTER) };

function pipeline(catchers: PipelineRule[]): PipelineRule[] {
  return [
    {
      id: "in",
      table: 0,
      priority: 100,
      match: { in_port: exact("in_port", 1) },
      actions: [{ type: "goto", table: 10 }],
    },
    ...catchers,
    {
      id: "snat",
      table: 10,
      priority: 100,
      match: toRouter,
      actions: [
        {
          type: "ct",
          zone: 5,
          commit: true,
          nat: true,
          natRange: { kind: "src", ipMin: "172.24.4.50" },
          table: 20,
        },
      ],
    },
    {
      id: "route",
      table: 20,
      priority: 100,
      match: ip,
      actions: [
        { type: "set_field", field: "eth_src", value: 0xfa163efe0050n },
        { type: "dec_ttl" },
        { type: "goto", table: 30 },
      ],
    },
    { id: "out", table: 30, priority: 100, match: ip, actions: [{ type: "output", port: 2 }] },
  ];
}
const punt = (id: string, ttl: number, match: Match = toRouter, priority = 1000): PipelineRule => ({
  id,
  table: 10,
  priority,
  match: { ...match, nw_ttl: exact("nw_ttl", ttl) },
  actions: [{ type: "controller" }],
});
const pkt = (nw_ttl: bigint, eth_dst = ROUTER): Packet => ({
  in_port: 1n,
  eth_type: 0x800n,
  eth_dst,
  ipv4_src: 0x0a01000bn,
  ipv4_dst: 0x08080808n,
  ip_proto: 6n,
  tp_src: 40000n,
  tp_dst: 80n,
  nw_ttl,
});
const packets = [0n, 1n, 2n, 64n].flatMap((t) => [pkt(t), pkt(t, 0x020000000009n)]);

describe("TTL 0 and 1 taken above a rule", () => {
  it("without them, the ct commit before a dec_ttl stays in OVS: a TTL 1 packet would reach OVS NATed", () => {
    const rules = pipeline([]);
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(p.decisions.get("snat")!.offloaded).toBe(false);
    expect(p.decisions.get("snat")!.reason).toMatch(
      /commits the connection and a later table may hand the packet to OVS/,
    );
    expect(
      p.tc
        .filter((t) => t.ruleId === "route" && t.role === "trap" && t.match.nw_ttl)
        .map((t) => t.match.nw_ttl?.value),
    ).toEqual([0n, 1n]);
    expectSameDecisions(p, rules, ports, packets);
  });

  it("with a router's TTL punts above it, the ct commit and the dec_ttl are on the NIC, with no trap for the decrement", () => {
    const rules = pipeline([punt("ttl0", 0), punt("ttl1", 1)]);
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    for (const id of ["snat", "route", "out"]) expect(p.decisions.get(id)!.offloaded, id).toBe(true);
    expect(p.tc.filter((t) => t.ruleId === "route" && t.role === "trap" && t.match.nw_ttl)).toEqual([]);
    // the punts themselves go to OVS (the agent answers them), before anything changed the packet
    for (const t of [0n, 1n]) expect(traceSplit(p, rules, ports, pkt(t))).toMatchObject({ software: true });
    expect(traceSplit(p, rules, ports, pkt(2n))).toMatchObject({ software: false });
    expect(traceSplit(p, rules, ports, pkt(64n)).events).toEqual([
      { kind: "output", port: 2, packet: expect.objectContaining({ nw_ttl: "3f" }) },
    ]);
    expectSameDecisions(p, rules, ports, packets);
  });

  it("counts only punts that take every packet of the rule: both TTLs, a higher priority, no match the rule lacks", () => {
    const offloaded = (catchers: PipelineRule[]) => {
      const rules = pipeline(catchers);
      const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
      expectSameDecisions(p, rules, ports, packets);
      return p.decisions.get("snat")!.offloaded;
    };
    expect(offloaded([punt("ttl0", 0)])).toBe(false);
    expect(offloaded([punt("ttl0", 0), punt("ttl1", 1, toRouter, 100)])).toBe(false);
    const narrower = { ...toRouter, ip_proto: exact("ip_proto", 1) };
    expect(offloaded([punt("ttl0", 0), punt("ttl1", 1, narrower)])).toBe(false);
    // a wider punt (any IP packet) covers the rule as well as the exact one
    expect(offloaded([punt("ttl0", 0, ip), punt("ttl1", 1, ip)])).toBe(true);
  });

  it("counts a punt only for the rule's own value under the rule's own mask", () => {
    const pass = (snat: Match, punts: Match) => {
      const rules = pipeline([punt("ttl0", 0, punts), punt("ttl1", 1, punts)]).map((r) =>
        r.id === "snat" ? { ...r, match: snat } : r,
      );
      const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
      // a TTL 1 packet to the router that no punt takes: OVS NATs it, then dec_ttl sends it to the controller
      expectSameDecisions(p, rules, ports, packets);
      return p.decisions.get("snat")!.offloaded;
    };
    // punts for another destination MAC
    expect(pass(toRouter, { ...toRouter, eth_dst: exact("eth_dst", 0x020000000009n) })).toBe(false);
    // the rule takes 8.8.0.0/16, the punts only 8.8.0.0 itself: the packets to 8.8.8.8 pass them
    const net = { value: 0x08080000n, mask: 0xffff0000n };
    expect(
      pass({ ...toRouter, ipv4_dst: net }, { ...toRouter, ipv4_dst: { ...net, mask: 0xffffffffn } }),
    ).toBe(false);
    expect(pass({ ...toRouter, ipv4_dst: net }, { ...toRouter, ipv4_dst: net })).toBe(true);
  });

  it("a second dec_ttl on the way needs its traps again: after one decrement TTL 1 can arrive", () => {
    const rules = pipeline([punt("ttl0", 0), punt("ttl1", 1)]).map((r) =>
      r.id === "out"
        ? { ...r, actions: [{ type: "dec_ttl" as const }, { type: "output" as const, port: 2 }] }
        : r,
    );
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(
      p.tc
        .filter((t) => t.ruleId === "out" && t.role === "trap" && t.match.nw_ttl)
        .map((t) => t.match.nw_ttl?.value),
    ).toEqual([0n, 1n]);
    // and so the rewrite before it (route) must not reach OVS with its change: it stays in software
    expect(p.decisions.get("route")!.offloaded).toBe(false);
    expectSameDecisions(p, rules, ports, [...packets, pkt(3n)]);
  });

  it("a catcher counts only above the rule in tc too: priorities beyond 32766 share one band there", () => {
    const rules = pipeline([punt("ttl0", 0, toRouter, 40000), punt("ttl1", 1, toRouter, 40000)]).map((r) =>
      r.id === "snat" ? { ...r, priority: 35000 } : r,
    );
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(p.decisions.get("snat")!.offloaded).toBe(false);
    expectSameDecisions(p, rules, ports, packets);
  });
});

describe("a rule that changes the TTL itself before a dec_ttl", () => {
  const one = (actions: PipelineRule["actions"]): PipelineRule[] => [
    { id: "r", table: 0, priority: 100, match: { in_port: exact("in_port", 1), ...ip }, actions },
  ];
  const probe = [0n, 1n, 2n, 3n, 64n].map((t) => ({ in_port: 1n, eth_type: 0x800n, nw_ttl: t }) as Packet);

  it("stays in software when it sets the TTL to 1 or decrements twice: the traps test the arriving TTL", () => {
    for (const actions of [
      [
        { type: "set_field" as const, field: "nw_ttl" as const, value: 1n },
        { type: "dec_ttl" as const },
        { type: "output" as const, port: 2 },
      ],
      [{ type: "dec_ttl" as const }, { type: "dec_ttl" as const }, { type: "output" as const, port: 2 }],
    ]) {
      const rules = one(actions);
      const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
      expect(p.decisions.get("r")!.offloaded, actions.map((a) => a.type).join(",")).toBe(false);
      expectSameDecisions(p, rules, ports, probe);
    }
  });

  it("is offloaded without traps when it sets the TTL to 2 or more first", () => {
    const rules = one([
      { type: "set_field", field: "nw_ttl", value: 64n },
      { type: "dec_ttl" },
      { type: "output", port: 2 },
    ]);
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(p.decisions.get("r")!.offloaded).toBe(true);
    expect(p.tc.filter((t) => t.ruleId === "r" && t.match.nw_ttl)).toEqual([]);
    expectSameDecisions(p, rules, ports, probe);
  });
});

describe("dec_ttl after the rule itself set or decremented the TTL", () => {
  const ipTo = (a: number) => ({ in_port: exact("in_port", 1), ...ip, ipv4_dst: exact("ipv4_dst", a) });
  /** A rule to address `a` that sets the TTL to `ttl`, then decrements it. */
  const setThenDec = (id: string, a: number, ttl: bigint): PipelineRule => ({
    id,
    table: 0,
    priority: 100,
    match: ipTo(a),
    actions: [
      { type: "set_field", field: "nw_ttl", value: ttl },
      { type: "dec_ttl" },
      { type: "output", port: 2 },
    ],
  });
  const rules: PipelineRule[] = [
    setThenDec("set1", 1, 1n),
    setThenDec("set2", 2, 2n),
    {
      id: "twice",
      table: 0,
      priority: 100,
      match: ipTo(3),
      actions: [{ type: "dec_ttl" }, { type: "dec_ttl" }, { type: "output", port: 2 }],
    },
  ];

  it("keeps in OVS a decrement of a TTL set to 1, and a second decrement; a TTL set to 2 needs no trap", () => {
    const plan = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(plan.decisions.get("set1")!.reason).toBe(
      "not offloaded: dec_ttl of a TTL set to 1: OVS sends the packet to the controller",
    );
    expect(plan.decisions.get("twice")!.reason).toBe(
      "not offloaded: a second dec_ttl in one rule is not offloadable",
    );
    expect(plan.decisions.get("set2")!.offloaded).toBe(true);
    expect(plan.tc.filter((t) => t.ruleId === "set2").map((t) => t.role)).toEqual(["offload"]);
    const p = (a: bigint, nw_ttl: bigint): Packet => ({ in_port: 1n, eth_type: 0x800n, ipv4_dst: a, nw_ttl });
    expectSameDecisions(plan, rules, ports, [p(1n, 64n), p(2n, 64n), p(2n, 1n), p(3n, 64n), p(3n, 2n)]);
  });
});
