/**
 * Tests that run the built CLI (dist/) must run what the sources say: a
 * dist/ older than any file under src/ fails the test at once, saying how to
 * rebuild, instead of quietly testing yesterday's code.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..");

function newest(dir: string): { path: string; mtimeMs: number } {
  let best = { path: dir, mtimeMs: 0 };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const n = e.isDirectory() ? newest(p) : { path: p, mtimeMs: statSync(p).mtimeMs };
    if (n.mtimeMs > best.mtimeMs) best = n;
  }
  return best;
}

/** Throws unless dist/ was built after the newest source file. */
export function requireFreshDist(): void {
  const stamp = join(ROOT, "dist", ".tsbuildinfo");
  if (!existsSync(stamp)) throw new Error(`dist/ is not built: run 'bash scripts/setup'`);
  const built = statSync(stamp).mtimeMs;
  const src = newest(join(ROOT, "src"));
  if (src.mtimeMs > built) {
    throw new Error(
      `dist/ is older than ${src.path.slice(ROOT.length + 1)}: run 'bash scripts/setup' (it rebuilds dist/)`,
    );
  }
}
