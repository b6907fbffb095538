/**
 * dhcp: the distributed DHCPv4 server. Every agent answers the ports plugged
 * into its own chassis, so DHCP never crosses the overlay and survives the loss
 * of any other node (Dragonflow's design; OVN's native DHCP does the same).
 *
 * Owner: each local port. The dhcp table punts the port's client-to-server
 * UDP (68 → 67) to the agent when the port has an IPv4 address on a subnet
 * with DHCP enabled, through an OpenFlow meter of its own (packets per
 * second, `meterId("dhcp", ofport)`) so a flooding VM cannot starve the
 * agent. A port on a subnet without DHCP gets no punt flow: its requests go
 * on as broadcasts and a tenant's own DHCP server can answer them.
 *
 * DHCPv6 the same way: a port with an IPv6 address on a subnet in a
 * dhcpv6-stateful or dhcpv6-stateless address mode gets a punt of its client
 * messages (UDP 546 → 547, through the same meter), answered from the NB
 * (its address, or only options when stateless). SLAAC subnets get none.
 *
 * The protocols themselves (message types, options, NAK rules) are
 * src/apps/dhcp/responder.ts and responder6.ts; this module only finds the
 * port's context and sends the reply back out of the port the request came
 * in on. Replies are
 * logged at debug level: a VM that asks a thousand times a second must not
 * write a thousand log lines.
 */
import type { App, AppContext, LocalPort, View } from "./types.js";
import { dhcpSubnetFor } from "./dhcp/context.js";
import { defaultServerIp, handleDhcpFrame } from "./dhcp/responder.js";
import { dhcp6SubnetFor, handleDhcp6Frame } from "./dhcp/responder6.js";
import { ETH_TYPE, UDP_PORT } from "../packet/constants.js";
import { flow, meterId } from "../datapath/index.js";
import type { Subnet } from "../nb/model/schemas.js";

/** Server MAC when the subnet has no router interface (locally administered). */
export const DHCP_SERVER_MAC = "fa:16:3e:df:00:01";

export interface DhcpAppOptions {
  /** Punt rate limit per port, packets per second (default 100). */
  ratePps?: number;
  leaseTime?: number;
  domain?: string;
}

function dhcpSubnet(view: View, lp: LocalPort): { subnet: Subnet; ipAddress: string } | undefined {
  return dhcpSubnetFor(lp.port, (id) => view.subnet(id));
}

/** Whether a frame (possibly VLAN-tagged) carries IPv6, without decoding it. */
function isIpv6Frame(frame: Buffer): boolean {
  let off = 12;
  while (frame.length >= off + 2) {
    const t = frame.readUInt16BE(off);
    if (t !== 0x8100 && t !== 0x88a8) return t === ETH_TYPE.IPV6;
    off += 4;
  }
  return false;
}

export function dhcpApp(opts: DhcpAppOptions = {}): App {
  const rate = opts.ratePps ?? 100;

  async function dhcp6(ctx: AppContext, lp: LocalPort, frame: Buffer): Promise<void> {
    const view = ctx.view;
    const found = dhcp6SubnetFor(lp.port, (s) => view.subnet(s));
    const nv = view.network(lp.networkId);
    if (!found || !nv) return;
    const routerPort = view.routerPortsOf(nv.id).find((r) => r.subnetId === found.subnet.id);
    const decision = handleDhcp6Frame(frame, {
      port: lp.port,
      subnet: found.subnet,
      network: nv.network,
      serverMac: routerPort?.macAddress ?? DHCP_SERVER_MAC,
      ...(opts.leaseTime !== undefined ? { leaseTime: opts.leaseTime } : {}),
      ...(opts.domain !== undefined ? { domain: opts.domain } : {}),
    });
    if (decision.kind === "ignore") {
      ctx.log.debug({ port: lp.id, reason: decision.reason }, "dhcpv6 message ignored");
      return;
    }
    ctx.log.debug({ port: lp.id, reply: decision.messageType, address: decision.address }, "dhcpv6 reply");
    await ctx.packetOut(lp.ofport, decision.frame);
  }

  return {
    name: "dhcp",
    tables: ["dhcp"],
    owners: {
      port(id, view, out) {
        const lp = view.localPort(id);
        if (!lp || !view.network(lp.networkId)) return;
        const v4 = dhcpSubnet(view, lp) !== undefined;
        const v6 = dhcp6SubnetFor(lp.port, (s) => view.subnet(s)) !== undefined;
        if (!v4 && !v6) return;
        const meter = meterId("dhcp", lp.ofport);
        out.meter(meter, rate);
        if (v4) {
          out.flow(
            flow("dhcp", 100)
              .proto("udp")
              .inPort(lp.ofport)
              .eq("udp_src", 68)
              .eq("udp_dst", 67)
              .meter(meter)
              .controller(),
          );
        }
        if (v6) {
          out.flow(
            flow("dhcp", 100)
              .proto("udp6")
              .inPort(lp.ofport)
              .eq("udp_src", UDP_PORT.DHCPV6_CLIENT)
              .eq("udp_dst", UDP_PORT.DHCPV6_SERVER)
              .meter(meter)
              .controller(),
          );
        }
      },
    },
    async packetIn(pkt, ctx) {
      const view = ctx.view;
      const lp = view.localPortByOfport(pkt.inPort);
      if (!lp) return;
      if (isIpv6Frame(pkt.data)) return dhcp6(ctx, lp, pkt.data);
      const found = dhcpSubnet(view, lp);
      const nv = view.network(lp.networkId);
      if (!found || !nv) return;
      const { subnet } = found;
      const routerPort = view.routerPortsOf(nv.id).find((r) => r.subnetId === subnet.id);
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
      ctx.log.debug({ port: lp.id, reply: decision.messageType, yiaddr: decision.yiaddr }, "dhcp reply");
      await ctx.packetOut(lp.ofport, decision.frame);
    },
  };
}
