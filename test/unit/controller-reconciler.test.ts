/**
 * OpenFlowReconciler's sync and fast path (src/controller/reconciler.ts) rule
 * by rule, against an in-memory double of the OpenFlow session that records
 * every message and rejects the ones a test names. The real switch is
 * test/integration/reconciler-ovs.test.ts's; here each rule of the module
 * comment is pinned on its own: what is read at session start and what is
 * never touched, the order meters, flows and meter deletes go in, modify
 * versus replace, failed owners and their backoff, a failed commit sent
 * again message by message, and the fast path and its late errors.
 */
import { EventEmitter } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { desiredFlow, type DesiredMeter, type OwnerChange } from "../../src/controller/engine.js";
import {
  DesiredIndex,
  COALESCE_BURST,
  COALESCE_MAX_MS,
  COALESCE_MS,
  FAST_PATH_ERROR_WINDOW_MS,
  OpenFlowReconciler,
  REMOVAL_WAIT_MS,
  RETRY_MAX_MS,
  RETRY_MIN_MS,
} from "../../src/controller/reconciler.js";
import { cookieFor, flow, tableById } from "../../src/datapath/index.js";
import { OpenFlowError, type OfConnection, type OfRequest } from "../../src/openflow/connection.js";
import { flowKey, type Flow } from "../../src/openflow/flow.js";
import type { FlowStats } from "../../src/openflow/multipart.js";
import { logger } from "../../src/util/log.js";

type Sent = { via: "bundle" | "plain"; what: string; xid: number };

function describeMsg(m: OfRequest): string {
  if (m.type === "flow_mod") return `${m.command} p${m.priority}`;
  if (m.type === "meter_mod")
    return `meter ${m.command} ${m.meterId}${m.bands.length ? ` @${m.bands[0]!.rate}` : ""}`;
  return m.type;
}

function ofError(xid: number): OpenFlowError {
  return new OpenFlowError({ type: "error", xid, errType: 5, code: 0, data: Buffer.alloc(0) });
}

/** Just enough of an OfConnection for the reconciler and installFlows, recording what is sent. */
class FakeSwitch extends EventEmitter {
  readonly label = "fake";
  sent: Sent[] = [];
  stats: FlowStats[] = [];
  meterConfig: { meterId: number; bands: { rate: number }[] }[] = [];
  /** Messages the switch rejects. */
  reject: (what: string) => boolean = () => false;
  /** Make every bundle commit fail (with an error no message is blamed for). */
  failCommit = false;
  private xid = 1;
  private pendingErrors: number[] = [];
  private staged = new Map<number, Sent[]>();

  allocXid(): number {
    return this.xid++;
  }
  async flowStats(): Promise<FlowStats[]> {
    return this.stats;
  }
  async multipart(): Promise<unknown[]> {
    return [
      { mpType: "port_desc", ports: [] },
      { mpType: "meter_config", meters: this.meterConfig },
    ];
  }
  private take(via: Sent["via"], ms: readonly OfRequest[], xids?: readonly number[]): Sent[] {
    return ms.map((m, i) => {
      const s = { via, what: describeMsg(m), xid: xids?.[i] ?? m.xid ?? this.allocXid() };
      if (this.reject(s.what)) this.pendingErrors.push(s.xid);
      return s;
    });
  }
  /** What each sendAll wrote (one socket write each). */
  writes: string[][] = [];
  async sendAll(ms: readonly OfRequest[], xids?: readonly number[]): Promise<number[]> {
    const s = this.take("plain", ms, xids);
    this.sent.push(...s);
    this.writes.push(s.map((x) => x.what));
    return s.map((x) => x.xid);
  }
  async bundleOpenPipelined(): Promise<{ bundleId: number; opened: Promise<void> }> {
    const id = this.staged.size + 1;
    this.staged.set(id, []);
    return { bundleId: id, opened: Promise.resolve() };
  }
  async bundleAdd(id: number, ms: readonly OfRequest[], _f: unknown, xids: readonly number[]): Promise<void> {
    this.staged.get(id)!.push(...this.take("bundle", ms, xids));
  }
  /** A draft records what is added to it (with the xid each goes with); sendDraft stages and commits it. */
  draftBundle(): { add(m: OfRequest): void; msgs: OfRequest[] } {
    const msgs: OfRequest[] = [];
    return {
      msgs,
      add: (m) => {
        if (m.xid === undefined) throw new Error("a drafted message without its xid");
        msgs.push(m);
        this.drafted.push(describeMsg(m));
      },
    };
  }
  /** Every message added to a draft so far, when it was added (a real draft encodes it then). */
  drafted: string[] = [];
  drafts = 0;
  async sendDraft(d: { msgs: OfRequest[] }): Promise<void> {
    this.drafts++;
    const { bundleId } = await this.bundleOpenPipelined();
    await this.bundleAdd(
      bundleId,
      d.msgs,
      undefined,
      d.msgs.map((m) => m.xid!),
    );
    await this.bundleCommit(bundleId);
  }
  /**
   * While true, the switch has not got to its messages yet: barriers wait for their replies (and
   * the errors before them) until flushErrors, or a barrier sent once it is false again.
   */
  late = false;
  private heldBarriers: (() => void)[] = [];
  barriers = 0;
  /** Errors of messages sent so far arrive before the barrier's reply. */
  async barrier(): Promise<void> {
    this.barriers++;
    if (this.late) return new Promise((res) => this.heldBarriers.push(res));
    this.flushErrors();
  }
  flushErrors(): void {
    for (const x of this.pendingErrors.splice(0)) this.emit("of_error", ofError(x));
    for (const res of this.heldBarriers.splice(0)) res();
  }
  async bundleDiscard(id: number): Promise<void> {
    this.staged.delete(id);
  }
  /** What each committed bundle held. */
  bundles: string[][] = [];
  /** Commit a bundle only when none of its messages is rejected, as OVS does (the errors come first). */
  atomic = false;
  /** While true, commits wait for answerCommits. */
  holdCommits = false;
  private heldCommits: (() => void)[] = [];
  answerCommits(): void {
    for (const res of this.heldCommits.splice(0)) res();
  }
  async bundleCommit(id: number): Promise<void> {
    const msgs = this.staged.get(id)!;
    this.staged.delete(id);
    if (this.holdCommits) await new Promise<void>((res) => this.heldCommits.push(res));
    if (this.failCommit) throw ofError(9999);
    if (this.atomic && msgs.some((m) => this.pendingErrors.includes(m.xid))) {
      this.flushErrors();
      throw ofError(9998);
    }
    this.sent.push(...msgs);
    this.bundles.push(msgs.map((m) => m.what));
  }
  whats(): string[] {
    return this.sent.map((s) => `${s.via} ${s.what}`);
  }
}

const asConn = (s: FakeSwitch): OfConnection => s as unknown as OfConnection;

function mkFlow(owner: string, prio: number, opts: { port?: number; idle?: number } = {}): Flow {
  const b = flow("l2_lookup", prio)
    .eq("eth_dst", "fa:16:3e:00:00:01")
    .output(opts.port ?? 1);
  if (opts.idle) b.idleTimeout(opts.idle);
  return b.build(cookieFor("l2", owner));
}

function change(
  owner: string,
  before: Flow[] | undefined,
  after: Flow[] | undefined,
  meters?: {
    before?: [number, number][];
    after?: [number, number][];
  },
): OwnerChange {
  const m = (l?: [number, number][]): DesiredMeter[] =>
    (l ?? []).map(([id, ratePps]) => ({ owner, id, ratePps }));
  return {
    owner,
    before:
      before || meters?.before
        ? { flows: (before ?? []).map((f) => desiredFlow(owner, f)), meters: m(meters?.before) }
        : undefined,
    after:
      after || meters?.after
        ? { flows: (after ?? []).map((f) => desiredFlow(owner, f)), meters: m(meters?.after) }
        : undefined,
  };
}

function statsOf(f: Flow): FlowStats {
  return {
    tableId: f.table,
    priority: f.priority,
    cookie: f.cookie,
    idleTimeout: f.idleTimeout ?? 0,
    hardTimeout: f.hardTimeout ?? 0,
    flags: f.flags ?? 0,
    match: f.match,
    instructions: f.instructions,
  } as unknown as FlowStats;
}

