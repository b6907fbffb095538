/**
 * Frames a VM might send to get past port security, built with flowdrake's
 * packet library, and the OpenFlow match fields OVS would extract from one
 * (ovs-fields(7) names). The port-security tests use the same frames twice:
 * the flow-level test (test/unit/portsec-app.test.ts) looks each one up in
 * the port_security flows, and the end-to-end test
 * (test/integration/portsec.test.ts) has a VM in a namespace really send it
 * through a raw socket (frame-tool.py) into ovs-vswitchd.
 *
 * Every IP frame carries a marker payload where it has room for one, so a
 * receiver can tell it apart from the traffic of the VMs' own stacks.
 */
import { ipv6MulticastMac, MAC_BROADCAST, MAC_ZERO, solicitedNodeAddress } from "../../src/packet/addr.js";
import { buildFrame, parseEthernet } from "../../src/packet/frame.js";
import { type NdpOption, ndpToIcmpv6 } from "../../src/packet/ndp.js";
import type { OxmValue } from "../../src/openflow/oxm.js";

export interface UdpArgs {
  mac: string;
  src: string;
  dst?: string;
  dstMac?: string;
  sport: number;
  dport: number;
  marker?: string;
}

/** UDP over IPv4 (to the broadcast address by default) or IPv6 (to all-nodes), by the source's family. */
export function udp(a: UdpArgs): Buffer {
  const payload = Buffer.from(a.marker ?? "flowdrake-portsec");
  if (a.src.includes(":")) {
    const dst = a.dst ?? "ff02::1";
    return buildFrame({
      eth: { src: a.mac, dst: a.dstMac ?? ipv6MulticastMac(dst) },
      ipv6: { src: a.src, dst, hopLimit: 64 },
      udp: { srcPort: a.sport, dstPort: a.dport },
      payload,
    });
  }
  return buildFrame({
    eth: { src: a.mac, dst: a.dstMac ?? MAC_BROADCAST },
    ipv4: { src: a.src, dst: a.dst ?? "255.255.255.255", ttl: 64 },
    udp: { srcPort: a.sport, dstPort: a.dport },
    payload,
  });
}

export interface ArpArgs {
  /** Ethernet source. */
  mac: string;
  sha?: string;
  spa: string;
  tpa: string;
  op?: 1 | 2;
}

/** An ARP packet to broadcast (a gratuitous reply by default: op 2, nothing answers it locally). */
export function arp(a: ArpArgs): Buffer {
  return buildFrame({
    eth: { src: a.mac, dst: MAC_BROADCAST },
    arp: { op: a.op ?? 2, sha: a.sha ?? a.mac, spa: a.spa, tha: MAC_ZERO, tpa: a.tpa },
  });
}

export interface NdArgs {
  mac: string;
  src: string;
  target: string;
  /** The link-layer address option (source-ll in an NS, target-ll in an NA); null leaves it out. */
  ll?: string | null;
}

/** A neighbour solicitation for `target`, to its solicited-node group. */
export function ns(a: NdArgs): Buffer {
  const dst = solicitedNodeAddress(a.target);
  const ll = a.ll === undefined ? a.mac : a.ll;
  const options: NdpOption[] = ll === null ? [] : [{ kind: "source-ll", mac: ll }];
  return buildFrame({
    eth: { src: a.mac, dst: ipv6MulticastMac(dst) },
    ipv6: { src: a.src, dst, hopLimit: 255 },
    icmpv6: ndpToIcmpv6({ kind: "neighbor-solicitation", target: a.target, options }),
  });
}

/** An unsolicited neighbour advertisement for `target`, to all-nodes. */
export function na(a: NdArgs): Buffer {
  const ll = a.ll === undefined ? a.mac : a.ll;
  const options: NdpOption[] = ll === null ? [] : [{ kind: "target-ll", mac: ll }];
  return buildFrame({
    eth: { src: a.mac, dst: ipv6MulticastMac("ff02::1") },
    ipv6: { src: a.src, dst: "ff02::1", hopLimit: 255 },
    icmpv6: ndpToIcmpv6({
      kind: "neighbor-advertisement",
      router: false,
      solicited: false,
      override: true,
      target: a.target,
      options,
    }),
  });
}

/** A router advertisement from `src` (a VM posing as the router), to all-nodes. */
export function ra(a: { mac: string; src: string }): Buffer {
  return buildFrame({
    eth: { src: a.mac, dst: ipv6MulticastMac("ff02::1") },
    ipv6: { src: a.src, dst: "ff02::1", hopLimit: 255 },
    icmpv6: ndpToIcmpv6({
      kind: "router-advertisement",
      curHopLimit: 64,
      managed: false,
      other: false,
      otherFlags: 0,
      routerLifetime: 1800,
      reachableTime: 0,
      retransTimer: 0,
      options: [{ kind: "source-ll", mac: a.mac }],
    }),
  });
}

/** The match fields OVS extracts from `frame` arriving on `inPort` (those port security can match). */
export function oxmFields(frame: Buffer, inPort: number): Record<string, OxmValue> {
  const f = parseEthernet(frame, { dhcp: false });
  const out: Record<string, OxmValue> = {
    in_port: inPort,
    eth_src: f.eth.src,
    eth_dst: f.eth.dst,
    eth_type: f.eth.ethertype,
  };
  if (f.arp) {
    Object.assign(out, {
      arp_op: f.arp.op,
      arp_spa: f.arp.spa,
      arp_tpa: f.arp.tpa,
      arp_sha: f.arp.sha,
      arp_tha: f.arp.tha,
    });
  }
  if (f.ipv4) Object.assign(out, { nw_proto: f.ipv4.protocol, ip_src: f.ipv4.src, ip_dst: f.ipv4.dst });
  if (f.ipv6) Object.assign(out, { nw_proto: f.ipv6.protocol, ipv6_src: f.ipv6.src, ipv6_dst: f.ipv6.dst });
  if (f.udp) Object.assign(out, { udp_src: f.udp.srcPort, udp_dst: f.udp.dstPort });
  if (f.tcp) Object.assign(out, { tcp_src: f.tcp.srcPort, tcp_dst: f.tcp.dstPort });
  if (f.icmp) Object.assign(out, { icmp_type: f.icmp.type, icmp_code: f.icmp.code });
  if (f.icmpv6) {
    Object.assign(out, { icmpv6_type: f.icmpv6.type, icmpv6_code: f.icmpv6.code });
    const nd = f.icmpv6.ndp;
    if (nd?.kind === "neighbor-solicitation" || nd?.kind === "neighbor-advertisement") {
      const want = nd.kind === "neighbor-solicitation" ? "source-ll" : "target-ll";
      const ll = nd.options.find((o) => o.kind === want);
      out.nd_target = nd.target;
      out[want === "source-ll" ? "nd_sll" : "nd_tll"] = ll && "mac" in ll ? ll.mac : MAC_ZERO;
    }
  }
  return out;
}
