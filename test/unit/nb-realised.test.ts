/**
 * `waitRealised` against the embedded store, with the store's `list` held
 * back so that watch events reach the wait before the lists do — the order
 * a loaded machine produces (CI saw `nb … --wait 1` exit 0 with a stopped
 * chassis still live: host1's realised report arrived while the live set was
 * still empty, and "every live chassis realised it" held vacuously).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WaitTimeoutError, waitRealised } from "../../src/nb/realised.js";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { AGENT_KIND } from "../../src/nb/sync/refs.js";
import { makeRunDir } from "../harness/index.js";

const dirs: string[] = [];
const stores: NbStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function open(): Promise<EmbeddedStore> {
  const dir = makeRunDir("nb-realised");
  dirs.push(dir);
  const s = await EmbeddedStore.open(join(dir, "db"));
  stores.push(s);
  return s;
}

/** `store` whose `list` answers only once `release()` is called. */
function heldLists(store: NbStore): { store: NbStore; release: () => void; listed: Promise<void> } {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let listed: () => void = () => undefined;
  const called = new Promise<void>((r) => (listed = r));
  const wrapped = Object.create(store) as NbStore;
  wrapped.list = async (kind) => {
    listed();
    await gate;
    return store.list(kind);
  };
  return { store: wrapped, release, listed: called };
}

const put = (store: NbStore, kind: string, key: string, value: unknown) =>
  store.txn([{ op: "put", kind, key, value }]);
const del = (store: NbStore, kind: string, key: string) => store.txn([{ op: "delete", kind, key }]);

describe("waitRealised", () => {
  it("does not finish on a report that arrives before it knows which chassis are live", async () => {
    const s = await open();
    await put(s, AGENT_KIND.liveness, "host1", { at: 1 });
    await put(s, AGENT_KIND.liveness, "host2", { at: 1 });
    await put(s, AGENT_KIND.realised, "host2", { revision: 1, at: 1 });
    const { revision } = await put(s, "tenant", "t1", { id: "t1" });
    const h = heldLists(s);
    const wait = waitRealised(h.store, revision, { timeoutMs: 400 });
    await h.listed;
    // host1 realises the write while the wait is still reading who is live
    await put(s, AGENT_KIND.realised, "host1", { revision, at: 2 });
    await new Promise((r) => setTimeout(r, 50));
    h.release();
    const err = await wait.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect((err as WaitTimeoutError).laggards).toEqual([{ chassis: "host2", realised: 1 }]);
  });

  it("a chassis whose liveness key goes while the lists are read stops counting", async () => {
    const s = await open();
    await put(s, AGENT_KIND.liveness, "host1", { at: 1 });
    await put(s, AGENT_KIND.liveness, "host2", { at: 1 });
    const { revision } = await put(s, "tenant", "t1", { id: "t1" });
    const h = heldLists(s);
    const wait = waitRealised(h.store, revision, { timeoutMs: 5000 });
    await h.listed;
    await put(s, AGENT_KIND.realised, "host1", { revision, at: 2 });
    await del(s, AGENT_KIND.liveness, "host2");
    await new Promise((r) => setTimeout(r, 50));
    // the lists, read now, no longer hold host2; the early delete event must not be lost either way
    h.release();
    const r = await wait;
    expect(r.chassis).toEqual({ host1: revision });
  });

  it("finishes once every live chassis reports the revision, and not before", async () => {
    const s = await open();
    await put(s, AGENT_KIND.liveness, "host1", { at: 1 });
    await put(s, AGENT_KIND.liveness, "host2", { at: 1 });
    const { revision } = await put(s, "tenant", "t1", { id: "t1" });
    let finished = false;
    const wait = waitRealised(s, revision, { timeoutMs: 5000 }).then((r) => ((finished = true), r));
    await put(s, AGENT_KIND.realised, "host1", { revision, at: 2 });
    await new Promise((r) => setTimeout(r, 100));
    expect(finished).toBe(false);
    await put(s, AGENT_KIND.realised, "host2", { revision: revision + 5, at: 2 });
    const r = await wait;
    expect(r.chassis).toEqual({ host1: revision, host2: revision + 5 });
  });
});
