/**
 * The engine (src/controller/engine.ts) with small stand-in apps instead of
 * the real ones, so that each rule is seen on its own: the pipeline owner's
 * miss flows and host punt meter, when a rebuild reports a change and what
 * it reports as before/after, which owners a model change rebuilds (its
 * dependants and the owners *of* a changed port, network or router), that a
 * rebuilt owner's old dependencies stop waking it, an app that throws or
 * writes outside its tables costing only that owner, and the reactive
 * owners' bookkeeping. The real apps' tests see these only through flows.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { App, OwnerKind, View } from "../../src/apps/types.js";
import {
  AppBuildError,
  Engine,
  desiredFlow,
  flowSig,
  ownerKey,
  type OwnerChange,
} from "../../src/controller/engine.js";
import {
  CONTROLLER_METER,
  MISS_PRIORITY,
  PIPELINE,
  cookieFor,
  flow,
  table,
  type TableName,
} from "../../src/datapath/index.js";
import { flowKey } from "../../src/openflow/flow.js";
import { formatInstructions } from "../../src/openflow/text.js";
import { logger } from "../../src/util/log.js";
import { binding, net, newModel, port, router } from "../harness/model-fixture.js";

/** What an owner's stand-in builder does: a function of the view, set per test. */
type Builder = (id: string, view: View, out: Parameters<NonNullable<App["owners"]["port"]>>[2]) => void;

function app(name: "l2" | "arp", owners: Partial<Record<OwnerKind, Builder>>): App {
  return { name, tables: ["l2_lookup"], owners };
}

/** A flow at `prio` in l2_lookup, one per port, with output `port`. */
const l2 = (prio: number, out = 1) => flow("l2_lookup", prio).eq("eth_dst", "fa:16:3e:00:00:01").output(out);

const summary = (cs: OwnerChange[]) =>
  cs
    .map(
      (c) => `${c.owner} ${c.before ? c.before.flows.length : "-"}→${c.after ? c.after.flows.length : "-"}`,
    )
    .sort();

describe("engine: keys and signatures", () => {
  it("an owner key is app/kind/id; a flow's signature is everything but its identity", () => {
    expect(ownerKey("l2", "port", "vm1")).toBe("l2/port/vm1");
    const f = l2(10).idleTimeout(30).hardTimeout(60).sendFlowRemoved().build(5n);
    expect(flowSig(f)).toBe(`5|30|60|1|${formatInstructions(f.instructions)}`);
    expect(flowSig(l2(10).build(5n))).toBe(`5|0|0|0|${formatInstructions(f.instructions)}`);
    const d = desiredFlow("o", f);
    expect({ owner: d.owner, flow: d.flow, key: d.key, sig: d.sig }).toEqual({
      owner: "o",
      flow: f,
      key: flowKey(f),
      sig: flowSig(f),
    });
  });

  it("a desired flow's signature is worked out when first read, and once", () => {
    const f = l2(10).build(5n);
    const d = desiredFlow("o", f);
    const held = () => Object.values(d).filter((v) => typeof v === "string");
    // not yet: the object holds no signature text until something compares it
    expect(held()).toEqual(["o", flowKey(f)]);
    const first = d.sig;
    expect(first).toBe(flowSig(f));
    expect(held()).toContain(first);
    expect(d.sig).toBe(first);
  });
});

describe("engine: the pipeline owner", () => {
  it("gives every table its miss flow, and the host punt meter only when a budget is set", () => {
    const m = newModel();
    const e = new Engine(m, []);
    const [ch] = e.recomputeAll();
    expect(ch!.owner).toBe("pipeline/global/");
    expect(ch!.before).toBeUndefined();
    const flows = ch!.after!.flows;
    expect(flows.map((d) => d.flow.table)).toEqual(PIPELINE.map((t) => t.id));
    for (const [i, t] of PIPELINE.entries()) {
      const f = flows[i]!.flow;
      expect(f.priority).toBe(MISS_PRIORITY);
      expect(f.match).toEqual([]);
      expect(f.cookie).toBe(cookieFor("pipeline", "global/"));
      expect(formatInstructions(f.instructions)).toBe(
        t.miss === "drop" ? "drop" : `goto_table:${table(t.miss.goto as TableName)}`,
      );
    }
    expect(ch!.after!.meters).toEqual([]);
    expect(new Engine(m, [], { switchPuntPps: 0 }).recomputeAll()[0]!.after!.meters).toEqual([]);
    expect(new Engine(m, [], { switchPuntPps: 500 }).recomputeAll()[0]!.after!.meters).toEqual([
      { owner: "pipeline/global/", id: CONTROLLER_METER, ratePps: 500 },
    ]);
  });
});

