/**
 * The conversions a routed first packet goes through were given fast paths
 * (no regex, array or bigint for the usual shapes: canonical MACs, dotted
 * IPv4, register-sized integers) so that the agent allocates less per packet.
 * Each must give exactly what the general path gives, or the same refusal:
 * here the general paths are written out again as references, and random
 * inputs — well-formed and near misses — are run through both.
 */
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { cidrContains, cidrPrefix, ipToBig, parseCidr } from "../../src/nb/model/ip.js";
import { flowKey } from "../../src/openflow/flow.js";
import {
  bigintToBytes,
  bytesToIpv4,
  bytesToMac,
  fieldByName,
  ipv4ToBytes,
  macToBytes,
  valueToBytes,
} from "../../src/openflow/oxm.js";
import { formatInstructions } from "../../src/openflow/text.js";
import type { Instruction } from "../../src/openflow/instructions.js";

/** What f gives, or "throws". */
function outcome<T>(f: () => T): T | "throws" {
  try {
    return f();
  } catch {
    return "throws";
  }
}

const refMac = (s: string): Buffer => {
  const m =
    /^([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2})$/i.exec(
      s,
    );
  if (!m) throw new Error("bad MAC");
  return Buffer.from(m.slice(1).map((x) => Number.parseInt(x, 16)));
};

const refIpv4 = (s: string): Buffer => {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  const parts = m?.slice(1).map(Number);
  if (!parts || parts.some((p) => p > 255)) throw new Error("bad IPv4");
  return Buffer.from(parts);
};

const refIpToBig = (s: string): bigint => {
  let n = 0n;
  for (const b of ipaddr.parse(s).toByteArray()) n = (n << 8n) | BigInt(b);
  return n;
};

/** Text close to an address: digits, separators and the odd stray character. */
const nearText = (alphabet: string, maxLength: number) =>
  fc.array(fc.constantFrom(...alphabet.split("")), { maxLength }).map((cs) => cs.join(""));

const octetText = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map(String),
  fc.integer({ min: 0, max: 999 }).map(String),
  fc.integer({ min: 0, max: 99 }).map((n) => `0${n}`),
  fc.constantFrom("", "1234", "00", "0x1"),
);
const dotted = fc.array(octetText, { minLength: 3, maxLength: 5 }).map((p) => p.join("."));

const hexPair = fc.integer({ min: 0, max: 255 }).map((n) => n.toString(16).padStart(2, "0"));
const macText = fc.oneof(
  fc.array(hexPair, { minLength: 6, maxLength: 6 }).map((p) => p.join(":")),
  fc.array(hexPair, { minLength: 6, maxLength: 6 }).map((p) => p.join(":").toUpperCase()),
  fc.array(hexPair, { minLength: 6, maxLength: 6 }).map((p) => p.join("-")),
  fc
    .array(
      fc.integer({ min: 0, max: 255 }).map((n) => n.toString(16)),
      { minLength: 6, maxLength: 6 },
    )
    .map((p) => p.join(":")),
  nearText("0123456789abcdefgABF:-", 18),
);

describe("OXM value conversions: the fast paths give the general paths' bytes or refusal", () => {
  it("macToBytes on canonical, upper-case, short-group, dashed and broken MACs", () => {
    fc.assert(
      fc.property(macText, (s) => {
        expect(outcome(() => macToBytes(s))).toEqual(outcome(() => refMac(s)));
      }),
      { numRuns: 3000 },
    );
    expect(macToBytes("fa:16:3e:00:0A:ff")).toEqual(Buffer.from([0xfa, 0x16, 0x3e, 0, 10, 255]));
    expect(() => macToBytes("fa:16:3e:00:0a:fg")).toThrow(/bad MAC address/);
    expect(() => macToBytes("fa:16:3e:00:0a;ff")).toThrow(/bad MAC address/);
  });

  it("ipv4ToBytes on dotted quads, leading zeros, groups above 255, too few or many groups", () => {
    fc.assert(
      fc.property(fc.oneof(dotted, nearText("0123456789.x", 17)), (s) => {
        expect(outcome(() => ipv4ToBytes(s))).toEqual(outcome(() => refIpv4(s)));
      }),
      { numRuns: 3000 },
    );
    expect(ipv4ToBytes("010.1.255.0")).toEqual(Buffer.from([10, 1, 255, 0]));
    for (const bad of ["1.2.3.256", "1.2.3", "1.2.3.4.", "1.2.3.4.5", ".1.2.3", "1..2.3", "1234.1.1.1"]) {
      expect(() => ipv4ToBytes(bad), bad).toThrow(/bad IPv4 address/);
    }
  });

  it("bytesToMac and bytesToIpv4 read back what they wrote, and other lengths as before", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (b) => {
        const buf = Buffer.from(b);
        expect(bytesToMac(buf)).toBe(Array.from(buf, (x) => x.toString(16).padStart(2, "0")).join(":"));
        expect(macToBytes(bytesToMac(buf))).toEqual(buf);
        const four = buf.subarray(0, 4);
        expect(bytesToIpv4(four)).toBe(Array.from(four).join("."));
        expect(ipv4ToBytes(bytesToIpv4(four))).toEqual(four);
      }),
    );
    expect(bytesToMac(Buffer.from([1, 2, 3]))).toBe("01:02:03");
    expect(bytesToIpv4(Buffer.from([1, 2]))).toBe("1.2");
  });

  it("valueToBytes of a number in a field up to 6 bytes wide equals the bigint path, refusals included", () => {
    const fields = ["reg6", "in_port", "vlan_vid", "nw_ttl", "tcp_src", "tun_id", "eth_type", "ip_dscp"];
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.oneof(
          fc.integer({ min: 0, max: 0xffffffff }),
          fc.integer({ min: -5, max: 5 }),
          fc.constantFrom(2 ** 32, 2 ** 48 - 1, 2 ** 48, 0.5, 255.5, 65536),
        ),
        (name, v) => {
          const def = fieldByName(name)!;
          const ref = outcome(() => bigintToBytes(BigInt(v), def.length));
          expect(outcome(() => valueToBytes(def, v))).toEqual(ref);
        },
      ),
      { numRuns: 3000 },
    );
    const reg = fieldByName("reg6")!;
    expect(valueToBytes(reg, 0x01020304)).toEqual(Buffer.from([1, 2, 3, 4]));
    expect(() => valueToBytes(reg, 2 ** 32)).toThrow(/does not fit in 32 bits/);
  });

  it("bigintToBytes writes every byte of the (unzeroed) buffer it allocates", () => {
    for (let i = 0; i < 200; i++) {
      expect(bigintToBytes(0n, 8)).toEqual(Buffer.alloc(8));
      expect(bigintToBytes(1n, 3)).toEqual(Buffer.from([0, 0, 1]));
    }
  });
});

