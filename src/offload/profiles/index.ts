/**
 * NIC capability profiles: what each embedded switch can carry, as data. The
 * planner asks a profile "can you do this match / this action / this tunnel?"
 * and gets a yes or a reason. Profiles are matched to devices by PCI vendor and
 * device id (physical and virtual function ids both listed), else by driver.
 *
 * Sources. Claims follow vendor documentation and the upstream mlx5 driver:
 *  [ofed]   NVIDIA MLNX_OFED / DOCA user manuals, chapter "OVS Offload Using
 *           ASAP² Direct" (supported matches, actions, tunnel types per device
 *           family; "Offloading VXLAN/GENEVE Encapsulation/Decapsulation
 *           Actions"; "Connection Tracking Offload": ConnectX-6 Dx and later,
 *           BlueField-2 and later).
 *  [pciids] the PCI ID repository, vendor 15b3 (device ids below).
 *  [mlx5]   Linux drivers/net/ethernet/mellanox/mlx5/core/en_tc.c and tc/ act
 *           handlers (which tc actions the driver parses; pedit fields it
 *           rewrites; geneve option matching limited to one TLV on the
 *           families that support it).
 *  [mlx5-fs] the same driver's flow-table sizing: fs_ft_pool.c (the
 *           firmware's flow-table pools, the largest 4M entries), and
 *           lib/fs_chains.c (each tc (chain, prio) table is created with
 *           FT_TBL_SZ = 64K entries; without ignore_flow_level — ConnectX-4
 *           Lx — only prios 1..16 of chain 0, TC_MAX_PRIO).
 * The capacity is the offload budget's default (src/offload/datapath/
 * budget.ts): filters the NIC holds, across its ports; `offload.capacity`
 * overrides it for a NIC whose firmware or memory allows less.
 * Where documentation is vague a profile claims the smaller set: an operator
 * loses a little offload, never correctness, because anything not claimed
 * stays in OVS software tables.
 */
import type { ActionKind, MatchKey, TunnelType } from "./vocabulary.js";

export interface NicProfile {
  id: string;
  name: string;
  /** PCI vendor id (lowercase hex, no 0x) and device ids (PF and VF). */
  pci?: { vendor: string; devices: string[] };
  /** Drivers this profile applies to when no PCI id matched. */
  drivers?: string[];
  /** Can the device run an embedded switch in switchdev mode at all? */
  switchdev: boolean;
  matches: MatchKey[];
  actions: ActionKind[];
  tunnels: TunnelType[];
  /** Geneve option TLVs that can be matched/set (0 = none). */
  geneveOptions: number;
  /** Established-connection offload through act_ct. */
  conntrack: boolean;
  /** Max tc chain id the hardware handles (goto chain targets). */
  maxChain: number;
  /** Max tc prio the hardware handles, where it is limited. */
  maxPrio?: number;
  /** What the offload budget may place on the NIC, with the source of the numbers. */
  capacity?: {
    /** Flower filters across all ports of the eswitch. */
    filters: number;
    /** Filters of one (chain, prio) table, where the vendor's driver sizes them. */
    perChainPrio?: number;
    source: string;
  };
  notes: string[];
}

/** mlx5 in switchdev mode: [mlx5-fs]. */
const mlx5Capacity = {
  filters: 4 * 1024 * 1024,
  perChainPrio: 64 * 1024,
  source:
    "mlx5 fs_ft_pool.c (largest firmware flow-table pool: 4M entries) and lib/fs_chains.c (FT_TBL_SZ: 64K entries per tc chain/prio table)",
};

const l2l4: MatchKey[] = [
  "indev",
  "eth_type",
  "eth_dst",
  "eth_src",
  "vlan_id",
  "vlan_prio",
  "ip_proto",
  "ipv4_addr",
  "ipv6_addr",
  "ip_tos",
  "ip_ttl",
  "ip_flags",
  "l4_port",
  "tcp_flags",
  "icmp",
];
const tunnelMatch: MatchKey[] = ["enc_key_id", "enc_addr", "enc_addr6", "enc_dst_port"];
const baseActions: ActionKind[] = [
  "redirect",
  "mirror",
  "drop",
  "goto_chain",
  "vlan_push",
  "vlan_pop",
  "vlan_modify",
  "tunnel_encap",
  "tunnel_decap",
];
const rewrite: ActionKind[] = ["pedit_eth", "pedit_ttl", "pedit_ip", "pedit_l4", "csum"];
const ctMatch: MatchKey[] = ["ct_state", "ct_zone", "ct_mark", "ct_label"];

/** ConnectX-6 Dx and later, BlueField-2 and later: [ofed] conntrack offload, one Geneve TLV. */
const conntrackFamily = {
  switchdev: true,
  matches: [...l2l4, "cvlan", ...tunnelMatch, "enc_opts_geneve", ...ctMatch],
  actions: [...baseActions, ...rewrite, "ct", "ct_nat", "police", "sample"],
  tunnels: ["vxlan", "geneve", "gre"],
  geneveOptions: 1,
  conntrack: true,
  maxChain: 0xffff,
  capacity: mlx5Capacity,
} satisfies Partial<NicProfile>;

