/**
 * The user's rule (FlowerRule) and its conversion to and from TCA_* attributes.
 *
 * Three layers stay apart: FlowerRule (what a person or the offload planner
 * means: "tcp to 10.0.0.0/24 → tunnel_key set … → mirred redirect"), the
 * attribute values (schema.ts names), and the wire (attrs.ts). Both
 * conversions are driven by tables (`matchFields`, `actionCodecs`), one entry
 * per flower key or action kind.
 *
 * Order matters for byte-exact agreement with iproute2: `tc` writes flower keys
 * and most action options in command-line order, then TCA_FLOWER_FLAGS, then
 * TCA_FLOWER_KEY_ETH_TYPE. FlowerRule.match and the option fields of actions
 * are ordinary objects whose key insertion order is that order: the parser
 * inserts in command-line order, the decoder in wire order, and the encoder
 * walks keys in insertion order. So the CLI reproduces tc's bytes and a decoded
 * rule re-encodes to the bytes it came from.
 */
import { EncodeError } from "../../../util/errors.js";
import type { AttrValues, StructValue } from "../attrs.js";
import {
  TC_ACT,
  TCA_CLS_FLAGS,
  TCA_CT_ACT,
  TCA_EGRESS_MIRROR,
  TCA_EGRESS_REDIR,
  TCA_INGRESS_MIRROR,
  TCA_INGRESS_REDIR,
  TCA_PEDIT_KEY_EX_CMD,
  TCA_PEDIT_KEY_EX_HDR_TYPE,
  TCA_TUNNEL_KEY_ACT_RELEASE,
  TCA_TUNNEL_KEY_ACT_SET,
  TCA_VLAN_ACT,
} from "./schema.js";

export const ETH_P_ALL = 0x0003;
export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const ETH_P_ARP = 0x0806;

export interface Masked<T> {
  value: T;
  mask?: T;
}

export interface GeneveOpt {
  class: number;
  type: number;
  data: string; // hex
}

/** Flower keys. Insertion order = wire order (see the module comment). */
export interface FlowerMatch {
  indev?: string;
  dstMac?: Masked<string>;
  srcMac?: Masked<string>;
  vlanId?: number;
  vlanPrio?: number;
  vlanEthType?: number;
  ipProto?: number;
  ipTos?: Masked<number>;
  ipTtl?: Masked<number>;
  srcIp?: Masked<string>;
  dstIp?: Masked<string>;
  srcPort?: Masked<number>;
  dstPort?: Masked<number>;
  tcpFlags?: Masked<number>;
  /** ICMP (ip_proto 1) or ICMPv6 (ip_proto 58) type and code; tc writes the mask even when it is full. */
  icmpType?: Masked<number>;
  icmpCode?: Masked<number>;
  ctState?: Masked<number>;
  ctZone?: Masked<number>;
  ctMark?: Masked<number>;
  encKeyId?: number;
  encSrcIp?: Masked<string>;
  encDstIp?: Masked<string>;
  encDstPort?: Masked<number>;
  encTos?: Masked<number>;
  encTtl?: Masked<number>;
  geneveOpts?: { value: GeneveOpt[]; mask: GeneveOpt[] };
}

export interface ActionStats {
  bytes: bigint;
  packets: number;
  hwBytes?: bigint;
  hwPackets?: number;
  /** Seconds since the action was installed / last used (tcf_t, USER_HZ ticks). */
  installedSecs?: number;
  lastUseSecs?: number;
}

export interface ActionCommon {
  /** TC_ACT_* verdict after this action (default depends on the kind, as in tc). */
  control?: number;
  index?: number;
  /**
   * TCA_ACT_COOKIE: up to 16 opaque bytes (hex) the kernel keeps with the
   * action and returns in dumps (`tc … action … cookie HEX`). flowdrake tags
   * the actions of the filters it installs with it.
   */
  cookie?: string;
  stats?: ActionStats;
}

/** TC_COOKIE_MAX_SIZE (linux/pkt_cls.h): the longest action cookie, in bytes. */
export const TC_COOKIE_MAX_SIZE = 16;

export type PeditMunge =
  | { header: "eth"; field: "dst" | "src"; op: "set"; value: string }
  | { header: "ip"; field: "ttl"; op: "set" | "add"; value: number };

export interface PeditRawKey {
  htype: number;
  cmd: number;
  off: number;
  mask: number;
  val: number;
}

