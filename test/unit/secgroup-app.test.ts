/**
 * The secgroup app's flows for small models: port ranges as masked matches,
 * rules per conntrack state, remote groups as conjunctive matches with one
 * member flow per address, merged clauses, what lifts the filtering — and,
 * after each membership or rule change, incremental output equal to a full
 * recompute. Also the figure the README quotes: one port whose group has 20
 * rules naming a 100-member remote group.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { portRangeMasks } from "../../src/apps/secgroup.js";
import { Engine } from "../../src/controller/engine.js";
import { table } from "../../src/datapath/index.js";
import type { LocalModel } from "../../src/controller/model.js";
import { parseObject, type Secgroup } from "../../src/nb/model/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import { binding, net, newModel, port, subnet } from "../harness/model-fixture.js";

function group(id: string, rules: Record<string, unknown>[]): Secgroup {
  return parseObject("secgroup", { id, tenantId: "t1", rules }, id);
}

function world(): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 5 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.0.0.0/24"));
  return m;
}

const mac = (i: number): string =>
  `fa:16:3e:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;

function addPort(m: LocalModel, id: string, i: number, groups: string[], ofport?: number): void {
  m.setPort(
    id,
    port(id, "net1", mac(i), [["sub1", `10.0.${i >> 8}.${i & 255}`]], { securityGroups: groups }),
  );
  if (ofport !== undefined) m.setBinding(id, binding(id, ofport));
}

/** Every flow of the secgroup app, as dump-flows lines (cookie left out), by owner. */
function lines(e: Engine): string[] {
  return e
    .allFlows()
    .filter((d) => d.owner.startsWith("secgroup/"))
    .map((d) => `${d.owner} ${formatFlow({ ...d.flow, cookie: 0n })}`)
    .sort();
}

function fullRecompute(m: LocalModel): string[] {
  const e = new Engine(m, loadApps(["secgroup"]));
  e.recomputeAll();
  return lines(e);
}

describe("port ranges as masked matches", () => {
  it("splits into the largest aligned blocks", () => {
    expect(portRangeMasks(22, 22)).toEqual([{ value: 22, mask: 0xffff }]);
    expect(portRangeMasks(0, 65535)).toEqual([{ value: 0, mask: 0 }]);
    expect(portRangeMasks(1024, 65535)).toHaveLength(6);
    expect(portRangeMasks(8000, 8080)).toEqual([
      { value: 8000, mask: 0xffc0 },
      { value: 8064, mask: 0xfff0 },
      { value: 8080, mask: 0xffff },
    ]);
  });

  it("covers exactly [min, max] for random ranges", () => {
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 40; i++) {
      const a = rnd(65536);
      const b = rnd(65536);
      const [min, max] = a <= b ? [a, b] : [b, a];
      const blocks = portRangeMasks(min, max);
      // at most two blocks per bit of the range, and the blocks do not overlap
      expect(blocks.length).toBeLessThanOrEqual(32);
      const covered = (p: number): number => blocks.filter((x) => (p & x.mask) === x.value).length;
      for (const p of [min, max, min - 1, max + 1, (min + max) >> 1, rnd(65536)]) {
        if (p < 0 || p > 65535) continue;
        expect(covered(p), `port ${p} in [${min}, ${max}]`).toBe(p >= min && p <= max ? 1 : 0);
      }
    }
  });
});

