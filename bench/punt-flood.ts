/**
 * `npm run bench -- punt-flood`: does a neighbour keep its DHCP and its
 * first packets when other VMs on the host flood the controller (issue 13,
 * defect 3)? flowdrake's answer is a punt budget — a pktps meter per port
 * and app, OVS's "controller" meter for the whole host (`punt.switchRatePps`)
 * and the agent's round-robin queue per port with the host's budget
 * (`punt.hostRatePps`, src/controller/punt-queue.ts);
 * OVN's is ovn-controller's pinctrl thread answering DHCP itself, unmetered
 * as installed, or behind a CoPP meter for the logical switch when one is
 * configured.
 *
 * One chassis per series, each an Open vSwitch of its own (userspace
 * datapath, VMs in namespaces), in the same run: subnet A (10.5.0.0/24, DHCP
 * on) holds the neighbour VM and 8 flooding VMs, subnet B (10.6.0.0/22) a
 * sink VM with many addresses, router r1 joins them. Series:
 *   - flowdrake: the agent (`flowdrake agent`, built CLI, embedded NB) with
 *     its defaults — DHCP punts ≤ 100/s per port, all punts ≤ 1,000/s for
 *     the host, reactive l3;
 *   - ovn: the same topology with ovn-nbctl, a DHCP_Options row for A on
 *     every port of A, no CoPP (as installed);
 *   - ovn-copp: the same with a CoPP meter of 1,000 pktps on A's
 *     dhcpv4-opts (OVN's own rate limiting, shared by the switch's ports);
 *     the series fails unless OVN installed a meter, and meters.allIn shows
 *     whether any packet reached it.
 * Each series measures two phases, quiet (no flood) then flood (8 VMs each
 * running test/harness/dhcp-flood.py at --flood-pps DISCOVERs a second; the
 * phase starts once every flooder has sent a quarter second's worth). In
 * each phase the neighbour
 *   1. times DISCOVER → OFFER round trips (bench/dhcp-probe.py: --probes
 *      DISCOVERs --interval-ms apart, kernel receive stamps, a probe with no
 *      OFFER within 4 s — when a client would retransmit — is lost), then
 *   2. sends one UDP datagram to each of --probes addresses of the sink that
 *      nothing has sent to yet, --interval-ms apart (bench/udp-probe.py, as
 *      the first-packet suite does): a routed first packet, which in
 *      flowdrake's reactive l3 is a punt and a host route, in OVN only a
 *      datapath upcall. Latency is arrival − send on one clock; a datagram
 *      that never arrives is lost.
 * Over the phase's measuring window it records the controller's CPU (the
 * agent, or ovn-controller with its pinctrl thread) and ovs-vswitchd's, in
 * % of one core; what the flooders sent and got back; flowdrake's punt
 * counters (dhcp and l3 packet-ins, the agent queue's drops, the agent's
 * passes) or pinctrl's packet-in count (OVN's coverage counter); what
 * reached every meter and what it dropped, from `ovs-ofctl meter-stats`
 * (flowdrake: the flooders' and the neighbour's DHCP meters and the host's
 * controller meter apart); OVS's `rconn_overflow` coverage counter (messages
 * OVS dropped because its queue for the controller connection was full —
 * 100 packet-ins by default — as happens when the controller does not read
 * fast enough); and the load average, since the machine's two cores are
 * shared. The flooders' own CPU (Python) is part of the load on every
 * series alike.
 *
 * Ratios per run: flowdrake's p99 over OVN's (and over OVN with CoPP), quiet
 * and under flood, for DHCP and for first packets. --runs repeats the whole
 * set (default 2; each run builds fresh sandboxes); --series picks series;
 * --controller-queue N overrides br-int's other_config:controller-queue-size
 * in the flowdrake series (how many packet-ins OVS holds for the agent before
 * it drops them in arrival order: the agent's punt.switchQueue, 512, unless
 * overridden; OVS's default is 100, `--controller-queue 100` measures it).
 * JSON goes to bench/results/punt-flood.json.
 * FLOWDRAKE_AGENT_NODE_ARGS passes node flags to the agent, as in the
 * first-packet suite.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { meterId, CONTROLLER_METER } from "../src/datapath/index.js";
import { NbApi } from "../src/nb/api.js";
import { openEmbeddedStore } from "../src/nb/store/embedded.js";
import { OvsSandbox, type VmPort } from "../src/sandbox/ovs.js";
import { makeRunDir } from "../src/sandbox/rundir.js";
import { FlowdrakeError } from "../src/util/errors.js";
import { run } from "../src/util/exec.js";
import { type OvnSandbox, ovnVersion } from "./control-plane-ovn.js";
import {
  AgentProcess,
  Receiver,
  cpuMs,
  ipv4Only,
  ovnRouterPort,
  ovnSettle,
  send,
  startOvnNetdev,
  vswitchdPid,
  waitUntil,
} from "./first-packet.js";
import {
  type LatencyStats,
  type MeterStat,
  type PuntFloodOptions,
  type SeriesName,
  latencyStats,
  parseDhcpProbe,
  parseMeterStats,
  parseOptions,
  ratio,
} from "./punt-flood-stats.js";
import { printTable, writeResult } from "./report.js";

const PYTHON = "python3";
const DHCP_PROBE = join(import.meta.dirname, "..", "..", "bench", "dhcp-probe.py");
const DHCP_FLOOD = join(import.meta.dirname, "..", "..", "test", "harness", "dhcp-flood.py");
/** A probe with no OFFER this long after its DISCOVER is lost: a client retransmits then (RFC 2131 §4.1). */
const DHCP_TIMEOUT_MS = 4000;
const WARMUP_PROBES = 20;
const WARMUP_DATAGRAMS = 50;
const FLOODERS = 8;
/** The CoPP meter of the ovn-copp series, packets per second for the whole switch. */
const COPP_PPS = 1000;