describe("nb/model/ip: ipToBig's dotted-decimal path and the memoised CIDR parse", () => {
  it("ipToBig equals ipaddr.js's reading, octal-looking groups and refusals included", () => {
    fc.assert(
      fc.property(dotted, (s) => {
        expect(outcome(() => ipToBig(s))).toEqual(outcome(() => refIpToBig(s)));
      }),
      { numRuns: 3000 },
    );
    // a leading zero is octal to ipaddr.js, and stays so
    expect(ipToBig("010.0.0.1")).toBe(refIpToBig("010.0.0.1"));
    expect(ipToBig("10.0.0.1")).toBe(0x0a000001n);
    expect(ipToBig("255.255.255.255")).toBe(0xffffffffn);
    for (const bad of ["10.0.0.256", "10.256.0.1", "256.0.0.1", "1.2.3.1000"]) {
      expect(() => ipToBig(bad), bad).toThrow();
    }
    expect(ipToBig("fe80::1")).toBe(refIpToBig("fe80::1"));
  });

  it("cidrContains and cidrPrefix agree with parseCidr, past the memo's bound", () => {
    const cidrs = Array.from(
      { length: 5000 },
      (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/${16 + (i % 17)}`,
    );
    for (const round of [0, 1]) {
      for (const [i, c] of cidrs.entries()) {
        const ip = `10.${(i >> 8) & 255}.${(i + round) & 255}.7`;
        const p = parseCidr(c);
        const n = ipToBig(ip);
        expect(cidrContains(c, ip), `${c} ∋ ${ip}`).toBe(n >= p.first && n <= p.last);
        expect(cidrPrefix(c)).toBe(p.prefix);
      }
    }
    expect(cidrContains("fd00::/64", "10.0.0.1")).toBe(false);
    expect(cidrContains("fd00::/64", "fd00::5")).toBe(true);
  });
});

describe("flowKey and formatInstructions without their scratch allocations", () => {
  const fields: [string, fc.Arbitrary<string | number>][] = [
    ["reg6", fc.integer({ min: 0, max: 0xffffffff })],
    ["eth_dst", fc.array(hexPair, { minLength: 6, maxLength: 6 }).map((p) => p.join(":"))],
    [
      "ip_dst",
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }).map((p) => p.join(".")),
    ],
    ["ip_src", fc.constantFrom("010.001.000.009", "1.2.3.4", "255.255.255.255")],
    ["eth_type", fc.constant(0x0800)],
    ["nw_proto", fc.integer({ min: 0, max: 255 })],
    ["in_port", fc.integer({ min: 1, max: 0xfffffeff })],
  ];

  it("a match's key lists its fields in sorted order whatever order they were given in, values as their bytes", () => {
    fc.assert(
      fc.property(fc.tuple(...fields.map(([, arb]) => arb)), fc.func(fc.integer()), (values, shuffleKey) => {
        const match = fields.map(([field], i) => ({ field, value: values[i]! }));
        const shuffled = [...match].sort((a, b) => shuffleKey(a.field) - shuffleKey(b.field));
        const key = flowKey({ table: 30, priority: 332, match: shuffled });
        const parts = match.map(
          (m) => `${m.field}=${valueToBytes(fieldByName(m.field)!, m.value).toString("hex")}`,
        );
        expect(key).toBe(`30/332/${[...parts].sort().join(",")}`);
      }),
      { numRuns: 500 },
    );
  });

  it("instructions out of OpenFlow's order are formatted as the ordered ones", () => {
    const apply: Instruction = { type: "apply_actions", actions: [{ type: "dec_ttl" }] };
    const goto: Instruction = { type: "goto_table", table: 40 };
    const meter: Instruction = { type: "meter", meterId: 3 };
    const ordered = formatInstructions([meter, apply, goto]);
    expect(ordered).toBe(formatInstructions([goto, meter, apply]));
    expect(formatInstructions([apply, goto, meter])).toBe(ordered);
    expect(ordered.indexOf("meter")).toBeLessThan(ordered.indexOf("goto_table"));
  });
});
