/**
 * secgroup: Neutron security groups, stateful, with conntrack — what OVN
 * does with ACLs and port groups, in flows this agent owns.
 *
 * A local port with security groups (and port security on) has its IP
 * traffic sent through the connection tracker in its own zone (the layout's
 * `portZone`, the port's ofport: unique on the bridge, the same after a
 * restart; the agent flushes it when the port goes), both ways: in ingress_secgroup for what leaves the VM
 * (the groups' egress rules), in egress_secgroup for what enters it (ingress
 * rules). One zone for both directions makes a reply a reply. The tracked
 * packet continues in the *_state table:
 *
 *   prio   match                                          action
 *   65000  +inv                                           drop
 *   65000  +est+rpl, not blocked                          pass (replies)
 *   65000  +rel-new, not blocked                          pass (ICMP errors and the like)
 *   65000  +rpl, blocked                                  drop
 *   1001   a rule (port, protocol, ports, remote CIDR):
 *            +new                                         commit (not blocked), pass
 *            +est-rpl, blocked                            commit (not blocked), pass
 *            +est-rpl, not blocked                        pass
 *   1000   a rule with a remote group: the same three, as a conjunctive match
 *   10     the port's +est-rpl, not blocked                commit as blocked (and drop)
 *   miss                                                  drop (default deny)
 *
 * Original-direction packets of established connections are checked against
 * the rules every time (the datapath caches the decision), as OVN does: when
 * a rule goes, the next packet of a connection it allowed falls through to
 * the port's default-deny flow, which marks the connection blocked in
 * conntrack (ct_mark, fields.ts CT_MARK), so its replies stop too; a
 * connection that is still allowed by another rule keeps flowing. A blocked
 * connection that becomes allowed again is committed afresh.
 *
 * Rules: protocol (tcp, udp, sctp, icmp, icmpv6, any, or an IP protocol
 * number), a port range as masked matches (RFC-style prefix split, so
 * 1024-65535 is six flows, not 64512), ICMP type/code, remote CIDR, remote
 * group, ethertype. A remote group becomes a two-clause conjunctive match:
 * clause 1 is the port and the rule's protocol and ports, clause 2 the
 * group's member addresses (fixed IPs and allowed address pairs of every port
 * in the group the NB cache holds), one flow per address shared by every
 * rule and port that names the group — so a 100-member group used by 20
 * rules costs 100 member flows, not 2,000. Conjunction ids are derived, not
 * allocated: the port's ofport, the rule's slot among the port's remote-group
 * rules (its groups and their rules in id order) and the state, so a
 * restarted agent computes the same flows.
 *
 * DHCP (client and server), DHCPv6, and ICMPv6 router/neighbour discovery
 * and MLD bypass conntrack and the rules, as Neutron's firewall always
 * allows them; ARP and other non-IP traffic is port security's business.
 * A port with no security groups, or with port security off on its network
 * (the NB refuses groups on a port with port security off), is not
 * filtered (Neutron gives every port the tenant's default group; the NB does
 * not, so a port without groups keeps the open datapath it had).
 *
 * Owners: each local port (its conntrack dispatch, rule and default-deny
 * flows), and one global owner (the state flows and the member flows of
 * every remote group a local port's rules name).
 */
import type { App, LocalPort, OwnerOut, View } from "./types.js";
import { CT_MARK, F, flow, portZone, type FlowBuilder, type TableName } from "../datapath/index.js";
import { parseCidr } from "../nb/model/ip.js";
import { PROTOCOLS, type Secgroup, type SecgroupRule } from "../nb/model/schemas.js";
import { flowKey } from "../openflow/flow.js";
import { isIpv4 } from "../packet/addr.js";

export const SG_PRIORITY = {
  state: 65000,
  implicit: 110,
  dispatch: 100,
  rule: 1001,
  conj: 1000,
  deny: 10,
} as const;

type Direction = "egress" | "ingress";

/** Where each direction's rules live and where an allowed packet goes on. */
const DIR = {
  egress: {
    pre: "ingress_secgroup",
    state: "ingress_secgroup_state",
    next: "dhcp",
    remote: { 4: "ip_dst", 6: "ipv6_dst" },
  },
  ingress: {
    pre: "egress_secgroup",
    state: "egress_secgroup_state",
    next: "local_delivery",
    remote: { 4: "ip_src", 6: "ipv6_src" },
  },
} as const satisfies Record<
  Direction,
  { pre: TableName; state: TableName; next: TableName; remote: Record<4 | 6, string> }
>;

const NOT_BLOCKED = { value: 0, mask: CT_MARK.blocked };
const BLOCKED = { value: CT_MARK.blocked, mask: CT_MARK.blocked };

