/**
 * nat: the way between tenant networks and external (provider) networks —
 * floating IPs, distributed, and SNAT on a gateway chassis, both with
 * conntrack NAT. OVN's dnat_and_snat with `external_mac` and `logical_port`
 * (a floating IP lives on its VM's chassis) and its gateway chassis list
 * (SNAT on the first live one) are the model; the flows are this agent's.
 *
 * The NB side: a router's gateway on an external network is its SNAT object
 * (address, MAC, `enabled`, `gatewayChassis` highest priority first); a
 * floating IP has its own address and MAC on the external network and points
 * to a port's fixed IPv4 address. A floating IP works through the router that
 * has an interface on the port's subnet and its gateway on the floating IP's
 * network (the floating IP's `routerId`, when set, must be that router). The
 * external network is a vlan or flat network whose physical network is
 * mapped to a bridge (`bridgeMappings`, e.g. physnet1 → br-ex); a chassis
 * without that mapping does no NAT for it. Each router with a gateway has a
 * conntrack zone of its own on every chassis (LocalModel.natZone), shared by
 * its floating IPs and its SNAT, so overlapping tenant addresses never meet
 * in one zone. A router keeps its zone for as long as it has a gateway, also
 * across an agent restart: at every OpenFlow session's start the agent
 * reads br-int's flows, and `installedNatZones` finds in them the zone each
 * router's NAT flows use (by their owner's cookie: the router's SNAT flows,
 * its floating IPs' port flows), which the model adopts. The switch rather
 * than a state file in the run dir is the record: its flows are what the
 * live conntrack entries were made by, they cannot be left stale or lost
 * apart from them, and when they are gone (a new ovs-vswitchd) no
 * connection state is left to keep either.
 *
 * Floating IP, on the chassis that hosts the port (nothing anywhere else):
 *
 *   classification  from the patch port (its VLAN): ARP request for the address
 *                   → a copy to the agent (it learns the asker's MAC), and the
 *                     reply in place (op 2, the floating IP's MAC), out the same port;
 *                   ARP reply to the MAC → agent (metered); IP to the MAC with
 *                   TTL 0 or 1 → dropped (it would expire at the router, and no
 *                   time exceeded is sent back); other IP to the MAC
 *                   → network = external key, fromProvider → nat
 *   nat             to the address → ct(commit, zone, nat(dst=fixed IP)) → nat_state
 *   nat_state       to the fixed IP and the MAC → router MAC on the port's network,
 *                   the port's MAC, dec_ttl, its network → l2_lookup (and the port's
 *                   security groups, which see the fixed address)
 *   l3              from the port (in_port register and source address) to the
 *                   router, nowhere connected → nat (just below the routes: a
 *                   static route wins)
 *   nat             the same → ct(commit, zone, nat(src=floating IP)) → nat_state
 *   nat_state       from the floating IP → its MAC as source, dec_ttl, network =
 *                   external key → nat_resolve
 *   nat_resolve     to the floating IP (a packet of a VM of this chassis, already
 *                   SNATed) → hairpin: ct_clear, the floating IP's MAC as destination
 *                   → back into nat (above); from the floating IP too (its own VM)
 *                   → the same, and in_port cleared
 *
 * So ARP for a floating IP is answered by the VM's chassis alone, and a VM
 * that moves takes its floating IP along: the old chassis' flows go with the
 * port's binding, the new one's come with it, and its agent announces the
 * address (gratuitous ARP, three times a second apart) so that the physical
 * network's MAC tables follow.
 *
 * The hairpin is OVN's: a VM reaching another VM's floating IP on this
 * chassis (on its subnet or another) leaves through its router's
 * NAT as it would to the outside (SNATed to its own floating IP, or to the
 * gateway address when the gateway is here), and comes back in as if from
 * the external network: DNATed to the fixed address, the target sees the
 * sender's floating IP or the gateway address. The reply takes the same two
 * steps backwards — un-DNAT to the target's floating IP, then the hairpin of
 * the sender's floating IP or gateway address (the gateway has one too) and
 * un-SNAT — so the sender sees replies from the floating IP it sent to.
 * ct_clear lets the second conntrack pass look the packet up afresh (both
 * passes may be in one zone, which a switch would otherwise skip as done).
 * A VM to its own floating IP takes the same way, SNATed to the floating IP
 * and DNATed back to its fixed address, so it sees its own packet come from
 * its floating IP (as in OVN). That packet must leave by the port it came in
 * on, which OpenFlow's output never does, so the hairpin flow for a packet
 * both from and to the floating IP (a higher priority, only that VM's
 * packets) also clears in_port (load:0->NXM_OF_IN_PORT[]). When the
 * gateway is on another chassis, a VM without a floating IP reaches a
 * floating IP here through the gateway and the physical network, as any
 * external host does.
 *
 * SNAT, for the router's subnets, on its gateway chassis: the first chassis of
 * `gatewayChassis` whose agent is alive (liveness key present). Every chassis
 * computes the same one from the same NB and liveness keys, so when the
 * gateway's liveness key lapses (its lease is three heartbeats) the others
 * move the router's SNAT to the next candidate at once, and back when it
 * returns. A chassis that is not the gateway sends the router's outbound
 * traffic — from a local VM, to the router, nowhere connected — to it
 * through the tunnel of the VM's network, untouched (the router MAC as
 * destination; a vlan/flat tenant network cannot be redirected). On the
 * gateway:
 *
 *   l3 / classification  from a local VM, or from the tunnel with that network's
 *                   key and the router MAC → nat
 *   nat             from the router's subnet → ct(commit, zone, nat(src=gateway IP))
 *                   → nat_state → the gateway's MAC, dec_ttl → nat_resolve
 *   classification  from the patch port: ARP for the gateway address answered
 *                   (and learned from), ARP replies to its MAC → agent, IP to its
 *                   MAC → nat
 *   nat             to the gateway address → ct(zone, nat): only replies are
 *                   translated back; a new connection from outside stops here
 *   nat_state       to a VM of the router's subnets → the router MAC on its
 *                   network, its MAC, dec_ttl → l2_lookup, or straight into the
 *                   tunnel to its chassis when its network has no port here
 *   nat_resolve     to the gateway address → hairpin (as a floating IP's)
 *
 * Distributed SNAT: a gateway may give chassis addresses of their own
 * (`chassisAddresses`: chassis, IPv4 address and MAC on the external
 * network). A chassis with one, the external network mapped here and the
 * router's zone, SNATs the router's traffic from its own VMs itself instead
 * of sending it to the gateway chassis; VMs on other chassis still go there.
 *
 *   l3              from a local VM, to the router, nowhere connected → nat
 *   nat             not from a tunnel, from the router's subnet → ct(commit, zone,
 *                   nat(src=chassis address)) → nat_state → its MAC, dec_ttl →
 *                   nat_resolve (above the gateway's SNAT when this is the gateway
 *                   too: tunnelled traffic still gets the gateway address)
 *   classification  from the patch port: ARP for the address answered, IP to its MAC → nat
 *   nat             to the address → ct(zone, nat): replies only
 *   nat_state       to a local VM of the router's subnets → as the gateway's
 *
 * ARP for the address is answered by its chassis alone, and the agent
 * announces it (gratuitous ARP) like the others; without the mapping the
 * chassis falls back to the gateway.
 *
 * Every SNAT (a floating IP's, the gateway's, a chassis address's) comes in
 * two flows: at its priority + 1 for a destination inside one of the
 * external network's IPv4 subnets, as it is, and at its priority for any
 * other with natRoute (reg1) = offLink set before the translation. The
 * on-link-only rules of nat_resolve — hairpins, a VM here on the external
 * network, the punt for an unknown on-link next hop — match natRoute = 0,
 * so an off-link packet's way after the translation holds only the gateway
 * (see NAT_ROUTE: the offload planner keeps such a way on the NIC).
 *
 * Next hops on the external network (nat_resolve): a destination inside one
 * of its IPv4 subnets is its own next hop, anything else goes to that subnet's
 * gateway. Their MACs are learned as the agent sees them — from ARP requests
 * for a floating IP or gateway address and from replies to ARP requests the
 * agent sent — into reactive flows (idle timeout `nextHopIdleS`, default
 * NEXT_HOP_IDLE_S; 0: none, which offload.mode planner needs to put them on
 * the NIC, as for l3's routes; removed
 * when the external network, its subnets or the bridge mapping change; a
 * restarted agent keeps the ones that are still right). A packet whose next
 * hop is unknown goes to the agent (metered per patch port), which sends an
 * ARP request from the packet's own source (the floating IP or gateway
 * address and MAC) and drops it; the sender's retry finds the MAC.
 *
 * A VM spoofing a floating IP as its source is stopped by port security
 * before any of this; a VM allowed to send from another's fixed address (an
 * address pair) still does not get that port's floating IP, whose flows match
 * the port's in_port.
 *
 * A VM of this chassis on the external network itself reaches a NAT
 * address answered here without the physical network, which would never
 * send its frames back out of the port they came in on: its ARP request for
 * the address is answered in arp_responder (not from the patch port), its IP
 * to the address's MAC meets the nat flows on its way through the pipeline,
 * and in nat_resolve it is its own next hop, reached through l2_lookup.
 *
 * IPv4 only, as in Neutron (the NB refuses IPv6 NAT addresses).
 *
 * Owners: each port (its floating IPs, where it is local), each router (its
 * SNAT: redirect or gateway), each external network reachable here (the
 * next-hop punts), and reactive owners `nat/reactive/<network>/<address>`
 * (a learned next hop).
 */
