import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FramingError, OfFramer } from "../../src/openflow/framing.js";

function header(type: number, length: number, xid: number, body?: Buffer): Buffer {
  const b = Buffer.alloc(length);
  b[0] = 4;
  b[1] = type;
  b.writeUInt16BE(length, 2);
  b.writeUInt32BE(xid, 4);
  if (body) body.copy(b, 8);
  return b;
}

function split(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(stream.subarray(at, p));
    at = p;
  }
  out.push(stream.subarray(at));
  return out;
}

describe("OfFramer", () => {
  it("frames back-to-back messages in one chunk", () => {
    const f = new OfFramer();
    const a = header(0, 8, 1);
    const b = header(2, 12, 2, Buffer.from("ping"));
    const got = f.pushAll(Buffer.concat([a, b]));
    expect(got.map((m) => m.readUInt32BE(4))).toEqual([1, 2]);
    expect(got[1]!.subarray(8).toString()).toBe("ping");
    expect(f.buffered).toBe(0);
    f.end();
  });

  it("reassembles any split of any message sequence, byte for byte", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 29 }), fc.uint8Array({ maxLength: 300 })), {
          maxLength: 20,
        }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (msgs, cuts) => {
          const framed = msgs.map(([t, body], i) => header(t, 8 + body.length, i, Buffer.from(body)));
          const stream = Buffer.concat(framed);
          const f = new OfFramer();
          const got: Buffer[] = [];
          for (const c of split(stream, cuts)) f.push(c, (m) => got.push(Buffer.from(m)));
          f.end();
          expect(got.length).toBe(framed.length);
          got.forEach((m, i) => expect(m.equals(framed[i]!)).toBe(true));
        },
      ),
    );
  });

  it("a length below 8 is a FramingError after the good messages before it", () => {
    const f = new OfFramer();
    const good = header(0, 8, 7);
    const bad = Buffer.from([4, 0, 0, 3, 0, 0, 0, 1]);
    const got: number[] = [];
    expect(() => f.push(Buffer.concat([good, bad]), (m) => got.push(m.readUInt32BE(4)))).toThrow(
      FramingError,
    );
    expect(got).toEqual([7]);
    // The stream is unusable now: further input is refused with the same typed error.
    expect(() => f.pushAll(header(0, 8, 8))).toThrow(/length 3 < 8/);
  });

  it("a stream that ends mid-message is a FramingError naming the shortfall", () => {
    const f = new OfFramer();
    const m = header(14, 100, 9);
    expect(f.pushAll(m.subarray(0, 40))).toEqual([]);
    expect(f.buffered).toBe(40);
    expect(() => f.end()).toThrow(/40 bytes of 100/);
    const g = new OfFramer();
    g.pushAll(Buffer.from([4, 0]));
    expect(() => g.end()).toThrow(FramingError);
  });

  it("never throws anything but FramingError on random bytes, and holds < 64 KiB", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 4000 }), { maxLength: 20 }), (chunks) => {
        const f = new OfFramer();
        try {
          for (const c of chunks) {
            f.push(Buffer.from(c), (m) => expect(m.length).toBeGreaterThanOrEqual(8));
            expect(f.buffered).toBeLessThan(65536);
          }
          f.end();
        } catch (err) {
          expect(err).toBeInstanceOf(FramingError);
        }
      }),
    );
  });

  it("a chunk reused by the caller does not corrupt a buffered tail", () => {
    const f = new OfFramer();
    const m = header(2, 16, 3, Buffer.from("abcdefgh"));
    const chunk = Buffer.from(m.subarray(0, 10));
    f.pushAll(chunk);
    chunk.fill(0);
    const [out] = f.pushAll(Buffer.from(m.subarray(10)));
    expect(out!.equals(m)).toBe(true);
  });
});