describe("OpenFlowReconciler.sync", () => {
  it("reads the switch at session start and touches only flowdrake's flows and meters", async () => {
    const sw = new FakeSwitch();
    const keep = mkFlow("a", 10);
    const stale = mkFlow("b", 11);
    const foreign = { ...mkFlow("c", 12), cookie: 0x1234n };
    sw.stats = [statsOf(keep), statsOf(stale), statsOf(foreign)];
    sw.meterConfig = [
      { meterId: 1, bands: [{ rate: 50 }] },
      { meterId: 2, bands: [{ rate: 60 }] },
      { meterId: 0x50001, bands: [{ rate: 70 }] },
      { meterId: 3, bands: [] },
    ];
    const r = new OpenFlowReconciler();
    expect(r.pending()).toBe(true);
    expect(r.isSynced).toBe(false);
    r.update([change("l2/port/a", undefined, [keep], { after: [[1, 50]] })]);
    const res = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["bundle delete_strict p11", "plain meter delete 2"]);
    expect(res).toMatchObject({ added: 0, modified: 0, deleted: 1, meters: 1, failed: [] });
    expect(r.isSynced).toBe(true);
    expect(r.installedFlows().map((f) => f.priority)).toEqual([10]);
    expect(r.installedCount()).toBe(1);
    expect(r.pending()).toBe(false);
    expect(r.totals).toMatchObject({ syncs: 1, deleted: 1, meterMods: 1, added: 0 });
    // nothing changed: nothing sent
    sw.sent = [];
    expect(await r.sync(asConn(sw))).toMatchObject({ added: 0, modified: 0, deleted: 0, meters: 0 });
    expect(sw.sent).toEqual([]);
    // a new session reads again and finds everything in place
    r.invalidate();
    expect(r.pending()).toBe(true);
    sw.stats = [statsOf(keep), statsOf(foreign)];
    sw.meterConfig = [{ meterId: 1, bands: [{ rate: 50 }] }];
    await r.sync(asConn(sw));
    expect(sw.sent).toEqual([]);
  });

  it("sends meter adds before the flow bundle and meter deletes after it; modifies keep the flow", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    const f1 = mkFlow("a", 10);
    r.update([change("l2/port/a", undefined, [f1], { after: [[1, 100]] })]);
    expect(r.pending()).toBe(true);
    const res = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain meter add 1 @100", "bundle add p10"]);
    expect(res).toMatchObject({ added: 1, meters: 1 });
    // only the actions change: modify_strict; the rate changes: a meter modify
    sw.sent = [];
    const f1b = mkFlow("a", 10, { port: 2 });
    r.update([change("l2/port/a", [f1], [f1b], { before: [[1, 100]], after: [[1, 200]] })]);
    const res2 = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain meter modify 1 @200", "bundle modify_strict p10"]);
    expect(res2).toMatchObject({ added: 0, modified: 1, meters: 1 });
    // a timeout changes too: replaced by an add (counted as modified)
    sw.sent = [];
    const f1c = mkFlow("a", 10, { port: 2, idle: 30 });
    r.update([change("l2/port/a", [f1b], [f1c], { before: [[1, 200]], after: [[1, 200]] })]);
    expect(r.planFlows().map((o) => o.kind)).toEqual(["replace"]);
    const res3 = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["bundle add p10"]);
    expect(res3).toMatchObject({ added: 0, modified: 1, meters: 0 });
    // gone: the flow first, then its meter; in the bundle, deletes go before adds whatever the order of changes
    sw.sent = [];
    const f2 = mkFlow("b", 20);
    r.update([
      change("l2/port/b", undefined, [f2]),
      change("l2/port/a", [f1c], undefined, { before: [[1, 200]] }),
    ]);
    const res4 = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["bundle delete_strict p10", "bundle add p20", "plain meter delete 1"]);
    expect(res4).toMatchObject({ added: 1, deleted: 1, meters: 1 });
    expect(r.totals).toMatchObject({ syncs: 5, added: 2, modified: 2, deleted: 1, meterMods: 3 });
  });

  it("refuses a second sync while one runs", async () => {
    const r = new OpenFlowReconciler();
    const sw = new FakeSwitch();
    const first = r.sync(asConn(sw));
    await expect(r.sync(asConn(sw))).rejects.toThrow(/sync while another sync is running/);
    await first;
    await r.sync(asConn(sw));
  });

  it("a rejected flow fails its owner only, which is retried with a doubling backoff", async () => {
    let now = 1_000_000;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p20";
    r.update([
      change("l2/port/a", undefined, [mkFlow("a", 10)]),
      change("l2/port/b", undefined, [mkFlow("b", 20)]),
    ]);
    const res = await r.sync(asConn(sw));
    expect(res.failed).toEqual(["l2/port/b"]);
    expect(res.added).toBe(1);
    // the first bundle was discarded; the second carried the good owner only
    expect(sw.whats()).toEqual(["bundle add p10"]);
    expect([...r.failed]).toEqual([
      [
        "l2/port/b",
        {
          reason: "switch answered OFPET_FLOW_MOD_FAILED/OFPFMFC_UNKNOWN",
          attempts: 1,
          retryAt: now + RETRY_MIN_MS,
        },
      ],
    ]);
    expect(r.totals.failures).toBe(1);
    expect(r.nextRetryAt()).toBe(now + RETRY_MIN_MS);
    // its key stays dirty while held (so pending() is true, and the agent does not note the revision realised)
    expect(r.pending()).toBe(true);
    // nothing of it goes before it is due
    now += RETRY_MIN_MS - 1;
    sw.sent = [];
    expect((await r.sync(asConn(sw))).failed).toEqual([]);
    expect(sw.sent).toEqual([]);
    expect(r.failed.get("l2/port/b")).toMatchObject({ attempts: 1, retryAt: 1_000_000 + RETRY_MIN_MS });
    // once due, it goes out again; rejected again, its backoff doubles
    now += 1;
    expect(r.pending()).toBe(true);
    expect((await r.sync(asConn(sw))).failed).toEqual(["l2/port/b"]);
    expect(r.failed.get("l2/port/b")).toMatchObject({ attempts: 2, retryAt: now + 2 * RETRY_MIN_MS });
    // due again and accepted this time: installed, no longer failed, nothing left to retry
    now += 2 * RETRY_MIN_MS;
    sw.reject = () => false;
    sw.sent = [];
    const ok = await r.sync(asConn(sw));
    expect(ok.failed).toEqual([]);
    expect(ok.added).toBe(1);
    expect(sw.whats()).toEqual(["bundle add p20"]);
    expect(r.failed.size).toBe(0);
    expect(r.nextRetryAt()).toBeUndefined();
    expect(r.pending()).toBe(false);
  });

  it("doubles an owner's backoff with each rejection, up to its cap", async () => {
    const now = 7000;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = () => true;
    // the fast path fails the owner once per rejected flow_mod
    const two = [mkFlow("x", 1), mkFlow("x", 2)];
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, two)]);
    sw.flushErrors();
    expect(r.failed.get("l3/reactive/x")).toMatchObject({ attempts: 2, retryAt: now + 2 * RETRY_MIN_MS });
    const eight = Array.from({ length: 8 }, (_, i) => mkFlow("y", 10 + i));
    await r.pushNow(asConn(sw), [change("l3/reactive/y", undefined, eight)]);
    sw.flushErrors();
    expect(r.failed.get("l3/reactive/y")).toMatchObject({ attempts: 8, retryAt: now + RETRY_MAX_MS });
    expect(r.totals.failures).toBe(10);
    expect(r.nextRetryAt()).toBe(now + 2 * RETRY_MIN_MS);
  });

  it("a failed owner whose output changes is tried again at once", async () => {
    const now = 5000;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p20";
    const bad = mkFlow("b", 20);
    r.update([change("l2/port/b", undefined, [bad])]);
    await r.sync(asConn(sw));
    expect(r.failed.has("l2/port/b")).toBe(true);
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.sent).toEqual([]);
    const good = mkFlow("b", 21);
    r.update([change("l2/port/b", [bad], [good])]);
    expect(r.failed.has("l2/port/b")).toBe(false);
    expect(r.pending()).toBe(true);
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["bundle add p21"]);
    expect(r.failed.size).toBe(0);
  });

  it("a rejected meter fails its owner, whose flows wait with it", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    sw.reject = (w) => w.startsWith("meter add 2");
    r.update([
      change("l2/port/a", undefined, [mkFlow("a", 10)], { after: [[1, 10]] }),
      change("l2/port/b", undefined, [mkFlow("b", 20)], { after: [[2, 10]] }),
    ]);
    const res = await r.sync(asConn(sw));
    expect(res.failed).toEqual(["l2/port/b"]);
    expect(sw.whats()).toEqual([
      "plain meter add 1 @10",
      "plain meter add 2 @10",
      "plain meter add 1 @10",
      "bundle add p10",
    ]);
    expect(r.failed.get("l2/port/b")?.reason).toMatch(/OFPET_FLOW_MOD_FAILED/);
  });

  it("when the commit itself fails, sends the messages one by one so each error has its owner", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    sw.failCommit = true;
    r.update([
      change("l2/port/a", undefined, [mkFlow("a", 10)]),
      change("l2/port/b", undefined, [mkFlow("b", 20)]),
    ]);
    const res = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain add p10", "plain add p20"]);
    expect(res).toMatchObject({ added: 2, failed: [] });
    // and one of them rejected: only that one is left out, and its owner fails
    sw.sent = [];
    sw.reject = (w) => w === "add p40";
    r.update([
      change("l2/port/c", undefined, [mkFlow("c", 30)]),
      change("l2/port/d", undefined, [mkFlow("d", 40)]),
    ]);
    const res2 = await r.sync(asConn(sw));
    // the bundle with the rejected add is discarded; the commit of the rest fails, so it goes plain
    expect(sw.whats()).toEqual(["plain add p30"]);
    expect(res2).toMatchObject({ added: 1, failed: ["l2/port/d"] });
    expect(
      r
        .installedFlows()
        .map((f) => f.priority)
        .sort(),
    ).toEqual([10, 20, 30]);
  });

  it("a retried owner rejected again message by message keeps its attempt count, even with a flow accepted", async () => {
    let now = 0;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p20";
    r.update([change("l2/port/x", undefined, [mkFlow("x", 10), mkFlow("x", 20)])]);
    await r.sync(asConn(sw));
    expect(r.failed.get("l2/port/x")).toMatchObject({ attempts: 1, retryAt: RETRY_MIN_MS });
    // due: the bundle's messages pass the barrier but the commit fails, and sent plain, p20 is refused
    now = RETRY_MIN_MS;
    sw.failCommit = true;
    let seen = 0;
    sw.reject = (w) => w === "add p20" && ++seen === 2;
    sw.sent = [];
    const res = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain add p10", "plain add p20"]);
    expect(res).toMatchObject({ added: 1, failed: ["l2/port/x"] });
    expect(r.installedFlows().map((f) => f.priority)).toEqual([10]);
    expect(r.failed.get("l2/port/x")).toMatchObject({ attempts: 2, retryAt: now + 2 * RETRY_MIN_MS });
    expect(r.nextRetryAt()).toBe(now + 2 * RETRY_MIN_MS);
  });

  it("installs a meter as a packet-rate drop band with a burst of one second's packets, and stats", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    const meterMods: OfRequest[] = [];
    const sendAll = sw.sendAll.bind(sw);
    sw.sendAll = (ms, xids) => {
      meterMods.push(...ms.filter((m) => m.type === "meter_mod"));
      return sendAll(ms, xids);
    };
    await r.sync(asConn(sw));
    r.update([change("l2/port/m", undefined, undefined, { after: [[3, 250]] })]);
    await r.sync(asConn(sw));
    r.update([change("l2/port/m", undefined, undefined, { before: [[3, 250]], after: [[3, 400]] })]);
    await r.sync(asConn(sw));
    r.update([change("l2/port/m", undefined, undefined, { before: [[3, 400]] })]);
    await r.sync(asConn(sw));
    // OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS
    expect(meterMods.map((m) => m.type === "meter_mod" && [m.command, m.meterId, m.flags, m.bands])).toEqual([
      ["add", 3, 0xe, [{ type: "drop", rate: 250, burstSize: 250 }]],
      ["modify", 3, 0xe, [{ type: "drop", rate: 400, burstSize: 400 }]],
      ["delete", 3, 0xe, []],
    ]);
  });

  it("replaces (adds again) a flow whose hard timeout or flags change with its actions, not modify_strict", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    const base = () => flow("l2_lookup", 10).eq("eth_dst", "fa:16:3e:00:00:01");
    const f1 = base().output(1).build(cookieFor("l2", "a"));
    const f2 = base().output(2).hardTimeout(60).build(cookieFor("l2", "a"));
    const f3 = base().output(3).hardTimeout(60).sendFlowRemoved().build(cookieFor("l2", "a"));
    const f4 = base().output(4).hardTimeout(60).sendFlowRemoved().build(cookieFor("l2", "a"));
    r.update([change("l2/port/a", undefined, [f1])]);
    await r.sync(asConn(sw));
    sw.sent = [];
    for (const [before, after] of [
      [f1, f2],
      [f2, f3],
      [f3, f4],
    ]) {
      r.update([change("l2/port/a", [before!], [after!])]);
      await r.sync(asConn(sw));
    }
    expect(sw.whats()).toEqual(["bundle add p10", "bundle add p10", "bundle modify_strict p10"]);
  });

  it("keeps changes that arrive during a sync for the next one", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    r.update([change("l2/port/a", undefined, [mkFlow("a", 10)], { after: [[1, 5]] })]);
    const first = r.sync(asConn(sw));
    r.update([change("l2/port/b", undefined, [mkFlow("b", 20)], { after: [[2, 5]] })]);
    expect((await first).added).toBe(1);
    expect(r.pending()).toBe(true);
    sw.sent = [];
    const second = await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain meter add 2 @5", "bundle add p20"]);
    expect(second.added).toBe(1);
    expect(r.pending()).toBe(false);
  });
});

