import { describe, expect, it } from "vitest";
import type { Flow } from "../../src/openflow/flow.js";
import type { NatSpec } from "../../src/openflow/actions.js";
import { ruleFromFlow } from "../../src/offload/planner/from-openflow.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * Edges of the planner and its OpenFlow adapter that the broader tests pass
 * by: how chains are keyed by register values, values wider than their field,
 * rewrites after the last output, and conversions that look alike.
 */
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};
const cx6 = profileById("connectx-6-dx");
const rule = (id: string, table: number, r: Pick<PipelineRule, "match" | "actions">): PipelineRule => ({
  id,
  table,
  priority: 100,
  ...r,
});

describe("chains are keyed by the register values a packet brings", () => {
  it("one chain for the same values set in any order, zero the same as unset", () => {
    const rules = [
      rule("a", 0, {
        match: { in_port: exact("in_port", 1) },
        actions: [
          { type: "set_field", field: "reg6", value: 1n },
          { type: "set_field", field: "reg7", value: 2n },
          { type: "goto", table: 10 },
        ],
      }),
      rule("b", 0, {
        match: { in_port: exact("in_port", 2) },
        actions: [
          { type: "set_field", field: "reg7", value: 2n },
          { type: "set_field", field: "reg6", value: 1n },
          { type: "goto", table: 10 },
        ],
      }),
      {
        ...rule("c", 0, {
          match: { in_port: exact("in_port", 1), eth_type: exact("eth_type", 0x86dd) },
          actions: [
            { type: "set_field", field: "reg5", value: 0n },
            { type: "goto", table: 20 },
          ],
        }),
        priority: 110,
      },
      rule("d", 0, { match: { eth_type: exact("eth_type", 0x806) }, actions: [{ type: "goto", table: 20 }] }),
      rule("l2", 10, { match: { in_port: exact("in_port", 1) }, actions: [{ type: "output", port: 2 }] }),
      rule("l3", 20, { match: { in_port: exact("in_port", 1) }, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(p.chains.map((c) => [c.table, c.registers]).sort(([a], [b]) => Number(a) - Number(b))).toEqual([
      [0, {}],
      [10, { reg6: 1n, reg7: 2n }],
      [20, {}],
    ]);
    expect(p.decisions.get("c")!.offloaded).toBe(true);
    expectSameDecisions(p, rules, ports, [
      { in_port: 1n },
      { in_port: 2n },
      { in_port: 1n, eth_type: 0x806n },
      { in_port: 1n, eth_type: 0x86ddn },
    ]);
  });

  it("a chain entered from a tunnel is one of its own: its packets still carry the tunnel metadata", () => {
    const rules = [
      rule("arp", 0, {
        match: { eth_type: exact("eth_type", 0x806) },
        actions: [{ type: "goto", table: 20 }],
      }),
      {
        ...rule("tunnel", 0, {
          match: { in_port: exact("in_port", 100) },
          actions: [{ type: "goto", table: 20 }],
        }),
        priority: 110,
      },
      rule("out", 20, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(p.chains.map((c) => [c.table, c.registers])).toEqual([
      [0, {}],
      [20, {}],
      [20, {}],
    ]);
    const outs = p.tc.filter((t) => t.ruleId === "out" && t.role === "offload").map((t) => t.actions);
    // the tunnel's copy releases the metadata just before the packet leaves; the other has none to release
    expect(outs).toEqual(
      expect.arrayContaining([
        [{ type: "redirect", dev: "rep2" }],
        [{ type: "tunnel_unset" }, { type: "redirect", dev: "rep2" }],
      ]),
    );
    expectSameDecisions(p, rules, ports, [
      { in_port: 100n, tun_id: 5n },
      { in_port: 1n, eth_type: 0x806n },
    ]);
  });
});

describe("pipeline state the NIC never matches", () => {
  it("resolves a metadata match like a register, and treats ct_zone and ct_mark as conntrack state", () => {
    const rules = [
      rule("meta", 0, {
        match: { in_port: exact("in_port", 1) },
        actions: [
          { type: "set_field", field: "metadata", value: 7n },
          { type: "goto", table: 10 },
        ],
      }),
      rule("by-meta", 10, {
        match: { metadata: exact("metadata", 7) },
        actions: [{ type: "output", port: 2 }],
      }),
    ];
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(p.decisions.get("by-meta")!.offloaded).toBe(true);
    expect(p.chains[1]!.registers).toEqual({ metadata: 7n });
    for (const field of ["ct_zone", "ct_mark"] as const) {
      const ct = [
        rule("lookup", 0, {
          match: { in_port: exact("in_port", 1), [field]: exact(field, 0) },
          actions: [{ type: "ct", zone: 3, commit: false, nat: false, table: 10 }],
        }),
        rule("v6", 10, { match: { eth_type: exact("eth_type", 0x86dd) }, actions: [{ type: "controller" }] }),
      ];
      // the lookup's state is seen: the trap after it clears it
      const p = OffloadPlanner.plan({ rules: ct, profile: cx6, ports });
      expect(p.decisions.get("lookup")!.offloaded).toBe(true);
      expect(p.tc.find((t) => t.ruleId === "v6")!.actions).toEqual([{ type: "ct_clear" }, { type: "pass" }]);
    }
  });
});

describe("rewrites", () => {
  it("keep a value wider than its field to the field's width, in the NIC as in OVS", () => {
    const rules = [
      rule("wide", 0, {
        match: { in_port: exact("in_port", 1) },
        actions: [
          { type: "set_field", field: "eth_dst", value: 0x1_0000_0000_0009n },
          { type: "output", port: 2 },
          { type: "set_field", field: "eth_src", value: 5n },
          { type: "dec_ttl" },
        ],
      }),
    ];
    const p = OffloadPlanner.plan({ rules, profile: cx6, ports });
    // What comes after the last output changes nothing that is sent: the rule ends with the redirect.
    expect(p.tc.find((t) => t.ruleId === "wide" && t.role === "offload")!.actions).toEqual([
      { type: "pedit", field: "eth_dst", value: 9n },
      { type: "redirect", dev: "rep2" },
    ]);
    expectSameDecisions(p, rules, ports, [{ in_port: 1n, eth_type: 0x800n, nw_ttl: 1n }]);
  });
});

describe("OpenFlow conversion", () => {
  const ports9: PortMap = { hardware: new Map([[1, "rep1"]]), tunnels: new Map([[9, "geneve"]]) };
  const flow = (f: Partial<Flow>): Flow => ({
    table: 0,
    priority: 1,
    cookie: 0n,
    match: [],
    instructions: [],
    ...f,
  });

  it("folds push_vlan only with a vlan_vid write; ct with a ct_mark write stays in software", () => {
    const rule = ruleFromFlow(
      flow({
        instructions: [
          {
            type: "apply_actions",
            actions: [
              { type: "push_vlan", ethertype: 0x8100 },
              { type: "set_field", field: "eth_src", value: "fa:16:3e:00:00:01" },
              { type: "ct", zone: 1, table: 2, actions: [{ type: "set_field", field: "ct_mark", value: 1 }] },
            ],
          },
        ],
      }),
      ports9,
    );
    expect(rule.actions).toEqual([
      { type: "other", name: "push_vlan without vlan_vid" },
      { type: "set_field", field: "eth_src", value: 0xfa163e000001n },
      { type: "other", name: "ct with set_field among its actions" },
    ]);
    const nat = ruleFromFlow(
      flow({
        instructions: [
          {
            type: "apply_actions",
            actions: [{ type: "ct", zone: 3, commit: true, actions: [{ type: "nat", nat: {} }] }],
          },
        ],
      }),
      ports9,
    );
    expect(nat.actions).toEqual([{ type: "ct", zone: 3, commit: true, nat: true, table: undefined }]);
    const withNat = (n: NatSpec) =>
      ruleFromFlow(
        flow({
          instructions: [
            {
              type: "apply_actions",
              actions: [{ type: "ct", zone: 3, commit: true, table: 36, actions: [{ type: "nat", nat: n }] }],
            },
          ],
        }),
        ports9,
      ).actions;
    // the translation a NAT sets up travels with it: tc's ct nat without it would commit no NAT at all
    expect(withNat({ kind: "src", ipMin: "172.24.4.10" })).toEqual([
      {
        type: "ct",
        zone: 3,
        commit: true,
        nat: true,
        natRange: { kind: "src", ipMin: "172.24.4.10", ipMax: "172.24.4.10" },
        table: 36,
      },
    ]);
    expect(withNat({ kind: "dst", ipMin: "10.0.0.5", ipMax: "10.0.0.9", portMin: 80, portMax: 90 })).toEqual([
      {
        type: "ct",
        zone: 3,
        commit: true,
        nat: true,
        natRange: { kind: "dst", ipMin: "10.0.0.5", ipMax: "10.0.0.9", portMin: 80, portMax: 90 },
        table: 36,
      },
    ]);
    for (const flag of ["persistent", "hash", "random"] as const) {
      expect(withNat({ kind: "src", ipMin: "172.24.4.10", [flag]: true })).toEqual([
        { type: "other", name: "ct nat with persistent, hash or random" },
      ]);
    }
  });
});

describe("VLAN matches", () => {
  // Only a match on the absence of a tag (the present bit under the mask, clear in the value) lacks a
  // flower key; a match on a tagged VID, or on a VID whatever the present bit, goes to tc as it is.
  it("keep a tagged VID, or a VID under a mask without the present bit, in the filter with no trap for tagged frames", () => {
    const cases: [string, { value: bigint; mask: bigint }, boolean][] = [
      ["tagged VID 5", { value: 0x1005n, mask: 0x1fffn }, false],
      ["VID 5, present bit not matched", { value: 0x005n, mask: 0x0fffn }, false],
      ["untagged", { value: 0n, mask: 0x1fffn }, true],
    ];
    for (const [what, vlan_vid, untagged] of cases) {
      const rules = [
        rule("v", 0, {
          match: { in_port: exact("in_port", 1), vlan_vid },
          actions: [{ type: "output", port: 2 }],
        }),
      ];
      const plan = OffloadPlanner.plan({ rules, profile: cx6, ports });
      const tc = plan.tc.filter((t) => t.ruleId === "v");
      expect(plan.decisions.get("v")!.offloaded, what).toBe(true);
      expect(tc.find((t) => t.role === "offload")!.match, what).toEqual(untagged ? {} : { vlan_vid });
      expect(
        tc.some((t) => t.role === "trap" && t.match.vlan_vid?.value === 0x1000n),
        what,
      ).toBe(untagged);
      const pkt = (vid: bigint) => ({ in_port: 1n, eth_type: 0x800n, vlan_vid: vid });
      expectSameDecisions(plan, rules, ports, [pkt(0n), pkt(0x1005n), pkt(0x1006n)]);
    }
  });

  it("leave the absence of a tag out of a coarse trap, which then takes tagged frames too", () => {
    const untagged = { value: 0n, mask: 0x1fffn };
    const rules: PipelineRule[] = [
      {
        ...rule("v", 0, {
          match: { in_port: exact("in_port", 1), eth_type: exact("eth_type", 0x800), vlan_vid: untagged },
          actions: [{ type: "output", port: 2 }],
        }),
        opaqueMatch: ["pkt_mark"],
      },
    ];
    const plan = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(plan.tc.filter((t) => t.ruleId === "v")).toEqual([
      expect.objectContaining({ role: "trap", indev: "rep1", match: { eth_type: exact("eth_type", 0x800) } }),
    ]);
  });
});

describe("a chain after a rewrite", () => {
  // Its packets are few kinds, so a rule whose packets a rule above all takes is left out of it.
  const ip = exact("eth_type", 0x800);
  const to5 = exact("ipv4_dst", 0x0a000005);
  const rules: PipelineRule[] = [
    rule("in", 0, {
      match: { in_port: exact("in_port", 1) },
      actions: [
        { type: "set_field", field: "eth_src", value: 0xfa163e0000aan },
        { type: "goto", table: 10 },
      ],
    }),
    {
      ...rule("hop", 10, { match: { eth_type: ip, ipv4_dst: to5 }, actions: [{ type: "output", port: 2 }] }),
      priority: 200,
    },
    // the same header matches and priority, another register match: the first one (by id) is the one named
    {
      ...rule("hop-b", 10, {
        match: { eth_type: ip, ipv4_dst: to5, reg7: exact("reg7", 0) },
        actions: [{ type: "output", port: 2 }],
      }),
      priority: 200,
    },
    {
      ...rule("web", 10, {
        match: { eth_type: ip, ipv4_dst: to5, ip_proto: exact("ip_proto", 6), tp_dst: exact("tp_dst", 80) },
        actions: [{ type: "controller" }],
      }),
      priority: 100,
    },
    {
      ...rule("other", 10, { match: { eth_type: ip }, actions: [{ type: "output", port: 1 }] }),
      priority: 50,
    },
  ];

  it("leaves out a rule below one whose every header match it has, naming that rule", () => {
    const plan = OffloadPlanner.plan({ rules, profile: cx6, ports });
    expect(plan.decisions.get("web")!.offloaded).toBe(false);
    expect(plan.decisions.get("web")!.reason).toBe(
      "not offloaded: never reached here: hop above takes all its packets",
    );
    expect(plan.tc.some((t) => t.ruleId === "web")).toBe(false);
    expect(plan.decisions.get("other")!.offloaded).toBe(true);
    const pkt = (ipv4_dst: bigint, tp_dst: bigint) => ({
      in_port: 1n,
      eth_type: 0x800n,
      ipv4_dst,
      ip_proto: 6n,
      tp_dst,
    });
    expectSameDecisions(plan, rules, ports, [
      pkt(0x0a000005n, 80n),
      pkt(0x0a000005n, 22n),
      pkt(0x0a000006n, 80n),
    ]);
  });
});
