/**
 * Two simulated compute nodes, each its own namespace with its own
 * ovsdb-server, ovs-vswitchd (userspace datapath) and flowdrake agent, joined
 * by an underlay (src/sandbox/multihost.ts); the NB in a real etcd. VMs of one
 * network on different hosts reach each other over Geneve and over VXLAN —
 * the capture on the underlay shows the encapsulation and the VNI — get their
 * DHCP lease from their own host's agent, and keep talking when one host's
 * agent stops. host1's agent follows the etcd watch; host2's follows a
 * standalone `flowdrake publisher` over ZeroMQ.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { formatFlow } from "../../src/openflow/text.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { runDhcpClient } from "../../src/sandbox/dhcp-client.js";
import { Underlay } from "../../src/sandbox/multihost.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { useEtcd } from "../harness/etcd.js";
import { freeTcpPort, waitFor } from "../harness/index.js";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

const CLI = join(import.meta.dirname, "../../dist/src/cli/main.js");

const etcd = useEtcd({ label: "multihost" });
let ul: Underlay | undefined;
let store: NbStore;
let api: NbApi;
let dbUrl: string;
let pubEndpoint: string;
let publisher: ChildProcess | undefined;
const agents = new Map<string, Agent>();
const vms: Record<string, VmPort> = {};

const PORTS = [
  // id, network, host, mac, ip
  ["g1", "netg", "host1", "fa:16:3e:0a:00:01", "10.70.0.11"],
  ["g2", "netg", "host2", "fa:16:3e:0a:00:02", "10.70.0.12"],
  ["v1", "netv", "host1", "fa:16:3e:0b:00:01", "10.80.0.11"],
  ["v2", "netv", "host2", "fa:16:3e:0b:00:02", "10.80.0.12"],
  ["p1", "netp", "host1", "fa:16:3e:0c:00:01", "10.90.0.11"],
  ["p2", "netp", "host2", "fa:16:3e:0c:00:02", "10.90.0.12"],
  ["f1", "netf", "host1", "fa:16:3e:0d:00:01", "10.91.0.11"],
  ["f2", "netf", "host2", "fa:16:3e:0d:00:02", "10.91.0.12"],
] as const;
const SUBNET_OF: Record<string, string> = { netg: "subg", netv: "subv", netp: "subp", netf: "subf" };

async function startAgent(host: string): Promise<Agent> {
  const h = ul!.host(host);
  // host1 follows the store's watch; host2 the ZeroMQ feed of a standalone `flowdrake publisher`.
  const feed = host === "host2" ? { pubsub: pubEndpoint } : {};
  const a = await Agent.start(
    parseAgentConfig({
      chassis: host,
      tunnelIp: h.tunnelIp,
      ovsdb: h.sandbox.dbRemote,
      datapathType: "netdev",
      nb: dbUrl,
      ...feed,
      // physnet1 rides the underlay bridge: VLAN 100 and untagged (flat) frames between hosts.
      bridgeMappings: { physnet1: "br-phy" },
      metrics: "",
      logLevel: "silent",
      // a short liveness lease (3 s), so that a chassis whose agent stays down lapses within the test
      heartbeatSeconds: 1,
    }),
  );
  agents.set(host, a);
  return a;
}

/** A tunnel IPv4 address as the reg8 value dump-flows prints. */
function ipHex(ip: string): string {
  return `0x${ip
    .split(".")
    .reduce((a, o) => a * 256 + Number(o), 0)
    .toString(16)}`;
}

async function ping(from: VmPort, to: string, count = 3): Promise<boolean> {
  const r = await run(["ping", "-c", String(count), "-i", "0.2", "-W", "2", to], {
    netns: from.netns,
    allowFailure: true,
  });
  return r.code === 0;
}

