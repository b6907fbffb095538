/**
 * The offload planner: ir.ts (the pipeline as the planner sees it), plan.ts
 * (the split into tc chains and OVS tables), evaluate.ts (reference evaluators
 * that prove the split decides packets as the software pipeline does).
 */
export * from "./evaluate.js";
export * from "./ir.js";
export * from "./plan.js";
