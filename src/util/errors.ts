/**
 * Typed errors. Every error flowdrake raises on purpose is a FlowdrakeError
 * with a stable `code` (for scripts and tests) and a `context` object (for the
 * log line and for a person reading it). Subclasses name the layer that failed.
 */
export type ErrorContext = Record<string, unknown>;

export class FlowdrakeError extends Error {
  readonly code: string;
  readonly context: ErrorContext;

  constructor(code: string, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** Malformed bytes or text handed to a decoder: OpenFlow, netlink, packets, JSON-RPC. */
export class DecodeError extends FlowdrakeError {
  constructor(message: string, context: ErrorContext = {}) {
    super("DECODE", message, context);
  }
}

/** A value that cannot be encoded (out of range, unknown field). */
export class EncodeError extends FlowdrakeError {
  constructor(message: string, context: ErrorContext = {}) {
    super("ENCODE", message, context);
  }
}

/** A peer closed, timed out or broke a protocol rule. */
export class ConnectionError extends FlowdrakeError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super("CONNECTION", message, context, options);
  }
}

/** Invalid user input: a CLI argument, a config file, a text flow. */
export class UsageError extends FlowdrakeError {
  constructor(message: string, context: ErrorContext = {}) {
    super("USAGE", message, context);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Log fields for an exception that is a bug somewhere (a listener's throw): its message and where it came from. */
export function errorFields(err: unknown): { err: string; stack: string | undefined } {
  return { err: errorMessage(err), stack: err instanceof Error ? err.stack : undefined };
}