import type {
  App,
  AppContext,
  LocalPort,
  NetworkView,
  OwnerOut,
  ReadyPort,
  RouterPortView,
  View,
} from "./types.js";
import { replyInPlace } from "./arp.js";
import { L3_PRIORITY } from "./l3.js";
import {
  cookieFor,
  CT_ZONE_MAX,
  CT_ZONE_MIN,
  F,
  FLAG,
  flow,
  meterId,
  NAT_ROUTE,
  table,
  type FlowBuilder,
} from "../datapath/index.js";
import { cidrContains, parseCidr } from "../nb/model/ip.js";
import {
  DEVICE_OWNER_ROUTER_INTERFACE,
  type ChassisAddress,
  type FloatingIp,
  type Router,
  type RouterInterface,
  type SnatGateway,
  type Subnet,
} from "../nb/model/schemas.js";
import type { Flow } from "../openflow/flow.js";
import { flowKey } from "../openflow/flow.js";
import { formatInstructions } from "../openflow/text.js";
import { isIpv4, MAC_BROADCAST, MAC_ZERO } from "../packet/addr.js";
import { buildArpRequest } from "../packet/builders.js";
import { ARP_OP } from "../packet/constants.js";
import { buildFrame, parseEthernet } from "../packet/frame.js";

export const NAT_PRIORITY = {
  /** classification: from the patch port to a NAT address, from a tunnel to the gateway */
  ingress: 110,
  /**
   * classification: from the patch port to a NAT address with TTL 0 or 1 — dropped above the
   * ingress, so that every packet nat translates has a TTL of 2 or more (the offload planner
   * then needs no trap for the decrement behind the translation)
   */
  ttl: 111,
  /** arp_responder: a NAT address asked for by a VM of this chassis on the external network */
  localArp: 100,
  /** l3: a floating IP's port to the outside; the router's subnets to the outside */
  fipRoute: L3_PRIORITY.route - 1,
  snatRoute: L3_PRIORITY.route - 2,
  /** nat, nat_state */
  fip: 200,
  snat: 100,
  /** nat: a local VM's traffic SNATed to this chassis' own address (distributed SNAT) */
  snatLocal: 110,
  /** nat_resolve */
  hairpinSelf: 410,
  hairpin: 400,
  localPort: 350,
  nextHop: 300,
  onLinkPunt: 100,
  gateway: 50,
  gatewayPunt: 10,
} as const;