export type FlowerAction =
  | (ActionCommon & { kind: "gact" })
  | (ActionCommon & {
      kind: "mirred";
      direction: "egress" | "ingress";
      mode: "redirect" | "mirror";
      ifindex: number;
      dev?: string;
    })
  | (ActionCommon & {
      kind: "tunnel_key";
      op: "set" | "unset";
      src?: string;
      dst?: string;
      id?: number;
      dstPort?: number;
      geneveOpts?: GeneveOpt[];
      tos?: number;
      ttl?: number;
      csum?: boolean;
    })
  | (ActionCommon & {
      kind: "vlan";
      op: "pop" | "push" | "modify";
      id?: number;
      priority?: number;
      protocol?: number;
    })
  | (ActionCommon & { kind: "pedit"; munge?: PeditMunge[]; keys?: PeditRawKey[] })
  | (ActionCommon & { kind: "csum"; flags: number })
  | (ActionCommon & {
      kind: "ct";
      commit?: boolean;
      force?: boolean;
      clear?: boolean;
      zone?: number;
      mark?: Masked<number>;
      nat?: { type?: "src" | "dst"; addrMin?: string; addrMax?: string; portMin?: number; portMax?: number };
    })
  | (ActionCommon & { kind: "other"; name: string; options?: Buffer });

export interface FlowerFlags {
  skipHw?: boolean;
  skipSw?: boolean;
  inHw?: boolean;
  notInHw?: boolean;
  verbose?: boolean;
}

export interface FlowerRule {
  chain?: number;
  prio: number;
  /** Ethertype; ETH_P_ALL (3) matches every protocol. */
  protocol: number;
  /**
   * The flower eth_type key of a filter whose protocol is ETH_P_ALL
   * (TCA_FLOWER_KEY_ETH_TYPE without a protocol in tcm_info), so that
   * filters of several ethertypes can share one prio. iproute2 always sends
   * the key equal to the protocol, and never this way.
   */
  ethType?: number;
  handle?: number;
  match: FlowerMatch;
  actions: FlowerAction[];
  flags?: FlowerFlags;
  /** Decoded from the kernel: how many devices hold the rule in hardware. */
  inHwCount?: number;
  /** A class id (flowid/classid), rarely used with flower. */
  classid?: number;
}

// ---------------------------------------------------------------- match keys

type MatchKey = keyof FlowerMatch;
type PortAttrs = Record<number, [string, string]>;

type MatchField =
  | { kind: "value"; attr: string }
  | { kind: "masked"; attr: string; mask: string }
  | { kind: "ip"; v4: [string, string]; v6: [string, string] }
  | { kind: "port"; byProto: PortAttrs }
  | { kind: "icmp"; byProto: PortAttrs }
  | { kind: "geneve" };

const port = (dir: "SRC" | "DST"): PortAttrs => ({
  6: [`KEY_TCP_${dir}`, `KEY_TCP_${dir}_MASK`],
  17: [`KEY_UDP_${dir}`, `KEY_UDP_${dir}_MASK`],
  132: [`KEY_SCTP_${dir}`, `KEY_SCTP_${dir}_MASK`],
});

const icmp = (what: "TYPE" | "CODE"): PortAttrs => ({
  1: [`KEY_ICMPV4_${what}`, `KEY_ICMPV4_${what}_MASK`],
  58: [`KEY_ICMPV6_${what}`, `KEY_ICMPV6_${what}_MASK`],
});

