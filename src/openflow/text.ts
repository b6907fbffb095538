/**
 * The ovs-ofctl text form of a flow: `parseFlow` reads what a person (or
 * `ovs-ofctl dump-flows`) writes, `formatFlow` prints EXACTLY what
 * `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` prints for the same flow,
 * so a dump line round-trips: formatFlow(parseFlow(line)) === line. The
 * integration test holds that against a real ovs-vswitchd for a corpus of
 * flows covering every field and action supported here.
 *
 * OVS prints a match in a fixed order (its match_format), with protocol
 * shorthands (`ip`, `tcp6`, `arp`), historical names (`dl_dst`, `nw_src`,
 * `tp_dst`), VLANs folded into `dl_vlan`/`vlan_tci`, `nw_tos` for the DSCP
 * bits, and `+trk+est` flag syntax; MATCH_ORDER below is that order. Actions
 * print as ovs-actions(7) writes them (`resubmit(,5)`, `load:0x1->NXM_NX_REG0[]`,
 * `ct(commit,table=10,zone=5)`, `CONTROLLER:65535`, `drop`).
 */
import { UsageError, FlowdrakeError } from "../util/errors.js";
import { OFPCML_NO_BUFFER, OFPP, fieldBits, type Action, type NatSpec, type Subfield } from "./actions.js";
import { OFP_DEFAULT_PRIORITY, flowKey, type Flow } from "./flow.js";
import type { Instruction } from "./instructions.js";
import { OFPFF } from "./message.js";
import {
  bigintToBytes,
  bytesToValue,
  fieldByName,
  fieldByWireName,
  ipv4ToBytes,
  ipv6ToBytes,
  macToBytes,
  valueToBytes,
  type MatchField,
  type OxmFieldDef,
  type OxmValue,
} from "./oxm.js";

// ---- vocabularies -------------------------------------------------------------------------------

/** Reserved port names as ovs-ofctl prints them. */
const PORT_NAMES: Record<number, string> = {
  [OFPP.IN_PORT]: "IN_PORT",
  [OFPP.TABLE]: "TABLE",
  [OFPP.NORMAL]: "NORMAL",
  [OFPP.FLOOD]: "FLOOD",
  [OFPP.ALL]: "ALL",
  [OFPP.CONTROLLER]: "CONTROLLER",
  [OFPP.LOCAL]: "LOCAL",
  [OFPP.ANY]: "ANY",
};
const PORT_NUMBERS = new Map(Object.entries(PORT_NAMES).map(([k, v]) => [v, Number(k)]));

/** ct_state bits (ovs-fields(7)), in print order. */
const CT_STATE_FLAGS: [string, number][] = [
  ["new", 0x01],
  ["est", 0x02],
  ["rel", 0x04],
  ["rpl", 0x08],
  ["inv", 0x10],
  ["trk", 0x20],
  ["snat", 0x40],
  ["dnat", 0x80],
];
/** TCP flag bits (ovs-fields(7) tcp_flags). */
const TCP_FLAGS: [string, number][] = [
  ["fin", 0x001],
  ["syn", 0x002],
  ["rst", 0x004],
  ["psh", 0x008],
  ["ack", 0x010],
  ["urg", 0x020],
  ["ece", 0x040],
  ["cwr", 0x080],
  ["ns", 0x100],
];
/** Flow-mod flags as ovs-ofctl names them. */
const FLOW_FLAGS: [string, number][] = [
  ["send_flow_rem", OFPFF.SEND_FLOW_REM],
  ["check_overlap", OFPFF.CHECK_OVERLAP],
  ["reset_counts", OFPFF.RESET_COUNTS],
  ["no_packet_counts", OFPFF.NO_PKT_COUNTS],
  ["no_byte_counts", OFPFF.NO_BYT_COUNTS],
];
/** Protocol shorthands: name → (eth_type, nw_proto). */
const SHORTHANDS: [string, number, number | undefined][] = [
  ["icmp", 0x0800, 1],
  ["tcp", 0x0800, 6],
  ["udp", 0x0800, 17],
  ["sctp", 0x0800, 132],
  ["ip", 0x0800, undefined],
  ["icmp6", 0x86dd, 58],
  ["tcp6", 0x86dd, 6],
  ["udp6", 0x86dd, 17],
  ["sctp6", 0x86dd, 132],
  ["ipv6", 0x86dd, undefined],
  ["arp", 0x0806, undefined],
  ["rarp", 0x8035, undefined],
  ["mpls", 0x8847, undefined],
  ["mplsm", 0x8848, undefined],
];
const FRAG_NAMES: [string, number, number][] = [
  ["no", 0, 3],
  ["yes", 1, 1],
  ["first", 1, 3],
  ["later", 3, 3],
  ["not_later", 0, 2],
];
const CONTROLLER_REASONS = ["no_match", "action", "invalid_ttl", "action_set", "group", "packet_out"];

// ---- match formatting ---------------------------------------------------------------------------

type Fmt = (name: string, m: MatchField) => string;

function num(v: OxmValue): bigint {
  return typeof v === "bigint" ? v : BigInt(v as number);
}
function hex(v: OxmValue): string {
  return `0x${num(v).toString(16)}`;
}
const fmtHex: Fmt = (n, m) => `${n}=${hex(m.value)}${m.mask !== undefined ? `/${hex(m.mask)}` : ""}`;
const fmtDec: Fmt = (n, m) => (m.mask !== undefined ? fmtHex(n, m) : `${n}=${num(m.value)}`);
const fmtMac: Fmt = (n, m) =>
  `${n}=${m.value as string}${m.mask !== undefined ? `/${m.mask as string}` : ""}`;
