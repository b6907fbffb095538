/**
 * DHCPv6 messages (RFC 8415): the client/server form (msg-type, 24-bit
 * transaction id, options) and the relay form (msg-type, hop count, link and
 * peer addresses, options), with the options a distributed server and the
 * clients it meets use, typed: client and server identifiers (DUIDs, §11),
 * IA_NA / IA_TA / IA_PD with their IAADDR / IAPREFIX (§21.4–21.6, 21.21–22),
 * option request (§21.7), preference, elapsed time, relay message, server
 * unicast, status code (§21.13), rapid commit, interface id, reconfigure
 * accept, DNS recursive name servers and domain search list (RFC 3646),
 * information refresh time, SOL_MAX_RT and INF_MAX_RT. The option table
 * DHCP6_OPTIONS declares each once; codes not in it are kept raw, in order,
 * and re-encode as they came.
 *
 * Options keep their wire order and may repeat (several IA_NA). IA options
 * nest options of their own; nesting deeper than 8 levels, a known option
 * whose length does not fit its type, a domain name that runs past its
 * option or is not a host name (dns-name.ts), or an option running past its
 * container is a DecodeError — the server discards such a message (RFC 8415
 * §16). A status message is UTF-8 text. DUIDs stay opaque bytes in
 * the message (servers compare them byte for byte, §11); `decodeDuid` gives a
 * typed view and `duidLl` makes the DUID-LL a server derives from its MAC.
 *
 * `buildDhcp6Packet` puts a message in UDP/IPv6/Ethernet: server messages
 * (ADVERTISE, REPLY, RECONFIGURE) from port 547 to 546, client messages from
 * 546 to 547, relay messages 547 to 547 (§7.2).
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToIpv6, bytesToMac, ipv6ToBytes, macToBytes } from "./addr.js";
import { UDP_PORT } from "./constants.js";
import { decodeDnsNames, encodeDnsNames } from "./dns-name.js";
import type { VlanSpec } from "./ethernet.js";
import { buildFrame, type Frame } from "./frame.js";

/** Message types (RFC 8415 §7.3). */
export const DHCP6_MESSAGE_TYPE = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;
export const DHCP6_MESSAGE_TYPE_NAMES = new Map<number, string>(
  Object.entries(DHCP6_MESSAGE_TYPE).map(([k, v]) => [v, k.replace("_", "-")]),
);

/** Status codes (RFC 8415 §21.13). */
export const DHCP6_STATUS = {
  Success: 0,
  UnspecFail: 1,
  NoAddrsAvail: 2,
  NoBinding: 3,
  NotOnLink: 4,
  UseMulticast: 5,
  NoPrefixAvail: 6,
} as const;
export const DHCP6_STATUS_NAMES = new Map<number, string>(
  Object.entries(DHCP6_STATUS).map(([k, v]) => [v, k]),
);

/** All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1), where clients send. */
export const ALL_DHCP_RELAY_AGENTS_AND_SERVERS = "ff02::1:2";

/** Options the codec types (RFC 8415 §21 unless noted). */
export const DHCP6_OPTIONS = [
  { code: 1, kind: "client-id" },
  { code: 2, kind: "server-id" },
  { code: 3, kind: "ia-na" },
  { code: 4, kind: "ia-ta" },
  { code: 5, kind: "iaaddr" },
  { code: 6, kind: "oro" },
  { code: 7, kind: "preference" },
  { code: 8, kind: "elapsed-time" },
  { code: 9, kind: "relay-msg" },
  { code: 12, kind: "unicast" },
  { code: 13, kind: "status-code" },
  { code: 14, kind: "rapid-commit" },
  { code: 18, kind: "interface-id" },
  { code: 20, kind: "reconf-accept" },
  { code: 23, kind: "dns-servers" }, // RFC 3646 §3
  { code: 24, kind: "domain-list" }, // RFC 3646 §4
  { code: 25, kind: "ia-pd" },
  { code: 26, kind: "iaprefix" },
  { code: 32, kind: "information-refresh-time" },
  { code: 82, kind: "sol-max-rt" },
  { code: 83, kind: "inf-max-rt" },
] as const;

