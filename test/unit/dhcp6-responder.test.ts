/**
 * The DHCPv6 responder's decisions, checked by decoding its reply frames
 * with the packet library: every client message type in stateful and
 * stateless mode, the options of a reply (and their order and values),
 * status codes where a client holds or asks for an address not its own, the
 * RFC 8415 §16 silence rules, the multicast/unicast rules, addressing and
 * VLAN tags, port overrides of the DNS lists, and which subnets are served.
 */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_DOMAIN6,
  dhcp6Mode,
  dhcp6ServerDuid,
  dhcp6SubnetFor,
  type Dhcp6Context,
  type Dhcp6Decision,
  handleDhcp6Frame,
} from "../../src/apps/dhcp/responder6.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import {
  buildDhcp6Packet,
  buildFrame,
  DHCP6_MESSAGE_TYPE as T,
  DHCP6_STATUS,
  type Dhcp6,
  type Dhcp6Message,
  type Dhcp6Option,
  dhcp6OfFrame,
  dhcp6Option,
  duidLl,
  encodeDhcp6,
  type Frame,
  parseEthernet,
} from "../../src/packet/index.js";

const CLIENT_MAC = "fa:16:3e:00:00:05";
const CLIENT_LL = "fe80::f816:3eff:fe00:5";
const SERVER_MAC = "fa:16:3e:ff:00:01";
const SERVER_LL = "fe80::f816:3eff:feff:1";
const SERVER_DUID = duidLl(SERVER_MAC);
const CLIENT_DUID = Buffer.from("000100013a2b3c4dfa163e000005", "hex");
const ADDR = "2001:db8:1::5";

function subnet(over: Partial<Subnet> = {}): Subnet {
  return {
    id: "sub6",
    tenantId: "t1",
    name: "sub6",
    description: "",
    networkId: "net1",
    cidr: "2001:db8:1::/64",
    ipVersion: 6,
    gatewayIp: "2001:db8:1::1",
    allocationPools: [],
    enableDhcp: true,
    dhcpOptions: {},
    dnsNameservers: ["2001:db8::53", "10.0.0.53", "2001:DB8::54"],
    hostRoutes: [],
    ipv6RaMode: "dhcpv6-stateful",
    ipv6AddressMode: "dhcpv6-stateful",
    ...over,
  } as Subnet;
}

function port(over: Partial<Port> = {}): Port {
  return {
    id: "p1",
    tenantId: "t1",
    name: "vm1",
    description: "",
    networkId: "net1",
    macAddress: CLIENT_MAC,
    fixedIps: [
      { subnetId: "sub4", ipAddress: "10.0.0.5" },
      { subnetId: "sub6", ipAddress: ADDR },
    ],
    deviceOwner: "compute:nova",
    deviceId: "vm1",
    adminStateUp: true,
    portSecurityEnabled: true,
    allowedAddressPairs: [],
    securityGroups: [],
    extraDhcpOptions: [],
    ...over,
  } as Port;
}

const network = { id: "net1", mtu: 1442 } as Network;

function ctx(over: Partial<Dhcp6Context> = {}): Dhcp6Context {
  return { port: port(), subnet: subnet(), network, serverMac: SERVER_MAC, ...over };
}

const iaNa = (iaid: number, ...addresses: string[]): Dhcp6Option => ({
  kind: "ia-na",
  iaid,
  t1: 3600,
  t2: 5400,
  options: addresses.map((address) => ({
    kind: "iaaddr",
    address,
    preferredLifetime: 0,
    validLifetime: 0,
    options: [],
  })),
});
const clientId: Dhcp6Option = { kind: "client-id", duid: CLIENT_DUID };
const ourServerId: Dhcp6Option = { kind: "server-id", duid: SERVER_DUID };

interface ClientMsg {
  type: number;
  options?: Dhcp6Option[];
  /** Leave out the client id. */
  anonymous?: boolean;
  ipDst?: string;
  ipSrc?: string;
  ethSrc?: string;
  vlan?: number;
  xid?: number;
}

function client(m: ClientMsg): Buffer {
  const message: Dhcp6 = {
    msgType: m.type,
    transactionId: m.xid ?? 0xabc123,
    options: [...(m.anonymous ? [] : [clientId]), { kind: "elapsed-time", time: 0 }, ...(m.options ?? [])],
  };
  return buildFrame({
    eth: { src: m.ethSrc ?? CLIENT_MAC, dst: "33:33:00:01:00:02" },
    vlans: m.vlan !== undefined ? [{ vid: m.vlan }] : [],
    ipv6: { src: m.ipSrc ?? CLIENT_LL, dst: m.ipDst ?? "ff02::1:2", hopLimit: 1 },
    udp: { srcPort: 546, dstPort: 547 },
    payload: encodeDhcp6(message),
  });
}

