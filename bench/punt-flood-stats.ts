/**
 * The arithmetic and the parsing of the punt-flood benchmark
 * (bench/punt-flood.ts), kept apart from the sandboxes so that they can be
 * tested on their own: the suite's options, the DHCP prober's output
 * (bench/dhcp-probe.py), `ovs-ofctl meter-stats`, and latency statistics in
 * which a probe that got no answer counts as lost rather than disappearing.
 */
import { FlowdrakeError, UsageError } from "../src/util/errors.js";
import { percentiles } from "./control-plane-ovn.js";

export const SERIES = ["flowdrake", "ovn", "ovn-copp"] as const;
export type SeriesName = (typeof SERIES)[number];

export interface PuntFloodOptions {
  /** DHCP probes (and routed first packets) per phase. */
  probes: number;
  /** Gap between two probes, ms. */
  intervalMs: number;
  /** DISCOVERs per second from each flooding VM. */
  floodPps: number;
  /** Whole runs (every series, both phases) in one invocation. */
  runs: number;
  series: SeriesName[];
  /**
   * Overrides, in the flowdrake series, br-int's other_config:controller-queue-size
   * (packet-ins OVS queues for the agent, 1–512), which the agent sets to its
   * punt.switchQueue (512) at start; OVS's own default is 100.
   */
  controllerQueue?: number;
}

export const DEFAULT_OPTIONS: PuntFloodOptions = {
  probes: 200,
  intervalMs: 20,
  floodPps: 2000,
  runs: 2,
  series: [...SERIES],
};

/** Upper bound on --probes: each phase needs that many fresh addresses on the sink's /22. */
export const MAX_PROBES = 450;

const positiveInt = (flag: string, v: string | undefined, max = Number.MAX_SAFE_INTEGER): number => {
  const n = Number(v);
  if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`punt-flood: ${flag} wants an integer from 1 to ${max}, not ${v ?? "nothing"}`);
  }
  return n;
};

/**
 * The suite's options from the bench command line (`npm run bench -- punt-flood
 * --probes 100 --flood-pps 1000 --runs 1 --series flowdrake,ovn --controller-queue 512`). Options of
 * other suites on the same command line are not ours and are left alone.
 */
export function parseOptions(argv: string[]): PuntFloodOptions {
  const o: PuntFloodOptions = { ...DEFAULT_OPTIONS, series: [...DEFAULT_OPTIONS.series] };
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i < 0 ? undefined : (argv[i + 1] ?? "");
  };
  const has = (flag: string) => argv.includes(flag);
  if (has("--probes")) o.probes = positiveInt("--probes", value("--probes"), MAX_PROBES);
  if (has("--interval-ms")) o.intervalMs = positiveInt("--interval-ms", value("--interval-ms"), 10_000);
  if (has("--flood-pps")) o.floodPps = positiveInt("--flood-pps", value("--flood-pps"), 1_000_000);
  if (has("--runs")) o.runs = positiveInt("--runs", value("--runs"), 100);
  if (has("--controller-queue")) {
    o.controllerQueue = positiveInt("--controller-queue", value("--controller-queue"), 512);
  }
  if (has("--series")) {
    const names = (value("--series") ?? "").split(",").filter(Boolean);
    const unknown = names.filter((n) => !(SERIES as readonly string[]).includes(n));
    if (!names.length || unknown.length) {
      throw new UsageError(
        `punt-flood: --series wants a comma-separated list of ${SERIES.join(", ")}, not ${value("--series") || "nothing"}`,
      );
    }
    o.series = SERIES.filter((s) => names.includes(s));
  }
  return o;
}

export interface DhcpProbe {
  index: number;
  sentNs: bigint;
  /** The OFFER's kernel receive time; undefined: no OFFER within the prober's timeout. */
  recvNs?: bigint;
}

export interface DhcpProbeSummary {
  sent: number;
  answered: number;
  /** The latest a probe left after its deadline, µs (the prober's pacing). */
  worstLateUs: number;
  /** OFFERs that matched no waiting probe (after its timeout, or not ours). */
  foreign: number;
}

