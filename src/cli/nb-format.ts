/**
 * Human output of `flowdrake nb`: aligned tables for `list` and a readable
 * block for `show`/`create`/`update`. The list columns per kind are a table
 * here (header → how to read it from the object); the `show` block is derived
 * from the object itself, so a field added to the model shows up without
 * touching this file. Scripts use `--json` instead, which prints the stored
 * objects as they are.
 */
import type { Versioned } from "../nb/api.js";
import { KINDS, type ObjectKind } from "../nb/model/index.js";

type Obj = Record<string, unknown>;
type Column = [header: string, get: (v: Obj) => unknown];

const list = (v: unknown): string => (Array.isArray(v) && v.length > 0 ? v.map(cell).join(",") : "-");
const field =
  (name: string): Column[1] =>
  (v) =>
    v[name];

/** The `list` columns per kind (the key and version columns are added around them). */
export const LIST_COLUMNS: Record<ObjectKind, Column[]> = {
  tenant: [
    ["NAME", field("name")],
    ["DESCRIPTION", field("description")],
  ],
  chassis: [
    ["HOSTNAME", field("hostname")],
    ["TUNNEL-IPS", (v) => list(v.tunnelIps)],
    ["ENCAPS", (v) => list(v.encapTypes)],
    ["HEARTBEAT", (v) => (typeof v.heartbeat === "number" ? new Date(v.heartbeat).toISOString() : "-")],
  ],
  lswitch: [
    ["TENANT", field("tenantId")],
    ["TYPE", field("networkType")],
    ["SEG-ID", (v) => v.segmentationId ?? "-"],
    ["PHYSNET", (v) => v.physicalNetwork ?? "-"],
    ["MTU", field("mtu")],
    ["EXTERNAL", (v) => (v.external ? "yes" : "no")],
    ["NAME", field("name")],
  ],
  subnet: [
    ["TENANT", field("tenantId")],
    ["NETWORK", field("networkId")],
    ["CIDR", field("cidr")],
    ["GATEWAY", (v) => v.gatewayIp ?? "none"],
    ["DHCP", (v) => (v.enableDhcp ? "yes" : "no")],
    ["DNS", (v) => list(v.dnsNameservers)],
    ["NAME", field("name")],
  ],
  lport: [
    ["TENANT", field("tenantId")],
    ["NETWORK", field("networkId")],
    ["MAC", field("macAddress")],
    [
      "FIXED-IPS",
      (v) => list((v.fixedIps as Obj[]).map((f) => `${String(f.subnetId)}=${String(f.ipAddress)}`)),
    ],
    ["CHASSIS", (v) => v.chassis ?? "-"],
    ["SECGROUPS", (v) => list(v.securityGroups)],
    ["OWNER", (v) => v.deviceOwner || "-"],
  ],
  lrouter: [
    ["TENANT", field("tenantId")],
    [
      "INTERFACES",
      (v) => list((v.interfaces as Obj[]).map((i) => `${String(i.subnetId)}=${String(i.ipAddress)}`)),
    ],
    ["ROUTES", (v) => list((v.routes as Obj[]).map((r) => `${String(r.destination)}>${String(r.nexthop)}`))],
    ["NAME", field("name")],
  ],
  secgroup: [
    ["TENANT", field("tenantId")],
    ["RULES", (v) => (v.rules as unknown[]).length],
    ["NAME", field("name")],
  ],
  fip: [
    ["TENANT", field("tenantId")],
    ["FLOATING-IP", field("floatingIpAddress")],
    ["NETWORK", field("floatingNetworkId")],
    ["PORT", (v) => v.portId ?? "-"],
    ["FIXED-IP", (v) => v.fixedIpAddress ?? "-"],
  ],
  snat: [
    ["TENANT", field("tenantId")],
    ["ROUTER", field("routerId")],
    ["NETWORK", field("externalNetworkId")],
    ["EXTERNAL-IP", field("externalIpAddress")],
    ["ENABLED", (v) => (v.enabled ? "yes" : "no")],
    ["GATEWAY-CHASSIS", (v) => list(v.gatewayChassis ?? [])],
  ],
};

function cell(v: unknown): string {
  if (v === undefined || v === null || v === "") return "-";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** Left-aligned columns separated by two spaces; no trailing blanks. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

export function formatList(kind: ObjectKind, objs: Versioned<unknown>[]): string {
  const cols = LIST_COLUMNS[kind];
  const headers = [KINDS[kind].keyField.toUpperCase(), ...cols.map((c) => c[0]), "VER"];
  const rows = [...objs]
    .sort((a, b) => a.key.localeCompare(b.key))
    .map((o) => [o.key, ...cols.map((c) => cell(c[1](o.value as Obj))), String(o.version)]);
  return table(headers, rows);
}

function scalar(v: unknown): string {
  if (v === undefined) return "-";
  if (v === null) return "none";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string") return v === "" ? "-" : v;
  if (typeof v === "number") return String(v);
  return JSON.stringify(v);
}

function isPlain(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `show`: one aligned `field: value` line per field; lists of objects as an indented table. */
export function formatShow(kind: ObjectKind, o: Versioned<unknown>): string {
  const v = o.value as Obj;
  // The schema's field order (so allocated fields sit where they belong), then anything else.
  const declared = Object.keys((KINDS[kind].schema as unknown as { shape?: Obj }).shape ?? {});
  const keys = [...new Set([...declared.filter((k) => k in v), ...Object.keys(v)])];
  const width = Math.max(...keys.map((k) => k.length)) + 1;
  const out: string[] = [`${KINDS[kind].noun} ${o.key}  (version ${o.version})`];
  for (const k of keys) {
    const val = v[k];
    const label = `  ${`${k}:`.padEnd(width)} `;
    if (Array.isArray(val) && val.length > 0 && val.every(isPlain)) {
      const cols = [...new Set(val.flatMap((x) => Object.keys(x)))];
      out.push(`  ${k}:`);
      const t = table(
        cols,
        val.map((x) => cols.map((c) => scalar(x[c]))),
      );
      for (const line of t.trimEnd().split("\n")) out.push(`    ${line}`);
    } else if (Array.isArray(val)) {
      out.push(`${label}${val.length === 0 ? "-" : val.map(scalar).join(", ")}`);
    } else if (isPlain(val)) {
      const entries = Object.entries(val);
      out.push(
        `${label}${entries.length === 0 ? "-" : entries.map(([a, b]) => `${a}=${scalar(b)}`).join(", ")}`,
      );
    } else {
      out.push(`${label}${scalar(val)}`);
    }
  }
  return out.join("\n") + "\n";
}
