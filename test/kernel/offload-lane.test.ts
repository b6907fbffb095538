/**
 * The offload datapath end to end in the kernel lane (real kernel, real tc,
 * OVS's kernel datapath): two flowdrake agents in `offload.mode: planner`,
 * host1 in the guest's root namespace with vm1–vm3 and vm5 (on a second
 * subnet of router r1), host2 in a namespace with vm4, Geneve between them over an underlay veth, one embedded NB
 * (test/kernel/scenarios/flowdrake-offload.sh runs it, in one boot).
 *
 * What it proves, from the kernel's own counters (`tc -s filter show`,
 * `dpctl/dump-flows`, OpenFlow n_packets):
 *   - DHCP is answered by the local agent (the first packets are local);
 *   - after the first packet (ARP, which OVS answers), every ping and iperf3
 *     packet, on one host and across the tunnel, is on flowdrake's tc filters
 *     and none on OVS's datapath or OpenFlow flows; no packet-in;
 *   - routed between two subnets of a router (vm1 → vm5): the first packet of
 *     each direction is one packet-in, then every packet is on flowdrake's
 *     filters, rewritten (pedit MAC, TTL decrement) by tc;
 *   - `caps --explain` on the live agent shows the counters per flow;
 *   - an agent killed with SIGKILL and restarted, and a port deleted and
 *     re-created in the NB, under 20 pings/s, lose no ping; the restarted
 *     agent sends no tc operation (and no flow_mod);
 *   - a capacity below the flow set demotes idle flows, keeps the busy path
 *     offloaded, and loses no ping;
 *   - offload.mode ovs runs OVS's own offload instead (the comparison), with
 *     flowdrake's filters gone;
 *   - a tc rule the kernel refuses (act_pedit unloaded and module autoloading
 *     off, so the routed vm1 → vm5 host routes cannot get their pedit
 *     filters): the kernel answers ENOENT, "Failed to load TC action
 *     module"; those routes stay in OVS (counted by OpenFlow and OVS's
 *     datapath, by none of flowdrake's filters), `caps --explain`, the
 *     metrics and the log report the kernel's errno and message, a ping
 *     across the agent's restart into planner mode and the refusal loses
 *     nothing, and the L2 flows go onto tc.
 */
import { describe, expect, it } from "vitest";
import type { OffloadReport } from "../../src/controller/tc-reconciler.js";
import { expectOneNbHolder, type HostCounters, laneScenario, type Ping } from "./scenario-run.js";

type Both = { host1: HostCounters; host2: HostCounters };

const { get, section } = laneScenario("flowdrake-offload", "flowdrake-offload.sh", 3600);
const ours = (c: Both, host: keyof Both, dev: string) => c[host].tc[dev]!.ours;
const delta = (a: Both, b: Both, host: keyof Both, dev: string, what: "packets" | "bytes" = "packets") =>
  ours(b, host, dev)[what] - ours(a, host, dev)[what];

