/**
 * Ethernet II (IEEE 802.3 frame with an EtherType) and IEEE 802.1Q VLAN tags,
 * single C-tag or stacked 802.1ad QinQ (S-tag 0x88a8, also the pre-standard
 * 0x9100). A tag is TPID(16) | PCP(3) DEI(1) VID(12); tags are listed outer
 * first and `ethertype` is the type after the last tag — the one that says
 * what the payload is. The FCS is not part of what we parse or build (OVS,
 * tcpdump and packet-in all hand over frames without it).
 */
import type { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToMac, macToBytes } from "./addr.js";
import { ETH_TYPE } from "./constants.js";

export interface EthernetHeader {
  dst: string;
  src: string;
  /** The EtherType after any VLAN tags (values below 0x0600 are 802.3 lengths). */
  ethertype: number;
}

export interface VlanTag {
  tpid: number;
  pcp: number;
  dei: boolean;
  vid: number;
}

export interface VlanSpec {
  vid: number;
  pcp?: number;
  dei?: boolean;
  /** Default: 0x8100 for the innermost tag, 0x88a8 for outer ones. */
  tpid?: number;
}

export const ETH_HEADER_LEN = 14;
const MAX_TAGS = 8;

function isTagTpid(t: number): boolean {
  return t === ETH_TYPE.VLAN || t === ETH_TYPE.QINQ || t === ETH_TYPE.QINQ_LEGACY;
}

export function decodeEthernet(r: ByteReader): { eth: EthernetHeader; vlans: VlanTag[] } {
  const dst = bytesToMac(r.bytes(6, "destination MAC"));
  const src = bytesToMac(r.bytes(6, "source MAC"));
  let type = r.u16("ethertype");
  const vlans: VlanTag[] = [];
  while (isTagTpid(type)) {
    if (vlans.length === MAX_TAGS) {
      throw new DecodeError(`vlan: more than ${MAX_TAGS} stacked tags`, { layer: "vlan", field: "tpid" });
    }
    const tci = r.u16("vlan TCI");
    vlans.push({ tpid: type, pcp: tci >> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff });
    type = r.u16("vlan inner ethertype");
  }
  return { eth: { dst, src, ethertype: type }, vlans };
}

export function encodeEthernet(
  w: ByteWriter,
  eth: { dst: string; src: string },
  vlans: readonly VlanSpec[],
  ethertype: number,
): void {
  w.bytes(macToBytes(eth.dst)).bytes(macToBytes(eth.src));
  vlans.forEach((v, i) => {
    const pcp = v.pcp ?? 0;
    if (!Number.isInteger(v.vid) || v.vid < 0 || v.vid > 0xfff) {
      throw new EncodeError(`vlan: VID ${v.vid} out of range 0..4095`, { layer: "vlan", field: "vid" });
    }
    if (!Number.isInteger(pcp) || pcp < 0 || pcp > 7) {
      throw new EncodeError(`vlan: PCP ${pcp} out of range 0..7`, { layer: "vlan", field: "pcp" });
    }
    const tpid = v.tpid ?? (i === vlans.length - 1 ? ETH_TYPE.VLAN : ETH_TYPE.QINQ);
    w.u16(tpid).u16((pcp << 13) | (v.dei ? 0x1000 : 0) | v.vid);
  });
  w.u16(ethertype);
}
