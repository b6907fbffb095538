/**
 * The distributed router across two simulated hosts (the multi-host lab: each
 * host its own namespace, OVS and agent; NB in etcd; real Geneve and VXLAN
 * over the underlay). Router r1 joins netA (geneve 601), netB (geneve 602)
 * and netC (vxlan 603); host1 has only a1 on netA, host2 has a2 (netA), b2
 * (netB) and c2 (netC).
 *
 * Routing happens on the source host: a1's first packet to b2 is one
 * packet-in on host1's agent and none on host2's; it crosses the underlay
 * already carrying netB's VNI (host1 has no port on netB, so the host route
 * goes straight into the tunnel), and the reply is routed on host2 the same
 * way. A VM moved to the other host (unplugged, plugged there) is reachable
 * on the next packet, and every host route to it that pointed at its old
 * place is gone from both hosts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
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

const etcd = useEtcd({ label: "l3-multihost" });
let ul: Underlay | undefined;
let store: NbStore;
let api: NbApi;
const agents = new Map<string, Agent>();
const vms: Record<string, VmPort> = {};

const PORTS = [
  // id, network, subnet, host, mac, ip
  ["a1", "netA", "subA", "host1", "fa:16:3e:60:01:11", "10.60.1.11"],
  ["a2", "netA", "subA", "host2", "fa:16:3e:60:01:12", "10.60.1.12"],
  ["b2", "netB", "subB", "host2", "fa:16:3e:60:02:12", "10.60.2.12"],
  ["c2", "netC", "subC", "host2", "fa:16:3e:60:03:12", "10.60.3.12"],
] as const;

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
    }),
  );
  agents.set(host, a);
  return a;
}

const agent = (h: string): Agent => agents.get(h)!;
const l3Ins = (h: string): number => agent(h).packetIns.get("l3") ?? 0;
const routesTo = (h: string, ip: string): Flow[] =>
  agent(h)
    .reconciler.installedFlows()
    .filter((f) => f.table === 30 && (f.idleTimeout ?? 0) > 0 && f.match.some((m) => m.value === ip));

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
  for (const [net, type, seg, sub, cidr] of [
    ["netA", "geneve", 601, "subA", "10.60.1.0/24"],
    ["netB", "geneve", 602, "subB", "10.60.2.0/24"],
    ["netC", "vxlan", 603, "subC", "10.60.3.0/24"],
  ] as const) {
    await api.create("lswitch", { id: net, tenantId: "t1", networkType: type, segmentationId: seg });
    await api.create("subnet", { id: sub, tenantId: "t1", networkId: net, cidr });
  }
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  for (const sub of ["subA", "subB", "subC"]) await api.routerAddInterface("r1", { subnetId: sub });
  for (const [id, net, sub, , mac, ip] of PORTS) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
    });
  }
  ul = await Underlay.start({ hosts: ["host1", "host2"] });
  await startAgent("host1");
  await startAgent("host2");
  for (const [id, , , host, mac] of PORTS) vms[id] = await ul.host(host).addVm(id, { ifaceId: id, mac });
  await waitFor(() => agent("host1").localPortCount() === 1, 20_000, "host1 binds a1");
  await waitFor(() => agent("host2").localPortCount() === 3, 20_000, "host2 binds three ports");
  await waitFor(() => agent("host1").view.remotePort("b2") !== undefined, 20_000, "host1 learns b2's place");
  for (const a of agents.values()) await a.settle();
  for (const [id] of PORTS) {
    const lease = await runDhcpClient(vms[id]!.netns, { apply: true, timeoutS: 10 });
    expect(lease?.router, id).toBeDefined();
  }
}, 180_000);

afterAll(async () => {
  for (const a of agents.values()) await a.stop();
  await store?.close();
  await ul?.stop();
});

describe("distributed router on two hosts", () => {
  it("routes on the source host: one packet-in there, none on the other, the destination's VNI on the wire", async () => {
    const in1 = l3Ins("host1");
    const in2 = l3Ins("host2");
    const cap = await ul!.capture();
    expect(await ping("a1", "10.60.2.12", 1)).toBe(true);
    const pkts = await cap.stop();
    // a1 → b2 decided on host1; b2's reply decided on host2
    expect(l3Ins("host1") - in1).toBe(1);
    expect(l3Ins("host2") - in2).toBe(1);
    const there = pkts.filter((p) => p.inner?.ipv4?.dst === "10.60.2.12" && p.inner.icmp?.type === 8);
    expect(there.length).toBeGreaterThanOrEqual(1);
    for (const p of there) {
      expect(p).toMatchObject({ from: "host1", encap: "geneve", vni: 602 });
      // rewritten on host1: the router's netB MAC as source, b2's MAC as destination, TTL 63
      expect(p.inner!.eth.dst).toBe("fa:16:3e:60:02:12");
      expect(p.inner!.ipv4!.ttl).toBe(63);
    }
    const back = pkts.filter((p) => p.inner?.ipv4?.dst === "10.60.1.11" && p.inner.icmp?.type === 0);
    for (const p of back) expect(p).toMatchObject({ from: "host2", encap: "geneve", vni: 601 });
    expect(back.length).toBeGreaterThanOrEqual(1);
    // later packets take no packet-in anywhere
    expect(await ping("a1", "10.60.2.12", 3)).toBe(true);
    expect(l3Ins("host1") - in1).toBe(1);
    expect(l3Ins("host2") - in2).toBe(1);
  });

  it("routes into a VXLAN network from a host without a port on it", async () => {
    const cap = await ul!.capture();
    expect(await ping("a1", "10.60.3.12", 2)).toBe(true);
    const pkts = await cap.stop();
    const there = pkts.filter((p) => p.inner?.ipv4?.dst === "10.60.3.12");
    expect(there.length).toBeGreaterThanOrEqual(1);
    for (const p of there) expect(p).toMatchObject({ from: "host1", encap: "vxlan", vni: 603 });
  });

  it("traceroute across hosts shows the gateway hop", async () => {
    const tr = await run(["busybox", "traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", "10.60.2.12"], {
      netns: vms.a1!.netns,
      allowFailure: true,
    });
    const hops = tr.stdout.split("\n").filter((l) => /^\s*\d+\s/.test(l));
    expect(
      hops.map((h) => h.trim().split(/\s+/)[1]),
      tr.stdout + tr.stderr,
    ).toEqual(["10.60.1.1", "10.60.2.12"]);
  });

  it("a VM moved to the other host is reachable on the next packet; no route points at its old place", async () => {
    expect(await ping("a2", "10.60.2.12", 1)).toBe(true); // host2 gets a local route a2 → b2
    expect(routesTo("host1", "10.60.2.12")).toHaveLength(1);
    expect(routesTo("host2", "10.60.2.12")).toHaveLength(1);
    // unplug b2 on host2, plug it on host1 (same MAC, same address)
    await ul!.host("host2").sandbox.vsctl("del-port", "br-int", vms.b2!.port);
    await run(["ip", "netns", "delete", vms.b2!.netns]);
    vms.b2 = await ul!.host("host1").addVm("b2", { ifaceId: "b2", mac: "fa:16:3e:60:02:12" });
    await waitFor(
      async () => (await api.get("lport", "b2")).value.chassis === "host1",
      20_000,
      "host1 claims b2",
    );
    await waitFor(
      () => routesTo("host1", "10.60.2.12").length === 0 && routesTo("host2", "10.60.2.12").length === 0,
      20_000,
      "the routes to b2's old place removed on both hosts",
    );
    const lease = await runDhcpClient(vms.b2.netns, { apply: true, timeoutS: 10 });
    expect(lease?.ip).toBe("10.60.2.12");
    for (const a of agents.values()) await a.settle();
    expect(await ping("a1", "10.60.2.12", 2)).toBe(true);
    expect(await ping("a2", "10.60.2.12", 2)).toBe(true);
    // now local on host1: delivered there, not tunnelled
    const r1 = routesTo("host1", "10.60.2.12");
    expect(r1).toHaveLength(1);
    expect(JSON.stringify(r1[0]!.instructions)).toContain("goto_table");
  });
});
