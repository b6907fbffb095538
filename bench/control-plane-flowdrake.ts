/**
 * The flowdrake side of the control-plane benchmark, on the same logical
 * topology as the OVN side (bench/control-plane-ovn.ts: `portAddress`,
 * `coldSwitch`, `coldPort`, fake chassis), each run on a sandbox of its own:
 *
 *   etcd              one member on loopback ports, its own data dir
 *   chassis "hv0"     an OvsSandbox (dummy datapath, host network, br-int)
 *                     and `flowdrake agent` as a child process (the built
 *                     CLI), NB in etcd, on the store's watch
 *
 * NB writes go through the NB API in this process — the library path a
 * Neutron/Kubernetes plugin uses, as Neutron's OVN driver writes the OVN NB
 * over its in-process OVSDB client: `createMany` (batched transactions) for
 * bulk, `create`/`delete` for churn. A write counts as realised when the
 * agent has recorded, after its barrier, an NB revision at least the
 * write's (`waitRealised`, what `flowdrake nb … --wait` does); every result
 * is cross-checked by reading br-int: all expected MACs present (or gone).
 *
 *   bulk(n)      plug vif0..vif<n-1> (untimed, waited for until the agent
 *                has bound them); time the write of n ports on ls0 (geneve,
 *                10.1.0.0/16, DHCP on, port security on) until realised.
 *   churn(n, k)  at n ports: k times, plug a vif (untimed), time create →
 *                realised, time delete → realised, unplug.
 *   coldStart()  100 networks × 100 ports on 100 other chassis (alive: each
 *                has a liveness key) plus 50 ports of hv0, one on each of
 *                networks 0..49 and plugged; then the agent starts, timed
 *                until it reports ready having realised the NB as it was at
 *                its start.
 * RSS is the agent process's VmRSS, before and after.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { NbApi } from "../src/nb/api.js";
import { waitRealised } from "../src/nb/realised.js";
import { openStore } from "../src/nb/store/open.js";
import type { NbStore } from "../src/nb/store/types.js";
import { AGENT_KIND } from "../src/nb/sync/refs.js";
import { OvsSandbox } from "../src/sandbox/ovs.js";
import { Cleanup, makeRunDir } from "../src/sandbox/rundir.js";
import { FlowdrakeError } from "../src/util/errors.js";
import { EtcdCluster } from "../test/harness/etcd.js";
import {
  COLD_START,
  GATEWAY,
  SUBNET,
  coldPort,
  coldSwitch,
  fakeChassisIp,
  fakeChassisName,
  percentiles,
  portAddress,
  vifName,
  type ColdStartLayout,
  type Percentiles,
} from "./control-plane-ovn.js";

const CLI = join(import.meta.dirname, "..", "src", "cli", "main.js");
const TENANT = "t1";
const NET = "ls0";
const SUBNET_ID = "ls0-sub";
const VNI = 1000;
const PLUG_PER_INVOCATION = 1000;

const seconds = (fromMs: number, toMs = performance.now()) => Math.round(toMs - fromMs) / 1000;
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

/** etcd + an OVS sandbox + the agent as a child process. */
export class FlowdrakeSandbox {
  readonly cleanup = new Cleanup();
  private agent: ChildProcess | undefined;
  private agentLog = "";
  api!: NbApi;
  store!: NbStore;
  /** The highest revision a transaction of `api` committed at (what a write waits for). */
  lastWrite = 0;

  private constructor(
    readonly dir: string,
    readonly etcd: EtcdCluster,
    readonly ovs: OvsSandbox,
  ) {}

