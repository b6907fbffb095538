/**
 * Router advertisement decisions and the RA scheduler, checked by decoding
 * the frames with the packet library: flags and prefix flags per subnet
 * mode (alone and mixed), MTU, RDNSS/DNSSL, router lifetime and the
 * link-local source; answers to router solicitations (unicast, from "::",
 * VLAN tags) and every reason to stay silent; the config's RFC 4861 ranges;
 * the scheduler's initial pace, intervals, solicited delays and rate limit.
 */
import { describe, expect, it } from "vitest";
import {
  advertisedSubnets,
  decideRa,
  handleRouterSolicitation,
  planRa,
  type RaDecision,
  type RaInterface,
  raConfig,
  type RsContext,
} from "../../src/apps/ipv6/ra.js";
import {
  MAX_INITIAL_RTR_ADVERT_INTERVAL_MS,
  MAX_RA_DELAY_TIME_MS,
  MIN_DELAY_BETWEEN_RAS_MS,
  RaScheduler,
} from "../../src/apps/ipv6/schedule.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import {
  buildFrame,
  type Frame,
  type Ndp,
  type NdpOption,
  ndpToIcmpv6,
  parseEthernet,
} from "../../src/packet/index.js";
import { UsageError } from "../../src/util/errors.js";

const ROUTER_MAC = "fa:16:3e:aa:00:01";
const ROUTER_LL = "fe80::f816:3eff:feaa:1";
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
    dnsNameservers: ["2001:db8::53", "10.0.0.53"],
    hostRoutes: [],
    ipv6RaMode: "slaac",
    ipv6AddressMode: "slaac",
    ...over,
  } as Subnet;
}

const network = { id: "net1", mtu: 1442 } as Network;
const port = {
  id: "p1",
  networkId: "net1",
  macAddress: VM_MAC,
  fixedIps: [],
  adminStateUp: true,
  extraDhcpOptions: [],
} as unknown as Port;

function iface(over: Partial<RaInterface> = {}): RaInterface {
  return { macAddress: ROUTER_MAC, subnets: [subnet()], network, ...over };
}

function ra(d: RaDecision): { f: Frame; ndp: Extract<Ndp, { kind: "router-advertisement" }> } {
  if (d.kind !== "send") throw new Error(`expected an RA, got: ${d.reason}`);
  const f = parseEthernet(d.frame);
  const ndp = f.icmpv6?.ndp;
  if (ndp?.kind !== "router-advertisement") throw new Error("not an RA");
  return { f, ndp };
}

const opt = <K extends NdpOption["kind"]>(n: { options: NdpOption[] }, kind: K) =>
  n.options.filter((o): o is Extract<NdpOption, { kind: K }> => o.kind === kind);

function rs(
  over: {
    src?: string;
    dst?: string;
    ethSrc?: string;
    hopLimit?: number;
    slla?: boolean;
    code?: number;
    checksum?: number;
    vlan?: number;
  } = {},
): Buffer {
  const ethSrc = over.ethSrc ?? VM_MAC;
  const msg = ndpToIcmpv6({
    kind: "router-solicitation",
    options: over.slla === false ? [] : [{ kind: "source-ll", mac: ethSrc }],
  });
  return buildFrame({
    eth: { src: ethSrc, dst: "33:33:00:00:00:02" },
    vlans: over.vlan !== undefined ? [{ vid: over.vlan }] : [],
    ipv6: { src: over.src ?? VM_LL, dst: over.dst ?? "ff02::2", hopLimit: over.hopLimit ?? 255 },
    icmpv6: {
      ...msg,
      code: over.code ?? 0,
      ...(over.checksum !== undefined ? { checksum: over.checksum } : {}),
    },
  });
}

const rsCtx = (over: Partial<RsContext> = {}): RsContext => ({ ...iface(), port, ...over });

