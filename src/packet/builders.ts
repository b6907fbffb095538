/**
 * Ready-made frames for the reactive apps: ARP request/reply, DHCPv4 over
 * UDP/IPv4, ICMPv6 neighbor advertisement/solicitation and router
 * advertisement (with the RFC 8106 DNS options), ICMP echo reply. Each is a
 * thin layer over buildFrame that picks the addresses and ports the RFCs
 * prescribe, so apps state intent ("answer this ARP for 10.0.0.1 with
 * fa:16:3e:..") rather than headers. DHCPv6 frames: dhcp6.ts.
 */
import { MAC_BROADCAST, MAC_ZERO, ipv6MulticastMac, solicitedNodeAddress } from "./addr.js";
import { ARP_OP, UDP_PORT } from "./constants.js";
import { BOOTREPLY, type DhcpSpec } from "./dhcp.js";
import type { VlanSpec } from "./ethernet.js";
import { buildFrame } from "./frame.js";
import { icmpEcho } from "./icmp.js";
import { type NdpOption, ndpToIcmpv6 } from "./ndp.js";

export interface ArpRequestArgs {
  senderMac: string;
  senderIp: string;
  targetIp: string;
  vlans?: VlanSpec[];
}

export function buildArpRequest(a: ArpRequestArgs): Buffer {
  return buildFrame({
    eth: { src: a.senderMac, dst: MAC_BROADCAST },
    vlans: a.vlans ?? [],
    arp: { op: ARP_OP.REQUEST, sha: a.senderMac, spa: a.senderIp, tha: MAC_ZERO, tpa: a.targetIp },
  });
}

export interface ArpReplyArgs {
  /** The answer: `ip` is at `mac`. */
  mac: string;
  ip: string;
  /** The asker (the request's sha/spa). */
  toMac: string;
  toIp: string;
  vlans?: VlanSpec[];
}

export function buildArpReply(a: ArpReplyArgs): Buffer {
  return buildFrame({
    eth: { src: a.mac, dst: a.toMac },
    vlans: a.vlans ?? [],
    arp: { op: ARP_OP.REPLY, sha: a.mac, spa: a.ip, tha: a.toMac, tpa: a.toIp },
  });
}

export interface DhcpFrameArgs {
  ethSrc: string;
  ethDst: string;
  ipSrc: string;
  ipDst: string;
  dhcp: DhcpSpec;
  vlans?: VlanSpec[];
  ttl?: number;
}

/** A DHCPv4 message in UDP/IPv4: server→client 67→68 for BOOTREPLY, else 68→67. */
export function buildDhcpPacket(a: DhcpFrameArgs): Buffer {
  const reply = a.dhcp.op === BOOTREPLY;
  return buildFrame({
    eth: { src: a.ethSrc, dst: a.ethDst },
    vlans: a.vlans ?? [],
    ipv4: { src: a.ipSrc, dst: a.ipDst, ttl: a.ttl ?? 64 },
    udp: reply
      ? { srcPort: UDP_PORT.DHCP_SERVER, dstPort: UDP_PORT.DHCP_CLIENT }
      : { srcPort: UDP_PORT.DHCP_CLIENT, dstPort: UDP_PORT.DHCP_SERVER },
    dhcp: a.dhcp,
  });
}

export interface NeighborAdvertisementArgs {
  /** The answer: `target` is at `mac`. */
  mac: string;
  target: string;
  /** The solicitor; omit for an unsolicited advertisement to all-nodes. */
  toMac?: string;
  toIp?: string;
  router?: boolean;
  vlans?: VlanSpec[];
}

export function buildNeighborAdvertisement(a: NeighborAdvertisementArgs): Buffer {
  const dstIp = a.toIp ?? "ff02::1";
  return buildFrame({
    eth: { src: a.mac, dst: a.toMac ?? ipv6MulticastMac(dstIp) },
    vlans: a.vlans ?? [],
    ipv6: { src: a.target, dst: dstIp, hopLimit: 255 },
    icmpv6: ndpToIcmpv6({
      kind: "neighbor-advertisement",
      router: a.router ?? false,
      solicited: a.toIp !== undefined,
      override: true,
      target: a.target,
      options: [{ kind: "target-ll", mac: a.mac }],
    }),
  });
}

export interface NeighborSolicitationArgs {
  mac: string;
  ip: string;
  target: string;
  vlans?: VlanSpec[];
}

export function buildNeighborSolicitation(a: NeighborSolicitationArgs): Buffer {
  const dst = solicitedNodeAddress(a.target);
  return buildFrame({
    eth: { src: a.mac, dst: ipv6MulticastMac(dst) },
    vlans: a.vlans ?? [],
    ipv6: { src: a.ip, dst, hopLimit: 255 },
    icmpv6: ndpToIcmpv6({
      kind: "neighbor-solicitation",
      target: a.target,
      options: [{ kind: "source-ll", mac: a.mac }],
    }),
  });
}

