/**
 * `npm run bench -- secgroup`: what stateful security groups cost (issue 12),
 * flowdrake's secgroup app against OVN's ACLs on port groups, each on its own
 * Open vSwitch of the same kind (userspace `netdev` datapath and its
 * conntrack, VMs in namespaces), both in the same run.
 *
 * The topology, the same on both sides: one network, 10.80.0.0/24, ports p0
 * … p99 (MAC fa:16:3e:80:00:xx, IP 10.80.0.10+i), port security on, no DHCP.
 * Group `peers` holds all 100 ports and has 20 ingress rules, tcp 1000 …
 * 1019, each from remote group `peers`; group `clients` holds p1 and allows
 * all IPv4 egress (Neutron's default group does the same). Both directions
 * are default deny. p2 … p99 are bound to LAYOUT.fakeChassis other chassis
 * (SB rows, or NB chassis with live liveness keys: nothing runs there); p0
 * is the server VM on this host, p1 the client VM, plugged later. Without
 * the filtering, flowdrake's p0 and p1 are in no group and OVN has no ACLs
 * (its port groups stay).
 *
 *   flowdrake  NB objects as above, the agent (in this process, embedded NB)
 *   OVN        ovn-nbctl: `pg_peers` (p0…p99) with 20 ACLs
 *                to-lport 1002 `outport == @pg_peers && ip4 &&
 *                ip4.src == $pg_peers_ip4 && tcp && tcp.dst == N` allow-related,
 *              `pg_clients` (p1): from-lport 1002 `inport == @pg_clients &&
 *                ip4` allow-related,
 *              `pg_drop` (p0…p99, Neutron's neutron_pg_drop): from-lport and
 *                to-lport 1001 `… == @pg_drop && ip` drop
 *
 * 1. Flows per host, p0 the only local port: flowdrake's are the flows whose
 *    cookie names the secgroup app (its 8 conntrack-state flows, which exist
 *    whether or not a port has groups, included); as a cross-check, the
 *    net change of br-int's flows when p0 and p1 get their groups. OVN's
 *    are the net change of br-int's flows when the ACLs are written (the
 *    difference method: whatever they cost in any stage, the stateful stages
 *    they switch on for the whole switch included), with the added flows
 *    attributed to logical stages by cookie (`ovn-sbctl --uuid lflow-list`).
 *    The same figures again once p1 is local (two local ports in the group).
 * 2. Connection setup rate: the client p1 opens CONNECTIONS new TCP
 *    connections to the server p0, port 1000 (allowed by the remote-group
 *    rule: p1 is in `peers`), CONCURRENCY at a time and then one at a time
 *    (bench/secgroup-tcp.py: connect, one byte each way, close). Four
 *    series: flowdrake with the groups, flowdrake with none (p0 and p1
 *    without groups: no conntrack, the baseline), OVN with the ACLs, OVN
 *    without them. Both sandboxes run side by side, in RUNS rounds: a round
 *    puts both sides in one state (filtering or not), warms each up, then
 *    measures flowdrake and OVN back to back at each concurrency, then does
 *    the same in the other state (orders reversed every other round, so a
 *    side changes state once a round). A series' figure is its median run;
 *    a comparison of two series is also given as the median over rounds of
 *    their ratio within the round (the paired median: on a shared machine
 *    the load drifts between rounds far more than between two runs seconds
 *    apart), which is what the goal is judged on. A warm-up run
 *    (WARMUP_CONNECTIONS) must complete every connection; before the
 *    warm-up and before each run the switch's
 *    conntrack table is flushed, and the client never reuses a port still
 *    in TIME_WAIT (tcp_tw_reuse off). Both keep runs alike, and they keep
 *    OVN's side alive: with reuse on and the table not flushed between runs,
 *    OVS 3.1.0's userspace conntrack asserted in conn_update_state and
 *    ovs-vswitchd died under OVN's pipeline (whose commits carry nat(src));
 *    with reuse off it held 24,000 connections unflushed. The first time a
 *    state is seen, a
 *    connection to port 2000 (listening, no rule) must fail with the groups
 *    and succeed without: the filtering measured is the filtering in force.
 *    Per run: ovs-vswitchd's CPU time per connection (/proc), the
 *    controller's CPU time (the agent's process, ovn-controller), the userspace
 *    datapath's passes (packets + recirculations) and upcalls per connection
 *    (`dpif-netdev/pmd-stats-show`), the megaflows left, and the load
 *    average, since the machine's two cores are shared.
 *
 * Goals (the issue's): flowdrake's connection rate with groups ≥ OVN's with
 * ACLs (paired median, CONCURRENCY in flight), and flowdrake's flow count ≤
 * OVN's (one local port). FLOWDRAKE_SG_RUNS replaces RUNS.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Agent } from "../src/controller/agent.js";
import { parseAgentConfig } from "../src/controller/config.js";
import { NbApi } from "../src/nb/api.js";
import { openEmbeddedStore } from "../src/nb/store/embedded.js";
import type { NbStore } from "../src/nb/store/types.js";
import { AGENT_KIND } from "../src/nb/sync/refs.js";
import { OvsSandbox, type VmPort } from "../src/sandbox/ovs.js";
import { makeRunDir } from "../src/sandbox/rundir.js";
import { FlowdrakeError } from "../src/util/errors.js";
import { run } from "../src/util/exec.js";
import { setLogLevel } from "../src/util/log.js";
import { type OvnSandbox, fakeChassisIp, fakeChassisName, ovnVersion } from "./control-plane-ovn.js";
import { cpuMs, startOvnNetdev, vswitchdPid, waitUntil } from "./first-packet.js";
import { printTable, writeResult } from "./report.js";
import {
  countByStage,
  countByTable,
  dumpBridgeFlows,
  type DumpedFlow,
  flowDelta,
  median,
  parseLflowStages,
  secgroupOwned,
} from "./secgroup-flows.js";

/** The TCP tool beside this file (source, under vitest) or beside the source of dist/bench. */
const TOOL =
  [
    join(import.meta.dirname, "secgroup-tcp.py"),
    join(import.meta.dirname, "..", "..", "bench", "secgroup-tcp.py"),
  ].find((p) => existsSync(p)) ?? "bench/secgroup-tcp.py";

