/**
 * flowdrake's OVSDB client (RFC 7047): the JSON-RPC framer and connection, the
 * request/response client, the typed replica of monitored tables, the
 * self-healing session that keeps it current across reconnects, typed views of
 * the Open_vSwitch tables, and the handful of write helpers the agent needs.
 */
export { JsonFramer, type FramerOptions, type FramerResult } from "./framer.js";
export { JsonRpcConnection, parseRemote, type JsonRpcOptions, type Remote } from "./jsonrpc.js";
export { OvsdbRpcError, OvsdbTxnError, type OvsdbTxnErrorName } from "./errors.js";
export * from "./datum.js";
export * from "./ops.js";
export * from "./client.js";
export { Replica, applyDiff, rowEquals, type RowChange, type ChangeKind, type Snapshot } from "./replica.js";
export { OvsdbSession, type OvsdbSessionOptions, type MonitorMode } from "./session.js";
export * from "./vswitch.js";
export * from "./helpers.js";
