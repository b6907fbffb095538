/**
 * IPv6 header (RFC 8200 §3) and the extension-header chain the library walks
 * (RFC 8200 §4): hop-by-hop options (0), routing (43), fragment (44) and
 * destination options (60). Anything else ends the chain and is the
 * upper-layer `protocol` (TCP, UDP, ICMPv6, No Next Header, or unknown).
 *
 * Options inside hop-by-hop / destination-options headers are listed as TLVs
 * with Pad1/PadN removed; the builder re-pads each header to its 8-byte
 * multiple with PadN. A routing header keeps its type-specific data raw. A
 * fragment header marks the packet as a fragment unless it is an atomic one
 * (offset 0, M clear, RFC 6946); the upper layer of a real fragment stays raw.
 *
 * `payloadLength` confines everything that follows: an extension header or
 * option whose length points past it is a DecodeError. Jumbograms (payload
 * length 0 with a Jumbo Payload option) are not supported.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToIpv6, ipv6ToBytes } from "./addr.js";
import { IP_PROTO } from "./constants.js";

export interface Ipv6Option {
  type: number;
  data: Buffer;
}

export type Ipv6Extension =
  | { kind: "hop-by-hop"; options: Ipv6Option[] }
  | { kind: "destination-options"; options: Ipv6Option[] }
  | { kind: "routing"; routingType: number; segmentsLeft: number; data: Buffer }
  | { kind: "fragment"; fragmentOffset: number; moreFragments: boolean; identification: number };

export interface Ipv6Spec {
  src: string;
  dst: string;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  extensions?: Ipv6Extension[];
  /** Upper-layer protocol; filled from the upper layer when built by buildFrame. */
  protocol?: number;
}

export interface Ipv6 {
  version: 6;
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  /** Next Header of the fixed header (the first extension, or the upper layer). */
  nextHeader: number;
  hopLimit: number;
  src: string;
  dst: string;
  extensions: Ipv6Extension[];
  /** The upper-layer protocol after the extension chain. */
  protocol: number;
  /** A fragment header with a non-zero offset or M set. */
  isFragment: boolean;
}

export const IPV6_HEADER_LEN = 40;
const MAX_EXTENSIONS = 16;

const EXT_KIND: ReadonlyMap<number, Ipv6Extension["kind"]> = new Map([
  [IP_PROTO.HOPOPT, "hop-by-hop"],
  [IP_PROTO.IPV6_ROUTE, "routing"],
  [IP_PROTO.IPV6_FRAG, "fragment"],
  [IP_PROTO.IPV6_OPTS, "destination-options"],
]);
const EXT_CODE: Record<Ipv6Extension["kind"], number> = {
  "hop-by-hop": IP_PROTO.HOPOPT,
  routing: IP_PROTO.IPV6_ROUTE,
  fragment: IP_PROTO.IPV6_FRAG,
  "destination-options": IP_PROTO.IPV6_OPTS,
};

const PAD1 = 0;
const PADN = 1;

function decodeOptions(r: ByteReader): Ipv6Option[] {
  const out: Ipv6Option[] = [];
  while (!r.atEnd()) {
    const type = r.u8("option type");
    if (type === PAD1) continue;
    const len = r.u8("option length");
    const data = r.bytes(len, "option data");
    if (type !== PADN) out.push({ type, data: Buffer.from(data) });
  }
  return out;
}

