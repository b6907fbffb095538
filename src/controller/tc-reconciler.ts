/**
 * The offload datapath: the agent's second output. Next to the OpenFlow
 * reconciler (reconciler.ts), it puts the NIC's share of the flow set into
 * tc-flower filters in front of OVS and keeps them in step.
 *
 *   OpenFlow desired set ─► planner (per flow, incremental) ─► plan ─► device filters
 *   (reconciler.flows)          │ exclusions: changing,              │ translate + cookie
 *                               │ refused, demoted, aging            ▼
 *                               │                    desired ⇄ installed (read back at start)
 *                               ▼                            │ ordered ops, one netlink batch
 *                     caps --explain, metrics        ◄── kernel (tc ingress of each port)
 *
 * Modes (`offload.mode`, tc-reconciler-config.ts): none — no tc filters;
 * ovs — OVS's own offload (other_config:hw-offload); planner — this module.
 * planner mode gives way to OVS when OVS has hw-offload=true (both would
 * own the ports' tc), and to none when the NIC profile has no eswitch, and
 * says so. Outside planner mode the filters a planner-mode run left are
 * removed at start, device by device (one that cannot be read keeps its
 * own until the next start, not the others'), and explain reports what the
 * planner would do.
 *
 * A pass of the agent calls `beforeOpenFlow()` before the OpenFlow bundle
 * and `afterOpenFlow()` after the switch confirmed it. The OpenFlow state
 * the tc filters shortcut is `base`: the flows the switch holds as far as
 * this module knows (read back at start, then what each confirmed sync
 * applied). Before the bundle every flow whose desired version differs
 * from base is kept in software and the result installed — so a tc rule is
 * withdrawn before the OpenFlow state it shortcuts changes; after it, the
 * flows the switch applied leave that set and the plan extends again — so
 * the software path is in place before a rule that bypasses it is added
 * (state.ts has the invariant and why it holds; order.ts the order of the
 * operations). A flow whose owner the switch rejected stays in software.
 *
 * Desired vs installed is reconciled like the flows: flowdrake's filters are
 * read back from the kernel at start (tagged by the cookie on their actions;
 * anyone else's filters are never touched), only differences are sent,
 * nothing is flushed, and a restarted agent that wants what is installed
 * sends nothing — traffic keeps flowing through a `kill -9`.
 *
 * A filter the kernel or the NIC refuses (EOPNOTSUPP, ENOSPC, an
 * unsupported key), that flower cannot express, or that the NIC took under
 * skip_sw but does not hold (not in_hw), keeps its flows in software with
 * the kernel's message (`refused`; retried after five minutes or when the
 * flow changes); the offload budget (budget.ts) demotes idle flows when the
 * plan needs more filters than the NIC holds; a flow with an idle or hard
 * timeout stays in software (`aging`: OVS would age it out while the NIC
 * carries its packets). Counters (tc's per filter, OpenFlow's per flow) are
 * read every `statsIntervalMs` for the budget, the metrics and `flowdrake
 * caps --explain agent`, which asks this module over a unix socket
 * (`offload.socket`, by default flowdrake.<bridge>.sock beside the ovsdb
 * socket).
 */