describe("OpenFlowReconciler.pushNow", () => {
  it("waits for a sync before the session was read, during a sync, or with meters", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    expect(
      await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [mkFlow("x", 10)])]),
    ).toBeUndefined();
    await r.sync(asConn(sw));
    sw.sent = [];
    const running = r.sync(asConn(sw));
    expect(
      await r.pushNow(asConn(sw), [change("l3/reactive/y", undefined, [mkFlow("y", 20)])]),
    ).toBeUndefined();
    await running;
    expect(
      await r.pushNow(asConn(sw), [change("l3/reactive/z", undefined, undefined, { after: [[1, 5]] })]),
    ).toBeUndefined();
    expect(sw.sent).toEqual([]);
    expect(r.pending()).toBe(true);
    await r.sync(asConn(sw));
    expect(sw.whats().sort()).toEqual(["bundle add p20", "plain meter add 1 @5"]);
  });

  it("writes the flow_mods at once, without a bundle or waiting for a barrier, and counts them installed", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    sw.late = true;
    const f = mkFlow("x", 10);
    expect(await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [f])])).toBe(1);
    expect(sw.whats()).toEqual(["plain add p10"]);
    sw.late = false;
    expect(r.pending()).toBe(false);
    expect(r.installedCount()).toBe(1);
    const g = mkFlow("x", 10, { port: 3 });
    expect(await r.pushNow(asConn(sw), [change("l3/reactive/x", [f], [g])])).toBe(1);
    expect(await r.pushNow(asConn(sw), [change("l3/reactive/x", [g], undefined)])).toBe(1);
    expect(await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, undefined)])).toBe(0);
    expect(sw.whats()).toEqual(["plain add p10", "plain modify_strict p10", "plain delete_strict p10"]);
    expect(r.totals).toMatchObject({ added: 1, modified: 1, deleted: 1 });
    expect(r.installedCount()).toBe(0);
  });

  it("undoes a flow the switch rejects later, fails its owner and asks for a sync", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    const told: (string | undefined)[] = [];
    r.onFastPathError = (o) => told.push(o);
    await r.sync(asConn(sw));
    const f = mkFlow("x", 10);
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [f])]);
    const g = mkFlow("x", 10, { port: 7 });
    sw.reject = (w) => w === "modify_strict p10";
    sw.late = true;
    await r.pushNow(asConn(sw), [change("l3/reactive/x", [f], [g])]);
    expect(told).toEqual([]);
    sw.flushErrors();
    expect(told).toEqual(["l3/reactive/x"]);
    expect(r.failed.get("l3/reactive/x")?.attempts).toBe(1);
    // the key is back to what was installed before, and dirty again
    expect(r.installedFlows()).toEqual([f]);
    // an unknown xid is ignored
    sw.emit("of_error", ofError(777));
    expect(told).toHaveLength(1);
    // a rejected add is removed again
    sw.reject = (w) => w === "add p20";
    await r.pushNow(asConn(sw), [change("l3/reactive/y", undefined, [mkFlow("y", 20)])]);
    expect(r.installedCount()).toBe(2);
    sw.flushErrors();
    expect(r.installedCount()).toBe(1);
    expect(told).toEqual(["l3/reactive/x", "l3/reactive/y"]);
  });
});

