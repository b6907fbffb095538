/**
 * The bulk encoder: many OpenFlow messages written back to back into large
 * buffers, for the paths that send thousands of flow_mods at once
 * (OfConnection.sendAll / bundleAdd, the flow installer).
 *
 * It produces exactly the bytes `writeMessage` (message.ts) produces — a unit
 * test holds the two byte-identical over the text corpus and every sample
 * message — but without what makes the general codec slow per message: no
 * ByteWriter bounds checks and growth per field, no intermediate Buffer per
 * OXM value, no regular expressions for MAC/IPv4 strings, no object copies
 * to attach an xid, no copy when a chunk is handed to the socket.
 *
 *   - Per field, the OXM header word(s), width, value kind and prerequisite
 *     rank are computed once from FIELDS (oxm.ts) and looked up by name.
 *   - Values are written straight from their typed form (numbers, bigints,
 *     MAC/IPv4 strings parsed by character code with writeMacText /
 *     writeIpv4Text from packet/addr.ts, which accept exactly the forms the
 *     general codec's macToBytes / ipv4ToBytes in oxm.ts accept).
 *   - Output goes into 1 MiB chunks; a message starts only where 128 KiB are
 *     free, so nothing inside a message checks for space (an OpenFlow message
 *     is at most 64 KiB; a message that grows past that is handed to the
 *     general codec, which rejects it). `take()` hands out the bytes written
 *     since the last take as a view of the chunk; a chunk is never reused.
 *
 * Anything the fast path does not model, or a value it cannot vouch for, is
 * encoded by the general codec — for one OXM, action or instruction, or for
 * the whole message — so errors for bad input are the very EncodeErrors the
 * general codec raises, and unusual messages still come out right.
 */
import { writeIpv4Text, writeMacText } from "../packet/addr.js";
import { ByteWriter } from "../util/bytes.js";
import { encodeAction, OFPP, OFPCML_NO_BUFFER, type Action } from "./actions.js";
import { encodeInstructions, type Instruction } from "./instructions.js";
import { writeMessage, type FlowMod, type OfMessage } from "./message.js";
import { OFPT } from "./names.js";
import {
  FIELDS,
  NX_EXPERIMENTER_ID,
  OFPXMC_EXPERIMENTER,
  ONF_EXPERIMENTER_ID,
  encodeOxm,
  ipv6ToBytes,
  prerequisiteRank,
  type MatchField,
  type OxmFieldDef,
} from "./oxm.js";

const OFP_VERSION = 4;
const ONFT_BUNDLE_ADD_MESSAGE = 2301;
const OFPAT_OUTPUT = 0;
const OFPAT_DEC_NW_TTL = 24;
const OFPAT_SET_FIELD = 25;
const OFPAT_EXPERIMENTER = 0xffff;
const NXAST_RESUBMIT_TABLE = 14;
const NXAST_REG_LOAD2 = 33;

/** Encoded move actions by their subfields (a handful of distinct ones in any flow set). */
const MOVES = new Map<string, Buffer>();

/** Room guaranteed before every message: two maximal messages. */
const RESERVE = 2 * 0x10000 + 64;
const DEFAULT_CHUNK = 1 << 20;

/** How a field's value is written. */
const enum Kind {
  Int, // number, ≤ 4 bytes
  Int64, // bigint, 8 bytes
  Int128, // bigint, 16 bytes
  Mac,
  Ipv4,
  Ipv6,
  Other, // general codec
}

interface FieldInfo {
  def: OxmFieldDef;
  kind: Kind;
  len: number;
  /** OXM header word, unmasked and masked. */
  hdr: number;
  hdrMasked: number;
  /** Experimenter id for class 0xffff, else 0. */
  exp: number;
  rank: number;
  max: number;
}

const INFO = new Map<string, FieldInfo>();
for (const def of FIELDS) {
  for (const name of [def.name, ...(def.aliases ?? [])]) INFO.set(name, fieldInfo(def, name));
}

