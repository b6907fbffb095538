/**
 * l3: the distributed router (Dragonflow's first release): a virtual router
 * made of flows on every chassis that hosts a port on one of its networks —
 * no namespace, no network node. Routing happens on the source host; the
 * packet leaves it already rewritten for the destination network (its MACs,
 * its TTL, its key in the network register and on the tunnel).
 *
 * Two tables. `l3_admission` decides what is sent to a router: the network
 * register holds a network the router has an interface on and the Ethernet
 * destination is that interface's MAC. IP of a family the router has an
 * address of on that network gets the router's key (`View.routerKey`) in the
 * router register and goes on to `l3`; anything else sent there (not IP, or
 * a family the router does not route from that network, as a Neutron router
 * port without an IPv6 subnet) is dropped; a packet to no router MAC goes on
 * to nat. `l3` then works by router key alone, so a router's answers, routes
 * and host routes are one set of flows however many networks it joins. In
 * `l3`, by priority:
 *
 *   1000  TTL (hop limit) 0 or 1            → agent: ICMP time exceeded from the
 *                                             interface (traceroute shows the hop)
 *    900  ICMP echo to a router address      → answered in flows (IPv4: swap the
 *                                             MACs and the addresses, type 0; OVS
 *                                             fixes the checksums); ICMPv6 echo →
 *                                             agent
 *    800  anything else to a router address  → drop
 *   300+len  routes, longest prefix first:
 *            a host route to a port          → MAC rewrite (router interface on the
 *                                             destination network, the port's MAC),
 *                                             dec_ttl, network = destination's key,
 *                                             then L2 lookup for a local port (or on a
 *                                             provider network); for a port on another
 *                                             chassis, straight into the tunnel to it
 *                                             (egress_tunnel, or the tunnel port
 *                                             itself when its network has no port here)
 *            a static route (NB `routes`)    → the same towards its next hop
 *            a connected subnet              → agent (the first packet; below)
 *    100  no route                           → agent: ICMP destination unreachable
 *
 * Host routes are where the two modes differ. `reactive` (Dragonflow's hybrid
 * model, the default): the first packet to an address on a connected subnet
 * goes to *this* host's agent, which finds the port, installs the host route
 * on this host only (idle timeout, flow_removed), and sends the packet on
 * through the pipeline; later packets never leave the datapath, from
 * whichever of the router's networks they come. The reactive flow depends on
 * exactly what the decision read (the port, its binding and chassis, the
 * router and its key, the networks, the tunnel ports): a change to any of
 * them removes it, and the next packet decides again. An address with no port
 * gets ICMP host unreachable. `proactive` (OVN's way): every port on a
 * router's network gets its host route ahead of time on every chassis where
 * the router has a network wired, so there is no first-packet cost.
 *
 * IPv6 hosts learn the router from router advertisements (ipv6/ra.ts says
 * what one contains). The nd_ra table punts a local port's router
 * solicitations, through a per-port meter, when its network has a router leg
 * with a subnet in an RA mode; the agent answers each at once out of the
 * asking port, one RA per router MAC on the network. Unsolicited RAs go to
 * all-nodes out of every local port of such a network, on ipv6/schedule.ts's
 * schedule (the first three within 16 s of the leg appearing here or its
 * content changing, then every MinRtrAdvInterval..MaxRtrAdvInterval), so a
 * VM that never solicits still configures itself. Every agent advertises the
 * same content for the same NB, so no RA crosses the overlay.
 *
 * Owners: each router (its admission flows for every interface on a network
 * wired here; its TTL, echo, connected, static-route and no-route flows once),
 * each port (its solicitation punt when local; proactive host routes to it),
 * and reactive owners `l3/reactive/<router>/<address>`.
 */
