/**
 * Errors of the NB model and API. A ValidationError always names the object
 * (kind and key), the field and the reason, so an operator reading
 * `lport 5b1e…: fixedIps[0].ipAddress: 10.0.0.7 is already used by lport 9c2d…`
 * knows what to fix; the CLI maps it to exit code 1. A MalformedObjectError
 * names a stored object the API cannot read (not JSON, or not its kind's
 * schema) and why; it too maps to exit code 1.
 */
import { FlowdrakeError } from "../../util/errors.js";

export class ValidationError extends FlowdrakeError {
  constructor(
    readonly kind: string,
    readonly key: string,
    readonly field: string,
    readonly reason: string,
  ) {
    super("VALIDATION", `${kind} ${key || "(new)"}: ${field || "(object)"}: ${reason}`, {
      kind,
      key,
      field,
      reason,
    });
  }
}

/** The object asked for does not exist. */
export class NotFoundError extends FlowdrakeError {
  constructor(
    readonly kind: string,
    readonly key: string,
  ) {
    super("NOT_FOUND", `${kind} ${key} does not exist`, { kind, key });
  }
}

/**
 * A stored object cannot be used: its bytes are not JSON, its JSON fails the
 * kind's schema, or its key field is not its key. `reason` says which.
 */
export class MalformedObjectError extends FlowdrakeError {
  constructor(
    readonly kind: string,
    readonly key: string,
    readonly reason: string,
    readonly version: number,
  ) {
    super("MALFORMED", `${kind} ${key}: the stored value is malformed: ${reason}`, {
      kind,
      key,
      reason,
      version,
    });
  }
}
