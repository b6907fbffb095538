/**
 * The NB change subscriber: a ZeroMQ SUB socket connected to one publisher,
 * subscribed to the topics an agent needs (plus `hb/` and `all/`), that hands
 * each change to the cache and tells it when it must resync from the store:
 *
 *   - gap       a topic's sequence number skipped (a message was lost);
 *   - restart   a message or heartbeat carries a publisher id other than the
 *               one seen so far (the publisher restarted: its sequence numbers
 *               start over and whatever it published while down is gone);
 *   - baseline  a topic got its first sequence number from this publisher.
 *
 * Sequence numbers count per (publisher, topic). A topic has no baseline when
 * it was just subscribed or the publisher changed; the next heartbeat (its
 * per-topic numbers) or the first message on the topic sets it. ZeroMQ
 * delivers nothing published before a subscription reached the publisher,
 * and nothing tells the subscriber when that was — but everything numbered
 * up to the baseline was committed before the baseline was sent, so a store
 * read after it covers that window, and anything lost after it shows up as a
 * gap. That is why a new baseline asks for a resync (unless a restart resync
 * is already asked for by the same message). `hasBaselines()` is true once
 * every followed topic has one: nothing published so far can be missing.
 * A heartbeat that finds every followed topic based and complete reports
 * its revision through `onCaughtUp`: the agent has then seen every change
 * up to it that concerns it, which is what its realised revision stands on.
 *
 * With `curve` (curve.ts: the publisher's public key and a key pair of our
 * own) the subscriber completes a handshake only with the publisher holding
 * that key, and the channel is encrypted. A failed handshake (wrong key, a
 * publisher without CURVE, our key not authorized) delivers nothing; it is
 * logged once and counted in `stats.handshakeFailures`, and ZeroMQ keeps
 * retrying.
 */
