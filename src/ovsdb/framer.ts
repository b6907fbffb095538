/**
 * The JSON-RPC stream framer for OVSDB (RFC 7047 §4): the protocol sends
 * JSON objects back to back on a byte stream with no length prefix and no
 * delimiter, so a reader must find where each object ends by itself.
 *
 * This is an incremental scanner over raw bytes: it tracks whether it is inside
 * a string, whether the previous byte was a backslash, and the bracket depth.
 * A message ends when the depth returns to zero; only then are its bytes
 * decoded as UTF-8 and handed to JSON.parse (which does the real validation).
 * Multi-byte UTF-8 sequences never contain the ASCII bytes the scanner looks
 * at, so a chunk boundary anywhere is harmless.
 *
 * Bounds: a message larger than `maxMessageBytes` or nested deeper than
 * `maxDepth` is a DecodeError, as is anything at the top level that is not an
 * object. After the first error the framer is poisoned: the connection that
 * owns it must be closed, because there is no way to resynchronise.
 */
import { DecodeError } from "../util/errors.js";

export interface FramerOptions {
  /** Largest single message accepted (default 64 MiB: a full Open_vSwitch snapshot of a big host). */
  maxMessageBytes?: number;
  /** Deepest bracket nesting accepted (default 256; OVSDB messages are a handful deep). */
  maxDepth?: number;
}

export interface FramerResult {
  /** Complete messages, in stream order (all of them before any error). */
  messages: Record<string, unknown>[];
  /** Set when the stream became invalid; later pushes return it again. */
  error?: DecodeError;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

export class JsonFramer {
  private readonly maxMessageBytes: number;
  private readonly maxDepth: number;
  private parts: Buffer[] = [];
  private size = 0;
  private depth = 0;
  private inString = false;
  private escape = false;
  private failure: DecodeError | undefined;
  /** Total bytes consumed, for error context. */
  private offset = 0;

  constructor(opts: FramerOptions = {}) {
    this.maxMessageBytes = opts.maxMessageBytes ?? 64 * 1024 * 1024;
    this.maxDepth = opts.maxDepth ?? 256;
  }

  /** Bytes held for an incomplete message. */
  get buffered(): number {
    return this.size;
  }

  get failed(): DecodeError | undefined {
    return this.failure;
  }

  push(input: Buffer | Uint8Array | string): FramerResult {
    const messages: Record<string, unknown>[] = [];
    if (this.failure) return { messages, error: this.failure };
    const chunk = typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.from(input);
    try {
      this.scan(chunk, messages);
    } catch (err) {
      this.failure =
        err instanceof DecodeError ? err : new DecodeError(`json-rpc framing: ${String(err)}`, {});
      this.parts = [];
      this.size = 0;
      return { messages, error: this.failure };
    }
    return { messages };
  }

  /** The stream ended: an unfinished message is an error (a truncated peer). */
  end(): DecodeError | undefined {
    if (this.failure) return this.failure;
    if (this.depth > 0) {
      this.failure = new DecodeError("json-rpc stream ended inside a message", {
        buffered: this.size,
        offset: this.offset,
      });
    }
    return this.failure;
  }

  private scan(chunk: Buffer, out: Record<string, unknown>[]): void {
    let start = 0;
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const c = chunk[i]!;
      if (this.depth === 0) {
        if (isWhitespace(c)) continue;
        if (c !== LBRACE) {
          throw new DecodeError("json-rpc stream: expected '{' at the start of a message", {
            offset: this.offset + i,
            byte: c,
          });
        }
        this.depth = 1;
        this.inString = false;
        this.escape = false;
        start = i;
        continue;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === BACKSLASH) this.escape = true;
        else if (c === QUOTE) this.inString = false;
        else if (c < 0x20) {
          throw new DecodeError("json-rpc stream: control character inside a string", {
            offset: this.offset + i,
            byte: c,
          });
        }
        continue;
      }
      if (c === QUOTE) {
        this.inString = true;
      } else if (c === LBRACE || c === LBRACKET) {
        if (++this.depth > this.maxDepth) {
          throw new DecodeError("json-rpc message nested too deeply", {
            maxDepth: this.maxDepth,
            offset: this.offset + i,
          });
        }
      } else if (c === RBRACE || c === RBRACKET) {
        if (--this.depth === 0) {
          const piece = chunk.subarray(start, i + 1);
          this.checkSize(this.size + piece.length);
          const whole = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
          this.parts = [];
          this.size = 0;
          out.push(this.decode(whole, this.offset + i));
        }
      }
    }
    if (this.depth > 0) {
      const piece = chunk.subarray(start);
      this.checkSize(this.size + piece.length);
      // Copy: the caller's buffer may be reused by the socket.
      this.parts.push(Buffer.from(piece));
      this.size += piece.length;
    }
    this.offset += n;
  }

  private checkSize(size: number): void {
    if (size > this.maxMessageBytes) {
      throw new DecodeError("json-rpc message exceeds the size limit", {
        size,
        maxMessageBytes: this.maxMessageBytes,
      });
    }
  }

  private decode(bytes: Buffer, offset: number): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString("utf8"));
    } catch (err) {
      throw new DecodeError(`json-rpc message is not valid JSON: ${(err as Error).message}`, {
        offset,
        length: bytes.length,
        head: bytes.subarray(0, 64).toString("utf8"),
      });
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new DecodeError("json-rpc message is not an object", { offset });
    }
    return value as Record<string, unknown>;
  }
}
