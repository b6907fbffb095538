import { describe, expect, it } from "vitest";
import { exact, type Action, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner, tcPrio, type Plan } from "../../src/offload/planner/plan.js";
import { profileById, type NicProfile } from "../../src/offload/profiles/index.js";
import type { ActionKind } from "../../src/offload/profiles/vocabulary.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * Every reason the planner gives for keeping a rule in software, each from the
 * smallest pipeline that earns it, and the numbers a plan is made of (tc
 * priorities, chain ids, the registers a chain stands for).
 */
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
  ]),
  tunnels: new Map([
    [100, "geneve"],
    [101, "vxlan"],
  ]),
};
const cx6 = profileById("connectx-6-dx");
const cx5 = profileById("connectx-5");
const cx4 = profileById("connectx-4-lx");
const without = (p: NicProfile, ...kinds: ActionKind[]): NicProfile => ({
  ...p,
  name: "test NIC",
  actions: p.actions.filter((a) => !kinds.includes(a)),
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
const next = r([{ type: "output", port: 2 }], {}, 10, "next");
const plan = (rules: PipelineRule[], profile = cx6): Plan => OffloadPlanner.plan({ rules, profile, ports });
const encap = (tunnel: "geneve" | "vxlan", options?: number): Action => ({
  type: "set_tunnel",
  id: 5n,
  dst: 9n,
  tunnel,
  ...(options === undefined ? {} : { options }),
});

describe("why a rule stays in software", () => {
  const cases: [string, PipelineRule[], NicProfile, string][] = [
    [
      "no switchdev",
      [r([{ type: "output", port: 2 }])],
      profileById("none"),
      "no hardware offload: the device has no embedded switch",
    ],
    [
      "a port the NIC never sees",
      [r([{ type: "output", port: 2 }], { in_port: exact("in_port", 7) })],
      cx6,
      "traffic from port 7 never passes through the NIC",
    ],
    [
      "an opaque match",
      [{ ...r([]), opaqueMatch: ["ipv6_label", "conj_id"] }],
      cx6,
      "match on ipv6_label, conj_id is not offloadable",
    ],
    [
      "a header the profile cannot match",
      [r([], { ...fromPort1, ct_mark: exact("ct_mark", 1) })],
      cx5,
      "match on ct_mark is not offloadable on NVIDIA ConnectX-5 / ConnectX-5 Ex",
    ],
    [
      "a tunnel match without the tunnel port",
      [r([], { ...fromPort1, tun_id: exact("tun_id", 1) })],
      cx6,
      "match on tun_id is offloadable only in table 0 together with in_port=<tunnel port>",
    ],
    [
      "decapsulation of a tunnel type the NIC lacks",
      [r([{ type: "output", port: 1 }], { in_port: exact("in_port", 100) })],
      cx4,
      "geneve decapsulation is not offloadable",
    ],
    [
      "decapsulation without tunnel_key unset",
      [r([{ type: "output", port: 1 }], { in_port: exact("in_port", 101) })],
      without(cx6, "tunnel_decap"),
      "tunnel decapsulation is not offloadable on test NIC",
    ],
    [
      "CONTROLLER",
      [r([{ type: "controller" }])],
      cx6,
      "action CONTROLLER is never offloadable: the packet must reach the local agent",
    ],
    [
      "an unmodelled action",
      [r([{ type: "other", name: "learn" }])],
      cx6,
      "action learn is never offloadable",
    ],
    [
      "a field with no tc rewrite",
      [r([{ type: "set_field", field: "ip_proto", value: 6n }])],
      cx6,
      "set_field ip_proto has no tc rewrite",
    ],
    [
      "a rewrite the profile lacks",
      [r([{ type: "set_field", field: "eth_dst", value: 1n }])],
      cx4,
      "rewrite of eth_dst is not offloadable on NVIDIA ConnectX-4 Lx",
    ],
    [
      "dec_ttl without pedit",
      [r([{ type: "dec_ttl" }])],
      cx4,
      "dec_ttl is not offloadable on NVIDIA ConnectX-4 Lx",
    ],
    [
      "dec_ttl without TTL matching",
      [r([{ type: "dec_ttl" }])],
      { ...cx6, matches: cx6.matches.filter((m) => m !== "ip_ttl") },
      "dec_ttl needs TTL matching to trap TTL 0/1",
    ],
    [
      "push_vlan",
      [r([{ type: "push_vlan", vid: 3 }])],
      without(cx6, "vlan_push"),
      "push_vlan is not offloadable on test NIC",
    ],
    [
      "pop_vlan",
      [r([{ type: "pop_vlan" }])],
      without(cx6, "vlan_pop"),
      "pop_vlan is not offloadable on test NIC",
    ],
    [
      "encapsulation of a tunnel type the NIC lacks",
      [r([encap("geneve"), { type: "output", port: 100 }])],
      cx4,
      "geneve encapsulation is not offloadable",
    ],
    [
      "more Geneve options than the NIC sets",
      [r([encap("geneve", 2), { type: "output", port: 100 }])],
      cx6,
      "2 Geneve option(s) exceed what NVIDIA ConnectX-6 Dx / Lx can set",
    ],
    [
      "any Geneve option on a NIC without them",
      [r([encap("geneve", 1), { type: "output", port: 100 }])],
      cx5,
      "1 Geneve option(s) exceed what NVIDIA ConnectX-5 / ConnectX-5 Ex can set",
    ],
    [
      "output after encapsulation",
      [r([encap("geneve"), { type: "output", port: 100 }, { type: "output", port: 2 }])],
      cx6,
      "output after a tunnel encapsulation is not offloadable",
    ],
    [
      "a tunnel port without a key",
      [r([{ type: "output", port: 100 }])],
      cx6,
      "output to tunnel port 100 without a geneve key set first",
    ],
    [
      "a tunnel port with the other type's key",
      [r([encap("vxlan"), { type: "output", port: 100 }])],
      cx6,
      "output to tunnel port 100 without a geneve key set first",
    ],
    [
      "encapsulation without tunnel_key set",
      [r([encap("geneve"), { type: "output", port: 100 }])],
      without(cx6, "tunnel_encap"),
      "tunnel encapsulation is not offloadable on test NIC",
    ],
    [
      "a port that is not on the eswitch",
      [r([{ type: "output", port: 7 }])],
      cx6,
      "output to port 7, which is not an eswitch port",
    ],
    [
      "a flood without mirred mirror",
      [
        r(
          [
            { type: "output", port: 1 },
            { type: "output", port: 2 },
          ],
          { eth_type: exact("eth_type", 0x800) },
        ),
      ],
      without(cx6, "mirror"),
      "output to several ports (flood) is not offloadable on test NIC",
    ],
    [
      "a goto with actions after it",
      [
        r([
          { type: "goto", table: 10 },
          { type: "output", port: 2 },
        ]),
        next,
      ],
      cx6,
      "resubmit followed by more actions is not offloadable",
    ],
    [
      "a goto back",
      [r([{ type: "goto", table: 0 }])],
      cx6,
      "a goto to an earlier or the same table is not offloadable",
    ],
    [
      "output before a goto",
      [
        r([
          { type: "output", port: 2 },
          { type: "goto", table: 10 },
        ]),
        next,
      ],
      cx6,
      "output before a goto is not offloadable",
    ],
    [
      "a goto on a single-chain NIC",
      [r([{ type: "goto", table: 10 }]), next],
      cx4,
      "goto chain 1001 is beyond what NVIDIA ConnectX-4 Lx supports",
    ],
    [
      "a goto without gact goto chain",
      [r([{ type: "goto", table: 10 }]), next],
      without(cx6, "goto_chain"),
      "goto chain 1001 is beyond what test NIC supports",
    ],
    [
      "ct without conntrack offload",
      [r([{ type: "ct", zone: 1, commit: false, nat: false, table: 10 }]), next],
      cx5,
      "connection tracking is not offloaded on NVIDIA ConnectX-5 / ConnectX-5 Ex",
    ],
    [
      "ct without act_ct",
      [r([{ type: "ct", zone: 1, commit: false, nat: false, table: 10 }]), next],
      without(cx6, "ct"),
      "connection tracking is not offloaded on test NIC",
    ],
    [
      "ct nat without ct_nat",
      [r([{ type: "ct", zone: 1, commit: false, nat: true, table: 10 }]), next],
      without(cx6, "ct_nat"),
      "ct nat is not offloadable",
    ],
    [
      "ct without a table",
      [r([{ type: "ct", zone: 1, commit: false, nat: false }])],
      cx6,
      "ct without a recirculation table is not offloadable",
    ],
    [
      "ct back to its own table",
      [r([{ type: "ct", zone: 1, commit: false, nat: false, table: 0 }])],
      cx6,
      "ct recirculation to an earlier table is not offloadable",
    ],
    [
      "output before ct",
      [
        r([
          { type: "output", port: 2 },
          { type: "ct", zone: 1, commit: false, nat: false, table: 10 },
        ]),
        next,
      ],
      cx6,
      "output before ct is not offloadable",
    ],
    [
      "actions after ct",
      [
        r([
          { type: "ct", zone: 1, commit: false, nat: false, table: 10 },
          { type: "output", port: 2 },
        ]),
        next,
      ],
      cx6,
      "actions after a goto are not offloadable",
    ],
    [
      "a table nothing offloaded leads to",
      [next],
      cx6,
      "no packet reaches this rule through hardware chains",
    ],
  ];
  for (const [what, rules, profile, why] of cases) {
    it(what, () => {
      const id = rules.some((x) => x.id === "r") ? "r" : rules[0]!.id;
      const p = plan(rules, profile);
      expect(p.decisions.get(id)).toEqual({
        ruleId: id,
        offloaded: false,
        chains: [],
        reason: `not offloaded: ${why}`,
      });
      expectSameDecisions(p, rules, ports, [
        { in_port: 1n, eth_type: 0x800n, nw_ttl: 9n },
        { in_port: 2n, eth_type: 0x806n },
        { in_port: 100n, tun_id: 1n },
        { in_port: 7n },
      ]);
    });
  }

  it("says where an offloaded rule lives, in one chain or several", () => {
    const rules = [
      r(
        [
          { type: "set_field", field: "reg6", value: 1n },
          { type: "goto", table: 10 },
        ],
        fromPort1,
        0,
        "a",
      ),
      r(
        [
          { type: "set_field", field: "reg6", value: 2n },
          { type: "goto", table: 10 },
        ],
        { in_port: exact("in_port", 2) },
        0,
        "b",
      ),
      next,
    ];
    const p = plan(rules);
    expect(p.decisions.get("a")).toEqual({
      ruleId: "a",
      offloaded: true,
      chains: [0],
      reason: "offloaded in chain 0",
    });
    expect(p.decisions.get("next")).toEqual({
      ruleId: "next",
      offloaded: true,
      chains: [1001, 1002],
      reason: "offloaded in chains 1001, 1002",
    });
    // next's hairpin trap (a packet from port 2 output to port 2) is live only in chain 1002,
    // which port 2's packets enter; only port 1's packets enter chain 1001
    expect(p.chains).toEqual([
      { chain: 0, table: 0, registers: {}, reachesSoftware: true },
      { chain: 1001, table: 10, registers: { reg6: 1n }, reachesSoftware: false },
      { chain: 1002, table: 10, registers: { reg6: 2n }, reachesSoftware: true },
    ]);
  });

  it("gives a rule offloaded in one chain and trapped in another the offloaded decision", () => {
    const rules = [
      r(
        [
          { type: "set_field", field: "reg6", value: 1n },
          { type: "goto", table: 10 },
        ],
        fromPort1,
        0,
        "a",
      ),
      r(
        [
          { type: "set_field", field: "reg6", value: 2n },
          { type: "goto", table: 10 },
        ],
        { in_port: exact("in_port", 2) },
        0,
        "b",
      ),
      r([{ type: "dec_ttl" }, { type: "goto", table: 20 }], {}, 10, "mixed"),
      r([{ type: "controller" }], { reg6: exact("reg6", 1), eth_type: exact("eth_type", 0x86dd) }, 20, "v6"),
      r([{ type: "output", port: 2 }], fromPort1, 20, "fwd"),
    ];
    const p = plan(rules);
    // Chain 1002 reaches software only through the TTL 0/1 traps of the rule itself, which is fine.
    expect(p.decisions.get("mixed")).toEqual({
      ruleId: "mixed",
      offloaded: true,
      chains: [1002],
      reason: "offloaded in chain 1002",
    });
    expect(p.chains.map((c) => [c.chain, c.reachesSoftware])).toEqual([
      [0, true],
      [1001, true],
      [1002, true],
      [1003, true],
      [1004, false],
    ]);
    expectSameDecisions(p, rules, ports, [
      { in_port: 1n, eth_type: 0x86ddn, nw_ttl: 5n },
      { in_port: 2n, nw_ttl: 5n },
      { in_port: 1n, nw_ttl: 5n },
    ]);
  });
});

describe("tc priorities", () => {
  it("keep a rule's prio from its OpenFlow priority, traps just above it, the miss last", () => {
    expect(tcPrio(32766, "main")).toBe(2);
    expect(tcPrio(32766, "trap")).toBe(1);
    expect(tcPrio(40000, "main")).toBe(2);
    expect(tcPrio(100, "main")).toBe(65334);
    expect(tcPrio(100, "trap")).toBe(65333);
    expect(tcPrio(0, "main")).toBe(65534);
    expect(tcPrio(-5, "main")).toBe(65534);
    const rules = [
      { ...r([{ type: "dec_ttl" }, { type: "output", port: 2 }], {}), priority: 100 },
      { ...r([{ type: "output", port: 2 }], fromPort1, 0, "low"), priority: 7 },
    ];
    const tc = plan(rules).tc.map((t) => [t.prio, t.role, t.ruleId, t.indev, t.match.nw_ttl?.value]);
    expect(tc).toEqual([
      [65333, "trap", "r", undefined, 0n],
      [65333, "trap", "r", undefined, 1n],
      [65333, "trap", "r", "rep2", undefined],
      [65334, "offload", "r", undefined, undefined],
      [65520, "offload", "low", "rep1", undefined],
      [65535, "miss", undefined, undefined, undefined],
    ]);
  });
});

describe("registers", () => {
  it("resolve masked matches in each chain and leave a rule out of chains its registers exclude", () => {
    const rules: PipelineRule[] = [
      r(
        [
          { type: "set_field", field: "reg6", value: 3n },
          { type: "set_field", field: "reg7", value: 0x1_0000_0001n },
          { type: "goto", table: 10 },
        ],
        fromPort1,
        0,
        "a",
      ),
      r(
        [
          { type: "set_field", field: "reg6", value: 2n },
          { type: "goto", table: 10 },
        ],
        { in_port: exact("in_port", 2) },
        0,
        "b",
      ),
      { ...r([{ type: "output", port: 2 }], { reg6: { value: 1n, mask: 1n } }, 10, "odd"), priority: 300 },
      {
        ...r([{ type: "output", port: 1 }], { reg6: exact("reg6", 2), reg7: exact("reg7", 0) }, 10, "two"),
        priority: 200,
      },
      {
        ...r([{ type: "controller" }], { reg7: exact("reg7", 1), reg6: exact("reg6", 3) }, 10, "seven"),
        priority: 400,
      },
      r([], {}, 10, "rest"),
    ];
    const p = plan(rules);
    expect(p.chains.map((c) => c.registers)).toEqual([{}, { reg6: 3n, reg7: 1n }, { reg6: 2n }]);
    expect(p.decisions.get("odd")!.chains).toEqual([1001]);
    expect(p.decisions.get("two")!.chains).toEqual([1002]);
    expect(p.tc.filter((t) => t.chain === 1001).map((t) => t.ruleId ?? t.role)).toEqual([
      "seven",
      "odd",
      "odd",
      "rest",
      "miss",
    ]);
    expectSameDecisions(p, rules, ports, [{ in_port: 1n }, { in_port: 2n }]);
  });
});
