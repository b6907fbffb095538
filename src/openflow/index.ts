/**
 * Public API of the OpenFlow 1.3 codec: messages, match fields, actions,
 * instructions, multipart bodies, name tables, the Flow model and the
 * ovs-ofctl text form. The connection layer (connection.ts, client.ts, …)
 * builds on these.
 */
export * from "./message.js";
export * from "./names.js";
export * from "./oxm.js";
export * from "./actions.js";
export * from "./instructions.js";
export * from "./multipart.js";
export * from "./flow.js";
export * from "./text.js";
