/**
 * classifier: the first table. A packet from a local VM port gets its
 * network key (reg6) and ingress port (reg5) and goes on to port security; a
 * port that is administratively down has no flow, so its packets hit the
 * table's drop miss. Tunnel ingress is the tunnel app's part of this table.
 */
import type { App, FlowSpec } from "./types.js";
import { REG } from "../controller/pipeline.js";
import { hex, t } from "./flowtext.js";

export const classifierApp: App = {
  name: "classifier",
  flows(view) {
    const out: FlowSpec[] = [];
    for (const nv of view.networks.values()) {
      for (const lp of nv.localPorts) {
        if (!lp.port.adminStateUp || !nv.network.adminStateUp) continue;
        out.push({
          key: lp.id,
          flow:
            `table=${t("classification")},priority=100,in_port=${lp.ofport},` +
            `actions=set_field:${hex(nv.key)}->${REG.network},set_field:${hex(lp.ofport)}->${REG.inPort},` +
            `goto_table:${t("port_security")}`,
        });
      }
    }
    return out;
  },
};