export type Dhcp6Option =
  | { kind: "client-id"; duid: Buffer }
  | { kind: "server-id"; duid: Buffer }
  | { kind: "ia-na"; iaid: number; t1: number; t2: number; options: Dhcp6Option[] }
  | { kind: "ia-ta"; iaid: number; options: Dhcp6Option[] }
  | {
      kind: "iaaddr";
      address: string;
      preferredLifetime: number;
      validLifetime: number;
      options: Dhcp6Option[];
    }
  | { kind: "oro"; codes: number[] }
  | { kind: "preference"; value: number }
  /** Hundredths of a second since the client began this exchange. */
  | { kind: "elapsed-time"; time: number }
  /** The relayed message, raw (decode it with decodeDhcp6). */
  | { kind: "relay-msg"; message: Buffer }
  | { kind: "unicast"; address: string }
  | { kind: "status-code"; status: number; message: string }
  | { kind: "rapid-commit" }
  | { kind: "interface-id"; id: Buffer }
  | { kind: "reconf-accept" }
  | { kind: "dns-servers"; servers: string[] }
  | { kind: "domain-list"; domains: string[] }
  | { kind: "ia-pd"; iaid: number; t1: number; t2: number; options: Dhcp6Option[] }
  | {
      kind: "iaprefix";
      preferredLifetime: number;
      validLifetime: number;
      prefixLength: number;
      prefix: string;
      options: Dhcp6Option[];
    }
  | { kind: "information-refresh-time"; seconds: number }
  | { kind: "sol-max-rt"; seconds: number }
  | { kind: "inf-max-rt"; seconds: number }
  | { kind: "raw"; code: number; data: Buffer };

export type Dhcp6OptionKind = Dhcp6Option["kind"];
export type Dhcp6OptionOf<K extends Dhcp6OptionKind> = Extract<Dhcp6Option, { kind: K }>;

/** A client/server message (every type but RELAY-FORW and RELAY-REPL). */
export interface Dhcp6Message {
  msgType: number;
  /** 24 bits. */
  transactionId: number;
  options: Dhcp6Option[];
}

/** RELAY-FORW / RELAY-REPL (RFC 8415 §9). */
export interface Dhcp6RelayMessage {
  msgType: 12 | 13;
  hopCount: number;
  linkAddress: string;
  peerAddress: string;
  options: Dhcp6Option[];
}

export type Dhcp6 = Dhcp6Message | Dhcp6RelayMessage;

export function isDhcp6Relay(m: Dhcp6): m is Dhcp6RelayMessage {
  return m.msgType === DHCP6_MESSAGE_TYPE.RELAY_FORW || m.msgType === DHCP6_MESSAGE_TYPE.RELAY_REPL;
}

/** The first option of a kind, at the top level of `options`. */
export function dhcp6Option<K extends Dhcp6OptionKind>(
  options: readonly Dhcp6Option[],
  kind: K,
): Dhcp6OptionOf<K> | undefined {
  return options.find((o): o is Dhcp6OptionOf<K> => o.kind === kind);
}

/** Every option of a kind, at the top level of `options`, in order. */
export function dhcp6Options<K extends Dhcp6OptionKind>(
  options: readonly Dhcp6Option[],
  kind: K,
): Dhcp6OptionOf<K>[] {
  return options.filter((o): o is Dhcp6OptionOf<K> => o.kind === kind);
}

const MAX_DEPTH = 8;
type TypedKind = (typeof DHCP6_OPTIONS)[number]["kind"];
const BY_CODE = new Map<number, TypedKind>(DHCP6_OPTIONS.map((o) => [o.code, o.kind]));
const CODE_OF = Object.fromEntries(DHCP6_OPTIONS.map((o) => [o.kind, o.code])) as Record<TypedKind, number>;

function badLength(kind: string, len: number, want: string): DecodeError {
  return new DecodeError(`dhcp6 option ${kind}: length ${len}, expected ${want}`, {
    layer: "dhcp6",
    field: kind,
    length: len,
  });
}

function decodeOptions(r: ByteReader, depth: number): Dhcp6Option[] {
  if (depth > MAX_DEPTH) {
    throw new DecodeError(`dhcp6: options nested deeper than ${MAX_DEPTH}`, { layer: "dhcp6" });
  }
  const out: Dhcp6Option[] = [];
  while (!r.atEnd()) {
    const code = r.u16("dhcp6 option code");
    const len = r.u16("dhcp6 option length");
    const o = r.sub(len, `dhcp6 option ${code}`);
    const kind = BY_CODE.get(code);
    out.push(kind ? decodeTyped(kind, o, len, depth) : { kind: "raw", code, data: Buffer.from(o.rest()) });
  }
  return out;
}

function fixed(kind: string, len: number, want: number): void {
  if (len !== want) throw badLength(kind, len, String(want));
}