const A = { cidr: "10.5.0.0/24", gateway: "10.5.0.1", prefix: 24 };
const B = { cidr: "10.6.0.0/22", gateway: "10.6.0.1", prefix: 22 };
const NEIGHBOUR = { name: "nbr", ip: "10.5.0.10", mac: "fa:16:3e:5f:00:0a" };
const flooder = (k: number) => ({
  name: `fl${k + 1}`,
  ip: `10.5.0.${21 + k}`,
  mac: `fa:16:3e:5f:00:${(0x15 + k).toString(16)}`,
});
const SINK_MAC = "fa:16:3e:5f:01:02";
const OVN_LRP_MAC = { a: "fa:16:3e:5f:ff:01", b: "fa:16:3e:5f:ff:02" };
const DHCP_SERVER_MAC = "fa:16:3e:5f:ff:fe";

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const load = () => loadavg().map((x) => round(x, 2));

/** The sink's address i: 10.6.0.2 + i (inside B). */
function sinkAddress(i: number): string {
  const n = ((10 << 24) | (6 << 16)) + 2 + i;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

/** Sink addresses: warm-up first, then a fresh block per phase. */
const sinkCount = (o: PuntFloodOptions) => WARMUP_DATAGRAMS + 2 * o.probes;
const phaseAddresses = (o: PuntFloodOptions, phase: number) =>
  range(o.probes, WARMUP_DATAGRAMS + phase * o.probes).map(sinkAddress);

// ── what a series is made of ────────────────────────────────────────────────

interface Side {
  ovs: OvsSandbox;
  neighbour: VmPort;
  flooders: VmPort[];
  sink: VmPort;
  controllerPid: () => number;
  /** flowdrake: the agent's punt counters. */
  punts?: () => Promise<PuntCounters>;
  /** OVN: packet-ins pinctrl took (its coverage counter). */
  pinctrlPacketIns?: () => Promise<number | undefined>;
}

interface PuntCounters {
  dhcpPacketIns: number;
  l3PacketIns: number;
  queueDrops: number;
  /** Agent passes (desired → installed), which a reactive flow waits for when one is running. */
  passes: number;
}

export interface PhaseResult {
  phase: "quiet" | "flood";
  dhcp: LatencyStats & { worstLateUs: number; foreignOffers: number };
  firstPacket: LatencyStats;
  windowSeconds: number;
  controllerCpuPct: number;
  vswitchdCpuPct: number;
  /** What the flooders sent and received (OFFERs, mostly) per second over the window. */
  flood?: { sentPps: number; receivedPps: number };
  punts?: PuntCounters;
  pinctrlPacketIns?: number;
  meters: {
    /** flowdrake: drops of the flooders' DHCP meters, the neighbour's, the host's controller meter. */
    floodersDhcpDropped?: number;
    neighbourDhcpDropped?: number;
    controllerIn?: number;
    controllerDropped?: number;
    /** Every meter on br-int together: packets that reached one, packets one dropped. */
    allIn: number;
    allDropped: number;
  };
  rconnOverflow: number;
  loadavg: number[];
}

export interface SeriesResult {
  name: SeriesName;
  config: string;
  setupSeconds: number;
  phases: PhaseResult[];
}

// ── the instruments ─────────────────────────────────────────────────────────

async function dhcpProbe(vm: VmPort, count: number, intervalMs: number): Promise<PhaseResult["dhcp"]> {
  const r = await run(
    [
      PYTHON,
      DHCP_PROBE,
      "eth0",
      "--count",
      String(count),
      "--interval-ms",
      String(intervalMs),
      "--timeout-ms",
      String(DHCP_TIMEOUT_MS),
    ],
    { netns: vm.netns, timeoutMs: count * intervalMs + DHCP_TIMEOUT_MS + 30_000 },
  );
  const { probes, summary } = parseDhcpProbe(r.stdout);
  const rtts = probes.flatMap((p) => (p.recvNs === undefined ? [] : [Number(p.recvNs - p.sentNs) / 1e6]));
  return {
    ...latencyStats(rtts, summary.sent),
    worstLateUs: summary.worstLateUs,
    foreignOffers: summary.foreign,
  };
}

async function meterStats(ovs: OvsSandbox): Promise<Map<string, MeterStat>> {
  const { stdout } = await run(["ovs-ofctl", "-O", "OpenFlow13", "meter-stats", ovs.mgmtRemote()], {
    env: ovs.env,
  });
  return parseMeterStats(stdout);
}

async function rconnOverflow(ovs: OvsSandbox): Promise<number> {
  const { stdout } = await ovs.appctl("ovs-vswitchd", "coverage/read-counter", "rconn_overflow");
  return Number(stdout.trim());
}

/** A VM's eth0 packet counters. */
async function linkPackets(vm: VmPort): Promise<{ tx: number; rx: number }> {
  const { stdout } = await run(["ip", "-j", "-s", "link", "show", "dev", "eth0"], { netns: vm.netns });
  const [link] = JSON.parse(stdout) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[];
  if (!link) throw new FlowdrakeError("COMMAND", `no eth0 in ${vm.netns}`);
  return { tx: link.stats64.tx.packets, rx: link.stats64.rx.packets };
}

interface Snapshot {
  at: number;
  controllerMs: number;
  vswitchdMs: number;
  meters: Map<string, MeterStat>;
  rconn: number;
  flood: { tx: number; rx: number }[];
  punts?: PuntCounters;
  pinctrl?: number;
}

async function snapshot(side: Side): Promise<Snapshot> {
  const at = performance.now();
  const controllerMs = cpuMs(side.controllerPid());
  const vswitchdMs = cpuMs(vswitchdPid(side.ovs));
  return {
    at,
    controllerMs,
    vswitchdMs,
    meters: await meterStats(side.ovs),
    rconn: await rconnOverflow(side.ovs),
    flood: await Promise.all(side.flooders.map(linkPackets)),
    ...(side.punts ? { punts: await side.punts() } : {}),
    ...(side.pinctrlPacketIns ? { pinctrl: await side.pinctrlPacketIns() } : {}),
  };
}

/** The flooders: dhcp-flood.py in each VM, until stopped. */
class Flood {
  private constructor(private readonly procs: ChildProcess[]) {}

  static async start(vms: VmPort[], pps: number): Promise<Flood> {
    const before = await Promise.all(vms.map(linkPackets));
    const procs = vms.map((vm) =>
      spawn("ip", ["netns", "exec", vm.netns, PYTHON, DHCP_FLOOD, "eth0", String(pps)], {
        stdio: ["ignore", "ignore", "inherit"],
      }),
    );
    const flood = new Flood(procs);
    try {
      await waitUntil("every flooder sending", 30_000, async () => {
        const dead = procs.find((p) => p.exitCode !== null);
        if (dead) throw new FlowdrakeError("COMMAND", `dhcp-flood.py exited ${dead.exitCode}`);
        const now = await Promise.all(vms.map(linkPackets));
        return now.every((n, i) => n.tx - before[i]!.tx >= pps / 4) || undefined;
      });
    } catch (err) {
      await flood.stop();
      throw err;
    }
    return flood;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        const gone = new Promise((r) => p.once("exit", r));
        p.kill("SIGTERM");
        await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
        if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
      }),
    );
  }
}

