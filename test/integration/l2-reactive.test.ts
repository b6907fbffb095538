/**
 * `l2.mode: reactive` across two simulated hosts (the multi-host lab: each
 * host its own namespace, OVS and agent; NB in etcd; Geneve over the
 * underlay). Router r1 joins netA (geneve 611) and netB (geneve 612); host1
 * has a1 (netA) and b1 (netB), host2 has a2, a3 (netA) and b2 (netB).
 *
 * A switch holds flows only for the remote ports its VMs talk to: before any
 * traffic host1 has no l2_lookup or arp_responder flow for a port of host2;
 * a1's ARP for a2 is answered by host1's agent, a1's first frame to a2 is
 * one l2 packet-in that installs a2's flow (idle timeout) on host1 only, and
 * later frames take no packet-in on either host. Routed traffic to a port on
 * the other host goes straight into its tunnel (the l3 host route), so it
 * needs no L2 flow. A port deleted in the NB takes its reactive flow with it.
 * A frame to a MAC no port has, and an ARP request for an address no port
 * has, still reach the other host (flooded, as in proactive mode).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { table } from "../../src/datapath/index.js";
import { NbApi } from "../../src/nb/api.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import type { Flow } from "../../src/openflow/flow.js";
import { runDhcpClient } from "../../src/sandbox/dhcp-client.js";
import { Underlay } from "../../src/sandbox/multihost.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { useEtcd } from "../harness/etcd.js";
import { waitFor } from "../harness/index.js";

const etcd = useEtcd({ label: "l2-reactive" });
let ul: Underlay | undefined;
let store: NbStore;
let api: NbApi;
const agents = new Map<string, Agent>();
const vms: Record<string, VmPort> = {};

const PORTS = [
  // id, network, subnet, host, mac, ip
  ["a1", "netA", "subA", "host1", "fa:16:3e:61:01:11", "10.61.1.11"],
  ["b1", "netB", "subB", "host1", "fa:16:3e:61:02:11", "10.61.2.11"],
  ["a2", "netA", "subA", "host2", "fa:16:3e:61:01:12", "10.61.1.12"],
  ["a3", "netA", "subA", "host2", "fa:16:3e:61:01:13", "10.61.1.13"],
  ["b2", "netB", "subB", "host2", "fa:16:3e:61:02:12", "10.61.2.12"],
] as const;
const mac = (id: string): string => PORTS.find((p) => p[0] === id)![4];
const ip = (id: string): string => PORTS.find((p) => p[0] === id)![5];

async function startAgent(host: string): Promise<Agent> {
  const h = ul!.host(host);
  const a = await Agent.start(
    parseAgentConfig({
      chassis: host,
      tunnelIp: h.tunnelIp,
      ovsdb: h.sandbox.dbRemote,
      datapathType: "netdev",
      nb: etcd().url,
      metrics: "",
      logLevel: "silent",
      l2: { mode: "reactive" },
    }),
  );
  agents.set(host, a);
  return a;
}

const agent = (h: string): Agent => agents.get(h)!;
const ins = (h: string, app: string): number => agent(h).packetIns.get(app) ?? 0;
const flows = (h: string): Flow[] => agent(h).reconciler.installedFlows();
const matches = (f: Flow, field: string, value: string): boolean =>
  f.match.some((m) => m.field === field && String(m.value) === value);
/** host's l2_lookup flows for a MAC. */
const l2To = (h: string, m: string): Flow[] =>
  flows(h).filter((f) => f.table === table("l2_lookup") && matches(f, "eth_dst", m));
/** host's arp_responder flows answering an address. */
const arpFor = (h: string, a: string): Flow[] =>
  flows(h).filter((f) => f.table === table("arp_responder") && matches(f, "arp_tpa", a));

async function ping(from: string, to: string, count = 2): Promise<boolean> {
  const r = await run(["ping", "-c", String(count), "-i", "0.2", "-W", "2", to], {
    netns: vms[from]!.netns,
    allowFailure: true,
  });
  return r.code === 0;
}

beforeAll(async () => {
  store = await openStore(etcd().url);
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  for (const [net, seg, sub, cidr] of [
    ["netA", 611, "subA", "10.61.1.0/24"],
    ["netB", 612, "subB", "10.61.2.0/24"],
  ] as const) {
    await api.create("lswitch", { id: net, tenantId: "t1", networkType: "geneve", segmentationId: seg });
    await api.create("subnet", { id: sub, tenantId: "t1", networkId: net, cidr });
  }
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  for (const sub of ["subA", "subB"]) await api.routerAddInterface("r1", { subnetId: sub });
  for (const [id, net, sub, , m, a] of PORTS) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: m,
      fixedIps: [{ subnetId: sub, ipAddress: a }],
    });
  }
  ul = await Underlay.start({ hosts: ["host1", "host2"] });
  await startAgent("host1");
  await startAgent("host2");
  for (const [id, , , host, m] of PORTS) vms[id] = await ul.host(host).addVm(id, { ifaceId: id, mac: m });
  await waitFor(() => agent("host1").localPortCount() === 2, 20_000, "host1 binds a1 and b1");
  await waitFor(() => agent("host2").localPortCount() === 3, 20_000, "host2 binds three ports");
  await waitFor(
    () => ["a2", "a3", "b2"].every((p) => agent("host1").view.remotePort(p) !== undefined),
    20_000,
    "host1 learns where host2's ports are",
  );
  for (const a of agents.values()) await a.settle();
  for (const [id] of PORTS) {
    const lease = await runDhcpClient(vms[id]!.netns, { apply: true, timeoutS: 10 });
    expect(lease?.ip, id).toBe(ip(id));
  }
}, 180_000);

