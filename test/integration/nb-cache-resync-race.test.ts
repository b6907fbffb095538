/**
 * The NB cache's revision watermark when changes come while a resync reads
 * the store (embedded store, the store's own watch). A resync reads the
 * store's revision first and the tables after; a change written in between
 * is newer than that read:
 *   - one in scope is applied as it arrives, and the watermark must move past
 *     it when the resync ends (it stopped at the resync's read, short of the
 *     change, until the next one came: an agent then never acknowledged its
 *     own port claim, seen as agent-restart.test.ts waiting for a revision);
 *   - one the old scope leaves out but the resync's new scope takes in must
 *     be in the cache when the resync ends, not only in the store.
 * The store is wrapped so that the test holds the resync between its
 * revision read and its table reads (or after it has read the ports), and
 * writes the change there.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { NbCache } from "../../src/nb/sync/cache.js";
import { KIND } from "../../src/nb/sync/refs.js";
import { makeRunDir, waitFor } from "../harness/index.js";

/**
 * The store, with `list` held while a hold is set, until it is released:
 * before it reads (every kind), or after it has read `kind` (the other kinds'
 * reads go on).
 */
function gated(store: NbStore): {
  store: NbStore;
  hold: (after?: string) => { reached: Promise<void>; release: () => void };
} {
  let gate: { after?: string; reached: () => void; released: Promise<void> } | undefined;
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop !== "list" || typeof v !== "function") return typeof v === "function" ? v.bind(target) : v;
      return async (kind: string) => {
        const g = gate;
        if (g && g.after === undefined) {
          g.reached();
          await g.released;
        }
        const out = await (v as (k: string) => Promise<unknown>).call(target, kind);
        if (g && g.after === kind) {
          g.reached();
          await g.released;
        }
        return out;
      };
    },
  });
  return {
    store: wrapped,
    hold: (after?: string) => {
      let reached!: () => void;
      let release!: () => void;
      const reachedP = new Promise<void>((r) => (reached = r));
      const released = new Promise<void>((r) => (release = r));
      gate = { ...(after !== undefined ? { after } : {}), reached, released };
      return {
        reached: reachedP,
        release: () => {
          gate = undefined;
          release();
        },
      };
    },
  };
}

describe("NbCache: changes that come while a resync reads the store", () => {
  let dir: string;
  let base: NbStore;
  let api: NbApi;
  let cache: NbCache | undefined;

  beforeEach(async () => {
    dir = makeRunDir("cache-race");
    base = await openEmbeddedStore(join(dir, "nb"));
    api = new NbApi(base);
    await api.create("tenant", { id: "t1" });
    for (const n of ["net1", "net2"]) {
      await api.create("lswitch", { id: n, tenantId: "t1", networkType: "geneve" });
    }
    for (const [id, net, mac] of [
      ["p1", "net1", "fa:16:3e:00:00:01"],
      ["p2", "net1", "fa:16:3e:00:00:02"],
      ["q1", "net2", "fa:16:3e:00:00:03"],
      ["q2", "net2", "fa:16:3e:00:00:04"],
    ] as const) {
      await api.create("lport", { id, tenantId: "t1", networkId: net, macAddress: mac });
    }
  });

  afterEach(async () => {
    await cache?.close();
    cache = undefined;
    await base.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("moves the watermark past a change in scope applied during the resync", async () => {
    const g = gated(base);
    cache = await NbCache.start({ store: g.store, distribution: { mode: "watch" }, localPorts: ["p1"] });
    expect(cache.get(KIND.port, "p2")).toBeDefined();
    const h = g.hold();
    const resync = cache.requestResync("test");
    await h.reached;
    const applied = cache.stats.applied;
    const rev = (await api.update("lport", "p2", { name: "renamed" })).modRevision;
    const c = cache;
    await waitFor(() => c.stats.applied > applied, 10_000, "the rename applied from the watch");
    h.release();
    const report = await resync;
    expect(report.revision).toBeLessThan(rev);
    await cache.settled();
    expect((cache.get(KIND.port, "p2")?.value as { name?: string }).name).toBe("renamed");
    // before the fix: the watermark stayed at the resync's read, report.revision
    expect(cache.revision()).toBe(rev);
  });

  it("takes in a change the old scope left out once the resync's scope covers it", async () => {
    const g = gated(base);
    cache = await NbCache.start({ store: g.store, distribution: { mode: "watch" }, localPorts: ["p1"] });
    expect(cache.get(KIND.port, "q2")).toBeUndefined();
    // q1 bound here brings net2 into scope: the re-closure finds the scope grew by a network and
    // resyncs; the test holds that resync once it has read the ports, and renames q2 (on net2)
    const h = g.hold(KIND.port);
    const bound = cache.setLocalPorts(["p1", "q1"]);
    await h.reached;
    const ignored = cache.stats.ignored;
    const rev = (await api.update("lport", "q2", { name: "renamed" })).modRevision;
    const c = cache;
    await waitFor(() => c.stats.ignored > ignored, 10_000, "the rename seen (and left out) by the watch");
    h.release();
    await bound;
    await cache.settled();
    expect((cache.get(KIND.port, "q2")?.value as { name?: string } | undefined)?.name).toBe("renamed");
    expect(cache.get(KIND.port, "q2")?.modRevision).toBe(rev);
    expect(cache.revision()).toBeGreaterThanOrEqual(rev);
  });
});
