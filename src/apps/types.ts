/**
 * What a flowdrake app is.
 *
 * An app is a module with a name and two optional hooks:
 *   flows(view)          every flow it wants, as ovs-ofctl text, each tagged
 *                        with the NB object (or local thing) it derives from;
 *                        a pure function of the agent's view, so the desired
 *                        set is always recomputable and a restart reproduces it;
 *   packetIn(pkt, ctx)   packets its flows sent to the controller (the agent
 *                        dispatches by the cookie of the flow that punted it).
 * Apps refer to tables by name through src/controller/pipeline.ts and never
 * talk to OVS themselves: the agent turns their flows into a minimal set of
 * flow_mods (src/controller/reconciler.ts) and sends their packet-outs.
 *
 * The view is the agent's picture of the world the apps need: this chassis,
 * its tunnel ports, the local ports bound on br-int (by external_ids:iface-id)
 * and, per network that has local ports, its subnets, the peers on other
 * chassis and the router interfaces on it.
 */
import type { Chassis, Network, Port, Router, Subnet } from "../nb/model/schemas.js";
import type { Logger } from "../util/log.js";

export type EncapType = "geneve" | "vxlan";

export interface LocalPort {
  id: string;
  ofport: number;
  /** OVS interface name. */
  iface: string;
  port: Port;
  networkId: string;
}

export interface RemotePort {
  id: string;
  port: Port;
  chassis: string;
  tunnelIp: string;
}

export interface RouterPortView {
  routerId: string;
  ipAddress: string;
  macAddress: string;
  cidr: string;
  subnetId: string;
}

export interface NetworkView {
  id: string;
  network: Network;
  /** Network key in reg6 and on the wire (the VNI): the segmentation id. */
  key: number;
  /** Tunnel type used for this network's traffic between chassis (tunnelled networks). */
  encap?: EncapType;
  /** How a provider (vlan/flat) network reaches its physical network from here. */
  provider?: { physicalNetwork: string; vlan?: number; patchOfport: number };
  subnets: Subnet[];
  localPorts: LocalPort[];
  remotePorts: RemotePort[];
  /** Tunnel IPs of the other chassis that host ports of this network. */
  remoteChassis: Map<string, string>;
  routerPorts: RouterPortView[];
}

export interface AgentView {
  chassis: string;
  tunnelIp: string;
  /** ofport of the flow-based tunnel port per encap type (absent until OVS assigned one). */
  tunnelPorts: Partial<Record<EncapType, number>>;
  /** ofport of br-int's patch port per physical network (bridge mappings). */
  providerPorts: Map<string, number>;
  networks: Map<string, NetworkView>;
  localPorts: Map<string, LocalPort>;
  subnets: Map<string, Subnet>;
  chassisById: Map<string, Chassis>;
  routers: Map<string, Router>;
}

export interface FlowSpec {
  /** The object the flow derives from (a port id, network id, …): part of its cookie. */
  key: string;
  /** The flow in ovs-ofctl syntax, without cookie (the agent adds it). */
  flow: string;
}

export interface PacketInEvent {
  inPort: number;
  tableId: number;
  cookie: bigint;
  data: Buffer;
}

export interface AppContext {
  view(): AgentView;
  /** Send a frame out of one port (packet_out with output action). */
  packetOut(outPort: number, frame: Buffer): Promise<void>;
  log: Logger;
}

export interface App {
  readonly name: string;
  flows?(view: AgentView): FlowSpec[];
  packetIn?(pkt: PacketInEvent, ctx: AppContext): Promise<void>;
  /** OpenFlow meters the app's flows use (meter id → packets per second). */
  meters?(view: AgentView): Map<number, number>;
}
