/**
 * OpenFlow 1.3 messages (openflow-1.3.5 §7): the 8-byte header and every
 * message body flowdrake sends or receives, plus the experimenter messages
 * Open vSwitch speaks on OpenFlow 1.3 — ONF bundles (EXT-230, experimenter
 * 0x4f4e4600, ONFT_BUNDLE_CONTROL = 2300, ONFT_BUNDLE_ADD_MESSAGE = 2301)
 * and the Nicira ones (0x00002320): NXT_PACKET_IN2, NXT_SET_PACKET_IN_FORMAT,
 * NXT_SET_CONTROLLER_ID, NXT_TLV_TABLE_MOD, NXT_CT_FLUSH_ZONE.
 *
 * `OfMessage` is a discriminated union on `type`, the spec name without the
 * OFPT_ prefix in lowercase. `encodeMessage` writes one message and patches
 * its length; `decodeMessage` takes exactly one framed message and throws
 * DecodeError for anything malformed. A well-framed message of a type we do
 * not model decodes as `{type: "unknown"}` so a connection can answer it with
 * an error instead of dropping the session.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { decodeActions, encodeActions, readProps, type Action } from "./actions.js";
import { decodeInstructions, encodeInstructions, type Instruction } from "./instructions.js";
import {
  decodeBands,
  decodeBuckets,
  decodeMultipartReply,
  decodeMultipartRequest,
  decodePort,
  encodeBands,
  encodeBuckets,
  encodeMultipartReply,
  encodeMultipartRequest,
  encodePort,
  GROUP_TYPES,
  multipartTypeId,
  type Bucket,
  type GroupType,
  type MeterBand,
  type MultipartReplyBody,
  type MultipartRequestBody,
  type OfPort,
} from "./multipart.js";
import { OFPT } from "./names.js";
import {
  NX_EXPERIMENTER_ID,
  ONF_EXPERIMENTER_ID,
  bytesToMac,
  decodeMatch,
  decodeOxm,
  encodeMatch,
  macToBytes,
  type MatchField,
} from "./oxm.js";

export const OFP_VERSION_1_3 = 4;
export const OFP_HEADER_LEN = 8;
export const OFP_NO_BUFFER = 0xffffffff;

export interface OfHeader {
  version: number;
  type: number;
  length: number;
  xid: number;
}

/** Read the 8-byte header at the start of `buf` (no body checks). */
export function readHeader(buf: Buffer): OfHeader {
  if (buf.length < OFP_HEADER_LEN) {
    throw new DecodeError(`OpenFlow header: need ${OFP_HEADER_LEN} bytes, got ${buf.length}`);
  }
  return { version: buf[0]!, type: buf[1]!, length: buf.readUInt16BE(2), xid: buf.readUInt32BE(4) };
}

// ---- vocabularies -------------------------------------------------------------------------------

export type FlowModCommand = "add" | "modify" | "modify_strict" | "delete" | "delete_strict";
/** ofp_flow_mod_command, index = wire value. */
export const FLOW_MOD_COMMANDS: readonly FlowModCommand[] = [
  "add",
  "modify",
  "modify_strict",
  "delete",
  "delete_strict",
];
/** ofp_flow_mod_flags. */
export const OFPFF = {
  SEND_FLOW_REM: 1,
  CHECK_OVERLAP: 2,
  RESET_COUNTS: 4,
  NO_PKT_COUNTS: 8,
  NO_BYT_COUNTS: 16,
} as const;
/** ofp_flow_removed_reason: why the switch removed a flow. */
export const OFPRR = {
  IDLE_TIMEOUT: 0,
  HARD_TIMEOUT: 1,
  DELETE: 2,
  GROUP_DELETE: 3,
  METER_DELETE: 4,
} as const;
export type ModCommand = "add" | "modify" | "delete";
const MOD_COMMANDS: readonly ModCommand[] = ["add", "modify", "delete"];
/** ofp_controller_role. */
export const OFPCR_ROLE = { NOCHANGE: 0, EQUAL: 1, MASTER: 2, SLAVE: 3 } as const;
/** ofp_multipart_request_flags / reply flags. */
export const OFPMPF_MORE = 1;