function prefixLen(b: Buffer): number | undefined {
  let bits = 0;
  let i = 0;
  for (; i < b.length && b[i] === 0xff; i++) bits += 8;
  if (i < b.length) {
    const x = b[i]!;
    const ones = [0, 0x80, 0xc0, 0xe0, 0xf0, 0xf8, 0xfc, 0xfe].indexOf(x);
    if (ones < 0) return undefined;
    bits += ones;
    for (i++; i < b.length; i++) if (b[i] !== 0) return undefined;
  }
  return bits;
}
const fmtIp: Fmt = (n, m) => {
  if (m.mask === undefined) return `${n}=${m.value as string}`;
  const mk = m.mask as string;
  const p = prefixLen(mk.includes(":") ? ipv6ToBytes(mk) : ipv4ToBytes(mk));
  return `${n}=${m.value as string}/${p !== undefined ? p : mk}`;
};
function flagsText(table: [string, number][], value: number, mask: number, all: number): string {
  if (mask === all) {
    const names = table.filter(([, b]) => value & b).map(([s]) => s);
    return names.length ? names.join("|") : "0";
  }
  return table
    .filter(([, b]) => mask & b)
    .map(([s, b]) => `${value & b ? "+" : "-"}${s}`)
    .join("");
}
const fmtCtState: Fmt = (n, m) => {
  const v = Number(m.value);
  const k = m.mask === undefined ? 0xffffffff : Number(m.mask);
  return `${n}=${flagsText(CT_STATE_FLAGS, v, k === 0xffffffff ? 0xff : k, -1)}`;
};
const fmtTcpFlags: Fmt = (n, m) => {
  const v = Number(m.value);
  const k = m.mask === undefined ? 0x0fff : Number(m.mask);
  return `${n}=${flagsText(TCP_FLAGS, v, k, 0x0fff)}`;
};
const fmtFrag: Fmt = (n, m) => {
  const v = Number(m.value);
  const k = m.mask === undefined ? 3 : Number(m.mask);
  const f = FRAG_NAMES.find(([, fv, fk]) => fv === (v & k) && fk === k);
  return `${n}=${f ? f[0] : `0x${v.toString(16)}/0x${k.toString(16)}`}`;
};
function portText(p: number): string {
  return PORT_NAMES[p] ?? String(p);
}
const fmtPort: Fmt = (n, m) => `${n}=${portText(Number(m.value))}`;
const fmtCtZone: Fmt = (n, m) => `${n}=${num(m.value)}`;
const fmtBytes: Fmt = (n, m) =>
  `${n}=0x${(m.value as Buffer).toString("hex").replace(/^0+(?=.)/, "")}${
    m.mask !== undefined ? `/0x${(m.mask as Buffer).toString("hex").replace(/^0+(?=.)/, "")}` : ""
  }`;
const fmtTos: Fmt = (n, m) => `${n}=${Number(m.value) << 2}`;

const BY_FORMAT: Record<OxmFieldDef["format"], Fmt> = {
  dec: fmtDec,
  hex: fmtHex,
  mac: fmtMac,
  ipv4: fmtIp,
  ipv6: fmtIp,
  port: fmtPort,
  ct_state: fmtCtState,
  tcp_flags: fmtTcpFlags,
  frag: fmtFrag,
  tun_flags: fmtHex,
  bytes: fmtBytes,
};

/** OVS match_format order: [field, printed name, formatter override]. "@x" entries are computed steps. */
const MATCH_ORDER: [string, string?, Fmt?][] = [
  ["pkt_mark"],
  ["conj_id"],
  ["ct_state"],
  ["ct_zone", "ct_zone", fmtCtZone],
  ["ct_mark"],
  ["ct_label"],
  ["ct_nw_src"],
  ["ct_nw_dst"],
  ["ct_ipv6_src"],
  ["ct_ipv6_dst"],
  ["ct_nw_proto"],
  ["ct_tp_src"],
  ["ct_tp_dst"],
  ["@shorthand"],
  ...Array.from({ length: 16 }, (_, i): [string] => [`reg${i}`]),
  ["tun_id"],
  ["tun_src"],
  ["tun_dst"],
  ["tun_ipv6_src"],
  ["tun_ipv6_dst"],
  ["tun_gbp_id"],
  ["tun_gbp_flags"],
  ["tun_flags"],
  ...Array.from({ length: 64 }, (_, i): [string] => [`tun_metadata${i}`]),
  ["metadata"],
  ["in_port"],
  ["in_phy_port"],
  ["@vlan"],
  ["eth_src", "dl_src"],
  ["eth_dst", "dl_dst"],
  ["@dl_type"],
  ["ipv6_src"],
  ["ipv6_dst"],
  ["ipv6_label"],
  ["arp_spa"],
  ["arp_tpa"],
  ["ip_src", "nw_src"],
  ["ip_dst", "nw_dst"],
  ["@nw_proto"],
  ["ip_dscp", "nw_tos", fmtTos],
  ["nw_tos", "nw_tos"],
  ["nw_ecn"],
  ["nw_ttl"],
  ["mpls_label"],
  ["mpls_tc"],
  ["mpls_bos"],
  ["mpls_ttl"],
  ["ip_frag", "nw_frag"],
  ["arp_sha"],
  ["arp_tha"],
  ["icmp_type"],
  ["icmp_code"],
  ["icmpv6_type", "icmp_type"],
  ["icmpv6_code", "icmp_code"],
  ["nd_target"],
  ["nd_sll"],
  ["nd_tll"],
  ["tcp_src", "tp_src"],
  ["tcp_dst", "tp_dst"],
  ["udp_src", "tp_src"],
  ["udp_dst", "tp_dst"],
  ["sctp_src", "tp_src"],
  ["sctp_dst", "tp_dst"],
  ["tcp_flags"],
];

/** Fold registers wider than 32 bits into reg0..reg15, as OVS stores and prints them. */
function expandWideRegs(fields: MatchField[]): MatchField[] {
  const out: MatchField[] = [];
  for (const f of fields) {
    const xr = /^(x{1,2})reg(\d+)$/.exec(f.field);
    if (!xr) {
      out.push(f);
      continue;
    }
    const words = xr[1] === "x" ? 2 : 4;
    const base = Number(xr[2]) * words;
    const v = bigintToBytes(num(f.value), words * 4);
    const k = f.mask === undefined ? undefined : bigintToBytes(num(f.mask), words * 4);
    for (let i = 0; i < words; i++) {
      const kv = k?.readUInt32BE(i * 4);
      if (kv === 0) continue;
      const vv = v.readUInt32BE(i * 4);
      out.push({
        field: `reg${base + i}`,
        value: vv,
        ...(kv !== undefined && kv !== 0xffffffff ? { mask: kv } : {}),
      });
    }
  }
  return out;
}

