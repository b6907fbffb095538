/**
 * An in-memory replica of monitored OVSDB tables, driven by monitor updates.
 *
 * Rows are kept as plain JS (see datum.ts: maps → records, sets → arrays,
 * uuids → strings), every monitored column present (update2 omits columns at
 * their default value; the replica fills them in from the schema). Three ways
 * in:
 *
 *   applyUpdate1   "update" (RFC 7047 §4.1.6): old/new row images
 *   applyUpdate2   "update2"/"update3" (ovsdb-server(7)): initial/insert/
 *                  modify/delete, where "modify" carries a DIFF — for a set
 *                  the symmetric difference with the old value, for a map
 *                  per key: absent → add, same value → remove, other value →
 *                  replace; scalars are replaced
 *   resync         a fresh snapshot after a reconnect: the replica swaps to it
 *                  and reports only what differs from what it held before
 *
 * Each call emits one "change" event per changed row and then one "batch"
 * event with all of them (one batch per server update), so a consumer sees a
 * transaction as a unit. Nothing is emitted for a row that did not change.
 */
import { EventEmitter } from "node:events";
import { DecodeError } from "../util/errors.js";
import {
  type ColumnType,
  type DatabaseSchema,
  type JsAtom,
  type JsRow,
  type JsValue,
  type TableSchema,
  columnKind,
  datumFromWire,
  defaultDatum,
  valueEquals,
} from "./datum.js";
import type { RowUpdate2, TableUpdates1, TableUpdates2 } from "./client.js";

export type ChangeKind = "insert" | "modify" | "delete";

export interface RowChange {
  table: string;
  uuid: string;
  kind: ChangeKind;
  old?: JsRow;
  new?: JsRow;
}

export interface ReplicaEvents {
  change: [change: RowChange];
  batch: [changes: RowChange[]];
}

export type Snapshot = Map<string, Map<string, JsRow>>;

export class Replica extends EventEmitter<ReplicaEvents> {
  private data: Snapshot = new Map();

  /** `columns`: the monitored columns per table (all of them when absent). */
  constructor(
    readonly schema: DatabaseSchema,
    readonly tables: Record<string, string[] | undefined>,
  ) {
    super();
    for (const t of Object.keys(tables)) {
      if (!schema.tables[t])
        throw new DecodeError(`table ${t} is not in schema ${schema.name}`, { table: t });
      this.data.set(t, new Map());
    }
  }

  table(name: string): ReadonlyMap<string, JsRow> {
    return this.data.get(name) ?? new Map();
  }

  get(table: string, uuid: string): JsRow | undefined {
    return this.data.get(table)?.get(uuid);
  }

  rows(table: string): JsRow[] {
    return [...this.table(table).values()];
  }

  find(table: string, pred: (row: JsRow) => boolean): JsRow | undefined {
    for (const r of this.table(table).values()) if (pred(r)) return r;
    return undefined;
  }

  get size(): number {
    let n = 0;
    for (const t of this.data.values()) n += t.size;
    return n;
  }

  private tableSchema(table: string): TableSchema {
    const ts = this.schema.tables[table];
    if (!ts || !this.data.has(table))
      throw new DecodeError(`update for unmonitored table ${table}`, { table });
    return ts;
  }

  private monitoredColumns(table: string): string[] {
    return this.tables[table] ?? Object.keys(this.tableSchema(table).columns).filter((c) => c !== "_version");
  }

  private emptyRow(table: string, uuid: string): JsRow {
    const ts = this.tableSchema(table);
    const row: JsRow = { _uuid: uuid };
    for (const c of this.monitoredColumns(table)) {
      if (c !== "_uuid" && ts.columns[c]) row[c] = defaultDatum(ts.columns[c].type);
    }
    return row;
  }

  private overlay(table: string, base: JsRow, wire: Record<string, unknown>): JsRow {
    const ts = this.tableSchema(table);
    const row = { ...base };
    for (const [c, w] of Object.entries(wire)) {
      const col = ts.columns[c];
      if (!col || c === "_uuid") continue;
      row[c] = datumFromWire(w, col.type);
    }
    return row;
  }

  /** Builds a snapshot (uuid → row) from initial update contents, without touching the replica. */
  snapshotFrom1(updates: TableUpdates1): Snapshot {
    const snap = this.emptySnapshot();
    for (const [table, rows] of Object.entries(updates)) {
      for (const [uuid, ru] of Object.entries(rows)) {
        if (ru.new) snap.get(table)?.set(uuid, this.overlay(table, this.emptyRow(table, uuid), ru.new));
      }
    }
    return snap;
  }

  snapshotFrom2(updates: TableUpdates2): Snapshot {
    const snap = this.emptySnapshot();
    for (const [table, rows] of Object.entries(updates)) {
      for (const [uuid, ru] of Object.entries(rows)) {
        const image = "initial" in ru ? ru.initial : "insert" in ru ? ru.insert : undefined;
        if (image) snap.get(table)?.set(uuid, this.overlay(table, this.emptyRow(table, uuid), image));
      }
    }
    return snap;
  }

  private emptySnapshot(): Snapshot {
    return new Map(Object.keys(this.tables).map((t) => [t, new Map()]));
  }

