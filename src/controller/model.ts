/**
 * The agent's local model: what the NB cache says (admitted objects only),
 * what OVSDB says (which NB ports are plugged here, at which ofport; the
 * tunnel and patch ports), and which chassis are alive — kept as indexed
 * maps and updated one change at a time. It implements the apps' `View`.
 *
 * Two things make it the base of incremental processing:
 *
 *   reads are recorded   while the engine builds an owner, every view call
 *                        adds an *entity key* to that owner's dependencies
 *                        (`port:vm1`, `members:net1`, `tunnels`, …);
 *   changes are named    every mutator adds the entity keys whose answer it
 *                        may have changed to a changed-set the engine drains.
 *
 * An owner is rebuilt when one of its dependencies is in the changed-set, so
 * the contract is that every mutator names every entity whose view answer it
 * can change. The entities:
 *
 *   entity        answered by                    changed by
 *   ───────────   ────────────────────────────   ───────────────────────────────────────────
 *   port:X        port(X) (+ local/remote)       NB port X
 *   binding:X     localPort(X), remotePort(X)    OVSDB binding of X
 *   chassis:C     remotePort(·), chassisInfo,    NB chassis C, its liveness key
 *                 remoteChassisOf(·)
 *   network:N     network(N), networkObject(N)   NB network N
 *   wired:N       network(N)                     N's local port count crossing 0
 *   members:N     localPortsOf(N)                a local port of N changing, (un)binding
 *   remotes:N     remoteChassisOf(N)             a non-local port of N changing, (un)binding
 *   ip:N/A        portWithIp(N, A)               a port of N with fixed IP A changing (or gaining
 *                                                or losing A)
 *   subnet:S      subnet(S)                      NB subnet S
 *   subnets:N     subnetsOf(N)                   a subnet of N changing
 *   router:R      router(R)                      NB router R
 *   routers:N     routerPortsOf(N)               a router with an interface on N changing
 *   routerkey:H   routerKey(R) (H: R's hash)     a router whose id hashes to H arriving or leaving
 *   tunnels       tunnelPort(·)                  tunnel port ofports
 *   providers     network(N) of provider nets    patch port ofports
 *   secgroup:G    secgroup(G)                    NB security group G
 *   sgmembers:G   groupMembers(G)                a port in G changing (joining, leaving, its
 *                                                addresses)
 *   sglocal       groupedLocalPorts()            a local port with groups changing, (un)binding
 *   netports:N    portsOf(N)                     a port of N changing (joining, leaving, its
 *                                                addresses)
 *   fips:P        floatingIpsOf(P)               an NB floating IP pointing at port P (or no
 *                                                longer)
 *   snat:R        snatOf(R)                      an NB SNAT gateway of router R
 *   natzone:R     natZone(R)                     R gaining its zone (its first SNAT gateway), losing
 *                                                it (its last one), a zone adopted from the switch
 *
 * `providerNetwork(N)` reads `network:N` and `providers`, `liveTunnelIp(C)`
 * reads `chassis:C`. NAT zones come from one CtZones (the layout's) for the
 * model's lifetime: a router gets one when it gains its first SNAT gateway —
 * the zone its id hashes to when free, else the next free one — and keeps
 * it until it loses its last, so another router arriving or leaving never
 * moves it (its connections' conntrack state stays valid). When all 256 are
 * taken a router waits without one, and the first zone freed goes to it.
 * Which zone a router gets thus depends on the order routers arrived; a
 * restarted agent, whose order may differ, calls `adoptNatZones` with the
 * zones the switch's NAT flows use (nat.ts `installedNatZones`), so its
 * routers get the zones their live connections are in.
 *
 * `localPortByOfport`, `portsOnNetwork`, `floatingIps` and `snatGateways`
 * are not recorded: they are for packet-in handlers and timers, whose
 * answers are not owned flows.
 */