describe("kernel lane: flowdrake offloads its own flow set (planner mode)", () => {
  it("keeps one NB holder up the whole scenario: every agent is its client", () => {
    expectOneNbHolder(get);
  });

  it("runs the whole scenario", () => {
    expect(section().exitCode, section().output).toBe(0);
  });

  it("answers DHCP from the local agent: the first packets are local", () => {
    expect(get("leases")).toEqual({
      vm1: "10.1.0.11/24",
      vm2: "10.1.0.12/24",
      vm3: "10.1.0.13/24",
      vm4: "10.1.0.14/24",
      vm5: "10.2.0.15/24",
    });
    // DISCOVER and REQUEST of each of host1's three VMs reached its agent
    expect(get<{ host1: number }>("dhcp_packet_ins").host1).toBeGreaterThanOrEqual(6);
  });

  it("puts every further ping packet on flowdrake's tc filters, one host and across Geneve; none reaches OVS", () => {
    const a = get<Both>("before_pings");
    const b = get<Both>("after_pings");
    for (const k of ["ping_vm1_vm2", "ping_vm1_vm4", "ping_vm3_vm4"])
      expect(get<Ping>(k), k).toEqual({ sent: 20, received: 20, missing: [] });
    // requests vm1→vm2 and vm1→vm4 end on vm1's filters, vm3→vm4 on vm3's; replies on vm2's and the tunnel's
    expect(delta(a, b, "host1", "vm1")).toBe(40);
    expect(delta(a, b, "host1", "vm2")).toBe(20);
    expect(delta(a, b, "host1", "vm3")).toBe(20);
    expect(delta(a, b, "host1", "genev_sys_6081")).toBe(40);
    // host2: the requests arrive decapsulated on genev_sys_6081, the replies leave from vm4
    expect(delta(a, b, "host2", "genev_sys_6081")).toBe(40);
    expect(delta(a, b, "host2", "vm4")).toBe(40);
    for (const host of ["host1", "host2"] as const) {
      // OVS's kernel datapath holds no ICMP/TCP flow at all, OpenFlow counted no IPv4 packet from a VM …
      expect(b[host].dp, host).toEqual({ ovs: 0, tc: 0 });
      expect(b[host].of - a[host].of, host).toBe(0);
      // … no packet-in, and nothing of OVS's own in tc
      expect(b[host].packetIns, host).toBe(a[host].packetIns);
      for (const dev of Object.keys(b[host].tc)) expect(b[host].tc[dev]!.others.filters, dev).toBe(0);
    }
  });

  it("carries iperf3 (TCP) on the tc path too, on one host and across the tunnel", () => {
    const a = get<Both>("after_pings");
    const b = get<Both>("after_iperf");
    const local = get<{ bytes: number; error: string | null }>("iperf_vm1_vm2");
    const remote = get<{ bytes: number; error: string | null }>("iperf_vm3_vm4");
    expect(local.error).toBeNull();
    expect(remote.error).toBeNull();
    expect(local.bytes).toBeGreaterThan(1_000_000);
    // every byte the receiver got crossed flowdrake's filters (which count headers too)
    expect(delta(a, b, "host1", "vm1", "bytes")).toBeGreaterThanOrEqual(local.bytes);
    expect(delta(a, b, "host1", "vm3", "bytes")).toBeGreaterThanOrEqual(remote.bytes);
    expect(delta(a, b, "host2", "genev_sys_6081", "bytes")).toBeGreaterThanOrEqual(remote.bytes);
    for (const host of ["host1", "host2"] as const) {
      expect(b[host].dp, host).toEqual({ ovs: 0, tc: 0 });
      expect(b[host].of - a[host].of, host).toBe(0);
    }
  });

  it("caps --explain on the live agent shows each flow's filters with the kernel's counters", () => {
    const r = get<OffloadReport>("explain1");
    expect(r.mode).toMatchObject({ requested: "planner", active: "planner" });
    expect(r.tcFlags).toBe("skip_hw");
    expect(r.filters.installed).toBe(r.filters.desired);
    expect(r.refused).toBe(0);
    const lookup = r.flows.find(
      (f) => f.flow.includes("table=40,") && f.flow.includes("dl_dst=fa:16:3e:00:00:12"),
    )!;
    expect(lookup.status).toBe("offloaded");
    const onVm1 = lookup.filters.find((f) => f.dev === "vm1")!;
    expect(onVm1.packets).toBeGreaterThanOrEqual(20);
    expect(onVm1).toMatchObject({ hwPackets: 0, inHw: false, kind: "offload" });
    expect(onVm1.swPackets).toBe(onVm1.packets);
    // the flood stays in OVS, with its reason
    expect(r.flows.find((f) => f.flow.includes("table=45,") && f.flow.includes("resubmit"))).toMatchObject({
      status: "software",
      reason: "not offloaded: resubmit followed by more actions is not offloadable",
    });
    expect(r.share?.packets).toBeGreaterThan(0.99);
  });
});

