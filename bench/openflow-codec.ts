/**
 * `npm run bench -- openflow-codec`: OpenFlow codec throughput, in process,
 * no switch involved — how many messages per second flowdrake turns into
 * bytes and back.
 *
 *   flow_mod encode           the bench's 100k-flow shape (ip, reg6, nw_dst →
 *                             set eth_dst, output), general codec (encodeMessage)
 *                             and bulk encoder (OfWireWriter, as sendAll uses it),
 *                             plain and wrapped in bundle_add_message
 *   packet_in decode          OFPT_PACKET_IN (in_port, reg0, metadata + a 98-byte
 *                             ICMP frame) and NXT_PACKET_IN2 with userdata
 *   flow stats decode         OFPMP_FLOW replies of 50 flows each (what OVS sends
 *                             for dump-flows), reported as flows/s
 *
 * Each case runs for ~FLOWDRAKE_BENCH_MS (default 700) ms per round, three
 * rounds; rates are per CPU-second of this process (the machine is shared;
 * wall-clock rates are kept beside them), best round with the median. No peer runs in
 * process, so the numbers are absolute; the ratio reported is bulk encoder vs
 * general codec. Results: bench/results/openflow-codec.json.
 */
import { flowMod } from "../src/controller/flow-installer.js";
import type { OfRequest } from "../src/openflow/connection.js";
import { decodeMessage, encodeMessage, type FlowMod, type OfMessage } from "../src/openflow/message.js";
import type { FlowStats } from "../src/openflow/multipart.js";
import { OfWireWriter } from "../src/openflow/wire-writer.js";
import { printTable, writeResult } from "./report.js";

const ROUNDS = 3;

/** FlowMods as the controller holds them (no xid; the connection assigns one when sending). */
function flowMods(n: number): OfRequest[] {
  const hex = (x: number) => (x & 255).toString(16).padStart(2, "0");
  return Array.from({ length: n }, (_, i) =>
    flowMod({
      tableId: (i % 4) * 10,
      priority: 100 + (i % 7),
      match: [
        { field: "eth_type", value: 0x0800 },
        { field: "reg6", value: i },
        { field: "ip_dst", value: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
      ],
      instructions: [
        {
          type: "apply_actions",
          actions: [
            {
              type: "set_field",
              field: "eth_dst",
              value: `02:00:00:${hex(i >> 16)}:${hex(i >> 8)}:${hex(i)}`,
            },
            { type: "output", port: 1 + (i % 16) },
          ],
        },
      ],
    }),
  );
}

function icmpFrame(): Buffer {
  const f = Buffer.alloc(98);
  Buffer.from("0200000000010200000000020800", "hex").copy(f, 0);
  Buffer.from("4500005400004000400100000a0000010a000002", "hex").copy(f, 14);
  f[34] = 8;
  return f;
}

function packetIns(): OfMessage[] {
  const data = icmpFrame();
  return [
    {
      type: "packet_in",
      xid: 0,
      bufferId: 0xffffffff,
      totalLen: data.length,
      reason: 1,
      tableId: 20,
      cookie: 0x1234n,
      match: [
        { field: "in_port", value: 3 },
        { field: "metadata", value: 0x10n },
        { field: "reg0", value: 7 },
      ],
      data,
    },
    {
      type: "nx_packet_in2",
      xid: 0,
      packet: data,
      fullLen: data.length,
      tableId: 20,
      cookie: 0x1234n,
      reason: 1,
      metadata: [
        { field: "in_port", value: 3 },
        { field: "reg0", value: 7 },
        { field: "reg6", value: 9 },
      ],
      userdata: Buffer.from("0000000100000002", "hex"),
    },
  ];
}

function flowStatsReply(perMsg: number): OfMessage {
  const flows: FlowStats[] = (flowMods(perMsg) as FlowMod[]).map((m, i) => ({
    tableId: m.tableId,
    durationSec: i,
    durationNsec: 1000,
    priority: m.priority,
    idleTimeout: 0,
    hardTimeout: 0,
    flags: 0,
    cookie: 0n,
    packetCount: BigInt(i),
    byteCount: BigInt(i * 64),
    match: m.match,
    instructions: m.instructions,
  }));
  return { type: "multipart_reply", xid: 1, flags: 0, body: { mpType: "flow", flows } } as OfMessage;
}

interface Case {
  name: string;
  unit: string;
  /** Runs the work once; returns how many units it did. */
  run: () => number;
}

/**
 * Rate per CPU-second of this process (user + system, GC threads included):
 * on a shared machine wall time mostly measures the neighbours; the wall
 * rate is kept beside it.
 */
function measure(c: Case, budgetMs: number): { best: number; median: number; wallBest: number } {
  const rates: number[] = [];
  const wall: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let units = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < budgetMs) {
      units += c.run();
      t = performance.now();
    }
    const cpu = process.cpuUsage(c0);
    rates.push(units / ((cpu.user + cpu.system) / 1e6));
    wall.push((units / (t - t0)) * 1000);
  }
  rates.sort((a, b) => b - a);
  return {
    best: Math.round(rates[0]!),
    median: Math.round(rates[Math.floor(ROUNDS / 2)]!),
    wallBest: Math.round(Math.max(...wall)),
  };
}

