/**
 * Round trips with fast-check: for random valid FrameSpecs of every layer
 * combination, parseEthernet(buildFrame(spec)) gives back the same fields
 * and every checksum the builder filled verifies; DHCP messages and NDP
 * messages round-trip through their own codecs; the RFC 5952 formatter agrees
 * with ipaddr.js.
 */
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import {
  type FrameSpec,
  buildFrame,
  bytesToIpv6,
  decodeNdp,
  encodeDhcp,
  ndpToIcmpv6,
  parseDhcp,
  parseEthernet,
} from "../../src/packet/index.js";
import { dhcpSpec, frameSpec, ndp } from "../fixtures/packet/arbitraries.js";

function expectSameFields(s: FrameSpec): void {
  const f = parseEthernet(buildFrame(s));
  expect(f.eth.src).toBe(s.eth.src);
  expect(f.eth.dst).toBe(s.eth.dst);
  expect(f.vlans.map(({ vid, pcp, dei }) => ({ vid, pcp, dei }))).toEqual(s.vlans ?? []);
  if (s.arp) expect(f.arp).toEqual(s.arp);
  if (s.ipv4) {
    expect(f.ipv4).toMatchObject({ ...s.ipv4, checksumValid: true, isFragment: false });
  }
  if (s.ipv6) expect(f.ipv6).toMatchObject({ ...s.ipv6, isFragment: false });
  if (s.udp) expect(f.udp).toMatchObject({ ...s.udp, checksumValid: true });
  if (s.tcp) expect(f.tcp).toMatchObject({ ...s.tcp, checksumValid: true });
  if (s.icmp) expect(f.icmp).toMatchObject({ ...s.icmp, checksumValid: true });
  if (s.icmpv6) expect(f.icmpv6).toMatchObject({ ...s.icmpv6, checksumValid: true });
  if (s.dhcp) {
    const { broadcast, flags, ...rest } = s.dhcp;
    expect(f.dhcp).toMatchObject({ ...rest, broadcast, flags: (flags ?? 0) | (broadcast ? 0x8000 : 0) });
  } else if (!s.icmp && !s.icmpv6 && !s.arp) {
    expect(f.payload).toEqual(s.payload ?? Buffer.alloc(0));
  }
}

describe("packet round trips", () => {
  it("parse(build(spec)) returns the spec's fields with valid checksums", () => {
    fc.assert(fc.property(frameSpec, expectSameFields), { numRuns: 1500 });
  });

  it("DHCP: parse(encode(m)) keeps every table option and the unknown ones", () => {
    fc.assert(
      fc.property(dhcpSpec, (m) => {
        const d = parseDhcp(encodeDhcp(m));
        expect(d.options).toEqual(m.options);
        expect(d.unknownOptions).toEqual(m.unknownOptions);
        expect(d).toMatchObject({
          xid: m.xid,
          chaddr: m.chaddr,
          sname: m.sname,
          file: m.file,
          yiaddr: m.yiaddr,
        });
      }),
      { numRuns: 1000 },
    );
  });

  it("NDP: the ICMPv6 view decodes back to the same message", () => {
    fc.assert(
      fc.property(ndp, (m) => {
        const frame = parseEthernet(
          buildFrame({
            eth: { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
            ipv6: { src: "fe80::1", dst: "ff02::1", hopLimit: 255 },
            icmpv6: ndpToIcmpv6(m),
          }),
        );
        expect(frame.icmpv6!.ndp).toEqual(m);
        expect(decodeNdp(frame.icmpv6!)).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });

  it("IPv6 text agrees with ipaddr.js's RFC 5952 form", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const ours = bytesToIpv6(b);
        expect(ipaddr.IPv6.parse(ours).toByteArray()).toEqual([...b]);
        if (!ours.startsWith("::ffff:"))
          expect(ours).toBe((ipaddr.fromByteArray([...b]) as ipaddr.IPv6).toRFC5952String());
      }),
      { numRuns: 2000 },
    );
  });
});
