/**
 * Reference evaluators for the planner's correctness property: the same
 * packet run through (a) the all-software OpenFlow pipeline and (b) the split
 * datapath — the planned tc chains first, OVS for whatever they hand over —
 * must produce the same events (outputs with the packet as sent, controller
 * punts), in the same order.
 *
 * Both follow OVS semantics where they matter to the planner: registers start
 * at zero, the highest-priority matching rule wins (ties by rule id, as the
 * planner orders them), an OpenFlow 1.3 table miss drops, output to the
 * ingress port is skipped, dec_ttl on TTL 0 or 1 punts to the controller and
 * stops, and a popped VLAN tag takes its PCP with it (vlan_vid and vlan_pcp
 * read 0).
 *
 * Connection tracking is state shared by packets, as in the kernel: a packet
 * arrives untracked (ct_state 0); `ct` looks its connection up in the zone's
 * table — +trk+est if the connection was committed (+rpl for a packet of the
 * reply direction), +trk+new if not, +trk+inv for a packet that is not IP —
 * and `ct(commit)` records the connection; a commit's ct_mark write
 * (`exec(set_field:…->ct_mark)`) marks it, and every later lookup of either
 * direction reads the mark into ct_mark. Pass one `Conntrack` to a sequence
 * of runs to carry that state from packet to packet. In the split datapath tc
 * and OVS share one table (act_ct and OVS's ct action use the same kernel
 * conntrack), and a packet that tc tracked and then hands to OVS arrives with
 * that state in ct_state/ct_zone/ct_mark (the kernel keeps the skb's conntrack
 * entry and OVS reads it when the packet arrives) — unless tc cleared it
 * (act_ct `clear`): then it arrives untracked. NAT is modelled for IPv4
 * addresses and ports: `ct(nat(src|dst=…))` on a new connection translates
 * it (and with `commit` records the translation), and `ct(nat)` on a packet
 * of a recorded connection applies the connection's translation in the
 * packet's direction (the reverse for a reply), as the kernel does.
 *
 * Tunnel metadata (tun_*) stays with a packet through the OVS pipeline;
 * tc's tunnel_key unset removes it, so a later chain — or OVS, if tc hands
 * the packet over — no longer sees it. Output events show what goes on the
 * wire: headers, and the tunnel key and destination for output to a tunnel
 * port; conntrack state is not part of the packet.
 */
import {
  type CtNatRange,
  type FieldName,
  fieldDef,
  fullMask,
  type Match,
  type PipelineRule,
  type PortMap,
} from "./ir.js";
import type { Plan, TcRule } from "./plan.js";

export type Packet = Partial<Record<FieldName, bigint>> & { in_port: bigint };

export type Event =
  { kind: "output"; port: number; packet: Record<string, string> } | { kind: "controller"; reason: string };

/** ct_state bits (ovs-fields(7)). */
export const ctState = { new: 0x01n, est: 0x02n, rel: 0x04n, rpl: 0x08n, inv: 0x10n, trk: 0x20n } as const;

const maxSteps = 64;

/** What NAT writes into a packet of one direction of a connection. */
type Rewrite = Partial<Record<"ipv4_src" | "ipv4_dst" | "tp_src" | "tp_dst", bigint>>;

/** A conntrack table: the connections committed so far, per zone, with their NAT and ct_mark. */
export class Conntrack {
  /** zone|tuple of a connection's original direction → the rewrite of its packets (undefined: no NAT). */
  private readonly originals = new Map<string, Rewrite | undefined>();
  /** zone|tuple of its replies as they arrive (after the translation) → theirs. */
  private readonly replies = new Map<string, Rewrite | undefined>();
  /** zone|tuple of either direction → the connection's original zone|tuple (its ct_mark's key). */
  private readonly connection = new Map<string, string>();
  /** A connection's ct_mark, where not 0. */
  private readonly marks = new Map<string, bigint>();

