/**
 * The NB store conformance suite: one set of behaviours every driver must show
 * (embedded, etcd, a 3-member etcd cluster). Each driver's test file calls
 * `runStoreConformance(name, open)`; `open` returns a ready store (the suite
 * closes it). Tests use their own random kind names, so the same etcd cluster
 * can be reused between runs and between files.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConflictError, LockTimeoutError } from "../../src/nb/store/errors.js";
import type { NbStore, StoredObject, WatchEvent } from "../../src/nb/store/types.js";
import { waitFor } from "./index.js";

/** Take `name` and hold it until `release()`; resolves once the holder is inside. */
async function holding(store: NbStore, name: string): Promise<{ held: Promise<void>; release: () => void }> {
  let release!: () => void;
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const held = store.withLock(name, () => {
    entered();
    return new Promise<void>((r) => (release = r));
  });
  await inside;
  return { held, release };
}

export function runStoreConformance(name: string, open: () => Promise<NbStore>): void {
  describe(`NB store conformance: ${name}`, () => {
    let store: NbStore | undefined;
    const s = (): NbStore => {
      if (!store) throw new Error(`${name} store did not open (see beforeAll error)`);
      return store;
    };
    let n = 0;
    const kind = (): string => `conf${randomBytes(4).toString("hex")}${n++}`;

    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store?.close();
    });

    it("creates with expectVersion 0 and reads back version, value and revision", async () => {
      const k = kind();
      const r = await s().txn([{ op: "put", kind: k, key: "a", value: { x: 1 }, expectVersion: 0 }]);
      expect(r.versions).toEqual([1]);
      const got = await s().get(k, "a");
      expect(got).toMatchObject({ kind: k, key: "a", value: { x: 1 }, version: 1, modRevision: r.revision });
      expect(await s().revision()).toBeGreaterThanOrEqual(r.revision);
      expect(await s().get(k, "missing")).toBeUndefined();
    });

    it("refuses a second create with ConflictError and writes nothing", async () => {
      const k = kind();
      await s().txn([{ op: "put", kind: k, key: "a", value: 1, expectVersion: 0 }]);
      const rev = await s().revision();
      const err = await s()
        .txn([{ op: "put", kind: k, key: "a", value: 2, expectVersion: 0 }])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({ kind: k, key: "a", expectedVersion: 0, actualVersion: 1 });
      expect((await s().get(k, "a"))?.value).toBe(1);
      expect(await s().revision()).toBe(rev);
    });

    it("updates by CAS: the right version wins, a stale one conflicts", async () => {
      const k = kind();
      await s().txn([{ op: "put", kind: k, key: "a", value: "v1", expectVersion: 0 }]);
      const r2 = await s().txn([{ op: "put", kind: k, key: "a", value: "v2", expectVersion: 1 }]);
      expect(r2.versions).toEqual([2]);
      await expect(
        s().txn([{ op: "put", kind: k, key: "a", value: "stale", expectVersion: 1 }]),
      ).rejects.toBeInstanceOf(ConflictError);
      await expect(
        s().txn([{ op: "put", kind: k, key: "nope", value: 1, expectVersion: 3 }]),
      ).rejects.toMatchObject({
        actualVersion: 0,
      });
      const got = await s().get(k, "a");
      expect(got?.value).toBe("v2");
      expect(got?.version).toBe(2);
      const r3 = await s().txn([{ op: "put", kind: k, key: "a", value: "v3" }]);
      expect(r3.versions).toEqual([3]);
    });

    it("deletes by CAS: a stale delete conflicts and keeps the object", async () => {
      const k = kind();
      await s().txn([{ op: "put", kind: k, key: "a", value: 1, expectVersion: 0 }]);
      await s().txn([{ op: "put", kind: k, key: "a", value: 2, expectVersion: 1 }]);
      await expect(s().txn([{ op: "delete", kind: k, key: "a", expectVersion: 1 }])).rejects.toBeInstanceOf(
        ConflictError,
      );
      expect((await s().get(k, "a"))?.version).toBe(2);
      await s().txn([{ op: "delete", kind: k, key: "a", expectVersion: 2 }]);
      expect(await s().get(k, "a")).toBeUndefined();
      const again = await s().txn([{ op: "put", kind: k, key: "a", value: 3, expectVersion: 0 }]);
      expect(again.versions).toEqual([1]);
    });

    it("applies a multi-op txn all or nothing", async () => {
      const k = kind();
      await s().txn([{ op: "put", kind: k, key: "b", value: "b1", expectVersion: 0 }]);
      const rev = await s().revision();
      const err = await s()
        .txn([
          { op: "put", kind: k, key: "a", value: "a1", expectVersion: 0 },
          { op: "delete", kind: k, key: "b" },
          { op: "put", kind: k, key: "c", value: "c1", expectVersion: 7 },
        ])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({ key: "c" });
      expect(await s().get(k, "a")).toBeUndefined();
      expect((await s().get(k, "b"))?.value).toBe("b1");
      expect(await s().revision()).toBe(rev);
      const ok = await s().txn([
        { op: "put", kind: k, key: "a", value: "a1", expectVersion: 0 },
        { op: "delete", kind: k, key: "b", expectVersion: 1 },
        { op: "put", kind: k, key: "c", value: "c1" },
      ]);
      expect(ok.versions).toEqual([1, 0, 1]);
      const keys = (await s().list(k)).map((o) => o.key).sort();
      expect(keys).toEqual(["a", "c"]);
      const a = await s().get(k, "a");
      const c = await s().get(k, "c");
      expect(a?.modRevision).toBe(ok.revision);
      expect(c?.modRevision).toBe(ok.revision);
    });

    it("lists one kind only, with keys that contain slashes and unicode", async () => {
      const k1 = kind();
      const k2 = kind();
      await s().txn([
        { op: "put", kind: k1, key: "x/y", value: 1 },
        { op: "put", kind: k1, key: "ü-ß", value: 2 },
        { op: "put", kind: k2, key: "x/y", value: 3 },
      ]);
      const l1 = await s().list(k1);
      expect(l1.map((o) => o.key).sort()).toEqual(["x/y", "ü-ß"].sort());
      expect((await s().get(k2, "x/y"))?.value).toBe(3);
    });

    it("delivers watch events in revision order", async () => {
      const k = kind();
      const events: WatchEvent[] = [];
      const w = await s().watch({ kinds: [k] }, (ev) => events.push(ev));
      const revs: number[] = [];
      for (let i = 0; i < 20; i++) {
        revs.push((await s().txn([{ op: "put", kind: k, key: `k${i % 5}`, value: i }])).revision);
      }
      revs.push((await s().txn([{ op: "delete", kind: k, key: "k0" }])).revision);
      await waitFor(() => events.length >= 21, 10_000, "21 watch events");
      await w.close();
      expect(events.map((e) => e.revision)).toEqual(revs);
      expect(events.slice(0, 20).map((e) => (e.type === "put" ? e.object.value : null))).toEqual(
        Array.from({ length: 20 }, (_, i) => i),
      );
      const last = events[20]!;
      expect(last).toMatchObject({ type: "delete", kind: k, key: "k0", prevVersion: 4 });
    });

    it("resumes a watch from a revision without gaps or duplicates", async () => {
      const k = kind();
      const start = await s().revision();
      const written: number[] = [];
      for (let i = 0; i < 30; i++)
        written.push((await s().txn([{ op: "put", kind: k, key: `k${i}`, value: i }])).revision);
      const first: WatchEvent[] = [];
      const w1 = await s().watch({ fromRevision: start, kinds: [k] }, (ev) => first.push(ev));
      await waitFor(() => first.length >= 30, 10_000, "history replay");
      await w1.close();
      expect(first.map((e) => e.revision)).toEqual(written);
      // resume halfway, while more writes arrive
      const resumeFrom = first[14]!.revision;
      const second: WatchEvent[] = [];
      const w2 = await s().watch({ fromRevision: resumeFrom, kinds: [k] }, (ev) => second.push(ev));
      for (let i = 30; i < 40; i++)
        written.push((await s().txn([{ op: "put", kind: k, key: `k${i}`, value: i }])).revision);
      // one more write after them: once its event is in, a duplicate of any earlier one would be too
      const end = await s().txn([{ op: "put", kind: k, key: "end", value: 0 }]);
      await waitFor(() => second.some((e) => e.revision === end.revision), 10_000, "resumed events");
      await w2.close();
      expect(second.map((e) => e.revision)).toEqual([...written.slice(15), end.revision]);
      expect(second.map((e) => (e.type === "put" ? e.object.key : ""))).toEqual([
        ...Array.from({ length: 25 }, (_, i) => `k${i + 15}`),
        "end",
      ]);
    });

    it("gives every op of one txn the same revision in a watch", async () => {
      const k = kind();
      const events: WatchEvent[] = [];
      const w = await s().watch({ kinds: [k] }, (ev) => events.push(ev));
      const r = await s().txn([
        { op: "put", kind: k, key: "a", value: 1 },
        { op: "put", kind: k, key: "b", value: 2 },
      ]);
      await waitFor(() => events.length >= 2, 10_000, "two events");
      await w.close();
      expect(events.map((e) => e.revision)).toEqual([r.revision, r.revision]);
    });

    it("excludes holders of the same lock and times out a waiter", async () => {
      const lockName = `lock-${kind()}`;
      const k = kind();
      await s().txn([{ op: "put", kind: k, key: "n", value: 0, expectVersion: 0 }]);
      let inside = 0;
      let maxInside = 0;
      await Promise.all(
        Array.from({ length: 5 }, () =>
          s().withLock(lockName, async () => {
            inside++;
            maxInside = Math.max(maxInside, inside);
            // a read-modify-write without compare-and-swap: only the lock keeps an update from being lost
            const n = (await s().get(k, "n"))!.value as number;
            await s().txn([{ op: "put", kind: k, key: "n", value: n + 1 }]);
            inside--;
          }),
        ),
      );
      expect(maxInside).toBe(1);
      expect((await s().get(k, "n"))?.value).toBe(5);

      const { held, release } = await holding(s(), lockName);
      const err = await s()
        .withLock(lockName, async () => "got it", { timeoutMs: 300 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LockTimeoutError);
      release();
      await held;
      expect(await s().withLock(lockName, async () => "free again")).toBe("free again");
      // a throwing critical section releases the lock
      await expect(
        s().withLock(lockName, async () => {
          throw new Error("boom");
        }),
      ).rejects.toThrow("boom");
      expect(await s().withLock(lockName, async () => 42, { timeoutMs: 2000 })).toBe(42);
    });

    it("runs different locks concurrently", async () => {
      const a = `lock-${kind()}`;
      const b = `lock-${kind()}`;
      const { held, release } = await holding(s(), a);
      expect(await s().withLock(b, async () => "b", { timeoutMs: 2000 })).toBe("b");
      release();
      await held;
    });

    it("expires a lease that is not refreshed, keeps one refreshed or kept alive, and revokes on demand", async () => {
      // Other leases are the clock: their expiry, seen as a watch event, says that time has passed.
      // `refreshed` is granted before `clock4` with the same TTL, so without its refresh it would
      // expire first; `auto` (2 s, kept alive by the driver) would have expired long before.
      const k = kind();
      const clock2 = await s().grantLease(2, { keepAlive: false });
      const refreshed = await s().grantLease(4, { keepAlive: false });
      const clock4 = await s().grantLease(4, { keepAlive: false });
      const auto = await s().grantLease(2);
      const events: WatchEvent[] = [];
      const w = await s().watch({ kinds: [k] }, (ev) => events.push(ev));
      const gone = (key: string): boolean => events.some((e) => e.type === "delete" && e.key === key);
      await s().txn([
        { op: "put", kind: k, key: "clock2", value: 0, lease: clock2.id },
        { op: "put", kind: k, key: "refreshed", value: 1, lease: refreshed.id },
        { op: "put", kind: k, key: "clock4", value: 0, lease: clock4.id },
        { op: "put", kind: k, key: "kept", value: 2, lease: auto.id },
      ]);
      await waitFor(() => gone("clock2"), 10_000, "the 2 s lease to expire");
      await refreshed.keepAlive();
      await waitFor(() => gone("clock4"), 10_000, "the 4 s lease to expire");
      expect(gone("refreshed")).toBe(false);
      expect((await s().get(k, "refreshed"))?.value).toBe(1);
      expect((await s().get(k, "kept"))?.value).toBe(2);
      // not refreshed again, it expires in turn
      await waitFor(() => gone("refreshed"), 10_000, "the refreshed lease to expire");
      expect(await s().get(k, "refreshed")).toBeUndefined();
      await w.close();
      await auto.revoke();
      await waitFor(async () => (await s().get(k, "kept")) === undefined, 5000, "revoked key gone");
    });

    it("loses no update when many writers race on the same objects", async () => {
      const k = kind();
      const keys = ["c0", "c1", "c2"];
      await s().txn(keys.map((key) => ({ op: "put" as const, kind: k, key, value: 0, expectVersion: 0 })));
      const writers = 8;
      const perWriter = 15;
      let conflicts = 0;
      // Every writer's first read happens before any writer's first write (a barrier), so each key's
      // first round is a real race: one writer wins it, the others must be refused and retry.
      let read = 0;
      let allRead!: () => void;
      const barrier = new Promise<void>((r) => (allRead = r));
      const increment = async (key: string, first: boolean): Promise<void> => {
        for (;;) {
          const cur = (await s().get(k, key)) as StoredObject;
          if (first) {
            first = false;
            if (++read === writers) allRead();
            await barrier;
          }
          try {
            await s().txn([
              { op: "put", kind: k, key, value: (cur.value as number) + 1, expectVersion: cur.version },
            ]);
            return;
          } catch (err) {
            if (!(err instanceof ConflictError)) throw err;
            conflicts++;
          }
        }
      };
      await Promise.all(
        Array.from({ length: writers }, async (_, w) => {
          for (let i = 0; i < perWriter; i++) await increment(keys[(w + i) % keys.length]!, i === 0);
        }),
      );
      const total = (await s().list(k)).reduce((sum, o) => sum + (o.value as number), 0);
      expect(total).toBe(writers * perWriter);
      for (const key of keys) {
        const o = await s().get(k, key);
        expect(o?.version).toBe((o?.value as number) + 1);
      }
      expect(conflicts).toBeGreaterThanOrEqual(writers - keys.length);
    });
  });
}
