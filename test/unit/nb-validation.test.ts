/**
 * Every rule of the NB model schemas at its edge: the last value accepted
 * and the first refused, with the field and the reason the ValidationError
 * names. Written against the planted bugs of issue 14 (a multicast MAC, a
 * segmentation id one above its type's range, a gateway on the subnet's
 * network or broadcast address, the overlap of a single-address CIDR) and
 * the mutants StrykerJS makes of src/nb/model (test/mutation/nb-model.md).
 */
import { describe, expect, it } from "vitest";
import {
  bigToIp,
  canonicalCidr,
  canonicalIp,
  cidrContains,
  cidrsOverlap,
  hostRange,
  ipToBig,
  ipVersion,
  isCidr,
  isIp,
  isNetworkCidr,
  parseCidr,
} from "../../src/nb/model/ip.js";
import {
  isObjectKind,
  KINDS,
  keyOf,
  kindByNoun,
  MalformedObjectError,
  NotFoundError,
  parseObject,
  ValidationError,
  type ObjectKind,
} from "../../src/nb/model/index.js";

/** "ok", or "field: reason" of the ValidationError parseObject throws. */
function verdict(kind: ObjectKind, input: Record<string, unknown>): string {
  try {
    parseObject(kind, input);
    return "ok";
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    return `${e.field}: ${e.reason}`;
  }
}

/** Every issue the kind's schema finds, "path: message" (parseObject reports the first). */
function issues(kind: ObjectKind, input: Record<string, unknown>): string[] {
  const r = KINDS[kind].schema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

const port = (extra: Record<string, unknown>): Record<string, unknown> => ({
  id: "p1",
  tenantId: "t1",
  networkId: "n1",
  ...extra,
});
const network = (extra: Record<string, unknown>): Record<string, unknown> => ({
  id: "n1",
  tenantId: "t1",
  ...extra,
});
const subnet = (cidr: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: "s1",
  tenantId: "t1",
  networkId: "n1",
  cidr,
  ...extra,
});
const rule = (extra: Record<string, unknown>): Record<string, unknown> => ({
  id: "secgroup1",
  tenantId: "t1",
  rules: [{ id: "r1", direction: "ingress", ...extra }],
});

describe("MAC addresses", () => {
  it("refuses a multicast MAC (the I/G bit), for a port and for an allowed address pair", () => {
    for (const m of ["01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff", "03:00:00:00:00:00"]) {
      expect(verdict("lport", port({ macAddress: m }))).toBe("macAddress: is a multicast MAC address");
      expect(
        verdict("lport", port({ allowedAddressPairs: [{ ipAddress: "10.0.0.9", macAddress: m }] })),
      ).toBe("allowedAddressPairs[0].macAddress: is a multicast MAC address");
    }
    // locally administered (bit 1) and universal unicast MACs are fine
    for (const m of ["02:00:00:00:00:01", "fa:16:3e:00:00:01", "00:00:5e:00:00:01", "fe:ff:ff:ff:ff:ff"])
      expect(verdict("lport", port({ macAddress: m }))).toBe("ok");
  });

  it("takes upper case and dashes, stores lower case with colons", () => {
    const p = parseObject<{ macAddress: string }>("lport", port({ macAddress: "FA-16-3E-0A-0B-0C" }));
    expect(p.macAddress).toBe("fa:16:3e:0a:0b:0c");
  });

  it("refuses what is not six hex pairs", () => {
    for (const m of [
      "fa:16:3e:00:00",
      "fa:16:3e:00:00:01:02",
      "fa:16:3e:00:00:0g",
      "fa163e000001",
      " fa:16:3e:00:00:01",
    ])
      expect(verdict("lport", port({ macAddress: m }))).toBe(
        "macAddress: is not a MAC address (xx:xx:xx:xx:xx:xx)",
      );
  });
});

