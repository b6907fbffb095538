/**
 * The agent's NB cache against a real store and a real change feed, for both
 * feeds: the embedded store with an in-process ZeroMQ publisher (pubsub mode),
 * and etcd with the store's own watch (watch mode). The topology is written
 * through NbApi, so the cache reads the model's real field names:
 *
 *   netA ──R── netB        netC (unrelated)
 *   a1 (local, h1), a2 (h2) on netA; b1 (h3) on netB; c1 (h4) on netC
 *   a1 in sg1, whose rule names remote group sg2
 *
 * Selective distribution: the first local port on netA pulls in netA, its
 * subnet, its peers, router R, the network behind R and its ports, the
 * chassis hosting them, sg1 and sg2 — and nothing of netC; in pubsub mode
 * the cache subscribes to exactly those topics. Changes in scope arrive,
 * changes outside do not. Removing the last local port evicts all of it and
 * unsubscribes. Auto-recovery finds and repairs corrupted, stale, missing and
 * extra entries (changes that never reached the cache) and reports each one.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbApi } from "../../src/nb/api.js";
import { groupTopic, networkTopic, routerTopic, TOPIC_CHASSIS } from "../../src/nb/pubsub/message.js";
import { NbPublisher } from "../../src/nb/pubsub/publisher.js";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { NbCache, type ChangeEvent, type Distribution } from "../../src/nb/sync/cache.js";
import { recoverOnce, startRecovery, type RecoveryReport } from "../../src/nb/sync/recovery.js";
import { KIND } from "../../src/nb/sync/refs.js";
import { EtcdCluster } from "../harness/etcd.js";
import { Cleanup, freeTcpPort, makeRunDir, waitFor } from "../harness/index.js";

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

interface Topo {
  t: string;
  netA: string;
  netB: string;
  netC: string;
  subA: string;
  subB: string;
  subC: string;
  router: string;
  routerPorts: string[];
  a1: string;
  a2: string;
  b1: string;
  c1: string;
  sg1: string;
  sg2: string;
}

async function buildTopology(api: NbApi, t: string): Promise<Topo> {
  for (const [i, name] of ["h1", "h2", "h3", "h4"].entries()) {
    await api.create("chassis", { name: `${t}-${name}`, tunnelIps: [`192.0.2.${i + 1}`] });
  }
  const net = async (name: string, cidr: string) => {
    const n = await api.create("lswitch", { tenantId: t, name });
    const s = await api.create("subnet", { tenantId: t, networkId: n.key, cidr });
    return [n.key, s.key] as const;
  };
  const [netA, subA] = await net("a", "10.61.1.0/24");
  const [netB, subB] = await net("b", "10.61.2.0/24");
  const [netC, subC] = await net("c", "10.61.3.0/24");
  const router = (await api.create("lrouter", { tenantId: t, name: "r" })).key;
  const routerPorts = [
    (await api.routerAddInterface(router, { subnetId: subA })).port.key,
    (await api.routerAddInterface(router, { subnetId: subB })).port.key,
  ];
  const sg2 = (await api.create("secgroup", { tenantId: t, name: "sg2" })).key;
  const sg1 = (
    await api.create("secgroup", {
      tenantId: t,
      name: "sg1",
      rules: [{ direction: "ingress", ethertype: "IPv4", remoteGroupId: sg2 }],
    })
  ).key;
  const port = async (networkId: string, chassis: string, extra: Record<string, unknown> = {}) =>
    (await api.create("lport", { tenantId: t, networkId, chassis: `${t}-${chassis}`, ...extra })).key;
  return {
    t,
    netA,
    netB,
    netC,
    subA,
    subB,
    subC,
    router,
    routerPorts,
    a1: await port(netA, "h1", { securityGroups: [sg1] }),
    a2: await port(netA, "h2"),
    b1: await port(netB, "h3"),
    c1: await port(netC, "h4"),
    sg1,
    sg2,
  };
}

const keys = (c: NbCache, kind: string): string[] =>
  c
    .list(kind)
    .map((o) => o.key)
    .sort();

async function rename(api: NbApi, kind: "lswitch" | "subnet", key: string, name: string): Promise<number> {
  return (await api.update(kind, key, { name })).version;
}

interface Setup {
  store: NbStore;
  distribution: Distribution;
  /** Stop the change feed without the cache noticing (pubsub: stop the publisher). */
  cutFeed?: () => Promise<void>;
}

