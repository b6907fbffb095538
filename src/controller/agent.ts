/**
 * The node agent: one per compute node, Dragonflow's local controller.
 *
 * It follows two sources and drives one switch:
 *   - the local Open_vSwitch database (an OVSDB session with a replica):
 *     br-int's interfaces and their `external_ids:iface-id` — a VM plugged the
 *     Nova/os-vif/OVN way is bound to the NB port of that id, and the agent
 *     claims it for this chassis in the NB (port.chassis), which is how every
 *     other agent learns where to tunnel its traffic;
 *   - the NB, through a cache (src/nb/sync) that holds only what the local
 *     ports need and follows changes by pub/sub or the store's watch;
 *   - br-int over OpenFlow 1.3: the apps' flows, reconciled (never flushed),
 *     meters for the punts, packet-ins dispatched to the app whose flow sent
 *     them (by cookie), packet-outs.
 *
 * Every change from either source schedules one "pass": bindings → NB scope →
 * claim → view → every app's flows → reconcile. Passes are serialized and
 * coalesced (a burst of changes costs one pass), and a pass is a pure
 * function of (model, bindings), so a restarted agent computes exactly what
 * its predecessor installed and sends nothing.
 *
 * At start the agent creates br-int (fail_mode=secure, so OVS never falls
 * back to normal switching without us) and the flow-based tunnel ports if
 * missing, applies the configured offload settings, registers its chassis
 * (tunnel IP, encap types) and keeps a liveness key on a lease. Stopping the
 * agent — or killing it — leaves every flow in place: traffic keeps flowing.
 */
