/**
 * OpenFlow 1.3 actions (spec §7.2.5, ofp_action_type) and the Nicira
 * experimenter actions Open vSwitch understands (NXAST_*, ovs-actions(7),
 * experimenter id 0x00002320).
 *
 * Each action kind is one entry of an id table (OFPAT / NXAST) with its
 * encoder and decoder side by side; `encodeActions`/`decodeActions` walk a
 * list. Field references in move/load/ct zone are `{field, ofs, nbits}` with
 * the ovs-fields name; the wire form uses the field's OXM/NXM header.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import {
  NX_EXPERIMENTER_ID,
  actionFieldBits,
  bytesToIpv6,
  decodeOxm,
  encodeOxm,
  fieldByName,
  fieldByWire,
  readOxmHeader,
  writeFieldHeader,
  type MatchField,
  type OxmFieldDef,
  type OxmValue,
} from "./oxm.js";

/** ofp_action_type (openflow-1.3.5 §7.2.5). */
export const OFPAT = {
  OUTPUT: 0,
  COPY_TTL_OUT: 11,
  COPY_TTL_IN: 12,
  SET_MPLS_TTL: 15,
  DEC_MPLS_TTL: 16,
  PUSH_VLAN: 17,
  POP_VLAN: 18,
  PUSH_MPLS: 19,
  POP_MPLS: 20,
  SET_QUEUE: 21,
  GROUP: 22,
  SET_NW_TTL: 23,
  DEC_NW_TTL: 24,
  SET_FIELD: 25,
  PUSH_PBB: 26,
  POP_PBB: 27,
  EXPERIMENTER: 0xffff,
} as const;

/** Nicira action subtypes (OVS nx-actions; ovs-actions(7)). */
export const NXAST = {
  RESUBMIT: 1,
  SET_TUNNEL: 2,
  REG_MOVE: 6,
  REG_LOAD: 7,
  NOTE: 8,
  SET_TUNNEL64: 9,
  RESUBMIT_TABLE: 14,
  OUTPUT_REG: 15,
  EXIT: 17,
  DEC_TTL: 18,
  CONTROLLER: 20,
  REG_LOAD2: 33,
  CONJUNCTION: 34,
  CT: 35,
  NAT: 36,
  CONTROLLER2: 37,
  CT_CLEAR: 43,
} as const;

/** Reserved port numbers (ofp_port_no). */
export const OFPP = {
  MAX: 0xffffff00,
  IN_PORT: 0xfffffff8,
  TABLE: 0xfffffff9,
  NORMAL: 0xfffffffa,
  FLOOD: 0xfffffffb,
  ALL: 0xfffffffc,
  CONTROLLER: 0xfffffffd,
  LOCAL: 0xfffffffe,
  ANY: 0xffffffff,
} as const;
export const OFPCML_NO_BUFFER = 0xffff;
export const OFPG_ANY = 0xffffffff;

/** A bit range of a field, as in `NXM_NX_REG0[0..7]` (nbits = 0 means the whole field). */
export interface Subfield {
  field: string;
  ofs: number;
  nbits: number;
}

export interface NatSpec {
  kind?: "src" | "dst";
  ipMin?: string;
  ipMax?: string;
  portMin?: number;
  portMax?: number;
  persistent?: boolean;
  hash?: boolean;
  random?: boolean;
}