function atLeast(kind: string, len: number, want: number): void {
  if (len < want) throw badLength(kind, len, `at least ${want}`);
}

function decodeTyped(kind: TypedKind, o: ByteReader, len: number, depth: number): Dhcp6Option {
  switch (kind) {
    case "client-id":
    case "server-id":
      // §11.1: a DUID is a 2-byte type and 1 to 128 bytes of identifier.
      if (len < 3 || len > 130) throw badLength(kind, len, "3 to 130");
      return { kind, duid: Buffer.from(o.rest()) };
    case "ia-na":
    case "ia-pd": {
      atLeast(kind, len, 12);
      const iaid = o.u32("iaid");
      const t1 = o.u32("t1");
      const t2 = o.u32("t2");
      return { kind, iaid, t1, t2, options: decodeOptions(o, depth + 1) };
    }
    case "ia-ta":
      atLeast(kind, len, 4);
      return { kind, iaid: o.u32("iaid"), options: decodeOptions(o, depth + 1) };
    case "iaaddr": {
      atLeast(kind, len, 24);
      const address = bytesToIpv6(o.bytes(16, "address"));
      const preferredLifetime = o.u32("preferred lifetime");
      const validLifetime = o.u32("valid lifetime");
      return { kind, address, preferredLifetime, validLifetime, options: decodeOptions(o, depth + 1) };
    }
    case "iaprefix": {
      atLeast(kind, len, 25);
      const preferredLifetime = o.u32("preferred lifetime");
      const validLifetime = o.u32("valid lifetime");
      const prefixLength = o.u8("prefix length");
      const prefix = bytesToIpv6(o.bytes(16, "prefix"));
      return {
        kind,
        preferredLifetime,
        validLifetime,
        prefixLength,
        prefix,
        options: decodeOptions(o, depth + 1),
      };
    }
    case "oro": {
      if (len % 2 !== 0) throw badLength(kind, len, "a multiple of 2");
      const codes: number[] = [];
      while (!o.atEnd()) codes.push(o.u16("requested option"));
      return { kind, codes };
    }
    case "preference":
      fixed(kind, len, 1);
      return { kind, value: o.u8("preference") };
    case "elapsed-time":
      fixed(kind, len, 2);
      return { kind, time: o.u16("elapsed time") };
    case "relay-msg":
      return { kind, message: Buffer.from(o.rest()) };
    case "unicast":
      fixed(kind, len, 16);
      return { kind, address: bytesToIpv6(o.bytes(16, "server address")) };
    case "status-code": {
      atLeast(kind, len, 2);
      const status = o.u16("status code");
      return { kind, status, message: o.rest().toString("utf8") };
    }
    case "rapid-commit":
    case "reconf-accept":
      fixed(kind, len, 0);
      return { kind };
    case "interface-id":
      return { kind, id: Buffer.from(o.rest()) };
    case "dns-servers": {
      if (len % 16 !== 0) throw badLength(kind, len, "a multiple of 16");
      const servers: string[] = [];
      while (!o.atEnd()) servers.push(bytesToIpv6(o.bytes(16, "dns server")));
      return { kind, servers };
    }
    case "domain-list":
      return { kind, domains: decodeDnsNames(o, "dhcp6 domain list") };
    case "information-refresh-time":
    case "sol-max-rt":
    case "inf-max-rt":
      fixed(kind, len, 4);
      return { kind, seconds: o.u32(kind) };
  }
}

function encodeOptions(w: ByteWriter, options: readonly Dhcp6Option[]): void {
  for (const o of options) {
    const code = o.kind === "raw" ? o.code : CODE_OF[o.kind];
    w.u16(code);
    const at = w.reserve(2);
    const n = w.nested(() => encodeBody(w, o));
    if (n > 0xffff) throw new EncodeError(`dhcp6: option ${o.kind} longer than 65535 bytes`, {});
    w.setU16(at, n);
  }
}

