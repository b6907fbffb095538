/**
 * The agent's chassis in the NB: its registration (tunnel IPs, encap types,
 * bridge mappings) and its liveness key, `chassis-liveness/<chassis>`, held
 * on a lease and refreshed every `heartbeatSeconds` (the lease lasts three
 * of them). Other agents read the liveness key: a chassis whose key is gone
 * gets no tunnel traffic until it returns.
 *
 * The lease is refreshed by the heartbeat itself, not in the background,
 * and a stopping agent does not revoke it: the key lapses three heartbeats
 * after the last one. So a restart (an upgrade, `systemctl restart`, a crash
 * and a quick respawn) is invisible to the other chassis — the new agent
 * takes the key over in one write — while a chassis whose agent stays down
 * is dropped by its peers once the lease has lapsed.
 *
 * One chassis, one agent. The liveness value names the agent that holds it
 * (a random agent id, its pid, hostname and boot id). At start, before it
 * touches the chassis object:
 *   - no liveness key, or one this agent wrote → go on;
 *   - a key written on this machine, in this boot, by a process that no
 *     longer runs (or by an agent of this very process that has stopped) →
 *     the previous agent died or stopped: take over at once, in one guarded
 *     write, without waiting for its lease to lapse;
 *   - anything else → another agent runs this chassis, here or elsewhere:
 *     refuse to start with DuplicateChassisError naming it. A second agent
 *     would otherwise answer every DHCP request a second time and rewrite the
 *     chassis' tunnel IP under the first one.
 *
 * The heartbeat rewrites the key guarded by its version, one beat at a time
 * (while the store does not answer, ticks are skipped, not piled up), and a
 * beat that fails is logged and retried at the next: it never throws. If the
 * lease is gone (etcd was unreachable for longer than the lease lasts, or
 * the embedded store's holder restarted), a new lease is granted and the key
 * put again — the chassis comes back without an agent restart. If the key now
 * holds another agent's value, that agent took the chassis over; this one
 * logs it, counts it and stops heartbeating rather than fight.
 */
import { existsSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { NbApi } from "../nb/api.js";
import { MalformedObjectError } from "../nb/model/index.js";
import { ConflictError } from "../nb/store/errors.js";
import type { Lease, NbStore } from "../nb/store/types.js";
import { AGENT_KIND } from "../nb/sync/refs.js";
import { FlowdrakeError, errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";

const log = logger("chassis");

export interface LivenessValue {
  at: number;
  agentId: string;
  pid: number;
  hostname: string;
  bootId: string;
}

export class DuplicateChassisError extends FlowdrakeError {
  constructor(chassis: string, holder: Partial<LivenessValue>) {
    super(
      "DUPLICATE_CHASSIS",
      `chassis ${chassis} is already run by another agent (pid ${holder.pid ?? "?"} on ${holder.hostname ?? "?"}, ` +
        `last heartbeat ${holder.at ? new Date(holder.at).toISOString() : "?"}); ` +
        `stop that agent, or give this one another chassis name`,
      { chassis, holder },
    );
  }
}

export function bootId(): string {
  const p = "/proc/sys/kernel/random/boot_id";
  return existsSync(p) ? readFileSync(p, "utf8").trim() : "";
}

/** Agents running in this process (tests and the demo run several, and restart them in-process). */
const RUNNING = new Set<string>();

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  return true;
}

export interface ChassisSpec {
  chassis: string;
  tunnelIp: string;
  encap: "geneve" | "vxlan";
  bridgeMappings: Record<string, string>;
  heartbeatSeconds: number;
}

export class ChassisRegistration {
  readonly agentId = randomBytes(8).toString("hex");
  private lease: Lease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private version = 0;
  private stopped = false;
  private beating: Promise<void> = Promise.resolve();
  private inFlight = false;
  readonly stats = { beats: 0, regrants: 0, failures: 0, takenOver: false };

  constructor(
    private readonly store: NbStore,
    private readonly api: NbApi,
    private readonly spec: ChassisSpec,
  ) {}

  private value(): LivenessValue {
    return {
      at: Date.now(),
      agentId: this.agentId,
      pid: process.pid,
      hostname: hostname(),
      bootId: bootId(),
    };
  }

  /** Check for another agent, register the chassis, start the heartbeat. */
  async start(): Promise<void> {
    const s = this.spec;
    const held = await this.store.get(AGENT_KIND.liveness, s.chassis);
    let expectVersion = 0;
    if (held) {
      const v = (held.value ?? {}) as Partial<LivenessValue>;
      const sameBoot = v.hostname === hostname() && v.bootId === bootId() && typeof v.pid === "number";
      const gone =
        sameBoot && (v.pid === process.pid ? !RUNNING.has(String(v.agentId)) : !processRuns(v.pid!));
      if (!gone) throw new DuplicateChassisError(s.chassis, v);
      log.info({ chassis: s.chassis, pid: v.pid }, "the previous agent of this chassis is gone; taking over");
      expectVersion = held.version;
    }
    this.lease = await this.store.grantLease(s.heartbeatSeconds * 3, { keepAlive: false });
    const r = await this.store
      .txn([
        {
          op: "put",
          kind: AGENT_KIND.liveness,
          key: s.chassis,
          value: this.value(),
          lease: this.lease.id,
          expectVersion,
        },
      ])
      .catch((err: unknown) => {
        if (err instanceof ConflictError) throw new DuplicateChassisError(s.chassis, {});
        throw err;
      });
    this.version = r.versions[0]!;
    RUNNING.add(this.agentId);
    await this.registerObject();
    // One beat at a time: while the store does not answer (a partition), ticks are skipped
    // rather than piling up beats that would race each other for the key.
    this.timer = setInterval(() => {
      if (this.inFlight) return;
      this.inFlight = true;
      this.beating = this.beat().finally(() => (this.inFlight = false));
    }, s.heartbeatSeconds * 1000);
    this.timer.unref();
  }

  private async registerObject(): Promise<void> {
    const s = this.spec;
    const want = {
      tunnelIps: [s.tunnelIp],
      encapTypes: s.encap === "geneve" ? ["geneve", "vxlan"] : ["vxlan", "geneve"],
      bridgeMappings: s.bridgeMappings,
    };
    let existing;
    try {
      existing = await this.api.find("chassis", s.chassis);
    } catch (err) {
      if (!(err instanceof MalformedObjectError)) throw err;
      // The chassis record is this agent's to write (it holds the liveness key): replace it.
      log.warn({ chassis: s.chassis, reason: err.reason }, "chassis record was malformed; writing it again");
      await this.api.delete("chassis", s.chassis);
      existing = undefined;
    }
    if (!existing) {
      await this.api.create("chassis", { name: s.chassis, hostname: hostname(), ...want });
      return;
    }
    const v = existing.value;
    if (
      JSON.stringify([v.tunnelIps, v.encapTypes, v.bridgeMappings]) !== JSON.stringify(Object.values(want))
    ) {
      await this.api.update("chassis", s.chassis, want);
    }
  }

  /** One heartbeat; see the module comment. Never rejects: a failure is logged, counted and retried next beat. */
  async beat(): Promise<void> {
    if (this.stopped || this.stats.takenOver) return;
    try {
      await this.beatOnce();
    } catch (err) {
      this.stats.failures++;
      log.warn({ chassis: this.spec.chassis, err: errorMessage(err) }, "chassis heartbeat failed");
    }
  }

  private async beatOnce(): Promise<void> {
    const s = this.spec;
    try {
      if (!this.lease) this.lease = await this.store.grantLease(s.heartbeatSeconds * 3, { keepAlive: false });
      else await this.lease.keepAlive();
      const r = await this.store.txn([
        {
          op: "put",
          kind: AGENT_KIND.liveness,
          key: s.chassis,
          value: this.value(),
          lease: this.lease.id,
          expectVersion: this.version,
        },
      ]);
      this.version = r.versions[0]!;
      this.stats.beats++;
    } catch (err) {
      const leaseGone = /lease.*(not found|expired|revoked)|requested lease/i.test(errorMessage(err));
      if (!(err instanceof ConflictError) && !leaseGone) throw err;
      this.stats.failures++;
      await this.reclaim(leaseGone);
    }
  }

  /**
   * The key is not where this agent left it: its version moved or its lease
   * is gone. Another agent's value means a takeover (stop heartbeating);
   * our own value on a live lease only needs the version; otherwise the key
   * is put again on a fresh lease, guarded by the version it has now.
   */
  private async reclaim(leaseGone: boolean): Promise<void> {
    const s = this.spec;
    const now = await this.store.get(AGENT_KIND.liveness, s.chassis);
    const v = (now?.value ?? {}) as Partial<LivenessValue>;
    if (now && v.agentId !== this.agentId) {
      this.stats.takenOver = true;
      log.error({ chassis: s.chassis, holder: v }, "another agent took this chassis over; heartbeat stopped");
      return;
    }
    if (now && !leaseGone) {
      this.version = now.version;
      return;
    }
    this.stats.regrants++;
    const old = this.lease;
    this.lease = undefined;
    await old?.revoke().catch(() => undefined);
    log.info({ chassis: s.chassis }, "liveness lease lapsed; granting a new one");
    this.lease = await this.store.grantLease(s.heartbeatSeconds * 3, { keepAlive: false });
    const r = await this.store.txn([
      {
        op: "put",
        kind: AGENT_KIND.liveness,
        key: s.chassis,
        value: this.value(),
        lease: this.lease.id,
        expectVersion: now?.version ?? 0,
      },
    ]);
    this.version = r.versions[0]!;
  }

  /**
   * Stop heartbeating. The liveness key is left to lapse with its lease (see
   * the module comment); the wait for a heartbeat in flight is bounded, so a
   * dead store does not hold up a shutdown.
   */
  async stop(timeoutMs = 1000): Promise<void> {
    this.stopped = true;
    RUNNING.delete(this.agentId);
    if (this.timer) clearInterval(this.timer);
    await Promise.race([
      this.beating.catch(() => undefined),
      new Promise((r) => setTimeout(r, timeoutMs).unref()),
    ]);
  }
}
