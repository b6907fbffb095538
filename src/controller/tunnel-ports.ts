/**
 * The agent's own ports: tunnel ports on br-int, and patch ports to the
 * bridges of provider networks.
 *
 * Tunnel ports on br-int: one flow-based port per encapsulation
 * (`remote_ip=flow`, `key=flow`), named `fd-geneve` / `fd-vxlan`. Chassis come
 * and go as flows (tun_dst, tun_id set by the egress_tunnel table), never as
 * ports, so a cloud of N hosts needs 2 ports per host rather than N−1.
 *
 * Written in one OVSDB transaction per port (Interface + Port + the bridge's
 * port list), guarded like ovs-vsctl's --may-exist: a port that already
 * exists with the right type and options is left alone; one with other
 * options is updated in place (its ofport does not change).
 */
import type { OvsdbClient } from "../ovsdb/client.js";
import { map, namedUuid, set, uuid } from "../ovsdb/datum.js";
import { cond, mutation, op } from "../ovsdb/ops.js";
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
  await ensureInterfacePort(client, bridge, TUNNEL_PORT_NAMES[encap], encap, {
    remote_ip: "flow",
    key: "flow",
    ...extraOptions,
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
  await ensureInterfacePort(client, intBridge, n.int, "patch", { peer: n.phys });
  await ensureInterfacePort(client, physBridge, n.phys, "patch", { peer: n.int });
  return true;
}

/**
 * One port with one interface of `type` and `options` on `bridge`, created
 * or brought to those settings in place (ovs-vsctl --may-exist semantics).
 */
export async function ensureInterfacePort(
  client: OvsdbClient,
  bridge: string,
  name: string,
  type: string,
  options: Record<string, string>,
): Promise<void> {
  const [ifs, brs] = await client.transact(DB, [
    op.select("Interface", [cond("name", "==", name)], ["_uuid", "type", "options"]),
    op.select("Bridge", [cond("name", "==", bridge)], ["_uuid"]),
  ]);
  const existing = ifs?.rows?.[0];
  if (existing) {
    const have = Object.fromEntries((existing.options as ["map", [string, string][]])[1] ?? []);
    const same = (a: Record<string, string>, b: Record<string, string>): boolean =>
      JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
    if (existing.type === type && same(have, options)) return;
    await client.transact(DB, [
      op.update("Interface", [cond("name", "==", name)], { type, options: map(options) }),
    ]);
    log.info({ port: name, options }, "updated port");
    return;
  }
  const br = brs?.rows?.[0]?._uuid as ["uuid", string] | undefined;
  if (!br) throw new Error(`bridge ${bridge} does not exist`);
  await client.transact(DB, [
    op.insert("Interface", { name, type, options: map(options) }, "iface"),
    op.insert("Port", { name, interfaces: set([namedUuid("iface")]) }, "port"),
    op.mutate(
      "Bridge",
      [cond("_uuid", "==", uuid(br[1]))],
      [mutation("ports", "insert", set([namedUuid("port")]))],
    ),
    op.comment(`flowdrake: ${type} port ${name}`),
  ]);
  log.info({ port: name, bridge, type, options }, "created port");
}
