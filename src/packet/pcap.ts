/**
 * Classic libpcap files (the tcpdump format: 24-byte global header, 16-byte
 * record headers; microsecond or nanosecond magic, either byte order) with
 * LINKTYPE_ETHERNET. Used to exchange packets with tcpdump in tests and to
 * dump what an app saw when debugging. pcapng is not supported.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError } from "../util/errors.js";

export const LINKTYPE_ETHERNET = 1;
const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;

export interface PcapRecord {
  /** Capture time in microseconds since the epoch. */
  timeUs: number;
  /** Length on the wire (may exceed data.length when the capture was snapped). */
  origLen: number;
  data: Buffer;
}

export function writePcap(frames: readonly (Buffer | PcapRecord)[], snaplen = 262144): Buffer {
  const w = new ByteWriter(24 + frames.length * 128);
  w.u32(MAGIC_US).u16(2).u16(4).u32(0).u32(0).u32(snaplen).u32(LINKTYPE_ETHERNET);
  frames.forEach((f, i) => {
    const rec = Buffer.isBuffer(f) ? { timeUs: 1_700_000_000_000_000 + i, origLen: f.length, data: f } : f;
    w.u32(Math.floor(rec.timeUs / 1e6))
      .u32(rec.timeUs % 1e6)
      .u32(rec.data.length)
      .u32(rec.origLen);
    w.bytes(rec.data);
  });
  return w.finish();
}

export function readPcap(buf: Buffer): { linktype: number; records: PcapRecord[] } {
  const r = new ByteReader(buf, 0, buf.length, "pcap");
  const magicBE = r.u32("magic");
  let le: boolean;
  if (magicBE === MAGIC_US || magicBE === MAGIC_NS) le = false;
  else if (buf.readUInt32LE(0) === MAGIC_US || buf.readUInt32LE(0) === MAGIC_NS) le = true;
  else
    throw new DecodeError(`pcap: bad magic 0x${magicBE.toString(16)} (pcapng is not supported)`, {
      layer: "pcap",
    });
  const u32 = (f: string) => (le ? r.u32le(f) : r.u32(f));
  const nano = (le ? buf.readUInt32LE(0) : magicBE) === MAGIC_NS;
  r.skip(2 + 2 + 4 + 4, "version/thiszone/sigfigs");
  u32("snaplen");
  const linktype = u32("linktype");
  const records: PcapRecord[] = [];
  while (!r.atEnd()) {
    const sec = u32("ts_sec");
    const frac = u32("ts_frac");
    const incl = u32("incl_len");
    const origLen = u32("orig_len");
    const data = Buffer.from(r.bytes(incl, "packet data"));
    records.push({ timeUs: sec * 1e6 + (nano ? Math.floor(frac / 1000) : frac), origLen, data });
  }
  return { linktype, records };
}