describe("secgroup flows", () => {
  it("a port without groups, or on a network without port security, gets no per-port flow", () => {
    const m = world();
    m.setSecgroup(
      "g",
      group("g", [{ id: "r", direction: "ingress", protocol: "tcp", portRangeMin: 22, portRangeMax: 22 }]),
    );
    addPort(m, "a", 10, [], 1);
    addPort(m, "b", 11, ["g"], 2);
    const e = new Engine(m, loadApps(["secgroup"]));
    e.recomputeAll();
    expect(lines(e).filter((l) => l.startsWith("secgroup/port/a "))).toEqual([]);
    expect(lines(e).filter((l) => l.startsWith("secgroup/port/b ")).length).toBeGreaterThan(0);
    m.setNetwork("net1", net("net1", { segmentationId: 5, portSecurityEnabled: false }));
    e.recomputeChanged();
    expect(lines(e).filter((l) => l.startsWith("secgroup/port/"))).toEqual([]);
    expect(lines(e)).toEqual(fullRecompute(m));
  });

  it("the engine knows which ports' packets meet conntrack before a table, as groups come and go", () => {
    const m = world();
    m.setSecgroup("g", group("g", [{ id: "r", direction: "ingress", protocol: "icmp" }]));
    addPort(m, "a", 10, [], 1);
    addPort(m, "b", 11, ["g"], 2);
    const e = new Engine(m, loadApps(["secgroup"]));
    e.recomputeAll();
    const l3 = table("l3");
    expect([e.conntrackBefore(l3, 1), e.conntrackBefore(l3, 2)]).toEqual([false, true]);
    // the lookup is in ingress_secgroup itself: nothing meets it before that table
    expect(e.conntrackBefore(table("ingress_secgroup"), 2)).toBe(false);
    expect(e.conntrackBefore(table("ingress_secgroup_state"), 2)).toBe(true);
    addPort(m, "a", 10, ["g"], 1);
    addPort(m, "b", 11, [], 2);
    e.recomputeChanged();
    expect([e.conntrackBefore(l3, 1), e.conntrackBefore(l3, 2)]).toEqual([true, false]);
    m.setNetwork("net1", net("net1", { segmentationId: 5, portSecurityEnabled: false }));
    e.recomputeChanged();
    expect([e.conntrackBefore(l3, 1), e.conntrackBefore(l3, 2)]).toEqual([false, false]);
  });

  it("a rule becomes one flow per state and port block; replies and related are global", () => {
    const m = world();
    m.setSecgroup(
      "g",
      group("g", [
        {
          id: "web",
          direction: "ingress",
          protocol: "tcp",
          portRangeMin: 8000,
          portRangeMax: 8080,
          remoteIpPrefix: "192.0.2.0/24",
        },
      ]),
    );
    addPort(m, "a", 10, ["g"], 3);
    const e = new Engine(m, loadApps(["secgroup"]));
    e.recomputeAll();
    const rule = lines(e).filter((l) => l.includes("priority=1001,"));
    expect(rule).toHaveLength(3 * 3);
    expect(
      rule.every((l) => l.includes("table=56, priority=1001") && l.includes("nw_src=192.0.2.0/24")),
    ).toBe(true);
    expect(rule.filter((l) => l.includes("ct_state=+new+trk"))).toHaveLength(3);
    // new connections are committed, established ones pass, blocked ones are committed afresh
    expect(rule.filter((l) => l.includes("+new") && l.includes("ct(commit,zone=3"))).toHaveLength(3);
    const global = lines(e).filter((l) => l.startsWith("secgroup/global/"));
    expect(global.filter((l) => /ct_state=\+est\+rpl\+trk,ct_mark=0(x0)?\/0x1 /.test(l))).toHaveLength(2);
    // default deny marks what the rules no longer allow
    expect(
      lines(e).filter((l) => l.includes("priority=10,") && l.includes("load:0x1->NXM_NX_CT_MARK[0]")),
    ).toHaveLength(4);
  });

  it("remote groups: conjunctions, one member flow per address, follows membership incrementally", () => {
    const m = world();
    m.setSecgroup(
      "web",
      group("web", [
        {
          id: "a",
          direction: "ingress",
          protocol: "tcp",
          portRangeMin: 22,
          portRangeMax: 22,
          remoteGroupId: "clients",
        },
        {
          id: "b",
          direction: "ingress",
          protocol: "tcp",
          portRangeMin: 22,
          portRangeMax: 22,
          remoteGroupId: "admins",
        },
      ]),
    );
    m.setSecgroup("clients", group("clients", []));
    m.setSecgroup("admins", group("admins", []));
    addPort(m, "srv", 1, ["web"], 5);
    addPort(m, "c1", 2, ["clients"]);
    addPort(m, "c2", 3, ["clients", "admins"]);
    const e = new Engine(m, loadApps(["secgroup"]));
    e.recomputeAll();
    // rules a and b have the same clause 1: one flow per state carries both conjunctions
    const clause1 = lines(e).filter((l) => l.includes("tp_dst=22"));
    expect(clause1).toHaveLength(3);
    expect(clause1.every((l) => /conjunction\(\d+,1\/2\),conjunction\(\d+,1\/2\)/.test(l))).toBe(true);
    // c2 is in both groups: its address flow carries the ids of both rules (3 states each)
    const member = (ip: string) => lines(e).filter((l) => l.includes(`nw_src=${ip} `));
    expect(member("10.0.0.3")).toHaveLength(1);
    expect(member("10.0.0.3")[0]!.match(/,2\/2\)/g)).toHaveLength(6);
    expect(member("10.0.0.2")[0]!.match(/,2\/2\)/g)).toHaveLength(3);
    // c1 leaves, c3 joins: its address comes, c1's goes; incremental equals full
    addPort(m, "c1", 2, []);
    addPort(m, "c3", 4, ["admins"]);
    e.recomputeChanged();
    expect(member("10.0.0.2")).toEqual([]);
    expect(member("10.0.0.4")).toHaveLength(1);
    expect(lines(e)).toEqual(fullRecompute(m));
    // a rule removed: its ids leave the member flows
    m.setSecgroup(
      "web",
      group("web", [
        {
          id: "a",
          direction: "ingress",
          protocol: "tcp",
          portRangeMin: 22,
          portRangeMax: 22,
          remoteGroupId: "clients",
        },
      ]),
    );
    e.recomputeChanged();
    expect(member("10.0.0.4")).toEqual([]);
    expect(lines(e)).toEqual(fullRecompute(m));
  });

  it("the README figure: 20 rules naming a 100-member group cost 100 member flows, not 2,000", () => {
    const m = world();
    const rules = Array.from({ length: 20 }, (_, i) => ({
      id: `r${i}`,
      direction: "ingress",
      protocol: "tcp",
      portRangeMin: 1000 + i,
      portRangeMax: 1000 + i,
      remoteGroupId: "peers",
    }));
    m.setSecgroup("peers", group("peers", rules));
    for (let i = 0; i < 100; i++) addPort(m, `p${i}`, 10 + i, ["peers"], i === 0 ? 1 : undefined);
    const e = new Engine(m, loadApps(["secgroup"]));
    e.recomputeAll();
    const all = lines(e);
    const memberFlows = all.filter(
      (l) => / nw_src=10\.0\.0\.\d+ /.test(l) || /,nw_src=10\.0\.0\.\d+ actions=conj/.test(l),
    );
    expect(memberFlows).toHaveLength(100);
    const perPort = all.filter((l) => l.startsWith("secgroup/port/p0 "));
    // per rule: 3 clause-1 flows and 3 conj_id flows; plus implicit, dispatch and deny flows
    expect(perPort.filter((l) => l.includes("conjunction("))).toHaveLength(60);
    expect(perPort.filter((l) => l.includes("conj_id="))).toHaveLength(60);
    expect(all.length).toBeLessThan(400);
  });
});
