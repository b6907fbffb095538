/**
 * IPv6 Neighbor Discovery (RFC 4861) as a typed view over ICMPv6 types
 * 133–136: router solicitation / advertisement and neighbor solicitation /
 * advertisement, with their options. Options are declared once in
 * NDP_OPTIONS (RFC 4861 §4.6, the IANA NDP option type registry): link-layer
 * addresses, prefix information, MTU, and the DNS options of RFC 8106 —
 * Recursive DNS Server (RDNSS, 25) and DNS Search List (DNSSL, 31). Options
 * we do not model, and modelled ones whose length or body does not fit their
 * type (an RDNSS of even length, a DNSSL name running past its option), are
 * kept raw so a message re-encodes as it came.
 *
 * Addresses from MACs: `linkLocalFromMac` and `slaacAddress` put the
 * modified EUI-64 interface identifier (RFC 4291 §2.5.1 and appendix A: ff:fe
 * in the middle, the universal/local bit flipped) behind fe80::/64 or a /64
 * prefix, as a router port's link-local address and a SLAAC host's address
 * are formed (RFC 4862 §5.3, §5.5.3).
 *
 * The ICMPv6 `rest` word carries the first 32 bits of every NDP message
 * (reserved, or RA hop limit/flags/lifetime, or NA R/S/O flags), so
 * `ndpToIcmpv6` yields a plain IcmpSpec for buildFrame and `decodeNdp` reads
 * an Icmp the generic decoder produced.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToIpv6, bytesToMac, ipv6ToBytes, macToBytes } from "./addr.js";
import { ICMPV6_TYPE } from "./constants.js";
import { decodeDnsName, encodeDnsNames } from "./dns-name.js";
import type { Icmp, IcmpSpec } from "./icmp.js";

/**
 * NDP option types (RFC 4861 §4.6, RFC 8106 §5); `len` is the fixed length
 * in 8-byte units, or for variable options `minLen` the smallest.
 */
export const NDP_OPTIONS = [
  { code: 1, kind: "source-ll", len: 1 },
  { code: 2, kind: "target-ll", len: 1 },
  { code: 3, kind: "prefix-info", len: 4 },
  { code: 5, kind: "mtu", len: 1 },
  { code: 25, kind: "rdnss", minLen: 3 },
  { code: 31, kind: "dnssl", minLen: 2 },
] as const;

export type NdpOption =
  | { kind: "source-ll"; mac: string }
  | { kind: "target-ll"; mac: string }
  | {
      kind: "prefix-info";
      prefixLength: number;
      onLink: boolean;
      autonomous: boolean;
      validLifetime: number;
      preferredLifetime: number;
      prefix: string;
    }
  | { kind: "mtu"; mtu: number }
  /** RFC 8106 §5.1: recursive DNS servers, valid for `lifetime` seconds (0xffffffff: forever). */
  | { kind: "rdnss"; lifetime: number; servers: string[] }
  /** RFC 8106 §5.2: DNS search list, valid for `lifetime` seconds. */
  | { kind: "dnssl"; lifetime: number; domains: string[] }
  | { kind: "raw"; code: number; data: Buffer };

export type Ndp =
  | { kind: "router-solicitation"; options: NdpOption[] }
  | {
      kind: "router-advertisement";
      curHopLimit: number;
      managed: boolean;
      other: boolean;
      /** The flag bits other than M and O (H, Prf, Proxy…), as in the byte. */
      otherFlags: number;
      routerLifetime: number;
      reachableTime: number;
      retransTimer: number;
      options: NdpOption[];
    }
  | { kind: "neighbor-solicitation"; target: string; options: NdpOption[] }
  | {
      kind: "neighbor-advertisement";
      router: boolean;
      solicited: boolean;
      override: boolean;
      target: string;
      options: NdpOption[];
    };

type NdpOptionKind = (typeof NDP_OPTIONS)[number]["kind"];

const BY_CODE = new Map<number, (typeof NDP_OPTIONS)[number]>(NDP_OPTIONS.map((o) => [o.code, o]));
const CODE_OF: Record<string, number> = Object.fromEntries(NDP_OPTIONS.map((o) => [o.kind, o.code]));