afterAll(async () => {
  for (const a of agents.values()) await a.stop();
  await store?.close();
  await ul?.stop();
});

describe("l2.mode reactive on two hosts", () => {
  it("holds no flow for another host's port before a VM talks to it; the punts are there", () => {
    for (const p of ["a2", "a3", "b2"]) {
      expect(l2To("host1", mac(p)), p).toEqual([]);
      expect(arpFor("host1", ip(p)), p).toEqual([]);
    }
    // the local ports' own flows are still proactive
    expect(l2To("host1", mac("a1"))).toHaveLength(1);
    expect(arpFor("host1", ip("a1")).length).toBeGreaterThanOrEqual(1);
    const punts = flows("host1").filter(
      (f) =>
        (f.table === table("l2_lookup") || f.table === table("arp_responder")) &&
        JSON.stringify(f.instructions).includes('"port":4294967293'),
    );
    // per wired network (netA, netB): l2's unicast punt, arp's ARP and neighbour-solicitation punts
    expect(punts).toHaveLength(6);
  });

  it("answers the ARP from the agent, installs the remote port's flow on the first frame, and no more packet-ins after", async () => {
    const before = { arp: ins("host1", "arp"), l2: ins("host1", "l2"), l2Far: ins("host2", "l2") };
    expect(await ping("a1", ip("a2"), 1)).toBe(true);
    expect(ins("host1", "arp") - before.arp).toBe(1);
    expect(ins("host1", "l2") - before.l2).toBe(1);
    const [f, ...rest] = l2To("host1", mac("a2"));
    expect(rest).toEqual([]);
    expect(f?.idleTimeout).toBe(300);
    expect(JSON.stringify(f?.instructions)).toContain(`"table":${table("egress_tunnel")}`);
    // a3 was never talked to: still nothing for it
    expect(l2To("host1", mac("a3"))).toEqual([]);
    const after = { l2: ins("host1", "l2"), l2Far: ins("host2", "l2"), arp: ins("host1", "arp") };
    // the reply direction decided on host2 the same way
    expect(after.l2Far - before.l2Far).toBe(1);
    expect(l2To("host2", mac("a1"))).toHaveLength(1);
    expect(await ping("a1", ip("a2"), 5)).toBe(true);
    expect(ins("host1", "l2")).toBe(after.l2);
    expect(ins("host2", "l2")).toBe(after.l2Far);
    expect(ins("host1", "arp")).toBe(after.arp);
  });

  it("routes to a port on the other host straight into its tunnel: no L2 flow, no l2 packet-in", async () => {
    const before = { l3: ins("host1", "l3"), l2: ins("host1", "l2"), l2Far: ins("host2", "l2") };
    const cap = await ul!.capture();
    expect(await ping("a1", ip("b2"), 2)).toBe(true);
    const pkts = await cap.stop();
    expect(ins("host1", "l3") - before.l3).toBe(1);
    expect(ins("host1", "l2")).toBe(before.l2);
    expect(ins("host2", "l2")).toBe(before.l2Far);
    expect(l2To("host1", mac("b2"))).toEqual([]);
    const there = pkts.filter((p) => p.inner?.ipv4?.dst === ip("b2") && p.inner.icmp?.type === 8);
    expect(there.length).toBeGreaterThanOrEqual(1);
    for (const p of there) expect(p).toMatchObject({ from: "host1", encap: "geneve", vni: 612 });
  });

  it("a port deleted in the NB takes its reactive flow with it", async () => {
    expect(await ping("a1", ip("a3"), 1)).toBe(true);
    expect(l2To("host1", mac("a3"))).toHaveLength(1);
    await api.delete("lport", "a3");
    await waitFor(() => l2To("host1", mac("a3")).length === 0, 20_000, "a3's reactive flow removed on host1");
    expect(l2To("host1", mac("a2"))).toHaveLength(1);
  });

  it("floods a frame to a MAC no port has, and an ARP request for an address no port has", async () => {
    const stranger = "fa:16:3e:61:99:99";
    await run(["ip", "neigh", "replace", "10.61.1.99", "lladdr", stranger, "dev", "eth0"], {
      netns: vms.a1!.netns,
    });
    const before = ins("host1", "l2");
    const cap = await ul!.capture();
    await ping("a1", "10.61.1.99", 2);
    await ping("a1", "10.61.1.98", 1);
    const pkts = await cap.stop();
    const toStranger = pkts.filter((p) => p.from === "host1" && p.inner?.eth.dst === stranger);
    expect(toStranger.length).toBeGreaterThanOrEqual(2);
    // every such frame is a packet-in (nothing to install), and no flow is learned for it
    expect(ins("host1", "l2") - before).toBe(toStranger.length);
    expect(l2To("host1", stranger)).toEqual([]);
    const arp = pkts.filter((p) => p.from === "host1" && p.inner?.arp?.tpa === "10.61.1.98");
    expect(arp.length).toBeGreaterThanOrEqual(1);
  });
});
