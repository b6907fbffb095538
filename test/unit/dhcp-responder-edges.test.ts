/**
 * Edges of the DHCPv4 responder (src/apps/dhcp/responder.ts) that the main
 * test file (dhcp-responder.test.ts) leaves open, each a decision a client
 * would see: which address of the port is offered, requests to the subnet's
 * broadcast address, the server address of small subnets, the NAK for a
 * REQUEST naming no address, the DNS servers and host routes a reply carries
 * (IPv4 ones only; no second default route), ciaddr in an OFFER, where an
 * INFORM without ciaddr is answered, and the BOOTP file field.
 */
import { describe, expect, it } from "vitest";
import { defaultServerIp, type DhcpContext, handleDhcpFrame } from "../../src/apps/dhcp/responder.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import {
  BOOTREQUEST,
  buildDhcpPacket,
  DHCP_MESSAGE_TYPE,
  type DhcpOptions,
  MAC_BROADCAST,
  parseEthernet,
} from "../../src/packet/index.js";

const CLIENT_MAC = "fa:16:3e:00:00:05";
const SERVER_MAC = "fa:16:3e:ff:00:01";

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

function request(type: number, o: { ciaddr?: string; ipDst?: string; options?: DhcpOptions } = {}): Buffer {
  return buildDhcpPacket({
    ethSrc: CLIENT_MAC,
    ethDst: MAC_BROADCAST,
    ipSrc: o.ciaddr ?? "0.0.0.0",
    ipDst: o.ipDst ?? "255.255.255.255",
    dhcp: {
      op: BOOTREQUEST,
      xid: 7,
      chaddr: CLIENT_MAC,
      ciaddr: o.ciaddr,
      options: { ...o.options, messageType: type },
    },
  });
}

function answer(frame: Buffer, c: DhcpContext) {
  const d = handleDhcpFrame(frame, c);
  if (d.kind !== "reply") throw new Error(`expected a reply, got: ${d.reason}`);
  const f = parseEthernet(d.frame);
  return { d, f, dhcp: f.dhcp! };
}

describe("DHCPv4 responder edges", () => {
  it("offers the port's address on the subnet, not an earlier one on another subnet", () => {
    const c = ctx({
      port: {
        fixedIps: [
          { subnetId: "sub9", ipAddress: "10.9.0.5" },
          { subnetId: "sub1", ipAddress: "fd00::5" },
          { subnetId: "sub1", ipAddress: "10.0.0.5" },
        ],
      },
    });
    expect(answer(request(DHCP_MESSAGE_TYPE.DISCOVER), c).dhcp.yiaddr).toBe("10.0.0.5");
  });

  it("answers a request sent to the subnet's broadcast address, not one to another host", () => {
    expect(answer(request(DHCP_MESSAGE_TYPE.DISCOVER, { ipDst: "10.0.0.255" }), ctx()).d.messageType).toBe(
      "OFFER",
    );
    expect(handleDhcpFrame(request(DHCP_MESSAGE_TYPE.DISCOVER, { ipDst: "10.0.0.7" }), ctx()).kind).toBe(
      "ignore",
    );
  });

  it("defaultServerIp: the first host of a /30; none for a /31 or /32 without a gateway", () => {
    expect(defaultServerIp({ cidr: "10.0.0.4/30", gatewayIp: null })).toBe("10.0.0.5");
    expect(defaultServerIp({ cidr: "10.0.0.4/31", gatewayIp: null })).toBeUndefined();
    expect(defaultServerIp({ cidr: "10.0.0.4/32", gatewayIp: null })).toBeUndefined();
    expect(defaultServerIp({ cidr: "10.0.0.0/24", gatewayIp: "10.0.0.254" })).toBe("10.0.0.254");
  });

  it("a REQUEST to us naming no address gets a NAK saying so", () => {
    const { d, dhcp } = answer(
      request(DHCP_MESSAGE_TYPE.REQUEST, { options: { serverIdentifier: "10.0.0.1" } }),
      ctx(),
    );
    expect(d.messageType).toBe("NAK");
    expect(dhcp.options.message).toBe("no requested address");
  });

  it("only IPv4 DNS servers and host routes; no default route added when one is given", () => {
    const c = ctx({
      subnet: {
        dnsNameservers: ["2001:db8::53", "10.0.0.53"],
        hostRoutes: [
          { destination: "10.5.0.0/16", nexthop: "10.0.0.9" },
          { destination: "2001:db8:5::/64", nexthop: "2001:db8::1" },
          { destination: "10.6.0.0/16", nexthop: "2001:db8::1" },
        ],
      },
    });
    const o = answer(request(DHCP_MESSAGE_TYPE.DISCOVER), c).dhcp.options;
    expect(o.domainNameServer).toEqual(["10.0.0.53"]);
    expect(o.classlessStaticRoutes).toEqual([
      { destination: "10.5.0.0/16", router: "10.0.0.9" },
      { destination: "0.0.0.0/0", router: "10.0.0.1" },
    ]);
    const withDefault = ctx({
      subnet: {
        hostRoutes: [
          { destination: "0.0.0.0/0", nexthop: "10.0.0.254" },
          { destination: "10.5.0.0/16", nexthop: "10.0.0.9" },
        ],
      },
    });
    expect(
      answer(request(DHCP_MESSAGE_TYPE.DISCOVER), withDefault).dhcp.options.classlessStaticRoutes,
    ).toEqual([
      { destination: "0.0.0.0/0", router: "10.0.0.254" },
      { destination: "10.5.0.0/16", router: "10.0.0.9" },
    ]);
  });

  it("an OFFER carries ciaddr 0 even to a client that set it; an ACK echoes it", () => {
    const offer = answer(
      request(DHCP_MESSAGE_TYPE.DISCOVER, { ciaddr: "10.0.0.5", ipDst: "10.0.0.1" }),
      ctx(),
    );
    expect(offer.dhcp.ciaddr).toBe("0.0.0.0");
    expect(offer.f.ipv4?.dst).toBe("10.0.0.5");
    const ack = answer(request(DHCP_MESSAGE_TYPE.REQUEST, { ciaddr: "10.0.0.5", ipDst: "10.0.0.1" }), ctx());
    expect(ack.dhcp.ciaddr).toBe("10.0.0.5");
  });

  it("an INFORM without ciaddr is answered by broadcast (it has no address to unicast to)", () => {
    const { f, dhcp } = answer(request(DHCP_MESSAGE_TYPE.INFORM), ctx());
    expect([f.eth.dst, f.ipv4?.dst, dhcp.yiaddr]).toEqual([MAC_BROADCAST, "255.255.255.255", "0.0.0.0"]);
  });

  it("a bootfile name shorter than 128 bytes goes in the BOOTP file field too", () => {
    const file = (name: string) =>
      answer(request(DHCP_MESSAGE_TYPE.DISCOVER), ctx({ subnet: { dhcpOptions: { "bootfile-name": name } } }))
        .dhcp.file;
    expect(file("a".repeat(127))).toBe("a".repeat(127));
    expect(file("b".repeat(128))).toBe("");
  });
});
