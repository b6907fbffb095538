/* global process */
// Mutation testing (StrykerJS) for one module at a time: `npm run mutate -- <path>` (see
// test/mutation/mutate.mjs, which picks the mutated files and the unit tests that import them).
// Not part of `npm test`. Reports and the sandbox live under .cache/ (ignored by git and lint).
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "test/mutation/vitest.config.ts", related: false },
  checkers: ["typescript"],
  // test/mutation/mutate.mjs narrows the checker to the mutated files and their tests.
  tsconfigFile: process.env.FLOWDRAKE_MUTATE_TSCONFIG ?? "tsconfig.json",
  coverageAnalysis: "perTest",
  // Mutants run in one shared module graph (test/mutation/vitest.config.ts), so a mutant that acts
  // only while a module loads (a module-level table) cannot be switched on: such static mutants are
  // ignored unless `--static` asks for isolated, much slower runs (test/mutation/mutate.mjs).
  ignoreStatic: process.env.FLOWDRAKE_MUTATE_STATIC !== "1",
  concurrency: 2,
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress", "html", "json"],
  // test/mutation/mutate.mjs names a directory per mutated module.
  htmlReporter: { fileName: `${process.env.FLOWDRAKE_MUTATE_OUT ?? ".cache/mutation"}/report.html` },
  jsonReporter: { fileName: `${process.env.FLOWDRAKE_MUTATE_OUT ?? ".cache/mutation"}/report.json` },
  clearTextReporter: { allowColor: false, logTests: false },
  tempDirName: ".cache/stryker-tmp",
  incrementalFile: `${process.env.FLOWDRAKE_MUTATE_OUT ?? ".cache/mutation"}/incremental.json`,
  // The caps fixtures are sysfs trees whose symlinks dangle on purpose; the sandbox copy cannot take them
  // (a module whose tests read them needs --inPlace, which mutates the work tree itself).
  ignorePatterns: [".cache", "dist", "bench/results", "native/build", "deploy", "test/fixtures/caps"],
  cleanTempDir: true,
};
