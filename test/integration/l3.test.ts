/**
 * The distributed router on one host, with real parts: a private OVS
 * (userspace datapath), the embedded NB, "VMs" in namespaces that get their
 * address and default route from the agent's DHCP, and real ping and
 * traceroute inside them. Router r1 joins netA (10.50.1.0/24), netB
 * (10.50.2.0/24) and netC (10.50.3.0/24).
 *
 * Reactive mode (the default): the first packet of a new pair is one
 * packet-in per direction on this host's agent, later packets take none, and
 * a host route serves the packets of every network of the router; the
 * host route the agent installed has an idle timeout and goes when the
 * destination port goes, or when it idles out (flow_removed); a restarted
 * agent keeps the host routes still valid and sends nothing. ICMP: the
 * gateway answers ping from flows, traceroute shows the gateway hop, an
 * address with no port gets host unreachable, one outside every subnet net
 * unreachable. Proactive mode: the same pings with no packet-in at all.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { runDhcpClient } from "../../src/sandbox/dhcp-client.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";

const sb = useOvsSandbox({ label: "l3" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};

function config(mode: "reactive" | "proactive" = "reactive") {
  return parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    metrics: "127.0.0.1:0",
    logLevel: "silent",
    l3: { mode, idleTimeoutS: 3 },
  });
}

async function ping(from: string, to: string, count = 2): Promise<{ ok: boolean; out: string }> {
  const r = await run(["ping", "-c", String(count), "-i", "0.2", "-W", "1", to], {
    netns: vms[from]!.netns,
    allowFailure: true,
  });
  return { ok: r.code === 0, out: r.stdout + r.stderr };
}

/**
 * Waits until OVS has revalidated its datapath flows against the flow tables now installed. A
 * datapath flow that punted a packet holds the packet-in ready-made (table and cookie of the
 * rule that matched then), and OVS sends it again for every packet that matches it, without
 * looking at the tables, until a revalidator round replaces it. One wait can be answered by a
 * round that began before the last flow_mod, so wait for two.
 */
async function datapathRevalidated(): Promise<void> {
  for (let i = 0; i < 2; i++) await sb().appctl("ovs-vswitchd", "revalidator/wait");
}

/**
 * Waits until the switch holds `n` host routes of one family (table 30's flows with an idle
 * timeout) and has revalidated its datapath flows against them: a route's flow_mod follows the
 * packet it was punted for, so the ping's reply can be back before OVS has the route, and until a
 * revalidator round after it a later packet can still take the datapath flow that punted the first.
 */
async function routesInSwitch(n: number, family: "ip" | "ipv6" = "ip"): Promise<void> {
  await waitFor(
    async () => {
      const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote(), "table=30");
      const routes = stdout.split("\n").filter((l) => l.includes("idle_timeout"));
      // ovs-ofctl names the destination nw_dst for IPv4 and ipv6_dst for IPv6
      const dst = family === "ip" ? "nw_dst=" : "ipv6_dst=";
      return routes.filter((l) => l.includes(dst)).length === n;
    },
    10_000,
    `${n} ${family} host routes in the switch`,
  );
  await datapathRevalidated();
}

const l3PacketIns = (): number => agent!.packetIns.get("l3") ?? 0;
const reactiveFlows = () =>
  agent!.reconciler.installedFlows().filter((f) => f.table === 30 && (f.idleTimeout ?? 0) > 0);

