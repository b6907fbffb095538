/**
 * The typed flow builder apps write their flows with. It speaks the layout —
 * tables by name (tables.ts), registers by field (fields.ts), meters by
 * purpose (allocators.ts) — and produces the typed `Flow` of
 * src/openflow/flow.ts directly: no ovs-ofctl text is built or parsed on
 * the agent's hot path. The text form (`formatFlow`) is what tests, logs and
 * `caps --explain` show; a builder's flow and `parseFlow` of the same
 * dump-flows line are the same value, which the apps' golden tests check.
 *
 *   flow("l2_lookup", 100)
 *     .reg(F.network, key).eq("eth_dst", mac)
 *     .load(F.outPort, ofport)
 *     .goto("egress_secgroup")
 *
 * Match fields are added in call order (the reconciler normalises order);
 * protocol shorthands (`proto("udp")`) add eth_type and nw_proto as
 * ovs-ofctl does. Actions go into one apply_actions list in call order; a
 * meter instruction comes first and a goto last, as OpenFlow orders them.
 * A flow with no actions and no goto drops.
 */
import { OFPP, type Action, type NatSpec, type Subfield } from "../openflow/actions.js";
import type { Flow } from "../openflow/flow.js";
import type { Instruction } from "../openflow/instructions.js";
import { fieldByName, type MatchField, type OxmFieldDef, type OxmValue } from "../openflow/oxm.js";
import { FLAG, isWhole, regName, type RegField } from "./fields.js";
import { table, type TableName } from "./tables.js";

export type Proto = "ip" | "ipv6" | "arp" | "icmp" | "icmp6" | "tcp" | "udp" | "tcp6" | "udp6";

/** ct_state bits (ovs-fields(7)). */
export const CT_STATE = { new: 0x01, est: 0x02, rel: 0x04, rpl: 0x08, inv: 0x10, trk: 0x20 } as const;
export type CtStateBit = keyof typeof CT_STATE;

const PROTOS: Record<Proto, [ethType: number, nwProto?: number]> = {
  ip: [0x0800],
  ipv6: [0x86dd],
  arp: [0x0806],
  icmp: [0x0800, 1],
  icmp6: [0x86dd, 58],
  tcp: [0x0800, 6],
  udp: [0x0800, 17],
  tcp6: [0x86dd, 6],
  udp6: [0x86dd, 17],
};

/**
 * Matches, actions and instructions whose values many flows repeat — an
 * eth_type, a goto, a network's or a router's key, a router interface's MAC,
 * a port's output — are one frozen object per value (an agent holds tens of
 * thousands of flows; they only ever read them), found by field and value (no
 * key text to keep). The tables are bounded (emptied when full: values come
 * and go with the model). A reactive route's flow then holds little that is
 * its own, which is what the young generation's collector copies. Addresses
 * a route matches on are its own and are not interned.
 */
const INTERN_MAX = 8192;
type Interned = MatchField | Action | Instruction;
const INTERNED = {
  match: new Map<string, Map<unknown, Interned>>(),
  action: new Map<string, Map<unknown, Interned>>(),
  instruction: new Map<string, Map<unknown, Interned>>(),
};
let internedCount = 0;
function intern<T extends Interned>(
  what: keyof typeof INTERNED,
  kind: string,
  value: number | bigint | string,
  make: () => T,
): T {
  let byValue = INTERNED[what].get(kind);
  let v = byValue?.get(value) as T | undefined;
  if (v) return v;
  if (internedCount >= INTERN_MAX) {
    for (const t of Object.values(INTERNED)) t.clear();
    internedCount = 0;
    byValue = undefined;
  }
  if (!byValue) INTERNED[what].set(kind, (byValue = new Map()));
  byValue.set(value, (v = Object.freeze(make()) as T));
  internedCount++;
  return v;
}
const primitive = (v: OxmValue): v is number | bigint | string =>
  typeof v === "number" || typeof v === "bigint" || typeof v === "string";
const DEC_TTL: Action = Object.freeze({ type: "dec_ttl" });

/** OFPFF_SEND_FLOW_REM: the switch tells us when the flow expires. */
export const OFPFF_SEND_FLOW_REM = 0x1;

function checkField(name: string): OxmFieldDef {
  const def = fieldByName(name);
  if (!def) throw new Error(`flow builder: unknown field ${name}`);
  return def;
}

/** Integers wider than 32 bits are bigints in the Flow model (oxm.ts); accept plain numbers for them. */
function typed(def: OxmFieldDef, v: OxmValue): OxmValue {
  return typeof v === "number" && def.length > 4 && def.format !== "bytes" ? BigInt(v) : v;
}