function cacheSuite(name: string, setup: () => Promise<Setup>): void {
  describe(`NbCache: ${name}`, () => {
    let env: Setup;
    let api: NbApi;
    let topo: Topo;
    let cache: NbCache;
    const events: ChangeEvent[] = [];

    beforeAll(async () => {
      env = await setup();
      api = new NbApi(env.store);
      topo = await buildTopology(api, `t${Date.now().toString(36)}`);
      cache = await NbCache.start({ store: env.store, distribution: env.distribution });
      cleanup.add(`cache ${name}`, () => cache.close());
      cache.on((ev) => events.push(ev));
    }, 60_000);

    it("holds nothing before a local port exists", () => {
      for (const kind of [KIND.network, KIND.subnet, KIND.port, KIND.router, KIND.secgroup]) {
        expect(keys(cache, kind)).toEqual([]);
      }
      if (env.distribution.mode === "pubsub") expect(cache.topics()).toEqual([TOPIC_CHASSIS]);
    });

    it("the first local port pulls in its network, subnets, peers, routers and what is behind them", async () => {
      const seen = events.length;
      await cache.addLocalPort(topo.a1);
      expect(keys(cache, KIND.network)).toEqual([topo.netA, topo.netB].sort());
      expect(keys(cache, KIND.subnet)).toEqual([topo.subA, topo.subB].sort());
      expect(keys(cache, KIND.port)).toEqual([topo.a1, topo.a2, topo.b1, ...topo.routerPorts].sort());
      expect(keys(cache, KIND.router)).toEqual([topo.router]);
      expect(keys(cache, KIND.secgroup)).toEqual([topo.sg1, topo.sg2].sort());
      expect(keys(cache, KIND.chassis)).toEqual([`${topo.t}-h1`, `${topo.t}-h2`, `${topo.t}-h3`]);
      // the change events name what came in
      expect(
        events.slice(seen).filter((e) => e.action === "added" && e.kind !== "chassis-liveness").length,
      ).toBe(
        2 + 2 + 5 + 1 + 2 + 3, // networks, subnets, ports, router, secgroups, chassis
      );
      expect(events.filter((e) => e.action === "added").map((e) => e.key)).toContain(topo.netB);
      if (env.distribution.mode === "pubsub") {
        expect(cache.topics().sort()).toEqual(
          [
            TOPIC_CHASSIS,
            networkTopic(topo.netA),
            networkTopic(topo.netB),
            routerTopic(topo.router),
            groupTopic(topo.sg2),
          ]
            .concat(cache.topics().filter((x) => x.startsWith("t/")))
            .sort(),
        );
        expect(cache.topics()).not.toContain(networkTopic(topo.netC));
      }
    });

    it("follows changes in scope and ignores the rest", async () => {
      await waitFor(() => cache.synced(), 10_000, "new subscriptions based");
      const vB = await rename(api, "lswitch", topo.netB, "b-renamed");
      const vSub = await rename(api, "subnet", topo.subA, "sub-a-renamed");
      await rename(api, "lswitch", topo.netC, "c-renamed");
      await waitFor(
        () =>
          cache.get(KIND.network, topo.netB)?.version === vB &&
          cache.get(KIND.subnet, topo.subA)?.version === vSub,
        10_000,
        "in-scope changes",
      );
      expect((cache.get(KIND.network, topo.netB)!.value as { name: string }).name).toBe("b-renamed");
      // netC's rename was committed before netB's second write below: once that arrives, netC's
      // change has been seen (watch and publisher deliver in revision order) and was ignored
      const marker = await rename(api, "lswitch", topo.netB, "b-renamed-again");
      await waitFor(() => cache.get(KIND.network, topo.netB)?.version === marker, 10_000, "marker change");
      expect(cache.get(KIND.network, topo.netC)).toBeUndefined();
      // a new peer on a followed network arrives too
      const a3 = (await api.create("lport", { tenantId: topo.t, networkId: topo.netA })).key;
      await waitFor(() => cache.get(KIND.port, a3), 10_000, "new peer port");
      await api.delete("lport", a3);
      await waitFor(() => !cache.get(KIND.port, a3), 10_000, "deleted peer port");
    });

    it("a port elsewhere that joins a remote group of a local port's rules comes in, and goes when it leaves", async () => {
      await waitFor(() => cache.synced(), 10_000, "subscriptions based");
      expect(cache.get(KIND.port, topo.c1)).toBeUndefined(); // netC is out of scope
      await api.update("lport", topo.c1, { securityGroups: [topo.sg2] });
      await waitFor(() => cache.get(KIND.port, topo.c1), 10_000, "the new member of sg2");
      // its chassis too (the rules match its addresses; the chassis is fetched by key)
      await waitFor(() => cache.get(KIND.chassis, `${topo.t}-h4`), 10_000, "the member's chassis");
      expect(cache.get(KIND.network, topo.netC)).toBeUndefined();
      await api.update("lport", topo.c1, { securityGroups: [] });
      await waitFor(() => !cache.get(KIND.port, topo.c1), 10_000, "the member that left evicted");
    });

    it("removing the last local port evicts what it pulled in and unsubscribes", async () => {
      await cache.addLocalPort(topo.c1);
      expect(keys(cache, KIND.network)).toEqual([topo.netA, topo.netB, topo.netC].sort());
      const seen = events.length;
      await cache.removeLocalPort(topo.a1);
      // netC stays: c1 is still local; the rest of a1's world is gone
      expect(keys(cache, KIND.network)).toEqual([topo.netC]);
      expect(keys(cache, KIND.router)).toEqual([]);
      expect(keys(cache, KIND.secgroup)).toEqual([]);
      expect(events.slice(seen).some((e) => e.action === "removed" && e.key === topo.netA)).toBe(true);
      if (env.distribution.mode === "pubsub") {
        expect(cache.topics()).toContain(networkTopic(topo.netC));
        expect(cache.topics()).not.toContain(networkTopic(topo.netA));
        expect(cache.topics()).not.toContain(routerTopic(topo.router));
      }
      await cache.removeLocalPort(topo.c1);
      for (const kind of [KIND.network, KIND.subnet, KIND.port, KIND.router, KIND.secgroup, KIND.chassis]) {
        expect(keys(cache, kind), kind).toEqual([]);
      }
      if (env.distribution.mode === "pubsub") expect(cache.topics()).toEqual([TOPIC_CHASSIS]);
      // an evicted network's changes no longer reach the cache
      const rev = (await api.update("lswitch", topo.netA, { name: "a-after-eviction" })).modRevision;
      // in watch mode the watermark passes the rename once it was seen (and ignored); in pub/sub
      // mode nothing of it is even sent to this cache — a heartbeat moves the watermark past it
      await waitFor(() => cache.revision() >= rev, 10_000, "the cache past the rename");
      expect(cache.get(KIND.network, topo.netA)).toBeUndefined();
    });

    it("auto-recovery repairs a corrupted entry and reports it", async () => {
      await cache.addLocalPort(topo.a1);
      const quiet = await recoverOnce(cache);
      expect(quiet.repaired).toEqual([]);
      const good = cache.get(KIND.network, topo.netA)!;
      cache.corruptForTest(KIND.network, topo.netA, { bogus: true });
      const report = await recoverOnce(cache);
      expect(report.repaired).toEqual([
        {
          kind: KIND.network,
          key: topo.netA,
          problem: "corrupt",
          cachedVersion: good.version,
          storeVersion: good.version,
        },
      ]);
      expect(cache.get(KIND.network, topo.netA)!.value).toEqual(good.value);
    });

    it("auto-recovery repairs changes that never reached the cache (stale, missing, extra)", async () => {
      await waitFor(() => cache.synced(), 10_000, "the cache caught up after new topics");
      if (env.cutFeed) await env.cutFeed();
      else return void (await lostWatchEvents());
      const vA = await rename(api, "lswitch", topo.netA, "renamed-while-cut");
      const a4 = (await api.create("lport", { tenantId: topo.t, networkId: topo.netA })).key;
      await api.delete("lport", topo.a2);
      // the feed is gone: the cache still has the old picture (nothing can deliver it)
      expect(cache.get(KIND.network, topo.netA)!.version).toBeLessThan(vA);
      expect(cache.get(KIND.port, a4)).toBeUndefined();
      expect(cache.get(KIND.port, topo.a2)).toBeDefined();
      const reports: RecoveryReport[] = [];
      const rec = startRecovery(cache, 100, (r) => reports.push(r));
      try {
        await waitFor(() => reports.some((r) => r.repaired.length > 0), 5000, "a repairing pass");
      } finally {
        rec.stop();
      }
      const repaired = reports.flatMap((r) => r.repaired).map((c) => `${c.problem} ${c.kind}/${c.key}`);
      expect(repaired).toContain(`stale ${KIND.network}/${topo.netA}`);
      expect(repaired).toContain(`missing ${KIND.port}/${a4}`);
      expect(repaired).toContain(`extra ${KIND.port}/${topo.a2}`);
      expect(cache.get(KIND.network, topo.netA)!.version).toBe(vA);
    });

    /** Watch mode has no feed to cut: close the watch behind the cache's back instead. */
    async function lostWatchEvents(): Promise<void> {
      const w = (cache as unknown as { watch?: { close(): Promise<void> } }).watch;
      await w?.close();
      const vA = await rename(api, "lswitch", topo.netA, "renamed-while-unwatched");
      const a4 = (await api.create("lport", { tenantId: topo.t, networkId: topo.netA })).key;
      await api.delete("lport", topo.a2);
      expect(cache.get(KIND.network, topo.netA)!.version).toBeLessThan(vA);
      const report = await recoverOnce(cache);
      const repaired = report.repaired.map((c) => `${c.problem} ${c.kind}/${c.key}`);
      expect(repaired).toContain(`stale ${KIND.network}/${topo.netA}`);
      expect(repaired).toContain(`missing ${KIND.port}/${a4}`);
      expect(repaired).toContain(`extra ${KIND.port}/${topo.a2}`);
      expect(cache.get(KIND.port, a4)).toBeDefined();
      expect(cache.get(KIND.port, topo.a2)).toBeUndefined();
      expect((await recoverOnce(cache)).repaired).toEqual([]);
    }
  });
}

cacheSuite("embedded store + ZeroMQ pub/sub", async () => {
  const dir = makeRunDir("nb-cache");
  cleanup.add(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const store = await EmbeddedStore.open(join(dir, "db"));
  cleanup.add("embedded store", () => store.close());
  const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
  const pub = await NbPublisher.start({ store, bind, heartbeatMs: 100 });
  cleanup.add("publisher", () => pub.close());
  return { store, distribution: { mode: "pubsub", endpoint: bind }, cutFeed: () => pub.close() };
});

cacheSuite("etcd + etcd watch", async () => {
  const etcd = await EtcdCluster.start({ label: "nb-cache" });
  cleanup.add("etcd", () => etcd.stop());
  const store = await openEtcdStore(etcd.endpoints);
  cleanup.add("etcd store", () => store.close());
  return { store, distribution: { mode: "watch" } };
});
