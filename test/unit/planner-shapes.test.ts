import { describe, expect, it } from "vitest";
import {
  Conntrack,
  runSoftware,
  runSplit,
  traceSplit,
  type Packet,
} from "../../src/offload/planner/evaluate.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner, type Plan } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * One small pipeline per shape the planner must treat specially, each with the
 * packet that tells a correct plan from a plausible wrong one (the planted bugs
 * of issue 14): the split datapath must decide it as the software pipeline does,
 * and the plan must say why.
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
const cx5 = profileById("connectx-5");
const BCAST = 0xffffffffffffn;
const trk = 0x20n;
const tcp = (port: number, extra: Partial<Packet> = {}): Packet => ({
  in_port: BigInt(port),
  eth_src: 0x020000000001n,
  eth_dst: 0x020000000002n,
  eth_type: 0x800n,
  ip_proto: 6n,
  ipv4_src: 0x0a000001n,
  ipv4_dst: 0x0a000002n,
  tp_src: 1000n,
  tp_dst: 80n,
  nw_ttl: 64n,
  ...extra,
});
const rule = (id: string, table: number, priority: number, r: Pick<PipelineRule, "match" | "actions">) => ({
  id,
  table,
  priority,
  ...r,
});
const plan = (rules: PipelineRule[], profile = cx6): Plan => OffloadPlanner.plan({ rules, profile, ports });
const decision = (p: Plan, id: string) => p.decisions.get(id)!;

describe("output to the ingress port", () => {
  it("is left out of the NIC's actions, as OVS skips it", () => {
    const rules = [
      rule("reflect", 0, 100, {
        match: { in_port: exact("in_port", 1), eth_dst: exact("eth_dst", BCAST) },
        actions: [
          { type: "output", port: 1 },
          { type: "output", port: 2 },
        ],
      }),
      rule("self", 0, 100, {
        match: { in_port: exact("in_port", 3) },
        actions: [{ type: "output", port: 3 }],
      }),
    ];
    const p = plan(rules);
    expect(p.tc.find((t) => t.ruleId === "reflect")!.actions).toEqual([{ type: "redirect", dev: "rep2" }]);
    expect(p.tc.find((t) => t.ruleId === "self")!.actions).toEqual([{ type: "drop" }]);
    const bcast = tcp(1, { eth_dst: BCAST });
    expect(runSoftware(rules, ports, bcast).map((e) => e.kind === "output" && e.port)).toEqual([2]);
    expectSameDecisions(p, rules, ports, [bcast, tcp(3)]);
    expect(traceSplit(p, rules, ports, tcp(3))).toEqual({ events: [], software: false });
  });

  it("is left out for the tunnel a packet came from, too", () => {
    const rules = [
      rule("bounce", 0, 100, {
        match: { in_port: exact("in_port", 100), tun_id: exact("tun_id", 7) },
        actions: [
          { type: "set_tunnel", id: 7n, dst: 0x0a0000fan, tunnel: "geneve" },
          { type: "output", port: 100 },
        ],
      }),
    ];
    const p = plan(rules);
    // Nothing is sent, so nothing before the drop matters (the decapsulation included).
    expect(p.tc.find((t) => t.ruleId === "bounce")!.actions).toEqual([{ type: "drop" }]);
    expectSameDecisions(p, rules, ports, [{ ...tcp(100), tun_id: 7n }]);
  });

  it("is trapped to OVS when the rule has no in_port and the packet came in where it would go out", () => {
    const rules = [
      rule("flood", 0, 100, {
        match: { eth_dst: exact("eth_dst", BCAST) },
        actions: [
          { type: "output", port: 1 },
          { type: "output", port: 2 },
        ],
      }),
    ];
    const p = plan(rules);
    const traps = p.tc.filter((t) => t.ruleId === "flood" && t.role === "trap");
    expect(traps.map((t) => t.indev).sort()).toEqual(["rep1", "rep2"]);
    for (const port of [1, 2, 3]) {
      const pkt = tcp(port, { eth_dst: BCAST });
      expect(traceSplit(p, rules, ports, pkt).software).toBe(port !== 3);
    }
    expectSameDecisions(
      p,
      rules,
      ports,
      [1, 2, 3].map((port) => tcp(port, { eth_dst: BCAST })),
    );
  });
});