describe("engine: rebuilding owners", () => {
  it("reports a change only when the output differs, with an empty side as undefined", () => {
    const m = newModel();
    let prio = 10;
    let out = 1;
    let meter: [number, number] | undefined;
    let flows = 1;
    const a = app("l2", {
      global: (_id, v, o) => {
        v.tunnelPort("geneve");
        for (let i = 0; i < flows; i++) o.flow(l2(prio + i, out));
        if (meter) o.meter(...meter);
      },
    });
    const e = new Engine(m, [a]);
    expect(summary(e.recomputeAll())).toEqual(["l2/global/ -→1", `pipeline/global/ -→${PIPELINE.length}`]);
    // a rebuild of the owner, through a change of what it reads
    let tick = 0;
    const again = () => {
      m.setTunnelPorts({ geneve: ++tick });
      return e.recomputeChanged();
    };
    // the same output: no change
    expect(again()).toEqual([]);
    // same key, other actions (signature): a change
    out = 2;
    expect(summary(again())).toEqual(["l2/global/ 1→1"]);
    // another priority (key): a change
    prio = 11;
    expect(summary(again())).toEqual(["l2/global/ 1→1"]);
    // one flow more: a change
    flows = 2;
    expect(summary(again())).toEqual(["l2/global/ 1→2"]);
    // a meter appears, its rate changes, its id changes: each a change
    meter = [7, 100];
    expect(again().map((c) => c.after!.meters)).toEqual([[{ owner: "l2/global/", id: 7, ratePps: 100 }]]);
    meter = [7, 200];
    expect(again()).toHaveLength(1);
    meter = [8, 200];
    expect(again()).toHaveLength(1);
    expect(again()).toEqual([]);
    // nothing left: after is undefined, the owner stays (it has dependencies)
    flows = 0;
    meter = undefined;
    const gone = again();
    expect(gone).toHaveLength(1);
    expect(gone[0]!.before!.flows).toHaveLength(2);
    expect(gone[0]!.after).toBeUndefined();
    expect(e.depsOf("l2/global/")).toEqual(new Set(["tunnels"]));
    // and back: before is undefined
    flows = 1;
    const back = again();
    expect(back[0]!.before).toBeUndefined();
    expect(back[0]!.after!.flows).toHaveLength(1);
    expect(e.stats.incrementalRecomputes).toBe(10);
    expect(e.stats.fullRecomputes).toBe(1);
  });

  it("keeps an owner with dependencies and no output, and forgets one with neither", () => {
    const m = newModel();
    const e = new Engine(m, [
      app("l2", { port: (id, v) => void v.port(id) }),
      app("arp", { port: () => {} }),
    ]);
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    e.recomputeAll();
    expect([...e.ownerKeys()].sort()).toEqual(["l2/port/p", "pipeline/global/"]);
    expect(e.ownerCount).toBe(2);
    expect(e.output("l2/port/p")).toEqual({ flows: [], meters: [] });
    expect(e.output("arp/port/p")).toBeUndefined();
    expect(e.depsOf("arp/port/p")).toBeUndefined();
  });

  it("rebuilds the dependants of a change and the owners of a changed port, binding, network or router", () => {
    const m = newModel();
    const built: string[] = [];
    const rec =
      (kind: string, read?: (id: string, v: View) => void): Builder =>
      (id, v, o) => {
        built.push(`${kind}/${id}`);
        read?.(id, v);
        o.flow(l2(1));
      };
    const e = new Engine(m, [
      app("l2", {
        port: rec("port"),
        network: rec("network"),
        router: rec("router"),
        global: rec("global", (_id, v) => v.chassisInfo("host9")),
      }),
    ]);
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    m.setNetwork("n", net("n"));
    m.setRouter("r", router("r", []));
    e.recomputeAll();
    expect(built.sort()).toEqual(["global/", "network/n", "port/p", "router/r"]);
    const step = (change: () => void): string[] => {
      built.length = 0;
      change();
      e.recomputeChanged();
      return built.sort();
    };
    // none of the owners read its own object, yet each is rebuilt when it changes
    expect(step(() => m.setPort("p", port("p", "n", "fa:16:3e:00:00:02", [])))).toEqual(["port/p"]);
    expect(step(() => m.setBinding("p", binding("p", 3)))).toEqual(["port/p"]);
    expect(step(() => m.setNetwork("n", net("n", { segmentationId: 4 })))).toEqual(["network/n"]);
    expect(step(() => m.setRouter("r", router("r", [], { name: "x" })))).toEqual(["router/r"]);
    // a new port gets its owner at once
    expect(step(() => m.setPort("q", port("q", "n", "fa:16:3e:00:00:03", [])))).toEqual(["port/q"]);
    // an entity of no owner kind wakes its dependants only
    expect(step(() => m.setChassis("host9", undefined))).toEqual([]);
    expect(step(() => m.setAlive("host9", true))).toEqual(["global/"]);
    expect(step(() => m.setTunnelPorts({ geneve: 1 }))).toEqual([]);
    // nothing changed: no recompute counted
    const before = e.stats.incrementalRecomputes;
    expect(e.recomputeChanged()).toEqual([]);
    expect(e.stats.incrementalRecomputes).toBe(before);
  });

  it("an owner whose dependencies change is woken by the new ones only", () => {
    const m = newModel();
    let reads = ["a", "b"];
    let builds = 0;
    const e = new Engine(m, [
      app("l2", {
        global: (_id, v, o) => {
          builds++;
          for (const id of reads) v.port(id);
          o.flow(l2(1));
        },
      }),
    ]);
    e.recomputeAll();
    expect(e.depsOf("l2/global/")).toEqual(new Set(["port:a", "port:b"]));
    reads = ["b", "c"];
    m.setPort("a", port("a", "n", "fa:16:3e:00:00:01", []));
    e.recomputeChanged();
    expect(builds).toBe(2);
    expect(e.depsOf("l2/global/")).toEqual(new Set(["port:b", "port:c"]));
    // a no longer wakes it; b and c do
    m.setPort("a", undefined);
    e.recomputeChanged();
    expect(builds).toBe(2);
    m.setPort("c", port("c", "n", "fa:16:3e:00:00:03", []));
    e.recomputeChanged();
    expect(builds).toBe(3);
    m.setPort("b", port("b", "n", "fa:16:3e:00:00:02", []));
    e.recomputeChanged();
    expect(builds).toBe(4);
    // and the pipeline owner's one build, in the full recompute
    expect(e.stats.builds).toBe(5);
  });

  it("a full recompute drops owners whose object is gone, and keeps reactive ones", () => {
    const m = newModel();
    const e = new Engine(m, [app("l2", { port: (id, _v, o) => o.flow(l2(1, id === "p" ? 1 : 2)) })]);
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    m.setPort("q", port("q", "n", "fa:16:3e:00:00:02", []));
    expect(summary(e.recomputeAll())).toEqual([
      "l2/port/p -→1",
      "l2/port/q -→1",
      `pipeline/global/ -→${PIPELINE.length}`,
    ]);
    e.setReactive("l2", "k", [l2(5)], []);
    m.setPort("q", undefined);
    expect(summary(e.recomputeAll())).toEqual(["l2/port/q 1→-"]);
    expect(e.output("l2/port/q")).toBeUndefined();
    expect(e.output("l2/reactive/k")).toBeDefined();
    expect(e.recomputeAll()).toEqual([]);
    expect(e.stats.fullRecomputes).toBe(3);
  });
});

