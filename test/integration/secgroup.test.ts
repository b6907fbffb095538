/**
 * Security groups with real connections: a private OVS (userspace datapath,
 * its conntrack), the embedded NB, the flowdrake agent, and VMs in
 * namespaces running real TCP endpoints (test/harness/tcp-tool.py) and ping.
 *
 *   web      (a1's group)   ingress tcp 8080 from anywhere, tcp 9000-9100
 *                           from members of `clients`, ICMP echo request,
 *                           IPv6 tcp 8080; egress anything (v4 and v6)
 *   clients  (a2's group)   egress anything (v4 and v6); no ingress rule
 *   others   (a3's group)   egress anything
 *
 * What is checked: allowed ports connect and denied ones do not (both
 * directions are default deny, replies pass); the port-range rule follows
 * the remote group's membership; removing a rule cuts the connection it
 * allowed while a connection another rule allows keeps flowing; IPv6;
 * port security off on the network lifts the groups; a port that goes has
 * its conntrack zone flushed.
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
import { spawnLines, tcpConnects, TCP_TOOL, type LineProc } from "../harness/netns-tools.js";

const sb = useOvsSandbox({ label: "secgroup" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};
const procs: ChildProcess[] = [];

const VM = {
  a1: { mac: "fa:16:3e:70:00:01", ip: "10.70.0.11", ip6: "fd70::11" },
  a2: { mac: "fa:16:3e:70:00:02", ip: "10.70.0.12", ip6: "fd70::12" },
  a3: { mac: "fa:16:3e:70:00:03", ip: "10.70.0.13", ip6: "fd70::13" },
} as const;
type VmName = keyof typeof VM;

const WEB_RULES = [
  { id: "http", direction: "ingress", protocol: "tcp", portRangeMin: 8080, portRangeMax: 8080 },
  {
    id: "range",
    direction: "ingress",
    protocol: "tcp",
    portRangeMin: 9000,
    portRangeMax: 9100,
    remoteGroupId: "clients",
  },
  { id: "echo", direction: "ingress", protocol: "icmp", portRangeMin: 8, portRangeMax: 0 },
  {
    id: "http6",
    direction: "ingress",
    ethertype: "IPv6",
    protocol: "tcp",
    portRangeMin: 8080,
    portRangeMax: 8080,
  },
  { id: "out4", direction: "egress" },
  { id: "out6", direction: "egress", ethertype: "IPv6" },
];
const EGRESS_ONLY = [
  { id: "out4", direction: "egress" },
  { id: "out6", direction: "egress", ethertype: "IPv6" },
];

/** Run tcp-tool.py in a VM; its output lines as they come. */
function tool(vm: VmName, args: string[]): LineProc {
  const t = spawnLines(vms[vm]!.netns, ["python3", TCP_TOOL, ...args]);
  procs.push(t.proc);
  return t;
}

/** One connection attempt: true when it connected and echoed within `secs`. */
function connects(from: VmName, host: string, port: number, secs = 1.5): Promise<boolean> {
  return tcpConnects(vms[from]!.netns, host, port, secs);
}

async function pings(from: VmName, to: string): Promise<boolean> {
  const r = await run(["ping", "-c", "1", "-W", "1", to], { netns: vms[from]!.netns, allowFailure: true });
  return r.code === 0;
}

function echoes(s: { lines: string[] }): number {
  return s.lines.filter((l) => l.startsWith("echo ")).length;
}

/** Write a change and wait until the agent's switch realises it. */
async function realised<T extends { modRevision: number }>(write: Promise<T>): Promise<void> {
  const { modRevision } = await write;
  await waitFor(() => agent!.realised >= modRevision, 20_000, `revision ${modRevision} realised`);
}