describe("segmentation ids", () => {
  const cases: [type: string, lo: number, hi: number, extra: Record<string, unknown>][] = [
    ["vxlan", 1, 16_777_215, {}],
    ["geneve", 1, 16_777_215, {}],
    ["vlan", 1, 4094, { physicalNetwork: "physnet1" }],
  ];
  for (const [type, lo, hi, extra] of cases) {
    it(`${type}: ${lo}..${hi}, one outside either end refused`, () => {
      const v = (id: number): string =>
        verdict("lswitch", network({ networkType: type, segmentationId: id, ...extra }));
      expect(v(lo)).toBe("ok");
      expect(v(hi)).toBe("ok");
      expect(v(hi + 1)).toBe(`segmentationId: ${hi + 1} is outside ${lo}..${hi} for ${type}`);
      expect(v(lo - 1)).toBe(`segmentationId: ${lo - 1} is outside ${lo}..${hi} for ${type}`);
    });
  }

  it("flat has none; a segmentation id must be an integer", () => {
    expect(
      verdict("lswitch", network({ networkType: "flat", physicalNetwork: "p", segmentationId: 1 })),
    ).toBe("segmentationId: a flat network has no segmentation id");
    expect(verdict("lswitch", network({ networkType: "flat", physicalNetwork: "p" }))).toBe("ok");
    expect(verdict("lswitch", network({ segmentationId: 1.5 }))).toMatch(/^segmentationId: /);
  });

  it("a physical network for vlan and flat only", () => {
    expect(verdict("lswitch", network({ networkType: "vlan", segmentationId: 5 }))).toBe(
      "physicalNetwork: is required for a vlan network",
    );
    expect(verdict("lswitch", network({ networkType: "flat" }))).toBe(
      "physicalNetwork: is required for a flat network",
    );
    expect(verdict("lswitch", network({ networkType: "geneve", physicalNetwork: "p" }))).toBe(
      "physicalNetwork: must not be set for a geneve network",
    );
    expect(verdict("lswitch", network({ networkType: "vxlan", physicalNetwork: "p" }))).toBe(
      "physicalNetwork: must not be set for a vxlan network",
    );
  });

  it("MTU 68..9216", () => {
    expect(verdict("lswitch", network({ mtu: 68 }))).toBe("ok");
    expect(verdict("lswitch", network({ mtu: 9216 }))).toBe("ok");
    expect(verdict("lswitch", network({ mtu: 67 }))).toBe("mtu: must be at least 68");
    expect(verdict("lswitch", network({ mtu: 9217 }))).toBe("mtu: must be at most 9216");
  });

  it("defaults: geneve, port security on, admin up, not external", () => {
    expect(parseObject("lswitch", network({}))).toEqual({
      id: "n1",
      tenantId: "t1",
      name: "",
      description: "",
      networkType: "geneve",
      external: false,
      adminStateUp: true,
      portSecurityEnabled: true,
    });
  });
});

describe("subnet gateways", () => {
  it("refuses the network and the broadcast address of an IPv4 subnet, takes the hosts between", () => {
    const g = (ip: string, cidr = "10.0.0.0/24"): string =>
      verdict("subnet", subnet(cidr, { gatewayIp: ip }));
    expect(g("10.0.0.0")).toBe("gatewayIp: 10.0.0.0 is not a host address of 10.0.0.0/24");
    expect(g("10.0.0.255")).toBe("gatewayIp: 10.0.0.255 is not a host address of 10.0.0.0/24");
    expect(g("10.0.0.1")).toBe("ok");
    expect(g("10.0.0.254")).toBe("ok");
    expect(g("10.0.1.1")).toBe("gatewayIp: 10.0.1.1 is not a host address of 10.0.0.0/24");
    expect(g("fd00::1")).toBe("gatewayIp: fd00::1 is not a host address of 10.0.0.0/24");
    expect(g("10.0.0.0", "10.0.0.0/30")).toBe("gatewayIp: 10.0.0.0 is not a host address of 10.0.0.0/30");
    expect(g("10.0.0.3", "10.0.0.0/30")).toBe("gatewayIp: 10.0.0.3 is not a host address of 10.0.0.0/30");
    expect(g("10.0.0.2", "10.0.0.0/30")).toBe("ok");
  });

  it("refuses the subnet-router anycast address of an IPv6 subnet; the last address is a host", () => {
    const g = (ip: string): string => verdict("subnet", subnet("fd00::/64", { gatewayIp: ip }));
    expect(g("fd00::")).toBe("gatewayIp: fd00:: is not a host address of fd00::/64");
    expect(g("fd00::1")).toBe("ok");
    expect(g("fd00::ffff:ffff:ffff:ffff")).toBe("ok");
    expect(g("fd00:0:0:1::")).toBe("gatewayIp: fd00:0:0:1:: is not a host address of fd00::/64");
  });

  it("null means no gateway; canonical forms are stored", () => {
    expect(verdict("subnet", subnet("10.0.0.0/24", { gatewayIp: null }))).toBe("ok");
    const s = parseObject<{ cidr: string; gatewayIp: string }>(
      "subnet",
      subnet("10.0.0.77/24", { gatewayIp: "10.0.0.1" }),
    );
    expect(s.cidr).toBe("10.0.0.0/24");
    const s6 = parseObject<{ cidr: string; gatewayIp: string }>(
      "subnet",
      subnet("FD00:0::5/64", { gatewayIp: "FD00:0:0:0::1" }),
    );
    expect(s6).toMatchObject({ cidr: "fd00::/64", gatewayIp: "fd00::1" });
  });
});

