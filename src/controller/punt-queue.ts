/**
 * The agent's side of the punt budget: packet-ins wait in one FIFO queue per
 * ingress port and are taken round-robin, one port's packet at a time.
 *
 * The switch meters punts per port (the apps' meters) and per host (the
 * "controller" meter), so the agent never receives more than it can take.
 * What it receives it handles fairly: a VM flooding DHCP requests fills only
 * its own queue, and a neighbour's request is taken after at most one packet
 * of every busy port — not after the whole flood. A queue holds at most
 * `perPort` packets; beyond that the oldest are dropped (a retransmit will
 * come), counted in `stats.dropped`.
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
  readonly stats: PuntStats = { queued: 0, handled: 0, dropped: 0 };

  constructor(
    private readonly perPort: number,
    private readonly handle: (item: T) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => undefined,
    private readonly concurrency = 1,
  ) {}

  push(port: number, item: T): void {
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

  private pump(): void {
    while (this.active < this.concurrency && this.ring.length) {
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