/** One phase on one side: the neighbour's DHCP probes, then its routed first packets. */
async function measurePhase(
  side: Side,
  o: PuntFloodOptions,
  phase: PhaseResult["phase"],
  rx: Receiver,
): Promise<PhaseResult> {
  const flood = phase === "flood" ? await Flood.start(side.flooders, o.floodPps) : undefined;
  try {
    const before = await snapshot(side);
    const dhcp = await dhcpProbe(side.neighbour, o.probes, o.intervalMs);
    rx.clear();
    const rep = await send(
      side.neighbour.netns,
      phaseAddresses(o, phase === "quiet" ? 0 : 1),
      1000 / o.intervalMs,
    );
    await rx.settle(rep.sent, () => rx.arrivals.length);
    const after = await snapshot(side);
    const wallMs = after.at - before.at;
    const pct = (a: number, b: number) => round((100 * (b - a)) / wallMs, 1);
    const dropped = (id: string) =>
      (after.meters.get(id)?.dropped ?? 0) - (before.meters.get(id)?.dropped ?? 0);
    const allDropped = [...after.meters.keys()].reduce((s, id) => s + dropped(id), 0);
    const flowdrake = side.punts !== undefined;
    const controllerId = [...after.meters.keys()].find(
      (k) => k === "controller" || k === String(CONTROLLER_METER),
    );
    const sum = (f: (i: number) => number) => side.flooders.reduce((s, _, i) => s + f(i), 0);
    const result: PhaseResult = {
      phase,
      dhcp,
      firstPacket: latencyStats(
        rx.arrivals.map((a) => Number(a.recvNs - a.sentNs) / 1e6),
        rep.sent,
      ),
      windowSeconds: round(wallMs / 1000, 2),
      controllerCpuPct: pct(before.controllerMs, after.controllerMs),
      vswitchdCpuPct: pct(before.vswitchdMs, after.vswitchdMs),
      ...(flood
        ? {
            flood: {
              sentPps: Math.round((sum((i) => after.flood[i]!.tx - before.flood[i]!.tx) * 1000) / wallMs),
              receivedPps: Math.round((sum((i) => after.flood[i]!.rx - before.flood[i]!.rx) * 1000) / wallMs),
            },
          }
        : {}),
      ...(before.punts && after.punts
        ? {
            punts: {
              dhcpPacketIns: after.punts.dhcpPacketIns - before.punts.dhcpPacketIns,
              l3PacketIns: after.punts.l3PacketIns - before.punts.l3PacketIns,
              queueDrops: after.punts.queueDrops - before.punts.queueDrops,
              passes: after.punts.passes - before.punts.passes,
            },
          }
        : {}),
      ...(before.pinctrl !== undefined && after.pinctrl !== undefined
        ? { pinctrlPacketIns: after.pinctrl - before.pinctrl }
        : {}),
      meters: {
        ...(flowdrake
          ? {
              floodersDhcpDropped: sum((i) => dropped(String(meterId("dhcp", side.flooders[i]!.ofport)))),
              neighbourDhcpDropped: dropped(String(meterId("dhcp", side.neighbour.ofport))),
            }
          : {}),
        ...(controllerId
          ? {
              controllerIn:
                after.meters.get(controllerId)!.packetsIn - (before.meters.get(controllerId)?.packetsIn ?? 0),
              controllerDropped: dropped(controllerId),
            }
          : {}),
        allIn: [...after.meters.keys()].reduce(
          (s, id) => s + after.meters.get(id)!.packetsIn - (before.meters.get(id)?.packetsIn ?? 0),
          0,
        ),
        allDropped,
      },
      rconnOverflow: after.rconn - before.rconn,
      loadavg: load(),
    };
    return result;
  } finally {
    await flood?.stop();
  }
}

