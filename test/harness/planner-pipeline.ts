/**
 * Pipelines and packets for the offload planner's tests.
 *
 * `pipeline(topo)` builds a Dragonflow-shaped OpenFlow pipeline from a small
 * topology, with every shape the planner treats specially somewhere in it:
 *
 *   table 0   classification: VM port (+ port security on eth_src) → reg6=network, then
 *             goto 10, ct(zone, table 5) ("direct" conntrack), ct(commit, zone, table 5)
 *             ("commit") or goto 5 ("recirc");
 *             tunnel port + tun_id → reg6, goto 10 or 15; uplink + VLAN → pop_vlan, reg6, goto 10;
 *             DHCP → CONTROLLER; broadcast from a VM → flood its network, ingress included
 *   table 5/6 conntrack: -trk → ct(zone, table 6) ("recirc"); +est → goto 10; new SSH → drop;
 *             +new → ct(commit, table 10); +inv (not IP) → goto 10
 *   table 10  L2: reg6 + eth_dst → output local / encap to the remote chassis; broadcast → flood
 *             (+ push_vlan to the uplink); router MAC → goto 20; new HTTP → CONTROLLER (ACL log);
 *             ARP request for the gateway (ARP fields only: no NIC matches them) → CONTROLLER;
 *             IPv6 → learn (an action no NIC carries)
 *   table 15  from the tunnel: in_port=tunnel + eth_dst → output; broadcast → flood local ports,
 *             optionally matched on tun_id again (a tunnel match outside table 0)
 *   table 20  L3: ipv4_dst → rewrite MACs, dec_ttl, output
 *
 * `packetArb` draws packets for a topology (from VM ports, the tunnel, the
 * uplink, a port the NIC does not see, and one that does not exist), and
 * `flowArb` sequences of them in which connections repeat, in both
 * directions, so that conntrack state carries from packet to packet.
 *
 * `offloadableArb` draws random multi-table pipelines that are fully
 * offloadable on a ConnectX-6 Dx by construction; `hardwareFlows` lists, for
 * a topology, the packets the NIC must forward on its own.
 */