function decodeOptions(r: ByteReader): NdpOption[] {
  const out: NdpOption[] = [];
  while (!r.atEnd()) {
    const code = r.u8("ndp option type");
    const len = r.u8("ndp option length");
    if (len === 0)
      throw new DecodeError("ndp: option with length 0", { layer: "ndp", field: "option length", code });
    const o = r.sub(len * 8 - 2, `ndp option ${code}`);
    const def = BY_CODE.get(code);
    const body = Buffer.from(o.buf.subarray(o.offset, o.end));
    const typed = def && fits(def, len) ? decodeTyped(def.kind, o, len) : undefined;
    out.push(typed ?? { kind: "raw", code, data: body });
  }
  return out;
}

function fits(def: (typeof NDP_OPTIONS)[number], len: number): boolean {
  if ("len" in def) return def.len === len;
  return len >= def.minLen && (def.kind !== "rdnss" || len % 2 === 1);
}

/** The typed option, or undefined when the body does not read as one (it is kept raw then). */
function decodeTyped(kind: NdpOptionKind, o: ByteReader, len: number): NdpOption | undefined {
  switch (kind) {
    case "source-ll":
    case "target-ll":
      return { kind, mac: bytesToMac(o.bytes(6, "link-layer address")) };
    case "mtu":
      o.skip(2, "reserved");
      return { kind: "mtu", mtu: o.u32("mtu") };
    case "prefix-info": {
      const prefixLength = o.u8("prefix length");
      const flags = o.u8("flags");
      const validLifetime = o.u32("valid lifetime");
      const preferredLifetime = o.u32("preferred lifetime");
      o.skip(4, "reserved2");
      return {
        kind: "prefix-info",
        prefixLength,
        onLink: (flags & 0x80) !== 0,
        autonomous: (flags & 0x40) !== 0,
        validLifetime,
        preferredLifetime,
        prefix: bytesToIpv6(o.bytes(16, "prefix")),
      };
    }
    case "rdnss": {
      o.skip(2, "reserved");
      const lifetime = o.u32("lifetime");
      const servers: string[] = [];
      for (let i = 0; i < (len - 1) / 2; i++) servers.push(bytesToIpv6(o.bytes(16, "dns server")));
      return { kind: "rdnss", lifetime, servers };
    }
    case "dnssl": {
      o.skip(2, "reserved");
      const lifetime = o.u32("lifetime");
      const domains: string[] = [];
      try {
        while (!o.atEnd() && o.buf[o.offset] !== 0) domains.push(decodeDnsName(o, "ndp dnssl"));
      } catch (e) {
        if (e instanceof DecodeError) return undefined;
        throw e;
      }
      // RFC 8106 §5.2: at least one name, then zero padding (less than 8 bytes) to the option's end.
      const pad = o.rest();
      if (domains.length === 0 || pad.length >= 8 || pad.some((b) => b !== 0)) return undefined;
      return { kind: "dnssl", lifetime, domains };
    }
  }
}

function encodeOptions(w: ByteWriter, options: readonly NdpOption[]): void {
  for (const o of options) {
    switch (o.kind) {
      case "source-ll":
      case "target-ll":
        w.u8(CODE_OF[o.kind]!).u8(1).bytes(macToBytes(o.mac));
        break;
      case "mtu":
        w.u8(CODE_OF.mtu!).u8(1).u16(0).u32(o.mtu);
        break;
      case "prefix-info":
        w.u8(CODE_OF["prefix-info"]!).u8(4).u8(o.prefixLength);
        w.u8((o.onLink ? 0x80 : 0) | (o.autonomous ? 0x40 : 0));
        w.u32(o.validLifetime).u32(o.preferredLifetime).u32(0).bytes(ipv6ToBytes(o.prefix));
        break;
      case "rdnss":
        if (o.servers.length === 0 || o.servers.length > 127) {
          throw new EncodeError("ndp: an RDNSS option holds 1 to 127 servers", { layer: "ndp" });
        }
        w.u8(CODE_OF.rdnss!)
          .u8(1 + 2 * o.servers.length)
          .u16(0)
          .u32(o.lifetime);
        for (const s of o.servers) w.bytes(ipv6ToBytes(s));
        break;
      case "dnssl": {
        if (o.domains.length === 0) {
          throw new EncodeError("ndp: a DNSSL option holds at least one domain", { layer: "ndp" });
        }
        const names = encodeDnsNames(o.domains);
        const units = Math.ceil((8 + names.length) / 8);
        if (units > 255) throw new EncodeError("ndp: DNSSL option longer than 2040 bytes", { layer: "ndp" });
        w.u8(CODE_OF.dnssl!).u8(units).u16(0).u32(o.lifetime).bytes(names);
        w.zeros(units * 8 - 8 - names.length);
        break;
      }
      case "raw": {
        if ((o.data.length + 2) % 8 !== 0 || o.data.length + 2 > 255 * 8) {
          throw new EncodeError(`ndp: raw option ${o.code} data must make an 8-byte multiple`, {
            layer: "ndp",
          });
        }
        w.u8(o.code)
          .u8((o.data.length + 2) / 8)
          .bytes(o.data);
      }
    }
  }
}