  /**
   * The `ct` action: the packet's ct_state in `zone`; with `commit`, the
   * connection is recorded, and `mark` (a commit's ct_mark write, value under
   * mask) written into it. With `nat`, the packet is translated (in place):
   * by `range` if the connection is new, else by the connection's own NAT.
   * The packet's ct_mark becomes its connection's (0 for one not committed).
   */
  track(
    zone: number,
    pkt: Packet,
    commit: boolean,
    nat?: { range?: CtNatRange },
    mark?: { value: bigint; mask: bigint },
  ): bigint {
    const key = tupleOf(pkt);
    pkt.ct_mark = 0n;
    if (key === undefined) return ctState.trk | ctState.inv;
    const k = `${zone}|${key}`;
    const known = this.originals.has(k) ? "original" : this.replies.has(k) ? "reply" : undefined;
    if (known) {
      if (nat) Object.assign(pkt, (known === "original" ? this.originals : this.replies).get(k));
      const conn = this.connection.get(k)!;
      if (commit && mark) this.setMark(conn, mark);
      pkt.ct_mark = this.marks.get(conn) ?? 0n;
      return ctState.trk | ctState.est | (known === "reply" ? ctState.rpl : 0n);
    }
    const [forward, back] = nat?.range ? natRewrites(pkt, nat.range) : [undefined, undefined];
    if (commit) {
      const reply = `${zone}|${tupleOf({ ...pkt, ...forward }, true)}`;
      this.originals.set(k, forward);
      this.replies.set(reply, back);
      this.connection.set(k, k);
      this.connection.set(reply, k);
      if (mark) this.setMark(k, mark);
      pkt.ct_mark = this.marks.get(k) ?? 0n;
    }
    if (forward) Object.assign(pkt, forward);
    return ctState.trk | ctState.new;
  }

  private setMark(conn: string, mark: { value: bigint; mask: bigint }): void {
    const v = ((this.marks.get(conn) ?? 0n) & ~mark.mask) | (mark.value & mark.mask);
    if (v) this.marks.set(conn, v);
    else this.marks.delete(conn);
  }

  /** The committed connections with their NAT and ct_mark, sorted (to compare two tables). */
  entries(): string[] {
    const show = (r: Rewrite | undefined) =>
      r
        ? Object.entries(r)
            .map(([f, v]) => `${f}=${v}`)
            .join(",")
        : "";
    return [...this.originals]
      .map(
        ([k, r]) =>
          `${k}${r ? ` nat ${show(r)}` : ""}${this.marks.has(k) ? ` mark ${this.marks.get(k)}` : ""}`,
      )
      .sort();
  }
}

/** A packet's connection tuple (reversed: as its reply carries it), or undefined when conntrack does not track it. */
function tupleOf(pkt: Packet, reversed = false): string | undefined {
  const ethType = pkt.eth_type ?? 0n;
  if (ethType !== 0x800n && ethType !== 0x86ddn) return undefined;
  const v6 = ethType === 0x86ddn;
  const src = `${(v6 ? pkt.ipv6_src : pkt.ipv4_src) ?? 0n}:${pkt.tp_src ?? 0n}`;
  const dst = `${(v6 ? pkt.ipv6_dst : pkt.ipv4_dst) ?? 0n}:${pkt.tp_dst ?? 0n}`;
  const proto = `${ethType}/${pkt.ip_proto ?? 0n}`;
  return reversed ? `${proto}|${dst}>${src}` : `${proto}|${src}>${dst}`;
}

/** The rewrites of a new IPv4 connection's two directions under `range` (its lowest address and port). */
function natRewrites(pkt: Packet, range: CtNatRange): [Rewrite | undefined, Rewrite | undefined] {
  if ((pkt.eth_type ?? 0n) !== 0x800n) return [undefined, undefined];
  const forward: Rewrite = {};
  const back: Rewrite = {};
  const [addr, port, rAddr, rPort] =
    range.kind === "src"
      ? (["ipv4_src", "tp_src", "ipv4_dst", "tp_dst"] as const)
      : (["ipv4_dst", "tp_dst", "ipv4_src", "tp_src"] as const);
  if (range.ipMin !== undefined) {
    forward[addr] = range.ipMin.split(".").reduce((n, o) => (n << 8n) | BigInt(o), 0n);
    back[rAddr] = pkt[addr] ?? 0n;
  }
  if (range.portMin !== undefined) {
    forward[port] = BigInt(range.portMin);
    back[rPort] = pkt[port] ?? 0n;
  }
  return Object.keys(forward).length ? [forward, back] : [undefined, undefined];
}