function reply(d: Dhcp6Decision): { f: Frame; m: Dhcp6Message } {
  if (d.kind !== "reply") throw new Error(`expected a reply, got: ${d.reason}`);
  const f = parseEthernet(d.frame);
  const m = dhcp6OfFrame(f);
  if (!m || "hopCount" in m) throw new Error("no DHCPv6 message in the reply");
  return { f, m };
}

const ask = (m: ClientMsg, over: Partial<Dhcp6Context> = {}) => handleDhcp6Frame(client(m), ctx(over));

const CONFIG: Dhcp6Option[] = [
  { kind: "dns-servers", servers: ["2001:db8::53", "2001:db8::54"] },
  { kind: "domain-list", domains: [DEFAULT_DOMAIN6] },
];

const assigned = (iaid: number, lease = 86400): Dhcp6Option => ({
  kind: "ia-na",
  iaid,
  t1: lease === 0xffffffff ? lease : Math.floor(lease / 2),
  t2: lease === 0xffffffff ? lease : Math.floor(lease * 0.8),
  options: [{ kind: "iaaddr", address: ADDR, preferredLifetime: lease, validLifetime: lease, options: [] }],
});

const status = (code: keyof typeof DHCP6_STATUS) => ({ kind: "status-code", status: DHCP6_STATUS[code] });

