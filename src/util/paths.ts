/**
 * Where the flowdrake package lives, found by walking up from a module to the
 * package.json named "flowdrake" — the same answer from src/ (tests) and from
 * dist/src/ (the built CLI), so examples/ and dist/ can be located from both.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

let cached: string | undefined;

export function packageRoot(from: string = import.meta.dirname): string {
  if (cached) return cached;
  for (let d = from; ; d = dirname(d)) {
    const pj = join(d, "package.json");
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, "utf8")) as { name?: string }).name === "flowdrake")
          return (cached = d);
      } catch {
        // not ours; keep walking
      }
    }
    if (dirname(d) === d) throw new Error(`no flowdrake package.json above ${from}`);
  }
}
