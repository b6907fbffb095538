/**
 * provider: VLAN and flat provider networks, reached through a patch port
 * from br-int to the bridge the physical network is mapped to (the agent's
 * `bridgeMappings`, e.g. physnet1 → br-ex, as in Neutron and OVN). Owner:
 * each provider network wired here.
 *
 *   classification   in_port=<patch>, dl_vlan=<vid>   → pop_vlan, network = key,
 *                    (flat: untagged)                    flags = fromProvider → l2_lookup
 *   egress_provider  network = key, not from the physical network
 *                    → push_vlan + vlan_vid (vlan) → out the patch port
 * The physical bridge itself is the operator's (uplink, normal switching);
 * the agent only plugs br-int into it.
 */
import type { App } from "./types.js";
import { F, FLAG, flow } from "../datapath/index.js";

const OFPVID_PRESENT = 0x1000;

export const providerApp: App = {
  name: "provider",
  tables: ["classification", "egress_provider"],
  owners: {
    network(id, view, out) {
      const nv = view.network(id);
      const p = nv?.provider;
      if (!nv || !p) return;
      const ingress = flow("classification", 100).inPort(p.patchOfport);
      if (p.vlan !== undefined) ingress.eq("vlan_vid", OFPVID_PRESENT | p.vlan).popVlan();
      else ingress.eq("vlan_vid", 0);
      out.flow(ingress.load(F.network, nv.key).load(F.flags, FLAG.fromProvider).goto("l2_lookup"));
      const egress = flow("egress_provider", 100).reg(F.network, nv.key).flag(FLAG.fromProvider, false);
      if (p.vlan !== undefined) egress.pushVlan(p.vlan);
      out.flow(egress.output(p.patchOfport));
    },
  },
};
