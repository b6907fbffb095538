import { describe, expect, it } from "vitest";
import type { Flow } from "../../src/openflow/flow.js";
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
