/**
 * What the dhcp app punts to its agent: DHCPv4 client traffic, IPv4/UDP from
 * port 68 (bootpc) to port 67 (bootps), RFC 2131 §4.1. Written out once as an
 * OpenFlow match (prerequisites first, as OXM requires) so the agent's flows
 * and the tests punt exactly the same packets; the agent adds its own in_port
 * or metadata field and its per-port meter (issue 4: rate-limit the punt).
 */
import type { MatchField } from "../../openflow/oxm.js";
import { ETH_TYPE, IP_PROTO, UDP_PORT } from "../../packet/index.js";

export const DHCP_CLIENT_MATCH: readonly MatchField[] = [
  { field: "eth_type", value: ETH_TYPE.IPV4 },
  { field: "nw_proto", value: IP_PROTO.UDP },
  { field: "udp_src", value: UDP_PORT.DHCP_CLIENT },
  { field: "udp_dst", value: UDP_PORT.DHCP_SERVER },
];