describe("engine: an app that fails", () => {
  it("costs that owner its flows, is recorded with its message, and builds again once fixed", () => {
    const m = newModel();
    let fail: "throw" | "table" | undefined = "throw";
    const e = new Engine(m, [
      app("l2", {
        port: (id, v, o) => {
          v.port(id);
          o.flow(l2(1));
          if (fail === "throw") throw new Error(`no ${id}`);
          if (fail === "table") o.flow(flow("dhcp", 1));
        },
      }),
    ]);
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    e.recomputeAll();
    expect(e.output("l2/port/p")).toEqual({ flows: [], meters: [] });
    expect([...e.errors]).toEqual([["l2/port/p", "no p"]]);
    fail = "table";
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:02", []));
    expect(e.recomputeChanged()).toEqual([]);
    expect([...e.errors]).toEqual([["l2/port/p", "app l2 wrote table dhcp, not in its tables"]]);
    fail = undefined;
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:03", []));
    expect(summary(e.recomputeChanged())).toEqual(["l2/port/p -→1"]);
    expect(e.errors.size).toBe(0);
    // a failing owner that is removed leaves no error behind
    fail = "throw";
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:04", []));
    e.recomputeChanged();
    expect(e.errors.size).toBe(1);
    m.setPort("p", undefined);
    e.recomputeAll();
    expect(e.errors.size).toBe(0);
  });

  it("the pipeline owner and other owners are untouched by one app's failure", () => {
    const m = newModel();
    const e = new Engine(m, [
      app("l2", {
        port: () => {
          throw new Error("bad");
        },
      }),
      app("arp", { port: (_id, _v, o) => o.flow(l2(2)) }),
    ]);
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    expect(summary(e.recomputeAll())).toEqual(["arp/port/p -→1", `pipeline/global/ -→${PIPELINE.length}`]);
    expect(e.allFlows()).toHaveLength(PIPELINE.length + 1);
  });
});

