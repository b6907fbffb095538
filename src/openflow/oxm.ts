/**
 * OXM match fields: the OpenFlow 1.3 basic class (OFPXMC_OPENFLOW_BASIC,
 * spec §7.2.3.7) and the Nicira/Open vSwitch classes (NXM_OF = 0x0000,
 * NXM_NX = 0x0001, OXM_OF_PKT_REGS = 0x8001, experimenter class 0xffff with an
 * experimenter id), as described in ovs-fields(7).
 *
 * Every field is declared ONCE in FIELDS: its ovs-fields name, the wire
 * identity OVS sends on OpenFlow 1.3 (first entry of `wire`) plus older
 * identities we also accept on decode, its width, whether it may be masked,
 * the text format, and the prerequisite it needs (documented; checked by
 * `checkPrerequisites`). Encoders, decoders, the text form (text.ts) and the
 * NXM names used by move/load (`NXM_NX_REG0[0..3]`) all derive from it.
 *
 * Values are typed by format: integers up to 32 bits are numbers, wider ones
 * bigints, MAC/IPv4/IPv6 addresses canonical strings, and the variable-width
 * tunnel metadata a Buffer.
 */
import ipaddr from "ipaddr.js";
import { dottedIpv4 } from "../packet/addr.js";
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";

/** OXM classes (openflow.h ofp_oxm_class; OVS nx-match.h). */
export const OFPXMC_NXM_0 = 0x0000;
export const OFPXMC_NXM_1 = 0x0001;
export const OFPXMC_OPENFLOW_BASIC = 0x8000;
export const OFPXMC_PACKET_REGS = 0x8001;
export const OFPXMC_EXPERIMENTER = 0xffff;
export const ONF_EXPERIMENTER_ID = 0x4f4e4600;
export const NX_EXPERIMENTER_ID = 0x00002320;

export type OxmFormat =
  | "dec"
  | "hex"
  | "mac"
  | "ipv4"
  | "ipv6"
  | "port"
  | "ct_state"
  | "tcp_flags"
  | "frag"
  | "tun_flags"
  | "bytes";

export type OxmValue = number | bigint | string | Buffer;

export interface OxmWireId {
  cls: number;
  field: number;
  /** Experimenter id for class 0xffff. */
  exp?: number;
  /** The name ovs-ofctl prints in move/load (`NXM_NX_REG0`). */
  wireName: string;
  /**
   * Width in bytes of this encoding, when it is not the field's: the one
   * field OVS gives two widths is in_port — NXM_OF_IN_PORT is 16 bits (an
   * OpenFlow 1.0 port number), OXM_OF_IN_PORT 32.
   */
  length?: number;
}

export interface OxmFieldDef {
  name: string;
  /** Other names accepted when parsing text (`dl_dst` for eth_dst …). */
  aliases?: string[];
  /** Preferred OpenFlow 1.3 encoding first; the rest are accepted on decode. */
  wire: OxmWireId[];
  /** Width in bytes; 0 = variable (tun_metadata). */
  length: number;
  maskable: boolean;
  format: OxmFormat;
  /** Prerequisite as ovs-fields(7) states it (see PREREQS). */
  prereq?: Prereq;
}

export type Prereq =
  | "ipv4"
  | "ipv6"
  | "ip"
  | "arp"
  | "tcp"
  | "udp"
  | "sctp"
  | "icmp"
  | "icmpv6"
  | "nd"
  | "nd_sll"
  | "nd_tll"
  | "mpls"
  | "vlan"
  | "ct";

const B = OFPXMC_OPENFLOW_BASIC;
const N0 = OFPXMC_NXM_0;
const N1 = OFPXMC_NXM_1;

function basic(field: number, name: string): OxmWireId {
  return { cls: B, field, wireName: `OXM_OF_${name}` };
}
function nx0(field: number, name: string, length?: number): OxmWireId {
  return { cls: N0, field, wireName: `NXM_OF_${name}`, ...(length !== undefined ? { length } : {}) };
}
function nx1(field: number, name: string): OxmWireId {
  return { cls: N1, field, wireName: `NXM_NX_${name}` };
}