beforeAll(async () => {
  dir = makeRunDir("l3-nb");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  for (const [net, seg, sub, cidr, gw] of [
    ["netA", 501, "subA", "10.50.1.0/24", "10.50.1.1"],
    ["netB", 502, "subB", "10.50.2.0/24", "10.50.2.1"],
    ["netC", 503, "subC", "10.50.3.0/24", "10.50.3.1"],
  ] as const) {
    await api.create("lswitch", { id: net, tenantId: "t1", networkType: "geneve", segmentationId: seg });
    await api.create("subnet", { id: sub, tenantId: "t1", networkId: net, cidr, gatewayIp: gw });
  }
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  await api.routerAddInterface("r1", { subnetId: "subA" });
  await api.routerAddInterface("r1", { subnetId: "subB" });
  await api.routerAddInterface("r1", { subnetId: "subC" });
  const port = (id: string, net: string, sub: string, mac: string, ip: string) =>
    api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
    });
  await port("a1", "netA", "subA", "fa:16:3e:50:01:11", "10.50.1.11");
  await port("a2", "netA", "subA", "fa:16:3e:50:01:12", "10.50.1.12");
  await port("b1", "netB", "subB", "fa:16:3e:50:02:11", "10.50.2.11");
  await port("c1", "netC", "subC", "fa:16:3e:50:03:11", "10.50.3.11");
  agent = await Agent.start(config(), { store });
  for (const [id, mac] of [
    ["a1", "fa:16:3e:50:01:11"],
    ["a2", "fa:16:3e:50:01:12"],
    ["b1", "fa:16:3e:50:02:11"],
    ["c1", "fa:16:3e:50:03:11"],
  ] as const) {
    vms[id] = await sb().addVm(id, { ifaceId: id, mac });
  }
  await waitFor(() => agent!.localPortCount() === 4, 20_000, "four ports bound");
  await agent.settle();
  for (const id of ["a1", "a2", "b1", "c1"]) {
    const lease = await runDhcpClient(vms[id]!.netns, { apply: true, timeoutS: 10 });
    expect(lease?.router, id).toMatch(/^10\.50\.[123]\.1$/);
  }
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("distributed router, reactive", () => {
  it("routes between subnets: the first packet of each direction is one packet-in, later ones none", async () => {
    const before = l3PacketIns();
    const first = await ping("a1", "10.50.2.11", 1);
    expect(first.ok, first.out).toBe(true);
    // the reply, itself a first packet, left the agent through its route's actions: TTL decremented
    expect(first.out).toMatch(/ttl=63/);
    // a1 → b1 (on netA) and b1's reply (on netB): one first packet each way
    expect(l3PacketIns() - before).toBe(2);
    await routesInSwitch(2);
    const more = await ping("a1", "10.50.2.11", 5);
    expect(more.ok, more.out).toBe(true);
    expect(l3PacketIns() - before).toBe(2);
    const routes = reactiveFlows().map((f) => f.match.find((m) => m.field === "ip_dst")?.value);
    expect(routes.sort()).toEqual(["10.50.1.11", "10.50.2.11"]);
  });

  it("a host route serves every network of its router: c1 (netC) reaches b1 by the route a1's packet installed", async () => {
    await routesInSwitch(2);
    const before = l3PacketIns();
    const r = await ping("c1", "10.50.2.11", 1);
    expect(r.ok, r.out).toBe(true);
    // c1 → b1 takes the route to 10.50.2.11 already here; only b1's reply (to 10.50.3.11) is new
    expect(l3PacketIns() - before).toBe(1);
    const routes = reactiveFlows().map((f) => f.match.find((m) => m.field === "ip_dst")?.value);
    expect(routes.sort()).toEqual(["10.50.1.11", "10.50.2.11", "10.50.3.11"]);
  });

  it("the gateway answers ping from flows; traceroute shows the gateway hop", async () => {
    const before = l3PacketIns();
    const gw = await ping("a1", "10.50.1.1");
    expect(gw.ok, gw.out).toBe(true);
    expect(gw.out).toMatch(/from 10\.50\.1\.1: icmp_seq=1/);
    const far = await ping("a1", "10.50.2.1");
    expect(far.ok, far.out).toBe(true);
    expect(l3PacketIns()).toBe(before);
    // ICMP probes (-I): the userspace datapath leaves UDP checksums a veth offloaded unfilled
    const tr = await run(
      ["busybox", "traceroute", "-I", "-n", "-q", "1", "-w", "2", "-m", "5", "10.50.2.11"],
      {
        netns: vms.a1!.netns,
        allowFailure: true,
      },
    );
    const hops = tr.stdout.split("\n").filter((l) => /^\s*\d+\s/.test(l));
    expect(hops[0], tr.stdout + tr.stderr).toMatch(/^\s*1\s+10\.50\.1\.1\s/);
    expect(hops.at(-1), tr.stdout).toMatch(/10\.50\.2\.11/);
    expect(hops.length, tr.stdout).toBe(2);
  });

  it("an address with no port is host unreachable; one outside every subnet is net unreachable", async () => {
    const host = await ping("a1", "10.50.2.99", 1);
    expect(host.ok).toBe(false);
    expect(host.out).toMatch(/From 10\.50\.1\.1 icmp_seq=1 Destination Host Unreachable/);
    const net = await ping("a1", "10.99.0.1", 1);
    expect(net.ok).toBe(false);
    expect(net.out).toMatch(/From 10\.50\.1\.1 icmp_seq=1 Destination Net Unreachable/);
  });

  it("same-subnet traffic stays in L2: no packet-in, no host route", async () => {
    const before = l3PacketIns();
    expect((await ping("a1", "10.50.1.12")).ok).toBe(true);
    expect(l3PacketIns()).toBe(before);
    expect(reactiveFlows().some((f) => f.match.some((m) => m.value === "10.50.1.12"))).toBe(false);
  });

  it("a restarted agent keeps the host routes still valid and sends nothing", async () => {
    expect((await ping("a1", "10.50.2.11", 1)).ok).toBe(true);
    const kept = reactiveFlows().length;
    // a1 ↔ b1's (c1's towards 10.50.3.11 may not have idled out yet)
    expect(reactiveFlows().map((f) => f.match.find((m) => m.field === "ip_dst")?.value)).toEqual(
      expect.arrayContaining(["10.50.1.11", "10.50.2.11"]),
    );
    await agent!.stop();
    agent = await Agent.start(config(), { store });
    expect(agent.lastPass).toMatchObject({ added: 0, modified: 0, deleted: 0 });
    expect(reactiveFlows()).toHaveLength(kept);
    const before = l3PacketIns();
    expect((await ping("a1", "10.50.2.11", 2)).ok).toBe(true);
    expect(l3PacketIns()).toBe(before);
  });

  it("a host route goes when its destination port goes (nothing else)", async () => {
    expect((await ping("a1", "10.50.2.11", 1)).ok).toBe(true);
    expect((await ping("b1", "10.50.1.12", 1)).ok).toBe(true);
    const toA2 = () => reactiveFlows().some((f) => f.match.some((m) => m.value === "10.50.1.12"));
    expect(toA2()).toBe(true);
    await api.delete("lport", "b1");
    await waitFor(
      () => !reactiveFlows().some((f) => f.match.some((m) => m.value === "10.50.2.11")),
      10_000,
      "the route to b1 removed",
    );
    // the route towards a2 did not read b1: it stays
    expect(toA2()).toBe(true);
    await api.create("lport", {
      id: "b1",
      tenantId: "t1",
      networkId: "netB",
      macAddress: "fa:16:3e:50:02:11",
      fixedIps: [{ subnetId: "subB", ipAddress: "10.50.2.11" }],
    });
    await waitFor(() => agent!.localPortCount() === 4, 10_000, "b1 bound again");
    await agent!.settle();
    expect((await ping("a1", "10.50.2.11", 1)).ok).toBe(true);
  });

  it("an idle host route expires in OVS and the agent forgets it without sending a delete", async () => {
    expect((await ping("a1", "10.50.2.11", 1)).ok).toBe(true);
    const deletes = agent!.reconciler.totals.deleted;
    await waitFor(() => reactiveFlows().length === 0, 20_000, "reactive flows idle out (3 s)");
    const owners = [...agent!.engine.ownerKeys()].filter((k) => k.startsWith("l3/reactive/"));
    expect(owners).toEqual([]);
    const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote(), "table=30");
    expect(stdout).not.toMatch(/idle_timeout/);
    expect(agent!.reconciler.totals.deleted).toBe(deletes);
  });

  it("with security groups (conntrack) on both ends, still one packet-in per direction", async () => {
    await api.create("secgroup", {
      id: "pingable",
      tenantId: "t1",
      rules: [
        { id: "icmp-in", direction: "ingress", protocol: "icmp", remoteIpPrefix: "0.0.0.0/0" },
        { id: "all-out", direction: "egress" },
      ],
    });
    // Wait for the agent to realise the updates, not just for settle(): the store delivers them
    // after this returns, and the port's conntrack dispatch and default deny go in one pass
    // before the group's rules, fetched into the cache afterwards, go in the next. A ping between
    // the two is dropped at the miss of ingress_secgroup_state, with no packet-in.
    let last = 0;
    for (const id of ["a1", "b1"]) {
      last = (await api.update("lport", id, { securityGroups: ["pingable"] })).modRevision;
    }
    await waitFor(() => agent!.realised >= last, 10_000, "the groups realised");
    expect(reactiveFlows()).toEqual([]);
    // the earlier tests' datapath flows for this pair (punts, expired routes) go first
    await datapathRevalidated();
    const before = l3PacketIns();
    const first = await ping("a1", "10.50.2.11", 1);
    expect(first.ok, first.out).toBe(true);
    expect(l3PacketIns() - before).toBe(2);
    // the datapath flows that punted the first packets give way to the routes just installed
    await routesInSwitch(2);
    expect((await ping("a1", "10.50.2.11", 4)).ok).toBe(true);
    expect(l3PacketIns() - before).toBe(2);
    for (const id of ["a1", "b1"]) {
      last = (await api.update("lport", id, { securityGroups: [] })).modRevision;
    }
    await waitFor(() => agent!.realised >= last, 10_000, "the groups gone");
  });
});