describe("RA content per subnet mode", () => {
  it("slaac: no M/O, prefix on-link and autonomous, MTU, RDNSS with the IPv6 servers, from the EUI-64 link-local", () => {
    const { f, ndp } = ra(decideRa(iface()));
    expect(f.eth).toMatchObject({ src: ROUTER_MAC, dst: "33:33:00:00:00:01" });
    expect(f.ipv6).toMatchObject({ src: ROUTER_LL, dst: "ff02::1", hopLimit: 255 });
    expect(f.icmpv6?.checksumValid).toBe(true);
    expect(ndp).toMatchObject({
      curHopLimit: 64,
      managed: false,
      other: false,
      otherFlags: 0,
      routerLifetime: 1800,
      reachableTime: 0,
      retransTimer: 0,
    });
    expect(ndp.options).toEqual([
      { kind: "source-ll", mac: ROUTER_MAC },
      { kind: "mtu", mtu: 1442 },
      {
        kind: "prefix-info",
        prefix: "2001:db8:1::",
        prefixLength: 64,
        onLink: true,
        autonomous: true,
        validLifetime: 2592000,
        preferredLifetime: 604800,
      },
      { kind: "rdnss", lifetime: 1800, servers: ["2001:db8::53"] },
    ]);
  });

  it("dhcpv6-stateful: M set, O clear, prefix not autonomous", () => {
    const { ndp } = ra(decideRa(iface({ subnets: [subnet({ ipv6RaMode: "dhcpv6-stateful" })] })));
    expect(ndp).toMatchObject({ managed: true, other: false });
    expect(opt(ndp, "prefix-info")).toMatchObject([{ onLink: true, autonomous: false }]);
  });

  it("dhcpv6-stateless: O set, M clear, prefix autonomous", () => {
    const { ndp } = ra(decideRa(iface({ subnets: [subnet({ ipv6RaMode: "dhcpv6-stateless" })] })));
    expect(ndp).toMatchObject({ managed: false, other: true });
    expect(opt(ndp, "prefix-info")).toMatchObject([{ onLink: true, autonomous: true }]);
  });

  it("several subnets: one prefix each, flags OR-ed, DNS servers merged without repeats", () => {
    const subnets = [
      subnet({
        id: "a",
        cidr: "2001:db8:a::/64",
        ipv6RaMode: "dhcpv6-stateful",
        dnsNameservers: ["2001:db8::53"],
      }),
      subnet({
        id: "b",
        cidr: "2001:db8:b::/64",
        ipv6RaMode: "dhcpv6-stateless",
        dnsNameservers: ["2001:db8::53", "2001:db8::54"],
      }),
      subnet({
        id: "c",
        cidr: "10.0.0.0/24",
        ipVersion: 4,
        ipv6RaMode: undefined,
        ipv6AddressMode: undefined,
      }),
      subnet({ id: "d", cidr: "2001:db8:d::/64", ipv6RaMode: undefined, ipv6AddressMode: "dhcpv6-stateful" }),
    ];
    expect(advertisedSubnets(subnets).map((s) => s.id)).toEqual(["a", "b"]);
    const { ndp } = ra(decideRa(iface({ subnets })));
    expect(ndp).toMatchObject({ managed: true, other: true });
    expect(opt(ndp, "prefix-info").map((p) => [p.prefix, p.autonomous])).toEqual([
      ["2001:db8:a::", false],
      ["2001:db8:b::", true],
    ]);
    expect(opt(ndp, "rdnss")).toEqual([
      { kind: "rdnss", lifetime: 1800, servers: ["2001:db8::53", "2001:db8::54"] },
    ]);
  });

  it("leaves out RDNSS without IPv6 servers and MTU below 1280; DNSSL with a domain", () => {
    const { ndp } = ra(
      decideRa(
        iface({
          subnets: [subnet({ dnsNameservers: ["10.0.0.53"] })],
          network: { ...network, mtu: 1200 },
          domain: "flowdrake.test",
        }),
      ),
    );
    expect(ndp.options.map((o) => o.kind)).toEqual(["source-ll", "prefix-info", "dnssl"]);
    expect(opt(ndp, "dnssl")).toEqual([{ kind: "dnssl", lifetime: 1800, domains: ["flowdrake.test"] }]);
  });

  it("a config changes lifetimes, hop limit, timers and preference", () => {
    const config = raConfig({
      maxRtrAdvInterval: 100,
      advCurHopLimit: 32,
      advReachableTime: 30000,
      advRetransTimer: 1000,
      advValidLifetime: 86400,
      advPreferredLifetime: 14400,
      routerPreference: "high",
      dnsLifetime: 500,
    });
    expect(config).toMatchObject({ minRtrAdvInterval: 33, advDefaultLifetime: 300 });
    const { ndp } = ra(decideRa(iface({ config })));
    expect(ndp).toMatchObject({
      curHopLimit: 32,
      routerLifetime: 300,
      reachableTime: 30000,
      retransTimer: 1000,
      otherFlags: 0b01000,
    });
    expect(opt(ndp, "prefix-info")).toMatchObject([{ validLifetime: 86400, preferredLifetime: 14400 }]);
    expect(opt(ndp, "rdnss")).toMatchObject([{ lifetime: 500 }]);
    const zero = ra(decideRa(iface({ config: raConfig({ advDefaultLifetime: 0 }) })));
    expect(zero.ndp.routerLifetime).toBe(0);
  });

  it("nothing to advertise, or content that cannot be built, is an ignore with the reason", () => {
    expect(decideRa(iface({ subnets: [subnet({ ipv6RaMode: undefined })] }))).toEqual({
      kind: "ignore",
      reason: "no IPv6 subnet in an RA mode on this router leg",
    });
    expect(planRa(iface({ subnets: [] }))).toBeUndefined();
    expect(decideRa(iface({ domain: "not a domain" }))).toMatchObject({
      kind: "ignore",
      reason: /cannot build the RA/,
    });
  });

  it("a periodic RA can be addressed (decideRa's `to`) and tagged", () => {
    const d = decideRa(iface(), { mac: VM_MAC, ip: VM_LL }, [{ vid: 7, pcp: 0, dei: false, tpid: 0x8100 }]);
    const { f } = ra(d);
    expect(f.eth.dst).toBe(VM_MAC);
    expect(f.ipv6?.dst).toBe(VM_LL);
    expect(f.vlans.map((v) => v.vid)).toEqual([7]);
  });
});

