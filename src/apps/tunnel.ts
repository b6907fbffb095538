/**
 * tunnel: the overlay between chassis, over one flow-based tunnel port per
 * encapsulation (remote_ip=flow, key=flow), so that chassis coming and going
 * change flows, never OVS ports. Owner: each tunnelled network wired here.
 *
 *   classification  in_port=<tunnel port>, tun_id=<segmentation id>
 *                   → network = key, flags = fromTunnel → l2_lookup
 *   egress_tunnel   network = key, not from a tunnel
 *                   → tun_dst = remoteChassis, tun_id = key → tunnel port
 * The flags register is written whole at classification (it is still zero
 * there): a masked write would be a register merge the NIC cannot offload.
 * Only networks with local ports get flows: a chassis without ports on a
 * network neither sends nor accepts its traffic.
 */
import type { App } from "./types.js";
import { F, FLAG, flow } from "../datapath/index.js";

export const tunnelApp: App = {
  name: "tunnel",
  tables: ["classification", "egress_tunnel"],
  owners: {
    network(id, view, out) {
      const nv = view.network(id);
      if (!nv?.encap) return;
      const ofport = view.tunnelPort(nv.encap);
      if (ofport === undefined) return;
      out.flow(
        flow("classification", 100)
          .inPort(ofport)
          .eq("tun_id", nv.key)
          .load(F.network, nv.key)
          .load(F.flags, FLAG.fromTunnel)
          .goto("l2_lookup"),
      );
      out.flow(
        flow("egress_tunnel", 100)
          .reg(F.network, nv.key)
          .flag(FLAG.fromTunnel, false)
          .move(F.remoteChassis, "tun_dst")
          .set("tun_id", nv.key)
          .output(ofport),
      );
    },
  },
};
