/**
 * One offload scenario of the kernel lane in a boot of its own, for a test
 * file: the boot in a beforeAll (after requireFreshDist), its cleanup in an
 * afterAll, and `get(key)` for the scenario's results, which names the
 * scenario's output when a result is missing. The counters' shapes are those
 * test/kernel/scenarios/offload-lane.mjs prints.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import { requireFreshDist } from "../harness/dist.js";
import {
  bootLane,
  type LaneResult,
  repoRoot,
  type ScenarioSection,
  scenarioScript,
  sections,
} from "./lane.js";

export interface Side {
  packets: number;
  bytes: number;
  filters: number;
}

/** One host's counters (offload-lane.mjs `counters`). */
export interface HostCounters {
  tc: Record<string, { ours: Side; others: Side }>;
  dp: { ovs: number; tc: number };
  /** OVS's kernel datapath lookups (dpctl/show): hit, and missed (upcalls). */
  lookups: { hit: number; missed: number };
  of: number;
  packetIns: number | null;
}

/** A counted ping's result (echo.py's: the requests not answered are `missing`, by icmp_seq). */
export type Ping = { sent: number; received: number; missing?: number[] };

export interface ScenarioRun {
  section(): ScenarioSection;
  get<T>(key: string): T;
}

/** Boot `test/kernel/scenarios/<file>` as scenario `name` (at most `timeoutS` in the guest). */
export function laneScenario(name: string, file: string, timeoutS: number): ScenarioRun {
  let lane: LaneResult | undefined;
  let s: ScenarioSection | undefined;
  beforeAll(
    async () => {
      requireFreshDist();
      const script = readFileSync(join(repoRoot(), "test", "kernel", "scenarios", file), "utf8");
      lane = await bootLane({
        script: scenarioScript([{ name, script, timeoutS }]),
        timeoutMs: (timeoutS + 100) * 1000,
      });
      s = sections(lane).get(name);
    },
    (timeoutS + 200) * 1000,
  );
  afterAll(() => lane?.cleanup());
  const section = (): ScenarioSection => {
    if (!s) throw new Error(`the scenario did not run; console:\n${lane?.output ?? "(no boot)"}`);
    return s;
  };
  return {
    section,
    get<T>(key: string): T {
      const v = section().results.get(key);
      if (v === undefined) throw new Error(`no result ${key}; the scenario's output:\n${section().output}`);
      return v as T;
    },
  };
}

/** The scenario's NB holder ran to its end, and every agent used it (nb_holder_result). */
export function expectOneNbHolder(get: ScenarioRun["get"]): void {
  expect(get<{ alive: boolean; agentsServing: number }>("nb_holder")).toEqual({
    alive: true,
    agentsServing: 0,
  });
}
