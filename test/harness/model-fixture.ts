/**
 * A LocalModel filled from compact NB-like input, for tests of the apps and
 * the engine without OVS or a store: objects go through the model schema
 * (defaults filled in) exactly as the agent's model guard admits them.
 */
import type { ReadyPort } from "../../src/apps/types.js";
import { LocalModel, type Binding } from "../../src/controller/model.js";
import { routerHash, routerKeyOf } from "../../src/datapath/index.js";
import {
  parseObject,
  type Chassis,
  type FloatingIp,
  type Network,
  type Router,
  type SnatGateway,
  type Subnet,
} from "../../src/nb/model/index.js";

export function net(id: string, extra: Record<string, unknown> = {}): Network {
  return parseObject("lswitch", { id, tenantId: "t1", networkType: "geneve", ...extra }, id);
}

export function subnet(
  id: string,
  networkId: string,
  cidr: string,
  extra: Record<string, unknown> = {},
): Subnet {
  const v6 = cidr.includes(":");
  return parseObject("subnet", { id, tenantId: "t1", networkId, cidr, ipVersion: v6 ? 6 : 4, ...extra }, id);
}

export function port(
  id: string,
  networkId: string,
  mac: string,
  ips: [subnetId: string, ip: string][],
  extra: Record<string, unknown> = {},
): ReadyPort {
  return parseObject(
    "lport",
    {
      id,
      tenantId: "t1",
      networkId,
      macAddress: mac,
      fixedIps: ips.map(([subnetId, ipAddress]) => ({ subnetId, ipAddress })),
      ...extra,
    },
    id,
  ) as ReadyPort;
}

export function chassis(name: string, ip: string): Chassis {
  return parseObject("chassis", { name, tunnelIps: [ip] }, name);
}

export function router(
  id: string,
  interfaces: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): Router {
  return parseObject("lrouter", { id, tenantId: "t1", interfaces, ...extra }, id);
}

/**
 * The router register's value of router `id` as dump-flows prints it (`reg2=0x…`), for a router
 * whose id shares its hash with no other.
 */
export function routerKeyHex(id: string): string {
  return `0x${routerKeyOf(routerHash(id), 0).toString(16)}`;
}

export function binding(portId: string, ofport: number): Binding {
  return { portId, ofport, iface: `tap-${portId}` };
}

/** A model for chassis host1 (tunnel IP 192.0.2.1) with tunnel ports geneve=100, vxlan=101. */
export function newModel(): LocalModel {
  const m = new LocalModel("host1", "192.0.2.1");
  m.setTunnelPorts({ geneve: 100, vxlan: 101 });
  return m;
}

export function fip(
  id: string,
  extra: {
    floatingNetworkId: string;
    floatingIpAddress: string;
    macAddress: string;
    portId?: string;
    fixedIpAddress?: string;
    routerId?: string;
  },
): FloatingIp {
  return parseObject("fip", { id, tenantId: "t1", ...extra }, id);
}

export function snat(
  id: string,
  extra: {
    routerId: string;
    externalNetworkId: string;
    externalIpAddress: string;
    macAddress: string;
    gatewayChassis?: string[];
    enabled?: boolean;
    chassisAddresses?: { chassis: string; ipAddress: string; macAddress: string }[];
  },
): SnatGateway {
  return parseObject("snat", { id, tenantId: "t1", ...extra }, id);
}