import type { App, AppContext, LocalPort, OwnerOut, ReadyPort, View } from "./types.js";
import {
  advertisedSubnets,
  decideRa,
  handleRouterSolicitation,
  planRa,
  raConfig,
  type RaInterface,
} from "./ipv6/ra.js";
import { RaScheduler } from "./ipv6/schedule.js";
import { F, flow, MAC_SCRATCH, meterId, type FlowBuilder } from "../datapath/index.js";
import type { Subnet } from "../nb/model/schemas.js";
import { cidrContains, cidrPrefix, parseCidr } from "../nb/model/ip.js";
import type { Router, RouterInterface } from "../nb/model/schemas.js";
import type { Flow } from "../openflow/flow.js";
import { sameFlow } from "../openflow/text.js";
import { buildEchoReply } from "../packet/builders.js";
import { ICMPV6_TYPE } from "../packet/constants.js";
import { parseEthernet, type Frame } from "../packet/frame.js";
import { buildIcmpError, type IcmpErrorKind } from "../packet/icmp-error.js";
import { ipv4ToU32, isIpv4 } from "../packet/addr.js";

export type L3Mode = "reactive" | "proactive";

export interface L3AppOptions {
  mode?: L3Mode;
  /** Idle timeout of reactive host routes, seconds (default 300; 0: none). */
  idleTimeoutS?: number;
  /** Domain advertised in router advertisements (DNSSL); none when absent. */
  domain?: string;
}

/** Router solicitations a port may send per second (hosts send at most 3 at start, RFC 4861 §6.3.7). */
export const RS_RATE_PPS = 10;
/** How often the agent checks for due unsolicited router advertisements. */
export const RA_TICK_MS = 1000;

export const L3_PRIORITY = {
  ttl: 1000,
  echo: 900,
  toRouter: 800,
  route: 300,
  noRoute: 100,
} as const;

/** l3_admission: IP of a routed family to the router; the rest sent to its MAC, dropped. */
export const ADMISSION_PRIORITY = { admit: 100, refuse: 50 } as const;

type Family = 4 | 6;
const familyOf = (ip: string): Family => (isIpv4(ip) ? 4 : 6);
const PROTO = { 4: "ip", 6: "ipv6" } as const;
const DST = { 4: "ip_dst", 6: "ipv6_dst" } as const;
const BITS = { 4: 32, 6: 128 } as const;

/** The mask of a prefix, as the text the match field takes. */
function prefixMatch(cidr: string): [string, string | undefined] {
  const c = parseCidr(cidr);
  const bits = c.version === 4 ? 32 : 128;
  if (c.prefix === bits) return [cidr.split("/")[0]!, undefined];
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - c.prefix)) - 1n);
  const toText = (n: bigint): string => {
    if (c.version === 4) return [24, 16, 8, 0].map((s) => Number((n >> BigInt(s)) & 255n)).join(".");
    const groups: string[] = [];
    for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
    return groups.join(":");
  };
  return [toText(c.first), toText(mask)];
}

/** Matches packets on network `key` sent to the router MAC `mac`. */
function admission(prio: number, key: number, mac: string): FlowBuilder {
  return flow("l3_admission", prio).reg(F.network, key).eq("eth_dst", mac);
}

/** Matches packets l3_admission handed to the router whose key is `rk`. */
function inRouter(prio: number, rk: number): FlowBuilder {
  return flow("l3", prio).reg(F.router, rk);
}

/** Whether router `r` has an address of family `fam` on a network wired here (l3_admission lets it in). */
function routedHere(view: View, r: Router, fam: Family): boolean {
  return r.interfaces.some((i) => familyOf(i.ipAddress) === fam && view.network(i.networkId) !== undefined);
}

/**
 * The actions that deliver a routed packet to port `p`, leaving through the
 * router interface `out`; undefined when it cannot be delivered from here.
 */