import { Subscriber } from "zeromq";
import { ConnectionError, DecodeError, errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";
import type { CurveClient } from "./curve.js";
import { TOPIC_ALL, TOPIC_HEARTBEAT, decodeMessage, type ChangeMessage } from "./message.js";

const log = logger("nb-subscriber");

export type ResyncReason =
  | { reason: "gap"; topic: string; expected: number; got: number }
  | { reason: "restart"; previous: string; current: string }
  | { reason: "baseline"; topics: string[] };

export interface SubscriberHandlers {
  onChange(m: ChangeMessage): void;
  onResync(r: ResyncReason): void;
  /**
   * A heartbeat that showed nothing missing on any followed topic: every
   * change up to `revision` on those topics has been delivered.
   */
  onCaughtUp?(revision: number): void;
}

export interface SubscriberOptions {
  /** Encrypt and authenticate with CURVE (curve.ts: loadCurveClient). */
  curve?: CurveClient;
}

export class NbSubscriber {
  private readonly sock: Subscriber;
  private readonly lastSeq = new Map<string, number>();
  private readonly topics = new Set<string>();
  /** Followed topics (and `all/`) without a sequence baseline from the current publisher. */
  private readonly unbased = new Set<string>([TOPIC_ALL]);
  private publisher: string | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;
  /** Counters for tests and the bench. */
  readonly stats = { received: 0, gaps: 0, restarts: 0, malformed: 0, handshakeFailures: 0 };
  lastHeartbeatAt = 0;

  private constructor(
    readonly endpoint: string,
    private readonly handlers: SubscriberHandlers,
    opts: SubscriberOptions,
  ) {
    const c = opts.curve;
    this.sock = new Subscriber({
      linger: 0,
      receiveHighWaterMark: 100_000,
      ...(c ? { curveServerKey: c.serverKey, curvePublicKey: c.publicKey, curveSecretKey: c.secretKey } : {}),
    });
    const onError = (e: { error: Error }): void => {
      if (this.stats.handshakeFailures++ === 0) {
        log.warn(
          { endpoint, curve: !!c, err: e.error.message },
          "handshake with the publisher failed (CURVE keys or mode do not match, or our key is not authorized): nothing is received",
        );
      }
    };
    this.sock.events.on("handshake:error:protocol", onError);
    this.sock.events.on("handshake:error:auth", onError);
    this.sock.events.on("handshake:error:other", onError);
  }

  static connect(endpoint: string, handlers: SubscriberHandlers, opts: SubscriberOptions = {}): NbSubscriber {
    const s = new NbSubscriber(endpoint, handlers, opts);
    try {
      s.sock.connect(endpoint);
    } catch (err) {
      s.sock.close();
      throw new ConnectionError(`cannot connect subscriber to ${endpoint}: ${errorMessage(err)}`, {
        endpoint,
      });
    }
    s.sock.subscribe(TOPIC_HEARTBEAT, TOPIC_ALL);
    s.loop = s.receive();
    return s;
  }

  /** The publisher id seen last (undefined until the first message). */
  get publisherId(): string | undefined {
    return this.publisher;
  }

  subscribed(): string[] {
    return [...this.topics];
  }

  /** True once a publisher was heard and every followed topic has a sequence baseline from it. */
  hasBaselines(): boolean {
    return this.publisher !== undefined && this.unbased.size === 0;
  }

  subscribe(topic: string): void {
    if (this.topics.has(topic)) return;
    this.topics.add(topic);
    this.unbased.add(topic);
    this.sock.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return;
    this.sock.unsubscribe(topic);
    this.lastSeq.delete(topic);
    this.unbased.delete(topic);
  }

  private async receive(): Promise<void> {
    try {
      for await (const [topic, body] of this.sock) {
        if (this.closed) break;
        this.handle(topic!, body ?? Buffer.alloc(0));
      }
    } catch (err) {
      if (!this.closed) log.error({ err, endpoint: this.endpoint }, "subscriber receive loop failed");
    }
  }

  private handle(topic: Buffer, body: Buffer): void {
    let m;
    try {
      m = decodeMessage(topic, body);
    } catch (err) {
      this.stats.malformed++;
      if (err instanceof DecodeError)
        log.warn({ err: err.message, topic: topic.toString() }, "malformed pubsub message dropped");
      return;
    }
    this.stats.received++;
    let restarted = false;
    if (this.publisher !== m.pub) {
      const previous = this.publisher;
      this.publisher = m.pub;
      this.lastSeq.clear();
      this.unbased.clear();
      for (const t of [TOPIC_ALL, ...this.topics]) this.unbased.add(t);
      if (previous !== undefined) {
        restarted = true;
        this.stats.restarts++;
        log.info({ previous, current: m.pub }, "publisher restarted: resync");
        this.handlers.onResync({ reason: "restart", previous, current: m.pub });
      }
    }
    const last = this.lastSeq.get(m.topic);
    if (last !== undefined && m.seq <= last) return;
    this.lastSeq.set(m.topic, m.seq);
    if (last !== undefined && m.seq !== last + 1) {
      this.stats.gaps++;
      log.info({ topic: m.topic, expected: last + 1, got: m.seq }, "sequence gap: resync");
      this.handlers.onResync({ reason: "gap", topic: m.topic, expected: last + 1, got: m.seq });
    }
    const based: string[] = [];
    let consistent = !restarted;
    if (m.type === "heartbeat") {
      this.lastHeartbeatAt = Date.now();
      for (const t of [TOPIC_ALL, ...this.topics]) {
        const sent = m.seqs[t] ?? 0;
        const prev = this.lastSeq.get(t);
        if (prev === undefined) {
          this.lastSeq.set(t, sent);
          if (this.unbased.delete(t)) based.push(t);
        } else if (sent > prev) {
          this.lastSeq.set(t, sent);
          this.stats.gaps++;
          consistent = false;
          log.info({ topic: t, expected: prev + 1, got: sent }, "heartbeat shows lost messages: resync");
          this.handlers.onResync({ reason: "gap", topic: t, expected: prev + 1, got: sent });
        }
      }
    } else if (last === undefined && this.unbased.delete(m.topic)) {
      based.push(m.topic);
    }
    if (based.length && !restarted) {
      log.debug({ topics: based }, "sequence baseline set: resync");
      this.handlers.onResync({ reason: "baseline", topics: based });
    }
    // after a restart the resync reads this change from the store
    if (m.type !== "heartbeat" && !restarted) this.handlers.onChange(m);
    if (m.type === "heartbeat" && consistent && based.length === 0 && this.unbased.size === 0) {
      this.handlers.onCaughtUp?.(m.revision);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
    await this.loop?.catch(() => undefined);
  }
}