import type {
  EncapType,
  LocalPort,
  NetworkView,
  ReadyPort,
  RemotePort,
  RouterPortView,
  View,
} from "../apps/types.js";
import {
  CT_ZONE_MAX,
  CT_ZONE_MIN,
  CtZoneExhausted,
  CtZones,
  hashedZone,
  providerKey,
  routerHash,
  routerKeyOf,
  ROUTER_RANKS,
} from "../datapath/index.js";
import type {
  Chassis,
  FloatingIp,
  Network,
  Router,
  Secgroup,
  SnatGateway,
  Subnet,
} from "../nb/model/schemas.js";
import { DEVICE_OWNER_ROUTER_INTERFACE } from "../nb/model/schemas.js";
import { isIpv4 } from "../packet/addr.js";

export interface Binding {
  portId: string;
  ofport: number;
  iface: string;
}

export type ModelKind = "port" | "network" | "subnet" | "router" | "chassis" | "secgroup" | "fip" | "snat";

function encapOf(network: Network): EncapType | undefined {
  return network.networkType === "geneve" || network.networkType === "vxlan"
    ? network.networkType
    : undefined;
}

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/**
 * An address on a network, as the key of `portsByIp` and as the entity a read of it records. Joined
 * into one flat string each, not a template's tree of pieces: the first lookup of a tree key makes
 * a flat copy that the tree then keeps, and a reactive route's entity lives as long as the route.
 */
function addressKey(networkId: string, ip: string): string {
  return [networkId, ip].join("/");
}

function ipEntity(networkId: string, ip: string): string {
  return ["ip:" + networkId, ip].join("/");
}

export class LocalModel implements View {
  private readonly ports = new Map<string, ReadyPort>();
  private readonly networks = new Map<string, Network>();
  private readonly subnets = new Map<string, Subnet>();
  private readonly routers = new Map<string, Router>();
  private readonly chassisObjs = new Map<string, Chassis>();
  private readonly alive = new Set<string>();
  private readonly bindings = new Map<string, Binding>();
  private readonly byOfport = new Map<number, string>();
  private tunnels: Partial<Record<EncapType, number>> = {};
  private providers = new Map<string, number>();

  private readonly portsByNet = new Map<string, Set<string>>();
  /** `N/A` → ports of network N with fixed IP A (one, unless the NB holds a duplicate). */
  private readonly portsByIp = new Map<string, Set<string>>();
  private readonly secgroups = new Map<string, Secgroup>();
  /** Security group → the ports in it (any port the cache holds). */
  private readonly portsByGroup = new Map<string, Set<string>>();
  private readonly localByNet = new Map<string, Set<string>>();
  private readonly subnetsByNet = new Map<string, Set<string>>();
  private readonly routersByNet = new Map<string, Set<string>>();
  /** Router ids by routerHash: the ranks that make their keys. */
  private readonly routersByHash = new Map<number, Set<string>>();
  /** routerPortsOf's answers, by network; emptied whenever a router changes. */
  private readonly routerPortCache = new Map<string, readonly RouterPortView[]>();
  private readonly fips = new Map<string, FloatingIp>();
  private readonly fipsByPort = new Map<string, Set<string>>();
  private readonly snats = new Map<string, SnatGateway>();
  private readonly snatsByRouter = new Map<string, Set<string>>();
  /** NAT zones of the routers with an SNAT gateway, keyed `nat/<router>`. */
  private readonly natZoneAlloc = new CtZones();
  /** Routers with an SNAT gateway and no zone (every zone taken). */
  private readonly natZoneWaiting = new Set<string>();

  private reads: Set<string> | undefined;
  private changed = new Set<string>();

  constructor(
    readonly chassis: string,
    readonly tunnelIp: string,
  ) {}

  // ── tracking ─────────────────────────────────────────────────────────────

  /** Run `fn` recording every entity it reads into `deps`. */
  tracking<T>(deps: Set<string>, fn: () => T): T {
    const prev = this.reads;
    this.reads = deps;
    try {
      return fn();
    } finally {
      this.reads = prev;
    }
  }

  private read(entity: string): void {
    this.reads?.add(entity);
  }

  private touch(entity: string): void {
    this.changed.add(entity);
  }

  /** The entities changed since the last drain. */
  drainChanged(): Set<string> {
    const c = this.changed;
    this.changed = new Set();
    return c;
  }

  // ── mutators ─────────────────────────────────────────────────────────────