export function formatMatch(match: readonly MatchField[], priority = OFP_DEFAULT_PRIORITY): string {
  const fields = new Map(normalizeForText(match).map((m) => [m.field, m]));
  const parts: string[] = [];
  if (priority !== OFP_DEFAULT_PRIORITY) parts.push(`priority=${priority}`);
  const ethType = fields.get("eth_type");
  const proto = fields.get("nw_proto");
  let shorthand: (typeof SHORTHANDS)[number] | undefined;
  if (ethType) {
    const et = Number(ethType.value);
    shorthand =
      SHORTHANDS.find(([, t, p]) => t === et && p !== undefined && proto && Number(proto.value) === p) ??
      SHORTHANDS.find(([, t, p]) => t === et && p === undefined);
  }
  for (const [field, name, fmt] of MATCH_ORDER) {
    if (field === "@shorthand") {
      if (shorthand) parts.push(shorthand[0]);
    } else if (field === "@dl_type") {
      if (ethType && !shorthand)
        parts.push(`dl_type=0x${Number(ethType.value).toString(16).padStart(4, "0")}`);
    } else if (field === "@nw_proto") {
      if (proto && shorthand?.[2] === undefined) {
        const arp = shorthand?.[0] === "arp" || shorthand?.[0] === "rarp";
        parts.push(`${arp ? "arp_op" : "nw_proto"}=${Number(proto.value)}`);
      }
      const op = fields.get("arp_op");
      if (op) parts.push(`arp_op=${Number(op.value)}`);
    } else if (field === "@vlan") {
      const v = formatVlan(fields);
      if (v) parts.push(v);
    } else {
      const m = fields.get(field);
      if (!m) continue;
      const def = fieldByName(field)!;
      parts.push((fmt ?? BY_FORMAT[def.format])(name ?? field, m));
    }
  }
  return parts.join(",");
}

function normalizeForText(match: readonly MatchField[]): MatchField[] {
  const out: MatchField[] = [];
  for (const m of expandWideRegs([...match])) {
    const def = fieldByName(m.field);
    if (!def) throw new UsageError(`cannot print unknown match field ${m.field}`);
    if (def.name === "packet_type" && Number(m.value) === 0) continue;
    if (m.mask === undefined) {
      out.push({ field: def.name, value: m.value });
      continue;
    }
    const v = valueToBytes(def, m.value);
    const k = valueToBytes(def, m.mask);
    if (k.every((b) => b === 0xff) && def.format !== "ct_state") {
      out.push({ field: def.name, value: m.value });
      continue;
    }
    const masked = Buffer.from(v.map((b, i) => b & (k[i] ?? 0)));
    out.push({ field: def.name, value: bytesToValue(def, masked), mask: bytesToValue(def, k) });
  }
  return out;
}

/** VLAN match as OVS prints it, from OXM vlan_vid/vlan_pcp or NXM vlan_tci. */
function formatVlan(fields: Map<string, MatchField>): string | undefined {
  let tci = 0;
  let mask = 0;
  const vid = fields.get("vlan_vid");
  const pcp = fields.get("vlan_pcp");
  const raw = fields.get("vlan_tci");
  if (raw) {
    tci = Number(raw.value);
    mask = raw.mask === undefined ? 0xffff : Number(raw.mask);
  }
  if (vid) {
    tci |= Number(vid.value) & 0x1fff;
    mask |= (vid.mask === undefined ? 0x1fff : Number(vid.mask)) & 0x1fff;
  }
  if (pcp) {
    tci |= (Number(pcp.value) & 7) << 13;
    mask |= 0xe000;
  }
  if (!mask) return undefined;
  const vidMask = mask & 0x0fff;
  const pcpMask = mask & 0xe000;
  if (
    mask & 0x1000 &&
    tci & 0x1000 &&
    (vidMask === 0 || vidMask === 0x0fff) &&
    (pcpMask === 0 || pcpMask === 0xe000) &&
    (vidMask || pcpMask)
  ) {
    const out: string[] = [];
    if (vidMask) out.push(`dl_vlan=${tci & 0x0fff}`);
    if (pcpMask) out.push(`dl_vlan_pcp=${tci >> 13}`);
    return out.join(",");
  }
  const h = (x: number): string => `0x${x.toString(16).padStart(4, "0")}`;
  return mask === 0xffff ? `vlan_tci=${h(tci)}` : `vlan_tci=${h(tci & mask)}/${h(mask)}`;
}

// ---- action formatting --------------------------------------------------------------------------

function wireNameOf(field: string): string {
  const def = fieldByName(field);
  if (!def) return field;
  const nx = def.wire.find((w) => w.cls === 0 || w.cls === 1);
  return (nx ?? def.wire[0]!).wireName;
}
export function formatSubfield(sf: Subfield): string {
  const name = wireNameOf(sf.field);
  const total = fieldBits(sf.field);
  const n = sf.nbits || total - sf.ofs;
  if (sf.ofs === 0 && n === total) return `${name}[]`;
  if (n === 1) return `${name}[${sf.ofs}]`;
  return `${name}[${sf.ofs}..${sf.ofs + n - 1}]`;
}

function setFieldValueText(field: string, v: OxmValue): string {
  const def = fieldByName(field);
  if (!def) return String(v);
  switch (def.format) {
    case "mac":
    case "ipv4":
    case "ipv6":
      return v as string;
    case "dec":
    case "port":
      return num(v).toString();
    case "bytes":
      return `0x${(v as Buffer).toString("hex")}`;
    default:
      return hex(v);
  }
}

function formatNat(n: NatSpec): string {
  if (!n.kind) return "nat";
  let s = `nat(${n.kind}`;
  if (n.ipMin) {
    s += `=${n.ipMin}`;
    if (n.ipMax && n.ipMax !== n.ipMin) s += `-${n.ipMax}`;
  }
  if (n.portMin !== undefined) {
    s += `:${n.portMin}`;
    if (n.portMax !== undefined && n.portMax !== n.portMin) s += `-${n.portMax}`;
  }
  if (n.persistent) s += ",persistent";
  if (n.hash) s += ",hash";
  if (n.random) s += ",random";
  return `${s})`;
}

const ALG_NAMES: Record<number, string> = { 21: "ftp", 69: "tftp" };

