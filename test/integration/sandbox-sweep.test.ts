/**
 * `sweepStale` run by several processes at once, as the test workers do when
 * each starts a sandbox: every run dir of a dead owner goes, the daemons named
 * in its pidfiles die, a live owner's dir stays, and no sweeper fails because
 * another removed a dir under it mid-walk (the CI failure this test is for:
 * `ENOENT: scandir '/tmp/flowdrake-sandbox/5527x1-sec-ovs'`).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ownerOf } from "../../src/sandbox/rundir.js";
import { requireFreshDist } from "../harness/dist.js";
import { waitFor } from "../harness/index.js";

const RUNDIR_JS = join(import.meta.dirname, "..", "..", "dist", "src", "sandbox", "rundir.js");
const SWEEPERS = 4;
const STALE_DIRS = 400;

let root: string;
const daemons: ChildProcess[] = [];

beforeAll(() => {
  requireFreshDist();
  root = mkdtempSync("/tmp/fdsweep-");
});

afterAll(() => {
  for (const d of daemons) d.kill("SIGKILL");
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("sweepStale", () => {
  it("reads owners from run dir and namespace names", () => {
    expect(ownerOf("5527x1-sec-ovs")).toBe(5527);
    expect(ownerOf("fd5527x12-under")).toBe(5527);
    expect(ownerOf("lane-5527")).toBeUndefined();
    expect(ownerOf("x1-nopid")).toBeUndefined();
  });

  it(`${SWEEPERS} processes sweeping one root at once all succeed and leave only live owners' dirs`, async () => {
    // spawnSync returns once the child has exited and been reaped: its pid names no process
    const child = spawnSync("true");
    expect(child.status).toBe(0);
    const dead = child.pid;
    for (let i = 1; i <= STALE_DIRS; i++) {
      // Deep enough that a recursive walk takes a while: that is when another
      // sweeper's rm pulls a subdir from under it.
      const deep = join(root, `${dead}x${i}-stale`, "a", "b", "c", "d");
      mkdirSync(deep, { recursive: true });
      for (let f = 0; f < 8; f++) writeFileSync(join(deep, `f${f}.log`), "x");
      if (i % 100 === 0) {
        const d = spawn("sleep", ["600"], { stdio: "ignore" });
        daemons.push(d);
        writeFileSync(join(root, `${dead}x${i}-stale`, "a", "daemon.pid"), `${d.pid}\n`);
      }
    }
    const mine = join(root, `${process.pid}x999999-live`);
    mkdirSync(mine);

    const code = `import { sweepStale } from ${JSON.stringify(RUNDIR_JS)};\nawait sweepStale();\n`;
    const results = await Promise.all(
      Array.from(
        { length: SWEEPERS },
        () =>
          new Promise<{ code: number | null; stderr: string }>((resolve) => {
            const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
              env: { ...process.env, FLOWDRAKE_SANDBOX_ROOT: root, FLOWDRAKE_LOG_LEVEL: "warn" },
              stdio: ["ignore", "ignore", "pipe"],
            });
            let stderr = "";
            child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            child.on("exit", (c) => resolve({ code: c, stderr }));
          }),
      ),
    );
    for (const r of results) expect(r, r.stderr).toEqual({ code: 0, stderr: "" });
    expect(readdirSync(root)).toEqual([`${process.pid}x999999-live`]);
    // Killed, so they exit (signalCode); a missed pidfile would leave one asleep.
    await waitFor(
      () => daemons.every((d) => d.signalCode === "SIGKILL"),
      5_000,
      "the pidfiles' daemons killed",
    );
  });
});