/** ONF bundle control types (EXT-230 / OF1.4 ofp_bundle_ctrl_type). */
export const BUNDLE_CTRL_TYPES = [
  "open_request",
  "open_reply",
  "close_request",
  "close_reply",
  "commit_request",
  "commit_reply",
  "discard_request",
  "discard_reply",
] as const;
export type BundleCtrlType = (typeof BUNDLE_CTRL_TYPES)[number];
export const OFPBF = { ATOMIC: 1, ORDERED: 2 } as const;
export const ONFT_BUNDLE_CONTROL = 2300;
export const ONFT_BUNDLE_ADD_MESSAGE = 2301;

/** Nicira message subtypes (nx-msgs). */
export const NXT = {
  SET_PACKET_IN_FORMAT: 16,
  SET_CONTROLLER_ID: 20,
  TLV_TABLE_MOD: 24,
  CT_FLUSH_ZONE: 29,
  PACKET_IN2: 30,
} as const;
/** NXPIF_* packet-in formats. */
export const NXPIF = { STANDARD: 0, NXT_PACKET_IN: 1, NXT_PACKET_IN2: 2 } as const;
/** NXPINT_* packet_in2 property types. */
export const NXPINT = {
  PACKET: 0,
  FULL_LEN: 1,
  BUFFER_ID: 2,
  TABLE_ID: 3,
  COOKIE: 4,
  REASON: 5,
  METADATA: 6,
  USERDATA: 7,
  CONTINUATION: 8,
} as const;

// ---- the message union --------------------------------------------------------------------------

interface X {
  xid: number;
}

export interface FlowMod extends X {
  type: "flow_mod";
  cookie: bigint;
  cookieMask: bigint;
  tableId: number;
  command: FlowModCommand;
  idleTimeout: number;
  hardTimeout: number;
  priority: number;
  bufferId: number;
  outPort: number;
  outGroup: number;
  flags: number;
  match: MatchField[];
  instructions: Instruction[];
}

export interface PacketIn extends X {
  type: "packet_in";
  bufferId: number;
  totalLen: number;
  reason: number;
  tableId: number;
  cookie: bigint;
  match: MatchField[];
  data: Buffer;
}

export interface PacketIn2 extends X {
  type: "nx_packet_in2";
  packet: Buffer;
  fullLen?: number;
  bufferId?: number;
  tableId?: number;
  cookie?: bigint;
  reason?: number;
  metadata: MatchField[];
  userdata?: Buffer;
  continuation?: Buffer;
}

export interface TlvMapping {
  optClass: number;
  optType: number;
  optLen: number;
  index: number;
}

export type OfMessage =
  | (X & { type: "hello"; versions: number[] })
  | (X & { type: "error"; errType: number; code: number; experimenter?: number; data: Buffer })
  | (X & { type: "echo_request"; data: Buffer })
  | (X & { type: "echo_reply"; data: Buffer })
  | (X & { type: "experimenter"; experimenter: number; expType: number; data: Buffer })
  | (X & { type: "features_request" })
  | (X & {
      type: "features_reply";
      datapathId: bigint;
      nBuffers: number;
      nTables: number;
      auxiliaryId: number;
      capabilities: number;
    })
  | (X & { type: "get_config_request" })
  | (X & { type: "get_config_reply"; flags: number; missSendLen: number })
  | (X & { type: "set_config"; flags: number; missSendLen: number })
  | PacketIn
  | (X & {
      type: "flow_removed";
      cookie: bigint;
      priority: number;
      reason: number;
      tableId: number;
      durationSec: number;
      durationNsec: number;
      idleTimeout: number;
      hardTimeout: number;
      packetCount: bigint;
      byteCount: bigint;
      match: MatchField[];
    })
  | (X & { type: "port_status"; reason: number; port: OfPort })
  | (X & { type: "packet_out"; bufferId: number; inPort: number; actions: Action[]; data: Buffer })
  | FlowMod
  | (X & { type: "group_mod"; command: ModCommand; groupType: GroupType; groupId: number; buckets: Bucket[] })
  | (X & {
      type: "port_mod";
      portNo: number;
      hwAddr: string;
      config: number;
      mask: number;
      advertise: number;
    })
  | (X & { type: "table_mod"; tableId: number; config: number })
  | (X & { type: "multipart_request"; flags: number; body: MultipartRequestBody })
  | (X & { type: "multipart_reply"; flags: number; body: MultipartReplyBody })
  | (X & { type: "barrier_request" })
  | (X & { type: "barrier_reply" })
  | (X & { type: "role_request"; role: number; generationId: bigint })
  | (X & { type: "role_reply"; role: number; generationId: bigint })
  | (X & { type: "get_async_request" })
  | (X & {
      type: "get_async_reply" | "set_async";
      packetInMask: [number, number];
      portStatusMask: [number, number];
      flowRemovedMask: [number, number];
    })
  | (X & { type: "meter_mod"; command: ModCommand; flags: number; meterId: number; bands: MeterBand[] })
  | (X & {
      type: "bundle_control";
      bundleId: number;
      ctrlType: BundleCtrlType;
      flags: number;
      properties: Buffer;
    })
  | (X & { type: "bundle_add_message"; bundleId: number; flags: number; message: OfMessage })
  | PacketIn2
  | (X & { type: "nx_set_packet_in_format"; format: number })
  | (X & { type: "nx_set_controller_id"; controllerId: number })
  /** Delete every conntrack entry of a zone (struct nx_zone_id: 6 zero bytes, the zone). */
  | (X & { type: "nx_ct_flush_zone"; zoneId: number })
  | (X & { type: "nx_tlv_table_mod"; command: "add" | "delete" | "clear"; mappings: TlvMapping[] })
  | (X & { type: "unknown"; ofpType: number; body: Buffer });

