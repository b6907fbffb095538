/**
 * The agent's offload datapath in `offload.mode: planner` on the host: a
 * real OVS (userspace datapath) and NB, three VMs in namespaces, and — since
 * this host has neither a Smart-NIC nor cls_flower — a simulated NIC table
 * (test/harness/simulated-nic.ts) standing in for the kernel's tc on the
 * ports' representors. Every request reaches it as the netlink bytes the
 * agent would send. The kernel lane (test/kernel/offload-lane.test.ts) runs
 * the same agent against the real kernel.
 *
 * What it proves: the NIC's share of the flow set is installed as filters
 * tagged with flowdrake's cookie, foreign filters are left alone, a restarted
 * agent reads them back and sends nothing, a model change sends only the
 * difference, a filter the NIC refuses keeps its flows in software with the
 * NIC's message, a capacity below the plan demotes the idlest flows, and
 * `caps` / `caps --explain agent` and the metrics say all of it.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCaps } from "../../src/cli/caps.js";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import type { OffloadReport } from "../../src/controller/tc-reconciler.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { ETH_P_ALL } from "../../src/offload/netlink/tc/rule.js";
import { TC_ACT } from "../../src/offload/netlink/tc/schema.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";
import { SimulatedNic } from "../harness/simulated-nic.js";

const sb = useOvsSandbox({ label: "offload" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
let nic: SimulatedNic;
const vms: Record<string, VmPort> = {};
const MACS = { vm1: "fa:16:3e:0a:00:11", vm2: "fa:16:3e:0a:00:12", vm3: "fa:16:3e:0a:00:13" } as const;

function config(extra: Record<string, unknown> = {}) {
  return parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    metrics: "127.0.0.1:0",
    logLevel: "silent",
    offload: { mode: "planner", profile: "connectx-6-dx", ports: ["tvm*"], statsIntervalMs: 200, ...extra },
  });
}

async function startAgent(extra: Record<string, unknown> = {}): Promise<Agent> {
  agent = await Agent.start(config(extra), { store, tcDatapath: nic });
  await waitFor(() => agent!.localPortCount() === Object.keys(vms).length, 20_000, "local ports bound");
  await agent.settle();
  return agent;
}

const devs = () => Object.values(vms).map((v) => v.port);
const ourCount = () => devs().reduce((n, d) => n + nic.ours(d).length, 0);

async function metric(name: string): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${agent!.metricsPort}/metrics`);
  return (await res.text()).split("\n").filter((l) => l.startsWith(name));
}

async function explain(): Promise<OffloadReport> {
  return JSON.parse(await runCaps({ explain: "agent", json: true, ovsdb: sb().dbRemote })) as OffloadReport;
}

beforeAll(async () => {
  dir = makeRunDir("offload-nb");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 201 });
  await api.create("subnet", {
    id: "sub1",
    tenantId: "t1",
    networkId: "net1",
    cidr: "10.2.0.0/24",
    gatewayIp: "10.2.0.1",
  });
  for (const [i, [name, mac]] of Object.entries(MACS).entries()) {
    await api.create("lport", {
      id: name,
      tenantId: "t1",
      networkId: "net1",
      macAddress: mac,
      fixedIps: [{ subnetId: "sub1", ipAddress: `10.2.0.${11 + i}` }],
    });
  }
  for (const [name, mac] of Object.entries(MACS)) {
    vms[name] = await sb().addVm(name, {
      ifaceId: name,
      mac,
      ipCidr: `10.2.0.${Number(name.slice(2)) + 10}/24`,
    });
  }
  nic = new SimulatedNic([...devs(), "genev_sys_6081", "vxlan_sys_4789"]);
  // An operator's (or OVS's) filter on vm1's representor: not flowdrake's, never touched.
  nic.addForeign(vms.vm1!.port, {
    chain: 0,
    prio: 1,
    protocol: ETH_P_ALL,
    handle: 0x7777,
    match: {},
    actions: [{ kind: "gact", control: TC_ACT.OK }],
  });
  await startAgent();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const flowOf = (r: OffloadReport, pred: (f: string) => boolean) => {
  const f = r.flows.find((x) => pred(x.flow));
  if (!f) throw new Error(`no such flow in:\n${r.flows.map((x) => x.flow).join("\n")}`);
  return f;
};

describe("the agent's offload datapath (planner mode, simulated NIC)", () => {
  it("installs the NIC's share as filters carrying flowdrake's cookie on each port's device", async () => {
    const r = await explain();
    expect(r.mode).toMatchObject({ requested: "planner", active: "planner" });
    expect(r.tcFlags).toBe("skip_hw");
    expect(r.filters.installed).toBe(r.filters.desired);
    expect(r.filters.installed).toBe(
      ourCount() + nic.ours("genev_sys_6081").length + nic.ours("vxlan_sys_4789").length,
    );
    for (const dev of devs()) {
      expect(r.filters.byDevice[dev]).toBe(nic.ours(dev).length);
      expect(nic.ours(dev).length).toBeGreaterThan(10);
      // every filter of flowdrake's: protocol all, skip_hw, the same cookie on every action
      for (const rule of nic.rules(dev).filter((x) => x.handle !== 0x7777)) {
        expect(rule.protocol).toBe(ETH_P_ALL);
        expect(rule.flags?.skipHw).toBe(true);
        expect(new Set(rule.actions.map((a) => a.cookie)).size).toBe(1);
      }
    }
    // L2 forwarding vm1 → vm2 is decided on vm1's representor: a redirect to vm2's
    const ifindex = (await nic.devices()).get(vms.vm2!.port)!;
    const redirects = nic
      .rules(vms.vm1!.port)
      .filter((x) =>
        x.actions.some((a) => a.kind === "mirred" && a.ifindex === ifindex && a.mode === "redirect"),
      );
    expect(redirects).toHaveLength(1);
    // The destination lookup is offloaded on every device it is reached from; the flood and the DHCP punt are not.
    const lookup = flowOf(r, (f) => f.includes("table=40,") && f.includes(`dl_dst=${MACS.vm2}`));
    expect(lookup.status).toBe("offloaded");
    expect(new Set(lookup.filters.map((x) => x.dev))).toEqual(new Set([...devs(), "genev_sys_6081"]));
    expect(flowOf(r, (f) => f.includes("table=45,") && f.includes("resubmit"))).toMatchObject({
      status: "software",
      reason: "not offloaded: resubmit followed by more actions is not offloadable",
    });
    expect(
      flowOf(r, (f) => f.includes("CONTROLLER") && f.includes(`in_port=${vms.vm1!.ofport}`)).status,
    ).toBe("software");
  });

  it("caps --explain agent shows each flow's filters with the NIC's counters", async () => {
    const vm2 = (await nic.devices()).get(vms.vm2!.port)!;
    const redirect = nic
      .rules(vms.vm1!.port)
      .find((x) => x.actions.some((a) => a.kind === "mirred" && a.ifindex === vm2 && a.mode === "redirect"))!;
    nic.count(vms.vm1!.port, redirect.handle!, { packets: 42, bytes: 4200, hwPackets: 40, hwBytes: 4000 });
    const text = await waitFor(
      async () => {
        const t = await runCaps({ explain: "agent", ovsdb: sb().dbRemote });
        return t.includes("42 packets") ? t : undefined;
      },
      10_000,
      "the counters in caps --explain agent",
    );
    const lines = (text ?? "").split("\n");
    const at = lines.findIndex(
      (l) => l.includes(`table=60,`) && l.includes(`actions=output:${vms.vm2!.ofport}`),
    );
    expect(lines[at + 1]).toMatch(/^ {4}offloaded: offloaded in chains [\d, ]+; OVS counted \d+ packets$/);
    expect(lines.slice(at + 2).find((l) => l.includes("42 packets"))).toBe(
      `      tvm1 chain ${redirect.chain} prio ${redirect.prio} handle 0x${redirect.handle!.toString(16)} offload: 42 packets (hardware 40, software 2), 4200 bytes`,
    );
    expect(lines[0]).toBe(
      "agent host1, bridge br-int: offload mode planner — flowdrake's tc filters in front of OVS (profile connectx-6-dx: configured (offload.profile: connectx-6-dx))",
    );
  });

  it("never touches a filter that is not flowdrake's", () => {
    expect(nic.foreign(vms.vm1!.port)).toEqual([
      expect.objectContaining({ prio: 1, handle: 0x7777, actions: [{ kind: "gact", control: TC_ACT.OK }] }),
    ]);
    expect(nic.log.some((op) => op.dev === vms.vm1!.port && op.handle === 0x7777)).toBe(false);
  });

  it("says which mode is active and why (flowdrake caps), and counts filters per device (metrics)", async () => {
    const text = await runCaps({ ovsdb: sb().dbRemote });
    expect(text).toContain(
      "agent host1, bridge br-int: offload mode planner — flowdrake's tc filters in front of OVS (profile connectx-6-dx: configured (offload.profile: connectx-6-dx))",
    );
    expect(text).toMatch(
      /tc filters: \d+ installed, \d+ wanted \(genev_sys_6081 \d+, tvm1 \d+, tvm2 \d+, tvm3 \d+/,
    );
    const perDevice = await metric("flowdrake_tc_filters{");
    expect(perDevice).toContain(`flowdrake_tc_filters{device="tvm1"} ${nic.ours("tvm1").length}`);
    expect((await metric("flowdrake_tc_reconcile_duration_seconds_count"))[0]).toMatch(/ [1-9]\d*$/);
    const other = await runCaps({ ovsdb: sb().dbRemote, agent: join(dir, "nobody.sock") });
    expect(other).toMatch(/offload mode: unknown — no flowdrake agent answers on .*nobody\.sock/);
  });

  it("forwards between VMs (OVS, behind the simulated table) while the filters are in place", async () => {
    const r = await run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.2.0.12"], { netns: vms.vm1!.netns });
    expect(r.code).toBe(0);
  });

  it("a restarted agent reads its filters back and sends nothing", async () => {
    const before = nic.log.length;
    const installed = ourCount();
    await agent!.stop();
    agent = undefined;
    await startAgent();
    await agent!.settle();
    expect(nic.log.slice(before)).toEqual([]);
    expect(ourCount()).toBe(installed);
    expect((await explain()).filters.installed).toBe((await explain()).filters.desired);
  });

  it("a model change sends only the difference, withdrawing from tc before the OpenFlow change", async () => {
    const before = nic.log.length;
    // At every tc operation, note whether OVS still holds vm3's destination lookup.
    const lookupKey = agent!.reconciler
      .installedFlows()
      .find(
        (f) => f.table === 40 && f.match.some((m) => m.field === "eth_dst" && String(m.value) === MACS.vm3),
      );
    expect(lookupKey).toBeDefined();
    const holds: boolean[] = [];
    const send = nic.send.bind(nic);
    nic.send = (ops) => {
      const have = agent!.reconciler.installedFlows().some((f) => f === lookupKey);
      for (const _ of ops) holds.push(have);
      return send(ops);
    };
    try {
      await api.delete("lport", "vm3");
      await waitFor(
        async () => !(await explain()).flows.some((f) => f.flow.includes(MACS.vm3)),
        20_000,
        "vm3 gone",
      );
    } finally {
      nic.send = send;
    }
    const ops = nic.log.slice(before);
    // Phase one ran while OVS still held the flow: the filters that shortcut it became traps first.
    expect(ops[0]?.op).toBe("replace");
    expect(holds[0]).toBe(true);
    // Phase two, after the OpenFlow bundle, only cleaned up what the new plan no longer needs.
    const after = ops.filter((_, i) => !holds[i]);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((o) => o.op === "delete")).toBe(true);
    // Nothing on vm1/vm2 redirects to vm3 any more, and vm1 → vm2 is untouched.
    const vm3 = (await nic.devices()).get(vms.vm3!.port)!;
    for (const dev of [vms.vm1!.port, vms.vm2!.port]) {
      expect(
        nic.rules(dev).some((x) => x.actions.some((a) => a.kind === "mirred" && a.ifindex === vm3)),
      ).toBe(false);
    }
    expect(ops.filter((o) => o.op !== "delete" && o.dev === vms.vm1!.port).length).toBeLessThan(
      nic.ours(vms.vm1!.port).length,
    );
    const r = await explain();
    expect(r.filters.installed).toBe(r.filters.desired);
    // The port comes back, and so do its filters.
    await api.create("lport", {
      id: "vm3",
      tenantId: "t1",
      networkId: "net1",
      macAddress: MACS.vm3,
      fixedIps: [{ subnetId: "sub1", ipAddress: "10.2.0.13" }],
    });
    await waitFor(
      () =>
        nic.rules(vms.vm1!.port).some((x) => x.actions.some((a) => a.kind === "mirred" && a.ifindex === vm3)),
      20_000,
      "vm1 → vm3 offloaded again",
    );
    await agent!.settle();
    const back = await explain();
    expect(back.filters.installed).toBe(back.filters.desired);
  });

  it("keeps the flows whose filter the NIC refuses in software, with the NIC's message", async () => {
    await agent!.stop();
    agent = undefined;
    // The NIC lost its filters (a reset) and will not take a redirect to vm2's representor.
    nic.forgetOurs();
    const vm2 = (await nic.devices()).get(vms.vm2!.port)!;
    const message = "mlx5_core: rule not supported on this representor";
    nic.refuse = (rule) =>
      rule.actions.some((a) => a.kind === "mirred" && a.ifindex === vm2 && a.mode === "redirect")
        ? message
        : undefined;
    try {
      await startAgent();
      const r = await explain();
      const toVm2 = flowOf(
        r,
        (f) => f.includes("table=60,") && f.includes(`actions=output:${vms.vm2!.ofport}`),
      );
      expect(toVm2).toMatchObject({
        status: "refused",
        reason: `not offloaded: refused by the kernel: EOPNOTSUPP, operation not supported: ${message}`,
        filters: [],
      });
      expect(
        flowOf(r, (f) => f.includes("table=60,") && f.includes(`actions=output:${vms.vm1!.ofport}`)).status,
      ).toBe("offloaded");
      expect(r.refused).toBe(1);
      expect(r.filters.installed).toBe(r.filters.desired);
      expect((await metric('flowdrake_offload_refusals_total{errno="EOPNOTSUPP"}'))[0]).toMatch(/ [1-9]\d*$/);
      expect(await metric("flowdrake_offload_refused_flows")).toContain("flowdrake_offload_refused_flows 1");
      // Nothing on the NIC redirects to vm2, and OVS still forwards to it.
      for (const dev of devs()) {
        expect(
          nic.rules(dev).some((x) => x.actions.some((a) => a.kind === "mirred" && a.ifindex === vm2)),
        ).toBe(false);
      }
      const ping = await run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.2.0.12"], {
        netns: vms.vm1!.netns,
      });
      expect(ping.code).toBe(0);
    } finally {
      nic.refuse = () => undefined;
    }
  });

  it("demotes the idlest flows when the plan needs more filters than the NIC holds; the busiest stay", async () => {
    const full = (await explain()).filters.desired;
    await agent!.stop();
    agent = undefined;
    nic.forgetOurs();
    const capacity = full - 5;
    await startAgent({ capacity, dwellMs: 300 });
    // vm1 talks to vm2 the whole time; vm3 is idle.
    const ping = run(["ping", "-c", "60", "-i", "0.1", "-W", "2", "10.2.0.12"], {
      netns: vms.vm1!.netns,
      allowFailure: true,
    });
    // The path vm1 → vm2 and back: both classifications and both destination lookups.
    const busy = (r: OffloadReport) => [
      flowOf(
        r,
        (f) => f.includes(`priority=100,in_port=${vms.vm1!.ofport} actions=`) && !f.includes("table="),
      ),
      flowOf(
        r,
        (f) => f.includes(`priority=100,in_port=${vms.vm2!.ofport} actions=`) && !f.includes("table="),
      ),
      flowOf(r, (f) => f.includes("table=40,") && f.includes(`dl_dst=${MACS.vm2}`)),
      flowOf(r, (f) => f.includes("table=40,") && f.includes(`dl_dst=${MACS.vm1}`)),
    ];
    const settled = await waitFor(
      async () => {
        const r = await explain();
        const ok =
          r.demoted > 0 && busy(r).every((f) => f.status === "offloaded") && r.filters.installed <= capacity;
        return ok ? r : undefined;
      },
      30_000,
      "the busy path offloaded, idle flows demoted, within the capacity",
    );
    if (!settled) throw new Error("unreachable: waitFor returns a value");
    const demoted = settled.flows.filter((f) => f.status === "demoted");
    expect(demoted.length).toBe(settled.demoted);
    for (const f of demoted) {
      expect(f.reason).toMatch(
        new RegExp(
          `^not offloaded: demoted: \\d+\\.\\d pkt/s, among the least busy while the plan needs \\d+ filters and the NIC holds ${capacity}$`,
        ),
      );
      // nothing on the vm1 ↔ vm2 path
      expect(f.flow).not.toMatch(
        new RegExp(`in_port=(${vms.vm1!.ofport}|${vms.vm2!.ofport}) actions=set_field`),
      );
    }
    expect(
      ourCount() + nic.ours("genev_sys_6081").length + nic.ours("vxlan_sys_4789").length,
    ).toBeLessThanOrEqual(capacity);
    expect((await metric("flowdrake_offload_demotions_total"))[0]).toMatch(/ [1-9]\d*$/);
    const p = await ping;
    expect(p.stdout).toMatch(/60 packets transmitted, 60 received/);
  });
});

describe("on a NIC (skip_sw)", () => {
  it("a filter the NIC took but does not hold in hardware (not in_hw) sends its flows to software", async () => {
    await agent!.stop();
    agent = undefined;
    nic.forgetOurs();
    const vm2 = (await nic.devices()).get(vms.vm2!.port)!;
    nic.inHw = (rule) =>
      !rule.actions.some((a) => a.kind === "mirred" && a.ifindex === vm2 && a.mode === "redirect");
    try {
      await startAgent({ tcFlags: "skip_sw" });
      const r = await waitFor(
        async () => {
          const x = await explain();
          return x.refused > 0 && x.filters.installed === x.filters.desired ? x : undefined;
        },
        10_000,
        "the not-in_hw filters refused",
      );
      expect(r!.tcFlags).toBe("skip_sw");
      const toVm2 = flowOf(
        r!,
        (f) => f.includes("table=60,") && f.includes(`actions=output:${vms.vm2!.ofport}`),
      );
      expect(toVm2).toMatchObject({
        status: "refused",
        reason: "not offloaded: refused by the kernel: the NIC does not hold the filter (skip_sw, not in_hw)",
      });
      for (const dev of devs()) {
        for (const rule of nic.rules(dev).filter((x) => x.handle !== 0x7777)) {
          expect(rule.flags?.skipSw).toBe(true);
          expect(rule.actions.some((a) => a.kind === "mirred" && a.ifindex === vm2)).toBe(false);
        }
      }
      // traps are `trap` under skip_sw: the NIC hands the packet to the kernel
      expect(
        nic
          .rules(vms.vm1!.port)
          .some((x) => x.actions.some((a) => a.kind === "gact" && a.control === TC_ACT.TRAP)),
      ).toBe(true);
      expect((await metric('flowdrake_offload_refusals_total{errno="not_in_hw"}'))[0]).toMatch(/ [1-9]\d*$/);
    } finally {
      nic.inHw = () => true;
    }
  });
});

describe("leaving planner mode", () => {
  it("an agent started in another mode removes the filters planner mode left, and only those", async () => {
    expect(ourCount()).toBeGreaterThan(0);
    // a device that cannot be read keeps its own filters, not the others'
    const unreadable = vms.vm1!.port;
    const kept = nic.ours(unreadable).length;
    expect(kept).toBeGreaterThan(0);
    nic.unreadable = (dev) => (dev === unreadable ? "ENODEV, no such device" : undefined);
    try {
      await agent!.stop();
      agent = undefined;
      await startAgent({ mode: "none" });
      expect(agent!.offload?.mode).toMatchObject({ requested: "none", active: "none" });
      for (const dev of [...devs(), "genev_sys_6081", "vxlan_sys_4789"].filter((d) => d !== unreadable))
        expect(nic.ours(dev), dev).toEqual([]);
      expect(nic.ours(unreadable)).toHaveLength(kept);
    } finally {
      nic.unreadable = () => undefined;
    }
    // the next start reads it, and removes those too
    await agent!.stop();
    agent = undefined;
    await startAgent({ mode: "none" });
    for (const dev of [...devs(), "genev_sys_6081", "vxlan_sys_4789"]) expect(nic.ours(dev), dev).toEqual([]);
    expect(nic.foreign(vms.vm1!.port)).toHaveLength(1);
  });
});
