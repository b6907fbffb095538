/**
 * Router advertisements of the distributed router: what the router leg on
 * an IPv6 network says (RFC 4861 §6.2.3), and the answer to a router
 * solicitation from a local port (§6.2.6). Pure: no I/O, no clock, so every
 * agent advertises the same content for the same NB model, and the agent
 * hosting a VM can answer it itself: no RA needs to cross the overlay.
 *
 * Content follows Neutron's radvd configuration and OVN's ipv6_ra_configs:
 *   - A subnet is advertised when it is IPv6 and has an `ipv6RaMode`; a
 *     subnet with only `ipv6AddressMode` has its RAs from a router outside
 *     the cloud (Neutron's meaning) and gets none from us.
 *   - Flags: M (managed) when a subnet is dhcpv6-stateful, O (other config)
 *     when one is dhcpv6-stateless; slaac sets neither. Router preference
 *     (RFC 4191) medium unless configured.
 *   - One prefix information option per subnet, on-link (L) always,
 *     autonomous (A) for slaac and dhcpv6-stateless, not for
 *     dhcpv6-stateful (addresses come from DHCPv6 there). Hosts form SLAAC
 *     addresses only in /64 prefixes (RFC 4862 §5.5.3 with 64-bit interface
 *     ids); the prefix is advertised as the NB has it.
 *   - MTU option with the network's MTU when it is at least 1280 (the IPv6
 *     minimum, RFC 8200 §5; hosts ignore smaller values).
 *   - RDNSS (RFC 8106 §5.1) with the subnets' IPv6 DNS servers (none: no
 *     option), and DNSSL (§5.2) with the domain when the caller names one;
 *     lifetime `dnsLifetime`, by default 3 × MaxRtrAdvInterval (RFC 8106's
 *     suggested minimum).
 *   - From raConfig, with RFC 4861's defaults: router lifetime
 *     AdvDefaultLifetime (3 × MaxRtrAdvInterval), hop limit 64, reachable
 *     time and retrans timer 0 (hosts keep theirs), prefix lifetimes valid
 *     30 days and preferred 7.
 *   - Source: the router port's MAC and the fe80::/64 link-local address
 *     formed from it (modified EUI-64): the address hosts install as their
 *     default router.
 *
 * Periodic advertisements go to all-nodes (ff02::1, 33:33:00:00:00:01);
 * schedule.ts says when. A solicitation is answered by unicast to the
 * solicitor's MAC (the port's) and IPv6 source address; one from the
 * unspecified address (a host without a usable address yet) is answered to
 * ff02::1 at 33:33:00:00:00:01 (the agent sends every answer out of the
 * asking port only). A solicitation is
 * valid per §6.1.1: hop limit 255, a correct ICMPv6 checksum, code 0, and no
 * source link-layer address option when sent from "::". It must also come
 * from the port's own MAC and be addressed to all-routers (ff02::2) or to
 * the router's link-local address; anything else is not ours to answer.
 * VLAN tags of the solicitation are kept on the answer.
 */
import {
  buildRouterAdvertisement,
  type Frame,
  ICMPV6_TYPE,
  isIpv6,
  ipv6MulticastMac,
  linkLocalFromMac,
  parseEthernet,
  type RaPrefixArgs,
  type RouterAdvertisementArgs,
  type RouterPreference,
} from "../../packet/index.js";
import type { Network, Port, Subnet } from "../../nb/model/index.js";
import { DecodeError, errorMessage, UsageError } from "../../util/errors.js";
import { logger } from "../../util/log.js";

const log = logger("ipv6-ra");

export const ALL_NODES = "ff02::1";
export const ALL_ROUTERS = "ff02::2";
/** RFC 8200 §5: every IPv6 link carries at least 1280-byte packets. */
export const IPV6_MIN_MTU = 1280;

/** Advertising parameters, named as in RFC 4861 §6.2.1 (seconds unless noted). */
export interface RaConfig {
  maxRtrAdvInterval: number;
  minRtrAdvInterval: number;
  advDefaultLifetime: number;
  advCurHopLimit: number;
  /** Milliseconds; 0 = unspecified. */
  advReachableTime: number;
  /** Milliseconds; 0 = unspecified. */
  advRetransTimer: number;
  advValidLifetime: number;
  advPreferredLifetime: number;
  /** RDNSS / DNSSL lifetime. */
  dnsLifetime: number;
  routerPreference: RouterPreference;
}

/**
 * A complete, checked RaConfig: RFC 4861 §6.2.1's defaults and ranges
 * (MaxRtrAdvInterval 4–1800, MinRtrAdvInterval 3–0.75 × max with default
 * 0.33 × max, AdvDefaultLifetime 0 or max–9000 with default 3 × max).
 * Out-of-range values are a UsageError: they come from the operator's config.
 */
