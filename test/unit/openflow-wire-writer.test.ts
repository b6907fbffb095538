/**
 * The bulk encoder (wire-writer.ts) must produce exactly the bytes of the
 * general codec (encodeMessage / writeMessage) — for the 96-flow text corpus,
 * every sample message, wrapped in bundle_add_message or not, in a stream of
 * many messages, and for random flows — and must fail with the general
 * codec's own errors for bad input, leaving the writer usable.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  encodeMessage,
  flowToFlowMod,
  parseFlow,
  type FlowMod,
  type MatchField,
  type OfMessage,
} from "../../src/openflow/index.js";
import { OfWireWriter, encodeBundleAddFast, encodeMessageFast } from "../../src/openflow/wire-writer.js";
import { CORPUS } from "../fixtures/openflow/corpus.js";
import { SAMPLES } from "../fixtures/openflow/samples.js";

const bundled = (m: OfMessage, bundleId = 9, flags = 3): Buffer =>
  encodeMessage({ type: "bundle_add_message", xid: m.xid, bundleId, flags, message: m });

function mod(over: Partial<FlowMod>): FlowMod {
  return {
    type: "flow_mod",
    xid: 42,
    cookie: 0n,
    cookieMask: 0n,
    tableId: 0,
    command: "add",
    idleTimeout: 0,
    hardTimeout: 0,
    priority: 0x8000,
    bufferId: 0xffffffff,
    outPort: 0xffffffff,
    outGroup: 0xffffffff,
    flags: 0,
    match: [],
    instructions: [],
    ...over,
  };
}

/** Same bytes, or the same error (class and message). */
function same(m: OfMessage): void {
  let want: Buffer | Error;
  try {
    want = encodeMessage(m);
  } catch (err) {
    want = err as Error;
  }
  if (want instanceof Error) {
    expect(() => encodeMessageFast(m)).toThrow(want.message);
    return;
  }
  expect(encodeMessageFast(m).toString("hex")).toBe(want.toString("hex"));
  expect(encodeBundleAddFast(9, 3, m).toString("hex")).toBe(bundled(m).toString("hex"));
}

