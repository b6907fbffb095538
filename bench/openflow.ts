/**
 * `npm run bench -- openflow`: how fast flowdrake installs flows into
 * ovs-vswitchd, side by side with ovs-ofctl, on the same switch in one run.
 *
 * The same N flows (default 100,000; FLOWDRAKE_BENCH_FLOWS overrides) go into
 * one bridge of a private OVS sandbox (dummy datapath), emptied with
 * del-flows before every run. Each run is timed until the switch confirmed
 * the last flow:
 *
 *   flowdrake bundle   connect + handshake + one ONF bundle (open/add/commit) + barrier
 *   flowdrake plain    connect + handshake + flow_mods + a barrier window
 *   ovs-ofctl bundle   `ovs-ofctl -O OpenFlow13 --bundle add-flows <file>` (process start to exit)
 *   ovs-ofctl plain    `ovs-ofctl -O OpenFlow13 add-flows <file>`
 *
 * After every run the bridge must hold exactly N flows (checked, not timed).
 * flowdrake's flows are prebuilt FlowMod objects (what the controller holds);
 * ovs-ofctl parses its text file — that is how each is used. Each mode runs
 * FLOWDRAKE_BENCH_RUNS times (default 3); the best run is reported with the
 * median beside it. For the flowdrake modes the CPU time of this process is
 * recorded per run (nodeCpuMs): far below the wall time means the switch, not
 * flowdrake, is the bottleneck. The machine may be shared, so the load
 * average before and after is recorded too. Results: bench/results/openflow.json.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { flowMod, installFlows } from "../src/controller/flow-installer.js";
import { connectOpenFlow } from "../src/openflow/client.js";
import type { OfRequest } from "../src/openflow/connection.js";
import { OvsSandbox } from "../src/sandbox/ovs.js";
import { run } from "../src/util/exec.js";
import { machineFacts, writeResult } from "./report.js";

interface Flow {
  table: number;
  priority: number;
  reg6: number;
  ipDst: string;
  mac: string;
  port: number;
}

function makeFlows(n: number): Flow[] {
  return Array.from({ length: n }, (_, i) => ({
    table: (i % 4) * 10,
    priority: 100 + (i % 7),
    reg6: i,
    ipDst: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    mac: `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
    port: 1 + (i % 16),
  }));
}

function toFlowMod(f: Flow): OfRequest {
  return flowMod({
    tableId: f.table,
    priority: f.priority,
    match: [
      { field: "eth_type", value: 0x0800 },
      { field: "reg6", value: f.reg6 },
      { field: "ip_dst", value: f.ipDst },
    ],
    instructions: [
      {
        type: "apply_actions",
        actions: [
          { type: "set_field", field: "eth_dst", value: f.mac },
          { type: "output", port: f.port },
        ],
      },
    ],
  });
}

function toText(f: Flow): string {
  return `table=${f.table},priority=${f.priority},ip,reg6=${f.reg6},nw_dst=${f.ipDst},actions=set_field:${f.mac}->eth_dst,output:${f.port}`;
}

interface ModeResult {
  mode: string;
  runsMs: number[];
  bestMs: number;
  medianMs: number;
  flowsPerSec: number;
  medianFlowsPerSec: number;
  /** flowdrake modes: CPU time of this process (encode + socket) per run, beside the wall time. */
  nodeCpuMs?: number[];
}

function summarize(mode: string, n: number, runsMs: number[], cpuMs?: number[]): ModeResult {
  const sorted = [...runsMs].sort((a, b) => a - b);
  const best = sorted[0]!;
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return {
    mode,
    runsMs: runsMs.map((x) => Math.round(x)),
    bestMs: Math.round(best),
    medianMs: Math.round(median),
    flowsPerSec: Math.round((n / best) * 1000),
    medianFlowsPerSec: Math.round((n / median) * 1000),
    ...(cpuMs ? { nodeCpuMs: cpuMs.map((x) => Math.round(x)) } : {}),
  };
}

function tool(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" }).split("\n")[0]!.trim();
  } catch {
    return "unknown";
  }
}