function formatAction(a: Action): string {
  switch (a.type) {
    case "output":
      if (a.port === OFPP.CONTROLLER) return `CONTROLLER:${a.maxLen ?? OFPCML_NO_BUFFER}`;
      return PORT_NAMES[a.port] ?? `output:${a.port}`;
    case "group":
      return `group:${a.groupId}`;
    case "set_queue":
      return `set_queue:${a.queueId}`;
    case "push_vlan":
      return `push_vlan:0x${a.ethertype.toString(16)}`;
    case "pop_vlan":
      return "pop_vlan";
    case "push_mpls":
      return `push_mpls:0x${a.ethertype.toString(16)}`;
    case "pop_mpls":
      return `pop_mpls:0x${a.ethertype.toString(16).padStart(4, "0")}`;
    case "set_mpls_ttl":
      return `set_mpls_ttl(${a.ttl})`;
    case "dec_mpls_ttl":
      return "dec_mpls_ttl";
    case "set_nw_ttl":
      return `mod_nw_ttl:${a.ttl}`;
    case "dec_ttl":
      return "dec_ttl";
    case "copy_ttl_out":
      return "copy_ttl_out";
    case "copy_ttl_in":
      return "copy_ttl_in";
    case "set_field": {
      if (a.mask !== undefined) {
        const sf = maskToSubfield(a.field, a.mask);
        if (sf) {
          const v = num(a.value) >> BigInt(sf.ofs);
          return `load:0x${v.toString(16)}->${formatSubfield(sf)}`;
        }
        return `set_field:${setFieldValueText(a.field, a.value)}/${setFieldValueText(a.field, a.mask)}->${a.field}`;
      }
      return `set_field:${setFieldValueText(a.field, a.value)}->${a.field}`;
    }
    case "load":
      return `load:0x${a.value.toString(16)}->${formatSubfield(a.dst)}`;
    case "move":
      return `move:${formatSubfield(a.src)}->${formatSubfield(a.dst)}`;
    case "resubmit": {
      if (a.table === undefined) return `resubmit:${a.port === undefined ? "IN_PORT" : portText(a.port)}`;
      return `resubmit(${a.port === undefined ? "" : portText(a.port)},${a.table})`;
    }
    case "ct": {
      const p: string[] = [];
      if (a.commit) p.push("commit");
      if (a.force) p.push("force");
      if (a.table !== undefined) p.push(`table=${a.table}`);
      if (typeof a.zone === "object") p.push(`zone=${formatSubfield(a.zone)}`);
      else if (a.zone) p.push(`zone=${a.zone}`);
      let rest = a.actions ?? [];
      if (rest[0]?.type === "nat") {
        p.push(formatNat(rest[0].nat));
        rest = rest.slice(1);
      }
      if (rest.length) p.push(`exec(${rest.map(formatAction).join(",")})`);
      if (a.alg) p.push(`alg=${ALG_NAMES[a.alg] ?? a.alg}`);
      return p.length ? `ct(${p.join(",")})` : "ct";
    }
    case "nat":
      return formatNat(a.nat);
    case "ct_clear":
      return "ct_clear";
    case "controller": {
      const reason = a.reason ?? 1;
      const maxLen = a.maxLen ?? OFPCML_NO_BUFFER;
      if (reason === 1 && !a.controllerId && !a.userdata?.length && !a.pause) return `CONTROLLER:${maxLen}`;
      const p: string[] = [];
      if (reason !== 1) p.push(`reason=${CONTROLLER_REASONS[reason] ?? reason}`);
      if (maxLen !== OFPCML_NO_BUFFER) p.push(`max_len=${maxLen}`);
      if (a.controllerId) p.push(`id=${a.controllerId}`);
      if (a.userdata?.length) p.push(`userdata=${dotted(a.userdata)}`);
      if (a.pause) p.push("pause");
      return `controller(${p.join(",")})`;
    }
    case "note":
      return `note:${dotted(a.data)}`;
    case "conjunction":
      return `conjunction(${a.id},${a.clause + 1}/${a.nClauses})`;
    case "output_reg":
      return `output:${formatSubfield(a.src)}`;
    case "set_tunnel":
      return a.tunId > 0xffffffffn
        ? `set_tunnel64:0x${a.tunId.toString(16)}`
        : `set_tunnel:0x${a.tunId.toString(16)}`;
    case "exit":
      return "exit";
    case "experimenter":
      return `experimenter(0x${a.experimenter.toString(16)},${a.data.toString("hex")})`;
    case "unknown":
      return `unknown_action(${a.ofpType})`;
  }
}

function dotted(b: Buffer): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(".");
}

/** A contiguous mask as a subfield (so OVS prints a masked set_field as `load:`). */
function maskToSubfield(field: string, mask: OxmValue): Subfield | undefined {
  if (typeof mask !== "number" && typeof mask !== "bigint") return undefined;
  let k = num(mask);
  if (k === 0n) return undefined;
  let ofs = 0;
  while ((k & 1n) === 0n) {
    k >>= 1n;
    ofs++;
  }
  let n = 0;
  while (k & 1n) {
    k >>= 1n;
    n++;
  }
  if (k !== 0n) return undefined;
  const total = fieldBits(field);
  return { field, ofs, nbits: ofs === 0 && n === total ? 0 : n };
}

export function formatActions(actions: readonly Action[]): string {
  return actions.length ? actions.map(formatAction).join(",") : "drop";
}

/**
 * Whether two flows are one flow to OVS (table, priority, match) doing the
 * same thing (instructions): how an app tells that a reactive flow found
 * installed after a restart is still the one it would install.
 */
export function sameFlow(a: Flow, b: Flow): boolean {
  return (
    flowKey(a) === flowKey(b) && formatInstructions(a.instructions) === formatInstructions(b.instructions)
  );
}

/** OpenFlow's instruction order (the spec's execution order), which OVS prints them in. */
const INSTRUCTION_ORDER: readonly string[] = [
  "meter",
  "apply_actions",
  "clear_actions",
  "write_actions",
  "write_metadata",
  "goto_table",
];