  setPort(id: string, port: ReadyPort | undefined): void {
    const old = this.ports.get(id);
    if (old === port) return;
    this.touch(`port:${id}`);
    const bound = this.bindings.has(id);
    for (const g of old?.securityGroups ?? []) {
      removeFrom(this.portsByGroup, g, id);
      this.touch(`sgmembers:${g}`);
    }
    for (const g of port?.securityGroups ?? []) {
      addTo(this.portsByGroup, g, id);
      this.touch(`sgmembers:${g}`);
    }
    if (bound && (old?.securityGroups.length || port?.securityGroups.length)) this.touch("sglocal");
    if (old) this.touch(`netports:${old.networkId}`);
    if (port) this.touch(`netports:${port.networkId}`);
    this.moveMembership(id, old?.networkId, bound, port?.networkId, bound, () => {
      if (old) {
        removeFrom(this.portsByNet, old.networkId, id);
        for (const f of old.fixedIps) {
          removeFrom(this.portsByIp, addressKey(old.networkId, f.ipAddress), id);
          this.touch(ipEntity(old.networkId, f.ipAddress));
        }
      }
      if (port) {
        this.ports.set(id, port);
        addTo(this.portsByNet, port.networkId, id);
        for (const f of port.fixedIps) {
          addTo(this.portsByIp, addressKey(port.networkId, f.ipAddress), id);
          this.touch(ipEntity(port.networkId, f.ipAddress));
        }
      } else this.ports.delete(id);
    });
  }

  setBinding(portId: string, b: Binding | undefined): void {
    const old = this.bindings.get(portId);
    if (old?.ofport === b?.ofport && old?.iface === b?.iface) return;
    this.touch(`binding:${portId}`);
    if (this.ports.get(portId)?.securityGroups.length) this.touch("sglocal");
    const net = this.ports.get(portId)?.networkId;
    this.moveMembership(portId, net, !!old, net, !!b, () => {
      if (old && this.byOfport.get(old.ofport) === portId) this.byOfport.delete(old.ofport);
      if (b) {
        this.bindings.set(portId, b);
        this.byOfport.set(b.ofport, portId);
      } else this.bindings.delete(portId);
    });
  }

  /**
   * A port leaves (network `from`, local or not) and joins (`to`): name the
   * member sets it touches, and `wired:N` only where N's local port count
   * really crosses zero over the whole change.
   */
  private moveMembership(
    id: string,
    from: string | undefined,
    wasLocal: boolean,
    to: string | undefined,
    isLocal: boolean,
    apply: () => void,
  ): void {
    const nets = [from, to].filter((n): n is string => n !== undefined);
    const wiredBefore = nets.map((n) => this.localByNet.has(n));
    if (from !== undefined) {
      if (wasLocal) {
        removeFrom(this.localByNet, from, id);
        this.touch(`members:${from}`);
      } else this.touch(`remotes:${from}`);
    }
    apply();
    if (to !== undefined) {
      if (isLocal) {
        addTo(this.localByNet, to, id);
        this.touch(`members:${to}`);
      } else this.touch(`remotes:${to}`);
    }
    nets.forEach((n, i) => {
      if (this.localByNet.has(n) !== wiredBefore[i]) this.touch(`wired:${n}`);
    });
  }

  setNetwork(id: string, n: Network | undefined): void {
    if (this.networks.get(id) === n) return;
    this.touch(`network:${id}`);
    if (n) this.networks.set(id, n);
    else this.networks.delete(id);
  }

  setSubnet(id: string, s: Subnet | undefined): void {
    const old = this.subnets.get(id);
    if (old === s) return;
    this.touch(`subnet:${id}`);
    if (old) {
      removeFrom(this.subnetsByNet, old.networkId, id);
      this.touch(`subnets:${old.networkId}`);
    }
    if (s) {
      this.subnets.set(id, s);
      addTo(this.subnetsByNet, s.networkId, id);
      this.touch(`subnets:${s.networkId}`);
    } else this.subnets.delete(id);
  }