/** Warm-up (JIT, ARP, the path checked end to end), then the quiet and the flood phase. */
async function measureSide(side: Side, o: PuntFloodOptions, name: SeriesName): Promise<PhaseResult[]> {
  await run(["ping", "-c", "1", "-W", "2", A.gateway], { netns: side.neighbour.netns });
  const warm = await dhcpProbe(side.neighbour, WARMUP_PROBES, o.intervalMs);
  if (warm.answered < WARMUP_PROBES * 0.9) {
    throw new FlowdrakeError(
      "NOT_ANSWERED",
      `${name}: ${warm.answered} of ${WARMUP_PROBES} warm-up DISCOVERs offered`,
    );
  }
  const rx = await Receiver.start(side.sink.netns, "recv");
  try {
    const rep = await send(side.neighbour.netns, range(WARMUP_DATAGRAMS).map(sinkAddress), 50);
    await rx.settle(rep.sent, () => rx.arrivals.length);
    if (rx.arrivals.length < rep.sent * 0.9) {
      throw new FlowdrakeError(
        "NOT_ROUTED",
        `${name}: ${rx.arrivals.length} of ${rep.sent} warm-up datagrams arrived`,
      );
    }
    const out: PhaseResult[] = [];
    for (const phase of ["quiet", "flood"] as const) {
      const r = await measurePhase(side, o, phase, rx);
      out.push(r);
      process.stdout.write(
        `  ${phase}: DHCP ${r.dhcp.answered}/${r.dhcp.sent} p50 ${r.dhcp.p50Ms} p99 ${r.dhcp.p99Ms} ms; ` +
          `first packet ${r.firstPacket.answered}/${r.firstPacket.sent} p99 ${r.firstPacket.p99Ms} ms; ` +
          `controller ${r.controllerCpuPct}% (load ${r.loadavg[0]})\n`,
      );
    }
    return out;
  } finally {
    await rx.stop();
  }
}