/** Conntrack states a rule's flows are written for, in conjunction-id order. */
const STATES = ["new", "estBlocked", "est"] as const;
type State = (typeof STATES)[number];

/** Packets Neutron's firewall always lets through, per direction (before conntrack). */
const IMPLICIT: Record<Direction, ((b: FlowBuilder) => FlowBuilder)[]> = {
  egress: [
    (b) => b.proto("udp").eq("udp_src", 68).eq("udp_dst", 67),
    (b) => b.proto("udp6").eq("udp_src", 546).eq("udp_dst", 547),
    ...[130, 131, 132, 133, 135, 136, 143].map(
      (t) => (b: FlowBuilder) => b.proto("icmp6").eq("icmpv6_type", t),
    ),
  ],
  ingress: [
    (b) => b.proto("udp").eq("udp_src", 67).eq("udp_dst", 68),
    (b) => b.proto("udp6").eq("udp_src", 547).eq("udp_dst", 546),
    ...[130, 131, 132, 134, 135, 136, 143].map(
      (t) => (b: FlowBuilder) => b.proto("icmp6").eq("icmpv6_type", t),
    ),
  ],
};

/** Masked matches covering [min, max] of a 16-bit port (the largest aligned blocks). */
export function portRangeMasks(min: number, max: number): { value: number; mask: number }[] {
  const out: { value: number; mask: number }[] = [];
  let lo = min;
  while (lo <= max) {
    let size = 1;
    while (size < 0x10000 && lo % (size * 2) === 0 && lo + size * 2 - 1 <= max) size *= 2;
    out.push({ value: lo, mask: 0xffff & ~(size - 1) });
    lo += size;
  }
  return out;
}

function protoNumber(r: SecgroupRule): number | undefined {
  return typeof r.protocol === "string" ? PROTOCOLS[r.protocol] : r.protocol;
}

function familyOf(r: SecgroupRule): 4 | 6 {
  return r.ethertype === "IPv6" ? 6 : 4;
}

/**
 * The header matches of a rule (without the port and the remote address):
 * one builder-transform per masked port range (at least one).
 */
function ruleMatches(r: SecgroupRule): ((b: FlowBuilder) => FlowBuilder)[] {
  const fam = familyOf(r);
  const proto = protoNumber(r);
  const ethType = fam === 4 ? 0x0800 : 0x86dd;
  const base = (b: FlowBuilder): FlowBuilder => {
    b.eq("eth_type", ethType);
    if (proto !== undefined) b.eq("nw_proto", proto);
    return b;
  };
  if (proto === 1 || proto === 58) {
    const [typeField, codeField] = proto === 1 ? ["icmp_type", "icmp_code"] : ["icmpv6_type", "icmpv6_code"];
    return [
      (b) => {
        base(b);
        if (r.portRangeMin !== undefined) b.eq(typeField!, r.portRangeMin);
        if (r.portRangeMin !== undefined && r.portRangeMax !== undefined) b.eq(codeField!, r.portRangeMax);
        return b;
      },
    ];
  }
  const field = proto === 6 ? "tcp_dst" : proto === 17 ? "udp_dst" : proto === 132 ? "sctp_dst" : undefined;
  const min = r.portRangeMin ?? 0;
  const max = r.portRangeMax ?? (r.portRangeMin !== undefined ? r.portRangeMin : 65535);
  if (!field || (min === 0 && max === 65535)) return [base];
  return portRangeMasks(min, max).map(({ value, mask }) => (b: FlowBuilder) => {
    base(b);
    return mask === 0xffff ? b.eq(field, value) : b.eq(field, value, mask);
  });
}

/** A CIDR as a match value and mask (no mask for a host). */
function prefixMatch(cidr: string): [string, string | undefined] {
  const c = parseCidr(cidr);
  const bits = c.version === 4 ? 32 : 128;
  const addr = cidr.split("/")[0]!;
  if (c.prefix === bits) return [addr, undefined];
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - c.prefix)) - 1n);
  if (c.version === 4) return [addr, [24, 16, 8, 0].map((s) => Number((mask >> BigInt(s)) & 255n)).join(".")];
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((mask >> BigInt(i * 16)) & 0xffffn).toString(16));
  return [addr, groups.join(":")];
}

/** The state part of a rule flow, and what it does. */
function withState(b: FlowBuilder, s: State, zone: number, next: TableName): FlowBuilder {
  if (s === "new") b.ctState({ new: true, trk: true });
  else b.ctState({ est: true, rpl: false, trk: true }).eq("ct_mark", ...markMatch(s === "estBlocked"));
  return s === "est" ? b.goto(next) : b.ct({ zone, commit: true, mark: NOT_BLOCKED }).goto(next);
}