import fc from "fast-check";
import { expect } from "vitest";
import { Conntrack, type Packet, runSoftware, runSplit } from "../../src/offload/planner/evaluate.js";
import { type Action, exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import type { Plan } from "../../src/offload/planner/plan.js";

export interface Network {
  vni: number;
  ports: number[];
  remoteMacs: number[];
  /** A provider VLAN reached through the uplink. */
  vlan?: number;
}

export interface Topo {
  networks: Network[];
  portSecurity: boolean;
  conntrack: "none" | "direct" | "recirc" | "commit";
  routing: boolean;
  dhcpPunt: boolean;
  oddRule: boolean;
  localFlood: boolean;
  arpResponder: boolean;
  tunnelTable: 10 | 15;
  tunnelKeyFlood: boolean;
}

export const TUNNEL = 100;
export const UPLINK = 90;
export const INTERNAL = 200;
export const UNKNOWN_PORT = 77;
export const mac = (n: number) => 0x020000000000n + BigInt(n);
export const ip = (net: number, host: number) => (10n << 24n) | (BigInt(net) << 8n) | BigInt(host);
export const routerMac = 0x02aa00000001n;
export const BCAST = 0xffffffffffffn;
const gateway = (net: number) => ip(net, 254);
const trk = 0x20n;
const est = 0x02n;
const isNew = 0x01n;
const inv = 0x10n;

export function portsOf(t: Topo): PortMap {
  const hardware = new Map<number, string>();
  for (const n of t.networks) for (const p of n.ports) hardware.set(p, `rep${p}`);
  if (t.networks.some((n) => n.vlan !== undefined)) hardware.set(UPLINK, "p0");
  return { hardware, tunnels: new Map([[TUNNEL, "geneve" as const]]) };
}

export function pipeline(t: Topo): PipelineRule[] {
  const rules: PipelineRule[] = [];
  let id = 0;
  const add = (r: Omit<PipelineRule, "id">) => rules.push({ id: `r${String(++id).padStart(4, "0")}`, ...r });
  const ctTable = t.conntrack === "recirc" ? 6 : 5;
  t.networks.forEach((n, ni) => {
    const net = BigInt(ni + 1);
    const reg6 = exact("reg6", net);
    const next: Action =
      t.conntrack === "direct" || t.conntrack === "commit"
        ? { type: "ct", zone: ni + 1, commit: t.conntrack === "commit", nat: false, table: 5 }
        : { type: "goto", table: t.conntrack === "recirc" ? 5 : 10 };
    const flood: Action[] = n.ports.map((p) => ({ type: "output", port: p }));
    for (const p of n.ports) {
      add({
        table: 0,
        priority: 100,
        match: {
          in_port: exact("in_port", p),
          ...(t.portSecurity ? { eth_src: exact("eth_src", mac(p)) } : {}),
        },
        actions: [{ type: "set_field", field: "reg6", value: net }, next],
      });
      if (t.localFlood) {
        add({
          table: 0,
          priority: 120,
          match: { in_port: exact("in_port", p), eth_dst: exact("eth_dst", BCAST) },
          actions: flood,
        });
      }
    }
    add({
      table: 0,
      priority: 100,
      match: { in_port: exact("in_port", TUNNEL), tun_id: exact("tun_id", n.vni) },
      actions: [
        { type: "set_field", field: "reg6", value: net },
        { type: "goto", table: t.tunnelTable },
      ],
    });
    if (n.vlan !== undefined) {
      add({
        table: 0,
        priority: 100,
        match: { in_port: exact("in_port", UPLINK), vlan_vid: exact("vlan_vid", 0x1000 | n.vlan) },
        actions: [
          { type: "pop_vlan" },
          { type: "set_field", field: "reg6", value: net },
          { type: "goto", table: 10 },
        ],
      });
    }
    for (const p of n.ports) {
      add({
        table: 10,
        priority: 100,
        match: { reg6, eth_dst: exact("eth_dst", mac(p)) },
        actions: [{ type: "output", port: p }],
      });
    }
    for (const m of n.remoteMacs) {
      add({
        table: 10,
        priority: 100,
        match: { reg6, eth_dst: exact("eth_dst", mac(m)) },
        actions: [
          { type: "set_tunnel", id: BigInt(n.vni), dst: ip(250, m % 200), tunnel: "geneve" },
          { type: "output", port: TUNNEL },
        ],
      });
    }
    add({
      table: 10,
      priority: 90,
      match: { reg6, eth_dst: exact("eth_dst", BCAST) },
      actions:
        n.vlan === undefined
          ? flood
          : [...flood, { type: "push_vlan", vid: n.vlan }, { type: "output", port: UPLINK }],
    });
    if (t.arpResponder) {
      add({
        table: 10,
        priority: 95,
        match: { reg6, arp_op: exact("arp_op", 1), arp_tpa: exact("arp_tpa", gateway(ni + 1)) },
        actions: [{ type: "controller", reason: "arp" }],
      });
    }
    if (t.tunnelTable === 15) {
      const fromTunnel = exact("in_port", TUNNEL);
      for (const p of n.ports) {
        add({
          table: 15,
          priority: 100,
          match: { reg6, in_port: fromTunnel, eth_dst: exact("eth_dst", mac(p)) },
          actions: [{ type: "output", port: p }],
        });
      }
      add({
        table: 15,
        priority: 90,
        match: {
          reg6,
          in_port: fromTunnel,
          eth_dst: exact("eth_dst", BCAST),
          ...(t.tunnelKeyFlood ? { tun_id: exact("tun_id", n.vni) } : {}),
        },
        actions: flood,
      });
    }
    if (t.conntrack !== "none") {
      if (t.conntrack === "recirc") {
        add({
          table: 5,
          priority: 100,
          match: { reg6, ct_state: { value: 0n, mask: trk } },
          actions: [{ type: "ct", zone: ni + 1, commit: false, nat: false, table: 6 }],
        });
      }
      add({
        table: ctTable,
        priority: 100,
        match: { reg6, ct_state: { value: trk | est, mask: trk | est } },
        actions: [{ type: "goto", table: 10 }],
      });
      add({
        table: ctTable,
        priority: 90,
        match: {
          reg6,
          ct_state: { value: trk | isNew, mask: trk | isNew },
          ip_proto: exact("ip_proto", 6),
          tp_dst: exact("tp_dst", 22),
        },
        actions: [],
      });
      add({
        table: ctTable,
        priority: 50,
        match: { reg6, ct_state: { value: trk | isNew, mask: trk | isNew } },
        actions: [{ type: "ct", zone: ni + 1, commit: true, nat: false, table: 10 }],
      });
      add({
        table: ctTable,
        priority: 40,
        match: { reg6, ct_state: { value: trk | inv, mask: trk | inv } },
        actions: [{ type: "goto", table: 10 }],
      });
      add({
        table: 10,
        priority: 105,
        match: {
          reg6,
          ct_state: { value: trk | isNew, mask: trk | isNew },
          ip_proto: exact("ip_proto", 6),
          tp_dst: exact("tp_dst", 80),
        },
        actions: [{ type: "controller", reason: "acl-log" }],
      });
    }
    if (t.routing) {
      add({
        table: 10,
        priority: 110,
        match: { reg6, eth_dst: exact("eth_dst", routerMac), eth_type: exact("eth_type", 0x800) },
        actions: [{ type: "goto", table: 20 }],
      });
      for (const p of n.ports) {
        add({
          table: 20,
          priority: 100,
          match: { eth_type: exact("eth_type", 0x800), ipv4_dst: exact("ipv4_dst", ip(ni + 1, p)) },
          actions: [
            { type: "set_field", field: "eth_src", value: routerMac },
            { type: "set_field", field: "eth_dst", value: mac(p) },
            { type: "dec_ttl" },
            { type: "output", port: p },
          ],
        });
      }
    }
  });
  if (t.dhcpPunt) {
    add({
      table: 0,
      priority: 200,
      match: {
        eth_type: exact("eth_type", 0x800),
        ip_proto: exact("ip_proto", 17),
        tp_dst: exact("tp_dst", 67),
      },
      actions: [{ type: "controller", reason: "dhcp" }],
    });
  }
  add({
    table: 0,
    priority: 150,
    match: { in_port: exact("in_port", INTERNAL) },
    actions: [{ type: "output", port: t.networks[0]!.ports[0]! }],
  });
  if (t.oddRule) {
    add({
      table: 10,
      priority: 120,
      match: { eth_type: exact("eth_type", 0x86dd) },
      actions: [{ type: "other", name: "learn" }],
    });
  }
  return rules;
}

export const topoArb: fc.Arbitrary<Topo> = fc.record({
  networks: fc
    .array(
      fc.record({
        vni: fc.integer({ min: 1, max: 5000 }),
        ports: fc.uniqueArray(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 4 }),
        remoteMacs: fc.uniqueArray(fc.integer({ min: 40, max: 60 }), { maxLength: 3 }),
        vlan: fc.option(fc.integer({ min: 1, max: 4094 }), { nil: undefined }),
      }),
      { minLength: 1, maxLength: 3 },
    )
    .filter((ns) => {
      const ports = ns.flatMap((n) => n.ports);
      const vnis = ns.map((n) => n.vni);
      const vlans = ns.flatMap((n) => (n.vlan === undefined ? [] : [n.vlan]));
      return (
        new Set(ports).size === ports.length &&
        new Set(vnis).size === vnis.length &&
        new Set(vlans).size === vlans.length
      );
    }),
  portSecurity: fc.boolean(),
  conntrack: fc.constantFrom("none" as const, "direct" as const, "recirc" as const, "commit" as const),
  routing: fc.boolean(),
  dhcpPunt: fc.boolean(),
  oddRule: fc.boolean(),
  localFlood: fc.boolean(),
  arpResponder: fc.boolean(),
  tunnelTable: fc.constantFrom(10 as const, 15 as const),
  tunnelKeyFlood: fc.boolean(),
});

