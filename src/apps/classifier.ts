/**
 * classifier: the first table, for packets from local VM ports. Owner: each
 * local port. A packet from a VM gets its network key and ingress port
 * (registers `network`, `inPort`) and goes on to port security; a port or
 * network that is administratively down has no flow, so its packets hit
 * the table's drop miss. Tunnel and provider ingress are the tunnel and
 * provider apps' part of this table.
 */
import type { App } from "./types.js";
import { F, flow } from "../datapath/index.js";

export const classifierApp: App = {
  name: "classifier",
  tables: ["classification"],
  owners: {
    port(id, view, out) {
      const lp = view.localPort(id);
      if (!lp) return;
      const nv = view.network(lp.networkId);
      if (!nv || !lp.port.adminStateUp || !nv.network.adminStateUp) return;
      out.flow(
        flow("classification", 100)
          .inPort(lp.ofport)
          .load(F.network, nv.key)
          .load(F.inPort, lp.ofport)
          .goto("port_security"),
      );
    },
  },
};
