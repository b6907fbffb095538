/**
 * src/apps/ipv6 at its edges, beyond ipv6-ra.test.ts: raConfig's RFC 4861
 * §6.2.1 ranges at both ends of each (the last value accepted and the first
 * refused, with the whole message and the offending value in the error), a
 * prefix the RA cannot carry, an MTU of exactly 1280, more DNS servers than
 * one RDNSS option holds, the solicitor's MAC compared without regard to
 * case, every field of a VLAN tag kept on the answer, and the punt matches.
 */
import { describe, expect, it } from "vitest";
import { DHCP6_CLIENT_MATCH, ROUTER_SOLICITATION_MATCH } from "../../src/apps/ipv6/match.js";
import {
  advertisedSubnets,
  decideRa,
  handleRouterSolicitation,
  planRa,
  type RaInterface,
  raConfig,
} from "../../src/apps/ipv6/ra.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import { buildFrame, ndpToIcmpv6, parseEthernet } from "../../src/packet/index.js";
import { UsageError } from "../../src/util/errors.js";

const ROUTER_MAC = "fa:16:3e:aa:00:01";
const VM_MAC = "fa:16:3e:00:00:05";
const VM_LL = "fe80::f816:3eff:fe00:5";

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
    dnsNameservers: ["2001:db8::53"],
    hostRoutes: [],
    ipv6RaMode: "slaac",
    ipv6AddressMode: "slaac",
    ...over,
  } as Subnet;
}

const network = { id: "net1", mtu: 1442 } as Network;

function iface(over: Partial<RaInterface> = {}): RaInterface {
  return { macAddress: ROUTER_MAC, subnets: [subnet()], network, ...over };
}

function raOf(frame: Buffer) {
  const f = parseEthernet(frame);
  const ndp = f.icmpv6?.ndp;
  if (ndp?.kind !== "router-advertisement") throw new Error("not an RA");
  return { f, ndp };
}

