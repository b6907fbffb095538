/**
 * Layer 3: netlink attributes (struct nlattr TLVs), declared as data.
 *
 * An attribute set is a table of `name → {id, type}` with EXPLICIT kernel ids
 * and a note of the kernel header and version it follows (pyroute2's lesson:
 * positional lists break when the kernel enum grows). Encoding and decoding
 * are derived from the table:
 *
 *   u8 u16 u32 u64 s32     host byte order (little-endian)
 *   be16 be32              network byte order (ports, key ids, eth types)
 *   string                 NUL-terminated on the wire
 *   binary mac ipv4 ipv6   raw bytes; mac/ip decode to their text forms (plain
 *                          mac/ipv4 text is written by packet/addr.ts's
 *                          allocation-free writers, IPv6 printed by its
 *                          bytesToIpv6Hex)
 *   flag                   zero-length, value `true`
 *   struct                 a fixed C struct (tc_gact, tc_mirred …), see StructDef
 *   nested                 an inner set; `nestedFlag` sets NLA_F_NESTED exactly
 *                          where iproute2 does, so bytes match byte for byte
 *   nested-array           items with ids 1..n (tc's action list, "prio" order)
 *
 * Values are plain objects whose key order is the wire order: decoding keeps
 * the order it met, encoding writes keys in insertion order, so a decoded
 * message re-encodes to the same bytes. Attributes the table does not know
 * decode to `"#<id>"` keys holding raw bytes and re-encode unchanged.
 * `repeated` attributes (several TLVs with one id) are arrays.
 */
import { ByteReader, ByteWriter } from "../../util/bytes.js";
import { DecodeError, EncodeError } from "../../util/errors.js";
import { bytesToIpv6Hex, writeIpv4Text, writeMacText } from "../../packet/addr.js";

export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = 0x3fff;

export type AttrType =
  | "u8"
  | "u16"
  | "u32"
  | "u64"
  | "s32"
  | "be16"
  | "be32"
  | "string"
  | "binary"
  | "mac"
  | "ipv4"
  | "ipv6"
  | "flag"
  | "struct"
  | "nested"
  | "nested-array";

export type FieldKind = "u8" | "u16" | "u32" | "s32" | "u64" | "be16" | "be32" | "mac" | "ipv4" | "ipv6";

/** A fixed-layout C struct carried as an attribute payload, native alignment. */
export interface StructDef {
  name: string;
  header: string;
  /** name, kind, explicit byte offset. */
  fields: readonly (readonly [string, FieldKind, number])[];
  size: number;
  /** A variable-length array of another struct after the fixed part (tc_pedit_sel.keys). */
  tail?: { name: string; struct: StructDef; countField: string };
}

export interface AttrDef {
  readonly id: number;
  readonly type: AttrType;
  /** The inner set; `ctx` is the enclosing values (for kind-dependent options). Undefined → raw bytes. */
  readonly nested?: (ctx?: AttrValues) => AttrSet | undefined;
  readonly struct?: StructDef;
  /** Set NLA_F_NESTED on encode (iproute2 does for some nests, not others). */
  readonly nestedFlag?: boolean;
  readonly repeated?: boolean;
}

export type AttrValue = number | bigint | string | boolean | Buffer | StructValue | AttrValues | AttrValues[];
export interface StructValue {
  [field: string]: number | bigint | string | StructValue[];
}
export interface AttrValues {
  [name: string]: AttrValue | AttrValue[];
}

export class AttrSet {
  readonly byId = new Map<number, [string, AttrDef]>();

  constructor(
    readonly name: string,
    /** Kernel header and version the ids follow. */
    readonly source: string,
    readonly attrs: Readonly<Record<string, AttrDef>>,
  ) {
    for (const [n, def] of Object.entries(attrs)) {
      if (this.byId.has(def.id)) throw new Error(`${name}: duplicate id ${def.id} (${n})`);
      this.byId.set(def.id, [n, def]);
    }
  }