beforeAll(async () => {
  dir = makeRunDir("secgroup");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "netA", tenantId: "t1", networkType: "geneve", segmentationId: 700 });
  await api.create("subnet", {
    id: "subA",
    tenantId: "t1",
    networkId: "netA",
    cidr: "10.70.0.0/24",
    gatewayIp: "10.70.0.1",
  });
  await api.create("subnet", {
    id: "subA6",
    tenantId: "t1",
    networkId: "netA",
    cidr: "fd70::/64",
    ipVersion: 6,
    gatewayIp: "fd70::1",
  });
  await api.create("secgroup", { id: "clients", tenantId: "t1", rules: EGRESS_ONLY });
  await api.create("secgroup", { id: "others", tenantId: "t1", rules: EGRESS_ONLY });
  await api.create("secgroup", { id: "web", tenantId: "t1", rules: WEB_RULES });
  const groups: Record<VmName, string> = { a1: "web", a2: "clients", a3: "others" };
  for (const [id, v] of Object.entries(VM) as [VmName, (typeof VM)[VmName]][]) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: "netA",
      macAddress: v.mac,
      fixedIps: [
        { subnetId: "subA", ipAddress: v.ip },
        { subnetId: "subA6", ipAddress: v.ip6 },
      ],
      securityGroups: [groups[id]],
    });
  }
  agent = await Agent.start(
    parseAgentConfig({
      chassis: "host1",
      tunnelIp: "192.0.2.1",
      ovsdb: sb().dbRemote,
      datapathType: "netdev",
      metrics: "",
      logLevel: "silent",
    }),
    { store },
  );
  for (const [id, v] of Object.entries(VM) as [VmName, (typeof VM)[VmName]][]) {
    vms[id] = await sb().addVm(id, { ifaceId: id, mac: v.mac, ipCidr: `${v.ip}/24` });
    await run(["ip", "-6", "addr", "add", `${v.ip6}/64`, "dev", "eth0", "nodad"], { netns: vms[id].netns });
  }
  await waitFor(() => agent!.localPortCount() === 3, 20_000, "three ports bound");
  await agent.settle();
  const server = tool("a1", ["serve", "8080", "8081", "9000", "9050"]);
  await waitFor(() => server.lines.includes("listening"), 10_000, "the server on a1 to listen");
}, 120_000);

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("security groups through the agent", () => {
  it("an allowed port connects, a denied one does not; replies come back", async () => {
    expect(await connects("a2", VM.a1.ip, 8080)).toBe(true);
    expect(await connects("a2", VM.a1.ip, 8081)).toBe(false);
    expect(await connects("a3", VM.a1.ip, 8080)).toBe(true);
  });

  it("ICMP by type: echo requests to a1 pass, a2 (no ingress rule) answers none", async () => {
    expect(await pings("a2", VM.a1.ip)).toBe(true);
    expect(await pings("a1", VM.a2.ip)).toBe(false);
    // the same rule for timestamp requests (type 13) no longer admits an echo request
    const timestamp = WEB_RULES.map((r) => (r.id === "echo" ? { ...r, portRangeMin: 13 } : r));
    await realised(api.update("secgroup", "web", { rules: timestamp }));
    expect(await pings("a2", VM.a1.ip)).toBe(false);
    await realised(api.update("secgroup", "web", { rules: WEB_RULES }));
    expect(await pings("a2", VM.a1.ip)).toBe(true);
  });

  it("a port range from a remote group follows the group's membership", async () => {
    expect(await connects("a2", VM.a1.ip, 9050)).toBe(true);
    expect(await connects("a3", VM.a1.ip, 9000)).toBe(false);
    await realised(api.update("lport", "a3", { securityGroups: ["others", "clients"] }));
    expect(await connects("a3", VM.a1.ip, 9000)).toBe(true);
    await realised(api.update("lport", "a3", { securityGroups: ["others"] }));
    expect(await connects("a3", VM.a1.ip, 9000)).toBe(false);
  });

  it("IPv6: the IPv6 rule admits tcp 8080 and nothing else", async () => {
    expect(await connects("a2", VM.a1.ip6, 8080)).toBe(true);
    expect(await connects("a2", VM.a1.ip6, 8081)).toBe(false);
  });

  it("removing a rule cuts the connection it allowed; one another rule allows keeps flowing", async () => {
    const cut = tool("a2", ["stream", VM.a1.ip, "8080"]);
    const kept = tool("a2", ["stream", VM.a1.ip, "9050"]);
    await waitFor(() => echoes(cut) >= 5 && echoes(kept) >= 5, 10_000, "both streams echoing");
    await realised(api.update("secgroup", "web", { rules: WEB_RULES.filter((r) => r.id !== "http") }));
    // the cut stream may still see echoes already in flight; then nothing more, while the kept one goes on
    const atCut = echoes(cut);
    const keptAtCut = echoes(kept);
    await waitFor(() => echoes(kept) >= keptAtCut + 20, 10_000, "the kept stream to go on");
    expect(echoes(cut)).toBeLessThanOrEqual(atCut + 2);
    expect(await connects("a2", VM.a1.ip, 8080)).toBe(false);
    // the rule back: a new connection is allowed again (the blocked one is not revived)
    await realised(api.update("secgroup", "web", { rules: WEB_RULES }));
    expect(await connects("a2", VM.a1.ip, 8080)).toBe(true);
  });

  it("port security off on the network lifts the groups", async () => {
    expect(await connects("a2", VM.a1.ip, 8081)).toBe(false);
    await realised(api.update("lswitch", "netA", { portSecurityEnabled: false }));
    expect(await connects("a2", VM.a1.ip, 8081)).toBe(true);
    await realised(api.update("lswitch", "netA", { portSecurityEnabled: true }));
    expect(await connects("a2", VM.a1.ip, 8081)).toBe(false);
  });

  it("a port that goes has its conntrack zone flushed", async () => {
    const zone = `zone=${vms.a2!.ofport}`;
    const entries = async (): Promise<string> =>
      (await sb().appctl("ovs-vswitchd", "dpctl/dump-conntrack", zone)).stdout.trim();
    expect(await connects("a2", VM.a1.ip, 8080)).toBe(true);
    expect(await entries()).toContain("dport=8080");
    await sb().vsctl("del-port", "br-int", vms.a2!.port);
    await waitFor(async () => (await entries()) === "", 20_000, `conntrack ${zone} flushed`);
    // a1's zone keeps its own entries (only the gone port's zone is flushed)
    const a1 = (await sb().appctl("ovs-vswitchd", "dpctl/dump-conntrack", `zone=${vms.a1!.ofport}`)).stdout;
    expect(a1).toContain("dport=8080");
  });
});