export async function openflow(): Promise<void> {
  const n = Number(process.env.FLOWDRAKE_BENCH_FLOWS ?? 100_000);
  const runs = Number(process.env.FLOWDRAKE_BENCH_RUNS ?? 3);
  const flows = makeFlows(n);
  const mods = flows.map(toFlowMod);
  const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  const sb = await OvsSandbox.start({ label: "benchof", datapath: "dummy" });
  try {
    const file = join(sb.dir, "flows.txt");
    writeFileSync(file, flows.map(toText).join("\n") + "\n");
    const target = sb.mgmtRemote();
    const count = async (): Promise<number> => {
      const { stdout } = await run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", target], {
        env: sb.env,
      });
      return stdout.split("\n").filter((l) => l.includes("actions=")).length;
    };
    const modes: Record<string, () => Promise<void>> = {
      "flowdrake bundle": async () => {
        const conn = await connectOpenFlow(target, { echoIntervalMs: 0 });
        await installFlows(conn, mods, { bundle: true });
        conn.close();
      },
      "flowdrake plain": async () => {
        const conn = await connectOpenFlow(target, { echoIntervalMs: 0 });
        await installFlows(conn, mods, { bundle: false });
        conn.close();
      },
      "ovs-ofctl bundle": async () => {
        await run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", target, file], {
          env: sb.env,
          timeoutMs: 600_000,
        });
      },
      "ovs-ofctl plain": async () => {
        await run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", target, file], {
          env: sb.env,
          timeoutMs: 600_000,
        });
      },
    };
    const times: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    for (let r = 0; r < runs; r++) {
      // Interleave the modes so that drift (thermal, other load) hits them alike.
      for (const [mode, fn] of Object.entries(modes)) {
        await sb.ofctl("del-flows", target);
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await fn();
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        const got = await count();
        if (got !== n) throw new Error(`${mode}: bridge holds ${got} flows after the run, expected ${n}`);
        (times[mode] ??= []).push(ms);
        const cpuMs = (c.user + c.system) / 1000;
        if (mode.startsWith("flowdrake")) (cpu[mode] ??= []).push(cpuMs);
        process.stdout.write(
          `  run ${r + 1}/${runs} ${mode.padEnd(18)} ${Math.round(ms)} ms${mode.startsWith("flowdrake") ? ` (flowdrake CPU ${Math.round(cpuMs)} ms)` : ""}\n`,
        );
      }
    }
    const results = Object.entries(times).map(([m, t]) => summarize(m, n, t, cpu[m]));
    const by = Object.fromEntries(results.map((r) => [r.mode, r]));
    const ratio = (a: string, b: string): number =>
      Math.round((by[a]!.flowsPerSec / by[b]!.flowsPerSec) * 100) / 100;
    const ratios = {
      "flowdrake bundle / ovs-ofctl bundle": ratio("flowdrake bundle", "ovs-ofctl bundle"),
      "flowdrake plain / ovs-ofctl plain": ratio("flowdrake plain", "ovs-ofctl plain"),
      "flowdrake bundle / ovs-ofctl plain": ratio("flowdrake bundle", "ovs-ofctl plain"),
    };
    const out = {
      suite: "openflow",
      date: new Date().toISOString(),
      command: `npm run bench -- openflow${process.env.FLOWDRAKE_BENCH_FLOWS ? ` (FLOWDRAKE_BENCH_FLOWS=${n})` : ""}`,
      flows: n,
      runsPerMode: runs,
      machine: { ...machineFacts(), ovsOfctl: tool(["ovs-ofctl", "--version"]) },
      // The machine is shared: 1/5/15-minute load averages before and after the runs.
      loadAverage: { before: loadBefore, after: loadavg().map((x) => Math.round(x * 100) / 100) },
      setup:
        "private OVS sandbox, dummy datapath, one bridge; del-flows before every run; timed until the switch confirmed (barrier/commit reply or ovs-ofctl exit); flow count checked after each run",
      results,
      ratios,
      goal: "ratio >= 1.0",
    };
    writeResult("openflow", out);
    process.stdout.write(
      `\n${n} flows, best of ${runs} (median in brackets), ${out.machine.cpu} × ${out.machine.cores}, load ${out.loadAverage.before[0]} → ${out.loadAverage.after[0]}\n`,
    );
    process.stdout.write(
      `${"mode".padEnd(20)}${"ms".padStart(10)}${"flows/s".padStart(12)}${"(median)".padStart(12)}\n`,
    );
    for (const r of results) {
      process.stdout.write(
        `${r.mode.padEnd(20)}${String(r.bestMs).padStart(10)}${String(r.flowsPerSec).padStart(12)}${`(${r.medianFlowsPerSec})`.padStart(12)}\n`,
      );
    }
    for (const [k, v] of Object.entries(ratios)) process.stdout.write(`${k.padEnd(40)} ${v.toFixed(2)}\n`);
    process.stdout.write(`wrote bench/results/openflow.json\n`);
  } finally {
    await sb.stop();
  }
}
