/**
 * A device filter (the planner's TcRule on one device) as a tc-flower rule,
 * and the cookie that marks it as flowdrake's.
 *
 *   planner match                    flower
 *   ───────────────────────────────  ───────────────────────────────────────────
 *   eth_type                         protocol all + the eth_type key (so that
 *                                    filters of several ethertypes share a prio)
 *   vlan_vid (present) + eth_type    eth_type 802.1Q, vlan_id, vlan_ethtype
 *   eth_src/dst, ipv4/6_src/dst      src_mac/dst_mac, src_ip/dst_ip (masked)
 *   ip_proto, tp_src/dst, tcp_flags  ip_proto, src_port/dst_port, tcp_flags
 *   icmp_type/code, nw_ttl, ip_dscp  type/code, ip_ttl, ip_tos (dscp << 2)
 *   tun_id, tun_src/dst              enc_key_id, enc_src_ip/enc_dst_ip
 *   ct_state/zone/mark               ct_state (bits renumbered), ct_zone, ct_mark
 *
 *   planner action                   tc action
 *   ───────────────────────────────  ───────────────────────────────────────────
 *   goto chain / drop                gact goto chain N / gact drop
 *   pass (a trap)                    gact pass (ok) — or gact trap under skip_sw:
 *                                    a NIC hands the packet to the kernel
 *   redirect / mirror dev            mirred egress redirect / mirror (ifindex)
 *   pedit eth_src/eth_dst, dec_ttl   one pedit ex (munge eth, ip ttl add 255)
 *                                    + csum ip4h after a TTL change
 *   vlan_push / vlan_pop             vlan push id / vlan pop
 *   tunnel_set                       tunnel_key set src_ip <this chassis>
 *                                    dst_ip id dst_port ttl 64 nocsum (as OVS's
 *                                    flow-based tunnel port sends)
 *   tunnel_unset                     tunnel_key unset
 *   ct zone commit nat natRange      ct zone [commit] [nat [src|dst addr A[-B]
 *                                    port P[-Q]]] — the range a NAT with a kind
 *                                    sets up; `nat` alone restores an existing one
 *
 * A key flower cannot express fails the translation of a rule that acts on
 * the packet; a trap simply leaves it out (a coarser trap sends more packets
 * to OVS, never fewer). A failed translation is a refusal like the kernel's:
 * the rule stays in software with the reason.
 *
 * Every action carries the filter's cookie (TCA_ACT_COOKIE, 16 bytes):
 * "fd7c" and a version byte, 6 bytes of a hash of the filter's key and 7 of
 * its signature with its skip_sw/skip_hw flags. A dump tells flowdrake's filters from anyone else's by the
 * magic, finds the desired filter a key hash belongs to, and knows it is
 * unchanged when the signature hash agrees — after a restart too, without
 * comparing decoded matches.
 */
import { createHash } from "node:crypto";
import { bytesToIpv6, bytesToMac, u32ToIpv4 } from "../../packet/addr.js";
import type { CtNatRange, FieldName, Match, MatchValue } from "../planner/ir.js";
import type { TcAction } from "../planner/plan.js";
import {
  ETH_P_8021Q,
  ETH_P_ALL,
  type FlowerAction,
  type FlowerMatch,
  type FlowerRule,
  type PeditMunge,
} from "../netlink/tc/rule.js";
import { TC_ACT, TCA_CSUM_UPDATE_FLAG } from "../netlink/tc/schema.js";
import type { DeviceRule } from "./filters.js";

export type TcFlags = "skip_sw" | "skip_hw" | "none";

export interface TranslateContext {
  /** The ifindex of a device in this namespace, for mirred. */
  ifindex(dev: string): number | undefined;
  flags: TcFlags;
  /** This chassis' tunnel IP: the outer source of what it encapsulates. */
  tunnelSrc: string;
  /** The highest prio the NIC takes (NicProfile.maxPrio), if limited. */
  maxPrio?: number;
}

export type Translation = { ok: true; rule: FlowerRule } | { ok: false; reason: string };

const COOKIE_MAGIC = "fd7c01";

const hash = (s: string): string => createHash("sha256").update(s).digest("hex");

/** The cookie of a filter: magic, key hash (6 bytes), signature hash (7 bytes). */
export function filterCookie(key: string, sig: string): string {
  return `${COOKIE_MAGIC}${keyHashOf(key)}${sigHashOf(sig)}`;
}

