/**
 * The tc vocabulary as data: every attribute set and C struct flowdrake sends
 * or reads for qdiscs, filters, flower keys and actions, with the kernel ids
 * from the uapi headers of Linux 6.1 (the headers iproute2 6.1 builds
 * against; ids are append-only, so newer kernels agree). Each set names its
 * header. Names are the kernel's, minus the set prefix
 * (TCA_FLOWER_KEY_ETH_DST → KEY_ETH_DST).
 *
 * `nestedFlag` marks the nests where iproute2 sets NLA_F_NESTED
 * (TCA_ACT_OPTIONS, TCA_FLOWER_KEY_ENC_OPTS…); the filter's TCA_OPTIONS, the
 * action list and its items go without it, exactly as `tc` sends them.
 * Kind-dependent payloads (TCA_OPTIONS by TCA_KIND, TCA_ACT_OPTIONS by
 * TCA_ACT_KIND) are resolved from the sibling KIND attribute.
 */
import { attrSet, type AttrSet, type StructDef } from "../attrs.js";

/** struct tcmsg (linux/rtnetlink.h). */
export const TCMSG_SIZE = 20;
export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_GETQDISC = 38;
export const RTM_NEWTFILTER = 44;
export const RTM_DELTFILTER = 45;
export const RTM_GETTFILTER = 46;

/** Parents and handles (linux/pkt_sched.h). */
export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
export const TC_H_CLSACT = TC_H_INGRESS;
export const TC_H_MIN_INGRESS = 0xfff2;
export const TC_H_MIN_EGRESS = 0xfff3;
export const TC_H_INGRESS_PARENT = 0xfffffff2; // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
export const TC_H_EGRESS_PARENT = 0xfffffff3;
export const INGRESS_QDISC_HANDLE = 0xffff0000;

/** tc_gen: the common head of every action's parameter struct (linux/pkt_cls.h). */
const tcGen = [
  ["index", "u32", 0],
  ["capab", "u32", 4],
  ["action", "s32", 8],
  ["refcnt", "s32", 12],
  ["bindcnt", "s32", 16],
] as const;

/** TC_ACT_* verdicts (linux/pkt_cls.h). */
export const TC_ACT = {
  UNSPEC: -1,
  OK: 0,
  RECLASSIFY: 1,
  SHOT: 2,
  PIPE: 3,
  STOLEN: 4,
  QUEUED: 5,
  REPEAT: 6,
  REDIRECT: 7,
  TRAP: 8,
  JUMP: 0x10000000,
  GOTO_CHAIN: 0x20000000,
} as const;
export const TC_ACT_EXT_OPCODE_MAX = 0x0fffffff;

export const TCA_CLS_FLAGS = { SKIP_HW: 1, SKIP_SW: 2, IN_HW: 4, NOT_IN_HW: 8, VERBOSE: 16 } as const;

export const tcfT: StructDef = {
  name: "tcf_t",
  header: "linux/pkt_cls.h",
  size: 32,
  fields: [
    ["install", "u64", 0],
    ["lastuse", "u64", 8],
    ["expires", "u64", 16],
    ["firstuse", "u64", 24],
  ],
};

export const gnetStatsBasic: StructDef = {
  name: "gnet_stats_basic",
  header: "linux/gen_stats.h",
  size: 16,
  fields: [
    ["bytes", "u64", 0],
    ["packets", "u32", 8],
  ],
};

/** TCA_STATS_* (linux/gen_stats.h). */
export const statsAttrs = attrSet("TCA_STATS", "linux/gen_stats.h 6.1", {
  BASIC: { id: 1, type: "struct", struct: gnetStatsBasic },
  RATE_EST: { id: 2, type: "binary" },
  QUEUE: { id: 3, type: "binary" },
  APP: { id: 4, type: "binary" },
  RATE_EST64: { id: 5, type: "binary" },
  PAD: { id: 6, type: "binary" },
  BASIC_HW: { id: 7, type: "struct", struct: gnetStatsBasic },
  PKT64: { id: 8, type: "u64" },
});

const struct = (name: string, header: string, size: number, extra: StructDef["fields"] = []): StructDef => ({
  name,
  header,
  size,
  fields: [...tcGen, ...extra],
});