/** Punts per second per provider patch port: ARP replies, next-hop misses. */
export const NAT_PUNT_PPS = 100;
/** Idle timeout of a learned next hop, seconds. */
export const NEXT_HOP_IDLE_S = 300;
/** Gratuitous ARPs sent for an address that starts being answered here, one a second. */
export const GARP_COUNT = 3;
export const GARP_TICK_MS = 1000;
/** Least time between two ARP requests for one next hop. */
const ARP_RETRY_MS = 1000;

const OFPVID_PRESENT = 0x1000;

/** [network, mask] of an IPv4 CIDR as match values. */
function v4Prefix(cidr: string): [string, string | undefined] {
  const c = parseCidr(cidr);
  const [addr] = cidr.split("/") as [string];
  if (c.prefix === 32) return [addr, undefined];
  const m = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
  const text = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
  return [text(Number(c.first)), text(m)];
}

/** A flow in classification for frames from the external network's patch port (its VLAN). */
function fromPatch(ext: NetworkView, prio: number = NAT_PRIORITY.ingress): FlowBuilder {
  const p = ext.provider!;
  return flow("classification", prio)
    .inPort(p.patchOfport)
    .eq("vlan_vid", p.vlan !== undefined ? OFPVID_PRESENT | p.vlan : 0);
}

/** Out of the patch port, tagged for a vlan network. */
function toPatch(b: FlowBuilder, ext: NetworkView): FlowBuilder {
  const p = ext.provider!;
  if (p.vlan !== undefined) b.pushVlan(p.vlan);
  return b.output(p.patchOfport);
}

/**
 * An address (floating IP or gateway) answered on the external network from
 * here: ARP requests for it answered in place (a copy to the agent, which
 * learns the asker), ARP replies to its MAC to the agent, IP to its MAC into nat.
 */
function answerOn(out: OwnerOut, ext: NetworkView, ip: string, mac: string): void {
  const meter = meterId("nat", ext.provider!.patchOfport);
  out.meter(meter, NAT_PUNT_PPS);
  out.flow(
    replyInPlace(
      fromPatch(ext).proto("arp").eq("arp_op", ARP_OP.REQUEST).eq("arp_tpa", ip).controller(),
      ip,
      mac,
    ),
  );
  out.flow(
    fromPatch(ext).proto("arp").eq("eth_dst", mac).eq("arp_op", ARP_OP.REPLY).meter(meter).controller(),
  );
  for (const ttl of [0, 1])
    out.flow(fromPatch(ext, NAT_PRIORITY.ttl).proto("ip").eq("eth_dst", mac).eq("nw_ttl", ttl));
  const ingress = fromPatch(ext).proto("ip").eq("eth_dst", mac);
  if (ext.provider!.vlan !== undefined) ingress.popVlan();
  out.flow(ingress.load(F.network, ext.key).load(F.flags, FLAG.fromProvider).goto("nat"));
  // a VM of this chassis on the external network itself: its request never comes back in
  // from the physical network, so it is answered here too (its IP to the MAC then meets nat's
  // flows on its way through the pipeline)
  out.flow(
    replyInPlace(
      flow("arp_responder", NAT_PRIORITY.localArp)
        .proto("arp")
        .reg(F.network, ext.key)
        .flag(FLAG.fromProvider, false)
        .eq("arp_op", ARP_OP.REQUEST)
        .eq("arp_tpa", ip),
      ip,
      mac,
    ),
  );
}

interface Hop {
  /** The router's interface on the port's subnet. */
  itf: RouterPortView;
  zone: number;
}

/**
 * The router a floating IP of a port on `networkId` (fixed address `fixedIp`)
 * works through: an interface on the address's subnet, its gateway on the
 * floating IP's network, a NAT zone here.
 */
function routerFor(
  view: View,
  networkId: string,
  fixedIp: string,
  extNetworkId: string,
  routerId: string | undefined,
): Hop | undefined {
  for (const itf of fipInterfaces(view, networkId, fixedIp, extNetworkId, routerId)) {
    const zone = view.natZone(itf.routerId);
    if (zone !== undefined) return { itf, zone };
  }
  return undefined;
}

/** The router interfaces a floating IP could work through, best first (routerFor's candidates). */
function* fipInterfaces(
  view: View,
  networkId: string,
  fixedIp: string,
  extNetworkId: string,
  routerId: string | undefined,
): Generator<RouterPortView> {
  for (const itf of view.routerPortsOf(networkId)) {
    if (routerId !== undefined && itf.routerId !== routerId) continue;
    if (!isIpv4(itf.ipAddress) || !cidrContains(itf.cidr, fixedIp)) continue;
    if (!view.router(itf.routerId)?.adminStateUp) continue;
    if (view.snatOf(itf.routerId)?.externalNetworkId !== extNetworkId) continue;
    yield itf;
  }
}

