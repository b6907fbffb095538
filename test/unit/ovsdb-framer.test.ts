import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JsonFramer } from "../../src/ovsdb/framer.js";
import { DecodeError } from "../../src/util/errors.js";

const sample = [
  { id: 1, method: "echo", params: [] },
  { id: null, method: "update2", params: ["m", { Bridge: { "a-b": { modify: { name: 'br"}{[' } } } }] },
  { id: "echo", result: ["\\", "}", "é漢🙂", "\u0001"], error: null },
  { a: { b: [[[{}]]] }, s: '\\"' },
];
const stream = Buffer.from(sample.map((m) => JSON.stringify(m)).join("") + "\n  ");

describe("JsonFramer", () => {
  it("splits concatenated objects with tricky strings", () => {
    const f = new JsonFramer();
    const r = f.push(stream);
    expect(r.error).toBeUndefined();
    expect(r.messages).toEqual(sample);
    expect(f.buffered).toBe(0);
    expect(f.end()).toBeUndefined();
  });

  it("gives the same result when the stream is split at every byte", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const f = new JsonFramer();
      const a = f.push(stream.subarray(0, cut));
      const b = f.push(stream.subarray(cut));
      expect(a.error ?? b.error).toBeUndefined();
      expect([...a.messages, ...b.messages]).toEqual(sample);
    }
  });

  it("gives the same result when fed one byte at a time", () => {
    const f = new JsonFramer();
    const out: unknown[] = [];
    for (const byte of stream) {
      const r = f.push(Buffer.of(byte));
      expect(r.error).toBeUndefined();
      out.push(...r.messages);
    }
    expect(out).toEqual(sample);
  });

  it("rejects non-object top-level values, bad JSON, control chars, and is poisoned after", () => {
    for (const bad of ["[1]", "42", '"x"', "{]", '{"a":}', '{"a":1}}', '{"a":"\n"}', "{'a':1}"]) {
      const f = new JsonFramer();
      const r = f.push(bad);
      expect(r.error, bad).toBeInstanceOf(DecodeError);
      expect(f.push('{"ok":1}').error).toBe(r.error);
    }
  });

  it("delivers the messages that preceded an error", () => {
    const r = new JsonFramer().push('{"a":1}{"b":2}xyz');
    expect(r.messages).toEqual([{ a: 1 }, { b: 2 }]);
    expect(r.error).toBeInstanceOf(DecodeError);
  });

  it("bounds message size and depth", () => {
    const f = new JsonFramer({ maxMessageBytes: 100 });
    expect(f.push('{"a":"' + "x".repeat(50)).error).toBeUndefined();
    expect(f.push("x".repeat(60)).error).toBeInstanceOf(DecodeError);
    expect(new JsonFramer({ maxDepth: 8 }).push("{".repeat(3) + "[".repeat(6)).error).toBeInstanceOf(
      DecodeError,
    );
  });

  it("reports a truncated stream at end()", () => {
    const f = new JsonFramer();
    expect(f.push('{"a":[1,2').error).toBeUndefined();
    expect(f.end()).toBeInstanceOf(DecodeError);
  });

  it("fuzz: random bytes never throw, never hang, only DecodeError", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const f = new JsonFramer({ maxMessageBytes: 4096 });
        for (const c of chunks) {
          const r = f.push(c);
          if (r.error) expect(r.error).toBeInstanceOf(DecodeError);
          for (const m of r.messages) expect(typeof m).toBe("object");
        }
        const e = f.end();
        if (e) expect(e).toBeInstanceOf(DecodeError);
      }),
      { numRuns: 2000 },
    );
  });

  it("fuzz: valid JSON objects round-trip under random chunking; truncations never yield extra messages", () => {
    const obj = fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 5 });
    fc.assert(
      fc.property(
        fc.array(obj, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (objs, cuts) => {
          const bytes = Buffer.from(objs.map((o) => JSON.stringify(o)).join(" "));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const f = new JsonFramer();
          const out: unknown[] = [];
          let prev = 0;
          for (const p of [...points, bytes.length]) {
            const r = f.push(bytes.subarray(prev, p));
            expect(r.error).toBeUndefined();
            out.push(...r.messages);
            prev = p;
          }
          expect(out).toEqual(JSON.parse(JSON.stringify(objs)));
          const t = new JsonFramer();
          const cut = points[0] ?? 0;
          const r = t.push(bytes.subarray(0, cut));
          expect(r.messages.length).toBeLessThanOrEqual(objs.length);
          const e = t.end();
          if (e) expect(e).toBeInstanceOf(DecodeError);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("OVSDB remotes", () => {
  it("refuses ssl: without SSL files, and pssl:, at once, naming what works, instead of retrying as if the server were down", async () => {
    const { OvsdbSession } = await import("../../src/ovsdb/session.js");
    // start() throws synchronously: nothing is retried in the background
    expect(() => OvsdbSession.start({ remote: "ssl:127.0.0.1:6640", tables: { Open_vSwitch: [] } })).toThrow(
      /'ssl:127\.0\.0\.1:6640' needs SSL files: a private key, a certificate and the CA certificate .*; or use unix:PATH \(the default\) or tcp:HOST:PORT/,
    );
    expect(() => OvsdbSession.start({ remote: "pssl:6640", tables: { Open_vSwitch: [] } })).toThrow(
      /'pssl:6640' is a passive \(listening\) form: flowdrake connects to ovsdb-server/,
    );
    expect(() => OvsdbSession.start({ remote: "tcp:nope", tables: { Open_vSwitch: [] } })).toThrow(
      /bad tcp remote/,
    );
  });
});