export const tcGact = struct("tc_gact", "linux/tc_act/tc_gact.h", 20);
export const tcMirred = struct("tc_mirred", "linux/tc_act/tc_mirred.h", 28, [
  ["eaction", "s32", 20],
  ["ifindex", "u32", 24],
]);
export const tcTunnelKey = struct("tc_tunnel_key", "linux/tc_act/tc_tunnel_key.h", 24, [
  ["t_action", "s32", 20],
]);
export const tcVlan = struct("tc_vlan", "linux/tc_act/tc_vlan.h", 24, [["v_action", "s32", 20]]);
export const tcCsum = struct("tc_csum", "linux/tc_act/tc_csum.h", 24, [["update_flags", "u32", 20]]);
export const tcCt = struct("tc_ct", "linux/tc_act/tc_ct.h", 20);
export const tcPeditKey: StructDef = {
  name: "tc_pedit_key",
  header: "linux/tc_act/tc_pedit.h",
  size: 24,
  fields: [
    ["mask", "be32", 0],
    ["val", "be32", 4],
    ["off", "u32", 8],
    ["at", "u32", 12],
    ["offmask", "u32", 16],
    ["shift", "u32", 20],
  ],
};
export const tcPeditSel: StructDef = {
  ...struct("tc_pedit_sel", "linux/tc_act/tc_pedit.h", 24, [
    ["nkeys", "u8", 20],
    ["flags", "u8", 21],
  ]),
  tail: { name: "keys", struct: tcPeditKey, countField: "nkeys" },
};

/** TCA_GACT_* (linux/tc_act/tc_gact.h). */
export const gactAttrs = attrSet("TCA_GACT", "linux/tc_act/tc_gact.h 6.1", {
  TM: { id: 1, type: "struct", struct: tcfT },
  PARMS: { id: 2, type: "struct", struct: tcGact },
  PROB: { id: 3, type: "binary" },
  PAD: { id: 4, type: "binary" },
});

/** TCA_MIRRED_* (linux/tc_act/tc_mirred.h). */
export const mirredAttrs = attrSet("TCA_MIRRED", "linux/tc_act/tc_mirred.h 6.1", {
  TM: { id: 1, type: "struct", struct: tcfT },
  PARMS: { id: 2, type: "struct", struct: tcMirred },
  PAD: { id: 3, type: "binary" },
  BLOCKID: { id: 4, type: "u32" },
});
export const TCA_EGRESS_REDIR = 1;
export const TCA_EGRESS_MIRROR = 2;
export const TCA_INGRESS_REDIR = 3;
export const TCA_INGRESS_MIRROR = 4;

/** TCA_TUNNEL_KEY_ENC_OPT_GENEVE_* (linux/tc_act/tc_tunnel_key.h). */
const tunnelGeneveOpt = attrSet("TCA_TUNNEL_KEY_ENC_OPT_GENEVE", "linux/tc_act/tc_tunnel_key.h 6.1", {
  CLASS: { id: 1, type: "be16" },
  TYPE: { id: 2, type: "u8" },
  DATA: { id: 3, type: "binary" },
});
const tunnelEncOpts = attrSet("TCA_TUNNEL_KEY_ENC_OPTS", "linux/tc_act/tc_tunnel_key.h 6.1", {
  GENEVE: { id: 1, type: "nested", nested: () => tunnelGeneveOpt, repeated: true },
  VXLAN: { id: 2, type: "binary" },
  ERSPAN: { id: 3, type: "binary" },
});

/** TCA_TUNNEL_KEY_* (linux/tc_act/tc_tunnel_key.h). */
export const tunnelKeyAttrs = attrSet("TCA_TUNNEL_KEY", "linux/tc_act/tc_tunnel_key.h 6.1", {
  TM: { id: 1, type: "struct", struct: tcfT },
  PARMS: { id: 2, type: "struct", struct: tcTunnelKey },
  ENC_IPV4_SRC: { id: 3, type: "ipv4" },
  ENC_IPV4_DST: { id: 4, type: "ipv4" },
  ENC_IPV6_SRC: { id: 5, type: "ipv6" },
  ENC_IPV6_DST: { id: 6, type: "ipv6" },
  ENC_KEY_ID: { id: 7, type: "be32" },
  PAD: { id: 8, type: "binary" },
  ENC_DST_PORT: { id: 9, type: "be16" },
  NO_CSUM: { id: 10, type: "u8" },
  ENC_OPTS: { id: 11, type: "nested", nested: () => tunnelEncOpts },
  ENC_TOS: { id: 12, type: "u8" },
  ENC_TTL: { id: 13, type: "u8" },
  NO_FRAG: { id: 14, type: "flag" },
});
export const TCA_TUNNEL_KEY_ACT_SET = 1;
export const TCA_TUNNEL_KEY_ACT_RELEASE = 2;

