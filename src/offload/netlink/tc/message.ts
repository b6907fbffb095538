/**
 * A tc message: struct tcmsg (linux/rtnetlink.h) followed by TCA_*
 * attributes. tcm_info packs a filter's priority (high 16 bits) and protocol
 * (low 16 bits, network byte order as a host u16 — htons(ETH_P_IP) = 0x0008
 * on little-endian hosts), which is why `protocol` below is the real
 * ethertype and the packing happens here and nowhere else.
 */
import { ByteReader, type ByteWriter } from "../../../util/bytes.js";
import type { AttrValues } from "../attrs.js";
import type { NlMsg } from "../framing.js";
import { TCMSG_SIZE, tcaAttrs } from "./schema.js";

export interface TcMsg {
  family: number;
  ifindex: number;
  handle: number;
  parent: number;
  info: number;
}

export interface TcMessage {
  type: number;
  flags: number;
  seq: number;
  tcm: TcMsg;
  attrs: AttrValues;
}

export function htons(v: number): number {
  return ((v & 0xff) << 8) | ((v >> 8) & 0xff);
}

export function packInfo(prio: number, protocol: number): number {
  return ((prio << 16) | htons(protocol)) >>> 0;
}

export function unpackInfo(info: number): { prio: number; protocol: number } {
  return { prio: info >>> 16, protocol: htons(info & 0xffff) };
}

export function writeTcmsg(w: ByteWriter, t: TcMsg): void {
  w.u8(t.family)
    .u8(0)
    .u16le(0)
    .i32le(t.ifindex)
    .u32le(t.handle >>> 0)
    .u32le(t.parent >>> 0)
    .u32le(t.info >>> 0);
}

export function readTcmsg(r: ByteReader): TcMsg {
  const family = r.u8("tcm_family");
  r.skip(3, "tcm pad");
  return {
    family,
    ifindex: r.i32le("tcm_ifindex"),
    handle: r.u32le("tcm_handle"),
    parent: r.u32le("tcm_parent"),
    info: r.u32le("tcm_info"),
  };
}

export function tcBody(tcm: TcMsg, attrs: AttrValues): (w: ByteWriter) => void {
  return (w) => {
    writeTcmsg(w, tcm);
    tcaAttrs.encode(w, attrs);
  };
}

export function decodeTcMessage(m: NlMsg): TcMessage {
  const r = new ByteReader(m.payload, 0, m.payload.length, "tcmsg");
  r.ensure(TCMSG_SIZE, "struct tcmsg");
  const tcm = readTcmsg(r);
  return { type: m.type, flags: m.flags, seq: m.seq, tcm, attrs: tcaAttrs.decode(r) };
}
