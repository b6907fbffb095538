/**
 * The OpenFlow pipeline of br-int, declared once: every table with its id,
 * its name (what apps write), its stage, its purpose (what `flowdrake
 * pipeline` prints) and what a packet that matches no app flow there does.
 * Apps never write a table number: they name the table, and the typed flow
 * builder (flow.ts) turns the name into the id.
 *
 *   stage        tables
 *   ─────────    ────────────────────────────────────────────────────────────
 *   classify     classification ─► port_security
 *   ingress      ingress_secgroup (─► ingress_secgroup_state) ─► dhcp ─► arp_responder ─► nd_ra
 *   route        l3_admission (─► l3) ─► nat (─► nat_state ─► nat_resolve)
 *   switch       l2_lookup ─► (l2_flood) ─► egress_tunnel | egress_provider
 *   egress       egress_secgroup (─► egress_secgroup_state) ─► local_delivery
 *
 * A packet from a VM walks every stage in order: which network and port it
 * came from, is its source who it claims to be, the security groups on the
 * way out of the VM, DHCP and ARP/ND answered locally, the distributed
 * router and NAT, then L2 lookup (a local port, a remote chassis, or the
 * flood set) and the security groups on the way into the destination VM. A
 * packet from a tunnel or a provider network enters at classification with
 * its network from the tunnel key or VLAN and goes straight to L2 lookup; it
 * is never sent back where it came from (split horizon, register flags in
 * fields.ts). The exceptions are NAT's: a packet from the external network
 * to a floating IP or SNAT address hosted here, and a packet a chassis sends
 * to the SNAT gateway chassis, go from classification to nat; a packet
 * leaving for the external network goes from nat_resolve straight out of the
 * provider patch port.
 *
 * How to add a table: pick an id in the gap between its neighbours (ids
 * leave gaps so that a new table never renumbers the others — renumbering
 * would move every flow on upgrade), give it a name, a stage and a miss,
 * and list it in the `tables` of the app that writes it. Ids must increase
 * in declaration order; that is checked when this module loads, so a
 * mistake fails every test and every command at once.
 */

export type Stage = "classify" | "ingress" | "route" | "switch" | "egress";

export interface TableDef {
  id: number;
  name: string;
  stage: Stage;
  purpose: string;
  /** What a packet that matches no app flow does: drop, or continue in another table. */
  miss: "drop" | { goto: string };
}