function fieldInfo(def: OxmFieldDef, name: string): FieldInfo {
  const id = def.wire[0]!;
  const expLen = id.cls === OFPXMC_EXPERIMENTER ? 4 : 0;
  const len = def.length;
  let kind: Kind;
  switch (def.format) {
    case "mac":
      kind = Kind.Mac;
      break;
    case "ipv4":
      kind = Kind.Ipv4;
      break;
    case "ipv6":
      kind = Kind.Ipv6;
      break;
    case "bytes":
      kind = Kind.Other;
      break;
    default:
      kind = len <= 4 ? Kind.Int : len === 8 ? Kind.Int64 : len === 16 ? Kind.Int128 : Kind.Other;
  }
  const word = (masked: boolean): number =>
    ((id.cls << 16) | (id.field << 9) | (masked ? 0x100 : 0) | ((masked ? 2 * len : len) + expLen)) >>> 0;
  return {
    def,
    kind,
    len,
    hdr: word(false),
    hdrMasked: word(true),
    exp: expLen ? (id.exp ?? 0) : 0,
    rank: prerequisiteRank(name),
    max: len >= 4 ? 0xffffffff : 2 ** (8 * len) - 1,
  };
}

const COMMANDS: Record<string, number> = {
  add: 0,
  modify: 1,
  modify_strict: 2,
  delete: 3,
  delete_strict: 4,
};

const isU8 = (v: unknown): v is number => typeof v === "number" && (v & 0xff) === v;
const isU16 = (v: unknown): v is number => typeof v === "number" && (v & 0xffff) === v;
const isU32 = (v: unknown): v is number => typeof v === "number" && v >>> 0 === v;
const U64 = (1n << 64n) - 1n;

/** Raised inside the fast path to hand a whole message to the general codec. */
const FALLBACK = Symbol("fallback");

type NoXid<M> = M extends unknown ? Omit<M, "xid"> & { xid?: number } : never;
/** A message to write; the xid it goes out with is passed beside it (its own is ignored). */
export type WireMessage = NoXid<OfMessage>;

export class OfWireWriter {
  private buf: Buffer;
  private pos = 0;
  private start = 0;

  constructor(private readonly chunkBytes = DEFAULT_CHUNK) {
    this.buf = Buffer.allocUnsafe(Math.max(chunkBytes, RESERVE));
  }

  /** Bytes written since the last `take()`. */
  get pending(): number {
    return this.pos - this.start;
  }

  /** The bytes written since the last take, as a view (never overwritten afterwards). */
  take(): Buffer {
    const out = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    return out;
  }

  /** Append one message with the given xid. */
  write(msg: WireMessage, xid: number): void {
    this.room();
    const at = this.pos;
    try {
      if (msg.type === "flow_mod") {
        this.flowMod(msg, xid);
        return;
      }
    } catch (err) {
      this.pos = at;
      if (err !== FALLBACK) throw err;
    }
    try {
      this.general({ ...msg, xid } as OfMessage);
    } catch (err) {
      this.pos = at;
      throw err;
    }
  }

  /** Append an ONF bundle_add_message carrying `msg`; both get `xid` (as OfConnection.bundleAdd does). */
  writeBundleAdd(bundleId: number, flags: number, msg: WireMessage, xid: number): void {
    this.room();
    const at = this.pos;
    if (isU32(bundleId) && isU16(flags) && isU32(xid)) {
      const b = this.buf;
      b[at] = OFP_VERSION;
      b[at + 1] = OFPT.EXPERIMENTER;
      u32(b, at + 4, xid);
      u32(b, at + 8, ONF_EXPERIMENTER_ID);
      u32(b, at + 12, ONFT_BUNDLE_ADD_MESSAGE);
      u32(b, at + 16, bundleId);
      b[at + 20] = 0;
      b[at + 21] = 0;
      b[at + 22] = flags >>> 8;
      b[at + 23] = flags;
      this.pos = at + 24;
      try {
        if (msg.type === "flow_mod") this.flowMod(msg, xid);
        else this.general({ ...msg, xid } as OfMessage);
        const len = this.pos - at;
        if (len <= 0xffff) {
          b[at + 2] = len >>> 8;
          b[at + 3] = len;
          return;
        }
      } catch (err) {
        this.pos = at;
        if (err !== FALLBACK) throw err;
      }
    }
    this.pos = at;
    const message = { ...msg, xid } as OfMessage;
    try {
      this.general({ type: "bundle_add_message", xid, bundleId, flags, message });
    } catch (err) {
      this.pos = at;
      throw err;
    }
  }

  private room(): void {
    if (this.buf.length - this.pos >= RESERVE) return;
    const pending = this.pos - this.start;
    // twice what is pending: a writer nobody takes from for a while grows in a few steps, not one per message
    const next = Buffer.allocUnsafe(Math.max(this.chunkBytes, 2 * pending + RESERVE));
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.start = 0;
    this.pos = pending;
  }