import { createServer, type Server } from "node:net";
import { mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { discover } from "../offload/caps/discover.js";
import type { HostDiscovery } from "../offload/caps/discover.js";
import { liveSource } from "../offload/caps/source.js";
import { type BudgetDecision, OffloadBudget, TrafficMeter } from "../offload/datapath/budget.js";
import {
  bridgeInterfaces,
  type DeviceMap,
  deviceMap,
  type MappedPort,
  type OvsInterface,
  samePortMap,
} from "../offload/datapath/devices.js";
import type { DeviceRule, FilterKind } from "../offload/datapath/filters.js";
import {
  type FilterCounters,
  type KernelFilter,
  type KernelOp,
  NetlinkTcDatapath,
  type TcDatapath,
} from "../offload/datapath/kernel.js";
import { filterOps, type InstalledRef } from "../offload/datapath/order.js";
import { OffloadState } from "../offload/datapath/state.js";
import {
  flaggedSig,
  keyHashOf,
  sigHashOf,
  type TcFlags,
  translate,
  type Translation,
} from "../offload/datapath/translate.js";
import { applyOffloadSettings } from "../offload/ovs-settings.js";
import { ruleFromFlow } from "../offload/planner/from-openflow.js";
import type { PipelineRule } from "../offload/planner/ir.js";
import type { Exclusion } from "../offload/planner/plan.js";
import type { FlowerRule } from "../offload/netlink/tc/rule.js";
import type { OfConnection } from "../openflow/connection.js";
import { flowKey, type Flow } from "../openflow/flow.js";
import { formatFlow } from "../openflow/text.js";
import type { OvsdbSession } from "../ovsdb/session.js";
import { errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";
import type { AgentConfig } from "./config.js";
import { flowSig } from "./engine.js";
import type { OpenFlowReconciler } from "./reconciler.js";
import { patchPortNames } from "./tunnel-ports.js";
import { type OffloadMode, offloadSocket, requestedMode } from "./tc-reconciler-config.js";

const log = logger("offload");

/** A refused flow gets another chance after this long. */
export const REFUSAL_RETRY_MS = 5 * 60_000;
const MAX_ROUNDS = 8;

export interface OffloadDeps {
  config: AgentConfig;
  ovsdb: OvsdbSession;
  reconciler: OpenFlowReconciler;
  /** The OpenFlow session, for flow counters (undefined while disconnected). */
  connection: () => OfConnection | undefined;
  registry: Registry;
  /** Ask the agent for a pass (the budget or a refusal retry has work). */
  requestPass: () => void;
  /** The kernel (default: netlink in this namespace). */
  datapath?: TcDatapath;
  /** Capability discovery of this host (default: sysfs). */
  discover?: () => Promise<Pick<HostDiscovery, "devices">>;
  now?: () => number;
}

export interface ModeState {
  requested: OffloadMode;
  active: OffloadMode;
  reason: string;
}

interface BaseFlow {
  flow: Flow;
  owner: string;
  sig: string;
}

interface Installed extends InstalledRef {
  dev: string;
  ifindex: number;
  prio: number;
  handle: number;
  origins: string[];
  kind: FilterKind;
  /** Ends the packet's way through tc (redirect or drop): its packets did not reach OVS. */
  terminal: boolean;
  counters?: FilterCounters;
  inHw?: boolean;
}

interface Refusal {
  reason: string;
  scope: Exclusion["scope"];
  errno?: string;
  at: number;
}

export type FlowStatus = "offloaded" | "software" | "changing" | "refused" | "demoted";

export interface ExplainedFilter {
  dev: string;
  chain: number;
  prio: number;
  handle: number;
  kind: FilterKind;
  inHw: boolean;
  packets: number;
  hwPackets: number;
  swPackets: number;
  bytes: number;
}

export interface ExplainedFlow {
  flow: string;
  table: number;
  priority: number;
  status: FlowStatus;
  reason: string;
  /** Packets OVS counted on the flow (software). */
  softwarePackets?: number;
  filters: ExplainedFilter[];
}

export interface OffloadReport {
  chassis: string;
  bridge: string;
  mode: ModeState;
  profile: { id: string; name: string; reason: string };
  tcFlags: TcFlags;
  capacity: number | null;
  filters: { desired: number; installed: number; byDevice: Record<string, number> };
  ports: MappedPort[];
  demoted: number;
  refused: number;
  /** Share of packets and bytes the NIC forwarded over the last counter interval. */
  share: { packets: number; bytes: number } | null;
  flows: ExplainedFlow[];
}

class OffloadMetrics {
  readonly tcFilters: Gauge;
  readonly desiredFilters: Gauge;
  readonly capacity: Gauge;
  readonly share: Gauge;
  readonly packets: Counter;
  readonly bytes: Counter;
  readonly demotions: Counter;
  readonly promotions: Counter;
  readonly demoted: Gauge;
  readonly refusals: Counter;
  readonly refused: Gauge;
  readonly ops: Counter;
  readonly duration: Histogram;

  constructor(r: Registry) {
    const registers = [r];
    this.tcFilters = new Gauge({
      name: "flowdrake_tc_filters",
      help: "tc filters flowdrake holds, per device",
      labelNames: ["device"],
      registers,
    });
    this.desiredFilters = new Gauge({
      name: "flowdrake_offload_desired_filters",
      help: "tc filters the offload plan wants on every device together",
      registers,
    });
    this.capacity = new Gauge({
      name: "flowdrake_offload_capacity_filters",
      help: "filters the NIC may hold (the offload budget)",
      registers,
    });
    this.share = new Gauge({
      name: "flowdrake_offload_share",
      help: "share of packets (unit=packets) or bytes (unit=bytes) the NIC forwarded, last counter interval",
      labelNames: ["unit"],
      registers,
    });
    this.packets = new Counter({
      name: "flowdrake_offload_packets_total",
      help: "packets forwarded by tc (path=nic) and by OVS (path=ovs), as counted",
      labelNames: ["path"],
      registers,
    });
    this.bytes = new Counter({
      name: "flowdrake_offload_bytes_total",
      help: "bytes forwarded by tc (path=nic) and by OVS (path=ovs), as counted",
      labelNames: ["path"],
      registers,
    });
    this.demotions = new Counter({
      name: "flowdrake_offload_demotions_total",
      help: "flows the offload budget demoted to software",
      registers,
    });
    this.promotions = new Counter({
      name: "flowdrake_offload_promotions_total",
      help: "demoted flows the offload budget gave back to the NIC",
      registers,
    });
    this.demoted = new Gauge({
      name: "flowdrake_offload_demoted_flows",
      help: "flows kept in software by the offload budget now",
      registers,
    });
    this.refusals = new Counter({
      name: "flowdrake_offload_refusals_total",
      help: "filters the kernel or NIC refused (or flower cannot express), per errno",
      labelNames: ["errno"],
      registers,
    });
    this.refused = new Gauge({
      name: "flowdrake_offload_refused_flows",
      help: "flows kept in software because a filter was refused",
      registers,
    });
    this.ops = new Counter({
      name: "flowdrake_tc_ops_total",
      help: "tc filter operations sent, per op (add, replace, delete)",
      labelNames: ["op"],
      registers,
    });
    this.duration = new Histogram({
      name: "flowdrake_tc_reconcile_duration_seconds",
      help: "one desired-vs-installed tc reconcile (plan, translate, netlink batch)",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
  }
}

/**
 * Why a flow with timeouts stays in software: OVS ages a flow by the packets
 * it counts itself (the NIC's never reach those counters, so an offloaded
 * flow would look idle), and removes a flow at its hard timeout on its own,
 * which a tc filter in front of it would outlive.
 */
export function agingExclusion(flow: Pick<Flow, "idleTimeout" | "hardTimeout">): Exclusion | undefined {
  if (flow.idleTimeout) {
    return {
      reason: `it has idle_timeout=${flow.idleTimeout}: OVS would age it out while the NIC carries its packets`,
      scope: "actions",
    };
  }
  if (flow.hardTimeout) {
    return {
      reason: `it has hard_timeout=${flow.hardTimeout}: OVS removes it on its own, and a tc filter would outlive it`,
      scope: "actions",
    };
  }
  return undefined;
}

const terminal = (r: FlowerRule): boolean => {
  const last = r.actions[r.actions.length - 1];
  if (!last) return false;
  if (last.kind === "mirred") return last.mode === "redirect";
  return last.kind === "gact" && last.control === 2; /* TC_ACT_SHOT */
};

export class OffloadOutput {
  readonly mode: ModeState;
  private readonly metrics: OffloadMetrics;
  private readonly now: () => number;
  private dp: TcDatapath | undefined;
  private map: DeviceMap | undefined;
  private state: OffloadState | undefined;
  private flags: TcFlags = "skip_hw";
  private readonly base = new Map<string, BaseFlow>();
  private baseLoaded = false;
  private pending = new Map<string, { sig: string; owner: string } | undefined>();
  private installed = new Map<string, Installed>();
  private readonly nextHandle = new Map<string, number>();
  private ifindex = new Map<string, number>();
  private readonly ingressReady = new Set<number>();
  private readonly translations = new Map<string, Translation>();
  private readonly refused = new Map<string, Refusal>();
  /** Device filters without an origin the kernel refused (a chain's explicit catch-all): left out. */
  private readonly unplaceable = new Set<string>();
  /** Installed skip_sw filters the NIC does not hold (not in_hw), found by collect(): refused at the next pass. */
  private readonly notInHw = new Set<string>();
  private readonly meter = new TrafficMeter();
  private budget: OffloadBudget | undefined;
  private readonly ofCounters = new Map<string, { packets: number; bytes: number }>();
  private lastShare: { packets: number; bytes: number } | null = null;
  private lastTotals: { nic: [number, number]; ovs: [number, number] } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private collecting = false;
  private server: Server | undefined;
  private stopped = false;
  private hostDevices: Pick<HostDiscovery, "devices"> | undefined;

  private constructor(private readonly deps: OffloadDeps) {
    this.now = deps.now ?? Date.now;
    this.metrics = new OffloadMetrics(deps.registry);
    this.mode = { requested: requestedMode(deps.config.offload), active: "none", reason: "" };
  }

  static async start(deps: OffloadDeps): Promise<OffloadOutput> {
    const o = new OffloadOutput(deps);
    await o.init();
    return o;
  }

  private get cfg(): AgentConfig["offload"] {
    return this.deps.config.offload;
  }

  private ovsHwOffload(): string | undefined {
    const row = this.deps.ovsdb.replica.rows("Open_vSwitch")[0];
    const other = row?.other_config as Record<string, string> | undefined;
    return other?.["hw-offload"];
  }

  private async init(): Promise<void> {
    try {
      this.hostDevices = await (this.deps.discover ?? (() => discover(liveSource())))();
    } catch (err) {
      log.warn(
        { err: errorMessage(err) },
        "capability discovery failed; only offload.ports count as eswitch ports",
      );
    }
    this.refreshMap();
    const m = this.mode;
    const hw = this.ovsHwOffload();
    if (m.requested === "planner") {
      if (hw === "true") {
        m.active = "ovs";
        m.reason =
          "offload.mode is planner, but OVS has other_config:hw-offload=true and owns the ports' tc: set it false and restart ovs-vswitchd";
      } else if (!this.map!.profile.switchdev) {
        m.active = "none";
        m.reason = `offload.mode is planner, but the NIC profile is "${this.map!.profile.id}" (${this.map!.profileReason})`;
      } else {
        m.active = "planner";
        m.reason = `flowdrake's tc filters in front of OVS (profile ${this.map!.profile.id}: ${this.map!.profileReason})`;
      }
    } else if (m.requested === "ovs") {
      m.active = "ovs";
      m.reason = "OVS's own tc offload (other_config:hw-offload)";
      if (this.cfg.mode === "ovs" && this.cfg.hwOffload === undefined && hw !== "true") {
        const r = await applyOffloadSettings(this.deps.ovsdb.client, { hwOffload: true });
        m.reason += `; ${r.message}`;
        log.warn({ changed: r.changed }, r.message);
      } else if (this.cfg.hwOffload === false || (this.cfg.hwOffload === undefined && hw !== "true")) {
        m.reason += "; but hw-offload is not true, so OVS offloads nothing";
      }
    } else {
      m.active = "none";
      m.reason = "offload.mode none: OpenFlow only";
    }
    log.info({ mode: m.active, requested: m.requested, reason: m.reason }, "offload mode");
    await this.listen(offloadSocket(this.deps.config));
    this.dp = this.deps.datapath;
    if (m.active === "planner") {
      this.dp ??= NetlinkTcDatapath.open();
      this.flags =
        this.cfg.tcFlags === "auto" ? (this.map!.hardware ? "skip_sw" : "skip_hw") : this.cfg.tcFlags;
      const capacity = this.cfg.capacity ?? this.map!.profile.capacity?.filters;
      if (capacity !== undefined) {
        this.budget = new OffloadBudget({ capacity, dwellMs: this.cfg.dwellMs });
        this.metrics.capacity.set(capacity);
      }
      this.timer = setInterval(() => void this.collect(), this.cfg.statsIntervalMs);
      this.timer.unref();
    } else {
      await this.removeLeftovers().catch((err: unknown) =>
        log.warn({ err: errorMessage(err) }, "could not check for flowdrake tc filters left by planner mode"),
      );
    }
  }

  /** Planner mode left filters behind and the agent now runs without it: remove them (upstream first). */
  private async removeLeftovers(): Promise<void> {
    // Every port of the bridge, whether or not OVS has numbered it yet (just after an
    // ovs-vswitchd restart it has not), and the tunnel devices.
    const devs = bridgeInterfaces(this.deps.ovsdb.replica, this.deps.config.bridge).flatMap((i) =>
      i.type === "geneve" ? ["genev_sys_6081"] : i.type === "vxlan" ? ["vxlan_sys_4789"] : [i.name],
    );
    if (!devs.length) return;
    this.dp ??= this.deps.datapath ?? NetlinkTcDatapath.open();
    const links = await this.dp.devices();
    const ops: KernelOp[] = [];
    for (const dev of new Set(devs)) {
      const ifindex = links.get(dev);
      if (ifindex === undefined) continue;
      // one device that cannot be read (a tunnel device OVS is recreating, say) must not keep
      // the others' filters: each is read on its own
      let ours: KernelFilter[];
      try {
        ours = (await this.dp.dump(dev, ifindex)).ours;
      } catch (err) {
        log.warn(
          { dev, err: errorMessage(err) },
          "could not read a device's tc filters; those left by planner mode stay",
        );
        continue;
      }
      for (const f of ours)
        ops.push({ op: "delete", dev, ifindex, chain: f.chain, prio: f.prio, handle: f.handle });
    }
    if (!ops.length) return;
    ops.sort((a, b) => (a.op === "delete" && b.op === "delete" ? a.chain - b.chain : 0));
    const errors = await this.dp.send(ops);
    log.info(
      { removed: ops.length - errors.length, mode: this.mode.active },
      "removed flowdrake tc filters left by planner mode",
    );
  }

  private refreshMap(): boolean {
    const replica = this.deps.ovsdb.replica;
    const ifaces = bridgeInterfaces(replica, this.deps.config.bridge);
    const bridges = new Map<string, { bridge: string; uplink: string; ifaces: OvsInterface[] }>();
    for (const [physnet, bridge] of Object.entries(this.deps.config.bridgeMappings)) {
      const uplink = this.cfg.uplinks[bridge];
      if (uplink)
        bridges.set(patchPortNames(physnet).int, {
          bridge,
          uplink,
          ifaces: bridgeInterfaces(replica, bridge),
        });
    }
    const next = deviceMap(ifaces, this.hostDevices, {
      bridge: this.deps.config.bridge,
      patterns: this.cfg.ports,
      profile: this.cfg.profile,
      bridges,
    });
    const changed = !this.map || !samePortMap(this.map.ports, next.ports);
    this.map = next;
    return changed;
  }

  // ── the pass ─────────────────────────────────────────────────────────────

  private ruleFor(key: string, flow: Flow): PipelineRule {
    return ruleFromFlow(flow, this.map!.ports, key);
  }

  /** Rebuild the planner over base (a new port map), keeping the reasons flows are in software. */
  private rebuildState(): void {
    const old = this.state;
    const state = new OffloadState(this.map!.profile, this.map!.ports);
    state.load([...this.base].map(([k, b]) => this.ruleFor(k, b.flow)));
    state.setExclusions("aging", new Map([...this.base].map(([k, b]) => [k, agingExclusion(b.flow)])));
    if (old) {
      for (const source of ["refused", "demoted"] as const) {
        const ex = new Map<string, Exclusion>();
        for (const id of old.excludedBy(source)) {
          const e = old.exclusion(id);
          if (e?.source === source) ex.set(id, e.exclusion);
        }
        state.setExclusions(source, ex);
      }
    }
    this.state = state;
  }

  private loadBase(): void {
    const r = this.deps.reconciler;
    if (r.isSynced) {
      for (const f of r.installedFlows()) {
        const key = flowKey(f);
        this.base.set(key, { flow: f, owner: r.flows.winner(key)?.owner ?? "", sig: flowSig(f) });
      }
    }
    this.baseLoaded = true;
    this.rebuildState();
  }

  /** Before the OpenFlow bundle: keep every flow about to change in software. */
  async beforeOpenFlow(): Promise<void> {
    if (this.mode.active !== "planner" || this.stopped) return;
    const started = performance.now();
    if (!this.baseLoaded) {
      this.loadBase();
      await this.readInstalled();
    } else if (this.refreshMap()) this.rebuildState();
    const r = this.deps.reconciler;
    const changes = new Map<string, PipelineRule | undefined>();
    this.pending = new Map();
    for (const key of r.flows.keys()) {
      const want = r.flows.winner(key)!;
      const have = this.base.get(key);
      if (have && have.sig === want.sig) continue;
      changes.set(key, this.ruleFor(key, want.flow));
      this.pending.set(key, { sig: want.sig, owner: want.owner });
      this.refused.delete(key);
    }
    for (const key of this.base.keys()) {
      if (r.flows.winner(key)) continue;
      changes.set(key, undefined);
      this.pending.set(key, undefined);
    }
    if (changes.size) {
      this.state!.setExclusions(
        "aging",
        new Map([...changes].map(([k, next]) => [k, next && agingExclusion(r.flows.winner(k)!.flow)])),
      );
      this.state!.begin(changes);
      this.state!.setExclusions(
        "refused",
        new Map([...changes.keys()].filter((k) => !this.refused.has(k)).map((k) => [k, undefined])),
      );
      await this.sync("before");
    }
    this.metrics.duration.observe((performance.now() - started) / 1000);
  }

  /** After the switch confirmed the bundle: the applied flows may go back to the NIC. */
  async afterOpenFlow(): Promise<void> {
    if (this.mode.active !== "planner" || this.stopped || !this.state) return;
    const started = performance.now();
    const r = this.deps.reconciler;
    const done = new Set<string>();
    for (const [key, want] of this.pending) {
      if (want && r.failed.has(want.owner)) continue;
      done.add(key);
      if (!want) this.base.delete(key);
      else this.base.set(key, { flow: r.flows.winner(key)!.flow, owner: want.owner, sig: want.sig });
    }
    this.pending = new Map();
    if (done.size) this.state.commit(done);
    this.retryRefusals();
    this.refuseNotInHw();
    if (this.budget) {
      // The budget never decides blind: the counters are read once before its first decision.
      if (!this.meter.sampled) await this.collect();
      this.applyBudget(this.budget.decide(this.state, this.meter, this.now()));
    }
    await this.sync("after");
    this.metrics.duration.observe((performance.now() - started) / 1000);
  }

  private applyBudget(d: BudgetDecision): void {
    if (d.demoted.length) {
      this.metrics.demotions.inc(d.demoted.length);
      log.info(
        { demoted: d.demoted.length, filters: d.filters, capacity: this.budget!.capacity },
        "offload budget: flows demoted to software",
      );
    }
    if (d.promoted.length) {
      this.metrics.promotions.inc(d.promoted.length);
      log.info({ promoted: d.promoted.length, filters: d.filters }, "offload budget: flows back on the NIC");
    }
    this.metrics.demoted.set(this.state!.excludedBy("demoted").length);
  }

  /** A skip_sw filter the NIC does not hold forwards nothing: its flows go to software. */
  private refuseNotInHw(): void {
    if (!this.notInHw.size) return;
    const desired = this.state!.desired();
    const out = new Map<string, Exclusion>();
    for (const key of this.notInHw) {
      const d = desired.get(key);
      if (d) this.refuse(d, "the NIC does not hold the filter (skip_sw, not in_hw)", "not_in_hw", out);
    }
    this.notInHw.clear();
    if (out.size) this.state!.setExclusions("refused", out);
  }

  private retryRefusals(): void {
    const due = new Map<string, undefined>();
    for (const [id, ref] of this.refused) {
      if (this.now() - ref.at < REFUSAL_RETRY_MS) continue;
      this.refused.delete(id);
      due.set(id, undefined);
    }
    if (due.size) {
      this.state!.setExclusions("refused", due);
      this.unplaceable.clear();
    }
    this.metrics.refused.set(this.refused.size);
  }

  // ── desired vs installed ─────────────────────────────────────────────────

  private translation(d: DeviceRule): Translation {
    let t = this.translations.get(d.sig);
    if (!t) {
      t = translate(d, {
        ifindex: (dev) => this.ifindex.get(dev),
        flags: this.flags,
        tunnelSrc: this.deps.config.tunnelIp,
        ...(this.map!.profile.maxPrio !== undefined ? { maxPrio: this.map!.profile.maxPrio } : {}),
      });
      this.translations.set(d.sig, t);
    }
    return t;
  }

  /** Keep a refused filter's flows in software; an origin-less filter is left out. */
  private refuse(
    d: DeviceRule,
    reason: string,
    errno: string | undefined,
    out: Map<string, Exclusion>,
  ): void {
    this.metrics.refusals.inc({ errno: errno ?? "untranslatable" });
    if (!d.origins.length) {
      this.unplaceable.add(d.key);
      log.warn(
        { dev: d.dev, chain: d.rule.chain, reason },
        "a chain's catch-all filter was refused; its misses reach OVS anyway",
      );
      return;
    }
    for (const id of d.origins) {
      const prev = this.refused.get(id);
      const scope: Exclusion["scope"] =
        d.kind !== "trap" ? "actions" : prev?.scope === "match" || prev?.scope === "all" ? "all" : "match";
      const text = `refused by the kernel: ${reason}`;
      const ref: Refusal = { reason: text, scope, at: this.now(), ...(errno ? { errno } : {}) };
      this.refused.set(id, ref);
      out.set(id, { reason: text, scope });
    }
    log.warn(
      { dev: d.dev, chain: d.rule.chain, prio: d.rule.prio, flows: d.origins.length, reason },
      "tc refused a filter; its flows stay in software",
    );
  }

  private async devices(): Promise<void> {
    const links = await this.dp!.devices();
    this.ifindex = links;
    this.translations.clear();
  }

  /** Read flowdrake's filters back from every block device (at start). */
  private async readInstalled(): Promise<void> {
    await this.devices();
    this.installed = new Map();
    const desired = this.state!.desired();
    const byHash = new Map<string, DeviceRule>();
    for (const d of desired.values())
      byHash.set(`${d.dev}|${d.rule.chain}|${d.rule.prio}|${keyHashOf(d.key)}`, d);
    let count = 0;
    for (const dev of this.state!.blockDevices()) {
      const ifindex = this.ifindex.get(dev);
      if (ifindex === undefined) continue;
      const { ours, foreign } = await this.dp!.dump(dev, ifindex);
      for (const f of ours) {
        count++;
        this.nextHandle.set(dev, Math.max(this.nextHandle.get(dev) ?? 1, f.handle + 1));
        const d = byHash.get(`${dev}|${f.chain}|${f.prio}|${f.keyHash}`);
        const same = d && sigHashOf(flaggedSig(d.sig, this.flags)) === f.sigHash;
        const key = d && !this.installed.has(d.key) ? d.key : `stale|${dev}|${f.handle}`;
        const t = same ? this.translation(d) : undefined;
        this.installed.set(key, {
          key,
          sig: same ? d.sig : `stale|${f.sigHash}`,
          chain: f.chain,
          ...(d ? { table: d.table } : {}),
          dev,
          ifindex,
          prio: f.prio,
          handle: f.handle,
          origins: d?.origins ?? [],
          kind: d?.kind ?? "trap",
          terminal: t?.ok ? terminal(t.rule) : false,
          counters: f.counters,
          inHw: f.inHw,
        });
      }
      if (foreign)
        log.info({ dev, foreign }, "device holds tc filters that are not flowdrake's; they are left alone");
    }
    log.info({ filters: count, devices: this.state!.blockDevices().length }, "read installed tc filters");
  }

  private async sync(phase: "before" | "after"): Promise<void> {
    const state = this.state!;
    let reread = false;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const desired = state.desired();
      for (const k of this.unplaceable) desired.delete(k);
      const refusedNow = new Map<string, Exclusion>();
      const flower = new Map<string, FlowerRule>();
      for (const d of desired.values()) {
        if (!this.ifindex.has(d.dev) && !reread) {
          await this.devices();
          reread = true;
        }
        // No such device (yet): no packet arrives there, so its filters are left out.
        if (!this.ifindex.has(d.dev)) continue;
        const t = this.translation(d);
        if (t.ok) flower.set(d.key, t.rule);
        else this.refuse(d, t.reason, undefined, refusedNow);
      }
      if (refusedNow.size) {
        state.setExclusions("refused", refusedNow);
        continue;
      }
      for (const k of [...desired.keys()]) if (!flower.has(k)) desired.delete(k);
      this.metrics.desiredFilters.set(desired.size);
      const ops = filterOps(desired, this.installed);
      if (!ops.length) break;
      const kops: KernelOp[] = [];
      for (const op of ops) {
        if (op.op === "delete") {
          const h = op.have;
          kops.push({
            op: "delete",
            dev: h.dev,
            ifindex: h.ifindex,
            chain: h.chain,
            prio: h.prio,
            handle: h.handle,
          });
          continue;
        }
        const ifindex = this.ifindex.get(op.want.dev)!;
        if (!this.ingressReady.has(ifindex)) {
          await this.dp!.ensureIngress(ifindex);
          this.ingressReady.add(ifindex);
        }
        const handle = op.op === "replace" ? op.have.handle : this.allocHandle(op.want.dev);
        kops.push({ op: op.op, dev: op.want.dev, ifindex, rule: flower.get(op.want.key)!, handle });
      }
      const errors = await this.dp!.send(kops);
      const failed = new Map(errors.map((e) => [e.index, e]));
      ops.forEach((op, i) => {
        const k = kops[i]!;
        this.metrics.ops.inc({ op: op.op });
        const err = failed.get(i);
        if (op.op === "delete") {
          if (!err) this.installed.delete(op.have.key);
          return;
        }
        if (err) {
          this.refuse(op.want, err.message, err.errnoName, refusedNow);
          return;
        }
        const w = op.want;
        const r = (k as Extract<KernelOp, { rule: FlowerRule }>).rule;
        this.installed.set(w.key, {
          key: w.key,
          sig: w.sig,
          chain: w.rule.chain,
          table: w.table,
          dev: w.dev,
          ifindex: k.ifindex,
          prio: w.rule.prio,
          handle: k.handle,
          origins: w.origins,
          kind: w.kind,
          terminal: terminal(r),
        });
      });
      log.debug({ phase, ops: ops.length, refused: refusedNow.size }, "tc reconciled");
      if (!refusedNow.size) break;
      state.setExclusions("refused", refusedNow);
      if (round === MAX_ROUNDS - 1) {
        const msg = "tc kept refusing filters after several rounds";
        if (phase === "before") throw new Error(`${msg}; the OpenFlow change waits for the next pass`);
        log.error(msg);
      }
    }
    this.metrics.refused.set(this.refused.size);
    this.refreshDeviceGauge();
  }

  private allocHandle(dev: string): number {
    const h = this.nextHandle.get(dev) ?? 1;
    this.nextHandle.set(dev, h + 1);
    return h;
  }

  private refreshDeviceGauge(): void {
    const by = new Map<string, number>();
    for (const i of this.installed.values()) by.set(i.dev, (by.get(i.dev) ?? 0) + 1);
    this.metrics.tcFilters.reset();
    for (const [device, n] of by) this.metrics.tcFilters.set({ device }, n);
  }

  // ── counters ─────────────────────────────────────────────────────────────

  /** Read every filter's and flow's counters: the budget's traffic, the metrics, explain. */
  async collect(): Promise<void> {
    if (this.collecting || this.stopped || !this.state || !this.dp) return;
    this.collecting = true;
    try {
      const seen = new Map<string, KernelFilter>();
      for (const dev of this.state.blockDevices()) {
        const ifindex = this.ifindex.get(dev);
        if (ifindex === undefined) continue;
        for (const f of (await this.dp.dump(dev, ifindex)).ours) seen.set(`${dev}|${f.handle}`, f);
      }
      let drift = false;
      for (const [key, i] of this.installed) {
        const f = seen.get(`${i.dev}|${i.handle}`);
        if (!f) {
          // Someone removed it: forget it, the next pass puts it back.
          this.installed.delete(key);
          drift = true;
          continue;
        }
        i.counters = f.counters;
        i.inHw = f.inHw;
        if (this.flags === "skip_sw" && !f.inHw && i.origins.length) {
          this.notInHw.add(key);
          drift = true;
        }
      }
      const conn = this.deps.connection();
      if (conn) {
        for (const s of await conn.flowStats()) {
          this.ofCounters.set(flowKey({ table: s.tableId, priority: s.priority, match: s.match }), {
            packets: Number(s.packetCount),
            bytes: Number(s.byteCount),
          });
        }
      }
      const samples = new Map<string, { packets: number; bytes: number }>();
      const add = (id: string, p: number, b: number) => {
        const c = samples.get(id) ?? { packets: 0, bytes: 0 };
        c.packets += p;
        c.bytes += b;
        samples.set(id, c);
      };
      const nic: [number, number] = [0, 0];
      for (const i of this.installed.values()) {
        const c = i.counters;
        if (!c) continue;
        if (i.kind !== "trap") for (const id of i.origins) add(id, c.packets, c.bytes);
        if (i.terminal) {
          nic[0] += c.packets;
          nic[1] += c.bytes;
        }
      }
      const ovs: [number, number] = [0, 0];
      for (const [key, c] of this.ofCounters) {
        if (this.base.has(key)) add(key, c.packets, c.bytes);
        if (key.startsWith("0/")) {
          ovs[0] += c.packets;
          ovs[1] += c.bytes;
        }
      }
      this.meter.update(samples, this.now());
      this.updateShare(nic, ovs);
      const busy =
        drift ||
        (this.budget !== undefined &&
          (this.installed.size > this.budget.capacity || this.state.excludedBy("demoted").length > 0)) ||
        [...this.refused.values()].some((r) => this.now() - r.at >= REFUSAL_RETRY_MS);
      if (busy) this.deps.requestPass();
    } catch (err) {
      log.debug({ err: errorMessage(err) }, "could not read offload counters");
    } finally {
      this.collecting = false;
    }
  }

  private updateShare(nic: [number, number], ovs: [number, number]): void {
    const prev = this.lastTotals;
    this.lastTotals = { nic, ovs };
    if (!prev) return;
    const d = (a: number, b: number) => (a >= b ? a - b : a);
    const np = d(nic[0], prev.nic[0]);
    const nb = d(nic[1], prev.nic[1]);
    const op = d(ovs[0], prev.ovs[0]);
    const ob = d(ovs[1], prev.ovs[1]);
    this.metrics.packets.inc({ path: "nic" }, np);
    this.metrics.packets.inc({ path: "ovs" }, op);
    this.metrics.bytes.inc({ path: "nic" }, nb);
    this.metrics.bytes.inc({ path: "ovs" }, ob);
    if (np + op === 0) return;
    this.lastShare = { packets: np / (np + op), bytes: nb + ob ? nb / (nb + ob) : 0 };
    this.metrics.share.set({ unit: "packets" }, this.lastShare.packets);
    this.metrics.share.set({ unit: "bytes" }, this.lastShare.bytes);
  }

  // ── explain ──────────────────────────────────────────────────────────────

  /** Every flow with what the NIC does with it, and the filters and counters behind that. */
  explain(): OffloadReport {
    const map = this.map!;
    let state = this.state;
    if (!state) {
      // Not in planner mode: what the planner would do with the flows OVS should hold.
      state = new OffloadState(map.profile, map.ports);
      const r = this.deps.reconciler;
      state.load([...r.flows.keys()].map((k) => this.ruleFor(k, r.flows.winner(k)!.flow)));
      state.setExclusions(
        "aging",
        new Map([...r.flows.keys()].map((k) => [k, agingExclusion(r.flows.winner(k)!.flow)])),
      );
    }
    const plan = state.result();
    const byOrigin = new Map<string, ExplainedFilter[]>();
    const byDevice: Record<string, number> = {};
    for (const i of this.installed.values()) {
      byDevice[i.dev] = (byDevice[i.dev] ?? 0) + 1;
      if (i.kind === "trap") continue;
      const c = i.counters;
      const e: ExplainedFilter = {
        dev: i.dev,
        chain: i.chain,
        prio: i.prio,
        handle: i.handle,
        kind: i.kind,
        inHw: i.inHw ?? false,
        packets: c?.packets ?? 0,
        hwPackets: c?.hwPackets ?? 0,
        swPackets: (c?.packets ?? 0) - (c?.hwPackets ?? 0),
        bytes: c?.bytes ?? 0,
      };
      for (const id of i.origins) {
        const list = byOrigin.get(id);
        if (list) list.push(e);
        else byOrigin.set(id, [e]);
      }
    }
    const flows: ExplainedFlow[] = [];
    const planner = this.mode.active === "planner";
    const flowOf = (k: string) => this.base.get(k)?.flow ?? this.deps.reconciler.flows.winner(k)?.flow;
    for (const rule of state.allRules()) {
      const d = plan.decisions.get(rule.id);
      const ex = state.exclusion(rule.id);
      const flow = flowOf(rule.id);
      let status: FlowStatus = d?.offloaded ? "offloaded" : "software";
      if (ex?.source === "changing") status = "changing";
      else if (ex?.source === "refused") status = "refused";
      else if (ex?.source === "demoted") status = "demoted";
      let reason = d?.reason ?? "";
      if (!planner)
        reason = `${this.mode.active === "ovs" ? "OVS's offload decides; flowdrake's planner would say: " : "would be "}${reason}`;
      const e: ExplainedFlow = {
        flow: flow ? formatFlow(flow) : rule.id,
        table: rule.table,
        priority: rule.priority,
        status,
        reason,
        filters: byOrigin.get(rule.id) ?? [],
      };
      const sw = this.ofCounters.get(rule.id);
      if (sw) e.softwarePackets = sw.packets;
      flows.push(e);
    }
    flows.sort((a, b) => a.table - b.table || b.priority - a.priority || (a.flow < b.flow ? -1 : 1));
    return {
      chassis: this.deps.config.chassis,
      bridge: this.deps.config.bridge,
      mode: { ...this.mode },
      profile: { id: map.profile.id, name: map.profile.name, reason: map.profileReason },
      tcFlags: this.flags,
      capacity: this.budget?.capacity ?? null,
      filters: { desired: planner ? state.desired().size : 0, installed: this.installed.size, byDevice },
      ports: map.mapped,
      demoted: state.excludedBy("demoted").length,
      refused: this.refused.size,
      share: this.lastShare,
      flows,
    };
  }

  private async listen(path: string): Promise<void> {
    try {
      mkdirSync(dirname(path), { recursive: true });
      rmSync(path, { force: true });
      const server = createServer((sock) => {
        let buf = "";
        sock.setEncoding("utf8");
        sock.on("error", () => sock.destroy());
        sock.on("data", (chunk: string) => {
          buf += chunk;
          const nl = buf.indexOf("\n");
          if (nl < 0) return;
          let reply: unknown;
          try {
            const req = JSON.parse(buf.slice(0, nl)) as { op?: string };
            if (req.op !== "explain" && req.op !== "status")
              throw new Error(`unknown op ${String(req.op)}: explain or status`);
            const report = this.explain();
            reply = req.op === "status" ? { ...report, flows: undefined } : report;
          } catch (err) {
            reply = { error: errorMessage(err) };
          }
          sock.end(`${JSON.stringify(reply)}\n`);
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => resolve());
      });
      this.server = server;
      log.info({ socket: path }, "offload explain socket listening");
    } catch (err) {
      log.warn(
        { socket: path, err: errorMessage(err) },
        "cannot serve the offload explain socket; caps --explain cannot ask this agent",
      );
    }
  }

  /** Stop reading counters and answering; every filter stays installed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    if (s) rmSync(offloadSocket(this.deps.config), { force: true });
    if (!this.deps.datapath) this.dp?.close();
  }
}