export type OfMessageType = OfMessage["type"];
export type MessageOf<T extends OfMessageType> = Extract<OfMessage, { type: T }>;

/** The OFPT code a message is sent with. */
export function ofpTypeOf(msg: OfMessage): number {
  switch (msg.type) {
    case "unknown":
      return msg.ofpType;
    case "bundle_control":
    case "bundle_add_message":
    case "nx_packet_in2":
    case "nx_set_packet_in_format":
    case "nx_set_controller_id":
    case "nx_tlv_table_mod":
    case "nx_ct_flush_zone":
      return OFPT.EXPERIMENTER;
    case "get_async_reply":
      return OFPT.GET_ASYNC_REPLY;
    case "set_async":
      return OFPT.SET_ASYNC;
    default:
      return OFPT[msg.type.toUpperCase() as keyof typeof OFPT];
  }
}

const TYPE_NAMES = new Map<number, string>(Object.entries(OFPT).map(([k, v]) => [v, k.toLowerCase()]));

// ---- encode -------------------------------------------------------------------------------------

export function encodeMessage(msg: OfMessage): Buffer {
  const w = new ByteWriter(
    msg.type === "packet_out" || msg.type === "packet_in" ? 128 + msg.data.length : 128,
  );
  writeMessage(w, msg);
  return w.finish();
}

/** Append one message to `w` (used for bundle_add_message and by callers batching writes). */
export function writeMessage(w: ByteWriter, msg: OfMessage): void {
  const start = w.length;
  w.u8(OFP_VERSION_1_3).u8(ofpTypeOf(msg));
  const lenAt = w.reserve(2);
  w.u32(msg.xid);
  writeBody(w, msg);
  const len = w.length - start;
  if (len > 0xffff) throw new EncodeError(`${msg.type} message is ${len} bytes, more than 65535`, { len });
  w.setU16(lenAt, len);
}