/** FlowerMatch key → TCA_FLOWER_* attributes. */
export const matchFields: Record<MatchKey, MatchField> = {
  indev: { kind: "value", attr: "INDEV" },
  dstMac: { kind: "masked", attr: "KEY_ETH_DST", mask: "KEY_ETH_DST_MASK" },
  srcMac: { kind: "masked", attr: "KEY_ETH_SRC", mask: "KEY_ETH_SRC_MASK" },
  vlanId: { kind: "value", attr: "KEY_VLAN_ID" },
  vlanPrio: { kind: "value", attr: "KEY_VLAN_PRIO" },
  vlanEthType: { kind: "value", attr: "KEY_VLAN_ETH_TYPE" },
  ipProto: { kind: "value", attr: "KEY_IP_PROTO" },
  ipTos: { kind: "masked", attr: "KEY_IP_TOS", mask: "KEY_IP_TOS_MASK" },
  ipTtl: { kind: "masked", attr: "KEY_IP_TTL", mask: "KEY_IP_TTL_MASK" },
  srcIp: { kind: "ip", v4: ["KEY_IPV4_SRC", "KEY_IPV4_SRC_MASK"], v6: ["KEY_IPV6_SRC", "KEY_IPV6_SRC_MASK"] },
  dstIp: { kind: "ip", v4: ["KEY_IPV4_DST", "KEY_IPV4_DST_MASK"], v6: ["KEY_IPV6_DST", "KEY_IPV6_DST_MASK"] },
  srcPort: { kind: "port", byProto: port("SRC") },
  dstPort: { kind: "port", byProto: port("DST") },
  tcpFlags: { kind: "masked", attr: "KEY_TCP_FLAGS", mask: "KEY_TCP_FLAGS_MASK" },
  icmpType: { kind: "icmp", byProto: icmp("TYPE") },
  icmpCode: { kind: "icmp", byProto: icmp("CODE") },
  ctState: { kind: "masked", attr: "KEY_CT_STATE", mask: "KEY_CT_STATE_MASK" },
  ctZone: { kind: "masked", attr: "KEY_CT_ZONE", mask: "KEY_CT_ZONE_MASK" },
  ctMark: { kind: "masked", attr: "KEY_CT_MARK", mask: "KEY_CT_MARK_MASK" },
  encKeyId: { kind: "value", attr: "KEY_ENC_KEY_ID" },
  encSrcIp: {
    kind: "ip",
    v4: ["KEY_ENC_IPV4_SRC", "KEY_ENC_IPV4_SRC_MASK"],
    v6: ["KEY_ENC_IPV6_SRC", "KEY_ENC_IPV6_SRC_MASK"],
  },
  encDstIp: {
    kind: "ip",
    v4: ["KEY_ENC_IPV4_DST", "KEY_ENC_IPV4_DST_MASK"],
    v6: ["KEY_ENC_IPV6_DST", "KEY_ENC_IPV6_DST_MASK"],
  },
  encDstPort: { kind: "masked", attr: "KEY_ENC_UDP_DST_PORT", mask: "KEY_ENC_UDP_DST_PORT_MASK" },
  encTos: { kind: "masked", attr: "KEY_ENC_IP_TOS", mask: "KEY_ENC_IP_TOS_MASK" },
  encTtl: { kind: "masked", attr: "KEY_ENC_IP_TTL", mask: "KEY_ENC_IP_TTL_MASK" },
  geneveOpts: { kind: "geneve" },
};

/** Attribute name → [match key, role], derived from matchFields. */
const attrToMatch = new Map<string, [MatchKey, "value" | "mask"]>();
for (const [key, f] of Object.entries(matchFields) as [MatchKey, MatchField][]) {
  if (f.kind === "value") attrToMatch.set(f.attr, [key, "value"]);
  else if (f.kind === "masked") {
    attrToMatch.set(f.attr, [key, "value"]);
    attrToMatch.set(f.mask, [key, "mask"]);
  } else if (f.kind === "ip") {
    for (const [a, m] of [f.v4, f.v6]) {
      attrToMatch.set(a, [key, "value"]);
      attrToMatch.set(m, [key, "mask"]);
    }
  } else if (f.kind === "port" || f.kind === "icmp") {
    for (const [a, m] of Object.values(f.byProto)) {
      attrToMatch.set(a, [key, "value"]);
      attrToMatch.set(m, [key, "mask"]);
    }
  }
}

function geneveToAttrs(opts: GeneveOpt[]): AttrValues {
  return { GENEVE: opts.map((o) => ({ CLASS: o.class, TYPE: o.type, DATA: Buffer.from(o.data, "hex") })) };
}

function geneveFromAttrs(v: AttrValues | undefined): GeneveOpt[] {
  return ((v?.GENEVE as AttrValues[] | undefined) ?? []).map((g) => ({
    class: Number(g.CLASS ?? 0),
    type: Number(g.TYPE ?? 0),
    data: Buffer.isBuffer(g.DATA) ? g.DATA.toString("hex") : "",
  }));
}

function flagsToU32(f: FlowerFlags | undefined): number {
  if (!f) return 0;
  return (
    (f.skipHw ? TCA_CLS_FLAGS.SKIP_HW : 0) |
    (f.skipSw ? TCA_CLS_FLAGS.SKIP_SW : 0) |
    (f.inHw ? TCA_CLS_FLAGS.IN_HW : 0) |
    (f.notInHw ? TCA_CLS_FLAGS.NOT_IN_HW : 0) |
    (f.verbose ? TCA_CLS_FLAGS.VERBOSE : 0)
  );
}