/**
 * Rules an incremental edit may add to `pipeline(t)`, each a shape the
 * planner treats specially: a table-0 match on conntrack state (which makes
 * the ct lookups after it visible to OVS), output to the ingress port, a
 * tunnel match outside table 0, and a rewrite followed by a goto.
 */
export function extraRules(t: Topo): PipelineRule[] {
  const n = t.networks[0]!;
  const p = n.ports[0]!;
  const reg6 = exact("reg6", 1);
  return [
    { id: "x1", table: 0, priority: 250, match: { ct_state: { value: trk, mask: trk } }, actions: [] },
    {
      id: "x2",
      table: 0,
      priority: 130,
      match: { in_port: exact("in_port", p), eth_type: exact("eth_type", 0x806) },
      actions: [{ type: "output", port: p }],
    },
    {
      id: "x3",
      table: 10,
      priority: 115,
      match: { reg6, in_port: exact("in_port", TUNNEL), tun_id: exact("tun_id", n.vni) },
      actions: [{ type: "output", port: p }],
    },
    {
      id: "x4",
      table: 10,
      priority: 115,
      match: { reg6, eth_type: exact("eth_type", 0x806) },
      actions: [
        { type: "set_field", field: "eth_dst", value: BCAST },
        { type: "goto", table: 20 },
      ],
    },
    {
      id: "x5",
      table: 20,
      priority: 10,
      match: { eth_type: exact("eth_type", 0x806) },
      actions: [{ type: "controller", reason: "arp" }],
    },
  ];
}

