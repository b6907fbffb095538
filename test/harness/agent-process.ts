/**
 * `flowdrake agent` as a real child process (the built CLI in dist/), for
 * tests that must kill it the hard way. Output goes to a log file in the
 * caller's run dir; `ready()` waits for the agent's "ready" line.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { requireFreshDist } from "./dist.js";
import { waitFor } from "./index.js";

const CLI = join(import.meta.dirname, "../../dist/src/cli/main.js");

export class AgentProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {}

  static start(args: string[], opts: { logPath: string; netns?: string }): AgentProcess {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'bash scripts/setup' (it builds dist/)`);
    requireFreshDist();
    const fd = openSync(opts.logPath, "a");
    const argv = [process.execPath, CLI, "agent", ...args];
    const full = opts.netns ? ["ip", "netns", "exec", opts.netns, ...argv] : argv;
    const child = spawn(full[0]!, full.slice(1), {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, FLOWDRAKE_LOG_LEVEL: process.env.FLOWDRAKE_AGENT_LOG_LEVEL ?? "info" },
    });
    closeSync(fd);
    return new AgentProcess(child, opts.logPath);
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  /** Wait for the n-th "ready" line (n counts restarts writing to the same log). */
  async ready(n = 1, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => {
        if (this.child.exitCode !== null)
          throw new Error(`agent exited ${this.child.exitCode}:\n${this.log()}`);
        return (this.log().match(/: ready \(/g) ?? []).length >= n;
      },
      timeoutMs,
      `agent ready (log ${this.logPath})`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- agent log ---\n${this.log().slice(-4000)}`);
    });
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill(signal);
    await exited;
  }
}
