/**
 * The DHCP responder's decisions, checked by decoding its reply frames with
 * the packet library: every client message type, the options an OFFER/ACK
 * carries (and their values), NAK and silence cases, a subnet with DHCP off,
 * subnet/port option overrides, RFC 2131 §4.1 addressing, and fuzzing (random,
 * truncated and mutated frames give a decision, never an exception).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  defaultServerIp,
  type DhcpContext,
  type DhcpDecision,
  handleDhcpFrame,
} from "../../src/apps/dhcp/responder.js";
import { dhcpSubnetFor } from "../../src/apps/dhcp/context.js";
import { DhcpOptionError, parseOptionSetting } from "../../src/apps/dhcp/options.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import {
  BOOTREQUEST,
  buildDhcpPacket,
  buildFrame,
  DHCP_MESSAGE_TYPE,
  type DhcpOptions,
  type DhcpSpec,
  type Frame,
  MAC_BROADCAST,
  parseEthernet,
} from "../../src/packet/index.js";

const CLIENT_MAC = "fa:16:3e:00:00:05";
const SERVER_MAC = "fa:16:3e:ff:00:01";

function network(over: Partial<Network> = {}): Network {
  return {
    id: "net1",
    tenantId: "t1",
    name: "net1",
    description: "",
    networkType: "geneve",
    segmentationId: 100,
    mtu: 1442,
    portSecurityEnabled: true,
    ...over,
  } as Network;
}

function subnet(over: Partial<Subnet> = {}): Subnet {
  return {
    id: "sub1",
    tenantId: "t1",
    name: "sub1",
    description: "",
    networkId: "net1",
    cidr: "10.0.0.0/24",
    ipVersion: 4,
    gatewayIp: "10.0.0.1",
    allocationPools: [{ start: "10.0.0.2", end: "10.0.0.254" }],
    enableDhcp: true,
    dhcpOptions: {},
    dnsNameservers: ["8.8.8.8", "1.1.1.1"],
    hostRoutes: [],
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
    fixedIps: [{ subnetId: "sub1", ipAddress: "10.0.0.5" }],
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

function ctx(over: Partial<DhcpContext> = {}): DhcpContext {
  return {
    port: port(),
    subnet: subnet(),
    network: network(),
    serverMac: SERVER_MAC,
    serverIp: "10.0.0.2",
    ...over,
  };
}

interface ClientMsg {
  type?: number;
  options?: DhcpOptions;
  ciaddr?: string;
  giaddr?: string;
  broadcast?: boolean;
  chaddr?: string;
  ipSrc?: string;
  ipDst?: string;
  op?: number;
  xid?: number;
}

function clientFrame(m: ClientMsg): Buffer {
  const options: DhcpOptions = { ...m.options };
  if (m.type !== undefined) options.messageType = m.type;
  const dhcp: DhcpSpec = {
    op: m.op ?? BOOTREQUEST,
    xid: m.xid ?? 0x12345678,
    chaddr: m.chaddr ?? CLIENT_MAC,
    broadcast: m.broadcast,
    ciaddr: m.ciaddr,
    giaddr: m.giaddr,
    options,
  };
  return buildDhcpPacket({
    ethSrc: m.chaddr ?? CLIENT_MAC,
    ethDst: m.ipDst && m.ipDst !== "255.255.255.255" ? SERVER_MAC : MAC_BROADCAST,
    ipSrc: m.ipSrc ?? m.ciaddr ?? "0.0.0.0",
    ipDst: m.ipDst ?? "255.255.255.255",
    dhcp,
  });
}

const DISCOVER = (o: Omit<ClientMsg, "type"> = {}) => clientFrame({ type: DHCP_MESSAGE_TYPE.DISCOVER, ...o });
const REQUEST = (o: Omit<ClientMsg, "type"> = {}) => clientFrame({ type: DHCP_MESSAGE_TYPE.REQUEST, ...o });

function replyOf(d: DhcpDecision): Frame & { dhcp: NonNullable<Frame["dhcp"]> } {
  if (d.kind !== "reply") throw new Error(`expected a reply, got ignore: ${d.reason}`);
  const f = parseEthernet(d.frame);
  if (!f.dhcp) throw new Error("reply carries no DHCP message");
  return f as Frame & { dhcp: NonNullable<Frame["dhcp"]> };
}

function ignored(d: DhcpDecision): string {
  if (d.kind !== "ignore") throw new Error(`expected ignore, got ${d.messageType}`);
  return d.reason;
}

describe("DISCOVER → OFFER", () => {
  it("offers the port's address with every subnet option, checksums valid", () => {
    const d = handleDhcpFrame(
      DISCOVER({ options: { clientIdentifier: { type: 1, id: Buffer.from("fa163e000005", "hex") } } }),
      ctx(),
    );
    expect(d).toMatchObject({ kind: "reply", messageType: "OFFER", yiaddr: "10.0.0.5" });
    const f = replyOf(d);
    expect(f.eth).toEqual({ src: SERVER_MAC, dst: CLIENT_MAC, ethertype: 0x0800 });
    expect(f.ipv4).toMatchObject({ src: "10.0.0.2", dst: "10.0.0.5", checksumValid: true, ttl: 64 });
    expect(f.udp).toMatchObject({ srcPort: 67, dstPort: 68, checksumValid: true });
    expect(f.udp!.checksum).not.toBe(0);
    expect(f.dhcp).toMatchObject({
      op: 2,
      xid: 0x12345678,
      ciaddr: "0.0.0.0",
      yiaddr: "10.0.0.5",
      siaddr: "0.0.0.0",
      giaddr: "0.0.0.0",
      chaddr: CLIENT_MAC,
      broadcast: false,
    });
    expect(f.dhcp.options).toEqual({
      messageType: DHCP_MESSAGE_TYPE.OFFER,
      serverIdentifier: "10.0.0.2",
      ipAddressLeaseTime: 86400,
      renewalTime: 43200,
      rebindingTime: 75600,
      subnetMask: "255.255.255.0",
      broadcastAddress: "10.0.0.255",
      router: ["10.0.0.1"],
      domainNameServer: ["8.8.8.8", "1.1.1.1"],
      domainName: "openstacklocal",
      interfaceMtu: 1442,
      clientIdentifier: { type: 1, id: Buffer.from("fa163e000005", "hex") },
    });
    expect(f.dhcp.unknownOptions).toEqual([]);
  });

  it("offers the port's address even when the client asks for another", () => {
    const d = handleDhcpFrame(DISCOVER({ options: { requestedIpAddress: "10.0.0.77" } }), ctx());
    expect(replyOf(d).dhcp.yiaddr).toBe("10.0.0.5");
  });

  it("broadcasts when the client sets the broadcast flag (§4.1)", () => {
    const f = replyOf(handleDhcpFrame(DISCOVER({ broadcast: true }), ctx()));
    expect(f.eth.dst).toBe(MAC_BROADCAST);
    expect(f.ipv4!.dst).toBe("255.255.255.255");
    expect(f.dhcp.broadcast).toBe(true);
  });

  it("takes lease time and domain from the context, and a /16 mask and broadcast from the cidr", () => {
    const f = replyOf(
      handleDhcpFrame(
        DISCOVER(),
        ctx({
          leaseTime: 600,
          domain: "cloud.example",
          subnet: subnet({ cidr: "172.16.0.0/16", gatewayIp: "172.16.0.1" }),
          port: port({ fixedIps: [{ subnetId: "sub1", ipAddress: "172.16.3.9" }] }),
        }),
      ),
    );
    expect(f.dhcp.yiaddr).toBe("172.16.3.9");
    expect(f.dhcp.options).toMatchObject({
      ipAddressLeaseTime: 600,
      renewalTime: 300,
      rebindingTime: 525,
      domainName: "cloud.example",
      subnetMask: "255.255.0.0",
      broadcastAddress: "172.16.255.255",
      router: ["172.16.0.1"],
    });
  });

  it("sends no router without a gateway, and no DNS without nameservers", () => {
    const f = replyOf(
      handleDhcpFrame(DISCOVER(), ctx({ subnet: subnet({ gatewayIp: null, dnsNameservers: [] }) })),
    );
    expect(f.dhcp.options.router).toBeUndefined();
    expect(f.dhcp.options.domainNameServer).toBeUndefined();
    expect(f.dhcp.options.subnetMask).toBe("255.255.255.0");
  });

  it("sends host routes as option 121 with the default route via the gateway (RFC 3442)", () => {
    const s = subnet({
      hostRoutes: [
        { destination: "192.168.0.0/16", nexthop: "10.0.0.254" },
        { destination: "169.254.169.254/32", nexthop: "10.0.0.3" },
      ],
    });
    const f = replyOf(handleDhcpFrame(DISCOVER(), ctx({ subnet: s })));
    expect(f.dhcp.options.classlessStaticRoutes).toEqual([
      { destination: "192.168.0.0/16", router: "10.0.0.254" },
      { destination: "169.254.169.254/32", router: "10.0.0.3" },
      { destination: "0.0.0.0/0", router: "10.0.0.1" },
    ]);
    expect(f.dhcp.options.router).toEqual(["10.0.0.1"]);
    const noGw = replyOf(handleDhcpFrame(DISCOVER(), ctx({ subnet: { ...s, gatewayIp: null } })));
    expect(noGw.dhcp.options.classlessStaticRoutes).toHaveLength(2);
  });

  it("does not add a second default route when the host routes carry one", () => {
    const s = subnet({ hostRoutes: [{ destination: "0.0.0.0/0", nexthop: "10.0.0.9" }] });
    const f = replyOf(handleDhcpFrame(DISCOVER(), ctx({ subnet: s })));
    expect(f.dhcp.options.classlessStaticRoutes).toEqual([{ destination: "0.0.0.0/0", router: "10.0.0.9" }]);
  });
});

describe("REQUEST → ACK / NAK / silence", () => {
  it("SELECTING with our server id and the port's address → ACK (unicast to yiaddr)", () => {
    const d = handleDhcpFrame(
      REQUEST({ options: { serverIdentifier: "10.0.0.2", requestedIpAddress: "10.0.0.5" } }),
      ctx(),
    );
    expect(d).toMatchObject({ kind: "reply", messageType: "ACK", yiaddr: "10.0.0.5" });
    const f = replyOf(d);
    expect(f.dhcp.options.messageType).toBe(DHCP_MESSAGE_TYPE.ACK);
    expect(f.dhcp.options.ipAddressLeaseTime).toBe(86400);
    expect(f.dhcp.options.interfaceMtu).toBe(1442);
    expect(f.ipv4!.dst).toBe("10.0.0.5");
    expect(f.eth.dst).toBe(CLIENT_MAC);
  });

  it("SELECTING another server → silence (the client chose it)", () => {
    const d = handleDhcpFrame(
      REQUEST({ options: { serverIdentifier: "10.0.0.99", requestedIpAddress: "10.0.0.5" } }),
      ctx(),
    );
    expect(ignored(d)).toMatch(/not ours/);
  });

  it("SELECTING our server for another address → NAK, broadcast, no lease or yiaddr", () => {
    const d = handleDhcpFrame(
      REQUEST({ options: { serverIdentifier: "10.0.0.2", requestedIpAddress: "10.0.0.6" } }),
      ctx(),
    );
    expect(d).toMatchObject({ kind: "reply", messageType: "NAK", yiaddr: "0.0.0.0" });
    const f = replyOf(d);
    expect(f.eth.dst).toBe(MAC_BROADCAST);
    expect(f.ipv4!.dst).toBe("255.255.255.255");
    expect(f.dhcp.yiaddr).toBe("0.0.0.0");
    expect(f.dhcp.options).toEqual({
      messageType: DHCP_MESSAGE_TYPE.NAK,
      serverIdentifier: "10.0.0.2",
      message: "address 10.0.0.6 is not this client's",
    });
  });

  it("INIT-REBOOT: right address → ACK; an address off the subnet → NAK naming the cidr", () => {
    expect(handleDhcpFrame(REQUEST({ options: { requestedIpAddress: "10.0.0.5" } }), ctx())).toMatchObject({
      messageType: "ACK",
    });
    const nak = replyOf(handleDhcpFrame(REQUEST({ options: { requestedIpAddress: "192.168.1.5" } }), ctx()));
    expect(nak.dhcp.options.messageType).toBe(DHCP_MESSAGE_TYPE.NAK);
    expect(nak.dhcp.options.message).toBe("address 192.168.1.5 is not on 10.0.0.0/24");
  });

  it("RENEWING (unicast, ciaddr) → ACK unicast to ciaddr with ciaddr echoed", () => {
    const d = handleDhcpFrame(REQUEST({ ciaddr: "10.0.0.5", ipDst: "10.0.0.2" }), ctx());
    const f = replyOf(d);
    expect(f.dhcp.options.messageType).toBe(DHCP_MESSAGE_TYPE.ACK);
    expect(f.dhcp).toMatchObject({ ciaddr: "10.0.0.5", yiaddr: "10.0.0.5" });
    expect(f.ipv4!.dst).toBe("10.0.0.5");
    expect(f.eth.dst).toBe(CLIENT_MAC);
  });

  it("REBINDING (broadcast, ciaddr) with a stale address → NAK", () => {
    const d = handleDhcpFrame(REQUEST({ ciaddr: "10.0.0.44" }), ctx());
    expect(d).toMatchObject({ kind: "reply", messageType: "NAK" });
  });

  it("a unicast REQUEST to another server's address → silence", () => {
    expect(ignored(handleDhcpFrame(REQUEST({ ciaddr: "10.0.0.5", ipDst: "10.0.0.50" }), ctx()))).toMatch(
      /another server/,
    );
  });

  it("REQUEST with nothing to go on → silence", () => {
    expect(ignored(handleDhcpFrame(REQUEST(), ctx()))).toMatch(/without server identifier/);
  });
});

describe("INFORM, DECLINE, RELEASE and frames that are not ours", () => {
  it("INFORM → ACK to ciaddr, options but no yiaddr and no lease times", () => {
    const d = handleDhcpFrame(
      clientFrame({ type: DHCP_MESSAGE_TYPE.INFORM, ciaddr: "10.0.0.5", ipDst: "255.255.255.255" }),
      ctx(),
    );
    expect(d).toMatchObject({ kind: "reply", messageType: "ACK", yiaddr: "0.0.0.0" });
    const f = replyOf(d);
    expect(f.dhcp.yiaddr).toBe("0.0.0.0");
    expect(f.dhcp.ciaddr).toBe("10.0.0.5");
    expect(f.ipv4!.dst).toBe("10.0.0.5");
    expect(f.dhcp.options.ipAddressLeaseTime).toBeUndefined();
    expect(f.dhcp.options.renewalTime).toBeUndefined();
    expect(f.dhcp.options.rebindingTime).toBeUndefined();
    expect(f.dhcp.options).toMatchObject({ serverIdentifier: "10.0.0.2", router: ["10.0.0.1"] });
  });

  it("DECLINE and RELEASE are not answered, with a reason", () => {
    expect(
      ignored(
        handleDhcpFrame(
          clientFrame({
            type: DHCP_MESSAGE_TYPE.DECLINE,
            options: { requestedIpAddress: "10.0.0.5", serverIdentifier: "10.0.0.2" },
          }),
          ctx(),
        ),
      ),
    ).toMatch(/^DECLINE of 10\.0\.0\.5/);
    expect(
      ignored(
        handleDhcpFrame(
          clientFrame({
            type: DHCP_MESSAGE_TYPE.RELEASE,
            ciaddr: "10.0.0.5",
            ipDst: "10.0.0.2",
            options: { serverIdentifier: "10.0.0.2" },
          }),
          ctx(),
        ),
      ),
    ).toMatch(/^RELEASE of 10\.0\.0\.5/);
  });

  it("a subnet with DHCP disabled is never answered", () => {
    const c = ctx({ subnet: subnet({ enableDhcp: false }) });
    for (const f of [
      DISCOVER(),
      REQUEST({ options: { requestedIpAddress: "10.0.0.5" } }),
      clientFrame({ type: DHCP_MESSAGE_TYPE.INFORM, ciaddr: "10.0.0.5" }),
    ]) {
      expect(ignored(handleDhcpFrame(f, c))).toBe("subnet sub1 has DHCP disabled");
    }
  });

  it("ignores other MACs, relayed requests, replies, BOOTP, ports without an address, down ports", () => {
    expect(ignored(handleDhcpFrame(DISCOVER({ chaddr: "fa:16:3e:00:00:99" }), ctx()))).toMatch(
      /chaddr fa:16:3e:00:00:99 is not port p1's MAC/,
    );
    expect(ignored(handleDhcpFrame(DISCOVER({ giaddr: "10.9.9.9" }), ctx()))).toMatch(/relayed/);
    expect(ignored(handleDhcpFrame(DISCOVER({ op: 2 }), ctx()))).toMatch(/not addressed to the DHCP server/);
    const replyOnServerPort = buildFrame({
      eth: { src: CLIENT_MAC, dst: MAC_BROADCAST },
      ipv4: { src: "0.0.0.0", dst: "255.255.255.255" },
      udp: { srcPort: 68, dstPort: 67 },
      dhcp: { op: 2, xid: 1, chaddr: CLIENT_MAC, options: { messageType: 1 } },
    });
    expect(ignored(handleDhcpFrame(replyOnServerPort, ctx()))).toBe("not a BOOTREQUEST");
    expect(ignored(handleDhcpFrame(clientFrame({}), ctx()))).toMatch(/without a DHCP message type/);
    expect(ignored(handleDhcpFrame(clientFrame({ type: DHCP_MESSAGE_TYPE.OFFER }), ctx()))).toMatch(
      /DHCPOFFER is not a client-to-server message/,
    );
    expect(ignored(handleDhcpFrame(DISCOVER(), ctx({ port: port({ fixedIps: [] }) })))).toMatch(
      /no IPv4 address on subnet sub1/,
    );
    expect(ignored(handleDhcpFrame(DISCOVER(), ctx({ port: port({ adminStateUp: false }) })))).toMatch(
      /administratively down/,
    );
    expect(
      ignored(handleDhcpFrame(DISCOVER(), ctx({ subnet: subnet({ ipVersion: 6, cidr: "fd00::/64" }) }))),
    ).toMatch(/not IPv4/);
  });

  it("ignores frames that are not DHCP requests, and garbage, with a reason", () => {
    const udp = buildFrame({
      eth: { src: CLIENT_MAC, dst: SERVER_MAC },
      ipv4: { src: "10.0.0.5", dst: "10.0.0.2" },
      udp: { srcPort: 5000, dstPort: 53 },
      payload: Buffer.from("hello"),
    });
    expect(ignored(handleDhcpFrame(udp, ctx()))).toBe("not a DHCPv4 frame");
    expect(ignored(handleDhcpFrame(Buffer.alloc(0), ctx()))).toMatch(/^malformed frame: /);
    const bad = DISCOVER();
    bad.writeUInt32BE(0xdeadbeef, 14 + 20 + 8 + 236); // magic cookie
    expect(ignored(handleDhcpFrame(bad, ctx()))).toMatch(/malformed frame: dhcp: magic cookie/);
  });

  it("keeps the request's VLAN tag on the reply", () => {
    const tagged = buildFrame({
      eth: { src: CLIENT_MAC, dst: MAC_BROADCAST },
      vlans: [{ vid: 42 }],
      ipv4: { src: "0.0.0.0", dst: "255.255.255.255" },
      udp: { srcPort: 68, dstPort: 67 },
      dhcp: { op: 1, xid: 7, chaddr: CLIENT_MAC, options: { messageType: 1 } },
    });
    const f = replyOf(handleDhcpFrame(tagged, ctx()));
    expect(f.vlans.map((v) => v.vid)).toEqual([42]);
    expect(f.dhcp.xid).toBe(7);
  });
});

describe("subnet dhcpOptions and port extraDhcpOptions", () => {
  it("override defaults by name and number, port over subnet; unknown codes go raw", () => {
    const c = ctx({
      subnet: subnet({
        dhcpOptions: {
          mtu: "1400",
          "domain-name": "subnet.example",
          "42": "10.0.0.123",
          "lease-time": "3600",
        },
      }),
      port: port({
        extraDhcpOptions: [
          { name: "domain_name", value: "port.example", ipVersion: 4 },
          { name: "dns-server", value: "9.9.9.9, 149.112.112.112", ipVersion: 4 },
          { name: "option:150", value: "0a:00:00:07", ipVersion: 4 },
          { name: "bootfile-name", value: "pxelinux.0", ipVersion: 4 },
          { name: "server-ip-address", value: "10.0.0.7", ipVersion: 4 },
          { name: "mtu", value: "9000", ipVersion: 6 },
        ],
      }),
    });
    const f = replyOf(handleDhcpFrame(DISCOVER(), c));
    expect(f.dhcp.options).toMatchObject({
      interfaceMtu: 1400,
      domainName: "port.example",
      domainNameServer: ["9.9.9.9", "149.112.112.112"],
      ntpServers: ["10.0.0.123"],
      ipAddressLeaseTime: 3600,
      renewalTime: 1800,
      rebindingTime: 3150,
      bootfileName: "pxelinux.0",
    });
    expect(f.dhcp.siaddr).toBe("10.0.0.7");
    expect(f.dhcp.file).toBe("pxelinux.0");
    expect(f.dhcp.unknownOptions).toEqual([{ code: 150, data: Buffer.from([10, 0, 0, 7]) }]);
  });

  it("an empty value suppresses an option; router override feeds 121's default route", () => {
    const c = ctx({
      subnet: subnet({
        hostRoutes: [{ destination: "10.9.0.0/16", nexthop: "10.0.0.9" }],
        dhcpOptions: { "domain-name": "", router: "10.0.0.254" },
      }),
    });
    const f = replyOf(handleDhcpFrame(DISCOVER(), c));
    expect(f.dhcp.options.domainName).toBeUndefined();
    expect(f.dhcp.options.router).toEqual(["10.0.0.254"]);
    expect(f.dhcp.options.classlessStaticRoutes).toEqual([
      { destination: "10.9.0.0/16", router: "10.0.0.9" },
      { destination: "0.0.0.0/0", router: "10.0.0.254" },
    ]);
  });

  it("explicit classless routes (OVN braces) are sent as given; infinite lease has no T1/T2", () => {
    const c = ctx({
      port: port({
        extraDhcpOptions: [
          {
            name: "classless_static_route",
            value: "{30.0.0.0/24,10.0.0.10, 0.0.0.0/0,10.0.0.1}",
            ipVersion: 4,
          },
          { name: "51", value: "infinite", ipVersion: 4 },
          { name: "domain-search", value: "a.example,b.example", ipVersion: 4 },
        ],
      }),
    });
    const f = replyOf(handleDhcpFrame(DISCOVER(), c));
    expect(f.dhcp.options.classlessStaticRoutes).toEqual([
      { destination: "30.0.0.0/24", router: "10.0.0.10" },
      { destination: "0.0.0.0/0", router: "10.0.0.1" },
    ]);
    expect(f.dhcp.options.ipAddressLeaseTime).toBe(0xffffffff);
    expect(f.dhcp.options.renewalTime).toBeUndefined();
    expect(f.dhcp.options.domainSearch).toEqual(
      Buffer.from("\x01a\x07example\x00\x01b\x07example\x00", "latin1"),
    );
  });

  it("a server-id override changes the identifier, the source address and what counts as ours", () => {
    const c = ctx({ subnet: subnet({ dhcpOptions: { "server-id": "10.0.0.3" } }) });
    const f = replyOf(handleDhcpFrame(DISCOVER(), c));
    expect(f.dhcp.options.serverIdentifier).toBe("10.0.0.3");
    expect(f.ipv4!.src).toBe("10.0.0.3");
    expect(
      handleDhcpFrame(
        REQUEST({ options: { serverIdentifier: "10.0.0.2", requestedIpAddress: "10.0.0.5" } }),
        c,
      ).kind,
    ).toBe("ignore");
  });

  it("a bad setting is skipped, the rest of the reply still goes out", () => {
    const c = ctx({
      subnet: subnet({
        dhcpOptions: { mtu: "huge", "no-such-option": "1", "53": "5", router: "10.0.0.300" },
      }),
    });
    const f = replyOf(handleDhcpFrame(DISCOVER(), c));
    expect(f.dhcp.options.interfaceMtu).toBe(1442);
    expect(f.dhcp.options.router).toEqual(["10.0.0.1"]);
    expect(f.dhcp.options.messageType).toBe(DHCP_MESSAGE_TYPE.OFFER);
  });

  it("parseOptionSetting: names, numbers, types and typed errors", () => {
    expect(parseOptionSetting("MTU", "1500")).toEqual({ code: 26, kind: "value", value: 1500 });
    expect(parseOptionSetting("interfaceMtu", "0x5dc")).toEqual({ code: 26, kind: "value", value: 1500 });
    expect(parseOptionSetting("option:26", "")).toEqual({ code: 26, kind: "suppress" });
    expect(parseOptionSetting("T1", "100")).toEqual({ code: 58, kind: "value", value: 100 });
    expect(parseOptionSetting("time-offset", "-3600")).toEqual({ code: 2, kind: "value", value: -3600 });
    expect(parseOptionSetting("249", "hello")).toEqual({
      code: 249,
      kind: "raw",
      data: Buffer.from("hello"),
    });
    expect(parseOptionSetting("224", "0x0102")).toEqual({
      code: 224,
      kind: "raw",
      data: Buffer.from([1, 2]),
    });
    expect(parseOptionSetting("classless-static-route", "10.1.2.3/16,10.0.0.1")).toEqual({
      code: 121,
      kind: "value",
      value: [{ destination: "10.1.0.0/16", router: "10.0.0.1" }],
    });
    for (const [n, v, why] of [
      ["mtu", "70000", /not an integer in 0\.\.65535/],
      ["router", "x", /not an IPv4 address/],
      ["frobnicate", "1", /unknown option name/],
      ["50", "10.0.0.1", /client's or framing/],
      ["256", "1", /unknown option name/],
      ["classless-static-route", "10.0.0.0/8", /pairs/],
      ["rapidCommit", "maybe", /flag option/],
    ] as const) {
      const e = (() => {
        try {
          parseOptionSetting(n, v);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e, `${n}=${v}`).toBeInstanceOf(DhcpOptionError);
      expect((e as Error).message).toMatch(why);
    }
  });
});

describe("reply size and server address", () => {
  const big = subnet({ dhcpOptions: { "224": "x".repeat(200), "225": "y".repeat(200), mtu: "1300" } });

  it("leaves configured extras out (last first) to fit 576 bytes when the client names no limit", () => {
    const d = handleDhcpFrame(DISCOVER(), ctx({ subnet: big }));
    const f = replyOf(d);
    expect(f.ipv4!.totalLength).toBeLessThanOrEqual(576);
    expect(f.dhcp.unknownOptions.map((o) => o.code)).toEqual([224]);
    expect(f.dhcp.options).toMatchObject({
      interfaceMtu: 1300,
      router: ["10.0.0.1"],
      subnetMask: "255.255.255.0",
    });
  });

  it("sends everything to a client that takes bigger messages (option 57)", () => {
    const f = replyOf(handleDhcpFrame(DISCOVER({ options: { maxMessageSize: 1500 } }), ctx({ subnet: big })));
    expect(f.ipv4!.totalLength).toBeGreaterThan(576);
    expect(f.dhcp.unknownOptions.map((o) => o.code)).toEqual([224, 225]);
  });

  it("defaultServerIp: the gateway, else the first host", () => {
    expect(defaultServerIp(subnet())).toBe("10.0.0.1");
    expect(defaultServerIp(subnet({ gatewayIp: null, cidr: "192.168.8.0/22" }))).toBe("192.168.8.1");
    expect(defaultServerIp(subnet({ gatewayIp: null, cidr: "fd00::/64" }))).toBeUndefined();
  });
});

describe("dhcpSubnetFor: which ports the agent punts", () => {
  const s4off = subnet({ id: "off", enableDhcp: false, cidr: "10.1.0.0/24" });
  const s6 = subnet({ id: "v6", ipVersion: 6, cidr: "fd00::/64" });
  const s4 = subnet({ id: "on", cidr: "10.2.0.0/24" });
  const byId = (id: string) => [s4off, s6, s4].find((x) => x.id === id);

  it("picks the first IPv4 address on a DHCP-enabled subnet, skipping disabled and IPv6 ones", () => {
    const p = port({
      fixedIps: [
        { subnetId: "off", ipAddress: "10.1.0.5" },
        { subnetId: "v6", ipAddress: "fd00::5" },
        { subnetId: "on", ipAddress: "10.2.0.5" },
      ],
    });
    expect(dhcpSubnetFor(p, byId)).toEqual({ subnet: s4, ipAddress: "10.2.0.5" });
  });

  it("is undefined when no subnet of the port serves DHCP (so a tenant's own server gets the packets)", () => {
    expect(
      dhcpSubnetFor(port({ fixedIps: [{ subnetId: "off", ipAddress: "10.1.0.5" }] }), byId),
    ).toBeUndefined();
    expect(
      dhcpSubnetFor(port({ fixedIps: [{ subnetId: "gone", ipAddress: "10.9.0.5" }] }), byId),
    ).toBeUndefined();
  });
});

describe("fuzz: the responder decides, it never throws", () => {
  const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
  const valid = [
    DISCOVER(),
    REQUEST({ options: { serverIdentifier: "10.0.0.2", requestedIpAddress: "10.0.0.5" } }),
    REQUEST({ ciaddr: "10.0.0.5", ipDst: "10.0.0.2" }),
    clientFrame({ type: DHCP_MESSAGE_TYPE.INFORM, ciaddr: "10.0.0.5" }),
  ];
  const check = (frame: Buffer, c: DhcpContext = ctx()): void => {
    const d = handleDhcpFrame(frame, c);
    if (d.kind === "ignore") expect(typeof d.reason).toBe("string");
    else {
      expect(["OFFER", "ACK", "NAK"]).toContain(d.messageType);
      const f = parseEthernet(d.frame);
      expect(f.udp?.checksumValid).toBe(true);
      expect(f.dhcp?.op).toBe(2);
    }
  };

  it("random bytes", () => {
    fc.assert(
      fc.property(bytes(700), (b) => check(b)),
      { numRuns: 2000 },
    );
  });

  it("every truncation of valid requests", () => {
    for (const v of valid) for (let n = 0; n <= v.length; n++) check(v.subarray(0, n));
  });

  it("valid requests with random bytes overwritten", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...valid),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
        (v, edits) => {
          const b = Buffer.from(v);
          for (const [at, val] of edits) b[at % b.length] = val;
          check(b);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("random DHCP options in a well-formed request", () => {
    const opt = fc.record(
      {
        messageType: fc.integer({ min: 0, max: 20 }),
        requestedIpAddress: fc.ipV4(),
        serverIdentifier: fc.constantFrom("10.0.0.2", "10.0.0.3"),
        maxMessageSize: fc.integer({ min: 0, max: 65535 }),
        parameterRequestList: fc.array(fc.integer({ min: 0, max: 255 })),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(opt, fc.option(fc.ipV4(), { nil: undefined }), fc.boolean(), (options, ciaddr, bc) =>
        check(clientFrame({ options, ciaddr, broadcast: bc })),
      ),
      { numRuns: 2000 },
    );
  });

  it("parseOptionSetting raises DhcpOptionError or nothing, for any name and value", () => {
    const text = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc
        .array(fc.oneof(fc.ipV4(), fc.nat(300).map(String), fc.constantFrom("/", ",", " ", "{", "}", ":")), {
          maxLength: 8,
        })
        .map((a) => a.join("")),
    );
    const name = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom(
        ...["mtu", "router", "classless-static-route", "domain-search", "T1", "server-ip-address"],
        ...["rapidCommit", "parameterRequestList", "vendorSpecific", "time-offset", "option:250"],
      ),
      fc.integer({ min: 0, max: 300 }).map(String),
    );
    fc.assert(
      fc.property(name, text, (n, v) => {
        try {
          parseOptionSetting(n, v);
        } catch (e) {
          expect(e).toBeInstanceOf(DhcpOptionError);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it("random option settings never stop a reply from being well-formed", () => {
    const names = fc.oneof(
      fc.constantFrom("mtu", "router", "dns-server", "classless-static-route", "lease-time", "domain-search"),
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.string({ maxLength: 10 }),
    );
    fc.assert(
      fc.property(fc.dictionary(names, fc.string({ maxLength: 40 }), { maxKeys: 6 }), (opts) => {
        const c = ctx({ subnet: subnet({ dhcpOptions: opts }) });
        check(DISCOVER(), c);
        expect(handleDhcpFrame(DISCOVER(), c).kind).toBe("reply");
      }),
      { numRuns: 1000 },
    );
  });
});
