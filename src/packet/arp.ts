/**
 * ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses — the only
 * combination an Ethernet/IPv4 cloud network carries. Other hardware/protocol
 * pairs are rejected as unsupported rather than half-decoded.
 */
import type { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError } from "../util/errors.js";
import { bytesToIpv4, bytesToMac, ipv4ToBytes, macToBytes } from "./addr.js";
import { ETH_TYPE } from "./constants.js";

export const ARP_HTYPE_ETHERNET = 1;

export interface ArpSpec {
  /** ARP_OP.REQUEST (1) or ARP_OP.REPLY (2); other values pass through. */
  op: number;
  /** Sender hardware / protocol address, target hardware / protocol address. */
  sha: string;
  spa: string;
  tha: string;
  tpa: string;
}

export type Arp = ArpSpec;

export const ARP_LEN = 28;

export function decodeArp(r: ByteReader): Arp {
  const htype = r.u16("htype");
  const ptype = r.u16("ptype");
  const hlen = r.u8("hlen");
  const plen = r.u8("plen");
  if (htype !== ARP_HTYPE_ETHERNET || ptype !== ETH_TYPE.IPV4 || hlen !== 6 || plen !== 4) {
    throw new DecodeError(
      `arp: unsupported htype ${htype}/ptype 0x${ptype.toString(16)}/hlen ${hlen}/plen ${plen} (only Ethernet/IPv4)`,
      { layer: "arp", field: "htype", htype, ptype, hlen, plen },
    );
  }
  const op = r.u16("op");
  const sha = bytesToMac(r.bytes(6, "sha"));
  const spa = bytesToIpv4(r.bytes(4, "spa"));
  const tha = bytesToMac(r.bytes(6, "tha"));
  const tpa = bytesToIpv4(r.bytes(4, "tpa"));
  return { op, sha, spa, tha, tpa };
}

export function encodeArp(w: ByteWriter, a: ArpSpec): void {
  w.u16(ARP_HTYPE_ETHERNET).u16(ETH_TYPE.IPV4).u8(6).u8(4).u16(a.op);
  w.bytes(macToBytes(a.sha)).bytes(ipv4ToBytes(a.spa)).bytes(macToBytes(a.tha)).bytes(ipv4ToBytes(a.tpa));
}