describe("OpenFlowReconciler.pushNow: unhurried flows coalesced", () => {
  const at = (r: OpenFlowReconciler, sw: FakeSwitch, owner: string, prio: number, unhurried = true) =>
    r.pushNow(asConn(sw), [change(`l3/reactive/${owner}`, undefined, [mkFlow(owner, prio)])], {
      unhurried,
    });

  async function synced(t: { now: number }): Promise<{ sw: FakeSwitch; r: OpenFlowReconciler }> {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => t.now);
    await r.sync(asConn(sw));
    sw.writes = [];
    return { sw, r };
  }

  /** On fake timers: a synced reconciler that has written a and b and holds c (the window's third). */
  async function holdingC(
    body: (t: { now: number }, sw: FakeSwitch, r: OpenFlowReconciler) => Promise<void>,
  ): Promise<void> {
    vi.useFakeTimers();
    try {
      const t = { now: 1000 };
      const { sw, r } = await synced(t);
      await at(r, sw, "a", 10);
      await at(r, sw, "b", 20);
      await at(r, sw, "c", 30);
      expect(sw.writes).toEqual([["add p10"], ["add p20"]]);
      await body(t, sw, r);
    } finally {
      vi.useRealTimers();
    }
  }

  it("the first COALESCE_BURST of a window go at once; the window's others wait and go in one bundle", async () => {
    vi.useFakeTimers();
    try {
      const t = { now: 1000 };
      const { sw, r } = await synced(t);
      expect(COALESCE_BURST).toBe(2);
      expect(await at(r, sw, "a", 10)).toBe(1);
      t.now += 1;
      await at(r, sw, "b", 20);
      t.now += 1;
      expect(await at(r, sw, "c", 30)).toBe(1);
      t.now += 1;
      await at(r, sw, "d", 40);
      expect(sw.writes).toEqual([["add p10"], ["add p20"]]);
      // each held flow_mod went into the window's bundle as it was held: the window's end only writes it
      expect(sw.drafted).toEqual(["add p30", "add p40"]);
      expect(sw.drafts).toBe(0);
      // held flows count as installed already: a sync now would not send them twice
      expect(r.installedFlows().map((f) => f.priority)).toEqual([10, 20, 30, 40]);
      // the held write is due at the end of the window that began with a's: COALESCE_MS - 2 ms after c was held
      await vi.advanceTimersByTimeAsync(COALESCE_MS - 3);
      expect(sw.writes).toHaveLength(2);
      t.now = 1000 + COALESCE_MS;
      await vi.advanceTimersByTimeAsync(1);
      expect(sw.writes).toEqual([["add p10"], ["add p20"]]);
      expect(sw.bundles).toEqual([["add p30", "add p40"]]);
      expect(sw.drafts).toBe(1);
      // a new window, after one that held writes: busy, so nothing goes at once
      await at(r, sw, "e", 50);
      expect(sw.writes).toHaveLength(2);
      t.now += 2 * COALESCE_MS;
      await vi.advanceTimersByTimeAsync(2 * COALESCE_MS);
      // one held flow_mod goes as it is
      expect(sw.writes.at(-1)).toEqual(["add p50"]);
      // a quiet window again: the next write comes a window's length after the last one ended
      t.now += 2 * COALESCE_MS;
      await at(r, sw, "f", 60);
      expect(sw.writes.at(-1)).toEqual(["add p60"]);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("a held flow asked for again (its route's later packet punted) sends the held writes at once", () =>
    holdingC(async (t, sw, r) => {
      await at(r, sw, "d", 40);
      expect(sw.writes).toHaveLength(2);
      t.now += 1;
      // the same flow again, as the l3 app installs it when the route's next packet comes
      expect(await at(r, sw, "d", 40)).toBe(0);
      expect(sw.bundles).toEqual([["add p30", "add p40"]]);
      expect(vi.getTimerCount()).toBe(0);
      // a flow that is not held changes nothing
      await at(r, sw, "e", 50);
      await at(r, sw, "a", 10);
      expect(sw.bundles).toHaveLength(1);
      expect(sw.writes).toHaveLength(2);
    }));

  it("while windows keep holding writes each lasts twice the last, up to COALESCE_MAX_MS, and sends nothing at once; a quiet one starts over", async () => {
    vi.useFakeTimers();
    try {
      const t = { now: 1000 };
      const { sw, r } = await synced(t);
      let prio = 0;
      const writes = () => sw.writes.length + sw.bundles.length;
      /** Three flows at `t.now`; how many went at once, and the time of the held write. */
      const window = async (): Promise<[number, number]> => {
        const start = t.now;
        const before = writes();
        for (let i = 0; i < 3; i++) await at(r, sw, `w${++prio}`, prio);
        const atOnce = writes() - before;
        for (let ms = 1; ; ms++) {
          t.now = start + ms;
          await vi.advanceTimersByTimeAsync(1);
          if (writes() - before === atOnce + 1) return [atOnce, ms];
          if (ms > COALESCE_MAX_MS) throw new Error("the held write never went");
        }
      };
      expect(COALESCE_MAX_MS).toBe(4 * COALESCE_MS);
      expect(await window()).toEqual([COALESCE_BURST, COALESCE_MS]);
      expect(await window()).toEqual([0, 2 * COALESCE_MS]);
      expect(sw.bundles.at(-1)).toHaveLength(3);
      expect(await window()).toEqual([0, 4 * COALESCE_MS]);
      expect(await window()).toEqual([0, COALESCE_MAX_MS]);
      // a pause longer than a window: the next one is quiet again
      t.now += COALESCE_MAX_MS;
      expect(await window()).toEqual([COALESCE_BURST, COALESCE_MS]);
      // a window that held nothing: so is the one after it
      t.now += COALESCE_MS;
      await at(r, sw, `w${++prio}`, prio);
      t.now += COALESCE_MS;
      expect(await window()).toEqual([COALESCE_BURST, COALESCE_MS]);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("slower than COALESCE_BURST a window, nothing waits", async () => {
    const t = { now: 1000 };
    const { sw, r } = await synced(t);
    for (let i = 1; i <= 6; i++) {
      await at(r, sw, `f${i}`, i);
      t.now += COALESCE_MS / COALESCE_BURST;
    }
    expect(sw.writes).toHaveLength(6);
  });

  it("goes out before anything else the reconciler sends: a hurried push, a sync", async () => {
    const t = { now: 1000 };
    const { sw, r } = await synced(t);
    await at(r, sw, "a", 10);
    await at(r, sw, "b", 20);
    await at(r, sw, "c", 30);
    await at(r, sw, "d", 40, false);
    expect(sw.writes).toEqual([["add p10"], ["add p20"], ["add p30"], ["add p40"]]);
    await at(r, sw, "e", 50);
    expect(sw.writes).toHaveLength(4);
    await r.sync(asConn(sw));
    expect(sw.writes.at(-1)).toEqual(["add p50"]);
  });

  it("until the switch has answered for a held bundle, nothing else of the reconciler's goes out", () =>
    holdingC(async (t, sw, r) => {
      await at(r, sw, "d", 40);
      sw.holdCommits = true;
      t.now += COALESCE_MS;
      await vi.advanceTimersByTimeAsync(COALESCE_MS);
      expect(sw.bundles).toEqual([]);
      // an unhurried flow of a new window, a hurried one and a sync all wait for the answer
      t.now += 4 * COALESCE_MAX_MS;
      await at(r, sw, "e", 50);
      const hurried = at(r, sw, "f", 60, false);
      const synced = r.sync(asConn(sw));
      await vi.advanceTimersByTimeAsync(COALESCE_MS);
      expect(sw.writes).toEqual([["add p10"], ["add p20"]]);
      sw.answerCommits();
      await hurried;
      await synced;
      expect(sw.bundles[0]).toEqual(["add p30", "add p40"]);
      expect(sw.writes.slice(2)).toEqual([["add p50"], ["add p60"]]);
    }));

  it("a held bundle the switch refused: the flow_mod it blamed is undone and fails its owner, the others go again one by one", () =>
    holdingC(async (t, sw, r) => {
      sw.atomic = true;
      sw.reject = (what) => what === "add p40";
      await at(r, sw, "d", 40);
      await at(r, sw, "e", 50);
      t.now += COALESCE_MS;
      await vi.advanceTimersByTimeAsync(COALESCE_MS);
      expect(sw.bundles).toEqual([]);
      expect(sw.writes.slice(2)).toEqual([["add p30", "add p50"]]);
      expect(r.installedFlows().map((f) => f.priority)).toEqual([10, 20, 30, 50]);
      expect([...r.failed.keys()]).toEqual(["l3/reactive/d"]);
      // the resent ones are confirmed like any fast-path write
      await vi.advanceTimersByTimeAsync(1);
      expect(r.inFlightCount).toBe(0);
    }));

  it("held flow_mods go to the session they were decided on, even when the next write is on a new one", () =>
    holdingC(async (t, sw, r) => {
      // a reconnect: the next unhurried write comes on another session
      const sw2 = new FakeSwitch();
      await at(r, sw2, "d", 40);
      expect(sw.writes).toEqual([["add p10"], ["add p20"], ["add p30"]]);
      t.now += COALESCE_MS;
      await vi.advanceTimersByTimeAsync(COALESCE_MS);
      expect(sw2.writes).toEqual([["add p40"]]);
      expect(sw.writes).toHaveLength(3);
    }));

  it("close() drops the held flow_mods and their timer", () =>
    holdingC(async (t, sw, r) => {
      r.close();
      t.now += COALESCE_MS;
      await vi.advanceTimersByTimeAsync(COALESCE_MS);
      expect(sw.writes).toEqual([["add p10"], ["add p20"]]);
      expect(vi.getTimerCount()).toBe(0);
    }));
});

describe("OpenFlowReconciler.pushNow: the late-error window", () => {
  it("forgets a fast-path flow_mod's xid after FAST_PATH_ERROR_WINDOW_MS, and only the expired ones", async () => {
    const sw = new FakeSwitch();
    let t = 0;
    const r = new OpenFlowReconciler(() => t);
    const told: (string | undefined)[] = [];
    r.onFastPathError = (o) => told.push(o);
    await r.sync(asConn(sw));
    // a switch that answers nothing (not even the barriers after the writes) for the whole window
    sw.late = true;
    sw.reject = (w) => w === "add p10" || w === "add p20";
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [mkFlow("x", 10)])]);
    t = FAST_PATH_ERROR_WINDOW_MS / 2;
    await r.pushNow(asConn(sw), [change("l3/reactive/y", undefined, [mkFlow("y", 20)])]);
    t = FAST_PATH_ERROR_WINDOW_MS + 1;
    await r.pushNow(asConn(sw), [change("l3/reactive/z", undefined, [mkFlow("z", 30)])]);
    sw.flushErrors();
    // x's error came after its window: no longer attributed; y's still is
    expect(told).toEqual(["l3/reactive/y"]);
    expect(r.installedFlows().map((f) => f.priority)).toEqual(expect.arrayContaining([10, 30]));
  });
  it("still attributes an error that comes exactly FAST_PATH_ERROR_WINDOW_MS after its flow_mod", async () => {
    const sw = new FakeSwitch();
    let t = 0;
    const r = new OpenFlowReconciler(() => t);
    const told: (string | undefined)[] = [];
    r.onFastPathError = (o) => told.push(o);
    await r.sync(asConn(sw));
    sw.late = true;
    sw.reject = (w) => w === "add p10";
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [mkFlow("x", 10)])]);
    t = FAST_PATH_ERROR_WINDOW_MS;
    await r.pushNow(asConn(sw), [change("l3/reactive/y", undefined, [mkFlow("y", 20)])]);
    sw.flushErrors();
    expect(told).toEqual(["l3/reactive/x"]);
    expect(r.installedFlows().map((f) => f.priority)).toEqual([20]);
  });

  it("a fast-path error that arrives during a sync leaves its flow to be sent again at the retry", async () => {
    const sw = new FakeSwitch();
    let t = 0;
    const r = new OpenFlowReconciler(() => t);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p10";
    sw.late = true;
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [mkFlow("x", 10)])]);
    sw.late = false;
    sw.reject = () => false;
    // the sync's barrier brings x's error while the sync runs
    r.update([change("l2/port/y", undefined, [mkFlow("y", 20)])]);
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["bundle add p20"]);
    expect(r.failed.get("l3/reactive/x")).toMatchObject({ attempts: 1, retryAt: RETRY_MIN_MS });
    expect(r.pending()).toBe(true);
    t = RETRY_MIN_MS;
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["bundle add p10"]);
    expect(r.failed.size).toBe(0);
    expect(
      r
        .installedFlows()
        .map((f) => f.priority)
        .sort(),
    ).toEqual([10, 20]);
  });
});

