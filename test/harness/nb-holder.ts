/**
 * Real processes around an embedded NB store, for tests of a store that one
 * process holds while others use it. `runNodeScript` runs a small ES module
 * against the built flowdrake (dist/, see `distModule`) in a child `node`,
 * collects the JSON lines it prints on stdout as events and its stderr for
 * failure messages. `startNbHolder(dir)` is such a child that opens
 * `embedded:DIR` as the agent does (`openStore(url, { serve: true })`: it holds
 * the directory and serves it on DIR/nb.sock) — or, with `serve: false`, as a
 * flowdrake from before served stores did (`EmbeddedStore.open`: it holds the
 * directory and serves nothing) — prints `{"event":"ready","pid":N}` and keeps
 * it until SIGTERM (clean close) or SIGKILL.
 */
import { spawn } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { makeRunDir } from "../../src/sandbox/rundir.js";
import { waitFor } from "./index.js";

const ROOT = resolve(import.meta.dirname, "../..");

/** Absolute path of a built module, e.g. `distModule("src/nb/store/open.js")`, as a JS string literal. */
export function distModule(rel: string): string {
  const file = join(ROOT, "dist", rel);
  if (!existsSync(file)) throw new Error(`${file} is missing: build first (npx tsc -p tsconfig.build.json)`);
  return JSON.stringify(file);
}

export interface NodeScript {
  pid: number;
  /** Every JSON line the script printed on stdout, in order. */
  events: Record<string, unknown>[];
  waitEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  kill(signal: NodeJS.Signals): void;
}

export function runNodeScript(label: string, code: string, args: string[] = []): NodeScript {
  const dir = makeRunDir(label);
  const file = join(dir, "script.mjs");
  writeFileSync(file, code);
  const child = spawn(process.execPath, [file, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, FLOWDRAKE_LOG_LEVEL: process.env.FLOWDRAKE_LOG_LEVEL ?? "warn" },
  });
  const events: Record<string, unknown>[] = [];
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        err += `(stdout) ${line}\n`;
      }
    }
  });
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on("exit", (code, signal) => {
      done = true;
      rmSync(dir, { recursive: true, force: true });
      r({ code, signal });
    }),
  );
  return {
    pid: child.pid!,
    events,
    exited,
    stderr: () => err,
    kill: (signal) => {
      if (!done) child.kill(signal);
    },
    waitEvent: (event, timeoutMs = 30_000) =>
      waitFor(
        () => {
          if (done && !events.some((e) => e.event === event))
            throw new Error(`${label} exited before "${event}"; stderr:\n${err}`);
          return events.find((e) => e.event === event)!;
        },
        timeoutMs,
        `${label}: event "${event}" (stderr so far:\n${err})`,
      ),
  };
}

export interface NbHolder extends NodeScript {
  /** SIGTERM and wait: the holder closes the store (and stops serving) cleanly. */
  stop(): Promise<void>;
}

export async function startNbHolder(dir: string, opts: { serve?: boolean } = {}): Promise<NbHolder> {
  const serve = opts.serve ?? true;
  const code = `import { openStore } from ${distModule("src/nb/store/open.js")};
import { EmbeddedStore } from ${distModule("src/nb/store/embedded.js")};
const dir = process.argv[2];
const store = ${serve ? 'await openStore("embedded:" + dir, { serve: true })' : "await EmbeddedStore.open(dir)"};
const keep = setInterval(() => undefined, 1 << 30);
process.once("SIGTERM", async () => {
  await store.close();
  clearInterval(keep);
});
console.log(JSON.stringify({ event: "ready", pid: process.pid, store: store.constructor.name }));
`;
  const s = runNodeScript(serve ? "nb-holder" : "nb-holder-noserve", code, [dir]);
  const ready = await s.waitEvent("ready");
  const expected = serve ? "ServingStore" : "EmbeddedStore";
  if (ready.store !== expected) {
    s.kill("SIGKILL");
    throw new Error(`the holder opened ${String(ready.store)}, not ${expected} (is ${dir} held already?)`);
  }
  return {
    ...s,
    stop: async () => {
      s.kill("SIGTERM");
      await s.exited;
    },
  };
}
