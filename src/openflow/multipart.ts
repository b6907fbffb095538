/**
 * OpenFlow 1.3 multipart bodies (spec §7.3.5, ofp_multipart_type) and the
 * structures they share with other messages: ofp_port (port_status,
 * port_desc), buckets (group_mod, group_desc) and meter bands (meter_mod,
 * meter_config). Requests and replies are discriminated on `mpType`, the
 * lowercase OFPMP_ name; bodies flowdrake does not model stay raw
 * (`mpType: "unknown"`).
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError } from "../util/errors.js";
import { decodeActions, encodeActions, type Action } from "./actions.js";
import { decodeInstructions, encodeInstructions, type Instruction } from "./instructions.js";
import { OFPMP } from "./names.js";
import { bytesToMac, decodeMatch, encodeMatch, macToBytes, type MatchField } from "./oxm.js";

// ---- ofp_port -----------------------------------------------------------------------------------

export interface OfPort {
  portNo: number;
  hwAddr: string;
  name: string;
  config: number;
  state: number;
  curr: number;
  advertised: number;
  supported: number;
  peer: number;
  currSpeed: number;
  maxSpeed: number;
}

export function encodePort(w: ByteWriter, p: OfPort): void {
  w.u32(p.portNo).zeros(4).bytes(macToBytes(p.hwAddr)).zeros(2);
  writeString(w, p.name, 16);
  w.u32(p.config).u32(p.state).u32(p.curr).u32(p.advertised).u32(p.supported).u32(p.peer);
  w.u32(p.currSpeed).u32(p.maxSpeed);
}
export function decodePort(r: ByteReader): OfPort {
  const portNo = r.u32("port_no");
  r.skip(4);
  const hwAddr = bytesToMac(r.bytes(6, "hw_addr"));
  r.skip(2);
  return {
    portNo,
    hwAddr,
    name: readString(r, 16, "name"),
    config: r.u32("config"),
    state: r.u32("state"),
    curr: r.u32("curr"),
    advertised: r.u32("advertised"),
    supported: r.u32("supported"),
    peer: r.u32("peer"),
    currSpeed: r.u32("curr_speed"),
    maxSpeed: r.u32("max_speed"),
  };
}

export function writeString(w: ByteWriter, s: string, n: number): void {
  const b = Buffer.from(s, "utf8").subarray(0, n - 1);
  w.bytes(b).zeros(n - b.length);
}
export function readString(r: ByteReader, n: number, what: string): string {
  const b = r.bytes(n, what);
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? n : z).toString("utf8");
}

// ---- buckets and bands --------------------------------------------------------------------------

export interface Bucket {
  weight?: number;
  watchPort?: number;
  watchGroup?: number;
  actions: Action[];
}

export function encodeBuckets(w: ByteWriter, buckets: readonly Bucket[]): void {
  for (const b of buckets) {
    const start = w.length;
    const lenAt = w.reserve(2);
    w.u16(b.weight ?? 0)
      .u32(b.watchPort ?? 0xffffffff)
      .u32(b.watchGroup ?? 0xffffffff)
      .zeros(4);
    encodeActions(w, b.actions);
    w.setU16(lenAt, w.length - start);
  }
}
export function decodeBuckets(r: ByteReader): Bucket[] {
  const out: Bucket[] = [];
  while (!r.atEnd()) {
    const len = r.u16("bucket len");
    if (len < 16) throw new DecodeError(`bucket length ${len} < 16`);
    const b = r.sub(len - 2, "bucket");
    const weight = b.u16("weight");
    const watchPort = b.u32("watch_port");
    const watchGroup = b.u32("watch_group");
    b.skip(4);
    out.push({ weight, watchPort, watchGroup, actions: decodeActions(b) });
  }
  return out;
}

export type MeterBand =
  | { type: "drop"; rate: number; burstSize: number }
  | { type: "dscp_remark"; rate: number; burstSize: number; precLevel: number }
  | { type: "experimenter"; rate: number; burstSize: number; experimenter: number };

const OFPMBT = { drop: 1, dscp_remark: 2, experimenter: 0xffff } as const;

export function encodeBands(w: ByteWriter, bands: readonly MeterBand[]): void {
  for (const b of bands) {
    w.u16(OFPMBT[b.type]).u16(16).u32(b.rate).u32(b.burstSize);
    if (b.type === "drop") w.zeros(4);
    else if (b.type === "dscp_remark") w.u8(b.precLevel).zeros(3);
    else w.u32(b.experimenter);
  }
}
export function decodeBands(r: ByteReader): MeterBand[] {
  const out: MeterBand[] = [];
  while (!r.atEnd()) {
    const type = r.u16("band type");
    const len = r.u16("band len");
    if (len < 16) throw new DecodeError(`meter band length ${len} < 16`);
    const b = r.sub(len - 4, "band");
    const rate = b.u32("rate");
    const burstSize = b.u32("burst_size");
    if (type === 1) out.push({ type: "drop", rate, burstSize });
    else if (type === 2) out.push({ type: "dscp_remark", rate, burstSize, precLevel: b.u8("prec_level") });
    else if (type === 0xffff)
      out.push({ type: "experimenter", rate, burstSize, experimenter: b.u32("experimenter") });
    else throw new DecodeError(`unknown meter band type ${type}`);
  }
  return out;
}

// ---- request bodies -----------------------------------------------------------------------------

export interface FlowStatsRequest {
  tableId: number;
  outPort: number;
  outGroup: number;
  cookie: bigint;
  cookieMask: bigint;
  match: MatchField[];
}

export type MultipartRequestBody =
  | { mpType: "desc" }
  | ({ mpType: "flow" } & FlowStatsRequest)
  | ({ mpType: "aggregate" } & FlowStatsRequest)
  | { mpType: "table" }
  | { mpType: "port_stats"; portNo: number }
  | { mpType: "port_desc" }
  | { mpType: "group"; groupId: number }
  | { mpType: "group_desc" }
  | { mpType: "meter"; meterId: number }
  | { mpType: "meter_config"; meterId: number }
  | { mpType: "unknown"; mpTypeId: number; data: Buffer };

// ---- reply bodies -------------------------------------------------------------------------------

export interface FlowStats {
  tableId: number;
  durationSec: number;
  durationNsec: number;
  priority: number;
  idleTimeout: number;
  hardTimeout: number;
  flags: number;
  cookie: bigint;
  packetCount: bigint;
  byteCount: bigint;
  match: MatchField[];
  instructions: Instruction[];
}
export interface TableStats {
  tableId: number;
  activeCount: number;
  lookupCount: bigint;
  matchedCount: bigint;
}
export interface PortStats {
  portNo: number;
  rxPackets: bigint;
  txPackets: bigint;
  rxBytes: bigint;
  txBytes: bigint;
  rxDropped: bigint;
  txDropped: bigint;
  rxErrors: bigint;
  txErrors: bigint;
  rxFrameErr: bigint;
  rxOverErr: bigint;
  rxCrcErr: bigint;
  collisions: bigint;
  durationSec: number;
  durationNsec: number;
}
const PORT_COUNTERS = [
  "rxPackets",
  "txPackets",
  "rxBytes",
  "txBytes",
  "rxDropped",
  "txDropped",
  "rxErrors",
  "txErrors",
  "rxFrameErr",
  "rxOverErr",
  "rxCrcErr",
  "collisions",
] as const;
export interface GroupStats {
  groupId: number;
  refCount: number;
  packetCount: bigint;
  byteCount: bigint;
  durationSec: number;
  durationNsec: number;
  buckets: { packetCount: bigint; byteCount: bigint }[];
}
export type GroupType = "all" | "select" | "indirect" | "ff";
export const GROUP_TYPES: readonly GroupType[] = ["all", "select", "indirect", "ff"];
export interface GroupDesc {
  groupType: GroupType;
  groupId: number;
  buckets: Bucket[];
}
export interface MeterStats {
  meterId: number;
  flowCount: number;
  packetInCount: bigint;
  byteInCount: bigint;
  durationSec: number;
  durationNsec: number;
  bands: { packetCount: bigint; byteCount: bigint }[];
}
export interface MeterConfig {
  flags: number;
  meterId: number;
  bands: MeterBand[];
}
export interface SwitchDesc {
  mfrDesc: string;
  hwDesc: string;
  swDesc: string;
  serialNum: string;
  dpDesc: string;
}

export type MultipartReplyBody =
  | ({ mpType: "desc" } & SwitchDesc)
  | { mpType: "flow"; flows: FlowStats[] }
  | { mpType: "aggregate"; packetCount: bigint; byteCount: bigint; flowCount: number }
  | { mpType: "table"; tables: TableStats[] }
  | { mpType: "port_stats"; ports: PortStats[] }
  | { mpType: "port_desc"; ports: OfPort[] }
  | { mpType: "group"; groups: GroupStats[] }
  | { mpType: "group_desc"; groups: GroupDesc[] }
  | { mpType: "meter"; meters: MeterStats[] }
  | { mpType: "meter_config"; meters: MeterConfig[] }
  | { mpType: "unknown"; mpTypeId: number; data: Buffer };

const MP_IDS: Record<string, number> = {
  desc: OFPMP.DESC,
  flow: OFPMP.FLOW,
  aggregate: OFPMP.AGGREGATE,
  table: OFPMP.TABLE,
  port_stats: OFPMP.PORT_STATS,
  group: OFPMP.GROUP,
  group_desc: OFPMP.GROUP_DESC,
  meter: OFPMP.METER,
  meter_config: OFPMP.METER_CONFIG,
  port_desc: OFPMP.PORT_DESC,
};
const MP_NAMES = new Map(Object.entries(MP_IDS).map(([k, v]) => [v, k]));

export function multipartTypeId(body: MultipartRequestBody | MultipartReplyBody): number {
  return body.mpType === "unknown" ? body.mpTypeId : MP_IDS[body.mpType]!;
}

export function encodeMultipartRequest(w: ByteWriter, b: MultipartRequestBody): void {
  switch (b.mpType) {
    case "flow":
    case "aggregate":
      w.u8(b.tableId).zeros(3).u32(b.outPort).u32(b.outGroup).zeros(4).u64(b.cookie).u64(b.cookieMask);
      encodeMatch(w, b.match);
      return;
    case "port_stats":
      w.u32(b.portNo).zeros(4);
      return;
    case "group":
      w.u32(b.groupId).zeros(4);
      return;
    case "meter":
    case "meter_config":
      w.u32(b.meterId).zeros(4);
      return;
    case "unknown":
      w.bytes(b.data);
      return;
    default:
      return;
  }
}

export function decodeMultipartRequest(mpTypeId: number, r: ByteReader): MultipartRequestBody {
  const name = MP_NAMES.get(mpTypeId);
  switch (name) {
    case "desc":
    case "table":
    case "port_desc":
    case "group_desc":
      return { mpType: name };
    case "flow":
    case "aggregate": {
      const tableId = r.u8("table_id");
      r.skip(3);
      const outPort = r.u32("out_port");
      const outGroup = r.u32("out_group");
      r.skip(4);
      const cookie = r.u64("cookie");
      const cookieMask = r.u64("cookie_mask");
      return { mpType: name, tableId, outPort, outGroup, cookie, cookieMask, match: decodeMatch(r) };
    }
    case "port_stats":
      return { mpType: name, portNo: r.u32("port_no") };
    case "group":
      return { mpType: name, groupId: r.u32("group_id") };
    case "meter":
    case "meter_config":
      return { mpType: name, meterId: r.u32("meter_id") };
    default:
      return { mpType: "unknown", mpTypeId, data: Buffer.from(r.rest()) };
  }
}

export function encodeFlowStats(w: ByteWriter, f: FlowStats): void {
  const start = w.length;
  const lenAt = w.reserve(2);
  w.u8(f.tableId).zeros(1).u32(f.durationSec).u32(f.durationNsec);
  w.u16(f.priority).u16(f.idleTimeout).u16(f.hardTimeout).u16(f.flags).zeros(4);
  w.u64(f.cookie).u64(f.packetCount).u64(f.byteCount);
  encodeMatch(w, f.match);
  encodeInstructions(w, f.instructions);
  w.setU16(lenAt, w.length - start);
}

export function encodeMultipartReply(w: ByteWriter, b: MultipartReplyBody): void {
  switch (b.mpType) {
    case "desc":
      writeString(w, b.mfrDesc, 256);
      writeString(w, b.hwDesc, 256);
      writeString(w, b.swDesc, 256);
      writeString(w, b.serialNum, 32);
      writeString(w, b.dpDesc, 256);
      return;
    case "flow":
      for (const f of b.flows) encodeFlowStats(w, f);
      return;
    case "aggregate":
      w.u64(b.packetCount).u64(b.byteCount).u32(b.flowCount).zeros(4);
      return;
    case "table":
      for (const t of b.tables)
        w.u8(t.tableId).zeros(3).u32(t.activeCount).u64(t.lookupCount).u64(t.matchedCount);
      return;
    case "port_stats":
      for (const p of b.ports) {
        w.u32(p.portNo).zeros(4);
        for (const k of PORT_COUNTERS) w.u64(p[k]);
        w.u32(p.durationSec).u32(p.durationNsec);
      }
      return;
    case "port_desc":
      for (const p of b.ports) encodePort(w, p);
      return;
    case "group":
      for (const g of b.groups) {
        w.u16(40 + 16 * g.buckets.length)
          .zeros(2)
          .u32(g.groupId)
          .u32(g.refCount)
          .zeros(4);
        w.u64(g.packetCount).u64(g.byteCount).u32(g.durationSec).u32(g.durationNsec);
        for (const c of g.buckets) w.u64(c.packetCount).u64(c.byteCount);
      }
      return;
    case "group_desc":
      for (const g of b.groups) {
        const start = w.length;
        const lenAt = w.reserve(2);
        w.u8(GROUP_TYPES.indexOf(g.groupType)).zeros(1).u32(g.groupId);
        encodeBuckets(w, g.buckets);
        w.setU16(lenAt, w.length - start);
      }
      return;
    case "meter":
      for (const m of b.meters) {
        w.u32(m.meterId)
          .u16(40 + 16 * m.bands.length)
          .zeros(6)
          .u32(m.flowCount);
        w.u64(m.packetInCount).u64(m.byteInCount).u32(m.durationSec).u32(m.durationNsec);
        for (const c of m.bands) w.u64(c.packetCount).u64(c.byteCount);
      }
      return;
    case "meter_config":
      for (const m of b.meters) {
        const start = w.length;
        const lenAt = w.reserve(2);
        w.u16(m.flags).u32(m.meterId);
        encodeBands(w, m.bands);
        w.setU16(lenAt, w.length - start);
      }
      return;
    case "unknown":
      w.bytes(b.data);
      return;
  }
}

function records<T>(r: ByteReader, what: string, lenOffset: number, one: (b: ByteReader) => T): T[] {
  const out: T[] = [];
  while (!r.atEnd()) {
    r.ensure(lenOffset + 2, `${what} length`);
    const len = r.buf.readUInt16BE(r.offset + lenOffset);
    if (len < lenOffset + 2) throw new DecodeError(`${what}: record length ${len} too short`);
    out.push(one(r.sub(len, what)));
  }
  return out;
}
function fixed<T>(r: ByteReader, size: number, one: (b: ByteReader) => T, what: string): T[] {
  const out: T[] = [];
  while (!r.atEnd()) out.push(one(r.sub(size, what)));
  return out;
}

export function decodeFlowStats(b: ByteReader): FlowStats {
  b.skip(2);
  const tableId = b.u8("table_id");
  b.skip(1);
  const durationSec = b.u32("duration_sec");
  const durationNsec = b.u32("duration_nsec");
  const priority = b.u16("priority");
  const idleTimeout = b.u16("idle_timeout");
  const hardTimeout = b.u16("hard_timeout");
  const flags = b.u16("flags");
  b.skip(4);
  const cookie = b.u64("cookie");
  const packetCount = b.u64("packet_count");
  const byteCount = b.u64("byte_count");
  const match = decodeMatch(b);
  const instructions = decodeInstructions(b);
  return {
    tableId,
    durationSec,
    durationNsec,
    priority,
    idleTimeout,
    hardTimeout,
    flags,
    cookie,
    packetCount,
    byteCount,
    match,
    instructions,
  };
}

export function decodeMultipartReply(mpTypeId: number, r: ByteReader): MultipartReplyBody {
  const name = MP_NAMES.get(mpTypeId);
  switch (name) {
    case "desc":
      return {
        mpType: name,
        mfrDesc: readString(r, 256, "mfr_desc"),
        hwDesc: readString(r, 256, "hw_desc"),
        swDesc: readString(r, 256, "sw_desc"),
        serialNum: readString(r, 32, "serial_num"),
        dpDesc: readString(r, 256, "dp_desc"),
      };
    case "flow":
      return { mpType: name, flows: records(r, "flow stats", 0, decodeFlowStats) };
    case "aggregate":
      return {
        mpType: name,
        packetCount: r.u64("packet_count"),
        byteCount: r.u64("byte_count"),
        flowCount: r.u32("flow_count"),
      };
    case "table":
      return {
        mpType: name,
        tables: fixed(
          r,
          24,
          (b) => {
            const tableId = b.u8("table_id");
            b.skip(3);
            return {
              tableId,
              activeCount: b.u32("active_count"),
              lookupCount: b.u64("lookup_count"),
              matchedCount: b.u64("matched_count"),
            };
          },
          "table stats",
        ),
      };
    case "port_stats":
      return {
        mpType: name,
        ports: fixed(
          r,
          112,
          (b) => {
            const portNo = b.u32("port_no");
            b.skip(4);
            const p = { portNo } as PortStats;
            for (const k of PORT_COUNTERS) p[k] = b.u64(k);
            p.durationSec = b.u32("duration_sec");
            p.durationNsec = b.u32("duration_nsec");
            return p;
          },
          "port stats",
        ),
      };
    case "port_desc":
      return { mpType: name, ports: fixed(r, 64, decodePort, "port") };
    case "group":
      return {
        mpType: name,
        groups: records(r, "group stats", 0, (b) => {
          b.skip(4);
          const groupId = b.u32("group_id");
          const refCount = b.u32("ref_count");
          b.skip(4);
          const g: GroupStats = {
            groupId,
            refCount,
            packetCount: b.u64("packet_count"),
            byteCount: b.u64("byte_count"),
            durationSec: b.u32("duration_sec"),
            durationNsec: b.u32("duration_nsec"),
            buckets: [],
          };
          while (!b.atEnd())
            g.buckets.push({ packetCount: b.u64("packet_count"), byteCount: b.u64("byte_count") });
          return g;
        }),
      };
    case "group_desc":
      return {
        mpType: name,
        groups: records(r, "group desc", 0, (b) => {
          b.skip(2);
          const t = b.u8("type");
          const groupType = GROUP_TYPES[t];
          if (!groupType) throw new DecodeError(`unknown group type ${t}`);
          b.skip(1);
          return { groupType, groupId: b.u32("group_id"), buckets: decodeBuckets(b) };
        }),
      };
    case "meter":
      return {
        mpType: name,
        meters: records(r, "meter stats", 4, (b) => {
          const meterId = b.u32("meter_id");
          b.skip(8);
          const m: MeterStats = {
            meterId,
            flowCount: b.u32("flow_count"),
            packetInCount: b.u64("packet_in_count"),
            byteInCount: b.u64("byte_in_count"),
            durationSec: b.u32("duration_sec"),
            durationNsec: b.u32("duration_nsec"),
            bands: [],
          };
          while (!b.atEnd())
            m.bands.push({ packetCount: b.u64("packet_band_count"), byteCount: b.u64("byte_band_count") });
          return m;
        }),
      };
    case "meter_config":
      return {
        mpType: name,
        meters: records(r, "meter config", 0, (b) => {
          b.skip(2);
          return { flags: b.u16("flags"), meterId: b.u32("meter_id"), bands: decodeBands(b) };
        }),
      };
    default:
      return { mpType: "unknown", mpTypeId, data: Buffer.from(r.rest()) };
  }
}