/** TCA_VLAN_* (linux/tc_act/tc_vlan.h). */
export const vlanAttrs = attrSet("TCA_VLAN", "linux/tc_act/tc_vlan.h 6.1", {
  TM: { id: 1, type: "struct", struct: tcfT },
  PARMS: { id: 2, type: "struct", struct: tcVlan },
  PUSH_VLAN_ID: { id: 3, type: "u16" },
  PUSH_VLAN_PROTOCOL: { id: 4, type: "be16" },
  PAD: { id: 5, type: "binary" },
  PUSH_VLAN_PRIORITY: { id: 6, type: "u8" },
  PUSH_ETH_DST: { id: 7, type: "mac" },
  PUSH_ETH_SRC: { id: 8, type: "mac" },
});
export const TCA_VLAN_ACT = { POP: 1, PUSH: 2, MODIFY: 3, POP_ETH: 4, PUSH_ETH: 5 } as const;

/** TCA_PEDIT_KEY_EX_* (linux/tc_act/tc_pedit.h). */
const peditKeyEx = attrSet("TCA_PEDIT_KEY_EX", "linux/tc_act/tc_pedit.h 6.1", {
  HTYPE: { id: 1, type: "u16" },
  CMD: { id: 2, type: "u16" },
});
const peditKeysEx = attrSet("TCA_PEDIT_KEYS_EX", "linux/tc_act/tc_pedit.h 6.1", {
  KEY_EX: { id: 6, type: "nested", nested: () => peditKeyEx, nestedFlag: true, repeated: true },
});

/** TCA_PEDIT_* (linux/tc_act/tc_pedit.h). */
export const peditAttrs = attrSet("TCA_PEDIT", "linux/tc_act/tc_pedit.h 6.1", {
  TM: { id: 1, type: "struct", struct: tcfT },
  PARMS: { id: 2, type: "struct", struct: tcPeditSel },
  PAD: { id: 3, type: "binary" },
  PARMS_EX: { id: 4, type: "struct", struct: tcPeditSel },
  KEYS_EX: { id: 5, type: "nested", nested: () => peditKeysEx, nestedFlag: true },
});
export const TCA_PEDIT_KEY_EX_HDR_TYPE = { NETWORK: 0, ETH: 1, IP4: 2, IP6: 3, TCP: 4, UDP: 5 } as const;
export const TCA_PEDIT_KEY_EX_CMD = { SET: 0, ADD: 1 } as const;

/** TCA_CSUM_* (linux/tc_act/tc_csum.h). */
export const csumAttrs = attrSet("TCA_CSUM", "linux/tc_act/tc_csum.h 6.1", {
  PARMS: { id: 1, type: "struct", struct: tcCsum },
  TM: { id: 2, type: "struct", struct: tcfT },
  PAD: { id: 3, type: "binary" },
});
export const TCA_CSUM_UPDATE_FLAG = {
  IPV4HDR: 1,
  ICMP: 2,
  IGMP: 4,
  TCP: 8,
  UDP: 16,
  UDPLITE: 32,
  SCTP: 64,
} as const;

