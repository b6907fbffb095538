/**
 * `flowdrake agent --config FILE`: run the node agent (src/controller/agent.ts)
 * until SIGINT/SIGTERM. `flowdrake pipeline`: print the pipeline's table map.
 *
 * Every config key is also a flag, derived from the config schema so that
 * the two cannot drift: `tunnelIp` → `--tunnel-ip`, nested keys by their
 * path (`dhcp.ratePps` → `--dhcp-rate-pps`, `offload.hwOffload` →
 * `--offload-hw-offload`), lists comma-separated (`--apps l2,tunnel`), maps
 * as repeatable `KEY=VALUE` (`--bridge-mappings physnet1=br-ex`). `--db` is
 * the flag of `nb`, as everywhere else in the CLI. Flags win over the file;
 * `--log-level` (here or before the command) wins over the file and
 * FLOWDRAKE_LOG_LEVEL.
 *
 * A stop is bounded: the agent gets ~2 s to finish (flows stay installed
 * either way) and a second signal exits at once.
 */
import type { Command } from "commander";
import { z } from "zod";
import { Agent } from "../controller/agent.js";
import { agentConfigSchema, loadAgentConfig } from "../controller/config.js";
import { formatPipeline, PIPELINE } from "../datapath/index.js";
import { UsageError } from "../util/errors.js";
import { setLogLevel, logger } from "../util/log.js";

const log = logger("cli-agent");

/** How long a stop may take before the process exits anyway. */
const STOP_DEADLINE_MS = 2000;

type Shape = "string" | "number" | "boolean" | "list" | "map";

export interface ConfigFlag {
  /** Path in the config: ["dhcp", "ratePps"]. */
  path: string[];
  flag: string;
  shape: Shape;
}

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function unwrap(t: z.ZodType): z.ZodType {
  let cur: z.ZodType = t;
  for (;;) {
    const def = (cur as unknown as { def: { type: string; innerType?: z.ZodType; in?: z.ZodType } }).def;
    if ((def.type === "default" || def.type === "optional" || def.type === "prefault") && def.innerType) {
      cur = def.innerType;
    } else if (def.type === "pipe" && def.in) cur = def.in;
    else return cur;
  }
}

/** One flag per config key, nested objects flattened. */
export function configFlags(schema: z.ZodObject = agentConfigSchema): ConfigFlag[] {
  const out: ConfigFlag[] = [];
  const walk = (obj: z.ZodObject, prefix: string[]): void => {
    for (const [key, raw] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
      const t = unwrap(raw);
      const type = (t as unknown as { def: { type: string } }).def.type;
      const path = [...prefix, key];
      if (type === "object") {
        walk(t as z.ZodObject, path);
        continue;
      }
      const shape: Shape =
        type === "number"
          ? "number"
          : type === "boolean"
            ? "boolean"
            : type === "array"
              ? "list"
              : type === "record"
                ? "map"
                : "string";
      const flag = key === "nb" && prefix.length === 0 ? "db" : path.map(kebab).join("-");
      out.push({ path, flag, shape });
    }
  };
  walk(schema, []);
  return out;
}

function optionKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function convert(f: ConfigFlag, v: unknown): unknown {
  switch (f.shape) {
    case "number": {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new UsageError(`--${f.flag}: ${String(v)} is not a number`);
      return n;
    }
    case "boolean":
      if (v === true || v === "true") return true;
      if (v === false || v === "false") return false;
      throw new UsageError(`--${f.flag}: expected true or false, got ${String(v)}`);
    case "list":
      return String(v)
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    case "map": {
      const out: Record<string, string> = {};
      for (const kv of v as string[]) {
        const i = kv.indexOf("=");
        if (i <= 0) throw new UsageError(`--${f.flag}: expected KEY=VALUE, got ${kv}`);
        out[kv.slice(0, i)] = kv.slice(i + 1);
      }
      return out;
    }
    case "string":
      return v;
  }
}

/** The config overrides the given command-line options stand for. */
export function flagsToConfig(opts: Record<string, unknown>, flags = configFlags()): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of flags) {
    const v = opts[optionKey(f.flag)];
    if (v === undefined) continue;
    let node = out;
    for (const k of f.path.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[f.path.at(-1)!] = convert(f, v);
  }
  return out;
}

export function register(program: Command): void {
  const cmd = program
    .command("agent")
    .description("run the node agent: bind local ports, sync the NB, program br-int")
    .option("-c, --config <file>", "YAML config file (see examples/agent.yaml); flags win over it");
  for (const f of configFlags()) {
    const what = f.path.join(".");
    if (f.shape === "map") {
      cmd.option(
        `--${f.flag} <key=value>`,
        `config ${what} (repeatable)`,
        (v: string, acc: string[] = []) => [...acc, v],
      );
    } else if (f.shape === "boolean") cmd.option(`--${f.flag} <true|false>`, `config ${what}`);
    else cmd.option(`--${f.flag} <${f.shape === "list" ? "a,b,…" : "value"}>`, `config ${what}`);
  }
  cmd.action(async (opts: Record<string, unknown>, self: Command) => {
    const overrides = flagsToConfig(opts);
    const globalLevel = self.optsWithGlobals().logLevel as string | undefined;
    if (globalLevel && overrides.logLevel === undefined) overrides.logLevel = globalLevel;
    const config = loadAgentConfig(opts.config as string | undefined, overrides, {
      envLogLevel: process.env.FLOWDRAKE_LOG_LEVEL,
    });
    setLogLevel(config.logLevel);
    const agent = await Agent.start(config);
    process.stdout.write(
      `flowdrake agent ${config.chassis}: ready (${agent.lastPass?.localPorts ?? 0} local ports, ` +
        `${agent.lastPass?.flows ?? 0} flows${agent.metricsPort ? `, metrics on :${agent.metricsPort}` : ""})\n`,
    );
    const sig = await new Promise<string>((resolve) => {
      process.once("SIGINT", () => resolve("SIGINT"));
      process.once("SIGTERM", () => resolve("SIGTERM"));
    });
    log.info({ signal: sig }, "stopping agent (flows stay installed)");
    const again = (s: string) => {
      log.warn({ signal: s }, "second signal: exiting now");
      process.exit(1);
    };
    process.once("SIGINT", again);
    process.once("SIGTERM", again);
    const deadline = setTimeout(() => {
      log.warn({ deadlineMs: STOP_DEADLINE_MS }, "stop took too long: exiting (flows stay installed)");
      process.exit(0);
    }, STOP_DEADLINE_MS);
    deadline.unref();
    await agent.stop();
    clearTimeout(deadline);
    // Handles of an unreachable store or switch must not keep the process alive.
    process.exit(0);
  });

  program
    .command("pipeline")
    .description("print the OpenFlow pipeline: table ids, names, stages, miss behaviour, purpose")
    .option("--json", "machine-readable")
    .action((o: { json?: boolean }) => {
      process.stdout.write(o.json ? `${JSON.stringify(PIPELINE, null, 2)}\n` : `${formatPipeline()}\n`);
    });
}
