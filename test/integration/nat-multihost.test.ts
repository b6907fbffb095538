/**
 * NAT across three simulated hosts (the multi-host lab: each host its own
 * namespace, OVS and agent; the NB in etcd; Geneve over the underlay), with
 * the external network's physical network mapped to br-phy on every host, so
 * that flat frames ride the underlay bridge, where an "external" host (a
 * namespace on that bridge, 172.24.4.100) lives.
 *
 *   ext    flat on physnet1, external, 172.24.4.0/24
 *   net1   geneve 811, 10.81.1.0/24, router r1 (10.81.1.1); r1's gateway on ext
 *          is 172.24.4.10 with gateway candidates [host2, host3]
 *   vm1    on host1, floating IP 172.24.4.50
 *   vm2    on host1, no floating IP
 *
 * host2 and host3 have no port of r1's networks at all: they hold the router
 * because the gateway names them. What is checked: ARP for the floating IP
 * is answered by vm1's chassis alone, and the external host reaches vm1 by
 * it; vm2 reaches the external host through SNAT on host2 (host1 sends it
 * there through the tunnel, the conntrack entry is host2's); host2's agent
 * stops — within its liveness lease host1 sends to host3 instead, and a new
 * connection goes out through host3; host2's agent returns and SNAT goes
 * back to it; host1 is given an SNAT address of its own (distributed SNAT):
 * vm2 then leaves as that address, SNATed on host1, whose ARP host1 alone
 * answers, while vm1 keeps its floating IP, and once the address is removed
 * vm2 goes through the gateway again; vm1 moves to host3 and its floating IP
 * answers from there.
 */
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { Underlay, UNDERLAY_BRIDGE } from "../../src/sandbox/multihost.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { formatFlow } from "../../src/openflow/text.js";
import { run } from "../../src/util/exec.js";
import { useEtcd } from "../harness/etcd.js";
import { Cleanup, createNetns, createVeth, waitFor } from "../harness/index.js";
import { spawnLines, tcpConnects } from "../harness/netns-tools.js";

const HEARTBEAT_S = 1;
/** The liveness lease: three heartbeats (src/controller/chassis.ts). */
const LEASE_MS = 3 * HEARTBEAT_S * 1000;

/** TCP echo server that prints "peer <address>" for every connection it accepts. */
const PEER_SERVER = `
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("listening", flush=True)
def echo(c):
    with c:
        d = c.recv(4096)
        if d:
            c.sendall(d)
while True:
    c, a = s.accept()
    print("peer", a[0], flush=True)
    threading.Thread(target=echo, args=(c,), daemon=True).start()
`;

const etcd = useEtcd({ label: "nat-multihost" });
const cleanup = new Cleanup();
let ul: Underlay | undefined;
let store: NbStore;
let api: NbApi;
let extNs: string;
let fipMac: string;
const agents = new Map<string, Agent>();
const vms: Record<string, VmPort> = {};
const procs: ChildProcess[] = [];

const FIP = "172.24.4.50";
const SNAT_IP = "172.24.4.10";
/** host1's own SNAT address (distributed SNAT). */
const CHASSIS_IP = "172.24.4.21";
const EXT_HOST = "172.24.4.100";
const VMS = {
  vm1: { mac: "fa:16:3e:81:01:11", ip: "10.81.1.11" },
  vm2: { mac: "fa:16:3e:81:01:12", ip: "10.81.1.12" },
} as const;

async function startAgent(host: string): Promise<Agent> {
  const h = ul!.host(host);
  const a = await Agent.start(
    parseAgentConfig({
      chassis: host,
      tunnelIp: h.tunnelIp,
      ovsdb: h.sandbox.dbRemote,
      datapathType: "netdev",
      nb: `etcd://${etcd()
        .endpoints.map((e) => e.replace("http://", ""))
        .join(",")}`,
      bridgeMappings: { physnet1: "br-phy" },
      metrics: "",
      logLevel: "silent",
      heartbeatSeconds: HEARTBEAT_S,
    }),
  );
  agents.set(host, a);
  return a;
}

const agent = (h: string): Agent => agents.get(h)!;
const flowsOf = (h: string): string[] =>
  agent(h)
    .reconciler.installedFlows()
    .map((f) => formatFlow(f));
