/**
 * NAT on one host with real parts: a private OVS (userspace datapath and its
 * conntrack), the embedded NB, the flowdrake agent with the external
 * network's physical network mapped to br-ex, "VMs" in namespaces on br-int
 * and an "external" host in a namespace on br-ex (the physical network).
 *
 *   ext      flat on physnet1 (→ br-ex), external, 172.24.4.0/24; exthost .100
 *   net1     geneve 801, 10.80.1.0/24, router r1 (10.80.1.1), gateway on ext at
 *            172.24.4.10 with this chassis as its only gateway candidate
 *   vm1      10.80.1.11, floating IP 172.24.4.50
 *   vm2      10.80.1.12, no floating IP (SNAT)
 *   vm3      10.80.1.13, tries to send as 172.24.4.50
 *   vm4      172.24.4.20, a port on the external network itself, tries the same
 *
 * What is checked: ARP for the floating IP is answered from flows with the
 * floating IP's own MAC (and only for addresses that are NAT's); the external
 * host reaches vm1 by the floating IP, vm1 sees the external host's own
 * address, and what comes back carries the floating IP — also for
 * connections vm1 opens; vm2 leaves through SNAT as the gateway address, and
 * nobody outside opens a connection to it there; neither vm3 nor vm4 gets a
 * packet out with the floating IP as its source; a restarted agent keeps
 * the NAT flows and the next hops it learned; a deleted floating IP takes
 * its ARP answer and flows along, and its VM then leaves through SNAT. vm4,
 * on the external network itself and on the floating IP's chassis, reaches
 * vm1 by the floating IP although the physical network would never send its
 * frames back: ARP is answered and the replies delivered on br-int.
 */
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";
import { spawnLines, tcpConnects } from "../harness/netns-tools.js";

/** Prints "ready", then one line per IPv4 packet or ARP frame received on eth0. */
const SNIFFER = `
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
print("ready", flush=True)
while True:
    f, a = s.recvfrom(65535)
    if a[2] == socket.PACKET_OUTGOING:
        continue
    t = f[12:14]
    if t == b"\\x08\\x00":
        print("ip", f[23], socket.inet_ntoa(f[26:30]), socket.inet_ntoa(f[30:34]), flush=True)
    elif t == b"\\x08\\x06":
        op = int.from_bytes(f[20:22], "big")
        print("arp", op, f[22:28].hex(":"), socket.inet_ntoa(f[28:32]), socket.inet_ntoa(f[38:42]), flush=True)
`;

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

const sb = useOvsSandbox({ label: "nat", bridges: ["br-int", "br-ex"] });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};
const procs: ChildProcess[] = [];

const FIP = "172.24.4.50";
const SNAT_IP = "172.24.4.10";
const EXT_HOST = "172.24.4.100";
let fipMac: string;

interface Lines {
  lines: string[];
}

/** A long-running python program in a namespace, its stdout lines collected. */
async function python(netns: string, program: string, args: string[], ready: string): Promise<Lines> {
  const t = spawnLines(netns, ["python3", "-c", program, ...args]);
  procs.push(t.proc);
  await waitFor(() => t.lines.includes(ready), 10_000, `${ready} from python in ${netns}`);
  return t;
}

function connects(netns: string, host: string, port: number, secs = 2): Promise<boolean> {
  return tcpConnects(netns, host, port, secs);
}

async function ping(netns: string, to: string, extra: string[] = []): Promise<{ ok: boolean; out: string }> {
  const r = await run(["ping", "-c", "2", "-i", "0.2", "-W", "1", ...extra, to], {
    netns,
    allowFailure: true,
  });
  return { ok: r.code === 0, out: r.stdout + r.stderr };
}

/** Write a change and wait until the agent's switch realises it. */
async function realised<T extends { modRevision: number }>(write: Promise<T>): Promise<T> {
  const v = await write;
  await waitFor(() => agent!.realised >= v.modRevision, 20_000, `revision ${v.modRevision} realised`);
  return v;
}

function config() {
  return parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    bridgeMappings: { physnet1: "br-ex" },
    metrics: "127.0.0.1:0",
    logLevel: "silent",
  });
}

const peers = (s: Lines): string[] => s.lines.filter((l) => l.startsWith("peer ")).map((l) => l.slice(5));

