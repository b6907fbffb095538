/**
 * When a router leg sends its router advertisements (RFC 4861 §6.2.4 and
 * §6.2.6), as a small state machine the agent drives with one timer per
 * leg: it never reads a clock or sets a timer itself — every method takes
 * `now` (milliseconds on any monotonic clock) and returns the time of the
 * next event on that clock — and its randomness comes from an injected
 * source, so tests can replay it exactly.
 *
 *   - Unsolicited (periodic, multicast) RAs go out at intervals drawn
 *     uniformly from [MinRtrAdvInterval, MaxRtrAdvInterval]. The first
 *     MAX_INITIAL_RTR_ADVERTISEMENTS (3) after `start` or `reset` use at most
 *     MAX_INITIAL_RTR_ADVERT_INTERVAL (16 s), so a new subnet (or an agent
 *     that restarted) is announced quickly; the first one is due at once.
 *     `reset` is for a configuration change (§6.2.4: a prefix added or
 *     removed, flags changed).
 *   - A solicited RA is delayed by a random 0..MAX_RA_DELAY_TIME (500 ms,
 *     §6.2.6), and a multicast answer also no sooner than
 *     MIN_DELAY_BETWEEN_RAS (3 s) after the previous multicast RA, but never
 *     later than the next periodic RA (which then is the answer). The
 *     caller reports a multicast answer with `sent`, so the period restarts
 *     from it. A unicast answer (what ra.ts sends to a solicitor with an
 *     address) leaves the periodic schedule alone.
 */

export const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS = 16_000;
export const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
export const MIN_DELAY_BETWEEN_RAS_MS = 3_000;
export const MAX_RA_DELAY_TIME_MS = 500;

export interface RaIntervals {
  /** Seconds (RFC 4861 §6.2.1; see raConfig for the checked values). */
  minRtrAdvInterval: number;
  maxRtrAdvInterval: number;
}

export class RaScheduler {
  private initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
  private nextAt: number | undefined;
  private lastMulticastAt: number | undefined;

  /** `random` returns a number in [0, 1), as Math.random does. */
  constructor(
    private readonly intervals: RaIntervals,
    private readonly random: () => number = Math.random,
  ) {}

  /** Begin advertising at `now`: the first RA is due at once. Returns its time. */
  start(now: number): number {
    this.initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
    this.nextAt = now;
    return now;
  }

  /** The interface's advertised content changed: announce it with the initial pace again. */
  reset(now: number): number {
    return this.start(now);
  }

  /** When the next unsolicited RA is due, or undefined before `start`. */
  get due(): number | undefined {
    return this.nextAt;
  }

  /** A multicast RA (periodic or solicited) went out at `now`. Returns when the next periodic one is due. */
  sent(now: number): number {
    this.lastMulticastAt = now;
    const { minRtrAdvInterval: min, maxRtrAdvInterval: max } = this.intervals;
    let interval = (min + this.random() * (max - min)) * 1000;
    if (this.initialLeft > 0) {
      this.initialLeft--;
      interval = Math.min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
    }
    this.nextAt = now + interval;
    return this.nextAt;
  }

  /**
   * A router solicitation arrived at `now`; when to send the answer. For a
   * multicast answer, the caller sends it then and calls `sent`.
   */
  solicited(now: number, multicast: boolean): number {
    let at = now + this.random() * MAX_RA_DELAY_TIME_MS;
    if (multicast && this.lastMulticastAt !== undefined)
      at = Math.max(at, this.lastMulticastAt + MIN_DELAY_BETWEEN_RAS_MS);
    if (multicast && this.nextAt !== undefined && this.nextAt < at) at = this.nextAt;
    return at;
  }
}
