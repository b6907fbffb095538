#!/usr/bin/env node
/* global process, console */
/**
 * `npm run mutate -- <path>...`: mutation-test a module with StrykerJS.
 *
 * Each path is a directory (every .ts file under it is mutated) or a file, a
 * file optionally with a line range (`src/x.ts:120-180`: only the mutants that
 * start on those lines, e.g. the code changed since the file's last run). The
 * tests run against each mutant are the unit tests (test/unit) that import a
 * mutated path, so a module is judged by its own tests and no mutant starts
 * OVS or etcd; `--tests <glob>` names them instead. Any other option goes to
 * `stryker run` unchanged (for example `--incremental` or `--concurrency 1`).
 *
 * Mutants share one module graph between runs, which is fast but cannot
 * switch on a static mutant (one that acts only while a module loads, such as
 * a change to a module-level table): those are ignored, and `--static` tests
 * every mutant, static ones included, each run in a fresh module graph.
 * The score, and every surviving mutant, is printed; the HTML and JSON reports
 * (and the incremental file) go to .cache/mutation/<mutated paths>/, so runs
 * of different modules in one checkout keep theirs apart.
 *
 * The TypeScript checker (which drops mutants that do not compile) checks
 * only the mutated files and those tests, through a tsconfig written next to
 * this script for the run and removed after it: a half-finished change
 * elsewhere in the tree does not stop a module's mutation run.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");
const args = process.argv.slice(2);
const paths = [];
const passThrough = [];
let tests;
let isolated = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--tests") tests = args[++i];
  else if (a === "--static") isolated = true;
  else if (a.startsWith("-")) {
    passThrough.push(a);
    if (args[i + 1] !== undefined && !args[i + 1].startsWith("-") && !existsSync(resolve(root, args[i + 1])))
      passThrough.push(args[++i]);
  } else paths.push(a);
}
if (paths.length === 0) {
  console.error("usage: npm run mutate -- <directory or file>... [--tests <glob>] [stryker options]");
  process.exit(2);
}

const mutate = [];
const files = [];
const stems = [];
for (const arg of paths) {
  const [, p, range = ""] = /^(.*?)(:\d+-\d+)?$/.exec(arg);
  const abs = resolve(root, p);
  if (!existsSync(abs)) {
    console.error(`mutate: ${p} does not exist`);
    process.exit(2);
  }
  const rel = relative(root, abs).replaceAll("\\", "/");
  if (statSync(abs).isDirectory()) {
    if (range) {
      console.error(`mutate: a line range (${range}) needs a file, not the directory ${p}`);
      process.exit(2);
    }
    mutate.push(`${rel}/**/*.ts`);
    files.push(`${rel}/**/*.ts`);
    stems.push(`${rel}/`);
  } else {
    mutate.push(`${rel}${range}`);
    files.push(rel);
    stems.push(rel.replace(/\.ts$/, "."));
  }
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".test.ts") ? [join(dir, e.name)] : [],
  );
}
let testFiles;
if (tests && /[{}]/.test(tests)) {
  // the vitest runner does not expand braces: it would run the whole suite, integration tests included
  console.error("mutate: --tests takes a comma-separated list of files or globs; braces are not expanded");
  process.exit(2);
}
if (tests) testFiles = tests.split(",").filter(Boolean);
else {
  testFiles = walk(join(root, "test/unit"))
    .filter((f) => stems.some((s) => readFileSync(f, "utf8").includes(s)))
    .map((f) => relative(root, f).replaceAll("\\", "/"));
  if (testFiles.length === 0) {
    console.error(
      `mutate: no unit test under test/unit imports ${stems.join(" or ")}; name them with --tests <glob>`,
    );
    process.exit(2);
  }
}
console.log(`mutating ${mutate.join(", ")}\nwith ${testFiles.join(", ")}`);
// Per run, so that two runs in one checkout keep their own checker config and reports.
const tsconfig = `test/mutation/tsconfig.run.${process.pid}.json`;
const out = `.cache/mutation/${stems.map((s) => s.replace(/[./]$/, "").replaceAll("/", "-")).join("+")}`;
writeFileSync(
  join(root, tsconfig),
  JSON.stringify({
    extends: "../../tsconfig.json",
    include: [...files, ...testFiles].map((f) => `../../${f}`),
  }),
);
let status;
try {
  const r = spawnSync(
    join(root, "node_modules/.bin/stryker"),
    [
      "run",
      "stryker.config.mjs",
      "--mutate",
      mutate.join(","),
      "--testFiles",
      testFiles.join(","),
      ...passThrough,
    ],
    {
      cwd: root,
      stdio: "inherit",
      env: {
        ...process.env,
        FLOWDRAKE_MUTATE_TSCONFIG: tsconfig,
        FLOWDRAKE_MUTATE_OUT: out,
        FLOWDRAKE_MUTATE_STATIC: isolated ? "1" : "0",
      },
    },
  );
  status = r.status ?? 1;
} finally {
  rmSync(join(root, tsconfig), { force: true });
}
process.exit(status);
