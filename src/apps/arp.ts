/**
 * arp: ARP requests for addresses the NB knows on a network — VMs on this
 * chassis and elsewhere, router interfaces — are answered by OVS itself in
 * the arp_responder table: the request is turned into the reply in place
 * (swap Ethernet addresses, op 2, sender ← the known MAC/IP, target ← the
 * asker) and sent back out its in_port, so no ARP crosses a tunnel and none
 * reaches the agent. A port asking about its own address (a duplicate
 * address probe) is not answered: it goes on as a normal broadcast.
 *
 * Owners: each port (its own addresses, on a network wired here, when the
 * port is local or — in proactive mode — on another live chassis), each
 * router (its interface addresses on wired networks) and, in reactive mode,
 * each tunnelled network (its punt).
 *
 * With `l2.mode: reactive` (see l2.ts) the addresses of ports on other
 * chassis get no flows on a tunnelled network: an ARP request or neighbour
 * solicitation from a local VM that no flow answers goes to the local agent,
 * which answers it when the address is a port's on another live chassis and
 * otherwise sends it on from l2_lookup (a broadcast, flooded as before). An
 * answer costs a packet-in, once per neighbour entry of the asking VM; the
 * unicast traffic that follows is l2's business.
 *
 * IPv6 neighbour solicitations for known addresses are the equivalent; they
 * need an ICMPv6 checksum and an option rewrite OVS flows cannot express, so
 * they are punted to the agent and answered there (a port's own DAD again
 * goes on unanswered). These punts are not metered per port; the host-wide
 * punt budget bounds them. A router leg with an IPv6 address also answers
 * for its link-local address (fe80:: + the modified EUI-64 of its MAC): that
 * is the address router advertisements come from, the one hosts install as
 * their default router and probe for reachability.
 */
import type { App, OwnerOut, View } from "./types.js";
import { reactiveNetwork, type L2AppOptions } from "./l2.js";
import { F, FLAG, flow, regName, type FlowBuilder } from "../datapath/index.js";
import { ARP_OP } from "../packet/constants.js";
import { canonicalIpv6, isIpv4 } from "../packet/addr.js";
import { buildArpReply, buildNeighborAdvertisement } from "../packet/builders.js";
import { parseEthernet } from "../packet/frame.js";
import { linkLocalFromMac } from "../packet/ndp.js";

/**
 * The ARP request `b` matches turned into the answer for `ip` at `mac` in
 * place — Ethernet addresses swapped, op 2, sender ← mac/ip, target ← the
 * asker — and sent back out of its in_port.
 */
export function replyInPlace(b: FlowBuilder, ip: string, mac: string): FlowBuilder {
  return b
    .move("eth_src", "eth_dst")
    .set("eth_src", mac)
    .set("arp_op", ARP_OP.REPLY)
    .move("arp_sha", "arp_tha")
    .move("arp_spa", "arp_tpa")
    .set("arp_sha", mac)
    .set("arp_spa", ip)
    .outputInPort();
}

function answer(out: OwnerOut, key: number, ip: string, mac: string): void {
  if (!isIpv4(ip)) {
    out.flow(
      flow("arp_responder", 100)
        .proto("icmp6")
        .reg(F.network, key)
        .eq("icmpv6_type", 135)
        .eq("nd_target", ip)
        .controller(),
    );
    return;
  }
  {
    out.flow(
      replyInPlace(
        flow("arp_responder", 100).proto("arp").reg(F.network, key).eq("arp_op", 1).eq("arp_tpa", ip),
        ip,
        mac,
      ),
    );
  }
}

/** Priority of the reactive mode's punts: below every answer. */
export const ARP_PUNT_PRIORITY = 50;

/** Who owns `target` on a network, for a neighbour solicitation. */
function knownV6(
  view: View,
  networkId: string,
  target: string,
): { mac: string; router: boolean } | undefined {
  for (const r of view.routerPortsOf(networkId)) {
    if (isIpv4(r.ipAddress)) continue;
    if (canonicalIpv6(r.ipAddress) === target || canonicalIpv6(linkLocalFromMac(r.macAddress)) === target)
      return { mac: r.macAddress, router: true };
  }
  for (const p of view.portsOnNetwork(networkId)) {
    if (!view.localPort(p.id) && !view.remotePort(p.id)) continue;
    if (p.fixedIps.some((f) => !isIpv4(f.ipAddress) && canonicalIpv6(f.ipAddress) === target)) {
      return { mac: p.macAddress, router: false };
    }
  }
  return undefined;
}