function subfield(f: RegField | string | Subfield): Subfield {
  if (typeof f === "object" && "field" in f) {
    checkField(f.field);
    return { ...f };
  }
  if (typeof f === "string") {
    checkField(f);
    return { field: f, ofs: 0, nbits: 0 };
  }
  return isWhole(f)
    ? { field: regName(f), ofs: 0, nbits: 0 }
    : { field: regName(f), ofs: f.ofs, nbits: f.nbits };
}

export class FlowBuilder {
  private readonly matches: MatchField[] = [];
  private readonly actions: Action[] = [];
  private meterId: number | undefined;
  private next: number | undefined;
  private idle = 0;
  private hard = 0;
  private flagBits = 0;

  constructor(
    readonly tableName: TableName,
    readonly priority: number,
  ) {}

  // ── match ────────────────────────────────────────────────────────────────

  /** eth_type (and nw_proto) of an ovs-ofctl protocol shorthand. */
  proto(p: Proto): this {
    const [ethType, nwProto] = PROTOS[p];
    this.matches.push(intern("match", "eth_type", ethType, () => ({ field: "eth_type", value: ethType })));
    if (nwProto !== undefined) {
      this.matches.push(intern("match", "nw_proto", nwProto, () => ({ field: "nw_proto", value: nwProto })));
    }
    return this;
  }

  inPort(ofport: number): this {
    this.matches.push(intern("match", "in_port", ofport, () => ({ field: "in_port", value: ofport })));
    return this;
  }

  /** Match conntrack state bits: true = set, false = clear, absent = either (ovs-fields ct_state). */
  ctState(bits: Partial<Record<CtStateBit, boolean>>): this {
    let value = 0;
    let mask = 0;
    for (const [name, on] of Object.entries(bits) as [CtStateBit, boolean | undefined][]) {
      if (on === undefined) continue;
      mask |= CT_STATE[name];
      if (on) value |= CT_STATE[name];
    }
    return this.eq("ct_state", value, mask);
  }

  /** Exact match on a register field (masked when it is part of its register). */
  reg(f: RegField, value: number): this {
    const field = regName(f);
    if (isWhole(f)) {
      const v = value >>> 0;
      this.matches.push(intern("match", field, v, () => ({ field, value: v })));
    } else {
      const mask = ((2 ** f.nbits - 1) * 2 ** f.ofs) >>> 0;
      const v = (value * 2 ** f.ofs) >>> 0;
      this.matches.push(intern("match", `${field}/${mask}`, v, () => ({ field, value: v, mask })));
    }
    return this;
  }

  /** Match one flag bit of the flags register, set or clear. */
  flag(bit: (typeof FLAG)[keyof typeof FLAG], set: boolean): this {
    const value = set ? bit : 0;
    this.matches.push(intern("match", `reg0/${bit}`, value, () => ({ field: "reg0", value, mask: bit })));
    return this;
  }

  /** Any OXM field by its ovs-fields name, optionally masked. */
  eq(field: string, value: OxmValue, mask?: OxmValue): this {
    const def = checkField(field);
    const v = typed(def, value);
    this.matches.push(mask === undefined ? { field, value: v } : { field, value: v, mask: typed(def, mask) });
    return this;
  }

  // ── actions ──────────────────────────────────────────────────────────────

  /** Write a register field: set_field for a whole register, load into the bit range otherwise. */
  load(f: RegField, value: number): this {
    if (isWhole(f)) {
      const field = regName(f);
      const v = value >>> 0;
      this.actions.push(intern("action", field, v, () => ({ type: "set_field", field, value: v })));
    } else this.actions.push({ type: "load", dst: subfield(f), value: BigInt(value) });
    return this;
  }

  /** set_field on any OXM field. */
  set(field: string, value: OxmValue): this {
    const v = typed(checkField(field), value);
    this.actions.push(
      primitive(v)
        ? intern("action", field, v, () => ({ type: "set_field", field, value: v }))
        : { type: "set_field", field, value: v },
    );
    return this;
  }

  /** Copy a whole field, a register field or a bit range into another of the same width. */
  move(src: RegField | string | Subfield, dst: RegField | string | Subfield): this {
    this.actions.push({ type: "move", src: subfield(src), dst: subfield(dst) });
    return this;
  }

  output(port: number): this {
    this.actions.push(intern("action", "output", port, () => ({ type: "output", port })));
    return this;
  }

  /** Send the packet back out of the port it came in on. */
  outputInPort(): this {
    return this.output(OFPP.IN_PORT);
  }

