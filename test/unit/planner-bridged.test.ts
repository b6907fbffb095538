import { describe, expect, it } from "vitest";
import { traceSplit, type Packet } from "../../src/offload/planner/evaluate.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner, tcPrio } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

/*
 * A patch port mapped to the uplink of the bridge behind it (`ports.bridged`):
 * the planner may stand the uplink in for the patch port only for packets
 * whose destination MAC says the bridge would switch them that way. The
 * pipeline is NAT-shaped: port 50 is the patch port to br-ex (uplink p0, the
 * bridge's own port has LOCAL), port 1 a VM's representor.
 */
const PATCH = 50;
const VM = 1;
const FIP_MAC = 0xfa163efe0050n;
const VM_MAC = 0xfa163e000011n;
const ROUTER_MAC = 0xfa163e000001n;
const NEXT_HOP = 0x02000000aa01n;
const LOCAL = 0x02000000bb01n; // br-ex's own port
const OTHER = 0x02000000cc01n;
const BCAST = 0xffffffffffffn;
const cx6 = profileById("connectx-6-dx");

const r = (id: string, table: number, priority: number, rule: Pick<PipelineRule, "match" | "actions">) => ({
  id,
  table,
  priority,
  ...rule,
});
const inPort = (p: number) => ({ in_port: exact("in_port", p) });
const dst = (m: bigint) => ({ eth_dst: exact("eth_dst", m) });
const reg6 = (v: number) => ({ reg6: exact("reg6", v) });

const rules: PipelineRule[] = [
  // table 0: the VM; from the patch port, a floating IP's MAC, ARP, and the provider network for any MAC
  r("vm", 0, 100, {
    match: inPort(VM),
    actions: [
      { type: "set_field", field: "reg6", value: 1n },
      { type: "goto", table: 10 },
    ],
  }),
  r("fip", 0, 110, {
    match: { ...inPort(PATCH), ...dst(FIP_MAC) },
    actions: [
      { type: "set_field", field: "reg6", value: 2n },
      { type: "goto", table: 35 },
    ],
  }),
  r("fip-arp", 0, 120, {
    match: { ...inPort(PATCH), eth_type: exact("eth_type", 0x806) },
    actions: [{ type: "controller" }],
  }),
  r("provider", 0, 100, {
    match: inPort(PATCH),
    actions: [
      { type: "set_field", field: "reg6", value: 3n },
      { type: "goto", table: 10 },
    ],
  }),
  // a rule for every port (LLDP dropped)
  r("lldp", 0, 130, { match: { eth_type: exact("eth_type", 0x88cc) }, actions: [] }),
  // table 10: the VM's way out — through the router (the next hop's MAC set: known), and to MACs
  r("egress", 10, 200, {
    match: { ...reg6(1), ...dst(ROUTER_MAC) },
    actions: [
      { type: "set_field", field: "eth_src", value: FIP_MAC },
      { type: "set_field", field: "eth_dst", value: NEXT_HOP },
      { type: "goto", table: 40 },
    ],
  }),
  r("to-other", 10, 150, {
    match: { ...reg6(1), ...dst(OTHER) },
    actions: [{ type: "output", port: PATCH }],
  }),
  r("to-local", 10, 150, {
    match: { ...reg6(1), ...dst(LOCAL) },
    actions: [{ type: "output", port: PATCH }],
  }),
  r("to-bcast", 10, 150, {
    match: { ...reg6(1), ...dst(BCAST) },
    actions: [{ type: "output", port: PATCH }],
  }),
  r("to-unknown", 10, 1, { match: reg6(1), actions: [{ type: "output", port: PATCH }] }),
  r("provider-l2", 10, 100, {
    match: { ...reg6(3), ...dst(VM_MAC) },
    actions: [{ type: "output", port: VM }],
  }),
  // table 35: the floating IP's packets to the VM; table 40: out of the patch port
  r("dnat", 35, 100, {
    match: reg6(2),
    actions: [
      { type: "set_field", field: "eth_src", value: ROUTER_MAC },
      { type: "set_field", field: "eth_dst", value: VM_MAC },
      { type: "output", port: VM },
    ],
  }),
  r("out", 40, 100, { match: {}, actions: [{ type: "output", port: PATCH }] }),
];

