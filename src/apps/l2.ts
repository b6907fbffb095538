/**
 * l2: switching inside one network (l2_lookup, l2_flood, local_delivery).
 *
 *   known local MAC   → outPort = its ofport → egress security → local delivery
 *   known remote MAC  → remoteChassis = tunnel IP of its chassis → egress_tunnel
 *   anything else (broadcast, multicast, unknown unicast) → l2_flood: a copy
 *                       to every local port of the network (OVS never sends a
 *                       packet back out its in_port) and to every remote
 *                       chassis hosting ports of the network; egress_tunnel
 *                       drops the copies of a packet that itself came from a
 *                       tunnel (split horizon).
 * On a provider (vlan/flat) network, what is not local goes to the physical
 * network (egress_provider) instead of a tunnel.
 *
 * Owners: each port (its unicast flows) and each network (its flood set).
 * The flood set is emitted in chunks of FLOOD_CHUNK copies, one l2_flood
 * flow per chunk chained by the floodChunk register, so a network with
 * thousands of ports never needs one action list larger than an OpenFlow
 * message (64 KiB) can carry.
 * The router's interface MACs on the network are L3's; frames to them wait
 * for the l3 app and meanwhile flood like unknown unicast.
 */
import type { Action } from "../openflow/actions.js";
import type { App } from "./types.js";
import { F, flow, regName, table } from "../datapath/index.js";
import { ipv4ToU32 } from "../packet/addr.js";

/** Copies per l2_flood flow. */
export const FLOOD_CHUNK = 128;

export const l2App: App = {
  name: "l2",
  tables: ["l2_lookup", "l2_flood", "local_delivery"],
  owners: {
    port(id, view, out) {
      const lp = view.localPort(id);
      if (lp) {
        const nv = view.network(lp.networkId);
        if (!nv) return;
        out.flow(
          flow("l2_lookup", 100)
            .reg(F.network, nv.key)
            .eq("eth_dst", lp.port.macAddress)
            .load(F.outPort, lp.ofport)
            .goto("egress_secgroup"),
        );
        out.flow(flow("local_delivery", 100).reg(F.outPort, lp.ofport).output(lp.ofport));
        return;
      }
      const rp = view.remotePort(id);
      if (!rp) return;
      const nv = view.network(rp.port.networkId);
      if (!nv) return;
      const b = flow("l2_lookup", 100).reg(F.network, nv.key).eq("eth_dst", rp.port.macAddress);
      // The physical network knows where the other chassis' ports are: hand it everything not local.
      if (nv.provider) out.flow(b.goto("egress_provider"));
      else out.flow(b.load(F.remoteChassis, ipv4ToU32(rp.tunnelIp)).goto("egress_tunnel"));
    },
    network(id, view, out) {
      const nv = view.network(id);
      if (!nv) return;
      const copies: Action[][] = view.localPortsOf(id).map((lp) => [
        { type: "set_field", field: regName(F.outPort), value: lp.ofport },
        { type: "resubmit", table: table("egress_secgroup") },
      ]);
      if (nv.provider) copies.push([{ type: "resubmit", table: table("egress_provider") }]);
      else {
        for (const ip of view.remoteChassisOf(id).values()) {
          copies.push([
            { type: "set_field", field: regName(F.remoteChassis), value: ipv4ToU32(ip) },
            { type: "resubmit", table: table("egress_tunnel") },
          ]);
        }
      }
      if (copies.length === 0) return;
      out.flow(flow("l2_lookup", 50).reg(F.network, nv.key).goto("l2_flood"));
      for (let chunk = 0; chunk * FLOOD_CHUNK < copies.length; chunk++) {
        const b = flow("l2_flood", 100).reg(F.network, nv.key).reg(F.floodChunk, chunk);
        for (const c of copies.slice(chunk * FLOOD_CHUNK, (chunk + 1) * FLOOD_CHUNK))
          for (const a of c) b.action(a);
        if ((chunk + 1) * FLOOD_CHUNK < copies.length) b.load(F.floodChunk, chunk + 1).resubmit("l2_flood");
        out.flow(b);
      }
    },
  },
};
