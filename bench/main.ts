/**
 * `npm run bench -- [suite…]`: runs the named benchmark suites (all when none
 * is named). Each suite measures flowdrake side by side with the peer its issue
 * names, writes JSON to bench/results/<suite>.json and prints a short report.
 */
import { suites } from "./suites.js";

const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const unknown = wanted.filter((w) => !suites[w]);
if (unknown.length) {
  process.stderr.write(
    `unknown benchmark suite(s): ${unknown.join(", ")}; known: ${Object.keys(suites).join(", ")}\n`,
  );
  process.exit(2);
}
for (const name of wanted.length ? wanted : Object.keys(suites)) {
  process.stdout.write(`\n== bench ${name} ==\n`);
  await suites[name]!();
}