  encode(w: ByteWriter, values: AttrValues): void {
    for (const name in values) {
      const value = values[name];
      if (value === undefined) continue;
      if (name.startsWith("#")) {
        writeAttr(w, Number(name.slice(1)), 0, (b) => b.bytes(value as Buffer));
        continue;
      }
      const def = this.attrs[name];
      if (!def) throw new EncodeError(`${this.name}: unknown attribute ${name}`, { set: this.name });
      if (def.repeated) {
        if (!Array.isArray(value)) throw new EncodeError(`${this.name}.${name}: expected an array`);
        for (const v of value) this.encodeOne(w, name, def, v as AttrValue, values);
      } else {
        this.encodeOne(w, name, def, value as AttrValue, values);
      }
    }
  }

  private encodeOne(w: ByteWriter, name: string, def: AttrDef, v: AttrValue, ctx: AttrValues): void {
    const flag = def.nestedFlag ? NLA_F_NESTED : 0;
    writeAttr(w, def.id, flag, (b) => encodeValue(b, `${this.name}.${name}`, def, v, ctx));
  }

  decode(r: ByteReader): AttrValues {
    const out: AttrValues = {};
    while (r.remaining > 0) {
      const at = r.offset;
      const len = r.u16le(`${this.name} nla_len`);
      const type = r.u16le(`${this.name} nla_type`) & NLA_TYPE_MASK;
      if (len < 4)
        throw new DecodeError(`${this.name}: attribute at ${at} has nla_len ${len} < 4`, { at, len });
      const body = r.sub(len - 4, `${this.name} attribute ${type}`);
      r.alignTo(4);
      const known = this.byId.get(type);
      if (!known) {
        out[`#${type}`] = Buffer.from(body.rest());
        continue;
      }
      const [name, def] = known;
      const v = decodeValue(body, `${this.name}.${name}`, def, out);
      if (def.repeated) {
        const arr = (out[name] as AttrValue[] | undefined) ?? [];
        arr.push(v);
        out[name] = arr;
      } else {
        out[name] = v;
      }
    }
    return out;
  }

  encodeToBuffer(values: AttrValues): Buffer {
    const w = new ByteWriter(128);
    this.encode(w, values);
    return w.finish();
  }

  decodeBuffer(buf: Buffer): AttrValues {
    return this.decode(new ByteReader(buf, 0, buf.length, this.name));
  }
}

export function attrSet(name: string, source: string, attrs: Record<string, AttrDef>): AttrSet {
  return new AttrSet(name, source, attrs);
}

export function writeAttr(w: ByteWriter, id: number, flags: number, body: (w: ByteWriter) => void): void {
  const start = w.length;
  w.u32le(0);
  body(w);
  const len = w.length - start;
  w.setU16le(start, len);
  w.setU16le(start + 2, id | flags);
  for (let pad = (4 - (len & 3)) & 3; pad > 0; pad--) w.u8(0);
}

/** NUL-terminated strings (attribute kinds like "flower", "gact") repeat: encode each once. */
const stringBytes = new Map<string, Buffer>();
function cString(v: string): Buffer {
  let b = stringBytes.get(v);
  if (!b) {
    b = Buffer.from(`${v}\0`, "utf8");
    if (stringBytes.size < 1024) stringBytes.set(v, b);
  }
  return b;
}

function encodeValue(w: ByteWriter, what: string, def: AttrDef, v: AttrValue, ctx: AttrValues): void {
  switch (def.type) {
    case "u8":
    case "u16":
    case "u32":
    case "s32":
    case "be16":
    case "be32":
    case "u64":
    case "mac":
    case "ipv4":
    case "ipv6":
      writeField(w, what, def.type, v);
      return;
    case "string":
      if (typeof v !== "string") throw new EncodeError(`${what}: expected a string`);
      w.bytes(cString(v));
      return;
    case "binary":
      if (!Buffer.isBuffer(v)) throw new EncodeError(`${what}: expected bytes`);
      w.bytes(v);
      return;
    case "flag":
      return;
    case "struct":
      encodeStruct(w, what, def.struct!, v as StructValue);
      return;
    case "nested": {
      const inner = def.nested!(ctx);
      if (inner) inner.encode(w, v as AttrValues);
      else if (Buffer.isBuffer(v)) w.bytes(v);
      else throw new EncodeError(`${what}: no attribute set for this kind; pass raw bytes`);
      return;
    }
    case "nested-array": {
      if (!Array.isArray(v)) throw new EncodeError(`${what}: expected an array`);
      const inner = def.nested!()!;
      v.forEach((item, i) => writeAttr(w, i + 1, 0, (b) => inner.encode(b, item as AttrValues)));
      return;
    }
  }
}

