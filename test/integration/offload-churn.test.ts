/**
 * The soak's "final state equals the NB" for tc rules (issue 13, Soak). The
 * soak (soak.test.ts) runs its agents as separate `flowdrake agent`
 * processes, which drive the host's kernel tc — and this host's kernel has
 * no cls_flower — so a simulated NIC table cannot be put under them. This
 * test does the soak's kinds of churn against an in-process agent in
 * `offload.mode: planner` whose tc datapath is the simulated NIC of
 * offload-agent.test.ts (test/harness/simulated-nic.ts; every request
 * reaches it as the netlink bytes the agent would send), on a real OVS
 * (userspace datapath) and NB, with VMs in namespaces:
 *
 *   rounds of: a network with a subnet created and attached to router r1,
 *   ports on it (one plugged as a VM on this host, in the security group),
 *   the group's rules changed, the VM unplugged, the ports deleted, the
 *   interface detached, subnet and network deleted; while vm1 pings vm2
 *   (switched) and vm3 (routed) the whole time.
 *
 * What must hold at the end: a fresh agent (its first pass is a full
 * recompute from the NB, reading back what OVS and the NIC hold) sends
 * nothing — 0 flow_mods and 0 tc operations (the NIC's request log and
 * flowdrake_tc_ops_total) — and its plan is what the NIC holds
 * (filters.installed === filters.desired, nothing refused).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { waitRealised } from "../../src/nb/realised.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";
import { SimulatedNic } from "../harness/simulated-nic.js";

const ROUNDS = 4;
const sb = useOvsSandbox({ label: "offchurn" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
let nic: SimulatedNic;
const vms: Record<string, VmPort> = {};
const pings: ChildProcess[] = [];
const RULES = [
  { id: "icmp", direction: "ingress", protocol: "icmp" },
  { id: "out", direction: "egress" },
];
// the churn's VMs: one per round, its representor known to the NIC from the start
const churnVm = (r: number) => `cv${r}`;
const churnDev = (r: number) => `t${churnVm(r)}`;

function config() {
  return parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    metrics: "127.0.0.1:0",
    logLevel: "silent",
    // l3 routes without an idle timeout, so the routed ones are the NIC's share too
    l3: { idleTimeoutS: 0 },
    offload: { mode: "planner", profile: "connectx-6-dx", ports: ["tvm*", "tcv*"], statsIntervalMs: 200 },
  });
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${agent!.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.split(" ").pop());
  return sum;
}

const allDevs = () => [
  ...Object.values(vms).map((v) => v.port),
  ...Array.from({ length: ROUNDS }, (_, i) => churnDev(i + 1)),
  "genev_sys_6081",
  "vxlan_sys_4789",
];
const held = () => allDevs().reduce((n, d) => n + nic.ours(d).length, 0);
/** The bridge's flowdrake flows as dump-flows prints them, without counters and ages. */
async function flows(): Promise<string[]> {
  return (await sb().dumpFlows())
    .filter((l) => l.includes("cookie=0xfd"))
    .map((l) => l.replace(/ (duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*,/g, "").trim())
    .sort();
}
const byDev = () =>
  allDevs()
    .map((d) => `${d} ${nic.ours(d).length}`)
    .join(", ");

beforeAll(async () => {
  dir = makeRunDir("offload-churn");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  for (const [net, seg, sub, cidr] of [
    ["netA", 801, "subA", "10.81.1.0/24"],
    ["netB", 802, "subB", "10.81.2.0/24"],
  ] as const) {
    await api.create("lswitch", { id: net, tenantId: "t1", networkType: "geneve", segmentationId: seg });
    await api.create("subnet", { id: sub, tenantId: "t1", networkId: net, cidr });
  }
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  for (const sub of ["subA", "subB"]) await api.routerAddInterface("r1", { subnetId: sub });
  await api.create("secgroup", { id: "sg", tenantId: "t1", rules: RULES });
  const ports = [
    ["vm1", "netA", "subA", "fa:16:3e:81:01:01", "10.81.1.11", []],
    ["vm2", "netA", "subA", "fa:16:3e:81:01:02", "10.81.1.12", []],
    ["vm3", "netB", "subB", "fa:16:3e:81:02:01", "10.81.2.11", ["sg"]],
  ] as const;
  for (const [id, net, sub, mac, ip, groups] of ports) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
      securityGroups: [...groups],
    });
  }
  for (const [id, , sub, mac, ip] of ports) {
    vms[id] = await sb().addVm(id, {
      ifaceId: id,
      mac,
      ipCidr: `${ip}/24`,
      gateway: sub === "subA" ? "10.81.1.1" : "10.81.2.1",
    });
  }
  nic = new SimulatedNic(allDevs());
  agent = await Agent.start(config(), { store, tcDatapath: nic });
  await waitFor(() => agent!.localPortCount() === 3, 20_000, "local ports bound");
  await waitFor(
    async () =>
      (await run(["ping", "-c", "1", "-W", "1", "10.81.2.11"], { netns: vms.vm1!.netns, allowFailure: true }))
        .code === 0,
    30_000,
    "vm1 reaches vm3 through r1",
  );
}, 120_000);