function flagsFromU32(v: number): FlowerFlags {
  const f: FlowerFlags = {};
  if (v & TCA_CLS_FLAGS.SKIP_HW) f.skipHw = true;
  if (v & TCA_CLS_FLAGS.SKIP_SW) f.skipSw = true;
  if (v & TCA_CLS_FLAGS.IN_HW) f.inHw = true;
  if (v & TCA_CLS_FLAGS.NOT_IN_HW) f.notInHw = true;
  if (v & TCA_CLS_FLAGS.VERBOSE) f.verbose = true;
  return f;
}

/** FlowerRule → TCA_OPTIONS values for kind "flower". */
export function flowerOptions(rule: FlowerRule): AttrValues {
  const out: AttrValues = {};
  if (rule.classid !== undefined) out.CLASSID = rule.classid;
  const m = rule.match;
  for (const [key, v] of Object.entries(m) as [MatchKey, unknown][]) {
    if (v === undefined) continue;
    const f = matchFields[key];
    if (!f) throw new EncodeError(`flower: unknown match key ${key}`);
    switch (f.kind) {
      case "value":
        out[f.attr] = v as number | string;
        break;
      case "masked": {
        const mv = v as Masked<number | string>;
        out[f.attr] = mv.value;
        if (mv.mask !== undefined) out[f.mask] = mv.mask;
        break;
      }
      case "ip": {
        const mv = v as Masked<string>;
        const [a, mk] = mv.value.includes(":") ? f.v6 : f.v4;
        out[a] = mv.value;
        if (mv.mask !== undefined) out[mk] = mv.mask;
        break;
      }
      case "port": {
        const attrs = f.byProto[m.ipProto ?? -1];
        if (!attrs)
          throw new EncodeError(`flower: ${key} needs ip_proto tcp, udp or sctp`, { ipProto: m.ipProto });
        const mv = v as Masked<number>;
        out[attrs[0]] = mv.value;
        if (mv.mask !== undefined) out[attrs[1]] = mv.mask;
        break;
      }
      case "icmp": {
        const attrs = f.byProto[m.ipProto ?? -1];
        if (!attrs)
          throw new EncodeError(`flower: ${key} needs ip_proto icmp or icmpv6`, { ipProto: m.ipProto });
        const mv = v as Masked<number>;
        out[attrs[0]] = mv.value;
        out[attrs[1]] = mv.mask ?? 0xff;
        break;
      }
      case "geneve": {
        const g = v as { value: GeneveOpt[]; mask: GeneveOpt[] };
        out.KEY_ENC_OPTS = geneveToAttrs(g.value);
        out.KEY_ENC_OPTS_MASK = geneveToAttrs(g.mask);
        break;
      }
    }
  }
  if (rule.actions.length) out.ACT = rule.actions.map(actionToAttrs);
  out.FLAGS = flagsToU32(rule.flags);
  if (rule.protocol !== ETH_P_ALL) out.KEY_ETH_TYPE = rule.protocol;
  else if (rule.ethType !== undefined) out.KEY_ETH_TYPE = rule.ethType;
  return out;
}

/** TCA_OPTIONS values of a flower filter → the rule's match, actions and flags. */
export function flowerFromOptions(
  opts: AttrValues,
  base: { prio: number; protocol: number; chain?: number; handle?: number },
): FlowerRule {
  const match: FlowerMatch = {};
  const rule: FlowerRule = { ...base, match, actions: [] };
  const put = (key: MatchKey, role: "value" | "mask", v: unknown): void => {
    const f = matchFields[key];
    const rec = match as Record<string, unknown>;
    if (f.kind === "value") rec[key] = v;
    else {
      const cur = (rec[key] as Masked<unknown> | undefined) ?? ({} as Masked<unknown>);
      if (role === "value") cur.value = v;
      else cur.mask = v;
      rec[key] = cur;
    }
  };
  for (const [name, v] of Object.entries(opts)) {
    if (name === "ACT") rule.actions = (v as AttrValues[]).map(actionFromAttrs);
    else if (name === "FLAGS") {
      const f = flagsFromU32(Number(v));
      if (Object.keys(f).length) rule.flags = f;
    } else if (name === "KEY_ETH_TYPE") {
      if (base.protocol === ETH_P_ALL) rule.ethType = Number(v);
      else rule.protocol = Number(v);
    } else if (name === "IN_HW_COUNT") rule.inHwCount = Number(v);
    else if (name === "CLASSID") rule.classid = Number(v);
    else if (name === "KEY_ENC_OPTS" || name === "KEY_ENC_OPTS_MASK") {
      const g = match.geneveOpts ?? { value: [], mask: [] };
      if (name === "KEY_ENC_OPTS") g.value = geneveFromAttrs(v as AttrValues);
      else g.mask = geneveFromAttrs(v as AttrValues);
      match.geneveOpts = g;
    } else {
      const target = attrToMatch.get(name);
      if (target) put(target[0], target[1], v);
    }
  }
  return rule;
}