describe("raConfig at both ends of each range", () => {
  it("accepts the last value in range", () => {
    expect(raConfig({ maxRtrAdvInterval: 100, minRtrAdvInterval: 75 }).minRtrAdvInterval).toBe(75);
    expect(raConfig({ maxRtrAdvInterval: 100, advDefaultLifetime: 100 }).advDefaultLifetime).toBe(100);
    expect(raConfig({ advDefaultLifetime: 9000 }).advDefaultLifetime).toBe(9000);
    expect(raConfig({ advCurHopLimit: 255 }).advCurHopLimit).toBe(255);
    expect(raConfig({ advCurHopLimit: 0 }).advCurHopLimit).toBe(0);
    expect(raConfig({ advReachableTime: 3_600_000 }).advReachableTime).toBe(3_600_000);
    expect(raConfig({ advRetransTimer: 0xffffffff }).advRetransTimer).toBe(0xffffffff);
    expect(raConfig({ advValidLifetime: 0xffffffff, advPreferredLifetime: 0xffffffff })).toMatchObject({
      advValidLifetime: 0xffffffff,
      advPreferredLifetime: 0xffffffff,
    });
    expect(raConfig({ dnsLifetime: 0 }).dnsLifetime).toBe(0);
    expect(raConfig({ dnsLifetime: 0xffffffff }).dnsLifetime).toBe(0xffffffff);
    expect(raConfig({ routerPreference: "low" }).routerPreference).toBe("low");
    expect(raConfig({ routerPreference: "high" }).routerPreference).toBe("high");
  });

  it("refuses the first value out of range, with the field, the whole reason and the value given", () => {
    const bad: [Parameters<typeof raConfig>[0], string, string, unknown][] = [
      [{ maxRtrAdvInterval: Number.NaN }, "maxRtrAdvInterval", "must be 4 to 1800 seconds", Number.NaN],
      [{ maxRtrAdvInterval: Infinity }, "maxRtrAdvInterval", "must be 4 to 1800 seconds", Infinity],
      [
        { maxRtrAdvInterval: 100, minRtrAdvInterval: 75.5 },
        "minRtrAdvInterval",
        "must be 3 to 75 seconds (0.75 × maxRtrAdvInterval)",
        75.5,
      ],
      [
        { minRtrAdvInterval: Number.NaN },
        "minRtrAdvInterval",
        "must be 3 to 450 seconds (0.75 × maxRtrAdvInterval)",
        Number.NaN,
      ],
      [
        { maxRtrAdvInterval: 100, advDefaultLifetime: 1 },
        "advDefaultLifetime",
        "must be 0 or 100 to 9000 seconds",
        1,
      ],
      [{ advDefaultLifetime: 1800.5 }, "advDefaultLifetime", "must be 0 or 600 to 9000 seconds", 1800.5],
      [{ advCurHopLimit: -1 }, "advCurHopLimit", "must be 0 to 255", -1],
      [{ advCurHopLimit: 1.5 }, "advCurHopLimit", "must be 0 to 255", 1.5],
      [{ advReachableTime: -1 }, "advReachableTime", "must be 0 to 3600000 ms", -1],
      [{ advReachableTime: 0.5 }, "advReachableTime", "must be 0 to 3600000 ms", 0.5],
      [{ advRetransTimer: 0x100000000 }, "advRetransTimer", "must be a 32-bit count of ms", 0x100000000],
      [{ advRetransTimer: -1 }, "advRetransTimer", "must be a 32-bit count of ms", -1],
      [
        { advValidLifetime: 0x100000000 },
        "advValidLifetime",
        "must be a 32-bit count of seconds",
        0x100000000,
      ],
      [{ advValidLifetime: 1.5 }, "advValidLifetime", "must be a 32-bit count of seconds", 1.5],
      [
        { advPreferredLifetime: -1 },
        "advPreferredLifetime",
        "must be a 32-bit count of seconds, at most advValidLifetime",
        -1,
      ],
      [
        { advValidLifetime: 100, advPreferredLifetime: 101 },
        "advPreferredLifetime",
        "must be a 32-bit count of seconds, at most advValidLifetime",
        101,
      ],
      [{ dnsLifetime: -1 }, "dnsLifetime", "must be a 32-bit count of seconds", -1],
      [{ dnsLifetime: 0x100000000 }, "dnsLifetime", "must be a 32-bit count of seconds", 0x100000000],
      [{ routerPreference: "" as never }, "routerPreference", "must be high, medium or low", ""],
    ];
    for (const [over, field, why, value] of bad) {
      let err: unknown;
      try {
        raConfig(over);
      } catch (e) {
        err = e;
      }
      expect(err, `${field} ${String(value)}`).toBeInstanceOf(UsageError);
      expect((err as UsageError).message).toBe(`ra config: ${field} ${why}`);
      expect((err as UsageError).context).toEqual({ field, value });
    }
  });
});