export type Action =
  | { type: "output"; port: number; maxLen?: number }
  | { type: "group"; groupId: number }
  | { type: "set_queue"; queueId: number }
  | { type: "push_vlan"; ethertype: number }
  | { type: "pop_vlan" }
  | { type: "push_mpls"; ethertype: number }
  | { type: "pop_mpls"; ethertype: number }
  | { type: "set_mpls_ttl"; ttl: number }
  | { type: "dec_mpls_ttl" }
  | { type: "set_nw_ttl"; ttl: number }
  | { type: "copy_ttl_out" }
  | { type: "copy_ttl_in" }
  | { type: "set_field"; field: string; value: OxmValue; mask?: OxmValue }
  | { type: "resubmit"; port?: number; table?: number }
  | { type: "load"; dst: Subfield; value: bigint }
  | { type: "move"; src: Subfield; dst: Subfield }
  | {
      type: "ct";
      commit?: boolean;
      force?: boolean;
      zone?: number | Subfield;
      table?: number;
      alg?: number;
      actions?: Action[];
    }
  | { type: "nat"; nat: NatSpec }
  | { type: "ct_clear" }
  /** OFPAT_DEC_NW_TTL on the wire (NXAST_DEC_TTL is OpenFlow 1.0 only); `dec_ttl` in ovs-ofctl text. */
  | { type: "dec_ttl" }
  | {
      type: "controller";
      maxLen?: number;
      controllerId?: number;
      reason?: number;
      userdata?: Buffer;
      pause?: boolean;
    }
  | { type: "note"; data: Buffer }
  | { type: "conjunction"; id: number; clause: number; nClauses: number }
  | { type: "output_reg"; src: Subfield; maxLen: number }
  | { type: "set_tunnel"; tunId: bigint }
  | { type: "exit" }
  | { type: "experimenter"; experimenter: number; data: Buffer }
  | { type: "unknown"; ofpType: number; data: Buffer };

export type ActionType = Action["type"];

// ---- helpers ------------------------------------------------------------------------------------

function fieldDef(name: string): OxmFieldDef {
  const def = fieldByName(name);
  if (!def) throw new EncodeError(`unknown field ${name}`, { field: name });
  return def;
}
/**
 * Width in bits of a field as move/load/output_reg/ct zone name it (variable
 * fields: 0): the width of its header there, which for in_port
 * (NXM_OF_IN_PORT, 16 bits) is not the match field's 32. Subfield bounds and
 * "the whole field" (nbits 0, `[]`) are measured against it.
 */
export function fieldBits(name: string): number {
  return actionFieldBits(fieldDef(name));
}
function nbitsOf(sf: Subfield): number {
  return sf.nbits || fieldBits(sf.field) - sf.ofs;
}
function ofsNbits(sf: Subfield): number {
  const n = nbitsOf(sf);
  if (n < 1 || sf.ofs < 0 || sf.ofs + n > fieldBits(sf.field) || sf.ofs > 1023 || n > 64) {
    throw new EncodeError(`bad subfield ${sf.field}[${sf.ofs}..+${n}]`, { ...sf });
  }
  return (sf.ofs << 6) | (n - 1);
}
function headerField(r: ByteReader, what: string): string {
  const h = readOxmHeader(r);
  if (!h.def) throw new DecodeError(`${what}: unknown field class ${h.cls} field ${h.field}`, { ...h });
  return h.def.name;
}
function fromOfsNbits(field: string, v: number): Subfield {
  const ofs = v >> 6;
  const n = (v & 0x3f) + 1;
  return { field, ofs, nbits: ofs === 0 && n === fieldBits(field) ? 0 : n };
}

/** Start a Nicira action; returns a finisher that pads to 8 and patches the length. */
function nxStart(w: ByteWriter, subtype: number): () => void {
  const start = w.length;
  w.u16(OFPAT.EXPERIMENTER);
  const lenAt = w.reserve(2);
  w.u32(NX_EXPERIMENTER_ID).u16(subtype);
  return () => {
    w.padTo(8, start);
    w.setU16(lenAt, w.length - start);
  };
}
function ofStart(w: ByteWriter, type: number): () => void {
  const start = w.length;
  w.u16(type);
  const lenAt = w.reserve(2);
  return () => {
    w.padTo(8, start);
    w.setU16(lenAt, w.length - start);
  };
}

// ---- NXAST_NAT ----------------------------------------------------------------------------------