/** A ct action's NAT, for Conntrack.track. */
const natOf = (a: { nat: boolean; natRange?: CtNatRange }): { range?: CtNatRange } | undefined =>
  a.nat ? (a.natRange ? { range: a.natRange } : {}) : undefined;

function matches(match: Match, pkt: Packet, regs?: Map<string, bigint>): boolean {
  for (const [name, mv] of Object.entries(match)) {
    if (!mv) continue;
    const def = fieldDef(name);
    const v = def?.pipelineOnly ? (regs?.get(name) ?? 0n) : (pkt[name as FieldName] ?? 0n);
    if ((v & mv.mask) !== (mv.value & mv.mask)) return false;
  }
  return true;
}

function snapshot(pkt: Packet, tunnel?: { id: bigint; dst: bigint }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(pkt)) {
    if (k === "in_port" || k.startsWith("tun_") || k.startsWith("ct_") || v === undefined) continue;
    out[k] = v.toString(16);
  }
  if (tunnel) {
    out.tun_id = tunnel.id.toString(16);
    out.tun_dst = tunnel.dst.toString(16);
  }
  return out;
}

/** The all-software pipeline, as OVS would run it. */
export function runSoftware(
  rules: PipelineRule[],
  ports: PortMap,
  input: Packet,
  conntrack = new Conntrack(),
): Event[] {
  const byTable = new Map<number, PipelineRule[]>();
  for (const r of rules) byTable.set(r.table, [...(byTable.get(r.table) ?? []), r]);
  for (const list of byTable.values()) {
    list.sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  const pkt: Packet = { ...input };
  const regs = new Map<string, bigint>();
  const events: Event[] = [];
  let table: number | undefined = 0;
  let tunnel: { id: bigint; dst: bigint } | undefined;
  for (let step = 0; table !== undefined && step < maxSteps; step++) {
    const rule: PipelineRule | undefined = (byTable.get(table) ?? []).find((r) =>
      matches(r.match, pkt, regs),
    );
    table = undefined;
    if (!rule) break;
    for (const a of rule.actions) {
      if (a.type === "set_field") {
        const def = fieldDef(a.field)!;
        if (def.pipelineOnly) regs.set(a.field, a.value & fullMask(def.bits));
        else pkt[a.field] = a.value & fullMask(def.bits);
      } else if (a.type === "dec_ttl") {
        const ttl = pkt.nw_ttl ?? 0n;
        if (ttl <= 1n) {
          events.push({ kind: "controller", reason: "invalid_ttl" });
          return events;
        }
        pkt.nw_ttl = ttl - 1n;
      } else if (a.type === "push_vlan") pkt.vlan_vid = BigInt(a.vid) | 0x1000n;
      // the tag goes, and with it its PCP: OVS reads a popped frame's vlan_pcp as 0
      else if (a.type === "pop_vlan") Object.assign(pkt, { vlan_vid: 0n, vlan_pcp: 0n });
      else if (a.type === "set_tunnel")
        tunnel = { id: a.id, dst: a.dstFrom ? (regs.get(a.dstFrom) ?? 0n) : a.dst };
      else if (a.type === "output") {
        if (BigInt(a.port) === pkt.in_port) continue;
        events.push({
          kind: "output",
          port: a.port,
          packet: snapshot(pkt, ports.tunnels.has(a.port) ? tunnel : undefined),
        });
      } else if (a.type === "controller") events.push({ kind: "controller", reason: a.reason ?? "action" });
      else if (a.type === "goto") table = a.table;
      else if (a.type === "ct") {
        pkt.ct_state = conntrack.track(a.zone, pkt, a.commit, natOf(a), a.mark);
        pkt.ct_zone = BigInt(a.zone);
        table = a.table;
      } else events.push({ kind: "controller", reason: `other:${a.name}` });
      if (table !== undefined) break;
    }
  }
  return events;
}

/** What the split datapath did with one packet: the events, and whether OVS had to run. */
export interface SplitTrace {
  events: Event[];
  /** tc handed the packet to OVS (a trap passed it, it missed every rule, or it came from a port tc does not see). */
  software: boolean;
}

/** The split datapath: tc chains first, OVS (runSoftware) for what tc passes or misses. */
export function runSplit(
  plan: Plan,
  rules: PipelineRule[],
  ports: PortMap,
  input: Packet,
  conntrack = new Conntrack(),
): Event[] {
  return traceSplit(plan, rules, ports, input, conntrack).events;
}

/** runSplit, also saying whether the packet stayed in tc. */
export function traceSplit(
  plan: Plan,
  rules: PipelineRule[],
  ports: PortMap,
  input: Packet,
  conntrack = new Conntrack(),
): SplitTrace {
  const port = Number(input.in_port);
  const tunnelType = ports.tunnels.get(port);
  const indev =
    ports.hardware.get(port) ??
    (tunnelType === "vxlan" ? "vxlan_sys_4789" : tunnelType ? "genev_sys_6081" : undefined);
  if (!indev) return { events: runSoftware(rules, ports, input, conntrack), software: true };
  const devToPort = new Map<string, number>();
  for (const [p, d] of ports.hardware) devToPort.set(d, p);
  for (const [p, t] of ports.tunnels) devToPort.set(t === "vxlan" ? "vxlan_sys_4789" : "genev_sys_6081", p);
  const byChain = new Map<number, TcRule[]>();
  for (const r of plan.tc) byChain.set(r.chain, [...(byChain.get(r.chain) ?? []), r]);
  for (const list of byChain.values()) list.sort((a, b) => a.prio - b.prio);

  const pkt: Packet = { ...input };
  const events: Event[] = [];
  const handOver = (): SplitTrace => ({
    events: [...events, ...runSoftware(rules, ports, pkt, conntrack)],
    software: true,
  });
  let tunnel: { id: bigint; dst: bigint } | undefined;
  let chain: number | undefined = 0;
  for (let step = 0; chain !== undefined && step < maxSteps; step++) {
    const rule: TcRule | undefined = (byChain.get(chain) ?? []).find(
      (r) => (r.indev === undefined || r.indev === indev) && matches(r.match, pkt),
    );
    chain = undefined;
    if (!rule) return handOver();
    for (const a of rule.actions) {
      switch (a.type) {
        case "pass":
          return handOver();
        case "drop":
          return { events, software: false };
        case "goto":
          chain = a.chain;
          break;
        case "pedit":
          pkt[a.field] = a.value;
          break;
        case "dec_ttl":
          pkt.nw_ttl = (pkt.nw_ttl ?? 0n) - 1n;
          break;
        case "vlan_push":
          pkt.vlan_vid = BigInt(a.vid) | 0x1000n;
          break;
        case "vlan_pop":
          Object.assign(pkt, { vlan_vid: 0n, vlan_pcp: 0n });
          break;
        case "tunnel_set":
          tunnel = { id: a.id, dst: a.dst };
          break;
        case "tunnel_unset":
          for (const k of Object.keys(pkt)) if (k.startsWith("tun_")) delete pkt[k as FieldName];
          break;
        case "ct":
          pkt.ct_state = conntrack.track(a.zone, pkt, a.commit, natOf(a));
          pkt.ct_zone = BigInt(a.zone);
          break;
        case "ct_clear":
          // act_ct's clear: the packet reaches OVS untracked, as it came from the port
          for (const k of Object.keys(pkt)) if (k.startsWith("ct_")) delete pkt[k as FieldName];
          break;
        case "mirror":
        case "redirect": {
          const out = devToPort.get(a.dev)!;
          events.push({
            kind: "output",
            port: out,
            packet: snapshot(pkt, ports.tunnels.has(out) ? tunnel : undefined),
          });
          if (a.type === "redirect") return { events, software: false };
          break;
        }
      }
    }
  }
  return { events, software: false };
}
