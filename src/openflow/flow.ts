/**
 * The Flow model apps and the offload planner share: one OpenFlow 1.3 flow
 * as (table, priority, cookie, timeouts, flags, match, instructions), with
 * match values typed by field format (see oxm.ts). Conversions to and from
 * the wire forms that carry flows (flow_mod, flow stats), and a canonical key
 * for the desired/installed diff: OVS identifies a flow by (table, priority,
 * match), so the key normalizes the match — field order, masks that cover the
 * whole field, value bits outside the mask — and ignores cookie and actions.
 */
import { dottedIpv4 } from "../packet/addr.js";
import { OFPG_ANY, OFPP } from "./actions.js";
import type { Instruction } from "./instructions.js";
import { OFP_NO_BUFFER, type FlowMod, type FlowModCommand } from "./message.js";
import type { FlowStats } from "./multipart.js";
import {
  fieldByName,
  valueToBytes,
  bytesToValue,
  type MatchField,
  type OxmFieldDef,
  type OxmValue,
} from "./oxm.js";

export interface Flow {
  table: number;
  priority: number;
  cookie: bigint;
  idleTimeout?: number;
  hardTimeout?: number;
  /** OFPFF_* bits (send_flow_rem = 1, check_overlap = 2, reset_counts = 4, …). */
  flags?: number;
  match: MatchField[];
  instructions: Instruction[];
}

export const OFP_DEFAULT_PRIORITY = 0x8000;

export interface FlowModOptions {
  command?: FlowModCommand;
  xid?: number;
  cookieMask?: bigint;
  outPort?: number;
  outGroup?: number;
  bufferId?: number;
}

/** The flow_mod that installs (or, with `command`, modifies/deletes) `flow`. */
export function flowToFlowMod(flow: Flow, opts: FlowModOptions = {}): FlowMod {
  const command = opts.command ?? "add";
  const del = command === "delete" || command === "delete_strict";
  return {
    type: "flow_mod",
    xid: opts.xid ?? 0,
    cookie: flow.cookie,
    cookieMask: opts.cookieMask ?? 0n,
    tableId: flow.table,
    command,
    idleTimeout: flow.idleTimeout ?? 0,
    hardTimeout: flow.hardTimeout ?? 0,
    priority: flow.priority,
    bufferId: opts.bufferId ?? OFP_NO_BUFFER,
    outPort: opts.outPort ?? OFPP.ANY,
    outGroup: opts.outGroup ?? OFPG_ANY,
    flags: flow.flags ?? 0,
    match: flow.match,
    instructions: del ? [] : flow.instructions,
  };
}

function compact(f: Flow): Flow {
  if (!f.idleTimeout) delete f.idleTimeout;
  if (!f.hardTimeout) delete f.hardTimeout;
  if (!f.flags) delete f.flags;
  return f;
}

export function flowFromFlowMod(m: FlowMod): Flow {
  return compact({
    table: m.tableId,
    priority: m.priority,
    cookie: m.cookie,
    idleTimeout: m.idleTimeout,
    hardTimeout: m.hardTimeout,
    flags: m.flags,
    match: m.match,
    instructions: m.instructions,
  });
}

export function flowFromStats(s: FlowStats): Flow {
  return compact({
    table: s.tableId,
    priority: s.priority,
    cookie: s.cookie,
    idleTimeout: s.idleTimeout,
    hardTimeout: s.hardTimeout,
    flags: s.flags,
    match: s.match,
    instructions: s.instructions,
  });
}

/**
 * Normalize a match: sorted by field name, masks that cover the whole field
 * dropped, value bits outside the mask cleared. Two matches OVS treats as the
 * same flow normalize to deep-equal arrays.
 */
export function normalizeMatch(match: readonly MatchField[]): MatchField[] {
  const out: MatchField[] = [];
  for (const m of match) {
    const def = fieldByName(m.field);
    if (!def || m.mask === undefined) {
      out.push(def ? { field: def.name, value: m.value } : { ...m });
      continue;
    }
    const v = valueToBytes(def, m.value);
    const k = valueToBytes(def, m.mask);
    if (k.every((b) => b === 0xff)) {
      out.push({ field: def.name, value: bytesToValue(def, v) });
      continue;
    }
    if (k.every((b) => b === 0)) continue;
    const masked = Buffer.from(v.map((b, i) => b & (k[i] ?? 0)));
    out.push({ field: def.name, value: bytesToValue(def, masked), mask: bytesToValue(def, k) });
  }
  return out.sort((a, b) => (a.field < b.field ? -1 : a.field > b.field ? 1 : 0));
}

function valueText(f: MatchField, v: MatchField["value"]): string {
  const def = fieldByName(f.field);
  if (Buffer.isBuffer(v)) return v.toString("hex");
  if (def && def.format !== "bytes") return fastHex(def, v);
  return String(v);
}

const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4_TEXT = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * `valueToBytes(def, v).toString("hex")` without the Buffer for the common
 * shapes (integers, canonical MACs and IPv4 addresses): flow keys are made
 * for every flow the agent builds or reads.
 */
function fastHex(def: OxmFieldDef, v: OxmValue): string {
  const width = def.length * 2;
  if (
    typeof v === "number" &&
    Number.isInteger(v) &&
    v >= 0 &&
    def.format !== "mac" &&
    def.format !== "ipv4"
  ) {
    const h = v.toString(16);
    if (h.length <= width) return h.padStart(width, "0");
  } else if (typeof v === "bigint" && v >= 0n) {
    const h = v.toString(16);
    if (h.length <= width) return h.padStart(width, "0");
  } else if (typeof v === "string") {
    if (def.format === "mac" && MAC_TEXT.test(v)) return v.replace(/:/g, "");
    if (def.format === "ipv4") {
      const n = dottedIpv4(v);
      if (n !== undefined) return n.toString(16).padStart(8, "0");
      const m = IPV4_TEXT.exec(v);
      if (m && m.slice(1).every((o) => Number(o) <= 255)) {
        return m
          .slice(1)
          .map((o) => Number(o).toString(16).padStart(2, "0"))
          .join("");
      }
    }
  }
  return valueToBytes(def, v).toString("hex");
}

/**
 * `arr.sort()` for the handful of strings of one flow's match, in place and
 * without the scratch array Array.prototype.sort allocates: the same order
 * (UTF-16 code units).
 */
function sortSmall(arr: string[]): string[] {
  for (let i = 1; i < arr.length; i++) {
    const x = arr[i]!;
    let j = i - 1;
    while (j >= 0 && arr[j]! > x) {
      arr[j + 1] = arr[j]!;
      j--;
    }
    arr[j + 1] = x;
  }
  return arr;
}

/** Canonical identity of a flow in OVS: table, priority and normalized match. */
export function flowKey(flow: Pick<Flow, "table" | "priority" | "match">): string {
  const parts: string[] = [];
  for (const m of flow.match) {
    const def = fieldByName(m.field);
    if (def && m.mask === undefined) {
      parts.push(`${def.name}=${valueText(m, m.value)}`);
      continue;
    }
    for (const n of normalizeMatch([m])) {
      parts.push(
        `${n.field}=${valueText(n, n.value)}${n.mask !== undefined ? `/${valueText(n, n.mask)}` : ""}`,
      );
    }
  }
  // one flat string (a join), not a template's tree of pieces: the reconciler keeps it per flow
  return [flow.table, flow.priority, sortSmall(parts).join(",")].join("/");
}