const NX_NAT_F = { SRC: 1, DST: 2, PERSISTENT: 4, PROTO_HASH: 8, PROTO_RANDOM: 16 } as const;
const NX_NAT_RANGE = {
  IPV4_MIN: 1,
  IPV4_MAX: 2,
  IPV6_MIN: 4,
  IPV6_MAX: 8,
  PROTO_MIN: 16,
  PROTO_MAX: 32,
} as const;

function encodeNat(w: ByteWriter, n: NatSpec): void {
  const done = nxStart(w, NXAST.NAT);
  w.zeros(2);
  let flags = 0;
  if (n.kind === "src") flags |= NX_NAT_F.SRC;
  if (n.kind === "dst") flags |= NX_NAT_F.DST;
  if (n.persistent) flags |= NX_NAT_F.PERSISTENT;
  if (n.hash) flags |= NX_NAT_F.PROTO_HASH;
  if (n.random) flags |= NX_NAT_F.PROTO_RANDOM;
  const v6 = n.ipMin?.includes(":") ?? false;
  let present = 0;
  // A maximum equal to the minimum is left out (a single address or port), as ovs-ofctl does.
  const ipMax = n.ipMax !== undefined && n.ipMax !== n.ipMin ? n.ipMax : undefined;
  const portMax = n.portMax !== undefined && n.portMax !== n.portMin ? n.portMax : undefined;
  if (n.ipMin) present |= v6 ? NX_NAT_RANGE.IPV6_MIN : NX_NAT_RANGE.IPV4_MIN;
  if (ipMax) present |= v6 ? NX_NAT_RANGE.IPV6_MAX : NX_NAT_RANGE.IPV4_MAX;
  if (n.portMin !== undefined) present |= NX_NAT_RANGE.PROTO_MIN;
  if (portMax !== undefined) present |= NX_NAT_RANGE.PROTO_MAX;
  w.u16(flags).u16(present);
  const addr = (s: string): void => {
    encodeOxmValueOnly(w, v6 ? "ipv6_src" : "ip_src", s);
  };
  if (n.ipMin) addr(n.ipMin);
  if (ipMax) addr(ipMax);
  if (n.portMin !== undefined) w.u16(n.portMin);
  if (portMax !== undefined) w.u16(portMax);
  done();
}
function encodeOxmValueOnly(w: ByteWriter, field: string, v: string): void {
  const tmp = new ByteWriter(32);
  encodeOxm(tmp, { field, value: v });
  w.bytes(tmp.finish().subarray(4));
}

function decodeNat(r: ByteReader): NatSpec {
  r.skip(2);
  const flags = r.u16("nat flags");
  const present = r.u16("nat range_present");
  const n: NatSpec = {};
  if (flags & NX_NAT_F.SRC) n.kind = "src";
  if (flags & NX_NAT_F.DST) n.kind = "dst";
  if (flags & NX_NAT_F.PERSISTENT) n.persistent = true;
  if (flags & NX_NAT_F.PROTO_HASH) n.hash = true;
  if (flags & NX_NAT_F.PROTO_RANDOM) n.random = true;
  const ip4 = (): string => Array.from(r.bytes(4, "nat ipv4")).join(".");
  const ip6 = (): string => bytesToIpv6(r.bytes(16, "nat ipv6"));
  if (present & NX_NAT_RANGE.IPV4_MIN) n.ipMin = ip4();
  if (present & NX_NAT_RANGE.IPV4_MAX) n.ipMax = ip4();
  if (present & NX_NAT_RANGE.IPV6_MIN) n.ipMin = ip6();
  if (present & NX_NAT_RANGE.IPV6_MAX) n.ipMax = ip6();
  if (present & NX_NAT_RANGE.PROTO_MIN) n.portMin = r.u16("nat proto min");
  if (present & NX_NAT_RANGE.PROTO_MAX) n.portMax = r.u16("nat proto max");
  return n;
}
// ---- NXAST_CONTROLLER2 properties (NXAC2PT_*) ----------------------------------------------------

const NXAC2PT = { MAX_LEN: 0, CONTROLLER_ID: 1, REASON: 2, USERDATA: 3, PAUSE: 4 } as const;