beforeAll(async () => {
  dbUrl = `etcd://${etcd()
    .endpoints.map((e) => e.replace("http://", ""))
    .join(",")}`;
  store = await openStore(dbUrl);
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "netg", tenantId: "t1", networkType: "geneve", segmentationId: 3001 });
  await api.create("subnet", {
    id: "subg",
    tenantId: "t1",
    networkId: "netg",
    cidr: "10.70.0.0/24",
    dnsNameservers: ["10.70.0.53"],
  });
  await api.create("lswitch", { id: "netv", tenantId: "t1", networkType: "vxlan", segmentationId: 3002 });
  await api.create("subnet", { id: "subv", tenantId: "t1", networkId: "netv", cidr: "10.80.0.0/24" });
  await api.create("lswitch", {
    id: "netp",
    tenantId: "t1",
    networkType: "vlan",
    physicalNetwork: "physnet1",
    segmentationId: 100,
  });
  await api.create("subnet", { id: "subp", tenantId: "t1", networkId: "netp", cidr: "10.90.0.0/24" });
  await api.create("lswitch", {
    id: "netf",
    tenantId: "t1",
    networkType: "flat",
    physicalNetwork: "physnet1",
  });
  await api.create("subnet", { id: "subf", tenantId: "t1", networkId: "netf", cidr: "10.91.0.0/24" });
  for (const [id, net, , mac, ip] of PORTS) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: SUBNET_OF[net]!, ipAddress: ip }],
    });
  }
  pubEndpoint = `tcp://127.0.0.1:${await freeTcpPort()}`;
  publisher = spawn(process.execPath, [CLI, "publisher", "--db", dbUrl, "--bind", pubEndpoint], {
    stdio: "ignore",
  });
  ul = await Underlay.start({ hosts: ["host1", "host2"] });
  await startAgent("host1");
  await startAgent("host2");
  for (const [id, , host, mac] of PORTS) vms[id] = await ul.host(host).addVm(id, { ifaceId: id, mac });
  for (const [host, a] of agents) {
    await waitFor(() => a.localPortCount() === 4, 20_000, `${host} binds its four ports`);
  }
  // Each agent sees the other's ports only once they were claimed in the NB.
  for (const [host, a] of agents) {
    await waitFor(
      () => PORTS.filter((p) => p[2] !== host).every((p) => a.view.remotePort(p[0]) !== undefined),
      20_000,
      `${host} learns the remote ports`,
    );
    await a.settle();
  }
}, 180_000);

afterAll(async () => {
  publisher?.kill("SIGKILL");
  for (const a of agents.values()) await a.stop();
  await store?.close();
  await ul?.stop();
});