  applyUpdate1(updates: TableUpdates1): RowChange[] {
    const changes: RowChange[] = [];
    for (const [table, rows] of Object.entries(updates)) {
      const tmap = this.data.get(table);
      this.tableSchema(table);
      for (const [uuid, ru] of Object.entries(rows)) {
        const old = tmap!.get(uuid);
        if (!ru.new) {
          if (old) {
            tmap!.delete(uuid);
            changes.push({ table, uuid, kind: "delete", old });
          }
          continue;
        }
        const next = this.overlay(table, old ?? this.emptyRow(table, uuid), ru.new);
        this.put(table, uuid, old, next, changes);
      }
    }
    return this.publish(changes);
  }

  applyUpdate2(updates: TableUpdates2): RowChange[] {
    const changes: RowChange[] = [];
    for (const [table, rows] of Object.entries(updates)) {
      const tmap = this.data.get(table);
      const ts = this.tableSchema(table);
      for (const [uuid, ru] of Object.entries(rows) as [string, RowUpdate2][]) {
        const old = tmap!.get(uuid);
        if ("delete" in ru) {
          if (old) {
            tmap!.delete(uuid);
            changes.push({ table, uuid, kind: "delete", old });
          }
        } else if ("modify" in ru) {
          if (!old)
            throw new DecodeError("update2 modify for a row the replica does not hold", { table, uuid });
          const next = { ...old };
          for (const [c, w] of Object.entries(ru.modify)) {
            const col = ts.columns[c];
            if (!col) continue;
            next[c] = applyDiff(old[c] ?? defaultDatum(col.type), datumFromDiff(w, col.type), col.type);
          }
          this.put(table, uuid, old, next, changes);
        } else {
          const image = "initial" in ru ? ru.initial : "insert" in ru ? ru.insert : undefined;
          if (!image || typeof image !== "object") {
            throw new DecodeError("malformed row-update2", { table, uuid, update: ru });
          }
          this.put(table, uuid, old, this.overlay(table, this.emptyRow(table, uuid), image), changes);
        }
      }
    }
    return this.publish(changes);
  }

  /** Replaces the whole content with `snap`, emitting only the rows that differ. */
  resync(snap: Snapshot): RowChange[] {
    const changes: RowChange[] = [];
    for (const table of Object.keys(this.tables)) {
      const before = this.data.get(table)!;
      const after = snap.get(table) ?? new Map<string, JsRow>();
      for (const [uuid, row] of after) this.diffRow(table, uuid, before.get(uuid), row, changes);
      for (const [uuid, row] of before) {
        if (!after.has(uuid)) changes.push({ table, uuid, kind: "delete", old: row });
      }
      this.data.set(table, after);
    }
    return this.publish(changes);
  }

  /** Removes everything (emitting deletes). */
  clear(): RowChange[] {
    return this.resync(this.emptySnapshot());
  }

  private put(table: string, uuid: string, old: JsRow | undefined, next: JsRow, changes: RowChange[]): void {
    this.data.get(table)!.set(uuid, next);
    this.diffRow(table, uuid, old, next, changes);
  }

  private diffRow(
    table: string,
    uuid: string,
    old: JsRow | undefined,
    next: JsRow,
    changes: RowChange[],
  ): void {
    if (!old) changes.push({ table, uuid, kind: "insert", new: next });
    else if (!rowEquals(old, next)) changes.push({ table, uuid, kind: "modify", old, new: next });
  }

  private publish(changes: RowChange[]): RowChange[] {
    if (changes.length) {
      for (const c of changes) this.emit("change", c);
      this.emit("batch", changes);
    }
    return changes;
  }
}

export function rowEquals(a: JsRow, b: JsRow): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if (!valueEquals(a[k], b[k])) return false;
  return true;
}

/** A diff datum is always a set/map (even for optional columns), so read it as one. */
function datumFromDiff(w: unknown, t: ColumnType): JsValue {
  const kind = columnKind(t);
  if (kind === "scalar" || kind === "map") return datumFromWire(w, t);
  return datumFromWire(w, { ...t, min: 0, max: "unlimited" });
}

/** update2 "modify" semantics (ovsdb-server(7), <row-update2>). */
export function applyDiff(old: JsValue, diff: JsValue, t: ColumnType): JsValue {
  const kind = columnKind(t);
  if (kind === "scalar") return diff;
  if (kind === "map") {
    const out: Record<string, JsAtom> = { ...(old as Record<string, JsAtom>) };
    for (const [k, v] of Object.entries(diff as Record<string, JsAtom>)) {
      if (!(k in out)) out[k] = v;
      else if (out[k] === v) delete out[k];
      else out[k] = v;
    }
    return out;
  }
  const before: JsAtom[] = kind === "optional" ? (old === null ? [] : [old as JsAtom]) : (old as JsAtom[]);
  const result = new Set(before);
  for (const a of diff as JsAtom[]) {
    if (result.has(a)) result.delete(a);
    else result.add(a);
  }
  const atoms = [...result];
  if (kind === "optional") {
    if (atoms.length > 1) throw new DecodeError("update2 diff left an optional column with two values", {});
    return atoms[0] ?? null;
  }
  return atoms;
}