describe("OpenFlowReconciler.pushNow: the barrier after a write", () => {
  const reactive = (prio: number) =>
    flow("l2_lookup", prio)
      .eq("eth_dst", "fa:16:3e:00:00:01")
      .output(1)
      .idleTimeout(30)
      .sendFlowRemoved()
      .build(cookieFor("l3", `reactive/k${prio}`, "reactive"));

  it("retires the xids it covers when answered, one barrier at a time for every write before it", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    const before = sw.barriers;
    sw.late = true;
    await r.pushNow(asConn(sw), [change("l3/reactive/a", undefined, [mkFlow("a", 10)])]);
    await r.pushNow(asConn(sw), [change("l3/reactive/b", undefined, [mkFlow("b", 11), mkFlow("b", 12)])]);
    // the second write waits for the first one's barrier to be answered
    expect(sw.barriers - before).toBe(1);
    expect(r.inFlightCount).toBe(3);
    sw.late = false;
    sw.flushErrors();
    await new Promise((res) => setImmediate(res));
    // the first barrier covered one flow_mod; the next one, sent on its answer, covers the other two
    expect(sw.barriers - before).toBe(2);
    expect(r.inFlightCount).toBe(0);
    // a rejection answered before its barrier still fails its owner
    sw.reject = (w) => w === "add p13";
    const told: (string | undefined)[] = [];
    r.onFastPathError = (o) => told.push(o);
    await r.pushNow(asConn(sw), [change("l3/reactive/c", undefined, [mkFlow("c", 13)])]);
    await new Promise((res) => setImmediate(res));
    expect(told).toEqual(["l3/reactive/c"]);
    expect(r.inFlightCount).toBe(0);
  });

  it("a barrier left unanswered (the session went) leaves its xids to the error window", async () => {
    const sw = new FakeSwitch();
    let t = 0;
    const r = new OpenFlowReconciler(() => t);
    await r.sync(asConn(sw));
    sw.barrier = () => Promise.reject(new Error("session closed"));
    await r.pushNow(asConn(sw), [change("l3/reactive/a", undefined, [mkFlow("a", 10)])]);
    await new Promise((res) => setImmediate(res));
    expect(r.inFlightCount).toBe(1);
    t = FAST_PATH_ERROR_WINDOW_MS + 1;
    await r.pushNow(asConn(sw), [change("l3/reactive/b", undefined, [mkFlow("b", 11)])]);
    expect(r.inFlightCount).toBe(1);
  });

  it("a flow_removed of the agent's own delete, arriving after it installed the key again, changes nothing", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    const f = reactive(10);
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", undefined, [f])]);
    // the route is deleted (a model change) and asked for again by a packet, within one round trip
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", [f], undefined)]);
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", undefined, [f])]);
    expect(sw.whats().slice(-2)).toEqual(["plain delete_strict p10", "plain add p10"]);
    // the barriers are answered; OVS frees the deleted rule (and reports it) later
    await new Promise((res) => setImmediate(res));
    expect(r.awaitedRemovals).toBe(1);
    // the delete's flow_removed: the re-added flow stays installed
    expect(r.forgetInstalled(f)).toBeUndefined();
    expect(r.installedFlows()).toEqual([f]);
    expect(r.awaitedRemovals).toBe(0);
    // its idle timeout later is the switch's own removal
    expect(r.forgetInstalled(f)).toBe(flowKey(f));
    expect(r.installedFlows()).toEqual([]);
  });

  it("claims only for flows that report their removal, withdraws a rejected delete's, and lets a claim lapse", async () => {
    const sw = new FakeSwitch();
    let t = 0;
    const r = new OpenFlowReconciler(() => t);
    await r.sync(asConn(sw));
    // a flow without send_flow_rem reports no removal: its delete claims nothing
    const quiet = mkFlow("q", 11);
    await r.pushNow(asConn(sw), [change("l3/reactive/q", undefined, [quiet])]);
    await r.pushNow(asConn(sw), [change("l3/reactive/q", [quiet], undefined)]);
    expect(r.awaitedRemovals).toBe(0);
    // a delete the switch rejects removed nothing
    const f = reactive(10);
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", undefined, [f])]);
    sw.reject = (w) => w === "delete_strict p10";
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", [f], undefined)]);
    await new Promise((res) => setImmediate(res));
    expect(r.awaitedRemovals).toBe(0);
    expect(r.installedFlows()).toEqual([f]);
    // the retry (a sync) deletes it; a claim no flow_removed answered within REMOVAL_WAIT_MS
    // explains no later removal
    sw.reject = () => false;
    t = RETRY_MIN_MS;
    await r.sync(asConn(sw));
    expect(sw.whats().at(-1)).toBe("bundle delete_strict p10");
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", undefined, [f])]);
    expect(r.awaitedRemovals).toBe(1);
    t += REMOVAL_WAIT_MS + 1;
    expect(r.forgetInstalled(f)).toBe(flowKey(f));
    expect(r.installedCount()).toBe(0);
    expect(r.awaitedRemovals).toBe(0);
    // and lapsed claims are swept as the fast path goes on
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", undefined, [f])]);
    await r.pushNow(asConn(sw), [change("l3/reactive/k10", [f], undefined)]);
    expect(r.awaitedRemovals).toBe(1);
    t += REMOVAL_WAIT_MS + 1;
    await r.pushNow(asConn(sw), [change("l3/reactive/q", undefined, [quiet])]);
    expect(r.awaitedRemovals).toBe(0);
  });

  it("a sync's delete claims its flow_removed even after the commit's answer; a rejected bundle claims nothing", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    const f = reactive(10);
    r.update([change("l3/reactive/k10", undefined, [f])]);
    await r.sync(asConn(sw));
    r.update([change("l3/reactive/k10", [f], undefined)]);
    await r.sync(asConn(sw));
    expect(sw.whats().at(-1)).toBe("bundle delete_strict p10");
    expect(r.awaitedRemovals).toBe(1);
    expect(r.forgetInstalled(f)).toBeUndefined();
    expect(r.awaitedRemovals).toBe(0);
    // a bundle with a rejected message applies nothing: its delete is sent again, claimed once
    r.update([change("l3/reactive/k10", undefined, [f])]);
    await r.sync(asConn(sw));
    r.update([
      change("l3/reactive/k10", [f], undefined),
      change("l2/port/bad", undefined, [mkFlow("bad", 20)]),
    ]);
    sw.reject = (w) => w === "add p20";
    await r.sync(asConn(sw));
    expect(sw.whats().filter((w) => w === "bundle delete_strict p10")).toHaveLength(2);
    expect(r.awaitedRemovals).toBe(1);
    // a failed commit, sent again message by message: a rejected delete withdraws its claim
    expect(r.forgetInstalled(f)).toBeUndefined();
    r.update([change("l3/reactive/k10", undefined, [f])]);
    sw.reject = () => false;
    await r.sync(asConn(sw));
    r.update([change("l3/reactive/k10", [f], undefined)]);
    sw.failCommit = true;
    sw.reject = (w) => w === "delete_strict p10";
    await r.sync(asConn(sw));
    expect(sw.whats().at(-1)).toBe("plain delete_strict p10");
    expect(r.awaitedRemovals).toBe(0);
  });
});