  setRouter(id: string, r: Router | undefined): void {
    const old = this.routers.get(id);
    if (old === r) return;
    this.touch(`router:${id}`);
    this.routerPortCache.clear();
    for (const itf of old?.interfaces ?? []) {
      removeFrom(this.routersByNet, itf.networkId, id);
      this.touch(`routers:${itf.networkId}`);
    }
    if (!old !== !r) {
      const h = routerHash(id);
      if (r) addTo(this.routersByHash, h, id);
      else removeFrom(this.routersByHash, h, id);
      this.touch(`routerkey:${h}`);
    }
    if (r) {
      this.routers.set(id, r);
      for (const itf of r.interfaces) {
        addTo(this.routersByNet, itf.networkId, id);
        this.touch(`routers:${itf.networkId}`);
      }
    } else this.routers.delete(id);
  }

  setSecgroup(id: string, g: Secgroup | undefined): void {
    if (this.secgroups.get(id) === g) return;
    this.touch(`secgroup:${id}`);
    if (g) this.secgroups.set(id, g);
    else this.secgroups.delete(id);
  }

  setFip(id: string, f: FloatingIp | undefined): void {
    const old = this.fips.get(id);
    if (old === f) return;
    if (old?.portId !== undefined) {
      removeFrom(this.fipsByPort, old.portId, id);
      this.touch(`fips:${old.portId}`);
    }
    if (f) {
      this.fips.set(id, f);
      if (f.portId !== undefined) {
        addTo(this.fipsByPort, f.portId, id);
        this.touch(`fips:${f.portId}`);
      }
    } else this.fips.delete(id);
  }

  setSnat(id: string, g: SnatGateway | undefined): void {
    const old = this.snats.get(id);
    if (old === g) return;
    if (old) {
      removeFrom(this.snatsByRouter, old.routerId, id);
      this.touch(`snat:${old.routerId}`);
    }
    if (g) {
      this.snats.set(id, g);
      addTo(this.snatsByRouter, g.routerId, id);
      this.touch(`snat:${g.routerId}`);
    } else this.snats.delete(id);
    if (old?.routerId !== g?.routerId) {
      if (old) this.syncNatZone(old.routerId);
      if (g) this.syncNatZone(g.routerId);
    }
  }

  /** Give router `r` a NAT zone when it has a gateway and none, take it back when it has no gateway. */
  private syncNatZone(r: string): void {
    if (this.snatsByRouter.has(r)) {
      if (this.natZoneAlloc.peek(`nat/${r}`) === undefined) this.giveNatZone(r);
      return;
    }
    this.natZoneWaiting.delete(r);
    if (this.natZoneAlloc.peek(`nat/${r}`) === undefined) return;
    this.natZoneAlloc.release(`nat/${r}`);
    this.touch(`natzone:${r}`);
    this.serveNatZoneWaiting();
  }

  private giveNatZone(r: string): boolean {
    try {
      this.natZoneAlloc.zoneFor(`nat/${r}`, hashedZone(r));
    } catch (err) {
      if (!(err instanceof CtZoneExhausted)) throw err;
      this.natZoneWaiting.add(r);
      return false;
    }
    this.natZoneWaiting.delete(r);
    this.touch(`natzone:${r}`);
    return true;
  }

  private serveNatZoneWaiting(): void {
    for (const w of [...this.natZoneWaiting].sort()) if (!this.giveNatZone(w)) return;
  }

  /**
   * Take the NAT zones the switch holds (router → zone, from the NAT flows
   * installed before this agent started): each router with a gateway gets its
   * zone back, and a router that had taken one of them meanwhile gets another
   * (none of its flows reached the switch yet). Routers without a gateway and
   * zones named twice are left out. Returns the routers whose zone changed.
   */
  adoptNatZones(zones: ReadonlyMap<string, number>): string[] {
    const count = new Map<number, number>();
    for (const z of zones.values()) count.set(z, (count.get(z) ?? 0) + 1);
    const changed = new Set<string>();
    for (const [r, z] of zones) {
      if (!this.snatsByRouter.has(r) || count.get(z) !== 1) continue;
      if (z < CT_ZONE_MIN || z > CT_ZONE_MAX || this.natZoneAlloc.peek(`nat/${r}`) === z) continue;
      const holder = this.natZoneAlloc.claim(`nat/${r}`, z);
      this.natZoneWaiting.delete(r);
      changed.add(r);
      if (holder !== undefined) {
        const displaced = holder.slice("nat/".length);
        this.natZoneWaiting.add(displaced);
        changed.add(displaced);
      }
    }
    for (const r of changed) this.touch(`natzone:${r}`);
    this.serveNatZoneWaiting();
    return [...changed].sort();
  }

