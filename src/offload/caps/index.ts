/**
 * Capability discovery and the `flowdrake caps` report; see source.ts (where
 * the facts come from), discover.ts (what they mean) and report.ts (what an
 * operator should do about them).
 */
export * from "./discover.js";
export * from "./report.js";
export * from "./source.js";
