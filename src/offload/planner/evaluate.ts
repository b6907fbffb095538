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
 * stops, ct marks the packet tracked and established.
 */
import { type FieldName, fieldDef, fullMask, type Match, type PipelineRule, type PortMap } from "./ir.js";
import type { Plan, TcRule } from "./plan.js";

export type Packet = Partial<Record<FieldName, bigint>> & { in_port: bigint };

export type Event =
  { kind: "output"; port: number; packet: Record<string, string> } | { kind: "controller"; reason: string };

const CT_TRACKED_ESTABLISHED = 0x22n; // +trk+est
const maxSteps = 64;

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
    if (k === "in_port" || k.startsWith("tun_") || v === undefined) continue;
    out[k] = v.toString(16);
  }
  if (tunnel) {
    out.tun_id = tunnel.id.toString(16);
    out.tun_dst = tunnel.dst.toString(16);
  }
  return out;
}

/** The all-software pipeline, as OVS would run it. */
export function runSoftware(rules: PipelineRule[], ports: PortMap, input: Packet): Event[] {
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
      else if (a.type === "pop_vlan") pkt.vlan_vid = 0n;
      else if (a.type === "set_tunnel") tunnel = { id: a.id, dst: a.dst };
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
        pkt.ct_state = CT_TRACKED_ESTABLISHED;
        pkt.ct_zone = BigInt(a.zone);
        if (a.table !== undefined) table = a.table;
      } else if (a.type === "other") events.push({ kind: "controller", reason: `other:${a.name}` });
      if (table !== undefined) break;
    }
  }
  return events;
}

/** The split datapath: tc chains first, OVS (runSoftware) for what tc passes or misses. */
export function runSplit(plan: Plan, rules: PipelineRule[], ports: PortMap, input: Packet): Event[] {
  {
    const port = Number(input.in_port);
    const tunnelType = ports.tunnels.get(port);
    const indev =
      ports.hardware.get(port) ??
      (tunnelType === "vxlan" ? "vxlan_sys_4789" : tunnelType ? "genev_sys_6081" : undefined);
    if (!indev) return runSoftware(rules, ports, input);
    const devToPort = new Map<string, number>();
    for (const [p, d] of ports.hardware) devToPort.set(d, p);
    for (const [p, t] of ports.tunnels) devToPort.set(t === "vxlan" ? "vxlan_sys_4789" : "genev_sys_6081", p);
    const byChain = new Map<number, TcRule[]>();
    for (const r of plan.tc) byChain.set(r.chain, [...(byChain.get(r.chain) ?? []), r]);
    for (const list of byChain.values()) list.sort((a, b) => a.prio - b.prio);

    const pkt: Packet = { ...input };
    const events: Event[] = [];
    let tunnel: { id: bigint; dst: bigint } | undefined;
    let chain: number | undefined = 0;
    for (let step = 0; chain !== undefined && step < maxSteps; step++) {
      const rule: TcRule | undefined = (byChain.get(chain) ?? []).find(
        (r) => (r.indev === undefined || r.indev === indev) && matches(r.match, pkt),
      );
      chain = undefined;
      if (!rule) return [...events, ...runSoftware(rules, ports, pkt)];
      for (const a of rule.actions) {
        switch (a.type) {
          case "pass":
            return [...events, ...runSoftware(rules, ports, pkt)];
          case "drop":
            return events;
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
            pkt.vlan_vid = 0n;
            break;
          case "tunnel_set":
            tunnel = { id: a.id, dst: a.dst };
            break;
          case "tunnel_unset":
            break;
          case "ct":
            pkt.ct_state = CT_TRACKED_ESTABLISHED;
            pkt.ct_zone = BigInt(a.zone);
            break;
          case "mirror":
          case "redirect": {
            const out = devToPort.get(a.dev)!;
            events.push({
              kind: "output",
              port: out,
              packet: snapshot(pkt, ports.tunnels.has(out) ? tunnel : undefined),
            });
            if (a.type === "redirect") return events;
            break;
          }
        }
      }
    }
    return events;
  }
}
