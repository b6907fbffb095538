/**
 * Desired versus installed flows, and the fewest flow_mods between them.
 *
 * The agent hands the reconciler the complete desired flow set after every
 * change (apps are pure functions of the model, see src/apps). The reconciler
 * keeps what it believes OVS holds, keyed by OVS's own identity of a flow
 * (table, priority, normalized match — `flowKey`), and sends:
 *   add            for a key OVS does not hold, or holds with other actions,
 *                  cookie or timeouts (an add over an identical match
 *                  replaces the flow atomically: no window without it);
 *   delete_strict  for a key OVS holds and nobody wants.
 * All of one pass go in one ONF bundle followed by a barrier, so a packet
 * sees either the old or the new flow set, never half of each.
 *
 * "What OVS holds" is read from OVS (a flow-stats dump) when a session starts
 * — at agent start, and after ovs-vswitchd restarted or the session dropped —
 * never assumed. That is what makes an agent restart hitless: the new agent
 * reads the flows the old one left, computes the same desired set with the
 * same cookies, and sends nothing (or only what changed meanwhile). Nothing is
 * flushed. Flows reactive apps install with idle timeouts are not part of the
 * desired set; the reconciler leaves flows with a nonzero idle timeout alone
 * unless they carry a cookie it has been asked to own.
 */
import { installFlows } from "./flow-installer.js";
import { logger } from "../util/log.js";
import type { OfConnection } from "../openflow/connection.js";
import { flowFromStats, flowKey, flowToFlowMod, type Flow } from "../openflow/flow.js";
import { formatInstructions } from "../openflow/text.js";

const log = logger("reconciler");

export interface ReconcileResult {
  added: number;
  modified: number;
  deleted: number;
  unchanged: number;
  durationMs: number;
}

function sameFlow(a: Flow, b: Flow): boolean {
  return (
    a.cookie === b.cookie &&
    (a.idleTimeout ?? 0) === (b.idleTimeout ?? 0) &&
    (a.hardTimeout ?? 0) === (b.hardTimeout ?? 0) &&
    formatInstructions(a.instructions) === formatInstructions(b.instructions)
  );
}

export class FlowReconciler {
  private installed = new Map<string, Flow>();
  private synced = false;
  /** Totals since start, for metrics. */
  readonly totals = { added: 0, modified: 0, deleted: 0, passes: 0 };

  /** Read what OVS holds now (call on every new OpenFlow session). */
  async readInstalled(conn: OfConnection): Promise<number> {
    const stats = await conn.flowStats();
    this.installed = new Map();
    for (const s of stats) {
      const f = flowFromStats(s);
      if ((f.idleTimeout ?? 0) !== 0) continue; // reactive flows live and die on their own
      this.installed.set(flowKey(f), f);
    }
    this.synced = true;
    log.info({ conn: conn.label, flows: this.installed.size }, "read installed flows");
    return this.installed.size;
  }

  /** Take `flows` as what OVS holds (offline planning: what would a change cost?). */
  assumeInstalled(flows: readonly Flow[]): void {
    this.installed = new Map(flows.map((f) => [flowKey(f), f]));
    this.synced = true;
  }

  get isSynced(): boolean {
    return this.synced;
  }

  /** Forget what OVS holds (the session is gone); the next session reads it again. */
  invalidate(): void {
    this.synced = false;
  }

  installedFlows(): Flow[] {
    return [...this.installed.values()];
  }

  /** The flow_mods that take OVS from what it holds to `desired`, without sending them. */
  plan(desired: readonly Flow[]): { adds: Flow[]; modifies: Flow[]; deletes: Flow[]; unchanged: number } {
    const want = new Map<string, Flow>();
    for (const f of desired) want.set(flowKey(f), f);
    const adds: Flow[] = [];
    const modifies: Flow[] = [];
    const deletes: Flow[] = [];
    let unchanged = 0;
    for (const [k, f] of want) {
      const have = this.installed.get(k);
      if (!have) adds.push(f);
      else if (!sameFlow(have, f)) modifies.push(f);
      else unchanged++;
    }
    for (const [k, f] of this.installed) if (!want.has(k)) deletes.push(f);
    return { adds, modifies, deletes, unchanged };
  }

  /** Bring OVS to `desired` in one bundle; updates the installed view on success. */
  async apply(conn: OfConnection, desired: readonly Flow[]): Promise<ReconcileResult> {
    const started = performance.now();
    if (!this.synced) await this.readInstalled(conn);
    const { adds, modifies, deletes, unchanged } = this.plan(desired);
    const msgs = [
      // Deletes first: a delete_strict never touches a flow an add of the same pass installs
      // (different keys), and doing them first keeps the table small while OVS works.
      ...deletes.map((f) => flowToFlowMod(f, { command: "delete_strict" })),
      ...[...adds, ...modifies].map((f) => flowToFlowMod(f)),
    ];
    if (msgs.length > 0) {
      await installFlows(conn, msgs, { bundle: true });
      for (const f of deletes) this.installed.delete(flowKey(f));
      for (const f of [...adds, ...modifies]) this.installed.set(flowKey(f), f);
    }
    const result = {
      added: adds.length,
      modified: modifies.length,
      deleted: deletes.length,
      unchanged,
      durationMs: performance.now() - started,
    };
    this.totals.added += adds.length;
    this.totals.modified += modifies.length;
    this.totals.deleted += deletes.length;
    this.totals.passes++;
    if (msgs.length > 0) log.info(result, "reconciled flows");
    return result;
  }
}
