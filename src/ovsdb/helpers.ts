/**
 * The few writes the agent makes to the local Open_vSwitch database, each one
 * a single optimistic transaction in the style of ovs-vsctl: read, then commit
 * guarded by "wait" operations on what was read (a row that must still be
 * absent, a column that must still hold the value seen), retried when another
 * client won the race. New rows are linked with named-uuids in the same
 * transaction, so a bridge never exists without its Open_vSwitch reference.
 */
import { UsageError } from "../util/errors.js";
import { logger } from "../util/log.js";
import type { OvsdbClient } from "./client.js";
import { type WireAtom, datumFromWire, map, namedUuid, set, uuid } from "./datum.js";
import { OvsdbTxnError } from "./errors.js";
import { type Condition, type WireRow, cond, mutation, op } from "./ops.js";

const log = logger("ovsdb");
const DB = "Open_vSwitch";
const ATTEMPTS = 5;

async function retrying<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      const raced = err instanceof OvsdbTxnError && err.error === "timed out" && err.op !== undefined;
      if (!raced || i >= ATTEMPTS) throw err;
      log.debug({ what, attempt: i }, "ovsdb optimistic transaction lost a race; retrying");
    }
  }
}

async function rootUuid(client: OvsdbClient): Promise<{ uuid: string; bridges: WireAtom[] }> {
  const [r] = await client.transact(DB, [op.select("Open_vSwitch", [], ["_uuid", "bridges"])]);
  const row = r?.rows?.[0];
  if (!row) throw new UsageError("the Open_vSwitch table has no row (run 'ovs-vsctl init')");
  const id = (row._uuid as ["uuid", string])[1];
  const bridges = row.bridges as WireAtom | ["set", WireAtom[]];
  return {
    uuid: id,
    bridges:
      Array.isArray(bridges) && bridges[0] === "set" ? (bridges[1] as WireAtom[]) : [bridges as WireAtom],
  };
}

export interface EnsureBridgeOptions {
  datapathType?: string;
  failMode?: "secure" | "standalone";
  externalIds?: Record<string, string>;
  otherConfig?: Record<string, string>;
}

/** Creates bridge `name` (with its internal port and interface) unless it exists; returns its uuid. */
export async function ensureBridge(
  client: OvsdbClient,
  name: string,
  opts: EnsureBridgeOptions = {},
): Promise<string> {
  return retrying("ensureBridge", async () => {
    const [found] = await client.transact(DB, [op.select("Bridge", [cond("name", "==", name)], ["_uuid"])]);
    const existing = found?.rows?.[0]?._uuid as ["uuid", string] | undefined;
    if (existing) return existing[1];
    const root = await rootUuid(client);
    const bridge: WireRow = { name, ports: set([namedUuid("port")]) };
    if (opts.datapathType) bridge.datapath_type = opts.datapathType;
    if (opts.failMode) bridge.fail_mode = opts.failMode;
    if (opts.externalIds) bridge.external_ids = map(opts.externalIds);
    if (opts.otherConfig) bridge.other_config = map(opts.otherConfig);
    const results = await client.transact(DB, [
      // Nobody created it since we looked, and the root row's bridge list is what we read.
      op.wait("Bridge", [cond("name", "==", name)], { columns: ["name"], until: "==", rows: [], timeout: 0 }),
      op.wait("Open_vSwitch", [cond("_uuid", "==", uuid(root.uuid))], {
        columns: ["bridges"],
        until: "==",
        rows: [{ bridges: set(root.bridges) }],
        timeout: 0,
      }),
      op.insert("Interface", { name, type: "internal" }, "iface"),
      op.insert("Port", { name, interfaces: set([namedUuid("iface")]) }, "port"),
      op.insert("Bridge", bridge, "bridge"),
      op.mutate(
        "Open_vSwitch",
        [cond("_uuid", "==", uuid(root.uuid))],
        [mutation("bridges", "insert", set([namedUuid("bridge")]))],
      ),
      op.comment(`flowdrake: ensure bridge ${name}`),
    ]);
    const created = results[4]?.uuid?.[1];
    log.info({ bridge: name, uuid: created }, "created bridge");
    return created!;
  });
}

/**
 * Sets (or with `value` undefined, removes) one key of a map column, in one
 * transaction: delete the key, then insert the new pair (RFC 7047 mutate).
 */
export async function setMapKey(
  client: OvsdbClient,
  table: string,
  where: Condition[],
  column: string,
  key: string,
  value: string | undefined,
): Promise<number> {
  const mutations = [mutation(column, "delete", set([key]))];
  if (value !== undefined) mutations.push(mutation(column, "insert", map({ [key]: value })));
  const [r] = await client.transact(DB, [op.mutate(table, where, mutations)]);
  return r?.count ?? 0;
}

/** `ovs-vsctl set Open_vSwitch . other_config:KEY=VALUE` (undefined removes the key). */
export function setOtherConfig(client: OvsdbClient, key: string, value: string | undefined): Promise<number> {
  return setMapKey(client, "Open_vSwitch", [], "other_config", key, value);
}

