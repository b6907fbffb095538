/**
 * The NB change publisher: forwards every committed NB change to a ZeroMQ PUB
 * socket, on the tenant/network topics of the object (see message.ts).
 *
 * It is driven by the store's own watch, not by the writers, so nothing that
 * commits is missed whoever wrote it — in-process next to an NB writer
 * (`NbPublisher.start({ store, bind })`) or standalone as `flowdrake publisher`
 * forwarding an etcd cluster's changes (Dragonflow's df-publisher-service).
 *
 * Each start draws a random publisher id; sequence numbers count per topic from
 * 1. When the store's watch cannot resume (its history was compacted while
 * the publisher was cut off) the publisher reloads its topic map and draws a
 * new id: to subscribers that is a restart, and they resync from the store.
 * A change that moves an object between topics is published on the old and
 * the new ones (the publisher remembers each key's topics), a delete on the
 * topics the object last had (or `all/` when it never saw it). Heartbeats on
 * `hb/` let idle subscribers notice a restarted publisher.
 *
 * `close()` resolves once the endpoint is free again: ZeroMQ closes a
 * listener in its I/O thread after `unbind` has returned, so the publisher
 * waits for the socket's "close" event (ZMQ_EVENT_CLOSED) — a publisher
 * started on the same endpoint right after never meets EADDRINUSE.
 *
 * With `curve` (curve.ts) the socket is a CURVE server: the channel is
 * encrypted, subscribers must know the publisher's public key, and with an
 * authorized-keys list a ZAP handler admits only the listed subscribers. The
 * socket then lives in a ZeroMQ context of its own, so the ZAP handler
 * governs this publisher only. A subscriber that fails the handshake is
 * logged once per kind of failure and counted (`handshakeFailures`).
 *
 * `dropNext(n)` is a test hook: it consumes sequence numbers without sending,
 * which is exactly what a lost message looks like to a subscriber.
 */