/** Drop the fields a packet of its kind does not carry (tunnel metadata off the tunnel, ARP vs IP). */
function normalise(p: Packet): Packet {
  const out: Packet = { ...p };
  if (out.in_port !== BigInt(TUNNEL)) delete out.tun_id;
  if (out.in_port !== BigInt(UPLINK)) delete out.vlan_vid;
  if (out.eth_type === 0x806n) {
    for (const f of ["ip_proto", "ipv4_src", "ipv4_dst", "tp_src", "tp_dst", "nw_ttl"] as const)
      delete out[f];
  } else {
    delete out.arp_op;
    delete out.arp_tpa;
  }
  return out;
}

export function packetArb(t: Topo): fc.Arbitrary<Packet> {
  const ports = [...t.networks.flatMap((n) => n.ports), TUNNEL, UPLINK, INTERNAL, UNKNOWN_PORT];
  const macs = [...t.networks.flatMap((n) => [...n.ports, ...n.remoteMacs]), 99].map(mac);
  const ips = [...t.networks.flatMap((n, ni) => n.ports.map((p) => ip(ni + 1, p))), ip(9, 9)];
  const mostly = <T>(likely: T, others: readonly T[]) =>
    fc.oneof(
      { arbitrary: fc.constant(likely), weight: 3 },
      { arbitrary: fc.constantFrom(...others), weight: 1 },
    );
  return fc
    .constantFrom(...ports)
    .chain((port) =>
      fc.record({
        in_port: fc.constant(BigInt(port)),
        // Mostly what port security lets through, so that packets get past table 0.
        eth_src: mostly(mac(port), macs),
        eth_dst: fc.constantFrom(...macs, BCAST, routerMac),
        eth_type: mostly(0x800n, [0x806n, 0x86ddn]),
        ip_proto: mostly(6n, [17n, 1n]),
        ipv4_src: fc.constantFrom(...ips),
        ipv4_dst: fc.constantFrom(...ips),
        tp_src: fc.constantFrom(1000n, 2000n),
        tp_dst: fc.constantFrom(22n, 67n, 80n, 443n),
        nw_ttl: fc.constantFrom(0n, 1n, 2n, 64n),
        tun_id: fc.constantFrom(...t.networks.map((n) => BigInt(n.vni)), 9999n),
        vlan_vid: fc.constantFrom(
          ...t.networks.flatMap((n) => (n.vlan === undefined ? [] : [BigInt(0x1000 | n.vlan)])),
          0x1000n | 4095n,
        ),
        arp_op: fc.constantFrom(1n, 2n),
        arp_tpa: fc.constantFrom(...t.networks.map((_, ni) => gateway(ni + 1)), ip(9, 9)),
      }),
    )
    .map(normalise);
}

