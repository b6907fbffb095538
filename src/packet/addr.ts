/**
 * Address text <-> bytes for the packet library: MAC ("aa:bb:cc:dd:ee:ff",
 * lower case), IPv4 (dotted quad, or a u32 in host arithmetic) and IPv6
 * (RFC 5952 canonical text: lower case, leading zeros dropped, the longest run
 * of two or more zero groups — the first one on a tie — written as "::").
 *
 * Decoded packets carry addresses as canonical strings, so apps compare them
 * with `===` and log them as they are; builders accept the same strings (IPv6
 * in any RFC 4291 form, parsed by ipaddr.js). Bad text is an EncodeError: it is
 * always the caller's value, never bytes off the wire, that can be malformed.
 *
 * This module also owns the allocation-free text writers the bulk encoders
 * use (OpenFlow wire-writer, netlink attributes, tc templates):
 * `writeMacText` and `writeIpv4Text` put the common text forms straight into
 * a buffer by character code and answer false for anything else, so each
 * caller falls back to its own general parser and its own errors. The netlink
 * codec prints IPv6 with `bytesToIpv6Hex`, the same RFC 5952 §4 text without
 * the §5 dotted tail for IPv4-mapped addresses.
 */
import ipaddr from "ipaddr.js";
import { EncodeError } from "../util/errors.js";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const MAC_RE = /^[0-9a-fA-F]{1,2}([:-][0-9a-fA-F]{1,2}){5}$/;

export function macToBytes(mac: string): Buffer {
  if (!MAC_RE.test(mac)) throw new EncodeError(`invalid MAC address "${mac}"`, { mac });
  return Buffer.from(mac.split(/[:-]/).map((p) => Number.parseInt(p, 16)));
}

export function bytesToMac(b: Uint8Array, at = 0): string {
  return `${HEX[b[at]!]}:${HEX[b[at + 1]!]}:${HEX[b[at + 2]!]}:${HEX[b[at + 3]!]}:${HEX[b[at + 4]!]}:${HEX[b[at + 5]!]}`;
}

export function isMac(s: string): boolean {
  return MAC_RE.test(s);
}

export const MAC_BROADCAST = "ff:ff:ff:ff:ff:ff";
export const MAC_ZERO = "00:00:00:00:00:00";

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(s: string): boolean {
  return IPV4_RE.test(s);
}

/**
 * Dotted-decimal IPv4 read by hand, for hot paths: four groups of one to
 * three digits (leading zeros read as decimal), each at most 255, as a
 * number; undefined for anything else (callers then take their general path).
 */
export function dottedIpv4(s: string): number | undefined {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
    } else if (c === 46 && digits > 0 && part <= 255 && dots < 3) {
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else return undefined;
  }
  return dots === 3 && digits > 0 && part <= 255 ? v * 256 + part : undefined;
}

export function ipv4ToU32(ip: string): number {
  if (!IPV4_RE.test(ip)) throw new EncodeError(`invalid IPv4 address "${ip}"`, { ip });
  const p = ip.split(".");
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

export function u32ToIpv4(v: number): string {
  return `${(v >>> 24) & 0xff}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

export function ipv4ToBytes(ip: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipv4ToU32(ip));
  return b;
}

export function bytesToIpv4(b: Uint8Array, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

export function ipv6ToBytes(ip: string): Buffer {
  if (!ipaddr.IPv6.isValid(ip) || ip.includes("%")) {
    throw new EncodeError(`invalid IPv6 address "${ip}"`, { ip });
  }
  return Buffer.from(ipaddr.IPv6.parse(ip).toByteArray());
}

export function isIpv6(s: string): boolean {
  return ipaddr.IPv6.isValid(s) && !s.includes("%");
}

/** RFC 5952 §4 canonical text of 16 bytes at `at`; an IPv4-mapped address keeps its dotted-quad tail (§5). */
export function bytesToIpv6(b: Uint8Array, at = 0): string {
  return ipv6Text(b, at, true);
}

/** RFC 5952 §4 text with every group in hex, IPv4-mapped ones too ("::ffff:c000:201"). */
export function bytesToIpv6Hex(b: Uint8Array, at = 0): string {
  return ipv6Text(b, at, false);
}

function ipv6Text(b: Uint8Array, at: number, mappedTail: boolean): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (mappedTail && bestAt === 0 && bestLen === 5 && g[5] === 0xffff) {
    return `::ffff:${bytesToIpv4(b, at + 12)}`;
  }
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** Canonical text of any IPv6 text form. */
export function canonicalIpv6(ip: string): string {
  return bytesToIpv6(ipv6ToBytes(ip));
}

/** Solicited-node multicast address (RFC 4291 §2.7.1) of an IPv6 address. */
export function solicitedNodeAddress(ip: string): string {
  const b = ipv6ToBytes(ip);
  const out = ipv6ToBytes("ff02::1:ff00:0");
  out[13] = b[13]!;
  out[14] = b[14]!;
  out[15] = b[15]!;
  return bytesToIpv6(out);
}

/** The Ethernet multicast MAC an IPv6 multicast address maps to (RFC 2464 §7). */
export function ipv6MulticastMac(ip: string): string {
  const b = ipv6ToBytes(ip);
  return bytesToMac(Buffer.from([0x33, 0x33, b[12]!, b[13]!, b[14]!, b[15]!]));
}

// ---- allocation-free text writers for the bulk encoders --------------------------------------

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

/**
 * "x:x:x:x:x:x" (one or two hex digits per group, either case, ':' only) into
 * b[at..at+6), without regex or allocation. False for any other text, and then
 * b[at..at+6) may hold a partial write.
 */
export function writeMacText(s: string, b: Uint8Array, at: number): boolean {
  let i = 0;
  const n = s.length;
  for (let g = 0; g < 6; g++) {
    if (g) {
      if (i >= n || s.charCodeAt(i) !== 58) return false;
      i++;
    }
    const d0 = i < n ? hexDigit(s.charCodeAt(i)) : -1;
    if (d0 < 0) return false;
    i++;
    const d1 = i < n ? hexDigit(s.charCodeAt(i)) : -1;
    if (d1 >= 0) {
      b[at + g] = (d0 << 4) | d1;
      i++;
    } else {
      b[at + g] = d0;
    }
  }
  return i === n;
}

/**
 * Dotted quad (four groups of one to three ASCII digits, each at most 255,
 * leading zeros allowed) into b[at..at+4), without regex or allocation. False
 * for any other text, and then b[at..at+4) may hold a partial write.
 */
export function writeIpv4Text(s: string, b: Uint8Array, at: number): boolean {
  let i = 0;
  const n = s.length;
  for (let g = 0; g < 4; g++) {
    if (g) {
      if (i >= n || s.charCodeAt(i) !== 46) return false;
      i++;
    }
    let v = 0;
    let digits = 0;
    while (i < n && digits < 4) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      digits++;
      i++;
    }
    if (digits === 0 || digits > 3 || v > 255) return false;
    b[at + g] = v;
  }
  return i === n;
}