/** `ovs-vsctl set Bridge NAME other_config:KEY=VALUE` (undefined removes the key); how many rows changed. */
export function setBridgeOtherConfig(
  client: OvsdbClient,
  bridge: string,
  key: string,
  value: string | undefined,
): Promise<number> {
  return setMapKey(client, "Bridge", [cond("name", "==", bridge)], "other_config", key, value);
}

/** Sets external_ids:KEY on the row of `table` named `name` (Bridge, Port, Interface) or with that uuid. */
export async function setExternalId(
  client: OvsdbClient,
  table: string,
  nameOrUuid: string,
  key: string,
  value: string | undefined,
): Promise<void> {
  const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(nameOrUuid);
  const where = [isUuid ? cond("_uuid", "==", uuid(nameOrUuid)) : cond("name", "==", nameOrUuid)];
  const n = await setMapKey(client, table, where, "external_ids", key, value);
  if (n === 0) throw new UsageError(`no ${table} row '${nameOrUuid}'`, { table, row: nameOrUuid });
}

export interface EnsurePortOptions {
  /** Interface type ("" for a system device, "geneve", "patch", …). */
  type: string;
  options?: Record<string, string>;
}

function sameMap(wire: unknown, want: Record<string, string>): boolean {
  const have = Object.fromEntries((wire as ["map", [string, string][]] | undefined)?.[1] ?? []);
  return JSON.stringify(Object.entries(have).sort()) === JSON.stringify(Object.entries(want).sort());
}

/**
 * `ovs-vsctl --may-exist add-port BRIDGE NAME -- set interface NAME type=… options:…`,
 * one port with one interface, in one transaction: created when missing (guarded
 * by "wait" on the name and on the bridge's port list, retried on a lost race),
 * left alone when type and options match, updated in place otherwise — the
 * interface keeps its ofport.
 */
export async function ensurePort(
  client: OvsdbClient,
  bridge: string,
  name: string,
  opts: EnsurePortOptions,
): Promise<"created" | "updated" | "unchanged"> {
  const options = opts.options ?? {};
  return retrying("ensurePort", async () => {
    const [ifs, brs] = await client.transact(DB, [
      op.select("Interface", [cond("name", "==", name)], ["_uuid", "type", "options"]),
      op.select("Bridge", [cond("name", "==", bridge)], ["_uuid", "ports"]),
    ]);
    const existing = ifs?.rows?.[0];
    if (existing) {
      if (existing.type === opts.type && sameMap(existing.options, options)) return "unchanged";
      await client.transact(DB, [
        op.update("Interface", [cond("name", "==", name)], { type: opts.type, options: map(options) }),
      ]);
      log.info({ port: name, type: opts.type, options }, "updated port");
      return "updated";
    }
    const br = brs?.rows?.[0];
    if (!br) throw new UsageError(`bridge ${bridge} does not exist`, { bridge });
    const brUuid = (br._uuid as ["uuid", string])[1];
    await client.transact(DB, [
      op.wait("Interface", [cond("name", "==", name)], {
        columns: ["name"],
        until: "==",
        rows: [],
        timeout: 0,
      }),
      op.wait("Bridge", [cond("_uuid", "==", uuid(brUuid))], {
        columns: ["ports"],
        until: "==",
        rows: [{ ports: br.ports as WireRow[string] }],
        timeout: 0,
      }),
      op.insert("Interface", { name, type: opts.type, options: map(options) }, "iface"),
      op.insert("Port", { name, interfaces: set([namedUuid("iface")]) }, "port"),
      op.mutate(
        "Bridge",
        [cond("_uuid", "==", uuid(brUuid))],
        [mutation("ports", "insert", set([namedUuid("port")]))],
      ),
      op.comment(`flowdrake: ${opts.type || "system"} port ${name} on ${bridge}`),
    ]);
    log.info({ port: name, bridge, type: opts.type, options }, "created port");
    return "created";
  });
}

export interface BoundInterface {
  uuid: string;
  name: string;
  ofport: number | null;
  externalIds: Record<string, string>;
}

/** The Interface whose external_ids:iface-id is `ifaceId` (select with "includes"). */
export async function findInterfaceByIfaceId(
  client: OvsdbClient,
  ifaceId: string,
): Promise<BoundInterface | undefined> {
  const schema = await client.getSchema(DB);
  const cols = schema.tables.Interface!.columns;
  const [r] = await client.transact(DB, [
    op.select(
      "Interface",
      [cond("external_ids", "includes", map({ "iface-id": ifaceId }))],
      ["_uuid", "name", "ofport", "external_ids"],
    ),
  ]);
  const row = r?.rows?.[0];
  if (!row) return undefined;
  return {
    uuid: datumFromWire(row._uuid, cols._uuid!.type) as string,
    name: datumFromWire(row.name, cols.name!.type) as string,
    ofport: datumFromWire(row.ofport, cols.ofport!.type) as number | null,
    externalIds: datumFromWire(row.external_ids, cols.external_ids!.type) as Record<string, string>,
  };
}
