/**
 * Fuzzing every packet decoder with fast-check: random bytes, random bytes
 * behind a valid Ethernet/IP header, every truncation of valid frames, and
 * random byte corruption. The only error a decoder may raise is a DecodeError;
 * anything else (TypeError, RangeError, …) fails the property. Loops in the
 * decoders consume at least one byte per step, and the test timeout catches a
 * hang.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildFrame,
  encodeDhcp,
  parseDhcp,
  parseEthernet,
  readPcap,
  writePcap,
} from "../../src/packet/index.js";
import { DecodeError } from "../../src/util/errors.js";
import { dhcpSpec, frameSpec } from "../fixtures/packet/arbitraries.js";

function decodesOrDecodeError(fn: () => unknown): "ok" | "error" {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    expect(e.message).toMatch(/^[a-z0-9 ]+( [a-z-]+)*:/);
    return "error";
  }
}

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const HEADS = [
  "ffffffffffff020000000001" + "0800" + "45000000",
  "ffffffffffff020000000001" + "86dd" + "60000000",
  "ffffffffffff020000000001" + "0806" + "00010800",
  "ffffffffffff020000000001" + "8100" + "0064" + "0800",
  "ffffffffffff020000000001" + "88a8" + "0064" + "8100" + "00c8" + "86dd",
].map((h) => Buffer.from(h, "hex"));

describe("packet decoders under fuzzing", () => {
  it("random bytes → a Frame or a DecodeError", () => {
    fc.assert(
      fc.property(bytes(200), (b) => {
        decodesOrDecodeError(() => parseEthernet(b));
      }),
      { numRuns: 5000 },
    );
  });

  it("random bytes behind real Ethernet/VLAN/IP headers", () => {
    fc.assert(
      fc.property(fc.constantFrom(...HEADS), bytes(300), (head, tail) => {
        decodesOrDecodeError(() => parseEthernet(Buffer.concat([head, tail])));
      }),
      { numRuns: 5000 },
    );
  });

  it("every truncation of a valid frame", () => {
    let errors = 0;
    fc.assert(
      fc.property(frameSpec, (s) => {
        const f = buildFrame(s);
        for (let n = 0; n < f.length; n++) {
          if (decodesOrDecodeError(() => parseEthernet(f.subarray(0, n))) === "error") errors++;
        }
      }),
      { numRuns: 300 },
    );
    expect(errors).toBeGreaterThan(0);
  });

  it("random corruption of valid frames (lengths, types, options)", () => {
    fc.assert(
      fc.property(
        frameSpec,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        (s, edits) => {
          const f = Buffer.from(buildFrame(s));
          for (const [at, v] of edits) f[at % f.length] = v;
          decodesOrDecodeError(() => parseEthernet(f));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("DHCP: random bytes, truncations and corruption of valid messages", () => {
    fc.assert(
      fc.property(bytes(400), (b) => {
        decodesOrDecodeError(() => parseDhcp(b));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        dhcpSpec,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat(),
        (m, edits, cut) => {
          const b = Buffer.from(encodeDhcp(m));
          for (const [at, v] of edits) b[236 + (at % (b.length - 236))] = v;
          decodesOrDecodeError(() => parseDhcp(b.subarray(0, cut % (b.length + 1))));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("pcap reader: random bytes and truncated files", () => {
    const file = writePcap([Buffer.alloc(60, 1), Buffer.alloc(100, 2)]);
    fc.assert(
      fc.property(bytes(100), fc.nat(file.length), (b, cut) => {
        decodesOrDecodeError(() => readPcap(b));
        decodesOrDecodeError(() => readPcap(file.subarray(0, cut)));
      }),
      { numRuns: 2000 },
    );
  });
});