function deliver(b: FlowBuilder, view: View, out: RouterInterface, p: ReadyPort): FlowBuilder | undefined {
  const wired = view.network(p.networkId);
  if (!view.localPort(p.id) && !view.remotePort(p.id)) return undefined;
  b.set("eth_src", out.macAddress).set("eth_dst", p.macAddress).decTtl();
  if (wired) {
    b.load(F.network, wired.key);
    // A port on another chassis of a tunnelled network: its tunnel, as its l2_lookup flow would
    // choose — which in l2's reactive mode this host may not hold.
    const far = !wired.provider && !view.localPort(p.id) ? view.remotePort(p.id) : undefined;
    if (far) return b.load(F.remoteChassis, ipv4ToU32(far.tunnelIp)).goto("egress_tunnel");
    return b.goto("l2_lookup");
  }
  // The destination network has no port here, so no L2 tables: straight into its tunnel.
  const rp = view.remotePort(p.id);
  const net = view.networkObject(p.networkId);
  const encap = net?.networkType === "geneve" || net?.networkType === "vxlan" ? net.networkType : undefined;
  const tunnel = encap ? view.tunnelPort(encap) : undefined;
  if (!rp || !encap || tunnel === undefined || net?.segmentationId === undefined) return undefined;
  const key = net.segmentationId;
  return b.load(F.network, key).set("tun_id", key).set("tun_dst", rp.tunnelIp).output(tunnel);
}

/** The router interface whose subnet holds `ip` (longest prefix), if any. */
function connected(r: Router, ip: string): RouterInterface | undefined {
  let best: RouterInterface | undefined;
  for (const itf of r.interfaces) {
    if (familyOf(itf.ipAddress) !== familyOf(ip) || !cidrContains(itf.cidr, ip)) continue;
    if (!best || cidrPrefix(itf.cidr) > cidrPrefix(best.cidr)) best = itf;
  }
  return best;
}

/** Router `r`'s host route to the port at `ip` on one of its connected subnets. */
function hostRoute(view: View, r: Router, ip: string): FlowBuilder | undefined {
  const out = connected(r, ip);
  if (!out) return undefined;
  const p = view.portWithIp(out.networkId, ip);
  const rk = view.routerKey(r.id);
  if (!p || rk === undefined) return undefined;
  const fam = familyOf(ip);
  const b = inRouter(L3_PRIORITY.route + BITS[fam], rk)
    .proto(PROTO[fam])
    .eq(DST[fam], ip);
  return deliver(b, view, out, p);
}

function routerFlows(r: Router, view: View, out: OwnerOut): void {
  const rk = r.adminStateUp ? view.routerKey(r.id) : undefined;
  const admitted = new Set<string>();
  for (const src of r.interfaces) {
    const nv = view.network(src.networkId);
    if (!nv || admitted.has(`${nv.key}/${src.macAddress}`)) continue;
    admitted.add(`${nv.key}/${src.macAddress}`);
    out.flow(admission(ADMISSION_PRIORITY.refuse, nv.key, src.macAddress));
    if (rk === undefined) continue;
    for (const fam of [4, 6] as const) {
      // A family the router has no address of on this network is not routed from it (as a
      // Neutron router port without an IPv6 subnet): its packets meet the refusal above.
      if (!r.interfaces.some((i) => i.networkId === src.networkId && familyOf(i.ipAddress) === fam)) continue;
      out.flow(
        admission(ADMISSION_PRIORITY.admit, nv.key, src.macAddress)
          .proto(PROTO[fam])
          .load(F.router, rk)
          .goto("l3"),
      );
    }
  }
  if (rk === undefined) return;
  for (const fam of [4, 6] as const) {
    if (!routedHere(view, r, fam)) continue;
    for (const ttl of [0, 1]) {
      out.flow(inRouter(L3_PRIORITY.ttl, rk).proto(PROTO[fam]).eq("nw_ttl", ttl).controller());
    }
    for (const itf of r.interfaces.filter((i) => familyOf(i.ipAddress) === fam)) {
      if (fam === 4) {
        // The reply leaves from the MAC the request was sent to: the router's on the sender's network.
        out.flow(
          inRouter(L3_PRIORITY.echo, rk)
            .proto("icmp")
            .eq("ip_dst", itf.ipAddress)
            .eq("icmp_type", 8)
            .eq("icmp_code", 0)
            .move("eth_dst", MAC_SCRATCH)
            .move("eth_src", "eth_dst")
            .move(MAC_SCRATCH, "eth_src")
            .move("ip_src", "ip_dst")
            .set("ip_src", itf.ipAddress)
            .set("nw_ttl", 64)
            .set("icmp_type", 0)
            .outputInPort(),
        );
      } else {
        out.flow(
          inRouter(L3_PRIORITY.echo, rk)
            .proto("icmp6")
            .eq("ipv6_dst", itf.ipAddress)
            .eq("icmpv6_type", ICMPV6_TYPE.ECHO_REQUEST)
            .controller(),
        );
      }
      out.flow(inRouter(L3_PRIORITY.toRouter, rk).proto(PROTO[fam]).eq(DST[fam], itf.ipAddress));
      // A connected subnet: the first packet to each address decides (both modes: in proactive
      // mode every port already has its host route, so only an unknown address lands here).
      const [net, mask] = prefixMatch(itf.cidr);
      out.flow(
        inRouter(L3_PRIORITY.route + parseCidr(itf.cidr).prefix, rk)
          .proto(PROTO[fam])
          .eq(DST[fam], net, mask)
          .controller(),
      );
    }
    for (const route of r.routes.filter((x) => familyOf(x.nexthop) === fam)) {
      const via = connected(r, route.nexthop);
      const hop = via && view.portWithIp(via.networkId, route.nexthop);
      const [net, mask] = prefixMatch(route.destination);
      const b = inRouter(L3_PRIORITY.route + parseCidr(route.destination).prefix, rk)
        .proto(PROTO[fam])
        .eq(DST[fam], net, mask);
      const d = via && hop ? deliver(b, view, via, hop) : undefined;
      out.flow(d ?? b.controller());
    }
    out.flow(inRouter(L3_PRIORITY.noRoute, rk).proto(PROTO[fam]).controller());
  }
}

