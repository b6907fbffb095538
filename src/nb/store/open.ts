/**
 * `openStore(url)`: one place that turns a `--db` URL into an NB store.
 *
 *   embedded:/path/to/dir          the in-process store with a durable log
 *   etcd://host:port[,host:port…]  an etcd cluster (driver loaded on demand)
 *
 * The default, for a single node and the demo, is `embedded:/var/lib/flowdrake/nb`;
 * `FLOWDRAKE_NB` overrides it for every command that reads the NB.
 *
 * A secured etcd is named by the same URL, so every place that takes one (the
 * `nb` CLI's `--db`, `flowdrake publisher --db`, the agent's `nb` key,
 * FLOWDRAKE_NB) can use it:
 *
 *   etcds://h:p[,h:p…]?ca=CA.pem&cert=CLIENT.pem&key=CLIENT-key.pem&user=NAME&password-file=FILE
 *
 * `etcds://` is TLS to every member (`ca=` the CA that signed the members'
 * certificates, else the system's roots; `cert=`/`key=` a client certificate
 * for members started with `--client-cert-auth`). `user=` turns on etcd's
 * own authentication (also over plain `etcd://`, with a warning: the password
 * then crosses the network in clear). The password is never part of the URL
 * (a command line is visible to every user of the host): it comes from the
 * file `password-file=` names, else from FLOWDRAKE_NB_PASSWORD. Values are
 * URL-encoded (`%2C` for a comma in a path); relative paths are relative to
 * the working directory. The files are read when the store is opened; one
 * that cannot be read is a UsageError, as is any other parameter.
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
 *   - held by a live process that will serve it but does not yet (an agent or
 *     the demo between taking the LOCK and serving nb.sock: it says so in the
 *     LOCK, see embedded.ts): retried for up to 30 s, then a StoreError naming
 *     the pid. A process that opens the directory while its holder replays
 *     the log (a second agent on one directory, an `nb` command) becomes the
 *     holder's client, however long the replay takes on a loaded machine.
 *   - held by a live process that does not serve it (a one-shot command still
 *     running, or a flowdrake from before the store was served): retried for
 *     up to 3 s, then a StoreError naming the pid.
 */
import { readFileSync } from "node:fs";
import { UsageError, errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";
import type { EmbeddedStore } from "./embedded.js";
import type { EtcdStoreOptions } from "./etcd.js";
import { StoreError } from "./errors.js";
import type { NbStore } from "./types.js";

const log = logger("nb-open");

export const DEFAULT_NB_URL = "embedded:/var/lib/flowdrake/nb";

/** File paths and the user name of a secured etcd URL (no secrets: those are read at open). */
export interface EtcdSecurity {
  tls: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
}

export type StoreUrl =
  { driver: "embedded"; dir: string } | { driver: "etcd"; endpoints: string[]; security: EtcdSecurity };

/** The environment variable that carries the etcd password. */
export const PASSWORD_ENV = "FLOWDRAKE_NB_PASSWORD";

const ETCD_PARAMS: Record<string, keyof EtcdSecurity> = {
  ca: "ca",
  cert: "cert",
  key: "key",
  user: "user",
  "password-file": "passwordFile",
};

function parseEtcdParams(url: string, query: string, tls: boolean): EtcdSecurity {
  const sec: EtcdSecurity = { tls };
  for (const [name, value] of new URLSearchParams(query)) {
    if (name === "password") {
      throw new UsageError(
        `--db ${url.replace(/([?&]password=)[^&]*/, "$1***")}: no password in the URL (every user of the host can read a command line): ` +
          `put it in ${PASSWORD_ENV} or in a file named by password-file=`,
        {},
      );
    }
    const field = ETCD_PARAMS[name];
    if (!field) {
      throw new UsageError(
        `--db ${url}: unknown parameter "${name}" (expected ${Object.keys(ETCD_PARAMS).join(", ")})`,
        { url },
      );
    }
    if (value === "") throw new UsageError(`--db ${url}: ${name}= is empty`, { url });
    (sec as unknown as Record<string, string>)[field] = value;
  }
  if (!tls && (sec.ca || sec.cert || sec.key)) {
    throw new UsageError(`--db ${url}: ca=, cert= and key= need TLS: use etcds://`, { url });
  }
  if ((sec.cert === undefined) !== (sec.key === undefined)) {
    throw new UsageError(`--db ${url}: a client certificate needs both cert= and key=`, { url });
  }
  if (sec.passwordFile && !sec.user) {
    throw new UsageError(`--db ${url}: password-file= needs user=`, { url });
  }
  return sec;
}

export function parseStoreUrl(url: string): StoreUrl {
  if (url.startsWith("embedded:")) {
    const dir = url.slice("embedded:".length).replace(/^\/\/(?=\/)/, "");
    if (dir === "") throw new UsageError(`--db ${url}: embedded needs a directory (embedded:/path)`, { url });
    return { driver: "embedded", dir };
  }
  const scheme = /^(etcds?):\/\//.exec(url)?.[1];
  if (scheme) {
    const rest = url.slice(scheme.length + 3);
    const q = rest.indexOf("?");
    const security = parseEtcdParams(url, q < 0 ? "" : rest.slice(q + 1), scheme === "etcds");
    const hosts = (q < 0 ? rest : rest.slice(0, q))
      .split(",")
      .map((h) => h.trim())
      .filter((h) => h !== "");
    if (hosts.length === 0) throw new UsageError(`--db ${url}: etcd needs host:port`, { url });
    for (const h of hosts) {
      if (!/^[^/:\s]+:\d{1,5}$/.test(h) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(h)) {
        throw new UsageError(`--db ${url}: "${h}" is not host:port`, { url });
      }
    }
    const proto = security.tls ? "https" : "http";
    return { driver: "etcd", endpoints: hosts.map((h) => `${proto}://${h}`), security };
  }
  throw new UsageError(
    `--db ${url}: expected embedded:/path, etcd://host:port[,host:port…] or etcds://host:port[,…][?ca=…&cert=…&key=…&user=…]`,
    { url },
  );
}

function readSecret(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`--db: cannot read the ${what} ${path}: ${errorMessage(err)}`, { path });
  }
}

