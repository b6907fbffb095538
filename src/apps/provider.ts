/**
 * provider: VLAN and flat provider networks, reached through a patch port
 * from br-int to the bridge the physical network is mapped to (the agent's
 * `bridgeMappings`, e.g. physnet1 → br-ex, as in Neutron and OVN).
 *
 *   classification   in_port=<patch>, dl_vlan=<vid>   → pop_vlan, reg6 = network,
 *                    (flat: untagged)                    reg0 bit 1 → l2_lookup
 *   egress_provider  reg6 = network, not from the physical network
 *                    → push_vlan + vlan_vid (vlan) → out the patch port
 * The physical bridge itself is the operator's (uplink, normal switching);
 * the agent only plugs br-int into it.
 */
import type { App, FlowSpec } from "./types.js";
import { FLAG_FROM_PROVIDER, REG } from "../controller/pipeline.js";
import { hex, t } from "./flowtext.js";

const OFPVID_PRESENT = 0x1000;

export const providerApp: App = {
  name: "provider",
  flows(view) {
    const out: FlowSpec[] = [];
    for (const nv of view.networks.values()) {
      const p = nv.provider;
      if (!p) continue;
      const inMatch = p.vlan !== undefined ? `dl_vlan=${p.vlan}` : "vlan_tci=0x0000/0x1fff";
      const pop = p.vlan !== undefined ? "pop_vlan," : "";
      out.push({
        key: nv.id,
        flow:
          `table=${t("classification")},priority=100,in_port=${p.patchOfport},${inMatch},` +
          `actions=${pop}set_field:${hex(nv.key)}->${REG.network},` +
          `set_field:${hex(FLAG_FROM_PROVIDER)}->${REG.flags},goto_table:${t("l2_lookup")}`,
      });
      const push =
        p.vlan !== undefined ? `push_vlan:0x8100,set_field:${OFPVID_PRESENT | p.vlan}->vlan_vid,` : "";
      out.push({
        key: nv.id,
        flow:
          `table=${t("egress_provider")},priority=100,${REG.network}=${hex(nv.key)},` +
          `${REG.flags}=0/${hex(FLAG_FROM_PROVIDER)},actions=${push}output:${p.patchOfport}`,
      });
    }
    return out;
  },
};