describe("raConfig: RFC 4861 §6.2.1 ranges", () => {
  it("defaults", () => {
    expect(raConfig()).toEqual({
      maxRtrAdvInterval: 600,
      minRtrAdvInterval: 198,
      advDefaultLifetime: 1800,
      advCurHopLimit: 64,
      advReachableTime: 0,
      advRetransTimer: 0,
      advValidLifetime: 2592000,
      advPreferredLifetime: 604800,
      dnsLifetime: 1800,
      routerPreference: "medium",
    });
    expect(raConfig({ maxRtrAdvInterval: 4 })).toMatchObject({
      minRtrAdvInterval: 3,
      advDefaultLifetime: 12,
    });
    expect(raConfig({ maxRtrAdvInterval: 1800 })).toMatchObject({ advDefaultLifetime: 5400 });
  });

  it("rejects out-of-range values with a UsageError naming the field", () => {
    const bad: [Parameters<typeof raConfig>[0], string][] = [
      [{ maxRtrAdvInterval: 3 }, "maxRtrAdvInterval"],
      [{ maxRtrAdvInterval: 1801 }, "maxRtrAdvInterval"],
      [{ maxRtrAdvInterval: 100, minRtrAdvInterval: 76 }, "minRtrAdvInterval"],
      [{ minRtrAdvInterval: 2 }, "minRtrAdvInterval"],
      [{ maxRtrAdvInterval: 100, advDefaultLifetime: 99 }, "advDefaultLifetime"],
      [{ advDefaultLifetime: 9001 }, "advDefaultLifetime"],
      [{ advCurHopLimit: 256 }, "advCurHopLimit"],
      [{ advReachableTime: 3_600_001 }, "advReachableTime"],
      [{ advPreferredLifetime: 10, advValidLifetime: 5 }, "advPreferredLifetime"],
      [{ routerPreference: "urgent" as never }, "routerPreference"],
    ];
    for (const [over, field] of bad) {
      expect(() => raConfig(over), field).toThrow(UsageError);
      expect(() => raConfig(over)).toThrow(new RegExp(`^ra config: ${field} `));
    }
  });
});

