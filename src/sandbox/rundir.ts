/**
 * Sandboxes: every test file, every simulated host and the demo get their own
 * run directory under $FLOWDRAKE_SANDBOX_ROOT (default /tmp/flowdrake-sandbox)
 * and their own network namespaces, named after the owning process id so that
 * parallel runs never collide and leftovers of a crashed run can be recognised
 * and swept by the next one (`sweepStale`).
 *
 *   /tmp/flowdrake-sandbox/<pid>-<n>-<label>/   run dir: sockets, pidfiles, logs, db
 *   netns  fd<pid>x<n>-<label>                  namespaces (kept short: IFNAMSIZ-like limits)
 *
 * Cleanup is registered as it is acquired (`Cleanup`), runs in reverse order,
 * and every step runs even if an earlier one failed.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { logger } from "../util/log.js";

const log = logger("sandbox");

export const sandboxRoot = process.env.FLOWDRAKE_SANDBOX_ROOT ?? "/tmp/flowdrake-sandbox";

let counter = 0;

/** A unique, short token for names: pid plus a per-process counter. */
export function uniqueToken(): string {
  counter += 1;
  return `${process.pid}x${counter}`;
}

export function makeRunDir(label: string): string {
  const dir = join(sandboxRoot, `${uniqueToken()}-${label}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export class Cleanup {
  private steps: { what: string; fn: () => Promise<void> | void }[] = [];

  add(what: string, fn: () => Promise<void> | void): void {
    this.steps.push({ what, fn });
  }

  async run(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step.fn();
      } catch (err) {
        log.warn({ err, step: step.what }, "cleanup step failed");
      }
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killPidfile(path: string): void {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    if (pid > 0 && alive(pid)) process.kill(pid, "SIGKILL");
  } catch {
    // no pidfile or already gone
  }
}

/** Whether `err` is a Node system error with this `code` ("ENOENT", ...). */
function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/**
 * The owner's pid of a run dir or namespace name (`<pid>x<n>-<label>`,
 * `fd<pid>x<n>-<label>`), or undefined for a name that is not one of ours.
 */
export function ownerOf(name: string): number | undefined {
  const m = /^(?:fd)?(\d+)x\d+/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Kill the daemons recorded in a dead owner's run dir, then remove it. Every
 * test worker sweeps when it starts a sandbox, so two workers can sweep the
 * same dir at once: a dir (or a subdir) the other one removed mid-walk is what
 * both wanted, not an error. Each kills the daemons of the pidfiles it read.
 */
function sweepRunDir(dir: string): void {
  try {
    for (const f of readdirSync(dir, { recursive: true }) as string[]) {
      if (f.endsWith(".pid")) killPidfile(join(dir, f));
    }
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
  }
}

/**
 * Remove what crashed runs left behind: namespaces and run dirs whose owning
 * process is gone, and the daemons recorded in their pidfiles.
 */
export async function sweepStale(): Promise<void> {
  if (existsSync(sandboxRoot)) {
    for (const entry of readdirSync(sandboxRoot)) {
      const owner = ownerOf(entry);
      if (!owner || alive(owner)) continue;
      sweepRunDir(join(sandboxRoot, entry));
    }
  }
  const { stdout } = await run(["ip", "netns", "list"], { allowFailure: true });
  for (const line of stdout.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const owner = name.startsWith("fd") ? ownerOf(name) : undefined;
    if (owner && !alive(owner)) await run(["ip", "netns", "del", name], { allowFailure: true });
  }
}