function writeBody(w: ByteWriter, m: OfMessage): void {
  switch (m.type) {
    case "hello": {
      if (!m.versions.length) return;
      const words: number[] = [];
      for (const v of m.versions) {
        if (!Number.isInteger(v) || v < 0 || v > 255) throw new EncodeError(`bad OpenFlow version ${v}`);
        const i = v >> 5;
        while (words.length <= i) words.push(0);
        words[i] = (words[i]! | (1 << (v & 31))) >>> 0;
      }
      w.u16(1).u16(4 + 4 * words.length);
      for (const x of words) w.u32(x);
      w.padTo(8);
      return;
    }
    case "error":
      w.u16(m.errType).u16(m.code);
      if (m.errType === 0xffff) w.u32(m.experimenter ?? 0);
      w.bytes(m.data);
      return;
    case "echo_request":
    case "echo_reply":
      w.bytes(m.data);
      return;
    case "experimenter":
      w.u32(m.experimenter).u32(m.expType).bytes(m.data);
      return;
    case "features_reply":
      w.u64(m.datapathId).u32(m.nBuffers).u8(m.nTables).u8(m.auxiliaryId).zeros(2).u32(m.capabilities).u32(0);
      return;
    case "get_config_reply":
    case "set_config":
      w.u16(m.flags).u16(m.missSendLen);
      return;
    case "packet_in":
      w.u32(m.bufferId).u16(m.totalLen).u8(m.reason).u8(m.tableId).u64(m.cookie);
      encodeMatch(w, m.match);
      w.zeros(2).bytes(m.data);
      return;
    case "flow_removed":
      w.u64(m.cookie).u16(m.priority).u8(m.reason).u8(m.tableId).u32(m.durationSec).u32(m.durationNsec);
      w.u16(m.idleTimeout).u16(m.hardTimeout).u64(m.packetCount).u64(m.byteCount);
      encodeMatch(w, m.match);
      return;
    case "port_status":
      w.u8(m.reason).zeros(7);
      encodePort(w, m.port);
      return;
    case "packet_out": {
      w.u32(m.bufferId).u32(m.inPort);
      const lenAt = w.reserve(2);
      w.zeros(6);
      const n = w.nested((w) => encodeActions(w, m.actions));
      w.setU16(lenAt, n);
      w.bytes(m.data);
      return;
    }
    case "flow_mod":
      w.u64(m.cookie).u64(m.cookieMask).u8(m.tableId).u8(FLOW_MOD_COMMANDS.indexOf(m.command));
      w.u16(m.idleTimeout).u16(m.hardTimeout).u16(m.priority).u32(m.bufferId).u32(m.outPort).u32(m.outGroup);
      w.u16(m.flags).zeros(2);
      encodeMatch(w, m.match);
      encodeInstructions(w, m.instructions);
      return;
    case "group_mod":
      w.u16(MOD_COMMANDS.indexOf(m.command)).u8(GROUP_TYPES.indexOf(m.groupType)).zeros(1).u32(m.groupId);
      encodeBuckets(w, m.buckets);
      return;
    case "port_mod":
      w.u32(m.portNo)
        .zeros(4)
        .bytes(macToBytes(m.hwAddr))
        .zeros(2)
        .u32(m.config)
        .u32(m.mask)
        .u32(m.advertise);
      w.zeros(4);
      return;
    case "table_mod":
      w.u8(m.tableId).zeros(3).u32(m.config);
      return;
    case "multipart_request":
      w.u16(multipartTypeId(m.body)).u16(m.flags).zeros(4);
      encodeMultipartRequest(w, m.body);
      return;
    case "multipart_reply":
      w.u16(multipartTypeId(m.body)).u16(m.flags).zeros(4);
      encodeMultipartReply(w, m.body);
      return;
    case "role_request":
    case "role_reply":
      w.u32(m.role).zeros(4).u64(m.generationId);
      return;
    case "get_async_reply":
    case "set_async":
      for (const x of [...m.packetInMask, ...m.portStatusMask, ...m.flowRemovedMask]) w.u32(x);
      return;
    case "meter_mod":
      w.u16(MOD_COMMANDS.indexOf(m.command)).u16(m.flags).u32(m.meterId);
      encodeBands(w, m.bands);
      return;
    case "bundle_control":
      w.u32(ONF_EXPERIMENTER_ID).u32(ONFT_BUNDLE_CONTROL);
      w.u32(m.bundleId).u16(BUNDLE_CTRL_TYPES.indexOf(m.ctrlType)).u16(m.flags).bytes(m.properties);
      return;
    case "bundle_add_message": {
      w.u32(ONF_EXPERIMENTER_ID).u32(ONFT_BUNDLE_ADD_MESSAGE);
      w.u32(m.bundleId).zeros(2).u16(m.flags);
      writeMessage(w, m.message);
      return;
    }
    case "nx_packet_in2":
      w.u32(NX_EXPERIMENTER_ID).u32(NXT.PACKET_IN2);
      writePacketIn2(w, m);
      return;
    case "nx_set_packet_in_format":
      w.u32(NX_EXPERIMENTER_ID).u32(NXT.SET_PACKET_IN_FORMAT).u32(m.format);
      return;
    case "nx_set_controller_id":
      w.u32(NX_EXPERIMENTER_ID).u32(NXT.SET_CONTROLLER_ID).zeros(6).u16(m.controllerId);
      return;
    case "nx_ct_flush_zone":
      w.u32(NX_EXPERIMENTER_ID).u32(NXT.CT_FLUSH_ZONE).zeros(6).u16(m.zoneId);
      return;
    case "nx_tlv_table_mod":
      w.u32(NX_EXPERIMENTER_ID).u32(NXT.TLV_TABLE_MOD);
      w.u16(["add", "delete", "clear"].indexOf(m.command)).zeros(6);
      for (const t of m.mappings) w.u16(t.optClass).u8(t.optType).u8(t.optLen).u16(t.index).zeros(2);
      return;
    case "unknown":
      w.bytes(m.body);
      return;
    case "features_request":
    case "get_config_request":
    case "barrier_request":
    case "barrier_reply":
    case "get_async_request":
      return;
  }
}