function decodeValue(r: ByteReader, what: string, def: AttrDef, ctx: AttrValues): AttrValue {
  switch (def.type) {
    case "u8":
    case "u16":
    case "u32":
    case "s32":
    case "be16":
    case "be32":
    case "u64":
    case "mac":
    case "ipv4":
    case "ipv6": {
      const v = readField(r, what, def.type);
      if (!r.atEnd()) throw new DecodeError(`${what}: ${r.remaining} unexpected extra bytes`);
      return v;
    }
    case "string": {
      const b = r.rest();
      const nul = b.indexOf(0);
      return b.subarray(0, nul < 0 ? b.length : nul).toString("utf8");
    }
    case "binary":
      return Buffer.from(r.rest());
    case "flag":
      return true;
    case "struct":
      return decodeStruct(r, what, def.struct!);
    case "nested": {
      const inner = def.nested!(ctx);
      return inner ? inner.decode(r) : Buffer.from(r.rest());
    }
    case "nested-array": {
      const inner = def.nested!()!;
      const items: AttrValues[] = [];
      while (r.remaining > 0) {
        const len = r.u16le(`${what} item nla_len`);
        r.u16le(`${what} item nla_type`);
        if (len < 4) throw new DecodeError(`${what}: item nla_len ${len} < 4`);
        items.push(inner.decode(r.sub(len - 4, `${what} item`)));
        r.alignTo(4);
      }
      return items;
    }
  }
}

const fieldSize: Record<FieldKind, number> = {
  u8: 1,
  u16: 2,
  be16: 2,
  u32: 4,
  s32: 4,
  be32: 4,
  u64: 8,
  mac: 6,
  ipv4: 4,
  ipv6: 16,
};

function num(what: string, v: unknown): number {
  if (typeof v !== "number") throw new EncodeError(`${what}: expected a number, got ${typeof v}`);
  return v;
}

function writeField(w: ByteWriter, what: string, kind: FieldKind, v: unknown): void {
  switch (kind) {
    case "u8":
      w.u8(num(what, v));
      return;
    case "u16":
      w.u16le(num(what, v));
      return;
    case "be16":
      w.u16(num(what, v));
      return;
    case "u32":
      w.u32le(num(what, v) >>> 0 === num(what, v) ? num(what, v) : badRange(what, v));
      return;
    case "s32":
      w.i32le(num(what, v));
      return;
    case "be32":
      w.u32(num(what, v));
      return;
    case "u64":
      if (typeof v !== "bigint") throw new EncodeError(`${what}: expected a bigint`);
      w.u64le(v);
      return;
    case "mac":
      if (typeof v === "string" && writeMacText(v, macScratch, 0)) w.bytes(macScratch);
      else w.bytes(parseMac(what, v));
      return;
    case "ipv4":
      if (typeof v === "string" && writeIpv4Text(v, ipv4Scratch, 0)) w.bytes(ipv4Scratch);
      else w.bytes(parseIpv4(what, v));
      return;
    case "ipv6":
      w.bytes(parseIpv6(what, v));
      return;
  }
}

// Scratch for the fast text writers: filled, then copied into the writer only when accepted.
const macScratch = new Uint8Array(6);
const ipv4Scratch = new Uint8Array(4);

function badRange(what: string, v: unknown): never {
  throw new EncodeError(`${what}: ${String(v)} does not fit in u32`);
}