describe("subnet rules", () => {
  it("prefix: IPv4 /30 at most, IPv6 /126 at most", () => {
    expect(verdict("subnet", subnet("10.0.0.0/30"))).toBe("ok");
    expect(verdict("subnet", subnet("10.0.0.0/31"))).toBe(
      "cidr: an IPv4 subnet needs a prefix of /30 or shorter",
    );
    expect(verdict("subnet", subnet("fd00::/126"))).toBe("ok");
    expect(verdict("subnet", subnet("fd00::/127"))).toBe(
      "cidr: an IPv6 subnet needs a prefix of /126 or shorter",
    );
    expect(verdict("subnet", subnet("10.0.0.0"))).toBe("cidr: is not a CIDR (address/prefix)");
  });

  it("ipVersion must agree with the CIDR", () => {
    expect(verdict("subnet", subnet("10.0.0.0/24", { ipVersion: 4 }))).toBe("ok");
    expect(verdict("subnet", subnet("fd00::/64", { ipVersion: 6 }))).toBe("ok");
    expect(verdict("subnet", subnet("10.0.0.0/24", { ipVersion: 6 }))).toBe(
      "ipVersion: is 6 but cidr 10.0.0.0/24 is IPv4",
    );
    expect(verdict("subnet", subnet("fd00::/64", { ipVersion: 4 }))).toBe(
      "ipVersion: is 4 but cidr fd00::/64 is IPv6",
    );
  });

  it("allocation pools: host addresses in order, without the gateway, not overlapping", () => {
    const p = (pools: [string, string][], gatewayIp: string | null = "10.0.0.1"): string =>
      verdict(
        "subnet",
        subnet("10.0.0.0/24", { gatewayIp, allocationPools: pools.map(([start, end]) => ({ start, end })) }),
      );
    expect(p([["10.0.0.2", "10.0.0.254"]])).toBe("ok");
    expect(p([["10.0.0.0", "10.0.0.10"]], null)).toBe(
      "allocationPools[0].start: 10.0.0.0 is not a host address of 10.0.0.0/24",
    );
    expect(p([["10.0.0.2", "10.0.0.255"]])).toBe(
      "allocationPools[0].end: 10.0.0.255 is not a host address of 10.0.0.0/24",
    );
    expect(p([["10.0.0.2", "10.0.1.5"]])).toBe(
      "allocationPools[0].end: 10.0.1.5 is not a host address of 10.0.0.0/24",
    );
    expect(p([["10.0.0.9", "10.0.0.2"]])).toBe("allocationPools[0]: start 10.0.0.9 is after end 10.0.0.2");
    expect(p([["10.0.0.9", "10.0.0.9"]])).toBe("ok");
    expect(p([["10.0.0.1", "10.0.0.9"]])).toBe("allocationPools[0]: contains the gateway 10.0.0.1");
    expect(p([["10.0.0.2", "10.0.0.9"]], "10.0.0.9")).toBe(
      "allocationPools[0]: contains the gateway 10.0.0.9",
    );
    expect(p([["10.0.0.2", "10.0.0.9"]], "10.0.0.10")).toBe("ok");
    expect(
      p([
        ["10.0.0.2", "10.0.0.9"],
        ["10.0.0.9", "10.0.0.20"],
      ]),
    ).toBe("allocationPools[1]: overlaps allocationPools[0]");
    expect(
      p([
        ["10.0.0.20", "10.0.0.30"],
        ["10.0.0.2", "10.0.0.20"],
      ]),
    ).toBe("allocationPools[1]: overlaps allocationPools[0]");
    expect(
      p([
        ["10.0.0.2", "10.0.0.9"],
        ["10.0.0.10", "10.0.0.20"],
        ["10.0.0.21", "10.0.0.21"],
      ]),
    ).toBe("ok");
    expect(
      p([
        ["10.0.0.2", "10.0.0.9"],
        ["10.0.0.30", "10.0.0.40"],
        ["10.0.0.35", "10.0.0.35"],
      ]),
    ).toBe("allocationPools[2]: overlaps allocationPools[1]");
    // pools in any order
    expect(
      p([
        ["10.0.0.20", "10.0.0.30"],
        ["10.0.0.2", "10.0.0.9"],
      ]),
    ).toBe("ok");
    // a pool of the other family is refused (not a host address) and compared with nothing else:
    // not with the gateway, not start with end across families
    expect(p([["fd00::2", "fd00::9"]])).toBe(
      "allocationPools[0].start: fd00::2 is not a host address of 10.0.0.0/24",
    );
    expect(
      issues(
        "subnet",
        subnet("10.0.0.0/24", {
          gatewayIp: "10.0.0.1",
          allocationPools: [{ start: "::1", end: "::ffff:ffff" }],
        }),
      ),
    ).toEqual([
      "allocationPools.0.start: ::1 is not a host address of 10.0.0.0/24",
      "allocationPools.0.end: ::ffff:ffff is not a host address of 10.0.0.0/24",
    ]);
    expect(
      issues("subnet", subnet("10.0.0.0/24", { allocationPools: [{ start: "fd00::1", end: "10.0.0.9" }] })),
    ).toEqual(["allocationPools.0.start: fd00::1 is not a host address of 10.0.0.0/24"]);
  });

  it("an IPv6 pool may end on the last address, and the gateway check follows IPv6", () => {
    const v = (start: string, end: string, gatewayIp = "fd00::1"): string =>
      verdict("subnet", subnet("fd00::/64", { gatewayIp, allocationPools: [{ start, end }] }));
    expect(v("fd00::2", "fd00::ffff:ffff:ffff:ffff")).toBe("ok");
    expect(v("fd00::", "fd00::5", "fd00::9")).toBe(
      "allocationPools[0].start: fd00:: is not a host address of fd00::/64",
    );
    expect(v("fd00::1", "fd00::5")).toBe("allocationPools[0]: contains the gateway fd00::1");
  });

  it("DNS servers: an IPv4 subnet takes IPv4 only", () => {
    expect(verdict("subnet", subnet("10.0.0.0/24", { dnsNameservers: ["8.8.8.8", "1.1.1.1"] }))).toBe("ok");
    expect(verdict("subnet", subnet("10.0.0.0/24", { dnsNameservers: ["8.8.8.8", "2001:4860::8888"] }))).toBe(
      "dnsNameservers[1]: 2001:4860::8888 is not IPv4 like the subnet",
    );
    expect(verdict("subnet", subnet("fd00::/64", { dnsNameservers: ["2001:4860::8888"] }))).toBe("ok");
    // an IPv6 subnet may name IPv4 servers too: DHCPv6 and router advertisements give only the IPv6
    // ones (responder6.ts, ra.ts), a dual-stack host learns the others from the IPv4 subnet
    expect(verdict("subnet", subnet("fd00::/64", { dnsNameservers: ["2001:4860::8888", "8.8.8.8"] }))).toBe(
      "ok",
    );
  });

  it("host routes: destination and next hop of the subnet's family", () => {
    const r = (cidr: string, destination: string, nexthop: string): string =>
      verdict("subnet", subnet(cidr, { hostRoutes: [{ destination, nexthop }] }));
    expect(r("10.0.0.0/24", "0.0.0.0/0", "10.0.0.254")).toBe("ok");
    expect(r("10.0.0.0/24", "0.0.0.0/0", "fd00::1")).toBe("hostRoutes[0]: is not IPv4 like the subnet");
    expect(r("10.0.0.0/24", "::/0", "10.0.0.254")).toBe("hostRoutes[0]: is not IPv4 like the subnet");
    expect(r("fd00::/64", "::/0", "fd00::fe")).toBe("ok");
    expect(r("fd00::/64", "::/0", "10.0.0.1")).toBe("hostRoutes[0]: is not IPv6 like the subnet");
    expect(r("fd00::/64", "10.0.0.0/8", "fd00::fe")).toBe("hostRoutes[0]: is not IPv6 like the subnet");
  });

  it("IPv6 modes: IPv6 only, equal when both set, an address mode with an RA mode, DHCP on, a /64 for EUI-64", () => {
    const s = (cidr: string, extra: Record<string, unknown>): string =>
      verdict("subnet", subnet(cidr, extra));
    expect(s("10.0.0.0/24", { ipv6RaMode: "slaac" })).toBe("ipv6RaMode: is only valid on an IPv6 subnet");
    expect(s("10.0.0.0/24", { ipv6AddressMode: "slaac" })).toBe(
      "ipv6AddressMode: is only valid on an IPv6 subnet",
    );
    expect(s("fd00::/64", { ipv6RaMode: "slaac", ipv6AddressMode: "dhcpv6-stateful" })).toBe(
      "ipv6AddressMode: must equal ipv6RaMode (slaac) when both are set",
    );
    expect(s("fd00::/64", { ipv6RaMode: "dhcpv6-stateless" })).toBe(
      "ipv6AddressMode: is required when ipv6RaMode is set (use dhcpv6-stateless)",
    );
    expect(s("fd00::/64", { ipv6AddressMode: "dhcpv6-stateful", enableDhcp: false })).toBe(
      "enableDhcp: must be true when ipv6RaMode or ipv6AddressMode is set",
    );
    expect(s("fd00::/64", { ipv6RaMode: "slaac", ipv6AddressMode: "slaac", enableDhcp: false })).toBe(
      "enableDhcp: must be true when ipv6RaMode or ipv6AddressMode is set",
    );
    expect(s("fd00::/64", { enableDhcp: false })).toBe("ok");
    expect(s("fd00::/80", { ipv6AddressMode: "slaac" })).toBe(
      "cidr: must be a /64 for slaac (addresses are EUI-64), not /80",
    );
    expect(s("fd00::/56", { ipv6RaMode: "dhcpv6-stateless", ipv6AddressMode: "dhcpv6-stateless" })).toBe(
      "cidr: must be a /64 for dhcpv6-stateless (addresses are EUI-64), not /56",
    );
    expect(s("fd00::/80", { ipv6AddressMode: "dhcpv6-stateful" })).toBe("ok");
    expect(s("fd00::/64", { ipv6RaMode: "slaac", ipv6AddressMode: "slaac" })).toBe("ok");
    expect(s("fd00::/64", { ipv6AddressMode: "dhcpv6-stateless" })).toBe("ok");
    // on an IPv4 subnet the modes are refused once, not again by the IPv6-only rules
    expect(issues("subnet", subnet("10.0.0.0/24", { ipv6RaMode: "slaac", enableDhcp: false }))).toEqual([
      "ipv6RaMode: is only valid on an IPv6 subnet",
    ]);
    expect(issues("subnet", subnet("10.0.0.0/24", { ipv6AddressMode: "dhcpv6-stateless" }))).toEqual([
      "ipv6AddressMode: is only valid on an IPv6 subnet",
    ]);
  });

  it("defaults: DHCP on, no options, servers or routes", () => {
    expect(parseObject("subnet", subnet("10.0.0.0/24"))).toEqual({
      id: "s1",
      tenantId: "t1",
      networkId: "n1",
      name: "",
      description: "",
      cidr: "10.0.0.0/24",
      enableDhcp: true,
      dhcpOptions: {},
      dnsNameservers: [],
      hostRoutes: [],
    });
  });
});