export function raConfig(over: Partial<RaConfig> = {}): RaConfig {
  const max = over.maxRtrAdvInterval ?? 600;
  const bad = (field: string, why: string): never => {
    throw new UsageError(`ra config: ${field} ${why}`, {
      field,
      value: (over as Record<string, unknown>)[field],
    });
  };
  if (!Number.isFinite(max) || max < 4 || max > 1800) bad("maxRtrAdvInterval", "must be 4 to 1800 seconds");
  const min = over.minRtrAdvInterval ?? Math.max(3, Math.floor(0.33 * max));
  if (!Number.isFinite(min) || min < 3 || min > 0.75 * max)
    bad("minRtrAdvInterval", `must be 3 to ${0.75 * max} seconds (0.75 × maxRtrAdvInterval)`);
  const life = over.advDefaultLifetime ?? Math.min(9000, 3 * max);
  if (!Number.isInteger(life) || (life !== 0 && (life < max || life > 9000)))
    bad("advDefaultLifetime", `must be 0 or ${max} to 9000 seconds`);
  const c: RaConfig = {
    maxRtrAdvInterval: max,
    minRtrAdvInterval: min,
    advDefaultLifetime: life,
    advCurHopLimit: over.advCurHopLimit ?? 64,
    advReachableTime: over.advReachableTime ?? 0,
    advRetransTimer: over.advRetransTimer ?? 0,
    advValidLifetime: over.advValidLifetime ?? 2592000,
    advPreferredLifetime: over.advPreferredLifetime ?? 604800,
    dnsLifetime: over.dnsLifetime ?? 3 * max,
    routerPreference: over.routerPreference ?? "medium",
  };
  const u32 = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
  if (!Number.isInteger(c.advCurHopLimit) || c.advCurHopLimit < 0 || c.advCurHopLimit > 255)
    bad("advCurHopLimit", "must be 0 to 255");
  if (!u32(c.advReachableTime) || c.advReachableTime > 3_600_000)
    bad("advReachableTime", "must be 0 to 3600000 ms");
  if (!u32(c.advRetransTimer)) bad("advRetransTimer", "must be a 32-bit count of ms");
  if (!u32(c.advValidLifetime)) bad("advValidLifetime", "must be a 32-bit count of seconds");
  if (!u32(c.advPreferredLifetime) || c.advPreferredLifetime > c.advValidLifetime)
    bad("advPreferredLifetime", "must be a 32-bit count of seconds, at most advValidLifetime");
  if (!u32(c.dnsLifetime)) bad("dnsLifetime", "must be a 32-bit count of seconds");
  if (!["high", "medium", "low"].includes(c.routerPreference))
    bad("routerPreference", "must be high, medium or low");
  return c;
}

const DEFAULT_CONFIG = raConfig();

/** A router's leg on one network, as far as advertising goes. */
export interface RaInterface {
  /** The router port's MAC: the RA's source MAC, and its link-local address by EUI-64. */
  macAddress: string;
  /** The router's subnets on this network (those in an RA mode are advertised). */
  subnets: readonly Subnet[];
  network: Network;
  /** Domain for the DNSSL option; none when absent. */
  domain?: string;
  config?: RaConfig;
}

export type RaDecision =
  | {
      kind: "send";
      frame: Buffer;
      /** Where the frame is addressed (the agent sends it out of one port either way). */
      to: { mac: string; ip: string };
      managed: boolean;
      other: boolean;
    }
  | { kind: "ignore"; reason: string };

const ignore = (reason: string): RaDecision => ({ kind: "ignore", reason });

/** The subnets an RA announces: IPv6 ones with an RA mode, in the given order. */
export function advertisedSubnets(subnets: readonly Subnet[]): Subnet[] {
  return subnets.filter((s) => s.ipVersion === 6 && s.ipv6RaMode !== undefined && cidrOf(s) !== undefined);
}

function cidrOf(s: Subnet): { prefix: string; length: number } | undefined {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(s.cidr);
  if (!m || !isIpv6(m[1]!) || Number(m[2]) > 128) return undefined;
  return { prefix: m[1]!, length: Number(m[2]) };
}