  resubmit(t: TableName): this {
    const id = table(t);
    this.actions.push(intern("action", "resubmit", id, () => ({ type: "resubmit", table: id })));
    return this;
  }

  /** Punt to the controller (the local agent), the whole packet. */
  controller(maxLen = 0xffff): this {
    this.actions.push({ type: "output", port: OFPP.CONTROLLER, maxLen });
    return this;
  }

  decTtl(): this {
    this.actions.push(DEC_TTL);
    return this;
  }

  pushVlan(vid: number): this {
    this.actions.push({ type: "push_vlan", ethertype: 0x8100 });
    this.actions.push({ type: "set_field", field: "vlan_vid", value: 0x1000 | vid });
    return this;
  }

  popVlan(): this {
    this.actions.push({ type: "pop_vlan" });
    return this;
  }

  /**
   * Send the packet through the connection tracker in `zone`: with `table`, a
   * tracked copy continues there (the untracked original goes on with the
   * actions after this one); `commit` records the connection, `mark` sets
   * bits of its ct_mark (fields.ts CT_MARK) as it is committed; `nat`
   * translates the packet: with a kind and address, a new connection gets that
   * translation (with `commit`); without, a connection's existing one applies.
   */
  ct(opts: {
    zone: number;
    table?: TableName;
    commit?: boolean;
    mark?: { value: number; mask: number };
    nat?: NatSpec;
  }): this {
    if (opts.table !== undefined && table(opts.table) <= table(this.tableName)) {
      throw new Error(`flow builder: ct from ${this.tableName} must recirculate forward`);
    }
    const actions: Action[] = [];
    if (opts.nat) actions.push({ type: "nat", nat: opts.nat });
    if (opts.mark) {
      actions.push({ type: "set_field", field: "ct_mark", value: opts.mark.value, mask: opts.mark.mask });
    }
    this.actions.push({
      type: "ct",
      zone: opts.zone,
      ...(opts.commit ? { commit: true } : {}),
      ...(opts.table !== undefined ? { table: table(opts.table) } : {}),
      ...(actions.length ? { actions } : {}),
    });
    return this;
  }

  /** One clause of conjunctive match `id` (clause counts from 1, of `n`). */
  conjunction(id: number, clause: number, n: number): this {
    if (clause < 1 || clause > n) throw new Error(`flow builder: conjunction clause ${clause} of ${n}`);
    this.actions.push({ type: "conjunction", id, clause: clause - 1, nClauses: n });
    return this;
  }

  /** Append a raw action (for the few that have no helper). */
  action(a: Action): this {
    this.actions.push(a);
    return this;
  }

  // ── instructions and flow attributes ─────────────────────────────────────

  meter(id: number): this {
    this.meterId = id;
    return this;
  }

  goto(t: TableName): this {
    this.next = table(t);
    return this;
  }

  idleTimeout(seconds: number): this {
    this.idle = seconds;
    return this;
  }

  hardTimeout(seconds: number): this {
    this.hard = seconds;
    return this;
  }

  sendFlowRemoved(): this {
    this.flagBits |= OFPFF_SEND_FLOW_REM;
    return this;
  }

  build(cookie: bigint): Flow {
    const instructions: Instruction[] = [];
    if (this.meterId !== undefined) instructions.push({ type: "meter", meterId: this.meterId });
    if (this.actions.length) instructions.push({ type: "apply_actions", actions: [...this.actions] });
    if (this.next !== undefined) {
      if (this.next <= table(this.tableName)) {
        throw new Error(`flow builder: goto from ${this.tableName} must go forward`);
      }
      const next = this.next;
      instructions.push(
        intern("instruction", "goto_table", next, () => ({ type: "goto_table", table: next })),
      );
    }
    const t = table(this.tableName);
    const { priority, idle, hard, flagBits: flags } = this;
    // the arrays copied to their exact length: those pushed to keep room for seventeen
    const match = [...this.matches];
    const ins = [...instructions];
    // A reactive route's flow (an idle timeout, flow_removed) gets them in its literal: set
    // afterwards they would cost each such flow a separate property store, and it lives as long as
    // its route.
    if (idle && flags && !hard) {
      return { table: t, priority, cookie, match, instructions: ins, idleTimeout: idle, flags };
    }
    const f: Flow = { table: t, priority, cookie, match, instructions: ins };
    if (idle) f.idleTimeout = idle;
    if (hard) f.hardTimeout = hard;
    if (flags) f.flags = flags;
    return f;
  }
}

export function flow(t: TableName, priority: number): FlowBuilder {
  return new FlowBuilder(t, priority);
}