function markMatch(blocked: boolean): [number, number] {
  return blocked ? [BLOCKED.value, BLOCKED.mask] : [NOT_BLOCKED.value, NOT_BLOCKED.mask];
}

/** Whether the port is filtered by security groups here (port security off on its network lifts them, as in portsec). */
function filtered(view: View, lp: LocalPort): boolean {
  return (
    lp.port.portSecurityEnabled &&
    lp.port.securityGroups.length > 0 &&
    view.network(lp.networkId)?.network.portSecurityEnabled !== false
  );
}

interface RemoteRule {
  rule: SecgroupRule;
  slot: number;
}

/** Slots per port: conjunction ids are ofport × 2^16 + slot × 4 + state. */
const MAX_SLOTS = 1 << 14;

function conjId(ofport: number, slot: number, s: State): number {
  return ofport * 0x10000 + slot * 4 + STATES.indexOf(s);
}

/** The port's groups (read, recorded) in id order, present in the NB cache. */
function groupsOf(view: View, lp: LocalPort): Secgroup[] {
  return [...new Set(lp.port.securityGroups)]
    .sort()
    .map((g) => view.secgroup(g))
    .filter((g): g is Secgroup => !!g);
}

/** Rules of the port's groups in a stable order, with the slot of each remote-group rule. */
function rulesOf(groups: readonly Secgroup[]): { plain: SecgroupRule[]; remote: RemoteRule[] } {
  const plain: SecgroupRule[] = [];
  const remote: RemoteRule[] = [];
  for (const g of groups) {
    for (const r of [...g.rules].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      if (r.remoteGroupId === undefined) plain.push(r);
      else if (remote.length < MAX_SLOTS) remote.push({ rule: r, slot: remote.length });
    }
  }
  return { plain, remote };
}

/** Match the port in a direction's tables: the VM's ingress port, or the output register. */
function atPort(b: FlowBuilder, d: Direction, ofport: number): FlowBuilder {
  return d === "egress" ? b.inPort(ofport) : b.reg(F.outPort, ofport);
}

function portFlows(view: View, lp: LocalPort, out: OwnerOut): void {
  const zone = portZone(lp.ofport);
  const { plain, remote } = rulesOf(groupsOf(view, lp));
  const seen = new Set<string>();
  const emit = (b: FlowBuilder): void => {
    const sig = JSON.stringify(b.build(0n), (_, v: unknown) => (typeof v === "bigint" ? String(v) : v));
    if (seen.has(sig)) return;
    seen.add(sig);
    out.flow(b);
  };
  for (const d of ["egress", "ingress"] as const) {
    const t = DIR[d];
    for (const m of IMPLICIT[d])
      emit(m(atPort(flow(t.pre, SG_PRIORITY.implicit), d, lp.ofport)).goto(t.next));
    for (const proto of ["ip", "ipv6"] as const) {
      emit(atPort(flow(t.pre, SG_PRIORITY.dispatch), d, lp.ofport).proto(proto).ct({ zone, table: t.state }));
    }
    for (const r of plain.filter((x) => x.direction === d)) {
      const [addr, mask] = r.remoteIpPrefix ? prefixMatch(r.remoteIpPrefix) : [undefined, undefined];
      const fam = familyOf(r);
      for (const m of ruleMatches(r)) {
        for (const s of STATES) {
          const b = m(atPort(flow(t.state, SG_PRIORITY.rule), d, lp.ofport));
          if (addr !== undefined && mask !== "0.0.0.0" && mask !== "0:0:0:0:0:0:0:0") {
            b.eq(t.remote[fam], addr, mask);
          }
          emit(withState(b, s, zone, t.next));
        }
      }
    }
    // Clause 1 of each remote-group rule; rules whose clause-1 matches coincide
    // (same protocol and ports, other groups) share one flow carrying every
    // id, since OVS keeps one flow per match and priority.
    const clause1 = new Map<string, { make: () => FlowBuilder; ids: number[] }>();
    for (const { rule, slot } of remote.filter((x) => x.rule.direction === d)) {
      for (const s of STATES) {
        const id = conjId(lp.ofport, slot, s);
        for (const m of ruleMatches(rule)) {
          const make = (): FlowBuilder => {
            const b = m(atPort(flow(t.state, SG_PRIORITY.conj), d, lp.ofport));
            if (s === "new") return b.ctState({ new: true, trk: true });
            return b
              .ctState({ est: true, rpl: false, trk: true })
              .eq("ct_mark", ...markMatch(s === "estBlocked"));
          };
          const k = flowKey(make().build(0n));
          const c = clause1.get(k);
          if (c) c.ids.push(id);
          else clause1.set(k, { make, ids: [id] });
        }
        // ct needs the IP version in the match (OVS refuses it as inconsistent otherwise)
        const act = flow(t.state, SG_PRIORITY.conj)
          .eq("conj_id", id)
          .proto(familyOf(rule) === 4 ? "ip" : "ipv6");
        emit(s === "est" ? act.goto(t.next) : act.ct({ zone, commit: true, mark: NOT_BLOCKED }).goto(t.next));
      }
    }
    for (const { make, ids } of clause1.values()) {
      const b = make();
      for (const id of [...new Set(ids)].sort((x, y) => x - y)) b.conjunction(id, 1, 2);
      emit(b);
    }
    // what the rules no longer allow: mark the connection blocked (its replies stop too), then drop
    for (const proto of ["ip", "ipv6"] as const) {
      emit(
        atPort(flow(t.state, SG_PRIORITY.deny), d, lp.ofport)
          .proto(proto)
          .ctState({ est: true, rpl: false, trk: true })
          .eq("ct_mark", NOT_BLOCKED.value, NOT_BLOCKED.mask)
          .ct({ zone, commit: true, mark: BLOCKED }),
      );
    }
  }
}