describe("the desired index", () => {
  it("gives a contested key to the lowest owner, whatever the order, and back when it leaves", () => {
    const idx = new DesiredIndex<{ owner: string; key: string; v: number }>((t) => t.key);
    const affected = new Set<string>();
    idx.replace("m", [], [{ owner: "m", key: "k", v: 1 }], affected);
    idx.replace("z", [], [{ owner: "z", key: "k", v: 2 }], affected);
    idx.replace("a", [], [{ owner: "a", key: "k", v: 3 }], affected);
    expect(idx.winner("k")?.v).toBe(3);
    expect(idx.size).toBe(1);
    idx.replace("a", [{ owner: "a", key: "k", v: 3 }], [], affected);
    expect(idx.winner("k")?.v).toBe(1);
    idx.replace("m", [{ owner: "m", key: "k", v: 1 }], [], affected);
    expect(idx.winner("k")?.v).toBe(2);
    idx.replace("z", [{ owner: "z", key: "k", v: 2 }], [], affected);
    expect(idx.winner("k")).toBeUndefined();
    expect(idx.size).toBe(0);
    expect([...affected]).toEqual(["k"]);
    // removing what another owner holds leaves it
    idx.replace("b", [], [{ owner: "b", key: "j", v: 4 }], affected);
    idx.replace("c", [{ owner: "c", key: "j", v: 5 }], [], affected);
    expect(idx.winner("j")?.v).toBe(4);
    expect([...idx.keys()]).toEqual(["j"]);
  });
});

describe("offline planning", () => {
  it("commitPlanned takes the plan as sent", () => {
    const r = new OpenFlowReconciler();
    const a = mkFlow("a", 10);
    const stale = mkFlow("s", 11);
    r.update([change("l2/port/a", undefined, [a])]);
    r.assumeInstalled([stale]);
    expect(
      r
        .planFlows()
        .map((o) => `${o.kind} ${o.flow.priority}`)
        .sort(),
    ).toEqual(["add 10", "delete 11"]);
    r.commitPlanned();
    expect(r.planFlows()).toEqual([]);
    expect(r.installedFlows()).toEqual([a]);
    r.forgetInstalled(a);
    expect(r.installedCount()).toBe(0);
  });
});

