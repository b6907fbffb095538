/**
 * `npm run bench -- ovsdb-dead-peer`: how long flowdrake's OVSDB client takes
 * to declare a frozen ovsdb-server dead. The keepalive (src/ovsdb/jsonrpc.ts)
 * ticks every probe interval: a tick that finds nothing received since the
 * last one sends an echo, and the next tick that still finds nothing closes
 * the connection — so from the freeze it takes two to three intervals (the
 * first tick may still see what arrived just before the freeze). This
 * measures it against a real ovsdb-server frozen with SIGSTOP (a private OVS
 * sandbox, tcp remote), from the freeze to the connection's close with its
 * ConnectionError, for a few probe intervals, FLOWDRAKE_BENCH_RUNS times each
 * (default 5). Reported per interval: median and worst, and the worst as a
 * multiple of the interval (3 at most by design; a busy machine adds its
 * scheduling delay). The load average before and after is recorded, since
 * the machine may be shared. Results: bench/results/ovsdb-dead-peer.json.
 *
 * This was an assertion in test/integration/ovsdb-reconnect.test.ts (elapsed
 * below 2 s); a test keeps the behaviour (a ConnectionError naming the
 * missing echo reply), the time is measured here.
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { OvsdbClient } from "../src/ovsdb/index.js";
import { OvsSandbox } from "../src/sandbox/ovs.js";
import { ConnectionError } from "../src/util/errors.js";
import { printTable, writeResult } from "./report.js";

const INTERVALS_MS = [300, 1000];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function once(sb: OvsSandbox, probeIntervalMs: number): Promise<number> {
  const c = await OvsdbClient.connect(`tcp:127.0.0.1:${sb.ovsdbTcpPort}`, { probeIntervalMs });
  await c.listDbs();
  const closed = new Promise<Error | undefined>((resolve) => c.once("close", resolve));
  const pid = Number.parseInt(readFileSync(join(sb.dir, "ovsdb-server.pid"), "utf8").trim(), 10);
  const t0 = performance.now();
  process.kill(pid, "SIGSTOP");
  try {
    const err = await closed;
    const ms = performance.now() - t0;
    if (!(err instanceof ConnectionError)) throw new Error(`expected a ConnectionError, got ${String(err)}`);
    return ms;
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

export async function ovsdbDeadPeer(): Promise<void> {
  const runs = Number(process.env.FLOWDRAKE_BENCH_RUNS ?? 5);
  const loadBefore = loadavg();
  const sb = await OvsSandbox.start({
    ovsdbTcp: true,
    datapath: "dummy",
    hostNetwork: true,
    label: "bench-deadpeer",
  });
  const results: {
    probeIntervalMs: number;
    runsMs: number[];
    medianMs: number;
    worstMs: number;
    worstIntervals: number;
  }[] = [];
  try {
    for (const probeIntervalMs of INTERVALS_MS) {
      const runsMs: number[] = [];
      for (let i = 0; i < runs; i++) runsMs.push(Math.round(await once(sb, probeIntervalMs)));
      const worstMs = Math.max(...runsMs);
      results.push({
        probeIntervalMs,
        runsMs,
        medianMs: median(runsMs),
        worstMs,
        worstIntervals: Number((worstMs / probeIntervalMs).toFixed(2)),
      });
    }
  } finally {
    await sb.stop();
  }
  printTable(
    results.map((r) => ({
      "probe interval": `${r.probeIntervalMs} ms`,
      median: `${r.medianMs} ms`,
      worst: `${r.worstMs} ms`,
      "worst / interval": r.worstIntervals,
    })),
  );
  const path = writeResult("ovsdb-dead-peer", { runs, results, loadBefore, loadAfter: loadavg() });
  process.stdout.write(`results: ${path}\n`);
}