/** Instructions in the order OVS prints them (spec execution order). */
export function formatInstructions(ins: readonly Instruction[]): string {
  const out: string[] = [];
  // Builders write instructions in this order already; only a decoded flow may need the sort.
  let inOrder = true;
  for (let k = 1; k < ins.length && inOrder; k++) {
    inOrder = INSTRUCTION_ORDER.indexOf(ins[k - 1]!.type) <= INSTRUCTION_ORDER.indexOf(ins[k]!.type);
  }
  const sorted = inOrder
    ? ins
    : [...ins].sort((a, b) => INSTRUCTION_ORDER.indexOf(a.type) - INSTRUCTION_ORDER.indexOf(b.type));
  for (const i of sorted) {
    switch (i.type) {
      case "meter":
        out.push(`meter:${i.meterId}`);
        break;
      case "apply_actions":
        if (i.actions.length) out.push(i.actions.map(formatAction).join(","));
        break;
      case "clear_actions":
        out.push("clear_actions");
        break;
      case "write_actions":
        out.push(`write_actions(${i.actions.map(formatAction).join(",")})`);
        break;
      case "write_metadata":
        out.push(
          i.mask === 0xffffffffffffffffn
            ? `write_metadata:0x${i.metadata.toString(16)}`
            : `write_metadata:0x${i.metadata.toString(16)}/0x${i.mask.toString(16)}`,
        );
        break;
      case "goto_table":
        out.push(`goto_table:${i.table}`);
        break;
      case "experimenter":
        out.push(`experimenter(0x${i.experimenter.toString(16)})`);
        break;
    }
  }
  return out.length ? out.join(",") : "drop";
}

/** The line `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` prints for this flow. */
export function formatFlow(flow: Flow): string {
  let s = "";
  if (flow.cookie) s += `cookie=0x${flow.cookie.toString(16)}, `;
  if (flow.table) s += `table=${flow.table}, `;
  if (flow.idleTimeout) s += `idle_timeout=${flow.idleTimeout}, `;
  if (flow.hardTimeout) s += `hard_timeout=${flow.hardTimeout}, `;
  if (flow.flags) {
    const names = FLOW_FLAGS.filter(([, b]) => flow.flags! & b).map(([n]) => n);
    s += `${names.join(" ")} `;
  }
  s += formatMatch(flow.match, flow.priority);
  if (!s.endsWith(" ")) s += " ";
  return `${s}actions=${formatInstructions(flow.instructions)}`.trimStart();
}

// ---- parsing ------------------------------------------------------------------------------------

function bad(msg: string, text: string): never {
  throw new UsageError(`${msg} in ${JSON.stringify(text)}`, { text });
}

/** Split on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const c of s) {
    if (c === "(") depth++;
    if (c === ")") depth--;
    if (c === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function parseInt64(s: string, what: string): bigint {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(s)) bad(`bad number for ${what}`, s);
  return BigInt(s);
}
function parseNum(s: string, what: string): number {
  const v = parseInt64(s, what);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`number too large for ${what}`, s);
  return Number(v);
}
function parsePort(s: string): number {
  const named = PORT_NUMBERS.get(s.toUpperCase());
  if (named !== undefined) return named;
  return parseNum(s, "port");
}

/** Parse one typed value (and optional mask) for a field. */
function parseFieldValue(def: OxmFieldDef, text: string): { value: OxmValue; mask?: OxmValue } {
  const slash = text.indexOf("/");
  const vs = slash < 0 ? text : text.slice(0, slash);
  const ms = slash < 0 ? undefined : text.slice(slash + 1);
  const one = (s: string): OxmValue => {
    switch (def.format) {
      case "mac":
        macToBytes(s);
        return s.toLowerCase();
      case "ipv4":
        ipv4ToBytes(s);
        return s;
      case "ipv6":
        return bytesToValue(def, ipv6ToBytes(s));
      case "port":
        return parsePort(s);
      case "bytes":
        return valueToBytes(def, s);
      default: {
        const v = parseInt64(s, def.name);
        return def.length <= 4 ? Number(v) : v;
      }
    }
  };
  const value = one(vs);
  if (ms === undefined) return { value };
  if ((def.format === "ipv4" || def.format === "ipv6") && /^\d+$/.test(ms)) {
    const bits = Number(ms);
    const total = def.length * 8;
    if (bits > total) bad(`prefix /${bits} too long for ${def.name}`, text);
    const k = bigintToBytes(
      bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(total - bits),
      def.length,
    );
    return { value, mask: bytesToValue(def, k) };
  }
  return { value, mask: one(ms) };
}

function parseFlags(table: [string, number][], text: string, what: string): { value: number; mask: number } {
  let value = 0;
  let mask = 0;
  const re = /([+-])([a-z]+)/g;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(text))) {
    const bit = table.find(([n]) => n === m![2])?.[1];
    if (bit === undefined) bad(`unknown ${what} flag ${m[2]}`, text);
    mask |= bit;
    if (m[1] === "+") value |= bit;
    consumed += m[0].length;
  }
  if (consumed !== text.length) {
    // "syn|ack" or a number form
    if (/^[a-z|]+$/.test(text)) {
      for (const n of text.split("|")) {
        const bit = table.find(([x]) => x === n)?.[1];
        if (bit === undefined) bad(`unknown ${what} flag ${n}`, text);
        value |= bit;
      }
      return { value, mask: -1 };
    }
    const [v, k] = text.split("/");
    return { value: parseNum(v!, what), mask: k === undefined ? -1 : parseNum(k, what) };
  }
  return { value, mask };
}

const TEXT_ALIASES: Record<string, string> = {
  dl_dst: "eth_dst",
  dl_src: "eth_src",
  dl_type: "eth_type",
  nw_src: "ip_src",
  nw_dst: "ip_dst",
  nw_proto: "nw_proto",
  nw_frag: "ip_frag",
  ip_ecn: "nw_ecn",
  tunnel_id: "tun_id",
};

