/**
 * OpenFlow stream framing: turns the bytes a socket delivers (in arbitrary
 * chunks) into whole messages, using the 16-bit `length` of the 8-byte
 * ofp_header (openflow-1.3.5 §7.1). It knows nothing about message bodies.
 *
 * The buffer is bounded by construction: at most one partial message (< 64 KiB)
 * is ever held between calls, and complete messages are handed out at once.
 * A header whose length is below 8 cannot be framed at all, so the stream is
 * unusable from there on: `push` throws a FramingError and the framer refuses
 * further input. A stream that ends inside a message is reported by `end()`
 * with how many bytes were left over. Messages framed before a bad header are
 * returned first (nothing that arrived whole is lost).
 */
import { FlowdrakeError } from "../util/errors.js";

export const OFP_HEADER_LEN = 8;
export const OFP_MAX_MESSAGE_LEN = 0xffff;

/** The peer broke the framing (bad length) or stopped mid-message. */
export class FramingError extends FlowdrakeError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super("OPENFLOW_FRAMING", message, context);
  }
}

export class OfFramer {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private broken: FramingError | undefined;
  /** Bytes received so far (for error context). */
  offset = 0;

  /** Bytes held that do not yet make a whole message. */
  get buffered(): number {
    return this.pendingLen;
  }

  /**
   * Add a chunk; returns every message completed by it (each an independent
   * Buffer). If the chunk holds a bad header, the messages before it are
   * delivered through `onMessage` first and then a FramingError is thrown.
   */
  push(chunk: Buffer, onMessage: (msg: Buffer) => void): void {
    if (this.broken) throw this.broken;
    let buf: Buffer;
    if (this.pendingLen) {
      this.pending.push(chunk);
      buf = Buffer.concat(this.pending, this.pendingLen + chunk.length);
      this.pending = [];
      this.pendingLen = 0;
    } else {
      buf = chunk;
    }
    let at = 0;
    while (buf.length - at >= OFP_HEADER_LEN) {
      const len = buf.readUInt16BE(at + 2);
      if (len < OFP_HEADER_LEN) {
        this.broken = new FramingError(
          `OpenFlow header at stream offset ${this.offset + at} has length ${len} < 8`,
          {
            offset: this.offset + at,
            length: len,
            version: buf[at],
            type: buf[at + 1],
          },
        );
        this.offset += at;
        throw this.broken;
      }
      if (buf.length - at < len) break;
      onMessage(buf.subarray(at, at + len));
      at += len;
    }
    this.offset += at;
    if (at < buf.length) {
      // Copy the tail: the caller may reuse the chunk, and a slice would pin it.
      const rest = Buffer.from(buf.subarray(at));
      this.pending = [rest];
      this.pendingLen = rest.length;
    }
  }

  /** Convenience: push and collect. */
  pushAll(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.push(chunk, (m) => out.push(m));
    return out;
  }

  /** The stream ended: throws if it ended inside a message. */
  end(): void {
    if (this.broken) return;
    if (this.pendingLen) {
      const head = this.pending[0]!;
      const want = this.pendingLen >= 4 ? head.readUInt16BE(2) : undefined;
      throw new FramingError(
        `OpenFlow stream ended mid-message: ${this.pendingLen} bytes of ${want ?? "an unknown number of"} received`,
        { offset: this.offset, buffered: this.pendingLen, expected: want },
      );
    }
  }
}