/** A cookie's key and signature hashes, or undefined when it is not flowdrake's. */
export function parseFilterCookie(
  cookie: string | undefined,
): { keyHash: string; sigHash: string } | undefined {
  if (!cookie || cookie.length !== 32 || !cookie.startsWith(COOKIE_MAGIC)) return undefined;
  return { keyHash: cookie.slice(6, 18), sigHash: cookie.slice(18) };
}

export function keyHashOf(key: string): string {
  return hash(key).slice(0, 12);
}

/** What the cookie's signature hash covers: the filter and its skip_sw/skip_hw flags. */
export function flaggedSig(sig: string, flags: TcFlags): string {
  return `${sig}|${flags}`;
}

export function sigHashOf(sig: string): string {
  return hash(sig).slice(0, 14);
}

const full = (bits: number): bigint => (1n << BigInt(bits)) - 1n;
const isFull = (mv: MatchValue, bits: number): boolean => (mv.mask & full(bits)) === full(bits);

function mac(v: bigint): string {
  const b = Buffer.alloc(6);
  b.writeUIntBE(Number(v & full(48)), 0, 6);
  return bytesToMac(b);
}

function ipv6(v: bigint): string {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE((v >> 64n) & full(64), 0);
  b.writeBigUInt64BE(v & full(64), 8);
  return bytesToIpv6(b);
}

const ipv4 = (v: bigint): string => u32ToIpv4(Number(v & full(32)));

/** ct_state bits: OpenFlow's (ovs-fields) → flower's (TCA_FLOWER_KEY_CT_FLAGS). */
const CT_BITS: [of: number, tc: number][] = [
  [0x01, 1], // new
  [0x02, 2], // est
  [0x04, 4], // rel
  [0x08, 32], // rpl
  [0x10, 16], // inv
  [0x20, 8], // trk
];

function ctFlags(v: bigint): number {
  let out = 0;
  for (const [of, tc] of CT_BITS) if (Number(v) & of) out |= tc;
  return out;
}

class Untranslatable extends Error {}

