/**
 * A bit range in an action's field reference (`load:…->NXM_OF_IN_PORT[0..15]`)
 * is checked against the width of the name the action uses: NXM_OF_IN_PORT is
 * 16 bits on the wire of an action even though OXM's in_port match field is
 * 32, so its whole range is [0..15] and [0..31] is refused as text, before
 * anything is encoded.
 */
import { describe, expect, it } from "vitest";
import { parseInstructions } from "../../src/openflow/text.js";
import { UsageError } from "../../src/util/errors.js";

const loadDst = (text: string) => {
  const [ins] = parseInstructions(text);
  if (ins?.type !== "apply_actions" || ins.actions[0]?.type !== "load")
    throw new Error(`not a load: ${text}`);
  return ins.actions[0].dst;
};

describe("action field references", () => {
  it("take NXM_OF_IN_PORT's whole range as 16 bits", () => {
    expect(loadDst("load:0->NXM_OF_IN_PORT[]")).toEqual({ field: "in_port", ofs: 0, nbits: 0 });
    expect(loadDst("load:0->NXM_OF_IN_PORT[0..15]")).toEqual({ field: "in_port", ofs: 0, nbits: 0 });
    expect(loadDst("load:1->NXM_OF_IN_PORT[8..15]")).toEqual({ field: "in_port", ofs: 8, nbits: 8 });
  });

  it("refuse a range past the end of the name's width", () => {
    expect(() => parseInstructions("load:0->NXM_OF_IN_PORT[0..31]")).toThrow(UsageError);
    expect(() => parseInstructions("load:0->NXM_OF_IN_PORT[16]")).toThrow(/bad bit range/);
    expect(() => parseInstructions("load:0->NXM_OF_TCP_DST[0..16]")).toThrow(/bad bit range/);
    expect(loadDst("load:0->NXM_OF_TCP_DST[0..15]")).toEqual({ field: "tcp_dst", ofs: 0, nbits: 0 });
  });
});