/** Parse the match part of a flow (`ip,nw_src=10.0.0.0/24,tp_dst=80`). */
export function parseMatch(text: string): { match: MatchField[]; priority?: number } {
  const out = new Map<string, MatchField>();
  const deferred: [string, string][] = [];
  let priority: number | undefined;
  let ethType: number | undefined;
  let proto: number | undefined;
  let vlanTci = 0;
  let vlanMask = 0;
  const put = (m: MatchField): void => {
    out.set(m.field, m);
  };
  for (const tok of text.split(/[,\s]+/).filter(Boolean)) {
    const eq = tok.indexOf("=");
    const key = eq < 0 ? tok : tok.slice(0, eq);
    const val = eq < 0 ? "" : tok.slice(eq + 1);
    const sh = SHORTHANDS.find(([n]) => n === key);
    if (sh && eq < 0) {
      ethType = sh[1];
      if (sh[2] !== undefined) proto = sh[2];
      continue;
    }
    if (eq < 0) bad(`unknown match keyword ${key}`, text);
    switch (key) {
      case "priority":
        priority = parseNum(val, key);
        continue;
      case "dl_type":
      case "eth_type":
        ethType = parseNum(val, key);
        continue;
      case "nw_proto":
      case "ip_proto":
        proto = parseNum(val, key);
        continue;
      case "dl_vlan":
      case "vlan_vid": {
        const v = parseNum(val, key);
        vlanTci = (vlanTci & ~0x1fff) | 0x1000 | (v & 0xfff);
        vlanMask |= 0x1fff;
        continue;
      }
      case "dl_vlan_pcp":
      case "vlan_pcp": {
        const v = parseNum(val, key);
        vlanTci = (vlanTci & ~0xe000) | 0x1000 | ((v & 7) << 13);
        vlanMask |= 0xf000;
        continue;
      }
      case "vlan_tci": {
        const [v, k] = val.split("/");
        vlanTci = parseNum(v!, key);
        vlanMask = k === undefined ? 0xffff : parseNum(k, key);
        continue;
      }
      case "nw_tos":
        put({ field: "ip_dscp", value: parseNum(val, key) >> 2 });
        continue;
      case "ct_state": {
        const f = parseFlags(CT_STATE_FLAGS, val, key);
        put(f.mask === -1 ? { field: key, value: f.value } : { field: key, value: f.value, mask: f.mask });
        continue;
      }
      case "tcp_flags": {
        const f = parseFlags(TCP_FLAGS, val, key);
        put({ field: key, value: f.value, mask: f.mask === -1 ? 0x0fff : f.mask });
        continue;
      }
      case "nw_frag":
      case "ip_frag": {
        const f = FRAG_NAMES.find(([n]) => n === val);
        if (!f) bad(`bad ${key} value`, val);
        put(f[2] === 3 ? { field: "ip_frag", value: f[1] } : { field: "ip_frag", value: f[1], mask: f[2] });
        continue;
      }
      case "tp_src":
      case "tp_dst":
      case "icmp_type":
      case "icmp_code":
        deferred.push([key, val]);
        continue;
    }
    const name = TEXT_ALIASES[key] ?? key;
    const xr = /^(x{1,2})reg(\d+)$/.exec(name);
    const def = fieldByName(name);
    if (!def) bad(`unknown match field ${key}`, text);
    const pv = parseFieldValue(def, val);
    if (xr) {
      for (const r of expandWideRegs([{ field: def.name, ...pv }])) put(r);
      continue;
    }
    put({ field: def.name, ...pv });
  }
  for (const [key, val] of deferred) {
    const v6 = ethType === 0x86dd;
    let name: string;
    if (key === "icmp_type" || key === "icmp_code") name = `${v6 ? "icmpv6" : "icmp"}_${key.slice(5)}`;
    else {
      const l4 = proto === 17 ? "udp" : proto === 132 ? "sctp" : "tcp";
      name = `${l4}_${key.slice(3)}`;
    }
    put({ field: name, ...parseFieldValue(fieldByName(name)!, val) });
  }
  const head: MatchField[] = [];
  if (ethType !== undefined) head.push({ field: "eth_type", value: ethType });
  if (proto !== undefined) head.push({ field: "nw_proto", value: proto });
  if (vlanMask) head.push(...vlanToOxm(vlanTci, vlanMask));
  return { match: [...head, ...out.values()], ...(priority !== undefined ? { priority } : {}) };
}

/** A VLAN TCI/mask as the OXM fields OVS uses on OpenFlow 1.3 (vlan_vid/vlan_pcp), else NXM vlan_tci. */
function vlanToOxm(tci: number, mask: number): MatchField[] {
  const vidMask = mask & 0x1fff;
  const pcpMask = mask & 0xe000;
  if ((pcpMask === 0 || (pcpMask === 0xe000 && tci & 0x1000 && mask & 0x1000)) && vidMask !== 0) {
    const out: MatchField[] = [
      vidMask === 0x1fff
        ? { field: "vlan_vid", value: tci & 0x1fff }
        : { field: "vlan_vid", value: tci & vidMask, mask: vidMask },
    ];
    if (pcpMask) out.push({ field: "vlan_pcp", value: tci >> 13 });
    return out;
  }
  return [
    mask === 0xffff ? { field: "vlan_tci", value: tci } : { field: "vlan_tci", value: tci & mask, mask },
  ];
}

function parseSubfield(text: string): Subfield {
  const m = /^([A-Za-z0-9_]+)\[(?:(\d+)(?:\.\.(\d+))?)?\]$/.exec(text.trim());
  if (!m) bad("bad field reference", text);
  const byWire = fieldByWireName(m[1]!);
  const def = byWire?.def ?? fieldByName(m[1]!);
  if (!def) bad(`unknown field ${m[1]}`, text);
  if (m[2] === undefined) return { field: def.name, ofs: 0, nbits: 0 };
  const lo = Number(m[2]);
  const hi = m[3] === undefined ? lo : Number(m[3]);
  // The width of the name the action uses (NXM_OF_IN_PORT is 16 bits, OXM in_port 32).
  const width = fieldBits(def.name);
  if (hi < lo || hi >= width) bad("bad bit range", text);
  const n = hi - lo + 1;
  return { field: def.name, ofs: lo, nbits: lo === 0 && n === width ? 0 : n };
}

function parseNat(text: string): NatSpec {
  if (text === "nat") return {};
  const m = /^nat\((.*)\)$/.exec(text);
  if (!m) bad("bad nat", text);
  const n: NatSpec = {};
  for (const p of splitTop(m[1]!)) {
    if (p === "persistent") n.persistent = true;
    else if (p === "hash") n.hash = true;
    else if (p === "random") n.random = true;
    else {
      const k = /^(src|dst)(?:=(.*))?$/.exec(p);
      if (!k) bad("bad nat argument", p);
      n.kind = k[1] as "src" | "dst";
      if (k[2]) {
        let addr = k[2];
        let ports: string | undefined;
        const br = /^\[([^\]]+)\](?:-\[([^\]]+)\])?(?::(.*))?$/.exec(addr);
        if (br) {
          n.ipMin = br[1];
          n.ipMax = br[2] ?? br[1];
          ports = br[3];
        } else if (addr.includes(".")) {
          const c = addr.indexOf(":");
          if (c >= 0) {
            ports = addr.slice(c + 1);
            addr = addr.slice(0, c);
          }
          const [a, b] = addr.split("-");
          n.ipMin = a;
          n.ipMax = b ?? a;
        } else {
          const [a, b] = addr.split("-");
          n.ipMin = a;
          n.ipMax = b ?? a;
        }
        if (n.ipMin) ipOk(n.ipMin);
        if (n.ipMax) ipOk(n.ipMax);
        if (ports) {
          const [a, b] = ports.split("-");
          n.portMin = parseNum(a!, "nat port");
          n.portMax = b === undefined ? n.portMin : parseNum(b, "nat port");
        }
      }
    }
  }
  return n;
}
function ipOk(s: string): void {
  if (s.includes(":")) ipv6ToBytes(s);
  else ipv4ToBytes(s);
}