/**
 * Back into nat as if from the external network, for a packet to a NAT
 * address of this chassis that left a VM here through NAT (see the hairpin
 * in the module comment). With `self`, a second flow for a packet both from
 * and to the address — a VM to its own floating IP, SNATed to it — also
 * clears in_port, so that it may go back out of the port it came in on.
 */
function hairpin(out: OwnerOut, ext: NetworkView, ip: string, mac: string, self = false): void {
  const b = (prio: number): FlowBuilder =>
    flow("nat_resolve", prio)
      .reg(F.network, ext.key)
      .reg(F.natRoute, NAT_ROUTE.unknown)
      .proto("ip")
      .eq("ip_dst", ip);
  out.flow(b(NAT_PRIORITY.hairpin).action({ type: "ct_clear" }).set("eth_dst", mac).resubmit("nat"));
  if (!self) return;
  out.flow(
    b(NAT_PRIORITY.hairpinSelf)
      .eq("ip_src", ip)
      .action({ type: "ct_clear" })
      .action({ type: "load", dst: { field: "in_port", ofs: 0, nbits: 0 }, value: 0n })
      .set("eth_dst", mac)
      .resubmit("nat"),
  );
}

/** A floating IP of local port `lp` that works from here, with what its flows need. */
function fipPlan(view: View, lp: LocalPort, f: FloatingIp) {
  const fixed = f.fixedIpAddress;
  if (!fixed || !isIpv4(fixed) || !isIpv4(f.floatingIpAddress)) return undefined;
  if (!lp.port.fixedIps.some((x) => x.ipAddress === fixed)) return undefined;
  const nv = view.network(lp.networkId);
  const ext = view.providerNetwork(f.floatingNetworkId);
  if (!nv || !ext) return undefined;
  const hop = routerFor(view, lp.networkId, fixed, f.floatingNetworkId, f.routerId);
  return hop && { fixed, nv, ext, ...hop };
}

function fipFlows(view: View, lp: LocalPort, out: OwnerOut): void {
  for (const f of view.floatingIpsOf(lp.id)) {
    const plan = fipPlan(view, lp, f);
    if (!plan) continue;
    const { fixed, nv, ext, itf, zone } = plan;
    const fip = f.floatingIpAddress;
    answerOn(out, ext, fip, f.macAddress);
    hairpin(out, ext, fip, f.macAddress, true);
    out.flow(
      flow("nat", NAT_PRIORITY.fip)
        .reg(F.network, ext.key)
        .proto("ip")
        .eq("eth_dst", f.macAddress)
        .eq("ip_dst", fip)
        .ct({ zone, commit: true, nat: { kind: "dst", ipMin: fixed }, table: "nat_state" }),
    );
    out.flow(
      flow("nat_state", NAT_PRIORITY.fip)
        .reg(F.network, ext.key)
        .proto("ip")
        .eq("eth_dst", f.macAddress)
        .eq("ip_dst", fixed)
        .set("eth_src", itf.macAddress)
        .set("eth_dst", lp.port.macAddress)
        .decTtl()
        .load(F.network, nv.key)
        .goto("l2_lookup"),
    );
    const fromPort = (t: "l3" | "nat", prio: number): FlowBuilder =>
      flow(t, prio)
        .reg(F.network, nv.key)
        .reg(F.inPort, lp.ofport)
        .proto("ip")
        .eq("eth_dst", itf.macAddress)
        .eq("ip_src", fixed);
    out.flow(fromPort("l3", NAT_PRIORITY.fipRoute).goto("nat"));
    snatCt(out, view, ext, (p) => fromPort("nat", p), NAT_PRIORITY.fip, zone, fip);
    out.flow(
      flow("nat_state", NAT_PRIORITY.fip)
        .reg(F.network, nv.key)
        .proto("ip")
        .eq("eth_dst", itf.macAddress)
        .eq("ip_src", fip)
        .set("eth_src", f.macAddress)
        .decTtl()
        .load(F.network, ext.key)
        .goto("nat_resolve"),
    );
  }
}

/** The chassis a router's SNAT runs on now: the first candidate whose agent is alive. */
export function activeGateway(view: View, candidates: readonly string[]): string | undefined {
  return candidates.find((c) => view.liveTunnelIp(c) !== undefined);
}

/** Network key and tunnel of a tunnelled network, wired here or not. */
function tunnelOf(view: View, networkId: string): { key: number; ofport: number } | undefined {
  const net = view.networkObject(networkId);
  const encap = net?.networkType === "geneve" || net?.networkType === "vxlan" ? net.networkType : undefined;
  const ofport = encap ? view.tunnelPort(encap) : undefined;
  if (!net || ofport === undefined || net.segmentationId === undefined) return undefined;
  return { key: net.segmentationId, ofport };
}

/** The actions that deliver a packet from the external network to port `p` behind `itf`. */
function deliver(b: FlowBuilder, view: View, itf: RouterInterface, p: ReadyPort): FlowBuilder | undefined {
  const local = view.localPort(p.id);
  const remote = local ? undefined : view.remotePort(p.id);
  if (!local && !remote) return undefined;
  const nv = view.network(p.networkId);
  const tun = nv ? undefined : tunnelOf(view, p.networkId);
  if (!nv && !tun) return undefined;
  b.set("eth_src", itf.macAddress).set("eth_dst", p.macAddress).decTtl();
  if (nv) return b.load(F.network, nv.key).goto("l2_lookup");
  return b
    .load(F.network, tun!.key)
    .set("tun_id", tun!.key)
    .set("tun_dst", remote!.tunnelIp)
    .output(tun!.ofport);
}

