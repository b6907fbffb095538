/**
 * tunnel: the overlay between chassis, over one flow-based tunnel port per
 * encapsulation (remote_ip=flow, key=flow), so that chassis coming and going
 * change flows, never OVS ports.
 *
 *   classification  in_port=<tunnel port>, tun_id=<segmentation id>
 *                   → reg6 = network, reg0 bit 0 (from a tunnel) → l2_lookup
 *   egress_tunnel   reg6 = network, not from a tunnel
 *                   → tun_dst = reg8, tun_id = segmentation id → tunnel port
 * reg0 is written whole at classification (it is still zero there): a masked
 * write would be a register merge the NIC cannot offload.
 * Only networks with local ports get flows: a chassis without ports on a
 * network neither sends nor accepts its traffic.
 */
import type { App, FlowSpec } from "./types.js";
import { FLAG_FROM_TUNNEL, REG } from "../controller/pipeline.js";
import { hex, t } from "./flowtext.js";

export const tunnelApp: App = {
  name: "tunnel",
  flows(view) {
    const out: FlowSpec[] = [];
    for (const nv of view.networks.values()) {
      if (!nv.encap) continue;
      const ofport = view.tunnelPorts[nv.encap];
      if (ofport === undefined) continue;
      out.push({
        key: nv.id,
        flow:
          `table=${t("classification")},priority=100,in_port=${ofport},tun_id=${hex(nv.key)},` +
          `actions=set_field:${hex(nv.key)}->${REG.network},` +
          `set_field:${hex(FLAG_FROM_TUNNEL)}->${REG.flags},goto_table:${t("l2_lookup")}`,
      });
      out.push({
        key: nv.id,
        flow:
          `table=${t("egress_tunnel")},priority=100,${REG.network}=${hex(nv.key)},` +
          `${REG.flags}=0/${hex(FLAG_FROM_TUNNEL)},` +
          `actions=move:NXM_NX_${REG.remoteChassis.toUpperCase()}[]->NXM_NX_TUN_IPV4_DST[],` +
          `set_field:${hex(nv.key)}->tun_id,output:${ofport}`,
      });
    }
    return out;
  },
};
