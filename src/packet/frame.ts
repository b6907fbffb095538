/**
 * Whole frames: `parseEthernet(buf)` decodes Ethernet → VLAN tags → ARP |
 * IPv4 | IPv6 → ICMP | ICMPv6 (+NDP) | UDP | TCP → DHCPv4 into one `Frame`
 * with a field per layer present, and `buildFrame(spec)` goes the other way,
 * filling EtherTypes, protocol numbers, lengths and every checksum (IPv4
 * header, ICMP, and the pseudo-header checksums of UDP, TCP and ICMPv6).
 *
 * A Frame's `payload` is whatever follows the innermost decoded header (the
 * UDP/TCP data, a fragment's bytes, an unknown protocol's body). Buffers in a
 * Frame may be views of the input: copy before keeping them past the input.
 *
 * Errors: any malformed layer is a DecodeError whose message and context name
 * the layer and field; nothing is read outside `buf`. Bad builder input is an
 * EncodeError.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { EncodeError } from "../util/errors.js";
import { ipv4ToBytes, ipv6ToBytes } from "./addr.js";
import { type Arp, type ArpSpec, decodeArp, encodeArp } from "./arp.js";
import { pseudoSumV4, pseudoSumV6, sumBytes } from "./checksum.js";
import { ETH_TYPE, IP_PROTO, UDP_PORT } from "./constants.js";
import { type Dhcp, type DhcpSpec, decodeDhcp, encodeDhcp } from "./dhcp.js";
import {
  decodeEthernet,
  type EthernetHeader,
  encodeEthernet,
  type VlanSpec,
  type VlanTag,
} from "./ethernet.js";
import { decodeIcmp, encodeIcmp, type Icmp, type IcmpSpec } from "./icmp.js";
import { decodeIpv4, encodeIpv4, type Ipv4, type Ipv4Spec } from "./ipv4.js";
import { decodeIpv6, encodeIpv6, type Ipv6, type Ipv6Spec } from "./ipv6.js";
import { decodeNdp, type Ndp } from "./ndp.js";
import { decodeTcp, encodeTcp, type Tcp, type TcpSpec } from "./tcp.js";
import { decodeUdp, encodeUdp, type Udp, type UdpSpec } from "./udp.js";

export interface Frame {
  eth: EthernetHeader;
  /** Outer tag first; empty when untagged. */
  vlans: VlanTag[];
  arp?: Arp;
  ipv4?: Ipv4;
  ipv6?: Ipv6;
  icmp?: Icmp;
  icmpv6?: Icmp & { ndp?: Ndp };
  udp?: Udp;
  tcp?: Tcp;
  dhcp?: Dhcp;
  payload: Buffer;
}

export interface ParseOptions {
  /** Decode DHCPv4 on UDP ports 67/68 (default true). */
  dhcp?: boolean;
}

/** The payload of a frame with none (one shared empty buffer: there is nothing in it to change). */
const NO_BYTES = Buffer.alloc(0);

function isDhcpPorts(u: Udp): boolean {
  const p = [UDP_PORT.DHCP_SERVER, UDP_PORT.DHCP_CLIENT] as number[];
  return p.includes(u.srcPort) && p.includes(u.dstPort);
}

function decodeL4(
  f: Frame,
  r: ByteReader,
  proto: number,
  pseudoNoLen: number,
  v6: boolean,
  o: ParseOptions,
): void {
  switch (proto) {
    case IP_PROTO.UDP: {
      const { udp, payload } = decodeUdp(new ByteReader(r.buf, r.offset, r.end, "udp"), pseudoNoLen, v6);
      f.udp = udp;
      if (!v6 && o.dhcp !== false && isDhcpPorts(udp)) {
        f.dhcp = decodeDhcp(new ByteReader(payload.buf, payload.offset, payload.end, "dhcp"));
      }
      f.payload = payload.rest();
      return;
    }
    case IP_PROTO.TCP: {
      const { tcp, payload } = decodeTcp(new ByteReader(r.buf, r.offset, r.end, "tcp"), pseudoNoLen);
      f.tcp = tcp;
      f.payload = payload.rest();
      return;
    }
    case IP_PROTO.ICMP:
      if (v6) break;
      f.icmp = decodeIcmp(new ByteReader(r.buf, r.offset, r.end, "icmp"), false, 0);
      f.payload = NO_BYTES;
      return;
    case IP_PROTO.ICMPV6: {
      if (!v6) break;
      const icmp: Icmp & { ndp?: Ndp } = decodeIcmp(
        new ByteReader(r.buf, r.offset, r.end, "icmpv6"),
        true,
        pseudoNoLen + r.remaining,
      );
      const ndp = decodeNdp(icmp);
      if (ndp) icmp.ndp = ndp;
      f.icmpv6 = icmp;
      f.payload = NO_BYTES;
      return;
    }
  }
  f.payload = r.rest();
}