/** The reply direction of a packet: addresses and ports swapped. */
export function reply(p: Packet): Packet {
  const r: Packet = { ...p };
  for (const [a, b] of [
    ["ipv4_src", "ipv4_dst"],
    ["tp_src", "tp_dst"],
  ] as const) {
    if (p[a] === undefined) delete r[b];
    else r[b] = p[a];
    if (p[b] === undefined) delete r[a];
    else r[a] = p[b];
  }
  return r;
}

/** A sequence of packets drawn from a few connections, each sent several times and in both directions. */
export function flowArb(t: Topo, length: { minLength: number; maxLength: number }): fc.Arbitrary<Packet[]> {
  return fc
    .tuple(
      fc.array(packetArb(t), { minLength: 3, maxLength: 8 }),
      fc.array(fc.tuple(fc.nat(), fc.boolean()), length),
    )
    .map(([pool, picks]) =>
      picks.map(([i, back]) => {
        const p = pool[i % pool.length]!;
        return back ? reply(p) : p;
      }),
    );
}

/**
 * The property: every packet of the sequence gets the same events from the
 * split datapath as from the software pipeline, and both leave the same
 * connections committed.
 */
export function expectSameDecisions(
  plan: Plan,
  rules: PipelineRule[],
  ports: PortMap,
  packets: Packet[],
): void {
  const software = new Conntrack();
  const split = new Conntrack();
  packets.forEach((pkt, i) => {
    const want = runSoftware(rules, ports, pkt, software);
    expect(runSplit(plan, rules, ports, pkt, split), `packet ${i}: ${show(pkt)}`).toEqual(want);
    expect(split.entries(), `conntrack after packet ${i}`).toEqual(software.entries());
  });
}

export function show(p: Packet): string {
  return Object.entries(p)
    .map(([k, v]) => `${k}=0x${v!.toString(16)}`)
    .join(",");
}

/** A packet the NIC must forward on its own (from its second packet on, if it goes through conntrack). */
export interface HardwareFlow {
  what: string;
  packet: Packet;
  /** Goes through conntrack (then it is offloaded only where ct is, and from its second packet on). */
  conntrack: boolean;
}

/**
 * The offload a generated topology must get at least: VM-to-VM unicast in a
 * network, encapsulation to a remote MAC, routing between VM ports, and
 * tunnel-to-VM unicast when the tunnel has its own table without a second
 * tunnel match.
 */
