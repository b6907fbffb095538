/**
 * Duplicated and reordered pub/sub messages (issue 13's fault suite:
 * "messages dropped or duplicated"), with real ZeroMQ sockets: a raw PUB
 * socket plays a publisher that sends the same message twice and an old one
 * after a newer one. The subscriber passes each sequence number on once and
 * does not take the old one for a gap; a cache behind it applies each change
 * once and never sees the copies, and ends equal to the store (a real etcd).
 *
 * Nothing here waits for a subscription by sleeping: the first message of a
 * topic is sent again until it arrives (each copy is itself a duplicate the
 * subscriber must drop), and ZeroMQ keeps the order of what follows on the
 * one connection, so the last message arriving means every earlier one did.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publisher } from "zeromq";
import { networkTopic, TOPIC_HEARTBEAT, type ChangeMessage } from "../../src/nb/pubsub/message.js";
import { NbSubscriber, type ResyncReason } from "../../src/nb/pubsub/subscriber.js";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import type { NbStore, StoredObject } from "../../src/nb/store/types.js";
import { NbCache, type ChangeEvent } from "../../src/nb/sync/cache.js";
import { KIND } from "../../src/nb/sync/refs.js";
import { useEtcd } from "../harness/etcd.js";
import { Cleanup, freeTcpPort, waitFor } from "../harness/index.js";
import { cacheMatchesStore, renameNetA, seedNetA } from "../harness/nb-fixture.js";

const etcd = useEtcd({ label: "nb-pubsub-dup" });
const cleanup = new Cleanup();
let store: NbStore;

beforeAll(async () => {
  store = await openEtcdStore(etcd().endpoints);
  cleanup.add("store", () => store.close());
  await seedNetA(store);
});
afterAll(() => cleanup.run());

/** A raw ZeroMQ publisher on a free port: it sends exactly what the test tells it to. */
async function rawPublisher(): Promise<{ sock: Publisher; endpoint: string }> {
  const endpoint = `tcp://127.0.0.1:${await freeTcpPort()}`;
  const sock = new Publisher({ linger: 0 });
  await sock.bind(endpoint);
  cleanup.add("raw publisher", () => sock.close());
  return { sock, endpoint };
}

const send = (sock: Publisher, m: ChangeMessage | Record<string, unknown>): Promise<void> =>
  sock.send([String(m.topic), JSON.stringify(m)]);

/** A put of a stored object as the publisher would send it. */
const putOf = (o: StoredObject, topic: string, seq: number): ChangeMessage => ({
  type: "put",
  pub: "dup-pub",
  seq,
  topic,
  kind: o.kind,
  key: o.key,
  version: o.version,
  revision: o.modRevision,
  value: o.value,
});

describe("duplicated and reordered pub/sub messages", () => {
  it("the subscriber passes each sequence number on once and takes neither copy for a gap", async () => {
    const { sock, endpoint } = await rawPublisher();
    const topic = "n/x/";
    const got: ChangeMessage[] = [];
    const resyncs: ResyncReason[] = [];
    const sub = NbSubscriber.connect(endpoint, {
      onChange: (m) => got.push(m),
      onResync: (r) => resyncs.push(r),
    });
    cleanup.add("sub", () => sub.close());
    sub.subscribe(topic);
    const msg = (seq: number, version: number): ChangeMessage => ({
      type: "put",
      pub: "dup-pub",
      seq,
      topic,
      kind: KIND.network,
      key: "x",
      version,
      revision: 100 + version,
      value: { id: "x", name: `v${version}` },
    });
    // seq 1 until it arrives (the subscription takes a moment to reach the publisher)
    await waitFor(
      async () => {
        await send(sock, msg(1, 1));
        return got.length > 0;
      },
      5000,
      "the first message",
    );
    const receivedAtFirst = sub.stats.received;
    await send(sock, msg(2, 2));
    await send(sock, msg(2, 2)); // the same message again
    await send(sock, msg(1, 1)); // an old one after a newer one
    await send(sock, msg(3, 3));
    await waitFor(() => got.some((m) => m.seq === 3), 5000, "seq 3");
    // each passed on once, in order; the copies were received (counted) and dropped
    expect(got.map((m) => [m.seq, m.version])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expect(sub.stats.received - receivedAtFirst).toBeGreaterThanOrEqual(4);
    expect(sub.stats.gaps).toBe(0);
    expect(resyncs.filter((r) => r.reason !== "baseline")).toEqual([]);
  });

  it("a cache applies each change once: the copies never reach it, and it ends equal to the store", async () => {
    const { sock, endpoint } = await rawPublisher();
    const cache = await NbCache.start({
      store,
      distribution: { mode: "pubsub", endpoint },
      localPorts: ["pA1"],
    });
    cleanup.add("cache", () => cache.close());
    const sub = (cache as unknown as { subscriber: NbSubscriber }).subscriber;
    expect(sub.subscribed()).toContain(networkTopic("netA"));
    // heartbeats (no topic sent on yet: every baseline is 0) until the cache has heard this publisher
    // and finished the resync its baselines asked for
    const revision = (await store.get(KIND.network, "netA"))!.modRevision;
    let hb = 0;
    await waitFor(
      async () => {
        await send(sock, {
          type: "heartbeat",
          pub: "dup-pub",
          seq: ++hb,
          topic: TOPIC_HEARTBEAT,
          revision,
          seqs: {},
        });
        return cache.publisherId === "dup-pub" && cache.synced();
      },
      10_000,
      "the cache hears the publisher and catches up",
    );
    // written only now, after the cache's last read of the store: only the messages bring them
    const objs: StoredObject[] = [];
    for (const name of ["dup-a", "dup-b", "dup-c"]) {
      await renameNetA(store, name);
      objs.push((await store.get(KIND.network, "netA"))!);
    }
    const [a, b, c] = objs as [StoredObject, StoredObject, StoredObject];
    expect(cache.get(KIND.network, "netA")!.version).toBeLessThan(a.version);

    const events: ChangeEvent[] = [];
    cache.on((ev) => {
      if (ev.key === "netA") events.push(ev);
    });
    const before = { ...cache.stats };
    const receivedBefore = sub.stats.received;
    const topic = networkTopic("netA");
    await waitFor(
      async () => {
        await send(sock, putOf(a, topic, 1));
        return cache.get(KIND.network, "netA")?.version === a.version;
      },
      5000,
      "the first change",
    );
    await send(sock, putOf(b, topic, 2));
    await send(sock, putOf(b, topic, 2)); // the same message again
    await send(sock, putOf(a, topic, 1)); // an old one after a newer one
    await send(sock, putOf(c, topic, 3));
    await waitFor(() => cache.get(KIND.network, "netA")?.version === c.version, 5000, "the last change");

    expect(events.map((e) => [e.action, e.object?.version])).toEqual([
      ["updated", a.version],
      ["updated", b.version],
      ["updated", c.version],
    ]);
    expect(cache.stats.applied - before.applied).toBe(3);
    // the copies arrived (counted by the subscriber) but never reached the cache, not even to be ignored
    expect(sub.stats.received - receivedBefore).toBeGreaterThanOrEqual(5);
    expect(cache.stats.ignored - before.ignored).toBe(0);
    // and nothing was mistaken for a loss: no gap, no resync
    expect(sub.stats.gaps).toBe(0);
    expect(cache.stats.resyncs).toBe(before.resyncs);
    expect((cache.get(KIND.network, "netA")!.value as { name: string }).name).toBe("dup-c");
    expect(await cacheMatchesStore(store, cache)).toBe(true);
  });
});