describe("kernel lane: routed flows on the NIC (planner mode)", () => {
  it("routes vm1 → vm5 through r1: one packet-in per direction, then every packet on flowdrake's tc filters", () => {
    type Host1 = { host1: HostCounters };
    const first = get<Host1>("routed_first").host1;
    const firstAfter = get<Host1>("routed_first_after").host1;
    // one echo request, answered: the request and the reply went to host1's agent, which installed a
    // host route each
    expect(get<number>("routed_first_ping")).toBe(1);
    expect(firstAfter.packetIns! - first.packetIns!).toBe(2);
    expect(get<Ping>("ping_vm1_vm5")).toEqual({ sent: 20, received: 20, missing: [] });
    const a = get<Host1>("routed_before").host1;
    const b = get<Host1>("routed_after").host1;
    // requests end on vm1's filters (redirected to vm5), replies on vm5's
    expect(b.tc.vm1!.ours.packets - a.tc.vm1!.ours.packets).toBe(20);
    expect(b.tc.vm5!.ours.packets - a.tc.vm5!.ours.packets).toBe(20);
    // no packet-in and no IPv4 packet through OpenFlow for them
    expect(b.packetIns).toBe(a.packetIns);
    expect(b.of - a.of).toBe(0);
    // routed on the NIC: the TTL was decremented there
    expect(get("routed_ttl")).toBe(63);
  });

  it("offloads both host routes with a pedit MAC rewrite and TTL decrement, counted by the kernel", () => {
    const routes = get<OffloadReport["flows"]>("routed_explain").filter((f) => f.flow.includes("table=30,"));
    expect(routes).toHaveLength(2);
    for (const r of routes) {
      expect(r.status, r.flow).toBe("offloaded");
      expect(r.flow).toMatch(/set_field:[0-9a-f:]+->eth_src,set_field:[0-9a-f:]+->eth_dst,dec_ttl/);
      expect(
        r.filters.reduce((n, f) => n + f.packets, 0),
        r.flow,
      ).toBeGreaterThanOrEqual(20);
    }
    const withPedit = get<string[][]>("routed_tc_vm1");
    expect(withPedit.length).toBeGreaterThan(0);
    expect(withPedit.every((kinds) => kinds.includes("pedit"))).toBe(true);
  });
});

describe("kernel lane: changes and restarts under traffic", () => {
  it("loses no ping while the agent is killed with SIGKILL and restarted and a port is deleted and re-created", () => {
    for (const k of ["churn_ping_vm2", "churn_ping_vm4"]) {
      const p = get<Ping>(k);
      expect(p.sent, k).toBeGreaterThan(100);
      expect(p.received, k).toBe(p.sent);
    }
  });

  it("the restarted agent reads its filters back and sends no tc operation", () => {
    const before = get<string[]>("handles_before_kill");
    expect(before.length).toBeGreaterThan(100);
    expect(get<string[]>("handles_after_restart")).toEqual(before);
    expect(get("restart_tc_ops")).toBe(0);
    const log = get<string[]>("restart_log");
    expect(log.some((l) => l.includes("read installed tc filters"))).toBe(true);
    // nor did the OpenFlow side change anything: the agent logs "reconciled" only when it sent something
    expect(log.filter((l) => l.includes('"msg":"reconciled"'))).toEqual([]);
  });
});

describe("kernel lane: the offload budget", () => {
  it("demotes idle flows below the capacity, keeps the busy path offloaded, loses no ping", () => {
    const { capacity } = get<{ desired: number; capacity: number }>("budget_capacity");
    const r = get<OffloadReport | undefined>("budget");
    expect(r?.capacity, `the budget did not settle: ${JSON.stringify(get("budget_diag"))}`).toBe(capacity);
    if (!r) return;
    expect(r.filters.installed).toBeLessThanOrEqual(capacity);
    expect(r.demoted).toBeGreaterThan(0);
    const demoted = r.flows.filter((f) => f.status === "demoted");
    expect(demoted).toHaveLength(r.demoted);
    for (const f of demoted)
      expect(f.reason).toMatch(/^not offloaded: demoted: \d+\.\d pkt\/s, among the least busy/);
    expect(Number(get("budget_demotions"))).toBeGreaterThanOrEqual(1);
    // 20/s from before the agent restarted until 40 replies after the budget settled; only the
    // request in flight when ping was stopped may lack its reply
    const p = get<Ping>("budget_ping");
    expect(p.sent).toBeGreaterThan(40);
    expect(p.missing).toEqual([]);
    expect(p.received).toBeGreaterThanOrEqual(p.sent - 1);
  });
});