describe("stateful mode", () => {
  it("SOLICIT → ADVERTISE: server id, client id, the port's address in the IA_NA, preference 255, DNS, domain", () => {
    const d = ask({ type: T.SOLICIT, options: [iaNa(7)] });
    expect(d).toMatchObject({ kind: "reply", messageType: "ADVERTISE", address: ADDR });
    expect(d).not.toHaveProperty("status");
    const { f, m } = reply(d);
    expect(f.eth).toMatchObject({ src: SERVER_MAC, dst: CLIENT_MAC });
    expect(f.ipv6).toMatchObject({ src: SERVER_LL, dst: CLIENT_LL });
    expect(f.udp).toMatchObject({ srcPort: 547, dstPort: 546, checksumValid: true });
    expect(m).toEqual({
      msgType: T.ADVERTISE,
      transactionId: 0xabc123,
      options: [ourServerId, clientId, assigned(7), { kind: "preference", value: 255 }, ...CONFIG],
    });
  });

  it("SOLICIT with Rapid Commit → REPLY with Rapid Commit, unless turned off", () => {
    const d = ask({ type: T.SOLICIT, options: [iaNa(7), { kind: "rapid-commit" }] });
    expect(d).toMatchObject({ messageType: "REPLY", address: ADDR });
    expect(reply(d).m.options).toEqual([
      ourServerId,
      clientId,
      assigned(7),
      { kind: "rapid-commit" },
      ...CONFIG,
    ]);
    const off = ask(
      { type: T.SOLICIT, options: [iaNa(7), { kind: "rapid-commit" }] },
      { rapidCommit: false, preference: 10 },
    );
    expect(off).toMatchObject({ messageType: "ADVERTISE" });
    expect(dhcp6Option(reply(off).m.options, "preference")).toEqual({ kind: "preference", value: 10 });
  });

  it("IA_TA gets NoAddrsAvail, IA_PD NoPrefixAvail, a second IA_NA NoAddrsAvail", () => {
    const d = ask({
      type: T.SOLICIT,
      options: [
        iaNa(1),
        { kind: "ia-ta", iaid: 2, options: [] },
        { kind: "ia-pd", iaid: 3, t1: 0, t2: 0, options: [] },
        iaNa(4),
      ],
    });
    expect(d).toMatchObject({ messageType: "ADVERTISE", address: ADDR, status: "NoAddrsAvail" });
    const ias = reply(d).m.options.filter((o) => o.kind.startsWith("ia-"));
    expect(ias).toMatchObject([
      assigned(1),
      { kind: "ia-ta", iaid: 2, options: [status("NoAddrsAvail")] },
      { kind: "ia-pd", iaid: 3, options: [status("NoPrefixAvail")] },
      { kind: "ia-na", iaid: 4, t1: 0, t2: 0, options: [status("NoAddrsAvail")] },
    ]);
  });

  it("SOLICIT without an IA_NA, or from a port without an address here → only NoAddrsAvail", () => {
    for (const [m, over] of [
      [{ type: T.SOLICIT }, {}],
      [
        { type: T.SOLICIT, options: [iaNa(1)] },
        { port: port({ fixedIps: [{ subnetId: "sub4", ipAddress: "10.0.0.5" }] }) },
      ],
    ] as [ClientMsg, Partial<Dhcp6Context>][]) {
      const d = ask(m, over);
      expect(d).toMatchObject({ messageType: "ADVERTISE", status: "NoAddrsAvail" });
      expect(d).not.toHaveProperty("address");
      expect(reply(d).m.options).toMatchObject([ourServerId, clientId, status("NoAddrsAvail")]);
      expect(reply(d).m.options).toHaveLength(3);
    }
  });

  it("REQUEST for us → REPLY with the port's address whatever the client hinted", () => {
    const d = ask({ type: T.REQUEST, options: [ourServerId, iaNa(7, "2001:db8:1::99")] });
    expect(d).toMatchObject({ messageType: "REPLY", address: ADDR });
    expect(reply(d).m.options).toEqual([ourServerId, clientId, assigned(7), ...CONFIG]);
  });

  it("RENEW and REBIND → the address again, and every other listed address with lifetimes 0", () => {
    for (const type of [T.RENEW, T.REBIND]) {
      const options = [
        ...(type === T.RENEW ? [ourServerId] : []),
        iaNa(7, ADDR, "2001:db8:1::99", "2001:db8:9::1"),
      ];
      const d = ask({ type, options });
      expect(d).toMatchObject({ messageType: "REPLY", address: ADDR });
      const ia = dhcp6Option(reply(d).m.options, "ia-na")!;
      expect(ia.options).toEqual([
        { kind: "iaaddr", address: ADDR, preferredLifetime: 86400, validLifetime: 86400, options: [] },
        { kind: "iaaddr", address: "2001:db8:1::99", preferredLifetime: 0, validLifetime: 0, options: [] },
        { kind: "iaaddr", address: "2001:db8:9::1", preferredLifetime: 0, validLifetime: 0, options: [] },
      ]);
    }
  });

  it("CONFIRM: Success only when every address is the port's, else NotOnLink; none listed → silence", () => {
    expect(reply(ask({ type: T.CONFIRM, options: [iaNa(7, ADDR)] })).m.options).toEqual([
      ourServerId,
      clientId,
      { kind: "status-code", status: DHCP6_STATUS.Success, message: "addresses confirmed" },
    ]);
    for (const other of ["2001:db8:1::99", "2001:db8:9::5"]) {
      const d = ask({ type: T.CONFIRM, options: [iaNa(7, ADDR, other)] });
      expect(d).toMatchObject({ messageType: "REPLY", status: "NotOnLink" });
      expect(reply(d).m.options).toHaveLength(3);
    }
    expect(ask({ type: T.CONFIRM, options: [iaNa(7)] })).toEqual({
      kind: "ignore",
      reason: "CONFIRM lists no address",
    });
  });

  it("RELEASE and DECLINE → REPLY Success", () => {
    for (const type of [T.RELEASE, T.DECLINE]) {
      const d = ask({ type, options: [ourServerId, iaNa(7, ADDR)] });
      expect(d).toMatchObject({ kind: "reply", messageType: "REPLY" });
      expect(d).not.toHaveProperty("status");
      expect(reply(d).m.options).toMatchObject([ourServerId, clientId, status("Success")]);
    }
  });

  it("INFORMATION-REQUEST → REPLY with the options only, client id optional", () => {
    expect(reply(ask({ type: T.INFORMATION_REQUEST })).m.options).toEqual([ourServerId, clientId, ...CONFIG]);
    expect(reply(ask({ type: T.INFORMATION_REQUEST, anonymous: true })).m.options).toEqual([
      ourServerId,
      ...CONFIG,
    ]);
    expect(reply(ask({ type: T.INFORMATION_REQUEST, options: [ourServerId] })).m.options).toEqual([
      ourServerId,
      clientId,
      ...CONFIG,
    ]);
  });

  it("lease time sets lifetimes and T1/T2; an infinite lease keeps T1/T2 infinite", () => {
    const short = ask({ type: T.REQUEST, options: [ourServerId, iaNa(7)] }, { leaseTime: 100 });
    expect(dhcp6Option(reply(short).m.options, "ia-na")).toEqual(assigned(7, 100));
    const inf = ask({ type: T.REQUEST, options: [ourServerId, iaNa(7)] }, { leaseTime: 0xffffffff });
    expect(dhcp6Option(reply(inf).m.options, "ia-na")).toEqual(assigned(7, 0xffffffff));
  });
});