/**
 * The router legs on a network that advertise (an IPv6 subnet in an RA mode
 * on an administratively up router), one per router MAC.
 */
function raInterfaces(view: View, networkId: string, domain: string | undefined): RaInterface[] {
  const network = view.networkObject(networkId);
  if (!network) return [];
  const byMac = new Map<string, Subnet[]>();
  for (const rp of view.routerPortsOf(networkId)) {
    if (!view.router(rp.routerId)?.adminStateUp) continue;
    const s = view.subnet(rp.subnetId);
    if (!s || advertisedSubnets([s]).length === 0) continue;
    const list = byMac.get(rp.macAddress) ?? [];
    if (!list.some((x) => x.id === s.id)) list.push(s);
    byMac.set(rp.macAddress, list);
  }
  return [...byMac].map(([macAddress, subnets]) => ({
    macAddress,
    subnets,
    network,
    ...(domain !== undefined ? { domain } : {}),
  }));
}

/** The NB router and interface a frame from network `networkId` was sent to, by its MAC. */
function routerOf(
  view: View,
  networkId: string,
  mac: string,
): { r: Router; itf: RouterInterface } | undefined {
  for (const rp of view.routerPortsOf(networkId)) {
    if (rp.macAddress !== mac) continue;
    const r = view.router(rp.routerId);
    const itf = r?.interfaces.find((i) => i.networkId === networkId && i.macAddress === mac);
    if (r && itf && r.adminStateUp) return { r, itf };
  }
  return undefined;
}

/** Joined into one flat string: the engine keeps it as long as the route (engine.ts ownerKey). */
function reactiveKey(r: Router, ip: string): string {
  return [r.id, ip].join("/");
}