describe("RA content at the edges", () => {
  it("a subnet whose prefix is not an IPv6 CIDR is not advertised", () => {
    const odd = [
      subnet({ id: "long", cidr: "2001:db8:2::/129" }),
      subnet({ id: "v4", cidr: "10.0.0.0/24" }),
      subnet({ id: "noprefix", cidr: "2001:db8:3::" }),
      subnet({ id: "junk", cidr: "x2001:db8:4::/64" }),
      subnet({ id: "tail", cidr: "2001:db8:5::/64x" }),
    ];
    expect(advertisedSubnets(odd)).toEqual([]);
    expect(planRa(iface({ subnets: odd }))).toBeUndefined();
    const whole = subnet({ id: "host", cidr: "2001:db8:6::1/128" });
    expect(advertisedSubnets([...odd, whole]).map((s) => s.id)).toEqual(["host"]);
    expect(planRa(iface({ subnets: [whole] }))?.prefixes).toMatchObject([
      { prefix: "2001:db8:6::1", prefixLength: 128 },
    ]);
  });

  it("an MTU of exactly 1280 is advertised", () => {
    const d = decideRa(iface({ network: { ...network, mtu: 1280 } }));
    if (d.kind !== "send") throw new Error(d.reason);
    expect(raOf(d.frame).ndp.options).toContainEqual({ kind: "mtu", mtu: 1280 });
  });

  it("at most 127 DNS servers, as many as one RDNSS option holds", () => {
    const servers = Array.from({ length: 130 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
    const d = decideRa(iface({ subnets: [subnet({ dnsNameservers: servers })] }));
    if (d.kind !== "send") throw new Error(d.reason);
    const rdnss = raOf(d.frame).ndp.options.find((o) => o.kind === "rdnss");
    expect(rdnss).toEqual({ kind: "rdnss", lifetime: 1800, servers: servers.slice(0, 127) });
  });

  it("without a domain, no DNSSL option", () => {
    const d = decideRa(iface({ domain: "" }));
    if (d.kind !== "send") throw new Error(d.reason);
    expect(raOf(d.frame).ndp.options.map((o) => o.kind)).not.toContain("dnssl");
  });
});

describe("answering router solicitations at the edges", () => {
  const port = {
    id: "p1",
    networkId: "net1",
    macAddress: VM_MAC.toUpperCase(),
    fixedIps: [],
    adminStateUp: true,
    extraDhcpOptions: [],
  } as unknown as Port;
  const rs = (vlans: { vid: number; pcp?: number; dei?: boolean; tpid?: number }[] = []) =>
    buildFrame({
      eth: { src: VM_MAC, dst: "33:33:00:00:00:02" },
      vlans,
      ipv6: { src: VM_LL, dst: "ff02::2", hopLimit: 255 },
      icmpv6: ndpToIcmpv6({ kind: "router-solicitation", options: [{ kind: "source-ll", mac: VM_MAC }] }),
    });

  it("a port whose NB MAC is in capitals is the solicitor still", () => {
    const d = handleRouterSolicitation(rs(), { ...iface(), port });
    expect(d).toMatchObject({ kind: "send", to: { mac: VM_MAC, ip: VM_LL } });
  });

  it("a solicitation from :: with an option other than the source link-layer address is answered", () => {
    const frame = buildFrame({
      eth: { src: VM_MAC, dst: "33:33:00:00:00:02" },
      ipv6: { src: "::", dst: "ff02::2", hopLimit: 255 },
      icmpv6: ndpToIcmpv6({ kind: "router-solicitation", options: [{ kind: "mtu", mtu: 1500 }] }),
    });
    expect(handleRouterSolicitation(frame, { ...iface(), port })).toMatchObject({
      kind: "send",
      to: { mac: "33:33:00:00:00:01", ip: "ff02::1" },
    });
  });

  it("keeps the tags' priority, DEI and TPID on the answer", () => {
    const d = handleRouterSolicitation(
      rs([
        { vid: 10, pcp: 5, dei: true, tpid: 0x88a8 },
        { vid: 20, pcp: 3 },
      ]),
      {
        ...iface(),
        port,
      },
    );
    if (d.kind !== "send") throw new Error(d.reason);
    expect(raOf(d.frame).f.vlans).toEqual([
      { vid: 10, pcp: 5, dei: true, tpid: 0x88a8 },
      { vid: 20, pcp: 3, dei: false, tpid: 0x8100 },
    ]);
  });
});

describe("the punt matches", () => {
  it("router solicitations: ICMPv6 type 133 code 0; DHCPv6: UDP 546 → 547, prerequisites first", () => {
    expect(ROUTER_SOLICITATION_MATCH).toEqual([
      { field: "eth_type", value: 0x86dd },
      { field: "nw_proto", value: 58 },
      { field: "icmpv6_type", value: 133 },
      { field: "icmpv6_code", value: 0 },
    ]);
    expect(DHCP6_CLIENT_MATCH).toEqual([
      { field: "eth_type", value: 0x86dd },
      { field: "nw_proto", value: 17 },
      { field: "udp_src", value: 546 },
      { field: "udp_dst", value: 547 },
    ]);
  });
});
