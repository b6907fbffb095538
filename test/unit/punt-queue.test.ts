/**
 * The agent's fair punt queue: round-robin across ports, bounded per port
 * with the oldest dropped first, a handler failure costs only its packet, and
 * at most `concurrency` handlers run at once.
 */
import { describe, expect, it, vi } from "vitest";
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

  it("runs up to `concurrency` handlers at once, started round-robin, and no more", async () => {
    const started: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let peak = 0;
    const q = new PuntQueue<string>(
      100,
      async (s) => {
        started.push(s);
        peak = Math.max(peak, q.running);
        await gate;
      },
      undefined,
      3,
    );
    for (let i = 0; i < 4; i++) q.push(1, `a${i}`);
    q.push(2, "b0");
    q.push(3, "c0");
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(["a0", "b0", "c0"]);
    expect(q.running).toBe(3);
    release();
    await q.idle();
    expect(started).toEqual(["a0", "b0", "c0", "a1", "a2", "a3"]);
    expect(peak).toBe(3);
    expect(q.stats.handled).toBe(6);
  });

  it("with concurrency 1 a handler starts only after the previous one finished", async () => {
    const log: string[] = [];
    const q = new PuntQueue<number>(10, async (n) => {
      log.push(`start ${n}`);
      await new Promise((r) => setImmediate(r));
      log.push(`end ${n}`);
    });
    for (const n of [0, 1, 2]) q.push(n, n);
    await q.idle();
    expect(log).toEqual(["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]);
  });

  it("counts the packets waiting, across ports, until they are taken", async () => {
    const q = new PuntQueue<number>(10, async () => undefined);
    expect(q.length).toBe(0);
    for (let i = 0; i < 3; i++) q.push(1, i);
    q.push(2, 9);
    q.push(2, 8);
    expect(q.length).toBe(5);
    await q.idle();
    expect(q.length).toBe(0);
    expect(q.stats).toEqual({ queued: 5, handled: 5, dropped: 0 });
  });

  it("idle() resolves at once when nothing was ever queued, and again after a drain", async () => {
    const q = new PuntQueue<number>(10, async () => undefined);
    await q.idle();
    q.push(1, 1);
    await q.idle();
    expect(q.stats.handled).toBe(1);
    await q.idle();
  });

  it("idle() waits for packets queued but not yet started, and for handlers still running", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new PuntQueue<number>(10, () => gate);
    q.push(1, 1);
    // queued, service not started yet
    let idle = false;
    const first = q.idle().then(() => (idle = true));
    await new Promise((r) => setImmediate(r));
    expect(q.running).toBe(1);
    expect(q.length).toBe(0);
    // started, still running: a second waiter waits too
    const second = q.idle().then(() => (idle = true));
    await new Promise((r) => setImmediate(r));
    expect(idle).toBe(false);
    release();
    await Promise.all([first, second]);
    expect(q.stats.handled).toBe(1);
    expect(q.running).toBe(0);
  });

  describe("with a rate (the host's punt budget)", () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    it("hands out a full bucket at once, then ratePps a second", async () => {
      const q = new PuntQueue<number>(1000, async () => undefined, undefined, 32, 100);
      const t0 = performance.now();
      for (let i = 0; i < 250; i++) q.push(1, i);
      // the bucket starts full: 100 at once, then what the time since earns, not all 250
      for (const ms of [20, 300]) {
        await sleep(ms);
        const elapsed = (performance.now() - t0) / 1000;
        expect(q.stats.handled).toBeGreaterThanOrEqual(100);
        expect(q.stats.handled).toBeLessThanOrEqual(100 + Math.ceil(100 * elapsed) + 1);
      }
      await q.idle();
      // 150 beyond the bucket take 1.5 s at 100/s
      expect(performance.now() - t0).toBeGreaterThanOrEqual(1490);
      expect(q.stats).toEqual({ queued: 250, handled: 250, dropped: 0 });
    });

    it("a port under its share of the rate has all its packets handled while two others flood", async () => {
      const handled = new Map<number, number>();
      const q = new PuntQueue<number>(
        2,
        async (port) => {
          handled.set(port, (handled.get(port) ?? 0) + 1);
        },
        undefined,
        32,
        60,
      );
      // 100 rounds of 10 ms: two flooders push 10 packets a round (about 1,000/s each), the neighbour
      // one every 10 rounds (about 10/s, half its third of 60/s). Its queue holds 2: had it waited
      // behind the flooders' packets it would have lost some, as theirs do
      for (let t = 0; t < 100; t++) {
        for (let i = 0; i < 10; i++) {
          q.push(1, 1);
          q.push(2, 2);
        }
        if (t % 10 === 0) q.push(3, 3);
        await sleep(10);
      }
      await q.idle();
      expect(handled.get(3)).toBe(10);
      expect(q.stats.dropped).toBeGreaterThan(1000);
      // the flooders share what the bucket had left
      expect(Math.abs(handled.get(1)! - handled.get(2)!)).toBeLessThanOrEqual(1);
    });

    it("close() drops what waits and stops the bucket's timer; later pushes are ignored", async () => {
      const seen: number[] = [];
      const q = new PuntQueue<number>(
        100,
        async (n) => {
          seen.push(n);
        },
        undefined,
        1,
        1,
      );
      for (let i = 0; i < 10; i++) q.push(1, i);
      await sleep(10);
      // the bucket is empty and a timer waits for its next token: close() clears it (no handle keeps a stopping agent)
      const cleared = vi.spyOn(globalThis, "clearTimeout");
      q.close();
      expect(cleared).toHaveBeenCalledTimes(1);
      cleared.mockRestore();
      await q.idle();
      q.push(1, 99);
      await sleep(600);
      // the bucket held 1 (its next token was 1 s away); nothing after close, so no timer fired a second
      expect(seen).toEqual([0]);
      expect(q.stats).toEqual({ queued: 10, handled: 1, dropped: 9 });
    });
  });
});
