/**
 * portsec: anti-spoofing at the door of every local port (port_security
 * table). Owner: each local port. A port with port security on may send
 * only from its MAC and its fixed IPs or allowed address pairs (an allowed
 * address pair with its own MAC sends from that MAC, with that pair's
 * address only), plus a DHCP DISCOVER/REQUEST from 0.0.0.0, IPv6
 * link-local and the unspecified-source ICMPv6 of DAD and MLD; everything
 * else hits the table's drop miss.
 *
 * Address resolution is checked inside the packet too, as OVN does: ARP
 * must carry the frame's MAC as sender hardware address (arp_sha) and an
 * allowed address as sender protocol address. IPv6 neighbour discovery
 * from a MAC must come from an IPv6 address that MAC may use (its allowed
 * addresses; the port's own MAC also fe80::/64, and :: for the
 * solicitation of DAD); a solicitation's source link-layer option (nd_sll)
 * must be that MAC or absent (always absent from ::), an advertisement's
 * target (nd_target) one of those addresses and its target link-layer
 * option (nd_tll) that MAC or absent. Any other NS or NA of the port drops.
 *
 * No VM may answer as a server of the network: DHCP (udp source port 67),
 * DHCPv6 (udp source port 547) and IPv6 router advertisements (ICMPv6 type
 * 134) from a VM drop whatever its allowed addresses, as Neutron's firewall
 * drops them — the agent is the network's DHCP server and router. Those
 * drops sit above every allow. A port with port security off, or on a
 * network with port security off, passes untouched (a tenant DHCP server or
 * router VM needs that).
 *
 *   prio  match (all with in_port; all but the drops with eth_src)  action
 *   100   udp tp_src=67 · udp6 tp_src=547 · icmp6 type 134           drop
 *   95    NS: (source, nd_sll) allowed · NA: (source, nd_target,
 *         nd_tll) allowed, as above                                  pass
 *   94    NS, NA (whatever else)                                     drop
 *   90    DHCP from 0.0.0.0, ARP probe (spa 0.0.0.0, sha = MAC),
 *         ipv6_src fe80::/64, icmp6 from :: (MLD)                    pass
 *   80    ip / arp (spa, sha) / ipv6 from an allowed address         pass
 *   50    port security off: everything                              pass
 */
import type { App } from "./types.js";
import { flow, type FlowBuilder } from "../datapath/index.js";
import { isIpv4, MAC_ZERO } from "../packet/addr.js";

export const PORTSEC_PRIORITY = {
  serverDrop: 100,
  neighbour: 95,
  neighbourDrop: 94,
  bootstrap: 90,
  allow: 80,
  open: 50,
} as const;

const ND_NS = 135;
const ND_NA = 136;
const ND_RA = 134;
/** An IPv6 address and, for a prefix, its mask. */
type Masked = [value: string, mask?: string];
const LINK_LOCAL: Masked = ["fe80::", "ffff:ffff:ffff:ffff::"];