describe("engine: reactive owners", () => {
  it("set, replaced, adopted and dropped; only reactive owners are dropped that way", () => {
    const m = newModel();
    const e = new Engine(m, [app("l2", { global: (_id, _v, o) => o.meter(3, 10) })]);
    e.recomputeAll();
    const first = e.setReactive("l2", "k", [l2(5)], ["port:a"]);
    expect(first.owner).toBe("l2/reactive/k");
    expect(first.before).toBeUndefined();
    expect(first.after!.flows.map((d) => d.flow.cookie)).toEqual([cookieFor("l2", "reactive/k", "reactive")]);
    const second = e.setReactive("l2", "k", [l2(6), l2(7)], ["port:b"]);
    expect(second.before).toBe(first.after);
    expect(e.depsOf("l2/reactive/k")).toEqual(new Set(["port:b"]));
    // a change of its old dependency no longer drops it
    m.setPort("a", port("a", "n", "fa:16:3e:00:00:01", []));
    expect(e.recomputeChanged()).toEqual([]);
    const f = l2(8).build(cookieFor("l2", "reactive/k", "reactive"));
    expect(e.adoptReactive("l2", "k", f, ["port:b"])).toBe("l2/reactive/k");
    expect(e.output("l2/reactive/k")!.flows.map((d) => d.flow.priority)).toEqual([6, 7, 8]);
    expect(e.adoptReactive("l2", "j", f, [])).toBe("l2/reactive/j");
    expect(e.output("l2/reactive/j")!.flows).toHaveLength(1);
    expect(e.allMeters()).toEqual([{ owner: "l2/global/", id: 3, ratePps: 10 }]);
    expect(e.dropReactive("l2/global/")).toBeUndefined();
    expect(e.output("l2/global/")).toBeDefined();
    expect(e.dropReactive("nobody")).toBeUndefined();
    const dropped = e.dropReactive("l2/reactive/k");
    expect(dropped?.before?.flows).toHaveLength(3);
    expect(dropped?.after).toBeUndefined();
    expect(e.output("l2/reactive/k")).toBeUndefined();
    // dropped by its dependency: the change has its flows; an empty one goes without a change
    e.setReactive("l2", "e", [], ["port:b"]);
    m.setPort("b", port("b", "n", "fa:16:3e:00:00:02", []));
    expect(e.recomputeChanged()).toEqual([]);
    expect(e.output("l2/reactive/e")).toBeUndefined();
    e.setReactive("l2", "x", [l2(9)], ["port:b"]);
    m.setPort("b", undefined);
    expect(summary(e.recomputeChanged())).toEqual(["l2/reactive/x 1→-"]);
  });

  it("an app without declared tables cannot set reactive flows; the error names the table", () => {
    const e = new Engine(newModel(), []);
    expect(() => e.setReactive("l2", "k", [l2(5)], [])).toThrow(AppBuildError);
    expect(() => e.setReactive("l2", "k", [l2(5)], [])).toThrow(
      "app l2 wrote table l2_lookup, not in its tables",
    );
  });
});

// Added after StrykerJS's run over engine.ts (test/mutation/controller.md).
describe("engine: edges found by mutation testing", () => {
  afterEach(() => vi.restoreAllMocks());

  it("logs an owner's failure once per distinct message, and when it builds again", () => {
    const elog = logger("engine");
    const error = vi.spyOn(elog, "error");
    const info = vi.spyOn(elog, "info");
    const m = newModel();
    let msg: string | undefined = "first";
    const e = new Engine(m, [
      app("l2", {
        port: (id, v) => {
          v.port(id);
          if (msg) throw new Error(msg);
        },
      }),
    ]);
    const touch = (n: number) => m.setPort("p", port("p", "n", `fa:16:3e:00:00:0${n}`, []));
    touch(1);
    e.recomputeAll();
    touch(2);
    e.recomputeChanged();
    msg = "second";
    touch(3);
    e.recomputeChanged();
    expect(error.mock.calls).toEqual([
      [{ owner: "l2/port/p", err: "first" }, "app failed to build an owner"],
      [{ owner: "l2/port/p", err: "second" }, "app failed to build an owner"],
    ]);
    expect(info).not.toHaveBeenCalled();
    msg = undefined;
    touch(4);
    e.recomputeChanged();
    expect(info.mock.calls).toEqual([[{ owner: "l2/port/p" }, "owner builds again"]]);
  });

  it("a full recompute drops an owner that had dependencies but no output without reporting a change", () => {
    const m = newModel();
    const e = new Engine(m, [app("l2", { port: (id, v) => void v.port(id) })]);
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    e.recomputeAll();
    expect(e.output("l2/port/p")).toBeDefined();
    m.setPort("p", undefined);
    expect(e.recomputeAll()).toEqual([]);
    expect(e.output("l2/port/p")).toBeUndefined();
  });
});