function translateMatch(m: Match, trap: boolean): { match: FlowerMatch; ethType?: number } {
  const out: FlowerMatch = {};
  const skip = (what: string): void => {
    if (!trap) throw new Untranslatable(what);
  };
  const get = (f: FieldName): MatchValue | undefined => m[f];
  let ethType: number | undefined;
  const et = get("eth_type");
  if (et && !isFull(et, 16)) skip("a masked eth_type has no flower key");
  const l3 = et && isFull(et, 16) ? Number(et.value) : undefined;
  const vlan = get("vlan_vid");
  let tagged = false;
  if (vlan && vlan.mask & 0x1000n) {
    if (vlan.value & 0x1000n) {
      const vidMask = vlan.mask & 0xfffn;
      if (vidMask === 0xfffn) out.vlanId = Number(vlan.value & 0xfffn);
      else if (vidMask !== 0n) skip("a masked vlan_vid has no flower key");
      ethType = ETH_P_8021Q;
      tagged = true;
      if (l3 !== undefined) out.vlanEthType = l3;
    } else skip("flower cannot match the absence of a VLAN tag");
  } else if (vlan && vlan.mask) skip("a vlan_vid match without the present bit has no flower key");
  if (!tagged) ethType = l3;
  const pcp = get("vlan_pcp");
  if (pcp) {
    if (tagged && isFull(pcp, 3)) out.vlanPrio = Number(pcp.value);
    else skip("vlan_pcp needs a tagged, exact match");
  }
  const ip = l3 === 0x800 || l3 === 0x86dd;
  const needIp = (f: string): boolean => {
    if (!ip) skip(`${f} needs eth_type ip or ipv6`);
    return ip;
  };
  const masked = (mv: MatchValue, bits: number, fmt: (v: bigint) => string) =>
    isFull(mv, bits)
      ? { value: fmt(mv.value), mask: fmt(full(bits)) }
      : { value: fmt(mv.value), mask: fmt(mv.mask) };
  for (const f of ["eth_dst", "eth_src"] as const) {
    const mv = get(f);
    if (mv) out[f === "eth_dst" ? "dstMac" : "srcMac"] = masked(mv, 48, mac);
  }
  const proto = get("ip_proto");
  if (proto && needIp("ip_proto")) {
    if (isFull(proto, 8)) out.ipProto = Number(proto.value);
    else skip("a masked ip_proto has no flower key");
  }
  const dscp = get("ip_dscp");
  if (dscp && needIp("ip_dscp")) {
    out.ipTos = { value: Number(dscp.value << 2n) & 0xfc, mask: Number(dscp.mask << 2n) & 0xfc };
  }
  const ttl = get("nw_ttl");
  if (ttl && needIp("nw_ttl")) out.ipTtl = { value: Number(ttl.value), mask: Number(ttl.mask & 0xffn) };
  for (const [f, k] of [
    ["ipv4_src", "srcIp"],
    ["ipv4_dst", "dstIp"],
  ] as const) {
    const mv = get(f);
    if (!mv) continue;
    if (l3 === 0x800) out[k] = masked(mv, 32, ipv4);
    else skip(`${f} needs eth_type ip`);
  }
  for (const [f, k] of [
    ["ipv6_src", "srcIp"],
    ["ipv6_dst", "dstIp"],
  ] as const) {
    const mv = get(f);
    if (!mv) continue;
    if (l3 === 0x86dd) out[k] = masked(mv, 128, ipv6);
    else skip(`${f} needs eth_type ipv6`);
  }
  const l4 = out.ipProto === 6 || out.ipProto === 17 || out.ipProto === 132;
  for (const [f, k] of [
    ["tp_src", "srcPort"],
    ["tp_dst", "dstPort"],
  ] as const) {
    const mv = get(f);
    if (!mv) continue;
    if (!l4) skip(`${f} needs ip_proto tcp, udp or sctp`);
    else
      out[k] = isFull(mv, 16)
        ? { value: Number(mv.value) }
        : { value: Number(mv.value), mask: Number(mv.mask) };
  }
  const flags = get("tcp_flags");
  if (flags) {
    if (out.ipProto === 6) out.tcpFlags = { value: Number(flags.value), mask: Number(flags.mask & 0xfffn) };
    else skip("tcp_flags needs ip_proto tcp");
  }
  const icmp = out.ipProto === 1 || out.ipProto === 58;
  for (const [f, k] of [
    ["icmp_type", "icmpType"],
    ["icmp_code", "icmpCode"],
  ] as const) {
    const mv = get(f);
    if (!mv) continue;
    if (icmp && isFull(mv, 8)) out[k] = { value: Number(mv.value), mask: 0xff };
    else skip(`${f} needs ip_proto icmp or icmpv6 and an exact value`);
  }
  const tunId = get("tun_id");
  if (tunId) {
    if (isFull(tunId, 64) && tunId.value <= 0xffffffffn) out.encKeyId = Number(tunId.value);
    else skip("tun_id must be an exact 32-bit key for flower");
  }
  for (const [f, k] of [
    ["tun_src", "encSrcIp"],
    ["tun_dst", "encDstIp"],
  ] as const) {
    const mv = get(f);
    if (mv) out[k] = masked(mv, 32, ipv4);
  }
  const ct = get("ct_state");
  if (ct) out.ctState = { value: ctFlags(ct.value), mask: ctFlags(ct.mask) };
  const zone = get("ct_zone");
  if (zone) out.ctZone = { value: Number(zone.value), mask: Number(zone.mask & 0xffffn) };
  const mark = get("ct_mark");
  if (mark) out.ctMark = { value: Number(mark.value), mask: Number(mark.mask & 0xffffffffn) };
  for (const f of Object.keys(m)) {
    if (!HANDLED.has(f)) skip(`match on ${f} has no flower key in flowdrake`);
  }
  return ethType === undefined ? { match: out } : { match: out, ethType };
}

const HANDLED = new Set<string>([
  "eth_type",
  "vlan_vid",
  "vlan_pcp",
  "eth_src",
  "eth_dst",
  "ip_proto",
  "ip_dscp",
  "nw_ttl",
  "ipv4_src",
  "ipv4_dst",
  "ipv6_src",
  "ipv6_dst",
  "tp_src",
  "tp_dst",
  "tcp_flags",
  "icmp_type",
  "icmp_code",
  "tun_id",
  "tun_src",
  "tun_dst",
  "ct_state",
  "ct_zone",
  "ct_mark",
]);

/** The planner's NAT range as act_ct's: `nat src|dst addr A-B port P-Q`; none, a restoring `nat`. */
function ctNat(r: CtNatRange | undefined): NonNullable<Extract<FlowerAction, { kind: "ct" }>["nat"]> {
  if (!r) return {};
  return {
    type: r.kind,
    ...(r.ipMin !== undefined ? { addrMin: r.ipMin, addrMax: r.ipMax ?? r.ipMin } : {}),
    ...(r.portMin !== undefined ? { portMin: r.portMin, portMax: r.portMax ?? r.portMin } : {}),
  };
}