describe("agents on two hosts", () => {
  it("host2 follows the publisher's topics for its networks; host1 the watch", () => {
    expect(agents.get("host1")!.nbTopics()).toEqual([]);
    expect(agents.get("host2")!.nbTopics()).toEqual(expect.arrayContaining(["n/netg/", "n/netv/", "c/"]));
  });

  it("each VM gets its lease from its own host's agent", async () => {
    for (const id of ["g1", "g2", "v1", "v2", "p1", "p2", "f1", "f2"]) {
      const lease = await runDhcpClient(vms[id]!.netns, { apply: true, timeoutS: 10 });
      expect(lease?.ip, id).toBe(PORTS.find((p) => p[0] === id)![4]);
    }
    expect(agents.get("host1")!.packetIns.get("dhcp")).toBeGreaterThanOrEqual(8);
    expect(agents.get("host2")!.packetIns.get("dhcp")).toBeGreaterThanOrEqual(8);
  });

  it("VMs on a Geneve network on different hosts ping each other through a Geneve tunnel", async () => {
    const cap = await ul!.capture();
    expect(await ping(vms.g1!, "10.70.0.12")).toBe(true);
    const pkts = await cap.stop();
    const geneve = pkts.filter((p) => p.encap === "geneve");
    expect(geneve.length).toBeGreaterThanOrEqual(6);
    expect(new Set(geneve.map((p) => p.vni))).toEqual(new Set([3001]));
    expect(geneve.some((p) => p.from === "host1" && p.dstIp === ul!.host("host2").tunnelIp)).toBe(true);
    // (the VXLAN network's own chatter — IPv6 router solicitations and the like — may cross too)
    expect(pkts.filter((p) => p.encap === "vxlan" && p.inner?.ipv4?.src.startsWith("10.70."))).toEqual([]);
  });

  it("VMs on a VXLAN network on different hosts ping each other through a VXLAN tunnel", async () => {
    const cap = await ul!.capture();
    expect(await ping(vms.v2!, "10.80.0.11")).toBe(true);
    const pkts = await cap.stop();
    const vxlan = pkts.filter((p) => p.encap === "vxlan");
    expect(vxlan.length).toBeGreaterThanOrEqual(6);
    expect(new Set(vxlan.map((p) => p.vni))).toEqual(new Set([3002]));
  });

  it("networks stay apart across hosts", async () => {
    await run(["ip", "addr", "add", "10.70.0.99/24", "dev", "eth0"], { netns: vms.v1!.netns });
    expect(await ping(vms.v1!, "10.70.0.12", 2)).toBe(false);
    await run(["ip", "addr", "del", "10.70.0.99/24", "dev", "eth0"], { netns: vms.v1!.netns });
  });

  it("a port added on host2 later becomes reachable from host1", async () => {
    await api.create("lport", {
      id: "g3",
      tenantId: "t1",
      networkId: "netg",
      macAddress: "fa:16:3e:0a:00:03",
      fixedIps: [{ subnetId: "subg", ipAddress: "10.70.0.13" }],
    });
    vms.g3 = await ul!.host("host2").addVm("g3", {
      ifaceId: "g3",
      mac: "fa:16:3e:0a:00:03",
      ipCidr: "10.70.0.13/24",
    });
    await waitFor(() => agents.get("host1")!.view.remotePort("g3") !== undefined, 20_000, "host1 learns g3");
    await agents.get("host1")!.settle();
    await waitFor(() => ping(vms.g1!, "10.70.0.13", 2), 20_000, "g1 → g3");
  });

  it("a VLAN provider network crosses the physical network tagged, not tunnelled", async () => {
    const cap = await ul!.capture();
    expect(await ping(vms.p1!, "10.90.0.12")).toBe(true);
    const pkts = await cap.stop();
    expect(pkts.filter((p) => p.inner?.ipv4?.src.startsWith("10.90."))).toEqual([]);
    const h1 = await ul!.host("host1").sandbox.ofctl("dump-flows", ul!.host("host1").sandbox.mgmtRemote());
    expect(h1.stdout).toMatch(
      /table=52, n_packets=[1-9]\d*, .*reg6=0x1000064 actions=push_vlan:0x8100,set_field:4196->vlan_vid/,
    );
    expect(h1.stdout).toMatch(/n_packets=[1-9]\d*, .*in_port=\d+,dl_vlan=100 actions=pop_vlan/);
  });

  it("a flat provider network crosses the physical network untagged", async () => {
    expect(await ping(vms.f2!, "10.91.0.11")).toBe(true);
    const h2 = await ul!.host("host2").sandbox.ofctl("dump-flows", ul!.host("host2").sandbox.mgmtRemote());
    expect(h2.stdout).toMatch(/n_packets=[1-9]\d*, .*vlan_tci=0x0000\/0x1fff actions=set_field:0x2/);
  });

  it("stopping host2's agent does not stop existing traffic; a restarted agent takes over seamlessly", async () => {
    await agents.get("host2")!.stop();
    agents.delete("host2");
    expect(await ping(vms.g1!, "10.70.0.12")).toBe(true);
    expect(await ping(vms.v1!, "10.80.0.12")).toBe(true);
    // a new agent takes the chassis over in one write: host1 never sees host2 go
    const h1 = agents.get("host1")!;
    const dropsBefore = h1.reconciler.totals.deleted;
    await startAgent("host2");
    await agents.get("host2")!.settle();
    await h1.settle();
    expect(h1.view.remotePort("g2")).toBeDefined();
    expect(h1.reconciler.totals.deleted).toBe(dropsBefore);
    expect(await ping(vms.g1!, "10.70.0.12")).toBe(true);
  });

  it("a chassis whose agent stays down is dropped once its liveness lapses, and restored when it returns", async () => {
    const h1 = agents.get("host1")!;
    await agents.get("host2")!.stop();
    agents.delete("host2");
    // the lease (3 heartbeats of 1 s) lapses; host1 stops tunnelling to host2
    await waitFor(() => h1.view.remotePort("g2") === undefined, 15_000, "host2's liveness lapses on host1");
    await h1.settle();
    const flows = h1.reconciler.installedFlows().map((f) => formatFlow(f));
    expect(flows.some((f) => f.includes("fa:16:3e:0a:00:02"))).toBe(false);
    expect(flows.some((f) => f.includes(`->reg8`) && f.includes(ipHex(ul!.host("host2").tunnelIp)))).toBe(
      false,
    );
    expect(await ping(vms.g1!, "10.70.0.12", 2)).toBe(false);
    // host2's agent comes back: host1 wires it again
    await startAgent("host2");
    await waitFor(() => h1.view.remotePort("g2") !== undefined, 15_000, "host2 back on host1");
    await h1.settle();
    await agents.get("host2")!.settle();
    expect(await ping(vms.g1!, "10.70.0.12")).toBe(true);
  });
});