const matchItf = (b: FlowBuilder, itf: RouterInterface): FlowBuilder =>
  b
    .proto("ip")
    .eq("eth_dst", itf.macAddress)
    .eq("ip_src", ...v4Prefix(itf.cidr));

/**
 * This chassis' own SNAT address for router `g.routerId` (distributed SNAT),
 * when it has one and can use it: the external network is mapped here and
 * the router has a NAT zone.
 */
function chassisAddressHere(view: View, g: SnatGateway): ChassisAddress | undefined {
  const a = g.chassisAddresses.find((x) => x.chassis === view.chassis);
  if (!a || !isIpv4(a.ipAddress)) return undefined;
  if (!view.providerNetwork(g.externalNetworkId) || view.natZone(g.routerId) === undefined) return undefined;
  return a;
}

/** An SNAT address here (the gateway's, a chassis'): answered on the external network, replies into conntrack. */
function snatAddressFlows(out: OwnerOut, ext: NetworkView, zone: number, ip: string, mac: string): void {
  answerOn(out, ext, ip, mac);
  hairpin(out, ext, ip, mac);
  out.flow(
    flow("nat", NAT_PRIORITY.snat)
      .reg(F.network, ext.key)
      .proto("ip")
      .eq("eth_dst", mac)
      .eq("ip_dst", ip)
      .ct({ zone, nat: {}, table: "nat_state" }),
  );
}

/**
 * The SNAT of what `nat(prio)` matches to `ip`: a packet for one of the
 * external network's IPv4 subnets (a next hop there, a NAT address here:
 * the hairpin) at prio + 1, as it is; any other with natRoute = offLink
 * first, so that nat_resolve's rules for on-link destinations are known not
 * to meet it (see NAT_ROUTE).
 */
function snatCt(
  out: OwnerOut,
  view: View,
  ext: NetworkView,
  nat: (prio: number) => FlowBuilder,
  prio: number,
  zone: number,
  ip: string,
): void {
  const ct = (b: FlowBuilder): FlowBuilder =>
    b.ct({ zone, commit: true, nat: { kind: "src", ipMin: ip }, table: "nat_state" });
  for (const s of v4Subnets(view, ext.network.id))
    out.flow(ct(nat(prio + 1).eq("ip_dst", ...v4Prefix(s.cidr))));
  out.flow(ct(nat(prio).load(F.natRoute, NAT_ROUTE.offLink)));
}

/**
 * SNAT of `itf`'s subnet (network key `key`) to `ip` in `nat` (matched
 * further by `extra`), out from `mac` once translated, and the replies to
 * `ports`' addresses in the subnet delivered.
 */
function snatItfFlows(
  out: OwnerOut,
  view: View,
  s: { key: number; itf: RouterInterface; ext: NetworkView; zone: number; ip: string; mac: string },
  nat: (prio: number) => FlowBuilder,
  prio: number,
  ports: Iterable<ReadyPort>,
): void {
  const { key, itf, ext, zone, ip, mac } = s;
  snatCt(out, view, ext, (p) => matchItf(nat(p).reg(F.network, key), itf), prio, zone, ip);
  out.flow(
    flow("nat_state", NAT_PRIORITY.snat)
      .reg(F.network, key)
      .proto("ip")
      .eq("eth_dst", itf.macAddress)
      .eq("ip_src", ip)
      .set("eth_src", mac)
      .decTtl()
      .load(F.network, ext.key)
      .goto("nat_resolve"),
  );
  for (const p of ports) {
    for (const fx of p.fixedIps) {
      if (!isIpv4(fx.ipAddress) || !cidrContains(itf.cidr, fx.ipAddress)) continue;
      const b = flow("nat_state", NAT_PRIORITY.snat)
        .reg(F.network, ext.key)
        .proto("ip")
        .eq("eth_dst", mac)
        .eq("ip_dst", fx.ipAddress);
      const d = deliver(b, view, itf, p);
      if (d) out.flow(d);
    }
  }
}

/**
 * Distributed SNAT: the router's traffic from this chassis' own VMs (not
 * what arrives through a tunnel for the gateway) is SNATed here to this
 * chassis' address, and the replies to it come back here — ARP for the
 * address is answered by this chassis alone.
 */
function chassisSnatFlows(view: View, r: Router, g: SnatGateway, a: ChassisAddress, out: OwnerOut): void {
  const ext = view.providerNetwork(g.externalNetworkId)!;
  const zone = view.natZone(g.routerId)!;
  snatAddressFlows(out, ext, zone, a.ipAddress, a.macAddress);
  for (const itf of r.interfaces) {
    if (!isIpv4(itf.ipAddress)) continue;
    const nv = view.network(itf.networkId);
    if (!nv) continue;
    out.flow(matchItf(flow("l3", NAT_PRIORITY.snatRoute).reg(F.network, nv.key), itf).goto("nat"));
    snatItfFlows(
      out,
      view,
      { key: nv.key, itf, ext, zone, ip: a.ipAddress, mac: a.macAddress },
      (p) => flow("nat", p).flag(FLAG.fromTunnel, false),
      NAT_PRIORITY.snatLocal,
      view.localPortsOf(itf.networkId).map((lp) => lp.port),
    );
  }
}

