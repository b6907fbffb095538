import { describe, expect, it } from "vitest";
import type { NatSpec, Action as OfAction } from "../../src/openflow/actions.js";
import type { Flow } from "../../src/openflow/flow.js";
import type { MatchField } from "../../src/openflow/oxm.js";
import { ruleFromFlow } from "../../src/offload/planner/from-openflow.js";
import type { PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";

const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
  ]),
  tunnels: new Map([[9, "geneve" as const]]),
};

const flows: Flow[] = [
  {
    table: 0,
    priority: 100,
    cookie: 1n,
    match: [{ field: "in_port", value: 1 }],
    instructions: [
      {
        type: "apply_actions",
        actions: [{ type: "load", dst: { field: "reg6", ofs: 0, nbits: 32 }, value: 5n }],
      },
      { type: "goto_table", table: 10 },
    ],
  },
  {
    table: 10,
    priority: 100,
    cookie: 2n,
    match: [
      { field: "reg6", value: 5 },
      { field: "eth_dst", value: "fa:16:3e:00:00:02" },
    ],
    instructions: [{ type: "apply_actions", actions: [{ type: "output", port: 2 }] }],
  },
  {
    table: 10,
    priority: 90,
    cookie: 3n,
    match: [
      { field: "reg6", value: 5 },
      { field: "eth_dst", value: "fa:16:3e:00:00:09" },
    ],
    instructions: [
      {
        type: "apply_actions",
        actions: [
          { type: "set_field", field: "tun_id", value: 77n },
          { type: "set_field", field: "tun_dst", value: "192.0.2.9" },
          { type: "output", port: 9 },
        ],
      },
    ],
  },
  {
    table: 10,
    priority: 80,
    cookie: 4n,
    match: [
      { field: "reg6", value: 5 },
      { field: "eth_type", value: 0x0800 },
      { field: "nw_proto", value: 17 },
      { field: "udp_dst", value: 67 },
    ],
    instructions: [{ type: "apply_actions", actions: [{ type: "controller", maxLen: 65535 }] }],
  },
  {
    table: 10,
    priority: 70,
    cookie: 5n,
    match: [
      { field: "reg6", value: 5 },
      { field: "ipv6_label", value: 3 },
    ],
    instructions: [{ type: "apply_actions", actions: [{ type: "output", port: 2 }] }],
  },
];

describe("planner over OpenFlow flows", () => {
  it("converts codec flows and explains each decision", () => {
    const rules = flows.map((f) => ruleFromFlow(f, ports));
    expect(rules[0]!.actions).toEqual([
      { type: "set_field", field: "reg6", value: 5n },
      { type: "goto", table: 10 },
    ]);
    expect(rules[1]!.match.eth_dst).toEqual({ value: 0xfa163e000002n, mask: 0xffffffffffffn });
    expect(rules[2]!.actions[0]).toEqual({ type: "set_tunnel", id: 77n, dst: 0xc0000209n, tunnel: "geneve" });
    expect(rules[3]!.match.tp_dst?.value).toBe(67n);
    expect(rules[4]!.opaqueMatch).toEqual(["ipv6_label"]);

    const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-6-dx"), ports });
    const reason = (i: number) => plan.decisions.get(rules[i]!.id)!.reason;
    expect(reason(0)).toBe("offloaded in chain 0");
    expect(reason(1)).toMatch(/^offloaded in chain \d+$/);
    expect(reason(2)).toMatch(/^offloaded/);
    expect(reason(3)).toMatch(/CONTROLLER is never offloadable/);
    expect(reason(4)).toBe("not offloaded: match on ipv6_label is not offloadable");
  });
});