  setChassis(name: string, c: Chassis | undefined): void {
    if (this.chassisObjs.get(name) === c) return;
    this.touch(`chassis:${name}`);
    if (c) this.chassisObjs.set(name, c);
    else this.chassisObjs.delete(name);
  }

  setAlive(name: string, alive: boolean): void {
    if (this.alive.has(name) === alive) return;
    this.touch(`chassis:${name}`);
    if (alive) this.alive.add(name);
    else this.alive.delete(name);
  }

  setTunnelPorts(t: Partial<Record<EncapType, number>>): void {
    if (t.geneve === this.tunnels.geneve && t.vxlan === this.tunnels.vxlan) return;
    this.tunnels = { ...t };
    this.touch("tunnels");
  }

  setProviderPorts(p: ReadonlyMap<string, number>): void {
    const same = p.size === this.providers.size && [...p].every(([k, v]) => this.providers.get(k) === v);
    if (same) return;
    this.providers = new Map(p);
    this.touch("providers");
  }

  /** Generic setter for the NB kinds the model holds. */
  setObject(kind: ModelKind, key: string, value: unknown): void {
    switch (kind) {
      case "port":
        return this.setPort(key, value as ReadyPort | undefined);
      case "network":
        return this.setNetwork(key, value as Network | undefined);
      case "subnet":
        return this.setSubnet(key, value as Subnet | undefined);
      case "router":
        return this.setRouter(key, value as Router | undefined);
      case "chassis":
        return this.setChassis(key, value as Chassis | undefined);
      case "secgroup":
        return this.setSecgroup(key, value as Secgroup | undefined);
      case "fip":
        return this.setFip(key, value as FloatingIp | undefined);
      case "snat":
        return this.setSnat(key, value as SnatGateway | undefined);
    }
  }

  // ── enumeration (owners, status) ─────────────────────────────────────────

  portIds(): IterableIterator<string> {
    return this.ports.keys();
  }

  networkIds(): IterableIterator<string> {
    return this.networks.keys();
  }

  routerIds(): IterableIterator<string> {
    return this.routers.keys();
  }

  bindingOf(portId: string): Binding | undefined {
    return this.bindings.get(portId);
  }

  bindingCount(): number {
    return this.bindings.size;
  }

  /** Local ports whose NB port exists (bound and known). */
  localPorts(): LocalPort[] {
    const out: LocalPort[] = [];
    for (const id of this.bindings.keys()) {
      const lp = this.localPortOf(id);
      if (lp) out.push(lp);
    }
    return out.sort((a, b) => a.ofport - b.ofport);
  }

  isAlive(chassis: string): boolean {
    return this.alive.has(chassis);
  }

  // ── View ─────────────────────────────────────────────────────────────────

  port(id: string): ReadyPort | undefined {
    this.read(`port:${id}`);
    return this.ports.get(id);
  }

  private localPortOf(id: string): LocalPort | undefined {
    const b = this.bindings.get(id);
    const port = this.ports.get(id);
    if (!b || !port || b.ofport <= 0) return undefined;
    return { id, ofport: b.ofport, iface: b.iface, port, networkId: port.networkId };
  }

  localPort(id: string): LocalPort | undefined {
    this.read(`port:${id}`);
    this.read(`binding:${id}`);
    return this.localPortOf(id);
  }

  remotePort(id: string): RemotePort | undefined {
    this.read(`port:${id}`);
    this.read(`binding:${id}`);
    const port = this.ports.get(id);
    if (!port || this.bindings.has(id) || port.deviceOwner === DEVICE_OWNER_ROUTER_INTERFACE)
      return undefined;
    const chassis = port.chassis;
    if (!chassis || chassis === this.chassis) return undefined;
    const tunnelIp = this.tunnelIpOf(chassis);
    return tunnelIp ? { id, port, chassis, tunnelIp } : undefined;
  }

  private tunnelIpOf(chassis: string): string | undefined {
    this.read(`chassis:${chassis}`);
    if (!this.alive.has(chassis)) return undefined;
    return this.chassisObjs.get(chassis)?.tunnelIps.find(isIpv4);
  }