function snatFlows(id: string, view: View, out: OwnerOut): void {
  const r = view.router(id);
  const g = view.snatOf(id);
  if (!r?.adminStateUp || !g?.enabled || !isIpv4(g.externalIpAddress)) return;
  const own = chassisAddressHere(view, g);
  if (own) chassisSnatFlows(view, r, g, own, out);
  const gw = activeGateway(view, g.gatewayChassis);
  if (!gw) return;
  const itfs = r.interfaces.filter((i) => isIpv4(i.ipAddress));
  if (gw !== view.chassis) {
    if (own) return;
    const to = view.liveTunnelIp(gw)!;
    for (const itf of itfs) {
      const nv = view.network(itf.networkId);
      const tunnel = nv?.encap ? view.tunnelPort(nv.encap) : undefined;
      if (!nv || tunnel === undefined) continue;
      out.flow(
        matchItf(flow("l3", NAT_PRIORITY.snatRoute).reg(F.network, nv.key), itf)
          .set("tun_id", nv.key)
          .set("tun_dst", to)
          .output(tunnel),
      );
    }
    return;
  }
  const ext = view.providerNetwork(g.externalNetworkId);
  const zone = view.natZone(id);
  if (!ext || zone === undefined) return;
  snatAddressFlows(out, ext, zone, g.externalIpAddress, g.macAddress);
  for (const itf of itfs) {
    const nv = view.network(itf.networkId);
    const tun = tunnelOf(view, itf.networkId);
    const key = nv?.key ?? tun?.key;
    if (key === undefined) continue;
    if (nv && !own)
      out.flow(matchItf(flow("l3", NAT_PRIORITY.snatRoute).reg(F.network, key), itf).goto("nat"));
    if (tun) {
      out.flow(
        matchItf(flow("classification", NAT_PRIORITY.ingress).inPort(tun.ofport).eq("tun_id", tun.key), itf)
          .load(F.network, tun.key)
          .load(F.flags, FLAG.fromTunnel)
          .goto("nat"),
      );
    }
    snatItfFlows(
      out,
      view,
      { key, itf, ext, zone, ip: g.externalIpAddress, mac: g.macAddress },
      (p) => flow("nat", p),
      NAT_PRIORITY.snat,
      view.portsOf(itf.networkId).filter((p) => p.deviceOwner !== DEVICE_OWNER_ROUTER_INTERFACE),
    );
  }
}

/** The IPv4 subnets of an external network. */
function v4Subnets(view: View, networkId: string): Subnet[] {
  return view.subnetsOf(networkId).filter((s) => s.ipVersion === 4);
}

/** Next-hop punts of an external network reachable here. */
function resolveFlows(id: string, view: View, out: OwnerOut): void {
  const ext = view.providerNetwork(id);
  if (!ext?.network.external) return;
  const meter = meterId("nat", ext.provider!.patchOfport);
  out.meter(meter, NAT_PUNT_PPS);
  for (const s of v4Subnets(view, id)) {
    out.flow(
      flow("nat_resolve", NAT_PRIORITY.onLinkPunt + parseCidr(s.cidr).prefix)
        .reg(F.network, ext.key)
        .reg(F.natRoute, NAT_ROUTE.unknown)
        .proto("ip")
        .eq("ip_dst", ...v4Prefix(s.cidr))
        .meter(meter)
        .controller(),
    );
  }
  out.flow(
    flow("nat_resolve", NAT_PRIORITY.gatewayPunt)
      .reg(F.network, ext.key)
      .proto("ip")
      .meter(meter)
      .controller(),
  );
  // a VM of this chassis on the external network is its own next hop, reached on br-int: the
  // physical network would never send a frame back out of the port it came in on
  for (const lp of view.localPortsOf(id)) {
    for (const fx of lp.port.fixedIps) {
      if (!isIpv4(fx.ipAddress)) continue;
      out.flow(
        flow("nat_resolve", NAT_PRIORITY.localPort)
          .reg(F.network, ext.key)
          .reg(F.natRoute, NAT_ROUTE.unknown)
          .proto("ip")
          .eq("ip_dst", fx.ipAddress)
          .set("eth_dst", lp.port.macAddress)
          .goto("l2_lookup"),
      );
    }
  }
}

/** An address this chassis answers for on an external network. */
interface Announced {
  networkId: string;
  ip: string;
  mac: string;
}

/** Every floating IP and gateway address answered from here now (not recorded: for handlers and timers). */
function announcedHere(view: View): Map<string, Announced> {
  const out = new Map<string, Announced>();
  for (const lp of view.localPorts()) {
    for (const f of view.floatingIpsOf(lp.id)) {
      if (fipPlan(view, lp, f)) {
        out.set(`fip/${f.id}`, {
          networkId: f.floatingNetworkId,
          ip: f.floatingIpAddress,
          mac: f.macAddress,
        });
      }
    }
  }
  for (const g of view.snatGateways()) {
    if (!g.enabled || !isIpv4(g.externalIpAddress) || !view.router(g.routerId)?.adminStateUp) continue;
    if (activeGateway(view, g.gatewayChassis) !== view.chassis) continue;
    if (!view.providerNetwork(g.externalNetworkId) || view.natZone(g.routerId) === undefined) continue;
    out.set(`snat/${g.id}`, { networkId: g.externalNetworkId, ip: g.externalIpAddress, mac: g.macAddress });
  }
  for (const g of view.snatGateways()) {
    if (!g.enabled || !isIpv4(g.externalIpAddress) || !view.router(g.routerId)?.adminStateUp) continue;
    const a = chassisAddressHere(view, g);
    if (a)
      out.set(`snat/${g.id}/${a.chassis}`, {
        networkId: g.externalNetworkId,
        ip: a.ipAddress,
        mac: a.macAddress,
      });
  }
  return out;
}