describe("a rule that changes the packet and goes on to another table", () => {
  // The later table traps IPv6 to OVS, which runs the whole pipeline again from table 0.
  const later = [
    rule("v6", 10, 100, {
      match: { eth_type: exact("eth_type", 0x86dd) },
      actions: [{ type: "controller" }],
    }),
    rule("fwd", 10, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
  ];

  it("is trapped when the table it goes to can hand the packet to OVS (rewrite)", () => {
    const rules = [
      rule("rewrite", 0, 100, {
        match: { in_port: exact("in_port", 1), eth_dst: exact("eth_dst", 0x020000000002n) },
        actions: [
          { type: "set_field", field: "eth_dst", value: 0x020000000009n },
          { type: "goto", table: 10 },
        ],
      }),
      ...later,
    ];
    const p = plan(rules);
    expect(decision(p, "rewrite")).toMatchObject({
      offloaded: false,
      reason:
        "not offloaded: it rewrites the packet and a later table may hand the packet to OVS, which must see it unchanged",
    });
    expect(p.chains.find((c) => c.table === 10)!.reachesSoftware).toBe(true);
    const v6 = tcp(1, { eth_type: 0x86ddn });
    expect(runSoftware(rules, ports, v6)).toEqual([{ kind: "controller", reason: "action" }]);
    expectSameDecisions(p, rules, ports, [v6, tcp(1)]);
  });

  it("is trapped for a dec_ttl and a VLAN pop alike; a decapsulation is not a change (the metadata stays until output)", () => {
    const changes: PipelineRule["actions"][] = [[{ type: "dec_ttl" }], [{ type: "pop_vlan" }], []];
    for (const [i, change] of changes.entries()) {
      const inPort = i === 2 ? 100 : 1;
      const rules = [
        rule("change", 0, 100, {
          match: { in_port: exact("in_port", inPort), ...(i === 2 ? { tun_id: exact("tun_id", 5) } : {}) },
          actions: [...change, { type: "goto", table: 10 }],
        }),
        ...later,
      ];
      const p = plan(rules);
      expect(decision(p, "change").offloaded).toBe(i === 2);
      const v6 = tcp(inPort, { eth_type: 0x86ddn, tun_id: 5n, vlan_vid: 0x1005n });
      expectSameDecisions(p, rules, ports, [v6, tcp(inPort, { tun_id: 5n })]);
    }
  });

  it("stays offloaded when every table it leads to keeps the packet in the NIC", () => {
    const rules = [
      rule("rewrite", 0, 100, {
        match: { in_port: exact("in_port", 1) },
        actions: [{ type: "dec_ttl" }, { type: "goto", table: 10 }],
      }),
      rule("fwd", 10, 50, {
        match: { in_port: exact("in_port", 1) },
        actions: [{ type: "output", port: 2 }],
      }),
    ];
    const p = plan(rules);
    expect(decision(p, "rewrite").offloaded).toBe(true);
    expect(p.chains.find((c) => c.table === 10)!.reachesSoftware).toBe(false);
    expect(traceSplit(p, rules, ports, tcp(1)).software).toBe(false);
    expectSameDecisions(p, rules, ports, [tcp(1), tcp(1, { nw_ttl: 1n })]);
  });

  it("is trapped when a table two gotos away hands the packet over (the fixpoint)", () => {
    const rules = [
      rule("rewrite", 0, 100, {
        match: { in_port: exact("in_port", 1), eth_dst: exact("eth_dst", 0x020000000002n) },
        actions: [
          { type: "set_field", field: "eth_dst", value: 0x020000000009n },
          { type: "goto", table: 5 },
        ],
      }),
      rule("pass-on", 5, 100, { match: {}, actions: [{ type: "goto", table: 10 }] }),
      ...later,
    ];
    const p = plan(rules);
    expect(decision(p, "pass-on").offloaded).toBe(true);
    expect(decision(p, "rewrite").offloaded).toBe(false);
    expect(p.chains.find((c) => c.table === 5)!.reachesSoftware).toBe(true);
    expectSameDecisions(p, rules, ports, [tcp(1, { eth_type: 0x86ddn }), tcp(1)]);
  });
});

describe("a rewrite to known values (a routed flow)", () => {
  const ROUTER = 0x02000000000an;
  const MAC_B = 0x020000000002n;
  const route = rule("route", 0, 100, {
    match: { in_port: exact("in_port", 1), eth_dst: exact("eth_dst", ROUTER) },
    actions: [
      { type: "set_field", field: "eth_src", value: ROUTER },
      { type: "set_field", field: "eth_dst", value: MAC_B },
      { type: "dec_ttl" },
      { type: "goto", table: 10 },
    ],
  });
  // the network's lookup: broadcast and unknown destinations go to the agent, B's MAC on
  const lookup = (b: PipelineRule["actions"]) => [
    rule("bcast", 10, 200, {
      match: { eth_dst: exact("eth_dst", BCAST) },
      actions: [{ type: "controller" }],
    }),
    rule("to-b", 10, 100, { match: { eth_dst: exact("eth_dst", MAC_B) }, actions: b }),
    rule("unknown", 10, 0, { match: {}, actions: [{ type: "controller" }] }),
  ];
  // delivery without in_port: a hairpin guard for packets that came in on rep2
  const deliver = rule("deliver", 20, 100, { match: {}, actions: [{ type: "output", port: 2 }] });
  const routed = tcp(1, { eth_dst: ROUTER });

  it("stays on the NIC: the chains after it hold only what the rewritten packet can meet", () => {
    const rules = [route, ...lookup([{ type: "goto", table: 20 }]), deliver];
    const p = plan(rules);
    expect(decision(p, "route")).toMatchObject({ offloaded: true });
    const after = p.chains.find((c) => c.table === 10)!;
    expect(after.known).toEqual({ eth_src: ROUTER, eth_dst: MAC_B });
    expect(after.reachesSoftware).toBe(false);
    // the broadcast and unknown rules cannot match B's MAC: not in that chain, and no catch-all below to-b
    expect(p.tc.filter((t) => t.chain === after.chain).map((t) => t.ruleId)).toEqual(["to-b"]);
    // only rep1's packets enter the delivery chain: the guard for rep2 hands nothing to OVS
    expect(p.chains.find((c) => c.table === 20)!.reachesSoftware).toBe(false);
    expect(traceSplit(p, rules, ports, routed)).toMatchObject({ software: false });
    expectSameDecisions(p, rules, ports, [
      routed,
      { ...routed, nw_ttl: 1n },
      tcp(1),
      tcp(2, { eth_dst: ROUTER }),
    ]);
  });

  it("is trapped when the rewritten packet's own lookup goes to OVS", () => {
    const rules = [route, ...lookup([{ type: "controller" }]), deliver];
    const p = plan(rules);
    expect(decision(p, "route")).toMatchObject({ offloaded: false });
    expectSameDecisions(p, rules, ports, [routed, tcp(1)]);
  });

  it("forgets a value a later action changes: a match on the decremented TTL is not ruled out", () => {
    const rules = [
      rule("ttl", 0, 100, {
        match: { in_port: exact("in_port", 1) },
        actions: [
          { type: "set_field", field: "nw_ttl", value: 64n },
          { type: "dec_ttl" },
          { type: "goto", table: 10 },
        ],
      }),
      rule("at-63", 10, 100, { match: { nw_ttl: exact("nw_ttl", 63) }, actions: [{ type: "controller" }] }),
      rule("fwd", 10, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = plan(rules);
    expect(decision(p, "ttl").offloaded).toBe(false);
    expect(runSoftware(rules, ports, tcp(1))).toEqual([{ kind: "controller", reason: "action" }]);
    expectSameDecisions(p, rules, ports, [tcp(1)]);
  });
});

describe("a rule the NIC cannot match at all, with no in_port", () => {
  const rules = [
    rule("arp", 0, 200, {
      match: { arp_op: exact("arp_op", 1), arp_tpa: exact("arp_tpa", 0x0a0000fe) },
      actions: [{ type: "controller", reason: "arp" }],
    }),
    rule("above", 0, 300, {
      match: { in_port: exact("in_port", 2) },
      actions: [{ type: "output", port: 3 }],
    }),
    rule("below", 0, 100, {
      match: { in_port: exact("in_port", 1) },
      actions: [{ type: "output", port: 2 }],
    }),
  ];

  it("keeps the rest of its chain in OVS: nothing below it and no catch-all drop", () => {
    const p = plan(rules);
    expect(decision(p, "arp").reason).toBe(
      "not offloaded: match on arp_op is not offloadable on NVIDIA ConnectX-6 Dx / Lx",
    );
    expect(decision(p, "above").offloaded).toBe(true);
    expect(decision(p, "below").reason).toMatch(
      /a higher-priority software-only rule in this table cannot be trapped/,
    );
    expect(p.tc.filter((t) => t.chain === 0).map((t) => t.ruleId ?? t.role)).toEqual(["above"]);
    expect(p.chains[0]!.reachesSoftware).toBe(true);
    const request: Packet = { in_port: 1n, eth_type: 0x806n, arp_op: 1n, arp_tpa: 0x0a0000fen };
    expect(runSoftware(rules, ports, request)).toEqual([{ kind: "controller", reason: "arp" }]);
    expectSameDecisions(p, rules, ports, [request, tcp(1), tcp(2), tcp(3)]);
    expect(traceSplit(p, rules, ports, tcp(3))).toEqual({ events: [], software: true });
  });
});

describe("tunnel metadata after decapsulation", () => {
  const fromTunnel: Packet = { ...tcp(100), tun_id: 5n, eth_dst: BCAST };
  const decap = rule("decap", 0, 100, {
    match: { in_port: exact("in_port", 100), tun_id: exact("tun_id", 5) },
    actions: [
      { type: "set_field", field: "reg6", value: 1n },
      { type: "goto", table: 15 },
    ],
  });
  const unicast = rule("unicast", 15, 100, {
    match: {
      reg6: exact("reg6", 1),
      in_port: exact("in_port", 100),
      eth_dst: exact("eth_dst", 0x020000000002n),
    },
    actions: [{ type: "output", port: 2 }],
  });

  it("is matched only in table 0: a later tun_id match stays in OVS, which gets the packet with its metadata", () => {
    const rules = [
      decap,
      unicast,
      rule("by-key", 15, 90, {
        match: {
          reg6: exact("reg6", 1),
          in_port: exact("in_port", 100),
          tun_id: exact("tun_id", 5),
          eth_dst: exact("eth_dst", BCAST),
        },
        actions: [
          { type: "output", port: 1 },
          { type: "output", port: 2 },
        ],
      }),
    ];
    const p = plan(rules);
    expect(decision(p, "by-key").reason).toBe(
      "not offloaded: match on tun_id is offloadable only in table 0 together with in_port=<tunnel port>",
    );
    // The decapsulating rule is offloaded: nothing released the metadata when chain 15 hands the
    // broadcast over, so OVS matches tun_id as it would have.
    expect(decision(p, "decap").offloaded).toBe(true);
    expect(traceSplit(p, rules, ports, fromTunnel).software).toBe(true);
    expect(runSoftware(rules, ports, fromTunnel).length).toBe(2);
    expectSameDecisions(p, rules, ports, [fromTunnel, { ...fromTunnel, eth_dst: 0x020000000002n }]);
  });

  it("is released just before the output, so decapsulation is offloaded", () => {
    const rules = [decap, unicast];
    const p = plan(rules);
    expect(decision(p, "decap").offloaded).toBe(true);
    expect(p.tc.find((t) => t.ruleId === "unicast" && t.role === "offload")!.actions).toEqual([
      { type: "tunnel_unset" },
      { type: "redirect", dev: "rep2" },
    ]);
    const pkt = { ...fromTunnel, eth_dst: 0x020000000002n };
    expect(traceSplit(p, rules, ports, pkt).software).toBe(false);
    expectSameDecisions(p, rules, ports, [pkt, fromTunnel]);
  });
});

describe("connection tracking", () => {
  const ct = (zone: number, table: number, commit = false) =>
    ({ type: "ct", zone, commit, nat: false, table }) as const;

  it("keeps a commit in OVS when a later table can hand the packet over (OVS would see it established)", () => {
    const rules = [
      rule("commit-all", 0, 100, { match: { in_port: exact("in_port", 1) }, actions: [ct(1, 10, true)] }),
      rule("log-new", 10, 100, {
        match: { ct_state: { value: 0x21n, mask: 0x21n }, tp_dst: exact("tp_dst", 80) },
        actions: [{ type: "controller", reason: "log" }],
      }),
      rule("fwd", 10, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = plan(rules);
    expect(decision(p, "commit-all").reason).toMatch(/^not offloaded: it commits the connection/);
    const first = tcp(1);
    const sw = new Conntrack();
    expect(runSoftware(rules, ports, first, sw)).toEqual([{ kind: "controller", reason: "log" }]);
    expect(runSoftware(rules, ports, first, sw)[0]).toMatchObject({ kind: "output", port: 2 });
    expectSameDecisions(p, rules, ports, [first, first, tcp(1, { tp_dst: 443n })]);
  });

  /** Table 0: an untracked packet of port 1 to a lookup that recirculates to table 5; a tracked one to port 3. */
  const lookupAfterCtMatch = () => [
    rule("untracked", 0, 100, {
      match: { in_port: exact("in_port", 1), ct_state: { value: 0n, mask: trk } },
      actions: [ct(1, 5)],
    }),
    rule("tracked", 0, 90, {
      match: { in_port: exact("in_port", 1) },
      actions: [{ type: "output", port: 3 }],
    }),
  ];

  it("offloads a lookup whose state a table at or before it matches; what goes to OVS after it goes untracked", () => {
    const rules = [
      ...lookupAfterCtMatch(),
      rule("v6", 5, 100, {
        match: { eth_type: exact("eth_type", 0x86dd) },
        actions: [{ type: "controller" }],
      }),
      rule("fwd", 5, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = plan(rules);
    expect(decision(p, "untracked").offloaded).toBe(true);
    // the chain after the lookup clears its state before handing a packet to OVS, which would
    // otherwise see it tracked at table 0 and send it to port 3
    const after = p.chains.find((c) => c.table === 5)!;
    expect(after.clearsCt).toBe(true);
    expect(p.tc.find((t) => t.ruleId === "v6")!.actions).toEqual([{ type: "ct_clear" }, { type: "pass" }]);
    const v6 = tcp(1, { eth_type: 0x86ddn });
    expect(runSoftware(rules, ports, v6)).toEqual([{ kind: "controller", reason: "action" }]);
    expect(traceSplit(p, rules, ports, v6).software).toBe(true);
    expect(traceSplit(p, rules, ports, tcp(1))).toMatchObject({ software: false, events: [{ port: 2 }] });
    expectSameDecisions(p, rules, ports, [v6, tcp(1), v6]);
    // without the clear, OVS would have seen the tracked packet: the evaluator tells the difference
    const unclear = {
      ...p,
      tc: p.tc.map((t) => (t.ruleId === "v6" ? { ...t, actions: [{ type: "pass" as const }] } : t)),
    };
    expect(runSplit(unclear, rules, ports, v6)).toMatchObject([{ kind: "output", port: 3 }]);
  });

  it("a chain after such a lookup with no catch-all (a rule flower cannot express) misses into OVS untracked", () => {
    const rules = [
      ...lookupAfterCtMatch(),
      {
        ...rule("opaque", 5, 100, { match: {}, actions: [{ type: "controller" }] }),
        opaqueMatch: ["arp_op"],
      },
      rule("fwd", 5, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = plan(rules);
    const after = p.chains.find((c) => c.table === 5)!;
    expect(p.tc.filter((t) => t.chain === after.chain)).toEqual([
      {
        chain: after.chain,
        prio: 0xffff,
        match: {},
        actions: [{ type: "ct_clear" }, { type: "pass" }],
        role: "miss",
      },
    ]);
    expect(runSoftware(rules, ports, tcp(1))).toEqual([{ kind: "controller", reason: "action" }]);
    expectSameDecisions(p, rules, ports, [tcp(1), tcp(1)]);
  });

  it("offloads a lookup whose state nothing before it matches, and the established flow after it", () => {
    const rules = [
      rule("lookup", 0, 100, { match: { in_port: exact("in_port", 1) }, actions: [ct(1, 5)] }),
      rule("est", 5, 100, {
        match: { ct_state: { value: 0x22n, mask: 0x22n } },
        actions: [{ type: "output", port: 2 }],
      }),
      rule("new", 5, 50, { match: {}, actions: [ct(1, 10, true)] }),
      rule("v6", 10, 100, {
        match: { eth_type: exact("eth_type", 0x86dd) },
        actions: [{ type: "controller" }],
      }),
      rule("fwd", 10, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const p = plan(rules);
    expect(decision(p, "lookup").offloaded).toBe(true);
    expect(decision(p, "est").offloaded).toBe(true);
    expect(decision(p, "new").offloaded).toBe(false);
    const table = new Conntrack();
    expect(traceSplit(p, rules, ports, tcp(1), table).software).toBe(true);
    expect(traceSplit(p, rules, ports, tcp(1), table)).toMatchObject({
      software: false,
      events: [{ port: 2 }],
    });
    const v6 = tcp(1, { eth_type: 0x86ddn });
    expectSameDecisions(p, rules, ports, [tcp(1), tcp(1), v6, v6, tcp(1, { tp_src: 7n })]);
    // Without conntrack offload the lookup stays in OVS.
    expect(decision(plan(rules, cx5), "lookup").reason).toMatch(/connection tracking is not offloaded/);
  });

  it("re-plans the lookups after a table when a rule matching conntrack state is added there", () => {
    const rules = [
      rule("to-acl", 0, 100, {
        match: { in_port: exact("in_port", 1) },
        actions: [{ type: "goto", table: 5 }],
      }),
      rule("lookup", 5, 100, { match: {}, actions: [ct(1, 10)] }),
      rule("v6", 10, 100, {
        match: { eth_type: exact("eth_type", 0x86dd) },
        actions: [{ type: "controller" }],
      }),
      rule("fwd", 10, 50, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    const planner = new OffloadPlanner(cx6, ports);
    planner.setRules(rules);
    expect(planner.result().decisions.get("lookup")!.offloaded).toBe(true);
    const key = (r: object) => JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? `${v}` : v));
    const installed = new Set(planner.result().tc.map(key));
    const dropTracked = rule("drop-tracked", 0, 200, {
      match: { ct_state: { value: trk, mask: trk } },
      actions: [],
    });
    const apply = (diff: ReturnType<OffloadPlanner["update"]>) => {
      for (const r of diff.removed) expect(installed.delete(key(r))).toBe(true);
      for (const r of diff.added) installed.add(key(r));
    };
    apply(planner.update({ upsert: [dropTracked] }));
    const after = planner.result();
    // still on the NIC, now with the trap after it clearing the state
    expect(after.decisions.get("lookup")!.offloaded).toBe(true);
    expect(after.tc.find((t) => t.ruleId === "v6")!.actions).toEqual([
      { type: "ct_clear" },
      { type: "pass" },
    ]);
    expect([...installed].sort()).toEqual(after.tc.map(key).sort());
    expectSameDecisions(after, [...rules, dropTracked], ports, [tcp(1, { eth_type: 0x86ddn }), tcp(1)]);
    apply(planner.update({ remove: ["drop-tracked"] }));
    expect(planner.result().decisions.get("lookup")!.offloaded).toBe(true);
    expect([...installed].sort()).toEqual(planner.result().tc.map(key).sort());
  });
});

describe("the reference evaluators", () => {
  const noPorts: PortMap = { hardware: new Map(), tunnels: new Map([[100, "geneve"]]) };

  it("track connections as the kernel does: new, committed, established both ways, zones apart, not IP invalid", () => {
    const table = new Conntrack();
    const pkt = tcp(1);
    expect(table.track(1, pkt, false)).toBe(0x21n);
    expect(table.entries()).toEqual([]);
    expect(table.track(1, pkt, true)).toBe(0x21n);
    expect(table.entries()).toEqual(["1|2048/6|167772161:1000>167772162:80"]);
    expect(table.track(1, pkt, false)).toBe(0x22n);
    const back = tcp(2, { ipv4_src: pkt.ipv4_dst, ipv4_dst: pkt.ipv4_src, tp_src: 80n, tp_dst: 1000n });
    expect(table.track(1, back, false)).toBe(0x2an);
    expect(table.track(2, pkt, false)).toBe(0x21n);
    expect(table.track(1, { ...pkt, tp_src: 1001n }, false)).toBe(0x21n);
    expect(table.track(1, { ...pkt, ip_proto: 17n }, false)).toBe(0x21n);
    expect(table.track(1, { in_port: 1n, eth_type: 0x806n }, true)).toBe(0x30n);
    const v6: Packet = {
      in_port: 1n,
      eth_type: 0x86ddn,
      ipv6_src: 1n,
      ipv6_dst: 2n,
      ip_proto: 6n,
      tp_dst: 80n,
    };
    table.track(3, v6, true);
    expect(table.track(3, { ...v6, ipv6_src: 2n, ipv6_dst: 1n, tp_dst: 0n, tp_src: 80n }, false)).toBe(0x2an);
    expect(table.entries()).toHaveLength(2);
  });

  it("run the software pipeline with OVS's semantics", () => {
    const rules: PipelineRule[] = [
      rule("a", 0, 10, {
        match: { in_port: exact("in_port", 1) },
        actions: [
          { type: "set_field", field: "reg6", value: 0x1_0000_0003n },
          { type: "set_field", field: "eth_dst", value: 0x1_0000_0000_0009n },
          { type: "push_vlan", vid: 5 },
          { type: "ct", zone: 4, commit: true, nat: false, table: 3 },
          { type: "output", port: 9 },
        ],
      }),
      rule("b", 3, 10, {
        match: {
          reg6: exact("reg6", 3),
          ct_state: { value: 0x21n, mask: 0xffn },
          ct_zone: exact("ct_zone", 4),
        },
        actions: [
          { type: "dec_ttl" },
          { type: "output", port: 1 },
          { type: "output", port: 2 },
          { type: "pop_vlan" },
          { type: "set_tunnel", id: 8n, dst: 0x0a0000fan, tunnel: "geneve" },
          { type: "output", port: 100 },
          { type: "controller" },
          { type: "other", name: "learn" },
          { type: "controller", reason: "why" },
          { type: "goto", table: 7 },
          { type: "output", port: 3 },
        ],
      }),
      rule("c", 7, 10, { match: {}, actions: [{ type: "dec_ttl" }, { type: "output", port: 2 }] }),
      rule("c-low", 7, 5, { match: {}, actions: [{ type: "output", port: 3 }] }),
    ];
    const sent = { eth_dst: "9", eth_type: "800", nw_ttl: "1", vlan_vid: "1005" };
    expect(runSoftware(rules, noPorts, { in_port: 1n, eth_type: 0x800n, nw_ttl: 2n })).toEqual([
      { kind: "output", port: 2, packet: sent },
      {
        kind: "output",
        port: 100,
        packet: { ...sent, vlan_vid: "0", vlan_pcp: "0", tun_id: "8", tun_dst: "a0000fa" },
      },
      { kind: "controller", reason: "action" },
      { kind: "controller", reason: "other:learn" },
      { kind: "controller", reason: "why" },
      { kind: "controller", reason: "invalid_ttl" },
    ]);
    expect(runSoftware(rules, noPorts, { in_port: 2n })).toEqual([]);
    // Ties in priority go by rule id, as the planner orders them.
    const tie = [
      rule("z", 0, 1, { match: {}, actions: [{ type: "output", port: 3 }] }),
      rule("y", 0, 1, { match: {}, actions: [{ type: "output", port: 2 }] }),
    ];
    expect(runSoftware(tie, noPorts, { in_port: 1n })).toMatchObject([{ port: 2 }]);
    expect(runSoftware([tie[1]!, tie[0]!], noPorts, { in_port: 1n })).toMatchObject([{ port: 2 }]);
  });

  it("run the split datapath: tc's actions, then OVS for what tc passes or misses", () => {
    const hw: PortMap = {
      hardware: new Map([
        [1, "rep1"],
        [2, "rep2"],
      ]),
      tunnels: new Map([
        [100, "geneve"],
        [101, "vxlan"],
      ]),
    };
    const software = [rule("sw", 0, 1, { match: {}, actions: [{ type: "output", port: 2 }] })];
    const p: Plan = {
      decisions: new Map(),
      chains: [],
      tc: [
        {
          chain: 0,
          prio: 2,
          role: "offload",
          indev: "rep1",
          match: { tp_dst: exact("tp_dst", 1) },
          actions: [{ type: "drop" }],
        },
        {
          chain: 0,
          prio: 3,
          role: "offload",
          indev: "rep1",
          match: {},
          actions: [
            { type: "pedit", field: "eth_dst", value: 7n },
            { type: "dec_ttl" },
            { type: "vlan_push", vid: 3 },
            { type: "mirror", dev: "rep2" },
            { type: "vlan_pop" },
            { type: "ct", zone: 2, commit: true, nat: false },
            { type: "goto", chain: 9 },
          ],
        },
        {
          chain: 9,
          prio: 1,
          role: "offload",
          match: { ct_state: { value: 0x21n, mask: 0xffn } },
          actions: [
            { type: "tunnel_set", id: 4n, dst: 6n, tunnel: "geneve" },
            { type: "redirect", dev: "genev_sys_6081" },
          ],
        },
        {
          chain: 0,
          prio: 1,
          role: "offload",
          indev: "vxlan_sys_4789",
          match: { tun_id: exact("tun_id", 3) },
          actions: [{ type: "tunnel_unset" }, { type: "goto", chain: 5 }],
        },
        { chain: 5, prio: 1, role: "trap", match: {}, actions: [{ type: "pass" }] },
        {
          chain: 0,
          prio: 1,
          role: "offload",
          indev: "genev_sys_6081",
          match: {},
          actions: [{ type: "goto", chain: 6 }],
        },
      ],
    };
    const table = new Conntrack();
    const pkt = tcp(1, { nw_ttl: 9n, tp_dst: 2n });
    expect(traceSplit(p, software, hw, pkt, table)).toEqual({
      software: false,
      events: [
        { kind: "output", port: 2, packet: { ...snap(pkt), eth_dst: "7", nw_ttl: "8", vlan_vid: "1003" } },
        {
          kind: "output",
          port: 100,
          packet: {
            ...snap(pkt),
            eth_dst: "7",
            nw_ttl: "8",
            vlan_vid: "0",
            vlan_pcp: "0",
            tun_id: "4",
            tun_dst: "6",
          },
        },
      ],
    });
    expect(table.entries()).toHaveLength(1);
    expect(traceSplit(p, software, hw, tcp(1, { tp_dst: 1n }))).toEqual({ events: [], software: false });
    // The established packet misses chain 9: OVS runs the software pipeline on it.
    expect(traceSplit(p, software, hw, pkt, table)).toMatchObject({
      software: true,
      events: [{ port: 2 }, { port: 2 }],
    });
    // Decapsulated in tc, then passed: OVS sees no tunnel metadata.
    const spy = [
      rule("sw", 0, 1, { match: { tun_id: exact("tun_id", 3) }, actions: [{ type: "output", port: 2 }] }),
    ];
    expect(traceSplit(p, spy, hw, { ...tcp(101), tun_id: 3n })).toEqual({ events: [], software: true });
    expect(runSoftware(spy, hw, { ...tcp(101), tun_id: 3n })).toHaveLength(1);
    // A chain with no rule, a port tc does not see, and an empty plan hand the packet to OVS; a loop ends.
    expect(traceSplit(p, software, hw, tcp(100)).software).toBe(true);
    expect(traceSplit(p, software, hw, tcp(7))).toMatchObject({ software: true, events: [{ port: 2 }] });
    expect(traceSplit({ ...p, tc: [] }, software, hw, tcp(2)).software).toBe(true);
    expect(runSplit(p, software, hw, tcp(2))).toEqual(runSoftware(software, hw, tcp(2)));
    const loop: Plan = {
      ...p,
      tc: [{ chain: 0, prio: 1, role: "offload", match: {}, actions: [{ type: "goto", chain: 0 }] }],
    };
    expect(traceSplit(loop, software, hw, tcp(2))).toEqual({ events: [], software: false });
  });
});

function snap(p: Packet): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(p)) if (k !== "in_port" && v !== undefined) out[k] = v.toString(16);
  return out;
}
