/**
 * OpenFlow flows (src/openflow's Flow) → the planner's PipelineRule. Match
 * fields are renamed to the planner's vocabulary (nw_proto → ip_proto,
 * tcp_dst/udp_dst → tp_dst …) and turned into value/mask bigints; action
 * sequences the NIC handles as one step are folded (push_vlan + set vlan_vid,
 * set tun_id/tun_dst — or move:reg→tun_dst — + output to a tunnel port).
 * Anything without a planner counterpart is kept as `other` / `opaqueMatch`,
 * so it stays in software with its name in the reason.
 */
import type { NatSpec, Action as OfAction } from "../../openflow/actions.js";
import type { Flow } from "../../openflow/flow.js";
import { bytesToBigint, fieldByName, valueToBytes, type MatchField } from "../../openflow/oxm.js";
import {
  type Action,
  type CtNatRange,
  type FieldName,
  fieldDef,
  fullMask,
  type Match,
  type PipelineRule,
  type PortMap,
} from "./ir.js";

const rename: Record<string, FieldName> = {
  nw_proto: "ip_proto",
  ip_src: "ipv4_src",
  ip_dst: "ipv4_dst",
  tcp_src: "tp_src",
  udp_src: "tp_src",
  sctp_src: "tp_src",
  tcp_dst: "tp_dst",
  udp_dst: "tp_dst",
  sctp_dst: "tp_dst",
  icmpv6_type: "icmp_type",
  icmpv6_code: "icmp_code",
};

const reservedPorts: Record<number, string> = {
  0xfffffff8: "IN_PORT",
  0xfffffff9: "TABLE",
  0xfffffffa: "NORMAL",
  0xfffffffb: "FLOOD",
  0xfffffffc: "ALL",
  0xfffffffe: "LOCAL",
  0xffffffff: "ANY",
};

function plannerName(ofName: string): FieldName | undefined {
  const n = rename[ofName] ?? ofName;
  return fieldDef(n) ? (n as FieldName) : undefined;
}

function toBigint(field: string, v: unknown): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return BigInt(v);
  const def = fieldByName(field);
  if (!def) throw new Error(`unknown OpenFlow field ${field}`);
  return bytesToBigint(valueToBytes(def, v as string | Buffer));
}

function convertMatch(fields: readonly MatchField[]): { match: Match; opaque: string[] } {
  const match: Match = {};
  const opaque: string[] = [];
  for (const f of fields) {
    const name = plannerName(f.field);
    if (!name) {
      opaque.push(f.field);
      continue;
    }
    const bits = fieldDef(name)!.bits;
    match[name] = {
      value: toBigint(f.field, f.value) & fullMask(bits),
      mask: f.mask === undefined ? fullMask(bits) : toBigint(f.field, f.mask) & fullMask(bits),
    };
  }
  return { match, opaque };
}

function natRange(n: NatSpec, kind: "src" | "dst"): CtNatRange {
  return {
    kind,
    ...(n.ipMin !== undefined ? { ipMin: n.ipMin, ipMax: n.ipMax ?? n.ipMin } : {}),
    ...(n.portMin !== undefined ? { portMin: n.portMin, portMax: n.portMax ?? n.portMin } : {}),
  };
}

