/**
 * `npm run bench -- [suite…]`: runs the named benchmark suites (all when none
 * is named), each followed by its options if it takes any. Each suite
 * measures flowdrake side by side with the peer its issue names, writes JSON
 * to bench/results/<suite>.json and prints a short report.
 */
import { suites } from "./suites.js";

// Suite names, then options for the suites (`control-plane --sizes 200 --samples 5`): a word
// right after an option is that option's value, not a suite.
const argv = process.argv.slice(2);
const wanted = argv.filter(
  (a, i) => !a.startsWith("-") && !(i > 0 && argv[i - 1]!.startsWith("-") && !suites[a]),
);
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
