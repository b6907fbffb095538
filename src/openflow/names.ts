/**
 * Name tables for OpenFlow 1.3 numeric vocabularies (openflow-1.3.5 §7):
 * message types (ofp_type), error types and codes (ofp_error_type and the
 * per-type code enums), multipart types, and the reason enums. One table per
 * vocabulary with explicit ids; `errorName()` turns an error into the text a
 * person reads in a log line ("OFPET_BAD_MATCH/OFPBMC_BAD_PREREQ").
 */

/** ofp_type. The union tag of OfMessage is the lowercase name without OFPT_. */
export const OFPT = {
  HELLO: 0,
  ERROR: 1,
  ECHO_REQUEST: 2,
  ECHO_REPLY: 3,
  EXPERIMENTER: 4,
  FEATURES_REQUEST: 5,
  FEATURES_REPLY: 6,
  GET_CONFIG_REQUEST: 7,
  GET_CONFIG_REPLY: 8,
  SET_CONFIG: 9,
  PACKET_IN: 10,
  FLOW_REMOVED: 11,
  PORT_STATUS: 12,
  PACKET_OUT: 13,
  FLOW_MOD: 14,
  GROUP_MOD: 15,
  PORT_MOD: 16,
  TABLE_MOD: 17,
  MULTIPART_REQUEST: 18,
  MULTIPART_REPLY: 19,
  BARRIER_REQUEST: 20,
  BARRIER_REPLY: 21,
  QUEUE_GET_CONFIG_REQUEST: 22,
  QUEUE_GET_CONFIG_REPLY: 23,
  ROLE_REQUEST: 24,
  ROLE_REPLY: 25,
  GET_ASYNC_REQUEST: 26,
  GET_ASYNC_REPLY: 27,
  SET_ASYNC: 28,
  METER_MOD: 29,
} as const;

/** ofp_multipart_type. */
export const OFPMP = {
  DESC: 0,
  FLOW: 1,
  AGGREGATE: 2,
  TABLE: 3,
  PORT_STATS: 4,
  QUEUE: 5,
  GROUP: 6,
  GROUP_DESC: 7,
  GROUP_FEATURES: 8,
  METER: 9,
  METER_CONFIG: 10,
  METER_FEATURES: 11,
  TABLE_FEATURES: 12,
  PORT_DESC: 13,
  EXPERIMENTER: 0xffff,
} as const;