/** Decode an Ethernet frame (no FCS) and every layer inside it that the library knows. */
export function parseEthernet(buf: Buffer, opts: ParseOptions = {}): Frame {
  const r = new ByteReader(buf, 0, buf.length, "ethernet");
  const { eth, vlans } = decodeEthernet(r);
  const f: Frame = { eth, vlans, payload: NO_BYTES };
  const body = new ByteReader(buf, r.offset, buf.length, ethLayerName(eth.ethertype));
  switch (eth.ethertype) {
    case ETH_TYPE.ARP:
      f.arp = decodeArp(body);
      return f;
    case ETH_TYPE.IPV4: {
      const at = body.offset;
      const { ipv4, payload } = decodeIpv4(body);
      f.ipv4 = ipv4;
      if (ipv4.isFragment) f.payload = payload.rest();
      else {
        // the pseudo-header's addresses are the header's own bytes (source at 12, destination at 16)
        const pseudo = sumBytes(buf, at + 12, at + 20) + ipv4.protocol;
        decodeL4(f, payload, ipv4.protocol, pseudo, false, opts);
      }
      return f;
    }
    case ETH_TYPE.IPV6: {
      const at = body.offset;
      const { ipv6, payload } = decodeIpv6(body);
      f.ipv6 = ipv6;
      if (ipv6.isFragment) f.payload = payload.rest();
      else {
        // source at 8, destination at 24 of the fixed header
        const pseudo = sumBytes(buf, at + 8, at + 40) + ipv6.protocol;
        decodeL4(f, payload, ipv6.protocol, pseudo, true, opts);
      }
      return f;
    }
    default:
      f.payload = body.rest();
      return f;
  }
}

function ethLayerName(t: number): string {
  return t === ETH_TYPE.ARP
    ? "arp"
    : t === ETH_TYPE.IPV4
      ? "ipv4"
      : t === ETH_TYPE.IPV6
        ? "ipv6"
        : "ethernet payload";
}

export interface FrameSpec {
  eth: { src: string; dst: string; ethertype?: number };
  vlans?: VlanSpec[];
  arp?: ArpSpec;
  ipv4?: Ipv4Spec;
  ipv6?: Ipv6Spec;
  icmp?: IcmpSpec;
  icmpv6?: IcmpSpec;
  udp?: UdpSpec;
  tcp?: TcpSpec;
  /** DHCPv4 message as the UDP payload (needs `udp`). */
  dhcp?: DhcpSpec;
  /** Bytes after the innermost header given (L4 data, or the L3/L2 payload). */
  payload?: Buffer;
}

function encErr(msg: string): EncodeError {
  return new EncodeError(`frame: ${msg}`, { layer: "frame" });
}

/** Build a frame, filling types, lengths and checksums. */
export function buildFrame(s: FrameSpec): Buffer {
  const l3 = [s.arp, s.ipv4, s.ipv6].filter((x) => x !== undefined).length;
  const l4 = [s.icmp, s.icmpv6, s.udp, s.tcp].filter((x) => x !== undefined).length;
  if (l3 > 1) throw encErr("at most one of arp, ipv4, ipv6");
  if (l4 > 1) throw encErr("at most one of icmp, icmpv6, udp, tcp");
  if (l4 && !s.ipv4 && !s.ipv6) throw encErr("an L4 layer needs ipv4 or ipv6");
  if (s.icmp && !s.ipv4) throw encErr("icmp needs ipv4 (use icmpv6 over ipv6)");
  if (s.icmpv6 && !s.ipv6) throw encErr("icmpv6 needs ipv6");
  if (s.dhcp && !s.udp) throw encErr("dhcp needs udp");
  if (s.dhcp && s.payload) throw encErr("give dhcp or payload, not both");
  if (s.arp && s.payload) throw encErr("arp takes no payload");

  let data = s.dhcp ? encodeDhcp(s.dhcp) : (s.payload ?? Buffer.alloc(0));
  let ethertype = s.eth.ethertype;
  if (s.ipv4 || s.ipv6) {
    const v6 = s.ipv6 !== undefined;
    const proto = s.udp
      ? IP_PROTO.UDP
      : s.tcp
        ? IP_PROTO.TCP
        : s.icmp
          ? IP_PROTO.ICMP
          : s.icmpv6
            ? IP_PROTO.ICMPV6
            : ((v6 ? s.ipv6!.protocol : s.ipv4!.protocol) ?? IP_PROTO.IPV6_NONXT);
    const pseudo = (len: number): number =>
      v6
        ? pseudoSumV6(ipv6ToBytes(s.ipv6!.src), ipv6ToBytes(s.ipv6!.dst), proto, len)
        : pseudoSumV4(ipv4ToBytes(s.ipv4!.src), ipv4ToBytes(s.ipv4!.dst), proto, len);
    if (s.udp) data = encodeUdp(s.udp, data, pseudo(0));
    else if (s.tcp) data = encodeTcp(s.tcp, data, pseudo(0));
    else if (s.icmp)
      data = encodeIcmp({ ...s.icmp, body: Buffer.concat([s.icmp.body ?? Buffer.alloc(0), data]) }, 0);
    else if (s.icmpv6) {
      const body = Buffer.concat([s.icmpv6.body ?? Buffer.alloc(0), data]);
      data = encodeIcmp({ ...s.icmpv6, body }, pseudo(8 + body.length));
    }
    const hdr = v6 ? encodeIpv6(s.ipv6!, proto, data.length) : encodeIpv4(s.ipv4!, proto, data.length);
    data = Buffer.concat([hdr, data]);
    ethertype ??= v6 ? ETH_TYPE.IPV6 : ETH_TYPE.IPV4;
  } else if (s.arp) {
    const w = new ByteWriter(28);
    encodeArp(w, s.arp);
    data = w.finish();
    ethertype ??= ETH_TYPE.ARP;
  }
  if (ethertype === undefined) throw encErr("eth.ethertype is needed when no L3 layer is given");
  const w = new ByteWriter(18 + 4 * (s.vlans?.length ?? 0) + data.length);
  encodeEthernet(w, s.eth, s.vlans ?? [], ethertype);
  w.bytes(data);
  return w.finish();
}