describe("OpenFlow → planner conversion, field by field and action by action", () => {
  const flow = (actions: OfAction[], match: MatchField[] = []): Flow => ({
    table: 3,
    priority: 7,
    cookie: 0x2an,
    match,
    instructions: [{ type: "apply_actions", actions }],
  });
  const actionsOf = (...actions: OfAction[]) => ruleFromFlow(flow(actions), ports).actions;

  it("names a rule by table, priority and cookie unless told its id", () => {
    expect(ruleFromFlow(flow([]), ports)).toEqual({
      id: "t3/p7/c0x2a",
      table: 3,
      priority: 7,
      match: {},
      actions: [],
    });
    expect(ruleFromFlow(flow([]), ports, "mine").id).toBe("mine");
  });

  it("renames match fields to the planner's vocabulary and keeps values and masks in the field's width", () => {
    const cases: [MatchField, string, bigint, bigint][] = [
      [{ field: "nw_proto", value: 6 }, "ip_proto", 6n, 0xffn],
      [{ field: "ip_src", value: "10.0.0.1" }, "ipv4_src", 0x0a000001n, 0xffffffffn],
      [{ field: "ip_dst", value: "10.0.0.0", mask: "255.255.255.0" }, "ipv4_dst", 0x0a000000n, 0xffffff00n],
      [{ field: "tcp_src", value: 1 }, "tp_src", 1n, 0xffffn],
      [{ field: "udp_src", value: 2 }, "tp_src", 2n, 0xffffn],
      [{ field: "sctp_src", value: 3 }, "tp_src", 3n, 0xffffn],
      [{ field: "tcp_dst", value: 4 }, "tp_dst", 4n, 0xffffn],
      [{ field: "udp_dst", value: 5 }, "tp_dst", 5n, 0xffffn],
      [{ field: "sctp_dst", value: 6 }, "tp_dst", 6n, 0xffffn],
      [{ field: "icmpv6_type", value: 135 }, "icmp_type", 135n, 0xffn],
      [{ field: "icmpv6_code", value: 1 }, "icmp_code", 1n, 0xffn],
      [
        { field: "eth_dst", value: "fa:16:3e:00:00:01", mask: "ff:ff:ff:00:00:00" },
        "eth_dst",
        0xfa163e000001n,
        0xffffff000000n,
      ],
      [{ field: "vlan_vid", value: 0x3005 }, "vlan_vid", 0x1005n, 0x1fffn],
      [{ field: "reg6", value: 5n }, "reg6", 5n, 0xffffffffn],
      [{ field: "tun_id", value: 0x1_0000_0000_0000_0007n, mask: 0xffn }, "tun_id", 7n, 0xffn],
    ];
    for (const [field, name, value, mask] of cases) {
      const rule = ruleFromFlow(flow([], [field]), ports);
      expect(rule.match, field.field).toEqual({ [name]: { value, mask } });
      expect(rule.opaqueMatch).toBeUndefined();
    }
    const opaque = ruleFromFlow(
      flow(
        [],
        [
          { field: "ipv6_label", value: 3 },
          { field: "conj_id", value: 9 },
          { field: "eth_type", value: 0x86dd },
        ],
      ),
      ports,
    );
    expect(opaque.opaqueMatch).toEqual(["ipv6_label", "conj_id"]);
    expect(opaque.match).toEqual({ eth_type: { value: 0x86ddn, mask: 0xffffn } });
  });

  it("punts CONTROLLER and keeps the other reserved ports as actions the planner does not model", () => {
    expect(actionsOf({ type: "output", port: 0xfffffffd })).toEqual([{ type: "controller" }]);
    const reserved: [number, string][] = [
      [0xfffffff8, "IN_PORT"],
      [0xfffffff9, "TABLE"],
      [0xfffffffa, "NORMAL"],
      [0xfffffffb, "FLOOD"],
      [0xfffffffc, "ALL"],
      [0xfffffffe, "LOCAL"],
      [0xffffffff, "ANY"],
    ];
    for (const [port, name] of reserved)
      expect(actionsOf({ type: "output", port })).toEqual([{ type: "other", name: `output:${name}` }]);
    expect(actionsOf({ type: "output", port: 0xfffffff7 })).toEqual([{ type: "output", port: 0xfffffff7 }]);
    expect(actionsOf({ type: "controller", reason: 1 }, { type: "controller" })).toEqual([
      { type: "controller", reason: "1" },
      { type: "controller", reason: undefined },
    ]);
  });

  it("folds the tunnel key and destination into the output to a tunnel port", () => {
    expect(actionsOf({ type: "set_tunnel", tunId: 77n }, { type: "output", port: 9 })).toEqual([
      { type: "set_tunnel", id: 77n, dst: 0n, tunnel: "geneve" },
      { type: "output", port: 9 },
    ]);
    expect(
      actionsOf(
        { type: "set_field", field: "tun_dst", value: "192.0.2.1" },
        { type: "set_field", field: "tun_id", value: 5n },
        { type: "output", port: 1 },
        { type: "output", port: 9 },
      ),
    ).toEqual([
      { type: "output", port: 1 },
      { type: "set_tunnel", id: 5n, dst: 0xc0000201n, tunnel: "geneve" },
      { type: "output", port: 9 },
    ]);
    expect(actionsOf({ type: "output", port: 9 })).toEqual([{ type: "output", port: 9 }]);
  });

  it("converts field writes it models and keeps the rest by name", () => {
    expect(
      actionsOf(
        { type: "set_field", field: "eth_src", value: "fa:16:3e:00:00:01" },
        { type: "set_field", field: "eth_dst", value: "fa:16:3e:00:00:02", mask: "ff:ff:ff:ff:ff:ff" },
        { type: "set_field", field: "mpls_label", value: 3 },
        { type: "load", dst: { field: "reg6", ofs: 0, nbits: 32 }, value: 9n },
        { type: "load", dst: { field: "reg6", ofs: 0, nbits: 16 }, value: 9n },
        { type: "load", dst: { field: "reg6", ofs: 8, nbits: 24 }, value: 9n },
        { type: "load", dst: { field: "pkt_mark", ofs: 0, nbits: 32 }, value: 9n },
      ),
    ).toEqual([
      { type: "set_field", field: "eth_src", value: 0xfa163e000001n },
      { type: "other", name: "set_field:eth_dst" },
      { type: "other", name: "set_field:mpls_label" },
      { type: "set_field", field: "reg6", value: 9n },
      { type: "other", name: "load:reg6" },
      { type: "other", name: "load:reg6" },
      { type: "other", name: "load:pkt_mark" },
    ]);
  });

  it("converts VLAN, TTL, resubmit, ct and the rest of the action set", () => {
    expect(
      actionsOf(
        { type: "push_vlan", ethertype: 0x8100 },
        { type: "set_field", field: "vlan_vid", value: 0x1005 },
        { type: "push_vlan", ethertype: 0x8100 },
        { type: "pop_vlan" },
        { type: "dec_ttl" },
        { type: "note", data: Buffer.from("x") },
        { type: "resubmit", table: 20 },
        { type: "resubmit", port: 0xfff8, table: 21 },
        { type: "resubmit", port: 3, table: 22 },
        { type: "resubmit", port: 3 },
        { type: "ct", zone: 4, commit: true, table: 30, actions: [{ type: "nat", nat: {} }] },
        { type: "ct" },
        { type: "ct", zone: { field: "reg6", ofs: 0, nbits: 16 } },
        { type: "group", groupId: 1 },
      ),
    ).toEqual([
      { type: "push_vlan", vid: 5 },
      { type: "other", name: "push_vlan without vlan_vid" },
      { type: "pop_vlan" },
      { type: "dec_ttl" },
      { type: "goto", table: 20 },
      { type: "goto", table: 21 },
      { type: "other", name: "resubmit to a port" },
      { type: "other", name: "resubmit to a port" },
      { type: "ct", zone: 4, commit: true, nat: true, table: 30 },
      { type: "ct", zone: 0, commit: false, nat: false, table: undefined },
      { type: "other", name: "ct with a zone from a field" },
      { type: "other", name: "group" },
    ]);
    expect(actionsOf({ type: "push_vlan", ethertype: 0x8100 })).toEqual([
      { type: "other", name: "push_vlan without vlan_vid" },
    ]);
  });

  it("takes a commit's ct_mark write into its ct (a mask, or the whole mark); any other write keeps the ct opaque", () => {
    const ct = (commit: boolean, actions: OfAction[]): OfAction => ({
      type: "ct",
      zone: 3,
      commit,
      table: 4,
      actions,
    });
    expect(
      actionsOf(
        ct(true, [{ type: "set_field", field: "ct_mark", value: 1, mask: 1 }]),
        ct(true, [{ type: "set_field", field: "ct_mark", value: 5 }]),
        ct(true, [{ type: "set_field", field: "ct_label", value: 1n }]),
        ct(false, [{ type: "set_field", field: "ct_mark", value: 1 }]),
      ),
    ).toEqual([
      { type: "ct", zone: 3, commit: true, nat: false, mark: { value: 1n, mask: 1n }, table: 4 },
      { type: "ct", zone: 3, commit: true, nat: false, mark: { value: 5n, mask: 0xffffffffn }, table: 4 },
      { type: "other", name: "ct with set_field among its actions" },
      { type: "other", name: "ct with set_field among its actions" },
    ]);
  });

  it("takes a NAT's range with only the parts it names (one address or port stands for a range of one)", () => {
    const nat = (spec: NatSpec): OfAction => ({
      type: "ct",
      zone: 2,
      commit: true,
      table: 5,
      actions: [{ type: "nat", nat: spec }],
    });
    // toStrictEqual: a part the NAT does not name is absent, not present as undefined
    expect(
      actionsOf(
        nat({ kind: "src", ipMin: "172.24.4.50" }),
        nat({ kind: "dst", portMin: 8080 }),
        nat({ kind: "src", ipMin: "172.24.4.50", ipMax: "172.24.4.60", portMin: 1024, portMax: 2048 }),
      ),
    ).toStrictEqual([
      {
        type: "ct",
        zone: 2,
        commit: true,
        nat: true,
        natRange: { kind: "src", ipMin: "172.24.4.50", ipMax: "172.24.4.50" },
        table: 5,
      },
      {
        type: "ct",
        zone: 2,
        commit: true,
        nat: true,
        natRange: { kind: "dst", portMin: 8080, portMax: 8080 },
        table: 5,
      },
      {
        type: "ct",
        zone: 2,
        commit: true,
        nat: true,
        natRange: { kind: "src", ipMin: "172.24.4.50", ipMax: "172.24.4.60", portMin: 1024, portMax: 2048 },
        table: 5,
      },
    ]);
  });

  it("turns goto_table into a goto and any other instruction into an action it does not model", () => {
    const rule = ruleFromFlow(
      {
        ...flow([]),
        instructions: [
          { type: "write_metadata", metadata: 1n, mask: 1n },
          { type: "meter", meterId: 2 },
          { type: "apply_actions", actions: [{ type: "dec_ttl" }] },
          { type: "goto_table", table: 9 },
        ],
      },
      ports,
    );
    expect(rule.actions).toEqual([
      { type: "other", name: "write_metadata" },
      { type: "other", name: "meter" },
      { type: "dec_ttl" },
      { type: "goto", table: 9 },
    ]);
  });
});