beforeAll(async () => {
  dir = makeRunDir("nat-nb");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await sb().ofctl("add-flow", sb().mgmtRemote("br-ex"), "priority=0,actions=NORMAL");
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
  await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 801 });
  await api.create("subnet", {
    id: "sub1",
    tenantId: "t1",
    networkId: "net1",
    cidr: "10.80.1.0/24",
    gatewayIp: "10.80.1.1",
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
    gatewayChassis: ["host1"],
  });
  const VMS = [
    ["vm1", "net1", "sub1", "fa:16:3e:80:01:11", "10.80.1.11", "10.80.1.1"],
    ["vm2", "net1", "sub1", "fa:16:3e:80:01:12", "10.80.1.12", "10.80.1.1"],
    ["vm3", "net1", "sub1", "fa:16:3e:80:01:13", "10.80.1.13", "10.80.1.1"],
    ["vm4", "ext", "extsub", "fa:16:3e:80:04:20", "172.24.4.20", "172.24.4.1"],
  ] as const;
  for (const [id, net, sub, mac, ip] of VMS) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
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
  agent = await Agent.start(config(), { store });
  for (const [id, , , mac, ip, gw] of VMS) {
    vms[id] = await sb().addVm(id, { ifaceId: id, mac, ipCidr: `${ip}/24`, gateway: gw });
  }
  vms.exthost = await sb().addVm("exthost", {
    ifaceId: "exthost",
    bridge: "br-ex",
    mac: "02:00:00:24:04:64",
    ipCidr: `${EXT_HOST}/24`,
  });
  await waitFor(() => agent!.localPortCount() === 4, 20_000, "four ports bound");
  await agent.settle();
}, 120_000);

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("floating IP, distributed", () => {
  it("ARP for the floating IP is answered from flows with its own MAC; other addresses are not", async () => {
    const ext = vms.exthost!.netns;
    const r = await run(["busybox", "arping", "-c", "1", "-w", "2", "-I", "eth0", FIP], {
      netns: ext,
      allowFailure: true,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout.toLowerCase()).toContain(`[${fipMac}]`);
    // answered by OVS: the classification flow for ARP to the floating IP counted it
    const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote("br-int"), "table=0");
    expect(stdout.split("\n").find((l) => l.includes(`arp_tpa=${FIP}`))).toMatch(/n_packets=[1-9]/);
    const none = await run(["busybox", "arping", "-c", "1", "-w", "1", "-I", "eth0", "172.24.4.77"], {
      netns: ext,
      allowFailure: true,
    });
    expect(none.code, none.stdout).not.toBe(0);
  });

  it("the external host reaches vm1 by its floating IP; vm1 sees the host's address, replies carry the floating IP", async () => {
    const ext = vms.exthost!.netns;
    const p = await ping(ext, FIP);
    expect(p.ok, p.out).toBe(true);
    expect(p.out).toMatch(new RegExp(`bytes from ${FIP.replaceAll(".", "\\.")}: icmp_seq=1`));
    const server = await python(vms.vm1!.netns, PEER_SERVER, ["8080"], "listening");
    expect(await connects(ext, FIP, 8080)).toBe(true);
    expect(peers(server)).toEqual([EXT_HOST]);
  });

  it("vm1 leaves with its floating IP as the source, through conntrack in its router's zone", async () => {
    const server = await python(vms.exthost!.netns, PEER_SERVER, ["9090"], "listening");
    expect(await connects(vms.vm1!.netns, EXT_HOST, 9090)).toBe(true);
    expect(peers(server)).toEqual([FIP]);
    const p = await ping(vms.vm1!.netns, EXT_HOST);
    expect(p.ok, p.out).toBe(true);
    // the next hop was learned from the external host's ARP (a reactive flow per address)
    expect([...agent!.engine.ownerKeys()]).toContain(`nat/reactive/ext/${EXT_HOST}`);
    const ct = await sb().appctl("ovs-vswitchd", "dpctl/dump-conntrack");
    expect(ct.stdout).toMatch(new RegExp(`src=10\\.80\\.1\\.11,dst=${EXT_HOST}.*src=${EXT_HOST},dst=${FIP}`));
  });
});

describe("a VM on the external network itself, on the floating IP's chassis", () => {
  it("reaches vm1 by the floating IP through br-int alone: ARP answered here, replies delivered here", async () => {
    const vm4 = vms.vm4!.netns;
    const arp = await run(["busybox", "arping", "-c", "1", "-w", "2", "-I", "eth0", FIP], {
      netns: vm4,
      allowFailure: true,
    });
    expect(arp.code, arp.stdout + arp.stderr).toBe(0);
    expect(arp.stdout.toLowerCase()).toContain(`[${fipMac}]`);
    const p = await ping(vm4, FIP);
    expect(p.ok, p.out).toBe(true);
    expect(p.out).toMatch(new RegExp(`bytes from ${FIP.replaceAll(".", "\\.")}: icmp_seq=1`));
    const server = await python(vms.vm1!.netns, PEER_SERVER, ["8081"], "listening");
    expect(await connects(vm4, FIP, 8081)).toBe(true);
    expect(peers(server)).toEqual(["172.24.4.20"]);
    // answered and delivered on br-int: the ARP answer for a local VM and the next hop that is vm4 counted them
    const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote("br-int"));
    const counted = (re: RegExp) => stdout.split("\n").find((l) => re.test(l)) ?? "";
    expect(counted(new RegExp(`table=20,.*reg0=(0x)?0/0x2,.*arp_tpa=${FIP.replaceAll(".", "\\.")}`))).toMatch(
      /n_packets=[1-9]/,
    );
    expect(counted(/table=37,.*priority=350,.*nw_dst=172\.24\.4\.20 /)).toMatch(/n_packets=[1-9]/);
  });
});

