/**
 * ZeroMQ change distribution with real sockets on 127.0.0.1 and a real etcd
 * behind the publisher: subscribers converge to the store's state when the
 * publisher drops messages (sequence gap → resync) and when it is killed and
 * restarted (new publisher id → resync), and a malformed frame is dropped.
 * Every "before" state is one the test observes (a cache that is synced(),
 * a publisher whose close() returned with its endpoint released), never a
 * sleep that hopes the system got there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publisher } from "zeromq";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { NbPublisher } from "../../src/nb/pubsub/publisher.js";
import { NbSubscriber } from "../../src/nb/pubsub/subscriber.js";
import { networkTopic, type ChangeMessage } from "../../src/nb/pubsub/message.js";
import { NbCache } from "../../src/nb/sync/cache.js";
import { KIND } from "../../src/nb/sync/refs.js";
import { useEtcd } from "../harness/etcd.js";
import { Cleanup, freeTcpPort, waitFor } from "../harness/index.js";
import { cacheMatchesStore, renameNetA, seedNetA } from "../harness/nb-fixture.js";

const etcd = useEtcd({ label: "nb-pubsub" });
const cleanup = new Cleanup();
let store: NbStore;
let bind: string;

beforeAll(async () => {
  store = await openEtcdStore(etcd().endpoints);
  cleanup.add("store", () => store.close());
  bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
  await seedNetA(store);
});
afterAll(() => cleanup.run());

const converged = (cache: NbCache, kinds: string[]): Promise<boolean> =>
  cacheMatchesStore(store, cache, kinds);
const bumpNetwork = (name: string): Promise<number> => renameNetA(store, name);

describe("ZeroMQ pub/sub", () => {
  it("delivers changes on the object's topics, with per-topic sequence numbers", async () => {
    const pub = await NbPublisher.start({ store, bind, heartbeatMs: 100 });
    cleanup.add("pub0", () => pub.close());
    const got: ChangeMessage[] = [];
    const sub = NbSubscriber.connect(bind, { onChange: (m) => got.push(m), onResync: () => undefined });
    cleanup.add("sub0", () => sub.close());
    sub.subscribe(networkTopic("netA"));
    await waitFor(() => sub.publisherId === pub.id, 5000, "first heartbeat");
    const v = await bumpNetwork("via-pubsub");
    await waitFor(() => got.some((m) => m.kind === KIND.network && m.version === v), 5000, "network change");
    const m = got.find((x) => x.kind === KIND.network && x.version === v)!;
    expect(m.topic).toBe("n/netA/");
    expect(m.pub).toBe(pub.id);
    expect((m.value as { name: string }).name).toBe("via-pubsub");
    expect(sub.stats.gaps).toBe(0);
    await sub.close();
    await pub.close();
  });

  it("a dropped message is detected as a gap and the caches converge to the store", async () => {
    const pub = await NbPublisher.start({ store, bind, heartbeatMs: 100 });
    cleanup.add("pub1", () => pub.close());
    const caches = await Promise.all(
      [0, 1].map(() =>
        NbCache.start({ store, distribution: { mode: "pubsub", endpoint: bind }, localPorts: ["pA1"] }),
      ),
    );
    for (const c of caches) cleanup.add("cache", () => c.close());
    await waitFor(
      () => caches.every((c) => c.publisherId === pub.id && c.synced()),
      10_000,
      "caches hear the publisher and catch up",
    );
    expect(caches[0]!.get(KIND.network, "netA")).toBeDefined();

    const seen = await bumpNetwork("seen-1");
    // the publisher has forwarded seen-1 once every cache has it: the drop hits the next two
    await waitFor(() => caches.every((c) => c.get(KIND.network, "netA")?.version === seen), 10_000, "seen-1");
    pub.dropNext(2);
    await bumpNetwork("lost-1");
    await bumpNetwork("lost-2");
    const last = await bumpNetwork("after-gap");
    await waitFor(
      () => caches.every((c) => c.get(KIND.network, "netA")?.version === last),
      10_000,
      "caches reach the last version",
    );
    for (const c of caches) {
      expect((c.get(KIND.network, "netA")!.value as { name: string }).name).toBe("after-gap");
      expect(await converged(c, [KIND.network, KIND.subnet, KIND.port, KIND.chassis])).toBe(true);
    }
    // the lost messages were noticed as a gap and repaired by a resync, not silently skipped
    const subs = caches.map((c) => (c as unknown as { subscriber: NbSubscriber }).subscriber);
    expect(subs.every((s) => s.stats.gaps >= 1)).toBe(true);
    for (const c of caches) await c.close();
    await pub.close();
  });

  it("a restarted publisher binds its endpoint right after the previous one closed", async () => {
    // close() resolves only once ZeroMQ has released the endpoint (its listener
    // closes in the I/O thread after unbind): starting again at once never
    // meets EADDRINUSE, however busy the machine is
    for (let i = 0; i < 10; i++) {
      const pub = await NbPublisher.start({ store, bind, heartbeatMs: 100 });
      await pub.close();
    }
  });

  it("a killed and restarted publisher (new id) makes subscribers resync what they missed", async () => {
    let pub = await NbPublisher.start({ store, bind, heartbeatMs: 100 });
    const firstId = pub.id;
    const cache = await NbCache.start({
      store,
      distribution: { mode: "pubsub", endpoint: bind },
      localPorts: ["pA1"],
    });
    cleanup.add("cache2", () => cache.close());
    // synced: every topic has its baseline and the resync it asked for is done,
    // so nothing already under way can read the store after the publisher stops
    await waitFor(
      () => cache.publisherId === firstId && cache.synced(),
      10_000,
      "cache hears publisher 1 and catches up",
    );
    const resyncsBefore = cache.stats.resyncs;
    const restartsBefore = cache.pubsubStats()!.restarts;
    // every change the cache applies from here on, with the publisher it had heard and its resync count
    const applied: { key: string; version?: number; publisher?: string; resyncs: number }[] = [];
    cache.on((ev) =>
      applied.push({
        key: ev.key,
        version: ev.object?.version,
        publisher: cache.publisherId,
        resyncs: cache.stats.resyncs,
      }),
    );

    await pub.close();
    // written while no publisher runs: only a resync can bring this to the cache
    const missed = await bumpNetwork("while-down");
    await store.txn([
      {
        op: "put",
        kind: KIND.port,
        key: "pA3",
        value: { id: "pA3", tenantId: "t1", networkId: "netA", chassis: "h1" },
      },
    ]);
    expect(cache.get(KIND.network, "netA")!.version).toBeLessThan(missed);
    expect(cache.get(KIND.port, "pA3")).toBeUndefined();

    pub = await NbPublisher.start({ store, bind, heartbeatMs: 100 });
    cleanup.add("pub2", () => pub.close());
    expect(pub.id).not.toBe(firstId);
    await waitFor(() => cache.publisherId === pub.id, 10_000, "cache hears publisher 2");
    await waitFor(
      () => cache.get(KIND.network, "netA")?.version === missed,
      10_000,
      "missed update resynced",
    );
    await waitFor(() => cache.get(KIND.port, "pA3"), 10_000, "missed port resynced");
    expect(cache.stats.resyncs).toBeGreaterThan(resyncsBefore);
    // nothing brought them in while no publisher ran: they came with publisher 2, by a resync
    const brought = applied.filter(
      (a) => (a.key === "netA" && a.version === missed) || (a.key === "pA3" && a.version !== undefined),
    );
    expect(brought.map((a) => a.key).sort()).toEqual(["netA", "pA3"]);
    for (const a of brought) {
      expect(a.publisher).toBe(pub.id);
      expect(a.resyncs).toBeGreaterThan(resyncsBefore);
    }
    expect(cache.pubsubStats()!.restarts).toBe(restartsBefore + 1);
    expect(await converged(cache, [KIND.network, KIND.port])).toBe(true);
    await cache.close();
    await pub.close();
  });

  it("a malformed frame is counted and dropped; the subscriber keeps working", async () => {
    const port = await freeTcpPort();
    const raw = new Publisher({ linger: 0 });
    await raw.bind(`tcp://127.0.0.1:${port}`);
    cleanup.add("raw", () => raw.close());
    const got: ChangeMessage[] = [];
    const sub = NbSubscriber.connect(`tcp://127.0.0.1:${port}`, {
      onChange: (m) => got.push(m),
      onResync: () => undefined,
    });
    cleanup.add("sub3", () => sub.close());
    sub.subscribe("n/x/");
    const good = {
      type: "put",
      pub: "p",
      seq: 1,
      topic: "n/x/",
      kind: "lswitch",
      key: "x",
      version: 1,
      revision: 5,
    };
    // First a good message, sent again on every poll until one arrives: a subscription takes a
    // moment to reach the publisher, and what is published before it is not delivered. Sending the
    // bad ones in that loop raced it: the subscription could arrive between them and the good one.
    await waitFor(
      async () => {
        await raw.send(["n/x/", JSON.stringify(good)]);
        return got.length > 0;
      },
      5000,
      "a first good message",
    );
    // subscribed now: one connection delivers in order, so the good one after the bad ones comes
    // only once both bad ones were read
    await raw.send(["n/x/", "{not json"]);
    await raw.send(["n/x/", JSON.stringify({ ...good, seq: "one" })]);
    await raw.send(["n/x/", JSON.stringify({ ...good, seq: 2 })]);
    await waitFor(async () => got.length > 1, 5000, "a good message after bad ones");
    expect(sub.stats.malformed).toBeGreaterThanOrEqual(2);
    expect(got[0]!.key).toBe("x");
  });
});