  network(id: string): NetworkView | undefined {
    this.read(`network:${id}`);
    this.read(`wired:${id}`);
    const network = this.networks.get(id);
    if (!network || !this.localByNet.has(id)) return undefined;
    const encap = encapOf(network);
    if (encap) {
      if (network.segmentationId === undefined) return undefined;
      return { id, network, key: network.segmentationId, encap };
    }
    // A provider network is wired only where its physical network is mapped to a bridge.
    this.read("providers");
    const physnet = network.physicalNetwork;
    const patchOfport = physnet ? this.providers.get(physnet) : undefined;
    if (!physnet || patchOfport === undefined) return undefined;
    const vlan = network.networkType === "vlan" ? network.segmentationId : undefined;
    return {
      id,
      network,
      key: providerKey(physnet, vlan),
      provider: { physicalNetwork: physnet, patchOfport, ...(vlan !== undefined ? { vlan } : {}) },
    };
  }

  networkObject(id: string): Network | undefined {
    this.read(`network:${id}`);
    return this.networks.get(id);
  }

  subnet(id: string): Subnet | undefined {
    this.read(`subnet:${id}`);
    return this.subnets.get(id);
  }

  subnetsOf(networkId: string): readonly Subnet[] {
    this.read(`subnets:${networkId}`);
    return [...(this.subnetsByNet.get(networkId) ?? [])].sort().map((id) => this.subnets.get(id)!);
  }

  localPortsOf(networkId: string): readonly LocalPort[] {
    this.read(`members:${networkId}`);
    const out: LocalPort[] = [];
    for (const id of this.localByNet.get(networkId) ?? []) {
      const lp = this.localPortOf(id);
      if (lp) out.push(lp);
    }
    return out.sort((a, b) => a.ofport - b.ofport);
  }

  remoteChassisOf(networkId: string): ReadonlyMap<string, string> {
    this.read(`remotes:${networkId}`);
    const names = new Set<string>();
    for (const id of this.portsByNet.get(networkId) ?? []) {
      if (this.bindings.has(id)) continue;
      const p = this.ports.get(id)!;
      if (p.chassis && p.chassis !== this.chassis && p.deviceOwner !== DEVICE_OWNER_ROUTER_INTERFACE) {
        names.add(p.chassis);
      }
    }
    const out: [string, string][] = [];
    for (const c of names) {
      const ip = this.tunnelIpOf(c);
      if (ip) out.push([c, ip]);
    }
    out.sort((a, b) => ipOrder(a[1], b[1]) || (a[0] < b[0] ? -1 : 1));
    return new Map(out);
  }

  routerKey(id: string): number | undefined {
    const h = routerHash(id);
    this.read(`routerkey:${h}`);
    const same = this.routersByHash.get(h);
    if (!same?.has(id)) return undefined;
    const rank = same.size === 1 ? 0 : [...same].sort().indexOf(id);
    return rank < ROUTER_RANKS ? routerKeyOf(h, rank) : undefined;
  }

  routerByKey(key: number): Router | undefined {
    const h = key >>> 4;
    const rank = key & (ROUTER_RANKS - 1);
    const same = this.routersByHash.get(h);
    const id = same && [...same].sort()[rank];
    return id === undefined ? undefined : this.routers.get(id);
  }

  routerPortsOf(networkId: string): readonly RouterPortView[] {
    this.read(`routers:${networkId}`);
    // Every routed first packet asks this (three times): the answer is kept until a router changes.
    const cached = this.routerPortCache.get(networkId);
    if (cached) return cached;
    const out: RouterPortView[] = [];
    for (const rid of [...(this.routersByNet.get(networkId) ?? [])].sort()) {
      for (const itf of this.routers.get(rid)!.interfaces) {
        if (itf.networkId !== networkId) continue;
        out.push({
          routerId: rid,
          networkId,
          subnetId: itf.subnetId,
          ipAddress: itf.ipAddress,
          macAddress: itf.macAddress,
          cidr: itf.cidr,
        });
      }
    }
    for (const v of out) Object.freeze(v);
    this.routerPortCache.set(networkId, Object.freeze(out));
    return out;
  }