export function hardwareFlows(t: Topo): HardwareFlow[] {
  const out: HardwareFlow[] = [];
  const tcp = (from: number, src: bigint, dst: bigint): Packet => ({
    in_port: BigInt(from),
    eth_src: mac(from),
    eth_type: 0x800n,
    ip_proto: 6n,
    ipv4_src: src,
    ipv4_dst: dst,
    tp_src: 1000n,
    tp_dst: 443n,
    nw_ttl: 64n,
  });
  const viaCt = t.conntrack !== "none";
  t.networks.forEach((n, ni) => {
    for (const p of n.ports) {
      for (const q of n.ports) {
        if (q === p) continue;
        out.push({
          what: `port ${p} → port ${q}`,
          packet: { ...tcp(p, ip(ni + 1, p), ip(ni + 1, q)), eth_dst: mac(q) },
          conntrack: viaCt,
        });
      }
      for (const m of n.remoteMacs) {
        out.push({
          what: `port ${p} → remote ${m}`,
          packet: { ...tcp(p, ip(ni + 1, p), ip(9, 9)), eth_dst: mac(m) },
          conntrack: viaCt,
        });
      }
      if (t.routing) {
        t.networks.forEach((o, oi) => {
          for (const q of o.ports) {
            if (q === p) continue;
            out.push({
              what: `port ${p} routed to port ${q}`,
              packet: { ...tcp(p, ip(ni + 1, p), ip(oi + 1, q)), eth_dst: routerMac },
              conntrack: viaCt,
            });
          }
        });
      }
      if (t.tunnelTable === 15 && !t.tunnelKeyFlood) {
        out.push({
          what: `tunnel → port ${p}`,
          packet: {
            in_port: BigInt(TUNNEL),
            tun_id: BigInt(n.vni),
            eth_src: mac(99),
            eth_dst: mac(p),
            eth_type: 0x800n,
          },
          conntrack: false,
        });
      }
    }
  });
  return out;
}

/**
 * Random pipelines that a ConnectX-6 Dx can carry entirely: every match is a
 * flower key, every action has a tc counterpart, table 0 matches in_port (so
 * needs no hairpin trap), rewrites only precede an output, ct never commits
 * and no table before it matches conntrack state, every register value a
 * later table matches is set by table 0, and table 20 exists only when
 * something goes there.
 */