describe("stateless mode", () => {
  const sl = { subnet: subnet({ ipv6RaMode: "dhcpv6-stateless", ipv6AddressMode: "dhcpv6-stateless" }) };

  it("SOLICIT → ADVERTISE with only NoAddrsAvail", () => {
    const d = ask({ type: T.SOLICIT, options: [iaNa(7), { kind: "rapid-commit" }] }, sl);
    expect(d).toMatchObject({ messageType: "ADVERTISE", status: "NoAddrsAvail" });
    expect(reply(d).m.options).toMatchObject([ourServerId, clientId, status("NoAddrsAvail")]);
    expect(reply(d).m.options).toHaveLength(3);
  });

  it("REQUEST → NoAddrsAvail per IA_NA, RENEW → NoBinding, REBIND → addresses with lifetimes 0", () => {
    const req = reply(ask({ type: T.REQUEST, options: [ourServerId, iaNa(7)] }, sl)).m;
    expect(dhcp6Option(req.options, "ia-na")).toMatchObject({
      iaid: 7,
      t1: 0,
      t2: 0,
      options: [status("NoAddrsAvail")],
    });
    const renew = ask({ type: T.RENEW, options: [ourServerId, iaNa(7, "2001:db8:1::77")] }, sl);
    expect(renew).toMatchObject({ status: "NoBinding" });
    expect(dhcp6Option(reply(renew).m.options, "ia-na")).toMatchObject({ options: [status("NoBinding")] });
    const rebind = reply(ask({ type: T.REBIND, options: [iaNa(7, "2001:db8:1::77")] }, sl)).m;
    expect(dhcp6Option(rebind.options, "ia-na")).toEqual({
      kind: "ia-na",
      iaid: 7,
      t1: 0,
      t2: 0,
      options: [
        { kind: "iaaddr", address: "2001:db8:1::77", preferredLifetime: 0, validLifetime: 0, options: [] },
      ],
    });
    expect(rebind.options.slice(-2)).toEqual(CONFIG);
  });

  it("CONFIRM → Success for addresses in the prefix, NotOnLink otherwise", () => {
    expect(ask({ type: T.CONFIRM, options: [iaNa(7, "2001:db8:1::77")] }, sl)).not.toHaveProperty("status");
    expect(ask({ type: T.CONFIRM, options: [iaNa(7, "2001:db8:2::77")] }, sl)).toMatchObject({
      status: "NotOnLink",
    });
    const odd = { subnet: subnet({ cidr: "2001:db8:1:80::/57", ipv6AddressMode: "dhcpv6-stateless" }) };
    expect(ask({ type: T.CONFIRM, options: [iaNa(7, "2001:db8:1:ff::1")] }, odd)).not.toHaveProperty(
      "status",
    );
    expect(ask({ type: T.CONFIRM, options: [iaNa(7, "2001:db8:1:7f::1")] }, odd)).toMatchObject({
      status: "NotOnLink",
    });
  });

  it("INFORMATION-REQUEST → the options", () => {
    expect(reply(ask({ type: T.INFORMATION_REQUEST }, sl)).m.options).toEqual([
      ourServerId,
      clientId,
      ...CONFIG,
    ]);
  });
});

