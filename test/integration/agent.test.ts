/**
 * The node agent on one host, with real parts: a private OVS (userspace
 * datapath), the embedded NB store, "VMs" in namespaces plugged by
 * external_ids:iface-id, busybox udhcpc and ping inside them.
 *
 * What it proves: ports are bound and claimed; the flows each app produces
 * are what `ovs-ofctl dump-flows` shows; DHCP hands out the NB's address,
 * gateway, DNS and MTU; VMs on one network reach each other and not another
 * network; spoofed sources are dropped; a model change costs the minimum of
 * flow_mods; a restarted agent sends none; an ovs-vswitchd restart gets every
 * flow back; the metrics endpoint counts what happened.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCaps } from "../../src/cli/caps.js";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { table } from "../../src/datapath/index.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { connectOpenFlow } from "../../src/openflow/client.js";
import { flowFromStats, flowKey, type Flow } from "../../src/openflow/flow.js";
import { formatFlow, parseFlow } from "../../src/openflow/text.js";
import { runDhcpClient } from "../../src/sandbox/dhcp-client.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { loggerCount } from "../../src/util/log.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";

const sb = useOvsSandbox({ label: "agent" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};

function config() {
  return parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    metrics: "127.0.0.1:0",
    logLevel: "silent",
  });
}

async function ping(from: VmPort, to: string, extra: string[] = []): Promise<boolean> {
  const r = await run(["ping", "-c", "2", "-i", "0.2", "-W", "1", ...extra, to], {
    netns: from.netns,
    allowFailure: true,
  });
  return r.code === 0;
}

function dumpLines(stdout: string): string[] {
  return stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("OFPST_FLOW") && !l.startsWith("NXST_FLOW"))
    .map((l) =>
      l
        .replace(/duration=[^,]+, /, "")
        .replace(/n_packets=\d+, /, "")
        .replace(/n_bytes=\d+, /, "")
        .replace(/idle_age=\d+, /, "")
        .replace(/hard_age=\d+, /, ""),
    );
}

beforeAll(async () => {
  dir = makeRunDir("agent-nb");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", {
    id: "net1",
    tenantId: "t1",
    networkType: "geneve",
    segmentationId: 101,
    mtu: 1400,
  });
  await api.create("subnet", {
    id: "sub1",
    tenantId: "t1",
    networkId: "net1",
    cidr: "10.1.0.0/24",
    gatewayIp: "10.1.0.1",
    dnsNameservers: ["10.1.0.53"],
  });
  await api.create("lswitch", { id: "net2", tenantId: "t1", networkType: "geneve", segmentationId: 102 });
  await api.create("subnet", {
    id: "sub2",
    tenantId: "t1",
    networkId: "net2",
    cidr: "10.1.0.0/24",
    gatewayIp: "10.1.0.1",
    enableDhcp: false,
  });
  const port = (id: string, net: string, sub: string, mac: string, ip: string) =>
    api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
    });
  await port("vm1", "net1", "sub1", "fa:16:3e:01:00:11", "10.1.0.11");
  await port("vm2", "net1", "sub1", "fa:16:3e:01:00:12", "10.1.0.12");
  await port("vm3", "net2", "sub2", "fa:16:3e:02:00:13", "10.1.0.13");
  agent = await Agent.start(config(), { store });
  for (const [name, mac] of [
    ["vm1", "fa:16:3e:01:00:11"],
    ["vm2", "fa:16:3e:01:00:12"],
    ["vm3", "fa:16:3e:02:00:13"],
  ] as const) {
    vms[name] = await sb().addVm(name, { ifaceId: name, mac });
  }
  await waitFor(() => agent!.localPortCount() === 3, 20_000, "three local ports bound");
  await agent.settle();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("node agent on one host", () => {
  it("binds ports by iface-id and claims them for its chassis in the NB", async () => {
    for (const id of ["vm1", "vm2", "vm3"]) {
      const p = await api.get("lport", id);
      expect(p.value.chassis).toBe("host1");
      expect(agent!.view.localPort(id)?.ofport).toBe(vms[id]!.ofport);
    }
    const ch = await api.get("chassis", "host1");
    expect(ch.value.tunnelIps).toEqual(["192.0.2.1"]);
    const alive = await store.get("chassis-liveness", "host1");
    expect(alive).toBeDefined();
  });

  it("installs exactly the flows the apps produce, as ovs-ofctl dump-flows shows them", async () => {
    await agent!.settle();
    const ours = agent!.reconciler.installedFlows();
    const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote());
    const dumped = dumpLines(stdout);
    // Same flows (OVS's identity: table, priority, match) with the same cookies…
    const idOf = (f: Flow) => `${flowKey(f)} cookie=${f.cookie.toString(16)}`;
    expect(dumped.map((l) => idOf(parseFlow(l))).sort()).toEqual(ours.map(idOf).sort());
    // …and the same actions, as OVS reports them over OpenFlow.
    const conn = await connectOpenFlow(sb().mgmtRemote());
    try {
      const back = new Map(
        (await conn.flowStats()).map((s) => [flowKey(flowFromStats(s)), flowFromStats(s)]),
      );
      for (const f of ours) expect(formatFlow(back.get(flowKey(f))!)).toBe(formatFlow(f));
    } finally {
      conn.close();
    }
    // Spot checks per app.
    const vm1 = vms.vm1!.ofport;
    expect(dumped).toContainEqual(
      expect.stringMatching(new RegExp(`table=0, priority=100,in_port=${vm1} actions=set_field:0x65->reg6`)),
    );
    expect(dumped.some((l) => l.includes(`table=${table("dhcp")},`) && l.includes(`in_port=${vm1}`))).toBe(
      true,
    );
    expect(dumped.some((l) => l.includes("arp_tpa=10.1.0.12") && l.includes("set_field:2->arp_op"))).toBe(
      true,
    );
    expect(
      dumped.some(
        (l) => l.includes(`table=${table("l2_lookup")},`) && l.includes("dl_dst=fa:16:3e:01:00:12"),
      ),
    ).toBe(true);
    // vm3's network is separate: no vm3 MAC under net1's key.
    expect(dumped.some((l) => l.includes("reg6=0x65") && l.includes("fa:16:3e:02:00:13"))).toBe(false);
  });

  it("udhcpc in a VM gets the NB's address, gateway, DNS and MTU from the local agent", async () => {
    const lease = await runDhcpClient(vms.vm1!.netns, { apply: true, timeoutS: 10 });
    expect(lease).toMatchObject({ ip: "10.1.0.11", router: "10.1.0.1", dns: "10.1.0.53", mtu: "1400" });
    expect(lease?.mask ?? lease?.subnet).toMatch(/24|255\.255\.255\.0/);
    const lease2 = await runDhcpClient(vms.vm2!.netns, { apply: true, timeoutS: 10 });
    expect(lease2?.ip).toBe("10.1.0.12");
    expect(agent!.packetIns.get("dhcp") ?? 0).toBeGreaterThanOrEqual(4);
    // handling more packet-ins makes no more loggers (the agent once made one per packet and kept them all)
    const loggers = loggerCount();
    await runDhcpClient(vms.vm2!.netns, { apply: true, timeoutS: 10 });
    expect(loggerCount()).toBe(loggers);
  });

  it("a port on a subnet without DHCP gets no answer (a tenant DHCP server would)", async () => {
    const before = agent!.packetIns.get("dhcp") ?? 0;
    const lease = await runDhcpClient(vms.vm3!.netns, { timeoutS: 4 });
    expect(lease).toBeUndefined();
    expect(agent!.packetIns.get("dhcp") ?? 0).toBe(before);
  });

  it("two VMs on one network ping each other; a VM on another network does not reach them", async () => {
    expect(await ping(vms.vm1!, "10.1.0.12")).toBe(true);
    await run(["ip", "addr", "replace", "10.1.0.13/24", "dev", "eth0"], { netns: vms.vm3!.netns });
    expect(await ping(vms.vm3!, "10.1.0.11")).toBe(false);
    // vm3's ARP for vm1's address is answered only within its own network: nothing known there.
    const neigh = await run(["ip", "neigh", "show", "10.1.0.11"], { netns: vms.vm3!.netns });
    expect(neigh.stdout).not.toContain("fa:16:3e:01:00:11");
  });

  it("ARP for a known address is answered by OVS flows, not the agent", async () => {
    await run(["ip", "neigh", "flush", "all"], { netns: vms.vm1!.netns });
    const pins = agent!.packetIns.get("arp") ?? 0;
    const r = await run(["busybox", "arping", "-c", "1", "-w", "2", "-I", "eth0", "10.1.0.12"], {
      netns: vms.vm1!.netns,
      allowFailure: true,
    });
    expect(r.stdout).toMatch(/reply from 10\.1\.0\.12 \[fa:16:3e:01:00:12\]/i);
    expect(agent!.packetIns.get("arp") ?? 0).toBe(pins);
  });

  it("a spoofed source IP is dropped by port security; an allowed address pair admits it", async () => {
    await run(["ip", "addr", "add", "10.1.0.99/24", "dev", "eth0"], { netns: vms.vm1!.netns });
    expect(await ping(vms.vm1!, "10.1.0.12", ["-I", "10.1.0.99"])).toBe(false);
    expect(await ping(vms.vm1!, "10.1.0.12")).toBe(true);
    await run(["ip", "addr", "del", "10.1.0.99/24", "dev", "eth0"], { netns: vms.vm1!.netns });
    // An allowed address pair makes the same address legitimate — two flows, nothing else.
    await api.update("lport", "vm1", { allowedAddressPairs: [{ ipAddress: "10.1.0.99" }] });
    const before = { ...agent!.reconciler.totals };
    await waitFor(() => agent!.reconciler.totals.added > before.added, 10_000, "a pass for the address pair");
    await agent!.settle();
    const t = agent!.reconciler.totals;
    expect({
      added: t.added - before.added,
      modified: t.modified - before.modified,
      deleted: t.deleted - before.deleted,
    }).toEqual({
      added: 2,
      modified: 0,
      deleted: 0,
    });
    await run(["ip", "addr", "add", "10.1.0.99/24", "dev", "eth0"], { netns: vms.vm1!.netns });
    expect(await ping(vms.vm1!, "10.1.0.12", ["-I", "10.1.0.99"])).toBe(true);
    await run(["ip", "addr", "del", "10.1.0.99/24", "dev", "eth0"], { netns: vms.vm1!.netns });
  });

  it("a spoofed source MAC is dropped too", async () => {
    const ns = vms.vm1!.netns;
    await run(["ip", "link", "set", "eth0", "address", "fa:16:3e:01:00:99"], { netns: ns });
    try {
      await run(["ip", "neigh", "flush", "all"], { netns: ns });
      expect(await ping(vms.vm1!, "10.1.0.12")).toBe(false);
    } finally {
      await run(["ip", "link", "set", "eth0", "address", "fa:16:3e:01:00:11"], { netns: ns });
    }
    expect(await ping(vms.vm1!, "10.1.0.12")).toBe(true);
  });

  it("every DHCP punt goes through a per-port OpenFlow meter", async () => {
    const { stdout } = await sb().ofctl("dump-meters", sb().mgmtRemote());
    for (const vm of [vms.vm1!, vms.vm2!]) {
      expect(stdout).toMatch(
        new RegExp(`meter=${vm.ofport} pktps burst stats bands=\\s*type=drop rate=100 burst_size=100`),
      );
    }
    // vm3's subnet has no DHCP: no punt, no meter.
    expect(stdout).not.toMatch(new RegExp(`meter=${vms.vm3!.ofport} `));
    // and every punt of the host together goes through OVS's "controller" meter, a guard at 4× the agent's budget
    expect(stdout).toMatch(/meter=controller pktps burst stats bands=\s*type=drop rate=4000 burst_size=4000/);
  });

  it("IPv6 neighbour solicitations for known addresses are answered by the agent; DAD is not", async () => {
    await api.create("subnet", { id: "sub1v6", tenantId: "t1", networkId: "net1", cidr: "fd00:1::/64" });
    for (const [id, v4, v6] of [
      ["vm1", "10.1.0.11", "fd00:1::11"],
      ["vm2", "10.1.0.12", "fd00:1::12"],
    ] as const) {
      await api.update("lport", id, {
        fixedIps: [
          { subnetId: "sub1", ipAddress: v4 },
          { subnetId: "sub1v6", ipAddress: v6 },
        ],
      });
    }
    await waitFor(
      () =>
        [...agent!.reconciler.installedFlows()].some((f) => formatFlow(f).includes("nd_target=fd00:1::12")),
      10_000,
      "ND responder flows",
    );
    await run(["ip", "-6", "addr", "add", "fd00:1::11/64", "dev", "eth0"], { netns: vms.vm1!.netns });
    await run(["ip", "-6", "addr", "add", "fd00:1::12/64", "dev", "eth0"], { netns: vms.vm2!.netns });
    // DAD runs (one probe, then a second's wait) and ends with the address no longer tentative, or
    // tentative and dadfailed when something answered the probe — as the agent must not.
    for (const [vm, ip] of [
      [vms.vm1!, "fd00:1::11"],
      [vms.vm2!, "fd00:1::12"],
    ] as const) {
      const dad = await run(
        ["sysctl", "-n", "net.ipv6.conf.eth0.accept_dad", "net.ipv6.conf.eth0.dad_transmits"],
        {
          netns: vm.netns,
        },
      );
      expect(dad.stdout.trim().split("\n").map(Number)).toEqual([1, 1]);
      const line = await waitFor(
        async () => {
          const shown = (await run(["ip", "-6", "addr", "show", "dev", "eth0"], { netns: vm.netns })).stdout;
          const l = shown.split("\n").find((x) => x.includes(`inet6 ${ip}/64`));
          return l && (!l.includes("tentative") || l.includes("dadfailed")) ? l : undefined;
        },
        10_000,
        `DAD of ${ip} to end`,
      );
      expect(line).not.toMatch(/dadfailed/);
    }
    const before = agent!.packetIns.get("arp") ?? 0;
    expect(await ping(vms.vm1!, "fd00:1::12")).toBe(true);
    expect(agent!.packetIns.get("arp") ?? 0).toBeGreaterThan(before);
    const neigh = await run(["ip", "-6", "neigh", "show", "fd00:1::12"], { netns: vms.vm1!.netns });
    expect(neigh.stdout).toContain("fa:16:3e:01:00:12");
  });

  it("caps --explain reads the running agent's flows and says, flow by flow, where each would run", async () => {
    const out = await runCaps({ explain: sb().mgmtRemote(), ovsdb: sb().dbRemote, profile: "connectx-6-dx" });
    const blocks = out.split("\n").filter((l) => /^\s+(NIC|OVS): /.test(l));
    expect(blocks.length).toBe(agent!.reconciler.installedFlows().length);
    // The DHCP punts stay in software, with the reason; some forwarding goes to the NIC.
    expect(out).toMatch(
      /tp_dst=67 actions=meter:\d+,CONTROLLER:65535\n\s+OVS: not offloaded: action meter is never offloadable/,
    );
    expect(blocks.some((l) => l.includes("NIC: offloaded"))).toBe(true);
  });

  it("a malformed NB object written behind the API's back costs only itself", async () => {
    await api.create("chassis", { name: "hostX", tunnelIps: ["192.0.2.77"] });
    // hostX's agent is alive (its liveness key), so its ports are remote peers here
    await store.txn([{ op: "put", kind: "chassis-liveness", key: "hostX", value: { at: Date.now() } }]);
    const put = (key: string, value: unknown) => store.txn([{ op: "put", kind: "lport", key, value }]);
    await put("junk-mac", {
      id: "junk-mac",
      tenantId: "t1",
      networkId: "net1",
      macAddress: 42,
      chassis: "hostX",
    });
    await put("junk-ips", {
      id: "junk-ips",
      tenantId: "t1",
      networkId: "net1",
      macAddress: "fa:16:3e:09:00:02",
      fixedIps: [{ subnetId: "sub1" }],
      chassis: "hostX",
    });
    await api.create("lport", {
      id: "good-remote",
      tenantId: "t1",
      networkId: "net1",
      macAddress: "fa:16:3e:09:00:03",
      fixedIps: [{ subnetId: "sub1", ipAddress: "10.1.0.93" }],
      chassis: "hostX",
    });
    await waitFor(
      () => agent!.view.remotePort("good-remote") !== undefined,
      10_000,
      "the good remote port in the view",
    );
    await agent!.settle();
    expect(agent!.guard.refused.get("lport/junk-mac")).toMatch(/macAddress/);
    expect(agent!.guard.refused.get("lport/junk-ips")).toMatch(/fixedIps\.0\.ipAddress/);
    const flows = agent!.reconciler.installedFlows().map((f) => formatFlow(f));
    expect(flows.some((f) => f.includes("fa:16:3e:09:00:03"))).toBe(true);
    expect(flows.some((f) => f.includes("fa:16:3e:09:00:02"))).toBe(false);
    expect(await ping(vms.vm1!, "10.1.0.12")).toBe(true);
    for (const k of ["junk-mac", "junk-ips"]) await store.txn([{ op: "delete", kind: "lport", key: k }]);
    await api.delete("lport", "good-remote");
  });

  it("a restarted agent reconciles without sending a single flow_mod", async () => {
    await agent!.stop();
    agent = await Agent.start(config(), { store });
    expect(agent.lastPass).toMatchObject({ added: 0, modified: 0, deleted: 0, localPorts: 3 });
    expect(await ping(vms.vm1!, "10.1.0.12")).toBe(true);
  });

  it("after an ovs-vswitchd restart every flow is back", async () => {
    const want = agent!.reconciler.installedFlows().length;
    await sb().restartVswitchd();
    await waitFor(
      async () => {
        const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote());
        return dumpLines(stdout).length === want;
      },
      30_000,
      "flows reinstalled",
    );
    await waitFor(() => ping(vms.vm1!, "10.1.0.12"), 20_000, "ping after restart");
  });

  it("serves Prometheus metrics", async () => {
    const res = await fetch(`http://127.0.0.1:${agent!.metricsPort}/metrics`);
    const body = await res.text();
    expect(body).toMatch(/flowdrake_flows\{table="l2_lookup"\} [1-9]/);
    expect(body).toMatch(/flowdrake_local_ports 3/);
    expect(body).toMatch(/flowdrake_reconcile_duration_seconds_count [1-9]/);
  });

  it("unplugging a VM removes exactly its flows; deleting an NB port unbinds it", async () => {
    await agent!.settle();
    const flowsMentioning = (id: string) =>
      agent!.reconciler.installedFlows().filter((f) => formatFlow(f).includes(id));
    const vm3Flows = agent!.reconciler
      .installedFlows()
      .filter((f) => f.match.some((m) => m.field === "in_port" && Number(m.value) === vms.vm3!.ofport));
    expect(vm3Flows.length).toBeGreaterThan(3);
    const before = { ...agent!.reconciler.totals };
    await sb().vsctl("del-port", "br-int", vms.vm3!.port);
    await waitFor(() => agent!.localPortCount() === 2, 10_000, "vm3 unbound");
    await agent!.settle();
    const t = agent!.reconciler.totals;
    // vm3 was alone on net2: its port flows, net2's flood and tunnel flows, and nothing else, go.
    expect(t.added - before.added).toBe(0);
    expect(t.modified - before.modified).toBe(0);
    const left = agent!.reconciler
      .installedFlows()
      .filter((f) => f.match.some((m) => m.field === "in_port" && Number(m.value) === vms.vm3!.ofport));
    expect(left).toEqual([]);
    expect(agent!.reconciler.installedFlows().some((f) => formatFlow(f).includes("reg6=0x66"))).toBe(false);
    expect(flowsMentioning("fa:16:3e:01:00:12").length).toBeGreaterThan(0);

    await api.delete("lport", "vm2");
    await waitFor(() => agent!.localPortCount() === 1, 10_000, "vm2 unbound after NB delete");
    await agent!.settle();
    expect(agent!.reconciler.installedFlows().some((f) => formatFlow(f).includes("fa:16:3e:01:00:12"))).toBe(
      false,
    );
    expect(await ping(vms.vm1!, "10.1.0.12")).toBe(false);
  });
});