/** bench/dhcp-probe.py's stdout: one `probe` line per probe, then the summary as JSON. */
export function parseDhcpProbe(stdout: string): { probes: DhcpProbe[]; summary: DhcpProbeSummary } {
  const lines = stdout.split("\n").filter((l) => l.trim());
  const bad = (why: string, line?: string) =>
    new FlowdrakeError("PARSE", `dhcp-probe output: ${why}`, line === undefined ? {} : { line });
  const last = lines.pop();
  if (last === undefined) throw bad("empty");
  let summary: DhcpProbeSummary;
  try {
    summary = JSON.parse(last) as DhcpProbeSummary;
  } catch {
    throw bad("the last line is not the JSON summary", last);
  }
  for (const k of ["sent", "answered", "worstLateUs", "foreign"] as const) {
    if (typeof summary[k] !== "number") throw bad(`the summary has no number ${k}`, last);
  }
  const probes = lines.map((line, i): DhcpProbe => {
    const m = /^probe (\d+) (\d+) (\d+|-)$/.exec(line.trim());
    if (!m) throw bad("not a probe line", line);
    if (Number(m[1]) !== i) throw bad(`probe ${m[1]} where probe ${i} was due`, line);
    const sentNs = BigInt(m[2]!);
    if (m[3] === "-") return { index: i, sentNs };
    const recvNs = BigInt(m[3]!);
    if (recvNs < sentNs) throw bad("an OFFER received before its DISCOVER was sent", line);
    return { index: i, sentNs, recvNs };
  });
  if (probes.length !== summary.sent) throw bad(`${probes.length} probe lines for ${summary.sent} sent`);
  const answered = probes.filter((p) => p.recvNs !== undefined).length;
  if (answered !== summary.answered)
    throw bad(`${answered} answered lines, the summary says ${summary.answered}`);
  return { probes, summary };
}

export interface LatencyStats {
  sent: number;
  answered: number;
  lost: number;
  lossPct: number;
  /** Over the answered ones (absent when none was answered). */
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  meanMs?: number;
  /**
   * p99 over everything sent with a lost probe counted as slower than any
   * answer: the answered p99 when at most 1 % was lost, undefined (∞) otherwise.
   */
  p99WithLossMs?: number;
}

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

/** Statistics of `sent` probes of which `samplesMs` (round trips, ms) were answered. */
export function latencyStats(samplesMs: number[], sent: number): LatencyStats {
  if (!Number.isInteger(sent) || sent < samplesMs.length) {
    throw new UsageError(`latencyStats: ${samplesMs.length} answers for ${sent} sent`);
  }
  const lost = sent - samplesMs.length;
  const base: LatencyStats = {
    sent,
    answered: samplesMs.length,
    lost,
    lossPct: sent ? round((100 * lost) / sent, 2) : 0,
  };
  if (!samplesMs.length) return base;
  const p = percentiles(samplesMs);
  const sorted = [...samplesMs].sort((a, b) => a - b);
  // nearest rank over all sent, lost ones sorting last
  const rank99 = Math.max(0, Math.ceil(0.99 * sent) - 1);
  return {
    ...base,
    p50Ms: round(p.p50),
    p99Ms: round(p.p99),
    maxMs: round(sorted.at(-1)!),
    meanMs: round(samplesMs.reduce((s, x) => s + x, 0) / samplesMs.length),
    ...(rank99 < sorted.length ? { p99WithLossMs: round(sorted[rank99]!) } : {}),
  };
}

export interface MeterStat {
  /** Packets that reached the meter. */
  packetsIn: number;
  /** Packets its bands dropped (all bands of a drop meter). */
  dropped: number;
}

/**
 * `ovs-ofctl meter-stats BRIDGE` → meter id (a number, or OVS's name for a
 * reserved meter: "controller", "slowpath", "all") → its counts.
 */
export function parseMeterStats(text: string): Map<string, MeterStat> {
  const out = new Map<string, MeterStat>();
  let current: MeterStat | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const head = /^meter[:=](\S+)\s.*\bpacket_in_count:(\d+)/.exec(line);
    if (head) {
      current = { packetsIn: Number(head[2]), dropped: 0 };
      out.set(head[1]!, current);
      continue;
    }
    const band = /^\d+:\s*packet_count:(\d+)/.exec(line);
    if (band) {
      if (!current) throw new FlowdrakeError("PARSE", "meter-stats: a band before any meter", { line });
      current.dropped += Number(band[1]);
    }
  }
  return out;
}

/** a / b to three significant digits, or null when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || b === 0) return null;
  return Number((a / b).toPrecision(3));
}
