/**
 * OVSDB values (RFC 7047 §5.1): atoms (integer, real, boolean, string, uuid),
 * sets and maps, their JSON wire forms, and their conversion to plain JS.
 *
 *   wire                                   JS (with the column's schema type)
 *   42 / "x" / true                        42 / "x" / true
 *   ["uuid","550e…"]                       "550e…"
 *   ["named-uuid","br0"]                   (only sent, never received)
 *   ["set",[a,b]]  or a lone atom          [a,b]        (columns with max > 1)
 *   ["set",[]] / a lone atom               null / atom  (optional: min 0, max 1)
 *   ["map",[[k,v],…]]                      { [String(k)]: v }
 *
 * A one-element set may be sent as the bare atom, so the schema type is needed
 * to read a value back; `columnKind` classifies a column once. Builders
 * (`uuid()`, `namedUuid()`, `set()`, `map()`) produce the wire forms for
 * transactions; `toDatum` converts JS back with a schema type.
 */
import { DecodeError, EncodeError } from "../util/errors.js";

export type AtomType = "integer" | "real" | "boolean" | "string" | "uuid";

export interface BaseType {
  type: AtomType;
  enum?: unknown;
  minInteger?: number;
  maxInteger?: number;
  refTable?: string;
  refType?: "strong" | "weak";
}

export interface ColumnType {
  key: BaseType;
  value?: BaseType;
  min: number;
  max: number | "unlimited";
}

export interface ColumnSchema {
  type: ColumnType;
  ephemeral?: boolean;
  mutable?: boolean;
}

export interface TableSchema {
  columns: Record<string, ColumnSchema>;
  maxRows?: number;
  isRoot?: boolean;
  indexes?: string[][];
}

export interface DatabaseSchema {
  name: string;
  version: string;
  cksum?: string;
  tables: Record<string, TableSchema>;
}

export type JsAtom = string | number | boolean;
export type JsValue = JsAtom | null | JsAtom[] | Record<string, JsAtom>;
export type JsRow = Record<string, JsValue>;

/** Wire forms. */
export type WireUuid = ["uuid", string];
export type WireNamedUuid = ["named-uuid", string];
export type WireAtom = string | number | boolean | WireUuid | WireNamedUuid;
export type WireSet = ["set", WireAtom[]];
export type WireMap = ["map", [WireAtom, WireAtom][]];
export type WireDatum = WireAtom | WireSet | WireMap;

export const uuid = (u: string): WireUuid => ["uuid", u];
export const namedUuid = (name: string): WireNamedUuid => ["named-uuid", name];
export const set = (atoms: WireAtom[]): WireSet => ["set", atoms];
export function map(
  entries: Record<string, WireAtom> | Map<WireAtom, WireAtom> | [WireAtom, WireAtom][],
): WireMap {
  if (Array.isArray(entries)) return ["map", entries];
  if (entries instanceof Map) return ["map", [...entries]];
  return ["map", Object.entries(entries)];
}

export type ColumnKind = "scalar" | "optional" | "set" | "map";

/** How a column's values look in JS: one atom, atom-or-null, array, or record. */
export function columnKind(t: ColumnType): ColumnKind {
  if (t.value) return "map";
  if (t.min === 1 && t.max === 1) return "scalar";
  if (t.max === 1) return "optional";
  return "set";
}

/** Accepts both schema spellings ("integer" or {type:"integer"}) and fills defaults. */
export function normalizeColumnType(raw: unknown): ColumnType {
  const base = (b: unknown): BaseType => {
    if (typeof b === "string") return { type: b as AtomType };
    if (b && typeof b === "object" && typeof (b as BaseType).type === "string") return b as BaseType;
    throw new DecodeError("bad OVSDB base type", { type: b });
  };
  if (typeof raw === "string") return { key: base(raw), min: 1, max: 1 };
  if (!raw || typeof raw !== "object") throw new DecodeError("bad OVSDB column type", { type: raw });
  const t = raw as Record<string, unknown>;
  return {
    key: base(t.key),
    ...(t.value !== undefined ? { value: base(t.value) } : {}),
    min: typeof t.min === "number" ? t.min : 1,
    max: t.max === "unlimited" ? "unlimited" : typeof t.max === "number" ? t.max : 1,
  };
}

/** A schema as get_schema returns it, with every column type normalized and _uuid/_version added. */
export function normalizeSchema(raw: unknown): DatabaseSchema {
  if (!raw || typeof raw !== "object") throw new DecodeError("bad OVSDB schema", {});
  const s = raw as { name?: unknown; version?: unknown; cksum?: unknown; tables?: unknown };
  if (typeof s.name !== "string" || !s.tables || typeof s.tables !== "object") {
    throw new DecodeError("OVSDB schema lacks name or tables", {});
  }
  const tables: Record<string, TableSchema> = {};
  for (const [name, t] of Object.entries(
    s.tables as Record<string, { columns?: Record<string, { type: unknown }> }>,
  )) {
    const columns: Record<string, ColumnSchema> = {
      _uuid: { type: { key: { type: "uuid" }, min: 1, max: 1 } },
      _version: { type: { key: { type: "uuid" }, min: 1, max: 1 } },
    };
    for (const [cname, c] of Object.entries(t.columns ?? {})) {
      columns[cname] = { ...(c as object), type: normalizeColumnType(c.type) };
    }
    tables[name] = { ...(t as object), columns };
  }
  return { name: s.name, version: String(s.version ?? ""), cksum: s.cksum as string | undefined, tables };
}