function prop(w: ByteWriter, type: number, body: (w: ByteWriter) => void): void {
  const start = w.length;
  w.u16(type);
  const lenAt = w.reserve(2);
  body(w);
  w.setU16(lenAt, w.length - start);
  w.padTo(8, start);
}

/** Iterate ofp_prop TLVs (type, length, value, pad to 8) until the reader ends. */
export function* readProps(r: ByteReader, what: string): Generator<{ type: number; body: ByteReader }> {
  while (!r.atEnd()) {
    const type = r.u16(`${what} property type`);
    const len = r.u16(`${what} property length`);
    if (len < 4) throw new DecodeError(`${what}: property ${type} length ${len} < 4`);
    const body = r.sub(len - 4, `${what} property ${type}`);
    const pad = ((len + 7) & ~7) - len;
    r.skip(Math.min(pad, r.remaining));
    yield { type, body };
  }
}

// ---- encode -------------------------------------------------------------------------------------

export function encodeAction(w: ByteWriter, a: Action): void {
  switch (a.type) {
    case "output": {
      const done = ofStart(w, OFPAT.OUTPUT);
      w.u32(a.port)
        .u16(a.maxLen ?? (a.port === OFPP.CONTROLLER ? OFPCML_NO_BUFFER : 0))
        .zeros(6);
      return done();
    }
    default:
      return encodeRest(w, a);
  }
}

function simple(w: ByteWriter, type: number, body?: (w: ByteWriter) => void): void {
  const done = ofStart(w, type);
  if (body) body(w);
  else w.zeros(4);
  done();
}