describe("kernel lane: offload.mode ovs, for comparison", () => {
  it("runs OVS's own offload; flowdrake's filters are gone", () => {
    const m = get<{ mode: OffloadReport["mode"] }>("ovs_mode1");
    expect(m.mode.active).toBe("ovs");
    const b = get<Both>("ovs_after_pings");
    const diag = [
      `before the pings: ${JSON.stringify(get<Both>("ovs_before_pings"))}`,
      `host2's mode: ${JSON.stringify(get<unknown>("ovs_mode2"))}`,
      ...get<string[]>("ovs_diag"),
    ].join("\n");
    for (const host of ["host1", "host2"] as const) {
      for (const dev of Object.keys(b[host].tc))
        expect(b[host].tc[dev]!.ours.filters, `${host} ${dev}\n${diag}`).toBe(0);
    }
    for (const k of ["ovs_ping_vm1_vm2", "ovs_ping_vm1_vm4", "ovs_ping_vm3_vm4"])
      expect(get<Ping>(k), `${k}\n${diag}`).toEqual({ sent: 20, received: 20, missing: [] });
    // OVS put datapath flows into tc (its own filters carry the packets)
    expect(b.host1.dp.tc, `host1's datapath\n${JSON.stringify(b.host1)}\n${diag}`).toBeGreaterThan(0);
  });
});

