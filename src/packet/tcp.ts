/**
 * TCP header (RFC 9293 §3.1): ports, sequence and acknowledgment numbers,
 * data offset, control flags (declared once in TCP_FLAGS, with the ECN bits
 * of RFC 3168 and the historic NS bit of RFC 3540), window, checksum over the
 * IPv4/IPv6 pseudo-header, urgent pointer. Options are kept raw: flowdrake
 * forwards TCP, it does not terminate it.
 */
import { ByteWriter, type ByteReader } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { finish, fold, sumBytes } from "./checksum.js";

/** Control bits, as they sit in the 16-bit data-offset/flags word. */
export const TCP_FLAGS = {
  fin: 0x001,
  syn: 0x002,
  rst: 0x004,
  psh: 0x008,
  ack: 0x010,
  urg: 0x020,
  ece: 0x040,
  cwr: 0x080,
  ns: 0x100,
} as const;

export type TcpFlags = Record<keyof typeof TCP_FLAGS, boolean>;

export interface TcpSpec {
  srcPort: number;
  dstPort: number;
  seq?: number;
  ack?: number;
  flags?: Partial<TcpFlags>;
  window?: number;
  urgentPointer?: number;
  /** Raw options; zero-padded (End of Option List) to a 4-byte multiple. */
  options?: Buffer;
  checksum?: number;
}

export interface Tcp {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  dataOffset: number;
  flags: TcpFlags;
  window: number;
  checksum: number;
  checksumValid: boolean;
  urgentPointer: number;
  options: Buffer;
}

export const TCP_MIN_HEADER = 20;

export function decodeTcpFlags(bits: number): TcpFlags {
  const f = {} as TcpFlags;
  for (const [k, v] of Object.entries(TCP_FLAGS)) f[k as keyof TcpFlags] = (bits & v) !== 0;
  return f;
}

export function encodeTcpFlags(f: Partial<TcpFlags> = {}): number {
  let bits = 0;
  for (const [k, v] of Object.entries(TCP_FLAGS)) if (f[k as keyof TcpFlags]) bits |= v;
  return bits;
}

export function decodeTcp(r: ByteReader, pseudo: number): { tcp: Tcp; payload: ByteReader } {
  const start = r.offset;
  const segLen = r.remaining;
  const srcPort = r.u16("source port");
  const dstPort = r.u16("destination port");
  const seq = r.u32("sequence number");
  const ack = r.u32("acknowledgment number");
  const off = r.u16("data offset/flags");
  const window = r.u16("window");
  const checksum = r.u16("checksum");
  const urgentPointer = r.u16("urgent pointer");
  const dataOffset = off >> 12;
  if (dataOffset < 5) {
    throw new DecodeError(`tcp: data offset ${dataOffset} below 5`, { layer: "tcp", field: "data offset" });
  }
  const options = Buffer.from(r.bytes(dataOffset * 4 - TCP_MIN_HEADER, "options"));
  const checksumValid = fold(sumBytes(r.buf, start, start + segLen, pseudo + segLen)) === 0xffff;
  return {
    tcp: {
      srcPort,
      dstPort,
      seq,
      ack,
      dataOffset,
      flags: decodeTcpFlags(off & 0x1ff),
      window,
      checksum,
      checksumValid,
      urgentPointer,
      options,
    },
    payload: r,
  };
}

/** `pseudo` is the pseudo-header sum WITHOUT the length (added here). */
export function encodeTcp(t: TcpSpec, payload: Buffer, pseudo: number): Buffer {
  const opts = t.options ?? Buffer.alloc(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  if (optLen > 40) throw new EncodeError(`tcp: ${opts.length} option bytes, at most 40`, { layer: "tcp" });
  const hlen = TCP_MIN_HEADER + optLen;
  const w = new ByteWriter(hlen + payload.length);
  w.u16(t.srcPort)
    .u16(t.dstPort)
    .u32(t.seq ?? 0)
    .u32(t.ack ?? 0);
  w.u16(((hlen / 4) << 12) | encodeTcpFlags(t.flags));
  w.u16(t.window ?? 65535)
    .u16(0)
    .u16(t.urgentPointer ?? 0);
  w.bytes(opts)
    .zeros(optLen - opts.length)
    .bytes(payload);
  const out = w.finish();
  out.writeUInt16BE(t.checksum ?? finish(sumBytes(out, 0, out.length, pseudo + out.length)), 16);
  return out;
}
