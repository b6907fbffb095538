/**
 * The first-packet benchmark's goal arithmetic (bench/first-packet.ts): the
 * goal's rate measured GOAL_REPEATS times in a row, and the latency goal
 * judged on the medians of those measurements, lossless and complete; the
 * sustained rate reads those repeats the same way.
 */
import { describe, expect, it } from "vitest";
import {
  GOAL_RATE,
  GOAL_REPEATS,
  latencyGoal,
  sustained,
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

describe("sustained", () => {
  it("is the highest rate before one loses or more than doubles the lowest rate's p99", () => {
    expect(sustained([at(100, 2), at(200, 3), at(500, 4), at(GOAL_RATE, 3.9), at(3000, 9)])).toBe(GOAL_RATE);
    expect(sustained([at(100, 2), at(200, 3), at(500, 4, 0.1), at(GOAL_RATE, 1)])).toBe(200);
    // within 1 ms of a sub-millisecond base is not doubling
    expect(sustained([at(100, 0.4), at(200, 1.3), at(500, 1.5)])).toBe(200);
    expect(sustained([])).toBeNull();
  });

  it("reads the goal's repeats by their median: one slow measurement does not mark the series down", () => {
    const goal = (...p99s: number[]) => p99s.map((p) => at(GOAL_RATE, p));
    expect(sustained([at(100, 2), at(500, 3), ...goal(5.9, 3.5, 3.6), at(2000, 3.8)])).toBe(2000);
    expect(sustained([at(100, 2), at(500, 3), ...goal(5.9, 4.1, 4.5), at(2000, 3.8)])).toBe(500);
    // but every one of them must be lossless
    expect(
      sustained([at(100, 2), at(500, 3), at(GOAL_RATE, 3), at(GOAL_RATE, 3, 0.5), at(GOAL_RATE, 3)]),
    ).toBe(500);
  });
});