/** The TLS material and credentials a parsed etcd URL names, read from their files and the environment. */
export function etcdStoreOptions(sec: EtcdSecurity, env: NodeJS.ProcessEnv = process.env): EtcdStoreOptions {
  const out: EtcdStoreOptions = {};
  if (sec.tls) {
    out.tls = {
      ...(sec.ca ? { ca: readSecret("CA certificate (ca=)", sec.ca) } : {}),
      ...(sec.cert ? { cert: readSecret("client certificate (cert=)", sec.cert) } : {}),
      ...(sec.key ? { key: readSecret("client key (key=)", sec.key) } : {}),
    };
  }
  if (sec.user) {
    let password: string | undefined;
    if (sec.passwordFile)
      password = readSecret("password file", sec.passwordFile)
        .toString("utf8")
        .replace(/\r?\n$/, "");
    else password = env[PASSWORD_ENV];
    if (password === undefined || password === "") {
      throw new UsageError(
        `--db: user=${sec.user} needs a password: set ${PASSWORD_ENV} or name a file with password-file=`,
        { user: sec.user },
      );
    }
    if (!sec.tls) log.warn({ user: sec.user }, "etcd password sent over plain etcd:// (use etcds://)");
    out.auth = { username: sec.user, password };
  }
  return out;
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
/** How long a live holder that said it will serve the directory (and does not yet) is waited for. */
const STARTING_HOLDER_WAIT_MS = 30_000;

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
  return openEtcdStore(u.endpoints, etcdStoreOptions(u.security));
}

async function openEmbedded(dir: string, serve: boolean): Promise<NbStore> {
  const { EmbeddedStore: Embedded } = await import("./embedded.js");
  const served = await import("./served.js");
  const socket = served.socketPathFor(dir);
  const start = Date.now();
  for (;;) {
    const client = await served.ServedStoreClient.connect(socket);
    if (client) return client;
    let store: EmbeddedStore;
    try {
      store = await Embedded.open(dir, { serves: serve });
    } catch (err) {
      const held = err instanceof StoreError ? err.context : {};
      const pid = held.pid;
      if (typeof pid !== "number") throw err;
      const starting = held.serves === true;
      if (Date.now() - start < (starting ? STARTING_HOLDER_WAIT_MS : HOLDER_WAIT_MS)) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (starting) {
        throw new StoreError(
          `NB data dir ${dir} is in use by process ${pid}, which said it would serve it on ${socket} ` +
            `but has not for ${STARTING_HOLDER_WAIT_MS / 1000} s: its log says why`,
          { dir, pid, socket },
        );
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
      store.withdrawServes();
      return store;
    }
  }
}
