/**
 * Layer 2: netlink message framing (linux/netlink.h), independent of any
 * family. A message is a 16-byte nlmsghdr in host byte order (little-endian
 * on every machine flowdrake targets) followed by a family payload, padded to
 * 4 bytes; one datagram may carry many messages (a batch, a dump chunk).
 *
 * Error answers (NLMSG_ERROR) carry a negative errno, the header of the
 * request they answer (its payload too unless NLM_F_CAPPED), and with
 * NETLINK_EXT_ACK a TLV list (NLM_F_ACK_TLVS) with the kernel's message and
 * the offset of the offending attribute. `decodeNlmsgerr` turns that into the
 * pieces NetlinkError needs. Every decoder here throws DecodeError only.
 */
import { ByteReader, ByteWriter } from "../../util/bytes.js";
import { DecodeError } from "../../util/errors.js";
import type { ExtAck } from "./errors.js";

export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

/** nlmsg_flags (linux/netlink.h). */
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
// Modifiers to GET requests.
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
// Modifiers to NEW requests.
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
// Flags of NLMSG_ERROR answers.
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

/** enum nlmsgerr_attrs (linux/netlink.h, 6.x). */
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;
export const NLMSGERR_ATTR_COOKIE = 3;
export const NLMSGERR_ATTR_POLICY = 4;
export const NLMSGERR_ATTR_MISS_TYPE = 5;

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

export interface NlHeader {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

/** Append one message; `body` writes the payload. Returns the message's offset. */
export function writeNlmsg(
  w: ByteWriter,
  hdr: { type: number; flags: number; seq: number; pid?: number },
  body: (w: ByteWriter) => void,
): number {
  const start = w.length;
  w.u32le(0)
    .u16le(hdr.type)
    .u16le(hdr.flags)
    .u32le(hdr.seq)
    .u32le(hdr.pid ?? 0);
  body(w);
  w.setU32le(start, w.length - start);
  w.padTo(4, start);
  return start;
}

export function encodeNlmsg(
  hdr: { type: number; flags: number; seq: number; pid?: number },
  body: (w: ByteWriter) => void,
): Buffer {
  const w = new ByteWriter(256);
  writeNlmsg(w, hdr, body);
  return w.finish();
}

export function readNlHeader(r: ByteReader): NlHeader {
  return {
    len: r.u32le("nlmsg_len"),
    type: r.u16le("nlmsg_type"),
    flags: r.u16le("nlmsg_flags"),
    seq: r.u32le("nlmsg_seq"),
    pid: r.u32le("nlmsg_pid"),
  };
}

/** Split a datagram into messages. */
export function decodeNlmsgs(buf: Buffer): NlMsg[] {
  const out: NlMsg[] = [];
  const r = new ByteReader(buf, 0, buf.length, "netlink datagram");
  while (r.remaining >= NLMSG_HDRLEN) {
    const at = r.offset;
    const h = readNlHeader(r);
    if (h.len < NLMSG_HDRLEN) {
      throw new DecodeError(`netlink message at ${at}: nlmsg_len ${h.len} shorter than its header`, {
        offset: at,
        len: h.len,
      });
    }
    const payload = r.bytes(h.len - NLMSG_HDRLEN, "nlmsg payload");
    out.push({ type: h.type, flags: h.flags, seq: h.seq, pid: h.pid, payload });
    r.alignTo(4);
  }
  if (r.remaining !== 0) {
    throw new DecodeError(`netlink datagram: ${r.remaining} trailing bytes, too short for a header`);
  }
  return out;
}

export interface NlmsgErr {
  /** Positive errno, 0 for a plain ack. */
  errno: number;
  request: NlHeader;
  extack: ExtAck;
}

export function decodeNlmsgerr(msg: NlMsg): NlmsgErr {
  const r = new ByteReader(msg.payload, 0, msg.payload.length, "nlmsgerr");
  const error = r.i32le("error");
  const request = readNlHeader(r);
  if (!(msg.flags & NLM_F_CAPPED) && request.len > NLMSG_HDRLEN) {
    r.skip(Math.min(r.remaining, request.len - NLMSG_HDRLEN), "echoed request payload");
    r.alignTo(4);
  }
  const extack: ExtAck = {};
  if (msg.flags & NLM_F_ACK_TLVS) {
    while (r.remaining >= 4) {
      const len = r.u16le("nla_len");
      const type = r.u16le("nla_type") & 0x3fff;
      if (len < 4) throw new DecodeError(`nlmsgerr TLV: nla_len ${len} < 4`);
      const v = r.sub(len - 4, "nlmsgerr TLV");
      r.alignTo(4);
      if (type === NLMSGERR_ATTR_MSG) extack.msg = v.rest().toString("utf8").replace(/\0+$/, "");
      else if (type === NLMSGERR_ATTR_OFFS && v.remaining >= 4) extack.offset = v.u32le("offset");
      else if (type === NLMSGERR_ATTR_MISS_TYPE && v.remaining >= 4)
        extack.missingType = v.u32le("miss type");
    }
  }
  return { errno: -error, request, extack };
}
