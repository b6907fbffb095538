/**
 * Bulk encoding of flower filters by template.
 *
 * The offload planner and `tc batch` install thousands of rules that differ
 * only in match values: the same priority, protocol, flags, keys and masks,
 * the same actions, but another MAC or address. Encoding each through the
 * attribute tables walks objects and writes ~20 TLVs per rule; under a slow
 * CPU (the kernel lane's TCG) that, not the kernel, bounds the install rate.
 *
 * So rules are grouped by *shape*: everything except the match values. The
 * first rule of a shape is encoded the ordinary way (filterAddMessage); its
 * bytes are walked once to find where each match value landed; every later
 * rule of that shape is a copy of those bytes with its values written at those
 * offsets (MAC and IPv4 text by packet/addr.ts's writeMacText and
 * writeIpv4Text, which accept what attrs.ts's parseMac and parseIpv4 accept,
 * to the same bytes). A value the fast writers do not accept (out of range, odd
 * text) sends that one rule through the ordinary encoder, which raises the usual
 * EncodeError — so the bytes and the errors are the ordinary encoder's, which
 * test/unit/netlink-tc-template.test.ts checks on random rules.
 */
import { writeIpv4Text, writeMacText } from "../../../packet/addr.js";
import { ByteReader, ByteWriter } from "../../../util/bytes.js";
import { type AttrType, NLA_TYPE_MASK, parseIpv6 } from "../attrs.js";
import type { OutMessage } from "../client.js";
import { type FlowerRule, matchFields } from "./rule.js";
import { TCMSG_SIZE, flowerAttrs, tcaAttrs } from "./schema.js";

type PatchType = "mac" | "ipv4" | "ipv6" | "u8" | "u16" | "be16" | "u32" | "be32";

interface Patch {
  key: string;
  type: PatchType;
  /** Offset of the attribute payload inside the message body. */
  offset: number;
}

interface Template {
  type: number;
  flags: number;
  typeName: string | undefined;
  body: Buffer;
  patches: Patch[];
}

const patchable = new Set<AttrType>(["mac", "ipv4", "ipv6", "u8", "u16", "be16", "u32", "be32"]);
const TCA_OPTIONS = tcaAttrs.attrs.OPTIONS!.id;
const MAX_TEMPLATES = 256;

function bigintSafe(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? `${v}n` : v;
}

/** The actions as a key: flat fields spelled out directly (the usual case), the rest as JSON. */
function actionsKey(actions: readonly object[]): string {
  let k = "";
  for (const a of actions) {
    const rec = a as Record<string, unknown>;
    for (const name in rec) {
      const v = rec[name];
      k +=
        typeof v === "object" && v !== null
          ? `${name}=${JSON.stringify(v, bigintSafe)},`
          : `${name}=${String(v)},`;
    }
    k += ";";
  }
  return k;
}

/** The attribute that carries a match key's value for this rule, or undefined. */
function valueAttr(rule: FlowerRule, key: string): string | undefined {
  const f = matchFields[key as keyof typeof matchFields];
  const v = (rule.match as Record<string, unknown>)[key];
  switch (f?.kind) {
    case "value":
      return f.attr;
    case "masked":
      return f.attr;
    case "ip":
      return String((v as { value: string }).value).includes(":") ? f.v6[0] : f.v4[0];
    case "port":
    case "icmp":
      return f.byProto[rule.match.ipProto ?? -1]?.[0];
    default:
      return undefined;
  }
}

export class FlowerBatchEncoder {
  private readonly templates = new Map<string, Template | null>();
  private readonly actionKeys = new WeakMap<object, string>();

  /** `full` is the ordinary encoder (filterAddMessage bound to a target and options). */
  constructor(private readonly full: (rule: FlowerRule) => OutMessage) {}

  message(rule: FlowerRule): OutMessage {
    const key = this.shapeKey(rule);
    if (key === undefined) return this.full(rule);
    let t = this.templates.get(key);
    if (t === undefined) {
      t = this.build(rule);
      if (this.templates.size < MAX_TEMPLATES) this.templates.set(key, t);
    }
    if (!t) return this.full(rule);
    const body = Buffer.allocUnsafe(t.body.length);
    t.body.copy(body);
    const match = rule.match as Record<string, unknown>;
    for (const p of t.patches) {
      const m = match[p.key];
      const v = typeof m === "object" && m !== null ? (m as { value: unknown }).value : m;
      if (!writeValue(body, p.offset, p.type, v)) return this.full(rule);
    }
    const out: OutMessage = { type: t.type, flags: t.flags, body: (w) => void w.bytes(body) };
    if (t.typeName) out.typeName = t.typeName;
    return out;
  }