export async function openflowCodec(): Promise<void> {
  const budgetMs = Number(process.env.FLOWDRAKE_BENCH_MS ?? 700);
  const mods = flowMods(10_000);
  const pins = packetIns().map((m) => encodeMessage(m));
  const stats = encodeMessage(flowStatsReply(50));
  let sink = 0;
  const cases: Case[] = [
    {
      name: "flow_mod encode, general (encodeMessage)",
      unit: "msgs/s",
      run: () => {
        // What sendAll did before the bulk encoder: copy to attach the xid, encode.
        let xid = 0;
        for (const m of mods) sink += encodeMessage({ ...m, xid: ++xid } as OfMessage).length;
        return mods.length;
      },
    },
    {
      name: "flow_mod encode, bulk (OfWireWriter)",
      unit: "msgs/s",
      run: () => {
        const w = new OfWireWriter();
        let xid = 0;
        for (const m of mods) {
          w.write(m, ++xid);
          if (w.pending >= 256 * 1024) sink += w.take().length;
        }
        sink += w.take().length;
        return mods.length;
      },
    },
    {
      name: "bundled flow_mod encode, general",
      unit: "msgs/s",
      run: () => {
        let xid = 0;
        for (const m of mods) {
          const message = { ...m, xid: ++xid } as OfMessage;
          sink += encodeMessage({
            type: "bundle_add_message",
            xid,
            bundleId: 1,
            flags: 3,
            message,
          }).length;
        }
        return mods.length;
      },
    },
    {
      name: "bundled flow_mod encode, bulk",
      unit: "msgs/s",
      run: () => {
        const w = new OfWireWriter();
        let xid = 0;
        for (const m of mods) {
          w.writeBundleAdd(1, 3, m, ++xid);
          if (w.pending >= 256 * 1024) sink += w.take().length;
        }
        sink += w.take().length;
        return mods.length;
      },
    },
    {
      name: "packet_in decode (OFPT_PACKET_IN)",
      unit: "msgs/s",
      run: () => {
        for (let i = 0; i < 1000; i++) sink += decodeMessage(pins[0]!).xid;
        return 1000;
      },
    },
    {
      name: "packet_in decode (NXT_PACKET_IN2)",
      unit: "msgs/s",
      run: () => {
        for (let i = 0; i < 1000; i++) sink += decodeMessage(pins[1]!).xid;
        return 1000;
      },
    },
    {
      name: "flow stats decode (OFPMP_FLOW, 50/reply)",
      unit: "flows/s",
      run: () => {
        for (let i = 0; i < 20; i++) sink += decodeMessage(stats).xid;
        return 20 * 50;
      },
    },
  ];
  const results = cases.map((c) => ({ name: c.name, unit: c.unit, ...measure(c, budgetMs) }));
  if (sink === -1) process.stdout.write("\n");
  const by = Object.fromEntries(results.map((r) => [r.name, r.best]));
  const ratio = (a: string, b: string): number => Math.round((by[a]! / by[b]!) * 10) / 10;
  const ratios = {
    "flow_mod bulk / general": ratio(
      "flow_mod encode, bulk (OfWireWriter)",
      "flow_mod encode, general (encodeMessage)",
    ),
    "bundled bulk / general": ratio("bundled flow_mod encode, bulk", "bundled flow_mod encode, general"),
  };
  printTable(
    results.map((r) => ({
      case: r.name,
      "per cpu-s (best)": r.best.toLocaleString("en-US"),
      median: r.median.toLocaleString("en-US"),
      "per wall-s": r.wallBest.toLocaleString("en-US"),
      unit: r.unit,
    })),
  );
  for (const [k, v] of Object.entries(ratios)) process.stdout.write(`${k.padEnd(28)} ${v}x\n`);
  const path = writeResult("openflow-codec", {
    command: `npm run bench -- openflow-codec${process.env.FLOWDRAKE_BENCH_MS ? ` (FLOWDRAKE_BENCH_MS=${budgetMs})` : ""}`,
    date: new Date().toISOString(),
    setup: `in process; ${ROUNDS} rounds of ~${budgetMs} ms wall per case; rates per CPU-second of the process (best round, median beside it) and per wall-second (best); flow_mod shape as in bench openflow`,
    results,
    ratios,
  });
  process.stdout.write(`wrote ${path}\n`);
}
