import { FlowdrakeError } from "../../util/errors.js";

/** A transaction guard failed: the object changed (or exists, or is gone) since it was read. */
export class ConflictError extends FlowdrakeError {
  constructor(
    message: string,
    readonly kind: string,
    readonly key: string,
    readonly expectedVersion: number | undefined,
    readonly actualVersion: number,
  ) {
    super("CONFLICT", message, { kind, key, expectedVersion, actualVersion });
  }
}

/** The store cannot be reached or answered with an error. */
export class StoreError extends FlowdrakeError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super("STORE", message, context, options);
  }
}

/** A lock could not be taken in time. */
export class LockTimeoutError extends FlowdrakeError {
  constructor(name: string, timeoutMs: number) {
    super("LOCK_TIMEOUT", `lock ${name} not acquired within ${timeoutMs} ms`, { name, timeoutMs });
  }
}
