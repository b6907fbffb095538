/**
 * Auto-recovery (Dragonflow's consistency pass): periodically compare what the
 * agent's cache holds with what the store holds for the same scope, object by
 * object (version, store revision and value), and repair the difference —
 * a pub/sub message that never arrived, a watch event missed across a
 * failover, an entry that got corrupted. Every pass returns and logs what it
 * repaired; a quiet pass repairs nothing and says so at debug level.
 */
import { logger } from "../../util/log.js";
import type { NbCache, RepairEntry } from "./cache.js";

const log = logger("nb-recovery");

export interface RecoveryReport {
  at: string;
  revision: number;
  repaired: RepairEntry[];
}

/** One pass: re-derive the scope from the store and fix every difference. */
export async function recoverOnce(cache: NbCache): Promise<RecoveryReport> {
  const r = await cache.requestResync("auto-recovery");
  const report = { at: new Date().toISOString(), revision: r.revision, repaired: r.changes };
  if (report.repaired.length) {
    log.warn(
      { revision: r.revision, repaired: report.repaired.map((c) => `${c.problem} ${c.kind}/${c.key}`) },
      "auto-recovery repaired drift",
    );
  } else {
    log.debug({ revision: r.revision }, "auto-recovery: cache matches the store");
  }
  return report;
}

export interface Recovery {
  stop(): void;
  /** Reports of the passes so far (most recent last, capped). */
  readonly reports: RecoveryReport[];
}

/** Run `recoverOnce` every `intervalMs`; `onReport` sees every pass. */
export function startRecovery(
  cache: NbCache,
  intervalMs = 30_000,
  onReport?: (r: RecoveryReport) => void,
): Recovery {
  const reports: RecoveryReport[] = [];
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    recoverOnce(cache)
      .then((r) => {
        reports.push(r);
        if (reports.length > 100) reports.shift();
        onReport?.(r);
      })
      .catch((err: unknown) => log.error({ err }, "auto-recovery pass failed"))
      .finally(() => (running = false));
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer), reports };
}