function readField(r: ByteReader, what: string, kind: FieldKind): number | bigint | string {
  switch (kind) {
    case "u8":
      return r.u8(what);
    case "u16":
      return r.u16le(what);
    case "be16":
      return r.u16(what);
    case "u32":
      return r.u32le(what);
    case "s32":
      return r.i32le(what);
    case "be32":
      return r.u32(what);
    case "u64":
      return r.u64le(what);
    case "mac":
      return formatMac(r.bytes(6, what));
    case "ipv4":
      return Array.from(r.bytes(4, what)).join(".");
    case "ipv6":
      return formatIpv6(r.bytes(16, what));
  }
}

function encodeStruct(w: ByteWriter, what: string, s: StructDef, v: StructValue): void {
  if (typeof v !== "object" || v === null) throw new EncodeError(`${what}: expected a ${s.name} object`);
  const start = w.reserve(s.size);
  for (const [name, kind, off] of s.fields) {
    const value = v[name];
    if (value === undefined || value === 0) continue; // already zero
    const tw = new ByteWriter(16);
    writeField(tw, `${what}.${name}`, kind, value);
    const b = tw.finish();
    for (let i = 0; i < b.length; i++) w.setU8(start + off + i, b[i]!);
  }
  if (s.tail) {
    const items = (v[s.tail.name] ?? []) as StructValue[];
    for (const item of items) encodeStruct(w, `${what}.${s.tail.name}`, s.tail.struct, item);
  }
}

function decodeStruct(r: ByteReader, what: string, s: StructDef): StructValue {
  const base = r.sub(s.size, `${what} (${s.name})`);
  const out: StructValue = {};
  for (const [name, kind, off] of s.fields) {
    const fr = new ByteReader(
      base.buf,
      base.offset + off,
      base.offset + off + fieldSize[kind],
      `${what}.${name}`,
    );
    out[name] = readField(fr, `${what}.${name}`, kind);
  }
  if (s.tail) {
    const count = out[s.tail.countField];
    const items: StructValue[] = [];
    for (let i = 0; i < (typeof count === "number" ? count : 0); i++) {
      items.push(decodeStruct(r, `${what}.${s.tail.name}[${i}]`, s.tail.struct));
    }
    out[s.tail.name] = items;
  }
  return out;
}

export function parseMac(what: string, v: unknown): Buffer {
  if (typeof v !== "string" || !/^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$/.test(v)) {
    throw new EncodeError(`${what}: "${String(v)}" is not a MAC address`);
  }
  return Buffer.from(v.split(":").map((x) => parseInt(x, 16)));
}

export function formatMac(b: Buffer): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

export function parseIpv4(what: string, v: unknown): Buffer {
  const parts = typeof v === "string" ? v.split(".") : [];
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new EncodeError(`${what}: "${String(v)}" is not an IPv4 address`);
  }
  return Buffer.from(parts.map(Number));
}

export function parseIpv6(what: string, v: unknown): Buffer {
  if (typeof v !== "string") throw new EncodeError(`${what}: expected an IPv6 address`);
  let text = v;
  const out = Buffer.alloc(16);
  const tailV4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let v4: Buffer | undefined;
  if (tailV4) {
    v4 = parseIpv4(what, tailV4[1]);
    text = `${text.slice(0, -tailV4[1]!.length)}0:0`;
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new EncodeError(`${what}: "${v}" is not an IPv6 address`);
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const groups =
    halves.length === 2
      ? [...head, ...Array<string>(8 - head.length - tail.length).fill("0"), ...tail]
      : head;
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) {
    throw new EncodeError(`${what}: "${v}" is not an IPv6 address`);
  }
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  if (v4) v4.copy(out, 12);
  return out;
}

/**
 * RFC 5952 text as the netlink codec has always printed it: every group in hex,
 * IPv4-mapped addresses too ("::ffff:c000:201"). One implementation with the
 * packet library's bytesToIpv6, which differs only in writing that tail as a
 * dotted quad.
 */
export function formatIpv6(b: Buffer): string {
  return bytesToIpv6Hex(b, 0);
}