export const offloadableArb: fc.Arbitrary<{ rules: PipelineRule[]; ports: PortMap }> = fc
  .integer({ min: 2, max: 5 })
  .chain((n) => {
    const vms = Array.from({ length: n }, (_, i) => i + 1);
    const rewrite = fc.subarray(["eth_dst", "eth_src", "dec_ttl", "push_vlan", "pop_vlan"] as const);
    const toActions = (kinds: readonly string[], out: number[]): Action[] => [
      ...kinds.map((k): Action =>
        k === "dec_ttl"
          ? { type: "dec_ttl" }
          : k === "push_vlan"
            ? { type: "push_vlan", vid: 7 }
            : k === "pop_vlan"
              ? { type: "pop_vlan" }
              : { type: "set_field", field: k as "eth_dst" | "eth_src", value: mac(70) },
      ),
      ...out.map((port): Action => ({ type: "output", port })),
    ];
    const first = fc.tuple(
      ...vms.map((p) =>
        fc.record({
          p: fc.constant(p),
          ipOnly: fc.boolean(),
          then: fc.oneof(
            fc.record({ kind: fc.constant("out" as const), rewrite, to: fc.constantFrom(...vms) }),
            fc.record({
              kind: fc.constantFrom("goto" as const, "ct" as const),
              reg: fc.integer({ min: 1, max: 3 }),
              table: fc.constantFrom(10, 20),
            }),
          ),
        }),
      ),
    );
    return first.chain((t0) => {
      const regs10 = [
        ...new Set(t0.flatMap((r) => (r.then.kind !== "out" && r.then.table === 10 ? [r.then.reg] : []))),
      ];
      const later = fc.record({
        decap: fc.array(fc.record({ vni: fc.integer({ min: 1, max: 9 }), to: fc.constantFrom(...vms) }), {
          maxLength: 2,
        }),
        t10: regs10.length
          ? fc.array(
              fc.record({
                reg: fc.constantFrom(...regs10),
                dst: fc.integer({ min: 1, max: 9 }),
                priority: fc.integer({ min: 1, max: 300 }),
                established: fc.boolean(),
                then: fc.oneof(
                  fc.record({
                    kind: fc.constant("out" as const),
                    rewrite,
                    to: fc.uniqueArray(fc.constantFrom(...vms), { minLength: 1, maxLength: 3 }),
                    encap: fc.boolean(),
                  }),
                  fc.record({ kind: fc.constant("goto" as const) }),
                ),
              }),
              { maxLength: 8 },
            )
          : fc.constant([]),
        t20: fc.array(
          fc.record({ host: fc.integer({ min: 1, max: 9 }), rewrite, to: fc.constantFrom(...vms) }),
          { minLength: 1, maxLength: 4 },
        ),
      });
      return later.map(({ decap, t10, t20 }) => {
        const rules: PipelineRule[] = [];
        const add = (r: Omit<PipelineRule, "id">) =>
          rules.push({ id: `o${String(rules.length + 1).padStart(3, "0")}`, ...r });
        for (const r of t0) {
          const match = {
            in_port: exact("in_port", r.p),
            ...(r.ipOnly ? { eth_type: exact("eth_type", 0x800) } : {}),
          };
          const then = r.then;
          const actions: Action[] =
            then.kind === "out"
              ? toActions(then.rewrite, [then.to])
              : [
                  { type: "set_field", field: "reg6", value: BigInt(then.reg) },
                  then.kind === "goto"
                    ? { type: "goto", table: then.table }
                    : { type: "ct", zone: then.reg, commit: false, nat: false, table: then.table },
                ];
          add({ table: 0, priority: 100 + (r.ipOnly ? 1 : 0), match, actions });
        }
        for (const d of decap) {
          add({
            table: 0,
            priority: 100,
            match: { in_port: exact("in_port", TUNNEL), tun_id: exact("tun_id", d.vni) },
            actions: [{ type: "output", port: d.to }],
          });
        }
        let reaches20 = t0.some((r) => r.then.kind !== "out" && r.then.table === 20);
        for (const r of t10) {
          const match = {
            reg6: exact("reg6", r.reg),
            eth_dst: exact("eth_dst", mac(r.dst)),
            ...(r.established ? { ct_state: { value: trk | est, mask: trk | est } } : {}),
          };
          const then = r.then;
          let actions: Action[];
          if (then.kind === "goto") {
            actions = [{ type: "goto", table: 20 }];
            reaches20 = true;
          } else {
            actions = toActions(then.rewrite, then.to);
            if (then.encap)
              actions.push(
                { type: "set_tunnel", id: 5n, dst: ip(250, 1), tunnel: "geneve" },
                { type: "output", port: TUNNEL },
              );
          }
          add({ table: 10, priority: r.priority, match, actions });
        }
        if (reaches20) {
          for (const r of t20) {
            add({
              table: 20,
              priority: 100,
              match: { eth_type: exact("eth_type", 0x800), ipv4_dst: exact("ipv4_dst", ip(1, r.host)) },
              actions: toActions(r.rewrite, [r.to]),
            });
          }
        }
        const hardware = new Map(vms.map((p) => [p, `rep${p}`]));
        return { rules, ports: { hardware, tunnels: new Map([[TUNNEL, "geneve" as const]]) } };
      });
    });
  });

/** Packets for an offloadable pipeline: from its VM ports and the tunnel. */
export function offloadablePacketArb(ports: PortMap): fc.Arbitrary<Packet> {
  return fc
    .record({
      in_port: fc.constantFrom(...ports.hardware.keys(), TUNNEL).map(BigInt),
      eth_dst: fc.integer({ min: 1, max: 9 }).map(mac),
      eth_type: fc.constantFrom(0x800n, 0x806n),
      ip_proto: fc.constant(6n),
      ipv4_src: fc.constant(ip(1, 100)),
      ipv4_dst: fc.integer({ min: 1, max: 9 }).map((h) => ip(1, h)),
      tp_src: fc.constant(1000n),
      tp_dst: fc.constant(443n),
      nw_ttl: fc.constantFrom(1n, 64n),
      vlan_vid: fc.constantFrom(0n, 0x1005n),
      tun_id: fc.integer({ min: 1, max: 9 }).map(BigInt),
    })
    .map(normalise);
}
