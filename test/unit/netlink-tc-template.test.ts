/**
 * FlowerBatchEncoder (template + patch) must produce exactly the bytes of the
 * ordinary encoder (filterAddMessage) for every rule, and fall back to it —
 * with its EncodeError — for values the fast writers refuse. Random rules
 * share a few shapes so that most of them go through a template.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter } from "../../src/util/bytes.js";
import { EncodeError } from "../../src/util/errors.js";
import type { OutMessage } from "../../src/offload/netlink/client.js";
import { filterAddMessage } from "../../src/offload/netlink/tc/client.js";
import type { FlowerAction, FlowerRule } from "../../src/offload/netlink/tc/rule.js";
import { FlowerBatchEncoder } from "../../src/offload/netlink/tc/template.js";

const target = { ifindex: 7, hook: "ingress" as const };
const full = (r: FlowerRule) => filterAddMessage(target, r);
const bytes = (m: OutMessage) => {
  const w = new ByteWriter(256);
  m.body(w);
  return `${m.type}/${m.flags}/${m.typeName}/${w.finish().toString("hex")}`;
};

const octet = fc.integer({ min: 0, max: 255 });
const mac = fc
  .array(octet, { minLength: 6, maxLength: 6 })
  .map((b) => b.map((x) => x.toString(16).padStart(2, "0")).join(":"));
const ipv4 = fc.array(octet, { minLength: 4, maxLength: 4 }).map((b) => b.join("."));
const ipv6 = fc.ipV6();
const drop: FlowerAction[] = [{ kind: "gact", control: 2 }];
const redirect: FlowerAction[] = [
  { kind: "mirred", direction: "egress", mode: "redirect", ifindex: 9, control: 4 },
];

/** A rule of one of four shapes, values random. */
const rule: fc.Arbitrary<FlowerRule> = fc.oneof(
  fc.record({ m: mac, ip: ipv4 }).map(({ m, ip }): FlowerRule => ({
    prio: 1,
    protocol: 0x0800,
    match: { dstMac: { value: m, mask: "ff:ff:ff:ff:ff:ff" }, dstIp: { value: ip, mask: "255.255.255.255" } },
    flags: { skipHw: true },
    actions: drop,
  })),
  fc
    .record({ src: ipv4, port: fc.integer({ min: 0, max: 65535 }), vlan: fc.integer({ min: 0, max: 4095 }) })
    .map(({ src, port, vlan }): FlowerRule => ({
      prio: 5,
      protocol: 0x0800,
      chain: 3,
      match: {
        vlanId: vlan,
        ipProto: 6,
        srcIp: { value: src, mask: "255.255.255.0" },
        dstPort: { value: port },
      },
      actions: [{ kind: "mirred", direction: "egress", mode: "redirect", ifindex: 9, control: 4 }],
    })),
  fc.record({ ip: ipv6, key: fc.integer({ min: 0, max: 0xffffffff }) }).map(({ ip, key }): FlowerRule => ({
    prio: 2,
    protocol: 0x86dd,
    match: { dstIp: { value: ip }, encKeyId: key },
    flags: { skipSw: true },
    actions: redirect,
  })),
  fc.record({ m: mac, tos: octet }).map(({ m, tos }): FlowerRule => ({
    prio: 9,
    protocol: 0x0800,
    match: { srcMac: { value: m }, ipTos: { value: tos, mask: 0xfc } },
    actions: drop,
  })),
  fc
    .record({ type: octet, code: octet, v6: fc.boolean(), cookie: fc.constantFrom("6664", "6664aa") })
    .map(({ type, code, v6, cookie }): FlowerRule => ({
      prio: 4,
      protocol: v6 ? 0x86dd : 0x0800,
      match: { ipProto: v6 ? 58 : 1, icmpType: { value: type, mask: 0xff }, icmpCode: { value: code } },
      actions: [{ kind: "gact", control: 0, cookie }],
    })),
);

describe("FlowerBatchEncoder", () => {
  it("encodes every rule to the ordinary encoder's bytes", () => {
    fc.assert(
      fc.property(fc.array(rule, { minLength: 1, maxLength: 40 }), (rules) => {
        const enc = new FlowerBatchEncoder(full);
        for (const r of rules) expect(bytes(enc.message(r))).toBe(bytes(full(r)));
      }),
      { numRuns: 200 },
    );
  });

  it("falls back to the ordinary encoder (and its errors) for values the fast path refuses", () => {
    const enc = new FlowerBatchEncoder(full);
    const base: FlowerRule = {
      prio: 1,
      protocol: 0x0800,
      match: { dstMac: { value: "02:00:00:00:00:01" }, dstIp: { value: "10.0.0.1" }, vlanId: 5 },
      actions: drop,
    };
    enc.message(base);
    const short: FlowerRule = { ...base, match: { ...base.match, dstMac: { value: "2:0:0:0:0:1" } } };
    expect(bytes(enc.message(short))).toBe(bytes(full(short)));
    const bad: FlowerRule = { ...base, match: { ...base.match, dstIp: { value: "10.0.0.300" } } };
    expect(() => bytes(enc.message(bad))).toThrow(EncodeError);
    const big: FlowerRule = { ...base, match: { ...base.match, vlanId: 70000 } };
    expect(() => bytes(enc.message(big))).toThrow(EncodeError);
  });
});