/** The addresses of a group's members of one family, as (value, mask) matches. */
function memberAddresses(view: View, group: string, fam: 4 | 6): [string, string | undefined][] {
  const out = new Map<string, [string, string | undefined]>();
  for (const p of view.groupMembers(group)) {
    for (const f of p.fixedIps)
      if (isIpv4(f.ipAddress) === (fam === 4)) out.set(f.ipAddress, [f.ipAddress, undefined]);
    for (const a of p.allowedAddressPairs) {
      const cidr = a.ipAddress.includes("/")
        ? a.ipAddress
        : `${a.ipAddress}/${isIpv4(a.ipAddress) ? 32 : 128}`;
      if (parseCidr(cidr).version !== fam) continue;
      out.set(a.ipAddress, prefixMatch(cidr));
    }
  }
  return [...out.values()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function globalFlows(view: View, out: OwnerOut): void {
  for (const d of ["egress", "ingress"] as const) {
    const t = DIR[d];
    const st = (): FlowBuilder => flow(t.state, SG_PRIORITY.state);
    out.flow(st().ctState({ inv: true, trk: true }));
    out.flow(
      st()
        .ctState({ est: true, rpl: true, trk: true })
        .eq("ct_mark", ...markMatch(false))
        .goto(t.next),
    );
    out.flow(
      st()
        .ctState({ rel: true, new: false, inv: false, trk: true })
        .eq("ct_mark", ...markMatch(false))
        .goto(t.next),
    );
    out.flow(
      st()
        .ctState({ rpl: true, trk: true })
        .eq("ct_mark", ...markMatch(true)),
    );
  }
  // clause 2 of every remote-group rule of every filtered local port: one flow per member address
  const clauses = new Map<
    string,
    { d: Direction; fam: 4 | 6; addr: [string, string | undefined]; ids: number[] }
  >();
  for (const lp of view.groupedLocalPorts()) {
    if (!filtered(view, lp)) continue;
    const { remote } = rulesOf(groupsOf(view, lp));
    for (const { rule, slot } of remote) {
      const fam = familyOf(rule);
      for (const addr of memberAddresses(view, rule.remoteGroupId!, fam)) {
        const k = `${rule.direction}|${addr[0]}|${addr[1] ?? ""}`;
        let c = clauses.get(k);
        if (!c) clauses.set(k, (c = { d: rule.direction, fam, addr, ids: [] }));
        for (const s of STATES) c.ids.push(conjId(lp.ofport, slot, s));
      }
    }
  }
  for (const c of [...clauses.values()]) {
    const t = DIR[c.d];
    const b = flow(t.state, SG_PRIORITY.conj)
      .eq("eth_type", c.fam === 4 ? 0x0800 : 0x86dd)
      .eq(t.remote[c.fam], ...((c.addr[1] !== undefined ? [c.addr[0], c.addr[1]] : [c.addr[0]]) as [string]));
    for (const id of c.ids.sort((a, b) => a - b)) b.conjunction(id, 2, 2);
    out.flow(b);
  }
}

export const secgroupApp: App = {
  name: "secgroup",
  tables: ["ingress_secgroup", "ingress_secgroup_state", "egress_secgroup", "egress_secgroup_state"],
  owners: {
    port(id, view, out) {
      const lp = view.localPort(id);
      if (!lp || !filtered(view, lp)) return;
      portFlows(view, lp, out);
    },
    global(_id, view, out) {
      globalFlows(view, out);
    },
  },
};