/** Where host1 sends r1's outbound traffic: the tunnel address in its redirect flow, if any. */
const redirectTo = (): string | undefined =>
  /set_field:([\d.]+)->tun_dst/.exec(flowsOf("host1").find((f) => f.includes("priority=298")) ?? "")?.[1];

async function python(netns: string, program: string, args: string[], ready: string): Promise<string[]> {
  const t = spawnLines(netns, ["python3", "-c", program, ...args]);
  procs.push(t.proc);
  await waitFor(() => t.lines.includes(ready), 10_000, `${ready} from python in ${netns}`);
  return t.lines;
}

function connects(netns: string, host: string, port: number, secs = 3): Promise<boolean> {
  return tcpConnects(netns, host, port, secs);
}

async function ping(netns: string, to: string): Promise<{ ok: boolean; out: string }> {
  const r = await run(["ping", "-c", "3", "-i", "0.2", "-W", "2", to], { netns, allowFailure: true });
  return { ok: r.code === 0, out: r.stdout + r.stderr };
}

/** The conntrack entries of a host's datapath that involve `ip`. */
async function conntrack(host: string, ip: string): Promise<string[]> {
  const r = await ul!.host(host).sandbox.appctl("ovs-vswitchd", "dpctl/dump-conntrack");
  return r.stdout.split("\n").filter((l) => l.includes(`src=${ip},`));
}

async function addVm(host: string, id: keyof typeof VMS): Promise<void> {
  vms[id] = await ul!
    .host(host)
    .addVm(id, { ifaceId: id, mac: VMS[id].mac, ipCidr: `${VMS[id].ip}/24`, gateway: "10.81.1.1" });
}

beforeAll(async () => {
  store = await openStore(
    `etcd://${etcd()
      .endpoints.map((e) => e.replace("http://", ""))
      .join(",")}`,
  );
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", {
    id: "ext",
    tenantId: "t1",
    networkType: "flat",
    physicalNetwork: "physnet1",
    external: true,
  });
  await api.create("subnet", {
    id: "extsub",
    tenantId: "t1",
    networkId: "ext",
    cidr: "172.24.4.0/24",
    gatewayIp: "172.24.4.1",
    enableDhcp: false,
  });
  await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 811 });
  await api.create("subnet", {
    id: "sub1",
    tenantId: "t1",
    networkId: "net1",
    cidr: "10.81.1.0/24",
    gatewayIp: "10.81.1.1",
    enableDhcp: false,
  });
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  await api.routerAddInterface("r1", { subnetId: "sub1" });
  await api.create("snat", {
    id: "gw1",
    tenantId: "t1",
    routerId: "r1",
    externalNetworkId: "ext",
    externalIpAddress: SNAT_IP,
    gatewayChassis: ["host2", "host3"],
  });
  for (const [id, v] of Object.entries(VMS)) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: "net1",
      macAddress: v.mac,
      fixedIps: [{ subnetId: "sub1", ipAddress: v.ip }],
    });
  }
  const f = await api.create("fip", {
    id: "f1",
    tenantId: "t1",
    floatingNetworkId: "ext",
    floatingIpAddress: FIP,
    portId: "vm1",
  });
  fipMac = f.value.macAddress;
  ul = await Underlay.start({ hosts: ["host1", "host2", "host3"] });
  // the external host: a namespace on the underlay bridge, where flat provider frames go
  extNs = await createNetns("exth", cleanup);
  await createVeth({ name: "eth0", netns: extNs }, { name: "ulext", netns: ul.netns });
  await run(["ip", "link", "set", "ulext", "master", UNDERLAY_BRIDGE], { netns: ul.netns });
  await run(["ethtool", "-K", "eth0", "tx", "off"], { netns: extNs });
  await run(["ip", "addr", "add", `${EXT_HOST}/24`, "dev", "eth0"], { netns: extNs });
  for (const h of ["host1", "host2", "host3"]) await startAgent(h);
  await addVm("host1", "vm1");
  await addVm("host1", "vm2");
  await waitFor(() => agent("host1").localPortCount() === 2, 20_000, "host1 binds vm1 and vm2");
  // the gateway candidates hold r1 and know where vm1 and vm2 are, without a port of their own
  for (const h of ["host2", "host3"]) {
    await waitFor(() => agent(h).view.remotePort("vm2") !== undefined, 20_000, `${h} learns vm2's place`);
  }
  for (const a of agents.values()) await a.settle();
}, 180_000);

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  for (const a of agents.values()) await a.stop();
  await store?.close();
  await ul?.stop();
  await cleanup.run();
});