const DEFS = [
  {
    id: 0,
    name: "classification",
    stage: "classify",
    purpose: "in_port of a local VM, a tunnel or a provider patch port → network key, ingress port, flags",
    miss: "drop",
  },
  {
    id: 5,
    name: "port_security",
    stage: "classify",
    purpose: "anti-spoofing: source MAC/IP (with allowed address pairs), no DHCP server replies from VMs",
    miss: "drop",
  },
  {
    id: 10,
    name: "ingress_secgroup",
    stage: "ingress",
    purpose: "security groups, traffic leaving a VM: IP of a port with groups → conntrack (zone per port)",
    miss: { goto: "dhcp" },
  },
  {
    id: 11,
    name: "ingress_secgroup_state",
    stage: "ingress",
    purpose:
      "after conntrack: replies and related pass, new and original-direction packets by the egress rules",
    miss: "drop",
  },
  {
    id: 15,
    name: "dhcp",
    stage: "ingress",
    purpose: "DHCPv4 and DHCPv6 requests from ports on DHCP-enabled subnets → local agent (metered)",
    miss: { goto: "arp_responder" },
  },
  {
    id: 20,
    name: "arp_responder",
    stage: "ingress",
    purpose: "ARP requests for known addresses answered in flows; ND solicitations for them → agent",
    miss: { goto: "nd_ra" },
  },
  {
    id: 25,
    name: "nd_ra",
    stage: "ingress",
    purpose:
      "IPv6 router solicitations from ports on networks the router advertises on → local agent (metered)",
    miss: { goto: "l3_admission" },
  },
  {
    id: 28,
    name: "l3_admission",
    stage: "route",
    purpose:
      "sent to a router's MAC on its network: IP of a family the router has an address of there → router key (reg2), l3; the rest dropped",
    miss: { goto: "nat" },
  },
  {
    id: 30,
    name: "l3",
    stage: "route",
    purpose:
      "distributed router, by router key: its addresses answered, routes and host routes (reactive or proactive), ICMP errors",
    miss: "drop",
  },
  {
    id: 35,
    name: "nat",
    stage: "route",
    purpose:
      "to/from an external network: floating IPs on the VM's chassis, SNAT on the gateway chassis → conntrack NAT (zone per router)",
    miss: { goto: "l2_lookup" },
  },
  {
    id: 36,
    name: "nat_state",
    stage: "route",
    purpose:
      "after conntrack NAT: in → router MAC, VM MAC, its network (L2 lookup or tunnel); out → the floating IP's or gateway's MAC",
    miss: "drop",
  },
  {
    id: 37,
    name: "nat_resolve",
    stage: "route",
    purpose:
      "external next hop's MAC (learned from ARP) → out the provider patch port; unknown → local agent, which ARPs (metered)",
    miss: "drop",
  },
  {
    id: 40,
    name: "l2_lookup",
    stage: "switch",
    purpose: "destination MAC → local port (reg7) or remote chassis (reg8); broadcast/unknown → l2_flood",
    miss: "drop",
  },
  {
    id: 45,
    name: "l2_flood",
    stage: "switch",
    purpose:
      "flood set of a network in chunks (reg4 = chunk): copies to local ports, remote chassis, provider",
    miss: "drop",
  },
  {
    id: 50,
    name: "egress_tunnel",
    stage: "switch",
    purpose: "to a remote chassis: tun_dst from reg8, tun_id = segmentation id, out the tunnel port",
    miss: "drop",
  },
  {
    id: 52,
    name: "egress_provider",
    stage: "switch",
    purpose: "to a vlan/flat provider network: VLAN tag, out the patch port to the physical bridge",
    miss: "drop",
  },
  {
    id: 55,
    name: "egress_secgroup",
    stage: "egress",
    purpose: "security groups, traffic entering a VM: IP to a port with groups → conntrack (zone per port)",
    miss: { goto: "local_delivery" },
  },
  {
    id: 56,
    name: "egress_secgroup_state",
    stage: "egress",
    purpose:
      "after conntrack: replies and related pass, new and original-direction packets by the ingress rules",
    miss: "drop",
  },
  {
    id: 60,
    name: "local_delivery",
    stage: "egress",
    purpose: "reg7 → output to that local port",
    miss: "drop",
  },
] as const satisfies readonly TableDef[];

export type TableName = (typeof DEFS)[number]["name"];

export const PIPELINE: readonly TableDef[] = DEFS;

const BY_NAME = new Map<string, TableDef>(PIPELINE.map((t) => [t.name, t]));
const BY_ID = new Map<number, TableDef>(PIPELINE.map((t) => [t.id, t]));

/** Throws when ids do not increase, a miss names an unknown table, or an id is out of range. */
export function checkPipeline(defs: readonly TableDef[]): void {
  let prev = -1;
  const byName = new Map(defs.map((t) => [t.name, t]));
  for (const t of defs) {
    if (!Number.isInteger(t.id) || t.id < 0 || t.id > 253) {
      throw new Error(`pipeline: table ${t.name} has id ${t.id}, outside 0..253`);
    }
    if (t.id <= prev) throw new Error(`pipeline: table ${t.name} (id ${t.id}) does not follow id ${prev}`);
    if (t.miss !== "drop" && !byName.has(t.miss.goto)) {
      throw new Error(`pipeline: table ${t.name} misses to unknown table ${t.miss.goto}`);
    }
    if (t.miss !== "drop" && byName.get(t.miss.goto)!.id <= t.id) {
      throw new Error(`pipeline: table ${t.name} misses backwards to ${t.miss.goto}`);
    }
    prev = t.id;
  }
}
checkPipeline(PIPELINE);

/** The id of a pipeline table by name. */
export function table(name: TableName): number {
  return BY_NAME.get(name)!.id;
}

export function tableById(id: number): TableDef | undefined {
  return BY_ID.get(id);
}

/** Priority of the miss flow every table gets from the pipeline itself. */
export const MISS_PRIORITY = 0;

/** The table map as `flowdrake pipeline` prints it. */
export function formatPipeline(): string {
  const rows = PIPELINE.map((t) => [
    String(t.id),
    t.name,
    t.stage,
    t.miss === "drop" ? "drop" : `→ ${t.miss.goto}`,
    t.purpose,
  ]);
  const head = ["TABLE", "NAME", "STAGE", "MISS", "PURPOSE"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}
