/**
 * UDP (RFC 768). The checksum covers a pseudo-header (IPv4: RFC 768; IPv6:
 * RFC 8200 §8.1), the header and the data. Over IPv4 a zero checksum means
 * "not computed" and counts as valid; over IPv6 it is mandatory, so zero is
 * invalid there. A computed checksum of 0 is sent as 0xffff.
 *
 * The length field is trusted only within the IP payload: longer is a
 * DecodeError, shorter trims the datagram to it.
 */
import { ByteWriter, type ByteReader } from "../util/bytes.js";
import { DecodeError } from "../util/errors.js";
import { finish, fold, sumBytes } from "./checksum.js";

export interface UdpSpec {
  srcPort: number;
  dstPort: number;
  /** Force this checksum (0 = none over IPv4) instead of computing it. */
  checksum?: number;
}

export interface Udp {
  srcPort: number;
  dstPort: number;
  length: number;
  checksum: number;
  checksumValid: boolean;
}

export const UDP_HEADER_LEN = 8;

export function decodeUdp(r: ByteReader, pseudo: number, v6: boolean): { udp: Udp; payload: ByteReader } {
  const start = r.offset;
  const srcPort = r.u16("source port");
  const dstPort = r.u16("destination port");
  const length = r.u16("length");
  const checksum = r.u16("checksum");
  if (length < UDP_HEADER_LEN || start + length > r.end) {
    throw new DecodeError(`udp: length ${length} outside 8..${r.end - start}`, {
      layer: "udp",
      field: "length",
    });
  }
  const payload = r.sub(length - UDP_HEADER_LEN, "udp payload");
  const checksumValid =
    checksum === 0 ? !v6 : fold(sumBytes(r.buf, start, start + length, pseudo + length)) === 0xffff;
  return { udp: { srcPort, dstPort, length, checksum, checksumValid }, payload };
}

/** `pseudo` is the pseudo-header sum WITHOUT the length (added here). */
export function encodeUdp(u: UdpSpec, payload: Buffer, pseudo: number): Buffer {
  const length = UDP_HEADER_LEN + payload.length;
  const w = new ByteWriter(length);
  w.u16(u.srcPort).u16(u.dstPort).u16(length).u16(0).bytes(payload);
  const out = w.finish();
  const ck = u.checksum ?? (finish(sumBytes(out, 0, out.length, pseudo + length)) || 0xffff);
  out.writeUInt16BE(ck, 6);
  return out;
}