async function configureSink(vm: VmPort, o: PuntFloodOptions): Promise<void> {
  const cmds = range(sinkCount(o) - 1, 1).map((i) => `addr add ${sinkAddress(i)}/${B.prefix} dev eth0`);
  await run(["ip", "-batch", "-"], { netns: vm.netns, input: `${cmds.join("\n")}\n` });
}

/** The 10 VMs, on whichever switch. */
async function plugVms(ovs: OvsSandbox, o: PuntFloodOptions, tag: string) {
  const neighbour = await ovs.addVm(`${tag}nb`, {
    ifaceId: NEIGHBOUR.name,
    mac: NEIGHBOUR.mac,
    ipCidr: `${NEIGHBOUR.ip}/${A.prefix}`,
    gateway: A.gateway,
  });
  const flooders: VmPort[] = [];
  for (let k = 0; k < FLOODERS; k++) {
    const f = flooder(k);
    flooders.push(
      await ovs.addVm(`${tag}f${k}`, { ifaceId: f.name, mac: f.mac, ipCidr: `${f.ip}/${A.prefix}` }),
    );
  }
  const sink = await ovs.addVm(`${tag}sk`, {
    ifaceId: "sink",
    mac: SINK_MAC,
    ipCidr: `${sinkAddress(0)}/${B.prefix}`,
    gateway: B.gateway,
  });
  for (const vm of [neighbour, ...flooders, sink]) await ipv4Only(vm);
  await configureSink(sink, o);
  return { neighbour, flooders, sink };
}

