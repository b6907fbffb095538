/**
 * Decisions of the DHCP responders (src/apps/dhcp) that the other dhcp test
 * files leave open, found by mutation testing (test/mutation/apps.md). DHCPv4:
 * which subnets are served (cidr exactly a.b.c.d/len, a /0's mask, IPv4 only),
 * Ethernet hardware addresses only, no router without an IPv4 gateway, the
 * reply-size limit measured past the request's VLAN tags, the NAK's echo of
 * the client identifier (RFC 6842), a reply that cannot be built, and the
 * warnings an operator relies on (a bad option setting once per NB object,
 * options left out for size). DHCPv6: which of the port's addresses is the
 * subnet's, malformed subnet prefixes, a stateless CONFIRM with one address
 * off the prefix, IA_TA addresses in a CONFIRM, second IA_NAs, the status a
 * decision reports for an IA_PD, every status code's message, and the port's
 * v6 extra options (their spellings, empty items, IPv4 ones, unknown ones).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { type DhcpContext, handleDhcpFrame } from "../../src/apps/dhcp/responder.js";
import {
  dhcp6SubnetFor,
  type Dhcp6Context,
  type Dhcp6Decision,
  handleDhcp6Frame,
} from "../../src/apps/dhcp/responder6.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import {
  BOOTREQUEST,
  buildDhcpPacket,
  buildFrame,
  DHCP6_MESSAGE_TYPE as T,
  DHCP6_STATUS,
  DHCP_MESSAGE_TYPE,
  type Dhcp6Message,
  type Dhcp6Option,
  type DhcpOptions,
  dhcp6OfFrame,
  duidLl,
  encodeDhcp6,
  MAC_BROADCAST,
  parseEthernet,
} from "../../src/packet/index.js";
import { logger } from "../../src/util/log.js";

const CLIENT_MAC = "fa:16:3e:00:00:05";
const SERVER_MAC = "fa:16:3e:ff:00:01";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("DHCPv4 responder", () => {
  function ctx(over: { subnet?: Partial<Subnet>; port?: Partial<Port> } = {}): DhcpContext {
    return {
      port: {
        id: "p1",
        networkId: "net1",
        macAddress: CLIENT_MAC,
        fixedIps: [{ subnetId: "sub1", ipAddress: "10.0.0.5" }],
        adminStateUp: true,
        extraDhcpOptions: [],
        ...over.port,
      } as Port,
      subnet: {
        id: "sub1",
        networkId: "net1",
        cidr: "10.0.0.0/24",
        ipVersion: 4,
        gatewayIp: "10.0.0.1",
        enableDhcp: true,
        dhcpOptions: {},
        dnsNameservers: [],
        hostRoutes: [],
        ...over.subnet,
      } as Subnet,
      network: { id: "net1", mtu: 1442 } as Network,
      serverMac: SERVER_MAC,
      serverIp: "10.0.0.1",
    };
  }

  function request(type: number, o: { options?: DhcpOptions; vlan?: number } = {}): Buffer {
    return buildDhcpPacket({
      ethSrc: CLIENT_MAC,
      ethDst: MAC_BROADCAST,
      ipSrc: "0.0.0.0",
      ipDst: "255.255.255.255",
      vlans: o.vlan !== undefined ? [{ vid: o.vlan }] : [],
      dhcp: { op: BOOTREQUEST, xid: 9, chaddr: CLIENT_MAC, options: { ...o.options, messageType: type } },
    });
  }

  function answer(frame: Buffer, c: DhcpContext) {
    const d = handleDhcpFrame(frame, c);
    if (d.kind !== "reply") throw new Error(`expected a reply, got: ${d.reason}`);
    return { d, f: parseEthernet(d.frame) };
  }

  it("the client's size limit counts the IP datagram: a VLAN-tagged reply of exactly that size is sent whole", () => {
    // One option the server may leave out, big enough to take the reply past the 576-byte floor.
    const c = ctx({ port: { extraDhcpOptions: [{ name: "150", value: "z".repeat(400), ipVersion: 4 }] } });
    const roomy = answer(
      request(DHCP_MESSAGE_TYPE.DISCOVER, { vlan: 42, options: { maxMessageSize: 1500 } }),
      c,
    );
    const size = roomy.f.ipv4!.totalLength;
    // the responder's logger (one per component): the operator is told what was left out, and only then
    const warn = vi.spyOn(logger("dhcp"), "warn");
    expect(roomy.d.frame.length).toBe(14 + 4 + size);
    expect(size).toBeGreaterThan(576);
    expect(roomy.f.dhcp!.unknownOptions.map((o) => o.code)).toEqual([150]);

    const exact = answer(
      request(DHCP_MESSAGE_TYPE.DISCOVER, { vlan: 42, options: { maxMessageSize: size } }),
      c,
    );
    expect(exact.f.vlans.map((v) => v.vid)).toEqual([42]);
    expect(exact.f.ipv4!.totalLength).toBe(size);
    expect(exact.f.dhcp!.unknownOptions.map((o) => o.code)).toEqual([150]);
    expect(warn).not.toHaveBeenCalled();

    const under = answer(
      request(DHCP_MESSAGE_TYPE.DISCOVER, { vlan: 42, options: { maxMessageSize: size - 1 } }),
      c,
    );
    expect(under.f.dhcp!.unknownOptions).toEqual([]);
    expect(under.f.ipv4!.totalLength).toBeLessThan(size);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toEqual({ port: "p1", dropped: [150], limit: size - 1 });
  });

  it("a NAK echoes the client identifier (RFC 6842)", () => {
    const clientIdentifier = { type: 1, id: Buffer.from("fa163e000005", "hex") };
    const { d, f } = answer(
      request(DHCP_MESSAGE_TYPE.REQUEST, { options: { requestedIpAddress: "10.0.0.77", clientIdentifier } }),
      ctx(),
    );
    expect(d.messageType).toBe("NAK");
    expect(f.dhcp!.options.clientIdentifier).toEqual(clientIdentifier);
  });

  it("a subnet whose cidr is not exactly a.b.c.d/len, len 0 to 32, is not served", () => {
    for (const cidr of ["x10.0.0.0/24", "10.0.0.0/24x", "10.0.0.0/240", "10.0.0.0/33"]) {
      expect(handleDhcpFrame(request(DHCP_MESSAGE_TYPE.DISCOVER), ctx({ subnet: { cidr } })), cidr).toEqual({
        kind: "ignore",
        reason: `subnet sub1 cidr ${cidr} is not IPv4`,
      });
    }
  });

  it("a /0 subnet gets mask 0.0.0.0 (a shift by 32 bits would give all ones)", () => {
    const { f } = answer(request(DHCP_MESSAGE_TYPE.DISCOVER), ctx({ subnet: { cidr: "0.0.0.0/0" } }));
    expect(f.dhcp!.options).toMatchObject({ subnetMask: "0.0.0.0", broadcastAddress: "255.255.255.255" });
  });

  it("a subnet not marked IPv4 is not served, even with an IPv4 cidr", () => {
    expect(handleDhcpFrame(request(DHCP_MESSAGE_TYPE.DISCOVER), ctx({ subnet: { ipVersion: 6 } }))).toEqual({
      kind: "ignore",
      reason: "subnet sub1 is not IPv4",
    });
  });

  it("only Ethernet hardware addresses (htype 1, hlen 6) are served", () => {
    const ieee802 = buildDhcpPacket({
      ethSrc: CLIENT_MAC,
      ethDst: MAC_BROADCAST,
      ipSrc: "0.0.0.0",
      ipDst: "255.255.255.255",
      dhcp: { op: BOOTREQUEST, htype: 6, xid: 9, chaddr: CLIENT_MAC, options: { messageType: 1 } },
    });
    expect(handleDhcpFrame(ieee802, ctx())).toEqual({
      kind: "ignore",
      reason: "hardware type 6/6 is not Ethernet",
    });
    const longAddress = request(DHCP_MESSAGE_TYPE.DISCOVER);
    longAddress[14 + 20 + 8 + 2] = 8; // BOOTP hlen (the UDP checksum is not checked)
    expect(handleDhcpFrame(longAddress, ctx())).toEqual({
      kind: "ignore",
      reason: "hardware type 1/8 is not Ethernet",
    });
  });

  it("no gateway, or an IPv6 one: no router option and no default route in option 121", () => {
    const hostRoutes = [{ destination: "10.9.0.0/16", nexthop: "10.0.0.9" }];
    for (const gatewayIp of [null, "2001:db8::1"]) {
      const { f } = answer(
        request(DHCP_MESSAGE_TYPE.DISCOVER),
        ctx({ subnet: { gatewayIp, hostRoutes } as Partial<Subnet> }),
      );
      expect(f.dhcp!.options.router, String(gatewayIp)).toBeUndefined();
      expect(f.dhcp!.options.classlessStaticRoutes).toEqual([
        { destination: "10.9.0.0/16", router: "10.0.0.9" },
      ]);
    }
  });

  it("a reply that cannot be built is an ignore saying so, logged as an error with the port", () => {
    const error = vi.spyOn(logger("dhcp"), "error");
    const d = handleDhcpFrame(request(DHCP_MESSAGE_TYPE.DISCOVER), { ...ctx(), serverMac: "not-a-mac" });
    expect(d.kind === "ignore" && d.reason).toMatch(/^cannot build the reply: ./);
    expect(error.mock.calls.map((call) => call[0])).toEqual([
      expect.objectContaining({ port: "p1", err: expect.any(Error) }),
    ]);
  });

  it("a bad option setting is logged once per NB object, with the subnet or port it is in", () => {
    const warn = vi.spyOn(logger("dhcp"), "warn");
    const c = ctx({
      subnet: { dhcpOptions: { mtu: "huge" } },
      port: { extraDhcpOptions: [{ name: "router", value: "nowhere", ipVersion: 4 }] },
    });
    for (let i = 0; i < 2; i++) answer(request(DHCP_MESSAGE_TYPE.DISCOVER), c);
    expect(warn.mock.calls.map((call) => call[0])).toEqual([
      expect.objectContaining({ subnet: "sub1", option: "mtu", source: "subnet" }),
      expect.objectContaining({ port: "p1", option: "router", source: "port" }),
    ]);
  });
});

describe("DHCPv6 responder", () => {
  const CLIENT_LL = "fe80::f816:3eff:fe00:5";
  const SERVER_DUID = duidLl(SERVER_MAC);
  const ADDR = "2001:db8:1::5";

  const subnet = (over: Partial<Subnet> = {}): Subnet =>
    ({
      id: "sub6",
      networkId: "net1",
      cidr: "2001:db8:1::/64",
      ipVersion: 6,
      gatewayIp: "2001:db8:1::1",
      enableDhcp: true,
      dhcpOptions: {},
      dnsNameservers: ["2001:db8::53"],
      hostRoutes: [],
      ipv6RaMode: "dhcpv6-stateful",
      ipv6AddressMode: "dhcpv6-stateful",
      ...over,
    }) as Subnet;

  const port = (over: Partial<Port> = {}): Port =>
    ({
      id: "p1",
      networkId: "net1",
      macAddress: CLIENT_MAC,
      fixedIps: [{ subnetId: "sub6", ipAddress: ADDR }],
      adminStateUp: true,
      extraDhcpOptions: [],
      ...over,
    }) as Port;

  const ctx = (over: Partial<Dhcp6Context> = {}): Dhcp6Context => ({
    port: port(),
    subnet: subnet(),
    network: { id: "net1", mtu: 1442 } as Network,
    serverMac: SERVER_MAC,
    ...over,
  });

  const iaNa = (iaid: number, ...addresses: string[]): Dhcp6Option => ({
    kind: "ia-na",
    iaid,
    t1: 0,
    t2: 0,
    options: addresses.map((address) => ({
      kind: "iaaddr",
      address,
      preferredLifetime: 0,
      validLifetime: 0,
      options: [],
    })),
  });
  const ourServerId: Dhcp6Option = { kind: "server-id", duid: SERVER_DUID };

  function ask(
    type: number,
    options: Dhcp6Option[],
    over: Partial<Dhcp6Context> = {},
    ipDst = "ff02::1:2",
  ): Dhcp6Decision {
    const frame = buildFrame({
      eth: { src: CLIENT_MAC, dst: "33:33:00:01:00:02" },
      ipv6: { src: CLIENT_LL, dst: ipDst, hopLimit: 1 },
      udp: { srcPort: 546, dstPort: 547 },
      payload: encodeDhcp6({
        msgType: type,
        transactionId: 0x123,
        options: [{ kind: "client-id", duid: Buffer.from("00030001fa163e000005", "hex") }, ...options],
      }),
    });
    return handleDhcp6Frame(frame, ctx(over));
  }

  function message(d: Dhcp6Decision): Dhcp6Message {
    if (d.kind !== "reply") throw new Error(`expected a reply, got: ${d.reason}`);
    const m = dhcp6OfFrame(parseEthernet(d.frame));
    if (!m || "hopCount" in m) throw new Error("no DHCPv6 message in the reply");
    return m;
  }

  const expiredAddr = (address: string) => ({
    kind: "iaaddr",
    address,
    preferredLifetime: 0,
    validLifetime: 0,
    options: [],
  });

  it("assigns the port's address on this subnet, not an earlier IPv6 one on another subnet or an IPv4 one here", () => {
    const p = port({
      fixedIps: [
        { subnetId: "sub9", ipAddress: "2001:db8:9::5" },
        { subnetId: "sub6", ipAddress: "10.0.0.5" },
        { subnetId: "sub6", ipAddress: ADDR },
      ],
    });
    expect(ask(T.SOLICIT, [iaNa(1)], { port: p })).toMatchObject({ messageType: "ADVERTISE", address: ADDR });
  });

  it("dhcp6SubnetFor skips an IPv4 address even when it names an IPv6 subnet", () => {
    const p = port({
      fixedIps: [
        { subnetId: "sub6", ipAddress: "10.0.0.5" },
        { subnetId: "sub6", ipAddress: ADDR },
      ],
    });
    expect(dhcp6SubnetFor(p, () => subnet())).toMatchObject({ ipAddress: ADDR, mode: "stateful" });
  });

  it("a subnet whose cidr is not exactly address/len is not served", () => {
    for (const cidr of ["x2001:db8:1::/64", "2001:db8:1::/64x", "2001:db8:1::/6400"]) {
      expect(ask(T.SOLICIT, [iaNa(1)], { subnet: subnet({ cidr }) }), cidr).toEqual({
        kind: "ignore",
        reason: `subnet sub6 cidr ${cidr} is not IPv6`,
      });
    }
  });

  it("stateless CONFIRM: one listed address off the prefix makes it NotOnLink", () => {
    const sl = { subnet: subnet({ ipv6AddressMode: "dhcpv6-stateless", ipv6RaMode: "dhcpv6-stateless" }) };
    expect(ask(T.CONFIRM, [iaNa(7, "2001:db8:1::77", "2001:db8:2::77")], sl)).toMatchObject({
      status: "NotOnLink",
    });
    expect(ask(T.CONFIRM, [iaNa(7, "2001:db8:2::77", "2001:db8:1::77")], sl)).toMatchObject({
      status: "NotOnLink",
    });
  });

  it("CONFIRM counts the addresses of an IA_TA too", () => {
    const ta: Dhcp6Option = {
      kind: "ia-ta",
      iaid: 3,
      options: [
        { kind: "iaaddr", address: "2001:db8:9::1", preferredLifetime: 0, validLifetime: 0, options: [] },
      ],
    };
    expect(ask(T.CONFIRM, [ta])).toMatchObject({ kind: "reply", status: "NotOnLink" });
    expect(ask(T.CONFIRM, [iaNa(1, ADDR), ta])).toMatchObject({ kind: "reply", status: "NotOnLink" });
  });

  it("a second IA_NA gets NoAddrsAvail, and in a RENEW its listed addresses expire", () => {
    const request = message(ask(T.REQUEST, [ourServerId, iaNa(1), iaNa(2, "2001:db8:1::99")])).options.find(
      (o) => o.kind === "ia-na" && o.iaid === 2,
    );
    expect(request).toEqual({
      kind: "ia-na",
      iaid: 2,
      t1: 0,
      t2: 0,
      options: [
        {
          kind: "status-code",
          status: DHCP6_STATUS.NoAddrsAvail,
          message: "one address per client, in its first IA_NA",
        },
      ],
    });
    const renew = message(ask(T.RENEW, [ourServerId, iaNa(1, ADDR), iaNa(2, "2001:db8:1::99")])).options.find(
      (o) => o.kind === "ia-na" && o.iaid === 2,
    );
    expect(renew).toEqual({
      kind: "ia-na",
      iaid: 2,
      t1: 0,
      t2: 0,
      options: [
        {
          kind: "status-code",
          status: DHCP6_STATUS.NoAddrsAvail,
          message: "one address per client, in its first IA_NA",
        },
        expiredAddr("2001:db8:1::99"),
      ],
    });
  });

  it("a decision reports an IA_PD's NoPrefixAvail when the IA_NA got its address", () => {
    const d = ask(T.REQUEST, [ourServerId, iaNa(1), { kind: "ia-pd", iaid: 2, t1: 0, t2: 0, options: [] }]);
    expect(d).toMatchObject({ messageType: "REPLY", address: ADDR, status: "NoPrefixAvail" });
  });

  it("a reply that cannot be built is an ignore saying so, logged as an error with the port", () => {
    const error = vi.spyOn(logger("dhcp6"), "error");
    const d = ask(T.SOLICIT, [iaNa(1)], { serverMac: "not-a-mac" });
    expect(d.kind === "ignore" && d.reason).toMatch(/^cannot build the reply: ./);
    expect(error.mock.calls.map((call) => call[0])).toEqual([
      expect.objectContaining({ port: "p1", err: expect.any(Error) }),
    ]);
  });

  it("every status code's message says why (RFC 8415 §21.13: for the client's user and logs)", () => {
    // [status, message] of every Status Code option in the reply, inside IAs too
    const statuses = (d: Dhcp6Decision): [number, string][] => {
      const out: [number, string][] = [];
      const walk = (options: readonly Dhcp6Option[]): void => {
        for (const o of options) {
          if (o.kind === "status-code") out.push([o.status, o.message]);
          if (o.kind === "ia-na" || o.kind === "ia-ta" || o.kind === "ia-pd") walk(o.options);
        }
      };
      walk(message(d).options);
      return out;
    };
    const S = DHCP6_STATUS;
    const sl = { subnet: subnet({ ipv6AddressMode: "dhcpv6-stateless", ipv6RaMode: "dhcpv6-stateless" }) };
    const SERVER_LL = "fe80::f816:3eff:feff:1";
    expect(statuses(ask(T.REQUEST, [ourServerId, iaNa(1)], {}, SERVER_LL))).toEqual([
      [S.UseMulticast, "send to ff02::1:2"],
    ]);
    expect(statuses(ask(T.CONFIRM, [iaNa(1, "2001:db8:1::99")]))).toEqual([
      [S.NotOnLink, "not this client's address on 2001:db8:1::/64"],
    ]);
    expect(statuses(ask(T.RELEASE, [ourServerId, iaNa(1, ADDR)]))).toEqual([[S.Success, "released"]]);
    expect(statuses(ask(T.DECLINE, [ourServerId, iaNa(1, ADDR)]))).toEqual([[S.Success, "decline noted"]]);
    expect(statuses(ask(T.SOLICIT, [iaNa(1)], sl))).toEqual([
      [S.NoAddrsAvail, "subnet 2001:db8:1::/64 is stateless: addresses by SLAAC"],
    ]);
    expect(statuses(ask(T.SOLICIT, [iaNa(1)], { port: port({ fixedIps: [] }) }))).toEqual([
      [S.NoAddrsAvail, "this port has no address on 2001:db8:1::/64"],
    ]);
    expect(statuses(ask(T.SOLICIT, []))).toEqual([[S.NoAddrsAvail, "no IA_NA requested"]]);
    expect(
      statuses(
        ask(T.REQUEST, [
          ourServerId,
          iaNa(1),
          { kind: "ia-ta", iaid: 2, options: [] },
          { kind: "ia-pd", iaid: 3, t1: 0, t2: 0, options: [] },
        ]),
      ),
    ).toEqual([
      [S.NoAddrsAvail, "no temporary addresses"],
      [S.NoPrefixAvail, "no prefix delegation"],
    ]);
    expect(statuses(ask(T.REQUEST, [ourServerId, iaNa(1)], sl))).toEqual([
      [S.NoAddrsAvail, "addresses by SLAAC"],
    ]);
    expect(statuses(ask(T.RENEW, [ourServerId, iaNa(1, ADDR)], sl))).toEqual([[S.NoBinding, "no binding"]]);
  });

  describe("port v6 extra options", () => {
    const config = (extra: Port["extraDhcpOptions"]) =>
      message(ask(T.INFORMATION_REQUEST, [], { port: port({ extraDhcpOptions: extra }) })).options.slice(2);

    it("names 23 and 24 and the dns_server spelling; empty items are skipped", () => {
      expect(
        config([
          { name: "23", value: "2001:db8::1,", ipVersion: 6 },
          { name: "24", value: ", a.example", ipVersion: 6 },
        ]),
      ).toEqual([
        { kind: "dns-servers", servers: ["2001:db8::1"] },
        { kind: "domain-list", domains: ["a.example"] },
      ]);
      expect(config([{ name: "DNS_Server", value: "2001:db8::2", ipVersion: 6 }])).toEqual([
        { kind: "dns-servers", servers: ["2001:db8::2"] },
        { kind: "domain-list", domains: ["openstacklocal"] },
      ]);
    });

    it("IPv4 settings are not read, even when their value would parse", () => {
      expect(
        config([
          { name: "dns-server", value: "2001:db8::1", ipVersion: 4 },
          { name: "domain-search", value: "v4.example", ipVersion: 4 },
        ]),
      ).toEqual([
        { kind: "dns-servers", servers: ["2001:db8::53"] },
        { kind: "domain-list", domains: ["openstacklocal"] },
      ]);
    });

    it("another option name is left out, not taken as a search list", () => {
      expect(config([{ name: "ntp-server", value: "ntp.example", ipVersion: 6 }])).toEqual([
        { kind: "dns-servers", servers: ["2001:db8::53"] },
        { kind: "domain-list", domains: ["openstacklocal"] },
      ]);
    });

    it("an empty domain-search sends no search list at all", () => {
      expect(config([{ name: "domain-search", value: "", ipVersion: 6 }])).toEqual([
        { kind: "dns-servers", servers: ["2001:db8::53"] },
      ]);
    });
  });
});