function writeProp(w: ByteWriter, type: number, body: (w: ByteWriter) => void): void {
  const start = w.length;
  w.u16(type);
  const lenAt = w.reserve(2);
  body(w);
  w.setU16(lenAt, w.length - start);
  w.padTo(8, start);
}

function writePacketIn2(w: ByteWriter, m: PacketIn2): void {
  writeProp(w, NXPINT.PACKET, (w) => w.bytes(m.packet));
  if (m.fullLen !== undefined) writeProp(w, NXPINT.FULL_LEN, (w) => w.u32(m.fullLen!));
  if (m.bufferId !== undefined) writeProp(w, NXPINT.BUFFER_ID, (w) => w.u32(m.bufferId!));
  if (m.tableId !== undefined) writeProp(w, NXPINT.TABLE_ID, (w) => w.u8(m.tableId!));
  if (m.cookie !== undefined) writeProp(w, NXPINT.COOKIE, (w) => w.zeros(4).u64(m.cookie!));
  if (m.reason !== undefined) writeProp(w, NXPINT.REASON, (w) => w.u8(m.reason!));
  if (m.metadata.length) {
    writeProp(w, NXPINT.METADATA, (w) => {
      const tmp = new ByteWriter();
      encodeMatch(tmp, m.metadata);
      const b = tmp.finish();
      w.bytes(b.subarray(4, b.readUInt16BE(2)));
    });
  }
  if (m.userdata) writeProp(w, NXPINT.USERDATA, (w) => w.bytes(m.userdata!));
  if (m.continuation) writeProp(w, NXPINT.CONTINUATION, (w) => w.bytes(m.continuation!));
}

// ---- decode -------------------------------------------------------------------------------------

export function decodeMessage(buf: Buffer): OfMessage {
  const h = readHeader(buf);
  if (h.length !== buf.length) {
    throw new DecodeError(`OpenFlow header says ${h.length} bytes, buffer has ${buf.length}`, { ...h });
  }
  if (h.length < OFP_HEADER_LEN) throw new DecodeError(`OpenFlow length ${h.length} < 8`, { ...h });
  if (h.version !== OFP_VERSION_1_3 && h.type !== OFPT.HELLO) {
    throw new DecodeError(`OpenFlow version ${h.version} is not 1.3 (4)`, { ...h });
  }
  const name = TYPE_NAMES.get(h.type) ?? "unknown";
  const r = new ByteReader(buf, OFP_HEADER_LEN, buf.length, `OFPT_${name.toUpperCase()}`);
  return readBody(h, r);
}

