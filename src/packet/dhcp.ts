/**
 * DHCPv4 messages (RFC 2131): the BOOTP fixed header (RFC 951), the magic
 * cookie 99.130.83.99 and the options area (RFC 2132), options typed by the
 * table in dhcp-options.ts.
 *
 * Decoding: options that occur several times are concatenated (RFC 3396,
 * long options split across instances); option 52 (overload) pulls further
 * options from the `file` and then `sname` fields; unknown codes are kept raw
 * in `unknownOptions`, in order. A missing End option is tolerated (several
 * clients omit it); an option whose length runs past its field is a
 * DecodeError.
 *
 * Encoding: the message type first (clients such as udhcpc look for it early),
 * then the other options in the caller's order, then unknown raw ones, End,
 * and Pad up to the 300-byte BOOTP minimum (RFC 1542 §2.1). Values longer than
 * 255 bytes are split per RFC 3396. Overload is never produced.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToIpv4, bytesToMac, ipv4ToBytes, macToBytes } from "./addr.js";
import {
  DHCP_OPT_END,
  DHCP_OPT_PAD,
  DHCP_OPTION_BY_CODE,
  DHCP_OPTION_BY_NAME,
  type DhcpOptions,
  decodeOptionValue,
  encodeOptionValue,
} from "./dhcp-options.js";

export const DHCP_MAGIC_COOKIE = 0x63825363;
export const BOOTP_FIXED_LEN = 236;
export const BOOTP_MIN_LEN = 300;
export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const DHCP_FLAG_BROADCAST = 0x8000;

export interface DhcpRawOption {
  code: number;
  data: Buffer;
}

export interface DhcpSpec {
  /** BOOTREQUEST (1) or BOOTREPLY (2). */
  op: number;
  xid: number;
  /** Client hardware address (Ethernet MAC). */
  chaddr: string;
  htype?: number;
  hops?: number;
  secs?: number;
  /** Raw flags; `broadcast: true` sets bit 15. */
  flags?: number;
  broadcast?: boolean;
  ciaddr?: string;
  yiaddr?: string;
  siaddr?: string;
  giaddr?: string;
  sname?: string;
  file?: string;
  options: DhcpOptions;
  unknownOptions?: DhcpRawOption[];
}

