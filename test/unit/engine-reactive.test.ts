/**
 * Reactive owners: flows a packet-in handler installs, owned like any other,
 * dropped when one of the objects they depend on changes (and only then),
 * forgotten when the switch says they expired (only the owners of exactly
 * the expired flow; not when the removal is the agent's own delete of an
 * earlier flow at the key), adopted after a restart, and
 * carried to the reconciler with the reactive cookie category.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { Dep } from "../../src/apps/types.js";
import { F, categoryOfCookie, flow } from "../../src/datapath/index.js";
import { Engine } from "../../src/controller/engine.js";
import { OpenFlowReconciler } from "../../src/controller/reconciler.js";
import { type FlowRemoved, forgetRemovedFlow } from "../../src/controller/flow-removed.js";
import type { OfConnection } from "../../src/openflow/connection.js";
import type { Flow } from "../../src/openflow/flow.js";
import { OFPRR } from "../../src/openflow/message.js";
import { binding, net, newModel, port, subnet } from "../harness/model-fixture.js";

function setup() {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 5 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.0.0.0/24"));
  m.setPort("a", port("a", "net1", "fa:16:3e:00:00:0a", [["sub1", "10.0.0.10"]]));
  m.setPort("b", port("b", "net1", "fa:16:3e:00:00:0b", [["sub1", "10.0.0.11"]]));
  m.setBinding("a", binding("a", 1));
  m.setBinding("b", binding("b", 2));
  const e = new Engine(m, loadApps(["l2"]));
  const r = new OpenFlowReconciler();
  r.update(e.recomputeAll());
  return { m, e, r };
}

const shortcut = () =>
  flow("l2_lookup", 200)
    .reg(F.network, 5)
    .eq("eth_dst", "fa:16:3e:00:00:0b")
    .load(F.outPort, 2)
    .goto("egress_secgroup")
    .idleTimeout(30)
    .sendFlowRemoved();

describe("reactive owners", () => {
  it("carry the reactive cookie category, timeouts and send_flow_rem", () => {
    const { e, r } = setup();
    const ch = e.setReactive("l2", "a->b", [shortcut()], [Dep.port("a"), Dep.port("b")]);
    r.update([ch]);
    const f = ch.after!.flows[0]!.flow;
    expect(categoryOfCookie(f.cookie)).toBe("reactive");
    expect(f.idleTimeout).toBe(30);
    expect(f.flags).toBe(1);
    expect(r.flows.winner(ch.after!.flows[0]!.key)?.owner).toBe("l2/reactive/a->b");
  });

  it("are dropped when a dependency changes, and not when anything else does", () => {
    const { m, e } = setup();
    e.setReactive("l2", "a->b", [shortcut()], [Dep.port("a"), Dep.port("b")]);
    m.setPort("c", port("c", "net1", "fa:16:3e:00:00:0c", [["sub1", "10.0.0.12"]]));
    e.recomputeChanged();
    expect(e.output("l2/reactive/a->b")).toBeDefined();
    m.setPort("b", port("b", "net1", "fa:16:3e:00:00:0b", [["sub1", "10.0.0.99"]]));
    const changes = e.recomputeChanged();
    expect(e.output("l2/reactive/a->b")).toBeUndefined();
    expect(changes.find((c) => c.owner === "l2/reactive/a->b")).toMatchObject({ after: undefined });
  });

  it("an entity read by one owner, then two, then one again wakes exactly its readers", () => {
    const { m, e } = setup();
    const bump = (ip: string) => m.setPort("b", port("b", "net1", "fa:16:3e:00:00:0b", [["sub1", ip]]));
    e.setReactive("l2", "x", [shortcut()], [Dep.port("b")]);
    e.setReactive("l2", "y", [shortcut()], [Dep.port("b"), Dep.port("a")]);
    e.setReactive("l2", "z", [shortcut()], [Dep.port("a")]);
    // y leaves (its route expired): port b has one reader again, port a one
    e.dropReactive("l2/reactive/y");
    bump("10.0.0.20");
    e.recomputeChanged();
    expect(e.output("l2/reactive/x")).toBeUndefined();
    expect(e.output("l2/reactive/z")).toBeDefined();
    // the same owner listing an entity twice is one reader; a new reader after the last one left
    e.setReactive("l2", "x", [shortcut()], [Dep.port("b"), Dep.port("b")]);
    expect(e.depsOf("l2/reactive/x")).toEqual(new Set(["port:b"]));
    e.setReactive("l2", "w", [shortcut()], [Dep.port("b")]);
    bump("10.0.0.21");
    e.recomputeChanged();
    expect(e.output("l2/reactive/x")).toBeUndefined();
    expect(e.output("l2/reactive/w")).toBeUndefined();
    m.setPort("a", port("a", "net1", "fa:16:3e:00:00:0a", [["sub1", "10.0.0.30"]]));
    e.recomputeChanged();
    expect(e.output("l2/reactive/z")).toBeUndefined();
  });

  it("are dropped on a binding change of a port they depend on", () => {
    const { m, e } = setup();
    e.setReactive("l2", "a->b", [shortcut()], [Dep.binding("b")]);
    m.setBinding("b", binding("b", 7));
    e.recomputeChanged();
    expect(e.output("l2/reactive/a->b")).toBeUndefined();
  });

  it("survive a full recompute (they are not a function of the model)", () => {
    const { e } = setup();
    e.setReactive("l2", "a->b", [shortcut()], [Dep.port("a")]);
    e.recomputeAll();
    expect(e.output("l2/reactive/a->b")).toBeDefined();
  });

  it("are forgotten when the switch removed them, without a delete being sent", () => {
    const { e, r } = setup();
    const ch = e.setReactive("l2", "a->b", [shortcut()], [Dep.port("a")]);
    r.update([ch]);
    r.assumeInstalled([]);
    r.commitPlanned();
    const f = ch.after!.flows[0]!.flow;
    r.forgetInstalled(f);
    r.update([e.dropReactive("l2/reactive/a->b")!]);
    expect(r.planFlows()).toEqual([]);
  });

  it("a flow_removed drops the owners of exactly that flow, not others whose cookie collides", () => {
    const { e, r } = setup();
    // one cookie on two owners' flows, as a 32-bit hash collision of their owner keys would give
    const cookie = 0xfd06_1000_0000_0001n;
    const toB = shortcut().build(cookie);
    const toC = flow("l2_lookup", 200)
      .reg(F.network, 5)
      .eq("eth_dst", "fa:16:3e:00:00:0c")
      .load(F.outPort, 3)
      .goto("egress_secgroup")
      .idleTimeout(30)
      .sendFlowRemoved()
      .build(cookie);
    for (const [key, f] of [
      ["a->b", toB],
      ["a->c", toC],
    ] as const) {
      const owner = e.adoptReactive("l2", key, f, [Dep.port("a")]);
      r.update([{ owner, before: undefined, after: e.output(owner) }]);
    }
    r.assumeInstalled([toB, toC]);
    r.commitPlanned();
    const installed = r.installedCount();
    const removed = (f: Flow): FlowRemoved => ({
      type: "flow_removed",
      xid: 0,
      cookie: f.cookie,
      priority: f.priority,
      reason: 0,
      tableId: f.table,
      durationSec: 30,
      durationNsec: 0,
      idleTimeout: 30,
      hardTimeout: 0,
      packetCount: 1n,
      byteCount: 98n,
      match: f.match,
    });
    const changes = forgetRemovedFlow(removed(toB), e, r);
    expect(changes.map((c) => c.owner)).toEqual(["l2/reactive/a->b"]);
    r.update(changes);
    expect(e.output("l2/reactive/a->b")).toBeUndefined();
    expect(e.output("l2/reactive/a->c")?.flows).toHaveLength(1);
    // the switch removed it: nothing to delete, and the other flow stays as it is
    expect(r.planFlows()).toEqual([]);
    expect(r.installedCount()).toBe(installed - 1);
    expect(r.installedFlows()).toContain(toC);
    // a second flow_removed for the same flow finds no owner
    expect(forgetRemovedFlow(removed(toB), e, r)).toEqual([]);
    // a proactive cookie is none of its business
    expect(forgetRemovedFlow({ ...removed(toC), cookie: 0xfd06_0000_0000_0001n }, e, r)).toEqual([]);
    expect(e.output("l2/reactive/a->c")).toBeDefined();
    // a late flow_removed for a flow whose key another cookie's flow holds now: that one stays
    // installed (its owner's flow is gone, so the owner goes)
    const newcomer = { ...toC, cookie: 0xfd06_1000_0000_0002n };
    r.assumeInstalled([newcomer]);
    expect(forgetRemovedFlow(removed(toC), e, r).map((c) => c.owner)).toEqual(["l2/reactive/a->c"]);
    expect(r.installedFlows()).toEqual([newcomer]);
  });

  it("a flow_removed of the agent's own delete leaves the owner that installed the key again", async () => {
    const { e, r } = setup();
    r.assumeInstalled([]);
    r.commitPlanned();
    // just enough of a session for the fast path: writes go nowhere, barriers are answered at once
    let xid = 0;
    const conn = {
      label: "fake",
      allocXid: () => ++xid,
      sendAll: async (ms: unknown[]) => ms.map(() => ++xid),
      barrier: async () => undefined,
      on: () => undefined,
    } as unknown as OfConnection;
    const first = e.setReactive("l2", "a->b", [shortcut()], [Dep.port("a")]);
    await r.pushNow(conn, [first]);
    // a dependency changes (the route goes) and the next packet asks for it again
    const gone = e.dropReactive("l2/reactive/a->b")!;
    await r.pushNow(conn, [gone]);
    const again = e.setReactive("l2", "a->b", [shortcut()], [Dep.port("a")]);
    await r.pushNow(conn, [again]);
    const f = again.after!.flows[0]!.flow;
    const removed: FlowRemoved = {
      type: "flow_removed",
      xid: 0,
      cookie: f.cookie,
      priority: f.priority,
      reason: OFPRR.DELETE,
      tableId: f.table,
      durationSec: 0,
      durationNsec: 0,
      idleTimeout: 30,
      hardTimeout: 0,
      packetCount: 0n,
      byteCount: 0n,
      match: f.match,
    };
    // the delete's flow_removed comes after the re-add: nothing to forget, nobody to drop
    expect(forgetRemovedFlow(removed, e, r)).toEqual([]);
    expect(e.output("l2/reactive/a->b")?.flows).toHaveLength(1);
    expect(r.installedFlows()).toContain(f);
    // its expiry later drops it
    const expired = { ...removed, reason: OFPRR.IDLE_TIMEOUT, durationSec: 30 };
    expect(forgetRemovedFlow(expired, e, r).map((c) => c.owner)).toEqual(["l2/reactive/a->b"]);
    expect(r.installedFlows()).not.toContain(f);
  });

  it("can be adopted after a restart with their dependencies, then dropped like the others", () => {
    const { m, e } = setup();
    const f = shortcut().build(0xfd06_1000_0000_0001n);
    const owner = e.adoptReactive("l2", "a->b", f, [Dep.port("b")]);
    expect(e.output(owner)?.flows).toHaveLength(1);
    m.setPort("b", undefined);
    e.recomputeChanged();
    expect(e.output(owner)).toBeUndefined();
  });

  it("refuse a flow in a table the app did not declare", () => {
    const { e } = setup();
    expect(() => e.setReactive("l2", "x", [flow("dhcp", 1)], [])).toThrow(/not in its tables/);
  });
});
