/**
 * `flowdrake publisher` as a real child process (the built CLI), between a
 * real store and agent caches subscribed over real ZeroMQ sockets:
 *   - etcd: caches converge on changes; the publisher is SIGKILLed, changes
 *     are written while it is down, it is started again → caches see a new
 *     publisher id and resync; a message dropped on purpose (SIGUSR2 with
 *     --fault-injection) is detected as a sequence gap and repaired; etcd
 *     itself restarts under the publisher → its watch resumes from the last
 *     revision and changes keep arriving as messages, without a restart;
 *   - etcd compacted the history the publisher's watch needed to resume (the
 *     publisher was cut off from etcd meanwhile) → the publisher draws a new
 *     id and the subscribers resync rather than miss the compacted change;
 *   - embedded: the publisher follows the log of a store this test process
 *     owns, across a compaction of that log.
 * Every "before" state is one the test observes (a publisher that exited, a
 * cache that is synced(), a gap the caches reported), never a sleep.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, rmSync, statSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { Etcd3 } from "etcd3";
import { NbCache } from "../../src/nb/sync/cache.js";
import { KIND } from "../../src/nb/sync/refs.js";
import { EtcdCluster } from "../harness/etcd.js";
import { Cleanup, freeTcpPort, makeRunDir, waitFor } from "../harness/index.js";
import { cacheMatchesStore, renameNetA, seedNetA } from "../harness/nb-fixture.js";

const repo = resolve(import.meta.dirname, "../..");
const cli = join(repo, "dist/src/cli/main.js");
const cleanup = new Cleanup();
afterAll(() => cleanup.run());

beforeAll(() => {
  const r = spawnSync("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: repo, encoding: "utf8" });
  const built = join(repo, "dist/src/cli/publisher.js");
  const src = join(repo, "src/cli/publisher.ts");
  if (!existsSync(built) || statSync(built).mtimeMs < statSync(src).mtimeMs) {
    throw new Error(`build failed (npx tsc -p tsconfig.build.json):\n${r.stdout}${r.stderr}`);
  }
}, 300_000);

interface RunningPublisher {
  proc: ChildProcess;
  id: string;
  output: () => string;
}

async function startPublisher(db: string, bind: string): Promise<RunningPublisher> {
  const proc = spawn(
    process.execPath,
    [cli, "publisher", "--db", db, "--bind", bind, "--heartbeat-ms", "100", "--fault-injection"],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "info" } },
  );
  let out = "";
  let err = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  cleanup.add(`publisher ${proc.pid}`, () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const line = await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`publisher exited ${proc.exitCode}: ${err}`);
      return out.split("\n").find((l) => l.includes('"ready"'));
    },
    20_000,
    `publisher ready (stderr: ${err.slice(-500)})`,
  );
  const ready = JSON.parse(line as string) as { publisher: string; bind: string };
  expect(ready.bind).toBe(bind);
  return { proc, id: ready.publisher, output: () => out + err };
}

async function kill9(p: RunningPublisher): Promise<void> {
  const gone = new Promise<void>((r) => p.proc.once("exit", () => r()));
  p.proc.kill("SIGKILL");
  await gone;
}

/**
 * A TCP relay between the publisher and etcd that the test can cut and
 * restore on the same port: the publisher loses etcd while etcd itself stays
 * up (and applies a compaction at once), which a killed member cannot
 * promise — a restarted member may serve the resumed watch before it has
 * replayed the compaction, and then the changes simply arrive as events.
 */
class TcpRelay {
  private server: Server | undefined;
  private readonly conns = new Set<Socket>();

  private constructor(
    readonly port: number,
    private readonly target: number,
  ) {}

  static async start(target: number): Promise<TcpRelay> {
    const r = new TcpRelay(await freeTcpPort(), target);
    await r.restore();
    return r;
  }

