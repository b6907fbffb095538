/**
 * The packet library: parse and build Ethernet, 802.1Q/802.1ad VLAN, ARP,
 * IPv4, IPv6 (+extension headers), ICMP, ICMPv6 + NDP, UDP, TCP and DHCPv4
 * frames, for the reactive apps (packet-in / packet-out) and for tests.
 * See frame.ts for the Frame / FrameSpec shapes and builders.ts for the
 * ready-made replies. DHCPv6 messages ride in a frame's UDP payload:
 * dhcp6.ts reads them (`dhcp6OfFrame`) and builds their frames.
 */
export * from "./addr.js";
export * from "./arp.js";
export * from "./builders.js";
export * from "./checksum.js";
export * from "./constants.js";
export * from "./dhcp-options.js";
export * from "./dhcp.js";
export * from "./dhcp6.js";
export * from "./dns-name.js";
export * from "./ethernet.js";
export * from "./frame.js";
export * from "./icmp.js";
export * from "./ipv4.js";
export * from "./ipv6.js";
export * from "./ndp.js";
export * from "./pcap.js";
export * from "./tcp.js";
export * from "./udp.js";
