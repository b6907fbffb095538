/**
 * The offload vocabulary: every match key, action and tunnel type a NIC
 * profile can claim and the planner can ask for, declared once. Names follow
 * the tc-flower/tc-actions terms a person would type (`tc-flower(8)`,
 * `tc-mirred(8)`, `tc-tunnel_key(8)`, `tc-vlan(8)`, `tc-pedit(8)`, `tc-ct(8)`).
 */
export const matchKeys = {
  indev: "ingress device (the representor or uplink the rule is attached to)",
  eth_type: "EtherType",
  eth_dst: "destination MAC (with mask)",
  eth_src: "source MAC (with mask)",
  vlan_id: "802.1Q VLAN id",
  vlan_prio: "802.1Q priority",
  cvlan: "inner VLAN of QinQ",
  ip_proto: "IP protocol",
  ipv4_addr: "IPv4 source/destination (with mask)",
  ipv6_addr: "IPv6 source/destination (with mask)",
  ip_tos: "IP TOS / traffic class",
  ip_ttl: "IP TTL / hop limit",
  ip_flags: "IP fragment flags",
  l4_port: "TCP/UDP source/destination port",
  tcp_flags: "TCP flags",
  icmp: "ICMP/ICMPv6 type and code",
  arp: "ARP opcode and addresses",
  ct_state: "conntrack state",
  ct_zone: "conntrack zone",
  ct_mark: "conntrack mark",
  ct_label: "conntrack label",
  enc_key_id: "tunnel key (VNI)",
  enc_addr: "outer tunnel IPv4 addresses",
  enc_addr6: "outer tunnel IPv6 addresses",
  enc_dst_port: "outer UDP destination port",
  enc_opts_geneve: "Geneve options (TLVs)",
} as const;

export const actionKinds = {
  redirect: "mirred egress redirect to a representor or uplink",
  mirror: "mirred egress mirror",
  drop: "gact drop",
  goto_chain: "gact goto chain (multi-table pipelines)",
  vlan_push: "vlan push",
  vlan_pop: "vlan pop",
  vlan_modify: "vlan modify",
  tunnel_encap: "tunnel_key set (encapsulation)",
  tunnel_decap: "tunnel_key unset (decapsulation)",
  pedit_eth: "pedit of Ethernet addresses (routing MAC rewrite)",
  pedit_ttl: "pedit of IP TTL / hop limit (dec_ttl)",
  pedit_ip: "pedit of IP addresses (stateless NAT)",
  pedit_l4: "pedit of L4 ports",
  csum: "checksum recalculation after pedit",
  ct: "conntrack (ct commit/zone, established-connection offload)",
  ct_nat: "conntrack NAT",
  police: "policer / meter",
  sample: "sFlow-style sampling",
} as const;

export const tunnelTypes = {
  vxlan: "VXLAN (UDP 4789)",
  geneve: "Geneve (UDP 6081)",
  gre: "GRE",
} as const;

export type MatchKey = keyof typeof matchKeys;
export type ActionKind = keyof typeof actionKinds;
export type TunnelType = keyof typeof tunnelTypes;

/** tc kernel modules the offload path needs, by what they provide. */
export const tcModules = {
  cls_flower: "the flower classifier",
  act_mirred: "redirect/mirror actions",
  act_gact: "drop/pass/goto chain actions",
  act_tunnel_key: "tunnel encap/decap actions",
  act_vlan: "VLAN push/pop actions",
  act_pedit: "header rewrite actions",
  act_csum: "checksum fix-up after rewrite",
  act_ct: "conntrack action",
  sch_ingress: "ingress/clsact qdisc",
} as const;

export type TcModule = keyof typeof tcModules;