describe("ports", () => {
  it("port security off: no security groups, no allowed address pairs", () => {
    expect(verdict("lport", port({ portSecurityEnabled: false }))).toBe("ok");
    expect(verdict("lport", port({ portSecurityEnabled: false, securityGroups: ["sg1"] }))).toBe(
      "securityGroups: must be empty when portSecurityEnabled is false",
    );
    expect(
      verdict(
        "lport",
        port({ portSecurityEnabled: false, allowedAddressPairs: [{ ipAddress: "10.0.0.5" }] }),
      ),
    ).toBe("allowedAddressPairs: must be empty when portSecurityEnabled is false");
    expect(
      verdict("lport", port({ securityGroups: ["sg1"], allowedAddressPairs: [{ ipAddress: "10.0.0.5" }] })),
    ).toBe("ok");
  });

  it("a fixed IP listed twice is refused; a fixed IP without an address asks the API for one", () => {
    const ips = (...fixedIps: Record<string, unknown>[]): string => verdict("lport", port({ fixedIps }));
    expect(ips({ subnetId: "s1", ipAddress: "10.0.0.5" }, { subnetId: "s1", ipAddress: "10.0.0.6" })).toBe(
      "ok",
    );
    expect(ips({ subnetId: "s1", ipAddress: "10.0.0.5" }, { subnetId: "s2", ipAddress: "10.0.0.5" })).toBe(
      "fixedIps[1].ipAddress: 10.0.0.5 is listed twice",
    );
    expect(ips({ subnetId: "s1", ipAddress: "fd00::5" }, { subnetId: "s1", ipAddress: "FD00:0::5" })).toBe(
      "fixedIps[1].ipAddress: fd00::5 is listed twice",
    );
    expect(ips({ subnetId: "s1" }, { subnetId: "s1" })).toBe("ok");
  });

  it("allowed address pairs: an address or a CIDR, stored canonical", () => {
    const p = parseObject<{ allowedAddressPairs: { ipAddress: string }[] }>(
      "lport",
      port({ allowedAddressPairs: [{ ipAddress: "10.0.0.77/24" }, { ipAddress: "FD00::0:5" }] }),
    );
    expect(p.allowedAddressPairs.map((a) => a.ipAddress)).toEqual(["10.0.0.0/24", "fd00::5"]);
    expect(verdict("lport", port({ allowedAddressPairs: [{ ipAddress: "10.0.0/24" }] }))).toBe(
      "allowedAddressPairs[0].ipAddress: is not an IP address or CIDR",
    );
  });

  it("defaults", () => {
    expect(parseObject("lport", port({}))).toEqual({
      id: "p1",
      tenantId: "t1",
      networkId: "n1",
      name: "",
      description: "",
      deviceOwner: "",
      deviceId: "",
      adminStateUp: true,
      portSecurityEnabled: true,
      allowedAddressPairs: [],
      securityGroups: [],
      extraDhcpOptions: [],
    });
  });
});