describe("kernel lane: a tc rule the kernel refuses (planner mode, act_pedit unavailable)", () => {
  type Host1 = { host1: HostCounters };
  const routeOf = (r: OffloadReport, ip: string) =>
    r.flows.filter((f) => f.flow.includes("table=30,") && f.flow.includes(`nw_dst=${ip} `));
  const kernelMessage =
    /^not offloaded: refused by the kernel: RTM_NEWTFILTER flower \(message \d+ of the batch\) failed: ENOENT, no such object: Failed to load TC action module$/;

  it("the kernel cannot load act_pedit: a pedit filter added by hand is refused", () => {
    expect(get<{ loaded: boolean }>("refusal_pedit_before").loaded).toBe(true);
    const probe = get<{ exitCode: number; stderr: string[] }>("refusal_by_hand");
    expect(probe.exitCode).not.toBe(0);
    expect(probe.stderr.join("\n")).toContain("Failed to load TC action module");
  });

  it("loses no ping of vm1 → vm5 across the agent's restart and the refusal of its host routes", () => {
    const p = get<{ sent: number; received: number; missing: number[] }>("refusal_ping");
    // 20/s from before the agent stopped until 40 replies after the refusal; only the
    // request in flight when ping was stopped may lack its reply
    expect(p.sent).toBeGreaterThan(40);
    expect(p.missing).toEqual([]);
    expect(p.received).toBeGreaterThanOrEqual(p.sent - 1);
    // the restarted agent found the routes in OVS: not one packet reached it
    expect(get<number>("refusal_packet_ins")).toBe(0);
  });

  it("keeps the refused routes in OVS: OpenFlow and OVS's datapath count their packets, flowdrake's filters none", () => {
    expect(get<Ping>("refusal_ping_vm5")).toEqual({ sent: 20, received: 20, missing: [] });
    const a = get<Host1>("refusal_a").host1;
    const b = get<Host1>("refusal_b").host1;
    // 20 requests and 20 replies through port security's OpenFlow flows, and OVS's kernel datapath
    expect(b.of - a.of).toBe(40);
    expect(b.lookups.hit + b.lookups.missed - a.lookups.hit - a.lookups.missed).toBeGreaterThanOrEqual(40);
    expect(b.dp.tc).toBe(0);
    // no flowdrake filter ended any of them on vm1 (requests) or vm5 (replies), and no packet-in
    expect(b.tc.vm1!.ours.packets - a.tc.vm1!.ours.packets).toBe(0);
    expect(b.tc.vm5!.ours.packets - a.tc.vm5!.ours.packets).toBe(0);
    expect(b.packetIns).toBe(a.packetIns);
    for (const dev of Object.keys(b.tc)) expect(b.tc[dev]!.others.filters, dev).toBe(0);
    // flowdrake's filters that match the routed addresses only hand the packets to OVS: none redirects,
    // drops or rewrites
    const tc = get<{ ours: number; routed: string[][] }>("refusal_tc_routed");
    expect(tc.ours).toBeGreaterThan(100);
    for (const actions of tc.routed)
      for (const a of actions) expect(a, JSON.stringify(tc.routed)).not.toMatch(/^(mirred|pedit|gact drop)/);
    const r = get<OffloadReport>("refusal_explain");
    for (const ip of ["10.2.0.15", "10.1.0.11"]) {
      const [route, ...more] = routeOf(r, ip);
      expect(more, ip).toEqual([]);
      expect(route?.filters, ip).toEqual([]);
      expect(route?.softwarePackets, ip).toBeGreaterThanOrEqual(20);
    }
  });

  it("reports the refusal: the kernel's errno and message in caps --explain, the metrics and the log", () => {
    const r = get<OffloadReport>("refusal_explain");
    for (const ip of ["10.2.0.15", "10.1.0.11"]) {
      const [route] = routeOf(r, ip);
      expect(route?.status, ip).toBe("refused");
      expect(route?.reason, ip).toMatch(kernelMessage);
    }
    // every flow kept in software by a refusal needed pedit (a MAC or IP rewrite, a TTL decrement)
    const refused = r.flows.filter((f) => f.status === "refused");
    expect(refused.length).toBe(r.refused);
    for (const f of refused) {
      expect(f.reason, f.flow).toMatch(kernelMessage);
      expect(f.flow).toMatch(/set_field:|dec_ttl|mod_(dl|nw)_/);
    }
    const m = get<Record<string, number>>("refusal_metrics");
    expect(m).toEqual({
      'flowdrake_offload_refusals_total{errno="ENOENT"}': expect.any(Number) as number,
      flowdrake_offload_refused_flows: r.refused,
    });
    expect(m['flowdrake_offload_refusals_total{errno="ENOENT"}']).toBeGreaterThanOrEqual(2);
    // flowdrake caps --explain agent:<socket>, as printed
    const cli = get<string[]>("refusal_cli");
    expect(cli).toContain(`  flows: 0 demoted by the offload budget, ${r.refused} refused by the kernel`);
    for (const ip of ["10.2.0.15", "10.1.0.11"]) {
      const at = cli.findIndex((l) => l.includes("table=30,") && l.includes(`nw_dst=${ip} `));
      expect(at, `${ip} in ${cli.join("\n")}`).toBeGreaterThanOrEqual(0);
      expect(cli[at + 1]).toMatch(
        /^ {4}refused: not offloaded: refused by the kernel: .*failed: ENOENT, no such object: Failed to load TC action module; OVS counted \d+ packets$/,
      );
    }
    expect(get<string[]>("refusal_log").some((l) => l.includes("Failed to load TC action module"))).toBe(
      true,
    );
  });

  it("keeps the flows the kernel accepts on tc: vm1 → vm2 is carried by flowdrake's filters", () => {
    expect(get<Ping>("refusal_ping_vm2")).toEqual({ sent: 20, received: 20, missing: [] });
    const b = get<Host1>("refusal_b").host1;
    const c = get<Host1>("refusal_c").host1;
    expect(c.tc.vm1!.ours.packets - b.tc.vm1!.ours.packets).toBe(20);
    expect(c.tc.vm2!.ours.packets - b.tc.vm2!.ours.packets).toBe(20);
    expect(c.of - b.of).toBe(0);
    expect(c.packetIns).toBe(b.packetIns);
    const r = get<OffloadReport>("refusal_explain");
    expect(r.mode.active).toBe("planner");
    expect(r.filters.installed).toBe(r.filters.desired);
    expect(r.filters.installed).toBeGreaterThan(100);
    const lookup = r.flows.find(
      (f) => f.flow.includes("table=40,") && f.flow.includes("dl_dst=fa:16:3e:00:00:12"),
    )!;
    expect(lookup.status).toBe("offloaded");
    expect(lookup.filters.find((f) => f.dev === "vm1")!.packets).toBeGreaterThanOrEqual(20);
  });
});
