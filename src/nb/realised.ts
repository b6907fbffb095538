/**
 * Realised revisions: which NB revision each chassis' switch reflects
 * (OVN's nb_cfg / `--wait=hv`).
 *
 * Every agent writes `chassis-realised/<chassis>` = { revision, at } after a
 * reconcile whose barrier answered: every model change up to `revision` that
 * concerns the chassis is installed in its switch (flows, meters). A writer
 * of the NB that wants to know its change is in effect waits until every
 * chassis it cares about has realised at least the revision its write
 * committed at — `waitRealised`.
 *
 * Which chassis: by default every chassis that is alive (its liveness key
 * exists). Each agent moves its realised revision forward for every model
 * change it sees, relevant to it or not (an agent on the etcd watch sees
 * them all at once; one on pub/sub learns of the others from the
 * publisher's heartbeat, within a second), so waiting for all live chassis
 * costs the time of the slowest one that had work to do. A chassis that
 * dies during the wait stops counting; one that appears starts counting.
 * On timeout the error names each laggard with the revision it is at.
 */
import { FlowdrakeError } from "../util/errors.js";
import type { NbStore, WatchEvent } from "./store/types.js";
import { AGENT_KIND } from "./sync/refs.js";

export interface RealisedValue {
  revision: number;
  at: number;
}

export class WaitTimeoutError extends FlowdrakeError {
  constructor(
    readonly revision: number,
    readonly laggards: { chassis: string; realised: number | undefined }[],
    timeoutMs: number,
  ) {
    super(
      "WAIT_TIMEOUT",
      `not every chassis realised NB revision ${revision} within ${timeoutMs} ms: ` +
        laggards
          .map((l) => `${l.chassis} (${l.realised === undefined ? "never reported" : `at ${l.realised}`})`)
          .join(", "),
      { revision, laggards },
    );
  }
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Only these chassis (default: every live chassis). */
  chassis?: readonly string[];
}

export interface WaitResult {
  revision: number;
  /** The chassis waited for, with the revision each had realised when the wait ended. */
  chassis: Record<string, number>;
  waitedMs: number;
}

/** Wait until the chassis have realised `revision`; see the module comment. */
export async function waitRealised(
  store: NbStore,
  revision: number,
  opts: WaitOptions = {},
): Promise<WaitResult> {
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const live = new Set<string>();
  const realised = new Map<string, number>();
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => (done = r));
  const fixed = opts.chassis ? new Set(opts.chassis) : undefined;
  const waitingFor = (): string[] => [...(fixed ?? live)].sort();
  const check = (): void => {
    if (waitingFor().every((c) => (realised.get(c) ?? 0) >= revision)) done();
  };
  const apply = (ev: WatchEvent): void => {
    const kind = ev.type === "put" ? ev.object.kind : ev.kind;
    const key = ev.type === "put" ? ev.object.key : ev.key;
    if (kind === AGENT_KIND.liveness) {
      if (ev.type === "put") live.add(key);
      else live.delete(key);
    } else if (kind === AGENT_KIND.realised && ev.type === "put") {
      const r = Number((ev.object.value as Partial<RealisedValue> | undefined)?.revision);
      if (Number.isFinite(r)) realised.set(key, Math.max(realised.get(key) ?? 0, r));
    }
  };
  // The watch opens before the lists are read, so nothing falls between them, and its
  // events may arrive before the lists do. They wait in `early` and are applied after the
  // lists, in order: checked before, with the live set still empty, "every live chassis
  // realised it" would hold vacuously; applied under the lists, a chassis that died
  // while they were read would come back to life.
  let early: WatchEvent[] | undefined = [];
  const onEvent = (ev: WatchEvent): void => {
    if (early) {
      early.push(ev);
      return;
    }
    apply(ev);
    check();
  };
  const from = await store.revision();
  const watch = await store.watch(
    { fromRevision: from, kinds: [AGENT_KIND.liveness, AGENT_KIND.realised] },
    onEvent,
  );
  try {
    const [alive, reports] = await Promise.all([
      store.list(AGENT_KIND.liveness),
      store.list(AGENT_KIND.realised),
    ]);
    for (const o of alive) live.add(o.key);
    for (const o of reports) {
      const r = Number((o.value as Partial<RealisedValue> | undefined)?.revision);
      if (Number.isFinite(r)) realised.set(o.key, Math.max(realised.get(o.key) ?? 0, r));
    }
    for (const ev of early) apply(ev);
    early = undefined;
    check();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      finished.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      const laggards = waitingFor()
        .filter((c) => (realised.get(c) ?? 0) < revision)
        .map((c) => ({ chassis: c, realised: realised.get(c) }));
      throw new WaitTimeoutError(revision, laggards, timeoutMs);
    }
    return {
      revision,
      chassis: Object.fromEntries(waitingFor().map((c) => [c, realised.get(c) ?? 0])),
      waitedMs: Date.now() - started,
    };
  } finally {
    await watch.close().catch(() => undefined);
  }
}
