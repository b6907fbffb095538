/**
 * The agent's Prometheus metrics, on a registry of its own (several agents
 * can live in one test process), served at http://<metrics>/metrics.
 *
 *   flowdrake_packet_ins_total{app}          packet-ins handled, per app
 *   flowdrake_flow_mods_total{command}       flow_mods sent (add | modify | delete)
 *   flowdrake_flows{table}                   flows flowdrake holds per pipeline table
 *   flowdrake_reconcile_duration_seconds     one desired→installed pass
 *   flowdrake_nb_sync_lag_seconds            NB change seen → its flows installed
 *   flowdrake_local_ports                    ports bound on this chassis
 *   flowdrake_owners                         owners (app × object) the engine holds
 *   flowdrake_owner_failures_total           owners whose state the switch rejected
 *   flowdrake_failed_owners                  owners waiting for a retry now
 *   flowdrake_nb_refused_objects             NB objects left out as malformed
 *   flowdrake_realised_revision              the NB revision br-int realises
 *   flowdrake_recovery_repairs_total         cache entries the recovery pass repaired
 *   flowdrake_punt_queue_drops_total         packet-ins dropped from a full per-port queue
 *   flowdrake_gc_pause_seconds{kind}         the process's garbage-collection pauses while the
 *                                            endpoint is up (minor | major | incremental | weakcb):
 *                                            the event loop, and the packet-ins waiting on it,
 *                                            stand still for each
 *
 * The endpoint is loopback by default. It can serve https (`tls`: a
 * certificate and key) and demand HTTP basic auth (`basicAuthFile`: lines of
 * `user:password`, kept mode 0600), which is what Prometheus' `tls_config`
 * and `basic_auth` scrape settings speak. Binding a non-loopback address
 * without both logs a warning: the counters describe this host's ports,
 * flows and peers to anyone who can reach it.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { isIP } from "node:net";
import { type PerformanceEntry, PerformanceObserver, constants as perf } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { tableById } from "../datapath/index.js";
import { UsageError, errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";

const log = logger("metrics");

export interface MetricsSecurity {
  /** Serve https with this certificate and key (PEM file paths). */
  tls?: { certificate: string; privateKey: string };
  /** Demand HTTP basic auth; the file holds `user:password` lines. */
  basicAuthFile?: string;
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`metrics: cannot read the ${what} ${path}: ${errorMessage(err)}`, { path });
  }
}

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

/** The digests of the `user:password` lines of a basic-auth file. */
function readCredentials(path: string): Buffer[] {
  const lines = readFile(path, "basic auth file")
    .toString("utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length === 0 || lines.some((l) => l.indexOf(":") <= 0)) {
    throw new UsageError(`metrics: ${path} must hold user:password lines`, { path });
  }
  if (statSync(path).mode & 0o077)
    log.warn({ path }, "metrics basic auth file is readable by others: chmod 600 it");
  return lines.map(digest);
}

function authorized(req: IncomingMessage, credentials: Buffer[]): boolean {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? "");
  if (!m) return false;
  const given = digest(Buffer.from(m[1]!, "base64").toString("utf8"));
  let ok = false;
  for (const c of credentials) ok = timingSafeEqual(given, c) || ok;
  return ok;
}

/** Whether a listen host is loopback-only. */
export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

