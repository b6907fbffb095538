/**
 * The OpenFlow pipeline of br-int, declared once: every table with its id, its
 * name (what apps write) and its purpose (what `flowdrake pipeline` prints),
 * what a packet that matches nothing there does, and the registers the tables
 * hand each other. Apps never write a table number: they ask `table("l2_lookup")`.
 *
 * A packet from a VM walks: classification (which network, which port) →
 * port security (is the source who it claims to be) → security groups
 * (conntrack, ingress side) → DHCP (punt requests to the local agent) → ARP/ND
 * responder (answer in flows) → L3 (distributed router) → NAT → L2 lookup
 * (local port or remote chassis) → egress security groups → local delivery or
 * the tunnel to the remote chassis. A packet from a tunnel enters at
 * classification with its network from the tunnel key and goes straight to L2
 * lookup; it is never flooded back into a tunnel (split horizon, reg0 bit 0).
 * Provider (vlan/flat) networks leave and enter through a patch port to the
 * physical bridge their physical network maps to, tagged for vlan (reg0 bit 1).
 *
 * Table ids leave gaps so that a later app can slot a table in without
 * renumbering (and without a flow-table flush on upgrade). The layout follows
 * Dragonflow's pipeline (classification, port security, conntrack, services,
 * L2/L3, egress) rather than OVN's logical stages, because flowdrake programs
 * physical tables directly.
 */

export interface TableDef {
  id: number;
  name: string;
  purpose: string;
  /** What a packet that matches no app flow does: drop, or continue in the next table. */
  miss: "drop" | { goto: string };
}

const DEFS = [
  {
    id: 0,
    name: "classification",
    purpose: "in_port of a local VM or a tunnel → network key (reg6), ingress port (reg5)",
    miss: "drop",
  },
  {
    id: 5,
    name: "port_security",
    purpose: "anti-spoofing: source MAC/IP (with allowed address pairs), no DHCP server replies from VMs",
    miss: "drop",
  },
  {
    id: 10,
    name: "ingress_secgroup",
    purpose: "security groups, traffic leaving a VM (conntrack) — reserved, no app yet: passes",
    miss: { goto: "dhcp" },
  },
  {
    id: 15,
    name: "dhcp",
    purpose: "DHCPv4 requests from ports on DHCP-enabled subnets → local agent (metered)",
    miss: { goto: "arp_responder" },
  },
  {
    id: 20,
    name: "arp_responder",
    purpose: "ARP requests for known addresses answered in flows; ND solicitations → agent",
    miss: { goto: "l3" },
  },
  {
    id: 30,
    name: "l3",
    purpose: "distributed router between subnets — reserved, no app yet: passes",
    miss: { goto: "nat" },
  },
  {
    id: 35,
    name: "nat",
    purpose: "DNAT/SNAT for floating IPs and SNAT gateways — reserved, no app yet: passes",
    miss: { goto: "l2_lookup" },
  },
  {
    id: 40,
    name: "l2_lookup",
    purpose: "destination MAC → local port (reg7) or remote chassis (reg8); broadcast/unknown flood",
    miss: "drop",
  },
  {
    id: 50,
    name: "egress_tunnel",
    purpose: "to a remote chassis: tun_dst from reg8, tun_id = segmentation id, out the tunnel port",
    miss: "drop",
  },
  {
    id: 52,
    name: "egress_provider",
    purpose: "to a vlan/flat provider network: VLAN tag, out the patch port to the physical bridge",
    miss: "drop",
  },
  {
    id: 55,
    name: "egress_secgroup",
    purpose: "security groups, traffic entering a VM (conntrack) — reserved, no app yet: passes",
    miss: { goto: "local_delivery" },
  },
  { id: 60, name: "local_delivery", purpose: "reg7 → output to that local port", miss: "drop" },
] as const satisfies readonly TableDef[];

export type TableName = (typeof DEFS)[number]["name"];

export const PIPELINE: readonly TableDef[] = DEFS;

const BY_NAME = new Map<string, TableDef>(PIPELINE.map((t) => [t.name, t]));

/** The id of a pipeline table by name. */
export function table(name: TableName): number {
  return BY_NAME.get(name)!.id;
}

export function tableById(id: number): TableDef | undefined {
  return PIPELINE.find((t) => t.id === id);
}

/**
 * Registers the tables hand each other (NXM_NX_REGn). Declared here so that
 * every app reads the same meaning.
 */
export const REG = {
  /** bit flags; bit 0 = the packet came in from a tunnel (never flood it back) */
  flags: "reg0",
  /** OpenFlow port the packet came in on, for a local VM (0 from a tunnel) */
  inPort: "reg5",
  /** network key: the segmentation id of a tunnelled network */
  network: "reg6",
  /** destination local port (ofport), set by L2 lookup */
  outPort: "reg7",
  /** destination chassis tunnel IPv4 address, set by L2 lookup */
  remoteChassis: "reg8",
} as const;

export const FLAG_FROM_TUNNEL = 0x1;
/** reg0 bit 1: the packet came in from a provider (physical) network: never send it back there. */
export const FLAG_FROM_PROVIDER = 0x2;

/** Priority of the miss flow every table gets from the pipeline itself. */
export const MISS_PRIORITY = 0;

/** The miss flows (ovs-ofctl text) the pipeline installs in every table. */
export function missFlows(): string[] {
  return PIPELINE.map((t) =>
    t.miss === "drop"
      ? `table=${t.id},priority=${MISS_PRIORITY},actions=drop`
      : `table=${t.id},priority=${MISS_PRIORITY},actions=goto_table:${BY_NAME.get(t.miss.goto)!.id}`,
  );
}

/** The table map as `flowdrake pipeline` prints it. */
export function formatPipeline(): string {
  const rows = PIPELINE.map((t) => [
    String(t.id),
    t.name,
    t.miss === "drop" ? "drop" : `→ ${t.miss.goto}`,
    t.purpose,
  ]);
  const head = ["TABLE", "NAME", "MISS", "PURPOSE"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}
