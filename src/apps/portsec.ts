/**
 * portsec: anti-spoofing at the door of every local port (port_security
 * table). Owner: each local port. A port with port security on may send
 * only from its MAC and its fixed IPs or allowed address pairs (ARP
 * included: sender hardware and protocol address must match), plus a DHCP
 * DISCOVER/REQUEST from 0.0.0.0, IPv6 link-local and the unspecified-source
 * ICMPv6 of DAD; everything else hits the table's drop miss. No VM may
 * answer as a DHCP server (udp source port 67), whatever its allowed
 * addresses — that drop sits above every allow. A port with port security
 * off, or on a network with port security off, passes untouched (a tenant
 * DHCP server needs that).
 */
import type { App } from "./types.js";
import { flow, type FlowBuilder } from "../datapath/index.js";
import { isIpv4 } from "../packet/addr.js";

export const PORTSEC_PRIORITY = { dhcpServerDrop: 100, bootstrap: 90, allow: 80, open: 50 } as const;

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
      out.flow(ps(PORTSEC_PRIORITY.dhcpServerDrop).proto("udp").eq("udp_src", 67));
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
          .eq("ipv6_src", "fe80::", "ffff:ffff:ffff:ffff::"),
      );
      pass(ps(PORTSEC_PRIORITY.bootstrap).proto("icmp6").eq("eth_src", mac).eq("ipv6_src", "::"));
      const pairs: { mac: string; ip: string }[] = p.fixedIps.map((f) => ({ mac, ip: f.ipAddress }));
      for (const a of p.allowedAddressPairs) pairs.push({ mac: a.macAddress ?? mac, ip: a.ipAddress });
      for (const { mac: m, ip } of pairs) {
        const [addr, len] = ip.split("/") as [string, string | undefined];
        if (!isIpv4(addr)) {
          pass(
            ps(PORTSEC_PRIORITY.allow)
              .proto("ipv6")
              .eq("eth_src", m)
              .eq("ipv6_src", addr, ...ipv6Mask(len)),
          );
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
