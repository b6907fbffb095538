/**
 * `l2.mode: reactive` with stateful security groups on both ends, across two
 * simulated hosts (the multi-host lab: each host its own namespace, OVS with
 * the userspace datapath and its conntrack, and agent; NB in etcd; Geneve).
 * One network, netS (geneve 621); host1 has p1 and t1, host2 has p2 and t2;
 * every port is in `sg` (ICMP and TCP in, everything out).
 *
 * The first packet of a conversation between a port here and a port on the
 * other host meets conntrack in its sender's zone (ingress_secgroup, then
 * ingress_secgroup_state commits it) before l2_lookup punts it for the
 * remote port's flow; the l2 handler then sends it on from l2_lookup with a
 * packet_out (continueAt), which skips the tables of the commit. That is
 * sound only when the punted copy's commit stuck: the reply comes back
 * through the sender's zone (egress_secgroup) and must be +est+rpl there,
 * not +inv. It does stick: the punt and the commit are one datapath action
 * list, the commit first (ofproto/trace of such a first SYN on OVS 3.1:
 * `ct(commit,zone=4,mark=0/0x1),sample(...userspace(...controller(...)))`),
 * so the connection is in the sender's zone before the agent even sees the
 * packet-in. What is checked: the very first ping between p1 and p2 (count 1,
 * nothing sent between them before) gets its reply, the connection is in
 * p1's zone on host1 afterwards, and each direction took its one l2
 * packet-in; the first TCP connection between t1 and t2 completes without a
 * retransmission (one SYN and one SYN-ACK cross the underlay, within less
 * than the 1 s initial retransmission timeout).
 */
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { portZone, table, type TableName } from "../../src/datapath/index.js";
import { NbApi } from "../../src/nb/api.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import type { Flow } from "../../src/openflow/flow.js";
import { SG_PRIORITY } from "../../src/apps/secgroup.js";
import { Underlay } from "../../src/sandbox/multihost.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { useEtcd } from "../harness/etcd.js";
import { waitFor } from "../harness/index.js";
import { spawnLines, tcpConnects, TCP_TOOL } from "../harness/netns-tools.js";

const etcd = useEtcd({ label: "l2-reactive-sg" });
let ul: Underlay | undefined;
let store: NbStore;
let api: NbApi;
const agents = new Map<string, Agent>();
const vms: Record<string, VmPort> = {};
const procs: ChildProcess[] = [];

const PORTS = [
  // id, host, mac, ip
  ["p1", "host1", "fa:16:3e:62:01:11", "10.62.1.11"],
  ["t1", "host1", "fa:16:3e:62:01:21", "10.62.1.21"],
  ["p2", "host2", "fa:16:3e:62:01:12", "10.62.1.12"],
  ["t2", "host2", "fa:16:3e:62:01:22", "10.62.1.22"],
] as const;
const hostOf = (id: string): string => PORTS.find((p) => p[0] === id)![1];
const mac = (id: string): string => PORTS.find((p) => p[0] === id)![2];
const ip = (id: string): string => PORTS.find((p) => p[0] === id)![3];
const TCP_PORT = 8080;

const agent = (h: string): Agent => agents.get(h)!;
const l2Ins = (h: string): number => agent(h).packetIns.get("l2") ?? 0;
const flows = (h: string): Flow[] => agent(h).reconciler.installedFlows();
const has = (f: Flow, field: string, value: number | string): boolean =>
  f.match.some((m) => m.field === field && String(m.value) === String(value));
const l2To = (h: string, m: string): Flow[] =>
  flows(h).filter((f) => f.table === table("l2_lookup") && has(f, "eth_dst", m));

/** Whether a port's rule flows (both directions, every conntrack state) are installed on its host. */
function rulesInstalled(id: string): boolean {
  const ofport = vms[id]!.ofport;
  const at = (t: TableName, field: string) =>
    flows(hostOf(id)).filter(
      (f) => f.table === table(t) && f.priority === SG_PRIORITY.rule && has(f, field, ofport),
    ).length;
  // egress "everything out": 3 states; ingress ICMP and TCP: 3 states each
  return at("ingress_secgroup_state", "in_port") === 3 && at("egress_secgroup_state", "reg7") === 6;
}

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

/** The conntrack entries of a zone on a host, one line each. */
async function conntrack(host: string, zone: number): Promise<string[]> {
  const r = await ul!.host(host).sandbox.appctl("ovs-vswitchd", "dpctl/dump-conntrack", `zone=${zone}`);
  return r.stdout.split("\n").filter((l) => l.trim() !== "");
}

