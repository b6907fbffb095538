import { describe, expect, it } from "vitest";
import {
  decodeMessage,
  encodeMessage,
  errorName,
  OFP_HEADER_LEN,
  OFP_VERSION_1_3,
  readHeader,
  type OfMessage,
} from "../../src/openflow/index.js";
import { DecodeError } from "../../src/util/errors.js";

const ANY = 0xffffffff;

/** One of every modelled message, with every field explicit so encode→decode is the identity. */
export const SAMPLES: OfMessage[] = [
  { type: "hello", xid: 1, versions: [1, 4, 6] },
  { type: "error", xid: 2, errType: 4, code: 9, data: Buffer.from("040e0008deadbeef", "hex") },
  { type: "error", xid: 2, errType: 0xffff, code: 2300, experimenter: 0x4f4e4600, data: Buffer.alloc(0) },
  { type: "echo_request", xid: 3, data: Buffer.from("ping") },
  { type: "echo_reply", xid: 3, data: Buffer.from("ping") },
  { type: "experimenter", xid: 4, experimenter: 0x1234, expType: 7, data: Buffer.from([1, 2, 3, 4]) },
  { type: "features_request", xid: 5 },
  {
    type: "features_reply",
    xid: 5,
    datapathId: 0x1122334455667788n,
    nBuffers: 0,
    nTables: 254,
    auxiliaryId: 0,
    capabilities: 0x4f,
  },
  { type: "get_config_request", xid: 6 },
  { type: "get_config_reply", xid: 6, flags: 0, missSendLen: 128 },
  { type: "set_config", xid: 7, flags: 0, missSendLen: 0xffff },
  {
    type: "packet_in",
    xid: 0,
    bufferId: ANY,
    totalLen: 4,
    reason: 1,
    tableId: 7,
    cookie: 0xabn,
    match: [
      { field: "in_port", value: 3 },
      { field: "reg0", value: 9 },
    ],
    data: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
  },
  {
    type: "flow_removed",
    xid: 0,
    cookie: 1n,
    priority: 10,
    reason: 0,
    tableId: 2,
    durationSec: 3,
    durationNsec: 4,
    idleTimeout: 5,
    hardTimeout: 6,
    packetCount: 7n,
    byteCount: 8n,
    match: [{ field: "eth_dst", value: "00:11:22:33:44:55" }],
  },
  {
    type: "port_status",
    xid: 0,
    reason: 2,
    port: {
      portNo: 1,
      hwAddr: "aa:bb:cc:00:00:01",
      name: "vm1",
      config: 0,
      state: 4,
      curr: 0x802,
      advertised: 0,
      supported: 0,
      peer: 0,
      currSpeed: 10000000,
      maxSpeed: 0,
    },
  },
  {
    type: "packet_out",
    xid: 8,
    bufferId: ANY,
    inPort: 0xfffffffd,
    actions: [{ type: "output", port: 1, maxLen: 0 }],
    data: Buffer.alloc(60, 0xab),
  },
  {
    type: "flow_mod",
    xid: 9,
    cookie: 0x12n,
    cookieMask: 0n,
    tableId: 3,
    command: "add",
    idleTimeout: 10,
    hardTimeout: 20,
    priority: 100,
    bufferId: ANY,
    outPort: ANY,
    outGroup: ANY,
    flags: 1,
    match: [
      { field: "eth_type", value: 0x800 },
      { field: "in_port", value: 1 },
      { field: "reg0", value: 5, mask: 0xff },
      { field: "tun_id", value: 5n },
      { field: "ct_label", value: 1n, mask: 1n },
      { field: "ip_src", value: "10.0.0.1", mask: "255.255.255.0" },
    ],
    instructions: [
      { type: "write_metadata", metadata: 1n, mask: 0xffn },
      { type: "meter", meterId: 2 },
      { type: "clear_actions" },
      { type: "write_actions", actions: [{ type: "group", groupId: 4 }] },
      {
        type: "apply_actions",
        actions: [
          { type: "set_field", field: "eth_dst", value: "aa:bb:cc:dd:ee:ff" },
          { type: "load", dst: { field: "reg0", ofs: 0, nbits: 0 }, value: 1n },
          {
            type: "move",
            src: { field: "reg0", ofs: 0, nbits: 8 },
            dst: { field: "reg1", ofs: 8, nbits: 8 },
          },
          {
            type: "ct",
            commit: true,
            zone: { field: "reg6", ofs: 0, nbits: 16 },
            table: 10,
            actions: [
              {
                type: "nat",
                nat: { kind: "src", ipMin: "1.2.3.4", ipMax: "1.2.3.5", portMin: 100, portMax: 200 },
              },
            ],
          },
          { type: "resubmit", table: 5 },
          { type: "resubmit", port: 3 },
          { type: "dec_ttl" },
          {
            type: "controller",
            maxLen: 0xffff,
            controllerId: 3,
            reason: 0,
            userdata: Buffer.from([1, 2, 3]),
            pause: true,
          },
          { type: "ct_clear" },
          { type: "push_vlan", ethertype: 0x8100 },
          { type: "pop_vlan" },
          { type: "set_queue", queueId: 3 },
          { type: "set_field", field: "reg3", value: 1, mask: 1 },
          { type: "output", port: 2, maxLen: 0 },
        ],
      },
      { type: "goto_table", table: 5 },
    ],
  },
  {
    type: "group_mod",
    xid: 10,
    command: "add",
    groupType: "select",
    groupId: 7,
    buckets: [
      { weight: 50, watchPort: ANY, watchGroup: ANY, actions: [{ type: "output", port: 1, maxLen: 0 }] },
      { weight: 50, watchPort: ANY, watchGroup: ANY, actions: [{ type: "output", port: 2, maxLen: 0 }] },
    ],
  },
  { type: "port_mod", xid: 11, portNo: 1, hwAddr: "aa:bb:cc:00:00:01", config: 1, mask: 1, advertise: 0 },
  { type: "table_mod", xid: 12, tableId: 1, config: 0 },
  { type: "multipart_request", xid: 13, flags: 0, body: { mpType: "desc" } },
  {
    type: "multipart_request",
    xid: 14,
    flags: 0,
    body: {
      mpType: "flow",
      tableId: 0xff,
      outPort: ANY,
      outGroup: ANY,
      cookie: 0n,
      cookieMask: 0n,
      match: [],
    },
  },
  { type: "multipart_request", xid: 15, flags: 0, body: { mpType: "port_stats", portNo: ANY } },
  { type: "multipart_request", xid: 15, flags: 0, body: { mpType: "meter_config", meterId: ANY } },
  {
    type: "multipart_reply",
    xid: 16,
    flags: 1,
    body: {
      mpType: "flow",
      flows: [
        {
          tableId: 0,
          durationSec: 1,
          durationNsec: 2,
          priority: 3,
          idleTimeout: 0,
          hardTimeout: 0,
          flags: 0,
          cookie: 4n,
          packetCount: 5n,
          byteCount: 6n,
          match: [{ field: "in_port", value: 1 }],
          instructions: [{ type: "goto_table", table: 1 }],
        },
      ],
    },
  },
  {
    type: "multipart_reply",
    xid: 17,
    flags: 0,
    body: { mpType: "aggregate", packetCount: 1n, byteCount: 2n, flowCount: 3 },
  },
  {
    type: "multipart_reply",
    xid: 18,
    flags: 0,
    body: { mpType: "table", tables: [{ tableId: 0, activeCount: 1, lookupCount: 2n, matchedCount: 3n }] },
  },
  {
    type: "multipart_reply",
    xid: 19,
    flags: 0,
    body: {
      mpType: "meter_config",
      meters: [{ flags: 1, meterId: 1, bands: [{ type: "drop", rate: 1000, burstSize: 0 }] }],
    },
  },
  {
    type: "multipart_reply",
    xid: 20,
    flags: 0,
    body: {
      mpType: "group_desc",
      groups: [
        {
          groupType: "all",
          groupId: 1,
          buckets: [{ weight: 0, watchPort: ANY, watchGroup: ANY, actions: [] }],
        },
      ],
    },
  },
  { type: "barrier_request", xid: 21 },
  { type: "barrier_reply", xid: 21 },
  { type: "role_request", xid: 22, role: 2, generationId: 5n },
  { type: "role_reply", xid: 22, role: 2, generationId: 5n },
  { type: "get_async_request", xid: 23 },
  { type: "set_async", xid: 24, packetInMask: [3, 1], portStatusMask: [7, 7], flowRemovedMask: [15, 0] },
  {
    type: "meter_mod",
    xid: 25,
    command: "add",
    flags: 1,
    meterId: 1,
    bands: [
      { type: "drop", rate: 1000, burstSize: 10 },
      { type: "dscp_remark", rate: 500, burstSize: 0, precLevel: 1 },
    ],
  },
  {
    type: "bundle_control",
    xid: 26,
    bundleId: 1,
    ctrlType: "open_request",
    flags: 1,
    properties: Buffer.alloc(0),
  },
  {
    type: "bundle_add_message",
    xid: 27,
    bundleId: 1,
    flags: 1,
    message: { type: "barrier_request", xid: 27 },
  },
  { type: "nx_set_packet_in_format", xid: 28, format: 2 },
  { type: "nx_set_controller_id", xid: 29, controllerId: 7 },
  {
    type: "nx_tlv_table_mod",
    xid: 30,
    command: "add",
    mappings: [{ optClass: 0xffff, optType: 1, optLen: 4, index: 0 }],
  },
  {
    type: "nx_packet_in2",
    xid: 0,
    packet: Buffer.from("ffffffffffff", "hex"),
    fullLen: 6,
    tableId: 3,
    cookie: 9n,
    reason: 1,
    metadata: [{ field: "in_port", value: 2 }],
    userdata: Buffer.from([9]),
  },
];