describe("bulk encoder: byte-identical to encodeMessage", () => {
  it("the corpus has 96 flows, all parsed", () => {
    expect(CORPUS).toHaveLength(96);
  });

  for (const [i, line] of CORPUS.entries()) {
    it(`corpus ${i}: ${line}`, () => {
      const flow = parseFlow(line);
      for (const command of ["add", "modify_strict", "delete"] as const) {
        const m = flowToFlowMod(flow, { xid: 1000 + i, command, cookieMask: command === "add" ? 0n : ~0n });
        same(m);
      }
    });
  }

  it("every sample message (the general path inside the bulk encoder)", () => {
    for (const m of SAMPLES) same(m);
  });

  it("a stream of the whole corpus equals the concatenated messages, in any chunking", () => {
    const mods = CORPUS.map((l, i) => flowToFlowMod(parseFlow(l), { xid: i + 1 }));
    const want = Buffer.concat(mods.map((m) => bundled(m, 5, 1)));
    for (const chunk of [1 << 20, 1, 300]) {
      const w = new OfWireWriter(chunk);
      const parts: Buffer[] = [];
      for (let r = 0; r < 3; r++) {
        for (const m of mods) {
          w.writeBundleAdd(5, 1, m, m.xid);
          if (w.pending > 1000) parts.push(Buffer.from(w.take()));
        }
      }
      parts.push(w.take());
      expect(Buffer.concat(parts).equals(Buffer.concat([want, want, want]))).toBe(true);
    }
  });

  it("fields out of prerequisite order, masks, aliases, wide and experimenter fields", () => {
    const cases: MatchField[][] = [
      [
        { field: "tcp_dst", value: 80 },
        { field: "ip_src", value: "10.0.0.0", mask: "255.0.0.0" },
        { field: "nw_proto", value: 6 },
        { field: "eth_type", value: 0x0800 },
      ],
      [
        { field: "dl_type", value: 0x86dd },
        { field: "ipv6_src", value: "2001:db8::1", mask: "ffff:ffff::" },
        { field: "ip_proto", value: 58 },
        { field: "icmpv6_type", value: 135 },
        { field: "nd_target", value: "fe80::1" },
      ],
      [
        { field: "eth_type", value: 0x0800 },
        { field: "nw_proto", value: 6 },
        { field: "tcp_flags", value: 0x012, mask: 0x017 },
      ],
      [
        { field: "metadata", value: 0x1234_5678_9abc_def0n, mask: 0xffff_0000_0000_0000n },
        { field: "xxreg1", value: (1n << 127n) | 5n },
        { field: "ct_label", value: 7n, mask: 0xffn },
        { field: "tun_id", value: 99n },
        { field: "xreg3", value: 3n },
      ],
      [
        { field: "eth_src", value: "A:b:0c:0D:e:F0", mask: "ff:ff:ff:00:00:00" },
        { field: "reg0", value: 0xffffffff, mask: 0xf0f0f0f0 },
        { field: "ct_state", value: 0x21, mask: 0x21 },
        { field: "tun_metadata3", value: Buffer.from("abcd", "hex") },
        { field: "in_port", value: 0xfffffffe },
      ],
    ];
    for (const match of cases) {
      same(
        mod({
          match,
          cookie: 0xfedcba9876543210n,
          instructions: [
            {
              type: "apply_actions",
              actions: [
                { type: "set_field", field: "reg3", value: 0x10, mask: 0xff },
                { type: "set_field", field: "ipv6_dst", value: "::1" },
                { type: "set_field", field: "tun_id", value: 5n },
                { type: "resubmit", table: 4 },
                { type: "resubmit", port: 0xfffffff8 },
                { type: "dec_ttl" },
                {
                  type: "ct",
                  commit: true,
                  zone: 5,
                  table: 3,
                  actions: [{ type: "nat", nat: { kind: "src" } }],
                },
                { type: "output", port: 0xfffffffd },
                { type: "output", port: 3, maxLen: 64 },
              ],
            },
            { type: "write_metadata", metadata: 1n, mask: 3n },
            { type: "write_actions", actions: [{ type: "group", groupId: 1 }] },
            { type: "meter", meterId: 2 },
            { type: "goto_table", table: 9 },
          ],
        }),
      );
    }
  });

  it("random flows: same bytes or the same error", () => {
    const ip = fc.tuple(fc.nat(300), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
    const mac = fc
      .array(fc.nat(260), { minLength: 6, maxLength: 6 })
      .map((p) => p.map((x) => x.toString(16)).join(":"));
    const field: fc.Arbitrary<MatchField> = fc.oneof(
      fc.record({ field: fc.constant("reg5"), value: fc.oneof(fc.nat(), fc.integer(), fc.double()) }),
      fc.record({ field: fc.constant("eth_type"), value: fc.nat(0x1ffff) }),
      fc.record({ field: fc.constant("nw_proto"), value: fc.nat(300) }),
      fc.record({ field: fc.constant("ip_dst"), value: ip, mask: fc.option(ip, { nil: undefined }) }),
      fc.record({ field: fc.constant("eth_dst"), value: fc.oneof(mac, fc.string()) }),
      fc.record({ field: fc.constant("metadata"), value: fc.bigInt({ min: -1n, max: 1n << 65n }) }),
      fc.record({
        field: fc.constant("in_port"),
        value: fc.nat(),
        mask: fc.option(fc.nat(), { nil: undefined }),
      }),
      fc.record({ field: fc.constant("no_such_field"), value: fc.nat() }),
    );
    fc.assert(
      fc.property(
        fc.array(field, { maxLength: 5 }),
        fc.nat(300),
        fc.nat(0x1ffff),
        fc.nat(),
        fc.constantFrom("add", "modify", "delete", "bogus"),
        (match, tableId, priority, port, command) => {
          same(
            mod({
              match: match.map((f) => (f.mask === undefined ? { field: f.field, value: f.value } : f)),
              tableId,
              priority,
              command: command as FlowMod["command"],
              instructions: [{ type: "apply_actions", actions: [{ type: "output", port }] }],
            }),
          );
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("bulk encoder: bad input", () => {
  it("throws the general codec's error and keeps what was written before", () => {
    const good = mod({ match: [{ field: "reg1", value: 1 }] });
    const bad = mod({ match: [{ field: "eth_dst", value: "not a mac" }] });
    const w = new OfWireWriter();
    w.write(good, 1);
    expect(() => w.write(bad, 2)).toThrow(/bad MAC address/);
    expect(() => w.writeBundleAdd(1, 1, bad, 3)).toThrow(/bad MAC address/);
    expect(() => w.write(mod({ tableId: 256 }), 4)).toThrow(/does not fit in u8/);
    w.write(good, 5);
    expect(w.take().toString("hex")).toBe(
      Buffer.concat([encodeMessage({ ...good, xid: 1 }), encodeMessage({ ...good, xid: 5 })]).toString("hex"),
    );
  });

  it("a message over 64 KiB is refused as the general codec refuses it", () => {
    const actions = Array.from({ length: 5000 }, (_, i) => ({ type: "output" as const, port: i }));
    const big = mod({ instructions: [{ type: "apply_actions", actions }] });
    expect(() => encodeMessage(big)).toThrow(/more than 65535|does not fit/);
    const w = new OfWireWriter();
    expect(() => w.write(big, 1)).toThrow(/more than 65535|does not fit/);
    expect(w.pending).toBe(0);
  });
});
