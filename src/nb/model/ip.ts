/**
 * IP and CIDR arithmetic for the NB model (IPv4 and IPv6), on top of
 * ipaddr.js: parsing is strict (four-part decimal IPv4, no zone ids), text
 * is canonical (RFC 5952 for IPv6), and addresses become bigints so IPAM can
 * walk allocation pools of any size.
 */
import ipaddr from "ipaddr.js";
import { dottedIpv4 } from "../../packet/addr.js";

export type IpVersion = 4 | 6;

export interface Cidr {
  version: IpVersion;
  /** The address as written (may have host bits set). */
  addr: bigint;
  prefix: number;
  /** First and last address of the block. */
  first: bigint;
  last: bigint;
}

const bitsOf = (v: IpVersion): number => (v === 4 ? 32 : 128);

export function isIp(s: string): boolean {
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) return true;
  return s.includes(":") && !s.includes("%") && ipaddr.IPv6.isValid(s);
}

export function ipVersion(s: string): IpVersion {
  return s.includes(":") ? 6 : 4;
}

export function isCidr(s: string): boolean {
  const slash = s.indexOf("/");
  if (slash < 0) return false;
  const prefix = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix)) return false;
  const ip = s.slice(0, slash);
  return isIp(ip) && Number(prefix) <= bitsOf(ipVersion(ip));
}

/** Dotted decimal without leading zeros (which ipaddr.js would read as octal): read by hand. */
const PLAIN_IPV4 = /^(?:0|[1-9]\d{0,2})(?:\.(?:0|[1-9]\d{0,2})){3}$/;

export function ipToBig(s: string): bigint {
  if (PLAIN_IPV4.test(s)) {
    const n = dottedIpv4(s);
    if (n !== undefined) return BigInt(n);
    // a group above 255: ipaddr.js says why
  }
  let n = 0n;
  for (const b of ipaddr.parse(s).toByteArray()) n = (n << 8n) | BigInt(b);
  return n;
}

export function bigToIp(n: bigint, version: IpVersion): string {
  const bytes: number[] = [];
  for (let i = 0; i < (version === 4 ? 4 : 16); i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  const a = ipaddr.fromByteArray(bytes);
  return a.kind() === "ipv6" ? (a as ipaddr.IPv6).toRFC5952String() : a.toString();
}

export function canonicalIp(s: string): string {
  return bigToIp(ipToBig(s), ipVersion(s));
}

export function parseCidr(s: string): Cidr {
  const [ip, p] = s.split("/") as [string, string];
  const version = ipVersion(ip);
  const prefix = Number(p);
  const bits = BigInt(bitsOf(version));
  const addr = ipToBig(ip);
  const size = 1n << (bits - BigInt(prefix));
  const first = (addr / size) * size;
  return { version, addr, prefix, first, last: first + size - 1n };
}

export function canonicalCidr(s: string): string {
  const c = parseCidr(s);
  return `${bigToIp(c.first, c.version)}/${c.prefix}`;
}

/** True when the CIDR has no host bits set (10.0.0.0/24, not 10.0.0.1/24). */
export function isNetworkCidr(s: string): boolean {
  const c = parseCidr(s);
  return c.addr === c.first;
}

/**
 * Parsed CIDRs by text, for the reads that ask of the same few prefixes for
 * every packet (a router's interfaces); bounded, since the texts come from
 * the NB. The entries are shared: callers of cidrContains never see them.
 */
const parsedCidrs = new Map<string, Cidr>();
const PARSED_CIDRS_MAX = 4096;

function cachedCidr(s: string): Cidr {
  let c = parsedCidrs.get(s);
  if (!c) {
    c = parseCidr(s);
    if (parsedCidrs.size >= PARSED_CIDRS_MAX) parsedCidrs.clear();
    parsedCidrs.set(s, c);
  }
  return c;
}

/** The prefix length of a CIDR text (memoised like cidrContains's parse). */
export function cidrPrefix(s: string): number {
  return cachedCidr(s).prefix;
}

export function cidrContains(cidr: string | Cidr, ip: string): boolean {
  const c = typeof cidr === "string" ? cachedCidr(cidr) : cidr;
  if (ipVersion(ip) !== c.version) return false;
  const n = ipToBig(ip);
  return n >= c.first && n <= c.last;
}

export function cidrsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return x.version === y.version && x.first <= y.last && y.first <= x.last;
}

/** Usable host range: IPv4 excludes network and broadcast (except /31, /32); IPv6 excludes the subnet-router anycast address. */
export function hostRange(cidr: string): { first: bigint; last: bigint } {
  const c = parseCidr(cidr);
  if (c.version === 4) {
    if (c.prefix >= 31) return { first: c.first, last: c.last };
    return { first: c.first + 1n, last: c.last - 1n };
  }
  if (c.prefix >= 127) return { first: c.first, last: c.last };
  return { first: c.first + 1n, last: c.last };
}