export interface RaPrefixArgs {
  prefix: string;
  prefixLength: number;
  /** L flag (default true). */
  onLink?: boolean;
  /** A flag: hosts may form an address in it by SLAAC (default true). */
  autonomous?: boolean;
  /** Seconds; RFC 4861 §6.2.1 defaults 2592000 (30 days) and 604800 (7 days). */
  validLifetime?: number;
  preferredLifetime?: number;
}

/** RFC 4191 §2.2 default router preference, the Prf bits of the RA flags byte. */
export const ROUTER_PREFERENCE = { high: 0b01, medium: 0b00, low: 0b11 } as const;
export type RouterPreference = keyof typeof ROUTER_PREFERENCE;

export interface RouterAdvertisementArgs {
  mac: string;
  /** Link-local address of the router port. */
  ip: string;
  prefixes: RaPrefixArgs[];
  mtu?: number;
  /** M flag: addresses by DHCPv6. */
  managed?: boolean;
  /** O flag: other configuration by DHCPv6. */
  other?: boolean;
  /** Seconds this router is a default router (0: not one); default 1800. */
  routerLifetime?: number;
  /** Default 64. */
  curHopLimit?: number;
  /** Milliseconds; 0 (the default) leaves the hosts' own values. */
  reachableTime?: number;
  retransTimer?: number;
  /** Default "medium". */
  routerPreference?: RouterPreference;
  /** RFC 8106 RDNSS option; left out when empty. */
  dnsServers?: { servers: string[]; lifetime: number };
  /** RFC 8106 DNSSL option; left out when empty. */
  dnsSearch?: { domains: string[]; lifetime: number };
  toMac?: string;
  toIp?: string;
  vlans?: VlanSpec[];
}

/**
 * A router advertisement to `toIp`/`toMac` (default: all-nodes ff02::1 and its
 * multicast MAC), hop limit 255 as RFC 4861 §6.1.2 requires. Options in the
 * order source link-layer address, MTU, prefixes, RDNSS, DNSSL.
 */
export function buildRouterAdvertisement(a: RouterAdvertisementArgs): Buffer {
  const dstIp = a.toIp ?? "ff02::1";
  const options: NdpOption[] = [{ kind: "source-ll", mac: a.mac }];
  if (a.mtu !== undefined) options.push({ kind: "mtu", mtu: a.mtu });
  for (const p of a.prefixes) {
    options.push({
      kind: "prefix-info",
      prefix: p.prefix,
      prefixLength: p.prefixLength,
      onLink: p.onLink ?? true,
      autonomous: p.autonomous ?? true,
      validLifetime: p.validLifetime ?? 2592000,
      preferredLifetime: p.preferredLifetime ?? 604800,
    });
  }
  if (a.dnsServers && a.dnsServers.servers.length > 0)
    options.push({ kind: "rdnss", lifetime: a.dnsServers.lifetime, servers: a.dnsServers.servers });
  if (a.dnsSearch && a.dnsSearch.domains.length > 0)
    options.push({ kind: "dnssl", lifetime: a.dnsSearch.lifetime, domains: a.dnsSearch.domains });
  return buildFrame({
    eth: { src: a.mac, dst: a.toMac ?? ipv6MulticastMac(dstIp) },
    vlans: a.vlans ?? [],
    ipv6: { src: a.ip, dst: dstIp, hopLimit: 255 },
    icmpv6: ndpToIcmpv6({
      kind: "router-advertisement",
      curHopLimit: a.curHopLimit ?? 64,
      managed: a.managed ?? false,
      other: a.other ?? false,
      otherFlags: ROUTER_PREFERENCE[a.routerPreference ?? "medium"] << 3,
      routerLifetime: a.routerLifetime ?? 1800,
      reachableTime: a.reachableTime ?? 0,
      retransTimer: a.retransTimer ?? 0,
      options,
    }),
  });
}

export interface EchoReplyArgs {
  ethSrc: string;
  ethDst: string;
  ipSrc: string;
  ipDst: string;
  identifier: number;
  sequence: number;
  data: Buffer;
  v6?: boolean;
  vlans?: VlanSpec[];
}

/** ICMP / ICMPv6 echo reply carrying the request's identifier, sequence and data. */
export function buildEchoReply(a: EchoReplyArgs): Buffer {
  const echo = icmpEcho("reply", a.identifier, a.sequence, a.data, a.v6 ?? false);
  return buildFrame(
    a.v6
      ? {
          eth: { src: a.ethSrc, dst: a.ethDst },
          vlans: a.vlans ?? [],
          ipv6: { src: a.ipSrc, dst: a.ipDst },
          icmpv6: echo,
        }
      : {
          eth: { src: a.ethSrc, dst: a.ethDst },
          vlans: a.vlans ?? [],
          ipv4: { src: a.ipSrc, dst: a.ipDst },
          icmp: echo,
        },
  );
}
