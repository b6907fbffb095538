/**
 * What the IPv6 parts of the router punt to the agent, written once as
 * OpenFlow matches (prerequisites first, as OXM requires) so the apps' flows
 * and the tests punt exactly the same packets; the app adds its in_port or
 * metadata match and its per-port meter:
 *   - router solicitations (ICMPv6 type 133, code 0, RFC 4861 §4.1) from a
 *     local port, answered by ra.ts's handleRouterSolicitation;
 *   - DHCPv6 client messages, UDP from port 546 to port 547 (RFC 8415 §7.2),
 *     answered by dhcp/responder6.ts's handleDhcp6Frame.
 */
import type { MatchField } from "../../openflow/oxm.js";
import { ETH_TYPE, ICMPV6_TYPE, IP_PROTO, UDP_PORT } from "../../packet/index.js";

export const ROUTER_SOLICITATION_MATCH: readonly MatchField[] = [
  { field: "eth_type", value: ETH_TYPE.IPV6 },
  { field: "nw_proto", value: IP_PROTO.ICMPV6 },
  { field: "icmpv6_type", value: ICMPV6_TYPE.ROUTER_SOLICITATION },
  { field: "icmpv6_code", value: 0 },
];

export const DHCP6_CLIENT_MATCH: readonly MatchField[] = [
  { field: "eth_type", value: ETH_TYPE.IPV6 },
  { field: "nw_proto", value: IP_PROTO.UDP },
  { field: "udp_src", value: UDP_PORT.DHCPV6_CLIENT },
  { field: "udp_dst", value: UDP_PORT.DHCPV6_SERVER },
];