export interface Dhcp {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  broadcast: boolean;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** First 6 bytes of chaddr as a MAC (the client's, for htype 1/hlen 6). */
  chaddr: string;
  /** All 16 chaddr bytes. */
  chaddrRaw: Buffer;
  sname: string;
  file: string;
  options: DhcpOptions;
  unknownOptions: DhcpRawOption[];
}

function cstring(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString("latin1");
}

/** Walk one options field, appending each option's data to `acc` by code, in first-seen order. */
function collect(r: ByteReader, acc: Map<number, Buffer[]>): void {
  while (!r.atEnd()) {
    const code = r.u8("option code");
    if (code === DHCP_OPT_PAD) continue;
    if (code === DHCP_OPT_END) return;
    const len = r.u8(`option ${code} length`);
    const data = r.bytes(len, `option ${code} data`);
    const list = acc.get(code);
    if (list) list.push(data);
    else acc.set(code, [data]);
  }
}

export function decodeDhcp(r: ByteReader): Dhcp {
  const op = r.u8("op");
  const htype = r.u8("htype");
  const hlen = r.u8("hlen");
  const hops = r.u8("hops");
  const xid = r.u32("xid");
  const secs = r.u16("secs");
  const flags = r.u16("flags");
  const ciaddr = bytesToIpv4(r.bytes(4, "ciaddr"));
  const yiaddr = bytesToIpv4(r.bytes(4, "yiaddr"));
  const siaddr = bytesToIpv4(r.bytes(4, "siaddr"));
  const giaddr = bytesToIpv4(r.bytes(4, "giaddr"));
  const chaddrRaw = Buffer.from(r.bytes(16, "chaddr"));
  const snameField = r.bytes(64, "sname");
  const fileField = r.bytes(128, "file");
  const cookie = r.u32("magic cookie");
  if (cookie !== DHCP_MAGIC_COOKIE) {
    throw new DecodeError(`dhcp: magic cookie 0x${cookie.toString(16)}, expected 0x63825363`, {
      layer: "dhcp",
      field: "magic cookie",
    });
  }
  const acc = new Map<number, Buffer[]>();
  collect(r.sub(r.remaining, "dhcp options"), acc);
  let sname = cstring(snameField);
  let file = cstring(fileField);
  const overload = acc.get(52);
  if (overload) {
    const v = Buffer.concat(overload)[0] ?? 0;
    if (v & 1) {
      collect(new ByteReader(fileField, 0, fileField.length, "dhcp file options"), acc);
      file = "";
    }
    if (v & 2) {
      collect(new ByteReader(snameField, 0, snameField.length, "dhcp sname options"), acc);
      sname = "";
    }
  }
  const options: Record<string, unknown> = {};
  const unknownOptions: DhcpRawOption[] = [];
  for (const [code, parts] of acc) {
    const data = Buffer.concat(parts);
    const def = DHCP_OPTION_BY_CODE.get(code);
    if (def) options[def.name] = decodeOptionValue(def, data);
    else unknownOptions.push({ code, data });
  }
  return {
    op,
    htype,
    hlen,
    hops,
    xid,
    secs,
    flags,
    broadcast: (flags & DHCP_FLAG_BROADCAST) !== 0,
    ciaddr,
    yiaddr,
    siaddr,
    giaddr,
    chaddr: bytesToMac(chaddrRaw),
    chaddrRaw,
    sname,
    file,
    options: options as DhcpOptions,
    unknownOptions,
  };
}

export function parseDhcp(buf: Buffer): Dhcp {
  return decodeDhcp(new ByteReader(buf, 0, buf.length, "dhcp"));
}

function putOption(w: ByteWriter, code: number, data: Buffer): void {
  if (data.length === 0) {
    w.u8(code).u8(0);
    return;
  }
  for (let i = 0; i < data.length; i += 255) {
    const part = data.subarray(i, i + 255);
    w.u8(code).u8(part.length).bytes(part);
  }
}

function fixedString(s: string | undefined, n: number, field: string): Buffer {
  const b = Buffer.alloc(n);
  const src = Buffer.from(s ?? "", "latin1");
  if (src.length > n)
    throw new EncodeError(`dhcp: ${field} longer than ${n} bytes`, { layer: "dhcp", field });
  src.copy(b);
  return b;
}

export function encodeDhcp(m: DhcpSpec): Buffer {
  const w = new ByteWriter(BOOTP_MIN_LEN + 64);
  const ch = macToBytes(m.chaddr);
  w.u8(m.op)
    .u8(m.htype ?? 1)
    .u8(ch.length)
    .u8(m.hops ?? 0)
    .u32(m.xid)
    .u16(m.secs ?? 0);
  w.u16((m.flags ?? 0) | (m.broadcast ? DHCP_FLAG_BROADCAST : 0));
  for (const a of [m.ciaddr, m.yiaddr, m.siaddr, m.giaddr]) w.bytes(ipv4ToBytes(a ?? "0.0.0.0"));
  w.bytes(ch).zeros(16 - ch.length);
  w.bytes(fixedString(m.sname, 64, "sname")).bytes(fixedString(m.file, 128, "file"));
  w.u32(DHCP_MAGIC_COOKIE);
  const entries = Object.entries(m.options).filter(([, v]) => v !== undefined);
  entries.sort(([a], [b]) => (a === "messageType" ? -1 : b === "messageType" ? 1 : 0));
  for (const [name, v] of entries) {
    const def = DHCP_OPTION_BY_NAME.get(name);
    if (!def) throw new EncodeError(`dhcp: unknown option name "${name}"`, { layer: "dhcp", field: name });
    putOption(w, def.code, encodeOptionValue(def, v));
  }
  for (const o of m.unknownOptions ?? []) {
    if (o.code === DHCP_OPT_PAD || o.code === DHCP_OPT_END || DHCP_OPTION_BY_CODE.has(o.code)) {
      throw new EncodeError(`dhcp: raw option code ${o.code} is framing or a known option`, {
        layer: "dhcp",
      });
    }
    putOption(w, o.code, o.data);
  }
  w.u8(DHCP_OPT_END);
  if (w.length < BOOTP_MIN_LEN) w.zeros(BOOTP_MIN_LEN - w.length);
  return w.finish();
}