describe("installed flows per table", () => {
  const inTable = (t: "l2_lookup" | "classification", prio: number, port = 1) =>
    flow(t, prio)
      .eq("eth_dst", "fa:16:3e:00:00:01")
      .output(port)
      .build(cookieFor("l2", `p${prio}`));
  const counts = (r: OpenFlowReconciler) =>
    Object.fromEntries([...r.installedPerTable()].map(([t, n]) => [tableById(t)!.name, n]));

  it("are counted as flows are read, sent, modified, rejected, removed by the switch and deleted", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    const a = inTable("l2_lookup", 10);
    const b = inTable("l2_lookup", 11);
    const c = inTable("classification", 12);
    sw.stats = [a, c].map(statsOf);
    await r.sync(asConn(sw));
    // read at session start, then deleted: nobody wants them
    expect(counts(r)).toEqual({});
    r.update([change("l2/port/a", undefined, [a, c])]);
    await r.sync(asConn(sw));
    expect(counts(r)).toEqual({ l2_lookup: 1, classification: 1 });
    await r.pushNow(asConn(sw), [change("l2/reactive/b", undefined, [b])]);
    expect(counts(r)).toEqual({ l2_lookup: 2, classification: 1 });
    // a modify keeps the count
    await r.pushNow(asConn(sw), [change("l2/reactive/b", [b], [inTable("l2_lookup", 11, 4)])]);
    expect(counts(r)).toEqual({ l2_lookup: 2, classification: 1 });
    // a rejected add is taken back
    sw.late = true;
    sw.reject = (w) => w === "add p13";
    await r.pushNow(asConn(sw), [change("l2/reactive/d", undefined, [inTable("classification", 13)])]);
    expect(counts(r)).toEqual({ l2_lookup: 2, classification: 2 });
    sw.flushErrors();
    sw.late = false;
    expect(counts(r)).toEqual({ l2_lookup: 2, classification: 1 });
    r.forgetInstalled(b);
    expect(counts(r)).toEqual({ l2_lookup: 1, classification: 1 });
    r.update([change("l2/port/a", [a, c], [a])]);
    await r.sync(asConn(sw));
    expect(counts(r)).toEqual({ l2_lookup: 1 });
    r.assumeInstalled([a, b, c]);
    expect(counts(r)).toEqual({ l2_lookup: 2, classification: 1 });
    expect(r.installedCount()).toBe(3);
  });
});