function translateActions(
  actions: readonly TcAction[],
  l3: number | undefined,
  ctx: TranslateContext,
): FlowerAction[] {
  const out: FlowerAction[] = [];
  let munge: PeditMunge[] | undefined;
  let ttlChanged = false;
  const flushPedit = (): void => {
    if (!munge) return;
    out.push({ kind: "pedit", munge, control: TC_ACT.PIPE });
    if (ttlChanged) out.push({ kind: "csum", flags: TCA_CSUM_UPDATE_FLAG.IPV4HDR, control: TC_ACT.PIPE });
    munge = undefined;
    ttlChanged = false;
  };
  const dev = (name: string): number => {
    const i = ctx.ifindex(name);
    if (i === undefined) throw new Untranslatable(`device ${name} does not exist`);
    return i;
  };
  for (const a of actions) {
    if (a.type === "pedit") {
      if (a.field !== "eth_src" && a.field !== "eth_dst")
        throw new Untranslatable(`flowdrake does not rewrite ${a.field} in tc`);
      (munge ??= []).push({
        header: "eth",
        field: a.field === "eth_src" ? "src" : "dst",
        op: "set",
        value: mac(a.value),
      });
      continue;
    }
    if (a.type === "dec_ttl") {
      if (l3 !== 0x800) throw new Untranslatable("dec_ttl is translated for IPv4 only");
      (munge ??= []).push({ header: "ip", field: "ttl", op: "add", value: 0xff });
      ttlChanged = true;
      continue;
    }
    flushPedit();
    switch (a.type) {
      case "goto":
        out.push({ kind: "gact", control: (TC_ACT.GOTO_CHAIN | a.chain) >>> 0 });
        break;
      case "drop":
        out.push({ kind: "gact", control: TC_ACT.SHOT });
        break;
      case "pass":
        out.push({ kind: "gact", control: ctx.flags === "skip_sw" ? TC_ACT.TRAP : TC_ACT.OK });
        break;
      case "redirect":
      case "mirror":
        out.push({
          kind: "mirred",
          direction: "egress",
          mode: a.type,
          ifindex: dev(a.dev),
          dev: a.dev,
          control: a.type === "redirect" ? TC_ACT.STOLEN : TC_ACT.PIPE,
        });
        break;
      case "vlan_push":
        out.push({ kind: "vlan", op: "push", id: a.vid, control: TC_ACT.PIPE });
        break;
      case "vlan_pop":
        out.push({ kind: "vlan", op: "pop", control: TC_ACT.PIPE });
        break;
      case "tunnel_set":
        if (a.id > 0xffffffn) throw new Untranslatable(`tunnel key ${a.id} is wider than a VNI`);
        out.push({
          kind: "tunnel_key",
          op: "set",
          src: ctx.tunnelSrc,
          dst: ipv4(a.dst),
          id: Number(a.id),
          dstPort: a.tunnel === "vxlan" ? 4789 : 6081,
          ttl: 64,
          csum: false,
          control: TC_ACT.PIPE,
        });
        break;
      case "tunnel_unset":
        out.push({ kind: "tunnel_key", op: "unset", control: TC_ACT.PIPE });
        break;
      case "ct_clear":
        out.push({ kind: "ct", clear: true, control: TC_ACT.PIPE });
        break;
      case "ct":
        out.push({
          kind: "ct",
          zone: a.zone,
          ...(a.commit ? { commit: true } : {}),
          ...(a.nat ? { nat: ctNat(a.natRange) } : {}),
          control: TC_ACT.PIPE,
        });
        break;
    }
  }
  flushPedit();
  return out;
}

/** One device filter as a flower rule with flowdrake's cookie, or why it cannot be one. */
export function translate(d: DeviceRule, ctx: TranslateContext): Translation {
  const trap = d.kind === "trap";
  if (ctx.maxPrio !== undefined && d.rule.prio > ctx.maxPrio)
    return { ok: false, reason: `prio ${d.rule.prio} is beyond the NIC's ${ctx.maxPrio}` };
  try {
    const { match, ethType } = translateMatch(d.rule.match, trap);
    const l3 = ethType === ETH_P_8021Q ? match.vlanEthType : ethType;
    const cookie = filterCookie(d.key, flaggedSig(d.sig, ctx.flags));
    const actions = translateActions(d.rule.actions, l3, ctx).map((a) => ({ ...a, cookie }));
    const rule: FlowerRule = {
      chain: d.rule.chain,
      prio: d.rule.prio,
      protocol: ETH_P_ALL,
      match,
      actions,
    };
    if (ethType !== undefined) rule.ethType = ethType;
    if (ctx.flags !== "none") rule.flags = ctx.flags === "skip_sw" ? { skipSw: true } : { skipHw: true };
    return { ok: true, rule };
  } catch (err) {
    if (err instanceof Untranslatable) return { ok: false, reason: err.message };
    throw err;
  }
}