function encodeRest(w: ByteWriter, a: Action): void {
  switch (a.type) {
    case "group":
      return simple(w, OFPAT.GROUP, (w) => w.u32(a.groupId));
    case "set_queue":
      return simple(w, OFPAT.SET_QUEUE, (w) => w.u32(a.queueId));
    case "push_vlan":
      return simple(w, OFPAT.PUSH_VLAN, (w) => w.u16(a.ethertype).zeros(2));
    case "push_mpls":
      return simple(w, OFPAT.PUSH_MPLS, (w) => w.u16(a.ethertype).zeros(2));
    case "pop_mpls":
      return simple(w, OFPAT.POP_MPLS, (w) => w.u16(a.ethertype).zeros(2));
    case "pop_vlan":
      return simple(w, OFPAT.POP_VLAN);
    case "set_mpls_ttl":
      return simple(w, OFPAT.SET_MPLS_TTL, (w) => w.u8(a.ttl).zeros(3));
    case "dec_mpls_ttl":
      return simple(w, OFPAT.DEC_MPLS_TTL);
    case "set_nw_ttl":
      return simple(w, OFPAT.SET_NW_TTL, (w) => w.u8(a.ttl).zeros(3));
    case "copy_ttl_out":
      return simple(w, OFPAT.COPY_TTL_OUT);
    case "copy_ttl_in":
      return simple(w, OFPAT.COPY_TTL_IN);
    case "set_field": {
      if (a.mask !== undefined) {
        const done = nxStart(w, NXAST.REG_LOAD2);
        encodeOxm(w, { field: a.field, value: a.value, mask: a.mask });
        return done();
      }
      const done = ofStart(w, OFPAT.SET_FIELD);
      encodeOxm(w, { field: a.field, value: a.value });
      return done();
    }
    case "resubmit": {
      // Always the RESUBMIT_TABLE form (table 255 = this table), as ovs-ofctl sends it.
      const port = a.port ?? OFPP.IN_PORT;
      const port16 = port >= OFPP.MAX ? port - 0xffff0000 : port;
      const done = nxStart(w, NXAST.RESUBMIT_TABLE);
      w.u16(port16).u8(a.table ?? 255);
      return done();
    }
    case "load": {
      const done = nxStart(w, NXAST.REG_LOAD);
      w.u16(ofsNbits(a.dst));
      writeFieldHeader(w, fieldDef(a.dst.field));
      w.u64(a.value);
      return done();
    }
    case "move": {
      const n = nbitsOf(a.src);
      if (n !== nbitsOf(a.dst)) throw new EncodeError("move: source and destination widths differ", { ...a });
      const done = nxStart(w, NXAST.REG_MOVE);
      w.u16(n).u16(a.src.ofs).u16(a.dst.ofs);
      writeFieldHeader(w, fieldDef(a.src.field));
      writeFieldHeader(w, fieldDef(a.dst.field));
      return done();
    }
    case "ct": {
      const done = nxStart(w, NXAST.CT);
      w.u16((a.commit ? 1 : 0) | (a.force ? 2 : 0));
      if (typeof a.zone === "object") {
        writeFieldHeader(w, fieldDef(a.zone.field));
        w.u16(ofsNbits(a.zone));
      } else {
        w.u32(0).u16(a.zone ?? 0);
      }
      w.u8(a.table ?? 255)
        .zeros(3)
        .u16(a.alg ?? 0);
      encodeActions(w, a.actions ?? []);
      return done();
    }
    case "nat":
      return encodeNat(w, a.nat);
    case "ct_clear": {
      const done = nxStart(w, NXAST.CT_CLEAR);
      w.zeros(6);
      return done();
    }
    case "dec_ttl":
      return simple(w, OFPAT.DEC_NW_TTL);
    case "controller": {
      if (!a.userdata?.length && !a.pause) {
        // The compact NXAST_CONTROLLER does when there is no userdata or pause (what ovs-ofctl sends).
        const done = nxStart(w, NXAST.CONTROLLER);
        w.u16(a.maxLen ?? OFPCML_NO_BUFFER)
          .u16(a.controllerId ?? 0)
          .u8(a.reason ?? 1);
        return done();
      }
      const done = nxStart(w, NXAST.CONTROLLER2);
      w.zeros(6);
      if (a.maxLen !== undefined && a.maxLen !== OFPCML_NO_BUFFER)
        prop(w, NXAC2PT.MAX_LEN, (w) => w.u16(a.maxLen!));
      if (a.controllerId) prop(w, NXAC2PT.CONTROLLER_ID, (w) => w.u16(a.controllerId!));
      if (a.reason !== undefined && a.reason !== 1) prop(w, NXAC2PT.REASON, (w) => w.u8(a.reason!));
      if (a.userdata?.length) prop(w, NXAC2PT.USERDATA, (w) => w.bytes(a.userdata!));
      if (a.pause) prop(w, NXAC2PT.PAUSE, () => undefined);
      return done();
    }
    case "note": {
      const done = nxStart(w, NXAST.NOTE);
      w.bytes(a.data);
      if (a.data.length < 6) w.zeros(6 - a.data.length);
      return done();
    }
    case "conjunction": {
      const done = nxStart(w, NXAST.CONJUNCTION);
      w.u8(a.clause).u8(a.nClauses).u32(a.id);
      return done();
    }
    case "output_reg": {
      const done = nxStart(w, NXAST.OUTPUT_REG);
      w.u16(ofsNbits(a.src));
      writeFieldHeader(w, fieldDef(a.src.field));
      w.u16(a.maxLen).zeros(6);
      return done();
    }
    case "set_tunnel": {
      const done = nxStart(w, NXAST.SET_TUNNEL64);
      w.zeros(6).u64(a.tunId);
      return done();
    }
    case "exit": {
      const done = nxStart(w, NXAST.EXIT);
      w.zeros(6);
      return done();
    }
    case "experimenter": {
      const done = ofStart(w, OFPAT.EXPERIMENTER);
      w.u32(a.experimenter).bytes(a.data);
      return done();
    }
    case "unknown": {
      const done = ofStart(w, a.ofpType);
      w.bytes(a.data);
      return done();
    }
    case "output":
      return encodeAction(w, a);
  }
}

export function encodeActions(w: ByteWriter, actions: readonly Action[]): void {
  for (const a of actions) encodeAction(w, a);
}

