/**
 * The IPv6 configuration codecs: NDP's RDNSS and DNSSL options (RFC 8106),
 * DNS names in wire form, EUI-64 addresses, DHCPv6 messages, options and
 * DUIDs (RFC 8415). Checked three ways: against bytes real clients sent
 * (test/fixtures/packet/ipv6-clients.pcap: rdisc6's and the Linux kernel's
 * router solicitations, ISC dhclient's SOLICIT, INFORMATION-REQUEST,
 * REQUEST, CONFIRM, RENEW and RELEASE — decoded, then re-encoded to the very
 * same bytes), against tcpdump's independent decoder for what we build, and
 * by round-trip properties. Malformed input is a DecodeError (see
 * ipv6-fuzz.test.ts for fuzzing).
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildDhcp6Packet,
  buildFrame,
  buildRouterAdvertisement,
  type Dhcp6,
  type Dhcp6Option,
  DHCP6_MESSAGE_TYPE,
  DHCP6_MESSAGE_TYPE_NAMES,
  dhcp6OfFrame,
  dhcp6Option,
  dhcp6Options,
  decodeDhcp6,
  decodeDnsNames,
  decodeDuid,
  duidLl,
  duidMac,
  encodeDhcp6,
  encodeDnsName,
  encodeDnsNames,
  encodeDuid,
  eui64InterfaceId,
  linkLocalFromMac,
  type Ndp,
  type NdpOption,
  ndpToIcmpv6,
  parseEthernet,
  readPcap,
  slaacAddress,
  writePcap,
} from "../../src/packet/index.js";
import { ByteReader } from "../../src/util/bytes.js";
import { DecodeError, EncodeError } from "../../src/util/errors.js";
import { run } from "../../src/util/exec.js";
import { domainName, ipv6, mac } from "../fixtures/packet/arbitraries.js";
import { makeRunDir } from "../harness/index.js";

const capture = readPcap(
  readFileSync(new URL("../fixtures/packet/ipv6-clients.pcap", import.meta.url)),
).records.map((r) => r.data);

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function raFrame(m: Ndp): Buffer {
  return buildFrame({
    eth: { src: "fa:16:3e:00:00:01", dst: "33:33:00:00:00:01" },
    ipv6: { src: "fe80::1", dst: "ff02::1", hopLimit: 255 },
    icmpv6: ndpToIcmpv6(m),
  });
}

describe("NDP RDNSS and DNSSL options (RFC 8106)", () => {
  const ra = (options: NdpOption[]): Ndp =>
    ({
      kind: "router-advertisement",
      curHopLimit: 64,
      managed: false,
      other: false,
      otherFlags: 0,
      routerLifetime: 1800,
      reachableTime: 0,
      retransTimer: 0,
      options,
    }) as const;

  it("encodes RDNSS as type 25, length 1 + 2n, reserved, lifetime, addresses", () => {
    const body = ndpToIcmpv6(
      ra([{ kind: "rdnss", lifetime: 1800, servers: ["2001:db8::53", "2001:db8::54"] }]),
    ).body!;
    expect(body.subarray(8)).toEqual(
      hex(`1905 0000 00000708
           20010db8000000000000000000000053
           20010db8000000000000000000000054`),
    );
  });

  it("encodes DNSSL names in wire form, zero-padded to 8 bytes", () => {
    const body = ndpToIcmpv6(ra([{ kind: "dnssl", lifetime: 600, domains: ["example.com", "a.b"] }])).body!;
    // 8 header bytes + 13 + 5 name bytes = 26 → 4 units, 6 bytes of padding.
    expect(body.subarray(8)).toEqual(
      hex("1f04 0000 00000258 076578616d706c6503636f6d00 0161016200 000000000000"),
    );
  });

  it("decodes both from a frame and round-trips", () => {
    const opts: NdpOption[] = [
      { kind: "rdnss", lifetime: 0xffffffff, servers: ["2001:db8::1"] },
      { kind: "dnssl", lifetime: 0, domains: ["flowdrake.test", "x"] },
    ];
    const f = parseEthernet(raFrame(ra(opts)));
    expect(f.icmpv6?.ndp).toMatchObject({ kind: "router-advertisement", options: opts });
  });

  it("keeps malformed ones raw: RDNSS of even length, DNSSL with a pointer, bad padding or no name", () => {
    const cases: [number, Buffer][] = [
      [25, hex("0000 00000708 20010db8000000000000000000000053 0000000000000000")], // length 4: even
      [31, hex("0000 00000708 c00c000000000000")], // compression pointer
      [31, hex("0000 00000708 0161000000000001")], // non-zero padding
      [31, hex("0000 00000708 0000000000000000")], // no name
      [31, hex("0000 00000708 0161000000000000 0000000000000000")], // 8 or more bytes of padding
      [31, hex("0000 00000708 3f61616161616161")], // label runs past the option
    ];
    for (const [code, data] of cases) {
      const f = parseEthernet(raFrame(ra([{ kind: "raw", code, data }])));
      const o = f.icmpv6?.ndp?.kind === "router-advertisement" ? f.icmpv6.ndp.options : [];
      expect(o).toEqual([{ kind: "raw", code, data }]);
    }
  });

  it("refuses to encode an empty RDNSS or DNSSL, or a bad domain", () => {
    expect(() => ndpToIcmpv6(ra([{ kind: "rdnss", lifetime: 1, servers: [] }]))).toThrow(EncodeError);
    expect(() => ndpToIcmpv6(ra([{ kind: "dnssl", lifetime: 1, domains: [] }]))).toThrow(EncodeError);
    expect(() => ndpToIcmpv6(ra([{ kind: "dnssl", lifetime: 1, domains: ["bad domain"] }]))).toThrow(
      EncodeError,
    );
  });

  it("buildRouterAdvertisement adds RDNSS/DNSSL only when given servers/domains, and sets Prf", () => {
    const base = { mac: "fa:16:3e:00:00:01", ip: "fe80::1", prefixes: [] };
    const none = parseEthernet(
      buildRouterAdvertisement({
        ...base,
        dnsServers: { servers: [], lifetime: 1 },
        dnsSearch: { domains: [], lifetime: 1 },
      }),
    );
    expect(none.icmpv6?.ndp).toMatchObject({ options: [{ kind: "source-ll", mac: base.mac }] });
    const high = parseEthernet(buildRouterAdvertisement({ ...base, routerPreference: "high" }));
    expect(high.icmpv6?.ndp).toMatchObject({ otherFlags: 0b01000 });
    const low = parseEthernet(buildRouterAdvertisement({ ...base, routerPreference: "low" }));
    expect(low.icmpv6?.ndp).toMatchObject({ otherFlags: 0b11000 });
  });
});

describe("addresses from MACs (modified EUI-64)", () => {
  it("matches the link-local address the Linux kernel formed for fa:16:3e:11:22:33", () => {
    // The captured solicitations come from that host.
    const f = parseEthernet(capture[1]!);
    expect(f.eth.src).toBe("fa:16:3e:11:22:33");
    expect(linkLocalFromMac("fa:16:3e:11:22:33")).toBe(f.ipv6!.src);
    expect(linkLocalFromMac("fa:16:3e:11:22:33")).toBe("fe80::f816:3eff:fe11:2233");
  });

  it("flips the universal/local bit and inserts ff:fe", () => {
    expect(eui64InterfaceId("00:00:5e:00:53:01")).toEqual(hex("02005efffe005301"));
    expect(eui64InterfaceId("02:00:5e:00:53:01")).toEqual(hex("00005efffe005301"));
    expect(slaacAddress("2001:db8:1:2::", "fa:16:3e:aa:bb:cc")).toBe("2001:db8:1:2:f816:3eff:feaa:bbcc");
    expect(slaacAddress("2001:db8:1:2:dead:beef::", "fa:16:3e:aa:bb:cc")).toBe(
      "2001:db8:1:2:f816:3eff:feaa:bbcc",
    );
  });
});

describe("DNS names in wire form", () => {
  it("encodes labels, the root and a trailing dot", () => {
    expect(encodeDnsName("example.com")).toEqual(hex("076578616d706c6503636f6d00"));
    expect(encodeDnsName("example.com.")).toEqual(encodeDnsName("example.com"));
    expect(encodeDnsName("")).toEqual(hex("00"));
    expect(encodeDnsNames(["a", "b.c"])).toEqual(hex("016100 0162016300"));
  });

  it("rejects bad text", () => {
    for (const bad of [
      "a..b",
      "a b",
      "é.com",
      `${"a".repeat(64)}.com`,
      "..",
      Array(130).fill("ab").join("."),
    ])
      expect(() => encodeDnsName(bad), bad).toThrow(EncodeError);
  });

  it("rejects compression, reserved label types, labels with a dot or a non-host-name byte, overlong and truncated names", () => {
    const dec = (b: Buffer) => decodeDnsNames(new ByteReader(b, 0, b.length, "t"), "test names");
    expect(dec(hex("0161 00 0162 00"))).toEqual(["a", "b"]);
    for (const bad of [
      hex("c00c"),
      hex("4161"),
      hex("03612e6200"),
      hex("0261ff00"),
      hex("0361"),
      Buffer.alloc(300, 1),
    ])
      expect(() => dec(bad)).toThrow(DecodeError);
  });

  it("round-trips any host-name style list", () => {
    fc.assert(
      fc.property(fc.array(domainName, { maxLength: 5 }), (names) => {
        const b = encodeDnsNames(names);
        expect(decodeDnsNames(new ByteReader(b, 0, b.length, "t"), "t")).toEqual(names);
      }),
      { numRuns: 300 },
    );
  });
});

describe("DHCPv6 messages from real clients", () => {
  const messages = capture.map((frame) => ({ frame, f: parseEthernet(frame) })).filter((x) => x.f.udp);

  it("the capture holds dhclient's SOLICIT, INFORMATION-REQUEST, REQUEST, CONFIRM, RENEW and RELEASE", () => {
    expect(messages.map((m) => DHCP6_MESSAGE_TYPE_NAMES.get(dhcp6OfFrame(m.f)!.msgType))).toEqual([
      "SOLICIT",
      "INFORMATION-REQUEST",
      "REQUEST",
      "CONFIRM",
      "RENEW",
      "RELEASE",
    ]);
  });

  it("decodes dhclient's SOLICIT field by field (as tcpdump shows it)", () => {
    const m = dhcp6OfFrame(messages[0]!.f)!;
    expect(m).toEqual({
      msgType: DHCP6_MESSAGE_TYPE.SOLICIT,
      transactionId: 0xe5a94c,
      options: [
        { kind: "client-id", duid: hex("0001 0001 32a4eabc fa163e112233") },
        { kind: "oro", codes: [23, 24] },
        { kind: "elapsed-time", time: 0 },
        { kind: "ia-na", iaid: 1041310259, t1: 3600, t2: 5400, options: [] },
      ],
    });
    const duid = dhcp6Option(m.options, "client-id")!.duid;
    expect(decodeDuid(duid)).toEqual({
      type: "llt",
      hardwareType: 1,
      time: 849668796,
      linkLayerAddress: hex("fa163e112233"),
    });
    expect(duidMac(duid)).toBe("fa:16:3e:11:22:33");
  });

  it("decodes the REQUEST's server id and IA_NA with its IAADDR hint", () => {
    const m = dhcp6OfFrame(messages[2]!.f)!;
    expect(dhcp6Option(m.options, "server-id")?.duid).toEqual(duidLl("fa:16:3e:aa:00:20"));
    expect(dhcp6Options(m.options, "ia-na")).toEqual([
      {
        kind: "ia-na",
        iaid: 1040195845,
        t1: 3600,
        t2: 5400,
        options: [
          {
            kind: "iaaddr",
            address: "2001:db8:21::17",
            preferredLifetime: 7200,
            validLifetime: 7500,
            options: [],
          },
        ],
      },
    ]);
  });

  it("re-encodes every captured message to the same bytes", () => {
    for (const { f } of messages) expect(encodeDhcp6(decodeDhcp6(f.payload))).toEqual(f.payload);
  });

  it("the INFORMATION-REQUEST carries a DUID-LL", () => {
    const m = dhcp6OfFrame(messages[1]!.f)!;
    expect(decodeDuid(dhcp6Option(m.options, "client-id")!.duid)).toEqual({
      type: "ll",
      hardwareType: 1,
      linkLayerAddress: hex("fa163e112233"),
    });
  });
});

describe("DHCPv6 codec", () => {
  it("encodes a message as msg-type, 24-bit transaction id, then TLV options", () => {
    const b = encodeDhcp6({
      msgType: DHCP6_MESSAGE_TYPE.REPLY,
      transactionId: 0x123456,
      options: [
        { kind: "server-id", duid: duidLl("fa:16:3e:00:00:01") },
        { kind: "status-code", status: 4, message: "no" },
        { kind: "rapid-commit" },
        { kind: "preference", value: 255 },
        { kind: "dns-servers", servers: ["2001:db8::53"] },
        { kind: "domain-list", domains: ["a.b"] },
        { kind: "raw", code: 999, data: hex("beef") },
      ],
    });
    expect(b).toEqual(
      hex(`07 123456
           0002 000a 0003 0001 fa163e000001
           000d 0004 0004 6e6f
           000e 0000
           0007 0001 ff
           0017 0010 20010db8000000000000000000000053
           0018 0005 0161016200
           03e7 0002 beef`),
    );
  });

  it("decodes and encodes relay messages", () => {
    const inner = encodeDhcp6({ msgType: 1, transactionId: 1, options: [{ kind: "rapid-commit" }] });
    const relay: Dhcp6 = {
      msgType: 12,
      hopCount: 1,
      linkAddress: "2001:db8::1",
      peerAddress: "fe80::2",
      options: [
        { kind: "interface-id", id: hex("0102") },
        { kind: "relay-msg", message: inner },
      ],
    };
    expect(decodeDhcp6(encodeDhcp6(relay))).toEqual(relay);
  });

  it("raises a DecodeError for known options of the wrong size and runaway lengths", () => {
    const msg = (opts: string) => hex(`01 000001 ${opts}`);
    for (const bad of [
      "0001 0002 0001", // DUID too short
      "0003 0008 00000001 00000002", // IA_NA shorter than 12
      "0005 0010 20010db8000000000000000000000001", // IAADDR without lifetimes
      "0006 0003 001700", // ORO of odd length
      "0007 0002 ffff", // preference of 2 bytes
      "0008 0001 00", // elapsed time of 1 byte
      "000d 0001 00", // status code of 1 byte
      "000e 0001 00", // rapid commit with data
      "0017 0004 20010db8", // DNS servers not a multiple of 16
      "0018 0002 c00c", // compressed domain name
      "0020 0002 0000", // information refresh time of 2 bytes
      "0001 0010 0003", // option runs past the message
    ])
      expect(() => decodeDhcp6(msg(bad)), bad).toThrow(DecodeError);
    // IA options nested 9 deep.
    let o: Dhcp6Option = { kind: "rapid-commit" };
    for (let i = 0; i < 9; i++) o = { kind: "ia-ta", iaid: i, options: [o] };
    expect(() => decodeDhcp6(encodeDhcp6({ msgType: 1, transactionId: 0, options: [o] }))).toThrow(
      /nested deeper/,
    );
  });

  it("refuses to encode a transaction id over 24 bits or a DUID outside 3..130 bytes", () => {
    expect(() => encodeDhcp6({ msgType: 1, transactionId: 0x1000000, options: [] })).toThrow(EncodeError);
    expect(() =>
      encodeDhcp6({ msgType: 1, transactionId: 1, options: [{ kind: "client-id", duid: hex("0001") }] }),
    ).toThrow(EncodeError);
  });

  it("DUIDs: DUID-LL from a MAC, every type round-trips, a short UUID is a DecodeError", () => {
    expect(duidLl("fa:16:3e:aa:00:20")).toEqual(hex("0003 0001 fa163eaa0020"));
    for (const d of [
      { type: "llt", hardwareType: 1, time: 7, linkLayerAddress: hex("010203040506") },
      { type: "en", enterpriseNumber: 9, identifier: hex("abcd") },
      { type: "ll", hardwareType: 6, linkLayerAddress: hex("0102") },
      { type: "uuid", uuid: Buffer.alloc(16, 7) },
      { type: "unknown", duidType: 99, data: hex("00") },
    ] as const)
      expect(decodeDuid(encodeDuid(d))).toEqual(d);
    expect(() => decodeDuid(hex("0004 0102"))).toThrow(DecodeError);
    expect(duidMac(hex("0003 0006 010203040506"))).toBeUndefined();
    expect(duidMac(hex("0002 00000009 abcd"))).toBeUndefined();
  });

  it("buildDhcp6Packet picks the ports by message type", () => {
    const args = {
      ethSrc: "fa:16:3e:00:00:01",
      ethDst: "fa:16:3e:00:00:02",
      ipSrc: "fe80::1",
      ipDst: "fe80::2",
    };
    const ports = (msgType: number) => {
      const message: Dhcp6 =
        msgType === 12 || msgType === 13
          ? { msgType, hopCount: 0, linkAddress: "::", peerAddress: "::", options: [] }
          : { msgType, transactionId: 1, options: [] };
      const f = parseEthernet(buildDhcp6Packet({ ...args, message }));
      expect(f.udp?.checksumValid).toBe(true);
      return [f.udp!.srcPort, f.udp!.dstPort];
    };
    expect(ports(DHCP6_MESSAGE_TYPE.REPLY)).toEqual([547, 546]);
    expect(ports(DHCP6_MESSAGE_TYPE.ADVERTISE)).toEqual([547, 546]);
    expect(ports(DHCP6_MESSAGE_TYPE.SOLICIT)).toEqual([546, 547]);
    expect(ports(DHCP6_MESSAGE_TYPE.RELAY_FORW)).toEqual([547, 547]);
  });

  it("round-trips random messages made of every typed option", () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const leaf: fc.Arbitrary<Dhcp6Option> = fc.oneof(
      fc
        .uint8Array({ minLength: 3, maxLength: 20 })
        .map((b) => ({ kind: "client-id" as const, duid: Buffer.from(b) })),
      mac.map((m) => ({ kind: "server-id" as const, duid: duidLl(m) })),
      fc
        .array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 5 })
        .map((codes) => ({ kind: "oro" as const, codes })),
      fc.integer({ min: 0, max: 255 }).map((value) => ({ kind: "preference" as const, value })),
      fc.integer({ min: 0, max: 0xffff }).map((time) => ({ kind: "elapsed-time" as const, time })),
      ipv6.map((address) => ({ kind: "unicast" as const, address })),
      fc
        .record({ status: fc.integer({ min: 0, max: 0xffff }), message: fc.string({ maxLength: 20 }) })
        .map((s) => ({ kind: "status-code" as const, ...s })),
      fc.constant({ kind: "rapid-commit" as const }),
      fc.constant({ kind: "reconf-accept" as const }),
      fc.uint8Array({ maxLength: 8 }).map((b) => ({ kind: "interface-id" as const, id: Buffer.from(b) })),
      fc.array(ipv6, { maxLength: 3 }).map((servers) => ({ kind: "dns-servers" as const, servers })),
      fc.array(domainName, { maxLength: 3 }).map((domains) => ({ kind: "domain-list" as const, domains })),
      u32.map((seconds) => ({ kind: "information-refresh-time" as const, seconds })),
      u32.map((seconds) => ({ kind: "sol-max-rt" as const, seconds })),
      u32.map((seconds) => ({ kind: "inf-max-rt" as const, seconds })),
      fc
        .record({
          code: fc.constantFrom(10, 15, 16, 17, 21, 39, 56, 999),
          data: fc.uint8Array({ maxLength: 8 }),
        })
        .map((r) => ({ kind: "raw" as const, code: r.code, data: Buffer.from(r.data) })),
    );
    const iaaddr = fc
      .record({
        address: ipv6,
        preferredLifetime: u32,
        validLifetime: u32,
        options: fc.array(leaf, { maxLength: 2 }),
      })
      .map((r) => ({ kind: "iaaddr" as const, ...r }));
    const iaprefix = fc
      .record({
        preferredLifetime: u32,
        validLifetime: u32,
        prefixLength: fc.integer({ min: 0, max: 128 }),
        prefix: ipv6,
        options: fc.array(leaf, { maxLength: 2 }),
      })
      .map((r) => ({ kind: "iaprefix" as const, ...r }));
    const option: fc.Arbitrary<Dhcp6Option> = fc.oneof(
      leaf,
      fc
        .record({ iaid: u32, t1: u32, t2: u32, options: fc.array(fc.oneof(iaaddr, leaf), { maxLength: 3 }) })
        .map((r) => ({ kind: "ia-na" as const, ...r })),
      fc
        .record({ iaid: u32, options: fc.array(fc.oneof(iaaddr, leaf), { maxLength: 3 }) })
        .map((r) => ({ kind: "ia-ta" as const, ...r })),
      fc
        .record({
          iaid: u32,
          t1: u32,
          t2: u32,
          options: fc.array(fc.oneof(iaprefix, leaf), { maxLength: 3 }),
        })
        .map((r) => ({ kind: "ia-pd" as const, ...r })),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 11 }),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.array(option, { maxLength: 6 }),
        (msgType, transactionId, options) => {
          const m: Dhcp6 = { msgType, transactionId, options };
          expect(decodeDhcp6(encodeDhcp6(m))).toEqual(m);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("tcpdump reads what we build", () => {
  let dir = "";
  beforeAll(() => {
    dir = makeRunDir("ipv6-codec");
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  async function tcpdump(frame: Buffer): Promise<string> {
    const file = join(dir, `f${n++}.pcap`);
    writeFileSync(file, writePcap([frame]));
    return (await run(["tcpdump", "-nn", "-vv", "-e", "-r", file])).stdout;
  }

  it("an RA with RDNSS and DNSSL", async () => {
    const out = await tcpdump(
      buildRouterAdvertisement({
        mac: "fa:16:3e:00:00:01",
        ip: "fe80::1",
        prefixes: [{ prefix: "2001:db8::", prefixLength: 64, autonomous: false }],
        managed: true,
        dnsServers: { servers: ["2001:db8::53", "2001:db8::54"], lifetime: 1800 },
        dnsSearch: { domains: ["example.com", "a.b"], lifetime: 600 },
      }),
    );
    expect(out).toContain("[icmp6 sum ok] ICMP6, router advertisement, length 128");
    expect(out).toContain("Flags [managed], pref medium, router lifetime 1800s");
    expect(out).toContain("2001:db8::/64, Flags [onlink], valid time 2592000s");
    expect(out).toContain(
      "rdnss option (25), length 40 (5):  lifetime 1800s, addr: 2001:db8::53 addr: 2001:db8::54",
    );
    expect(out).toContain("dnssl option (31), length 32 (4):  lifetime 600s, domain(s): example.com. a.b.");
  });

  it("a DHCPv6 REPLY with IA_NA, status, DNS and domain list; a corrupted one is reported", async () => {
    const frame = buildDhcp6Packet({
      ethSrc: "fa:16:3e:00:00:01",
      ethDst: "fa:16:3e:00:00:02",
      ipSrc: "fe80::1",
      ipDst: "fe80::2",
      message: {
        msgType: DHCP6_MESSAGE_TYPE.REPLY,
        transactionId: 0xabcdef,
        options: [
          { kind: "server-id", duid: duidLl("fa:16:3e:00:00:01") },
          { kind: "client-id", duid: duidLl("fa:16:3e:00:00:02") },
          {
            kind: "ia-na",
            iaid: 7,
            t1: 100,
            t2: 160,
            options: [
              {
                kind: "iaaddr",
                address: "2001:db8::5",
                preferredLifetime: 200,
                validLifetime: 300,
                options: [],
              },
            ],
          },
          { kind: "status-code", status: 2, message: "none" },
          { kind: "rapid-commit" },
          { kind: "dns-servers", servers: ["2001:db8::53"] },
          { kind: "domain-list", domains: ["example.com", "x.org"] },
        ],
      },
    });
    const out = await tcpdump(frame);
    expect(out).toContain(
      "fe80::1.547 > fe80::2.546: [udp sum ok] dhcp6 reply (xid=abcdef (server-ID hwaddr type 1 fa163e000001) " +
        "(client-ID hwaddr type 1 fa163e000002) (IA_NA IAID:7 T1:100 T2:160 (IA_ADDR 2001:db8::5 pltime:200 vltime:300)) " +
        "(status-code NoAddrsAvail) (rapid-commit) (DNS-server 2001:db8::53) (DNS-search-list example.com. x.org.))",
    );
    const bad = Buffer.from(frame);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    expect(await tcpdump(bad)).toContain("bad udp cksum");
  });
});