function encodeBody(w: ByteWriter, o: Dhcp6Option): void {
  switch (o.kind) {
    case "client-id":
    case "server-id":
      if (o.duid.length < 3 || o.duid.length > 130) {
        throw new EncodeError(`dhcp6: a DUID is 3 to 130 bytes, not ${o.duid.length}`, { layer: "dhcp6" });
      }
      w.bytes(o.duid);
      return;
    case "ia-na":
    case "ia-pd":
      w.u32(o.iaid).u32(o.t1).u32(o.t2);
      encodeOptions(w, o.options);
      return;
    case "ia-ta":
      w.u32(o.iaid);
      encodeOptions(w, o.options);
      return;
    case "iaaddr":
      w.bytes(ipv6ToBytes(o.address)).u32(o.preferredLifetime).u32(o.validLifetime);
      encodeOptions(w, o.options);
      return;
    case "iaprefix":
      w.u32(o.preferredLifetime).u32(o.validLifetime).u8(o.prefixLength).bytes(ipv6ToBytes(o.prefix));
      encodeOptions(w, o.options);
      return;
    case "oro":
      for (const c of o.codes) w.u16(c);
      return;
    case "preference":
      w.u8(o.value);
      return;
    case "elapsed-time":
      w.u16(o.time);
      return;
    case "relay-msg":
      w.bytes(o.message);
      return;
    case "unicast":
      w.bytes(ipv6ToBytes(o.address));
      return;
    case "status-code":
      w.u16(o.status).bytes(Buffer.from(o.message, "utf8"));
      return;
    case "rapid-commit":
    case "reconf-accept":
      return;
    case "interface-id":
      w.bytes(o.id);
      return;
    case "dns-servers":
      for (const s of o.servers) w.bytes(ipv6ToBytes(s));
      return;
    case "domain-list":
      w.bytes(encodeDnsNames(o.domains));
      return;
    case "information-refresh-time":
    case "sol-max-rt":
    case "inf-max-rt":
      w.u32(o.seconds);
      return;
    case "raw":
      w.bytes(o.data);
      return;
  }
}

/** Decode a DHCPv6 message (the UDP payload). */
export function decodeDhcp6(buf: Buffer): Dhcp6 {
  const r = new ByteReader(buf, 0, buf.length, "dhcp6");
  const msgType = r.u8("msg-type");
  if (msgType === DHCP6_MESSAGE_TYPE.RELAY_FORW || msgType === DHCP6_MESSAGE_TYPE.RELAY_REPL) {
    const hopCount = r.u8("hop-count");
    const linkAddress = bytesToIpv6(r.bytes(16, "link-address"));
    const peerAddress = bytesToIpv6(r.bytes(16, "peer-address"));
    return { msgType, hopCount, linkAddress, peerAddress, options: decodeOptions(r, 0) };
  }
  const hi = r.u8("transaction-id");
  const transactionId = (hi << 16) | r.u16("transaction-id");
  return { msgType, transactionId, options: decodeOptions(r, 0) };
}

export function encodeDhcp6(m: Dhcp6): Buffer {
  const w = new ByteWriter(128);
  if (isDhcp6Relay(m)) {
    w.u8(m.msgType).u8(m.hopCount).bytes(ipv6ToBytes(m.linkAddress)).bytes(ipv6ToBytes(m.peerAddress));
  } else {
    if (!Number.isInteger(m.transactionId) || m.transactionId < 0 || m.transactionId > 0xffffff) {
      throw new EncodeError(`dhcp6: transaction id ${m.transactionId} does not fit 24 bits`, {
        layer: "dhcp6",
      });
    }
    w.u8(m.msgType)
      .u8(m.transactionId >>> 16)
      .u16(m.transactionId & 0xffff);
  }
  encodeOptions(w, m.options);
  return w.finish();
}

/** The DHCPv6 message of a decoded frame: UDP to port 546 or 547 over IPv6, else undefined. */
export function dhcp6OfFrame(f: Frame): Dhcp6 | undefined {
  if (!f.ipv6 || !f.udp) return undefined;
  const p = f.udp.dstPort;
  if (p !== UDP_PORT.DHCPV6_SERVER && p !== UDP_PORT.DHCPV6_CLIENT) return undefined;
  return decodeDhcp6(f.payload);
}

// ---- DUIDs (RFC 8415 §11) ------------------------------------------------------------------

export const DUID_TYPE = { LLT: 1, EN: 2, LL: 3, UUID: 4 } as const;
/** ARP hardware type of Ethernet, as DUIDs carry it. */
export const HWTYPE_ETHERNET = 1;

export type Duid =
  | { type: "llt"; hardwareType: number; time: number; linkLayerAddress: Buffer }
  | { type: "en"; enterpriseNumber: number; identifier: Buffer }
  | { type: "ll"; hardwareType: number; linkLayerAddress: Buffer }
  | { type: "uuid"; uuid: Buffer }
  | { type: "unknown"; duidType: number; data: Buffer };

