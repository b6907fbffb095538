/**
 * A security group's established connections on the NIC: the default apps'
 * own flows for three ports in one group (ingress TCP 22 from vm1's address
 * only, egress anything), planned for a ConnectX-6 Dx. Both ports' conntrack
 * lookups go to tc — the ingress one although the egress table before it
 * matches conntrack state, because the chains after it clear that state in
 * every trap — and the split datapath decides every packet of a connection
 * each way as OVS alone would: the first packets in software (the commits set
 * ct_mark, which no NIC does), every later one in tc; a denied connection is
 * denied the same; a removed rule stops the connection in both.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_APPS, loadApps } from "../../src/apps/index.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { Conntrack, type Packet, runSoftware, traceSplit } from "../../src/offload/planner/evaluate.js";
import { ruleFromFlow } from "../../src/offload/planner/from-openflow.js";
import type { PipelineRule, PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { parseObject, type Secgroup } from "../../src/nb/model/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";
import { binding, chassis, net, newModel, port, subnet } from "../harness/model-fixture.js";

const mac = (i: number) => `fa:16:3e:00:00:1${i}`;
const macN = (i: number) => BigInt(`0x${mac(i).replaceAll(":", "")}`);
const ip4 = (s: string) => s.split(".").reduce((n, o) => (n << 8n) | BigInt(o), 0n);
const ipOf = (i: number) => ip4(`10.1.0.1${i}`);
const ports: PortMap = {
  hardware: new Map([
    [1, "vm1"],
    [2, "vm2"],
    [3, "vm3"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};

function group(rules: Record<string, unknown>[]): Secgroup {
  return parseObject("secgroup", { id: "sg1", tenantId: "t1", rules }, "sg1") as Secgroup;
}
const SSH_FROM_VM1 = {
  id: "ssh",
  direction: "ingress",
  protocol: "tcp",
  portRangeMin: 22,
  portRangeMax: 22,
  remoteIpPrefix: "10.1.0.11/32",
};
const EGRESS = { id: "out", direction: "egress" };

function model(): LocalModel {
  const m = newModel();
  m.setChassis("host1", chassis("host1", "192.0.2.1"));
  m.setAlive("host1", true);
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setSecgroup("sg1", group([SSH_FROM_VM1, EGRESS]));
  for (const i of [1, 2, 3]) {
    m.setPort(
      `vm${i}`,
      port(`vm${i}`, "net1", mac(i), [["sub1", `10.1.0.1${i}`]], { securityGroups: ["sg1"] }),
    );
    m.setBinding(`vm${i}`, binding(`vm${i}`, i));
  }
  return m;
}

function planned(m: LocalModel) {
  const engine = new Engine(m, loadApps(DEFAULT_APPS));
  engine.recomputeAll();
  const flows = engine.allFlows().map((d) => ({ key: d.key, flow: d.flow }));
  const rules: PipelineRule[] = flows.map((f) => ruleFromFlow(f.flow, ports, f.key));
  const text = new Map(flows.map((f) => [f.key, formatFlow({ ...f.flow, cookie: 0n })]));
  const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-6-dx"), ports });
  return { plan, rules, text };
}

const tcp = (from: number, to: number, flags: Partial<Packet> = {}): Packet => ({
  in_port: BigInt(from),
  eth_src: macN(from),
  eth_dst: macN(to),
  eth_type: 0x800n,
  ip_proto: 6n,
  ipv4_src: ipOf(from),
  ipv4_dst: ipOf(to),
  tp_src: 40000n,
  tp_dst: 22n,
  nw_ttl: 64n,
  ...flags,
});
const reply = (p: Packet): Packet => ({
  ...p,
  in_port: BigInt(Number(p.in_port) === 1 ? 2 : Number(p.in_port) === 2 ? 1 : 3),
  eth_src: p.eth_dst,
  eth_dst: p.eth_src,
  ipv4_src: p.ipv4_dst,
  ipv4_dst: p.ipv4_src,
  tp_src: p.tp_dst,
  tp_dst: p.tp_src,
});

describe("a security group's established connections on the NIC", () => {
  it("offloads both ports' conntrack lookups and the established rules; the traps after a lookup clear its state", () => {
    const { plan, text } = planned(model());
    const decided = (re: RegExp) =>
      [...plan.decisions.values()].filter((d) => re.test(text.get(d.ruleId) ?? ""));
    // the egress lookups (table 10) and the ingress lookups (table 55) of the three ports, IPv4 and IPv6
    const lookups = decided(/actions=ct\(table=(11|56),zone=\d\)$/);
    expect(lookups).toHaveLength(12);
    for (const d of lookups) expect(d.offloaded, `${text.get(d.ruleId)}: ${d.reason}`).toBe(true);
    // established and related packets of an allowed connection, replies included
    const est = decided(/ct_state=\+est[-+]rpl\+trk,ct_mark=0x0\/0x1.* actions=goto_table:(15|60)$/);
    expect(est.length).toBeGreaterThanOrEqual(4);
    for (const d of est) expect(d.offloaded, `${text.get(d.ruleId)}: ${d.reason}`).toBe(true);
    // the commits stay in OVS: they set ct_mark
    for (const d of decided(/ct\(commit/)) expect(d.offloaded).toBe(false);
    // every chain after an ingress lookup clears the state in its traps
    const after = plan.chains.filter((c) => c.table === 56);
    expect(after.length).toBeGreaterThan(0);
    for (const c of after) {
      expect(c.clearsCt).toBe(true);
      for (const t of plan.tc.filter((x) => x.chain === c.chain && x.actions.at(-1)?.type === "pass"))
        expect(t.actions).toEqual([{ type: "ct_clear" }, { type: "pass" }]);
    }
  });

  it("carries an allowed connection in tc both ways once OVS has committed it, as OVS alone would", () => {
    const { plan, rules } = planned(model());
    const syn = tcp(1, 2);
    const split = new Conntrack();
    // the first packet of each way is committed by OVS, in vm1's zone and vm2's
    expect(traceSplit(plan, rules, ports, syn, split)).toMatchObject({
      software: true,
      events: [{ port: 2 }],
    });
    expect(traceSplit(plan, rules, ports, reply(syn), split)).toMatchObject({
      software: false,
      events: [{ port: 1 }],
    });
    for (const p of [syn, reply(syn), syn, reply(syn)])
      expect(traceSplit(plan, rules, ports, p, split)).toMatchObject({
        software: false,
        events: [{ kind: "output", port: Number(p.in_port) === 1 ? 2 : 1 }],
      });
    expectSameDecisions(plan, rules, ports, [syn, reply(syn), syn, reply(syn), syn]);
  });

  it("denies what the group does not allow, in tc as in OVS: vm3 to vm2's ssh, vm1 to another port", () => {
    const { plan, rules } = planned(model());
    const denied = [tcp(3, 2), tcp(3, 2), tcp(1, 2, { tp_dst: 23n }), tcp(1, 2, { tp_dst: 23n })];
    for (const p of denied) expect(runSoftware(rules, ports, p)).toEqual([]);
    expectSameDecisions(plan, rules, ports, [...denied, tcp(1, 2), reply(tcp(1, 2)), ...denied]);
  });

  it("stops an established connection whose rule is removed, in tc as in OVS (its next packet marks it blocked)", () => {
    const m = model();
    const before = planned(m);
    const syn = tcp(1, 2);
    const software = new Conntrack();
    const split = new Conntrack();
    for (const p of [syn, reply(syn), syn]) {
      runSoftware(before.rules, ports, p, software);
      traceSplit(before.plan, before.rules, ports, p, split);
    }
    expect(split.entries()).toEqual(software.entries());
    m.setSecgroup("sg1", group([EGRESS]));
    const after = planned(m);
    for (const p of [syn, reply(syn), syn, reply(syn)]) {
      const want = runSoftware(after.rules, ports, p, software);
      expect(want).toEqual([]);
      expect(traceSplit(after.plan, after.rules, ports, p, split).events).toEqual(want);
      expect(split.entries()).toEqual(software.entries());
    }
  });
});
