/**
 * arp: ARP requests for addresses the NB knows on a network — VMs on this
 * chassis and elsewhere, router interfaces — are answered by OVS itself in the
 * arp_responder table: the request is turned into the reply in place (swap
 * Ethernet addresses, op 2, sender ← the known MAC/IP, target ← the asker)
 * and sent back out its in_port, so no ARP crosses a tunnel and none reaches
 * the agent. A port asking about its own address (a duplicate-address probe)
 * is not answered: it goes on as a normal broadcast.
 *
 * IPv6 neighbour solicitations for known addresses are the equivalent; they
 * need an ICMPv6 checksum and an option rewrite OVS flows cannot express, so
 * they are punted to the agent (metered like DHCP) and answered there.
 */
import type { App, FlowSpec } from "./types.js";
import { REG } from "../controller/pipeline.js";
import { buildNeighborAdvertisement } from "../packet/builders.js";
import { parseEthernet } from "../packet/frame.js";
import { canonicalIpv6 } from "../packet/addr.js";
import { hex, isV4, portIps, t } from "./flowtext.js";

interface Known {
  key: string;
  ip: string;
  mac: string;
  ownerOfport?: number;
}

function knownAddresses(nv: import("./types.js").NetworkView): Known[] {
  const out: Known[] = [];
  for (const lp of nv.localPorts) {
    for (const ip of [...portIps(lp.port).v4, ...portIps(lp.port).v6]) {
      out.push({ key: lp.id, ip, mac: lp.port.macAddress, ownerOfport: lp.ofport });
    }
  }
  for (const rp of nv.remotePorts) {
    for (const ip of [...portIps(rp.port).v4, ...portIps(rp.port).v6]) {
      out.push({ key: rp.id, ip, mac: rp.port.macAddress });
    }
  }
  for (const r of nv.routerPorts)
    out.push({ key: `${r.routerId}/${r.subnetId}`, ip: r.ipAddress, mac: r.macAddress });
  return out;
}

export const arpApp: App = {
  name: "arp",
  flows(view) {
    const out: FlowSpec[] = [];
    const tbl = t("arp_responder");
    for (const nv of view.networks.values()) {
      const net = `${REG.network}=${hex(nv.key)}`;
      for (const k of knownAddresses(nv)) {
        if (isV4(k.ip)) {
          if (k.ownerOfport !== undefined) {
            out.push({
              key: k.key,
              flow: `table=${tbl},priority=110,arp,${net},in_port=${k.ownerOfport},arp_op=1,arp_tpa=${k.ip},actions=goto_table:${t("l3")}`,
            });
          }
          out.push({
            key: k.key,
            flow:
              `table=${tbl},priority=100,arp,${net},arp_op=1,arp_tpa=${k.ip},` +
              `actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:${k.mac}->eth_src,` +
              `set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],` +
              `move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:${k.mac}->arp_sha,` +
              `set_field:${k.ip}->arp_spa,IN_PORT`,
          });
        } else {
          if (k.ownerOfport !== undefined) {
            // The owner's own duplicate-address detection must go unanswered.
            out.push({
              key: k.key,
              flow: `table=${tbl},priority=110,icmp6,${net},in_port=${k.ownerOfport},icmp_type=135,nd_target=${k.ip},actions=goto_table:${t("l3")}`,
            });
          }
          out.push({
            key: k.key,
            flow: `table=${tbl},priority=100,icmp6,${net},icmp_type=135,nd_target=${k.ip},actions=controller(max_len=65535)`,
          });
        }
      }
    }
    return out;
  },
  async packetIn(pkt, ctx) {
    const f = parseEthernet(pkt.data);
    const nd = f.icmpv6?.ndp;
    if (!f.ipv6 || nd?.kind !== "neighbor-solicitation") return;
    const view = ctx.view();
    const target = canonicalIpv6(nd.target);
    for (const nv of view.networks.values()) {
      const hit = knownAddresses(nv).find((k) => !isV4(k.ip) && canonicalIpv6(k.ip) === target);
      if (!hit || !nv.localPorts.some((lp) => lp.ofport === pkt.inPort)) continue;
      const frame = buildNeighborAdvertisement({
        mac: hit.mac,
        target,
        toMac: f.eth.src,
        toIp: f.ipv6.src === "::" ? undefined : f.ipv6.src,
        router: nv.routerPorts.some((r) => r.macAddress === hit.mac),
      });
      await ctx.packetOut(pkt.inPort, frame);
      return;
    }
  },
};
