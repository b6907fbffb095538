/**
 * The embedded NB store: the shared conformance suite, plus what only a
 * file-backed store has to prove — an acknowledged write survives kill -9,
 * a torn tail is dropped, compaction keeps state, a second writer process is
 * refused, and a watcher older than the kept history is told to resync.
 */
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import { StoreError } from "../../src/nb/store/errors.js";
import { Cleanup, makeRunDir, waitFor } from "../harness/index.js";
import { runStoreConformance } from "../harness/nb-conformance.js";

const repo = resolve(import.meta.dirname, "../..");
const cleanup = new Cleanup();
afterAll(() => cleanup.run());

function tempDir(label: string): string {
  const dir = makeRunDir(label);
  cleanup.add(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

runStoreConformance("embedded", () => EmbeddedStore.open(join(tempDir("nb-conf"), "db")));

describe("embedded store durability", () => {
  beforeAll(() => {
    const r = spawnSync("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: repo, encoding: "utf8" });
    if (!existsSync(join(repo, "dist/src/nb/store/embedded.js"))) {
      throw new Error(`build failed (npx tsc -p tsconfig.build.json):\n${r.stdout}${r.stderr}`);
    }
  }, 300_000);

  it("keeps every acknowledged write after kill -9 of the writer", async () => {
    const dir = join(tempDir("nb-kill"), "db");
    const script = join(tempDir("nb-kill-script"), "writer.mjs");
    writeFileSync(
      script,
      `import { EmbeddedStore } from ${JSON.stringify(join(repo, "dist/src/nb/store/embedded.js"))};
const store = await EmbeddedStore.open(process.argv[2], { compactEveryRecords: 150 });
for (let i = 0; ; i++) {
  await store.txn([
    { op: "put", kind: "a", key: "k" + i, value: { i, pad: "x".repeat(i % 300) }, expectVersion: 0 },
    { op: "put", kind: "b", key: "k" + i, value: i, expectVersion: 0 },
    { op: "put", kind: "counter", key: "c", value: i },
  ]);
  process.stdout.write("ack " + i + "\\n");
}
`,
    );
    const child = spawn(process.execPath, [script, dir], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_c, sig) => r(sig)));
    await waitFor(() => (out.match(/ack/g)?.length ?? 0) >= 400, 60_000, `400 acks (stderr: ${err})`);
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    const acked = [...out.matchAll(/ack (\d+)\n/g)].map((m) => Number(m[1]));
    const lastAck = Math.max(...acked);
    expect(lastAck).toBeGreaterThanOrEqual(399);
    // the child's LOCK file names a dead pid: the reopen takes it over
    const store = await EmbeddedStore.open(dir);
    try {
      for (const i of acked) {
        expect((await store.get("a", `k${i}`))?.value).toMatchObject({ i });
        expect((await store.get("b", `k${i}`))?.value).toBe(i);
      }
      // a txn in flight at the kill is all there or not there at all
      const as = (await store.list("a")).map((o) => o.key).sort();
      const bs = (await store.list("b")).map((o) => o.key).sort();
      expect(as).toEqual(bs);
      const counter = (await store.get("counter", "c"))!;
      expect(counter.value).toBeGreaterThanOrEqual(lastAck);
      expect(counter.version).toBe((counter.value as number) + 1);
      expect(as.length).toBe((counter.value as number) + 1);
    } finally {
      await store.close();
    }
  });

  it("drops a torn last record and refuses damage before the tail", async () => {
    const dir = join(tempDir("nb-torn"), "db");
    let store = await EmbeddedStore.open(dir, { compactEveryRecords: 0 });
    await store.txn([{ op: "put", kind: "x", key: "1", value: "one" }]);
    await store.txn([{ op: "put", kind: "x", key: "2", value: "two" }]);
    await store.close();
    const logFile = join(dir, "log.jsonl");
    const good = readFileSync(logFile);
    appendFileSync(logFile, '0badc0de {"t":"txn","rev":3,"ops":[{"op":"put","kind":"x","key":"3"');
    store = await EmbeddedStore.open(dir, { compactEveryRecords: 0 });
    expect(await store.revision()).toBe(2);
    expect((await store.list("x")).map((o) => o.value)).toEqual(["one", "two"]);
    expect(readFileSync(logFile).equals(good)).toBe(true);
    const r = await store.txn([{ op: "put", kind: "x", key: "3", value: "three" }]);
    expect(r.revision).toBe(3);
    await store.close();

    // a complete line with a bad checksum at the tail is torn too
    const lines = readFileSync(logFile, "utf8").split("\n");
    writeFileSync(logFile, [...lines.slice(0, 2), lines[2]!.replace("three", "thr3e"), ""].join("\n"));
    store = await EmbeddedStore.open(dir, { compactEveryRecords: 0 });
    expect((await store.list("x")).map((o) => o.value)).toEqual(["one", "two"]);
    await store.close();

    // damage in the middle is not silently skipped
    const l2 = readFileSync(logFile, "utf8").split("\n");
    writeFileSync(logFile, [l2[0]!.replace("one", "on3"), l2[1], ""].join("\n"));
    await expect(EmbeddedStore.open(dir)).rejects.toThrow(/corrupt at byte 0/);
  });

  it("compacts into a snapshot and recovers the same state", async () => {
    const dir = join(tempDir("nb-compact"), "db");
    let store = await EmbeddedStore.open(dir, { compactEveryRecords: 25 });
    for (let i = 0; i < 60; i++) await store.txn([{ op: "put", kind: "x", key: `k${i % 10}`, value: i }]);
    await store.txn([{ op: "delete", kind: "x", key: "k0" }]);
    const before = await store.list("x");
    const rev = await store.revision();
    await store.close();
    expect(existsSync(join(dir, "snapshot.json"))).toBe(true);
    expect(readFileSync(join(dir, "log.jsonl"), "utf8").split("\n").length).toBeLessThan(26);
    store = await EmbeddedStore.open(dir);
    expect(await store.revision()).toBe(rev);
    expect(await store.list("x")).toEqual(before);
    expect((await store.get("x", "k9"))?.version).toBe(6);
    await store.close();
  });

  it("tells a watcher older than the kept history to resync", async () => {
    const dir = join(tempDir("nb-resync"), "db");
    const store = await EmbeddedStore.open(dir, { historyLimit: 10 });
    try {
      for (let i = 0; i < 30; i++) await store.txn([{ op: "put", kind: "x", key: `k${i}`, value: i }]);
      let resyncAt = -1;
      const events: number[] = [];
      const w = await store.watch({ fromRevision: 2, onResync: (rev) => (resyncAt = rev) }, (ev) =>
        events.push(ev.revision),
      );
      await waitFor(() => resyncAt === 30, 5000, "onResync");
      await store.txn([{ op: "put", kind: "x", key: "after", value: 1 }]);
      await waitFor(() => events.length === 1, 5000, "live event after resync");
      expect(events).toEqual([31]);
      await w.close();
      // a recent revision still replays from history
      const replay: number[] = [];
      const w2 = await store.watch({ fromRevision: 25 }, (ev) => replay.push(ev.revision));
      await waitFor(() => replay.length === 6, 5000, "replay");
      expect(replay).toEqual([26, 27, 28, 29, 30, 31]);
      await w2.close();
    } finally {
      await store.close();
    }
  });

  it("refuses a second writer, in this process and in another", async () => {
    const dir = join(tempDir("nb-lock"), "db");
    const store = await EmbeddedStore.open(dir);
    try {
      await expect(EmbeddedStore.open(dir)).rejects.toBeInstanceOf(StoreError);
      const script = join(tempDir("nb-lock-script"), "second.mjs");
      writeFileSync(
        script,
        `import { EmbeddedStore } from ${JSON.stringify(join(repo, "dist/src/nb/store/embedded.js"))};
try { await EmbeddedStore.open(process.argv[2]); console.log("opened"); }
catch (e) { console.log("refused: " + e.message); }
`,
      );
      const r = spawnSync(process.execPath, [script, dir], { encoding: "utf8" });
      expect(r.stdout).toMatch(new RegExp(`refused: NB data dir .* is in use by process ${process.pid}`));
    } finally {
      await store.close();
    }
    const again = await EmbeddedStore.open(dir);
    await again.close();
  });

  it("persists leases: a key on a lease nobody refreshes after restart expires", async () => {
    const dir = join(tempDir("nb-lease"), "db");
    let store = await EmbeddedStore.open(dir);
    const lease = await store.grantLease(1);
    await store.txn([{ op: "put", kind: "chassis", key: "n1", value: {}, lease: lease.id }]);
    await store.close();
    store = await EmbeddedStore.open(dir);
    try {
      expect(await store.get("chassis", "n1")).toBeDefined();
      await waitFor(
        async () => (await store.get("chassis", "n1")) === undefined,
        5000,
        "restored lease expiry",
      );
    } finally {
      await store.close();
    }
  });
});

describe("embedded store follower (read-only, as `flowdrake publisher` opens it)", () => {
  it("reads the owner's state, watches its commits across a compaction, refuses writes", async () => {
    const dir = join(tempDir("nb-follow"), "db");
    const owner = await EmbeddedStore.open(dir, { compactEveryRecords: 0 });
    try {
      for (let i = 0; i < 5; i++) await owner.txn([{ op: "put", kind: "x", key: `k${i}`, value: i }]);
      const follower = await EmbeddedStore.follow(dir, { followPollMs: 10 });
      try {
        expect(follower.readOnly).toBe(true);
        expect(await follower.revision()).toBe(await owner.revision());
        expect(await follower.list("x")).toEqual(await owner.list("x"));
        const seen: number[] = [];
        const w = await follower.watch({ kinds: ["x"] }, (ev) => seen.push(ev.revision));
        const written: number[] = [];
        for (let i = 5; i < 15; i++) {
          written.push((await owner.txn([{ op: "put", kind: "x", key: `k${i % 7}`, value: i }])).revision);
          if (i === 9) owner.compact();
        }
        written.push((await owner.txn([{ op: "delete", kind: "x", key: "k0" }])).revision);
        await waitFor(() => seen.length >= written.length, 5000, "follower events");
        expect(seen).toEqual(written);
        expect(await follower.list("x")).toEqual(await owner.list("x"));
        await w.close();
        // read-only: writes, locks and leases go through the owner
        await expect(follower.txn([{ op: "put", kind: "x", key: "no", value: 1 }])).rejects.toThrow(
          /read-only/,
        );
        await expect(follower.withLock("l", async () => 1)).rejects.toBeInstanceOf(StoreError);
        await expect(follower.grantLease(5)).rejects.toBeInstanceOf(StoreError);
        expect(await owner.get("x", "no")).toBeUndefined();
      } finally {
        await follower.close();
      }
      // the owner still holds the directory: a second writer is still refused
      await expect(EmbeddedStore.open(dir)).rejects.toBeInstanceOf(StoreError);
    } finally {
      await owner.close();
    }
    await expect(EmbeddedStore.follow(join(tempDir("nb-follow-empty"), "none"))).rejects.toBeInstanceOf(
      StoreError,
    );
  });
});