function convertActions(list: readonly OfAction[], ports: PortMap, out: Action[]): void {
  let tunId: bigint | undefined;
  let tunDst: bigint | undefined;
  let tunDstFrom: FieldName | undefined;
  for (let i = 0; i < list.length; i++) {
    const a = list[i]!;
    switch (a.type) {
      case "output": {
        if (a.port >= 0xfffffff8) {
          // Reserved ports: CONTROLLER is a punt; the rest (IN_PORT, TABLE, NORMAL, FLOOD, ALL, LOCAL) the planner does not model.
          if (a.port === 0xfffffffd) out.push({ type: "controller" });
          else out.push({ type: "other", name: `output:${reservedPorts[a.port] ?? a.port}` });
          break;
        }
        const tunnel = ports.tunnels.get(a.port);
        if (tunnel && tunId !== undefined) {
          const set: Action = { type: "set_tunnel", id: tunId, dst: tunDst ?? 0n, tunnel };
          out.push(tunDstFrom ? { ...set, dstFrom: tunDstFrom } : set);
        }
        out.push({ type: "output", port: a.port });
        break;
      }
      case "controller":
        out.push({ type: "controller", reason: a.reason === undefined ? undefined : String(a.reason) });
        break;
      case "set_tunnel":
        tunId = a.tunId;
        break;
      case "move": {
        // The tunnel destination from a register (the register's value is known per chain).
        // nbits 0 is the whole field (the text form's `reg8[]`).
        const src = plannerName(a.src.field);
        const whole = (s: { ofs: number; nbits: number }) => s.ofs === 0 && (s.nbits === 0 || s.nbits === 32);
        if (src && fieldDef(src)!.pipelineOnly && whole(a.src) && a.dst.field === "tun_dst" && whole(a.dst)) {
          tunDstFrom = src;
          tunDst = undefined;
        } else out.push({ type: "other", name: "move" });
        break;
      }
      case "set_field": {
        if (a.field === "tun_id") tunId = toBigint(a.field, a.value);
        else if (a.field === "tun_dst") {
          tunDst = toBigint(a.field, a.value);
          tunDstFrom = undefined;
        } else {
          const name = plannerName(a.field);
          if (!name || a.mask !== undefined) out.push({ type: "other", name: `set_field:${a.field}` });
          else out.push({ type: "set_field", field: name, value: toBigint(a.field, a.value) });
        }
        break;
      }
      case "load": {
        const name = plannerName(a.dst.field);
        const bits = name ? fieldDef(name)!.bits : 0;
        if (name && a.dst.ofs === 0 && a.dst.nbits === bits)
          out.push({ type: "set_field", field: name, value: a.value });
        else out.push({ type: "other", name: `load:${a.dst.field}` });
        break;
      }
      case "dec_ttl":
        out.push({ type: "dec_ttl" });
        break;
      case "push_vlan": {
        const next = list[i + 1];
        if (next?.type === "set_field" && next.field === "vlan_vid") {
          out.push({ type: "push_vlan", vid: Number(toBigint("vlan_vid", next.value) & 0xfffn) });
          i++;
        } else out.push({ type: "other", name: "push_vlan without vlan_vid" });
        break;
      }
      case "pop_vlan":
        out.push({ type: "pop_vlan" });
        break;
      case "resubmit":
        if (a.table !== undefined && (a.port === undefined || a.port === 0xfff8))
          out.push({ type: "goto", table: a.table });
        else out.push({ type: "other", name: "resubmit to a port" });
        break;
      case "ct": {
        // ct's own actions other than nat and a ct_mark write (a ct_label write, say) have no
        // counterpart in the planner's ct: the rule stays in software rather than lose them
        const isMark = (x: OfAction) => x.type === "set_field" && x.field === "ct_mark" && a.commit === true;
        const extra = (a.actions ?? []).find((x) => x.type !== "nat" && !isMark(x));
        const nat = (a.actions ?? []).find((x) => x.type === "nat")?.nat;
        const markSet = (a.actions ?? []).find(isMark);
        if (typeof a.zone === "object") out.push({ type: "other", name: "ct with a zone from a field" });
        else if (extra) out.push({ type: "other", name: `ct with ${extra.type} among its actions` });
        // tc's ct nat has no persistent, hash or random: keep such a NAT where OVS does it
        else if (nat && (nat.persistent || nat.hash || nat.random))
          out.push({ type: "other", name: "ct nat with persistent, hash or random" });
        else {
          out.push({
            type: "ct",
            zone: a.zone ?? 0,
            commit: a.commit ?? false,
            nat: nat !== undefined,
            ...(nat?.kind ? { natRange: natRange(nat, nat.kind) } : {}),
            ...(markSet?.type === "set_field"
              ? {
                  mark: {
                    value: toBigint("ct_mark", markSet.value),
                    mask: markSet.mask === undefined ? 0xffffffffn : toBigint("ct_mark", markSet.mask),
                  },
                }
              : {}),
            table: a.table,
          });
        }
        break;
      }
      case "note":
        break;
      default:
        out.push({ type: "other", name: a.type });
    }
  }
}

/** One OpenFlow flow as a planner rule; `id` defaults to table/priority/cookie. */
export function ruleFromFlow(flow: Flow, ports: PortMap, id?: string): PipelineRule {
  const { match, opaque } = convertMatch(flow.match);
  const actions: Action[] = [];
  for (const ins of flow.instructions) {
    if (ins.type === "apply_actions") convertActions(ins.actions, ports, actions);
    else if (ins.type === "goto_table") actions.push({ type: "goto", table: ins.table });
    else actions.push({ type: "other", name: ins.type });
  }
  const rule: PipelineRule = {
    id: id ?? `t${flow.table}/p${flow.priority}/c0x${flow.cookie.toString(16)}`,
    table: flow.table,
    priority: flow.priority,
    match,
    actions,
  };
  if (opaque.length) rule.opaqueMatch = opaque;
  return rule;
}