describe("distributed router: static routes and IPv6", () => {
  it("a static route sends a prefix to its next hop port", async () => {
    // a2 is the next hop for 172.16.0.0/16: it owns 172.16.0.5 and may send from it
    await api.update("lport", "a2", { allowedAddressPairs: [{ ipAddress: "172.16.0.0/16" }] });
    await run(["ip", "addr", "add", "172.16.0.5/32", "dev", "lo"], { netns: vms.a2!.netns });
    const v = await api.update("lrouter", "r1", {
      routes: [{ destination: "172.16.0.0/16", nexthop: "10.50.1.12" }],
    });
    await waitFor(() => agent!.realised >= v.modRevision, 10_000, "the route realised");
    const flows = agent!.reconciler.installedFlows().filter((f) => f.table === 30 && f.priority === 316);
    expect(flows.length).toBe(1); // once for r1, whichever of its networks the packet comes from
    const r = await ping("b1", "172.16.0.5", 2);
    expect(r.ok, r.out).toBe(true);
    expect(r.out).toMatch(/from 172\.16\.0\.5/);
  });

  it("routes IPv6 between subnets, answers ND and ping for the gateway, and decrements the hop limit", async () => {
    for (const [net, sub, cidr, gw] of [
      ["netA", "subA6", "fd00:50:1::/64", "fd00:50:1::1"],
      ["netB", "subB6", "fd00:50:2::/64", "fd00:50:2::1"],
    ] as const) {
      await api.create("subnet", {
        id: sub,
        tenantId: "t1",
        networkId: net,
        cidr,
        gatewayIp: gw,
        enableDhcp: false,
      });
      await api.routerAddInterface("r1", { subnetId: sub });
    }
    const ips: Record<string, [string, string, string]> = {
      a1: ["subA", "10.50.1.11", "fd00:50:1::11"],
      b1: ["subB", "10.50.2.11", "fd00:50:2::11"],
    };
    let last = 0;
    for (const [id, [sub, v4, v6]] of Object.entries(ips)) {
      const v = await api.update("lport", id, {
        fixedIps: [
          { subnetId: sub, ipAddress: v4 },
          { subnetId: `${sub}6`, ipAddress: v6 },
        ],
      });
      last = Math.max(last, v.modRevision);
      const gw = v6.replace(/::11$/, "::1");
      await run(["ip", "-6", "addr", "add", `${v6}/64`, "dev", "eth0", "nodad"], { netns: vms[id]!.netns });
      await run(["ip", "-6", "route", "replace", "default", "via", gw], { netns: vms[id]!.netns });
    }
    await waitFor(() => agent!.realised >= last, 10_000, "the v6 addresses realised");
    const gw = await run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd00:50:1::1"], {
      netns: vms.a1!.netns,
      allowFailure: true,
    });
    expect(gw.code, gw.stdout + gw.stderr).toBe(0);
    const before = l3PacketIns();
    const ping6 = (count: number) =>
      run(["ping", "-6", "-c", String(count), "-i", "0.2", "-W", "2", "fd00:50:2::11"], {
        netns: vms.a1!.netns,
        allowFailure: true,
      });
    const first = await ping6(1);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    // the hop limit went down by one on the way (64 → 63)
    expect(first.stdout).toMatch(/ttl=63/);
    // a1 → b1 and b1's reply: one first packet each way
    expect(l3PacketIns() - before).toBe(2);
    // as in the IPv4 test: until OVS has the routes and has revalidated its datapath flows, a later
    // packet can still take the datapath flow that punted the first (seen once, under load)
    await routesInSwitch(2, "ipv6");
    const far = await ping6(3);
    expect(far.code, far.stdout + far.stderr).toBe(0);
    expect(far.stdout).toMatch(/ttl=63/);
    expect(l3PacketIns() - before).toBe(2);
    const routes = reactiveFlows().map((f) => f.match.find((m) => m.field === "ipv6_dst")?.value);
    expect(routes).toEqual(expect.arrayContaining(["fd00:50:1::11", "fd00:50:2::11"]));
  });
});

describe("distributed router, proactive", () => {
  it("routes between subnets with no packet-in at all", async () => {
    await agent!.stop();
    agent = await Agent.start(config("proactive"), { store });
    const routes = agent.reconciler
      .installedFlows()
      .filter((f) => f.table === 30 && f.priority === 332)
      .map((f) => f.match.find((m) => m.field === "ip_dst")?.value);
    // a host route to every port, once: l3 matches the router, not the network the packet came from
    expect(routes.sort()).toEqual(["10.50.1.11", "10.50.1.12", "10.50.2.11", "10.50.3.11"]);
    // the datapath still holds the reactive agent's punts of these pairs until it is revalidated
    await datapathRevalidated();
    expect((await ping("a1", "10.50.2.11", 3)).ok).toBe(true);
    expect((await ping("b1", "10.50.1.12", 3)).ok).toBe(true);
    expect(l3PacketIns()).toBe(0);
  });
});
