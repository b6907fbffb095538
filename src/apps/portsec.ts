/**
 * portsec: anti-spoofing at the door of every local port (port_security
 * table). A port with port security on may send only from its MAC and its
 * fixed IPs or allowed address pairs (ARP included: sender hardware and
 * protocol address must match), plus a DHCP DISCOVER/REQUEST from 0.0.0.0,
 * IPv6 link-local and the unspecified-source ICMPv6 of DAD; everything else
 * hits the table's drop miss. No VM may answer as a DHCP server (udp source
 * port 67), whatever its security settings — a tenant DHCP server needs port
 * security off. A port with port security off passes untouched.
 */
import type { App, FlowSpec } from "./types.js";
import { t } from "./flowtext.js";

const NEXT = (): string => `goto_table:${t("ingress_secgroup")}`;

export const portsecApp: App = {
  name: "portsec",
  flows(view) {
    const out: FlowSpec[] = [];
    const ps = t("port_security");
    for (const lp of view.localPorts.values()) {
      const p = lp.port;
      const add = (flow: string): void => {
        out.push({ key: lp.id, flow: `table=${ps},${flow}` });
      };
      const net = view.networks.get(lp.networkId);
      const enabled = p.portSecurityEnabled && (net?.network.portSecurityEnabled ?? true);
      if (!enabled) {
        add(`priority=50,in_port=${lp.ofport},actions=${NEXT()}`);
        continue;
      }
      add(`priority=100,udp,in_port=${lp.ofport},tp_src=67,actions=drop`);
      const mac = p.macAddress;
      add(
        `priority=90,udp,in_port=${lp.ofport},dl_src=${mac},nw_src=0.0.0.0,nw_dst=255.255.255.255,` +
          `tp_src=68,tp_dst=67,actions=${NEXT()}`,
      );
      add(
        `priority=90,arp,in_port=${lp.ofport},dl_src=${mac},arp_spa=0.0.0.0,arp_sha=${mac},actions=${NEXT()}`,
      );
      add(`priority=90,ipv6,in_port=${lp.ofport},dl_src=${mac},ipv6_src=fe80::/64,actions=${NEXT()}`);
      add(`priority=90,icmp6,in_port=${lp.ofport},dl_src=${mac},ipv6_src=::,actions=${NEXT()}`);
      const pairs: { mac: string; ip: string }[] = p.fixedIps.map((f) => ({ mac, ip: f.ipAddress }));
      for (const a of p.allowedAddressPairs) pairs.push({ mac: a.macAddress ?? mac, ip: a.ipAddress });
      for (const { mac: m, ip } of pairs) {
        if (ip.includes(":")) {
          add(`priority=80,ipv6,in_port=${lp.ofport},dl_src=${m},ipv6_src=${ip},actions=${NEXT()}`);
        } else {
          add(`priority=80,ip,in_port=${lp.ofport},dl_src=${m},nw_src=${ip},actions=${NEXT()}`);
          add(
            `priority=80,arp,in_port=${lp.ofport},dl_src=${m},arp_spa=${ip},arp_sha=${m},actions=${NEXT()}`,
          );
        }
      }
    }
    return out;
  },
};