describe("OpenFlow header", () => {
  it("reads version, type, length and xid", () => {
    const b = encodeMessage({ type: "echo_request", xid: 0x01020304, data: Buffer.from("abc") });
    expect(readHeader(b)).toEqual({
      version: OFP_VERSION_1_3,
      type: 2,
      length: OFP_HEADER_LEN + 3,
      xid: 0x01020304,
    });
  });
  it("rejects a short header with DecodeError", () => {
    expect(() => readHeader(Buffer.alloc(4))).toThrow(DecodeError);
  });
});

describe("message round trip", () => {
  for (const m of SAMPLES) {
    it(`${m.type}${"body" in m && m.type !== "unknown" ? `/${(m.body as { mpType: string }).mpType}` : ""}`, () => {
      const b = encodeMessage(m);
      expect(b.readUInt16BE(2)).toBe(b.length);
      expect(decodeMessage(b)).toEqual(m);
    });
  }
});

describe("decodeMessage errors", () => {
  it("decodes an unknown but well-framed type as unknown", () => {
    const full = Buffer.from("0463001000000007" + "0102030405060708", "hex");
    expect(decodeMessage(full)).toEqual({
      type: "unknown",
      xid: 7,
      ofpType: 0x63,
      body: Buffer.from("0102030405060708", "hex"),
    });
  });
  it("throws DecodeError when the length field disagrees with the buffer", () => {
    const b = encodeMessage({ type: "barrier_request", xid: 1 });
    expect(() => decodeMessage(Buffer.concat([b, Buffer.alloc(1)]))).toThrow(DecodeError);
  });
  it("throws DecodeError for a non-1.3 version except hello", () => {
    const b = encodeMessage({ type: "barrier_request", xid: 1 });
    b[0] = 1;
    expect(() => decodeMessage(b)).toThrow(DecodeError);
    const h = encodeMessage({ type: "hello", xid: 1, versions: [1] });
    h[0] = 1;
    expect(decodeMessage(h)).toMatchObject({ type: "hello", versions: [1] });
  });
  it("a hello without a bitmap offers every version up to its header version", () => {
    const h = Buffer.from("0500000800000001", "hex");
    expect(decodeMessage(h)).toEqual({ type: "hello", xid: 1, versions: [1, 2, 3, 4, 5] });
  });
  it("names errors", () => {
    expect(errorName(4, 9)).toBe("OFPET_BAD_MATCH/OFPBMC_BAD_PREREQ");
    expect(errorName(5, 6)).toBe("OFPET_FLOW_MOD_FAILED/OFPFMFC_BAD_COMMAND");
    expect(errorName(0xffff, 1, 0x2320)).toContain("experimenter=0x2320");
  });
});
