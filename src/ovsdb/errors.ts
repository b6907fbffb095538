/**
 * Errors the OVSDB client raises on purpose. A JSON-RPC method the server
 * refused is an OvsdbRpcError (RFC 7047 §4.1: the "error" member of a
 * response); a transaction whose operation or commit failed is an
 * OvsdbTxnError naming the failing operation (index into the ops array, or
 * ops.length when the commit itself failed, e.g. "constraint violation" or
 * "referential integrity violation"). Transport and framing failures are the
 * shared ConnectionError / DecodeError.
 */
import { FlowdrakeError } from "../util/errors.js";

export class OvsdbRpcError extends FlowdrakeError {
  constructor(
    readonly method: string,
    readonly error: unknown,
  ) {
    const text =
      typeof error === "string"
        ? error
        : typeof error === "object" && error && "error" in error
          ? String((error as { error: unknown }).error)
          : JSON.stringify(error);
    super("OVSDB_RPC", `ovsdb ${method} failed: ${text}`, { method, error });
  }
}

/** The RFC 7047 §4.1.3 error strings, plus the ones ovsdb-server adds. */
export type OvsdbTxnErrorName =
  | "referential integrity violation"
  | "constraint violation"
  | "resources exhausted"
  | "I/O error"
  | "duplicate uuid-name"
  | "domain error"
  | "range error"
  | "timed out"
  | "not supported"
  | "aborted"
  | "not owner"
  | (string & {});

export class OvsdbTxnError extends FlowdrakeError {
  constructor(
    readonly error: OvsdbTxnErrorName,
    readonly details: string | undefined,
    /** Index of the failing operation; equals ops.length when the commit failed. */
    readonly opIndex: number,
    readonly op: unknown,
    readonly results: unknown[],
  ) {
    super(
      "OVSDB_TXN",
      `ovsdb transaction failed at ${op ? `op ${opIndex} (${(op as { op?: string }).op})` : "commit"}: ${error}${details ? ` (${details})` : ""}`,
      { error, details, opIndex, op },
    );
  }
}