describe("silence and the multicast rules (RFC 8415 §16, §18.3)", () => {
  it("says why it stays silent", () => {
    const other: Dhcp6Option = { kind: "server-id", duid: duidLl("fa:16:3e:99:99:99") };
    const cases: [ClientMsg, Partial<Dhcp6Context>, string][] = [
      [{ type: T.SOLICIT, anonymous: true }, {}, "SOLICIT without a Client Identifier"],
      [{ type: T.SOLICIT, options: [ourServerId] }, {}, "SOLICIT with a Server Identifier"],
      [{ type: T.REBIND, options: [ourServerId, iaNa(1, ADDR)] }, {}, "REBIND with a Server Identifier"],
      [{ type: T.CONFIRM, options: [ourServerId, iaNa(1, ADDR)] }, {}, "CONFIRM with a Server Identifier"],
      [{ type: T.REQUEST, options: [iaNa(1)] }, {}, "REQUEST without a Server Identifier"],
      [{ type: T.RENEW, options: [other] }, {}, "RENEW for server 00030001fa163e999999, not ours"],
      [{ type: T.INFORMATION_REQUEST, options: [other] }, {}, "INFORMATION-REQUEST for another server"],
      [{ type: T.SOLICIT, ipDst: SERVER_LL }, {}, `SOLICIT sent unicast to ${SERVER_LL}`],
      [
        { type: T.INFORMATION_REQUEST, ipDst: SERVER_LL },
        {},
        `INFORMATION-REQUEST sent unicast to ${SERVER_LL}`,
      ],
      [{ type: T.REQUEST, ipDst: "fe80::99" }, {}, "REQUEST to fe80::99, another server"],
      [{ type: T.ADVERTISE }, {}, "ADVERTISE is not a client message this server handles"],
      [{ type: 77 }, {}, "type 77 is not a client message this server handles"],
      [
        { type: T.SOLICIT, ethSrc: "fa:16:3e:99:99:99" },
        {},
        "source MAC fa:16:3e:99:99:99 is not port p1's MAC fa:16:3e:00:00:05",
      ],
      [{ type: T.SOLICIT, ipSrc: "::" }, {}, "sent from the unspecified address"],
      [{ type: T.SOLICIT }, { port: port({ adminStateUp: false }) }, "port p1 is administratively down"],
      [{ type: T.SOLICIT }, { subnet: subnet({ enableDhcp: false }) }, "subnet sub6 has DHCP disabled"],
      [
        { type: T.SOLICIT },
        { subnet: subnet({ ipv6RaMode: "slaac", ipv6AddressMode: "slaac" }) },
        "subnet sub6 is in slaac mode: no DHCPv6",
      ],
      [
        { type: T.SOLICIT },
        { subnet: subnet({ ipVersion: 4, cidr: "10.0.0.0/24" }) },
        "subnet sub6 is not IPv6",
      ],
    ];
    for (const [m, over, reason] of cases) expect(ask(m, over), reason).toEqual({ kind: "ignore", reason });
  });

  it("REQUEST, RENEW, RELEASE and DECLINE sent unicast to us → REPLY UseMulticast and nothing else", () => {
    for (const type of [T.REQUEST, T.RENEW, T.RELEASE, T.DECLINE]) {
      const d = ask({ type, options: [ourServerId, iaNa(7, ADDR)], ipDst: SERVER_LL });
      expect(d).toMatchObject({ kind: "reply", messageType: "REPLY", status: "UseMulticast" });
      expect(d).not.toHaveProperty("address");
      expect(reply(d).m.options).toMatchObject([ourServerId, clientId, status("UseMulticast")]);
      expect(reply(d).m.options).toHaveLength(3);
    }
  });

  it("ignores relayed, malformed and non-DHCPv6 frames", () => {
    const relay = buildDhcp6Packet({
      ethSrc: CLIENT_MAC,
      ethDst: "33:33:00:01:00:02",
      ipSrc: CLIENT_LL,
      ipDst: "ff02::1:2",
      message: { msgType: T.RELAY_FORW, hopCount: 0, linkAddress: "::", peerAddress: CLIENT_LL, options: [] },
    });
    expect(handleDhcp6Frame(relay, ctx())).toEqual({
      kind: "ignore",
      reason: "relayed message; relays are not served",
    });
    const udp = (dstPort: number, payload: Buffer) =>
      buildFrame({
        eth: { src: CLIENT_MAC, dst: "33:33:00:01:00:02" },
        ipv6: { src: CLIENT_LL, dst: "ff02::1:2" },
        udp: { srcPort: 546, dstPort },
        payload,
      });
    expect(handleDhcp6Frame(udp(547, Buffer.from("01000001000100", "hex")), ctx())).toMatchObject({
      kind: "ignore",
      reason: expect.stringMatching(/^malformed DHCPv6 message: /),
    });
    expect(handleDhcp6Frame(udp(546, Buffer.from("0100000100", "hex")), ctx())).toEqual({
      kind: "ignore",
      reason: "not addressed to the DHCPv6 server port 547",
    });
    expect(handleDhcp6Frame(Buffer.from("ffff", "hex"), ctx())).toMatchObject({
      reason: expect.stringMatching(/^malformed frame: /),
    });
    const v4 = buildFrame({
      eth: { src: CLIENT_MAC, dst: SERVER_MAC },
      ipv4: { src: "10.0.0.5", dst: "10.0.0.1" },
      udp: { srcPort: 546, dstPort: 547 },
    });
    expect(handleDhcp6Frame(v4, ctx())).toEqual({ kind: "ignore", reason: "not a UDP/IPv6 frame" });
  });

  it("answers a frame with a wrong UDP checksum (transmit offload leaves partial ones)", () => {
    const f = client({ type: T.INFORMATION_REQUEST });
    const bad = Buffer.from(f);
    bad.writeUInt16BE(0x1234, 14 + 40 + 6);
    expect(parseEthernet(bad).udp?.checksumValid).toBe(false);
    expect(handleDhcp6Frame(bad, ctx())).toMatchObject({ kind: "reply", messageType: "REPLY" });
  });

  it("keeps the request's VLAN tags", () => {
    const { f } = reply(ask({ type: T.INFORMATION_REQUEST, vlan: 33 }));
    expect(f.vlans.map((v) => v.vid)).toEqual([33]);
  });
});

