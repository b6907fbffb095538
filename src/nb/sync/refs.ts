/**
 * What an NB object refers to, read from its stored JSON: the tenant it belongs
 * to, the networks, subnets, security groups, router and chassis (bindings,
 * SNAT gateway candidates) it names. The
 * selective-distribution closure (cache.ts) and the pub/sub topic scheme
 * (pubsub/message.ts) are both computed from these references, so this is the
 * one place that knows the model's field names.
 *
 * Field names follow src/nb/model; older/alternative spellings are accepted so
 * that objects written by other tools still resolve.
 */
import { KINDS } from "../model/index.js";
import {
  TOPIC_ALL,
  TOPIC_CHASSIS,
  groupTopic,
  networkTopic,
  routerTopic,
  tenantTopic,
} from "../pubsub/message.js";

/** The NB kinds selective distribution knows about, by their store kind names (src/nb/model KINDS). */
export const KIND = {
  chassis: KINDS.chassis.kind,
  tenant: KINDS.tenant.kind,
  network: KINDS.lswitch.kind,
  subnet: KINDS.subnet.kind,
  port: KINDS.lport.kind,
  router: KINDS.lrouter.kind,
  secgroup: KINDS.secgroup.kind,
  fip: KINDS.fip.kind,
  snat: KINDS.snat.kind,
} as const;

export const SYNC_KINDS: string[] = Object.values(KIND);

/**
 * Agents' own bookkeeping under the NB prefix (not model objects):
 *   chassis-liveness/<chassis>  on a lease, refreshed by the chassis' agent while it runs
 *   chassis-realised/<chassis>  the NB revision the chassis' switch realises
 */
export const AGENT_KIND = { liveness: "chassis-liveness", realised: "chassis-realised" } as const;

export interface Refs {
  tenant?: string;
  networks: string[];
  subnets: string[];
  securityGroups: string[];
  /** Security groups named as the remote group of a rule. */
  remoteGroups: string[];
  routers: string[];
  chassis: string[];
}

type Obj = Record<string, unknown>;

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function strs(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string" && x !== "") : [];
}

function objs(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter((x): x is Obj => !!x && typeof x === "object") : [];
}

function uniq(xs: (string | undefined)[]): string[] {
  return [...new Set(xs.filter((x): x is string => !!x))];
}

export function refsOf(kind: string, key: string, value: unknown): Refs {
  const v: Obj = value && typeof value === "object" ? (value as Obj) : {};
  const binding = v.binding && typeof v.binding === "object" ? (v.binding as Obj) : {};
  const interfaces = objs(v.interfaces);
  const routerPortOwner = str(v.deviceOwner)?.includes("router") ? str(v.deviceId) : undefined;
  return {
    tenant: str(v.tenantId) ?? str(v.projectId) ?? str(v.tenant),
    networks: uniq([
      kind === KIND.network ? key : undefined,
      str(v.networkId),
      ...interfaces.map((i) => str(i.networkId)),
      ...strs(v.networkIds),
      str(v.floatingNetworkId),
      str(v.externalNetworkId),
    ]),
    subnets: uniq([
      kind === KIND.subnet ? key : undefined,
      str(v.subnetId),
      ...strs(v.subnetIds),
      ...objs(v.fixedIps).map((ip) => str(ip.subnetId)),
      ...interfaces.map((i) => str(i.subnetId)),
    ]),
    securityGroups: uniq([
      kind === KIND.secgroup ? key : undefined,
      ...strs(v.securityGroups),
      ...strs(v.securityGroupIds),
    ]),
    remoteGroups: uniq(objs(v.rules).map((r) => str(r.remoteGroupId) ?? str(r.remoteGroup))),
    routers: uniq([kind === KIND.router ? key : undefined, str(v.routerId), routerPortOwner]),
    chassis: uniq([
      kind === KIND.chassis ? key : undefined,
      str(v.chassis),
      str(v.chassisId),
      str(binding.chassis),
      str(v.hostId),
      ...strs(v.gatewayChassis),
    ]),
  };
}

/**
 * The pub/sub topics a change to this object is published on: its networks and
 * routers when it has any (ports, subnets, networks, router interfaces), else
 * its tenant (security groups, unattached routers), else `all/`; a port in
 * security groups also on each group's topic. A floating IP also goes to its
 * tenant (every agent with a port of the tenant hears of it, whatever its
 * router), and an SNAT gateway with gateway chassis also to `c/` (so a
 * candidate chassis hears of it before it holds the router).
 */
export function topicsOf(kind: string, key: string, value: unknown): string[] {
  if (kind === KIND.chassis || kind === AGENT_KIND.liveness || kind === AGENT_KIND.realised) {
    return [TOPIC_CHASSIS];
  }
  const r = refsOf(kind, key, value);
  const topics = [...r.networks.map(networkTopic), ...r.routers.map(routerTopic)];
  if ((topics.length === 0 || kind === KIND.fip) && r.tenant) topics.push(tenantTopic(r.tenant));
  if (kind === KIND.port) topics.push(...r.securityGroups.map(groupTopic));
  if (kind === KIND.snat && r.chassis.length) topics.push(TOPIC_CHASSIS);
  return topics.length ? topics : [TOPIC_ALL];
}
