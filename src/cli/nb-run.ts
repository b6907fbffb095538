/**
 * What every `flowdrake nb` command shares: the exit codes scripts rely on
 * (and the help text that documents them), the mapping from the NB layer's
 * typed errors to those codes and to a one-line message, `--db`/`--json`,
 * `--wait`, and `withApi` — open the store, run, print, close, never throw.
 *
 * `--wait[=SECONDS]` (writing commands): after the write commits, wait until
 * every live chassis' agent has realised it — installed its flows — like
 * OVN's `--wait=hv` (src/nb/realised.ts). The revision waited for is the
 * highest one the command's own transactions committed at. When the time
 * (default 30 s) runs out, the write stays committed and the command exits
 * 6, naming each chassis that has not realised it and where it is.
 */
import type { Command } from "commander";
import { NbApi } from "../nb/api.js";
import type { MalformedObject } from "../nb/api.js";
import {
  KINDS,
  MalformedObjectError,
  NotFoundError,
  type ObjectKind,
  ValidationError,
} from "../nb/model/index.js";
import { WaitTimeoutError, waitRealised } from "../nb/realised.js";
import { ConflictError, LockTimeoutError, StoreError } from "../nb/store/errors.js";
import { DEFAULT_NB_URL, openStore, resolveStoreUrl } from "../nb/store/open.js";
import type { NbStore } from "../nb/store/types.js";
import { FlowdrakeError, UsageError } from "../util/errors.js";

type Obj = Record<string, unknown>;

/** The exit codes of every `flowdrake nb` command. */
export const NB_EXIT = {
  ok: 0,
  invalid: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  unreachable: 5,
  notRealised: 6,
} as const;

export const NB_EXIT_HELP = `
Exit codes:
  0  ok
  1  validation or integrity error (the message names object, field and reason; nothing was written), or a malformed stored object (it can only be deleted)
  2  usage error (unknown flag, missing argument, --set not a JSON object, bad --db)
  3  not found (the object named on the command line does not exist)
  4  conflict (--version does not match, the object already exists, a concurrent writer won)
  5  store unreachable (etcd down, embedded store's holder gone or not serving it, lock timeout), or etcd refused us (TLS certificate, user/password, permission)
  6  --wait ran out: the write is committed, but not every live chassis has realised it (named)`;

export interface NbOpts {
  db?: string;
  json?: boolean;
  set?: string;
  version?: string;
  tenant?: string;
  network?: string;
  wait?: boolean | string;
  [flag: string]: unknown;
}

/** Map an error to the `nb` exit code. */
export function nbExitCode(err: unknown): number {
  if (err instanceof ValidationError)
    return err.reason.startsWith("already exists") ? NB_EXIT.conflict : NB_EXIT.invalid;
  if (err instanceof MalformedObjectError) return NB_EXIT.invalid;
  if (err instanceof WaitTimeoutError) return NB_EXIT.notRealised;
  if (err instanceof NotFoundError) return NB_EXIT.notFound;
  if (err instanceof ConflictError) return NB_EXIT.conflict;
  if (err instanceof StoreError || err instanceof LockTimeoutError) return NB_EXIT.unreachable;
  if (err instanceof UsageError) return NB_EXIT.usage;
  if (err instanceof FlowdrakeError && err.code === "USAGE") return NB_EXIT.usage;
  return NB_EXIT.invalid;
}

