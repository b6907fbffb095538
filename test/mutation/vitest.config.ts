import { defineConfig, mergeConfig } from "vitest/config";
import base from "../../vitest.config.js";

// The vitest configuration for mutation runs (stryker.config.mjs). Mutants are switched on at run
// time, so the unit tests a run picks can share one module graph across mutants instead of
// re-importing it for each, which makes a run several times faster; only static mutants (those that
// act while a module loads) need isolation, and `npm run mutate -- <path> --static` asks for it.
export default mergeConfig(
  base,
  defineConfig({ test: { isolate: process.env.FLOWDRAKE_MUTATE_STATIC === "1" } }),
);