  static async start(label = "cp-fd"): Promise<FlowdrakeSandbox> {
    const dir = makeRunDir(label);
    // the run dir holds the agent's log: gone with the sandbox unless asked to keep it
    const removeDir = () => {
      if (!process.env.FLOWDRAKE_KEEP_SANDBOX) rmSync(dir, { recursive: true, force: true });
    };
    let etcd: EtcdCluster | undefined;
    let ovs: OvsSandbox | undefined;
    try {
      etcd = await EtcdCluster.start({ label });
      ovs = await OvsSandbox.start({ label, datapath: "dummy", hostNetwork: true, bridges: ["br-int"] });
      const sb = new FlowdrakeSandbox(dir, etcd, ovs);
      sb.cleanup.add("run dir", removeDir);
      sb.store = await openStore(etcd.url);
      const tracked = Object.create(sb.store) as NbStore;
      tracked.txn = async (ops) => {
        const r = await sb.store.txn(ops);
        sb.lastWrite = Math.max(sb.lastWrite, r.revision);
        return r;
      };
      sb.api = new NbApi(tracked);
      await sb.api.create("tenant", { id: TENANT });
      return sb;
    } catch (err) {
      await ovs?.stop();
      await etcd?.stop();
      removeDir();
      throw err;
    }
  }