const MOD_ALIASES: Record<string, string> = {
  mod_dl_dst: "eth_dst",
  mod_dl_src: "eth_src",
  mod_nw_src: "ip_src",
  mod_nw_dst: "ip_dst",
  mod_vlan_vid: "vlan_vid",
  mod_vlan_pcp: "vlan_pcp",
};

function setField(field: string, valText: string, ctx: { proto?: number }): Action {
  const name = TEXT_ALIASES[field] ?? field;
  let def = fieldByName(name);
  if ((name === "tp_src" || name === "tp_dst") && ctx.proto !== undefined) {
    def = fieldByName(`${ctx.proto === 17 ? "udp" : ctx.proto === 132 ? "sctp" : "tcp"}_${name.slice(3)}`);
  }
  if (!def) bad(`unknown field ${field}`, valText);
  const pv = parseFieldValue(def, valText);
  if (def.name === "vlan_vid" && field === "mod_vlan_vid") pv.value = Number(pv.value) | 0x1000;
  return { type: "set_field", field: def.name, ...pv };
}

function parseAction(t: string, ctx: { proto?: number }): Action[] {
  const colon = /^([a-z_0-9]+):(.*)$/i.exec(t);
  const paren = /^([a-z_0-9]+)\((.*)\)$/i.exec(t);
  const upper = t.toUpperCase();
  if (PORT_NUMBERS.has(upper) && upper !== "CONTROLLER" && upper !== "ANY") {
    return [{ type: "output", port: PORT_NUMBERS.get(upper)! }];
  }
  if (/^\d+$/.test(t)) return [{ type: "output", port: parseNum(t, "port") }];
  if (upper === "CONTROLLER" || t === "controller")
    return [{ type: "output", port: OFPP.CONTROLLER, maxLen: 0xffff }];
  if (colon) {
    const [, k, v] = colon as unknown as [string, string, string];
    switch (k.toLowerCase()) {
      case "output":
        // max_len is not written in the text; ovs-ofctl sends 65535 (no limit).
        if (v.includes("[")) return [{ type: "output_reg", src: parseSubfield(v), maxLen: 0xffff }];
        return [{ type: "output", port: parsePort(v) }];
      case "controller":
        return [{ type: "output", port: OFPP.CONTROLLER, maxLen: parseNum(v, "max_len") }];
      case "group":
        return [{ type: "group", groupId: parseNum(v, "group") }];
      case "set_queue":
        return [{ type: "set_queue", queueId: parseNum(v, "queue") }];
      case "push_vlan":
        return [{ type: "push_vlan", ethertype: parseNum(v, "ethertype") }];
      case "push_mpls":
        return [{ type: "push_mpls", ethertype: parseNum(v, "ethertype") }];
      case "pop_mpls":
        return [{ type: "pop_mpls", ethertype: parseNum(v, "ethertype") }];
      case "mod_nw_ttl":
        return [{ type: "set_nw_ttl", ttl: parseNum(v, "ttl") }];
      case "mod_tp_src":
      case "mod_tp_dst":
        return [setField(`tp_${k.slice(7)}`, v, ctx)];
      case "resubmit":
        return [{ type: "resubmit", ...(v.toUpperCase() === "IN_PORT" ? {} : { port: parsePort(v) }) }];
      case "note": {
        const hexs = v.replace(/\./g, "");
        if (!/^([0-9a-f]{2})*$/i.test(hexs)) bad("bad note", t);
        return [{ type: "note", data: Buffer.from(hexs, "hex") }];
      }
      case "set_field": {
        const m = /^(.*)->([a-z_0-9]+)$/i.exec(v);
        if (!m) bad("bad set_field", t);
        return [setField(m[2]!, m[1]!, ctx)];
      }
      case "load": {
        const m = /^(.*)->(.*)$/.exec(v);
        if (!m) bad("bad load", t);
        return [{ type: "load", dst: parseSubfield(m[2]!), value: parseInt64(m[1]!, "load value") }];
      }
      case "move": {
        const m = /^(.*)->(.*)$/.exec(v);
        if (!m) bad("bad move", t);
        return [{ type: "move", src: parseSubfield(m[1]!), dst: parseSubfield(m[2]!) }];
      }
      case "goto_table":
      case "write_metadata":
      case "meter":
        return [];
      default:
        if (MOD_ALIASES[k]) return [setField(MOD_ALIASES[k], v, ctx)];
        bad(`unknown action ${k}`, t);
    }
  }
  if (paren) {
    const [, k, v] = paren as unknown as [string, string, string];
    switch (k) {
      case "resubmit": {
        const [p, tb] = v.split(",");
        return [
          {
            type: "resubmit",
            ...(p && p.toUpperCase() !== "IN_PORT" ? { port: parsePort(p) } : {}),
            ...(tb ? { table: parseNum(tb, "table") } : {}),
          },
        ];
      }
      case "ct": {
        const a: Extract<Action, { type: "ct" }> = { type: "ct", actions: [] };
        for (const p of splitTop(v)) {
          if (p === "commit") a.commit = true;
          else if (p === "force") a.force = true;
          else if (p.startsWith("table=")) a.table = parseNum(p.slice(6), "table");
          else if (p.startsWith("zone=")) {
            const z = p.slice(5);
            a.zone = z.includes("[") ? parseSubfield(z) : parseNum(z, "zone");
          } else if (p.startsWith("nat")) a.actions!.unshift({ type: "nat", nat: parseNat(p) });
          else if (p.startsWith("exec(")) a.actions!.push(...parseActionList(p.slice(5, -1), ctx));
          else if (p.startsWith("alg=")) {
            const n = p.slice(4);
            const id = Object.entries(ALG_NAMES).find(([, s]) => s === n)?.[0];
            a.alg = id ? Number(id) : parseNum(n, "alg");
          } else bad(`unknown ct argument ${p}`, t);
        }
        return [a];
      }
      case "controller": {
        const a: Extract<Action, { type: "controller" }> = { type: "controller" };
        for (const p of splitTop(v)) {
          const [pk, pv] = p.split("=") as [string, string | undefined];
          if (pk === "pause") a.pause = true;
          else if (pk === "max_len") a.maxLen = parseNum(pv ?? "", pk);
          else if (pk === "id") a.controllerId = parseNum(pv ?? "", pk);
          else if (pk === "reason") {
            const r = CONTROLLER_REASONS.indexOf(pv ?? "");
            if (r < 0) bad("unknown controller reason", p);
            a.reason = r;
          } else if (pk === "userdata") a.userdata = Buffer.from((pv ?? "").replace(/\./g, ""), "hex");
          else bad(`unknown controller argument ${pk}`, t);
        }
        return [normalizeController(a)];
      }
      case "conjunction": {
        const m = /^(\d+),(\d+)\/(\d+)$/.exec(v);
        if (!m) bad("bad conjunction", t);
        return [{ type: "conjunction", id: Number(m[1]), clause: Number(m[2]) - 1, nClauses: Number(m[3]) }];
      }
      case "set_mpls_ttl":
        return [{ type: "set_mpls_ttl", ttl: parseNum(v, "ttl") }];
      case "nat":
        return [{ type: "nat", nat: parseNat(t) }];
      case "write_actions":
        return [];
      default:
        bad(`unknown action ${k}`, t);
    }
  }
  switch (t) {
    case "drop":
      return [];
    case "pop_vlan":
    case "strip_vlan":
      return [{ type: "pop_vlan" }];
    case "dec_ttl":
      return [{ type: "dec_ttl" }];
    case "dec_mpls_ttl":
      return [{ type: "dec_mpls_ttl" }];
    case "ct_clear":
      return [{ type: "ct_clear" }];
    case "exit":
      return [{ type: "exit" }];
    case "copy_ttl_out":
    case "copy_ttl_in":
      return [{ type: t }];
    case "ct":
      return [{ type: "ct", actions: [] }];
    case "nat":
      return [{ type: "nat", nat: {} }];
    case "resubmit":
      return [{ type: "resubmit" }];
  }
  bad("unknown action", t);
}

