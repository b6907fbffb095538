/**
 * The first-packet benchmark's goal arithmetic (bench/first-packet.ts): the
 * goal's rate measured GOAL_REPEATS times in a row, and the latency goal
 * judged on the medians of those measurements, lossless and complete.
 */
import { describe, expect, it } from "vitest";
import {
  GOAL_RATE,
  GOAL_REPEATS,
  latencyGoal,
  withGoalRepeats,
  type RateResult,
} from "../../bench/first-packet.js";

const at = (rate: number, p99Ms: number, lossPct = 0): RateResult =>
  ({ rate, sent: 3800, received: 3800, lossPct, p99Ms }) as unknown as RateResult;

describe("withGoalRepeats", () => {
  it("measures the goal's rate GOAL_REPEATS times in a row and every other rate once", () => {
    expect(GOAL_REPEATS).toBe(3);
    expect(withGoalRepeats([100, GOAL_RATE, 3000])).toEqual([100, GOAL_RATE, GOAL_RATE, GOAL_RATE, 3000]);
    expect(withGoalRepeats([100, 200])).toEqual([100, 200]);
  });
});

describe("latencyGoal", () => {
  const series = (fd: RateResult[], ovn: RateResult[]) => [
    { name: "flowdrake (defaults: punts ≤ 1000/s)", rates: [at(100, 9), ...fd] },
    { name: "flowdrake (punt cap off)", rates: [at(GOAL_RATE, 4), at(GOAL_RATE, 5)] },
    { name: "ovn", rates: [at(100, 0.5), ...ovn] },
  ];
  const ovn = [at(GOAL_RATE, 1.5), at(GOAL_RATE, 0.8), at(GOAL_RATE, 1.1)];

  it("compares the medians of the repeats, and keeps each p99", () => {
    // one bad measurement of three does not decide it, either way
    const g = latencyGoal(series([at(GOAL_RATE, 2.9), at(GOAL_RATE, 12), at(GOAL_RATE, 3.0)], ovn));
    expect(g).toEqual({
      flowdrakeP99Ms: 3.0,
      ovnP99Ms: 1.1,
      flowdrakeP99sMs: [2.9, 12, 3.0],
      ovnP99sMs: [1.5, 0.8, 1.1],
      capOffP99sMs: [4, 5],
      met: true,
    });
    expect(latencyGoal(series([at(GOAL_RATE, 3.2), at(GOAL_RATE, 1), at(GOAL_RATE, 3.4)], ovn)).met).toBe(
      false,
    );
  });

  it("is not met when a measurement lost datagrams, or one is missing", () => {
    expect(latencyGoal(series([at(GOAL_RATE, 1), at(GOAL_RATE, 1, 0.1), at(GOAL_RATE, 1)], ovn)).met).toBe(
      false,
    );
    expect(latencyGoal(series([at(GOAL_RATE, 1), at(GOAL_RATE, 1)], ovn))).toMatchObject({
      flowdrakeP99Ms: 1,
      met: false,
    });
    expect(latencyGoal(series([], ovn))).toMatchObject({ flowdrakeP99Ms: undefined, met: false });
  });
});
