/**
 * IPv6 Neighbor Discovery (RFC 4861) as a typed view over ICMPv6 types
 * 133–136: router solicitation / advertisement and neighbor solicitation /
 * advertisement, with their options. Options are declared once in
 * NDP_OPTIONS (RFC 4861 §4.6, RFC 4861 option type registry); options we do
 * not model are kept raw so a message re-encodes as it came.
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
import type { Icmp, IcmpSpec } from "./icmp.js";

/** NDP option types (RFC 4861 §4.6); `len` is the fixed length in 8-byte units, if fixed. */
export const NDP_OPTIONS = [
  { code: 1, kind: "source-ll", len: 1 },
  { code: 2, kind: "target-ll", len: 1 },
  { code: 3, kind: "prefix-info", len: 4 },
  { code: 5, kind: "mtu", len: 1 },
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
    if (!def || def.len !== len) {
      out.push({ kind: "raw", code, data: Buffer.from(o.rest()) });
      continue;
    }
    switch (def.kind) {
      case "source-ll":
      case "target-ll":
        out.push({ kind: def.kind, mac: bytesToMac(o.bytes(6, "link-layer address")) });
        break;
      case "mtu":
        o.skip(2, "reserved");
        out.push({ kind: "mtu", mtu: o.u32("mtu") });
        break;
      case "prefix-info": {
        const prefixLength = o.u8("prefix length");
        const flags = o.u8("flags");
        const validLifetime = o.u32("valid lifetime");
        const preferredLifetime = o.u32("preferred lifetime");
        o.skip(4, "reserved2");
        out.push({
          kind: "prefix-info",
          prefixLength,
          onLink: (flags & 0x80) !== 0,
          autonomous: (flags & 0x40) !== 0,
          validLifetime,
          preferredLifetime,
          prefix: bytesToIpv6(o.bytes(16, "prefix")),
        });
        break;
      }
    }
  }
  return out;
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
