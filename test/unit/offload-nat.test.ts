/**
 * NAT on the NIC: the apps' own flows for a floating IP and an SNAT gateway
 * on this chassis (every default app, as the agent runs them with
 * `nat.nextHopIdleS: 0`), planned for a ConnectX-6 Dx with br-int's patch
 * port to br-ex standing for br-ex's uplink (`offload.uplinks`). Which flows
 * go to the NIC, and what the split datapath does with the packets of a
 * connection each way: from the outside to the floating IP, from the VM
 * out through it, and from a VM without one out through the gateway.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_APPS, loadApps } from "../../src/apps/index.js";
import { nextHopFlows } from "../../src/apps/nat.js";
import { Engine } from "../../src/controller/engine.js";
import { agingExclusion } from "../../src/controller/tc-reconciler.js";
import { type Packet, runSoftware, traceSplit } from "../../src/offload/planner/evaluate.js";
import { ruleFromFlow } from "../../src/offload/planner/from-openflow.js";
import type { PipelineRule, PortMap } from "../../src/offload/planner/ir.js";
import { type Exclusion, OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";
import {
  binding,
  chassis,
  fip,
  net,
  newModel,
  port,
  router,
  snat,
  subnet,
} from "../harness/model-fixture.js";

const PATCH = 50;
const mac = (s: string) => BigInt(`0x${s.replaceAll(":", "")}`);
const ip4 = (s: string) => s.split(".").reduce((n, o) => (n << 8n) | BigInt(o), 0n);
const VM1 = "fa:16:3e:01:00:11";
const VM2 = "fa:16:3e:01:00:12";
const ROUTER = "fa:16:3e:00:00:01";
const FIP_MAC = "fa:16:3e:fe:00:50";
const GW_MAC = "fa:16:3e:fe:00:10";
const NEXT_HOP = "02:00:00:00:aa:01"; // 172.24.4.1, the external subnet's gateway
const LOCAL = "02:00:00:00:bb:01"; // br-ex's own port

function view() {
  const m = newModel();
  m.setProviderPorts(new Map([["physnet1", PATCH]]));
  m.setChassis("host1", chassis("host1", "192.0.2.1"));
  m.setAlive("host1", true);
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1", external: true }));
  m.setSubnet(
    "extsub",
    subnet("extsub", "ext", "172.24.4.0/24", { gatewayIp: "172.24.4.1", enableDhcp: false }),
  );
  m.setPort("vm1", port("vm1", "net1", VM1, [["sub1", "10.1.0.11"]]));
  m.setPort("vm2", port("vm2", "net1", VM2, [["sub1", "10.1.0.12"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  m.setRouter(
    "r1",
    router("r1", [
      {
        subnetId: "sub1",
        portId: "rp1",
        networkId: "net1",
        ipAddress: "10.1.0.1",
        cidr: "10.1.0.0/24",
        macAddress: ROUTER,
      },
    ]),
  );
  m.setSnat(
    "s1",
    snat("s1", {
      routerId: "r1",
      externalNetworkId: "ext",
      externalIpAddress: "172.24.4.10",
      macAddress: GW_MAC,
      gatewayChassis: ["host1"],
    }),
  );
  m.setFip(
    "f1",
    fip("f1", {
      floatingNetworkId: "ext",
      floatingIpAddress: "172.24.4.50",
      macAddress: FIP_MAC,
      portId: "vm1",
      fixedIpAddress: "10.1.0.11",
    }),
  );
  return m;
}

const ports: PortMap = {
  hardware: new Map([
    [1, "vm1"],
    [2, "vm2"],
    [PATCH, "p0"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
  bridged: new Map([[PATCH, [mac(LOCAL)]]]),
};

function planned() {
  const m = view();
  const engine = new Engine(m, loadApps(DEFAULT_APPS, { nat: { nextHopIdleS: 0 } }));
  engine.recomputeAll();
  const flows = engine.allFlows().map((d) => ({ key: d.key, flow: d.flow }));
  // the next hop the nat app learns from ARP (a reactive flow), without an idle timeout
  nextHopFlows(m, "ext", "172.24.4.1", NEXT_HOP, 0).forEach((b, i) =>
    flows.push({ key: `nh${i}`, flow: b.build(0n) }),
  );
  const rules: PipelineRule[] = flows.map((f) => ruleFromFlow(f.flow, ports, f.key));
  const text = new Map(flows.map((f) => [f.key, formatFlow({ ...f.flow, cookie: 0n })]));
  const planner = new OffloadPlanner(profileById("connectx-6-dx"), ports);
  planner.setRules(rules);
  const aging = new Map<string, Exclusion>();
  for (const f of flows) {
    const ex = agingExclusion(f.flow);
    if (ex) aging.set(f.key, ex);
  }
  planner.exclude(aging);
  return { plan: planner.result(), rules, text };
}

const packet = (p: Partial<Packet> & { in_port: bigint }): Packet => ({
  eth_type: 0x800n,
  ip_proto: 6n,
  tp_src: 40000n,
  tp_dst: 22n,
  nw_ttl: 64n,
  ...p,
});
const fromOutside = packet({
  in_port: BigInt(PATCH),
  eth_src: mac(NEXT_HOP),
  eth_dst: mac(FIP_MAC),
  ipv4_src: ip4("198.51.100.7"),
  ipv4_dst: ip4("172.24.4.50"),
});
const vm1Out = packet({
  in_port: 1n,
  eth_src: mac(VM1),
  eth_dst: mac(ROUTER),
  ipv4_src: ip4("10.1.0.11"),
  ipv4_dst: ip4("198.51.100.7"),
});
const vm2Out = packet({
  in_port: 2n,
  eth_src: mac(VM2),
  eth_dst: mac(ROUTER),
  ipv4_src: ip4("10.1.0.12"),
  ipv4_dst: ip4("198.51.100.7"),
});
const toGateway = packet({
  in_port: BigInt(PATCH),
  eth_src: mac(NEXT_HOP),
  eth_dst: mac(GW_MAC),
  ipv4_src: ip4("198.51.100.7"),
  ipv4_dst: ip4("172.24.4.10"),
  tp_src: 22n,
  tp_dst: 40000n,
});

describe("NAT through br-ex's uplink on the NIC", () => {
  it("offloads the floating IP's and the gateway's ct NAT, their rewrites and the way out of the uplink", () => {
    const { plan, text } = planned();
    const nat = [...plan.decisions.values()].filter((d) => /ct\(.*nat/.test(text.get(d.ruleId) ?? ""));
    // the DNAT of the floating IP, the gateway's replies, both SNATs to beyond the external subnet
    const onLink = (d: { ruleId: string }) => text.get(d.ruleId)!.includes("nw_dst=172.24.4.0/24");
    expect(nat.filter((d) => !onLink(d))).toHaveLength(4);
    for (const d of nat.filter((x) => !onLink(x)))
      expect(d.offloaded, `${text.get(d.ruleId)}: ${d.reason}`).toBe(true);
    // an SNAT to the external subnet itself may hairpin or wait for its next hop: it stays in OVS
    expect(nat.filter(onLink)).toHaveLength(2);
    for (const d of nat.filter(onLink))
      expect(d.reason).toMatch(/commits the connection and a later table may hand the packet to OVS/);
    // the hairpins (ct_clear, resubmit) and ARP for the NAT addresses (answered in flows, copied to the agent)
    const stay = [...plan.decisions.values()].filter((d) => /ct_clear|,arp,/.test(text.get(d.ruleId) ?? ""));
    expect(stay.length).toBeGreaterThanOrEqual(5);
    for (const d of stay) expect(d.offloaded, text.get(d.ruleId)).toBe(false);
    // and the translated packets' way on: the rewrites behind the translation, the next hop to the uplink
    for (const d of plan.decisions.values()) {
      const t = text.get(d.ruleId) ?? "";
      if (
        /^table=36, .*nw_(src|dst)=(172\.24\.4\.(50|10)|10\.1\.0\.1[12])\b/.test(t) ||
        t.includes("->eth_dst,output:50")
      )
        expect(d.offloaded, `${t}: ${d.reason}`).toBe(true);
    }
  });

  it("carries a connection to the floating IP and back in tc, rewritten (MACs, TTL) and out of the right port", () => {
    const { plan, rules } = planned();
    const inward = traceSplit(plan, rules, ports, fromOutside);
    expect(inward.software).toBe(false);
    expect(inward.events).toEqual([
      {
        kind: "output",
        port: 1,
        packet: expect.objectContaining({
          eth_src: mac(ROUTER).toString(16),
          eth_dst: mac(VM1).toString(16),
          nw_ttl: "3f",
        }),
      },
    ]);
    for (const [what, p, src] of [
      ["vm1, through its floating IP", vm1Out, FIP_MAC],
      ["vm2, through the gateway", vm2Out, GW_MAC],
    ] as const) {
      const out = traceSplit(plan, rules, ports, p);
      expect(out.software, what).toBe(false);
      expect(out.events, what).toEqual([
        {
          kind: "output",
          port: PATCH,
          packet: expect.objectContaining({
            eth_src: mac(src).toString(16),
            eth_dst: mac(NEXT_HOP).toString(16),
            nw_ttl: "3f",
          }),
        },
      ]);
    }
  });

  it("leaves to OVS what the uplink brings for others, untouched; drops TTL 0 and 1 for a NAT address as OVS does", () => {
    const { plan, rules } = planned();
    for (const [what, p] of [
      ["for br-ex's own port", { ...fromOutside, eth_dst: mac(LOCAL) }],
      ["broadcast", { ...fromOutside, eth_dst: 0xffffffffffffn }],
      ["for another MAC", { ...fromOutside, eth_dst: 0x02000000cc01n }],
    ] as const) {
      const t = traceSplit(plan, rules, ports, p);
      expect(t.software, what).toBe(true);
      expect(t.events, what).toEqual(runSoftware(rules, ports, p));
    }
    // a tagged frame for the floating IP's MAC (the flat network's rules take untagged ones only):
    // flower has no key for "untagged", so a trap for tagged frames sits above the rule
    const tagged = { ...fromOutside, vlan_vid: 0x1064n };
    expect(traceSplit(plan, rules, ports, tagged)).toEqual({
      events: runSoftware(rules, ports, tagged),
      software: true,
    });
    const fipIngress = plan.tc.filter((t) => t.indev === "p0" && t.match.eth_dst?.value === mac(FIP_MAC));
    // the two TTL drops and the ingress, each under a trap for tagged frames
    expect(fipIngress.filter((t) => t.role === "offload").map((t) => t.match.vlan_vid)).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(
      fipIngress.filter((t) => t.match.vlan_vid?.value === 0x1000n).map((t) => [t.role, t.match.vlan_vid]),
    ).toEqual([
      ["trap", { value: 0x1000n, mask: 0x1000n }],
      ["trap", { value: 0x1000n, mask: 0x1000n }],
      ["trap", { value: 0x1000n, mask: 0x1000n }],
    ]);
    for (const ttl of [0n, 1n]) {
      expect(traceSplit(plan, rules, ports, { ...fromOutside, nw_ttl: ttl })).toEqual({
        events: [],
        software: false,
      });
      expect(traceSplit(plan, rules, ports, { ...toGateway, nw_ttl: ttl })).toEqual({
        events: [],
        software: false,
      });
    }
  });

  it("gives the floating IP's ingress one filter whether it offloads or traps (the kernel refuses a second with its key)", () => {
    const { rules, text } = planned();
    const ingress = rules.find((r) =>
      /^priority=110,ip,in_port=50,.*fa:16:3e:fe:00:50 actions=/.test(text.get(r.id)!),
    )!;
    const mainOf = (excluded: boolean) => {
      const planner = new OffloadPlanner(profileById("connectx-6-dx"), ports);
      planner.setRules(rules);
      if (excluded)
        planner.exclude(
          new Map([[ingress.id, { reason: "its OpenFlow flow is changing", scope: "actions" }]]),
        );
      const t = planner.result().tc.find((x) => x.ruleId === ingress.id && x.prio % 2 === 0)!;
      return { role: t.role, key: { chain: t.chain, prio: t.prio, indev: t.indev, match: t.match } };
    };
    const [on, trap] = [mainOf(false), mainOf(true)];
    expect([on.role, trap.role]).toEqual(["offload", "trap"]);
    expect(trap.key).toEqual(on.key);
    expect(on.key.match.vlan_vid).toBeUndefined();
  });

  it("decides every packet as the software pipeline does", () => {
    const { plan, rules } = planned();
    const packets: Packet[] = [fromOutside, vm1Out, vm2Out, toGateway];
    for (const ttl of [0n, 1n, 2n])
      packets.push({ ...fromOutside, nw_ttl: ttl }, { ...vm1Out, nw_ttl: ttl }, { ...vm2Out, nw_ttl: ttl });
    packets.push(
      { ...fromOutside, eth_dst: mac(LOCAL) },
      { ...vm1Out, eth_dst: mac(VM2), ipv4_dst: ip4("10.1.0.12") },
    );
    expectSameDecisions(plan, rules, ports, packets);
  });
});
