/**
 * The etcd NB driver against a real single-member etcd: guarded transactions,
 * watch order and resume across an etcd restart, compaction → resync, leases,
 * locks, typed errors when etcd is unreachable, and a key holding bytes that
 * are not JSON (written with another client) read as `malformed`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Etcd3 } from "etcd3";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import { ConflictError, LockTimeoutError, StoreError } from "../../src/nb/store/errors.js";
import type { NbStore, WatchEvent } from "../../src/nb/store/types.js";
import { useEtcd } from "../harness/etcd.js";
import { freeTcpPort, waitFor } from "../harness/index.js";
import { runStoreConformance } from "../harness/nb-conformance.js";

const etcd = useEtcd({ label: "nb-etcd" });
let store: NbStore;

beforeAll(async () => {
  store = await openEtcdStore(etcd().endpoints);
});
afterAll(async () => {
  await store?.close();
});

runStoreConformance("etcd (1 member)", () => openEtcdStore(etcd().endpoints));

describe("etcd store: objects and transactions", () => {
  it("creates, updates and deletes with versions and revisions", async () => {
    const r0 = await store.revision();
    const a = await store.txn([
      { op: "put", kind: "network", key: "n1", value: { name: "a" }, expectVersion: 0 },
    ]);
    expect(a.versions).toEqual([1]);
    expect(a.revision).toBeGreaterThan(r0);
    const b = await store.txn([
      { op: "put", kind: "network", key: "n1", value: { name: "b" }, expectVersion: 1 },
    ]);
    expect(b.versions).toEqual([2]);
    const got = await store.get("network", "n1");
    expect(got).toEqual({
      kind: "network",
      key: "n1",
      value: { name: "b" },
      version: 2,
      modRevision: b.revision,
    });
    expect((await store.list("network")).map((o) => o.key)).toEqual(["n1"]);
    await store.txn([{ op: "delete", kind: "network", key: "n1", expectVersion: 2 }]);
    expect(await store.get("network", "n1")).toBeUndefined();
  });

  it("a failed guard names the op, and nothing of the txn is applied", async () => {
    await store.txn([{ op: "put", kind: "port", key: "p1", value: { x: 1 } }]);
    const before = await store.revision();
    const err = await store
      .txn([
        { op: "put", kind: "port", key: "p2", value: { x: 2 }, expectVersion: 0 },
        { op: "put", kind: "port", key: "p1", value: { x: 3 }, expectVersion: 0 },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as ConflictError).key).toBe("p1");
    expect((err as ConflictError).actualVersion).toBe(1);
    expect(await store.get("port", "p2")).toBeUndefined();
    expect(await store.revision()).toBe(before);
  });

  it("many writers racing on one counter lose no update", async () => {
    await store.txn([{ op: "put", kind: "counter", key: "c", value: 0, expectVersion: 0 }]);
    const writers = Array.from({ length: 6 }, async () => {
      for (let done = 0; done < 10;) {
        const cur = (await store.get("counter", "c"))!;
        try {
          await store.txn([
            {
              op: "put",
              kind: "counter",
              key: "c",
              value: (cur.value as number) + 1,
              expectVersion: cur.version,
            },
          ]);
          done++;
        } catch (e) {
          if (!(e instanceof ConflictError)) throw e;
        }
      }
    });
    await Promise.all(writers);
    const final = (await store.get("counter", "c"))!;
    expect(final.value).toBe(60);
    expect(final.version).toBe(61);
  });
});

describe("etcd store: watch", () => {
  it("delivers every change after fromRevision in order, filtered by kind", async () => {
    const from = await store.revision();
    const seen: WatchEvent[] = [];
    const w = await store.watch({ fromRevision: from, kinds: ["sg"] }, (ev) => seen.push(ev));
    await store.txn([
      { op: "put", kind: "sg", key: "s1", value: {} },
      { op: "put", kind: "sg", key: "s2", value: {} },
      { op: "put", kind: "other", key: "o", value: {} },
    ]);
    await store.txn([{ op: "delete", kind: "sg", key: "s1" }]);
    await waitFor(() => seen.length === 3, 5000, "3 sg events");
    await w.close();
    expect(
      seen.map((e) => (e.type === "put" ? `put ${e.object.key}` : `delete ${e.key}/${e.prevVersion}`)),
    ).toEqual(["put s1", "put s2", "delete s1/1"]);
    expect(seen[0]!.revision).toBe(seen[1]!.revision);
    expect(seen[2]!.revision).toBeGreaterThan(seen[0]!.revision);
  });

  it("replays history when started at an older revision", async () => {
    const from = await store.revision();
    for (let i = 0; i < 5; i++) await store.txn([{ op: "put", kind: "hist", key: `k${i}`, value: i }]);
    const seen: number[] = [];
    const w = await store.watch({ fromRevision: from, kinds: ["hist"] }, (ev) => seen.push(ev.revision));
    await waitFor(() => seen.length === 5, 5000, "5 historic events");
    await w.close();
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen[0]).toBe(from + 1);
  });

  it("resumes without gaps or duplicates across an etcd restart", async () => {
    const from = await store.revision();
    const seen: number[] = [];
    const w = await store.watch({ fromRevision: from, kinds: ["resume"] }, (ev) => seen.push(ev.revision));
    const written: number[] = [];
    for (let i = 0; i < 5; i++)
      written.push((await store.txn([{ op: "put", kind: "resume", key: "k", value: i }])).revision);
    await waitFor(() => seen.length === 5, 5000, "first batch");
    await etcd().restart(0);
    for (let i = 5; i < 10; i++) {
      written.push(
        (
          await waitFor(
            () => store.txn([{ op: "put", kind: "resume", key: "k", value: i }]),
            20_000,
            "write after restart",
          )
        ).revision,
      );
    }
    await waitFor(() => seen.length >= 10, 20_000, "second batch after restart");
    await w.close();
    expect(seen).toEqual(written);
  });

  it("a compacted start revision triggers onResync, then the watch carries on", async () => {
    const old = await store.revision();
    await store.txn([{ op: "put", kind: "cmp", key: "a", value: 1 }]);
    const cur = await store.txn([{ op: "put", kind: "cmp", key: "a", value: 2 }]);
    const raw = new Etcd3({ hosts: etcd().endpoints });
    await raw.kv.compact({ revision: cur.revision, physical: true });
    raw.close();
    let resyncAt = -1;
    const seen: WatchEvent[] = [];
    const w = await store.watch(
      { fromRevision: old, kinds: ["cmp"], onResync: (r) => (resyncAt = r) },
      (ev) => seen.push(ev),
    );
    await waitFor(() => resyncAt >= cur.revision, 5000, "onResync");
    const after = await store.txn([{ op: "put", kind: "cmp", key: "a", value: 3 }]);
    await waitFor(() => seen.some((e) => e.revision === after.revision), 5000, "event after resync");
    await w.close();
    expect(seen.every((e) => e.revision > resyncAt)).toBe(true);
  });
});

describe("etcd store: a value that is not JSON", () => {
  it("comes back from get, list and watch as malformed, and costs only itself", async () => {
    const raw = new Etcd3({ hosts: etcd().endpoints });
    try {
      await store.txn([{ op: "put", kind: "mal", key: "good", value: { id: "good" } }]);
      const from = await store.revision();
      const seen: WatchEvent[] = [];
      const w = await store.watch({ fromRevision: from, kinds: ["mal"] }, (ev) => seen.push(ev));
      await raw.put("/flowdrake/nb/mal/bad1").value('{"id":"bad1",');
      const bad = await store.get("mal", "bad1");
      expect(bad).toMatchObject({ kind: "mal", key: "bad1", value: undefined, version: 1 });
      expect(bad!.malformed).toMatch(/^not JSON: .+/);
      expect(bad!.modRevision).toBe(from + 1);
      const list = await store.list("mal");
      expect(list.map((o) => [o.key, o.malformed === undefined])).toEqual([
        ["bad1", false],
        ["good", true],
      ]);
      expect(list[1]!.value).toEqual({ id: "good" });
      // a malformed key is deleted like any other, guarded by its version
      await raw.put("/flowdrake/nb/mal/bad1").value("");
      expect((await store.get("mal", "bad1"))!).toMatchObject({ version: 2, value: undefined });
      await store.txn([{ op: "delete", kind: "mal", key: "bad1", expectVersion: 2 }]);
      expect(await store.get("mal", "bad1")).toBeUndefined();
      // fixed by a writer: read normally again
      await raw.put("/flowdrake/nb/mal/bad2").value("nope");
      await raw.put("/flowdrake/nb/mal/bad2").value('{"id":"bad2"}');
      expect(await store.get("mal", "bad2")).toMatchObject({ value: { id: "bad2" }, version: 2 });
      expect((await store.get("mal", "bad2"))!.malformed).toBeUndefined();
      await waitFor(() => seen.length === 5, 5000, "5 watch events");
      await w.close();
      expect(
        seen.map((e) =>
          e.type === "put"
            ? `put ${e.object.key} ${e.object.malformed ? "malformed" : "ok"}`
            : `delete ${e.key}`,
        ),
      ).toEqual([
        "put bad1 malformed",
        "put bad1 malformed",
        "delete bad1",
        "put bad2 malformed",
        "put bad2 ok",
      ]);
      const ev = seen[0] as Extract<WatchEvent, { type: "put" }>;
      expect(ev.object).toMatchObject({ key: "bad1", value: undefined, version: 1 });
      expect(ev.object.malformed).toMatch(/^not JSON/);
    } finally {
      raw.close();
    }
  });
});

describe("etcd store: leases and locks", () => {
  it("a key bound to a revoked lease disappears; a kept-alive one stays", async () => {
    const lease = await store.grantLease(2);
    // the clock: a 4 s lease nobody refreshes; its expiry (a watch event) says the 2 s one is past its TTL
    const clock = await store.grantLease(4, { keepAlive: false });
    const events: WatchEvent[] = [];
    const w = await store.watch({ kinds: ["chassis"] }, (ev) => events.push(ev));
    await store.txn([
      { op: "put", kind: "chassis", key: "h1", value: { up: true }, lease: lease.id },
      { op: "put", kind: "chassis", key: "clock", value: {}, lease: clock.id },
    ]);
    await waitFor(
      () => events.some((e) => e.type === "delete" && e.key === "clock"),
      10_000,
      "the clock lease to expire",
    );
    await w.close();
    expect(await store.get("chassis", "h1")).toBeDefined();
    await lease.revoke();
    expect(await store.get("chassis", "h1")).toBeUndefined();
  });

  it("withLock serialises holders and times out with LockTimeoutError", async () => {
    let inside = 0;
    let maxInside = 0;
    await store.txn([{ op: "put", kind: "lockcount", key: "n", value: 0 }]);
    await Promise.all(
      Array.from({ length: 4 }, () =>
        store.withLock("tenant-a", async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          // a read-modify-write without compare-and-swap: only the lock keeps an update from being lost
          const n = (await store.get("lockcount", "n"))!.value as number;
          await store.txn([{ op: "put", kind: "lockcount", key: "n", value: n + 1 }]);
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect((await store.get("lockcount", "n"))?.value).toBe(4);
    let release!: () => void;
    let entered!: () => void;
    const inLock = new Promise<void>((r) => (entered = r));
    const held = store.withLock("tenant-b", () => {
      entered();
      return new Promise<void>((r) => (release = r));
    });
    await inLock;
    const err = await store
      .withLock("tenant-b", async () => "never", { timeoutMs: 300 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockTimeoutError);
    release();
    await held;
    expect(await store.withLock("tenant-b", async () => "ok", { timeoutMs: 2000 })).toBe("ok");
  });
});

describe("etcd store: errors", () => {
  it("an unreachable etcd gives a StoreError naming the endpoint", async () => {
    const port = await freeTcpPort();
    const err = await openEtcdStore([`127.0.0.1:${port}`]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toContain(String(port));
  });
});