  /** Everything but the match values, or undefined when the rule is not a template candidate. */
  private shapeKey(rule: FlowerRule): string | undefined {
    const f = rule.flags;
    let k = `${rule.prio},${rule.protocol},${rule.chain ?? ""},${rule.handle ?? ""},${rule.classid ?? ""},${
      f
        ? `${f.skipHw ? 1 : 0}${f.skipSw ? 1 : 0}${f.inHw ? 1 : 0}${f.notInHw ? 1 : 0}${f.verbose ? 1 : 0}`
        : ""
    }|`;
    const match = rule.match as Record<string, unknown>;
    for (const name in match) {
      const v = match[name];
      if (v === undefined) continue;
      const field = matchFields[name as keyof typeof matchFields];
      if (!field) return undefined;
      if (field.kind === "value") {
        k += name === "ipProto" || typeof v !== "number" ? `${name}=${String(v)};` : `${name};`;
      } else if (field.kind === "geneve") {
        k += `${name}=${JSON.stringify(v)};`;
      } else {
        const mv = v as { value?: unknown; mask?: unknown };
        if (typeof mv !== "object" || mv === null) return undefined;
        const fam = field.kind === "ip" ? (String(mv.value).includes(":") ? "6" : "4") : "";
        k += `${name}${fam}/${mv.mask === undefined ? "-" : String(mv.mask)};`;
      }
    }
    let a = this.actionKeys.get(rule.actions);
    if (a === undefined) {
      a = actionsKey(rule.actions);
      this.actionKeys.set(rule.actions, a);
    }
    return `${k}|${a}`;
  }

  private build(rule: FlowerRule): Template | null {
    const msg = this.full(rule);
    const w = new ByteWriter(512);
    msg.body(w);
    const body = w.finish();
    const offsets = flowerAttrOffsets(body);
    if (!offsets) return null;
    const patches: Patch[] = [];
    const match = rule.match as Record<string, unknown>;
    for (const key in match) {
      if (match[key] === undefined || key === "ipProto") continue;
      const field = matchFields[key as keyof typeof matchFields];
      if (!field || field.kind === "geneve") continue;
      if (field.kind === "value" && typeof match[key] !== "number") continue;
      const attr = valueAttr(rule, key);
      const def = attr ? flowerAttrs.attrs[attr] : undefined;
      if (!def || !patchable.has(def.type)) return null;
      const at = offsets.get(def.id);
      if (at === undefined) return null;
      patches.push({ key, type: def.type as PatchType, offset: at });
    }
    return { type: msg.type, flags: msg.flags, typeName: msg.typeName, body, patches };
  }
}

/** TCA_FLOWER attribute id → payload offset in a filter message body; undefined if ids repeat. */
function flowerAttrOffsets(body: Buffer): Map<number, number> | undefined {
  const r = new ByteReader(body, TCMSG_SIZE, body.length, "template");
  while (r.remaining >= 4) {
    const at = r.offset;
    const len = r.u16le("nla_len");
    const type = r.u16le("nla_type") & NLA_TYPE_MASK;
    if (len < 4) return undefined;
    if (type === TCA_OPTIONS) {
      const out = new Map<number, number>();
      const o = new ByteReader(body, at + 4, at + len, "options");
      while (o.remaining >= 4) {
        const oat = o.offset;
        const olen = o.u16le("nla_len");
        const otype = o.u16le("nla_type") & NLA_TYPE_MASK;
        if (olen < 4 || out.has(otype)) return undefined;
        out.set(otype, oat + 4);
        o.skip(olen - 4, "attr");
        o.alignTo(4);
      }
      return out;
    }
    r.skip(len - 4, "attr");
    r.alignTo(4);
  }
  return undefined;
}

/** Write one match value at `at`; false when the fast path does not accept it. */
function writeValue(b: Buffer, at: number, type: PatchType, v: unknown): boolean {
  switch (type) {
    case "mac":
      return typeof v === "string" && writeMacText(v, b, at);
    case "ipv4":
      return typeof v === "string" && writeIpv4Text(v, b, at);
    case "ipv6":
      try {
        parseIpv6("ipv6", v).copy(b, at);
        return true;
      } catch {
        return false;
      }
    default: {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0) return false;
      if (type === "u8") {
        if (v > 0xff) return false;
        b[at] = v;
      } else if (type === "u16" || type === "be16") {
        if (v > 0xffff) return false;
        if (type === "u16") b.writeUInt16LE(v, at);
        else b.writeUInt16BE(v, at);
      } else {
        if (v > 0xffffffff) return false;
        if (type === "u32") b.writeUInt32LE(v, at);
        else b.writeUInt32BE(v, at);
      }
      return true;
    }
  }
}