/** TCA_CT_* (linux/tc_act/tc_ct.h). */
export const ctAttrs = attrSet("TCA_CT", "linux/tc_act/tc_ct.h 6.1", {
  PARMS: { id: 1, type: "struct", struct: tcCt },
  TM: { id: 2, type: "struct", struct: tcfT },
  ACTION: { id: 3, type: "u16" },
  ZONE: { id: 4, type: "u16" },
  MARK: { id: 5, type: "u32" },
  MARK_MASK: { id: 6, type: "u32" },
  LABELS: { id: 7, type: "binary" },
  LABELS_MASK: { id: 8, type: "binary" },
  NAT_IPV4_MIN: { id: 9, type: "ipv4" },
  NAT_IPV4_MAX: { id: 10, type: "ipv4" },
  NAT_IPV6_MIN: { id: 11, type: "ipv6" },
  NAT_IPV6_MAX: { id: 12, type: "ipv6" },
  NAT_PORT_MIN: { id: 13, type: "be16" },
  NAT_PORT_MAX: { id: 14, type: "be16" },
  PAD: { id: 15, type: "binary" },
  HELPER_NAME: { id: 16, type: "string" },
  HELPER_FAMILY: { id: 17, type: "u8" },
  HELPER_PROTO: { id: 18, type: "u8" },
});
export const TCA_CT_ACT = { COMMIT: 1, FORCE: 2, CLEAR: 4, NAT: 8, NAT_SRC: 16, NAT_DST: 32 } as const;

/** Action kind → its TCA_ACT_OPTIONS set. */
export const actionOptionSets: Record<string, AttrSet> = {
  gact: gactAttrs,
  mirred: mirredAttrs,
  tunnel_key: tunnelKeyAttrs,
  vlan: vlanAttrs,
  pedit: peditAttrs,
  csum: csumAttrs,
  ct: ctAttrs,
};

/** TCA_ACT_* (linux/pkt_cls.h): one action inside a filter's action list. */
export const actAttrs: AttrSet = attrSet("TCA_ACT", "linux/pkt_cls.h 6.1", {
  KIND: { id: 1, type: "string" },
  OPTIONS: {
    id: 2,
    type: "nested",
    nestedFlag: true,
    nested: (ctx) => actionOptionSets[String(ctx?.KIND)],
  },
  INDEX: { id: 3, type: "u32" },
  STATS: { id: 4, type: "nested", nested: () => statsAttrs, nestedFlag: true },
  PAD: { id: 5, type: "binary" },
  COOKIE: { id: 6, type: "binary" },
  FLAGS: { id: 7, type: "binary" },
  HW_STATS: { id: 8, type: "binary" },
  USED_HW_STATS: { id: 9, type: "binary" },
  IN_HW_COUNT: { id: 10, type: "u32" },
});

/** TCA_FLOWER_KEY_ENC_OPT_GENEVE_* (linux/pkt_cls.h). */
const flowerGeneveOpt = attrSet("TCA_FLOWER_KEY_ENC_OPT_GENEVE", "linux/pkt_cls.h 6.1", {
  CLASS: { id: 1, type: "be16" },
  TYPE: { id: 2, type: "u8" },
  DATA: { id: 3, type: "binary" },
});
/** TCA_FLOWER_KEY_ENC_OPTS_* (linux/pkt_cls.h). */
export const flowerEncOpts = attrSet("TCA_FLOWER_KEY_ENC_OPTS", "linux/pkt_cls.h 6.1", {
  GENEVE: { id: 1, type: "nested", nested: () => flowerGeneveOpt, repeated: true },
  VXLAN: { id: 2, type: "binary" },
  ERSPAN: { id: 3, type: "binary" },
  GTP: { id: 4, type: "binary" },
});

