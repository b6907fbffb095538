/**
 * What a flowdrake app is (Dragonflow's app model, made incremental).
 *
 * An app declares
 *   name      its entry in the layout's registry (src/datapath/cookies.ts:
 *             the cookie id of every flow it installs);
 *   tables    the pipeline tables it writes — a flow in any other table is
 *             refused when the agent builds it;
 *   owners    one builder per kind of owner it handles: `port` (every NB
 *             port the agent's cache holds), `network`, `router`, and
 *             `global` (one owner, id ""). A builder gets the owner's id and
 *             the view and emits that owner's flows and meters. It is a pure
 *             function of what it reads from the view: the agent records
 *             every read, and when the model or the local bindings change it
 *             rebuilds exactly the owners whose reads changed (src/controller/
 *             engine.ts). An owner kind an app does not list never reaches
 *             it, and a misspelt kind is a compile error;
 *   packetIn  (optional) packets its flows punted to the local agent — the
 *             agent dispatches by the cookie of the flow that sent them. The
 *             handler may answer with a packet-out and may install reactive
 *             flows (timeouts, removed when what they depend on changes);
 *   adoptReactive (optional) after an agent restart, whether a reactive flow
 *             found installed is still valid, and what it depends on.
 * Apps never talk to OVS: the agent turns owners' flows into flow_mods and
 * meters into meter_mods (src/controller/reconciler.ts) and sends their
 * packet-outs.
 *
 * The view is what the apps may know: this chassis, the local ports bound
 * on br-int (by external_ids:iface-id) with their NB ports, the ports on
 * other live chassis, and for every network with local ports its key,
 * subnets, members, remote chassis and router interfaces.
 */
import type { AppName } from "./registry.js";
import type { FlowBuilder, RegField, TableName } from "../datapath/index.js";
import type { OxmValue } from "../openflow/oxm.js";
import type {
  Chassis,
  FloatingIp,
  Network,
  Port,
  Router,
  Secgroup,
  SnatGateway,
  Subnet,
} from "../nb/model/schemas.js";
import type { Flow } from "../openflow/flow.js";
import type { Logger } from "../util/log.js";

export type EncapType = "geneve" | "vxlan";

/**
 * An NB port as the agent admits it: the model guard (src/controller/
 * model-guard.ts) lets a port through only with its MAC and every fixed
 * address filled in, which the API always does.
 */
export type ReadyPort = Port & {
  macAddress: string;
  fixedIps: { subnetId: string; ipAddress: string }[];
};

export interface LocalPort {
  id: string;
  ofport: number;
  /** OVS interface name. */
  iface: string;
  port: ReadyPort;
  networkId: string;
}

export interface RemotePort {
  id: string;
  port: ReadyPort;
  chassis: string;
  /** IPv4 tunnel endpoint of the port's chassis. */
  tunnelIp: string;
}

export interface RouterPortView {
  routerId: string;
  networkId: string;
  subnetId: string;
  ipAddress: string;
  macAddress: string;
  cidr: string;
}

/** A network wired on this chassis: it has local ports and a key. */
export interface NetworkView {
  id: string;
  network: Network;
  /** Network key in the network register and on the wire (the VNI for tunnelled networks). */
  key: number;
  /** Tunnel type used for this network's traffic between chassis (tunnelled networks). */
  encap?: EncapType;
  /** How a provider (vlan/flat) network reaches its physical network from here. */
  provider?: { physicalNetwork: string; vlan?: number; patchOfport: number };
}