export const portsecApp: App = {
  name: "portsec",
  tables: ["port_security"],
  owners: {
    port(id, view, out) {
      const lp = view.localPort(id);
      if (!lp) return;
      const p = lp.port;
      const nv = view.network(lp.networkId);
      const ps = (prio: number): FlowBuilder => flow("port_security", prio).inPort(lp.ofport);
      const pass = (b: FlowBuilder): void => out.flow(b.goto("ingress_secgroup"));
      if (!p.portSecurityEnabled || nv?.network.portSecurityEnabled === false) {
        pass(ps(PORTSEC_PRIORITY.open));
        return;
      }
      const mac = p.macAddress;
      out.flow(ps(PORTSEC_PRIORITY.serverDrop).proto("udp").eq("udp_src", 67));
      out.flow(ps(PORTSEC_PRIORITY.serverDrop).proto("udp6").eq("udp_src", 547));
      out.flow(ps(PORTSEC_PRIORITY.serverDrop).proto("icmp6").eq("icmpv6_type", ND_RA));
      pass(
        ps(PORTSEC_PRIORITY.bootstrap)
          .proto("udp")
          .eq("eth_src", mac)
          .eq("ip_src", "0.0.0.0")
          .eq("ip_dst", "255.255.255.255")
          .eq("udp_src", 68)
          .eq("udp_dst", 67),
      );
      pass(
        ps(PORTSEC_PRIORITY.bootstrap)
          .proto("arp")
          .eq("eth_src", mac)
          .eq("arp_spa", "0.0.0.0")
          .eq("arp_sha", mac),
      );
      pass(
        ps(PORTSEC_PRIORITY.bootstrap)
          .proto("ipv6")
          .eq("eth_src", mac)
          .eq("ipv6_src", LINK_LOCAL[0], LINK_LOCAL[1]),
      );
      pass(ps(PORTSEC_PRIORITY.bootstrap).proto("icmp6").eq("eth_src", mac).eq("ipv6_src", "::"));

      const pairs: { mac: string; ip: string }[] = p.fixedIps.map((f) => ({ mac, ip: f.ipAddress }));
      for (const a of p.allowedAddressPairs) pairs.push({ mac: a.macAddress ?? mac, ip: a.ipAddress });
      // The IPv6 sources (and neighbour advertisement targets) of each MAC the port may send from.
      const v6 = new Map<string, Masked[]>([[mac, [LINK_LOCAL]]]);
      for (const { mac: m, ip } of pairs) {
        const [addr, len] = ip.split("/") as [string, string | undefined];
        if (!isIpv4(addr)) {
          pass(
            ps(PORTSEC_PRIORITY.allow)
              .proto("ipv6")
              .eq("eth_src", m)
              .eq("ipv6_src", addr, ...ipv6Mask(len)),
          );
          v6.set(m, [...(v6.get(m) ?? []), [addr, ...ipv6Mask(len)]]);
          continue;
        }
        pass(
          ps(PORTSEC_PRIORITY.allow)
            .proto("ip")
            .eq("eth_src", m)
            .eq("ip_src", addr, ...ipv4Mask(len)),
        );
        pass(
          ps(PORTSEC_PRIORITY.allow)
            .proto("arp")
            .eq("eth_src", m)
            .eq("arp_spa", addr, ...ipv4Mask(len))
            .eq("arp_sha", m),
        );
      }
      const nd = (type: number, m: string): FlowBuilder =>
        ps(PORTSEC_PRIORITY.neighbour)
          .proto("icmp6")
          .eq("icmpv6_type", type)
          .eq("icmpv6_code", 0)
          .eq("eth_src", m);
      for (const [m, sources] of v6) {
        pass(nd(ND_NS, m).eq("ipv6_src", "::").eq("nd_sll", MAC_ZERO));
        for (const src of sources) {
          for (const ll of [m, MAC_ZERO]) {
            pass(nd(ND_NS, m).eq("ipv6_src", src[0], src[1]).eq("nd_sll", ll));
            for (const target of sources)
              pass(
                nd(ND_NA, m)
                  .eq("ipv6_src", src[0], src[1])
                  .eq("nd_target", target[0], target[1])
                  .eq("nd_tll", ll),
              );
          }
        }
      }
      for (const type of [ND_NS, ND_NA])
        out.flow(ps(PORTSEC_PRIORITY.neighbourDrop).proto("icmp6").eq("icmpv6_type", type));
    },
  },
};

/** The mask argument for an allowed address pair given as a CIDR (none for a single address). */
function ipv4Mask(len: string | undefined): [] | [string] {
  const n = len === undefined ? 32 : Number(len);
  if (n >= 32) return [];
  const m = n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
  return [[m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join(".")];
}

function ipv6Mask(len: string | undefined): [] | [string] {
  const n = len === undefined ? 128 : Number(len);
  if (n >= 128) return [];
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, n - 16 * i));
    groups.push(((0xffff << (16 - bits)) & 0xffff).toString(16));
  }
  return [groups.join(":")];
}
