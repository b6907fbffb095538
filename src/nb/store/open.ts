/**
 * `openStore(url)`: one place that turns a `--db` URL into an NB store.
 *
 *   embedded:/path/to/dir          the in-process store with a durable log
 *   etcd://host:port[,host:port…]  an etcd cluster (driver loaded on demand)
 *
 * The default, for a single node and the demo, is `embedded:/var/lib/flowdrake/nb`;
 * `FLOWDRAKE_NB` overrides it for every command that reads the NB.
 *
 * An embedded directory has one holder process at a time (its LOCK). Opening
 * `embedded:DIR`:
 *   - free (no LOCK, or one naming a dead process): this process opens it
 *     in-process and becomes the holder; with `serve` it also serves the store
 *     on DIR/nb.sock (src/nb/store/served.ts) until it closes it. A socket a
 *     dead holder left behind is removed.
 *   - held by a live process that serves it: the served-store client, which
 *     forwards every call to the holder — same CAS, watches, locks, leases and
 *     typed errors as in-process.
 *   - held by a live process that does not serve it (a one-shot command still
 *     running, a holder still starting, or a flowdrake from before the store
 *     was served): retried for up to 3 s, then a StoreError naming the pid.
 */
import { UsageError } from "../../util/errors.js";
import { logger } from "../../util/log.js";
import type { EmbeddedStore } from "./embedded.js";
import { StoreError } from "./errors.js";
import type { NbStore } from "./types.js";

const log = logger("nb-open");

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
  /**
   * For `embedded:` when this process becomes the holder: serve the store to
   * other processes on DIR/nb.sock while it is open (closing the store stops
   * serving). For long-running holders (the agent, the demo); a failure to
   * serve is logged and the store stays usable in-process. Ignored for etcd.
   */
  serve?: boolean;
}

/** How long a live holder that does not serve the directory is waited for. */
const HOLDER_WAIT_MS = 3_000;

export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<NbStore> {
  const u = parseStoreUrl(url);
  if (u.driver === "embedded") {
    if (opts.readOnly) {
      const { followEmbeddedStore } = await import("./embedded.js");
      return followEmbeddedStore(u.dir);
    }
    return openEmbedded(u.dir, opts.serve ?? false);
  }
  const { openEtcdStore } = await import("./etcd.js");
  return openEtcdStore(u.endpoints);
}

async function openEmbedded(dir: string, serve: boolean): Promise<NbStore> {
  const { EmbeddedStore: Embedded } = await import("./embedded.js");
  const served = await import("./served.js");
  const socket = served.socketPathFor(dir);
  const deadline = Date.now() + HOLDER_WAIT_MS;
  for (;;) {
    const client = await served.ServedStoreClient.connect(socket);
    if (client) return client;
    let store: EmbeddedStore;
    try {
      store = await Embedded.open(dir);
    } catch (err) {
      const pid = err instanceof StoreError ? err.context.pid : undefined;
      if (typeof pid !== "number") throw err;
      if (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      throw new StoreError(
        `NB data dir ${dir} is in use by process ${pid}, which does not serve it on ${socket} ` +
          "(a flowdrake from before the embedded store was served?): stop that process, or use etcd",
        { dir, pid, socket },
      );
    }
    const own = served.socketPathFor(store.dir);
    served.removeStaleSocket(own);
    if (!serve) return store;
    try {
      return new served.ServingStore(store, await served.serveStore(store, own, { dir: store.dir }));
    } catch (err) {
      log.warn(
        { err, dir },
        "cannot serve the embedded NB store: other processes cannot use it while this one runs",
      );
      return store;
    }
  }
}
