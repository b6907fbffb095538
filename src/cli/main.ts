#!/usr/bin/env node
/**
 * The `flowdrake` command. Each subcommand lives in its own module and is
 * registered from `commands.ts`; this file only wires them into commander and
 * turns typed errors into a message and an exit code scripts can rely on:
 *   0 ok · 1 operation failed · 2 usage error · 3 a component is missing
 */
import { Command, CommanderError } from "commander";
import { FlowdrakeError } from "../util/errors.js";
import { setLogLevel } from "../util/log.js";
import { commands } from "./commands.js";

export function buildProgram(): Command {
  const program = new Command("flowdrake")
    .description("Distributed SDN datapath manager for Smart-NIC hosts")
    .option("--log-level <level>", "pino log level (trace, debug, info, warn, error, silent)")
    .hook("preAction", (cmd) => {
      const level = cmd.opts().logLevel as string | undefined;
      if (level) setLogLevel(level);
    })
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof FlowdrakeError) {
    if (err.code === "USAGE" || err.code === "VALIDATION") return 2;
    if (err.code === "MISSING_COMPONENT") return 3;
    return 1;
  }
  return 1;
}

async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`flowdrake: ${msg}\n`);
    process.exitCode = exitCodeFor(err);
  }
}

await main();