export function atomFromWire(w: unknown, t: BaseType): JsAtom {
  if (t.type === "uuid") {
    if (
      Array.isArray(w) &&
      w.length === 2 &&
      (w[0] === "uuid" || w[0] === "named-uuid") &&
      typeof w[1] === "string"
    ) {
      return w[1];
    }
    throw new DecodeError("expected an OVSDB uuid atom", { value: w });
  }
  if (t.type === "integer" || t.type === "real") {
    if (typeof w === "number") return w;
  } else if (t.type === "boolean") {
    if (typeof w === "boolean") return w;
  } else if (typeof w === "string") return w;
  throw new DecodeError(`expected an OVSDB ${t.type} atom`, { value: w });
}

function atomsOf(w: unknown, t: BaseType): JsAtom[] {
  if (Array.isArray(w) && w[0] === "set") {
    if (w.length !== 2 || !Array.isArray(w[1])) throw new DecodeError("bad OVSDB set", { value: w });
    return (w[1] as unknown[]).map((a) => atomFromWire(a, t));
  }
  return [atomFromWire(w, t)];
}

/** Converts a wire datum to JS according to the column's type. */
export function datumFromWire(w: unknown, t: ColumnType): JsValue {
  const kind = columnKind(t);
  if (kind === "map") {
    if (!Array.isArray(w) || w[0] !== "map" || w.length !== 2 || !Array.isArray(w[1])) {
      throw new DecodeError("expected an OVSDB map", { value: w });
    }
    const out: Record<string, JsAtom> = {};
    for (const pair of w[1] as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2)
        throw new DecodeError("bad OVSDB map pair", { value: pair });
      out[String(atomFromWire(pair[0], t.key))] = atomFromWire(pair[1], t.value!);
    }
    return out;
  }
  const atoms = atomsOf(w, t.key);
  if (kind === "set") return atoms;
  if (kind === "optional") {
    if (atoms.length > 1) throw new DecodeError("optional OVSDB value with more than one atom", { value: w });
    return atoms[0] ?? null;
  }
  if (atoms.length !== 1) throw new DecodeError("OVSDB scalar column without exactly one atom", { value: w });
  return atoms[0]!;
}

export function defaultAtom(t: BaseType): JsAtom {
  switch (t.type) {
    case "integer":
    case "real":
      return 0;
    case "boolean":
      return false;
    case "string":
      return "";
    case "uuid":
      return "00000000-0000-0000-0000-000000000000";
  }
}

/** RFC 7047 §5.1 default value of a column (what update2 omits). */
export function defaultDatum(t: ColumnType): JsValue {
  switch (columnKind(t)) {
    case "map":
      return {};
    case "set":
      return [];
    case "optional":
      return null;
    case "scalar":
      return defaultAtom(t.key);
  }
}

function atomToWire(a: unknown, t: BaseType): WireAtom {
  if (t.type === "uuid") {
    if (typeof a === "string") return uuid(a);
    if (Array.isArray(a) && (a[0] === "uuid" || a[0] === "named-uuid")) return a as WireAtom;
  } else if ((t.type === "integer" || t.type === "real") && typeof a === "number") return a;
  else if (t.type === "boolean" && typeof a === "boolean") return a;
  else if (t.type === "string" && typeof a === "string") return a;
  throw new EncodeError(`cannot encode ${JSON.stringify(a)} as an OVSDB ${t.type}`, { value: a });
}

/** Converts a JS value back to its wire form for a column type (the inverse of datumFromWire). */
export function toDatum(v: unknown, t: ColumnType): WireDatum {
  const kind = columnKind(t);
  if (kind === "map") {
    const entries = v instanceof Map ? [...v] : Object.entries((v ?? {}) as object);
    const keyOf = (k: unknown): unknown =>
      t.key.type === "integer" || t.key.type === "real" ? Number(k) : k;
    return ["map", entries.map(([k, x]) => [atomToWire(keyOf(k), t.key), atomToWire(x, t.value!)])];
  }
  if (v === null || v === undefined) return ["set", []];
  if (Array.isArray(v) && !(v[0] === "uuid" || v[0] === "named-uuid")) {
    return ["set", v.map((a) => atomToWire(a, t.key))];
  }
  return atomToWire(v, t.key);
}

/** Structural equality of two JS values (sets compared as sets). */
export function valueEquals(a: JsValue | undefined, b: JsValue | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    const sb = new Set(b);
    return a.every((x) => sb.has(x));
  }
  if (typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && a[k] === b[k]);
  }
  return false;
}