/** ofp_error_type with its code enum, in code order (index = code). */
export const ERROR_TYPES: Record<number, { name: string; prefix: string; codes: string[] }> = {
  0: { name: "OFPET_HELLO_FAILED", prefix: "OFPHFC_", codes: ["INCOMPATIBLE", "EPERM"] },
  1: {
    name: "OFPET_BAD_REQUEST",
    prefix: "OFPBRC_",
    codes: [
      "BAD_VERSION",
      "BAD_TYPE",
      "BAD_MULTIPART",
      "BAD_EXPERIMENTER",
      "BAD_EXP_TYPE",
      "EPERM",
      "BAD_LEN",
      "BUFFER_EMPTY",
      "BUFFER_UNKNOWN",
      "BAD_TABLE_ID",
      "IS_SLAVE",
      "BAD_PORT",
      "BAD_PACKET",
      "MULTIPART_BUFFER_OVERFLOW",
    ],
  },
  2: {
    name: "OFPET_BAD_ACTION",
    prefix: "OFPBAC_",
    codes: [
      "BAD_TYPE",
      "BAD_LEN",
      "BAD_EXPERIMENTER",
      "BAD_EXP_TYPE",
      "BAD_OUT_PORT",
      "BAD_ARGUMENT",
      "EPERM",
      "TOO_MANY",
      "BAD_QUEUE",
      "BAD_OUT_GROUP",
      "MATCH_INCONSISTENT",
      "UNSUPPORTED_ORDER",
      "BAD_TAG",
      "BAD_SET_TYPE",
      "BAD_SET_LEN",
      "BAD_SET_ARGUMENT",
    ],
  },
  3: {
    name: "OFPET_BAD_INSTRUCTION",
    prefix: "OFPBIC_",
    codes: [
      "UNKNOWN_INST",
      "UNSUP_INST",
      "BAD_TABLE_ID",
      "UNSUP_METADATA",
      "UNSUP_METADATA_MASK",
      "BAD_EXPERIMENTER",
      "BAD_EXP_TYPE",
      "BAD_LEN",
      "EPERM",
    ],
  },
  4: {
    name: "OFPET_BAD_MATCH",
    prefix: "OFPBMC_",
    codes: [
      "BAD_TYPE",
      "BAD_LEN",
      "BAD_TAG",
      "BAD_DL_ADDR_MASK",
      "BAD_NW_ADDR_MASK",
      "BAD_WILDCARDS",
      "BAD_FIELD",
      "BAD_VALUE",
      "BAD_MASK",
      "BAD_PREREQ",
      "DUP_FIELD",
      "EPERM",
    ],
  },
  5: {
    name: "OFPET_FLOW_MOD_FAILED",
    prefix: "OFPFMFC_",
    codes: [
      "UNKNOWN",
      "TABLE_FULL",
      "BAD_TABLE_ID",
      "OVERLAP",
      "EPERM",
      "BAD_TIMEOUT",
      "BAD_COMMAND",
      "BAD_FLAGS",
    ],
  },
  6: {
    name: "OFPET_GROUP_MOD_FAILED",
    prefix: "OFPGMFC_",
    codes: [
      "GROUP_EXISTS",
      "INVALID_GROUP",
      "WEIGHT_UNSUPPORTED",
      "OUT_OF_GROUPS",
      "OUT_OF_BUCKETS",
      "CHAINING_UNSUPPORTED",
      "WATCH_UNSUPPORTED",
      "LOOP",
      "UNKNOWN_GROUP",
      "CHAINED_GROUP",
      "BAD_TYPE",
      "BAD_COMMAND",
      "BAD_BUCKET",
      "BAD_WATCH",
      "EPERM",
    ],
  },
  7: {
    name: "OFPET_PORT_MOD_FAILED",
    prefix: "OFPPMFC_",
    codes: ["BAD_PORT", "BAD_HW_ADDR", "BAD_CONFIG", "BAD_ADVERTISE", "EPERM"],
  },
  8: { name: "OFPET_TABLE_MOD_FAILED", prefix: "OFPTMFC_", codes: ["BAD_TABLE", "BAD_CONFIG", "EPERM"] },
  9: { name: "OFPET_QUEUE_OP_FAILED", prefix: "OFPQOFC_", codes: ["BAD_PORT", "BAD_QUEUE", "EPERM"] },
  10: { name: "OFPET_SWITCH_CONFIG_FAILED", prefix: "OFPSCFC_", codes: ["BAD_FLAGS", "BAD_LEN", "EPERM"] },
  11: { name: "OFPET_ROLE_REQUEST_FAILED", prefix: "OFPRRFC_", codes: ["STALE", "UNSUP", "BAD_ROLE"] },
  12: {
    name: "OFPET_METER_MOD_FAILED",
    prefix: "OFPMMFC_",
    codes: [
      "UNKNOWN",
      "METER_EXISTS",
      "INVALID_METER",
      "UNKNOWN_METER",
      "BAD_COMMAND",
      "BAD_FLAGS",
      "BAD_RATE",
      "BAD_BURST",
      "BAD_BAND",
      "BAD_BAND_VALUE",
      "OUT_OF_METERS",
      "OUT_OF_BANDS",
    ],
  },
  13: {
    name: "OFPET_TABLE_FEATURES_FAILED",
    prefix: "OFPTFFC_",
    codes: ["BAD_TABLE", "BAD_METADATA", "BAD_TYPE", "BAD_LEN", "BAD_ARGUMENT", "EPERM"],
  },
  0xffff: { name: "OFPET_EXPERIMENTER", prefix: "", codes: [] },
};

/** Human-readable "TYPE/CODE" for an error message. */
export function errorName(errType: number, code: number, experimenter?: number): string {
  const t = ERROR_TYPES[errType];
  if (!t) return `error type ${errType} code ${code}`;
  if (errType === 0xffff)
    return `${t.name}(experimenter=0x${(experimenter ?? 0).toString(16)}, exp_type=${code})`;
  const c = t.codes[code];
  return `${t.name}/${c ? t.prefix + c : `code ${code}`}`;
}

/** ofp_packet_in_reason. */
export const PACKET_IN_REASONS = ["no_match", "action", "invalid_ttl"] as const;
/** ofp_flow_removed_reason. */
export const FLOW_REMOVED_REASONS = [
  "idle_timeout",
  "hard_timeout",
  "delete",
  "group_delete",
  "meter_delete",
];
/** ofp_port_reason. */
export const PORT_REASONS = ["add", "delete", "modify"] as const;