// ── the series ──────────────────────────────────────────────────────────────

async function flowdrakeSeries(o: PuntFloodOptions): Promise<SeriesResult> {
  const t0 = performance.now();
  const dir = makeRunDir("pf-fd");
  const nbDir = join(dir, "nb");
  let ovs: OvsSandbox | undefined;
  let agent: AgentProcess | undefined;
  try {
    const store = await openEmbeddedStore(nbDir);
    const api = new NbApi(store);
    await api.create("tenant", { id: "t1" });
    for (const [net, seg, sub, s] of [
      ["netA", 131, "subA", A],
      ["netB", 132, "subB", B],
    ] as const) {
      await api.create("lswitch", { id: net, tenantId: "t1", networkType: "geneve", segmentationId: seg });
      await api.create("subnet", {
        id: sub,
        tenantId: "t1",
        networkId: net,
        cidr: s.cidr,
        gatewayIp: s.gateway,
      });
    }
    await api.create("lrouter", { id: "r1", tenantId: "t1" });
    await api.routerAddInterface("r1", { subnetId: "subA" });
    await api.routerAddInterface("r1", { subnetId: "subB" });
    for (const p of [NEIGHBOUR, ...range(FLOODERS).map(flooder)]) {
      await api.create("lport", {
        id: p.name,
        tenantId: "t1",
        networkId: "netA",
        macAddress: p.mac,
        fixedIps: [{ subnetId: "subA", ipAddress: p.ip }],
      });
    }
    await api.create("lport", {
      id: "sink",
      tenantId: "t1",
      networkId: "netB",
      macAddress: SINK_MAC,
      fixedIps: range(sinkCount(o)).map((i) => ({ subnetId: "subB", ipAddress: sinkAddress(i) })),
    });
    await store.close();
    ovs = await OvsSandbox.start({ label: "pf-fd" });
    agent = await AgentProcess.start(dir, ovs, nbDir, []);
    const vms = await plugVms(ovs, o, "pfd");
    const a = agent;
    await waitUntil(
      "every port bound",
      60_000,
      async () => (await a.counters()).localPorts === FLOODERS + 2 || undefined,
    );
    if (o.controllerQueue !== undefined) {
      const key = "other_config:controller-queue-size";
      await ovs.vsctl("set", "Bridge", "br-int", `${key}=${o.controllerQueue}`);
      const got = (await ovs.vsctl("get", "Bridge", "br-int", key)).stdout.trim().replace(/"/g, "");
      if (got !== String(o.controllerQueue)) {
        throw new FlowdrakeError("OVSDB", `br-int ${key} is ${got}, not ${o.controllerQueue}`);
      }
    }
    const side: Side = {
      ovs,
      ...vms,
      controllerPid: () => a.pid,
      punts: async () => {
        const m = await a.metrics();
        return {
          dhcpPacketIns: m.get('flowdrake_packet_ins_total{app="dhcp"}') ?? 0,
          l3PacketIns: m.get('flowdrake_packet_ins_total{app="l3"}') ?? 0,
          queueDrops: m.get("flowdrake_punt_queue_drops_total") ?? 0,
          passes: m.get("flowdrake_reconcile_duration_seconds_count") ?? 0,
        };
      },
    };
    const setupSeconds = round((performance.now() - t0) / 1000, 1);
    process.stdout.write(`flowdrake (defaults; set up in ${setupSeconds} s):\n`);
    return {
      name: "flowdrake",
      config:
        "agent defaults: dhcp.ratePps 100 per port, punt.hostRatePps 1000, punt.switchQueue 512, l3 reactive" +
        (o.controllerQueue === undefined ? "" : `; br-int controller-queue-size ${o.controllerQueue}`),
      setupSeconds,
      phases: await measureSide(side, o, "flowdrake"),
    };
  } finally {
    await agent?.stop();
    await ovs?.stop();
    if (!process.env.FLOWDRAKE_KEEP_SANDBOX) rmSync(dir, { recursive: true, force: true });
  }
}

async function ovnCoverage(ovn: OvnSandbox, counter: string): Promise<number | undefined> {
  const pid = ovn.controllerPid();
  if (pid === undefined) return undefined;
  const r = await run(
    ["ovs-appctl", "-t", join(ovn.dir, `ovn-controller.${pid}.ctl`), "coverage/read-counter", counter],
    { env: ovn.env, allowFailure: true },
  );
  const n = Number(r.stdout.trim());
  return r.code === 0 && Number.isFinite(n) ? n : undefined;
}

async function ovnSeries(o: PuntFloodOptions, copp: boolean): Promise<SeriesResult> {
  const t0 = performance.now();
  const ovn = await startOvnNetdev();
  try {
    const ports = [NEIGHBOUR, ...range(FLOODERS).map(flooder)];
    await ovn.nbctl(
      "ls-add",
      "lsA",
      "--",
      "ls-add",
      "lsB",
      "--",
      "lr-add",
      "r1",
      ...ovnRouterPort("r1", "lsA", OVN_LRP_MAC.a, `${A.gateway}/${A.prefix}`),
      ...ovnRouterPort("r1", "lsB", OVN_LRP_MAC.b, `${B.gateway}/${B.prefix}`),
      ...ports.flatMap((p) => [
        "--",
        "lsp-add",
        "lsA",
        p.name,
        "--",
        "lsp-set-addresses",
        p.name,
        `${p.mac} ${p.ip}`,
      ]),
      "--",
      "lsp-add",
      "lsB",
      "sink",
      "--",
      "lsp-set-addresses",
      "sink",
      `${SINK_MAC} ${range(sinkCount(o)).map(sinkAddress).join(" ")}`,
    );
    const dhcp = (
      await ovn.nbctl(
        "create",
        "DHCP_Options",
        `cidr="${A.cidr}"`,
        `options:server_id="${A.gateway}"`,
        `options:server_mac="${DHCP_SERVER_MAC}"`,
        'options:lease_time="86400"',
        `options:router="${A.gateway}"`,
      )
    ).stdout.trim();
    await ovn.nbctl(...ports.flatMap((p) => ["--", "lsp-set-dhcpv4-options", p.name, dhcp]).slice(1));
    if (copp) {
      await ovn.nbctl("meter-add", "dhcp-copp", "drop", String(COPP_PPS), "pktps");
      await ovn.nbctl("copp-add", "copp-a", "dhcpv4-opts", "dhcp-copp");
      await ovn.nbctl("ls-copp-add", "copp-a", "lsA");
    }
    const vms = await plugVms(ovn.ovs, o, copp ? "pfc" : "pfo");
    await ovnSettle(ovn);
    const bound = new Set(await ovn.boundPorts());
    const missing = [...ports.map((p) => p.name), "sink"].filter((n) => !bound.has(n));
    if (missing.length)
      throw new FlowdrakeError("OVN_NOT_REALISED", `OVN did not bind ${missing.join(", ")}`);
    if (copp && !(await meterStats(ovn.ovs)).size) {
      throw new FlowdrakeError("OVN_NOT_REALISED", "OVN installed no meter for the CoPP of lsA");
    }
    const side: Side = {
      ovs: ovn.ovs,
      ...vms,
      controllerPid: () => ovn.controllerPid()!,
      pinctrlPacketIns: () => ovnCoverage(ovn, "pinctrl_total_pin_pkts"),
    };
    const setupSeconds = round((performance.now() - t0) / 1000, 1);
    const name: SeriesName = copp ? "ovn-copp" : "ovn";
    process.stdout.write(`${name} (set up in ${setupSeconds} s):\n`);
    return {
      name,
      config: `OVN ${await ovnVersion()}${copp ? `, CoPP dhcpv4-opts meter ${COPP_PPS} pktps on lsA` : ", no CoPP"}`,
      setupSeconds,
      phases: await measureSide(side, o, name),
    };
  } finally {
    await ovn.stop();
  }
}

// ── the suite ───────────────────────────────────────────────────────────────

const p99 = (s: SeriesResult | undefined, phase: string, what: "dhcp" | "firstPacket") =>
  s?.phases.find((p) => p.phase === phase)?.[what].p99Ms;

function ratios(series: SeriesResult[]) {
  const get = (n: SeriesName) => series.find((s) => s.name === n);
  const fd = get("flowdrake");
  const out: Record<string, number | null> = {};
  for (const peer of ["ovn", "ovn-copp"] as const) {
    if (!get(peer)) continue;
    for (const what of ["dhcp", "firstPacket"] as const) {
      for (const phase of ["quiet", "flood"]) {
        out[`${what}P99 ${phase} flowdrake/${peer}`] = ratio(
          p99(fd, phase, what),
          p99(get(peer), phase, what),
        );
      }
    }
  }
  return out;
}

export async function puntFlood(argv = process.argv.slice(2)): Promise<void> {
  const tStart = performance.now();
  const o = parseOptions(argv);
  for (const bin of [PYTHON, "ovn-controller"]) {
    if ((await run(["which", bin], { allowFailure: true })).code) {
      throw new FlowdrakeError("MISSING_COMPONENT", `${bin} not found: run 'bash scripts/setup'`);
    }
  }
  process.stdout.write(
    `neighbour: ${o.probes} DHCP probes and ${o.probes} routed first packets, ${o.intervalMs} ms apart; ` +
      `flood: ${FLOODERS} VMs × ${o.floodPps} DISCOVERs/s; ${o.runs} run(s)\n`,
  );
  const runs: { run: number; series: SeriesResult[]; ratios: Record<string, number | null> }[] = [];
  for (let n = 1; n <= o.runs; n++) {
    process.stdout.write(`\nrun ${n} of ${o.runs}\n`);
    const series: SeriesResult[] = [];
    for (const name of o.series) {
      series.push(name === "flowdrake" ? await flowdrakeSeries(o) : await ovnSeries(o, name === "ovn-copp"));
    }
    runs.push({ run: n, series, ratios: ratios(series) });
  }
  printTable(
    runs.flatMap((r) =>
      r.series.flatMap((s) =>
        s.phases.map((p) => ({
          run: r.run,
          series: s.name,
          phase: p.phase,
          "DHCP ok": `${p.dhcp.answered}/${p.dhcp.sent}`,
          "p50 ms": p.dhcp.p50Ms ?? "-",
          "p99 ms": p.dhcp.p99Ms ?? "-",
          "max ms": p.dhcp.maxMs ?? "-",
          "1st pkt ok": `${p.firstPacket.answered}/${p.firstPacket.sent}`,
          "1st p99 ms": p.firstPacket.p99Ms ?? "-",
          "ctl cpu %": p.controllerCpuPct,
          "ovs cpu %": p.vswitchdCpuPct,
          "flood tx/s": p.flood?.sentPps ?? "-",
          "flood rx/s": p.flood?.receivedPps ?? "-",
          "meter drops": p.meters.allDropped,
          "queue drops": p.punts?.queueDrops ?? "-",
          "rconn ovf": p.rconnOverflow,
          load: p.loadavg[0]!,
        })),
      ),
    ),
  );
  for (const r of runs) process.stdout.write(`run ${r.run} ratios: ${JSON.stringify(r.ratios)}\n`);
  const wallSeconds = round((performance.now() - tStart) / 1000, 1);
  const path = writeResult("punt-flood", {
    ovn: await ovnVersion(),
    layout: {
      flooders: FLOODERS,
      probes: o.probes,
      intervalMs: o.intervalMs,
      floodPpsPerVm: o.floodPps,
      dhcpTimeoutMs: DHCP_TIMEOUT_MS,
      coppPps: COPP_PPS,
      controllerQueue: o.controllerQueue ?? null,
    },
    runs,
    wallSeconds,
  });
  process.stdout.write(`wrote ${path} (${wallSeconds} s)\n`);
}