/** TCA_FLOWER_* (linux/pkt_cls.h, Linux 6.1). */
export const flowerAttrs = attrSet("TCA_FLOWER", "linux/pkt_cls.h 6.1", {
  CLASSID: { id: 1, type: "u32" },
  INDEV: { id: 2, type: "string" },
  ACT: { id: 3, type: "nested-array", nested: () => actAttrs },
  KEY_ETH_DST: { id: 4, type: "mac" },
  KEY_ETH_DST_MASK: { id: 5, type: "mac" },
  KEY_ETH_SRC: { id: 6, type: "mac" },
  KEY_ETH_SRC_MASK: { id: 7, type: "mac" },
  KEY_ETH_TYPE: { id: 8, type: "be16" },
  KEY_IP_PROTO: { id: 9, type: "u8" },
  KEY_IPV4_SRC: { id: 10, type: "ipv4" },
  KEY_IPV4_SRC_MASK: { id: 11, type: "ipv4" },
  KEY_IPV4_DST: { id: 12, type: "ipv4" },
  KEY_IPV4_DST_MASK: { id: 13, type: "ipv4" },
  KEY_IPV6_SRC: { id: 14, type: "ipv6" },
  KEY_IPV6_SRC_MASK: { id: 15, type: "ipv6" },
  KEY_IPV6_DST: { id: 16, type: "ipv6" },
  KEY_IPV6_DST_MASK: { id: 17, type: "ipv6" },
  KEY_TCP_SRC: { id: 18, type: "be16" },
  KEY_TCP_DST: { id: 19, type: "be16" },
  KEY_UDP_SRC: { id: 20, type: "be16" },
  KEY_UDP_DST: { id: 21, type: "be16" },
  FLAGS: { id: 22, type: "u32" },
  KEY_VLAN_ID: { id: 23, type: "u16" },
  KEY_VLAN_PRIO: { id: 24, type: "u8" },
  KEY_VLAN_ETH_TYPE: { id: 25, type: "be16" },
  KEY_ENC_KEY_ID: { id: 26, type: "be32" },
  KEY_ENC_IPV4_SRC: { id: 27, type: "ipv4" },
  KEY_ENC_IPV4_SRC_MASK: { id: 28, type: "ipv4" },
  KEY_ENC_IPV4_DST: { id: 29, type: "ipv4" },
  KEY_ENC_IPV4_DST_MASK: { id: 30, type: "ipv4" },
  KEY_ENC_IPV6_SRC: { id: 31, type: "ipv6" },
  KEY_ENC_IPV6_SRC_MASK: { id: 32, type: "ipv6" },
  KEY_ENC_IPV6_DST: { id: 33, type: "ipv6" },
  KEY_ENC_IPV6_DST_MASK: { id: 34, type: "ipv6" },
  KEY_TCP_SRC_MASK: { id: 35, type: "be16" },
  KEY_TCP_DST_MASK: { id: 36, type: "be16" },
  KEY_UDP_SRC_MASK: { id: 37, type: "be16" },
  KEY_UDP_DST_MASK: { id: 38, type: "be16" },
  KEY_SCTP_SRC_MASK: { id: 39, type: "be16" },
  KEY_SCTP_DST_MASK: { id: 40, type: "be16" },
  KEY_SCTP_SRC: { id: 41, type: "be16" },
  KEY_SCTP_DST: { id: 42, type: "be16" },
  KEY_ENC_UDP_SRC_PORT: { id: 43, type: "be16" },
  KEY_ENC_UDP_SRC_PORT_MASK: { id: 44, type: "be16" },
  KEY_ENC_UDP_DST_PORT: { id: 45, type: "be16" },
  KEY_ENC_UDP_DST_PORT_MASK: { id: 46, type: "be16" },
  KEY_FLAGS: { id: 47, type: "be32" },
  KEY_FLAGS_MASK: { id: 48, type: "be32" },
  KEY_ICMPV4_CODE: { id: 49, type: "u8" },
  KEY_ICMPV4_CODE_MASK: { id: 50, type: "u8" },
  KEY_ICMPV4_TYPE: { id: 51, type: "u8" },
  KEY_ICMPV4_TYPE_MASK: { id: 52, type: "u8" },
  KEY_ICMPV6_CODE: { id: 53, type: "u8" },
  KEY_ICMPV6_CODE_MASK: { id: 54, type: "u8" },
  KEY_ICMPV6_TYPE: { id: 55, type: "u8" },
  KEY_ICMPV6_TYPE_MASK: { id: 56, type: "u8" },
  KEY_ARP_SIP: { id: 57, type: "ipv4" },
  KEY_ARP_SIP_MASK: { id: 58, type: "ipv4" },
  KEY_ARP_TIP: { id: 59, type: "ipv4" },
  KEY_ARP_TIP_MASK: { id: 60, type: "ipv4" },
  KEY_ARP_OP: { id: 61, type: "u8" },
  KEY_ARP_OP_MASK: { id: 62, type: "u8" },
  KEY_ARP_SHA: { id: 63, type: "mac" },
  KEY_ARP_SHA_MASK: { id: 64, type: "mac" },
  KEY_ARP_THA: { id: 65, type: "mac" },
  KEY_ARP_THA_MASK: { id: 66, type: "mac" },
  KEY_MPLS_TTL: { id: 67, type: "u8" },
  KEY_MPLS_BOS: { id: 68, type: "u8" },
  KEY_MPLS_TC: { id: 69, type: "u8" },
  KEY_MPLS_LABEL: { id: 70, type: "u32" },
  KEY_TCP_FLAGS: { id: 71, type: "be16" },
  KEY_TCP_FLAGS_MASK: { id: 72, type: "be16" },
  KEY_IP_TOS: { id: 73, type: "u8" },
  KEY_IP_TOS_MASK: { id: 74, type: "u8" },
  KEY_IP_TTL: { id: 75, type: "u8" },
  KEY_IP_TTL_MASK: { id: 76, type: "u8" },
  KEY_CVLAN_ID: { id: 77, type: "u16" },
  KEY_CVLAN_PRIO: { id: 78, type: "u8" },
  KEY_CVLAN_ETH_TYPE: { id: 79, type: "be16" },
  KEY_ENC_IP_TOS: { id: 80, type: "u8" },
  KEY_ENC_IP_TOS_MASK: { id: 81, type: "u8" },
  KEY_ENC_IP_TTL: { id: 82, type: "u8" },
  KEY_ENC_IP_TTL_MASK: { id: 83, type: "u8" },
  KEY_ENC_OPTS: { id: 84, type: "nested", nested: () => flowerEncOpts },
  KEY_ENC_OPTS_MASK: { id: 85, type: "nested", nested: () => flowerEncOpts },
  IN_HW_COUNT: { id: 86, type: "u32" },
  KEY_PORT_SRC_MIN: { id: 87, type: "be16" },
  KEY_PORT_SRC_MAX: { id: 88, type: "be16" },
  KEY_PORT_DST_MIN: { id: 89, type: "be16" },
  KEY_PORT_DST_MAX: { id: 90, type: "be16" },
  KEY_CT_STATE: { id: 91, type: "u16" },
  KEY_CT_STATE_MASK: { id: 92, type: "u16" },
  KEY_CT_ZONE: { id: 93, type: "u16" },
  KEY_CT_ZONE_MASK: { id: 94, type: "u16" },
  KEY_CT_MARK: { id: 95, type: "u32" },
  KEY_CT_MARK_MASK: { id: 96, type: "u32" },
  KEY_CT_LABELS: { id: 97, type: "binary" },
  KEY_CT_LABELS_MASK: { id: 98, type: "binary" },
});
export const TCA_FLOWER_KEY_CT_FLAGS = { new: 1, est: 2, rel: 4, trk: 8, inv: 16, rpl: 32 } as const;