function readBody(h: OfHeader, r: ByteReader): OfMessage {
  const xid = h.xid;
  switch (h.type) {
    case OFPT.HELLO:
      return { type: "hello", xid, versions: readHelloVersions(r, h.version) };
    case OFPT.ERROR: {
      const errType = r.u16("type");
      const code = r.u16("code");
      if (errType === 0xffff) {
        return {
          type: "error",
          xid,
          errType,
          code,
          experimenter: r.u32("experimenter"),
          data: copy(r.rest()),
        };
      }
      return { type: "error", xid, errType, code, data: copy(r.rest()) };
    }
    case OFPT.ECHO_REQUEST:
      return { type: "echo_request", xid, data: copy(r.rest()) };
    case OFPT.ECHO_REPLY:
      return { type: "echo_reply", xid, data: copy(r.rest()) };
    case OFPT.EXPERIMENTER:
      return readExperimenter(xid, r);
    case OFPT.FEATURES_REQUEST:
      return { type: "features_request", xid };
    case OFPT.FEATURES_REPLY: {
      const datapathId = r.u64("datapath_id");
      const nBuffers = r.u32("n_buffers");
      const nTables = r.u8("n_tables");
      const auxiliaryId = r.u8("auxiliary_id");
      r.skip(2);
      const capabilities = r.u32("capabilities");
      r.skip(4, "reserved");
      return { type: "features_reply", xid, datapathId, nBuffers, nTables, auxiliaryId, capabilities };
    }
    case OFPT.GET_CONFIG_REQUEST:
      return { type: "get_config_request", xid };
    case OFPT.GET_CONFIG_REPLY:
    case OFPT.SET_CONFIG:
      return {
        type: h.type === OFPT.SET_CONFIG ? "set_config" : "get_config_reply",
        xid,
        flags: r.u16("flags"),
        missSendLen: r.u16("miss_send_len"),
      };
    case OFPT.PACKET_IN: {
      const bufferId = r.u32("buffer_id");
      const totalLen = r.u16("total_len");
      const reason = r.u8("reason");
      const tableId = r.u8("table_id");
      const cookie = r.u64("cookie");
      const match = decodeMatch(r);
      r.skip(2);
      return {
        type: "packet_in",
        xid,
        bufferId,
        totalLen,
        reason,
        tableId,
        cookie,
        match,
        data: copy(r.rest()),
      };
    }
    case OFPT.FLOW_REMOVED: {
      const cookie = r.u64("cookie");
      const priority = r.u16("priority");
      const reason = r.u8("reason");
      const tableId = r.u8("table_id");
      const durationSec = r.u32("duration_sec");
      const durationNsec = r.u32("duration_nsec");
      const idleTimeout = r.u16("idle_timeout");
      const hardTimeout = r.u16("hard_timeout");
      const packetCount = r.u64("packet_count");
      const byteCount = r.u64("byte_count");
      return {
        type: "flow_removed",
        xid,
        cookie,
        priority,
        reason,
        tableId,
        durationSec,
        durationNsec,
        idleTimeout,
        hardTimeout,
        packetCount,
        byteCount,
        match: decodeMatch(r),
      };
    }
    case OFPT.PORT_STATUS: {
      const reason = r.u8("reason");
      r.skip(7);
      return { type: "port_status", xid, reason, port: decodePort(r) };
    }
    case OFPT.PACKET_OUT: {
      const bufferId = r.u32("buffer_id");
      const inPort = r.u32("in_port");
      const alen = r.u16("actions_len");
      r.skip(6);
      const actions = decodeActions(r.sub(alen, "packet_out actions"));
      return { type: "packet_out", xid, bufferId, inPort, actions, data: copy(r.rest()) };
    }
    case OFPT.FLOW_MOD: {
      const cookie = r.u64("cookie");
      const cookieMask = r.u64("cookie_mask");
      const tableId = r.u8("table_id");
      const cmd = r.u8("command");
      const command = FLOW_MOD_COMMANDS[cmd];
      if (!command) throw new DecodeError(`flow_mod: unknown command ${cmd}`);
      const idleTimeout = r.u16("idle_timeout");
      const hardTimeout = r.u16("hard_timeout");
      const priority = r.u16("priority");
      const bufferId = r.u32("buffer_id");
      const outPort = r.u32("out_port");
      const outGroup = r.u32("out_group");
      const flags = r.u16("flags");
      r.skip(2);
      const match = decodeMatch(r);
      return {
        type: "flow_mod",
        xid,
        cookie,
        cookieMask,
        tableId,
        command,
        idleTimeout,
        hardTimeout,
        priority,
        bufferId,
        outPort,
        outGroup,
        flags,
        match,
        instructions: decodeInstructions(r),
      };
    }
    case OFPT.GROUP_MOD: {
      const command = modCommand(r.u16("command"), "group_mod");
      const t = r.u8("type");
      const groupType = GROUP_TYPES[t];
      if (!groupType) throw new DecodeError(`group_mod: unknown group type ${t}`);
      r.skip(1);
      const groupId = r.u32("group_id");
      return { type: "group_mod", xid, command, groupType, groupId, buckets: decodeBuckets(r) };
    }
    case OFPT.PORT_MOD: {
      const portNo = r.u32("port_no");
      r.skip(4);
      const hwAddr = bytesToMac(r.bytes(6, "hw_addr"));
      r.skip(2);
      const config = r.u32("config");
      const mask = r.u32("mask");
      const advertise = r.u32("advertise");
      r.skip(4);
      return { type: "port_mod", xid, portNo, hwAddr, config, mask, advertise };
    }
    case OFPT.TABLE_MOD: {
      const tableId = r.u8("table_id");
      r.skip(3);
      return { type: "table_mod", xid, tableId, config: r.u32("config") };
    }
    case OFPT.MULTIPART_REQUEST:
    case OFPT.MULTIPART_REPLY: {
      const mpType = r.u16("multipart type");
      const flags = r.u16("flags");
      r.skip(4);
      if (h.type === OFPT.MULTIPART_REQUEST) {
        return { type: "multipart_request", xid, flags, body: decodeMultipartRequest(mpType, r) };
      }
      return { type: "multipart_reply", xid, flags, body: decodeMultipartReply(mpType, r) };
    }
    case OFPT.BARRIER_REQUEST:
      return { type: "barrier_request", xid };
    case OFPT.BARRIER_REPLY:
      return { type: "barrier_reply", xid };
    case OFPT.ROLE_REQUEST:
    case OFPT.ROLE_REPLY: {
      const role = r.u32("role");
      r.skip(4);
      const generationId = r.u64("generation_id");
      return { type: h.type === OFPT.ROLE_REQUEST ? "role_request" : "role_reply", xid, role, generationId };
    }
    case OFPT.GET_ASYNC_REQUEST:
      return { type: "get_async_request", xid };
    case OFPT.GET_ASYNC_REPLY:
    case OFPT.SET_ASYNC: {
      const v = Array.from({ length: 6 }, (_, i) => r.u32(`mask ${i}`));
      return {
        type: h.type === OFPT.SET_ASYNC ? "set_async" : "get_async_reply",
        xid,
        packetInMask: [v[0]!, v[1]!],
        portStatusMask: [v[2]!, v[3]!],
        flowRemovedMask: [v[4]!, v[5]!],
      };
    }
    case OFPT.METER_MOD: {
      const command = modCommand(r.u16("command"), "meter_mod");
      const flags = r.u16("flags");
      const meterId = r.u32("meter_id");
      return { type: "meter_mod", xid, command, flags, meterId, bands: decodeBands(r) };
    }
    default:
      return { type: "unknown", xid, ofpType: h.type, body: copy(r.rest()) };
  }
}