// ---------------------------------------------------------------- actions

const gen = (a: ActionCommon, fallback: number, extra: StructValue = {}): StructValue => ({
  index: a.index ?? 0,
  capab: 0,
  action: a.control ?? fallback,
  refcnt: 0,
  bindcnt: 0,
  ...extra,
});

interface ActionCodec {
  toOptions(a: FlowerAction): AttrValues;
  fromOptions(o: AttrValues, common: ActionCommon): FlowerAction;
}

const parms = (o: AttrValues, key = "PARMS"): StructValue => (o[key] as StructValue | undefined) ?? {};

function commonFrom(p: StructValue): ActionCommon {
  const c: ActionCommon = { control: Number(p.action ?? 0) };
  if (p.index) c.index = Number(p.index);
  return c;
}

const ETH_HTYPE = TCA_PEDIT_KEY_EX_HDR_TYPE.ETH;
const IP4_HTYPE = TCA_PEDIT_KEY_EX_HDR_TYPE.IP4;

/** pedit munge operations → tc_pedit_key + TCA_PEDIT_KEY_EX, as `tc pedit ex` builds them. */
export function peditKeys(munge: PeditMunge[]): PeditRawKey[] {
  const keys: PeditRawKey[] = [];
  const set = TCA_PEDIT_KEY_EX_CMD.SET;
  for (const m of munge) {
    if (m.header === "eth") {
      const b = Buffer.from(m.value.split(":").map((x) => parseInt(x, 16)));
      if (b.length !== 6) throw new EncodeError(`pedit: bad MAC ${m.value}`);
      if (m.field === "dst") {
        keys.push({ htype: ETH_HTYPE, cmd: set, off: 0, mask: 0, val: b.readUInt32BE(0) });
        keys.push({
          htype: ETH_HTYPE,
          cmd: set,
          off: 4,
          mask: 0x0000ffff,
          val: (b.readUInt16BE(4) << 16) >>> 0,
        });
      } else {
        keys.push({ htype: ETH_HTYPE, cmd: set, off: 4, mask: 0xffff0000, val: b.readUInt16BE(0) });
        keys.push({ htype: ETH_HTYPE, cmd: set, off: 8, mask: 0, val: b.readUInt32BE(2) });
      }
    } else {
      const cmd = m.op === "add" ? TCA_PEDIT_KEY_EX_CMD.ADD : set;
      keys.push({ htype: IP4_HTYPE, cmd, off: 8, mask: 0x00ffffff, val: ((m.value & 0xff) << 24) >>> 0 });
    }
  }
  return keys;
}

/** The inverse of peditKeys, or undefined when the keys are not in that shape. */
export function peditMunge(keys: PeditRawKey[]): PeditMunge[] | undefined {
  const out: PeditMunge[] = [];
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const n = keys[i + 1];
    const mac = (hi: number, lo: number): string => {
      const b = Buffer.alloc(6);
      b.writeUInt32BE(hi >>> 0, 0);
      b.writeUInt16BE(lo, 4);
      return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
    };
    if (
      k.htype === ETH_HTYPE &&
      k.cmd === 0 &&
      k.off === 0 &&
      k.mask === 0 &&
      n?.off === 4 &&
      n.mask === 0x0000ffff
    ) {
      out.push({ header: "eth", field: "dst", op: "set", value: mac(k.val, n.val >>> 16) });
      i++;
    } else if (
      k.htype === ETH_HTYPE &&
      k.cmd === 0 &&
      k.off === 4 &&
      k.mask === 0xffff0000 &&
      n?.off === 8 &&
      n.mask === 0
    ) {
      const b = Buffer.alloc(6);
      b.writeUInt16BE(k.val & 0xffff, 0);
      b.writeUInt32BE(n.val >>> 0, 2);
      out.push({
        header: "eth",
        field: "src",
        op: "set",
        value: Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":"),
      });
      i++;
    } else if (k.htype === IP4_HTYPE && k.off === 8 && k.mask === 0x00ffffff && (k.val & 0xffffff) === 0) {
      out.push({ header: "ip", field: "ttl", op: k.cmd === 1 ? "add" : "set", value: k.val >>> 24 });
    } else return undefined;
  }
  return out;
}

