/**
 * `openStore(url)`: one place that turns a `--db` URL into an NB store.
 *
 *   embedded:/path/to/dir          the in-process store with a durable log
 *   etcd://host:port[,host:port…]  an etcd cluster (driver loaded on demand)
 *
 * The default, for a single node and the demo, is `embedded:/var/lib/flowdrake/nb`;
 * `FLOWDRAKE_NB` overrides it for every command that reads the NB.
 */
import { UsageError } from "../../util/errors.js";
import type { NbStore } from "./types.js";

export const DEFAULT_NB_URL = "embedded:/var/lib/flowdrake/nb";

export type StoreUrl = { driver: "embedded"; dir: string } | { driver: "etcd"; endpoints: string[] };

export function parseStoreUrl(url: string): StoreUrl {
  if (url.startsWith("embedded:")) {
    const dir = url.slice("embedded:".length).replace(/^\/\/(?=\/)/, "");
    if (dir === "") throw new UsageError(`--db ${url}: embedded needs a directory (embedded:/path)`, { url });
    return { driver: "embedded", dir };
  }
  if (url.startsWith("etcd://")) {
    const hosts = url
      .slice("etcd://".length)
      .split(",")
      .map((h) => h.trim())
      .filter((h) => h !== "");
    if (hosts.length === 0) throw new UsageError(`--db ${url}: etcd needs host:port`, { url });
    for (const h of hosts) {
      if (!/^[^/:\s]+:\d{1,5}$/.test(h) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(h)) {
        throw new UsageError(`--db ${url}: "${h}" is not host:port`, { url });
      }
    }
    return { driver: "etcd", endpoints: hosts.map((h) => `http://${h}`) };
  }
  throw new UsageError(`--db ${url}: expected embedded:/path or etcd://host:port[,host:port…]`, { url });
}

/** The URL to use: explicit flag, then FLOWDRAKE_NB, then the default. */
export function resolveStoreUrl(flag?: string): string {
  return flag ?? process.env.FLOWDRAKE_NB ?? DEFAULT_NB_URL;
}

export interface OpenStoreOptions {
  /**
   * Only read and watch. For `embedded:` this opens a follower that tails the
   * log another process writes (the writer keeps the directory lock); etcd
   * needs no special mode.
   */
  readOnly?: boolean;
}

export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<NbStore> {
  const u = parseStoreUrl(url);
  if (u.driver === "embedded") {
    const { openEmbeddedStore, followEmbeddedStore } = await import("./embedded.js");
    return opts.readOnly ? followEmbeddedStore(u.dir) : openEmbeddedStore(u.dir);
  }
  const { openEtcdStore } = await import("./etcd.js");
  return openEtcdStore(u.endpoints);
}
