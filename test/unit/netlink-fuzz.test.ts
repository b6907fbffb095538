/**
 * Fuzzing the netlink decoders with fast-check: random datagrams, random
 * tcmsg/attribute bodies, truncations and byte flips of the 32 messages
 * iproute2 sent (test/fixtures/tc/golden.json). Every input must either decode
 * or raise DecodeError — never a TypeError/RangeError, never a hang — all the
 * way from the datagram to a FlowerRule.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeNlmsgerr, decodeNlmsgs, NLMSG_ERROR } from "../../src/offload/netlink/framing.js";
import { ctrlAttrs, decodeGenl } from "../../src/offload/netlink/genetlink.js";
import { decodeFilter } from "../../src/offload/netlink/tc/client.js";
import { decodeTcMessage } from "../../src/offload/netlink/tc/message.js";
import { actAttrs, flowerAttrs, tcaAttrs } from "../../src/offload/netlink/tc/schema.js";
import { DecodeError } from "../../src/util/errors.js";

const here = dirname(fileURLToPath(import.meta.url));
const GOLDEN = (
  JSON.parse(readFileSync(join(here, "../fixtures/tc/golden.json"), "utf8")) as { cases: { hex: string }[] }
).cases.map((c) => Buffer.from(c.hex, "hex"));

/** Datagram → messages → tcmsg + attributes → FlowerRule (or nlmsgerr). */
function decodeAll(buf: Buffer): void {
  for (const m of decodeNlmsgs(buf)) {
    if (m.type === NLMSG_ERROR) decodeNlmsgerr(m);
    else decodeFilter(decodeTcMessage(m));
  }
}

/** Returns true if it decoded, false on DecodeError; anything else fails the test. */
function decodesOrDecodeError(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return false;
  }
}

/** A netlink message of `type` around `body`, nlmsg_len patched to fit. */
function framed(type: number, flags: number, body: Uint8Array): Buffer {
  const b = Buffer.alloc(16 + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  Buffer.from(body).copy(b, 16);
  return b;
}

describe("netlink decoders under fuzzing", () => {
  it("the golden messages themselves decode", () => {
    for (const g of GOLDEN) expect(decodesOrDecodeError(() => decodeAll(g))).toBe(true);
  });

  it("random datagrams: DecodeError or a message, nothing else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        decodesOrDecodeError(() => decodeAll(Buffer.from(bytes)));
      }),
      { numRuns: 3000 },
    );
  });

  it("well-framed random tc and nlmsgerr bodies", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(NLMSG_ERROR, 36, 37, 44, 45),
        fc.integer({ min: 0, max: 0xffff }),
        fc.uint8Array({ maxLength: 400 }),
        (type, flags, body) => {
          decodesOrDecodeError(() => decodeAll(framed(type, flags, body)));
        },
      ),
      { numRuns: 4000 },
    );
  });

  it("random attribute streams for TCA, TCA_FLOWER, TCA_ACT and genetlink ctrl", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const b = Buffer.from(bytes);
        decodesOrDecodeError(() => tcaAttrs.decodeBuffer(b));
        decodesOrDecodeError(() => flowerAttrs.decodeBuffer(b));
        decodesOrDecodeError(() => actAttrs.decodeBuffer(b));
        decodesOrDecodeError(() => decodeGenl(decodeNlmsgs(framed(0x10, 0, b))[0]!, ctrlAttrs));
      }),
      { numRuns: 3000 },
    );
  });

  it("every truncation of every golden message, raw and with nlmsg_len patched", () => {
    let patchedOk = 0;
    for (const full of GOLDEN) {
      for (let n = 0; n < full.length; n++) {
        const cut = Buffer.from(full.subarray(0, n));
        expect(decodesOrDecodeError(() => decodeAll(cut))).toBe(n === 0);
        if (n >= 16) {
          cut.writeUInt32LE(n, 0);
          if (decodesOrDecodeError(() => decodeAll(cut))) patchedOk++;
        }
      }
    }
    // Cutting at an attribute boundary leaves a valid, shorter message.
    expect(patchedOk).toBeGreaterThan(0);
  });

  it("byte flips in golden messages (nlmsg_len kept) throw DecodeError only", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...GOLDEN),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        (full, flips) => {
          const b = Buffer.from(full);
          for (const [at, v] of flips) {
            const i = 16 + (at % (b.length - 16));
            b[i] = v;
          }
          decodesOrDecodeError(() => decodeAll(b));
        },
      ),
      { numRuns: 5000 },
    );
  });

  it("random attribute lengths in golden messages throw DecodeError only", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...GOLDEN),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (full, at, len) => {
          const b = Buffer.from(full);
          const i = 36 + ((at % Math.max(1, b.length - 37)) & ~1);
          if (i + 2 <= b.length) b.writeUInt16LE(len, i);
          decodesOrDecodeError(() => decodeAll(b));
        },
      ),
      { numRuns: 5000 },
    );
  });
});