const vlanOps = { pop: TCA_VLAN_ACT.POP, push: TCA_VLAN_ACT.PUSH, modify: TCA_VLAN_ACT.MODIFY } as const;

/** Action kind → codec. Defaults for `control` follow tc (mirred redirect: stolen, most others: pipe). */
export const actionCodecs: Record<string, ActionCodec> = {
  gact: {
    toOptions: (a) => ({ PARMS: gen(a, TC_ACT.OK) }),
    fromOptions: (_o, c) => ({ kind: "gact", ...c }),
  },
  mirred: {
    toOptions: (a) => {
      if (a.kind !== "mirred") throw new EncodeError("mirred codec");
      const redirect = a.mode === "redirect";
      const eaction =
        a.direction === "egress"
          ? redirect
            ? TCA_EGRESS_REDIR
            : TCA_EGRESS_MIRROR
          : redirect
            ? TCA_INGRESS_REDIR
            : TCA_INGRESS_MIRROR;
      return { PARMS: gen(a, redirect ? TC_ACT.STOLEN : TC_ACT.PIPE, { eaction, ifindex: a.ifindex }) };
    },
    fromOptions: (o, c) => {
      const p = parms(o);
      const e = Number(p.eaction);
      return {
        kind: "mirred",
        direction: e === TCA_INGRESS_REDIR || e === TCA_INGRESS_MIRROR ? "ingress" : "egress",
        mode: e === TCA_EGRESS_REDIR || e === TCA_INGRESS_REDIR ? "redirect" : "mirror",
        ifindex: Number(p.ifindex),
        ...c,
      };
    },
  },
  tunnel_key: {
    toOptions: (a) => {
      if (a.kind !== "tunnel_key") throw new EncodeError("tunnel_key codec");
      const o: AttrValues = {};
      for (const [k, v] of Object.entries(a)) {
        if (v === undefined) continue;
        if (k === "src") o[String(v).includes(":") ? "ENC_IPV6_SRC" : "ENC_IPV4_SRC"] = v as string;
        else if (k === "dst") o[String(v).includes(":") ? "ENC_IPV6_DST" : "ENC_IPV4_DST"] = v as string;
        else if (k === "id") o.ENC_KEY_ID = v as number;
        else if (k === "dstPort") o.ENC_DST_PORT = v as number;
        else if (k === "geneveOpts") o.ENC_OPTS = geneveToAttrs(v as GeneveOpt[]);
        else if (k === "tos") o.ENC_TOS = v as number;
        else if (k === "ttl") o.ENC_TTL = v as number;
      }
      o.NO_CSUM = a.csum === false ? 1 : 0;
      const t_action = a.op === "set" ? TCA_TUNNEL_KEY_ACT_SET : TCA_TUNNEL_KEY_ACT_RELEASE;
      o.PARMS = gen(a, TC_ACT.PIPE, { t_action });
      return o;
    },
    fromOptions: (o, c) => {
      const a: FlowerAction & { kind: "tunnel_key" } = {
        kind: "tunnel_key",
        op: Number(parms(o).t_action) === TCA_TUNNEL_KEY_ACT_SET ? "set" : "unset",
      };
      for (const [k, v] of Object.entries(o)) {
        if (k === "ENC_IPV4_SRC" || k === "ENC_IPV6_SRC") a.src = String(v);
        else if (k === "ENC_IPV4_DST" || k === "ENC_IPV6_DST") a.dst = String(v);
        else if (k === "ENC_KEY_ID") a.id = Number(v);
        else if (k === "ENC_DST_PORT") a.dstPort = Number(v);
        else if (k === "ENC_OPTS") a.geneveOpts = geneveFromAttrs(v as AttrValues);
        else if (k === "ENC_TOS") a.tos = Number(v);
        else if (k === "ENC_TTL") a.ttl = Number(v);
        else if (k === "NO_CSUM") a.csum = Number(v) === 0;
      }
      return { ...a, ...c };
    },
  },
  vlan: {
    toOptions: (a) => {
      if (a.kind !== "vlan") throw new EncodeError("vlan codec");
      const o: AttrValues = { PARMS: gen(a, TC_ACT.PIPE, { v_action: vlanOps[a.op] }) };
      if (a.id !== undefined) o.PUSH_VLAN_ID = a.id;
      if (a.protocol !== undefined) o.PUSH_VLAN_PROTOCOL = a.protocol;
      if (a.priority !== undefined) o.PUSH_VLAN_PRIORITY = a.priority;
      return o;
    },
    fromOptions: (o, c) => {
      const v = Number(parms(o).v_action);
      const op = v === TCA_VLAN_ACT.POP ? "pop" : v === TCA_VLAN_ACT.PUSH ? "push" : "modify";
      const a: FlowerAction & { kind: "vlan" } = { kind: "vlan", op };
      if (o.PUSH_VLAN_ID !== undefined) a.id = Number(o.PUSH_VLAN_ID);
      if (o.PUSH_VLAN_PROTOCOL !== undefined) a.protocol = Number(o.PUSH_VLAN_PROTOCOL);
      if (o.PUSH_VLAN_PRIORITY !== undefined) a.priority = Number(o.PUSH_VLAN_PRIORITY);
      return { ...a, ...c };
    },
  },
  pedit: {
    toOptions: (a) => {
      if (a.kind !== "pedit") throw new EncodeError("pedit codec");
      const keys = a.keys ?? peditKeys(a.munge ?? []);
      return {
        PARMS_EX: gen(a, TC_ACT.PIPE, {
          nkeys: keys.length,
          flags: 0,
          keys: keys.map((k) => ({ mask: k.mask, val: k.val, off: k.off, at: 0, offmask: 0, shift: 0 })),
        }),
        KEYS_EX: { KEY_EX: keys.map((k) => ({ HTYPE: k.htype, CMD: k.cmd })) },
      };
    },
    fromOptions: (o, c) => {
      const p = (o.PARMS_EX ?? o.PARMS) as StructValue | undefined;
      const raw = ((p?.keys as StructValue[] | undefined) ?? []).map((k, i) => {
        const ex = ((o.KEYS_EX as AttrValues | undefined)?.KEY_EX as AttrValues[] | undefined)?.[i];
        return {
          htype: Number(ex?.HTYPE ?? 0),
          cmd: Number(ex?.CMD ?? 0),
          off: Number(k.off),
          mask: Number(k.mask),
          val: Number(k.val),
        };
      });
      const munge = peditMunge(raw);
      return munge ? { kind: "pedit", munge, ...c } : { kind: "pedit", keys: raw, ...c };
    },
  },
  csum: {
    toOptions: (a) => {
      if (a.kind !== "csum") throw new EncodeError("csum codec");
      return { PARMS: gen(a, TC_ACT.OK, { update_flags: a.flags }) };
    },
    fromOptions: (o, c) => ({ kind: "csum", flags: Number(parms(o).update_flags ?? 0), ...c }),
  },
  ct: {
    toOptions: (a) => {
      if (a.kind !== "ct") throw new EncodeError("ct codec");
      const o: AttrValues = {};
      let action = 0;
      for (const [k, v] of Object.entries(a)) {
        if (v === undefined) continue;
        if (k === "zone") o.ZONE = v as number;
        else if (k === "mark") {
          const mk = v as Masked<number>;
          o.MARK = mk.value;
          o.MARK_MASK = mk.mask ?? 0xffffffff;
        } else if (k === "nat") {
          const n = v as NonNullable<typeof a.nat>;
          action |= TCA_CT_ACT.NAT;
          if (n.type === "src") action |= TCA_CT_ACT.NAT_SRC;
          if (n.type === "dst") action |= TCA_CT_ACT.NAT_DST;
          const v6 = (n.addrMin ?? "").includes(":");
          if (n.addrMin !== undefined) o[v6 ? "NAT_IPV6_MIN" : "NAT_IPV4_MIN"] = n.addrMin;
          if (n.addrMin !== undefined) o[v6 ? "NAT_IPV6_MAX" : "NAT_IPV4_MAX"] = n.addrMax ?? n.addrMin;
          if (n.portMin !== undefined) o.NAT_PORT_MIN = n.portMin;
          if (n.portMin !== undefined) o.NAT_PORT_MAX = n.portMax ?? n.portMin;
        }
      }
      if (a.commit) action |= TCA_CT_ACT.COMMIT;
      if (a.force) action |= TCA_CT_ACT.FORCE;
      if (a.clear) action |= TCA_CT_ACT.CLEAR;
      o.ACTION = action;
      o.PARMS = gen(a, TC_ACT.PIPE);
      return o;
    },
    fromOptions: (o, c) => {
      const a: FlowerAction & { kind: "ct" } = { kind: "ct" };
      const action = Number(o.ACTION ?? 0);
      for (const [k, v] of Object.entries(o)) {
        if (k === "ZONE") a.zone = Number(v);
        else if (k === "MARK") a.mark = { value: Number(v), mask: Number(o.MARK_MASK ?? 0xffffffff) };
        else if (/^NAT_(IPV[46]|PORT)_MIN$/.test(k) && !a.nat) a.nat = {};
        if (k === "NAT_IPV4_MIN" || k === "NAT_IPV6_MIN") (a.nat ??= {}).addrMin = String(v);
        if (k === "NAT_IPV4_MAX" || k === "NAT_IPV6_MAX") (a.nat ??= {}).addrMax = String(v);
        if (k === "NAT_PORT_MIN") (a.nat ??= {}).portMin = Number(v);
        if (k === "NAT_PORT_MAX") (a.nat ??= {}).portMax = Number(v);
      }
      if (action & TCA_CT_ACT.NAT) {
        a.nat ??= {};
        if (action & TCA_CT_ACT.NAT_SRC) a.nat.type = "src";
        if (action & TCA_CT_ACT.NAT_DST) a.nat.type = "dst";
        // Order nat after zone/mark as the decoder met it: rebuild with type first.
        const { type, ...rest } = a.nat;
        a.nat = { ...(type ? { type } : {}), ...rest };
      }
      if (action & TCA_CT_ACT.COMMIT) a.commit = true;
      if (action & TCA_CT_ACT.FORCE) a.force = true;
      if (action & TCA_CT_ACT.CLEAR) a.clear = true;
      return { ...a, ...c };
    },
  },
};

