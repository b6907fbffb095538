/**
 * Desired device filters vs installed ones, and the order the differences
 * are sent in.
 *
 * A filter is identified by its key (device, chain, prio, match) and is the
 * same filter when its signature is. The difference is three kinds of
 * operation: add a key that is missing, replace a key whose signature
 * differs (in place: the kernel swaps it atomically, so its packets never
 * fall through to a lower filter), delete a key no longer wanted. Foreign
 * filters are never in the installed set, so they are never touched.
 *
 * Every operation is atomic; the order makes each intermediate state safe
 * (test/unit/offload-datapath.test.ts checks it under churn: after every
 * single operation, every packet is decided as the OpenFlow pipeline
 * decides it). Gotos only lead to chains of later tables, so:
 *
 *   1. withdrawals — adds and replacements that leave a trap — go first,
 *      upstream first (lowest table first): a packet a rewrite changed is
 *      never handed to OVS by a trap further down while the rewrite is
 *      still in place;
 *   2. extensions — adds and replacements that let the NIC decide more —
 *      go next, downstream first: a goto is never installed before the
 *      chain it leads to is complete;
 *   3. deletions go last, upstream first: what they uncover is already the
 *      new plan, and a chain is emptied only after nothing leads to it.
 */
import type { DeviceRule } from "./filters.js";

export interface InstalledRef {
  key: string;
  sig: string;
  chain: number;
  /** The chain's table when known (filters read back after a restart may not know it). */
  table?: number;
}

export type FilterOp<I extends InstalledRef> =
  { op: "add"; want: DeviceRule } | { op: "replace"; want: DeviceRule; have: I } | { op: "delete"; have: I };

const upstreamRank = (chain: number, table: number | undefined): number =>
  chain === 0 ? -1 : (table ?? Number.MAX_SAFE_INTEGER);

/** The operations that turn `installed` into `desired`, in a safe order. */
export function filterOps<I extends InstalledRef>(
  desired: ReadonlyMap<string, DeviceRule>,
  installed: ReadonlyMap<string, I>,
): FilterOp<I>[] {
  const withdraw: FilterOp<I>[] = [];
  const extend: FilterOp<I>[] = [];
  const del: FilterOp<I>[] = [];
  for (const [key, want] of desired) {
    const have = installed.get(key);
    if (have && have.sig === want.sig) continue;
    const op: FilterOp<I> = have ? { op: "replace", want, have } : { op: "add", want };
    (want.kind === "trap" ? withdraw : extend).push(op);
  }
  for (const [key, have] of installed) if (!desired.has(key)) del.push({ op: "delete", have });
  const table = (o: FilterOp<I>): number =>
    o.op === "delete"
      ? upstreamRank(o.have.chain, o.have.table)
      : upstreamRank(o.want.rule.chain, o.want.table);
  const prio = (o: FilterOp<I>): number => (o.op === "delete" ? 0 : o.want.rule.prio);
  withdraw.sort((a, b) => table(a) - table(b) || prio(a) - prio(b));
  extend.sort((a, b) => table(b) - table(a) || prio(a) - prio(b));
  del.sort((a, b) => table(a) - table(b));
  return [...withdraw, ...extend, ...del];
}