/** The field table (ids from openflow-1.3.5 §7.2.3.7 and ovs-fields(7)). */
export const FIELDS: readonly OxmFieldDef[] = [
  {
    name: "in_port",
    wire: [basic(0, "IN_PORT"), nx0(0, "IN_PORT", 2)],
    length: 4,
    maskable: false,
    format: "port",
  },
  { name: "in_phy_port", wire: [basic(1, "IN_PHY_PORT")], length: 4, maskable: false, format: "port" },
  { name: "metadata", wire: [basic(2, "METADATA")], length: 8, maskable: true, format: "hex" },
  {
    name: "eth_dst",
    aliases: ["dl_dst"],
    wire: [basic(3, "ETH_DST"), nx0(1, "ETH_DST")],
    length: 6,
    maskable: true,
    format: "mac",
  },
  {
    name: "eth_src",
    aliases: ["dl_src"],
    wire: [basic(4, "ETH_SRC"), nx0(2, "ETH_SRC")],
    length: 6,
    maskable: true,
    format: "mac",
  },
  {
    name: "eth_type",
    aliases: ["dl_type"],
    wire: [basic(5, "ETH_TYPE"), nx0(3, "ETH_TYPE")],
    length: 2,
    maskable: false,
    format: "hex",
  },
  { name: "vlan_vid", wire: [basic(6, "VLAN_VID")], length: 2, maskable: true, format: "dec" },
  {
    name: "vlan_pcp",
    wire: [basic(7, "VLAN_PCP")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "vlan",
  },
  { name: "vlan_tci", wire: [nx0(4, "VLAN_TCI")], length: 2, maskable: true, format: "hex" },
  { name: "ip_dscp", wire: [basic(8, "IP_DSCP")], length: 1, maskable: false, format: "dec", prereq: "ip" },
  {
    name: "nw_ecn",
    aliases: ["ip_ecn"],
    wire: [basic(9, "IP_ECN"), nx1(28, "IP_ECN")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "ip",
  },
  {
    name: "nw_proto",
    aliases: ["ip_proto"],
    wire: [basic(10, "IP_PROTO"), nx0(6, "IP_PROTO")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "ip",
  },
  { name: "nw_tos", wire: [nx0(5, "IP_TOS")], length: 1, maskable: false, format: "dec", prereq: "ip" },
  { name: "nw_ttl", wire: [nx1(29, "IP_TTL")], length: 1, maskable: false, format: "dec", prereq: "ip" },
  {
    name: "ip_frag",
    aliases: ["nw_frag"],
    wire: [nx1(26, "IP_FRAG")],
    length: 1,
    maskable: true,
    format: "frag",
    prereq: "ip",
  },
  {
    name: "ip_src",
    aliases: ["nw_src", "ipv4_src"],
    wire: [basic(11, "IPV4_SRC"), nx0(7, "IP_SRC")],
    length: 4,
    maskable: true,
    format: "ipv4",
    prereq: "ipv4",
  },
  {
    name: "ip_dst",
    aliases: ["nw_dst", "ipv4_dst"],
    wire: [basic(12, "IPV4_DST"), nx0(8, "IP_DST")],
    length: 4,
    maskable: true,
    format: "ipv4",
    prereq: "ipv4",
  },
  {
    name: "tcp_src",
    aliases: ["tp_src"],
    wire: [basic(13, "TCP_SRC"), nx0(9, "TCP_SRC")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "tcp",
  },
  {
    name: "tcp_dst",
    aliases: ["tp_dst"],
    wire: [basic(14, "TCP_DST"), nx0(10, "TCP_DST")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "tcp",
  },
  {
    name: "udp_src",
    wire: [basic(15, "UDP_SRC"), nx0(11, "UDP_SRC")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "udp",
  },
  {
    name: "udp_dst",
    wire: [basic(16, "UDP_DST"), nx0(12, "UDP_DST")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "udp",
  },
  {
    name: "sctp_src",
    wire: [basic(17, "SCTP_SRC")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "sctp",
  },
  {
    name: "sctp_dst",
    wire: [basic(18, "SCTP_DST")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "sctp",
  },
  {
    name: "icmp_type",
    aliases: ["icmpv4_type"],
    wire: [basic(19, "ICMPV4_TYPE"), nx0(13, "ICMP_TYPE")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "icmp",
  },
  {
    name: "icmp_code",
    aliases: ["icmpv4_code"],
    wire: [basic(20, "ICMPV4_CODE"), nx0(14, "ICMP_CODE")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "icmp",
  },
  {
    name: "arp_op",
    wire: [basic(21, "ARP_OP"), nx0(15, "ARP_OP")],
    length: 2,
    maskable: false,
    format: "dec",
    prereq: "arp",
  },
  {
    name: "arp_spa",
    wire: [basic(22, "ARP_SPA"), nx0(16, "ARP_SPA")],
    length: 4,
    maskable: true,
    format: "ipv4",
    prereq: "arp",
  },
  {
    name: "arp_tpa",
    wire: [basic(23, "ARP_TPA"), nx0(17, "ARP_TPA")],
    length: 4,
    maskable: true,
    format: "ipv4",
    prereq: "arp",
  },
  {
    name: "arp_sha",
    wire: [basic(24, "ARP_SHA"), nx1(17, "ARP_SHA")],
    length: 6,
    maskable: true,
    format: "mac",
    prereq: "arp",
  },
  {
    name: "arp_tha",
    wire: [basic(25, "ARP_THA"), nx1(18, "ARP_THA")],
    length: 6,
    maskable: true,
    format: "mac",
    prereq: "arp",
  },
  {
    name: "ipv6_src",
    wire: [basic(26, "IPV6_SRC"), nx1(19, "IPV6_SRC")],
    length: 16,
    maskable: true,
    format: "ipv6",
    prereq: "ipv6",
  },
  {
    name: "ipv6_dst",
    wire: [basic(27, "IPV6_DST"), nx1(20, "IPV6_DST")],
    length: 16,
    maskable: true,
    format: "ipv6",
    prereq: "ipv6",
  },
  {
    name: "ipv6_label",
    aliases: ["ipv6_flabel"],
    wire: [basic(28, "IPV6_FLABEL"), nx1(27, "IPV6_LABEL")],
    length: 4,
    maskable: true,
    format: "hex",
    prereq: "ipv6",
  },
  {
    name: "icmpv6_type",
    wire: [basic(29, "ICMPV6_TYPE"), nx1(21, "ICMPV6_TYPE")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "icmpv6",
  },
  {
    name: "icmpv6_code",
    wire: [basic(30, "ICMPV6_CODE"), nx1(22, "ICMPV6_CODE")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "icmpv6",
  },
  {
    name: "nd_target",
    aliases: ["ipv6_nd_target"],
    wire: [basic(31, "IPV6_ND_TARGET"), nx1(23, "ND_TARGET")],
    length: 16,
    maskable: true,
    format: "ipv6",
    prereq: "nd",
  },
  {
    name: "nd_sll",
    aliases: ["ipv6_nd_sll"],
    wire: [basic(32, "IPV6_ND_SLL"), nx1(24, "ND_SLL")],
    length: 6,
    maskable: true,
    format: "mac",
    prereq: "nd_sll",
  },
  {
    name: "nd_tll",
    aliases: ["ipv6_nd_tll"],
    wire: [basic(33, "IPV6_ND_TLL"), nx1(25, "ND_TLL")],
    length: 6,
    maskable: true,
    format: "mac",
    prereq: "nd_tll",
  },
  {
    name: "mpls_label",
    wire: [basic(34, "MPLS_LABEL")],
    length: 4,
    maskable: false,
    format: "dec",
    prereq: "mpls",
  },
  {
    name: "mpls_tc",
    wire: [basic(35, "MPLS_TC")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "mpls",
  },
  {
    name: "mpls_bos",
    wire: [basic(36, "MPLS_BOS")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "mpls",
  },
  {
    name: "mpls_ttl",
    wire: [nx1(30, "MPLS_TTL")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "mpls",
  },
  {
    name: "tun_id",
    aliases: ["tunnel_id"],
    wire: [basic(38, "TUNNEL_ID"), nx1(16, "TUN_ID")],
    length: 8,
    maskable: true,
    format: "hex",
  },
  { name: "packet_type", wire: [basic(44, "PACKET_TYPE")], length: 4, maskable: false, format: "hex" },
  { name: "ipv6_exthdr", wire: [basic(39, "IPV6_EXTHDR")], length: 2, maskable: true, format: "hex" },
  { name: "tun_src", wire: [nx1(31, "TUN_IPV4_SRC")], length: 4, maskable: true, format: "ipv4" },
  { name: "tun_dst", wire: [nx1(32, "TUN_IPV4_DST")], length: 4, maskable: true, format: "ipv4" },
  { name: "tun_ipv6_src", wire: [nx1(109, "TUN_IPV6_SRC")], length: 16, maskable: true, format: "ipv6" },
  { name: "tun_ipv6_dst", wire: [nx1(110, "TUN_IPV6_DST")], length: 16, maskable: true, format: "ipv6" },
  { name: "tun_gbp_id", wire: [nx1(38, "TUN_GBP_ID")], length: 2, maskable: true, format: "dec" },
  { name: "tun_gbp_flags", wire: [nx1(39, "TUN_GBP_FLAGS")], length: 1, maskable: true, format: "hex" },
  { name: "tun_flags", wire: [nx1(104, "TUN_FLAGS")], length: 2, maskable: true, format: "tun_flags" },
  { name: "pkt_mark", wire: [nx1(33, "PKT_MARK")], length: 4, maskable: true, format: "hex" },
  {
    name: "tcp_flags",
    wire: [
      { cls: OFPXMC_EXPERIMENTER, field: 42, exp: ONF_EXPERIMENTER_ID, wireName: "ONFOXM_ET_TCP_FLAGS" },
      nx1(34, "TCP_FLAGS"),
    ],
    length: 2,
    maskable: true,
    format: "tcp_flags",
    prereq: "tcp",
  },
  { name: "conj_id", wire: [nx1(37, "CONJ_ID")], length: 4, maskable: false, format: "dec" },
  { name: "ct_state", wire: [nx1(105, "CT_STATE")], length: 4, maskable: true, format: "ct_state" },
  { name: "ct_zone", wire: [nx1(106, "CT_ZONE")], length: 2, maskable: false, format: "hex" },
  { name: "ct_mark", wire: [nx1(107, "CT_MARK")], length: 4, maskable: true, format: "hex" },
  { name: "ct_label", wire: [nx1(108, "CT_LABEL")], length: 16, maskable: true, format: "hex" },
  {
    name: "ct_nw_proto",
    wire: [nx1(119, "CT_NW_PROTO")],
    length: 1,
    maskable: false,
    format: "dec",
    prereq: "ct",
  },
  {
    name: "ct_nw_src",
    wire: [nx1(120, "CT_NW_SRC")],
    length: 4,
    maskable: true,
    format: "ipv4",
    prereq: "ct",
  },
  {
    name: "ct_nw_dst",
    wire: [nx1(121, "CT_NW_DST")],
    length: 4,
    maskable: true,
    format: "ipv4",
    prereq: "ct",
  },
  {
    name: "ct_ipv6_src",
    wire: [nx1(122, "CT_IPV6_SRC")],
    length: 16,
    maskable: true,
    format: "ipv6",
    prereq: "ct",
  },
  {
    name: "ct_ipv6_dst",
    wire: [nx1(123, "CT_IPV6_DST")],
    length: 16,
    maskable: true,
    format: "ipv6",
    prereq: "ct",
  },
  {
    name: "ct_tp_src",
    wire: [nx1(124, "CT_TP_SRC")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "ct",
  },
  {
    name: "ct_tp_dst",
    wire: [nx1(125, "CT_TP_DST")],
    length: 2,
    maskable: true,
    format: "dec",
    prereq: "ct",
  },
  ...range(16).map((i): OxmFieldDef => ({
    name: `reg${i}`,
    wire: [nx1(i, `REG${i}`)],
    length: 4,
    maskable: true,
    format: "hex",
  })),
  ...range(8).map((i): OxmFieldDef => ({
    name: `xreg${i}`,
    wire: [{ cls: OFPXMC_PACKET_REGS, field: i, wireName: `OXM_OF_PKT_REG${i}` }],
    length: 8,
    maskable: true,
    format: "hex",
  })),
  ...range(4).map((i): OxmFieldDef => ({
    name: `xxreg${i}`,
    wire: [nx1(111 + i, `XXREG${i}`)],
    length: 16,
    maskable: true,
    format: "hex",
  })),
  ...range(64).map((i): OxmFieldDef => ({
    name: `tun_metadata${i}`,
    wire: [nx1(40 + i, `TUN_METADATA${i}`)],
    length: 0,
    maskable: true,
    format: "bytes",
  })),
];

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

const byName = new Map<string, OxmFieldDef>();
const byWire = new Map<string, { def: OxmFieldDef; id: OxmWireId }>();
const byWireName = new Map<string, { def: OxmFieldDef; id: OxmWireId }>();
for (const def of FIELDS) {
  byName.set(def.name, def);
  for (const a of def.aliases ?? []) byName.set(a, def);
  for (const id of def.wire) {
    byWire.set(wireKey(id.cls, id.field, id.exp), { def, id });
    byWireName.set(id.wireName, { def, id });
  }
}

function wireKey(cls: number, field: number, exp?: number): string {
  return cls === OFPXMC_EXPERIMENTER ? `${cls}:${exp}:${field}` : `${cls}:${field}`;
}

export function fieldByName(name: string): OxmFieldDef | undefined {
  return byName.get(name);
}
/** Look up by an NXM/OXM wire name as used in move/load (`NXM_NX_REG0`). */
export function fieldByWireName(name: string): { def: OxmFieldDef; id: OxmWireId } | undefined {
  return byWireName.get(name);
}
export function fieldByWire(cls: number, field: number, exp?: number): OxmFieldDef | undefined {
  return byWire.get(wireKey(cls, field, exp))?.def;
}

/** One match entry. `field` is the ovs-fields name; unknown wire fields use `oxm:<class>:<field>`. */
export interface MatchField {
  field: string;
  value: OxmValue;
  mask?: OxmValue;
}

// ---- value <-> bytes ----------------------------------------------------------------------------

export function valueToBytes(def: OxmFieldDef, v: OxmValue, what = def.name): Buffer {
  const len = def.length;
  switch (def.format) {
    case "mac": {
      if (typeof v !== "string") throw new EncodeError(`${what}: MAC address must be a string`, { value: v });
      return macToBytes(v, what);
    }
    case "ipv4": {
      if (typeof v !== "string")
        throw new EncodeError(`${what}: IPv4 address must be a string`, { value: v });
      return ipv4ToBytes(v, what);
    }
    case "ipv6": {
      if (typeof v !== "string")
        throw new EncodeError(`${what}: IPv6 address must be a string`, { value: v });
      return ipv6ToBytes(v, what);
    }
    case "bytes": {
      if (Buffer.isBuffer(v)) return v;
      if (typeof v === "string") return hexToBytes(v, what);
      const n = BigInt(v);
      const out = bigintToBytes(n, Math.max(1, Math.ceil(n.toString(16).length / 2)), what);
      return out;
    }
    default: {
      if (Buffer.isBuffer(v)) {
        if (v.length !== len) throw new EncodeError(`${what}: need ${len} bytes, got ${v.length}`);
        return v;
      }
      if (typeof v === "string")
        throw new EncodeError(`${what}: expected an integer, got a string`, { value: v });
      // Registers, ports and the like: no bigint on the way (packet_outs and flow_mods are hot).
      if (typeof v === "number" && len <= 6 && Number.isInteger(v) && v >= 0 && v < 2 ** (8 * len)) {
        const out = Buffer.allocUnsafe(len);
        out.writeUIntBE(v, 0, len);
        return out;
      }
      return bigintToBytes(BigInt(v), len, what);
    }
  }
}

export function bytesToValue(def: OxmFieldDef, b: Buffer): OxmValue {
  switch (def.format) {
    case "mac":
      return bytesToMac(b);
    case "ipv4":
      return bytesToIpv4(b);
    case "ipv6":
      return bytesToIpv6(b);
    case "bytes":
      return Buffer.from(b);
    default:
      return b.length <= 4 ? (b.length === 0 ? 0 : b.readUIntBE(0, b.length)) : bytesToBigint(b);
  }
}

export function bigintToBytes(v: bigint, len: number, what = "value"): Buffer {
  if (v < 0n || v >> BigInt(len * 8) !== 0n) {
    throw new EncodeError(`${what}: value ${v} does not fit in ${len * 8} bits`, { value: String(v) });
  }
  const out = Buffer.allocUnsafe(len); // every byte is written below
  let x = v;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}
export function bytesToBigint(b: Buffer): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}
function hexToBytes(s: string, what: string): Buffer {
  const h = s.replace(/^0x/i, "");
  if (!/^[0-9a-f]*$/i.test(h)) throw new EncodeError(`${what}: not hex: ${s}`);
  return Buffer.from(h.length % 2 ? `0${h}` : h, "hex");
}

const HEX_DIGIT = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function macToBytes(s: string, what = "mac"): Buffer {
  if (s.length === 17) {
    // the usual xx:xx:xx:xx:xx:xx, read without a regex or arrays; anything else takes the long way
    const out = Buffer.allocUnsafe(6);
    let ok = true;
    for (let i = 0; i < 6 && ok; i++) {
      const hi = HEX_DIGIT(s.charCodeAt(3 * i));
      const lo = HEX_DIGIT(s.charCodeAt(3 * i + 1));
      ok = hi >= 0 && lo >= 0 && (i === 5 || s.charCodeAt(3 * i + 2) === 58);
      out[i] = hi * 16 + lo;
    }
    if (ok) return out;
  }
  const m =
    /^([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2}):([0-9a-f]{1,2})$/i.exec(
      s,
    );
  if (!m) throw new EncodeError(`${what}: bad MAC address ${JSON.stringify(s)}`);
  return Buffer.from(m.slice(1).map((x) => Number.parseInt(x, 16)));
}
export function bytesToMac(b: Buffer): string {
  if (b.length === 6) {
    return `${HEX_BYTE[b[0]!]}:${HEX_BYTE[b[1]!]}:${HEX_BYTE[b[2]!]}:${HEX_BYTE[b[3]!]}:${HEX_BYTE[b[4]!]}:${HEX_BYTE[b[5]!]}`;
  }
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
export function ipv4ToBytes(s: string, what = "ipv4"): Buffer {
  const n = dottedIpv4(s);
  if (n !== undefined) {
    const out = Buffer.allocUnsafe(4);
    out.writeUInt32BE(n);
    return out;
  }
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  const parts = m?.slice(1).map(Number);
  if (!parts || parts.some((p) => p > 255))
    throw new EncodeError(`${what}: bad IPv4 address ${JSON.stringify(s)}`);
  return Buffer.from(parts);
}
export function bytesToIpv4(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  return Array.from(b).join(".");
}
export function ipv6ToBytes(s: string, what = "ipv6"): Buffer {
  if (!ipaddr.IPv6.isValid(s)) throw new EncodeError(`${what}: bad IPv6 address ${JSON.stringify(s)}`);
  return Buffer.from(ipaddr.IPv6.parse(s).toByteArray());
}
export function bytesToIpv6(b: Buffer): string {
  return ipaddr.fromByteArray(Array.from(b)).toString();
}

// ---- OXM TLVs -----------------------------------------------------------------------------------

/** Append one OXM TLV (header, value, optional mask). */
export function encodeOxm(w: ByteWriter, m: MatchField): void {
  const def = byName.get(m.field);
  if (!def) {
    const u = /^oxm:(\d+):(\d+)$/.exec(m.field);
    if (u && Buffer.isBuffer(m.value)) {
      const mask = m.mask === undefined ? undefined : (m.mask as Buffer);
      writeOxmHeader(
        w,
        Number(u[1]),
        Number(u[2]),
        undefined,
        mask !== undefined,
        m.value.length * (mask ? 2 : 1),
      );
      w.bytes(m.value);
      if (mask) w.bytes(mask);
      return;
    }
    throw new EncodeError(`unknown match field ${m.field}`, { field: m.field });
  }
  const id = def.wire[0]!;
  const value = valueToBytes(def, m.value);
  let mask: Buffer | undefined;
  if (m.mask !== undefined) {
    if (!def.maskable) throw new EncodeError(`match field ${def.name} is not maskable`, { field: def.name });
    mask = valueToBytes(def, m.mask, `${def.name} mask`);
    if (mask.length !== value.length)
      throw new EncodeError(`${def.name}: mask length differs from value length`);
  }
  writeOxmHeader(w, id.cls, id.field, id.exp, mask !== undefined, value.length * (mask ? 2 : 1));
  // Value bits outside the mask must be zero (OpenFlow 1.3 §7.2.3.5; OVS answers OFPBMC_BAD_WILDCARDS).
  w.bytes(mask ? value.map((b, i) => b & mask[i]!) : value);
  if (mask) w.bytes(mask);
}

function writeOxmHeader(
  w: ByteWriter,
  cls: number,
  field: number,
  exp: number | undefined,
  hasMask: boolean,
  len: number,
): void {
  const expLen = cls === OFPXMC_EXPERIMENTER ? 4 : 0;
  w.u16(cls)
    .u8((field << 1) | (hasMask ? 1 : 0))
    .u8(len + expLen);
  if (expLen) w.u32(exp ?? 0);
}

const ACTION_WIRE = new Map<OxmFieldDef, OxmWireId>();
/** The preferred wire id for a field when it is named in an action (NXM form where OVS uses it). */
function actionWireId(def: OxmFieldDef): OxmWireId {
  let id = ACTION_WIRE.get(def);
  if (!id) {
    id = def.wire.find((x) => x.cls === OFPXMC_NXM_0 || x.cls === OFPXMC_NXM_1) ?? def.wire[0]!;
    ACTION_WIRE.set(def, id);
  }
  return id;
}

/** A 32-bit (or 64-bit experimenter) OXM header naming a field, as used by move/load actions. */
export interface OxmHeader {
  def?: OxmFieldDef;
  cls: number;
  field: number;
  exp?: number;
  hasMask: boolean;
  length: number;
}

/**
 * Write the header naming a field inside an action (move, load, output_reg,
 * ct zone). Open vSwitch names a field there by its NXM header when it has
 * one (`NXM_OF_ETH_SRC`, `NXM_NX_TUN_ID`) and by its OXM header otherwise
 * (`OXM_OF_METADATA`), so flowdrake does the same: ovs-ofctl's bytes. The
 * header's length is that encoding's width, which OVS checks: in_port named
 * as NXM_OF_IN_PORT is 2 bytes, not the 4 of OXM_OF_IN_PORT.
 */
export function writeFieldHeader(w: ByteWriter, def: OxmFieldDef, hasMask = false): void {
  const id = actionWireId(def);
  const length = id.length ?? def.length;
  writeOxmHeader(w, id.cls, id.field, id.exp, hasMask, length * (hasMask ? 2 : 1));
}

/** Width in bits of a field as an action names it (its header from writeFieldHeader); variable fields: 0. */
export function actionFieldBits(def: OxmFieldDef): number {
  return (actionWireId(def).length ?? def.length) * 8;
}

export function readOxmHeader(r: ByteReader): OxmHeader {
  const cls = r.u16("oxm class");
  const fh = r.u8("oxm field");
  let length = r.u8("oxm length");
  let exp: number | undefined;
  if (cls === OFPXMC_EXPERIMENTER) {
    exp = r.u32("oxm experimenter");
    if (length < 4) throw new DecodeError(`experimenter OXM with length ${length} < 4`);
    length -= 4;
  }
  const field = fh >> 1;
  return { def: fieldByWire(cls, field, exp), cls, field, exp, hasMask: (fh & 1) === 1, length };
}

/** Decode one OXM TLV into a MatchField. */
export function decodeOxm(r: ByteReader): MatchField {
  const h = readOxmHeader(r);
  const body = r.bytes(h.length, "oxm value");
  const vlen = h.hasMask ? h.length / 2 : h.length;
  if (h.hasMask && h.length % 2 !== 0) throw new DecodeError(`masked OXM with odd length ${h.length}`);
  const value = body.subarray(0, vlen);
  const mask = h.hasMask ? body.subarray(vlen) : undefined;
  const def = h.def;
  if (!def) {
    return {
      field: `oxm:${h.cls}:${h.field}`,
      value: Buffer.from(value),
      ...(mask ? { mask: Buffer.from(mask) } : {}),
    };
  }
  if (def.length !== 0 && vlen !== def.length) {
    throw new DecodeError(`OXM ${def.name}: value length ${vlen}, expected ${def.length}`, {
      field: def.name,
    });
  }
  return {
    field: def.name,
    value: bytesToValue(def, value),
    ...(mask ? { mask: bytesToValue(def, mask) } : {}),
  };
}

/**
 * The order a match is written in: the order Open vSwitch writes one
 * (nx_put_raw, lib/nx-match.c), so flowdrake's flow_mods are byte for byte
 * what ovs-ofctl sends. It puts every prerequisite before the fields that
 * need it (eth_type before L3, nw_proto before L4, icmpv6_type before ND,
 * ct_state before ct_nw_*), which a switch checks field by field. Fields of
 * one line share a rank; a field not in the table (an unknown `oxm:` entry)
 * goes last. Ties keep the caller's order.
 */
const CANONICAL_ORDER: readonly string[] = [
  "packet_type",
  "conj_id",
  "in_port",
  "in_phy_port",
  "eth_src",
  "eth_dst",
  "eth_type",
  "vlan_vid",
  "vlan_pcp",
  "vlan_tci",
  "mpls_tc",
  "mpls_bos",
  "mpls_ttl",
  "mpls_label",
  "ip_src",
  "ip_dst",
  "ipv6_src",
  "ipv6_dst",
  "ip_frag",
  "ip_dscp",
  "nw_tos",
  "nw_ecn",
  "nw_ttl",
  "ipv6_label",
  "ipv6_exthdr",
  "nw_proto",
  "tcp_src",
  "tcp_dst",
  "tcp_flags",
  "udp_src",
  "udp_dst",
  "sctp_src",
  "sctp_dst",
  "icmp_type",
  "icmp_code",
  "icmpv6_type",
  "icmpv6_code",
  "nd_target",
  "nd_sll",
  "nd_tll",
  "arp_op",
  "arp_spa",
  "arp_tpa",
  "arp_sha",
  "arp_tha",
  "tun_id",
  "tun_flags",
  "tun_src",
  "tun_dst",
  "tun_ipv6_src",
  "tun_ipv6_dst",
  "tun_gbp_id",
  "tun_gbp_flags",
  ...range(64).map((i) => `tun_metadata${i}`),
  ...range(16).map((i) => `reg${i}`),
  ...range(8).map((i) => `xreg${i}`),
  ...range(4).map((i) => `xxreg${i}`),
  "pkt_mark",
  "ct_state",
  "ct_zone",
  "ct_mark",
  "ct_label",
  "ct_nw_src",
  "ct_ipv6_src",
  "ct_nw_dst",
  "ct_ipv6_dst",
  "ct_nw_proto",
  "ct_tp_src",
  "ct_tp_dst",
  "metadata",
];
const CANONICAL_RANK = new Map<OxmFieldDef, number>(
  CANONICAL_ORDER.map((name, i) => {
    const def = byName.get(name);
    if (!def) throw new Error(`CANONICAL_ORDER names unknown field ${name}`);
    return [def, i];
  }),
);
for (const def of FIELDS) {
  if (!CANONICAL_RANK.has(def)) throw new Error(`field ${def.name} missing from CANONICAL_ORDER`);
}

/** Where a field (by the name a MatchField carries, aliases included) sorts in a match. */
export function prerequisiteRank(field: string): number {
  const def = byName.get(field);
  return def ? CANONICAL_RANK.get(def)! : CANONICAL_ORDER.length;
}
function rank(f: MatchField): number {
  return prerequisiteRank(f.field);
}
/** The match in canonical order: every field's prerequisites come before it (stable otherwise). */
export function prerequisiteOrder(fields: readonly MatchField[]): MatchField[] {
  return fields
    .map((f, i) => [f, i] as const)
    .sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1])
    .map(([f]) => f);
}

/** ofp_match (OFPMT_OXM): type, length, OXM TLVs (in prerequisite order), padding to 8. */
export function encodeMatch(w: ByteWriter, fields: readonly MatchField[]): void {
  const start = w.length;
  w.u16(1); // OFPMT_OXM
  const lenAt = w.reserve(2);
  for (const f of prerequisiteOrder(fields)) encodeOxm(w, f);
  w.setU16(lenAt, w.length - start);
  w.padTo(8, start);
}

export function decodeMatch(r: ByteReader): MatchField[] {
  const start = r.offset;
  const type = r.u16("match type");
  if (type !== 1) throw new DecodeError(`match type ${type} is not OFPMT_OXM`, { type });
  const len = r.u16("match length");
  if (len < 4) throw new DecodeError(`match length ${len} < 4`);
  const body = r.sub(len - 4, "match fields");
  const out: MatchField[] = [];
  while (!body.atEnd()) out.push(decodeOxm(body));
  const padded = (len + 7) & ~7;
  r.skip(Math.min(padded - len, r.remaining), "match padding");
  void start;
  return out;
}

// ---- prerequisites ------------------------------------------------------------------------------

/** Which match entries satisfy a prerequisite (ovs-fields(7) "Prerequisites"). */
const PREREQS: Record<Prereq, (m: Map<string, MatchField>) => boolean> = {
  ipv4: (m) => ethType(m) === 0x0800,
  ipv6: (m) => ethType(m) === 0x86dd,
  ip: (m) => ethType(m) === 0x0800 || ethType(m) === 0x86dd,
  arp: (m) => ethType(m) === 0x0806 || ethType(m) === 0x8035,
  tcp: (m) => PREREQS.ip(m) && proto(m) === 6,
  udp: (m) => PREREQS.ip(m) && proto(m) === 17,
  sctp: (m) => PREREQS.ip(m) && proto(m) === 132,
  icmp: (m) => PREREQS.ipv4(m) && proto(m) === 1,
  icmpv6: (m) => PREREQS.ipv6(m) && proto(m) === 58,
  nd: (m) => PREREQS.icmpv6(m) && [135, 136].includes(Number(m.get("icmpv6_type")?.value)),
  nd_sll: (m) => PREREQS.icmpv6(m) && Number(m.get("icmpv6_type")?.value) === 135,
  nd_tll: (m) => PREREQS.icmpv6(m) && Number(m.get("icmpv6_type")?.value) === 136,
  mpls: (m) => ethType(m) === 0x8847 || ethType(m) === 0x8848,
  vlan: (m) => m.has("vlan_vid") || m.has("vlan_tci"),
  ct: (m) => m.has("ct_state"),
};
function ethType(m: Map<string, MatchField>): number | undefined {
  const v = m.get("eth_type")?.value;
  return v === undefined ? undefined : Number(v);
}
function proto(m: Map<string, MatchField>): number | undefined {
  const v = m.get("nw_proto")?.value;
  return v === undefined ? undefined : Number(v);
}

/** Throws EncodeError naming the first field whose prerequisite the match lacks. */
export function checkPrerequisites(fields: readonly MatchField[]): void {
  const m = new Map(fields.map((f) => [f.field, f]));
  for (const f of fields) {
    const def = byName.get(f.field);
    if (def?.prereq && !PREREQS[def.prereq](m)) {
      throw new EncodeError(`match field ${def.name} needs prerequisite ${def.prereq}`, {
        field: def.name,
        prereq: def.prereq,
      });
    }
  }
}