  async restore(): Promise<void> {
    const server = createServer((down) => {
      const up = createConnection({ host: "127.0.0.1", port: this.target });
      for (const [a, b] of [
        [down, up],
        [up, down],
      ] as const) {
        this.conns.add(a);
        a.pipe(b);
        a.on("error", () => b.destroy());
        a.on("close", () => {
          this.conns.delete(a);
          b.destroy();
        });
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  /** Stop accepting and drop every relayed connection; resolves once the port is closed. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.conns) c.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}

const seed = seedNetA;
const renameNetwork = renameNetA;
const converged = (store: NbStore, cache: NbCache): Promise<boolean> => cacheMatchesStore(store, cache);

async function startCaches(store: NbStore, endpoint: string, n: number): Promise<NbCache[]> {
  const caches: NbCache[] = [];
  for (let i = 0; i < n; i++) {
    const c = await NbCache.start({ store, distribution: { mode: "pubsub", endpoint }, localPorts: ["pA1"] });
    cleanup.add(`cache ${i}`, () => c.close());
    caches.push(c);
  }
  return caches;
}

const netVersion = (c: NbCache): number | undefined => c.get(KIND.network, "netA")?.version;
const stats = (c: NbCache) => c.pubsubStats()!;

describe("flowdrake publisher on etcd", () => {
  let etcd: EtcdCluster;
  let store: NbStore;
  let bind: string;
  let url: string;
  let pub: RunningPublisher;
  let caches: NbCache[];

  beforeAll(async () => {
    etcd = await EtcdCluster.start({ label: "nb-publisher" });
    cleanup.add("etcd", () => etcd.stop());
    store = await openEtcdStore(etcd.endpoints);
    cleanup.add("store", () => store.close());
    await seed(store);
    bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
    url = etcd.url;
  }, 60_000);

  it("subscribers converge on the changes it forwards", async () => {
    pub = await startPublisher(url, bind);
    caches = await startCaches(store, bind, 3);
    await waitFor(() => caches.every((c) => c.publisherId === pub.id), 10_000, "caches hear the publisher");
    expect(caches[0]!.get(KIND.subnet, "subA")).toBeDefined();
    expect(caches[0]!.get(KIND.chassis, "h2")).toBeDefined();
    const v = await renameNetwork(store, "first");
    await waitFor(() => caches.every((c) => netVersion(c) === v), 10_000, "rename reaches every cache");
    for (const c of caches) {
      expect(stats(c).received).toBeGreaterThan(0);
      expect(stats(c).restarts).toBe(0);
      expect(await converged(store, c)).toBe(true);
    }
  }, 60_000);

  it("kill -9 and restart: subscribers see a new publisher id and resync what they missed", async () => {
    const firstId = pub.id;
    // nothing already under way (a baseline resync) may read the store after the kill
    await waitFor(() => caches.every((c) => c.synced()), 10_000, "caches caught up");
    // every change a cache applies from here on, with the publisher it had heard then
    const applied = caches.map(() => [] as { key: string; version?: number; publisher?: string }[]);
    caches.forEach((c, i) =>
      c.on((ev) => applied[i]!.push({ key: ev.key, version: ev.object?.version, publisher: c.publisherId })),
    );
    await kill9(pub);
    const missed = await renameNetwork(store, "while-down");
    await store.txn([
      {
        op: "put",
        kind: KIND.port,
        key: "pA3",
        value: { id: "pA3", tenantId: "t1", networkId: "netA", chassis: "h1" },
      },
    ]);
    expect(caches.every((c) => (netVersion(c) ?? 0) < missed && !c.get(KIND.port, "pA3"))).toBe(true);

    pub = await startPublisher(url, bind);
    expect(pub.id).not.toBe(firstId);
    await waitFor(
      () => caches.every((c) => c.publisherId === pub.id),
      10_000,
      "caches hear the new publisher",
    );
    await waitFor(
      () => caches.every((c) => netVersion(c) === missed && c.get(KIND.port, "pA3")),
      10_000,
      "missed changes resynced",
    );
    for (const c of caches) {
      expect(stats(c).restarts).toBeGreaterThanOrEqual(1);
      expect(await converged(store, c)).toBe(true);
    }
    // nothing brought them in while no publisher ran: each cache had heard the new one by then
    for (const changes of applied) {
      const brought = changes.filter(
        (a) => (a.key === "netA" && a.version === missed) || (a.key === "pA3" && a.version !== undefined),
      );
      expect(brought.map((a) => a.key).sort()).toEqual(["netA", "pA3"]);
      expect(brought.every((a) => a.publisher === pub.id)).toBe(true);
    }
  }, 60_000);

  it("a message dropped on purpose is detected as a gap and repaired", async () => {
    const gapsBefore = caches.map((c) => stats(c).gaps);
    pub.proc.kill("SIGUSR2");
    await waitFor(() => pub.output().includes("dropping the next change message"), 5000, "fault armed");
    const lost = await renameNetwork(store, "lost");
    // nothing follows the lost message: the next heartbeat's numbers reveal it
    await waitFor(
      () => caches.every((c, i) => stats(c).gaps > gapsBefore[i]! && netVersion(c) === lost),
      10_000,
      "a heartbeat reveals the lost message and the caches resync it",
    );
    const last = await renameNetwork(store, "after-gap");
    expect(last).toBe(lost + 1);
    await waitFor(() => caches.every((c) => netVersion(c) === last), 10_000, "caches reach the last version");
    caches.forEach((c, i) => expect(stats(c).gaps).toBeGreaterThan(gapsBefore[i]!));
    for (const c of caches) expect(await converged(store, c)).toBe(true);
  }, 60_000);

  it("etcd restarts under the publisher: its watch resumes, changes keep flowing as messages", async () => {
    const before = caches.map((c) => ({ ...stats(c) }));
    await etcd.restart(0);
    const v = await waitFor(() => renameNetwork(store, "after-etcd-restart"), 20_000, "write after restart");
    await waitFor(() => caches.every((c) => netVersion(c) === v), 20_000, "change after the etcd restart");
    caches.forEach((c, i) => {
      // the same publisher, no gap: the change came as a message from the resumed watch
      expect(c.publisherId).toBe(pub.id);
      expect(stats(c).restarts).toBe(before[i]!.restarts);
      expect(stats(c).gaps).toBe(before[i]!.gaps);
      expect(stats(c).received).toBeGreaterThan(before[i]!.received);
    });
    expect(pub.proc.exitCode).toBeNull();
    const exited = new Promise<number | null>((r) => pub.proc.once("exit", (code) => r(code)));
    pub.proc.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 60_000);
});

describe("flowdrake publisher on an embedded store (read-only follower)", () => {
  it("forwards what the owning process commits, across a log compaction", async () => {
    const dir = makeRunDir("nb-publisher-embedded");
    cleanup.add(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    const store = await EmbeddedStore.open(join(dir, "db"), { compactEveryRecords: 0 });
    cleanup.add("embedded store", () => store.close());
    await seed(store);
    const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
    const pub = await startPublisher(`embedded:${join(dir, "db")}`, bind);
    const [cache] = await startCaches(store, bind, 1);
    await waitFor(() => cache!.publisherId === pub.id, 10_000, "cache hears the publisher");
    let v = 0;
    for (let i = 0; i < 5; i++) v = await renameNetwork(store, `e${i}`);
    await waitFor(() => netVersion(cache!) === v, 10_000, "changes from the log");
    store.compact();
    for (let i = 5; i < 10; i++) v = await renameNetwork(store, `e${i}`);
    await waitFor(() => netVersion(cache!) === v, 10_000, "changes after compaction");
    expect(stats(cache!).gaps).toBe(0);
    expect(stats(cache!).restarts).toBe(0);
    expect(await converged(store, cache!)).toBe(true);
    // the follower is read-only: the store directory still belongs to this process
    expect(existsSync(join(dir, "db", "LOCK"))).toBe(true);
    await kill9(pub);
  }, 60_000);
});

describe("flowdrake publisher when etcd compacted the history it needs", () => {
  it("draws a new publisher id so subscribers resync instead of missing changes", async () => {
    const etcd = await EtcdCluster.start({ label: "nb-publisher-compact" });
    cleanup.add("etcd (compaction)", () => etcd.stop());
    const store = await openEtcdStore(etcd.endpoints);
    cleanup.add("compaction store", () => store.close());
    await seed(store);
    const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
    const relay = await TcpRelay.start(Number(new URL(etcd.endpoint(0)).port));
    cleanup.add("relay", () => relay.cut());
    const pub = await startPublisher(`etcd://127.0.0.1:${relay.port}`, bind);
    const [cache] = await startCaches(store, bind, 1);
    await waitFor(
      () => cache!.publisherId === pub.id && cache!.synced(),
      10_000,
      "cache hears the publisher and catches up",
    );
    await relay.cut();
    // two changes, then compact at the second: the first is gone from etcd's history
    await renameNetwork(store, "compacted-away");
    const missed = await renameNetwork(store, "behind-compaction");
    const raw = new Etcd3({ hosts: etcd.endpoints });
    try {
      await raw.kv.compact({ revision: await store.revision(), physical: true });
    } finally {
      raw.close();
    }
    expect(netVersion(cache!)).toBeLessThan(missed);
    await relay.restore();
    await waitFor(() => cache!.publisherId !== pub.id, 20_000, "a new publisher id after the resync").catch(
      (err: Error) => {
        throw new Error(`${err.message}\npublisher output:\n${pub.output().slice(-2000)}`);
      },
    );
    await waitFor(() => netVersion(cache!) === missed, 10_000, "the change behind the compaction");
    expect(stats(cache!).restarts).toBeGreaterThanOrEqual(1);
    // stdout/stderr and the ZeroMQ socket are different channels: wait for the log line
    await waitFor(
      () => /store watch resynced: new publisher id/.test(pub.output()),
      10_000,
      "the publisher logs the new id",
    );
    expect(pub.output()).toMatch(/watch cancelled by etcd \(compacted\)/);
    const after = await renameNetwork(store, "after-resync");
    await waitFor(() => netVersion(cache!) === after, 10_000, "changes flow again");
    expect(await converged(store, cache!)).toBe(true);
  }, 120_000);
});

describe("flowdrake publisher command line", () => {
  it("rejects a bad endpoint with exit code 2 and documents its options", () => {
    const bad = spawnSync(
      process.execPath,
      [cli, "publisher", "--db", "embedded:/nonexistent", "--bind", "127.0.0.1:1"],
      {
        encoding: "utf8",
      },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--bind 127\.0\.0\.1:1: expected a ZeroMQ endpoint/);
    const help = spawnSync(process.execPath, [cli, "publisher", "--help"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    for (const opt of ["--db", "--bind", "--heartbeat-ms"]) expect(help.stdout).toContain(opt);
    expect(help.stdout).not.toContain("--fault-injection");
  });
});