describe("security group rules", () => {
  it("a port range needs a protocol with ports (or ICMP's type/code)", () => {
    expect(verdict("secgroup", rule({ portRangeMin: 22 }))).toBe(
      "rules[0].portRangeMin: a port range needs protocol tcp, udp, sctp (or icmp type/code)",
    );
    expect(verdict("secgroup", rule({ protocol: 47, portRangeMax: 22 }))).toBe(
      "rules[0].portRangeMin: a port range needs protocol tcp, udp, sctp (or icmp type/code)",
    );
    for (const protocol of ["tcp", "udp", "sctp", 6, 17, 132])
      expect(verdict("secgroup", rule({ protocol, portRangeMin: 22, portRangeMax: 22 }))).toBe("ok");
    expect(verdict("secgroup", rule({ protocol: 47 }))).toBe("ok");
    expect(verdict("secgroup", rule({ protocol: 256 }))).toMatch(/^rules\[0\]\.protocol: /);
  });

  it("min above max is refused for ports, not for ICMP type/code", () => {
    expect(verdict("secgroup", rule({ protocol: "tcp", portRangeMin: 23, portRangeMax: 22 }))).toBe(
      "rules[0].portRangeMax: 22 is below portRangeMin 23",
    );
    expect(verdict("secgroup", rule({ protocol: "udp", portRangeMin: 22, portRangeMax: 22 }))).toBe("ok");
    expect(verdict("secgroup", rule({ protocol: "icmp", portRangeMin: 8, portRangeMax: 0 }))).toBe("ok");
    expect(verdict("secgroup", rule({ protocol: "tcp", portRangeMin: 0, portRangeMax: 65535 }))).toBe("ok");
    expect(verdict("secgroup", rule({ protocol: "tcp", portRangeMax: 65536 }))).toMatch(
      /^rules\[0\]\.portRangeMax: /,
    );
  });

  it("ICMP type and code are 0..255", () => {
    for (const protocol of ["icmp", 1]) {
      expect(verdict("secgroup", rule({ protocol, portRangeMin: 255, portRangeMax: 255 }))).toBe("ok");
      expect(verdict("secgroup", rule({ protocol, portRangeMin: 256 }))).toBe(
        "rules[0].portRangeMin: ICMP type must be 0..255",
      );
      expect(verdict("secgroup", rule({ protocol, portRangeMin: 3, portRangeMax: 256 }))).toBe(
        "rules[0].portRangeMax: ICMP code must be 0..255",
      );
    }
    expect(verdict("secgroup", rule({ ethertype: "IPv6", protocol: "icmpv6", portRangeMin: 256 }))).toBe(
      "rules[0].portRangeMin: ICMP type must be 0..255",
    );
    expect(verdict("secgroup", rule({ protocol: "tcp", portRangeMin: 256, portRangeMax: 300 }))).toBe("ok");
  });

  it("ICMP by family, remote prefix by ethertype, a remote prefix or a group", () => {
    expect(verdict("secgroup", rule({ ethertype: "IPv6", protocol: "icmp" }))).toBe(
      "rules[0].protocol: use icmpv6 with ethertype IPv6",
    );
    expect(verdict("secgroup", rule({ protocol: "icmpv6" }))).toBe(
      "rules[0].protocol: icmpv6 needs ethertype IPv6",
    );
    expect(verdict("secgroup", rule({ ethertype: "IPv6", protocol: "icmpv6" }))).toBe("ok");
    expect(verdict("secgroup", rule({ remoteIpPrefix: "fd00::/64" }))).toBe(
      "rules[0].remoteIpPrefix: fd00::/64 does not match ethertype IPv4",
    );
    expect(verdict("secgroup", rule({ ethertype: "IPv6", remoteIpPrefix: "10.0.0.0/8" }))).toBe(
      "rules[0].remoteIpPrefix: 10.0.0.0/8 does not match ethertype IPv6",
    );
    expect(verdict("secgroup", rule({ ethertype: "IPv6", remoteIpPrefix: "fd00::/64" }))).toBe("ok");
    expect(verdict("secgroup", rule({ remoteIpPrefix: "10.0.0.0/8", remoteGroupId: "g2" }))).toBe(
      "rules[0].remoteGroupId: set remoteIpPrefix or remoteGroupId, not both",
    );
    expect(verdict("secgroup", rule({ remoteGroupId: "g2" }))).toBe("ok");
  });

  it("rule ids are unique in a group", () => {
    const g = {
      id: "sg1",
      tenantId: "t1",
      rules: [
        { id: "a", direction: "ingress" },
        { id: "b", direction: "egress" },
        { id: "a", direction: "egress" },
      ],
    };
    expect(verdict("secgroup", g)).toBe("rules[2].id: rule id a is used twice");
    expect(verdict("secgroup", { ...g, rules: g.rules.slice(0, 2) })).toBe("ok");
  });
});

