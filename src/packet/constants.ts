/**
 * Protocol numbers the packet library dispatches on, each table declared once
 * with the registry it follows. Decoders use them to pick the next layer;
 * builders use them to fill type fields the caller left out; `*_NAMES` give
 * log lines and test failures readable names.
 */

/** EtherType values (IEEE 802 numbers registry; IEEE 802.1Q for the tags). */
export const ETH_TYPE = {
  IPV4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100, // 802.1Q C-tag
  IPV6: 0x86dd,
  QINQ: 0x88a8, // 802.1ad S-tag
  QINQ_LEGACY: 0x9100, // pre-standard S-tag some switches still send
} as const;

/** Protocol / Next Header values (IANA "Assigned Internet Protocol Numbers"). */
export const IP_PROTO = {
  HOPOPT: 0, // IPv6 hop-by-hop options (RFC 8200 §4.3)
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  IPV6_ROUTE: 43, // RFC 8200 §4.4
  IPV6_FRAG: 44, // RFC 8200 §4.5
  ICMPV6: 58,
  IPV6_NONXT: 59,
  IPV6_OPTS: 60, // destination options (RFC 8200 §4.6)
} as const;

/** ICMP types (RFC 792) the library gives typed views of. */
export const ICMP_TYPE = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
} as const;

/** ICMPv6 types (RFC 4443, RFC 4861). */
export const ICMPV6_TYPE = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAMETER_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  ROUTER_SOLICITATION: 133,
  ROUTER_ADVERTISEMENT: 134,
  NEIGHBOR_SOLICITATION: 135,
  NEIGHBOR_ADVERTISEMENT: 136,
} as const;

/** ARP operation codes (RFC 826; IANA ARP parameters). */
export const ARP_OP = { REQUEST: 1, REPLY: 2 } as const;

/** UDP ports that select an application decoder. */
export const UDP_PORT = { DHCP_SERVER: 67, DHCP_CLIENT: 68, DHCPV6_CLIENT: 546, DHCPV6_SERVER: 547 } as const;

function invert(t: Record<string, number>): Map<number, string> {
  return new Map(Object.entries(t).map(([k, v]) => [v, k]));
}

export const ETH_TYPE_NAMES = invert(ETH_TYPE);
export const IP_PROTO_NAMES = invert(IP_PROTO);
export const ICMP_TYPE_NAMES = invert(ICMP_TYPE);
export const ICMPV6_TYPE_NAMES = invert(ICMPV6_TYPE);
