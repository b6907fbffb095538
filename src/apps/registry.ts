/**
 * The names of the apps flowdrake ships: every app of the layout's registry
 * (src/datapath/cookies.ts) except the pipeline's own miss flows. The
 * factory table in index.ts is keyed by this type, so the compiler keeps the
 * registry, the factories and the config's `apps:` list in step.
 */
import type { CookieAppName } from "../datapath/index.js";

export type AppName = Exclude<CookieAppName, "pipeline">;