describe("ids, names and chassis", () => {
  it("ids: 1..128 characters, a letter or digit first", () => {
    const msg = "id: must be 1-128 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or digit";
    expect(verdict("tenant", { id: "a" })).toBe("ok");
    expect(verdict("tenant", { id: "9a._:@-Z" })).toBe("ok");
    expect(verdict("tenant", { id: "a".repeat(128) })).toBe("ok");
    expect(verdict("tenant", { id: "a".repeat(129) })).toBe(msg);
    expect(verdict("tenant", { id: "" })).toBe(msg);
    expect(verdict("tenant", { id: "-a" })).toBe(msg);
    expect(verdict("tenant", { id: "a/b" })).toBe(msg);
    expect(verdict("tenant", { id: "a b" })).toBe(msg);
  });

  it("names up to 255 characters, descriptions up to 1024", () => {
    expect(verdict("tenant", { id: "a", name: "n".repeat(255), description: "d".repeat(1024) })).toBe("ok");
    expect(verdict("tenant", { id: "a", name: "n".repeat(256) })).toMatch(/^name: /);
    expect(verdict("tenant", { id: "a", description: "d".repeat(1025) })).toMatch(/^description: /);
  });

  it("a chassis needs a tunnel IP, knows geneve and vxlan, takes a heartbeat in ms", () => {
    expect(parseObject("chassis", { name: "h1", tunnelIps: ["192.0.2.1"] })).toEqual({
      name: "h1",
      hostname: "",
      tunnelIps: ["192.0.2.1"],
      encapTypes: ["geneve", "vxlan"],
      bridgeMappings: {},
      capabilities: {},
    });
    expect(verdict("chassis", { name: "h1", tunnelIps: [] })).toBe("tunnelIps: needs at least one tunnel IP");
    expect(verdict("chassis", { name: "h1" })).toBe("tunnelIps: is required");
    expect(verdict("chassis", { name: "h1", tunnelIps: ["192.0.2.1"], encapTypes: ["gre"] })).toMatch(
      /^encapTypes\[0\]: /,
    );
    expect(verdict("chassis", { name: "h1", tunnelIps: ["192.0.2.1"], encapTypes: [] })).toMatch(
      /^encapTypes: /,
    );
    expect(verdict("chassis", { name: "h1", tunnelIps: ["192.0.2.1"], heartbeat: -1 })).toMatch(
      /^heartbeat: /,
    );
    expect(verdict("chassis", { name: "h1", tunnelIps: ["192.0.2.1"], heartbeat: 0 })).toBe("ok");
  });

  it("a field the kind does not have is named, nested too", () => {
    expect(verdict("tenant", { id: "a", colour: "red" })).toBe("colour: is not a field of this object");
    expect(verdict("lport", port({ fixedIps: [{ subnetId: "s1", mac: "x" }] }))).toBe(
      "fixedIps[0].mac: is not a field of this object",
    );
  });

  it("the error names the key from the object when none is given", () => {
    const e = (() => {
      try {
        parseObject("chassis", { name: "h7", tunnelIps: [] });
      } catch (err) {
        return err as ValidationError;
      }
    })();
    expect(e).toMatchObject({ kind: "chassis", key: "h7", field: "tunnelIps" });
    expect(e!.message).toBe("chassis h7: tunnelIps: needs at least one tunnel IP");
    expect(() => parseObject("tenant", [])).toThrow("tenant (new): (object): must be an object");
    expect(() => parseObject("tenant", null)).toThrow("tenant (new): (object): must be an object");
    expect(() => parseObject("tenant", { id: 5 })).toThrow(/^tenant \(new\): id: /);
  });

  it("kinds by noun and store name; keys by the kind's key field", () => {
    expect(kindByNoun("router")).toBe("lrouter");
    expect(kindByNoun("lrouter")).toBe("lrouter");
    expect(kindByNoun("switch")).toBeUndefined();
    expect(isObjectKind("fip")).toBe(true);
    expect(isObjectKind("toString")).toBe(false);
    expect(keyOf("chassis", { name: "h1", id: "x" })).toBe("h1");
    expect(keyOf("lport", { id: "p9" })).toBe("p9");
    expect(keyOf("lport", { id: 9 })).toBe("");
  });

  it("errors carry their fields as context, for logs and the CLI's JSON", () => {
    expect(new ValidationError("lport", "p1", "macAddress", "bad").context).toEqual({
      kind: "lport",
      key: "p1",
      field: "macAddress",
      reason: "bad",
    });
    expect(new NotFoundError("lport", "p1").context).toEqual({ kind: "lport", key: "p1" });
    expect(new MalformedObjectError("lport", "p1", "not JSON", 3).context).toEqual({
      kind: "lport",
      key: "p1",
      reason: "not JSON",
      version: 3,
    });
  });

  it("the other errors say what they are about", () => {
    expect(new NotFoundError("lport", "p1")).toMatchObject({
      code: "NOT_FOUND",
      message: "lport p1 does not exist",
    });
    expect(new MalformedObjectError("lport", "p1", "not JSON", 3)).toMatchObject({
      code: "MALFORMED",
      message: "lport p1: the stored value is malformed: not JSON",
      version: 3,
    });
    expect(new ValidationError("lport", "", "", "must be an object").message).toBe(
      "lport (new): (object): must be an object",
    );
  });
});