/** The NDP view of an ICMPv6 message, or undefined for other types. */
export function decodeNdp(icmp: Icmp): Ndp | undefined {
  const r = new ByteReader(icmp.body, 0, icmp.body.length, "ndp");
  switch (icmp.type) {
    case ICMPV6_TYPE.ROUTER_SOLICITATION:
      return { kind: "router-solicitation", options: decodeOptions(r) };
    case ICMPV6_TYPE.ROUTER_ADVERTISEMENT: {
      const flags = (icmp.rest >>> 16) & 0xff;
      const reachableTime = r.u32("reachable time");
      const retransTimer = r.u32("retrans timer");
      return {
        kind: "router-advertisement",
        curHopLimit: icmp.rest >>> 24,
        managed: (flags & 0x80) !== 0,
        other: (flags & 0x40) !== 0,
        otherFlags: flags & 0x3f,
        routerLifetime: icmp.rest & 0xffff,
        reachableTime,
        retransTimer,
        options: decodeOptions(r),
      };
    }
    case ICMPV6_TYPE.NEIGHBOR_SOLICITATION: {
      const target = bytesToIpv6(r.bytes(16, "target address"));
      return { kind: "neighbor-solicitation", target, options: decodeOptions(r) };
    }
    case ICMPV6_TYPE.NEIGHBOR_ADVERTISEMENT: {
      const target = bytesToIpv6(r.bytes(16, "target address"));
      return {
        kind: "neighbor-advertisement",
        router: (icmp.rest & 0x80000000) !== 0,
        solicited: (icmp.rest & 0x40000000) !== 0,
        override: (icmp.rest & 0x20000000) !== 0,
        target,
        options: decodeOptions(r),
      };
    }
    default:
      return undefined;
  }
}

export function ndpToIcmpv6(m: Ndp): IcmpSpec {
  const w = new ByteWriter(64);
  let type: number;
  let rest = 0;
  switch (m.kind) {
    case "router-solicitation":
      type = ICMPV6_TYPE.ROUTER_SOLICITATION;
      break;
    case "router-advertisement":
      type = ICMPV6_TYPE.ROUTER_ADVERTISEMENT;
      if (m.curHopLimit > 255 || m.routerLifetime > 0xffff || m.otherFlags > 0x3f) {
        throw new EncodeError("ndp: router advertisement field out of range", { layer: "ndp" });
      }
      rest =
        ((m.curHopLimit << 24) |
          (((m.managed ? 0x80 : 0) | (m.other ? 0x40 : 0) | m.otherFlags) << 16) |
          m.routerLifetime) >>>
        0;
      w.u32(m.reachableTime).u32(m.retransTimer);
      break;
    case "neighbor-solicitation":
      type = ICMPV6_TYPE.NEIGHBOR_SOLICITATION;
      w.bytes(ipv6ToBytes(m.target));
      break;
    case "neighbor-advertisement":
      type = ICMPV6_TYPE.NEIGHBOR_ADVERTISEMENT;
      rest =
        ((m.router ? 0x80000000 : 0) | (m.solicited ? 0x40000000 : 0) | (m.override ? 0x20000000 : 0)) >>> 0;
      w.bytes(ipv6ToBytes(m.target));
      break;
  }
  encodeOptions(w, m.options);
  return { type, code: 0, rest, body: w.finish() };
}

/** The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A), 8 bytes. */
export function eui64InterfaceId(mac: string): Buffer {
  const m = macToBytes(mac);
  return Buffer.from([m[0]! ^ 0x02, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!]);
}

/** `prefix` (its first 64 bits) followed by the modified EUI-64 of `mac`. */
export function slaacAddress(prefix: string, mac: string): string {
  const b = ipv6ToBytes(prefix);
  eui64InterfaceId(mac).copy(b, 8);
  return bytesToIpv6(b);
}

/** The fe80::/64 link-local address of an interface with this MAC. */
export function linkLocalFromMac(mac: string): string {
  return slaacAddress("fe80::", mac);
}