describe("answering router solicitations", () => {
  it("answers unicast to the solicitor's MAC and link-local address", () => {
    const d = handleRouterSolicitation(rs(), rsCtx());
    expect(d).toMatchObject({ kind: "send", to: { mac: VM_MAC, ip: VM_LL }, managed: false, other: false });
    const { f } = ra(d);
    expect(f.eth).toMatchObject({ src: ROUTER_MAC, dst: VM_MAC });
    expect(f.ipv6).toMatchObject({ src: ROUTER_LL, dst: VM_LL, hopLimit: 255 });
  });

  it("answers a solicitation from :: (no SLLA allowed) to all-nodes", () => {
    const d = handleRouterSolicitation(rs({ src: "::", slla: false }), rsCtx());
    expect(d).toMatchObject({ kind: "send", to: { mac: "33:33:00:00:00:01", ip: "ff02::1" } });
  });

  it("accepts one sent to the router's link-local address, and keeps VLAN tags", () => {
    const d = handleRouterSolicitation(rs({ dst: ROUTER_LL, vlan: 42 }), rsCtx());
    expect(ra(d).f.vlans.map((v) => v.vid)).toEqual([42]);
  });

  it("stays silent, saying why, for everything RFC 4861 §6.1.1 or the port rules out", () => {
    const cases: [Buffer, Partial<RsContext>, RegExp][] = [
      [rs({ hopLimit: 64 }), {}, /^hop limit 64, not 255/],
      [rs({ checksum: 0x1234 }), {}, /^bad ICMPv6 checksum$/],
      [rs({ code: 1 }), {}, /^ICMPv6 code 1, not 0$/],
      [rs({ src: "::" }), {}, /^source link-layer option from the unspecified address$/],
      [rs({ ethSrc: "fa:16:3e:99:99:99" }), {}, /^source MAC fa:16:3e:99:99:99 is not port p1's MAC/],
      [rs({ dst: "ff02::1" }), {}, /^addressed to ff02::1, not all-routers or fe80::f816:3eff:feaa:1$/],
      [rs(), { port: { ...port, adminStateUp: false } }, /^port p1 is administratively down$/],
      [rs(), { subnets: [subnet({ ipv6RaMode: undefined })] }, /^no IPv6 subnet in an RA mode/],
      [Buffer.from("0102", "hex"), {}, /^malformed frame: /],
      [
        buildFrame({
          eth: { src: VM_MAC, dst: "33:33:00:00:00:02" },
          ipv6: { src: VM_LL, dst: "ff02::2", hopLimit: 255 },
          icmpv6: { type: 128, rest: 0 },
        }),
        {},
        /^not an ICMPv6 router solicitation$/,
      ],
      [
        buildFrame({
          eth: { src: VM_MAC, dst: ROUTER_MAC },
          ipv4: { src: "10.0.0.5", dst: "10.0.0.1" },
          icmp: { type: 8 },
        }),
        {},
        /^not an ICMPv6 router solicitation$/,
      ],
    ];
    for (const [frame, over, reason] of cases) {
      const d = handleRouterSolicitation(frame, rsCtx(over));
      expect(d.kind, String(reason)).toBe("ignore");
      if (d.kind === "ignore") expect(d.reason).toMatch(reason);
    }
  });
});

describe("RaScheduler (RFC 4861 §6.2.4, §6.2.6)", () => {
  const seq = (...xs: number[]) => {
    let i = 0;
    return () => xs[i++ % xs.length]!;
  };

  it("first RA at once, the first three intervals at most 16 s, then uniform in [min, max]", () => {
    const s = new RaScheduler({ minRtrAdvInterval: 200, maxRtrAdvInterval: 600 }, seq(0.5));
    expect(s.due).toBeUndefined();
    let now = 1000;
    expect(s.start(now)).toBe(now);
    const gaps: number[] = [];
    for (let i = 0; i < 5; i++) {
      const next = s.sent(now);
      gaps.push(next - now);
      now = next;
    }
    const mid = (200 + 0.5 * 400) * 1000;
    expect(gaps).toEqual([
      MAX_INITIAL_RTR_ADVERT_INTERVAL_MS,
      MAX_INITIAL_RTR_ADVERT_INTERVAL_MS,
      MAX_INITIAL_RTR_ADVERT_INTERVAL_MS,
      mid,
      mid,
    ]);
    expect(s.due).toBe(now);
  });

  it("draws intervals across the whole range with the random source", () => {
    const s = new RaScheduler({ minRtrAdvInterval: 3, maxRtrAdvInterval: 4 }, seq(0, 0.999999));
    s.start(0);
    expect(s.sent(0)).toBe(3000);
    expect(s.sent(3000)).toBeCloseTo(3000 + 4000, -1);
  });

  it("reset restarts the initial pace", () => {
    const s = new RaScheduler({ minRtrAdvInterval: 200, maxRtrAdvInterval: 600 }, seq(0.5));
    s.start(0);
    for (let i = 0; i < 4; i++) s.sent(i);
    expect(s.sent(10) - 10).toBe(400_000);
    expect(s.reset(20)).toBe(20);
    expect(s.sent(20) - 20).toBe(MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
  });

  it("solicited answers: random delay up to 500 ms; multicast ones no sooner than 3 s after the last, never after the next periodic", () => {
    const s = new RaScheduler({ minRtrAdvInterval: 200, maxRtrAdvInterval: 600 }, seq(0.5));
    expect(s.solicited(100, false)).toBe(100 + 0.5 * MAX_RA_DELAY_TIME_MS);
    expect(s.solicited(100, true)).toBe(100 + 0.5 * MAX_RA_DELAY_TIME_MS);
    s.start(0);
    s.sent(1000);
    // Unicast answers ignore the multicast rate limit.
    expect(s.solicited(1500, false)).toBe(1750);
    expect(s.solicited(1500, true)).toBe(1000 + MIN_DELAY_BETWEEN_RAS_MS);
    expect(s.solicited(10_000, true)).toBe(10_250);
    // The next periodic RA is at 17 000: a later answer is that RA.
    expect(s.solicited(16_900, true)).toBe(17_000);
  });
});