export const LAYOUT = {
  members: 100,
  rules: 20,
  firstRulePort: 1000,
  deniedPort: 2000,
  fakeChassis: 9,
} as const;
export const CONNECTIONS = 2000;
export const CONCURRENCY = 16;
export const RUNS = 7;
const WARMUP_CONNECTIONS = 200;
/** How long a flow count must hold still to count as settled. */
const QUIET_MS = 2000;

const SUBNET = { cidr: "10.80.0.0/24", gateway: "10.80.0.1", prefix: 24 };
const hex2 = (n: number) => n.toString(16).padStart(2, "0");
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () => loadavg().map((x) => round(x, 2));

export interface Member {
  name: string;
  mac: string;
  ip: string;
  /** undefined: this host (p0, p1) */
  chassis?: string;
}

/** Port i of the group: p0 the server, p1 the client (both local), the rest on fake chassis. */
export function member(i: number): Member {
  if (!Number.isInteger(i) || i < 0 || i >= LAYOUT.members) {
    throw new FlowdrakeError("USAGE", `member index ${i} is outside 0..${LAYOUT.members - 1}`);
  }
  return {
    name: `p${i}`,
    mac: `fa:16:3e:80:00:${hex2(i)}`,
    ip: `10.80.0.${10 + i}`,
    ...(i < 2 ? {} : { chassis: fakeChassisName(i % LAYOUT.fakeChassis) }),
  };
}
const members = () => range(LAYOUT.members).map(member);
const SERVER = member(0);
const CLIENT = member(1);
const rulePorts = () => range(LAYOUT.rules, LAYOUT.firstRulePort);

/** The OVN ACLs (ovn-nbctl arguments, `--`-joined commands) equivalent to the groups. */
export function ovnAclCommands(): string[][] {
  const acl = (pg: string, dir: string, prio: number, match: string, verdict: string) => [
    "--type=port-group",
    "acl-add",
    pg,
    dir,
    String(prio),
    match,
    verdict,
  ];
  return [
    acl("pg_drop", "from-lport", 1001, "inport == @pg_drop && ip", "drop"),
    acl("pg_drop", "to-lport", 1001, "outport == @pg_drop && ip", "drop"),
    ...rulePorts().map((p) =>
      acl(
        "pg_peers",
        "to-lport",
        1002,
        `outport == @pg_peers && ip4 && ip4.src == $pg_peers_ip4 && tcp && tcp.dst == ${p}`,
        "allow-related",
      ),
    ),
    acl("pg_clients", "from-lport", 1002, "inport == @pg_clients && ip4", "allow-related"),
  ];
}

const joined = (cmds: string[][]) => cmds.flatMap((c) => ["--", ...c]).slice(1);

/** br-int's flows once their count has held still for QUIET_MS. */
async function settledFlows(ovs: OvsSandbox, timeoutMs = 120_000): Promise<DumpedFlow[]> {
  const deadline = performance.now() + timeoutMs;
  let last = await dumpBridgeFlows(ovs);
  let since = performance.now();
  for (;;) {
    await sleep(250);
    const now = await dumpBridgeFlows(ovs);
    if (now.length !== last.length) [last, since] = [now, performance.now()];
    else if (performance.now() - since >= QUIET_MS) return now;
    if (performance.now() > deadline) {
      throw new FlowdrakeError("TIMEOUT", `br-int's flow count did not settle within ${timeoutMs} ms`);
    }
  }
}

/**
 * A VM's namespace for this benchmark: IPv4 only, a wide ephemeral port
 * range, and no reuse of ports in TIME_WAIT (a run's connections never share
 * a tuple with one conntrack still holds).
 */