export const profiles: NicProfile[] = [
  {
    id: "connectx-4-lx",
    name: "NVIDIA ConnectX-4 Lx",
    // [pciids] 1015 MT27710 (ConnectX-4 Lx), 1016 its virtual function.
    pci: { vendor: "15b3", devices: ["1015", "1016"] },
    switchdev: true,
    // [ofed] ConnectX-4 Lx: L2–L4 matching, VXLAN only, VLAN push/pop, drop, forward.
    matches: [...l2l4, "enc_key_id", "enc_addr", "enc_dst_port"],
    actions: baseActions,
    tunnels: ["vxlan"],
    geneveOptions: 0,
    conntrack: false,
    maxChain: 0,
    // [mlx5-fs] no ignore_flow_level on this family: tc prios 1..16 only.
    maxPrio: 16,
    capacity: mlx5Capacity,
    notes: [
      "no header rewrite: routed flows (MAC rewrite, TTL decrement) stay in software",
      "no Geneve and no multi-chain: Geneve networks and goto-chain pipelines stay in software",
    ],
  },
  {
    id: "connectx-5",
    name: "NVIDIA ConnectX-5 / ConnectX-5 Ex",
    // [pciids] 1017 ConnectX-5, 1018 VF, 1019 ConnectX-5 Ex, 101a VF.
    pci: { vendor: "15b3", devices: ["1017", "1018", "1019", "101a"] },
    switchdev: true,
    // [ofed] header rewrite and Geneve encap/decap from ConnectX-5; [mlx5] chains and prios.
    matches: [...l2l4, "cvlan", ...tunnelMatch],
    actions: [...baseActions, ...rewrite, "police", "sample"],
    tunnels: ["vxlan", "geneve", "gre"],
    geneveOptions: 0,
    conntrack: false,
    maxChain: 0xffff,
    capacity: mlx5Capacity,
    notes: ["connection tracking is not offloaded on this family: security-group flows stay in software"],
  },
  {
    id: "connectx-6-dx",
    name: "NVIDIA ConnectX-6 Dx / Lx",
    // [pciids] 101d ConnectX-6 Dx, 101e ConnectX family VF, 101f ConnectX-6 Lx.
    pci: { vendor: "15b3", devices: ["101d", "101e", "101f"] },
    // [ofed] "Connection Tracking Offload" and Geneve TLV option matching from ConnectX-6 Dx.
    ...conntrackFamily,
    notes: ["one Geneve option TLV can be matched (mlx5 flex parser)"],
  },
  {
    id: "connectx-7",
    name: "NVIDIA ConnectX-7",
    // [pciids] 1021 ConnectX-7 (VFs share 101e).
    pci: { vendor: "15b3", devices: ["1021"] },
    ...conntrackFamily,
    notes: [],
  },
  {
    id: "bluefield-2",
    name: "NVIDIA BlueField-2 DPU",
    // [pciids] a2d6 BlueField-2 integrated ConnectX-6 Dx network controller.
    pci: { vendor: "15b3", devices: ["a2d6"] },
    ...conntrackFamily,
    notes: [
      "the eswitch is managed from the DPU's Arm side; run the agent there (host representors c1pf0vfN)",
    ],
  },
  {
    id: "bluefield-3",
    name: "NVIDIA BlueField-3 DPU",
    // [pciids] a2dc BlueField-3 integrated ConnectX-7 network controller.
    pci: { vendor: "15b3", devices: ["a2dc"] },
    ...conntrackFamily,
    notes: [
      "the eswitch is managed from the DPU's Arm side; run the agent there (host representors c1pf0vfN)",
    ],
  },
  {
    id: "none",
    name: "no hardware offload",
    drivers: ["virtio_net", "veth", "e1000", "e1000e", "vmxnet3", "tun", "dummy", "bridge", "openvswitch"],
    switchdev: false,
    matches: [],
    actions: [],
    tunnels: [],
    geneveOptions: 0,
    conntrack: false,
    maxChain: 0,
    capacity: { filters: 0, source: "no embedded switch" },
    notes: ["software datapath only: every flow stays in OVS"],
  },
];

export function profileById(id: string): NicProfile {
  const p = profiles.find((x) => x.id === id);
  if (!p) throw new Error(`unknown NIC profile ${id}; known: ${profiles.map((x) => x.id).join(", ")}`);
  return p;
}

/** The profile for a device: by PCI id, else by driver, else "none". */
export function profileFor(dev: { pciVendor?: string; pciDevice?: string; driver?: string }): NicProfile {
  const vendor = normHex(dev.pciVendor);
  const device = normHex(dev.pciDevice);
  if (vendor && device) {
    const byPci = profiles.find((p) => p.pci?.vendor === vendor && p.pci.devices.includes(device));
    if (byPci) return byPci;
  }
  const byDriver = dev.driver ? profiles.find((p) => p.drivers?.includes(dev.driver!)) : undefined;
  return byDriver ?? profileById("none");
}

function normHex(v: string | undefined): string | undefined {
  return v?.trim().toLowerCase().replace(/^0x/, "").padStart(4, "0");
}