export function decodeIpv6(r: ByteReader): { ipv6: Ipv6; payload: ByteReader } {
  const w0 = r.u32("version/class/flow");
  if (w0 >>> 28 !== 6) {
    throw new DecodeError(`ipv6: version ${w0 >>> 28}, expected 6`, { layer: "ipv6", field: "version" });
  }
  const payloadLength = r.u16("payload length");
  const nextHeader = r.u8("next header");
  const hopLimit = r.u8("hop limit");
  const src = bytesToIpv6(r.bytes(16, "source address"));
  const dst = bytesToIpv6(r.bytes(16, "destination address"));
  if (payloadLength > r.remaining) {
    throw new DecodeError(`ipv6: payload length ${payloadLength} exceeds the ${r.remaining} bytes present`, {
      layer: "ipv6",
      field: "payload length",
    });
  }
  const body = r.sub(payloadLength, "ipv6 payload");
  r.skip(r.remaining, "ipv6 trailer");
  const extensions: Ipv6Extension[] = [];
  let next = nextHeader;
  let isFragment = false;
  for (let kind = EXT_KIND.get(next); kind !== undefined; kind = EXT_KIND.get(next)) {
    if (extensions.length === MAX_EXTENSIONS) {
      throw new DecodeError(`ipv6: more than ${MAX_EXTENSIONS} extension headers`, { layer: "ipv6" });
    }
    if (kind === "hop-by-hop" && extensions.length > 0) {
      throw new DecodeError("ipv6: hop-by-hop header not first", { layer: "ipv6", field: "next header" });
    }
    const nh = body.u8(`${kind} next header`);
    if (kind === "fragment") {
      body.u8("fragment reserved");
      const off = body.u16("fragment offset");
      const identification = body.u32("fragment identification");
      const ext = { kind, fragmentOffset: off >> 3, moreFragments: (off & 1) !== 0, identification } as const;
      extensions.push(ext);
      if (ext.fragmentOffset !== 0 || ext.moreFragments) isFragment = true;
    } else {
      const len = 8 * (body.u8(`${kind} length`) + 1) - 2;
      const h = body.sub(len, `ipv6 ${kind} header`);
      if (kind === "routing") {
        const routingType = h.u8("routing type");
        const segmentsLeft = h.u8("segments left");
        extensions.push({ kind, routingType, segmentsLeft, data: Buffer.from(h.rest()) });
      } else {
        extensions.push({ kind, options: decodeOptions(h) });
      }
    }
    next = nh;
    if (isFragment) break;
  }
  return {
    ipv6: {
      version: 6,
      trafficClass: (w0 >>> 20) & 0xff,
      flowLabel: w0 & 0xfffff,
      payloadLength,
      nextHeader,
      hopLimit,
      src,
      dst,
      extensions,
      protocol: next,
      isFragment,
    },
    payload: body,
  };
}

function encodeExtension(w: ByteWriter, e: Ipv6Extension, nh: number): void {
  w.u8(nh);
  switch (e.kind) {
    case "fragment":
      if (e.fragmentOffset > 0x1fff)
        throw new EncodeError("ipv6: fragment offset out of range", { layer: "ipv6" });
      w.u8(0)
        .u16((e.fragmentOffset << 3) | (e.moreFragments ? 1 : 0))
        .u32(e.identification);
      return;
    case "routing": {
      const len = 4 + e.data.length;
      if (len % 8 !== 0 || len > 2048) {
        throw new EncodeError(
          `ipv6: routing data of ${e.data.length} bytes does not make an 8-byte multiple`,
          {
            layer: "ipv6",
          },
        );
      }
      w.u8(len / 8 - 1)
        .u8(e.routingType)
        .u8(e.segmentsLeft)
        .bytes(e.data);
      return;
    }
    default: {
      const o = new ByteWriter(64);
      for (const opt of e.options) {
        if (opt.type === PAD1 || opt.type === PADN) continue;
        o.u8(opt.type).u8(opt.data.length).bytes(opt.data);
      }
      const pad = (8 - ((2 + o.length) % 8)) % 8;
      if (pad === 1) o.u8(PAD1);
      else if (pad > 1)
        o.u8(PADN)
          .u8(pad - 2)
          .zeros(pad - 2);
      const total = 2 + o.length;
      if (total > 2048)
        throw new EncodeError("ipv6: options header longer than 2048 bytes", { layer: "ipv6" });
      w.u8(total / 8 - 1).bytes(o.finish());
    }
  }
}

/** The fixed header and the extension chain, for an upper-layer payload of `upperLength` bytes. */
export function encodeIpv6(h: Ipv6Spec, protocol: number, upperLength: number): Buffer {
  const exts = h.extensions ?? [];
  const ew = new ByteWriter(64);
  exts.forEach((e, i) =>
    encodeExtension(ew, e, i + 1 < exts.length ? EXT_CODE[exts[i + 1]!.kind] : protocol),
  );
  const payloadLength = ew.length + upperLength;
  if (payloadLength > 0xffff)
    throw new EncodeError(`ipv6: payload of ${payloadLength} bytes exceeds 65535`, {});
  const tc = h.trafficClass ?? 0;
  const fl = h.flowLabel ?? 0;
  if (tc > 0xff || fl > 0xfffff) throw new EncodeError("ipv6: traffic class or flow label out of range", {});
  const w = new ByteWriter(IPV6_HEADER_LEN + ew.length);
  w.u32(((6 << 28) | (tc << 20) | fl) >>> 0).u16(payloadLength);
  w.u8(exts.length > 0 ? EXT_CODE[exts[0]!.kind] : protocol).u8(h.hopLimit ?? 64);
  w.bytes(ipv6ToBytes(h.src)).bytes(ipv6ToBytes(h.dst)).bytes(ew.finish());
  return w.finish();
}

/** Reader over a plain buffer, for callers holding only the IPv6 packet. */
export function parseIpv6(buf: Buffer): { ipv6: Ipv6; payload: Buffer } {
  const { ipv6, payload } = decodeIpv6(new ByteReader(buf, 0, buf.length, "ipv6"));
  return { ipv6, payload: payload.rest() };
}