/** Kind → its TCA_OPTIONS set (qdiscs ingress/clsact carry no options). */
export const tcaOptionSets: Record<string, AttrSet> = { flower: flowerAttrs };

/** TCA_* (linux/rtnetlink.h, 6.1): the attributes after a struct tcmsg. */
export const tcaAttrs = attrSet("TCA", "linux/rtnetlink.h 6.1", {
  KIND: { id: 1, type: "string" },
  OPTIONS: { id: 2, type: "nested", nested: (ctx) => tcaOptionSets[String(ctx?.KIND)] },
  STATS: { id: 3, type: "binary" },
  XSTATS: { id: 4, type: "binary" },
  RATE: { id: 5, type: "binary" },
  FCNT: { id: 6, type: "binary" },
  STATS2: { id: 7, type: "nested", nested: () => statsAttrs, nestedFlag: true },
  STAB: { id: 8, type: "binary" },
  PAD: { id: 9, type: "binary" },
  DUMP_INVISIBLE: { id: 10, type: "flag" },
  CHAIN: { id: 11, type: "u32" },
  HW_OFFLOAD: { id: 12, type: "u8" },
  INGRESS_BLOCK: { id: 13, type: "u32" },
  EGRESS_BLOCK: { id: 14, type: "u32" },
  DUMP_FLAGS: { id: 15, type: "binary" },
  EXT_WARN_MSG: { id: 16, type: "string" },
});