function modCommand(v: number, what: string): ModCommand {
  const c = MOD_COMMANDS[v];
  if (!c) throw new DecodeError(`${what}: unknown command ${v}`);
  return c;
}

function copy(b: Buffer): Buffer {
  return Buffer.from(b);
}

function readHelloVersions(r: ByteReader, headerVersion: number): number[] {
  const versions: number[] = [];
  let sawBitmap = false;
  while (r.remaining >= 4) {
    const type = r.u16("hello element type");
    const len = r.u16("hello element length");
    if (len < 4) throw new DecodeError(`hello element length ${len} < 4`);
    const body = r.sub(len - 4, "hello element");
    r.skip(Math.min(((len + 7) & ~7) - len, r.remaining));
    if (type !== 1) continue;
    sawBitmap = true;
    let i = 0;
    while (body.remaining >= 4) {
      const word = body.u32("version bitmap");
      for (let bit = 0; bit < 32; bit++) if ((word >>> bit) & 1) versions.push(i * 32 + bit);
      i++;
    }
  }
  // Without a bitmap, a hello offers every version up to its header version (spec §6.3.1).
  if (!sawBitmap) for (let v = 1; v <= headerVersion; v++) versions.push(v);
  return versions;
}

function readExperimenter(xid: number, r: ByteReader): OfMessage {
  const experimenter = r.u32("experimenter");
  const expType = r.u32("exp_type");
  if (experimenter === ONF_EXPERIMENTER_ID && expType === ONFT_BUNDLE_CONTROL) {
    const bundleId = r.u32("bundle_id");
    const t = r.u16("type");
    const ctrlType = BUNDLE_CTRL_TYPES[t];
    if (!ctrlType) throw new DecodeError(`bundle_control: unknown type ${t}`);
    return {
      type: "bundle_control",
      xid,
      bundleId,
      ctrlType,
      flags: r.u16("flags"),
      properties: copy(r.rest()),
    };
  }
  if (experimenter === ONF_EXPERIMENTER_ID && expType === ONFT_BUNDLE_ADD_MESSAGE) {
    const bundleId = r.u32("bundle_id");
    r.skip(2);
    const flags = r.u16("flags");
    r.ensure(OFP_HEADER_LEN, "bundled message header");
    const inner = readHeader(r.buf.subarray(r.offset));
    if (inner.length < OFP_HEADER_LEN) throw new DecodeError(`bundled message length ${inner.length} < 8`);
    const msg = decodeMessage(copy(r.bytes(inner.length, "bundled message")));
    return { type: "bundle_add_message", xid, bundleId, flags, message: msg };
  }
  if (experimenter === NX_EXPERIMENTER_ID) {
    switch (expType) {
      case NXT.PACKET_IN2:
        return readPacketIn2(xid, r);
      case NXT.SET_PACKET_IN_FORMAT:
        return { type: "nx_set_packet_in_format", xid, format: r.u32("format") };
      case NXT.SET_CONTROLLER_ID:
        r.skip(6);
        return { type: "nx_set_controller_id", xid, controllerId: r.u16("controller_id") };
      case NXT.CT_FLUSH_ZONE:
        r.skip(6);
        return { type: "nx_ct_flush_zone", xid, zoneId: r.u16("zone_id") };
      case NXT.TLV_TABLE_MOD: {
        const c = r.u16("command");
        const command = (["add", "delete", "clear"] as const)[c];
        if (!command) throw new DecodeError(`tlv_table_mod: unknown command ${c}`);
        r.skip(6);
        const mappings: TlvMapping[] = [];
        while (!r.atEnd()) {
          const optClass = r.u16("option_class");
          const optType = r.u8("option_type");
          const optLen = r.u8("option_len");
          const index = r.u16("index");
          r.skip(2);
          mappings.push({ optClass, optType, optLen, index });
        }
        return { type: "nx_tlv_table_mod", xid, command, mappings };
      }
    }
  }
  return { type: "experimenter", xid, experimenter, expType, data: copy(r.rest()) };
}