afterAll(async () => {
  for (const p of pings) p.kill("SIGKILL");
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("tc rules after churn (planner mode, simulated NIC)", () => {
  it(`${ROUNDS} rounds of churn: a fresh agent's full recompute sends no flow_mod and no tc operation`, async () => {
    for (const dst of ["10.81.1.12", "10.81.2.11"])
      pings.push(
        spawn("ip", ["netns", "exec", vms.vm1!.netns, "ping", "-q", "-i", "0.1", dst], { stdio: "ignore" }),
      );
    const initial = held();
    const initialByDev = byDev();
    expect(initial, "the NIC holds flowdrake's share before the churn").toBeGreaterThan(30);
    const during: number[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const net = `churn${r}`;
      const sub = `churnsub${r}`;
      await api.create("lswitch", {
        id: net,
        tenantId: "t1",
        networkType: "vxlan",
        segmentationId: 8100 + r,
      });
      await api.create("subnet", { id: sub, tenantId: "t1", networkId: net, cidr: `10.82.${r}.0/24` });
      await api.routerAddInterface("r1", { subnetId: sub });
      for (let i = 0; i < 3; i++) {
        await api.create("lport", {
          id: `${net}p${i}`,
          tenantId: "t1",
          networkId: net,
          macAddress: `fa:16:3e:82:0${r}:1${i}`,
          fixedIps: [{ subnetId: sub, ipAddress: `10.82.${r}.${10 + i}` }],
          securityGroups: i === 0 ? ["sg"] : [],
        });
      }
      await api.update("secgroup", "sg", {
        rules:
          r % 2 ? [...RULES, { id: "ssh", direction: "ingress", protocol: "tcp", portRangeMin: 22 }] : RULES,
      });
      const vm = await sb().addVm(churnVm(r), {
        ifaceId: `${net}p0`,
        mac: `fa:16:3e:82:0${r}:10`,
        ipCidr: `10.82.${r}.10/24`,
        gateway: `10.82.${r}.1`,
      });
      expect(vm.port).toBe(churnDev(r));
      // the plugged VM's representor gets filters of its own, and vm1 reaches it through r1
      await waitFor(() => nic.ours(vm.port).length > 0, 20_000, `filters on ${vm.port}`);
      await waitFor(
        async () =>
          (
            await run(["ping", "-c", "1", "-W", "1", `10.82.${r}.10`], {
              netns: vms.vm1!.netns,
              allowFailure: true,
            })
          ).code === 0,
        20_000,
        `vm1 reaches ${churnVm(r)}`,
      );
      during.push(held());
      await sb().vsctl("del-port", "br-int", vm.port);
      await run(["ip", "netns", "del", vm.netns], { allowFailure: true });
      for (let i = 0; i < 3; i++) await api.delete("lport", `${net}p${i}`);
      await api.routerRemoveInterface("r1", { subnetId: sub });
      await api.delete("subnet", sub);
      await api.delete("lswitch", net);
      await waitFor(() => agent!.localPortCount() === 3, 20_000, "the churn VM unbound");
      // a marker written after the round: realised means the agent has applied the whole round
      const marker = await api.update("secgroup", "sg", { name: `round-${r}` });
      await waitRealised(store, marker.modRevision, { chassis: ["host1"], timeoutMs: 30_000 });
      await agent!.settle();
    }
    const end = agent!.offload!.explain();
    console.log(
      `[offload-churn] filters held: ${initial} before, ${during.join("/")} with each round's VM, ${held()} after; ` +
        `per device before: ${initialByDev}; after: ${byDev()}; ` +
        `${nic.log.length} tc operations over the churn; end: installed ${end.filters.installed}, desired ${end.filters.desired}`,
    );
    expect(Math.min(...during), "each round's VM and its routes put filters on the NIC").toBeGreaterThan(
      initial,
    );
    for (let r = 1; r <= ROUNDS; r++)
      expect(nic.ours(churnDev(r)), `${churnDev(r)} after its VM left`).toEqual([]);

    // the final state equals the NB: a fresh agent's full recompute changes nothing, in OVS or on the NIC
    for (const p of pings.splice(0)) p.kill("SIGKILL");
    // stopped first: a ping's last punt may still be in the old agent's hands (a route it learns)
    await agent!.stop();
    agent = undefined;
    const before = nic.log.length;
    const filters = held();
    const flowsBefore = await flows();
    agent = await Agent.start(config(), { store, tcDatapath: nic });
    await waitFor(() => agent!.localPortCount() === 3, 20_000, "local ports bound again");
    await agent.settle();
    const sent = nic.log.slice(before);
    const flowsAfter = await flows();
    const diff = [
      ...flowsBefore.filter((f) => !flowsAfter.includes(f)).map((f) => `- ${f}`),
      ...flowsAfter.filter((f) => !flowsBefore.includes(f)).map((f) => `+ ${f}`),
      ...sent.map((o) => `tc ${o.op} ${o.dev} ${JSON.stringify(o)}`),
    ].join("\n");
    const fresh = agent.offload!.explain();
    const flowMods = await metric("flowdrake_flow_mods_total");
    const tcOps = await metric("flowdrake_tc_ops_total");
    console.log(
      `[offload-churn] fresh agent: ${flowMods} flow_mods, ${tcOps} tc ops (NIC log: ${sent.length}); ` +
        `filters installed ${fresh.filters.installed}, desired ${fresh.filters.desired}, held ${held()}\n${diff}`,
    );
    expect(sent, `tc operations of the fresh agent\n${diff}`).toEqual([]);
    expect(tcOps, diff).toBe(0);
    expect(flowMods, diff).toBe(0);
    expect(flowsAfter, diff).toEqual(flowsBefore);
    expect(fresh.mode.active).toBe("planner");
    expect(fresh.filters.desired).toBeGreaterThan(30);
    expect(fresh.filters.installed).toBe(fresh.filters.desired);
    expect(fresh.refused).toBe(0);
    expect(held()).toBe(filters);
    expect(held()).toBe(fresh.filters.installed);
    // and the switch still forwards as the NB says
    const ping = await run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.81.2.11"], {
      netns: vms.vm1!.netns,
    });
    expect(ping.code).toBe(0);
  }, 150_000);
});
