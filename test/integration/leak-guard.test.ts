/**
 * The suite's leak guard (test/harness/leak-guard.ts) fails a test file that
 * leaves one of its run dirs behind, naming it, and passes one that removes
 * what it made: each fixture runs in a vitest of its own with the guard.
 */
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");

function runFixture(name: string): { status: number | null; out: string } {
  const r = spawnSync(
    join(ROOT, "node_modules", ".bin", "vitest"),
    ["run", "--config", "test/fixtures/leak-guard/vitest.config.ts"],
    { cwd: ROOT, encoding: "utf8", env: { ...process.env, LEAK_FIXTURE: name, FORCE_COLOR: "0" } },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("leak guard", { timeout: 60_000 }, () => {
  it("fails a file that leaves its run dir behind, naming the dir", () => {
    const { status, out } = runFixture("leaky");
    const leaked = /LEAKED (\S+)/.exec(out)?.[1];
    try {
      expect(leaked, out).toBeDefined();
      expect(existsSync(leaked!)).toBe(true);
      expect(status, out).toBe(1);
      const name = leaked!.split("/").pop()!;
      expect(out).toContain(`this test file left behind run dirs [${name}]`);
    } finally {
      if (leaked) rmSync(leaked, { recursive: true, force: true });
    }
  });

  it("passes a file that removes what it made", () => {
    const { status, out } = runFixture("tidy");
    expect(status, out).toBe(0);
    expect(out).toMatch(/1 passed/);
  });
});
