/**
 * Packet library, example by example: address text (RFC 5952), the Internet
 * checksum (RFC 1071 vector, a known IPv4 header), DHCP option encodings
 * (RFC 3442 routes, RFC 3396 long options, overload, unknown options kept),
 * VLAN stacks, fragments, bad checksums detected, and lying length fields
 * rejected with a DecodeError naming the layer and field. Also decodes the
 * checked-in capture from real Linux stacks (test/fixtures/packet).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  ARP_OP,
  DHCP_MESSAGE_TYPE,
  DHCP_OPTION_BY_NAME,
  type DhcpSpec,
  ETH_TYPE,
  type FrameSpec,
  buildArpReply,
  buildDhcpPacket,
  buildFrame,
  buildNeighborSolicitation,
  bytesToIpv6,
  canonicalIpv6,
  encodeDhcp,
  encodeOptionValue,
  icmpEcho,
  internetChecksum,
  ipv4ToBytes,
  ipv4ToU32,
  ipv6MulticastMac,
  ipv6ToBytes,
  macToBytes,
  bytesToMac,
  parseDhcp,
  parseEthernet,
  readPcap,
  solicitedNodeAddress,
  u32ToIpv4,
  writePcap,
} from "../../src/packet/index.js";
import { DecodeError, EncodeError } from "../../src/util/errors.js";

const A = "fa:16:3e:00:00:0a";
const B = "fa:16:3e:00:00:0b";

function decodeErr(fn: () => unknown): DecodeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DecodeError);
    return e as DecodeError;
  }
  throw new Error("expected a DecodeError");
}

function udp4(extra: Partial<FrameSpec> = {}): FrameSpec {
  return {
    eth: { src: A, dst: B },
    ipv4: { src: "10.0.0.1", dst: "10.0.0.2" },
    udp: { srcPort: 1000, dstPort: 2000 },
    payload: Buffer.from("hello"),
    ...extra,
  };
}

describe("addresses", () => {
  it("formats IPv6 per RFC 5952", () => {
    const cases: [string, string][] = [
      ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group is not compressed
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of equal runs
      ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // longest run
      ["0:0:0:0:0:0:0:0", "::"],
      ["::1", "::1"],
      ["FE80::ABCD", "fe80::abcd"],
      ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ];
    for (const [input, want] of cases) expect(canonicalIpv6(input)).toBe(want);
  });

  it("converts MAC and IPv4 both ways and rejects bad text", () => {
    expect(bytesToMac(macToBytes("FA-16-3E-0:1:2"))).toBe("fa:16:3e:00:01:02");
    expect(ipv4ToU32("10.0.0.1")).toBe(0x0a000001);
    expect(u32ToIpv4(0xc0a80001)).toBe("192.168.0.1");
    expect(ipv4ToBytes("255.1.2.3")).toEqual(Buffer.from([255, 1, 2, 3]));
    expect(() => macToBytes("fa:16:3e:00:00")).toThrow(EncodeError);
    expect(() => ipv4ToU32("10.0.0.256")).toThrow(EncodeError);
    expect(() => ipv6ToBytes("fe80::1%eth0")).toThrow(EncodeError);
    expect(solicitedNodeAddress("fd00::12:3456")).toBe("ff02::1:ff12:3456");
    expect(ipv6MulticastMac("ff02::1:ff12:3456")).toBe("33:33:ff:12:34:56");
    expect(bytesToIpv6(ipv6ToBytes("fd00::1"))).toBe("fd00::1");
  });
});

describe("checksums", () => {
  it("matches the RFC 1071 worked example", () => {
    // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
    expect(internetChecksum(Buffer.from("0001f203f4f5f6f7", "hex"))).toBe(~0xddf2 & 0xffff);
    expect(internetChecksum(Buffer.from("0001f203f4f5f6", "hex"))).toBe(~(0xddf2 - 0xf7) & 0xffff);
  });

  it("computes a known IPv4 header checksum (192.168.0.1 → 192.168.0.199, UDP, DF)", () => {
    const f = buildFrame({
      eth: { src: A, dst: B },
      ipv4: { src: "192.168.0.1", dst: "192.168.0.199", dontFragment: true, ttl: 64, protocol: 17 },
      payload: Buffer.alloc(0x73 - 20),
    });
    expect(f.subarray(14, 34).toString("hex")).toBe(
      "450000730000400040 11b861c0a80001c0a800c7".replace(" ", ""),
    );
  });

  it("flags every bad checksum and accepts a missing UDP checksum only over IPv4", () => {
    const bad = (s: FrameSpec) => parseEthernet(buildFrame(s));
    expect(bad(udp4({ ipv4: { src: "10.0.0.1", dst: "10.0.0.2", checksum: 1 } })).ipv4!.checksumValid).toBe(
      false,
    );
    expect(bad(udp4({ udp: { srcPort: 1, dstPort: 2, checksum: 1 } })).udp!.checksumValid).toBe(false);
    expect(bad(udp4({ udp: { srcPort: 1, dstPort: 2, checksum: 0 } })).udp!.checksumValid).toBe(true);
    const v6 = { eth: { src: A, dst: B }, ipv6: { src: "fd00::1", dst: "fd00::2" } };
    expect(bad({ ...v6, udp: { srcPort: 1, dstPort: 2, checksum: 0 } }).udp!.checksumValid).toBe(false);
    expect(bad({ ...v6, udp: { srcPort: 1, dstPort: 2 } }).udp!.checksumValid).toBe(true);
    expect(bad({ ...v6, tcp: { srcPort: 1, dstPort: 2, checksum: 7 } }).tcp!.checksumValid).toBe(false);
    expect(
      bad({ ...v6, icmpv6: { ...icmpEcho("request", 1, 1, undefined, true), checksum: 7 } }).icmpv6!
        .checksumValid,
    ).toBe(false);
    const icmp = bad({
      eth: v6.eth,
      ipv4: { src: "1.1.1.1", dst: "2.2.2.2" },
      icmp: { type: 8, checksum: 3 },
    });
    expect(icmp.icmp!.checksumValid).toBe(false);
  });

  it("a UDP/IPv6 checksum depends on the pseudo-header addresses", () => {
    const f = buildFrame({
      eth: { src: A, dst: B },
      ipv6: { src: "fd00::1", dst: "fd00::2" },
      udp: { srcPort: 1, dstPort: 2 },
    });
    const moved = Buffer.from(f);
    moved[14 + 8 + 15] = 9; // source fd00::9
    expect(parseEthernet(moved).udp!.checksumValid).toBe(false);
  });
});

describe("Ethernet and VLAN", () => {
  it("tags single (802.1Q) and QinQ (802.1ad outer), outer first", () => {
    const one = parseEthernet(buildFrame({ ...udp4(), vlans: [{ vid: 42, pcp: 5, dei: true }] }));
    expect(one.vlans).toEqual([{ tpid: 0x8100, pcp: 5, dei: true, vid: 42 }]);
    expect(one.eth.ethertype).toBe(ETH_TYPE.IPV4);
    const two = parseEthernet(buildFrame({ ...udp4(), vlans: [{ vid: 100 }, { vid: 200 }] }));
    expect(two.vlans.map((v) => [v.tpid, v.vid])).toEqual([
      [0x88a8, 100],
      [0x8100, 200],
    ]);
    expect(two.udp!.checksumValid).toBe(true);
    expect(() => buildFrame({ ...udp4(), vlans: [{ vid: 4096 }] })).toThrow(EncodeError);
  });

  it("ignores Ethernet padding after ARP and after the IPv4 total length", () => {
    const arp = buildArpReply({ mac: A, ip: "10.0.0.1", toMac: B, toIp: "10.0.0.2" });
    const padded = Buffer.concat([arp, Buffer.alloc(60 - arp.length, 0xee)]);
    expect(parseEthernet(padded).arp).toEqual({
      op: ARP_OP.REPLY,
      sha: A,
      spa: "10.0.0.1",
      tha: B,
      tpa: "10.0.0.2",
    });
    const u = buildFrame(udp4());
    const f = parseEthernet(Buffer.concat([u, Buffer.alloc(20, 0xee)]));
    expect(f.payload.toString()).toBe("hello");
    expect(f.udp!.checksumValid).toBe(true);
  });

  it("keeps unknown EtherTypes raw", () => {
    const f = parseEthernet(
      buildFrame({ eth: { src: A, dst: B, ethertype: 0x88cc }, payload: Buffer.from("lldp") }),
    );
    expect(f.eth.ethertype).toBe(0x88cc);
    expect(f.payload.toString()).toBe("lldp");
  });
});

describe("lying lengths and truncation are DecodeErrors naming layer and field", () => {
  it("IPv4 total length, IHL", () => {
    const f = buildFrame(udp4());
    const long = Buffer.from(f);
    long.writeUInt16BE(1000, 16);
    expect(decodeErr(() => parseEthernet(long)).message).toMatch(/^ipv4: total length 1000/);
    const ihl = Buffer.from(f);
    ihl[14] = 0x44;
    expect(decodeErr(() => parseEthernet(ihl)).context).toMatchObject({ layer: "ipv4", field: "ihl" });
    const bigIhl = Buffer.from(f);
    bigIhl[14] = 0x4f;
    expect(decodeErr(() => parseEthernet(bigIhl)).message).toMatch(/^ipv4/);
  });

  it("UDP length", () => {
    const f = Buffer.from(buildFrame(udp4()));
    f.writeUInt16BE(200, 14 + 20 + 4);
    expect(decodeErr(() => parseEthernet(f)).context).toMatchObject({ layer: "udp", field: "length" });
    f.writeUInt16BE(3, 14 + 20 + 4);
    expect(decodeErr(() => parseEthernet(f)).context).toMatchObject({ layer: "udp", field: "length" });
  });

  it("IPv6 payload length and extension header length", () => {
    const f = buildFrame({
      eth: { src: A, dst: B },
      ipv6: { src: "fd00::1", dst: "fd00::2", extensions: [{ kind: "destination-options", options: [] }] },
      udp: { srcPort: 1, dstPort: 2 },
    });
    const pl = Buffer.from(f);
    pl.writeUInt16BE(500, 14 + 4);
    expect(decodeErr(() => parseEthernet(pl)).context).toMatchObject({
      layer: "ipv6",
      field: "payload length",
    });
    const ext = Buffer.from(f);
    ext[14 + 40 + 1] = 9; // destination options claims 80 bytes
    expect(decodeErr(() => parseEthernet(ext)).message).toMatch(/destination-options/);
  });

  it("truncated headers name what was being read", () => {
    const f = buildFrame({
      eth: { src: A, dst: B },
      ipv4: { src: "1.1.1.1", dst: "2.2.2.2" },
      tcp: { srcPort: 1, dstPort: 2 },
    });
    const cut = Buffer.from(f.subarray(0, 14 + 20 + 10));
    cut.writeUInt16BE(30, 16);
    cut.writeUInt16BE(0, 24);
    expect(decodeErr(() => parseEthernet(cut)).message).toMatch(/^tcp: truncated reading/);
    expect(decodeErr(() => parseEthernet(Buffer.alloc(10))).message).toMatch(/^ethernet: truncated reading/);
  });
});

describe("fragments", () => {
  it("flags IPv4 fragments and leaves their payload raw", () => {
    const f = parseEthernet(
      buildFrame(udp4({ ipv4: { src: "10.0.0.1", dst: "10.0.0.2", moreFragments: true } })),
    );
    expect(f.ipv4!.isFragment).toBe(true);
    expect(f.udp).toBeUndefined();
    expect(f.payload.length).toBe(8 + 5);
    const later = parseEthernet(
      buildFrame({
        eth: { src: A, dst: B },
        ipv4: { src: "1.1.1.1", dst: "2.2.2.2", fragmentOffset: 185, protocol: 17 },
      }),
    );
    expect(later.ipv4).toMatchObject({ isFragment: true, fragmentOffset: 185, protocol: 17 });
  });

  it("walks IPv6 extension headers; a real fragment stops there, an atomic one does not", () => {
    const spec = (fragmentOffset: number, moreFragments: boolean): FrameSpec => ({
      eth: { src: A, dst: B },
      ipv6: {
        src: "fd00::1",
        dst: "fd00::2",
        extensions: [
          { kind: "hop-by-hop", options: [{ type: 5, data: Buffer.from([0, 0]) }] },
          { kind: "routing", routingType: 4, segmentsLeft: 1, data: Buffer.alloc(20, 1) },
          { kind: "fragment", fragmentOffset, moreFragments, identification: 0xdeadbeef },
          { kind: "destination-options", options: [{ type: 0xc2, data: Buffer.from("abc") }] },
        ],
      },
      udp: { srcPort: 7, dstPort: 9 },
    });
    const atomic = parseEthernet(buildFrame(spec(0, false)));
    expect(atomic.ipv6!.isFragment).toBe(false);
    expect(atomic.ipv6!.extensions.map((e) => e.kind)).toEqual([
      "hop-by-hop",
      "routing",
      "fragment",
      "destination-options",
    ]);
    expect(atomic.ipv6!.protocol).toBe(17);
    expect(atomic.udp!.checksumValid).toBe(true);
    const frag = parseEthernet(buildFrame(spec(100, true)));
    expect(frag.ipv6!.isFragment).toBe(true);
    expect(frag.udp).toBeUndefined();
    expect(frag.ipv6!.protocol).toBe(60);
  });
});

describe("DHCPv4 options", () => {
  const base: DhcpSpec = {
    op: 1,
    xid: 0x11223344,
    chaddr: A,
    options: { messageType: DHCP_MESSAGE_TYPE.DISCOVER },
  };

  it("encodes classless static routes per RFC 3442", () => {
    const def = DHCP_OPTION_BY_NAME.get("classlessStaticRoutes")!;
    const bytes = encodeOptionValue(def, [
      { destination: "10.17.0.0/16", router: "10.0.0.1" },
      { destination: "0.0.0.0/0", router: "10.0.0.254" },
      { destination: "192.168.1.128/25", router: "10.0.0.2" },
    ]);
    expect(bytes.toString("hex")).toBe("100a110a000001000a0000fe19c0a801800a000002");
    const back = parseDhcp(
      encodeDhcp({
        ...base,
        options: { classlessStaticRoutes: [{ destination: "10.17.0.0/16", router: "10.0.0.1" }] },
      }),
    );
    expect(back.options.classlessStaticRoutes).toEqual([{ destination: "10.17.0.0/16", router: "10.0.0.1" }]);
  });

  it("puts the message type first, pads to 300 bytes, ends with End", () => {
    const b = encodeDhcp({ ...base, options: { hostName: "x", messageType: 3 } });
    expect(b.length).toBe(300);
    expect(b.subarray(240, 243)).toEqual(Buffer.from([53, 1, 3]));
    expect(b.subarray(243, 247)).toEqual(Buffer.from([12, 1, 0x78, 255]));
  });

  it("splits and concatenates long options (RFC 3396)", () => {
    const name = "d".repeat(300);
    const b = encodeDhcp({ ...base, options: { domainName: name } });
    expect(b[240]).toBe(15);
    expect(b[241]).toBe(255);
    expect(b[240 + 257]).toBe(15);
    expect(b[240 + 258]).toBe(45);
    expect(parseDhcp(b).options.domainName).toBe(name);
  });

  it("preserves unknown options raw and in order", () => {
    const unknownOptions = [
      { code: 224, data: Buffer.from("private") },
      { code: 150, data: Buffer.from([10, 0, 0, 9]) },
    ];
    const d = parseDhcp(encodeDhcp({ ...base, unknownOptions }));
    expect(d.unknownOptions).toEqual(unknownOptions);
    expect(() => encodeDhcp({ ...base, unknownOptions: [{ code: 1, data: Buffer.alloc(4) }] })).toThrow(
      EncodeError,
    );
  });

  it("reads options overloaded into file and sname (option 52)", () => {
    const b = encodeDhcp({ ...base, sname: "", file: "", options: { messageType: 5, optionOverload: 3 } });
    b.set([15, 3, 0x61, 0x62, 0x63, 255], 108); // file field
    b.set([3, 4, 10, 0, 0, 1, 255], 44); // sname field
    const d = parseDhcp(b);
    expect(d.options).toMatchObject({ messageType: 5, domainName: "abc", router: ["10.0.0.1"] });
    expect(d.file).toBe("");
  });

  it("rejects malformed options with the option named", () => {
    const b = encodeDhcp({ ...base, options: { messageType: 1, subnetMask: "255.255.255.0" } });
    b[244] = 3; // subnet mask length 3
    expect(decodeErr(() => parseDhcp(b)).message).toMatch(/option 1 \(subnetMask\)/);
    const cookie = encodeDhcp(base);
    cookie[236] = 0;
    expect(decodeErr(() => parseDhcp(cookie)).context).toMatchObject({
      layer: "dhcp",
      field: "magic cookie",
    });
    const runaway = encodeDhcp(base);
    runaway[241] = 200; // message type claims 200 bytes, End and padding are fewer
    expect(decodeErr(() => parseDhcp(runaway.subarray(0, 260))).message).toMatch(/^dhcp options: truncated/);
  });

  it("builds a whole OFFER frame the apps can send", () => {
    const f = parseEthernet(
      buildDhcpPacket({
        ethSrc: B,
        ethDst: A,
        ipSrc: "10.0.0.1",
        ipDst: "10.0.0.5",
        dhcp: {
          op: 2,
          xid: 7,
          chaddr: A,
          yiaddr: "10.0.0.5",
          options: {
            messageType: 2,
            serverIdentifier: "10.0.0.1",
            ipAddressLeaseTime: 600,
            interfaceMtu: 1450,
          },
        },
      }),
    );
    expect(f.udp).toMatchObject({ srcPort: 67, dstPort: 68, checksumValid: true });
    expect(f.dhcp).toMatchObject({ op: 2, xid: 7, yiaddr: "10.0.0.5", chaddr: A });
    expect(f.dhcp!.options.interfaceMtu).toBe(1450);
  });
});

describe("NDP", () => {
  it("builds a neighbor solicitation to the solicited-node group", () => {
    const f = parseEthernet(buildNeighborSolicitation({ mac: A, ip: "fd00::1", target: "fd00::abcd" }));
    expect(f.eth.dst).toBe("33:33:ff:00:ab:cd");
    expect(f.ipv6).toMatchObject({ dst: "ff02::1:ff00:abcd", hopLimit: 255 });
    expect(f.icmpv6!.ndp).toEqual({
      kind: "neighbor-solicitation",
      target: "fd00::abcd",
      options: [{ kind: "source-ll", mac: A }],
    });
    expect(f.icmpv6!.checksumValid).toBe(true);
  });

  it("rejects a zero-length option", () => {
    const f = Buffer.from(buildNeighborSolicitation({ mac: A, ip: "fd00::1", target: "fd00::abcd" }));
    f[14 + 40 + 24 + 1] = 0;
    expect(decodeErr(() => parseEthernet(f)).context).toMatchObject({ layer: "ndp", field: "option length" });
  });
});

describe("the checked-in capture from real Linux stacks", () => {
  const frames = readPcap(
    readFileSync(new URL("../fixtures/packet/veth-capture.pcap", import.meta.url)),
  ).records.map((r) => parseEthernet(r.data));

  it("router solicitations carry a source link-layer option", () => {
    const rs = frames.filter((f) => f.icmpv6?.ndp?.kind === "router-solicitation");
    expect(rs.length).toBeGreaterThan(0);
    expect(rs[0]!.ipv6!.dst).toBe("ff02::2");
    expect(rs[0]!.icmpv6!.ndp!.options[0]!.kind).toBe("source-ll");
    expect(rs.every((f) => f.icmpv6!.checksumValid)).toBe(true);
  });

  it("MLDv2 reports walk a hop-by-hop header with a router alert option", () => {
    const mld = frames.filter((f) => f.icmpv6?.type === 143);
    expect(mld.length).toBeGreaterThan(0);
    expect(mld[0]!.ipv6!.extensions).toEqual([
      { kind: "hop-by-hop", options: [{ type: 5, data: Buffer.from([0, 0]) }] },
    ]);
    expect(mld[0]!.ipv6!.protocol).toBe(58);
    expect(mld.every((f) => f.icmpv6!.checksumValid)).toBe(true);
  });

  it("DHCP DISCOVER from udhcpc; every frame survives a pcap round trip", () => {
    const d = frames.find((f) => f.dhcp?.options.messageType === 1)!;
    expect(d.dhcp!.chaddr).toBe("02:00:00:77:00:0a");
    const raw = readPcap(
      readFileSync(new URL("../fixtures/packet/veth-capture.pcap", import.meta.url)),
    ).records;
    expect(readPcap(writePcap(raw)).records.map((r) => r.data)).toEqual(raw.map((r) => r.data));
  });
});