  /** Start `flowdrake agent` for hv0; resolves once it printed "ready". */
  async startAgent(): Promise<void> {
    this.agentLog = join(this.dir, `agent-${Date.now()}.log`);
    const fd = openSync(this.agentLog, "a");
    this.agent = spawn(
      process.execPath,
      [
        // FLOWDRAKE_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": profile the agent
        ...(process.env.FLOWDRAKE_AGENT_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
        CLI,
        "agent",
        "--chassis",
        "hv0",
        "--tunnel-ip",
        "127.0.0.1",
        "--ovsdb",
        this.ovs.dbRemote,
        "--db",
        this.etcd.url,
        "--metrics",
        "",
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", fd, fd] },
    );
    closeSync(fd);
    for (;;) {
      if (this.agent.exitCode !== null) {
        throw new FlowdrakeError("AGENT", `agent exited ${this.agent.exitCode}: ${this.log().slice(-2000)}`);
      }
      if (this.log().includes(": ready (")) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  log(): string {
    try {
      return readFileSync(this.agentLog, "utf8");
    } catch {
      return "";
    }
  }

  get agentPid(): number {
    if (!this.agent?.pid) throw new FlowdrakeError("AGENT", "no agent running");
    return this.agent.pid;
  }

  async ensureNetwork(): Promise<void> {
    if (await this.api.find("lswitch", NET)) return;
    await this.api.create("lswitch", {
      id: NET,
      tenantId: TENANT,
      networkType: "geneve",
      segmentationId: VNI,
    });
    await this.api.create("subnet", {
      id: SUBNET_ID,
      tenantId: TENANT,
      networkId: NET,
      cidr: SUBNET,
      gatewayIp: GATEWAY,
    });
  }

  /** Plug interfaces with iface-ids (ovs-vsctl, in batches), and wait until OVS gave each an ofport. */
  async plug(vifs: { port: string; ifaceId: string }[]): Promise<void> {
    for (let i = 0; i < vifs.length; i += PLUG_PER_INVOCATION) {
      const args = vifs
        .slice(i, i + PLUG_PER_INVOCATION)
        .flatMap((v) => [
          "--",
          "add-port",
          "br-int",
          v.port,
          "--",
          "set",
          "Interface",
          v.port,
          "type=dummy",
          `external_ids:iface-id=${v.ifaceId}`,
        ]);
      await this.ovs.vsctl(...args.slice(1));
    }
    if (vifs.length) await this.ovs.vsctl("wait-until", "Interface", vifs.at(-1)!.port, "ofport>0");
  }

  async unplug(port: string): Promise<void> {
    await this.ovs.vsctl("del-port", "br-int", port);
  }

  async dumpFlows(): Promise<string[]> {
    const { stdout } = await this.ovs.ofctl("--no-stats", "dump-flows", this.ovs.mgmtRemote());
    return stdout.split("\n").filter((l) => l.trim() && !l.includes("_FLOW reply"));
  }

  /** Wait until hv0 realised `revision` (the agent's own report, after its barrier). */
  async realised(revision: number, timeoutMs = 600_000): Promise<void> {
    await waitRealised(this.store, revision, { chassis: ["hv0"], timeoutMs });
  }

  async stop(): Promise<void> {
    if (this.agent && this.agent.exitCode === null) {
      const gone = new Promise((r) => this.agent!.once("exit", r));
      this.agent.kill("SIGKILL");
      await gone;
    }
    await this.store?.close().catch(() => undefined);
    await this.ovs.stop();
    await this.etcd.stop();
    await this.cleanup.run();
  }
}

const portInput = (i: number) => {
  const p = portAddress(i);
  return {
    id: p.name,
    tenantId: TENANT,
    networkId: NET,
    macAddress: p.mac,
    fixedIps: [{ subnetId: SUBNET_ID, ipAddress: p.ip }],
  };
};

function missing(flows: string[], macs: string[]): string[] {
  const text = flows.join("\n");
  return macs.filter((m) => !text.includes(`dl_dst=${m}`));
}

export interface FdBulkResult {
  ports: number;
  /** NB write start → hv0 realised the last write. */
  seconds: number;
  /** The NB writes alone (part of `seconds`). */
  writeSeconds: number;
  transactions: number;
  flowsBefore: number;
  flows: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
}

export async function fdBulk(sb: FlowdrakeSandbox, n: number): Promise<FdBulkResult> {
  await sb.ensureNetwork();
  await sb.plug(range(n).map((i) => ({ port: vifName(i), ifaceId: portAddress(i).name })));
  // the agent has seen the bindings once its realised revision covers a write made after them
  const marker = await sb.api.update("lswitch", NET, { name: `before-${n}` });
  await sb.realised(marker.modRevision);
  const flowsBefore = (await sb.dumpFlows()).length;
  const rssBeforeKiB = rssKiB(sb.agentPid);
  let transactions = 0;
  const t0 = performance.now();
  await sb.api.createMany(
    range(n).map((i) => ({ kind: "lport" as const, input: portInput(i) })),
    { onCommit: () => void transactions++ },
  );
  const tWrite = performance.now();
  await sb.realised(sb.lastWrite);
  const t1 = performance.now();
  const flows = await sb.dumpFlows();
  const lost = missing(
    flows,
    range(n).map((i) => portAddress(i).mac),
  );
  if (lost.length) {
    throw new FlowdrakeError("NOT_REALISED", `${lost.length} ports have no flow after the realised report`, {
      first: lost.slice(0, 5),
    });
  }
  return {
    ports: n,
    seconds: seconds(t0, t1),
    writeSeconds: seconds(t0, tWrite),
    transactions,
    flowsBefore,
    flows: flows.length,
    rssBeforeKiB,
    rssAfterKiB: rssKiB(sb.agentPid),
  };
}

export interface FdChurnResult {
  ports: number;
  samples: number;
  addSeconds: number[];
  removeSeconds: number[];
  add: Percentiles;
  remove: Percentiles;
  flows: number;
}

export async function fdChurn(sb: FlowdrakeSandbox, n: number, samples = 20): Promise<FdChurnResult> {
  const addSeconds: number[] = [];
  const removeSeconds: number[] = [];
  for (let k = 0; k < samples; k++) {
    const i = n + k;
    const p = portAddress(i);
    await sb.plug([{ port: vifName(i), ifaceId: p.name }]);
    let t0 = performance.now();
    const v = await sb.api.create("lport", portInput(i));
    await sb.realised(v.modRevision);
    addSeconds.push(seconds(t0));
    if (missing(await sb.dumpFlows(), [p.mac]).length) {
      throw new FlowdrakeError("NOT_REALISED", `no flow of ${p.name} after its realised create`);
    }
    t0 = performance.now();
    await sb.api.delete("lport", p.name);
    await sb.realised(sb.lastWrite);
    removeSeconds.push(seconds(t0));
    if (!missing(await sb.dumpFlows(), [p.mac]).length) {
      throw new FlowdrakeError("NOT_REALISED", `flows of ${p.name} left after its realised delete`);
    }
    await sb.unplug(vifName(i));
  }
  return {
    ports: n,
    samples,
    addSeconds,
    removeSeconds,
    add: percentiles(addSeconds),
    remove: percentiles(removeSeconds),
    flows: (await sb.dumpFlows()).length,
  };
}

export interface FdColdStartResult extends ColdStartLayout {
  remotePorts: number;
  /** Agent start → ready with the NB realised. */
  seconds: number;
  flows: number;
  rssKiB: number;
  setupSeconds: number;
}

export async function fdColdStart(layout: ColdStartLayout = COLD_START): Promise<FdColdStartResult> {
  const sb = await FlowdrakeSandbox.start("cp-fd-cold");
  try {
    const tSetup = performance.now();
    const { switches, portsPerSwitch, fakeChassis, localPorts } = layout;
    const lease = await sb.store.grantLease(3600);
    const chassisOps = range(fakeChassis).flatMap((k) => [
      { kind: "chassis" as const, input: { name: fakeChassisName(k), tunnelIps: [fakeChassisIp(k)] } },
    ]);
    await sb.api.createMany(chassisOps);
    // every fake chassis is alive: a liveness key on a long lease, as its agent would keep
    for (let k = 0; k < fakeChassis; k += 100) {
      await sb.api.store.txn(
        range(Math.min(100, fakeChassis - k), k).map((j) => ({
          op: "put" as const,
          kind: AGENT_KIND.liveness,
          key: fakeChassisName(j),
          value: { at: Date.now(), agentId: `fake${j}` },
          lease: lease.id,
        })),
      );
    }
    const items: { kind: "lswitch" | "subnet" | "lport"; input: Record<string, unknown> }[] = [];
    for (let s = 0; s < switches; s++) {
      const sw = coldSwitch(s);
      items.push({
        kind: "lswitch",
        input: { id: sw.name, tenantId: TENANT, networkType: "geneve", segmentationId: 2000 + s },
      });
      items.push({
        kind: "subnet",
        input: {
          id: `${sw.name}-sub`,
          tenantId: TENANT,
          networkId: sw.name,
          cidr: sw.cidr,
          gatewayIp: sw.gateway,
        },
      });
      const last = s < localPorts ? portsPerSwitch : portsPerSwitch - 1;
      for (let j = 0; j <= last; j++) {
        const p = coldPort(s, j, layout);
        items.push({
          kind: "lport",
          input: {
            id: p.name,
            tenantId: TENANT,
            networkId: sw.name,
            macAddress: p.mac,
            fixedIps: [{ subnetId: `${sw.name}-sub`, ipAddress: p.ip }],
            chassis: p.chassis,
          },
        });
      }
    }
    await sb.api.createMany(items);
    const local = range(localPorts).map((s) => coldPort(s, portsPerSwitch, layout));
    await sb.plug(local.map((p, s) => ({ port: `cvif${s}`, ifaceId: p.name })));
    const setupSeconds = seconds(tSetup);
    const target = sb.lastWrite;
    const t0 = performance.now();
    await sb.startAgent();
    await sb.realised(target);
    const t1 = performance.now();
    const flows = await sb.dumpFlows();
    const lost = missing(
      flows,
      local.map((p) => p.mac),
    );
    if (lost.length) throw new FlowdrakeError("NOT_REALISED", `${lost.length} local ports have no flow`);
    return {
      ...layout,
      remotePorts: items.filter((i) => i.kind === "lport").length - localPorts,
      seconds: seconds(t0, t1),
      flows: flows.length,
      rssKiB: rssKiB(sb.agentPid),
      setupSeconds,
    };
  } finally {
    await sb.stop();
  }
}
