/**
 * Builds the apps' view (src/apps/types.ts) from the two things the agent
 * follows: the NB cache (what the model says, limited to what local ports
 * need) and the local bindings (which NB ports are plugged into br-int here,
 * and at which ofport). Pure: same inputs, same view — which keeps the desired
 * flow set reproducible across agent restarts.
 */
import type { AgentView, EncapType, LocalPort, NetworkView, RemotePort } from "../apps/types.js";
import type { Chassis, Network, Port, Router, Subnet } from "../nb/model/schemas.js";
import { KIND } from "../nb/sync/refs.js";
import { DEVICE_OWNER_ROUTER_INTERFACE } from "../nb/model/schemas.js";
import { fnv1a32 } from "./cookies.js";

export interface Binding {
  portId: string;
  ofport: number;
  iface: string;
}

/** The read side of the NB cache the view needs. */
export interface ModelSource {
  list(kind: string): { key: string; value: unknown }[];
}

export interface ViewInput {
  chassis: string;
  tunnelIp: string;
  tunnelPorts: Partial<Record<EncapType, number>>;
  /** physical network → ofport of its patch port on br-int */
  providerPorts?: Map<string, number>;
  bindings: Iterable<Binding>;
  model: ModelSource;
}

function byKey<T>(model: ModelSource, kind: string): Map<string, T> {
  return new Map(model.list(kind).map((o) => [o.key, o.value as T]));
}

/** A tunnelled network travels in its own encapsulation; provider (vlan/flat) networks have none. */
function encapOf(network: Network): EncapType | undefined {
  return network.networkType === "geneve" || network.networkType === "vxlan"
    ? network.networkType
    : undefined;
}

/**
 * reg6 key of a provider network, outside the 24-bit range of tunnel keys:
 * 0x1000000 | VLAN id for vlan, 0x2000000 | a 16-bit hash of the physical
 * network for flat.
 */
export function providerKey(physicalNetwork: string, vlan: number | undefined): number {
  return vlan !== undefined ? 0x1000000 | vlan : 0x2000000 | (fnv1a32(physicalNetwork) & 0xffff);
}

export function buildView(input: ViewInput): AgentView {
  const providerPorts = input.providerPorts ?? new Map<string, number>();
  const networks = byKey<Network>(input.model, KIND.network);
  const subnets = byKey<Subnet>(input.model, KIND.subnet);
  const ports = byKey<Port>(input.model, KIND.port);
  const chassisById = byKey<Chassis>(input.model, KIND.chassis);
  const routers = byKey<Router>(input.model, KIND.router);

  const localPorts = new Map<string, LocalPort>();
  for (const b of input.bindings) {
    const port = ports.get(b.portId);
    if (!port || b.ofport <= 0) continue;
    localPorts.set(b.portId, {
      id: b.portId,
      ofport: b.ofport,
      iface: b.iface,
      port,
      networkId: port.networkId,
    });
  }

  const views = new Map<string, NetworkView>();
  for (const lp of localPorts.values()) {
    if (views.has(lp.networkId)) continue;
    const network = networks.get(lp.networkId);
    if (!network) continue;
    const encap = encapOf(network);
    let key: number;
    let provider: NetworkView["provider"];
    if (encap) {
      if (network.segmentationId === undefined) continue;
      key = network.segmentationId;
    } else {
      // A provider network is wired only where its physical network is mapped to a bridge.
      const patchOfport = network.physicalNetwork ? providerPorts.get(network.physicalNetwork) : undefined;
      if (patchOfport === undefined) continue;
      const vlan = network.networkType === "vlan" ? network.segmentationId : undefined;
      key = providerKey(network.physicalNetwork!, vlan);
      provider = {
        physicalNetwork: network.physicalNetwork!,
        patchOfport,
        ...(vlan !== undefined ? { vlan } : {}),
      };
    }
    views.set(lp.networkId, {
      id: lp.networkId,
      network,
      key,
      ...(encap ? { encap } : {}),
      ...(provider ? { provider } : {}),
      subnets: [...subnets.values()].filter((s) => s.networkId === lp.networkId),
      localPorts: [],
      remotePorts: [],
      remoteChassis: new Map(),
      routerPorts: [],
    });
  }
  for (const lp of localPorts.values()) views.get(lp.networkId)?.localPorts.push(lp);
  for (const [id, port] of ports) {
    const nv = views.get(port.networkId);
    if (!nv || localPorts.has(id)) continue;
    if (port.deviceOwner === DEVICE_OWNER_ROUTER_INTERFACE) continue;
    if (!port.chassis || port.chassis === input.chassis) continue;
    const ch = chassisById.get(port.chassis);
    const tunnelIp = ch?.tunnelIps.find((ip) => !ip.includes(":"));
    if (!tunnelIp) continue;
    const rp: RemotePort = { id, port, chassis: port.chassis, tunnelIp };
    nv.remotePorts.push(rp);
    nv.remoteChassis.set(port.chassis, tunnelIp);
  }
  for (const [routerId, r] of routers) {
    for (const itf of r.interfaces) {
      views.get(itf.networkId)?.routerPorts.push({
        routerId,
        ipAddress: itf.ipAddress,
        macAddress: itf.macAddress,
        cidr: itf.cidr,
        subnetId: itf.subnetId,
      });
    }
  }
  for (const nv of views.values()) {
    nv.localPorts.sort((a, b) => a.ofport - b.ofport);
    nv.remotePorts.sort((a, b) => (a.id < b.id ? -1 : 1));
  }
  return {
    chassis: input.chassis,
    tunnelIp: input.tunnelIp,
    tunnelPorts: input.tunnelPorts,
    providerPorts,
    networks: views,
    localPorts,
    subnets,
    chassisById,
    routers,
  };
}