async function prepareVm(vm: VmPort): Promise<void> {
  await run(
    [
      "sysctl",
      "-qw",
      "net.ipv6.conf.all.disable_ipv6=1",
      "net.ipv4.ip_local_port_range=1024 65535",
      "net.ipv4.tcp_tw_reuse=0",
    ],
    { netns: vm.netns },
  );
}

async function plugVm(ovs: OvsSandbox, label: string, m: Member): Promise<VmPort> {
  const vm = await ovs.addVm(label, { ifaceId: m.name, mac: m.mac, ipCidr: `${m.ip}/${SUBNET.prefix}` });
  await prepareVm(vm);
  return vm;
}

/** `secgroup-tcp.py serve` in a namespace, until stopped. */
export class TcpServer {
  private constructor(private readonly proc: ChildProcess) {}

  static async start(netns: string, ports: number[]): Promise<TcpServer> {
    const proc = spawn("ip", ["netns", "exec", netns, "python3", TOOL, "serve", ...ports.map(String)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: proc.stdout! });
    const ready = new Promise<void>((resolve) => lines.on("line", (l) => l === "listening" && resolve()));
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) =>
        reject(new FlowdrakeError("COMMAND", `secgroup-tcp.py serve exited (${code}): ${stderr.trim()}`)),
      ),
    );
    const timeout = sleep(10_000).then(() => {
      throw new FlowdrakeError("TIMEOUT", `secgroup-tcp.py serve in ${netns} did not listen within 10 s`);
    });
    const s = new TcpServer(proc);
    try {
      await Promise.race([ready, exited, timeout]);
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await Promise.race([gone, sleep(3000)]);
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
  }
}

export interface CrrReport {
  count: number;
  ok: number;
  failed: number;
  seconds: number;
  rate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** `secgroup-tcp.py crr` in a namespace: `count` connections, `concurrency` in flight. */
export async function crr(
  netns: string,
  host: string,
  port: number,
  count: number,
  concurrency: number,
  timeoutS = 3,
): Promise<CrrReport> {
  const r = await run(
    [
      "python3",
      TOOL,
      "crr",
      host,
      String(port),
      "--count",
      String(count),
      "--concurrency",
      String(concurrency),
      "--timeout",
      String(timeoutS),
    ],
    { netns, timeoutMs: 600_000 },
  );
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last) as CrrReport;
  } catch {
    throw new FlowdrakeError("PARSE", `secgroup-tcp.py crr printed no report: ${r.stdout}${r.stderr}`);
  }
}

// ── the two sides ───────────────────────────────────────────────────────────

interface Side {
  name: "flowdrake" | "ovn";
  ovs: OvsSandbox;
  /** Whether the groups (ACLs) are in force now. */
  filtering: boolean;
  setFiltering(on: boolean): Promise<void>;
  /** Flows the groups cost, as the side's method counts them, with what it saw. */
  attribution(): Promise<SideFlows>;
  plugClient(): Promise<VmPort>;
  server: VmPort;
  /** CPU time of the side's controller so far, ms (flowdrake: this process, where the agent runs; OVN: ovn-controller). */
  controllerCpuMs(): number;
  stop(): Promise<void>;
}

export interface SideFlows {
  /** The figure compared: flowdrake's secgroup-owned flows, OVN's net change. */
  flows: number;
  method: string;
  brIntFlows: number;
  byTable: Record<string, number>;
  /** flowdrake: net change when the ports got their groups (a cross-check of `flows`). */
  netChange?: number;
  /** OVN: flows added and removed by the ACLs, by logical stage. */
  addedByStage?: Record<string, number>;
  removedByStage?: Record<string, number>;
}

class FlowdrakeSide implements Side {
  readonly name = "flowdrake" as const;
  filtering = false;
  private unfiltered?: DumpedFlow[];

  private constructor(
    readonly dir: string,
    readonly store: NbStore,
    readonly api: NbApi,
    readonly ovs: OvsSandbox,
    readonly agent: Agent,
    readonly server: VmPort,
  ) {}

