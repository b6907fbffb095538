/**
 * ICMP (RFC 792) and ICMPv6 (RFC 4443) share one shape: type, code, checksum,
 * a 32-bit type-specific word (`rest`) and a body. The decoder keeps that
 * generic shape — so an unknown type loses nothing — and adds typed views for
 * the messages flowdrake's apps answer or emit: echo (identifier, sequence),
 * destination unreachable / packet too big (next-hop MTU, RFC 1191) and time
 * exceeded, whose bodies carry the invoking packet. ICMPv6 NDP messages get
 * their own view (ndp.ts).
 *
 * The ICMPv4 checksum covers the message; the ICMPv6 checksum also covers the
 * IPv6 pseudo-header, so its decoder is handed the pseudo-header sum.
 */
import { ByteWriter, type ByteReader } from "../util/bytes.js";
import { finish, fold, sumBytes } from "./checksum.js";
import { ICMP_TYPE, ICMPV6_TYPE } from "./constants.js";

export interface IcmpSpec {
  type: number;
  code?: number;
  /** The 32-bit word after the checksum (echo id/seq, MTU, NDP flags…). */
  rest?: number;
  body?: Buffer;
  /** Force this checksum instead of computing it. */
  checksum?: number;
}

export interface Icmp {
  type: number;
  code: number;
  checksum: number;
  checksumValid: boolean;
  rest: number;
  body: Buffer;
  echo?: { identifier: number; sequence: number };
  /** Destination unreachable code 4 (fragmentation needed) / ICMPv6 packet too big. */
  nextHopMtu?: number;
}

export const ICMP_HEADER_LEN = 8;

/** `pseudo` is the pseudo-header sum for ICMPv6, 0 for ICMPv4. */
export function decodeIcmp(r: ByteReader, v6: boolean, pseudo: number): Icmp {
  const start = r.offset;
  const type = r.u8("type");
  const code = r.u8("code");
  const checksum = r.u16("checksum");
  const rest = r.u32("rest of header");
  const body = Buffer.from(r.rest());
  const checksumValid = fold(sumBytes(r.buf, start, r.offset, pseudo)) === 0xffff;
  const icmp: Icmp = { type, code, checksum, checksumValid, rest, body };
  const echo = v6
    ? type === ICMPV6_TYPE.ECHO_REQUEST || type === ICMPV6_TYPE.ECHO_REPLY
    : type === ICMP_TYPE.ECHO_REQUEST || type === ICMP_TYPE.ECHO_REPLY;
  if (echo) icmp.echo = { identifier: rest >>> 16, sequence: rest & 0xffff };
  if (v6 && type === ICMPV6_TYPE.PACKET_TOO_BIG) icmp.nextHopMtu = rest;
  if (!v6 && type === ICMP_TYPE.DEST_UNREACHABLE && code === 4) icmp.nextHopMtu = rest & 0xffff;
  return icmp;
}

/** The message with its checksum; `pseudo` as for decodeIcmp. */
export function encodeIcmp(m: IcmpSpec, pseudo: number): Buffer {
  const body = m.body ?? Buffer.alloc(0);
  const w = new ByteWriter(ICMP_HEADER_LEN + body.length);
  w.u8(m.type)
    .u8(m.code ?? 0)
    .u16(0)
    .u32(m.rest ?? 0)
    .bytes(body);
  const out = w.finish();
  out.writeUInt16BE(m.checksum ?? finish(sumBytes(out, 0, out.length, pseudo)), 2);
  return out;
}

export function icmpEcho(
  kind: "request" | "reply",
  identifier: number,
  sequence: number,
  data: Buffer = Buffer.alloc(0),
  v6 = false,
): IcmpSpec {
  const type = v6
    ? kind === "request"
      ? ICMPV6_TYPE.ECHO_REQUEST
      : ICMPV6_TYPE.ECHO_REPLY
    : kind === "request"
      ? ICMP_TYPE.ECHO_REQUEST
      : ICMP_TYPE.ECHO_REPLY;
  return { type, code: 0, rest: ((identifier << 16) | sequence) >>> 0, body: data };
}

/**
 * ICMPv4 destination unreachable carrying the start of the invoking datagram
 * (its IP header and at least 8 bytes, RFC 792; we keep up to 548 so the
 * message fits the 576-byte minimum, RFC 1812 §4.3.2.3).
 */
export function icmpDestUnreachable(code: number, original: Buffer, nextHopMtu = 0): IcmpSpec {
  return {
    type: ICMP_TYPE.DEST_UNREACHABLE,
    code,
    rest: nextHopMtu & 0xffff,
    body: original.subarray(0, 548),
  };
}

export function icmpTimeExceeded(code: number, original: Buffer): IcmpSpec {
  return { type: ICMP_TYPE.TIME_EXCEEDED, code, rest: 0, body: original.subarray(0, 548) };
}