const hardware = new Map([
  [VM, "rep1"],
  [PATCH, "p0"],
]);
const bridged: PortMap = { hardware, tunnels: new Map(), bridged: new Map([[PATCH, [LOCAL]]]) };
const plain: PortMap = { hardware, tunnels: new Map() };

const fromUplink = (eth_dst: bigint, extra: Partial<Packet> = {}): Packet => ({
  in_port: BigInt(PATCH),
  eth_dst,
  eth_src: NEXT_HOP,
  eth_type: 0x800n,
  ...extra,
});
const fromVm = (eth_dst: bigint, extra: Partial<Packet> = {}): Packet => ({
  in_port: BigInt(VM),
  eth_dst,
  eth_src: VM_MAC,
  eth_type: 0x800n,
  ...extra,
});

describe("a patch port mapped to the uplink of the bridge behind it", () => {
  // Planned in each test, not once in this describe body: a mutation run switches a mutant on only
  // while a test runs, so a plan made here would never see it (test/mutation/planner.md).
  const planned = () => OffloadPlanner.plan({ rules, profile: cx6, ports: bridged });
  const decided = (id: string) => planned().decisions.get(id)!;

  it("takes from the uplink only packets table 0 claims by an exact unicast destination MAC", () => {
    expect(decided("fip").offloaded).toBe(true);
    expect(decided("dnat").offloaded).toBe(true);
    expect(decided("provider").offloaded).toBe(false);
    expect(decided("provider").reason).toMatch(/from patch port 50, only packets for a MAC of br-int's own/);
    // the same rules without the bridge's gate: the provider rule would take every packet of the uplink
    expect(
      OffloadPlanner.plan({ rules, profile: cx6, ports: plain }).decisions.get("provider")!.offloaded,
    ).toBe(true);
  });

  it("never takes from the uplink a packet for the bridge's own port, even where table 0 names that MAC", () => {
    const withLocal: PipelineRule[] = [
      ...rules,
      r("to-local-mac", 0, 115, {
        match: { ...inPort(PATCH), ...dst(LOCAL) },
        actions: [{ type: "output", port: VM }],
      }),
    ];
    const p = OffloadPlanner.plan({ rules: withLocal, profile: cx6, ports: bridged });
    expect(p.decisions.get("to-local-mac")!.offloaded).toBe(false);
    expect(traceSplit(p, withLocal, bridged, fromUplink(LOCAL)).software).toBe(true);
  });

  it("hands every other packet of the uplink to OVS untouched, also where a rule for every port would drop it", () => {
    const plan = planned();
    const cases: [string, Packet, boolean][] = [
      ["for the floating IP's MAC", fromUplink(FIP_MAC), false],
      ["for the bridge's own port", fromUplink(LOCAL), true],
      ["for an unknown MAC", fromUplink(OTHER), true],
      ["broadcast", fromUplink(BCAST), true],
      ["LLDP", fromUplink(0x0180c200000en, { eth_type: 0x88ccn }), true],
    ];
    for (const [what, pkt, software] of cases) {
      const t = traceSplit(plan, rules, bridged, pkt);
      expect(t.software, what).toBe(software);
      if (software) expect(t.events, what).toEqual([]); // nothing done by tc before OVS sees it
    }
    // the floating IP's packet is rewritten and delivered by tc alone
    expect(traceSplit(plan, rules, bridged, fromUplink(FIP_MAC)).events).toEqual([
      {
        kind: "output",
        port: VM,
        packet: expect.objectContaining({ eth_dst: VM_MAC.toString(16), eth_src: ROUTER_MAC.toString(16) }),
      },
    ]);
    // from a VM's port the rule for every port still decides in tc
    expect(traceSplit(plan, rules, bridged, fromVm(0x0180c200000en, { eth_type: 0x88ccn })).software).toBe(
      false,
    );
  });

  it("puts the uplink's trap in chain 0 above the catch-all, and one in front of each rule for every port", () => {
    const plan = planned();
    const chain0 = plan.tc.filter((t) => t.chain === 0 && t.indev === "p0" && t.role === "trap");
    expect(chain0).toContainEqual(expect.objectContaining({ match: {}, prio: tcPrio(0, "main") }));
    expect(chain0).toContainEqual(
      expect.objectContaining({ match: { eth_type: exact("eth_type", 0x88cc) }, prio: tcPrio(130, "trap") }),
    );
    const miss = plan.tc.find((t) => t.chain === 0 && t.role === "miss")!;
    expect(miss.prio).toBeGreaterThan(tcPrio(0, "main"));
  });

  it("redirects to the uplink only a packet whose destination MAC is known, unicast and not the bridge's own", () => {
    const plan = planned();
    expect(decided("egress").offloaded).toBe(true);
    expect(decided("out").offloaded).toBe(true);
    expect(decided("to-other").offloaded).toBe(true);
    expect(decided("to-local").reason).toMatch(/destination MAC is the bridge's own port's/);
    expect(decided("to-bcast").reason).toMatch(/floods a group MAC/);
    expect(decided("to-unknown").reason).toMatch(
      /switches by destination MAC, which this rule does not know/,
    );
    expect(traceSplit(plan, rules, bridged, fromVm(ROUTER_MAC)).software).toBe(false);
    expect(traceSplit(plan, rules, bridged, fromVm(OTHER)).software).toBe(false);
    for (const d of [LOCAL, BCAST, 0x02000000dd01n])
      expect(traceSplit(plan, rules, bridged, fromVm(d)).software).toBe(true);
  });

  it("plans from the uplink no masked destination MAC and no rule at priority 0; it gates table 0 only", () => {
    const MASK = 0xffffffffff00n; // a set of 256 MACs, some of which may be the bridge's other ports'
    const extra: PipelineRule[] = [
      ...rules,
      r("fip-masked", 0, 115, {
        match: { ...inPort(PATCH), eth_dst: { value: FIP_MAC & MASK, mask: MASK } },
        actions: [{ type: "output", port: VM }],
      }),
      // priority 0 is where chain 0's trap for the uplink sits
      r("fip-low", 0, 0, {
        match: { ...inPort(PATCH), ...dst(OTHER) },
        actions: [{ type: "output", port: VM }],
      }),
      // past table 0 the packet is one br-int took: a rule may name the patch port without a MAC
      r("fip-in", 35, 150, {
        match: { ...reg6(2), ...inPort(PATCH) },
        actions: [
          { type: "set_field", field: "eth_dst", value: VM_MAC },
          { type: "output", port: VM },
        ],
      }),
      // an output to the patch port under a masked destination MAC: the bridge's choice is not known
      r("to-masked", 10, 160, {
        match: { ...reg6(1), eth_dst: { value: OTHER & MASK, mask: MASK } },
        actions: [{ type: "output", port: PATCH }],
      }),
    ];
    const p = OffloadPlanner.plan({ rules: extra, profile: cx6, ports: bridged });
    const gated = /from patch port 50, only packets for a MAC of br-int's own/;
    expect(p.decisions.get("fip-masked")!.reason).toMatch(gated);
    expect(p.decisions.get("fip-low")!.reason).toMatch(gated);
    expect(p.decisions.get("fip-in")!.offloaded).toBe(true);
    expect(p.decisions.get("to-masked")!.reason).toMatch(
      /switches by destination MAC, which this rule does not know/,
    );
    expectSameDecisions(p, extra, bridged, [
      fromUplink(FIP_MAC),
      fromUplink(FIP_MAC + 1n),
      fromUplink(OTHER),
      fromVm(OTHER),
      fromVm(OTHER + 1n),
    ]);
  });

  it("decides every packet as the software pipeline does", () => {
    const plan = planned();
    const packets: Packet[] = [];
    for (const d of [FIP_MAC, LOCAL, OTHER, BCAST, VM_MAC]) {
      packets.push(fromUplink(d), fromVm(d));
      packets.push(fromUplink(d, { eth_type: 0x806n }), fromUplink(d, { eth_type: 0x88ccn }));
    }
    packets.push(fromVm(ROUTER_MAC), fromVm(0x02000000dd01n));
    expectSameDecisions(plan, rules, bridged, packets);
  });
});