  static async start(): Promise<FlowdrakeSide> {
    const dir = makeRunDir("sg-fd");
    let store: NbStore | undefined;
    let ovs: OvsSandbox | undefined;
    let agent: Agent | undefined;
    try {
      store = await openEmbeddedStore(join(dir, "nb"));
      const api = new NbApi(store);
      await api.create("tenant", { id: "t1" });
      await api.createMany(
        range(LAYOUT.fakeChassis).map((k) => ({
          kind: "chassis" as const,
          input: { name: fakeChassisName(k), tunnelIps: [fakeChassisIp(k)] },
        })),
      );
      const lease = await store.grantLease(3600);
      await store.txn(
        range(LAYOUT.fakeChassis).map((k) => ({
          op: "put" as const,
          kind: AGENT_KIND.liveness,
          key: fakeChassisName(k),
          value: { at: Date.now(), agentId: `fake${k}` },
          lease: lease.id,
        })),
      );
      await api.create("lswitch", { id: "net0", tenantId: "t1", networkType: "geneve", segmentationId: 800 });
      await api.create("subnet", {
        id: "sub0",
        tenantId: "t1",
        networkId: "net0",
        cidr: SUBNET.cidr,
        gatewayIp: SUBNET.gateway,
        enableDhcp: false,
      });
      await api.create("secgroup", {
        id: "peers",
        tenantId: "t1",
        rules: rulePorts().map((p, i) => ({
          id: `r${String(i).padStart(2, "0")}`,
          direction: "ingress",
          protocol: "tcp",
          portRangeMin: p,
          portRangeMax: p,
          remoteGroupId: "peers",
        })),
      });
      await api.create("secgroup", {
        id: "clients",
        tenantId: "t1",
        rules: [{ id: "out4", direction: "egress" }],
      });
      await api.createMany(
        members().map((m, i) => ({
          kind: "lport" as const,
          input: {
            id: m.name,
            tenantId: "t1",
            networkId: "net0",
            macAddress: m.mac,
            fixedIps: [{ subnetId: "sub0", ipAddress: m.ip }],
            // p0 and p1 get their groups in attribution(): the count without is the difference's base
            securityGroups: FlowdrakeSide.groups(i, false),
            ...(m.chassis ? { chassis: m.chassis } : {}),
          },
        })),
      );
      ovs = await OvsSandbox.start({ label: "sgfd" });
      agent = await Agent.start(
        parseAgentConfig({
          chassis: "hv0",
          tunnelIp: "192.0.2.1",
          ovsdb: ovs.dbRemote,
          datapathType: "netdev",
          metrics: "",
          logLevel: "warn",
        }),
        { store },
      );
      const server = await plugVm(ovs, "sgfd0", SERVER);
      const a = agent;
      await waitUntil("p0 bound", 30_000, async () => a.localPortCount() === 1 || undefined);
      await agent.settle();
      return new FlowdrakeSide(dir, store, api, ovs, agent, server);
    } catch (err) {
      await agent?.stop();
      await ovs?.stop();
      await store?.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Port i's groups with the filtering on or off (off: p0 and p1 leave every group). */
  private static groups(i: number, on: boolean): string[] {
    if (i >= 2) return ["peers"];
    if (!on) return [];
    return i === 1 ? ["peers", "clients"] : ["peers"];
  }

  private async realised(write: Promise<{ modRevision: number }>): Promise<void> {
    const { modRevision } = await write;
    const a = this.agent;
    await waitUntil(
      `NB revision ${modRevision} realised`,
      60_000,
      async () => a.realised >= modRevision || undefined,
    );
  }

  async setFiltering(on: boolean): Promise<void> {
    if (on === this.filtering) return;
    for (const i of [0, 1]) {
      await this.realised(
        this.api.update("lport", member(i).name, { securityGroups: FlowdrakeSide.groups(i, on) }),
      );
    }
    await this.agent.settle();
    this.filtering = on;
    await settledFlows(this.ovs);
  }

  async attribution(): Promise<SideFlows> {
    if (!this.unfiltered) {
      await this.setFiltering(false);
      this.unfiltered = await settledFlows(this.ovs);
    }
    await this.setFiltering(true);
    const flows = await settledFlows(this.ovs);
    const owned = secgroupOwned(flows);
    return {
      flows: owned.length,
      method: "cookie app id = secgroup",
      brIntFlows: flows.length,
      byTable: countByTable(owned),
      netChange: flowDelta(this.unfiltered, flows).net,
    };
  }

  controllerCpuMs(): number {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }

  /** Plug the client; from now on `unfiltered` no longer describes this switch. */
  async plugClient(): Promise<VmPort> {
    const vm = await plugVm(this.ovs, "sgfd1", CLIENT);
    const a = this.agent;
    await waitUntil("p1 bound", 30_000, async () => a.localPortCount() === 2 || undefined);
    await this.agent.settle();
    await settledFlows(this.ovs);
    this.unfiltered = undefined;
    return vm;
  }

  async stop(): Promise<void> {
    await this.agent.stop();
    await this.store.close().catch(() => undefined);
    await this.ovs.stop();
    if (!process.env.FLOWDRAKE_KEEP_SANDBOX) rmSync(this.dir, { recursive: true, force: true });
  }
}

class OvnSide implements Side {
  readonly name = "ovn" as const;
  filtering = false;
  /** br-int without the ACLs, for the difference (reset when a port is plugged). */
  private unfiltered?: DumpedFlow[];

  private constructor(
    readonly ovn: OvnSandbox,
    readonly server: VmPort,
  ) {}

  get ovs(): OvsSandbox {
    return this.ovn.ovs;
  }

  static async start(): Promise<OvnSide> {
    const ovn = await startOvnNetdev();
    try {
      await ovn.sbctl(
        ...joined(
          range(LAYOUT.fakeChassis).map((k) => [
            "chassis-add",
            fakeChassisName(k),
            "geneve",
            fakeChassisIp(k),
          ]),
        ),
      );
      const all = members();
      await ovn.nbctl(
        ...joined([
          ["ls-add", "ls0"],
          ...all.flatMap((m) => [
            ["lsp-add", "ls0", m.name],
            ["lsp-set-addresses", m.name, `${m.mac} ${m.ip}`],
            ["lsp-set-port-security", m.name, `${m.mac} ${m.ip}`],
          ]),
          ["pg-add", "pg_peers", ...all.map((m) => m.name)],
          ["pg-add", "pg_clients", CLIENT.name],
          ["pg-add", "pg_drop", ...all.map((m) => m.name)],
        ]),
      );
      await ovn.nbctl("--wait=sb", "sync");
      const listed = await ovn.sbctl(
        "--format=csv",
        "--data=bare",
        "--no-headings",
        "--columns=_uuid,name",
        "list",
        "Chassis",
      );
      const uuid = new Map(
        listed.stdout
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split(",").reverse() as [string, string]),
      );
      await ovn.sbctl(
        ...joined(
          all
            .filter((m) => m.chassis)
            .map((m) => ["set", "Port_Binding", m.name, `chassis=${uuid.get(m.chassis!)}`, "up=true"]),
        ),
      );
      const server = await plugVm(ovn.ovs, "sgovn0", SERVER);
      const side = new OvnSide(ovn, server);
      await side.realised();
      const bound = await ovn.boundPorts();
      if (!bound.includes(SERVER.name)) {
        throw new FlowdrakeError(
          "OVN_NOT_REALISED",
          `OVN bound ${bound.join(", ") || "nothing"} to hv0, not p0`,
        );
      }
      return side;
    } catch (err) {
      await ovn.stop();
      throw err;
    }
  }

  private async realised(): Promise<DumpedFlow[]> {
    await this.ovn.waitHv();
    return settledFlows(this.ovn.ovs);
  }

  async setFiltering(on: boolean): Promise<void> {
    if (on === this.filtering) return;
    if (on) await this.ovn.nbctl(...joined(ovnAclCommands()));
    else {
      await this.ovn.nbctl(
        ...joined(["pg_peers", "pg_clients", "pg_drop"].map((pg) => ["--type=port-group", "acl-del", pg])),
      );
    }
    this.filtering = on;
    await this.realised();
  }

  async attribution(): Promise<SideFlows> {
    if (!this.unfiltered) {
      await this.setFiltering(false);
      this.unfiltered = await settledFlows(this.ovs);
    }
    await this.setFiltering(true);
    const flows = await settledFlows(this.ovs);
    const d = flowDelta(this.unfiltered, flows);
    const stages = parseLflowStages((await this.ovn.sbctl("--uuid", "lflow-list")).stdout);
    return {
      flows: d.net,
      method: "net change of br-int's flows when the ACLs are written",
      brIntFlows: flows.length,
      byTable: countByTable(d.added),
      addedByStage: countByStage(d.added, stages),
      removedByStage: countByStage(d.removed, stages),
    };
  }

  controllerCpuMs(): number {
    const pid = this.ovn.controllerPid();
    if (pid === undefined) throw new FlowdrakeError("OVN_CONTROLLER_DOWN", "ovn-controller is not running");
    return cpuMs(pid);
  }

  async plugClient(): Promise<VmPort> {
    const vm = await plugVm(this.ovs, "sgovn1", CLIENT);
    await waitUntil(
      "p1 bound by OVN",
      60_000,
      async () => (await this.ovn.boundPorts()).includes(CLIENT.name) || undefined,
    );
    await this.realised();
    this.unfiltered = undefined;
    return vm;
  }

  async stop(): Promise<void> {
    await this.ovn.stop();
  }
}

// ── connection rate ─────────────────────────────────────────────────────────

export interface ConnRun {
  round: number;
  concurrency: number;
  ok: number;
  failed: number;
  seconds: number;
  rate: number;
  p50Ms: number | null;
  p99Ms: number | null;
  vswitchdCpuUsPerConn: number;
  /** The controller's CPU time during the run, ms (flowdrake's agent shares this process with the benchmark, idle then). */
  controllerCpuMs: number;
  /** Datapath work per connection: packets in, passes (packets + recirculations), cache misses. */
  perConn: { packets: number; passes: number; upcalls: number };
  /** Datapath flows (megaflows) right after the run. */
  megaflows: number;
  loadavg: number[];
}

export interface SeriesMedian {
  rate: number;
  vswitchdCpuUsPerConn: number;
  passesPerConn: number;
  upcallsPerConn: number;
}

export interface ConnSeries {
  name: string;
  side: "flowdrake" | "ovn";
  filtering: boolean;
  runs: ConnRun[];
  /** concurrency → median rate (connections/s) over the runs */
  /** concurrency → medians over the runs */
  median: Record<string, SeriesMedian>;
  /** The deny check: connections to the port without a rule that got through (of 3). */
  deniedPortConnected?: number;
}

interface Rig {
  side: Side;
  client: VmPort;
  seen: Set<boolean>;
}

/**
 * Why connections failed, when the switch is the reason: ovs-vswitchd gone
 * (and the EMER lines of its log: OVS 3.1.0's userspace conntrack has been
 * seen to assert under OVN's pipeline when its table was not flushed).
 */
function vswitchdDeath(ovs: OvsSandbox): string {
  let alive = true;
  try {
    process.kill(vswitchdPid(ovs), 0);
  } catch {
    alive = false;
  }
  if (alive) return "";
  let emer = "";
  try {
    emer = readFileSync(join(ovs.dir, "ovs-vswitchd.log"), "utf8")
      .split("\n")
      .filter((l) => /\|(EMER|ERR)\|/.test(l))
      .slice(-3)
      .join("; ");
  } catch {
    // no log
  }
  return ` — ovs-vswitchd is gone${emer ? `: ${emer}` : ""}`;
}

async function enter(rig: Rig, on: boolean, series: ConnSeries): Promise<void> {
  await rig.side.setFiltering(on);
  await rig.side.ovs.appctl("ovs-vswitchd", "dpctl/flush-conntrack");
  const warm = await crr(rig.client.netns, SERVER.ip, LAYOUT.firstRulePort, WARMUP_CONNECTIONS, CONCURRENCY);
  if (warm.ok !== WARMUP_CONNECTIONS) {
    throw new FlowdrakeError(
      "NOT_CONNECTED",
      `${series.name}: ${warm.ok} of ${WARMUP_CONNECTIONS} warm-up connections to port ${LAYOUT.firstRulePort}` +
        vswitchdDeath(rig.side.ovs),
    );
  }
  if (rig.seen.has(on)) return;
  rig.seen.add(on);
  const denied = await crr(rig.client.netns, SERVER.ip, LAYOUT.deniedPort, 3, 3, 1);
  series.deniedPortConnected = denied.ok;
  if (denied.ok !== (on ? 0 : 3)) {
    throw new FlowdrakeError(
      "FILTERING",
      `${series.name}: ${denied.ok} of 3 connections to port ${LAYOUT.deniedPort} (no rule) got through`,
    );
  }
}

/** The userspace datapath's counters (`dpif-netdev/pmd-stats-show`), summed over its threads. */
export function parsePmdStats(text: string): DatapathStats {
  const sum = (label: string) =>
    [...text.matchAll(new RegExp(`^\\s*${label}:\\s*(\\d+)`, "gm"))].reduce((n, m) => n + Number(m[1]), 0);
  return {
    packets: sum("packets received"),
    recirculations: sum("packet recirculations"),
    cacheHits: sum("emc hits") + sum("smc hits") + sum("megaflow hits") + sum("simple match hits"),
    upcalls: sum("miss with success upcall"),
    failedUpcalls: sum("miss with failed upcall"),
  };
}

/** Datapath flows in `dpctl/dump-flows` output (its per-thread "flow-dump from …" headers left out). */
export function countMegaflows(text: string): number {
  return text.split("\n").filter((l) => l.trim() && !/^flow-dump from /.test(l)).length;
}

export interface DatapathStats {
  /** Packets into the datapath from ports. */
  packets: number;
  /** Extra passes (after ct, for instance). */
  recirculations: number;
  /** Passes that hit a cached (mega)flow. */
  cacheHits: number;
  /** Passes that missed the cache and went up to ofproto's classifier. */
  upcalls: number;
  failedUpcalls: number;
}

async function measure(rig: Rig, roundNo: number, concurrency: number): Promise<ConnRun> {
  const { ovs } = rig.side;
  await ovs.appctl("ovs-vswitchd", "dpctl/flush-conntrack");
  await ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-clear");
  const pid = vswitchdPid(ovs);
  const c0 = cpuMs(pid);
  const k0 = rig.side.controllerCpuMs();
  const r = await crr(rig.client.netns, SERVER.ip, LAYOUT.firstRulePort, CONNECTIONS, concurrency);
  const c1 = cpuMs(pid);
  const k1 = rig.side.controllerCpuMs();
  const dp = parsePmdStats((await ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-show")).stdout);
  const megaflows = countMegaflows((await ovs.appctl("ovs-vswitchd", "dpctl/dump-flows")).stdout);
  if (r.ok !== CONNECTIONS || r.rate === null) {
    throw new FlowdrakeError(
      "NOT_CONNECTED",
      `${rig.side.name}: ${r.ok} of ${CONNECTIONS} connections completed (${r.failed} failed)` +
        vswitchdDeath(ovs),
    );
  }
  return {
    round: roundNo,
    concurrency,
    ok: r.ok,
    failed: r.failed,
    seconds: r.seconds,
    rate: r.rate,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    vswitchdCpuUsPerConn: round1((1000 * (c1 - c0)) / CONNECTIONS),
    controllerCpuMs: round1(k1 - k0),
    perConn: {
      packets: round(dp.packets / CONNECTIONS, 2),
      passes: round((dp.packets + dp.recirculations) / CONNECTIONS, 2),
      upcalls: round((dp.upcalls + dp.failedUpcalls) / CONNECTIONS, 3),
    },
    megaflows,
    loadavg: load(),
  };
}

const round1 = (x: number) => round(x, 1);

/** One series against another at one concurrency. */
export interface Comparison {
  /** The ratio of the two series' median rates. */
  ofMedians: number;
  /** a/b of the runs of each round (measured back to back), in round order. */
  perRound: number[];
  /** Their median: what the load's drift between rounds disturbs least. */
  pairedMedian: number;
  /** The same paired median for ovs-vswitchd's CPU time per connection. */
  vswitchdCpuPairedMedian: number;
}

/** a/b of `pick` for the runs of a and b at `concurrency` in the same round, in round order. */
export function pairedRatios(
  a: readonly ConnRun[],
  b: readonly ConnRun[],
  concurrency: number,
  pick: (r: ConnRun) => number,
): number[] {
  const out: number[] = [];
  for (const x of a.filter((r) => r.concurrency === concurrency).sort((p, q) => p.round - q.round)) {
    const y = b.find((r) => r.concurrency === concurrency && r.round === x.round);
    if (y && pick(y) > 0) out.push(round(pick(x) / pick(y), 3));
  }
  return out;
}

// ── the suite ───────────────────────────────────────────────────────────────

export interface SecgroupResults {
  flowsOneLocal: { flowdrake: SideFlows; ovn: SideFlows; ratio: number };
  flowsTwoLocal: { flowdrake: SideFlows; ovn: SideFlows; ratio: number };
  connections: ConnSeries[];
}

export async function secgroupBench(): Promise<void> {
  const tStart = performance.now();
  const runs = Number(process.env.FLOWDRAKE_SG_RUNS ?? RUNS);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new FlowdrakeError(
      "USAGE",
      `FLOWDRAKE_SG_RUNS must be a positive integer, not ${process.env.FLOWDRAKE_SG_RUNS}`,
    );
  }
  setLogLevel(process.env.FLOWDRAKE_LOG_LEVEL ?? "warn");
  const sides: Side[] = [];
  const servers: TcpServer[] = [];
  try {
    const t0 = performance.now();
    sides.push(await FlowdrakeSide.start());
    sides.push(await OvnSide.start());
    const [fd, ovn] = sides as [FlowdrakeSide, OvnSide];
    process.stdout.write(`set up both sides in ${round((performance.now() - t0) / 1000)} s\n`);

    process.stdout.write(
      `1. flows per host: ${LAYOUT.members} members × ${LAYOUT.rules} remote-group rules\n`,
    );
    const one = { flowdrake: await fd.attribution(), ovn: await ovn.attribution() };
    for (const s of sides) {
      servers.push(await TcpServer.start(s.server.netns, [LAYOUT.firstRulePort, LAYOUT.deniedPort]));
    }
    const rigs: Rig[] = [];
    for (const s of sides) rigs.push({ side: s, client: await s.plugClient(), seen: new Set() });
    const two = { flowdrake: await fd.attribution(), ovn: await ovn.attribution() };
    const flowRow = (local: number, x: { flowdrake: SideFlows; ovn: SideFlows }) => ({
      "local ports": local,
      flowdrake: x.flowdrake.flows,
      "flowdrake net change": x.flowdrake.netChange ?? "-",
      ovn: x.ovn.flows,
      "fd/ovn": round(x.flowdrake.flows / x.ovn.flows, 3),
      "br-int fd": x.flowdrake.brIntFlows,
      "br-int ovn": x.ovn.brIntFlows,
    });
    printTable([flowRow(1, one), flowRow(2, two)]);
    process.stdout.write(`OVN's added flows by stage (1 local): ${JSON.stringify(one.ovn.addedByStage)}\n`);

    process.stdout.write(
      `\n2. connection rate: ${CONNECTIONS} connections a run, concurrency ${CONCURRENCY} and 1, ${runs} rounds\n`,
    );
    const label = { flowdrake: ["groups", "no groups"], ovn: ["ACLs", "no ACLs"] } as const;
    const series: ConnSeries[] = rigs.flatMap((rig) =>
      [true, false].map((on) => ({
        name: `${rig.side.name}, ${label[rig.side.name][on ? 0 : 1]}`,
        side: rig.side.name,
        filtering: on,
        runs: [],
        median: {},
      })),
    );
    for (let r = 0; r < runs; r++) {
      for (const on of r % 2 === 0 ? [true, false] : [false, true]) {
        const of = (rig: Rig) => series.find((x) => x.side === rig.side.name && x.filtering === on)!;
        for (const rig of rigs) await enter(rig, on, of(rig));
        for (const c of [CONCURRENCY, 1]) {
          for (const rig of r % 2 === 0 ? rigs : [...rigs].reverse()) {
            const s = of(rig);
            const m = await measure(rig, r, c);
            s.runs.push(m);
            process.stdout.write(
              `  round ${r} ${s.name.padEnd(20)} c=${String(c).padEnd(2)} ${m.rate} conn/s ` +
                `(p50 ${m.p50Ms} p99 ${m.p99Ms} ms, vswitchd ${m.vswitchdCpuUsPerConn} µs/conn, ` +
                `${m.perConn.passes} passes ${m.perConn.upcalls} upcalls/conn, ${m.megaflows} megaflows, ` +
                `controller ${m.controllerCpuMs} ms, load ${m.loadavg[0]})\n`,
            );
          }
        }
      }
    }
    for (const s of series) {
      for (const c of [CONCURRENCY, 1]) {
        const rs = s.runs.filter((x) => x.concurrency === c);
        s.median[String(c)] = {
          rate: round(median(rs.map((x) => x.rate))),
          vswitchdCpuUsPerConn: round(median(rs.map((x) => x.vswitchdCpuUsPerConn))),
          passesPerConn: round(median(rs.map((x) => x.perConn.passes)), 2),
          upcallsPerConn: round(median(rs.map((x) => x.perConn.upcalls)), 3),
        };
      }
    }
    printTable(
      series.flatMap((s) =>
        [CONCURRENCY, 1].map((c) => ({
          series: s.name,
          concurrency: c,
          "median conn/s": s.median[String(c)]!.rate,
          runs: s.runs
            .filter((x) => x.concurrency === c)
            .map((x) => Math.round(x.rate))
            .join(" "),
          "vswitchd µs/conn": s.median[String(c)]!.vswitchdCpuUsPerConn,
          "dp passes/conn": s.median[String(c)]!.passesPerConn,
          "upcalls/conn": s.median[String(c)]!.upcallsPerConn,
        })),
      ),
    );
    const byName = (name: string) => series.find((x) => x.name === name)!;
    const compare = (a: string, b: string, c: number): Comparison => {
      const [x, y] = [byName(a), byName(b)];
      const perRound = pairedRatios(x.runs, y.runs, c, (m) => m.rate);
      return {
        ofMedians: round(x.median[String(c)]!.rate / y.median[String(c)]!.rate, 3),
        perRound,
        pairedMedian: round(median(perRound), 3),
        vswitchdCpuPairedMedian: round(
          median(pairedRatios(x.runs, y.runs, c, (m) => m.vswitchdCpuUsPerConn)),
          3,
        ),
      };
    };
    const ratios = Object.fromEntries(
      [CONCURRENCY, 1].map((c) => [
        `concurrency ${c}`,
        {
          flowdrakeGroupsVsOvnAcls: compare("flowdrake, groups", "ovn, ACLs", c),
          flowdrakeGroupsVsNoGroups: compare("flowdrake, groups", "flowdrake, no groups", c),
          ovnAclsVsNoAcls: compare("ovn, ACLs", "ovn, no ACLs", c),
          flowdrakeNoGroupsVsOvnNoAcls: compare("flowdrake, no groups", "ovn, no ACLs", c),
        },
      ]),
    );
    const headline = ratios[`concurrency ${CONCURRENCY}`]!.flowdrakeGroupsVsOvnAcls;
    const goals = {
      connectionRateAtLeastOvn: {
        pairedMedian: headline.pairedMedian,
        ofMedians: headline.ofMedians,
        sequentialPairedMedian: ratios["concurrency 1"]!.flowdrakeGroupsVsOvnAcls.pairedMedian,
        met: headline.pairedMedian >= 1,
      },
      flowsAtMostOvn: {
        flowdrake: one.flowdrake.flows,
        ovn: one.ovn.flows,
        met: one.flowdrake.flows <= one.ovn.flows,
      },
    };
    printTable(
      Object.entries(ratios).flatMap(([c, rs]) =>
        Object.entries(rs).map(([name, x]) => ({
          concurrency: c.replace("concurrency ", ""),
          ratio: name,
          "paired median": x.pairedMedian,
          "per round": x.perRound.join(" "),
          "of medians": x.ofMedians,
          "vswitchd cpu/conn": x.vswitchdCpuPairedMedian,
        })),
      ),
    );
    process.stdout.write(`\ngoals: ${JSON.stringify(goals)}\n`);
    const results: SecgroupResults = {
      flowsOneLocal: { ...one, ratio: round(one.flowdrake.flows / one.ovn.flows, 3) },
      flowsTwoLocal: { ...two, ratio: round(two.flowdrake.flows / two.ovn.flows, 3) },
      connections: series,
    };
    const wallSeconds = round((performance.now() - tStart) / 1000);
    const path = writeResult("secgroup", {
      ovn: await ovnVersion(),
      layout: {
        ...LAYOUT,
        connections: CONNECTIONS,
        concurrency: CONCURRENCY,
        runs,
        warmup: WARMUP_CONNECTIONS,
      },
      ...results,
      ratios,
      goals,
      wallSeconds,
    });
    process.stdout.write(`wrote ${path} (${wallSeconds} s)\n`);
  } finally {
    for (const s of servers) await s.stop();
    for (const s of sides.reverse()) await s.stop();
  }
}
