/**
 * Typed views of the Open_vSwitch database rows flowdrake reads (schema:
 * /usr/share/openvswitch/vswitch.ovsschema, ovs-vswitchd.conf.db(5)), and a
 * small read-side facade over a Replica: bridges by name, ports of a bridge,
 * the Interface bound to a VM by `external_ids:iface-id`.
 *
 * A view is a plain object with the columns under their schema names and JS
 * types (maps → Record<string,string>, references → uuid strings, optional
 * integers → number | null). Columns the replica does not monitor read as
 * their default value.
 */
import type { JsRow, JsValue } from "./datum.js";
import type { Replica } from "./replica.js";

export type StrMap = Record<string, string>;

export interface OpenVSwitchRow {
  _uuid: string;
  bridges: string[];
  manager_options: string[];
  other_config: StrMap;
  external_ids: StrMap;
  ovs_version: string | null;
  datapath_types: string[];
  iface_types: string[];
  cur_cfg: number;
  next_cfg: number;
}

export interface BridgeRow {
  _uuid: string;
  name: string;
  ports: string[];
  controller: string[];
  datapath_type: string;
  datapath_id: string | null;
  fail_mode: string | null;
  protocols: string[];
  other_config: StrMap;
  external_ids: StrMap;
}

export interface PortRow {
  _uuid: string;
  name: string;
  interfaces: string[];
  tag: number | null;
  trunks: number[];
  other_config: StrMap;
  external_ids: StrMap;
}

export interface InterfaceRow {
  _uuid: string;
  name: string;
  type: string;
  ofport: number | null;
  ofport_request: number | null;
  mac_in_use: string | null;
  admin_state: string | null;
  link_state: string | null;
  options: StrMap;
  other_config: StrMap;
  external_ids: StrMap;
  status: StrMap;
  error: string | null;
}

export interface ControllerRow {
  _uuid: string;
  target: string;
  is_connected: boolean;
  role: string | null;
  inactivity_probe: number | null;
  other_config: StrMap;
  external_ids: StrMap;
}

export interface ManagerRow {
  _uuid: string;
  target: string;
  is_connected: boolean;
  inactivity_probe: number | null;
  other_config: StrMap;
  external_ids: StrMap;
}

type Kind = "s" | "n" | "b" | "s?" | "n?" | "s[]" | "n[]" | "map";

/** Column → JS shape, per table: the single declaration the views derive from. */
const VIEWS = {
  Open_vSwitch: {
    bridges: "s[]",
    manager_options: "s[]",
    other_config: "map",
    external_ids: "map",
    ovs_version: "s?",
    datapath_types: "s[]",
    iface_types: "s[]",
    cur_cfg: "n",
    next_cfg: "n",
  },
  Bridge: {
    name: "s",
    ports: "s[]",
    controller: "s[]",
    datapath_type: "s",
    datapath_id: "s?",
    fail_mode: "s?",
    protocols: "s[]",
    other_config: "map",
    external_ids: "map",
  },
  Port: { name: "s", interfaces: "s[]", tag: "n?", trunks: "n[]", other_config: "map", external_ids: "map" },
  Interface: {
    name: "s",
    type: "s",
    ofport: "n?",
    ofport_request: "n?",
    mac_in_use: "s?",
    admin_state: "s?",
    link_state: "s?",
    options: "map",
    other_config: "map",
    external_ids: "map",
    status: "map",
    error: "s?",
  },
  Controller: {
    target: "s",
    is_connected: "b",
    role: "s?",
    inactivity_probe: "n?",
    other_config: "map",
    external_ids: "map",
  },
  Manager: {
    target: "s",
    is_connected: "b",
    inactivity_probe: "n?",
    other_config: "map",
    external_ids: "map",
  },
} satisfies Record<string, Record<string, Kind>>;

export type VswitchTable = keyof typeof VIEWS;
export const VSWITCH_TABLES = Object.keys(VIEWS) as VswitchTable[];

function shape(v: JsValue | undefined, k: Kind): unknown {
  switch (k) {
    case "s":
      return typeof v === "string" ? v : "";
    case "n":
      return typeof v === "number" ? v : 0;
    case "b":
      return v === true;
    case "s?":
    case "n?":
      return v === undefined || Array.isArray(v) ? null : v;
    case "s[]":
    case "n[]":
      return Array.isArray(v) ? [...v] : v === null || v === undefined ? [] : [v];
    case "map":
      return v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).map(([a, b]) => [a, String(b)]))
        : {};
  }
}

function view<T>(table: VswitchTable, row: JsRow): T {
  const out: Record<string, unknown> = { _uuid: row._uuid };
  for (const [col, k] of Object.entries(VIEWS[table]) as [string, Kind][]) out[col] = shape(row[col], k);
  return out as T;
}

export const openVSwitchView = (r: JsRow): OpenVSwitchRow => view("Open_vSwitch", r);
export const bridgeView = (r: JsRow): BridgeRow => view("Bridge", r);
export const portView = (r: JsRow): PortRow => view("Port", r);
export const interfaceView = (r: JsRow): InterfaceRow => view("Interface", r);
export const controllerView = (r: JsRow): ControllerRow => view("Controller", r);
export const managerView = (r: JsRow): ManagerRow => view("Manager", r);

/** Read-side facade over a replica of the Open_vSwitch database. */
export class VswitchView {
  constructor(readonly replica: Replica) {}

  root(): OpenVSwitchRow | undefined {
    const r = this.replica.rows("Open_vSwitch")[0];
    return r ? openVSwitchView(r) : undefined;
  }
  bridges(): BridgeRow[] {
    return this.replica.rows("Bridge").map(bridgeView);
  }
  bridge(name: string): BridgeRow | undefined {
    const r = this.replica.find("Bridge", (row) => row.name === name);
    return r ? bridgeView(r) : undefined;
  }
  ports(bridge?: string): PortRow[] {
    if (bridge === undefined) return this.replica.rows("Port").map(portView);
    const br = this.bridge(bridge);
    return (br?.ports ?? [])
      .map((u) => this.replica.get("Port", u))
      .filter((r) => r !== undefined)
      .map(portView);
  }
  port(name: string): PortRow | undefined {
    const r = this.replica.find("Port", (row) => row.name === name);
    return r ? portView(r) : undefined;
  }
  interfaces(): InterfaceRow[] {
    return this.replica.rows("Interface").map(interfaceView);
  }
  interface(name: string): InterfaceRow | undefined {
    const r = this.replica.find("Interface", (row) => row.name === name);
    return r ? interfaceView(r) : undefined;
  }
  /** The Interface bound to a VM port (Nova/os-vif/OVN convention). */
  interfaceByIfaceId(ifaceId: string): InterfaceRow | undefined {
    const r = this.replica.find(
      "Interface",
      (row) => (row.external_ids as Record<string, unknown> | undefined)?.["iface-id"] === ifaceId,
    );
    return r ? interfaceView(r) : undefined;
  }
  controllers(): ControllerRow[] {
    return this.replica.rows("Controller").map(controllerView);
  }
  managers(): ManagerRow[] {
    return this.replica.rows("Manager").map(managerView);
  }
}
