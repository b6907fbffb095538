/**
 * l2: switching inside one network (l2_lookup and local_delivery tables).
 *
 *   known local MAC   → reg7 = its ofport → egress security → local delivery
 *   known remote MAC  → reg8 = tunnel IP of its chassis → egress_tunnel
 *   anything else (broadcast, multicast, unknown unicast) → every local port
 *                       of the network (OVS never sends a packet back out its
 *                       in_port) and every remote chassis hosting ports of the
 *                       network; egress_tunnel drops the copies of a packet
 *                       that itself came from a tunnel (split horizon).
 * On a provider (vlan/flat) network, what is not local goes to the physical
 * network (egress_provider) instead of a tunnel.
 * The router's interface MACs on the network are L3's; frames to them wait
 * for the l3 app and meanwhile flood like unknown unicast.
 */
import type { App, FlowSpec } from "./types.js";
import { REG } from "../controller/pipeline.js";
import { hex, ipv4ToHex, t } from "./flowtext.js";

export const l2App: App = {
  name: "l2",
  flows(view) {
    const out: FlowSpec[] = [];
    const l2 = t("l2_lookup");
    const egress = t("egress_secgroup");
    for (const nv of view.networks.values()) {
      const net = `${REG.network}=${hex(nv.key)}`;
      const flood: string[] = [];
      for (const lp of nv.localPorts) {
        out.push({
          key: lp.id,
          flow: `table=${l2},priority=100,${net},dl_dst=${lp.port.macAddress},actions=set_field:${hex(lp.ofport)}->${REG.outPort},goto_table:${egress}`,
        });
        out.push({
          key: lp.id,
          flow: `table=${t("local_delivery")},priority=100,${REG.outPort}=${hex(lp.ofport)},actions=output:${lp.ofport}`,
        });
        flood.push(`set_field:${hex(lp.ofport)}->${REG.outPort},resubmit(,${egress})`);
      }
      if (nv.provider) {
        // The physical network knows where the other chassis' ports are: hand it everything not local.
        for (const rp of nv.remotePorts) {
          out.push({
            key: rp.id,
            flow: `table=${l2},priority=100,${net},dl_dst=${rp.port.macAddress},actions=goto_table:${t("egress_provider")}`,
          });
        }
        flood.push(`resubmit(,${t("egress_provider")})`);
        out.push({ key: nv.id, flow: `table=${l2},priority=50,${net},actions=${flood.join(",")}` });
        continue;
      }
      for (const rp of nv.remotePorts) {
        out.push({
          key: rp.id,
          flow: `table=${l2},priority=100,${net},dl_dst=${rp.port.macAddress},actions=set_field:${ipv4ToHex(rp.tunnelIp)}->${REG.remoteChassis},goto_table:${t("egress_tunnel")}`,
        });
      }
      for (const ip of [...new Set(nv.remoteChassis.values())].sort()) {
        flood.push(`set_field:${ipv4ToHex(ip)}->${REG.remoteChassis},resubmit(,${t("egress_tunnel")})`);
      }
      if (flood.length > 0) {
        out.push({ key: nv.id, flow: `table=${l2},priority=50,${net},actions=${flood.join(",")}` });
      }
    }
    return out;
  },
};
