/**
 * The agent's side of the punt budget: packet-ins wait in one FIFO queue per
 * ingress port and are taken round-robin, one port's packet at a time.
 *
 * The switch meters punts per port (the apps' meters) and per host (the
 * "controller" meter, a guard on the OpenFlow channel set above the budget).
 * What the agent receives it handles fairly: a VM flooding DHCP requests fills only
 * its own queue, and a neighbour's request is taken after at most one packet
 * of every busy port — not after the whole flood. A queue holds at most
 * `perPort` packets; beyond that the oldest are dropped (a retransmit will
 * come), counted in `stats.dropped`.
 *
 * The host's punt budget is spent here, in that round-robin order: with
 * `ratePps` set, a packet is taken only when a token bucket (`ratePps` a
 * second, holding up to `ratePps`) has one, and what waits longer overflows
 * its own port's queue. So above the budget a port that sends less than its
 * share of it (`ratePps` over the ports with packets waiting), in bursts its
 * queue holds, still has every packet handled, whatever the flooders send. OVS's "controller" meter in front
 * (`punt.switchRatePps`) cannot do this: it takes whichever packet reaches a
 * token first, and the userspace datapath meters each port's receive batch in
 * turn, so when the switch falls behind the first port polled takes every
 * token (measured: a neighbour answered 0 of 80 times behind two flooders).
 *
 * Up to `concurrency` handlers run at once, started in that round-robin
 * order. A handler that installs a reactive flow waits for a pass of the
 * agent; running the next packets meanwhile lets every first packet that
 * arrives during one pass share the next pass (one bundle for all of them)
 * instead of each waiting for its own.
 */
export interface PuntStats {
  queued: number;
  handled: number;
  dropped: number;
}

export class PuntQueue<T> {
  private readonly queues = new Map<number, T[]>();
  /** Ports with something queued, in service order. */
  private readonly ring: number[] = [];
  private active = 0;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  /** Tokens in the bucket and when it was last filled (performance.now(), ms). */
  private tokens: number;
  private filledAt = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats: PuntStats = { queued: 0, handled: 0, dropped: 0 };

  constructor(
    private readonly perPort: number,
    private readonly handle: (item: T) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => undefined,
    private readonly concurrency = 1,
    /** Packets handled per second at most (a bucket of as many); 0 = no limit. */
    private readonly ratePps = 0,
  ) {
    this.tokens = ratePps;
  }

  push(port: number, item: T): void {
    if (this.closed) return;
    let q = this.queues.get(port);
    if (!q) {
      this.queues.set(port, (q = []));
      this.ring.push(port);
    }
    q.push(item);
    this.stats.queued++;
    if (q.length > this.perPort) {
      q.shift();
      this.stats.dropped++;
    }
    if (!this.scheduled) {
      // setImmediate first: packets that arrived in the same read are all queued before service starts
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.pump();
      });
    }
  }

  /** Packets waiting now. */
  get length(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /** Handlers running now. */
  get running(): number {
    return this.active;
  }

  /** Resolves when nothing is queued or being handled. */
  async idle(): Promise<void> {
    if (this.active === 0 && this.ring.length === 0 && !this.scheduled) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /** Drops what waits and stops the bucket's timer (the agent is stopping); handlers running finish. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const q of this.queues.values()) this.stats.dropped += q.length;
    this.queues.clear();
    this.ring.length = 0;
    this.closed = true;
    this.pump();
  }

  /** Takes a token if the bucket has one; otherwise sets a timer for the next and says no. */
  private takeToken(): boolean {
    if (this.ratePps <= 0) return true;
    const now = performance.now();
    this.tokens = Math.min(this.ratePps, this.tokens + ((now - this.filledAt) * this.ratePps) / 1000);
    this.filledAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    if (!this.timer) {
      const waitMs = Math.ceil(((1 - this.tokens) * 1000) / this.ratePps);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, waitMs);
    }
    return false;
  }

  private pump(): void {
    while (this.active < this.concurrency && this.ring.length && this.takeToken()) {
      const port = this.ring.shift()!;
      const q = this.queues.get(port)!;
      const item = q.shift()!;
      if (q.length) this.ring.push(port);
      else this.queues.delete(port);
      this.active++;
      void this.run(item);
    }
    if (this.active === 0 && this.ring.length === 0 && !this.scheduled) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async run(item: T): Promise<void> {
    try {
      await this.handle(item);
    } catch (err) {
      this.onError(err);
    }
    this.stats.handled++;
    this.active--;
    this.pump();
  }
}