/** One line for stderr; a validation error reads `<noun> <key>: <field>: <reason>`. */
export function nbErrorMessage(err: unknown): string {
  if (err instanceof ValidationError) {
    const noun = Object.hasOwn(KINDS, err.kind) ? KINDS[err.kind as ObjectKind].noun : err.kind;
    return `${noun} ${err.key || "(new)"}: ${err.field ? `${err.field}: ` : ""}${err.reason}`;
  }
  if (err instanceof NotFoundError) {
    const noun = Object.hasOwn(KINDS, err.kind) ? KINDS[err.kind as ObjectKind].noun : err.kind;
    return `${noun} ${err.key} does not exist`;
  }
  if (err instanceof MalformedObjectError) {
    const noun = Object.hasOwn(KINDS, err.kind) ? KINDS[err.kind as ObjectKind].noun : err.kind;
    return (
      `${noun} ${err.key}: the stored value is malformed (${err.reason}); it cannot be shown or updated, ` +
      `only deleted: flowdrake nb ${noun} delete ${err.key}`
    );
  }
  if (err instanceof ConflictError) return `conflict: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

export function parseSet(s: string | undefined): Obj {
  if (s === undefined) return {};
  try {
    const v: unknown = JSON.parse(s);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as Obj;
  } catch (err) {
    throw new UsageError(`--set must be a JSON object: ${(err as Error).message}`);
  }
}

export function parseVersion(v: string | undefined): { expectVersion?: number } {
  if (v === undefined) return {};
  if (!/^\d+$/.test(v)) throw new UsageError(`--version must be a non-negative integer, got "${v}"`);
  return { expectVersion: Number(v) };
}

/** The `--wait` time in ms, or undefined when not asked for. */
export function parseWait(v: boolean | string | undefined): number | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return 30_000;
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) <= 0) {
    throw new UsageError(`--wait takes a number of seconds, got "${v}"`);
  }
  return Number(v) * 1000;
}

/** A store that remembers the highest revision its transactions committed at. */
function tracking(store: NbStore): { store: NbStore; revision: () => number } {
  let max = 0;
  const wrapped = Object.create(store) as NbStore;
  wrapped.txn = async (ops) => {
    const r = await store.txn(ops);
    max = Math.max(max, r.revision);
    return r;
  };
  return { store: wrapped, revision: () => max };
}

/**
 * Open the store, run `fn`, print what it returns, wait (`--wait`) for the
 * chassis to realise what it wrote, close the store; map any error to its
 * message on stderr and the exit code. Never throws.
 */
export async function withApi(opts: NbOpts, fn: (api: NbApi) => Promise<string | undefined>): Promise<void> {
  let store: NbStore | undefined;
  try {
    const waitMs = parseWait(opts.wait);
    store = await openStore(resolveStoreUrl(opts.db));
    const t = tracking(store);
    const out = await fn(new NbApi(t.store));
    if (out !== undefined) process.stdout.write(out);
    if (waitMs !== undefined && t.revision() > 0) {
      await waitRealised(store, t.revision(), { timeoutMs: waitMs });
    }
  } catch (err) {
    process.stderr.write(`flowdrake nb: ${nbErrorMessage(err)}\n`);
    process.exitCode = nbExitCode(err);
  } finally {
    await store?.close().catch(() => undefined);
  }
}

/** The `--wait` option of a writing command: `.option(...WAIT_OPTION)`. */
export const WAIT_OPTION = [
  "--wait [seconds]",
  "after the write, wait until every live chassis has realised it (default 30 s; exit 6 when not)",
] as const;

export const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/** One stderr warning per malformed stored object a command read past (the command itself goes on). */
export function warnMalformed(objs: MalformedObject[]): void {
  for (const m of objs) {
    const noun = KINDS[m.kind].noun;
    process.stderr.write(
      `flowdrake nb: warning: ${noun} ${m.key} (version ${m.version}) is malformed: ${m.malformed}; ` +
        `delete it with: flowdrake nb ${noun} delete ${m.key}\n`,
    );
  }
}

export function common(c: Command): Command {
  return c
    .option(
      "--db <url>",
      `embedded:PATH, etcd://host:port[,host:port] or etcds://host:port[,…]?ca=FILE&cert=FILE&key=FILE&user=NAME[&password-file=FILE] (env FLOWDRAKE_NB; etcd password also in FLOWDRAKE_NB_PASSWORD; default ${DEFAULT_NB_URL})`,
    )
    .option("--json", "print JSON for scripts")
    .addHelpText("after", NB_EXIT_HELP);
}