function readPacketIn2(xid: number, r: ByteReader): PacketIn2 {
  const m: PacketIn2 = { type: "nx_packet_in2", xid, packet: Buffer.alloc(0), metadata: [] };
  let sawPacket = false;
  for (const p of readProps(r, "packet_in2")) {
    const b = p.body;
    switch (p.type) {
      case NXPINT.PACKET:
        m.packet = copy(b.rest());
        sawPacket = true;
        break;
      case NXPINT.FULL_LEN:
        m.fullLen = b.u32("full_len");
        break;
      case NXPINT.BUFFER_ID:
        m.bufferId = b.u32("buffer_id");
        break;
      case NXPINT.TABLE_ID:
        m.tableId = b.u8("table_id");
        break;
      case NXPINT.COOKIE:
        b.skip(4);
        m.cookie = b.u64("cookie");
        break;
      case NXPINT.REASON:
        m.reason = b.u8("reason");
        break;
      case NXPINT.METADATA:
        while (!b.atEnd()) m.metadata.push(decodeOxm(b));
        break;
      case NXPINT.USERDATA:
        m.userdata = copy(b.rest());
        break;
      case NXPINT.CONTINUATION:
        m.continuation = copy(b.rest());
        break;
      default:
        // Unknown properties are skipped (OVS marks the must-understand ones; none apply here).
        break;
    }
  }
  if (!sawPacket) throw new DecodeError("packet_in2 without NXPINT_PACKET property");
  return m;
}
