/**
 * The live probes behind `flowdrake caps`: the OVSDB offload settings, and
 * netlink (devlink eswitch/info, ethtool features). Each is optional: when a
 * probe cannot run, the report says which facts are missing instead of failing.
 */
import type { NetlinkProbe, OvsProbe } from "../offload/caps/source.js";
import { probeNetlink } from "../offload/caps/netlink-probe.js";
import { readOffloadSettings } from "../offload/ovs-settings.js";
import { OvsdbClient } from "../ovsdb/client.js";

export async function capsProbes(ovsdbRemote?: string): Promise<{ netlink?: NetlinkProbe; ovs?: OvsProbe }> {
  return {
    netlink: probeNetlink,
    ovs: async () => {
      if (!ovsdbRemote) return undefined;
      let client: OvsdbClient | undefined;
      try {
        client = await OvsdbClient.connect(ovsdbRemote);
        return await readOffloadSettings(client, ovsdbRemote);
      } catch {
        return undefined;
      } finally {
        client?.close();
      }
    },
  };
}