/** Everything an app may read. Reads made while building an owner are that owner's dependencies. */
export interface View {
  readonly chassis: string;
  readonly tunnelIp: string;
  /** An NB port the cache holds (local, remote or neither). */
  port(id: string): ReadyPort | undefined;
  /** A port bound on br-int here whose NB port exists. */
  localPort(id: string): LocalPort | undefined;
  /** A port bound on another chassis that is alive and has an IPv4 tunnel address. */
  remotePort(id: string): RemotePort | undefined;
  /** A network with at least one local port here and a key; undefined otherwise. */
  network(id: string): NetworkView | undefined;
  /** The NB network object, wired here or not. */
  networkObject(id: string): Network | undefined;
  subnet(id: string): Subnet | undefined;
  subnetsOf(networkId: string): readonly Subnet[];
  /** Local ports of a network, by ofport. */
  localPortsOf(networkId: string): readonly LocalPort[];
  /** Other live chassis hosting ports of a network: chassis → tunnel IPv4, sorted by address. */
  remoteChassisOf(networkId: string): ReadonlyMap<string, string>;
  /** The NB port on a network that has this fixed IP (any port: local, remote or neither). */
  portWithIp(networkId: string, ip: string): ReadyPort | undefined;
  /** Router interfaces on a network. */
  routerPortsOf(networkId: string): readonly RouterPortView[];
  router(id: string): Router | undefined;
  /**
   * The router register's value for router `id` (datapath fields.ts
   * `routerKeyOf`); undefined for a router the cache does not hold (or the
   * seventeenth whose id hashes alike).
   */
  routerKey(id: string): number | undefined;
  /** Not recorded as a dependency: the router whose key this is (the router register's value). */
  routerByKey(key: number): Router | undefined;
  chassisInfo(name: string): Chassis | undefined;
  /** ofport of the flow-based tunnel port of an encapsulation here. */
  tunnelPort(encap: EncapType): number | undefined;
  /** Not recorded as a dependency: for packet-in handlers finding the port a packet came from. */
  localPortByOfport(ofport: number): LocalPort | undefined;
  /** Not recorded as a dependency: every NB port on a network, for packet-in handlers. */
  portsOnNetwork(networkId: string): readonly ReadyPort[];
  /** Not recorded as a dependency: the wired network with this key (the network register's value). */
  networkByKey(key: number): NetworkView | undefined;
  /** Not recorded as a dependency: every port bound here, for timers (see App.timer). */
  localPorts(): readonly LocalPort[];
  secgroup(id: string): Secgroup | undefined;
  /** Every port the cache holds that is in a security group (local or not), by id. */
  groupMembers(id: string): readonly ReadyPort[];
  /** Local ports with at least one security group, by ofport. */
  groupedLocalPorts(): readonly LocalPort[];
  /** Every NB port on a network the cache holds (local, remote or neither), by id. */
  portsOf(networkId: string): readonly ReadyPort[];
  /** The floating IPs pointing at a port, by id. */
  floatingIpsOf(portId: string): readonly FloatingIp[];
  /** A router's gateway on an external network (its NB SNAT object), if it has one. */
  snatOf(routerId: string): SnatGateway | undefined;
  /**
   * A vlan/flat network whose physical network is mapped to a bridge here, with or
   * without local ports (an external network seen by NAT): its key and patch port.
   */
  providerNetwork(id: string): NetworkView | undefined;
  /** The IPv4 tunnel address of a chassis whose agent is alive; undefined otherwise. */
  liveTunnelIp(chassis: string): string | undefined;
  /** The conntrack zone of a router's NAT on this chassis (routers with an SNAT gateway). */
  natZone(routerId: string): number | undefined;
  /** Not recorded as a dependency: every floating IP the cache holds, for packet-in handlers and timers. */
  floatingIps(): readonly FloatingIp[];
  /** Not recorded as a dependency: every SNAT gateway the cache holds, for packet-in handlers and timers. */
  snatGateways(): readonly SnatGateway[];
}

/** Where an owner builder puts what it wants installed. */
export interface OwnerOut {
  flow(b: FlowBuilder): void;
  /** An OpenFlow meter the owner's flows use: packets per second, burst of the same size. */
  meter(id: number, ratePps: number): void;
}

export type OwnerKind = "port" | "network" | "router" | "global";

export type OwnerBuilder = (id: string, view: View, out: OwnerOut) => void;

/**
 * What a reactive flow depends on: NB objects and local bindings by key.
 * A change to any of them removes the flow.
 */