describe("floating IP on three hosts", () => {
  it("ARP for the floating IP is answered by vm1's chassis alone; the external host reaches vm1 by it", async () => {
    const r = await run(["busybox", "arping", "-c", "1", "-w", "3", "-I", "eth0", FIP], {
      netns: extNs,
      allowFailure: true,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout.toLowerCase()).toContain(`[${fipMac}]`);
    expect(r.stdout).toMatch(/Received 1 response/);
    // one answer from the patch port (the physical network), one for host1's own VMs on ext
    expect(
      flowsOf("host1").filter((f) => f.includes(`arp_tpa=${FIP}`) && f.includes("in_port=")),
    ).toHaveLength(1);
    expect(flowsOf("host1").filter((f) => f.includes(`arp_tpa=${FIP}`))).toHaveLength(2);
    for (const h of ["host2", "host3"]) expect(flowsOf(h).filter((f) => f.includes(FIP))).toEqual([]);
    const p = await ping(extNs, FIP);
    expect(p.ok, p.out).toBe(true);
    expect(p.out).toMatch(/bytes from 172\.24\.4\.50: icmp_seq=1/);
  });
});

describe("SNAT with gateway failover", () => {
  it("vm2 reaches the external host through host2, the first candidate", async () => {
    expect(redirectTo()).toBe(ul!.host("host2").tunnelIp);
    const server = await python(extNs, PEER_SERVER, ["9000"], "listening");
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9000)).toBe(true);
    expect(server.filter((l) => l.startsWith("peer "))).toEqual([`peer ${SNAT_IP}`]);
    expect(await conntrack("host2", VMS.vm2.ip)).not.toEqual([]);
    expect(await conntrack("host3", VMS.vm2.ip)).toEqual([]);
  });

  it("host2's agent stops: within its liveness lease SNAT moves to host3, and new connections work", async () => {
    const stopped = Date.now();
    await agent("host2").stop();
    agents.delete("host2");
    await waitFor(() => redirectTo() === ul!.host("host3").tunnelIp, 20_000, "host1 redirects to host3");
    const movedMs = Date.now() - stopped;
    // the lease lapses LEASE_MS after the last heartbeat; allow a loaded machine a few seconds more
    expect(movedMs).toBeLessThan(LEASE_MS + 7000);
    await waitFor(
      () => flowsOf("host3").some((f) => f.includes(`nat(src=${SNAT_IP})`)),
      10_000,
      "host3 does r1's SNAT",
    );
    await agent("host1").settle();
    await agent("host3").settle();
    const server = await python(extNs, PEER_SERVER, ["9001"], "listening");
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9001)).toBe(true);
    expect(server.filter((l) => l.startsWith("peer "))).toEqual([`peer ${SNAT_IP}`]);
    expect(await conntrack("host3", VMS.vm2.ip)).not.toEqual([]);
    const p = await ping(vms.vm2!.netns, EXT_HOST);
    expect(p.ok, p.out).toBe(true);
    console.log(`SNAT moved to host3 ${movedMs} ms after host2's agent stopped (lease ${LEASE_MS} ms)`);
  });

  it("host2's agent returns: SNAT goes back to the first candidate", async () => {
    await startAgent("host2");
    await waitFor(() => redirectTo() === ul!.host("host2").tunnelIp, 20_000, "host1 redirects to host2");
    await waitFor(
      () => !flowsOf("host3").some((f) => f.includes(`nat(src=${SNAT_IP})`)),
      10_000,
      "host3 gives r1's SNAT up",
    );
    for (const a of agents.values()) await a.settle();
    const server = await python(extNs, PEER_SERVER, ["9002"], "listening");
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9002)).toBe(true);
    expect(server.filter((l) => l.startsWith("peer "))).toEqual([`peer ${SNAT_IP}`]);
  });
});

