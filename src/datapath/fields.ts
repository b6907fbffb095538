/**
 * The registers the pipeline's tables hand each other, every bit range named
 * once (Antrea's fields.go). Apps match and write these through the flow
 * builder (flow.ts) and never spell `reg6` or `NXM_NX_REG0[1]` themselves.
 *
 *   reg   bits    field          set by                 read by
 *   ────  ──────  ─────────────  ─────────────────────  ─────────────────────────
 *   reg0  0       fromTunnel     classification         l2_flood (split horizon)
 *   reg0  1       fromProvider   classification         l2_flood, egress_provider
 *   reg1  0..31   natRoute       nat (before SNAT)      nat_resolve
 *   reg2  0..31   router         l3_admission           l3
 *   reg4  0..31   floodChunk     l2_lookup, l2_flood    l2_flood
 *   reg5  0..31   inPort         classification         apps that answer in place
 *   reg6  0..31   network        classification         every later table
 *   reg7  0..31   outPort        l2_lookup, l2_flood    egress_secgroup, local_delivery
 *   reg8  0..31   remoteChassis  l2_lookup, l2_flood    egress_tunnel (→ tun_dst)
 *   reg9  0..31   resubmitNonce  the agent's packet-out  nothing (see below)
 *   reg10 0..31   macScratchHigh l3 (echo reply)        the same flow (MAC_SCRATCH: 48 bits
 *   reg11 0..31   macScratchLow  l3 (echo reply)        of xreg5, which is reg10:reg11)
 *
 * reg0 is the flag register. Classification writes it whole (it is zero
 * when a packet enters the pipeline) rather than setting single bits: a
 * masked register write is a merge that a NIC cannot offload, a whole write
 * is a plain value. Later tables match single bits with a mask.
 *
 * resubmitNonce is never matched: a packet the agent sends through the
 * pipeline again after a packet-in carries a fresh value in it, so that the
 * state OVS freezes at a `ct(table=…)` — registers included — differs from
 * the punted copy's, and the copy recirculates under a recirc_id of its own
 * instead of hitting the stale datapath flow the punted copy left.
 *
 * router is the key of the router a packet was sent to (`routerKey`): the
 * l3 table routes by router, not by the network the packet came from, so a
 * router's routes, answers and host routes are one set of flows however many
 * networks it joins. MAC_SCRATCH holds a MAC while an echo reply swaps the
 * packet's two (OVS applies moves in order; xreg5 overlays reg10, its high
 * half, and reg11).
 *
 * The network key in reg6 is the segmentation id of a tunnelled network (the
 * VNI, 24 bits); provider networks use keys above that range (see
 * `providerKey`), so one register names every network without collisions.
 * Ranges are checked for overlap inside each register when this module loads.
 */

export interface RegField {
  /** Name in this layout. */
  name: string;
  /** OpenFlow/Nicira register index: regN. */
  reg: number;
  ofs: number;
  nbits: number;
  doc: string;
}

function field(name: string, reg: number, ofs: number, nbits: number, doc: string): RegField {
  return { name, reg, ofs, nbits, doc };
}

export const F = {
  flags: field("flags", 0, 0, 32, "bit flags (FLAG_*), written whole at classification"),
  natRoute: field(
    "natRoute",
    1,
    0,
    32,
    "NAT_ROUTE: where an SNATed packet goes, set before the translation (written whole)",
  ),
  router: field("router", 2, 0, 32, "key of the router the packet was sent to (routerKey), for l3"),
  floodChunk: field("floodChunk", 4, 0, 32, "which chunk of a network's flood set l2_flood is emitting"),
  inPort: field("inPort", 5, 0, 32, "ofport of the local VM the packet came from (0 from a tunnel)"),
  network: field("network", 6, 0, 32, "network key: VNI of a tunnelled network, providerKey() otherwise"),
  outPort: field("outPort", 7, 0, 32, "destination local port (ofport)"),
  remoteChassis: field("remoteChassis", 8, 0, 32, "destination chassis tunnel IPv4 address"),
  resubmitNonce: field("resubmitNonce", 9, 0, 32, "a fresh value on each packet the agent re-injects"),
  macScratchHigh: field("macScratchHigh", 10, 0, 32, "xreg5's high half: see MAC_SCRATCH"),
  macScratchLow: field("macScratchLow", 11, 0, 32, "xreg5's low half: see MAC_SCRATCH"),
} as const satisfies Record<string, RegField>;

