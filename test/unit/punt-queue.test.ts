/**
 * The agent's fair punt queue: round-robin across ports, bounded per port
 * with the oldest dropped first, and a handler failure costs only its packet.
 */
import { describe, expect, it } from "vitest";
import { PuntQueue } from "../../src/controller/punt-queue.js";

describe("punt queue", () => {
  it("serves a quiet port's packet after at most one packet of each busy port", async () => {
    const order: string[] = [];
    const q = new PuntQueue<string>(1000, async (s) => {
      order.push(s);
    });
    for (let i = 0; i < 50; i++) q.push(1, `a${i}`);
    for (let i = 0; i < 50; i++) q.push(2, `b${i}`);
    q.push(3, "neighbour");
    await q.idle();
    expect(order.indexOf("neighbour")).toBeLessThanOrEqual(2);
    expect(order).toHaveLength(101);
    // each port's own packets stay in order
    expect(order.filter((s) => s.startsWith("a"))).toEqual(Array.from({ length: 50 }, (_, i) => `a${i}`));
  });

  it("keeps at most perPort packets of a port, dropping the oldest", async () => {
    const seen: number[] = [];
    const q = new PuntQueue<number>(3, async (n) => {
      seen.push(n);
    });
    for (let i = 0; i < 10; i++) q.push(7, i);
    await q.idle();
    expect(seen).toEqual([7, 8, 9]);
    expect(q.stats).toEqual({ queued: 10, handled: 3, dropped: 7 });
  });

  it("a failing handler costs only its own packet", async () => {
    const seen: number[] = [];
    const errors: unknown[] = [];
    const q = new PuntQueue<number>(
      10,
      async (n) => {
        if (n === 1) throw new Error("boom");
        seen.push(n);
      },
      (e) => errors.push(e),
    );
    for (const n of [0, 1, 2]) q.push(1, n);
    await q.idle();
    expect(seen).toEqual([0, 2]);
    expect(errors).toHaveLength(1);
  });
});
