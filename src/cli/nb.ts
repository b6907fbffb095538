/**
 * `flowdrake nb`: write and read the northbound model from the command line.
 * Each object noun (network, subnet, port, router, secgroup, fip, snat,
 * chassis, tenant) gets create/list/show/update/delete; fields are given as
 * a JSON object (`--set '{"cidr":"10.0.0.0/24"}'`). Exit codes: 0 ok,
 * 1 failed or not found, 2 validation/usage error, 4 version conflict.
 * NOTE: `nb apply` and per-field flags are not implemented yet.
 */
import type { Command } from "commander";
import { NbApi } from "../nb/api.js";
import { KINDS, OBJECT_KINDS } from "../nb/model/index.js";
import { ConflictError } from "../nb/store/errors.js";
import { openStore, resolveStoreUrl } from "../nb/store/open.js";
import { UsageError } from "../util/errors.js";

interface NbOpts {
  db?: string;
  json?: boolean;
  set?: string;
  version?: string;
  tenant?: string;
}

function parseSet(s: string | undefined): Record<string, unknown> {
  if (!s) return {};
  try {
    const v: unknown = JSON.parse(s);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`--set must be a JSON object: ${(err as Error).message}`);
  }
}

async function withApi<T>(opts: NbOpts, fn: (api: NbApi) => Promise<T>): Promise<void> {
  const store = await openStore(resolveStoreUrl(opts.db));
  try {
    const out = await fn(new NbApi(store));
    if (out !== undefined) process.stdout.write(`${JSON.stringify(out, null, opts.json ? 2 : 0)}\n`);
  } catch (err) {
    if (err instanceof ConflictError) {
      process.stderr.write(`flowdrake: ${err.message}\n`);
      process.exitCode = 4;
      return;
    }
    throw err;
  } finally {
    await store.close();
  }
}

export function register(program: Command): void {
  const nb = program.command("nb").description("write and read the northbound model");
  for (const kind of OBJECT_KINDS) {
    const noun = nb.command(KINDS[kind].noun).description(`${KINDS[kind].noun} objects (store kind ${kind})`);
    const common = (c: Command): Command =>
      c
        .option("--db <url>", "embedded:/path or etcd://host:port[,host:port] (env FLOWDRAKE_NB)")
        .option("--json", "JSON output");
    common(noun.command("create").option("--set <json>", "fields as a JSON object")).action((o: NbOpts) =>
      withApi(o, (api) => api.create(kind, parseSet(o.set))),
    );
    common(noun.command("list").option("--tenant <id>", "only this tenant")).action((o: NbOpts) =>
      withApi(o, (api) => api.list(kind, o.tenant ? { tenantId: o.tenant } : {})),
    );
    common(noun.command("show").argument("<id>")).action((id: string, o: NbOpts) =>
      withApi(o, (api) => api.get(kind, id)),
    );
    common(
      noun
        .command("update")
        .argument("<id>")
        .option("--set <json>", "fields")
        .option("--version <n>", "CAS version"),
    ).action((id: string, o: NbOpts) =>
      withApi(o, (api) =>
        api.update(kind, id, parseSet(o.set), o.version ? { expectVersion: Number(o.version) } : {}),
      ),
    );
    common(noun.command("delete").argument("<id>").option("--version <n>", "CAS version")).action(
      (id: string, o: NbOpts) =>
        withApi(o, async (api) => {
          await api.delete(kind, id, o.version ? { expectVersion: Number(o.version) } : {});
          return { deleted: id };
        }),
    );
  }
}