import { randomBytes } from "node:crypto";
import { Context, Publisher } from "zeromq";
import { ConnectionError, errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";
import type { NbStore, Watch, WatchEvent } from "../store/types.js";
import { AGENT_KIND, SYNC_KINDS, topicsOf } from "../sync/refs.js";
import { type CurveServer, ZapHandler } from "./curve.js";
import { TOPIC_ALL, TOPIC_HEARTBEAT, encodeMessage, type PubsubMessage } from "./message.js";

const log = logger("nb-publisher");

/** How long close() waits for ZeroMQ to release the endpoint before closing anyway. */
const RELEASE_TIMEOUT_MS = 5000;

export interface PublisherOptions {
  store: NbStore;
  /** ZeroMQ endpoint to bind, e.g. tcp://127.0.0.1:5555. */
  bind: string;
  heartbeatMs?: number;
  /** Encrypt and authenticate with CURVE (curve.ts: loadCurveServer). */
  curve?: CurveServer;
}

export class NbPublisher {
  private pubId = randomBytes(6).toString("hex");
  private readonly seqs = new Map<string, number>();
  private readonly topicsByKey = new Map<string, string[]>();
  private readonly queue: [string, string][] = [];
  private sending = false;
  private drop = 0;
  private watch: Watch | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastRevision = 0;
  private closed = false;
  /** Keys the watch changed while the topic map is being reloaded (the reload must not undo them). */
  private touched: Set<string> | undefined;
  /** Resolves when ZeroMQ reports the listener closed (the endpoint is free). */
  private readonly released: Promise<void>;
  /** Messages sent so far (for tests and the bench). */
  sent = 0;
  /** Subscriber handshakes that failed (CURVE: wrong keys, a plain subscriber, a key not authorized). */
  handshakeFailures = 0;
  private zap: ZapHandler | undefined;

  private constructor(
    private readonly sock: Publisher,
    readonly bind: string,
    private readonly store: NbStore,
  ) {
    const seen = new Set<string>();
    sock.events.on("handshake:error:protocol", (e) =>
      this.onHandshakeError("protocol", e.error.message, seen),
    );
    sock.events.on("handshake:error:auth", (e) => this.onHandshakeError("auth", e.error.message, seen));
    sock.events.on("handshake:error:other", (e) => this.onHandshakeError("other", e.error.message, seen));
    // the observer must exist before unbind; only a close after close() began counts
    this.released = new Promise<void>((resolve) =>
      sock.events.on("close", () => {
        if (this.closed) resolve();
      }),
    );
  }

  private onHandshakeError(kind: string, message: string, seen: Set<string>): void {
    this.handshakeFailures++;
    if (seen.has(kind)) return;
    seen.add(kind);
    log.warn(
      { bind: this.bind, kind, err: message },
      "a subscriber failed the handshake (no CURVE, or not our public key); it gets nothing",
    );
  }

  /** The publisher id: random per start, and redrawn when the store watch had to resync. */
  get id(): string {
    return this.pubId;
  }

  /** Highest store revision forwarded so far. */
  get revision(): number {
    return this.lastRevision;
  }

  private async loadTopics(): Promise<Map<string, string[]>> {
    const topics = new Map<string, string[]>();
    for (const kind of [...SYNC_KINDS, ...Object.values(AGENT_KIND)]) {
      for (const o of await this.store.list(kind))
        topics.set(`${kind}/${o.key}`, topicsOf(kind, o.key, o.value));
    }
    return topics;
  }

  /**
   * The store lost our place in its history: start over as a new publisher.
   * The topic map is reloaded first (keeping what the watch changed meanwhile,
   * which is newer than the list may be), then id, sequence numbers and map
   * change together, so the id subscribers see and the log agree.
   */
  private async restartAfterResync(currentRevision: number): Promise<void> {
    this.touched = new Set();
    let fresh: Map<string, string[]> | undefined;
    try {
      fresh = await this.loadTopics();
    } catch (err) {
      log.error({ err }, "reloading topics failed; keeping the old topic map");
    }
    if (fresh) {
      for (const id of this.touched) {
        const t = this.topicsByKey.get(id);
        if (t) fresh.set(id, t);
        else fresh.delete(id);
      }
      this.topicsByKey.clear();
      for (const [id, t] of fresh) this.topicsByKey.set(id, t);
    }
    this.touched = undefined;
    if (this.closed) return;
    const previous = this.pubId;
    this.pubId = randomBytes(6).toString("hex");
    this.seqs.clear();
    this.lastRevision = Math.max(this.lastRevision, currentRevision);
    log.warn(
      { previous, id: this.pubId, revision: currentRevision },
      "store watch resynced: new publisher id",
    );
  }

  static async start(opts: PublisherOptions): Promise<NbPublisher> {
    const curve = opts.curve;
    const context = curve ? new Context() : undefined;
    const zap = curve?.authorizedKeys ? await ZapHandler.start(context!, curve.authorizedKeys) : undefined;
    const sock = new Publisher({
      linger: 0,
      sendHighWaterMark: 100_000,
      ...(curve
        ? {
            context,
            curveServer: true,
            curveSecretKey: curve.secretKey,
            curvePublicKey: curve.publicKey,
            zapDomain: "flowdrake-nb",
          }
        : {}),
    });
    try {
      await sock.bind(opts.bind);
    } catch (err) {
      sock.close();
      await zap?.close();
      throw new ConnectionError(`cannot bind publisher to ${opts.bind}: ${errorMessage(err)}`, {
        bind: opts.bind,
      });
    }
    const pub = new NbPublisher(sock, opts.bind, opts.store);
    pub.zap = zap;
    try {
      const from = await opts.store.revision();
      for (const [id, t] of await pub.loadTopics()) pub.topicsByKey.set(id, t);
      pub.lastRevision = from;
      pub.watch = await opts.store.watch(
        { fromRevision: from, onResync: (rev) => void pub.restartAfterResync(rev) },
        (ev) => pub.onWatch(ev),
      );
    } catch (err) {
      await pub.close();
      throw err;
    }
    const hbMs = opts.heartbeatMs ?? 1000;
    pub.heartbeat = setInterval(
      () =>
        pub.publish({
          type: "heartbeat",
          pub: pub.id,
          seq: 0,
          topic: TOPIC_HEARTBEAT,
          revision: pub.lastRevision,
          seqs: {},
        }),
      hbMs,
    );
    pub.heartbeat.unref();
    log.info(
      {
        id: pub.id,
        bind: opts.bind,
        fromRevision: pub.lastRevision,
        curve: curve
          ? curve.authorizedKeys
            ? "authorized keys only"
            : "any subscriber with our key"
          : "off",
      },
      "publisher started",
    );
    return pub;
  }

  /** Test hook: skip the next `n` messages (their sequence numbers are used up). */
  dropNext(n: number): void {
    this.drop += n;
  }

  private onWatch(ev: WatchEvent): void {
    this.lastRevision = Math.max(this.lastRevision, ev.revision);
    if (ev.type === "put") {
      const o = ev.object;
      const id = `${o.kind}/${o.key}`;
      const topics = topicsOf(o.kind, o.key, o.value);
      const old = this.topicsByKey.get(id) ?? [];
      this.topicsByKey.set(id, topics);
      this.touched?.add(id);
      for (const topic of new Set([...old, ...topics])) {
        this.publish({
          type: "put",
          pub: this.id,
          seq: 0,
          topic,
          kind: o.kind,
          key: o.key,
          version: o.version,
          revision: ev.revision,
          value: o.value,
          ...(o.malformed !== undefined ? { malformed: o.malformed } : {}),
        });
      }
    } else {
      const id = `${ev.kind}/${ev.key}`;
      const topics = this.topicsByKey.get(id) ?? [TOPIC_ALL];
      this.topicsByKey.delete(id);
      this.touched?.add(id);
      for (const topic of topics) {
        this.publish({
          type: "delete",
          pub: this.id,
          seq: 0,
          topic,
          kind: ev.kind,
          key: ev.key,
          version: ev.prevVersion,
          revision: ev.revision,
        });
      }
    }
  }

  private publish(m: PubsubMessage): void {
    if (this.closed) return;
    const seq = (this.seqs.get(m.topic) ?? 0) + 1;
    this.seqs.set(m.topic, seq);
    m.seq = seq;
    if (m.type === "heartbeat")
      m.seqs = Object.fromEntries([...this.seqs].filter(([t]) => t !== TOPIC_HEARTBEAT));
    if (this.drop > 0 && m.type !== "heartbeat") {
      this.drop--;
      log.debug({ topic: m.topic, seq }, "test hook: message dropped");
      return;
    }
    this.queue.push(encodeMessage(m));
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length && !this.closed) {
        const msg = this.queue.shift()!;
        await this.sock.send(msg);
        this.sent++;
      }
    } catch (err) {
      if (!this.closed) log.error({ err }, "publisher send failed");
    } finally {
      this.sending = false;
    }
  }

  /** Resolve once everything queued so far has been handed to ZeroMQ. */
  async drain(): Promise<void> {
    while ((this.queue.length || this.sending) && !this.closed) await new Promise((r) => setTimeout(r, 5));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.watch?.close().catch(() => undefined);
    await this.drain();
    this.closed = true;
    const unbound = await this.sock.unbind(this.bind).then(
      () => true,
      (err: unknown) => {
        log.warn({ err: errorMessage(err), bind: this.bind }, "unbind failed");
        return false;
      },
    );
    // inproc endpoints have no listener to wait for
    if (unbound && !this.bind.startsWith("inproc://")) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), RELEASE_TIMEOUT_MS)));
      const late = await Promise.race([this.released.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) log.warn({ bind: this.bind }, "ZeroMQ did not report the endpoint closed in time");
    }
    this.sock.close();
    await this.zap?.close();
    log.info({ id: this.id }, "publisher stopped");
  }
}