describe("flowdrake caps --explain", () => {
  it("explains a saved flow set flow by flow", async () => {
    const { explainFlows } = await import("../../src/cli/caps.js");
    const text = [
      " cookie=0x0, duration=3.2s, table=0, n_packets=4, n_bytes=392, priority=100,in_port=1 actions=set_field:0x1->reg6,goto_table:10",
      " table=0, priority=200,udp,tp_dst=67 actions=CONTROLLER:65535",
      " table=10, priority=100,reg6=0x1,dl_dst=fa:16:3e:00:00:12 actions=output:2",
      " table=10, priority=50,reg6=0x1 actions=NORMAL",
    ].join("\n");
    const out = explainFlows(text, { profile: "connectx-6-dx", port: ["1=pf0vf0", "2=pf0vf1"] });
    const lines = out.split("\n");
    expect(lines[0]).toMatch(/^profile: NVIDIA ConnectX-6 Dx/);
    expect(lines[2]).toBe("    NIC: offloaded in chain 0");
    expect(lines[4]).toMatch(/OVS: not offloaded: action CONTROLLER is never offloadable/);
    expect(lines[6]).toMatch(/NIC: offloaded in chain \d+/);
    expect(lines[8]).toBe("    OVS: not offloaded: action output:NORMAL is never offloadable");
    expect(() => explainFlows(text, { profile: "connectx-6-dx", port: ["x=pf0vf0"] })).toThrow(
      /--port wants OFPORT=NETDEV/,
    );
  });
});