const GC_KINDS = new Map<number, string>([
  [perf.NODE_PERFORMANCE_GC_MINOR, "minor"],
  [perf.NODE_PERFORMANCE_GC_MAJOR, "major"],
  [perf.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
  [perf.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"],
]);

export class AgentMetrics {
  readonly registry = new Registry();
  readonly packetIns = new Counter({
    name: "flowdrake_packet_ins_total",
    help: "packet-ins handled by the agent, per app",
    labelNames: ["app"],
    registers: [this.registry],
  });
  readonly flowMods = new Counter({
    name: "flowdrake_flow_mods_total",
    help: "flow_mods sent to OVS, per command",
    labelNames: ["command"],
    registers: [this.registry],
  });
  /**
   * Where flowdrake_flows reads how many flows each table holds (table id → count) when scraped,
   * set by the agent: the reconciler keeps the counts as flows come and go, so a scrape costs a few
   * table names, not a walk of every flow on the event loop that first packets wait on.
   */
  flowCounts: (() => ReadonlyMap<number, number>) | undefined;
  readonly flows = new Gauge({
    name: "flowdrake_flows",
    help: "flows flowdrake holds in OVS, per pipeline table",
    labelNames: ["table"],
    registers: [this.registry],
    collect: () => {
      if (this.flowCounts) this.setFlows(this.flowCounts());
    },
  });
  readonly reconcileDuration = new Histogram({
    name: "flowdrake_reconcile_duration_seconds",
    help: "duration of one desired-vs-installed reconcile pass",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly nbSyncLag = new Histogram({
    name: "flowdrake_nb_sync_lag_seconds",
    help: "time from an NB change reaching the agent to its flows being installed",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly localPorts = new Gauge({
    name: "flowdrake_local_ports",
    help: "NB ports bound to this chassis",
    registers: [this.registry],
  });
  readonly owners = new Gauge({
    name: "flowdrake_owners",
    help: "owners (app x object) the incremental engine holds",
    registers: [this.registry],
  });
  readonly ownerFailures = new Counter({
    name: "flowdrake_owner_failures_total",
    help: "owners whose flows or meters the switch rejected",
    registers: [this.registry],
  });
  readonly failedOwners = new Gauge({
    name: "flowdrake_failed_owners",
    help: "owners held back after a rejection, waiting for a retry",
    registers: [this.registry],
  });
  readonly refusedObjects = new Gauge({
    name: "flowdrake_nb_refused_objects",
    help: "NB objects the agent leaves out because they are malformed",
    registers: [this.registry],
  });
  readonly realisedRevision = new Gauge({
    name: "flowdrake_realised_revision",
    help: "the NB revision the switch realises",
    registers: [this.registry],
  });
  readonly recoveryRepairs = new Counter({
    name: "flowdrake_recovery_repairs_total",
    help: "NB cache entries the periodic recovery pass repaired",
    registers: [this.registry],
  });
  readonly puntDrops = new Counter({
    name: "flowdrake_punt_queue_drops_total",
    help: "packet-ins dropped because their port's queue in the agent was full",
    registers: [this.registry],
  });
  readonly gcPauses = new Histogram({
    name: "flowdrake_gc_pause_seconds",
    help: "garbage-collection pauses of the agent's process, per kind (its event loop stands still for each)",
    labelNames: ["kind"],
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1],
    registers: [this.registry],
  });
  private server: Server | undefined;
  private gcObserver: PerformanceObserver | undefined;

  /** Record the process's GC pauses into flowdrake_gc_pause_seconds (while the endpoint is up). */
  private watchGc(): void {
    if (this.gcObserver) return;
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const detail = (e as PerformanceEntry & { detail?: { kind?: number } }).detail;
        const kind = GC_KINDS.get(detail?.kind ?? -1) ?? "other";
        this.gcPauses.observe({ kind }, e.duration / 1000);
      }
    });
    this.gcObserver.observe({ entryTypes: ["gc"] });
  }

  private setFlows(perTable: ReadonlyMap<number, number>): void {
    this.flows.reset();
    for (const [id, n] of perTable) this.flows.set({ table: tableById(id)?.name ?? String(id) }, n);
  }

  /**
   * Serve /metrics on host:port ("" = off; `[::1]:port` for IPv6), with
   * optional https and basic auth. Resolves with the bound port.
   */
  async listen(address: string, security: MetricsSecurity = {}): Promise<number | undefined> {
    if (!address) return undefined;
    const i = address.lastIndexOf(":");
    const host = address.slice(0, i).replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
    const port = Number(address.slice(i + 1));
    const credentials = security.basicAuthFile ? readCredentials(security.basicAuthFile) : undefined;
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      if (credentials && !authorized(req, credentials)) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="flowdrake metrics"' }).end("unauthorized\n");
        return;
      }
      if (req.url !== "/metrics") {
        res.writeHead(404).end("try /metrics\n");
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { "content-type": this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    };
    const tls = security.tls;
    this.server = tls
      ? createHttpsServer(
          {
            cert: readFile(tls.certificate, "TLS certificate"),
            key: readFile(tls.privateKey, "TLS private key"),
            minVersion: "TLSv1.2",
          },
          handler,
        )
      : createServer(handler);
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(port, host, () => resolve());
    });
    const bound = (this.server.address() as { port: number }).port;
    this.watchGc();
    const where = { address: `${host}:${bound}`, tls: !!tls, basicAuth: !!credentials };
    if (!isLoopback(host) && !(tls && credentials)) {
      log.warn(
        where,
        "metrics served on a non-loopback address without TLS and basic auth: anyone who can reach it " +
          "reads this host's ports, flows and peers (set metricsTls and metricsAuthFile, or bind 127.0.0.1 behind a proxy)",
      );
    } else log.info(where, "metrics listening");
    return bound;
  }

  async close(): Promise<void> {
    this.gcObserver?.disconnect();
    this.gcObserver = undefined;
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
