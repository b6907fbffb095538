/**
 * The datapath layout, below both the apps and the agent: the pipeline's
 * tables, the register fields, meter ids and conntrack zones, the app
 * registry with its cookie ids, and the typed flow builder. Apps import this
 * module and the packet/NB types, never the controller.
 */
export * from "./allocators.js";
export * from "./cookies.js";
export * from "./fields.js";
export * from "./flow.js";
export * from "./tables.js";