function cookieBytes(hex: string): Buffer {
  if (!/^([0-9a-f]{2}){1,16}$/i.test(hex)) {
    throw new EncodeError(`action cookie must be 1 to ${TC_COOKIE_MAX_SIZE} bytes of hex, not "${hex}"`, {
      cookie: hex,
    });
  }
  return Buffer.from(hex, "hex");
}

/** One action → TCA_ACT_* values: KIND, OPTIONS, then COOKIE, in iproute2's order. */
export function actionToAttrs(a: FlowerAction): AttrValues {
  const out: AttrValues =
    a.kind === "other"
      ? { KIND: a.name, ...(a.options ? { OPTIONS: a.options } : {}) }
      : { KIND: a.kind, OPTIONS: actionCodecs[a.kind]!.toOptions(a) };
  if (a.cookie !== undefined) out.COOKIE = cookieBytes(a.cookie);
  return out;
}

export function actionFromAttrs(v: AttrValues): FlowerAction {
  const kind = String(v.KIND ?? "");
  const codec = actionCodecs[kind];
  const opts = v.OPTIONS;
  let a: FlowerAction;
  if (!codec || !opts || Buffer.isBuffer(opts)) {
    a = { kind: "other", name: kind, ...(Buffer.isBuffer(opts) ? { options: opts } : {}) };
  } else {
    const o = opts as AttrValues;
    const p = (o.PARMS ?? o.PARMS_EX) as StructValue | undefined;
    a = codec.fromOptions(o, commonFrom(p ?? {}));
    const tm = o.TM as StructValue | undefined;
    const st = v.STATS as AttrValues | undefined;
    if (st || tm) a.stats = statsFrom(st, tm);
  }
  if (Buffer.isBuffer(v.COOKIE)) a.cookie = v.COOKIE.toString("hex");
  return a;
}

function statsFrom(st: AttrValues | undefined, tm: StructValue | undefined): ActionStats {
  const basic = st?.BASIC as StructValue | undefined;
  const hw = st?.BASIC_HW as StructValue | undefined;
  const s: ActionStats = {
    bytes: BigInt((basic?.bytes as bigint | undefined) ?? 0n),
    packets: Number(basic?.packets ?? 0),
  };
  if (hw) {
    s.hwBytes = BigInt((hw.bytes as bigint | undefined) ?? 0n);
    s.hwPackets = Number(hw.packets ?? 0);
  }
  if (tm) {
    s.installedSecs = Number(tm.install) / 100;
    s.lastUseSecs = Number(tm.lastuse) / 100;
  }
  return s;
}