describe("SNAT on the gateway chassis", () => {
  it("vm2 (no floating IP) reaches the external host as the gateway address", async () => {
    const server = await python(vms.exthost!.netns, PEER_SERVER, ["9191"], "listening");
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9191)).toBe(true);
    expect(await connects(vms.vm2!.netns, EXT_HOST, 9191)).toBe(true);
    expect(peers(server)).toEqual([SNAT_IP, SNAT_IP]);
    const p = await ping(vms.vm2!.netns, EXT_HOST);
    expect(p.ok, p.out).toBe(true);
  });

  it("nobody outside opens a connection through the gateway address", async () => {
    await python(vms.vm2!.netns, PEER_SERVER, ["8181"], "listening");
    expect(await connects(vms.vm2!.netns, "127.0.0.1", 8181)).toBe(true);
    expect(await connects(vms.exthost!.netns, SNAT_IP, 8181, 1)).toBe(false);
  });
});

describe("spoofing the floating IP", () => {
  it("another VM sending as the floating IP gets nothing out; its own traffic still does", async () => {
    const sniff = await python(vms.exthost!.netns, SNIFFER, [], "ready");
    const seen = (src: string): number =>
      sniff.lines.filter((l) => l.startsWith(`ip 1 ${src} ${EXT_HOST}`)).length;
    for (const vm of ["vm3", "vm4"]) {
      await run(["ip", "addr", "add", `${FIP}/32`, "dev", "eth0"], { netns: vms[vm]!.netns });
      const spoofed = await ping(vms[vm]!.netns, EXT_HOST, ["-I", FIP]);
      expect(spoofed.ok, `${vm}: ${spoofed.out}`).toBe(false);
      // a ping from the VM's own address afterwards takes the same way out and arrives
      const own = await ping(vms[vm]!.netns, EXT_HOST, ["-I", vm === "vm3" ? "10.80.1.13" : "172.24.4.20"]);
      expect(own.ok, `${vm}: ${own.out}`).toBe(true);
      await waitFor(() => seen(vm === "vm3" ? SNAT_IP : "172.24.4.20") >= 2, 5000, `${vm}'s own pings seen`);
      expect(seen(FIP), `${vm}: ${sniff.lines.join("\n")}`).toBe(0);
      // nor may it claim the address by ARP
      await run(["busybox", "arping", "-U", "-c", "2", "-I", "eth0", "-s", FIP, FIP], {
        netns: vms[vm]!.netns,
        allowFailure: true,
      });
      await run(["ip", "addr", "del", `${FIP}/32`, "dev", "eth0"], { netns: vms[vm]!.netns });
    }
    const p = await ping(vms.exthost!.netns, "172.24.4.20");
    expect(p.ok, p.out).toBe(true);
    await waitFor(() => sniff.lines.some((l) => l.startsWith("ip 1 172.24.4.20")), 5000, "vm4's reply");
    expect(
      sniff.lines.filter((l) => l.startsWith("arp") && l.includes(` ${FIP} `) && !l.includes(fipMac)),
    ).toEqual([]);
  });
});

describe("agent restart", () => {
  it("keeps the NAT flows and the learned next hops, and sends nothing", async () => {
    const learned = () =>
      agent!.reconciler.installedFlows().filter((f) => f.table === 37 && (f.idleTimeout ?? 0) > 0);
    expect(learned().length).toBeGreaterThan(0);
    const before = learned().length;
    await agent!.stop();
    agent = await Agent.start(config(), { store });
    expect(agent.lastPass).toMatchObject({ added: 0, modified: 0, deleted: 0 });
    expect(learned()).toHaveLength(before);
    expect([...agent.engine.ownerKeys()]).toContain(`nat/reactive/ext/${EXT_HOST}`);
    const p = await ping(vms.exthost!.netns, FIP);
    expect(p.ok, p.out).toBe(true);
  });
});

describe("a deleted floating IP", () => {
  it("takes its ARP answer and flows along; its VM then leaves through SNAT", async () => {
    await api.delete("fip", "f1");
    await realised(store.revision().then((modRevision) => ({ modRevision })));
    const flows = await sb().dumpFlows("br-int");
    expect(flows.filter((l) => l.includes(FIP))).toEqual([]);
    const r = await run(["busybox", "arping", "-c", "1", "-w", "1", "-I", "eth0", FIP], {
      netns: vms.exthost!.netns,
      allowFailure: true,
    });
    expect(r.code, r.stdout).not.toBe(0);
    const server = await python(vms.exthost!.netns, PEER_SERVER, ["9292"], "listening");
    expect(await connects(vms.vm1!.netns, EXT_HOST, 9292)).toBe(true);
    expect(peers(server)).toEqual([SNAT_IP]);
  });
});