export function l3App(opts: L3AppOptions = {}): App {
  const mode = opts.mode ?? "reactive";
  const idle = opts.idleTimeoutS ?? 300;

  async function icmpError(
    ctx: AppContext,
    inPort: number,
    frame: Buffer,
    f: Frame,
    itf: RouterInterface,
    kind: IcmpErrorKind,
  ): Promise<void> {
    const fam: Family = f.ipv4 ? 4 : 6;
    // The error comes from the router's address on the sender's network, of the packet's family.
    const from = familyOf(itf.ipAddress) === fam ? itf.ipAddress : addressOfFamily(ctx.view, itf, fam);
    if (from === undefined) return; // no address of that family there: no error to send from
    const reply = buildIcmpError({ frame, parsed: f, kind, routerMac: itf.macAddress, routerIp: from });
    if (reply) await ctx.packetOut(inPort, reply);
  }

  /** Unsolicited RAs: one schedule per (network, router MAC) advertising here, with its content. */
  const schedules = new Map<string, { scheduler: RaScheduler; content: string }>();

  async function advertise(ctx: AppContext, now: number): Promise<void> {
    const ports = new Map<string, LocalPort[]>();
    for (const lp of ctx.view.localPorts()) {
      const list = ports.get(lp.networkId) ?? [];
      list.push(lp);
      ports.set(lp.networkId, list);
    }
    const seen = new Set<string>();
    for (const [networkId, locals] of ports) {
      for (const iface of raInterfaces(ctx.view, networkId, opts.domain)) {
        const key = `${networkId}|${iface.macAddress}`;
        seen.add(key);
        const content = JSON.stringify(planRa(iface), (_, v: unknown) =>
          Buffer.isBuffer(v) ? v.toString("hex") : v,
        );
        let s = schedules.get(key);
        if (!s) {
          s = { scheduler: new RaScheduler(iface.config ?? raConfig()), content };
          s.scheduler.start(now);
          schedules.set(key, s);
        } else if (s.content !== content) {
          s.content = content;
          s.scheduler.reset(now);
        }
        if ((s.scheduler.due ?? Infinity) > now) continue;
        const d = decideRa(iface);
        s.scheduler.sent(now);
        if (d.kind !== "send") continue;
        for (const lp of locals) await ctx.packetOut(lp.ofport, d.frame);
      }
    }
    for (const key of schedules.keys()) if (!seen.has(key)) schedules.delete(key);
  }

  async function routerSolicitation(
    ctx: AppContext,
    inPort: number,
    frame: Buffer,
    lp: LocalPort,
  ): Promise<void> {
    for (const iface of raInterfaces(ctx.view, lp.networkId, opts.domain)) {
      const d = handleRouterSolicitation(frame, { ...iface, port: lp.port });
      if (d.kind === "send") await ctx.packetOut(inPort, d.frame);
      else ctx.log.debug({ port: lp.id, reason: d.reason }, "router solicitation not answered");
    }
  }

  return {
    name: "l3",
    tables: ["nd_ra", "l3_admission", "l3"],
    timer: { everyMs: RA_TICK_MS, tick: advertise },
    owners: {
      router(id, view, out) {
        const r = view.router(id);
        if (r) routerFlows(r, view, out);
      },
      port(id, view, out) {
        const lp = view.localPort(id);
        if (lp && view.network(lp.networkId) && raInterfaces(view, lp.networkId, opts.domain).length) {
          const meter = meterId("nd", lp.ofport);
          out.meter(meter, RS_RATE_PPS);
          out.flow(
            flow("nd_ra", 100)
              .proto("icmp6")
              .inPort(lp.ofport)
              .eq("icmpv6_type", ICMPV6_TYPE.ROUTER_SOLICITATION)
              .eq("icmpv6_code", 0)
              .meter(meter)
              .controller(),
          );
        }
        if (mode !== "proactive") return;
        const p = view.port(id);
        if (!p || (!view.localPort(id) && !view.remotePort(id))) return;
        const done = new Set<string>();
        for (const rp of view.routerPortsOf(p.networkId)) {
          const r = view.router(rp.routerId);
          if (!r?.adminStateUp) continue;
          for (const f of p.fixedIps) {
            const k = reactiveKey(r, f.ipAddress);
            if (done.has(k) || !cidrContains(rp.cidr, f.ipAddress)) continue;
            done.add(k);
            if (!routedHere(view, r, familyOf(f.ipAddress))) continue;
            const b = hostRoute(view, r, f.ipAddress);
            if (b) out.flow(b);
          }
        }
      },
    },
    async packetIn(pkt, ctx) {
      const f = parseEthernet(pkt.data);
      const ip = f.ipv4 ?? f.ipv6;
      if (!ip) return;
      const lp = ctx.view.localPortByOfport(pkt.inPort);
      if (!lp) return;
      if (f.icmpv6?.type === ICMPV6_TYPE.ROUTER_SOLICITATION) {
        return routerSolicitation(ctx, pkt.inPort, pkt.data, lp);
      }
      const hit = routerOf(ctx.view, lp.networkId, f.eth.dst);
      if (!hit) return;
      const { r, itf } = hit;
      const ttl = f.ipv4 ? f.ipv4.ttl : f.ipv6!.hopLimit;
      if (ttl <= 1) return icmpError(ctx, pkt.inPort, pkt.data, f, itf, "ttl-exceeded");
      if (
        f.icmpv6?.type === ICMPV6_TYPE.ECHO_REQUEST &&
        r.interfaces.some((i) => i.ipAddress === f.ipv6!.dst)
      ) {
        const echo = f.icmpv6.echo!;
        await ctx.packetOut(
          pkt.inPort,
          buildEchoReply({
            ethSrc: itf.macAddress,
            ethDst: f.eth.src,
            ipSrc: f.ipv6!.dst,
            ipDst: f.ipv6!.src,
            identifier: echo.identifier,
            sequence: echo.sequence,
            data: f.icmpv6.body,
            v6: true,
          }),
        );
        return;
      }
      const dst = ip.dst;
      const nv = ctx.view.network(lp.networkId);
      if (!nv) return;
      // The router is looked up again inside the tracked read, so that the host route depends on it
      // (an administratively downed or removed router takes its reactive routes with it).
      const { result: route, deps } = ctx.track(() => {
        const again = routerOf(ctx.view, lp.networkId, f.eth.dst);
        return again && hostRoute(ctx.view, again.r, dst);
      });
      if (!route) {
        return icmpError(
          ctx,
          pkt.inPort,
          pkt.data,
          f,
          itf,
          connected(r, dst) ? "host-unreachable" : "no-route",
        );
      }
      // The packet leaves first, through the route's own actions: it need not wait for the flow,
      // and the switch handles the packet_out before the flow_mod and what that sets off (every
      // datapath flow revalidated). One that met conntrack on the way runs again from table 0.
      const sent = await ctx.sendThrough(pkt, route);
      await ctx.installReactive({
        key: reactiveKey(r, dst),
        flows: [route.idleTimeout(idle).sendFlowRemoved()],
        deps,
        unhurried: sent,
      });
      if (!sent) await ctx.resubmit(pkt.inPort, pkt.data);
    },
    adoptReactive(installed, ctx) {
      const at = (field: string) => installed.match.find((m) => m.field === field)?.value;
      const rk = Number(at("reg2"));
      const dst = at("ip_dst") ?? at("ipv6_dst");
      const id = ctx.view.routerByKey(rk)?.id;
      if (id === undefined || dst === undefined) return undefined;
      const { result: hit, deps } = ctx.track(() => {
        const r = ctx.view.router(id);
        const b = r?.adminStateUp ? hostRoute(ctx.view, r, String(dst)) : undefined;
        return r && b ? { r, b } : undefined;
      });
      if (!hit) return undefined;
      const want: Flow = hit.b.idleTimeout(idle).sendFlowRemoved().build(installed.cookie);
      return sameFlow(want, installed) ? { key: reactiveKey(hit.r, String(dst)), deps } : undefined;
    },
  };
}

/** The router's address of family `fam` on `itf`'s network and MAC (an ICMP error's source). */
function addressOfFamily(view: View, itf: RouterInterface, fam: Family): string | undefined {
  for (const rp of view.routerPortsOf(itf.networkId)) {
    if (rp.macAddress === itf.macAddress && familyOf(rp.ipAddress) === fam) return rp.ipAddress;
  }
  return undefined;
}
