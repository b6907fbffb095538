/**
 * The agent's tunnel ports on br-int: one flow-based port per encapsulation
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
  const name = TUNNEL_PORT_NAMES[encap];
  const options = { remote_ip: "flow", key: "flow", ...extraOptions };
  const [ifs, brs] = await client.transact(DB, [
    op.select("Interface", [cond("name", "==", name)], ["_uuid", "type", "options"]),
    op.select("Bridge", [cond("name", "==", bridge)], ["_uuid"]),
  ]);
  const existing = ifs?.rows?.[0];
  if (existing) {
    const have = Object.fromEntries((existing.options as ["map", [string, string][]])[1] ?? []);
    const same = (a: Record<string, string>, b: Record<string, string>): boolean =>
      JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
    if (existing.type === encap && same(have, options)) return;
    await client.transact(DB, [
      op.update("Interface", [cond("name", "==", name)], { type: encap, options: map(options) }),
    ]);
    log.info({ port: name, options }, "updated tunnel port");
    return;
  }
  const br = brs?.rows?.[0]?._uuid as ["uuid", string] | undefined;
  if (!br) throw new Error(`bridge ${bridge} does not exist`);
  await client.transact(DB, [
    op.insert("Interface", { name, type: encap, options: map(options) }, "iface"),
    op.insert("Port", { name, interfaces: set([namedUuid("iface")]) }, "port"),
    op.mutate(
      "Bridge",
      [cond("_uuid", "==", uuid(br[1]))],
      [mutation("ports", "insert", set([namedUuid("port")]))],
    ),
    op.comment(`flowdrake: tunnel port ${name}`),
  ]);
  log.info({ port: name, bridge, options }, "created tunnel port");
}
