/**
 * A small NB fixture shared by the pub/sub and publisher tests: one network
 * (netA) with a subnet, two ports on chassis h1 and h2, written straight into
 * a store; a CAS rename of netA (a change every subscriber of netA's topic
 * must see); and the check that a cache holds exactly the store's copies.
 */
import type { NbStore } from "../../src/nb/store/types.js";
import type { NbCache } from "../../src/nb/sync/cache.js";
import { KIND } from "../../src/nb/sync/refs.js";

export async function seedNetA(store: NbStore): Promise<void> {
  await store.txn([
    { op: "put", kind: KIND.network, key: "netA", value: { id: "netA", tenantId: "t1", name: "a" } },
    { op: "put", kind: KIND.subnet, key: "subA", value: { id: "subA", tenantId: "t1", networkId: "netA" } },
    {
      op: "put",
      kind: KIND.port,
      key: "pA1",
      value: {
        id: "pA1",
        tenantId: "t1",
        networkId: "netA",
        chassis: "h1",
        fixedIps: [{ subnetId: "subA" }],
      },
    },
    {
      op: "put",
      kind: KIND.port,
      key: "pA2",
      value: { id: "pA2", tenantId: "t1", networkId: "netA", chassis: "h2" },
    },
    { op: "put", kind: KIND.chassis, key: "h1", value: { name: "h1" } },
    { op: "put", kind: KIND.chassis, key: "h2", value: { name: "h2" } },
  ]);
}

/** Rename netA (compare-and-swap); resolves with its new version. */
export async function renameNetA(store: NbStore, name: string): Promise<number> {
  const cur = (await store.get(KIND.network, "netA"))!;
  const r = await store.txn([
    {
      op: "put",
      kind: KIND.network,
      key: "netA",
      value: { ...(cur.value as object), name },
      expectVersion: cur.version,
    },
  ]);
  return r.versions[0]!;
}

/** Every object of `kinds` the cache holds equals the store's copy. */
export async function cacheMatchesStore(
  store: NbStore,
  cache: NbCache,
  kinds: string[] = [KIND.network, KIND.subnet, KIND.port, KIND.chassis],
): Promise<boolean> {
  for (const kind of kinds) {
    for (const o of cache.list(kind)) {
      const s = await store.get(kind, o.key);
      if (!s || s.version !== o.version || JSON.stringify(s.value) !== JSON.stringify(o.value)) return false;
    }
  }
  return true;
}