beforeAll(async () => {
  store = await openStore(etcd().url);
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "netS", tenantId: "t1", networkType: "geneve", segmentationId: 621 });
  await api.create("subnet", { id: "subS", tenantId: "t1", networkId: "netS", cidr: "10.62.1.0/24" });
  await api.create("secgroup", {
    id: "sg",
    tenantId: "t1",
    rules: [
      { id: "icmp-in", direction: "ingress", protocol: "icmp" },
      { id: "tcp-in", direction: "ingress", protocol: "tcp" },
      { id: "all-out", direction: "egress" },
    ],
  });
  for (const [id, , m, a] of PORTS) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: "netS",
      macAddress: m,
      fixedIps: [{ subnetId: "subS", ipAddress: a }],
      securityGroups: ["sg"],
    });
  }
  ul = await Underlay.start({ hosts: ["host1", "host2"] });
  await startAgent("host1");
  await startAgent("host2");
  for (const [id, host, m, a] of PORTS) {
    vms[id] = await ul.host(host).addVm(id, { ifaceId: id, mac: m, ipCidr: `${a}/24` });
  }
  await waitFor(() => agent("host1").localPortCount() === 2, 20_000, "host1 binds p1 and t1");
  await waitFor(() => agent("host2").localPortCount() === 2, 20_000, "host2 binds p2 and t2");
  await waitFor(
    () =>
      ["p2", "t2"].every((p) => agent("host1").view.remotePort(p) !== undefined) &&
      ["p1", "t1"].every((p) => agent("host2").view.remotePort(p) !== undefined),
    20_000,
    "each host learns where the other's ports are",
  );
  for (const a of agents.values()) await a.settle();
  await waitFor(
    () => PORTS.every(([id]) => rulesInstalled(id)),
    20_000,
    "every port's group rules installed",
  );
  const server = spawnLines(vms.t2!.netns, ["python3", TCP_TOOL, "serve", String(TCP_PORT)]);
  procs.push(server.proc);
  await waitFor(() => server.lines.includes("listening"), 10_000, "the server on t2 to listen");
}, 180_000);

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  for (const a of agents.values()) await a.stop();
  await store?.close();
  await ul?.stop();
});

describe("l2.mode reactive with stateful security groups on both ends", () => {
  it("the l2 punt of a grouped port comes after conntrack, and no remote port has a flow yet", () => {
    for (const [id, host] of PORTS) {
      expect(agent(host).engine.conntrackBefore(table("l2_lookup"), vms[id]!.ofport), id).toBe(true);
    }
    for (const id of ["p2", "t2"]) expect(l2To("host1", mac(id)), id).toEqual([]);
    for (const id of ["p1", "t1"]) expect(l2To("host2", mac(id)), id).toEqual([]);
  });

  it("the very first ping gets its reply: the punted copy's commit in the sender's zone stuck", async () => {
    const before = { h1: l2Ins("host1"), h2: l2Ins("host2") };
    const r = await run(["ping", "-c", "1", "-W", "3", ip("p2")], {
      netns: vms.p1!.netns,
      allowFailure: true,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // the request was punted on host1 and the reply on host2, each sent on from l2_lookup
    expect(l2Ins("host1") - before.h1).toBe(1);
    expect(l2Ins("host2") - before.h2).toBe(1);
    expect(l2To("host1", mac("p2"))).toHaveLength(1);
    expect(l2To("host2", mac("p1"))).toHaveLength(1);
    // the echo was committed in p1's zone on host1 (only the punted copy went through it before the
    // reply), and in p2's zone on host2 (the continued copy, at egress_secgroup)
    const z1 = await conntrack("host1", portZone(vms.p1!.ofport));
    expect(
      z1.some((l) => l.startsWith("icmp,") && l.includes(`orig=(src=${ip("p1")},dst=${ip("p2")}`)),
      z1.join("\n"),
    ).toBe(true);
    const z2 = await conntrack("host2", portZone(vms.p2!.ofport));
    expect(
      z2.some((l) => l.startsWith("icmp,") && l.includes(`orig=(src=${ip("p1")},dst=${ip("p2")}`)),
      z2.join("\n"),
    ).toBe(true);
  });

  it("the first TCP connection completes without a retransmission: one SYN, one SYN-ACK", async () => {
    const before = { h1: l2Ins("host1"), h2: l2Ins("host2") };
    const cap = await ul!.capture();
    const started = performance.now();
    // under the 1 s initial retransmission timeout: a lost SYN or SYN-ACK would not make it
    const ok = await tcpConnects(vms.t1!.netns, ip("t2"), TCP_PORT, 0.9);
    const ms = performance.now() - started;
    const pkts = await cap.stop();
    expect(ok, `connected after ${ms.toFixed(0)} ms`).toBe(true);
    const tcp = pkts.filter(
      (p) => p.inner?.tcp && (p.inner.tcp.dstPort === TCP_PORT || p.inner.tcp.srcPort === TCP_PORT),
    );
    const syn = tcp.filter((p) => p.inner!.tcp!.flags.syn && !p.inner!.tcp!.flags.ack);
    const synAck = tcp.filter((p) => p.inner!.tcp!.flags.syn && p.inner!.tcp!.flags.ack);
    expect(syn.map((p) => p.from)).toEqual(["host1"]);
    expect(synAck.map((p) => p.from)).toEqual(["host2"]);
    // the SYN and SYN-ACK were punted; the packets right after them may be too (and are sent on the
    // same way) until OVS has revalidated the datapath flow that punted them
    expect(l2Ins("host1") - before.h1).toBeGreaterThanOrEqual(1);
    expect(l2Ins("host2") - before.h2).toBeGreaterThanOrEqual(1);
    const z1 = await conntrack("host1", portZone(vms.t1!.ofport));
    expect(
      z1.some((l) => l.startsWith("tcp,") && l.includes(`orig=(src=${ip("t1")},dst=${ip("t2")}`)),
      z1.join("\n"),
    ).toBe(true);
  });
});