  /** The general codec, for a whole message. */
  private general(msg: OfMessage): void {
    const w = new ByteWriter(256);
    writeMessage(w, msg);
    this.copyIn(w.finish());
  }

  private copyIn(b: Buffer): void {
    if (this.buf.length - this.pos < b.length) {
      // Only a message's general-codec piece lands here; it is < 64 KiB and RESERVE left room.
      throw FALLBACK;
    }
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  private flowMod(m: Omit<FlowMod, "xid">, xid: number): void {
    const cmd = COMMANDS[m.command];
    if (
      cmd === undefined ||
      !isU32(xid) ||
      typeof m.cookie !== "bigint" ||
      typeof m.cookieMask !== "bigint" ||
      !isU8(m.tableId) ||
      !isU16(m.idleTimeout) ||
      !isU16(m.hardTimeout) ||
      !isU16(m.priority) ||
      !isU32(m.bufferId) ||
      !isU32(m.outPort) ||
      !isU32(m.outGroup) ||
      !isU16(m.flags)
    ) {
      throw FALLBACK;
    }
    const b = this.buf;
    const at = this.pos;
    b[at] = OFP_VERSION;
    b[at + 1] = OFPT.FLOW_MOD;
    u32(b, at + 4, xid);
    this.u64(at + 8, m.cookie);
    this.u64(at + 16, m.cookieMask);
    b[at + 24] = m.tableId;
    b[at + 25] = cmd;
    b[at + 26] = m.idleTimeout >>> 8;
    b[at + 27] = m.idleTimeout;
    b[at + 28] = m.hardTimeout >>> 8;
    b[at + 29] = m.hardTimeout;
    b[at + 30] = m.priority >>> 8;
    b[at + 31] = m.priority;
    u32(b, at + 32, m.bufferId);
    u32(b, at + 36, m.outPort);
    u32(b, at + 40, m.outGroup);
    b[at + 44] = m.flags >>> 8;
    b[at + 45] = m.flags;
    b[at + 46] = 0;
    b[at + 47] = 0;
    this.pos = at + 48;
    this.match(m.match, at);
    this.instructions(m.instructions, at);
    const len = this.pos - at;
    if (len > 0xffff) throw FALLBACK;
    b[at + 2] = len >>> 8;
    b[at + 3] = len;
  }

  private u64(at: number, v: bigint): void {
    if (v === 0n) {
      zero(this.buf, at, at + 8);
      return;
    }
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), at);
  }

  private zeros(n: number): void {
    const b = this.buf;
    for (let i = 0; i < n; i++) b[this.pos++] = 0;
  }

  private pad8(from: number): void {
    const rem = (this.pos - from) & 7;
    if (rem) this.zeros(8 - rem);
  }

  private setLen(at: number, len: number): void {
    this.buf[at] = len >>> 8;
    this.buf[at + 1] = len;
  }

  // ---- match ----------------------------------------------------------------------------------

  private match(fields: readonly MatchField[], msgStart: number): void {
    const b = this.buf;
    const start = this.pos;
    b[start] = 0;
    b[start + 1] = 1; // OFPMT_OXM
    this.pos = start + 4;
    let ordered = true;
    let last = -1;
    for (const f of fields) {
      const r = INFO.get(f.field)?.rank ?? prerequisiteRank(f.field);
      if (r < last) {
        ordered = false;
        break;
      }
      last = r;
    }
    const list = ordered ? fields : stableByRank(fields);
    for (const f of list) {
      if (this.pos - msgStart > 0xffff) throw FALLBACK;
      this.oxm(f);
    }
    this.setLen(start + 2, this.pos - start);
    this.pad8(start);
  }

  private oxm(f: MatchField): void {
    const info = INFO.get(f.field);
    if (info === undefined || info.kind === Kind.Other || !this.oxmFast(info, f)) this.oxmGeneral(f);
  }

  private oxmGeneral(f: MatchField): void {
    const w = new ByteWriter(64);
    encodeOxm(w, f);
    this.copyIn(w.finish());
  }

  /** Write one OXM TLV from a typed value; false (nothing written) when the general codec must. */
  private oxmFast(info: FieldInfo, f: MatchField): boolean {
    const masked = f.mask !== undefined;
    if (masked && !info.def.maskable) return false;
    const b = this.buf;
    const at = this.pos;
    const head = at + (info.exp ? 8 : 4);
    const len = info.len;
    if (!this.value(info, f.value, head)) return false;
    if (masked) {
      if (!this.value(info, f.mask!, head + len)) return false;
      for (let i = 0; i < len; i++) b[head + i]! &= b[head + len + i]!;
    }
    u32(b, at, masked ? info.hdrMasked : info.hdr);
    if (info.exp) u32(b, at + 4, info.exp);
    this.pos = head + (masked ? 2 * len : len);
    return true;
  }

  /** Write a field value at `at`; false when it is not of the form the fast path knows. */
  private value(info: FieldInfo, v: unknown, at: number): boolean {
    const b = this.buf;
    switch (info.kind) {
      case Kind.Int: {
        if (typeof v !== "number" || !(v >= 0 && v <= info.max) || !Number.isInteger(v)) return false;
        const len = info.len;
        if (len === 4) u32(b, at, v);
        else if (len === 2) {
          b[at] = v >>> 8;
          b[at + 1] = v;
        } else if (len === 1) b[at] = v;
        else return false;
        return true;
      }
      case Kind.Int64:
        if (typeof v !== "bigint" || v < 0n || v > U64) return false;
        b.writeBigUInt64BE(v, at);
        return true;
      case Kind.Int128:
        if (typeof v !== "bigint" || v < 0n || v >> 128n !== 0n) return false;
        b.writeBigUInt64BE(v >> 64n, at);
        b.writeBigUInt64BE(v & U64, at + 8);
        return true;
      case Kind.Mac:
        return typeof v === "string" && writeMacText(v, b, at);
      case Kind.Ipv4:
        return typeof v === "string" && writeIpv4Text(v, b, at);
      case Kind.Ipv6: {
        if (typeof v !== "string") return false;
        let bytes: Buffer;
        try {
          bytes = ipv6ToBytes(v);
        } catch {
          return false;
        }
        bytes.copy(b, at);
        return true;
      }
      default:
        return false;
    }
  }

  // ---- instructions and actions ---------------------------------------------------------------

  private instructions(list: readonly Instruction[], msgStart: number): void {
    const b = this.buf;
    for (const ins of list) {
      if (this.pos - msgStart > 0xffff) throw FALLBACK;
      const at = this.pos;
      switch (ins.type) {
        case "apply_actions":
        case "write_actions":
          if (!Array.isArray(ins.actions)) break;
          b[at] = 0;
          b[at + 1] = ins.type === "apply_actions" ? 4 : 3;
          zero(b, at + 4, at + 8);
          this.pos = at + 8;
          for (const a of ins.actions) {
            if (this.pos - msgStart > 0xffff) throw FALLBACK;
            this.action(a);
          }
          this.setLen(at + 2, this.pos - at);
          continue;
        case "goto_table":
          if (!isU8(ins.table)) break;
          b[at] = 0;
          b[at + 1] = 1;
          b[at + 2] = 0;
          b[at + 3] = 8;
          b[at + 4] = ins.table;
          b[at + 5] = b[at + 6] = b[at + 7] = 0;
          this.pos = at + 8;
          continue;
        case "clear_actions":
          b[at] = 0;
          b[at + 1] = 5;
          b[at + 2] = 0;
          b[at + 3] = 8;
          zero(b, at + 4, at + 8);
          this.pos = at + 8;
          continue;
        case "meter":
          if (!isU32(ins.meterId)) break;
          b[at] = 0;
          b[at + 1] = 6;
          b[at + 2] = 0;
          b[at + 3] = 8;
          u32(b, at + 4, ins.meterId);
          this.pos = at + 8;
          continue;
      }
      const w = new ByteWriter(64);
      encodeInstructions(w, [ins]);
      this.copyIn(w.finish());
    }
  }

  private action(a: Action): void {
    const b = this.buf;
    const at = this.pos;
    switch (a.type) {
      case "output": {
        const maxLen = a.maxLen ?? (a.port === OFPP.CONTROLLER ? OFPCML_NO_BUFFER : 0);
        if (!isU32(a.port) || !isU16(maxLen)) break;
        b[at] = 0;
        b[at + 1] = OFPAT_OUTPUT;
        b[at + 2] = 0;
        b[at + 3] = 16;
        u32(b, at + 4, a.port);
        b[at + 8] = maxLen >>> 8;
        b[at + 9] = maxLen;
        zero(b, at + 10, at + 16);
        this.pos = at + 16;
        return;
      }
      case "set_field": {
        const info = INFO.get(a.field);
        if (info === undefined || info.kind === Kind.Other) break;
        const masked = a.mask !== undefined;
        b[at] = masked ? OFPAT_EXPERIMENTER >>> 8 : 0;
        b[at + 1] = masked ? OFPAT_EXPERIMENTER & 0xff : OFPAT_SET_FIELD;
        if (masked) {
          u32(b, at + 4, NX_EXPERIMENTER_ID);
          b[at + 8] = 0;
          b[at + 9] = NXAST_REG_LOAD2;
        }
        this.pos = at + (masked ? 10 : 4);
        const f: MatchField = masked ? { field: a.field, value: a.value, mask: a.mask } : a;
        if (!this.oxmFast(info, f)) {
          this.pos = at;
          break;
        }
        this.pad8(at);
        this.setLen(at + 2, this.pos - at);
        return;
      }
      case "resubmit": {
        const port = a.port ?? OFPP.IN_PORT;
        const port16 = port >= OFPP.MAX ? port - 0xffff0000 : port;
        if (!isU16(port16) || (a.table !== undefined && !isU8(a.table))) break;
        b[at] = 0xff;
        b[at + 1] = 0xff;
        b[at + 2] = 0;
        b[at + 3] = 16;
        u32(b, at + 4, NX_EXPERIMENTER_ID);
        b[at + 8] = 0;
        b[at + 9] = NXAST_RESUBMIT_TABLE;
        b[at + 10] = port16 >>> 8;
        b[at + 11] = port16;
        b[at + 12] = a.table ?? 255;
        b[at + 13] = b[at + 14] = b[at + 15] = 0;
        this.pos = at + 16;
        return;
      }
      case "move": {
        // A move's bytes depend only on its two subfields: encode each pair once.
        const k = `${a.src.field}/${a.src.ofs}/${a.src.nbits}>${a.dst.field}/${a.dst.ofs}/${a.dst.nbits}`;
        let bytes = MOVES.get(k);
        if (!bytes) {
          const w = new ByteWriter(32);
          encodeAction(w, a);
          MOVES.set(k, (bytes = Buffer.from(w.finish())));
        }
        this.copyIn(bytes);
        return;
      }
      case "dec_ttl":
        b[at] = 0;
        b[at + 1] = OFPAT_DEC_NW_TTL;
        b[at + 2] = 0;
        b[at + 3] = 8;
        zero(b, at + 4, at + 8);
        this.pos = at + 8;
        return;
    }
    const w = new ByteWriter(64);
    encodeAction(w, a);
    this.copyIn(w.finish());
  }
}

