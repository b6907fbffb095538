/**
 * `flowdrake publisher`: the standalone NB change publisher, as Dragonflow's
 * df-publisher-service was. It follows the NB store's own change stream (an
 * etcd watch, or a read-only follower of an embedded store's log) and
 * republishes every change on a ZeroMQ PUB socket, on the tenant/network/
 * router topics agents subscribe to (src/nb/pubsub).
 *
 * What keeps subscribers right across failures:
 *   - the etcd driver resumes its watch from the last delivered revision after
 *     a reconnect or a leader change, so nothing committed is skipped;
 *   - each start of this process draws a new publisher id and every message
 *     carries a per-topic sequence number; subscribers that see a new id or a
 *     skipped number resync from the store (heartbeats on `hb/` carry the id
 *     and the last numbers, so an idle subscriber notices too);
 *   - a store that is unreachable at start is retried until it answers.
 *
 * Security: `--db` takes a secured etcd URL like every command
 * (`etcds://…?ca=&cert=&key=&user=`, password in FLOWDRAKE_NB_PASSWORD or
 * password-file=); a store that refuses our certificate or password is not
 * retried — the command exits 1 saying why. `--curve-key FILE` makes the
 * socket a CURVE server (src/nb/pubsub/curve.ts) with that key pair, and
 * `--curve-authorized-keys FILE|DIR` admits only the subscribers listed.
 * `flowdrake publisher keygen --out PREFIX` writes a key pair (PREFIX.pub to
 * hand out, PREFIX.key mode 0600) and prints the public key.
 *
 * On start it prints one JSON line on stdout:
 *   {"event":"ready","publisher":"<id>","bind":"tcp://…","revision":N}
 * SIGTERM/SIGINT close the socket and exit 0. `--fault-injection` makes
 * SIGUSR2 drop the next change message (for testing gap detection).
 */
import { Option, type Command } from "commander";
import { loadCurveServer, writeKeyPair } from "../nb/pubsub/curve.js";
import { NbPublisher } from "../nb/pubsub/publisher.js";
import { StoreError } from "../nb/store/errors.js";
import { openStore, resolveStoreUrl } from "../nb/store/open.js";
import type { NbStore } from "../nb/store/types.js";
import { UsageError, errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";

const log = logger("publisher");

interface PublisherOpts {
  db?: string;
  bind: string;
  heartbeatMs: string;
  faultInjection?: boolean;
  curveKey?: string;
  curveAuthorizedKeys?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Open the store, retrying while it is unreachable; undefined when stopped first. */
async function openWhenReachable(url: string, stopped: () => boolean): Promise<NbStore | undefined> {
  for (let attempt = 0; !stopped(); attempt++) {
    try {
      return await openStore(url, { readOnly: true });
    } catch (err) {
      if (err instanceof UsageError) throw err;
      // a refused certificate or password does not mend by waiting
      if (err instanceof StoreError && err.context.refused !== undefined) throw err;
      if (attempt === 0 || attempt % 10 === 0)
        log.warn({ db: url, err: errorMessage(err) }, "NB store not reachable yet, retrying");
      await sleep(Math.min(200 * 2 ** attempt, 2000));
    }
  }
  return undefined;
}

async function runPublisher(o: PublisherOpts): Promise<void> {
  const heartbeatMs = Number(o.heartbeatMs);
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 10)
    throw new UsageError(`--heartbeat-ms ${o.heartbeatMs}: expected an integer >= 10`);
  if (!/^(tcp|ipc|inproc):\/\//.test(o.bind))
    throw new UsageError(`--bind ${o.bind}: expected a ZeroMQ endpoint such as tcp://127.0.0.1:5555`);
  const url = resolveStoreUrl(o.db);
  const curve = loadCurveServer(o.curveKey, o.curveAuthorizedKeys);

  let stop!: () => void;
  let stopped = false;
  const stopping = new Promise<void>((r) => (stop = r));
  const onSignal = (sig: string) => {
    log.info({ signal: sig }, "stopping");
    stopped = true;
    stop();
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
  const keepAlive = setInterval(() => undefined, 1 << 30);

  try {
    const store = await openWhenReachable(url, () => stopped);
    if (!store) return;
    try {
      const pub = await NbPublisher.start({ store, bind: o.bind, heartbeatMs, curve });
      try {
        if (o.faultInjection) {
          process.on("SIGUSR2", () => {
            log.warn("fault injection: dropping the next change message");
            pub.dropNext(1);
          });
        }
        process.stdout.write(
          `${JSON.stringify({ event: "ready", publisher: pub.id, bind: o.bind, revision: pub.revision, db: url, curve: curve ? curve.publicKey : null })}\n`,
        );
        await stopping;
      } finally {
        await pub.close();
      }
    } finally {
      await store.close();
    }
  } finally {
    clearInterval(keepAlive);
  }
}

function keygen(o: { out: string; force?: boolean }): void {
  const r = writeKeyPair(o.out, undefined, { force: o.force ?? false });
  process.stdout.write(
    `${JSON.stringify({ event: "keygen", publicKey: r.publicKey, public: r.pub, secret: r.key })}\n`,
  );
}

export function register(program: Command): void {
  const cmd = program
    .command("publisher")
    .description(
      "forward NB store changes (etcd watch or embedded log) to a ZeroMQ PUB socket for agents (df-publisher-service)",
    )
    .option(
      "--db <url>",
      "embedded:/path, etcd://host:port[,host:port] or etcds://…?ca=&cert=&key=&user= (env FLOWDRAKE_NB; etcd password in FLOWDRAKE_NB_PASSWORD)",
    )
    .option("--bind <endpoint>", "ZeroMQ endpoint to publish on", "tcp://127.0.0.1:5555")
    .option("--heartbeat-ms <ms>", "heartbeat period on topic hb/", "1000")
    .option("--curve-key <file>", "CURVE: encrypt, with this key pair (made by `publisher keygen`)")
    .option(
      "--curve-authorized-keys <file|dir>",
      "CURVE: admit only subscribers whose public key is listed (a file of keys, or a directory of .pub files)",
    )
    .addOption(new Option("--fault-injection", "SIGUSR2 drops the next change message (tests)").hideHelp())
    .action((o: PublisherOpts) => runPublisher(o));
  cmd
    .command("keygen")
    .description("write a CURVE key pair: PREFIX.pub (give to peers) and PREFIX.key (secret, mode 0600)")
    .requiredOption("--out <prefix>", "path prefix of the two files")
    .option("--force", "overwrite existing files")
    .action((o: { out: string; force?: boolean }) => keygen(o));
}
