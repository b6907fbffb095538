/**
 * The agent's own ports: tunnel ports on br-int, and patch ports to the
 * bridges of provider networks.
 *
 * Tunnel ports on br-int: one flow-based port per encapsulation
 * (`remote_ip=flow`, `key=flow`), named `fd-geneve` / `fd-vxlan`. Chassis come
 * and go as flows (tun_dst, tun_id set by the egress_tunnel table), never as
 * ports, so a cloud of N hosts needs 2 ports per host rather than N−1.
 *
 * Each port is written by `ensurePort` (src/ovsdb/helpers.ts): created when
 * missing, left alone when it matches, updated in place (same ofport) when its
 * type or options differ.
 */
import type { OvsdbClient } from "../ovsdb/client.js";
import { ensurePort } from "../ovsdb/helpers.js";
import { cond, op } from "../ovsdb/ops.js";
import { logger } from "../util/log.js";
import type { EncapType } from "../apps/types.js";

const log = logger("tunnel-ports");
const DB = "Open_vSwitch";

export const TUNNEL_PORT_NAMES: Record<EncapType, string> = { geneve: "fd-geneve", vxlan: "fd-vxlan" };

export async function ensureTunnelPort(
  client: OvsdbClient,
  bridge: string,
  encap: EncapType,
  extraOptions: Record<string, string> = {},
): Promise<void> {
  await ensurePort(client, bridge, TUNNEL_PORT_NAMES[encap], {
    type: encap,
    options: { remote_ip: "flow", key: "flow", ...extraOptions },
  });
}

/** Patch port names joining br-int and the bridge of a physical network. */
export function patchPortNames(physicalNetwork: string): { int: string; phys: string } {
  return { int: `patch-${physicalNetwork}`, phys: `patch-${physicalNetwork}-int` };
}

/**
 * br-int ↔ provider bridge patch pair for one physical network. The provider
 * bridge (with its uplink) is the operator's; when it does not exist the pair is
 * not created and false is returned.
 */
export async function ensurePatchPorts(
  client: OvsdbClient,
  intBridge: string,
  physBridge: string,
  physicalNetwork: string,
): Promise<boolean> {
  const [brs] = await client.transact(DB, [op.select("Bridge", [cond("name", "==", physBridge)], ["_uuid"])]);
  if (!brs?.rows?.length) {
    log.warn(
      { physicalNetwork, bridge: physBridge },
      "provider bridge does not exist; create it with its uplink",
    );
    return false;
  }
  const n = patchPortNames(physicalNetwork);
  await ensurePort(client, intBridge, n.int, { type: "patch", options: { peer: n.phys } });
  await ensurePort(client, physBridge, n.phys, { type: "patch", options: { peer: n.int } });
  return true;
}