/** `controller` with only defaults is an output to CONTROLLER, as OVS encodes it. */
function normalizeController(a: Extract<Action, { type: "controller" }>): Action {
  if ((a.reason ?? 1) === 1 && !a.controllerId && !a.userdata?.length && !a.pause) {
    return { type: "output", port: OFPP.CONTROLLER, maxLen: a.maxLen ?? OFPCML_NO_BUFFER };
  }
  return a;
}

function parseActionList(text: string, ctx: { proto?: number }): Action[] {
  return splitTop(text).flatMap((t) => parseAction(t, ctx));
}

/** Parse `actions=` text into instructions (apply_actions plus any instruction keywords). */
export function parseInstructions(text: string, ctx: { proto?: number } = {}): Instruction[] {
  const apply: Action[] = [];
  const out: Instruction[] = [];
  for (const t of splitTop(text)) {
    let m: RegExpExecArray | null;
    if ((m = /^goto_table:(\d+)$/.exec(t))) out.push({ type: "goto_table", table: Number(m[1]) });
    else if ((m = /^meter:(\d+)$/.exec(t))) out.push({ type: "meter", meterId: Number(m[1]) });
    else if ((m = /^write_metadata:([0-9a-fx]+)(?:\/([0-9a-fx]+))?$/i.exec(t))) {
      out.push({
        type: "write_metadata",
        metadata: parseInt64(m[1]!, "metadata"),
        mask: m[2] === undefined ? 0xffffffffffffffffn : parseInt64(m[2], "metadata mask"),
      });
    } else if (t === "clear_actions") out.push({ type: "clear_actions" });
    else if ((m = /^write_actions\((.*)\)$/.exec(t))) {
      out.push({ type: "write_actions", actions: parseActionList(m[1]!, ctx) });
    } else apply.push(...parseAction(t, ctx));
  }
  const order = ["meter", "apply_actions", "clear_actions", "write_actions", "write_metadata", "goto_table"];
  if (apply.length) out.push({ type: "apply_actions", actions: apply });
  return out.sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type));
}

/** Parse an ovs-ofctl flow (`table=3, priority=100, in_port=1, actions=output:2`). */
export function parseFlow(text: string): Flow {
  try {
    const ai = text.search(/(^|[\s,])actions=/);
    if (ai < 0) bad("no actions=", text);
    const head = text.slice(0, ai);
    const acts = text.slice(text.indexOf("actions=", ai) + 8).trim();
    const flow: Flow = { table: 0, priority: OFP_DEFAULT_PRIORITY, cookie: 0n, match: [], instructions: [] };
    const matchToks: string[] = [];
    for (const tok of head.split(/[,\s]+/).filter(Boolean)) {
      const [k, v] = tok.split("=") as [string, string | undefined];
      const flag = FLOW_FLAGS.find(([n]) => n === k);
      if (flag && v === undefined) {
        flow.flags = (flow.flags ?? 0) | flag[1];
        continue;
      }
      switch (k) {
        case "table":
          flow.table = parseNum(v ?? "", k);
          continue;
        case "cookie":
          flow.cookie = parseInt64((v ?? "").split("/")[0]!, k);
          continue;
        case "idle_timeout":
          flow.idleTimeout = parseNum(v ?? "", k);
          continue;
        case "hard_timeout":
          flow.hardTimeout = parseNum(v ?? "", k);
          continue;
        case "duration":
        case "n_packets":
        case "n_bytes":
        case "idle_age":
        case "hard_age":
        case "importance":
          continue;
      }
      matchToks.push(tok);
    }
    const pm = parseMatch(matchToks.join(","));
    flow.match = pm.match;
    if (pm.priority !== undefined) flow.priority = pm.priority;
    const proto = pm.match.find((m) => m.field === "nw_proto")?.value;
    flow.instructions = parseInstructions(acts, { proto: proto === undefined ? undefined : Number(proto) });
    if (!flow.idleTimeout) delete flow.idleTimeout;
    if (!flow.hardTimeout) delete flow.hardTimeout;
    return flow;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (err instanceof FlowdrakeError)
      throw new UsageError(`${err.message} in ${JSON.stringify(text)}`, { text });
    throw err;
  }
}