export type FieldName = keyof typeof F;

/** Where a flow keeps a MAC for the length of its own actions: 48 bits of xreg5 (reg10:reg11). */
export const MAC_SCRATCH = { field: "xreg5", ofs: 0, nbits: 48 } as const;

/**
 * The router register's value of a router: the top 28 bits of its id's
 * FNV-1a hash (never 0: 0 is no router), then its rank, by id, among the
 * routers whose ids hash alike (at most 16), so two routers never share a
 * key and a router's key depends only on the routers it shares a hash with.
 */
export function routerHash(id: string): number {
  return fnv1a32(id) >>> 4 || 1;
}
export const ROUTER_RANKS = 16;
export function routerKeyOf(hash: number, rank: number): number {
  return ((hash << 4) | rank) >>> 0;
}

/** Bits of the flags register (reg0). */
export const FLAG = {
  /** The packet came in from a tunnel: never send it into a tunnel again. */
  fromTunnel: 0x1,
  /** The packet came in from a provider (physical) network: never send it back there. */
  fromProvider: 0x2,
} as const;

/**
 * Values of natRoute. `offLink`: the packet's destination is beyond every
 * IPv4 subnet of the external network, so in nat_resolve only the way to
 * the subnet's gateway can take it — not a hairpin to a NAT address here,
 * an external VM here or the punt for an on-link next hop. nat decides it
 * before the translation, where the destination is the packet's own, and
 * the offload planner then keeps those rules out of the chains such packets
 * take (their way to the uplink stays on the NIC).
 */
export const NAT_ROUTE = {
  unknown: 0,
  offLink: 1,
} as const;

/**
 * Bits of a connection's ct_mark. `blocked`: the security groups no longer
 * allow this connection (a rule was removed): its packets are dropped in both
 * directions until it ends, and a new connection is checked afresh.
 */
export const CT_MARK = {
  blocked: 0x1,
} as const;

/** The ovs-fields name of a register field's register. */
/** The OXM names of the registers, made once: every flow matching or loading one holds its name. */
const REG_NAMES = Array.from({ length: 16 }, (_, i) => `reg${i}`);

export function regName(f: RegField): string {
  return REG_NAMES[f.reg] ?? `reg${f.reg}`;
}

/** Whether a field covers its whole 32-bit register. */
export function isWhole(f: RegField): boolean {
  return f.ofs === 0 && f.nbits === 32;
}

/** Mask of a field inside its register. */
export function fieldMask(f: RegField): number {
  return f.nbits === 32 ? 0xffffffff : ((1 << f.nbits) - 1) << f.ofs;
}

/** Throws when two fields of one register overlap (other than the whole-register flags). */
export function checkFields(fields: readonly RegField[]): void {
  for (const f of fields) {
    if (f.reg < 0 || f.reg > 15 || f.ofs < 0 || f.nbits < 1 || f.ofs + f.nbits > 32) {
      throw new Error(`fields: ${f.name} (reg${f.reg}[${f.ofs}..${f.ofs + f.nbits - 1}]) is out of range`);
    }
  }
  for (let i = 0; i < fields.length; i++) {
    for (let j = i + 1; j < fields.length; j++) {
      const a = fields[i]!;
      const b = fields[j]!;
      if (a.reg !== b.reg) continue;
      if (a.ofs < b.ofs + b.nbits && b.ofs < a.ofs + a.nbits) {
        throw new Error(`fields: ${a.name} and ${b.name} overlap in reg${a.reg}`);
      }
    }
  }
}
checkFields(Object.values(F));

/** Top of the tunnel key range: a VNI is 24 bits. */
export const VNI_MAX = 0xffffff;

/**
 * reg6 key of a provider network, outside the 24-bit range of tunnel keys:
 * 0x1000000 | VLAN id for vlan, 0x2000000 | a 16-bit hash of the physical
 * network for flat.
 */
export function providerKey(physicalNetwork: string, vlan: number | undefined): number {
  return vlan !== undefined ? 0x1000000 | vlan : 0x2000000 | (fnv1a32(physicalNetwork) & 0xffff);
}

/** FNV-1a, 32 bits: stable hashes for cookies and provider keys. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