function u32(b: Buffer, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = v >>> 16;
  b[at + 2] = v >>> 8;
  b[at + 3] = v;
}

function zero(b: Buffer, from: number, to: number): void {
  for (let i = from; i < to; i++) b[i] = 0;
}

/** The fields by rank, ties in their given order: an insertion sort (a match has a handful). */
function stableByRank(fields: readonly MatchField[]): MatchField[] {
  const out = fields.slice();
  const ranks = out.map((f) => INFO.get(f.field)?.rank ?? prerequisiteRank(f.field));
  for (let i = 1; i < out.length; i++) {
    const f = out[i]!;
    const r = ranks[i]!;
    let j = i - 1;
    while (j >= 0 && ranks[j]! > r) {
      out[j + 1] = out[j]!;
      ranks[j + 1] = ranks[j]!;
      j--;
    }
    out[j + 1] = f;
    ranks[j + 1] = r;
  }
  return out;
}

/** One message, encoded by the bulk encoder (byte-identical to encodeMessage). */
export function encodeMessageFast(msg: OfMessage): Buffer {
  const w = new OfWireWriter(RESERVE);
  w.write(msg, msg.xid);
  return Buffer.from(w.take());
}

/** Test hook: the same, for a bundle_add_message wrapper. */
export function encodeBundleAddFast(bundleId: number, flags: number, msg: OfMessage): Buffer {
  const w = new OfWireWriter(RESERVE);
  w.writeBundleAdd(bundleId, flags, msg, msg.xid);
  return Buffer.from(w.take());
}
