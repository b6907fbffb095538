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
 * Remote MACs are where the two modes differ (`l2.mode`). `proactive`, the
 * default: every port on another live chassis of a network wired here has
 * its l2_lookup flow ahead of time — a flow per remote port, on every
 * chassis of the network. `reactive` (Dragonflow's hybrid model carried down
 * to L2): on a tunnelled network, a unicast frame to a MAC with no flow here
 * that did not come from a tunnel goes to the local agent, which installs
 * that one remote port's flow on this host only (idle timeout, flow_removed;
 * removed when the port, its binding or its chassis changes) and sends the
 * frame on from l2_lookup, as it was and with its registers: a frame the
 * router or NAT rewrote before the lookup goes on rewritten. A MAC that is
 * no port on another live chassis goes on to l2_flood, as unknown unicast. A
 * switch then holds flows for the remote ports its VMs talk to, not for
 * every port of its networks. Provider networks stay proactive.
 *
 * Owners: each port (its unicast flows; in reactive mode remote ports have
 * none), each network (its flood set; its punt in reactive mode), and
 * reactive owners `l2/reactive/<network key>/<MAC>`.
 * The flood set is emitted in chunks of FLOOD_CHUNK copies, one l2_flood
 * flow per chunk chained by the floodChunk register, so a network with
 * thousands of ports never needs one action list larger than an OpenFlow
 * message (64 KiB) can carry.
 * The router's interface MACs on the network are L3's; frames to them wait
 * for the l3 app and meanwhile flood like unknown unicast.
 */
import type { Action } from "../openflow/actions.js";
import type { Flow } from "../openflow/flow.js";
import { sameFlow } from "../openflow/text.js";
import type { App, ReadyPort, View } from "./types.js";
import { F, FLAG, flow, regName, table, type FlowBuilder } from "../datapath/index.js";
import { ipv4ToU32 } from "../packet/addr.js";
import { parseEthernet } from "../packet/frame.js";

export type L2Mode = "proactive" | "reactive";

export interface L2AppOptions {
  mode?: L2Mode;
  /** Idle timeout of a reactive remote-port flow, seconds (default 300; 0: none). */
  idleTimeoutS?: number;
}

/** Priority of the reactive mode's punt: above the flood, below every known MAC. */
export const L2_PUNT_PRIORITY = 60;

/** Copies per l2_flood flow. */
export const FLOOD_CHUNK = 128;

/** The l2_lookup flow of a port on another chassis, on a network wired here; undefined otherwise. */
function remoteFlow(view: View, id: string): FlowBuilder | undefined {
  const rp = view.remotePort(id);
  if (!rp) return undefined;
  const nv = view.network(rp.port.networkId);
  if (!nv) return undefined;
  const b = flow("l2_lookup", 100).reg(F.network, nv.key).eq("eth_dst", rp.port.macAddress);
  // The physical network knows where the other chassis' ports are: hand it everything not local.
  if (nv.provider) return b.goto("egress_provider");
  return b.load(F.remoteChassis, ipv4ToU32(rp.tunnelIp)).goto("egress_tunnel");
}

/**
 * Whether a network's remote ports are learned on demand here (their L2 flows
 * by l2, their addresses answered by arp's handler): reactive mode, a
 * tunnelled network.
 */
export function reactiveNetwork(mode: L2Mode, view: View, networkId: string): boolean {
  return mode === "reactive" && view.network(networkId)?.provider === undefined;
}

/** The NB port of a network with this MAC (untracked: for the packet-in handler and adoption). */
function portWithMac(view: View, networkId: string, mac: string): ReadyPort | undefined {
  return view.portsOnNetwork(networkId).find((p) => p.macAddress === mac);
}

function reactiveKey(networkKey: number, mac: string): string {
  return `${networkKey}/${mac}`;
}

export function l2App(opts: L2AppOptions = {}): App {
  const mode = opts.mode ?? "proactive";
  const idle = opts.idleTimeoutS ?? 300;
  const reactiveFlow = (b: FlowBuilder): FlowBuilder => b.idleTimeout(idle).sendFlowRemoved();

  return {
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
        const p = view.port(id);
        if (p && reactiveNetwork(mode, view, p.networkId)) return;
        const b = remoteFlow(view, id);
        if (b) out.flow(b);
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
        if (reactiveNetwork(mode, view, id)) {
          out.flow(
            flow("l2_lookup", L2_PUNT_PRIORITY)
              .reg(F.network, nv.key)
              .flag(FLAG.fromTunnel, false)
              .eq("eth_dst", "00:00:00:00:00:00", "01:00:00:00:00:00")
              .controller(),
          );
        }
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
    async packetIn(pkt, ctx) {
      const key = Number(pkt.fields?.get(regName(F.network)) ?? 0);
      const nv = ctx.view.networkByKey(key);
      if (!nv) return;
      const mac = parseEthernet(pkt.data).eth.dst;
      const candidate = portWithMac(ctx.view, nv.id, mac);
      const { result: b, deps } = ctx.track(() => {
        if (!candidate || !reactiveNetwork(mode, ctx.view, nv.id)) return undefined;
        const again = ctx.view.port(candidate.id);
        return again?.macAddress === mac ? remoteFlow(ctx.view, candidate.id) : undefined;
      });
      if (!b) {
        // Not a port on another live chassis: unknown unicast, flooded as in proactive mode.
        await ctx.continueAt("l2_flood", pkt, new Map([[F.floodChunk, 0]]));
        return;
      }
      await ctx.installReactive({ key: reactiveKey(key, mac), flows: [reactiveFlow(b)], deps });
      await ctx.continueAt("l2_lookup", pkt);
    },
    adoptReactive(installed, ctx) {
      const at = (field: string) => installed.match.find((m) => m.field === field)?.value;
      const key = Number(at(regName(F.network)));
      const mac = String(at("eth_dst"));
      const nv = ctx.view.networkByKey(key);
      const candidate = nv && portWithMac(ctx.view, nv.id, mac);
      if (!nv || !candidate) return undefined;
      const { result: b, deps } = ctx.track(() =>
        reactiveNetwork(mode, ctx.view, nv.id) && ctx.view.port(candidate.id)?.macAddress === mac
          ? remoteFlow(ctx.view, candidate.id)
          : undefined,
      );
      if (!b) return undefined;
      const want: Flow = reactiveFlow(b).build(installed.cookie);
      return sameFlow(want, installed) ? { key: reactiveKey(key, mac), deps } : undefined;
    },
  };
}