  router(id: string): Router | undefined {
    this.read(`router:${id}`);
    return this.routers.get(id);
  }

  chassisInfo(name: string): Chassis | undefined {
    this.read(`chassis:${name}`);
    return this.chassisObjs.get(name);
  }

  tunnelPort(encap: EncapType): number | undefined {
    this.read("tunnels");
    return this.tunnels[encap];
  }

  networkByKey(key: number): NetworkView | undefined {
    const prev = this.reads;
    this.reads = undefined;
    try {
      for (const id of this.localByNet.keys()) {
        const nv = this.network(id);
        if (nv?.key === key) return nv;
      }
      return undefined;
    } finally {
      this.reads = prev;
    }
  }

  portWithIp(networkId: string, ip: string): ReadyPort | undefined {
    this.read(ipEntity(networkId, ip));
    const ids = this.portsByIp.get(addressKey(networkId, ip));
    if (!ids) return undefined;
    // a duplicate address: the lowest port id, whatever the arrival order
    let best: string | undefined;
    for (const id of ids) if (best === undefined || id < best) best = id;
    return this.ports.get(best!);
  }

  secgroup(id: string): Secgroup | undefined {
    this.read(`secgroup:${id}`);
    return this.secgroups.get(id);
  }

  groupMembers(id: string): readonly ReadyPort[] {
    this.read(`sgmembers:${id}`);
    return [...(this.portsByGroup.get(id) ?? [])].sort().map((p) => this.ports.get(p)!);
  }

  groupedLocalPorts(): readonly LocalPort[] {
    this.read("sglocal");
    const out: LocalPort[] = [];
    for (const id of this.bindings.keys()) {
      const lp = this.localPortOf(id);
      if (lp && lp.port.securityGroups.length) out.push(lp);
    }
    return out.sort((a, b) => a.ofport - b.ofport);
  }

  portsOf(networkId: string): readonly ReadyPort[] {
    this.read(`netports:${networkId}`);
    return [...(this.portsByNet.get(networkId) ?? [])].sort().map((id) => this.ports.get(id)!);
  }

  floatingIpsOf(portId: string): readonly FloatingIp[] {
    this.read(`fips:${portId}`);
    return [...(this.fipsByPort.get(portId) ?? [])].sort().map((id) => this.fips.get(id)!);
  }

  snatOf(routerId: string): SnatGateway | undefined {
    this.read(`snat:${routerId}`);
    const ids = this.snatsByRouter.get(routerId);
    // the NB allows one per router; should a store hold two, the lowest id, whatever the arrival order
    return ids ? this.snats.get([...ids].sort()[0]!) : undefined;
  }

  providerNetwork(id: string): NetworkView | undefined {
    this.read(`network:${id}`);
    this.read("providers");
    const network = this.networks.get(id);
    const physnet = network?.physicalNetwork;
    if (!network || !physnet || (network.networkType !== "vlan" && network.networkType !== "flat")) {
      return undefined;
    }
    const patchOfport = this.providers.get(physnet);
    if (patchOfport === undefined) return undefined;
    const vlan = network.networkType === "vlan" ? network.segmentationId : undefined;
    return {
      id,
      network,
      key: providerKey(physnet, vlan),
      provider: { physicalNetwork: physnet, patchOfport, ...(vlan !== undefined ? { vlan } : {}) },
    };
  }

  liveTunnelIp(chassis: string): string | undefined {
    return this.tunnelIpOf(chassis);
  }

  natZone(routerId: string): number | undefined {
    this.read(`natzone:${routerId}`);
    return this.natZoneAlloc.peek(`nat/${routerId}`);
  }

  floatingIps(): readonly FloatingIp[] {
    return [...this.fips.values()];
  }

  snatGateways(): readonly SnatGateway[] {
    return [...this.snats.values()];
  }

  localPortByOfport(ofport: number): LocalPort | undefined {
    const id = this.byOfport.get(ofport);
    return id === undefined ? undefined : this.localPortOf(id);
  }

  portsOnNetwork(networkId: string): readonly ReadyPort[] {
    return [...(this.portsByNet.get(networkId) ?? [])].map((id) => this.ports.get(id)!);
  }
}

function ipOrder(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}