// Added after StrykerJS's run over reconciler.ts (test/mutation/controller.md): each test below pins a
// rule a surviving mutant broke.
describe("OpenFlowReconciler: edges found by mutation testing", () => {
  const rlog = logger("reconciler");
  afterEach(() => vi.restoreAllMocks());

  /** Count the switch's barriers (each one a round trip). */
  function countBarriers(sw: FakeSwitch): { n: number } {
    const c = { n: 0 };
    const barrier = sw.barrier.bind(sw);
    sw.barrier = async () => {
      c.n++;
      return barrier();
    };
    return c;
  }

  it("an owner wanting one key twice: the last one counts, one warning only where owners share the key", () => {
    const warn = vi.spyOn(rlog, "warn");
    const debug = vi.spyOn(rlog, "debug");
    const idx = new DesiredIndex<{ owner: string; key: string; v: number }>((t) => t.key);
    const affected = new Set<string>();
    const a1 = { owner: "a", key: "k", v: 1 };
    const a2 = { owner: "a", key: "k", v: 2 };
    // alone on its key: no warning, and removing it leaves nothing behind
    idx.replace("a", [], [a1, a2], affected);
    expect(idx.winner("k")?.v).toBe(2);
    expect(warn).not.toHaveBeenCalled();
    idx.replace("a", [a1, a2], [], affected);
    expect(idx.size).toBe(0);
    expect(idx.winner("k")).toBeUndefined();
    // on a key another owner holds too: warned once, for the second of the two
    idx.replace("b", [], [{ owner: "b", key: "k", v: 3 }], affected);
    idx.replace("a", [], [a1, a2], affected);
    expect(warn.mock.calls).toEqual([
      [{ owner: "a", key: "k" }, "owner wants the same key twice; the last one counts"],
    ]);
    debug.mockClear();
    expect(idx.winner("k")?.v).toBe(2);
    expect(debug.mock.calls).toEqual([
      [{ key: "k", owners: ["b", "a"], winner: "a" }, "owners conflict on a key"],
    ]);
  });

  it("pending() sees a meter change alone; assumeInstalled counts as a read session", () => {
    const r = new OpenFlowReconciler();
    r.assumeInstalled([]);
    expect(r.isSynced).toBe(true);
    expect(r.pending()).toBe(false);
    r.update([change("l2/port/m", undefined, undefined, { after: [[4, 10]] })]);
    expect(r.pending()).toBe(true);
  });

  it("the next retry is the earliest, whichever owner failed first", async () => {
    const now = 0;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = () => true;
    // x fails twice (due at 2 s), then y once (due at 1 s)
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [mkFlow("x", 1), mkFlow("x", 2)])]);
    sw.flushErrors();
    await r.pushNow(asConn(sw), [change("l3/reactive/y", undefined, [mkFlow("y", 3)])]);
    sw.flushErrors();
    expect([...r.failed.keys()]).toEqual(["l3/reactive/x", "l3/reactive/y"]);
    expect(r.nextRetryAt()).toBe(RETRY_MIN_MS);
  });

  it("logs what it read at session start", async () => {
    const info = vi.spyOn(rlog, "info");
    const sw = new FakeSwitch();
    sw.stats = [statsOf(mkFlow("a", 10))];
    sw.meterConfig = [{ meterId: 1, bands: [{ rate: 5 }] }];
    await new OpenFlowReconciler().sync(asConn(sw));
    expect(info.mock.calls).toEqual([[{ conn: "fake", flows: 1, meters: 1 }, "read installed state"]]);
  });

  it("the fast path: a batch with a meter anywhere waits; nothing to send sends nothing; one error listener", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    let sends = 0;
    const sendAll = sw.sendAll.bind(sw);
    sw.sendAll = (ms, xids) => {
      sends++;
      return sendAll(ms, xids);
    };
    expect(
      await r.pushNow(asConn(sw), [
        change("l3/reactive/x", undefined, [mkFlow("x", 10)]),
        change("l3/reactive/m", undefined, undefined, { after: [[2, 5]] }),
      ]),
    ).toBeUndefined();
    expect(sends).toBe(0);
    await r.sync(asConn(sw));
    sends = 0;
    // the same flow again: nothing to write, no write at all
    expect(await r.pushNow(asConn(sw), [change("l3/reactive/x", [mkFlow("x", 10)], [mkFlow("x", 10)])])).toBe(
      0,
    );
    expect(sends).toBe(0);
    // two adds and nothing else: counted as two added
    expect(
      await r.pushNow(asConn(sw), [change("l3/reactive/z", undefined, [mkFlow("z", 20), mkFlow("z", 21)])]),
    ).toBe(2);
    expect(r.totals).toMatchObject({ added: 3, modified: 0, deleted: 0 });
    await r.pushNow(asConn(sw), [change("l3/reactive/w", undefined, [mkFlow("w", 22)])]);
    expect(sw.listenerCount("of_error")).toBe(1);
  });

  it("a rejected meter holds its owner's meter dirty, and goes again when the owner is due", async () => {
    let now = 0;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = (w) => w.startsWith("meter add 2");
    r.update([change("l2/port/m", undefined, undefined, { after: [[2, 10]] })]);
    expect((await r.sync(asConn(sw))).failed).toEqual(["l2/port/m"]);
    // held, so still to do: the agent must not note its revision realised
    expect(r.pending()).toBe(true);
    sw.reject = () => false;
    now = RETRY_MIN_MS;
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain meter add 2 @10"]);
    expect(r.pending()).toBe(false);
  });

  it("meters: none deleted that was never installed, a rejected delete does not stop the sync, a deleted id is free", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    // added and removed before any sync: nothing to delete
    r.update([change("l2/port/m", undefined, undefined, { after: [[5, 10]] })]);
    r.update([change("l2/port/m", undefined, undefined, { before: [[5, 10]] })]);
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.sent).toEqual([]);
    // installed, then deleted with the switch refusing the delete: the sync still ends
    r.update([change("l2/port/m", undefined, undefined, { after: [[5, 10]] })]);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "meter delete 5";
    r.update([change("l2/port/m", undefined, undefined, { before: [[5, 10]] })]);
    await expect(r.sync(asConn(sw))).resolves.toMatchObject({ meters: 1 });
    sw.reject = () => false;
    // the same id and rate again: an add, since the meter was deleted
    sw.sent = [];
    r.update([change("l2/port/m", undefined, undefined, { after: [[5, 10]] })]);
    await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain meter add 5 @10"]);
  });

  it("no barrier for meters when there are none to add or delete", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    const barriers = countBarriers(sw);
    r.update([change("l2/port/a", undefined, [mkFlow("a", 10)])]);
    await r.sync(asConn(sw));
    expect(barriers.n).toBe(1); // the bundle's
  });

  it("puts every delete before every add in a large bundle", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    await r.sync(asConn(sw));
    const olds = Array.from({ length: 40 }, (_, i) => mkFlow(`o${i}`, 100 + i));
    r.update(olds.map((f, i) => change(`l2/port/o${i}`, undefined, [f])));
    await r.sync(asConn(sw));
    sw.sent = [];
    // interleaved in the changes: an add, a delete, an add, …
    const cs: OwnerChange[] = [];
    olds.forEach((f, i) => {
      cs.push(change(`l2/port/n${i}`, undefined, [mkFlow(`n${i}`, 200 + i)]));
      cs.push(change(`l2/port/o${i}`, [f], undefined));
    });
    r.update(cs);
    await r.sync(asConn(sw));
    const kinds = sw.whats().map((w) => w.split(" ")[1]);
    expect(kinds).toEqual([...Array(40).fill("delete_strict"), ...Array(40).fill("add")]);
  });

  it("logs each rejection, and a failed commit with the error no message is blamed for", async () => {
    const warn = vi.spyOn(rlog, "warn");
    const error = vi.spyOn(rlog, "error");
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p20";
    r.update([change("l2/port/b", undefined, [mkFlow("b", 20)])]);
    await r.sync(asConn(sw));
    expect(warn.mock.calls).toEqual([
      [
        {
          owner: "l2/port/b",
          reason: "switch answered OFPET_FLOW_MOD_FAILED/OFPFMFC_UNKNOWN",
          attempts: 1,
          retryInMs: RETRY_MIN_MS,
        },
        "the switch rejected an owner's state; retrying later",
      ],
    ]);
    warn.mockClear();
    sw.reject = () => false;
    sw.failCommit = true;
    r.update([change("l2/port/c", undefined, [mkFlow("c", 30)])]);
    await r.sync(asConn(sw));
    expect(warn.mock.calls).toEqual([
      [{ errors: 1 }, "bundle failed as a whole; sending the flow_mods one by one"],
    ]);
    expect(error.mock.calls).toEqual([
      [
        { err: "switch answered OFPET_FLOW_MOD_FAILED/OFPFMFC_UNKNOWN" },
        "the switch rejected a message no owner is blamed for",
      ],
    ]);
  });

  /** `n` owners, and a switch that rejects the first message of every bundle: one more round per owner. */
  async function rounds(n: number): Promise<unknown[][]> {
    const error = vi.spyOn(rlog, "error");
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    let first = true;
    const open = sw.bundleOpenPipelined.bind(sw);
    sw.bundleOpenPipelined = () => {
      first = true;
      return open();
    };
    sw.reject = () => {
      const f = first;
      first = false;
      return f;
    };
    r.update(
      Array.from({ length: n }, (_, i) => change(`l2/port/p${i}`, undefined, [mkFlow(`p${i}`, 10 + i)])),
    );
    const res = await r.sync(asConn(sw));
    expect(res.failed).toHaveLength(n);
    // a quiet sync after it logs nothing
    await r.sync(asConn(sw));
    const calls = error.mock.calls.slice();
    error.mockRestore();
    return calls;
  }

  it("complains when one sync needed more than 50 rounds, not at 50", async () => {
    expect(await rounds(50)).toEqual([]);
    expect(await rounds(51)).toEqual([
      [{ round: 51 }, "reconciler needed more than 50 rounds of rejections in one sync"],
    ]);
  });

  it("reports its duration, and logs a sync that sent something, whatever it sent", async () => {
    const debug = vi.spyOn(rlog, "debug");
    // a clock far from zero, advancing 125 ms per reading: a duration is a few readings' worth
    let t = 1_000_000;
    vi.spyOn(performance, "now").mockImplementation(() => (t += 125));
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler();
    const logged = () => debug.mock.calls.filter((c) => c[1] === "reconciled").length;
    await r.sync(asConn(sw));
    expect(logged()).toBe(0);
    const f = mkFlow("a", 10);
    const g = mkFlow("a", 10, { port: 2 });
    const steps: OwnerChange[][] = [
      [change("l2/port/a", undefined, [f])],
      [change("l2/port/a", [f], [g])],
      [change("l2/port/a", [g], undefined)],
      [change("l2/port/m", undefined, undefined, { after: [[1, 5]] })],
    ];
    for (const [i, s] of steps.entries()) {
      r.update(s);
      const res = await r.sync(asConn(sw));
      expect(res.durationMs).toBeGreaterThan(0);
      expect(res.durationMs).toBeLessThan(10 * 125);
      expect(logged()).toBe(i + 1);
      expect(debug.mock.calls.filter((c) => c[1] === "reconciled").at(-1)![0]).toBe(res);
    }
    // nothing to send: not logged
    await r.sync(asConn(sw));
    expect(logged()).toBe(4);
  });

  it("a sync leaves only held owners' keys to compare again, and a released owner holds nothing", async () => {
    let now = 0;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    const a = mkFlow("a", 10);
    r.update([change("l2/port/a", undefined, [a])]);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p20";
    r.update([change("l2/port/b", undefined, [mkFlow("b", 20)])]);
    await r.sync(asConn(sw));
    // a new session: every key is compared; a's is in place, so it is done with, b's stays held
    r.invalidate();
    sw.stats = [statsOf(a)];
    await r.sync(asConn(sw));
    r.forgetInstalled(a);
    expect(r.planFlows()).toEqual([]);
    // b is due and accepted: nothing of it is held any more, so a full compare leaves nothing dirty
    sw.reject = () => false;
    now = RETRY_MIN_MS;
    await r.sync(asConn(sw));
    expect(r.failed.size).toBe(0);
    r.invalidate();
    sw.stats = [statsOf(a), statsOf(mkFlow("b", 20))];
    await r.sync(asConn(sw));
    expect(r.pending()).toBe(false);
  });

  it("a fast-path error for an owner whose other flow a sync is sending keeps it failed", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p10";
    const f10 = mkFlow("x", 10);
    sw.late = true;
    await r.pushNow(asConn(sw), [change("l3/reactive/x", undefined, [f10])]);
    sw.late = false;
    sw.reject = () => false;
    r.update([change("l3/reactive/x", [f10], [f10, mkFlow("x", 11)])]);
    // the sync's barrier brings p10's error; p11 is committed
    await r.sync(asConn(sw));
    expect(r.failed.get("l3/reactive/x")).toMatchObject({ attempts: 1, retryAt: RETRY_MIN_MS });
  });

  it("an owner falling due while a sync runs has its flows and meters sent by the next sync", async () => {
    let now = 0;
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => now);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "meter add 2 @10";
    r.update([change("l2/port/b", undefined, [mkFlow("b", 20)], { after: [[2, 10]] })]);
    expect((await r.sync(asConn(sw))).failed).toEqual(["l2/port/b"]);
    sw.reject = () => false;
    // a sync of another owner starts before b is due; b falls due (pending() notices) while it runs
    r.update([change("l2/port/a", undefined, [mkFlow("a", 10)])]);
    sw.sent = [];
    const running = r.sync(asConn(sw));
    now = RETRY_MIN_MS;
    expect(r.pending()).toBe(true);
    await running;
    expect(sw.whats()).toEqual(["bundle add p10"]);
    expect(r.pending()).toBe(true);
    sw.sent = [];
    await r.sync(asConn(sw));
    expect(sw.whats()).toEqual(["plain meter add 2 @10", "bundle add p20"]);
    expect(r.failed.size).toBe(0);
  });

  it("an owner with two messages rejected in one bundle fails once", async () => {
    const sw = new FakeSwitch();
    const r = new OpenFlowReconciler(() => 0);
    await r.sync(asConn(sw));
    sw.reject = (w) => w === "add p10" || w === "add p11";
    r.update([change("l2/port/x", undefined, [mkFlow("x", 10), mkFlow("x", 11)])]);
    const res = await r.sync(asConn(sw));
    expect(res.failed).toEqual(["l2/port/x"]);
    expect(r.failed.get("l2/port/x")).toMatchObject({ attempts: 1, retryAt: RETRY_MIN_MS });
    expect(r.totals.failures).toBe(1);
  });
});
