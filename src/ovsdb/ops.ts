/**
 * Typed builders for the "transact" method (RFC 7047 §5.2): operations,
 * conditions (§5.1 <condition>), mutations (§5.1 <mutation>). They build the
 * exact JSON the RFC describes, nothing more, so a transaction reads like the
 * RFC's examples:
 *
 *   transact("Open_vSwitch", [
 *     op.wait("Bridge", [cond("name", "==", "br0")], { columns: ["name"], until: "==", rows: [] }),
 *     op.insert("Bridge", { name: "br0" }, "br"),
 *     op.mutate("Open_vSwitch", [], [mutation("bridges", "insert", set([namedUuid("br")]))]),
 *   ])
 */
import type { WireDatum } from "./datum.js";

/** RFC 7047 §5.1 <function>. */
export const CONDITION_FUNCTIONS = ["<", "<=", "==", "!=", ">=", ">", "includes", "excludes"] as const;
export type ConditionFunction = (typeof CONDITION_FUNCTIONS)[number];

/** RFC 7047 §5.1 <mutator>. */
export const MUTATORS = ["+=", "-=", "*=", "/=", "%=", "insert", "delete"] as const;
export type Mutator = (typeof MUTATORS)[number];

/** RFC 7047 §5.2 operation names. */
export const OPERATIONS = [
  "insert",
  "select",
  "update",
  "mutate",
  "delete",
  "wait",
  "commit",
  "abort",
  "comment",
  "assert",
] as const;
export type OperationName = (typeof OPERATIONS)[number];

export type Condition = [column: string, fn: ConditionFunction, value: WireDatum];
export type Mutation = [column: string, mutator: Mutator, value: WireDatum];
export type WireRow = Record<string, WireDatum>;

export const cond = (column: string, fn: ConditionFunction, value: WireDatum): Condition => [
  column,
  fn,
  value,
];
export const mutation = (column: string, mutator: Mutator, value: WireDatum): Mutation => [
  column,
  mutator,
  value,
];

export type Operation =
  | { op: "insert"; table: string; row: WireRow; "uuid-name"?: string; uuid?: string }
  | { op: "select"; table: string; where: Condition[]; columns?: string[] }
  | { op: "update"; table: string; where: Condition[]; row: WireRow }
  | { op: "mutate"; table: string; where: Condition[]; mutations: Mutation[] }
  | { op: "delete"; table: string; where: Condition[] }
  | {
      op: "wait";
      table: string;
      where: Condition[];
      columns: string[];
      until: "==" | "!=";
      rows: WireRow[];
      timeout?: number;
    }
  | { op: "commit"; durable: boolean }
  | { op: "abort" }
  | { op: "comment"; comment: string }
  | { op: "assert"; lock: string };

export const op = {
  insert(table: string, row: WireRow, uuidName?: string): Operation {
    return uuidName ? { op: "insert", table, row, "uuid-name": uuidName } : { op: "insert", table, row };
  },
  select(table: string, where: Condition[] = [], columns?: string[]): Operation {
    return columns ? { op: "select", table, where, columns } : { op: "select", table, where };
  },
  update(table: string, where: Condition[], row: WireRow): Operation {
    return { op: "update", table, where, row };
  },
  mutate(table: string, where: Condition[], mutations: Mutation[]): Operation {
    return { op: "mutate", table, where, mutations };
  },
  delete(table: string, where: Condition[]): Operation {
    return { op: "delete", table, where };
  },
  /** Fails the transaction unless the selected rows' columns equal (`until` "==") `rows`, within `timeout` ms. */
  wait(
    table: string,
    where: Condition[],
    w: { columns: string[]; until: "==" | "!="; rows: WireRow[]; timeout?: number },
  ): Operation {
    const o: Operation = { op: "wait", table, where, columns: w.columns, until: w.until, rows: w.rows };
    if (w.timeout !== undefined) o.timeout = w.timeout;
    return o;
  },
  commit(durable = false): Operation {
    return { op: "commit", durable };
  },
  abort(): Operation {
    return { op: "abort" };
  },
  comment(comment: string): Operation {
    return { op: "comment", comment };
  },
  assert(lock: string): Operation {
    return { op: "assert", lock };
  },
};

/** The per-operation result of a successful transaction (RFC 7047 §5.2). */
export interface OpResult {
  uuid?: ["uuid", string];
  rows?: WireRow[];
  count?: number;
}
