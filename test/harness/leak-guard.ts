/**
 * Loaded before every test file (vitest `setupFiles`): after the file's own
 * hooks have run, nothing it acquired under its own name may be left — no run
 * dir under the sandbox root and no network namespace named after this worker.
 * A leftover fails the file, naming what was left; otherwise it would stay until
 * some later run's `sweepStale`, and two workers sweeping it at once is how a
 * CI run once failed. `FLOWDRAKE_KEEP_SANDBOX=1` keeps run dirs on purpose and
 * turns the check off.
 */
import { existsSync, readdirSync } from "node:fs";
import { afterAll } from "vitest";
import { ownerOf, sandboxRoot } from "../../src/sandbox/rundir.js";
import { run } from "../../src/util/exec.js";

afterAll(async () => {
  if (process.env.FLOWDRAKE_KEEP_SANDBOX) return; // kept on purpose, for a post-mortem
  const mine = (name: string): boolean => ownerOf(name) === process.pid;
  const dirs = existsSync(sandboxRoot) ? readdirSync(sandboxRoot).filter(mine) : [];
  const { stdout } = await run(["ip", "netns", "list"], { allowFailure: true });
  const netns = stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith("fd") && mine(n));
  if (dirs.length || netns.length) {
    throw new Error(
      `this test file left behind run dirs [${dirs.join(", ")}] under ${sandboxRoot} ` +
        `and namespaces [${netns.join(", ")}]: register their removal when acquiring them`,
    );
  }
});
