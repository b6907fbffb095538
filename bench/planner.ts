/**
 * `npm run bench -- planner`: offload planning throughput on a 100,000-flow
 * Dragonflow-shaped pipeline (classification, per-network L2 with local and
 * tunnelled destinations, routing), for each NIC profile, plus the cost of an
 * incremental re-plan after one L2 entry changes. No peer exists for this
 * step (OVS offloads datapath flows, not the OpenFlow pipeline), so the
 * numbers are absolute rules/s.
 */
import { exact, type PipelineRule, type PortMap } from "../src/offload/planner/ir.js";
import { OffloadPlanner } from "../src/offload/planner/plan.js";
import { profileById } from "../src/offload/profiles/index.js";
import { printTable, writeResult } from "./report.js";

const TUNNEL = 60000;

function pipeline(
  networks: number,
  portsPerNet: number,
  remotePerNet: number,
): { rules: PipelineRule[]; ports: PortMap } {
  const rules: PipelineRule[] = [];
  const hardware = new Map<number, string>();
  let id = 0;
  const add = (r: Omit<PipelineRule, "id">) => rules.push({ id: `r${++id}`, ...r });
  for (let n = 1; n <= networks; n++) {
    const net = BigInt(n);
    add({
      table: 0,
      priority: 100,
      match: { in_port: exact("in_port", TUNNEL), tun_id: exact("tun_id", 1000 + n) },
      actions: [
        { type: "set_field", field: "reg6", value: net },
        { type: "goto", table: 10 },
      ],
    });
    for (let p = 0; p < portsPerNet; p++) {
      const port = n * 1000 + p;
      hardware.set(port, `rep${port}`);
      const mac = 0x020000000000n + BigInt(port);
      add({
        table: 0,
        priority: 100,
        match: { in_port: exact("in_port", port), eth_src: exact("eth_src", mac) },
        actions: [
          { type: "set_field", field: "reg6", value: net },
          { type: "goto", table: 10 },
        ],
      });
      add({
        table: 10,
        priority: 100,
        match: { reg6: exact("reg6", net), eth_dst: exact("eth_dst", mac) },
        actions: [{ type: "output", port }],
      });
    }
    for (let r = 0; r < remotePerNet; r++) {
      add({
        table: 10,
        priority: 100,
        match: {
          reg6: exact("reg6", net),
          eth_dst: exact("eth_dst", 0x040000000000n + BigInt(n * 100000 + r)),
        },
        actions: [
          { type: "set_tunnel", id: BigInt(1000 + n), dst: 0xc0000200n + BigInt(r % 200), tunnel: "geneve" },
          { type: "output", port: TUNNEL },
        ],
      });
    }
  }
  return { rules, ports: { hardware, tunnels: new Map([[TUNNEL, "geneve"]]) } };
}

export async function plannerBench(): Promise<void> {
  const { rules, ports } = pipeline(100, 100, 800); // 100 tunnel + 10,000 classification + 10,000 local L2 + 80,000 remote L2
  const rows: Record<string, string | number>[] = [];
  const results: Record<string, unknown>[] = [];
  for (const id of ["connectx-6-dx", "connectx-5", "connectx-4-lx"]) {
    const profile = profileById(id);
    const best = { ms: Number.POSITIVE_INFINITY, tc: 0, offloaded: 0 };
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const plan = OffloadPlanner.plan({ rules, profile, ports });
      const ms = performance.now() - t0;
      if (ms < best.ms) {
        best.ms = ms;
        best.tc = plan.tc.length;
        best.offloaded = [...plan.decisions.values()].filter((d) => d.offloaded).length;
      }
    }
    const planner = new OffloadPlanner(profile, ports);
    planner.setRules(rules);
    const target = rules.find((r) => r.table === 10)!;
    const t1 = performance.now();
    const diff = planner.update({ upsert: [{ ...target, actions: [{ type: "output", port: 2001 }] }] });
    const incMs = performance.now() - t1;
    const rate = Math.round(rules.length / (best.ms / 1000));
    rows.push({
      profile: id,
      rules: rules.length,
      offloaded: best.offloaded,
      "tc rules": best.tc,
      "plan ms": best.ms.toFixed(0),
      "rules/s": rate,
      "1-change re-plan ms": incMs.toFixed(1),
      "chains re-planned": planner.lastPlannedChains,
    });
    results.push({
      profile: id,
      rules: rules.length,
      offloaded: best.offloaded,
      tcRules: best.tc,
      planMs: best.ms,
      rulesPerSecond: rate,
      incrementalMs: incMs,
      incrementalChains: planner.lastPlannedChains,
      incrementalTcChanges: diff.added.length + diff.removed.length,
    });
  }
  printTable(rows);
  const path = writeResult("planner", { command: "npm run bench -- planner", results });
  process.stdout.write(`results: ${path}\n`);
}
