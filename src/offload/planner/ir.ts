/**
 * The planner's view of a flow: the OpenFlow pipeline reduced to what an
 * offload decision depends on. Matches are value/mask pairs on named fields
 * (ovs-fields spelling); actions are a small closed set. The OpenFlow layer
 * converts its `Flow` into this form (see from-openflow.ts); tests and the
 * benchmark build it directly.
 *
 *   table t, priority p, match {field: value/mask}, actions [..]
 *
 * Every field is declared once below with its width and the offload
 * vocabulary key a NIC profile must claim for it; a field with no key (for
 * example a register) has no tc-flower counterpart and can only be handled by
 * the planner when its value is known from an earlier table.
 */
import type { ActionKind, MatchKey } from "../profiles/vocabulary.js";

export interface FieldDef {
  bits: number;
  /** The profile capability that matching on this field needs; undefined: not a packet header. */
  key?: MatchKey;
  /** The profile capability that rewriting this field needs (set_field). */
  rewrite?: ActionKind;
  /** Metadata that lives only in the pipeline (registers): tracked, never matched in hardware. */
  pipelineOnly?: boolean;
  /** Connection-tracking state the ct action sets: it stays with a packet tc hands over to OVS. */
  conntrack?: boolean;
}

type RegIndex = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15;
const regs = Object.fromEntries(
  Array.from({ length: 16 }, (_, i) => [`reg${i}`, { bits: 32, pipelineOnly: true } satisfies FieldDef]),
) as Record<`reg${RegIndex}`, FieldDef>;

export const fields = {
  in_port: { bits: 32, key: "indev" },
  eth_src: { bits: 48, key: "eth_src", rewrite: "pedit_eth" },
  eth_dst: { bits: 48, key: "eth_dst", rewrite: "pedit_eth" },
  eth_type: { bits: 16, key: "eth_type" },
  vlan_vid: { bits: 13, key: "vlan_id", rewrite: "vlan_modify" },
  vlan_pcp: { bits: 3, key: "vlan_prio", rewrite: "vlan_modify" },
  ip_proto: { bits: 8, key: "ip_proto" },
  ip_dscp: { bits: 6, key: "ip_tos" },
  nw_ttl: { bits: 8, key: "ip_ttl", rewrite: "pedit_ttl" },
  ipv4_src: { bits: 32, key: "ipv4_addr", rewrite: "pedit_ip" },
  ipv4_dst: { bits: 32, key: "ipv4_addr", rewrite: "pedit_ip" },
  ipv6_src: { bits: 128, key: "ipv6_addr", rewrite: "pedit_ip" },
  ipv6_dst: { bits: 128, key: "ipv6_addr", rewrite: "pedit_ip" },
  tp_src: { bits: 16, key: "l4_port", rewrite: "pedit_l4" },
  tp_dst: { bits: 16, key: "l4_port", rewrite: "pedit_l4" },
  tcp_flags: { bits: 12, key: "tcp_flags" },
  icmp_type: { bits: 8, key: "icmp" },
  icmp_code: { bits: 8, key: "icmp" },
  arp_op: { bits: 16, key: "arp" },
  arp_spa: { bits: 32, key: "arp" },
  arp_tpa: { bits: 32, key: "arp" },
  tun_id: { bits: 64, key: "enc_key_id" },
  tun_src: { bits: 32, key: "enc_addr" },
  tun_dst: { bits: 32, key: "enc_addr" },
  ct_state: { bits: 32, key: "ct_state", conntrack: true },
  ct_zone: { bits: 16, key: "ct_zone", conntrack: true },
  ct_mark: { bits: 32, key: "ct_mark", conntrack: true },
  metadata: { bits: 64, pipelineOnly: true },
  ...regs,
} satisfies Record<string, FieldDef>;

export type FieldName = keyof typeof fields & string;

export function fieldDef(name: string): FieldDef | undefined {
  return (fields as Record<string, FieldDef>)[name];
}

export interface MatchValue {
  value: bigint;
  /** All ones when exact. */
  mask: bigint;
}

export type Match = Partial<Record<FieldName, MatchValue>>;

export type Action =
  | { type: "output"; port: number }
  | { type: "goto"; table: number }
  | { type: "set_field"; field: FieldName; value: bigint }
  | { type: "dec_ttl" }
  | { type: "push_vlan"; vid: number }
  | { type: "pop_vlan" }
  /**
   * Encapsulate: set the tunnel key/destination, then output to a tunnel port.
   * `dstFrom` names a register holding the destination (move:reg→tun_dst);
   * `dst` is then unused.
   */
  | {
      type: "set_tunnel";
      id: bigint;
      dst: bigint;
      tunnel: "vxlan" | "geneve";
      options?: number;
      dstFrom?: FieldName;
    }
  /** `natRange`: the translation a NAT with a kind sets up (ct nat without one only restores). */
  /** `mark`: a commit's write of the connection's ct_mark (exec(set_field:value/mask->ct_mark)). */
  | {
      type: "ct";
      zone: number;
      commit: boolean;
      nat: boolean;
      natRange?: CtNatRange;
      mark?: { value: bigint; mask: bigint };
      table?: number;
    }
  | { type: "controller"; reason?: string }
  /** Something the planner does not model (learn, group, meter, note with effects…): never offloaded. */
  | { type: "other"; name: string };

/** What `nat(src=…)`/`nat(dst=…)` translates to: tc's ct nat src|dst addr A[-B] port P[-Q]. */
export interface CtNatRange {
  kind: "src" | "dst";
  ipMin?: string;
  ipMax?: string;
  portMin?: number;
  portMax?: number;
}

export interface PipelineRule {
  /** Stable identity for incremental planning and for --explain (e.g. the flow's cookie and key). */
  id: string;
  table: number;
  priority: number;
  match: Match;
  /** Executed in order; an empty list drops the packet. */
  actions: Action[];
  /** Match fields the planner does not model (kept so the rule is never offloaded by mistake). */
  opaqueMatch?: string[];
}

export const fullMask = (bits: number): bigint => (1n << BigInt(bits)) - 1n;

export function exact(field: FieldName, value: bigint | number): MatchValue {
  return { value: BigInt(value), mask: fullMask(fields[field].bits) };
}

/** How OpenFlow ports map onto netdevs the NIC's embedded switch knows. */
export interface PortMap {
  /** ofport → representor/uplink netdev name, for ports the eswitch owns. */
  hardware: Map<number, string>;
  /** ofport → tunnel type, for flow-based tunnel ports (encap on output, decap on input). */
  tunnels: Map<number, "vxlan" | "geneve">;
  /**
   * ofport of a patch port → the MACs of the host's own ports on the physical
   * bridge behind it. Such a port is also in `hardware`, as that bridge's
   * uplink: the bridge switches (NORMAL) between the patch port, the uplink
   * and its own ports, so only packets whose destination MAC says where they
   * go may bypass it (see plan.ts, "A patch port mapped to an uplink").
   */
  bridged?: Map<number, readonly bigint[]>;
}