export const Dep = {
  port: (id: string) => `port:${id}`,
  /** Whether a network has local ports here (and so its own L2 tables). */
  wired: (id: string) => `wired:${id}`,
  tunnels: "tunnels",
  binding: (id: string) => `binding:${id}`,
  network: (id: string) => `network:${id}`,
  subnet: (id: string) => `subnet:${id}`,
  router: (id: string) => `router:${id}`,
  chassis: (name: string) => `chassis:${name}`,
  /** The physical networks mapped to bridges here (the patch ports). */
  providers: "providers",
} as const;

export interface PacketInEvent {
  inPort: number;
  tableId: number;
  cookie: bigint;
  /** The packet as it was when punted: any rewrite made before the punt included. */
  data: Buffer;
  /**
   * The pipeline fields the switch sent with it, by name ("reg6" → the
   * network key); OVS leaves out the ones that are zero.
   */
  fields?: ReadonlyMap<string, OxmValue>;
}

export interface ReactiveFlows {
  /** Owner key inside the app: a later install under the same key replaces these flows. */
  key: string;
  flows: FlowBuilder[];
  /** Dep.* keys; any change to one of them removes the flows. */
  deps: string[];
  /**
   * The packet that asked for them has left already (`sendThrough`), so the
   * agent may hold their flow_mods a few ms to write them with others.
   */
  unhurried?: boolean;
}

export interface AppContext {
  view: View;
  /** Send a frame out of one port (packet_out with an output action). */
  packetOut(outPort: number, frame: Buffer): Promise<void>;
  /** Run a frame through the pipeline from table 0 as if it came in on `inPort` (packet_out to OFPP_TABLE). */
  resubmit(inPort: number, frame: Buffer): Promise<void>;
  /**
   * Send a punted packet on from table `t`, as it was when punted, with the
   * registers it was punted with (`pkt.fields`, then `regs` on top): where a
   * re-run from table 0 would undo what the pipeline did to it (a rewrite,
   * a NAT) before the punt.
   */
  continueAt(t: TableName, pkt: PacketInEvent, regs?: ReadonlyMap<RegField, number>): Promise<void>;
  /**
   * Send a punted packet on as if it had matched `via`, a flow of the table
   * it was punted from (registers as punted, then `via`'s actions and goto),
   * in one packet_out that does not wait for `via` to be installed: how a
   * first packet leaves before the flow it asked for is in the switch.
   * False, and nothing sent, when the packet met conntrack before its punt:
   * then `resubmit` it once its flows are installed.
   */
  sendThrough(pkt: PacketInEvent, via: FlowBuilder): Promise<boolean>;
  /**
   * Run `fn` recording what it reads from the view: the dependencies to give
   * reactive flows decided in `fn` (any change to one of them removes them).
   */
  track<T>(fn: () => T): { result: T; deps: string[] };
  /** Install reactive flows (they carry this app's reactive cookie and send flow_removed). */
  installReactive(r: ReactiveFlows): Promise<void>;
  log: Logger;
}

export interface App {
  readonly name: AppName;
  readonly tables: readonly TableName[];
  readonly owners: Partial<Record<OwnerKind, OwnerBuilder>>;
  packetIn?(pkt: PacketInEvent, ctx: AppContext): Promise<void>;
  /**
   * After a restart: is this installed reactive flow still what the app would
   * install now? Its owner key and dependencies (use `track`), or undefined
   * to delete it.
   */
  adoptReactive?(
    flow: Flow,
    ctx: Pick<AppContext, "view" | "track">,
  ): { key: string; deps: string[] } | undefined;
  /**
   * Periodic work that sends packets (unsolicited router advertisements):
   * the agent calls `tick` every `everyMs` while its OpenFlow session is up,
   * with `now` on a monotonic clock (ms). Flows are never a tick's business.
   */
  timer?: { everyMs: number; tick(ctx: AppContext, now: number): Promise<void> };
}