// ---- decode -------------------------------------------------------------------------------------

export function decodeActions(r: ByteReader): Action[] {
  const out: Action[] = [];
  while (!r.atEnd()) {
    const type = r.peekU16("action type");
    const start = r.offset;
    r.skip(2);
    const len = r.u16("action length");
    if (len < 8 || len % 8 !== 0)
      throw new DecodeError(`action ${type}: bad length ${len}`, { type, len, start });
    const body = r.sub(len - 4, `action ${type}`);
    out.push(decodeAction(type, body));
  }
  return out;
}

function decodeAction(type: number, r: ByteReader): Action {
  switch (type) {
    case OFPAT.OUTPUT:
      return { type: "output", port: r.u32("port"), maxLen: r.u16("max_len") };
    case OFPAT.GROUP:
      return { type: "group", groupId: r.u32("group_id") };
    case OFPAT.SET_QUEUE:
      return { type: "set_queue", queueId: r.u32("queue_id") };
    case OFPAT.PUSH_VLAN:
      return { type: "push_vlan", ethertype: r.u16("ethertype") };
    case OFPAT.PUSH_MPLS:
      return { type: "push_mpls", ethertype: r.u16("ethertype") };
    case OFPAT.POP_MPLS:
      return { type: "pop_mpls", ethertype: r.u16("ethertype") };
    case OFPAT.POP_VLAN:
      return { type: "pop_vlan" };
    case OFPAT.SET_MPLS_TTL:
      return { type: "set_mpls_ttl", ttl: r.u8("ttl") };
    case OFPAT.DEC_MPLS_TTL:
      return { type: "dec_mpls_ttl" };
    case OFPAT.SET_NW_TTL:
      return { type: "set_nw_ttl", ttl: r.u8("ttl") };
    case OFPAT.DEC_NW_TTL:
      return { type: "dec_ttl" };
    case OFPAT.COPY_TTL_OUT:
      return { type: "copy_ttl_out" };
    case OFPAT.COPY_TTL_IN:
      return { type: "copy_ttl_in" };
    case OFPAT.SET_FIELD: {
      const m = decodeOxm(r);
      if (m.mask !== undefined) throw new DecodeError("OFPAT_SET_FIELD with a mask", { field: m.field });
      return { type: "set_field", field: m.field, value: m.value };
    }
    case OFPAT.EXPERIMENTER: {
      const exp = r.u32("experimenter");
      if (exp === NX_EXPERIMENTER_ID) return decodeNx(r);
      return { type: "experimenter", experimenter: exp, data: Buffer.from(r.rest()) };
    }
    default:
      return { type: "unknown", ofpType: type, data: Buffer.from(r.rest()) };
  }
}

