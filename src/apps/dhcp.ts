/**
 * dhcp: the distributed DHCPv4 server. Every agent answers the ports plugged
 * into its own chassis, so DHCP never crosses the overlay and survives the loss
 * of any other node (Dragonflow's design; OVN's native DHCP does the same).
 *
 * The dhcp table punts a port's client-to-server UDP (68 → 67) to the agent
 * when the port has an IPv4 address on a subnet with DHCP enabled, through an
 * OpenFlow meter per port (packets per second) so a flooding VM cannot starve
 * the agent. A port on a subnet without DHCP gets no punt flow: its requests
 * go on as broadcasts and a tenant's own DHCP server can answer them.
 *
 * The protocol itself (message types, options, NAK rules) is
 * src/apps/dhcp/responder.ts; this module only finds the port's context and
 * sends the reply back out of the port the request came in on.
 */
import type { App, FlowSpec, LocalPort, AgentView } from "./types.js";
import { dhcpSubnetFor } from "./dhcp/context.js";
import { defaultServerIp, handleDhcpFrame } from "./dhcp/responder.js";
import type { Subnet } from "../nb/model/schemas.js";
import { t } from "./flowtext.js";

/** Server MAC when the subnet has no router interface (locally administered). */
export const DHCP_SERVER_MAC = "fa:16:3e:df:00:01";

export interface DhcpAppOptions {
  /** Punt rate limit per port, packets per second (default 100). */
  ratePps?: number;
  leaseTime?: number;
  domain?: string;
}

function dhcpSubnet(view: AgentView, lp: LocalPort): { subnet: Subnet; ipAddress: string } | undefined {
  return dhcpSubnetFor(lp.port, (id) => view.subnets.get(id));
}

/** The meter of a port: one per ofport, id = ofport (OpenFlow meter ids start at 1). */
export function meterOf(lp: LocalPort): number {
  return lp.ofport;
}

export function dhcpApp(opts: DhcpAppOptions = {}): App {
  const rate = opts.ratePps ?? 100;
  return {
    name: "dhcp",
    flows(view) {
      const out: FlowSpec[] = [];
      for (const lp of view.localPorts.values()) {
        if (!view.networks.has(lp.networkId) || !dhcpSubnet(view, lp)) continue;
        out.push({
          key: lp.id,
          flow:
            `table=${t("dhcp")},priority=100,udp,in_port=${lp.ofport},tp_src=68,tp_dst=67,` +
            `actions=meter:${meterOf(lp)},controller(max_len=65535)`,
        });
      }
      return out;
    },
    meters(view) {
      const m = new Map<number, number>();
      for (const lp of view.localPorts.values()) if (dhcpSubnet(view, lp)) m.set(meterOf(lp), rate);
      return m;
    },
    async packetIn(pkt, ctx) {
      const view = ctx.view();
      const lp = [...view.localPorts.values()].find((p) => p.ofport === pkt.inPort);
      if (!lp) return;
      const found = dhcpSubnet(view, lp);
      const nv = view.networks.get(lp.networkId);
      if (!found || !nv) return;
      const { subnet } = found;
      const routerPort = nv.routerPorts.find((r) => r.subnetId === subnet.id);
      const serverIp = defaultServerIp(subnet);
      if (!serverIp) return;
      const decision = handleDhcpFrame(pkt.data, {
        port: lp.port,
        subnet,
        network: nv.network,
        serverMac: routerPort?.macAddress ?? DHCP_SERVER_MAC,
        serverIp,
        ...(opts.leaseTime !== undefined ? { leaseTime: opts.leaseTime } : {}),
        ...(opts.domain !== undefined ? { domain: opts.domain } : {}),
      });
      if (decision.kind === "ignore") {
        ctx.log.debug({ port: lp.id, reason: decision.reason }, "dhcp request ignored");
        return;
      }
      ctx.log.info({ port: lp.id, reply: decision.messageType, yiaddr: decision.yiaddr }, "dhcp reply");
      await ctx.packetOut(lp.ofport, decision.frame);
    },
  };
}