/** The NB address (floating IP or gateway) `ip` with MAC `mac`, when one exists: its network. */
function natAddress(view: View, ip: string, mac?: string): string | undefined {
  for (const f of view.floatingIps()) {
    if (f.floatingIpAddress === ip && (mac === undefined || f.macAddress === mac)) return f.floatingNetworkId;
  }
  for (const g of view.snatGateways()) {
    if (g.externalIpAddress === ip && (mac === undefined || g.macAddress === mac)) return g.externalNetworkId;
    for (const a of g.chassisAddresses) {
      if (a.ipAddress === ip && (mac === undefined || a.macAddress === mac)) return g.externalNetworkId;
    }
  }
  return undefined;
}

/** The flows of a learned next hop `ip` at `mac` on external network `networkId`. */
/** A learned next hop's flows (a reactive owner's), with idle timeout `idleS` (0: none). */
export function nextHopFlows(
  view: View,
  networkId: string,
  ip: string,
  mac: string,
  idleS: number = NEXT_HOP_IDLE_S,
): FlowBuilder[] {
  const ext = view.providerNetwork(networkId);
  if (!ext) return [];
  const subnet = v4Subnets(view, networkId).find((s) => cidrContains(s.cidr, ip));
  if (!subnet) return [];
  const send = (b: FlowBuilder): FlowBuilder => toPatch(b.set("eth_dst", mac), ext);
  const flows = [
    send(flow("nat_resolve", NAT_PRIORITY.nextHop).reg(F.network, ext.key).proto("ip").eq("ip_dst", ip)),
  ];
  if (subnet.gatewayIp === ip) {
    flows.push(send(flow("nat_resolve", NAT_PRIORITY.gateway).reg(F.network, ext.key).proto("ip")));
  }
  return flows.map((b) => b.idleTimeout(idleS).sendFlowRemoved());
}

function reactiveKey(networkId: string, ip: string): string {
  return `${networkId}/${ip}`;
}

export interface NatAppOptions {
  /** Idle timeout of a learned next hop's flows, seconds (default NEXT_HOP_IDLE_S; 0: none). */
  nextHopIdleS?: number;
}

export function natApp(opts: NatAppOptions = {}): App {
  const idle = opts.nextHopIdleS ?? NEXT_HOP_IDLE_S;
  /** Addresses announced (gratuitous ARP) and how many announcements are still due. */
  const announcing = new Map<string, { content: string; left: number }>();
  /** Next hop → when the agent last asked for it. */
  const asked = new Map<string, number>();

  async function learn(ctx: AppContext, networkId: string, ip: string, mac: string): Promise<void> {
    if (natAddress(ctx.view, ip) !== undefined) return;
    const { result: flows, deps } = ctx.track(() => nextHopFlows(ctx.view, networkId, ip, mac, idle));
    if (!flows.length) return;
    await ctx.installReactive({ key: reactiveKey(networkId, ip), flows, deps });
  }

  async function resolve(ctx: AppContext, frame: Buffer): Promise<void> {
    const f = parseEthernet(frame, { dhcp: false });
    const ip = f.ipv4;
    if (!ip) return;
    const networkId = natAddress(ctx.view, ip.src, f.eth.src);
    const ext = networkId && ctx.view.providerNetwork(networkId);
    if (!networkId || !ext) return;
    const subnets = v4Subnets(ctx.view, networkId);
    const onLink = subnets.some((s) => cidrContains(s.cidr, ip.dst));
    const target = onLink
      ? ip.dst
      : (subnets.find((s) => cidrContains(s.cidr, ip.src) && s.gatewayIp)?.gatewayIp ?? undefined);
    if (!target) return;
    const key = reactiveKey(networkId, target);
    const now = Date.now();
    if ((asked.get(key) ?? 0) > now - ARP_RETRY_MS) return;
    asked.set(key, now);
    if (asked.size > 4096) for (const [k, t] of asked) if (t <= now - ARP_RETRY_MS) asked.delete(k);
    const vlan = ext.provider!.vlan;
    await ctx.packetOut(
      ext.provider!.patchOfport,
      buildArpRequest({
        senderMac: f.eth.src,
        senderIp: ip.src,
        targetIp: target,
        ...(vlan !== undefined ? { vlans: [{ vid: vlan }] } : {}),
      }),
    );
  }

  async function announce(ctx: AppContext): Promise<void> {
    const now = announcedHere(ctx.view);
    for (const k of announcing.keys()) if (!now.has(k)) announcing.delete(k);
    for (const [k, a] of now) {
      const content = `${a.networkId}|${a.ip}|${a.mac}`;
      let s = announcing.get(k);
      if (!s || s.content !== content) announcing.set(k, (s = { content, left: GARP_COUNT }));
      if (s.left === 0) continue;
      const ext = ctx.view.providerNetwork(a.networkId);
      if (!ext) continue;
      s.left--;
      const vlan = ext.provider!.vlan;
      await ctx.packetOut(
        ext.provider!.patchOfport,
        buildFrame({
          eth: { src: a.mac, dst: MAC_BROADCAST },
          vlans: vlan !== undefined ? [{ vid: vlan }] : [],
          arp: { op: ARP_OP.REQUEST, sha: a.mac, spa: a.ip, tha: MAC_ZERO, tpa: a.ip },
        }),
      );
    }
  }

  return {
    name: "nat",
    tables: ["classification", "arp_responder", "l3", "nat", "nat_state", "nat_resolve"],
    timer: { everyMs: GARP_TICK_MS, tick: (ctx) => announce(ctx) },
    owners: {
      port(id, view, out) {
        const lp = view.localPort(id);
        if (lp) fipFlows(view, lp, out);
      },
      router(id, view, out) {
        snatFlows(id, view, out);
      },
      network(id, view, out) {
        resolveFlows(id, view, out);
      },
    },
    async packetIn(pkt, ctx) {
      if (pkt.tableId === table("nat_resolve")) return resolve(ctx, pkt.data);
      if (pkt.tableId !== table("classification")) return;
      const f = parseEthernet(pkt.data, { dhcp: false });
      const arp = f.arp;
      if (!arp) return;
      // a request for one of our addresses (the asker is a neighbour), or a reply to one of them
      const mine = arp.op === ARP_OP.REQUEST ? arp.tpa : arp.op === ARP_OP.REPLY ? arp.tpa : undefined;
      const networkId = mine !== undefined ? natAddress(ctx.view, mine) : undefined;
      if (!networkId || arp.sha !== f.eth.src) return;
      await learn(ctx, networkId, arp.spa, arp.sha);
    },
    adoptReactive(installed, ctx) {
      if (installed.table !== table("nat_resolve")) return undefined;
      const at = (field: string) => installed.match.find((m) => m.field === field)?.value;
      const key = Number(at("reg6"));
      const mac = setEthDst(installed);
      if (mac === undefined) return undefined;
      const { result, deps } = ctx.track(() => {
        for (const networkId of externalNetworks(ctx.view)) {
          if (ctx.view.providerNetwork(networkId)?.key !== key) continue;
          const dst = at("ip_dst");
          const ip =
            dst !== undefined
              ? String(dst)
              : (v4Subnets(ctx.view, networkId).find((s) => s.gatewayIp)?.gatewayIp ?? undefined);
          if (!ip) continue;
          const want = nextHopFlows(ctx.view, networkId, ip, mac, idle).map((b) => b.build(installed.cookie));
          if (want.some((w) => sameFlow(w, installed))) return reactiveKey(networkId, ip);
        }
        return undefined;
      });
      return result === undefined ? undefined : { key: result, deps };
    },
  };
}