function decodeNx(r: ByteReader): Action {
  const subtype = r.u16("nx subtype");
  switch (subtype) {
    case NXAST.RESUBMIT:
    case NXAST.RESUBMIT_TABLE: {
      const p = r.u16("in_port");
      const port = p >= 0xff00 ? 0xffff0000 + p : p;
      const table = subtype === NXAST.RESUBMIT_TABLE ? r.u8("table") : 255;
      return {
        type: "resubmit",
        ...(port !== OFPP.IN_PORT ? { port } : {}),
        ...(table !== 255 ? { table } : {}),
      };
    }
    case NXAST.REG_LOAD: {
      const on = r.u16("ofs_nbits");
      const field = headerField(r, "reg_load");
      return { type: "load", dst: fromOfsNbits(field, on), value: r.u64("value") };
    }
    case NXAST.REG_LOAD2: {
      const m: MatchField = decodeOxm(r);
      return {
        type: "set_field",
        field: m.field,
        value: m.value,
        ...(m.mask !== undefined ? { mask: m.mask } : {}),
      };
    }
    case NXAST.REG_MOVE: {
      const n = r.u16("n_bits");
      const so = r.u16("src_ofs");
      const dofs = r.u16("dst_ofs");
      const src = headerField(r, "move src");
      const dst = headerField(r, "move dst");
      const whole = (f: string, o: number): number => (o === 0 && n === fieldBits(f) ? 0 : n);
      return {
        type: "move",
        src: { field: src, ofs: so, nbits: whole(src, so) },
        dst: { field: dst, ofs: dofs, nbits: whole(dst, dofs) },
      };
    }
    case NXAST.CT: {
      const flags = r.u16("ct flags");
      const zsrc = r.u32("zone_src");
      let zone: number | Subfield;
      if (zsrc === 0) {
        zone = r.u16("zone_imm");
      } else {
        const def = fieldByWire(zsrc >>> 16, (zsrc >>> 9) & 0x7f);
        if (!def) throw new DecodeError("ct zone_src: unknown field", { zsrc });
        zone = fromOfsNbits(def.name, r.u16("zone_ofs_nbits"));
      }
      const table = r.u8("recirc_table");
      r.skip(3);
      const alg = r.u16("alg");
      const actions = decodeActions(r.sub(r.remaining, "ct actions"));
      return {
        type: "ct",
        ...(flags & 1 ? { commit: true } : {}),
        ...(flags & 2 ? { force: true } : {}),
        ...(zone !== 0 ? { zone } : {}),
        ...(table !== 255 ? { table } : {}),
        ...(alg ? { alg } : {}),
        actions,
      };
    }
    case NXAST.NAT:
      return { type: "nat", nat: decodeNat(r) };
    case NXAST.CT_CLEAR:
      return { type: "ct_clear" };
    case NXAST.DEC_TTL:
      return { type: "dec_ttl" };
    case NXAST.EXIT:
      return { type: "exit" };
    case NXAST.CONTROLLER: {
      const maxLen = r.u16("max_len");
      const controllerId = r.u16("controller_id");
      const reason = r.u8("reason");
      // Same shape as NXAST_CONTROLLER2 decodes to: defaults (id 0, reason action) left out.
      return {
        type: "controller",
        maxLen,
        ...(controllerId ? { controllerId } : {}),
        ...(reason !== 1 ? { reason } : {}),
      };
    }
    case NXAST.CONTROLLER2: {
      r.skip(6);
      const a: Extract<Action, { type: "controller" }> = { type: "controller", maxLen: OFPCML_NO_BUFFER };
      for (const p of readProps(r, "controller2")) {
        if (p.type === NXAC2PT.MAX_LEN) a.maxLen = p.body.u16("max_len");
        else if (p.type === NXAC2PT.CONTROLLER_ID) a.controllerId = p.body.u16("controller_id");
        else if (p.type === NXAC2PT.REASON) a.reason = p.body.u8("reason");
        else if (p.type === NXAC2PT.USERDATA) a.userdata = Buffer.from(p.body.rest());
        else if (p.type === NXAC2PT.PAUSE) a.pause = true;
      }
      return a;
    }
    case NXAST.NOTE:
      return { type: "note", data: Buffer.from(r.rest()) };
    case NXAST.CONJUNCTION: {
      const clause = r.u8("clause");
      const nClauses = r.u8("n_clauses");
      return { type: "conjunction", clause, nClauses, id: r.u32("id") };
    }
    case NXAST.OUTPUT_REG: {
      const on = r.u16("ofs_nbits");
      const field = headerField(r, "output_reg");
      return { type: "output_reg", src: fromOfsNbits(field, on), maxLen: r.u16("max_len") };
    }
    case NXAST.SET_TUNNEL:
      r.skip(2);
      return { type: "set_tunnel", tunId: BigInt(r.u32("tun_id")) };
    case NXAST.SET_TUNNEL64:
      r.skip(6);
      return { type: "set_tunnel", tunId: r.u64("tun_id") };
    default: {
      const w = new ByteWriter(16);
      w.u16(subtype).bytes(r.rest());
      return { type: "experimenter", experimenter: NX_EXPERIMENTER_ID, data: w.finish() };
    }
  }
}