describe("distributed SNAT: host1 gets an address of its own", () => {
  it("vm2 leaves as host1's address, SNATed on host1; ARP for it is answered by host1 alone", async () => {
    await api.update("snat", "gw1", { chassisAddresses: [{ chassis: "host1", ipAddress: CHASSIS_IP }] });
    const mac = (await api.get("snat", "gw1")).value.chassisAddresses[0]!.macAddress;
    await waitFor(
      () => redirectTo() === undefined,
      20_000,
      "host1 stops sending r1's traffic to the gateway",
    );
    await waitFor(
      () => flowsOf("host1").some((f) => f.includes(`nat(src=${CHASSIS_IP})`)),
      20_000,
      "host1 SNATs to its own address",
    );
    for (const a of agents.values()) await a.settle();
    for (const h of ["host2", "host3"]) expect(flowsOf(h).filter((f) => f.includes(CHASSIS_IP))).toEqual([]);
    const arp = await run(["busybox", "arping", "-c", "1", "-w", "3", "-I", "eth0", CHASSIS_IP], {
      netns: extNs,
      allowFailure: true,
    });
    expect(arp.stdout).toMatch(/Received 1 response/);
    expect(arp.stdout.toLowerCase()).toContain(`[${mac}]`);
    const server = await python(extNs, PEER_SERVER, ["9003"], "listening");
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9003)).toBe(true);
    expect(server.filter((l) => l.startsWith("peer "))).toEqual([`peer ${CHASSIS_IP}`]);
    expect((await conntrack("host1", VMS.vm2.ip)).join("\n")).toContain(`dst=${CHASSIS_IP}`);
    const p = await ping(vms.vm2!.netns, EXT_HOST);
    expect(p.ok, p.out).toBe(true);
    // vm1 keeps its floating IP: the floating IP's flows sit above the router's SNAT
    const viaFip = await python(extNs, PEER_SERVER, ["9004"], "listening");
    expect(await connects(vms.vm1!.netns, EXT_HOST, 9004)).toBe(true);
    expect(viaFip.filter((l) => l.startsWith("peer "))).toEqual([`peer ${FIP}`]);
  });

  it("the address goes: host1 sends vm2 to the gateway again", async () => {
    await api.update("snat", "gw1", { chassisAddresses: [] });
    await waitFor(
      () => redirectTo() === ul!.host("host2").tunnelIp,
      20_000,
      "host1 redirects to host2 again",
    );
    expect(flowsOf("host1").filter((f) => f.includes(CHASSIS_IP))).toEqual([]);
    for (const a of agents.values()) await a.settle();
    const server = await python(extNs, PEER_SERVER, ["9005"], "listening");
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9005)).toBe(true);
    expect(server.filter((l) => l.startsWith("peer "))).toEqual([`peer ${SNAT_IP}`]);
  });
});

describe("a moving VM takes its floating IP along", () => {
  it("vm1 moves to host3: the floating IP is answered there, and nowhere else", async () => {
    await ul!.host("host1").sandbox.vsctl("del-port", "br-int", vms.vm1!.port);
    await run(["ip", "netns", "delete", vms.vm1!.netns]);
    await addVm("host3", "vm1");
    await waitFor(
      async () => (await api.get("lport", "vm1")).value.chassis === "host3",
      20_000,
      "host3 claims vm1",
    );
    await waitFor(
      () =>
        flowsOf("host3").some((f) => f.includes(`arp_tpa=${FIP}`)) &&
        !flowsOf("host1").some((f) => f.includes(FIP)),
      20_000,
      "the floating IP's flows on host3 only",
    );
    for (const a of agents.values()) await a.settle();
    // the physical network sends the floating IP's frames to host3 once it has seen host3's
    // announcement (gratuitous ARP, sent on the nat app's next timer tick, up to a second later)
    let last = "";
    await waitFor(
      async () => {
        const p = await ping(extNs, FIP);
        last = p.out;
        return p.ok;
      },
      15_000,
      "the floating IP answered from host3",
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${last}`);
    });
    const server = await python(vms.vm1!.netns, PEER_SERVER, ["8080"], "listening");
    expect(await connects(extNs, FIP, 8080)).toBe(true);
    expect(server.filter((l) => l.startsWith("peer "))).toEqual([`peer ${EXT_HOST}`]);
    const r = await run(["busybox", "arping", "-c", "1", "-w", "3", "-I", "eth0", FIP], {
      netns: extNs,
      allowFailure: true,
    });
    expect(r.stdout).toMatch(/Received 1 response/);
    expect(flowsOf("host2").filter((f) => f.includes(FIP))).toEqual([]);
  });
});