/** A typed view of DUID bytes; a known type with the wrong size is a DecodeError. */
export function decodeDuid(b: Buffer): Duid {
  const r = new ByteReader(b, 0, b.length, "dhcp6 duid");
  const t = r.u16("duid type");
  switch (t) {
    case DUID_TYPE.LLT: {
      const hardwareType = r.u16("hardware type");
      const time = r.u32("time");
      return { type: "llt", hardwareType, time, linkLayerAddress: Buffer.from(r.rest()) };
    }
    case DUID_TYPE.EN: {
      const enterpriseNumber = r.u32("enterprise number");
      return { type: "en", enterpriseNumber, identifier: Buffer.from(r.rest()) };
    }
    case DUID_TYPE.LL: {
      const hardwareType = r.u16("hardware type");
      return { type: "ll", hardwareType, linkLayerAddress: Buffer.from(r.rest()) };
    }
    case DUID_TYPE.UUID:
      if (r.remaining !== 16) {
        throw new DecodeError(`dhcp6 duid: a DUID-UUID has 16 bytes of UUID, not ${r.remaining}`, {
          layer: "dhcp6",
        });
      }
      return { type: "uuid", uuid: Buffer.from(r.rest()) };
    default:
      return { type: "unknown", duidType: t, data: Buffer.from(r.rest()) };
  }
}

export function encodeDuid(d: Duid): Buffer {
  const w = new ByteWriter(32);
  switch (d.type) {
    case "llt":
      w.u16(DUID_TYPE.LLT).u16(d.hardwareType).u32(d.time).bytes(d.linkLayerAddress);
      break;
    case "en":
      w.u16(DUID_TYPE.EN).u32(d.enterpriseNumber).bytes(d.identifier);
      break;
    case "ll":
      w.u16(DUID_TYPE.LL).u16(d.hardwareType).bytes(d.linkLayerAddress);
      break;
    case "uuid":
      if (d.uuid.length !== 16) throw new EncodeError("dhcp6 duid: a UUID is 16 bytes", { layer: "dhcp6" });
      w.u16(DUID_TYPE.UUID).bytes(d.uuid);
      break;
    case "unknown":
      w.u16(d.duidType).bytes(d.data);
      break;
  }
  return w.finish();
}

/** DUID-LL of an Ethernet MAC (RFC 8415 §11.4): 00 03 00 01 + the MAC. */
export function duidLl(mac: string): Buffer {
  return encodeDuid({ type: "ll", hardwareType: HWTYPE_ETHERNET, linkLayerAddress: macToBytes(mac) });
}

/** The Ethernet MAC inside a DUID-LL or DUID-LLT, if it holds one. */
export function duidMac(duid: Buffer): string | undefined {
  try {
    const d = decodeDuid(duid);
    if ((d.type === "ll" || d.type === "llt") && d.hardwareType === HWTYPE_ETHERNET) {
      return d.linkLayerAddress.length === 6 ? bytesToMac(d.linkLayerAddress) : undefined;
    }
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
  }
  return undefined;
}

// ---- frames ------------------------------------------------------------------------------------

const SERVER_MESSAGES: ReadonlySet<number> = new Set([
  DHCP6_MESSAGE_TYPE.ADVERTISE,
  DHCP6_MESSAGE_TYPE.REPLY,
  DHCP6_MESSAGE_TYPE.RECONFIGURE,
]);

export interface Dhcp6FrameArgs {
  ethSrc: string;
  ethDst: string;
  ipSrc: string;
  ipDst: string;
  message: Dhcp6;
  vlans?: VlanSpec[];
  hopLimit?: number;
}

/** A DHCPv6 message in UDP/IPv6, ports chosen by the message type (RFC 8415 §7.2). */
export function buildDhcp6Packet(a: Dhcp6FrameArgs): Buffer {
  const t = a.message.msgType;
  const relay = isDhcp6Relay(a.message);
  const fromServer = SERVER_MESSAGES.has(t);
  return buildFrame({
    eth: { src: a.ethSrc, dst: a.ethDst },
    vlans: a.vlans ?? [],
    ipv6: { src: a.ipSrc, dst: a.ipDst, hopLimit: a.hopLimit ?? 64 },
    udp: {
      srcPort: fromServer || relay ? UDP_PORT.DHCPV6_SERVER : UDP_PORT.DHCPV6_CLIENT,
      dstPort: fromServer ? UDP_PORT.DHCPV6_CLIENT : UDP_PORT.DHCPV6_SERVER,
    },
    payload: encodeDhcp6(a.message),
  });
}
