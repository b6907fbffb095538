/**
 * OpenFlow 1.3 instructions (spec §7.2.4, ofp_instruction_type): what a
 * flow does after matching — jump to a table, write metadata, apply or write
 * an action list, clear the action set, or send through a meter.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError } from "../util/errors.js";
import { decodeActions, encodeActions, type Action } from "./actions.js";

/** ofp_instruction_type. */
export const OFPIT = {
  GOTO_TABLE: 1,
  WRITE_METADATA: 2,
  WRITE_ACTIONS: 3,
  APPLY_ACTIONS: 4,
  CLEAR_ACTIONS: 5,
  METER: 6,
  EXPERIMENTER: 0xffff,
} as const;

export type Instruction =
  | { type: "goto_table"; table: number }
  | { type: "write_metadata"; metadata: bigint; mask: bigint }
  | { type: "write_actions"; actions: Action[] }
  | { type: "apply_actions"; actions: Action[] }
  | { type: "clear_actions" }
  | { type: "meter"; meterId: number }
  | { type: "experimenter"; experimenter: number; data: Buffer };

export function encodeInstructions(w: ByteWriter, list: readonly Instruction[]): void {
  for (const ins of list) {
    const start = w.length;
    w.u16(OFPIT[ins.type.toUpperCase() as keyof typeof OFPIT]);
    const lenAt = w.reserve(2);
    switch (ins.type) {
      case "goto_table":
        w.u8(ins.table).zeros(3);
        break;
      case "write_metadata":
        w.zeros(4).u64(ins.metadata).u64(ins.mask);
        break;
      case "write_actions":
      case "apply_actions":
        w.zeros(4);
        encodeActions(w, ins.actions);
        break;
      case "clear_actions":
        w.zeros(4);
        break;
      case "meter":
        w.u32(ins.meterId);
        break;
      case "experimenter":
        w.u32(ins.experimenter).bytes(ins.data);
        w.padTo(8, start);
        break;
    }
    w.setU16(lenAt, w.length - start);
  }
}

export function decodeInstructions(r: ByteReader): Instruction[] {
  const out: Instruction[] = [];
  while (!r.atEnd()) {
    const type = r.u16("instruction type");
    const len = r.u16("instruction length");
    if (len < 8) throw new DecodeError(`instruction ${type}: length ${len} < 8`, { type, len });
    const b = r.sub(len - 4, `instruction ${type}`);
    switch (type) {
      case OFPIT.GOTO_TABLE:
        out.push({ type: "goto_table", table: b.u8("table_id") });
        break;
      case OFPIT.WRITE_METADATA:
        b.skip(4);
        out.push({ type: "write_metadata", metadata: b.u64("metadata"), mask: b.u64("metadata_mask") });
        break;
      case OFPIT.WRITE_ACTIONS:
      case OFPIT.APPLY_ACTIONS:
        b.skip(4);
        out.push({
          type: type === OFPIT.APPLY_ACTIONS ? "apply_actions" : "write_actions",
          actions: decodeActions(b),
        });
        break;
      case OFPIT.CLEAR_ACTIONS:
        out.push({ type: "clear_actions" });
        break;
      case OFPIT.METER:
        out.push({ type: "meter", meterId: b.u32("meter_id") });
        break;
      case OFPIT.EXPERIMENTER:
        out.push({ type: "experimenter", experimenter: b.u32("experimenter"), data: Buffer.from(b.rest()) });
        break;
      default:
        throw new DecodeError(`unknown instruction type ${type}`, { type });
    }
  }
  return out;
}
