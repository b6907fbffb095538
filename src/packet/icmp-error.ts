/**
 * ICMP and ICMPv6 error messages a router sends about a packet it could not
 * forward (RFC 792, RFC 4443, RFC 1812 §4.3.2.3): time exceeded (TTL or hop
 * limit ran out) and destination unreachable (no route; no such host on a
 * connected subnet). The body carries the invoking packet — for IPv4 its
 * header and the first 8 bytes of its payload, as RFC 792 asks (what
 * traceroute reads its probe back from); for IPv6 as much of it as keeps the
 * error within the minimum MTU of 1280 bytes (RFC 4443 §2.4 c).
 *
 * The error goes back to the sender, from the router interface's MAC and IP
 * on the sender's network. An error is never sent about an ICMP error, nor
 * about a packet to a multicast or broadcast address (RFC 1812 §4.3.2.7).
 */
import { buildFrame, type Frame } from "./frame.js";
import { ICMP_TYPE, ICMPV6_TYPE } from "./constants.js";

export type IcmpErrorKind = "ttl-exceeded" | "no-route" | "host-unreachable";

const V4: Record<IcmpErrorKind, [number, number]> = {
  "ttl-exceeded": [ICMP_TYPE.TIME_EXCEEDED, 0],
  "no-route": [ICMP_TYPE.DEST_UNREACHABLE, 0],
  "host-unreachable": [ICMP_TYPE.DEST_UNREACHABLE, 1],
};

const V6: Record<IcmpErrorKind, [number, number]> = {
  "ttl-exceeded": [ICMPV6_TYPE.TIME_EXCEEDED, 0],
  "no-route": [ICMPV6_TYPE.DEST_UNREACHABLE, 0],
  "host-unreachable": [ICMPV6_TYPE.DEST_UNREACHABLE, 3],
};

export interface IcmpErrorArgs {
  /** The invoking frame, as received. */
  frame: Buffer;
  parsed: Frame;
  kind: IcmpErrorKind;
  /** The router interface on the sender's network. */
  routerMac: string;
  routerIp: string;
}

/** ICMPv4 error types (unreachable, source quench, redirect, time exceeded, parameter problem). */
const V4_ERRORS: readonly number[] = [3, 4, 5, 11, 12];

const unicastMac = (mac: string): boolean => (parseInt(mac.slice(0, 2), 16) & 1) === 0;

/** Whether a router may answer this packet with an ICMP error. */
export function mayAnswerWithError(f: Frame): boolean {
  if (!unicastMac(f.eth.dst)) return false;
  if (f.ipv4) {
    if (f.icmp && V4_ERRORS.includes(f.icmp.type)) return false;
    return Number(f.ipv4.dst.split(".")[0]) < 224 && f.ipv4.dst !== "255.255.255.255";
  }
  if (f.ipv6) {
    if (f.icmpv6 && f.icmpv6.type < 128) return false;
    return !f.ipv6.dst.toLowerCase().startsWith("ff");
  }
  return false;
}

/** The error frame, or undefined when none may be sent about this packet. */
export function buildIcmpError(a: IcmpErrorArgs): Buffer | undefined {
  const f = a.parsed;
  if (!mayAnswerWithError(f)) return undefined;
  const l3 = 14 + 4 * f.vlans.length;
  const vlans = f.vlans.map((v) => ({ vid: v.vid, pcp: v.pcp }));
  if (f.ipv4) {
    const ihl = (a.frame[l3]! & 0x0f) * 4;
    const body = a.frame.subarray(l3, Math.min(a.frame.length, l3 + ihl + 8));
    const [type, code] = V4[a.kind];
    return buildFrame({
      eth: { src: a.routerMac, dst: f.eth.src },
      vlans,
      ipv4: { src: a.routerIp, dst: f.ipv4.src, ttl: 64 },
      icmp: { type, code, rest: 0, body: Buffer.from(body) },
    });
  }
  const ip6 = f.ipv6!;
  // 1280 - 40 (IPv6) - 8 (ICMPv6 header)
  const body = a.frame.subarray(l3, Math.min(a.frame.length, l3 + 1232));
  const [type, code] = V6[a.kind];
  return buildFrame({
    eth: { src: a.routerMac, dst: f.eth.src },
    vlans,
    ipv6: { src: a.routerIp, dst: ip6.src, hopLimit: 64 },
    icmpv6: { type, code, rest: 0, body: Buffer.from(body) },
  });
}
