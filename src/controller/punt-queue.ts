/**
 * The agent's side of the punt budget: packet-ins wait in one FIFO queue per
 * ingress port and are handled round-robin, one port's packet at a time.
 *
 * The switch meters punts per port (the apps' meters) and per host (the
 * "controller" meter), so the agent never receives more than it can take.
 * What it receives it handles fairly: a VM flooding DHCP requests fills only
 * its own queue, and a neighbour's request is handled after at most one
 * packet of every busy port — not after the whole flood. A queue holds at
 * most `perPort` packets; beyond that the oldest are dropped (a retransmit
 * will come), counted in `stats.dropped`.
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
  private running: Promise<void> | undefined;
  readonly stats: PuntStats = { queued: 0, handled: 0, dropped: 0 };

  constructor(
    private readonly perPort: number,
    private readonly handle: (item: T) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => undefined,
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
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  /** Packets waiting now. */
  get length(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /** Resolves when nothing is queued or being handled. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    // setImmediate first: packets that arrived in the same read are all queued before service starts
    await new Promise<void>((r) => setImmediate(r));
    while (this.ring.length) {
      const port = this.ring.shift()!;
      const q = this.queues.get(port)!;
      const item = q.shift()!;
      if (q.length) this.ring.push(port);
      else this.queues.delete(port);
      try {
        await this.handle(item);
      } catch (err) {
        this.onError(err);
      }
      this.stats.handled++;
    }
  }
}