export function arpApp(opts: L2AppOptions = {}): App {
  const mode = opts.mode ?? "proactive";
  return {
    name: "arp",
    tables: ["arp_responder"],
    owners: {
      port(id, view, out) {
        const lp = view.localPort(id);
        const port = lp?.port ?? view.remotePort(id)?.port;
        if (!port) return;
        const nv = view.network(port.networkId);
        if (!nv) return;
        if (!lp && reactiveNetwork(mode, view, port.networkId)) return;
        for (const f of port.fixedIps) {
          if (lp) {
            // The port's own probe or DAD for its address goes on unanswered.
            const own = isIpv4(f.ipAddress)
              ? flow("arp_responder", 110)
                  .proto("arp")
                  .reg(F.network, nv.key)
                  .inPort(lp.ofport)
                  .eq("arp_op", 1)
                  .eq("arp_tpa", f.ipAddress)
              : flow("arp_responder", 110)
                  .proto("icmp6")
                  .reg(F.network, nv.key)
                  .inPort(lp.ofport)
                  .eq("icmpv6_type", 135)
                  .eq("nd_target", f.ipAddress);
            out.flow(own.goto("l3_admission"));
          }
          answer(out, nv.key, f.ipAddress, port.macAddress);
        }
      },
      router(id, view, out) {
        const r = view.router(id);
        if (!r) return;
        const linkLocal = new Set<string>();
        for (const itf of r.interfaces) {
          const nv = view.network(itf.networkId);
          if (!nv) continue;
          answer(out, nv.key, itf.ipAddress, itf.macAddress);
          const ll = canonicalIpv6(linkLocalFromMac(itf.macAddress));
          if (!isIpv4(itf.ipAddress) && !linkLocal.has(`${nv.key}/${ll}`)) {
            linkLocal.add(`${nv.key}/${ll}`);
            answer(out, nv.key, ll, itf.macAddress);
          }
        }
      },
      network(id, view, out) {
        const nv = view.network(id);
        if (!nv || !reactiveNetwork(mode, view, id) || view.remoteChassisOf(id).size === 0) return;
        out.flow(
          flow("arp_responder", ARP_PUNT_PRIORITY)
            .proto("arp")
            .reg(F.network, nv.key)
            .flag(FLAG.fromTunnel, false)
            .eq("arp_op", 1)
            .controller(),
        );
        out.flow(
          flow("arp_responder", ARP_PUNT_PRIORITY)
            .proto("icmp6")
            .reg(F.network, nv.key)
            .flag(FLAG.fromTunnel, false)
            .eq("icmpv6_type", 135)
            .controller(),
        );
      },
    },
    async packetIn(pkt, ctx) {
      const f = parseEthernet(pkt.data);
      if (f.arp) {
        const key = Number(pkt.fields?.get(regName(F.network)) ?? 0);
        const nv = ctx.view.networkByKey(key);
        if (!nv) return;
        const p = ctx.view.portWithIp(nv.id, f.arp.tpa);
        const rp = p && !ctx.view.localPort(p.id) ? ctx.view.remotePort(p.id) : undefined;
        if (f.arp.op !== 1 || !rp || f.arp.spa === f.arp.tpa) {
          await ctx.continueAt("l2_lookup", pkt);
          return;
        }
        await ctx.packetOut(
          pkt.inPort,
          buildArpReply({ mac: rp.port.macAddress, ip: f.arp.tpa, toMac: f.arp.sha, toIp: f.arp.spa }),
        );
        return;
      }
      const nd = f.icmpv6?.ndp;
      if (!f.ipv6 || nd?.kind !== "neighbor-solicitation") return;
      const lp = ctx.view.localPortByOfport(pkt.inPort);
      if (!lp) return;
      const target = canonicalIpv6(nd.target);
      const hit = knownV6(ctx.view, lp.networkId, target);
      if (!hit) {
        // Reactive mode punts every solicitation no flow answers: one for no port goes on, as a multicast.
        if (reactiveNetwork(mode, ctx.view, lp.networkId)) await ctx.continueAt("l2_lookup", pkt);
        return;
      }
      const frame = buildNeighborAdvertisement({
        mac: hit.mac,
        target,
        toMac: f.eth.src,
        toIp: f.ipv6.src === "::" ? undefined : f.ipv6.src,
        router: hit.router,
      });
      await ctx.packetOut(pkt.inPort, frame);
    },
  };
}