import { hostname } from "node:os";
import type { App, AgentView, PacketInEvent } from "../apps/types.js";
import { loadApps } from "../apps/index.js";
import { NbApi } from "../nb/api.js";
import { openStore } from "../nb/store/open.js";
import type { Lease, NbStore } from "../nb/store/types.js";
import { NbCache } from "../nb/sync/cache.js";
import { KIND } from "../nb/sync/refs.js";
import type { Port } from "../nb/model/schemas.js";
import { type ApplyResult, applyOffloadSettings } from "../offload/ovs-settings.js";
import { OFPP } from "../openflow/actions.js";
import { OfClient } from "../openflow/client.js";
import type { OfConnection } from "../openflow/connection.js";
import type { Flow } from "../openflow/flow.js";
import { OFP_NO_BUFFER, type PacketIn, type PacketIn2 } from "../openflow/message.js";
import { parseFlow } from "../openflow/text.js";
import { ensureBridge } from "../ovsdb/helpers.js";
import { OvsdbSession } from "../ovsdb/session.js";
import { VswitchView } from "../ovsdb/vswitch.js";
import { ConnectionError, errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";
import { type AgentConfig, openflowTarget } from "./config.js";
import { appCookieBase, appOfCookie, cookieFor } from "./cookies.js";
import { AgentMetrics } from "./metrics.js";
import { PIPELINE, missFlows, tableById } from "./pipeline.js";
import { FlowReconciler, type ReconcileResult } from "./reconciler.js";
import { TUNNEL_PORT_NAMES, ensurePatchPorts, ensureTunnelPort, patchPortNames } from "./tunnel-ports.js";
import { type Binding, buildView } from "./view.js";
import { MeterSet } from "./meters.js";
import { ModelGuard } from "./model-guard.js";

const log = logger("agent");

/** NB kind of the liveness key an agent keeps on a lease (not a model object). */
export const LIVENESS_KIND = "chassis-liveness";

export interface AgentDeps {
  /** An already open NB store (in-process use: demo, tests); otherwise `config.nb` is opened. */
  store?: NbStore;
  /** Extra tunnel port options (e.g. for userspace tunnelling in a sandbox). */
  tunnelOptions?: Record<string, string>;
}

export interface PassResult extends ReconcileResult {
  localPorts: number;
  flows: number;
}

export class Agent {
  readonly metrics = new AgentMetrics();
  readonly reconciler = new FlowReconciler();
  readonly guard = new ModelGuard();
  readonly apps: App[];
  private store!: NbStore;
  private ownStore = false;
  private api!: NbApi;
  private ovsdb!: OvsdbSession;
  private cache!: NbCache;
  private of!: OfClient;
  private lease: Lease | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private bound = new Set<string>();
  private viewNow: AgentView | undefined;
  private parsed = new Map<string, Flow>();
  private meters = new MeterSet();
  private chain: Promise<unknown> = Promise.resolve();
  private pending: Promise<PassResult | undefined> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dirtySince: number | undefined;
  private stopped = false;
  private claims = new Set<string>();
  /** Packet-ins handled, by app (also in metrics). */
  readonly packetIns = new Map<string, number>();
  metricsPort: number | undefined;
  /** What applying the configured OVS offload settings did (undefined: none configured). */
  offloadResult: ApplyResult | undefined;
  lastPass: PassResult | undefined;

  private constructor(
    readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.apps = loadApps(config.apps, { dhcp: config.dhcp });
  }

  static async start(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
    const a = new Agent(config, deps);
    try {
      await a.init();
    } catch (err) {
      await a.stop();
      throw err;
    }
    return a;
  }

  private async init(): Promise<void> {
    const c = this.config;
    this.store = this.deps.store ?? (await openStore(c.nb));
    this.ownStore = !this.deps.store;
    this.api = new NbApi(this.store);

    this.ovsdb = OvsdbSession.start({
      remote: c.ovsdb,
      tables: {
        Open_vSwitch: ["bridges", "other_config", "external_ids"],
        Bridge: ["name", "ports", "datapath_type"],
        Port: ["name", "interfaces"],
        Interface: ["name", "type", "ofport", "external_ids", "options"],
      },
    });
    await this.ovsdb.ready().catch((err: unknown) => {
      throw new ConnectionError(
        `cannot reach OVSDB at ${c.ovsdb} (${errorMessage(err)}); is ovsdb-server running, and is --ovsdb right?`,
        { remote: c.ovsdb },
      );
    });
    await ensureBridge(this.ovsdb.client, c.bridge, {
      datapathType: c.datapathType,
      failMode: "secure",
      externalIds: { "flowdrake-managed": "true" },
    });
    for (const encap of ["geneve", "vxlan"] as const) {
      await ensureTunnelPort(this.ovsdb.client, c.bridge, encap, this.deps.tunnelOptions);
    }
    for (const [physnet, bridge] of Object.entries(c.bridgeMappings)) {
      await ensurePatchPorts(this.ovsdb.client, c.bridge, bridge, physnet);
    }
    if (Object.values(c.offload).some((v) => v !== undefined)) {
      const r = await applyOffloadSettings(this.ovsdb.client, c.offload);
      this.offloadResult = r;
      if (r.restartNeeded) log.warn({ changed: r.changed }, r.message);
      else if (r.changed.length) log.info({ changed: r.changed }, r.message);
    }
    await this.registerChassis();

    this.cache = await NbCache.start({
      store: this.store,
      distribution: c.pubsub ? { mode: "pubsub", endpoint: c.pubsub } : { mode: "watch" },
      localPorts: [],
    });
    this.cache.on(() => this.schedule());
    this.ovsdb.on("batch", () => this.schedule());
    this.ovsdb.on("connected", () => this.schedule());

    this.of = new OfClient(openflowTarget(c), {
      label: `${c.chassis}/${c.bridge}`,
      onConnect: (conn) => this.onConnect(conn),
    });
    this.of.on("connected", () => this.schedule());
    this.of.on("disconnected", () => this.reconciler.invalidate());
    await this.of.start();
    this.metricsPort = await this.metrics.listen(c.metrics);
    await this.settle();
    log.info(
      { chassis: c.chassis, tunnelIp: c.tunnelIp, apps: c.apps, localPorts: this.bound.size },
      "agent ready",
    );
  }

  // ── chassis registration and liveness ────────────────────────────────────

  private async registerChassis(): Promise<void> {
    const c = this.config;
    const value = {
      name: c.chassis,
      hostname: hostname(),
      tunnelIps: [c.tunnelIp],
      encapTypes: c.encap === "geneve" ? ["geneve", "vxlan"] : ["vxlan", "geneve"],
      bridgeMappings: c.bridgeMappings,
    };
    const existing = await this.api.find("chassis", c.chassis);
    if (!existing) await this.api.create("chassis", value);
    else {
      const v = existing.value;
      const mine = [value.tunnelIps, value.encapTypes, value.bridgeMappings];
      if (JSON.stringify([v.tunnelIps, v.encapTypes, v.bridgeMappings]) !== JSON.stringify(mine)) {
        await this.api.update("chassis", c.chassis, {
          tunnelIps: value.tunnelIps,
          encapTypes: value.encapTypes,
          bridgeMappings: value.bridgeMappings,
        });
      }
    }
    this.lease = await this.store.grantLease(c.heartbeatSeconds * 3);
    const beat = async (): Promise<void> => {
      await this.store.txn([
        {
          op: "put",
          kind: LIVENESS_KIND,
          key: c.chassis,
          value: { at: Date.now(), pid: process.pid },
          lease: this.lease!.id,
        },
      ]);
    };
    await beat();
    this.heartbeat = setInterval(() => {
      beat().catch((err: unknown) => log.warn({ err: errorMessage(err) }, "chassis heartbeat failed"));
    }, c.heartbeatSeconds * 1000);
    this.heartbeat.unref();
  }

  // ── OpenFlow session ─────────────────────────────────────────────────────

  private async onConnect(conn: OfConnection): Promise<void> {
    // The management socket is a service connection: packet-ins need a nonzero miss_send_len.
    await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffff });
    await this.reconciler.readInstalled(conn);
    await this.meters.readInstalled(conn);
    conn.on("packet_in", (m) => void this.onPacketIn(m));
  }

  private async onPacketIn(m: PacketIn | PacketIn2): Promise<void> {
    const cookie = m.type === "packet_in" ? m.cookie : (m.cookie ?? 0n);
    const data = m.type === "packet_in" ? m.data : m.packet;
    const match = m.type === "packet_in" ? m.match : m.metadata;
    const inPort = Number(match.find((f) => f.field === "in_port")?.value ?? 0);
    const name = appOfCookie(cookie);
    const app = this.apps.find((a) => a.name === name);
    if (!app?.packetIn || !this.viewNow) return;
    this.packetIns.set(app.name, (this.packetIns.get(app.name) ?? 0) + 1);
    this.metrics.packetIns.inc({ app: app.name });
    const ev: PacketInEvent = { inPort, tableId: m.tableId ?? 0, cookie, data };
    try {
      await app.packetIn(ev, {
        view: () => this.viewNow!,
        packetOut: (port, frame) => this.packetOut(port, frame),
        log: logger(`app-${app.name}`),
      });
    } catch (err) {
      log.warn({ app: app.name, err: errorMessage(err) }, "packet-in handler failed");
    }
  }

  async packetOut(outPort: number, frame: Buffer): Promise<void> {
    const conn = this.of.connection;
    if (!conn) throw new Error("no OpenFlow session");
    await conn.send({
      type: "packet_out",
      bufferId: OFP_NO_BUFFER,
      inPort: OFPP.CONTROLLER,
      actions: [{ type: "output", port: outPort, maxLen: 0 }],
      data: frame,
    });
  }

  // ── passes ───────────────────────────────────────────────────────────────

  private schedule(delayMs = 10): void {
    if (this.stopped) return;
    this.dirtySince ??= performance.now();
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runPass().catch((err: unknown) => {
        log.warn({ err: errorMessage(err) }, "pass failed; retrying");
        this.schedule(500);
      });
    }, delayMs);
  }

  /** Run passes until nothing is pending; resolves with the last pass. */
  async settle(): Promise<PassResult | undefined> {
    let last = await this.runPass();
    while (this.timer || this.dirtySince !== undefined) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      last = await this.runPass();
    }
    return last;
  }

  private runPass(): Promise<PassResult | undefined> {
    if (this.pending) return this.pending;
    const p = this.chain.then(async () => {
      this.pending = undefined;
      return this.pass();
    });
    this.pending = p;
    this.chain = p.catch(() => undefined);
    return p;
  }

  private bindings(): Binding[] {
    const v = new VswitchView(this.ovsdb.replica);
    const out: Binding[] = [];
    for (const p of v.ports(this.config.bridge)) {
      for (const u of p.interfaces) {
        const row = this.ovsdb.replica.get("Interface", u);
        if (!row) continue;
        const ids = (row.external_ids ?? {}) as Record<string, string>;
        const ifaceId = ids["iface-id"];
        const ofport = typeof row.ofport === "number" ? row.ofport : -1;
        if (ifaceId && ofport > 0) out.push({ portId: ifaceId, ofport, iface: String(row.name) });
      }
    }
    return out;
  }

  private tunnelPorts(): Partial<Record<"geneve" | "vxlan", number>> {
    const v = new VswitchView(this.ovsdb.replica);
    const out: Partial<Record<"geneve" | "vxlan", number>> = {};
    for (const encap of ["geneve", "vxlan"] as const) {
      const ofport = v.interface(TUNNEL_PORT_NAMES[encap])?.ofport;
      if (ofport && ofport > 0) out[encap] = ofport;
    }
    return out;
  }

  private providerPorts(): Map<string, number> {
    const v = new VswitchView(this.ovsdb.replica);
    const out = new Map<string, number>();
    for (const physnet of Object.keys(this.config.bridgeMappings)) {
      const ofport = v.interface(patchPortNames(physnet).int)?.ofport;
      if (ofport && ofport > 0) out.set(physnet, ofport);
    }
    return out;
  }

  private async claim(ports: Map<string, Port>): Promise<void> {
    for (const [id, port] of ports) {
      if (port.chassis === this.config.chassis || this.claims.has(id)) continue;
      this.claims.add(id);
      try {
        await this.api.update("lport", id, { chassis: this.config.chassis });
        log.info({ port: id, from: port.chassis ?? null }, "claimed port for this chassis");
      } catch (err) {
        log.warn({ port: id, err: errorMessage(err) }, "could not claim port; retrying");
        this.schedule(1000);
      } finally {
        this.claims.delete(id);
      }
    }
  }

  private flowOf(app: string, key: string, text: string): Flow {
    const id = `${app}\0${key}\0${text}`;
    let f = this.parsed.get(id);
    if (!f) {
      f = { ...parseFlow(text), cookie: app === "pipeline" ? appCookieBase(app) : cookieFor(app, key) };
      this.parsed.set(id, f);
    }
    return f;
  }

  private async pass(): Promise<PassResult | undefined> {
    if (this.stopped) return undefined;
    const since = this.dirtySince;
    this.dirtySince = undefined;
    const started = performance.now();
    if (!this.ovsdb.connected) return undefined;
    const bindings = this.bindings();
    const ids = new Set(bindings.map((b) => b.portId));
    if (ids.size !== this.bound.size || [...ids].some((id) => !this.bound.has(id))) {
      this.bound = ids;
      await this.cache.setLocalPorts(ids);
    }
    const mine = new Map<string, Port>();
    for (const b of bindings) {
      const o = this.cache.get(KIND.port, b.portId);
      const p = o && (this.guard.admit(KIND.port, o.key, o.value) as Port | undefined);
      if (p) mine.set(b.portId, p);
    }
    await this.claim(mine);

    const view = buildView({
      chassis: this.config.chassis,
      tunnelIp: this.config.tunnelIp,
      tunnelPorts: this.tunnelPorts(),
      providerPorts: this.providerPorts(),
      bindings,
      model: {
        list: (kind: string) =>
          this.cache
            .list(kind)
            .map((o) => ({ key: o.key, value: this.guard.admit(kind, o.key, o.value) }))
            .filter((o) => o.value !== undefined),
      },
    });
    this.viewNow = view;
    // missFlows() follows PIPELINE's order: one miss flow per table.
    const desired: Flow[] = missFlows().map((text, i) =>
      this.flowOf("pipeline", String(PIPELINE[i]!.id), text),
    );
    const wantMeters = new Map<number, number>();
    for (const app of this.apps) {
      for (const spec of app.flows?.(view) ?? []) {
        try {
          desired.push(this.flowOf(app.name, spec.key, spec.flow));
        } catch (err) {
          log.error({ app: app.name, flow: spec.flow, err: errorMessage(err) }, "app produced a bad flow");
        }
      }
      for (const [id, rate] of app.meters?.(view) ?? []) wantMeters.set(id, rate);
    }
    const conn = this.of.connection;
    if (!conn) {
      this.dirtySince ??= since;
      return undefined;
    }
    await this.meters.apply(conn, wantMeters);
    const r = await this.reconciler.apply(conn, desired);
    if (this.parsed.size > 4 * desired.length + 1000) this.parsed.clear();

    this.metrics.flowMods.inc({ command: "add" }, r.added);
    this.metrics.flowMods.inc({ command: "modify" }, r.modified);
    this.metrics.flowMods.inc({ command: "delete" }, r.deleted);
    this.metrics.reconcileDuration.observe((performance.now() - started) / 1000);
    if (since !== undefined) this.metrics.nbSyncLag.observe((performance.now() - since) / 1000);
    this.metrics.localPorts.set(view.localPorts.size);
    this.metrics.flows.reset();
    for (const f of this.reconciler.installedFlows()) {
      this.metrics.flows.inc({ table: tableById(f.table)?.name ?? String(f.table) });
    }
    this.lastPass = { ...r, localPorts: view.localPorts.size, flows: desired.length };
    return this.lastPass;
  }

  /** The apps' current view (for the demo and tests). */
  view(): AgentView | undefined {
    return this.viewNow;
  }

  /** The ZeroMQ topics the NB cache follows (empty when it follows the store's watch). */
  nbTopics(): string[] {
    return this.cache?.topics() ?? [];
  }

  get nbApi(): NbApi {
    return this.api;
  }

  /** Stop following changes. Flows stay installed: traffic keeps flowing without the agent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.chain.catch(() => undefined);
    this.of?.stop();
    await this.cache?.close().catch(() => undefined);
    this.ovsdb?.stop();
    await this.lease?.revoke().catch(() => undefined);
    await this.metrics.close();
    if (this.ownStore) await this.store?.close().catch(() => undefined);
  }
}