describe("IP and CIDR arithmetic at the edges", () => {
  it("overlap of a single-address CIDR, at either end of a block and in either order", () => {
    expect(cidrsOverlap("10.0.0.0/24", "10.0.0.0/32")).toBe(true);
    expect(cidrsOverlap("10.0.0.0/32", "10.0.0.0/24")).toBe(true);
    expect(cidrsOverlap("10.0.0.0/24", "10.0.0.255/32")).toBe(true);
    expect(cidrsOverlap("10.0.0.255/32", "10.0.0.0/24")).toBe(true);
    expect(cidrsOverlap("10.0.0.5/32", "10.0.0.5/32")).toBe(true);
    expect(cidrsOverlap("10.0.0.5/32", "10.0.0.6/32")).toBe(false);
    expect(cidrsOverlap("10.0.1.0/32", "10.0.0.0/24")).toBe(false);
    expect(cidrsOverlap("10.0.0.0/24", "9.255.255.255/32")).toBe(false);
    expect(cidrsOverlap("fd00::/64", "fd00::ffff:ffff:ffff:ffff/128")).toBe(true);
    expect(cidrsOverlap("fd00::/128", "fd00::/64")).toBe(true);
    expect(cidrsOverlap("fd00:0:0:1::/128", "fd00::/64")).toBe(false);
    expect(cidrsOverlap("0.0.0.0/0", "::/128")).toBe(false);
  });

  it("parses a CIDR into its block", () => {
    expect(parseCidr("10.0.0.77/24")).toEqual({
      version: 4,
      addr: ipToBig("10.0.0.77"),
      prefix: 24,
      first: ipToBig("10.0.0.0"),
      last: ipToBig("10.0.0.255"),
    });
    expect(parseCidr("10.0.0.7/32")).toMatchObject({ first: ipToBig("10.0.0.7"), last: ipToBig("10.0.0.7") });
    expect(parseCidr("0.0.0.0/0")).toMatchObject({ first: 0n, last: 0xffffffffn });
    expect(parseCidr("fd00::1/127")).toMatchObject({
      version: 6,
      first: ipToBig("fd00::"),
      last: ipToBig("fd00::1"),
    });
    expect(canonicalCidr("FD00::1:2/112")).toBe("fd00::1:0/112");
    expect(isNetworkCidr("10.0.0.0/24")).toBe(true);
    expect(isNetworkCidr("10.0.0.1/24")).toBe(false);
  });

  it("host ranges: IPv4 without network and broadcast except /31 and /32; IPv6 without the anycast", () => {
    const r = (c: string, v: 4 | 6): string[] => {
      const h = hostRange(c);
      return [bigToIp(h.first, v), bigToIp(h.last, v)];
    };
    expect(r("10.0.0.0/24", 4)).toEqual(["10.0.0.1", "10.0.0.254"]);
    expect(r("10.0.0.0/30", 4)).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(r("10.0.0.0/31", 4)).toEqual(["10.0.0.0", "10.0.0.1"]);
    expect(r("10.0.0.4/32", 4)).toEqual(["10.0.0.4", "10.0.0.4"]);
    expect(r("fd00::/64", 6)).toEqual(["fd00::1", "fd00::ffff:ffff:ffff:ffff"]);
    expect(r("fd00::/126", 6)).toEqual(["fd00::1", "fd00::3"]);
    expect(r("fd00::/127", 6)).toEqual(["fd00::", "fd00::1"]);
    expect(r("fd00::/128", 6)).toEqual(["fd00::", "fd00::"]);
  });

  it("containment needs the same family and the block's bounds", () => {
    expect(cidrContains("10.0.0.0/24", "10.0.0.0")).toBe(true);
    expect(cidrContains("10.0.0.0/24", "10.0.0.255")).toBe(true);
    expect(cidrContains("10.0.0.0/24", "10.0.1.0")).toBe(false);
    expect(cidrContains("10.0.0.0/24", "9.255.255.255")).toBe(false);
    expect(cidrContains("::/0", "10.0.0.1")).toBe(false);
    expect(cidrContains(parseCidr("fd00::/64"), "fd00::1")).toBe(true);
  });

  it("strict parsing and canonical text", () => {
    expect(isIp("1.2.3.4")).toBe(true);
    expect(isIp("1.2.3")).toBe(false);
    expect(isIp("01.2.3.4")).toBe(false);
    expect(isIp("::ffff:1.2.3.4")).toBe(true);
    expect(isIp("fe80::1%2")).toBe(false);
    expect(isIp("abc")).toBe(false);
    expect(isIp("12345")).toBe(false);
    expect(isCidr("10.0.0.0/0")).toBe(true);
    expect(isCidr("10.0.0.0/32")).toBe(true);
    expect(isCidr("10.0.0.0/")).toBe(false);
    expect(isCidr("10.0.0.0/1a")).toBe(false);
    expect(isCidr("10.0.0.0/0032")).toBe(false);
    expect(isCidr("fd00::/128")).toBe(true);
    expect(isCidr("fd00::/129")).toBe(false);
    expect(isCidr("x/24")).toBe(false);
    expect(ipVersion("10.0.0.1")).toBe(4);
    expect(ipVersion("::1")).toBe(6);
    expect(canonicalIp("2001:0DB8:0000:0000:0000:0000:0000:0001")).toBe("2001:db8::1");
    expect(canonicalIp("10.0.0.1")).toBe("10.0.0.1");
    expect(bigToIp(0n, 4)).toBe("0.0.0.0");
    expect(bigToIp(0xffffffffn, 4)).toBe("255.255.255.255");
    expect(bigToIp(1n, 6)).toBe("::1");
    expect(bigToIp(0xffffffffn, 6)).toBe("::ffff:ffff");
    expect(ipToBig("::1")).toBe(1n);
    expect(ipToBig("255.0.0.1")).toBe(0xff000001n);
  });
});