/**
 * The NAT zone each router's flows use in `installed` (br-int's flows, read
 * at an OpenFlow session's start), for LocalModel.adoptNatZones: the zone of
 * every ct action in the nat table whose owner (its cookie) is a router with
 * a gateway (its SNAT flows) or a local port, then the router the port's
 * floating IP with that address works through. A router seen in two zones
 * is left out. Reads the view unrecorded: call it outside an owner build.
 */
export function installedNatZones(installed: readonly Flow[], view: View): Map<string, number> {
  /** Cookie → the router of a flow of that owner, given the floating IP the flow is for (if any). */
  const owners = new Map<bigint, (fipAddress: string | undefined) => string | undefined>();
  for (const g of view.snatGateways()) owners.set(cookieFor("nat", `router/${g.routerId}`), () => g.routerId);
  for (const lp of view.localPorts()) {
    owners.set(cookieFor("nat", `port/${lp.id}`), (address) => {
      const fip = view.floatingIpsOf(lp.id).find((x) => x.floatingIpAddress === address);
      const fixed = fip?.fixedIpAddress;
      if (!fip || !fixed || !isIpv4(fixed)) return undefined;
      return fipInterfaces(view, lp.networkId, fixed, fip.floatingNetworkId, fip.routerId).next().value
        ?.routerId;
    });
  }
  const zones = new Map<string, Set<number>>();
  for (const f of installed) {
    if (f.table !== table("nat")) continue;
    const owner = owners.get(f.cookie);
    if (!owner) continue;
    for (const i of f.instructions) {
      if (i.type !== "apply_actions") continue;
      for (const a of i.actions) {
        if (a.type !== "ct" || typeof a.zone !== "number" || a.zone < CT_ZONE_MIN || a.zone > CT_ZONE_MAX) {
          continue;
        }
        const nat = a.actions?.find((x) => x.type === "nat")?.nat;
        const ipDst = f.match.find((m) => m.field === "ip_dst")?.value;
        // a floating IP's flows: DNAT of the address (ip_dst), SNAT to it (the nat address)
        const router = owner(
          nat?.kind === "src" ? nat.ipMin : ipDst === undefined ? undefined : String(ipDst),
        );
        if (router === undefined) continue;
        let s = zones.get(router);
        if (!s) zones.set(router, (s = new Set()));
        s.add(a.zone);
      }
    }
  }
  const out = new Map<string, number>();
  for (const [r, s] of zones) if (s.size === 1) out.set(r, [...s][0]!);
  return out;
}

/** The external networks of every floating IP and gateway the model holds. */
function externalNetworks(view: View): string[] {
  return [
    ...new Set([
      ...view.floatingIps().map((f) => f.floatingNetworkId),
      ...view.snatGateways().map((g) => g.externalNetworkId),
    ]),
  ].sort();
}

function setEthDst(f: Flow): string | undefined {
  for (const i of f.instructions) {
    if (i.type !== "apply_actions") continue;
    for (const a of i.actions) if (a.type === "set_field" && a.field === "eth_dst") return String(a.value);
  }
  return undefined;
}

function sameFlow(a: Flow, b: Flow): boolean {
  return (
    flowKey(a) === flowKey(b) &&
    formatInstructions(a.instructions) === formatInstructions(b.instructions) &&
    (a.idleTimeout ?? 0) === (b.idleTimeout ?? 0)
  );
}
