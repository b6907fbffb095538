import { describe, expect, it } from "vitest";
import {
  decodeMessage,
  encodeMessage,
  errorName,
  OFP_HEADER_LEN,
  OFP_VERSION_1_3,
  readHeader,
} from "../../src/openflow/index.js";
import { DecodeError } from "../../src/util/errors.js";
import { SAMPLES } from "../fixtures/openflow/samples.js";

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
