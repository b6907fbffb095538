import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeMessage, encodeMessage, parseFlow } from "../../src/openflow/index.js";
import { DecodeError, UsageError } from "../../src/util/errors.js";
import { SAMPLES } from "../fixtures/openflow/samples.js";

/** decodeMessage may only return or throw DecodeError. */
function decodeOrDecodeError(b: Buffer): void {
  try {
    decodeMessage(b);
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
  }
}

const ENCODED = SAMPLES.map((m) => encodeMessage(m));

/** Patch the header length so framing is valid and the body is what gets tested. */
function framed(type: number, body: Uint8Array): Buffer {
  const b = Buffer.alloc(8 + body.length);
  b[0] = 4;
  b[1] = type;
  b.writeUInt16BE(Math.min(b.length, 0xffff), 2);
  Buffer.from(body).copy(b, 8);
  return b.subarray(0, Math.min(b.length, 0xffff));
}

describe("decodeMessage fuzz", () => {
  it("random bytes: DecodeError or a message, nothing else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => decodeOrDecodeError(Buffer.from(bytes))),
      { numRuns: 3000 },
    );
  });

  it("well-framed random bodies of every message type", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.uint8Array({ maxLength: 400 }), (type, body) =>
        decodeOrDecodeError(framed(type, body)),
      ),
      { numRuns: 5000 },
    );
  });

  it("truncations of valid messages (with the length patched) throw DecodeError only", () => {
    for (const full of ENCODED) {
      for (let n = 0; n < full.length; n++) {
        decodeOrDecodeError(full.subarray(0, n));
        if (n >= 8) {
          const t = Buffer.from(full.subarray(0, n));
          t.writeUInt16BE(n, 2);
          decodeOrDecodeError(t);
        }
      }
    }
  });

  it("byte flips in valid messages throw DecodeError only", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: ENCODED.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        (i, flips) => {
          const b = Buffer.from(ENCODED[i]!);
          for (const [pos, v] of flips) {
            const at = 8 + (pos % Math.max(1, b.length - 8));
            if (at < b.length) b[at] = v;
          }
          decodeOrDecodeError(b);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it("decodes a valid message after all that (sanity)", () => {
    expect(decodeMessage(ENCODED[0]!).type).toBe("hello");
  });
});

describe("parseFlow fuzz", () => {
  it("random text: a Flow or UsageError, nothing else", () => {
    const alphabet = fc.constantFrom(..."actions=,()[]:./->0x1fgiprt_ctzonemask+- ".split(""));
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 60 }), (chars) => {
        try {
          parseFlow(chars.join(""));
        } catch (err) {
          if (!(err instanceof UsageError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