/** The RA's content for an interface, without addresses; undefined when nothing is advertised. */
export function planRa(
  iface: RaInterface,
): Omit<RouterAdvertisementArgs, "toMac" | "toIp" | "vlans"> | undefined {
  const c = iface.config ?? DEFAULT_CONFIG;
  const subnets = advertisedSubnets(iface.subnets);
  if (subnets.length === 0) return undefined;
  const prefixes: RaPrefixArgs[] = subnets.map((s) => {
    const p = cidrOf(s)!;
    return {
      prefix: p.prefix,
      prefixLength: p.length,
      onLink: true,
      autonomous: s.ipv6RaMode !== "dhcpv6-stateful",
      validLifetime: c.advValidLifetime,
      preferredLifetime: c.advPreferredLifetime,
    };
  });
  const servers = [...new Set(subnets.flatMap((s) => s.dnsNameservers.filter(isIpv6)))].slice(0, 127);
  return {
    mac: iface.macAddress,
    ip: linkLocalFromMac(iface.macAddress),
    prefixes,
    ...(iface.network.mtu >= IPV6_MIN_MTU ? { mtu: iface.network.mtu } : {}),
    managed: subnets.some((s) => s.ipv6RaMode === "dhcpv6-stateful"),
    other: subnets.some((s) => s.ipv6RaMode === "dhcpv6-stateless"),
    routerLifetime: c.advDefaultLifetime,
    curHopLimit: c.advCurHopLimit,
    reachableTime: c.advReachableTime,
    retransTimer: c.advRetransTimer,
    routerPreference: c.routerPreference,
    dnsServers: { servers, lifetime: c.dnsLifetime },
    dnsSearch: { domains: iface.domain ? [iface.domain] : [], lifetime: c.dnsLifetime },
  };
}

/**
 * The RA for `iface`: to `to` when given, else the periodic one to
 * all-nodes. Never throws: a value the packet library cannot encode (a bad
 * domain name, say) is an ignore with the reason.
 */
export function decideRa(
  iface: RaInterface,
  to?: { mac: string; ip: string },
  vlans: Frame["vlans"] = [],
): RaDecision {
  const plan = planRa(iface);
  if (!plan) return ignore("no IPv6 subnet in an RA mode on this router leg");
  const dst = to ?? { mac: ipv6MulticastMac(ALL_NODES), ip: ALL_NODES };
  try {
    const frame = buildRouterAdvertisement({
      ...plan,
      toMac: dst.mac,
      toIp: dst.ip,
      vlans: vlans.map((t) => ({ vid: t.vid, pcp: t.pcp, dei: t.dei, tpid: t.tpid })),
    });
    return { kind: "send", frame, to: dst, managed: plan.managed ?? false, other: plan.other ?? false };
  } catch (e) {
    log.error({ err: e, mac: iface.macAddress }, "router advertisement could not be built");
    return ignore(`cannot build the RA: ${errorMessage(e)}`);
  }
}

export interface RsContext extends RaInterface {
  /** The NB port the solicitation came in from. */
  port: Port;
}

/** Decide the answer to one frame from `ctx.port` that the RS punt flow handed over. Never throws. */
export function handleRouterSolicitation(frame: Buffer, ctx: RsContext): RaDecision {
  let f: Frame;
  try {
    f = parseEthernet(frame);
  } catch (e) {
    if (e instanceof DecodeError) return ignore(`malformed frame: ${e.message}`);
    log.error({ err: e }, "unexpected error decoding a router solicitation");
    return ignore(`malformed frame: ${errorMessage(e)}`);
  }
  const icmp = f.icmpv6;
  if (!f.ipv6 || !icmp || icmp.type !== ICMPV6_TYPE.ROUTER_SOLICITATION)
    return ignore("not an ICMPv6 router solicitation");
  if (f.ipv6.hopLimit !== 255) return ignore(`hop limit ${f.ipv6.hopLimit}, not 255: not from the link`);
  if (!icmp.checksumValid) return ignore("bad ICMPv6 checksum");
  if (icmp.code !== 0) return ignore(`ICMPv6 code ${icmp.code}, not 0`);
  const rs = icmp.ndp;
  if (rs?.kind !== "router-solicitation") return ignore("not a router solicitation");
  const { port } = ctx;
  if (!port.adminStateUp) return ignore(`port ${port.id} is administratively down`);
  if (f.eth.src !== port.macAddress.toLowerCase())
    return ignore(`source MAC ${f.eth.src} is not port ${port.id}'s MAC ${port.macAddress}`);
  const routerLl = linkLocalFromMac(ctx.macAddress);
  if (f.ipv6.dst !== ALL_ROUTERS && f.ipv6.dst !== routerLl)
    return ignore(`addressed to ${f.ipv6.dst}, not all-routers or ${routerLl}`);
  const slla = rs.options.find((o) => o.kind === "source-ll");
  const unspecified = f.ipv6.src === "::";
  if (unspecified && slla) return ignore("source link-layer option from the unspecified address");
  const to = unspecified
    ? { mac: ipv6MulticastMac(ALL_NODES), ip: ALL_NODES }
    : { mac: f.eth.src, ip: f.ipv6.src };
  return decideRa(ctx, to, f.vlans);
}