describe("options and which subnets are served", () => {
  it("port v6 extra options replace the DNS servers and search list; bad or unknown ones are left out", () => {
    const p = port({
      extraDhcpOptions: [
        { name: "dns-server", value: "2001:db8::1, 2001:db8::2", ipVersion: 6 },
        { name: "domain_search", value: "a.example,b.example", ipVersion: 6 },
        { name: "dns-server", value: "8.8.8.8", ipVersion: 4 },
        { name: "bootfile-url", value: "tftp://x", ipVersion: 6 },
      ],
    });
    expect(reply(ask({ type: T.INFORMATION_REQUEST }, { port: p })).m.options.slice(2)).toEqual([
      { kind: "dns-servers", servers: ["2001:db8::1", "2001:db8::2"] },
      { kind: "domain-list", domains: ["a.example", "b.example"] },
    ]);
    const bad = port({
      extraDhcpOptions: [
        { name: "23", value: "2001:db8::1,10.0.0.1", ipVersion: 6 },
        { name: "24", value: "not a domain", ipVersion: 6 },
      ],
    });
    expect(
      reply(ask({ type: T.INFORMATION_REQUEST }, { port: bad, domain: "x.test" })).m.options.slice(2),
    ).toEqual([CONFIG[0], { kind: "domain-list", domains: ["x.test"] }]);
    const none = ask({ type: T.INFORMATION_REQUEST }, { subnet: subnet({ dnsNameservers: [] }) });
    expect(reply(none).m.options.map((o) => o.kind)).toEqual(["server-id", "client-id", "domain-list"]);
  });

  it("dhcp6Mode: address mode, else RA mode, else stateful; slaac, IPv4 and DHCP off are not served", () => {
    const mode = (over: Partial<Subnet>) => dhcp6Mode(subnet(over));
    expect(mode({})).toBe("stateful");
    expect(mode({ ipv6AddressMode: "dhcpv6-stateless", ipv6RaMode: undefined })).toBe("stateless");
    expect(mode({ ipv6AddressMode: undefined, ipv6RaMode: "dhcpv6-stateless" })).toBe("stateless");
    expect(mode({ ipv6AddressMode: undefined, ipv6RaMode: undefined })).toBe("stateful");
    expect(mode({ ipv6AddressMode: "slaac", ipv6RaMode: "slaac" })).toBeUndefined();
    expect(mode({ enableDhcp: false })).toBeUndefined();
    expect(mode({ ipVersion: 4 })).toBeUndefined();
  });

  it("dhcp6SubnetFor finds the port's first IPv6 address on a served subnet", () => {
    const subnets = new Map<string, Subnet>([
      ["s-slaac", subnet({ id: "s-slaac", ipv6AddressMode: "slaac", ipv6RaMode: "slaac" })],
      ["s-full", subnet({ id: "s-full" })],
    ]);
    const p = port({
      fixedIps: [
        { subnetId: "sub4", ipAddress: "10.0.0.5" },
        { subnetId: "s-slaac", ipAddress: "2001:db8:7::5" },
        { subnetId: "gone", ipAddress: "2001:db8:8::5" },
        { subnetId: "s-full", ipAddress: "2001:db8:1::5" },
      ],
    });
    expect(dhcp6SubnetFor(p, (id) => subnets.get(id))).toMatchObject({
      subnet: { id: "s-full" },
      mode: "stateful",
      ipAddress: "2001:db8:1::5",
    });
    expect(dhcp6SubnetFor(port({ fixedIps: [] }), (id) => subnets.get(id))).toBeUndefined();
  });

  it("the server DUID is the DUID-LL of the server MAC", () => {
    expect(dhcp6ServerDuid(SERVER_MAC)).toEqual(Buffer.from("00030001fa163eff0001", "hex"));
  });
});
