/**
 * IPv4 header (RFC 791): version/IHL, DSCP/ECN (RFC 2474, RFC 3168), total
 * length, identification, flags (DF, MF) and fragment offset, TTL, protocol,
 * header checksum, addresses and raw options (kept as bytes; padded to a
 * 4-byte multiple with End-of-Option-List zeros when built).
 *
 * Decoding confines the payload to `totalLength` (Ethernet padding after it is
 * dropped) and refuses a total length or IHL that points outside the packet.
 * A fragment (MF set or offset non-zero) is flagged and its payload is left
 * raw: the upper-layer header is only whole in a reassembled datagram.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToIpv4, ipv4ToBytes } from "./addr.js";
import { internetChecksum, sumBytes, fold } from "./checksum.js";

export interface Ipv4Spec {
  src: string;
  dst: string;
  /** Filled from the upper layer when built by buildFrame. */
  protocol?: number;
  ttl?: number;
  dscp?: number;
  ecn?: number;
  identification?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** In 8-byte units, as on the wire. */
  fragmentOffset?: number;
  options?: Buffer;
  /** Force this header checksum instead of computing it (tests of bad packets). */
  checksum?: number;
}

export interface Ipv4 {
  version: 4;
  ihl: number;
  dscp: number;
  ecn: number;
  totalLength: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  fragmentOffset: number;
  /** MF set or a non-zero offset: the payload is a piece of a larger datagram. */
  isFragment: boolean;
  ttl: number;
  protocol: number;
  checksum: number;
  checksumValid: boolean;
  src: string;
  dst: string;
  options: Buffer;
}

export const IPV4_MIN_HEADER = 20;

/** Decode the header; returns it with a reader confined to the payload. */
export function decodeIpv4(r: ByteReader): { ipv4: Ipv4; payload: ByteReader } {
  const start = r.offset;
  const vihl = r.u8("version/ihl");
  if (vihl >> 4 !== 4) {
    throw new DecodeError(`ipv4: version ${vihl >> 4}, expected 4`, { layer: "ipv4", field: "version" });
  }
  const ihl = vihl & 0x0f;
  if (ihl < 5) throw new DecodeError(`ipv4: IHL ${ihl} below 5`, { layer: "ipv4", field: "ihl" });
  const tos = r.u8("tos");
  const totalLength = r.u16("total length");
  if (totalLength < ihl * 4) {
    throw new DecodeError(`ipv4: total length ${totalLength} shorter than header ${ihl * 4}`, {
      layer: "ipv4",
      field: "total length",
    });
  }
  if (start + totalLength > r.end) {
    throw new DecodeError(`ipv4: total length ${totalLength} exceeds the ${r.end - start} bytes present`, {
      layer: "ipv4",
      field: "total length",
    });
  }
  const identification = r.u16("identification");
  const ff = r.u16("flags/fragment offset");
  const ttl = r.u8("ttl");
  const protocol = r.u8("protocol");
  const checksum = r.u16("header checksum");
  const src = bytesToIpv4(r.bytes(4, "source address"));
  const dst = bytesToIpv4(r.bytes(4, "destination address"));
  const options = Buffer.from(r.bytes(ihl * 4 - IPV4_MIN_HEADER, "options"));
  const checksumValid = fold(sumBytes(r.buf, start, start + ihl * 4)) === 0xffff;
  const fragmentOffset = ff & 0x1fff;
  const moreFragments = (ff & 0x2000) !== 0;
  const payloadLen = totalLength - ihl * 4;
  const payload = new ByteReader(r.buf, r.offset, r.offset + payloadLen, "ipv4 payload");
  r.skip(r.remaining, "ipv4 trailer");
  return {
    ipv4: {
      version: 4,
      ihl,
      dscp: tos >> 2,
      ecn: tos & 3,
      totalLength,
      identification,
      dontFragment: (ff & 0x4000) !== 0,
      moreFragments,
      fragmentOffset,
      isFragment: moreFragments || fragmentOffset !== 0,
      ttl,
      protocol,
      checksum,
      checksumValid,
      src,
      dst,
      options,
    },
    payload,
  };
}

/** The header, checksum filled, for a payload of `payloadLength` bytes. */
export function encodeIpv4(h: Ipv4Spec, protocol: number, payloadLength: number): Buffer {
  const opts = h.options ?? Buffer.alloc(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  if (optLen > 40) throw new EncodeError(`ipv4: ${opts.length} option bytes, at most 40`, { layer: "ipv4" });
  const hlen = IPV4_MIN_HEADER + optLen;
  const w = new ByteWriter(hlen);
  const dscp = h.dscp ?? 0;
  const ecn = h.ecn ?? 0;
  if (dscp > 63 || ecn > 3)
    throw new EncodeError(`ipv4: dscp ${dscp}/ecn ${ecn} out of range`, { layer: "ipv4" });
  const fo = h.fragmentOffset ?? 0;
  if (fo > 0x1fff) throw new EncodeError(`ipv4: fragment offset ${fo} out of range`, { layer: "ipv4" });
  if (hlen + payloadLength > 0xffff) {
    throw new EncodeError(`ipv4: datagram of ${hlen + payloadLength} bytes exceeds 65535`, { layer: "ipv4" });
  }
  w.u8(0x40 | (hlen / 4)).u8((dscp << 2) | ecn);
  w.u16(hlen + payloadLength).u16(h.identification ?? 0);
  w.u16((h.dontFragment ? 0x4000 : 0) | (h.moreFragments ? 0x2000 : 0) | fo);
  w.u8(h.ttl ?? 64).u8(protocol);
  const ck = w.reserve(2);
  w.bytes(ipv4ToBytes(h.src))
    .bytes(ipv4ToBytes(h.dst))
    .bytes(opts)
    .zeros(optLen - opts.length);
  const hdr = w.finish();
  hdr.writeUInt16BE(h.checksum ?? internetChecksum(hdr), ck);
  return hdr;
}
