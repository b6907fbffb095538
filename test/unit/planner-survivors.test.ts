/**
 * Cases for the mutants of `src/offload/planner` that survived the directory
 * run at 4686ff2 (test/mutation/planner.md): each test states a behaviour of
 * the planner that one of those mutants breaks. Where the split datapath could
 * then decide a packet differently, the test runs both evaluators on such a
 * packet; where the mutant is only conservative (more in OVS than needed) or
 * cosmetic, it asserts the plan itself — the decision, the chain, the tc
 * actions — that the mutant changes.
 */
import { describe, expect, it } from "vitest";
import { type Packet, runSoftware, traceSplit } from "../../src/offload/planner/evaluate.js";
import { exact, type Match, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { type Exclusion, OffloadPlanner, type Plan } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions } from "../harness/planner-pipeline.js";

const cx6 = profileById("connectx-6-dx");
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
    [3, "rep3"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};
const rule = (
  id: string,
  table: number,
  priority: number,
  match: Match,
  actions: PipelineRule["actions"],
): PipelineRule => ({ id, table, priority, match, actions });
const plan = (rules: PipelineRule[]): Plan => OffloadPlanner.plan({ rules, profile: cx6, ports });
const offloaded = (p: Plan, id: string): boolean => p.decisions.get(id)!.offloaded;
const ip = { eth_type: exact("eth_type", 0x800) };
const MAC = 0x020000000002n;
const ROUTER = 0xfa163e000001n;
const trk = 0x20n;

describe("chains after a rewrite to zero", () => {
  it("a header set to 0 is a known value: its chain is not the chain of packets that kept theirs", () => {
    const rules = [
      rule("zero", 0, 200, { in_port: exact("in_port", 1) }, [
        { type: "set_field", field: "eth_src", value: 0n },
        { type: "goto", table: 10 },
      ]),
      rule("plain", 0, 100, { in_port: exact("in_port", 2) }, [{ type: "goto", table: 10 }]),
      rule("from-mac", 10, 100, { eth_src: exact("eth_src", MAC) }, [{ type: "output", port: 3 }]),
    ];
    const p = plan(rules);
    expect(p.chains.filter((c) => c.table === 10).map((c) => c.known)).toEqual([{ eth_src: 0n }, undefined]);
    // a packet of port 2 keeps its source MAC: it must meet from-mac, not a chain where it is known to be 0
    const fromPort2 = { in_port: 2n, eth_src: MAC };
    expect(runSoftware(rules, ports, fromPort2)).toMatchObject([{ kind: "output", port: 3 }]);
    expectSameDecisions(p, rules, ports, [fromPort2, { in_port: 1n, eth_src: MAC }]);
  });
});

describe("VLAN push and pop forget the tag a rule set before them", () => {
  it("after set_field vlan_vid and pop_vlan, a rule for untagged frames still matches", () => {
    const rules = [
      rule("retag-pop", 0, 100, { in_port: exact("in_port", 1) }, [
        { type: "set_field", field: "vlan_vid", value: 0x1005n },
        { type: "set_field", field: "vlan_pcp", value: 3n },
        { type: "pop_vlan" },
        { type: "goto", table: 10 },
      ]),
      rule("untagged", 10, 100, { vlan_vid: { value: 0n, mask: 0x1000n } }, [{ type: "output", port: 2 }]),
    ];
    const p = plan(rules);
    // neither the VID nor the PCP of a tag that is gone is known in the chain after it
    expect(p.chains.find((c) => c.table === 10)!.known).toBeUndefined();
    const tagged = { in_port: 1n, vlan_vid: 0x1009n, vlan_pcp: 1n };
    expect(runSoftware(rules, ports, tagged)).toMatchObject([{ kind: "output", port: 2 }]);
    expectSameDecisions(p, rules, ports, [tagged]);
  });

  it("after set_field vlan_vid and push_vlan, a rule for the pushed VID still matches", () => {
    const rules = [
      rule("retag-push", 0, 100, { in_port: exact("in_port", 2) }, [
        { type: "set_field", field: "vlan_vid", value: 0x1005n },
        { type: "set_field", field: "vlan_pcp", value: 3n },
        { type: "push_vlan", vid: 7 },
        { type: "goto", table: 20 },
      ]),
      rule("vid7", 20, 100, { vlan_vid: exact("vlan_vid", 0x1007) }, [{ type: "output", port: 3 }]),
    ];
    const p = plan(rules);
    // the new tag's PCP is the outer tag's if there was one, 0 if not: the planner does not follow which
    expect(p.chains.find((c) => c.table === 20)!.known).toBeUndefined();
    expect(offloaded(p, "retag-push")).toBe(true);
    const tagged = { in_port: 2n, vlan_vid: 0x1009n };
    expect(runSoftware(rules, ports, tagged)).toMatchObject([{ kind: "output", port: 3 }]);
    expect(traceSplit(p, rules, ports, tagged)).toMatchObject({ software: false, events: [{ port: 3 }] });
    expectSameDecisions(p, rules, ports, [tagged]);
  });
});

/*
 * A hairpin guard (the trap for packets of a device a rule also outputs to) hands packets to OVS
 * only for devices that enter its chain; which devices do decides whether a rewrite before it
 * may stay on the NIC. OVS would run the rewrite (here a dec_ttl) a second time on a packet the
 * NIC rewrote and then handed over, so a guard taken for dead when it is not shows as a TTL
 * decremented twice.
 */
describe("the devices that reach a chain", () => {
  const flood = (id: string, table: number, ...out: number[]) =>
    rule(
      id,
      table,
      100,
      {},
      out.map((port) => ({ type: "output" as const, port })),
    );
  const decTo = (id: string, match: Match, table: number) =>
    rule(id, 0, 100, { ...ip, ...match }, [{ type: "dec_ttl" }, { type: "goto", table }]);
  const v4 = (in_port: bigint): Packet => ({ in_port, eth_type: 0x800n, nw_ttl: 64n });

  it("every device, after a rule for every port: the hairpin guards are live and the rewrite stays in OVS", () => {
    const rules = [decTo("dec", {}, 10), flood("flood", 10, 1, 2)];
    const p = plan(rules);
    expect(offloaded(p, "dec")).toBe(false);
    expect(p.decisions.get("dec")!.reason).toMatch(
      /rewrites the packet and a later table may hand the packet/,
    );
    expect(runSoftware(rules, ports, v4(1n))).toEqual([
      { kind: "output", port: 2, packet: { eth_type: "800", nw_ttl: "3f" } },
    ]);
    expectSameDecisions(p, rules, ports, [v4(1n), v4(2n), v4(3n)]);
  });

  it("the devices of every way into a chain: a guard for the second one is live", () => {
    const rules = [
      decTo("a", { in_port: exact("in_port", 1) }, 10),
      decTo("b", { in_port: exact("in_port", 2) }, 10),
      flood("out", 10, 2, 3),
    ];
    const p = plan(rules);
    expect(offloaded(p, "a")).toBe(false);
    expect(offloaded(p, "b")).toBe(false);
    expectSameDecisions(p, rules, ports, [v4(1n), v4(2n)]);
  });

  it("not a trap's device: a guard for packets only a trap leads to the chain does not keep the rewrite in OVS", () => {
    const rules = [
      // an output after its ct: a trap (OVS takes its packets from table 0) that still names the chain
      rule("odd", 0, 100, { in_port: exact("in_port", 1) }, [
        { type: "ct", zone: 1, commit: false, nat: false, table: 10 },
        { type: "output", port: 3 },
      ]),
      decTo("dec", { in_port: exact("in_port", 2) }, 10),
      flood("out", 10, 1, 3),
    ];
    const p = plan(rules);
    expect(p.decisions.get("odd")!.reason).toBe("not offloaded: actions after a goto are not offloadable");
    expect(offloaded(p, "dec")).toBe(true);
    expect(traceSplit(p, rules, ports, v4(2n))).toMatchObject({ software: false });
    expectSameDecisions(p, rules, ports, [v4(1n), v4(2n)]);
  });

  it("not the device of a rule whose in_port never enters its chain", () => {
    const rules = [
      decTo("dec", { in_port: exact("in_port", 2) }, 10),
      rule("from1", 10, 200, { in_port: exact("in_port", 1) }, [{ type: "goto", table: 20 }]),
      rule("any", 10, 100, {}, [{ type: "goto", table: 20 }]),
      flood("out", 20, 1, 3),
    ];
    const p = plan(rules);
    expect(offloaded(p, "dec")).toBe(true);
    expect(traceSplit(p, rules, ports, v4(2n))).toMatchObject({ software: false });
    expectSameDecisions(p, rules, ports, [v4(1n), v4(2n)]);
  });
});

describe("a chain after a rewrite holds only what its packets can meet", () => {
  /** Table 0 sets the destination MAC (and reg6) and goes to table 10, whose chain knows them. */
  const rewrite = rule("rw", 0, 100, { in_port: exact("in_port", 1) }, [
    { type: "set_field", field: "reg6", value: 1n },
    { type: "set_field", field: "eth_dst", value: ROUTER },
    { type: "goto", table: 10 },
  ]);
  const toX = (tp_dst: bigint, ipv4_dst = 0x0a000005n): Packet => ({
    in_port: 1n,
    eth_type: 0x800n,
    ipv4_dst,
    ip_proto: 6n,
    tp_dst,
  });

  it("nothing below a rule that matches only the chain's register and known values: the rewrite stays on the NIC", () => {
    const rules = [
      rewrite,
      rule("deliver", 10, 200, { reg6: exact("reg6", 1), eth_dst: exact("eth_dst", ROUTER) }, [
        { type: "output", port: 2 },
      ]),
      rule("punt", 10, 100, {}, [{ type: "controller" }]),
    ];
    const p = plan(rules);
    expect(p.decisions.get("punt")!.reason).toBe(
      "not offloaded: no packet reaches this rule through hardware chains",
    );
    expect(offloaded(p, "rw")).toBe(true);
    expect(traceSplit(p, rules, ports, toX(80n))).toMatchObject({ software: false, events: [{ port: 2 }] });
    expectSameDecisions(p, rules, ports, [toX(80n)]);
  });

  it("a rule below one with a subset of its matches (some known, in another order) is left out", () => {
    const rules = [
      rewrite,
      // its matches: a known one (eth_dst), and two in the other order than below
      rule(
        "a",
        10,
        200,
        { eth_dst: exact("eth_dst", ROUTER), ipv4_dst: exact("ipv4_dst", 0x0a000005), ...ip },
        [{ type: "output", port: 2 }],
      ),
      rule("b", 10, 100, { ...ip, ipv4_dst: exact("ipv4_dst", 0x0a000005), tp_dst: exact("tp_dst", 80) }, [
        { type: "controller" },
      ]),
    ];
    const p = plan(rules);
    expect(p.decisions.get("b")!.reason).toBe(
      "not offloaded: never reached here: a above takes all its packets",
    );
    expect(offloaded(p, "rw")).toBe(true);
    expectSameDecisions(p, rules, ports, [toX(80n), toX(80n, 0x0a000006n)]);
  });
});

describe("TTL punts above a dec_ttl, through the chain's register and known values", () => {
  it("a punt matching the chain's register and a known MAC takes the rule's TTL 0 and 1 packets", () => {
    const catcher = (id: string, ttl: number) =>
      rule(
        id,
        10,
        1000,
        {
          reg6: exact("reg6", 1),
          eth_dst: exact("eth_dst", ROUTER),
          ...ip,
          nw_ttl: exact("nw_ttl", ttl),
        },
        [], // dropped: offloaded, so the chain keeps its packets in hardware
      );
    const rules = [
      rule("in", 0, 100, { in_port: exact("in_port", 1) }, [
        { type: "set_field", field: "reg6", value: 1n },
        { type: "set_field", field: "eth_dst", value: ROUTER },
        { type: "goto", table: 10 },
      ]),
      catcher("ttl0", 0),
      catcher("ttl1", 1),
      rule("route", 10, 100, ip, [{ type: "dec_ttl" }, { type: "output", port: 2 }]),
    ];
    const p = plan(rules);
    expect(p.tc.filter((t) => t.ruleId === "route" && t.match.nw_ttl)).toEqual([]);
    expect(offloaded(p, "route")).toBe(true);
    expect(offloaded(p, "in")).toBe(true);
    const v4 = (nw_ttl: bigint): Packet => ({ in_port: 1n, eth_type: 0x800n, nw_ttl });
    expect(traceSplit(p, rules, ports, v4(64n))).toMatchObject({ software: false, events: [{ port: 2 }] });
    expectSameDecisions(p, rules, ports, [v4(0n), v4(1n), v4(2n), v4(64n)]);
  });
});

describe("exclude", () => {
  it("re-plans a rule whose exclusion changes scope with the same reason", () => {
    const rules = [
      rule("r", 0, 200, { in_port: exact("in_port", 1), ...ip }, [{ type: "output", port: 2 }]),
      rule("s", 0, 100, { in_port: exact("in_port", 1) }, [{ type: "output", port: 3 }]),
    ];
    const planner = new OffloadPlanner(cx6, ports);
    planner.setRules(rules);
    planner.exclude(new Map([["r", { reason: "demoted", scope: "actions" }]]));
    expect(offloaded(planner.result(), "s")).toBe(true);
    const all: Exclusion = { reason: "demoted", scope: "all" };
    const diff = planner.exclude(new Map([["r", all]]));
    // no trap for r any more: the rest of its chain stays in software
    expect(diff.removed.map((t) => `${t.ruleId}:${t.role}`).sort()).toEqual([
      "r:trap",
      "s:offload",
      "undefined:miss",
    ]);
    const fresh = new OffloadPlanner(cx6, ports);
    fresh.setRules(rules);
    fresh.exclude(new Map([["r", all]]));
    expect(planner.result()).toEqual(fresh.result());
  });

  it("traps a rule kept from the NIC for its actions by its exact match, tunnel key included", () => {
    const rules = [
      rule("vni5", 0, 200, { in_port: exact("in_port", 100), tun_id: exact("tun_id", 5) }, [
        { type: "set_field", field: "reg6", value: 1n },
        { type: "goto", table: 10 },
      ]),
      rule("vni6", 0, 100, { in_port: exact("in_port", 100), tun_id: exact("tun_id", 6) }, [
        { type: "set_field", field: "reg6", value: 2n },
        { type: "goto", table: 10 },
      ]),
      rule("out1", 10, 100, { reg6: exact("reg6", 1) }, [{ type: "output", port: 1 }]),
      rule("out2", 10, 100, { reg6: exact("reg6", 2) }, [{ type: "output", port: 2 }]),
    ];
    const planner = new OffloadPlanner(cx6, ports);
    planner.setRules(rules);
    planner.exclude(new Map([["vni5", { reason: "demoted", scope: "actions" }]]));
    const p = planner.result();
    expect(p.tc.filter((t) => t.ruleId === "vni5")).toMatchObject([
      { role: "trap", indev: "genev_sys_6081", match: { tun_id: exact("tun_id", 5) } },
    ]);
    const vni = (tun_id: bigint): Packet => ({ in_port: 100n, tun_id });
    expect(traceSplit(p, rules, ports, vni(6n))).toMatchObject({ software: false, events: [{ port: 2 }] });
    expect(traceSplit(p, rules, ports, vni(5n))).toMatchObject({ software: true, events: [{ port: 1 }] });
    expectSameDecisions(p, rules, ports, [vni(5n), vni(6n)]);
  });
});

describe("conntrack matchers", () => {
  it("after the last rule matching ct_state goes, the chain after a lookup no longer clears ct: as a full plan", () => {
    const rules = [
      rule("est", 0, 200, { in_port: exact("in_port", 2), ct_state: { value: 0x22n, mask: 0x22n } }, [
        { type: "output", port: 1 },
      ]),
      rule("lookup", 0, 100, { in_port: exact("in_port", 1) }, [
        { type: "ct", zone: 1, commit: false, nat: false, table: 5 },
      ]),
      rule("v6", 5, 100, { eth_type: exact("eth_type", 0x86dd) }, [{ type: "controller" }]),
      rule("fwd", 5, 50, {}, [{ type: "output", port: 2 }]),
    ];
    const planner = new OffloadPlanner(cx6, ports);
    planner.setRules(rules);
    expect(planner.result().chains.find((c) => c.table === 5)!.clearsCt).toBe(true);
    planner.update({ remove: ["est"] });
    const rest = rules.filter((r) => r.id !== "est");
    const p = planner.result();
    expect(p.chains.find((c) => c.table === 5)!.clearsCt).toBeUndefined();
    expect(p.tc.find((t) => t.ruleId === "v6")!.actions).toEqual([{ type: "pass" }]);
    // as a full plan of what is left (chain numbers aside: they count the chains ever made)
    const shape = (x: Plan) => ({
      tc: x.tc.map(({ chain: _, actions, ...t }) => ({
        ...t,
        actions: actions.map((a) => (a.type === "goto" ? { type: "goto" } : a)),
      })),
      chains: x.chains.map(({ chain: _, ...c }) => c),
      decisions: [...x.decisions.values()].map((d) => [d.ruleId, d.offloaded]),
    });
    expect(shape(p)).toEqual(shape(plan(rest)));
    expectSameDecisions(p, rest, ports, [{ in_port: 1n, eth_type: 0x86ddn }, { in_port: 1n }]);
  });

  it("a commit's reason names the first table that matches conntrack state", () => {
    const tracked = (id: string, table: number) =>
      rule(id, table, 100, { ct_state: { value: trk, mask: trk } }, [{ type: "output", port: 2 }]);
    const rules = [
      tracked("m1", 1),
      tracked("m3", 3),
      rule("in", 0, 100, { in_port: exact("in_port", 1) }, [{ type: "goto", table: 4 }]),
      rule("commit", 4, 100, {}, [{ type: "ct", zone: 1, commit: true, nat: false, table: 10 }]),
      rule("punt", 10, 100, {}, [{ type: "controller" }]),
    ];
    const p = plan(rules);
    expect(p.decisions.get("commit")!.reason).toBe(
      "not offloaded: it leaves conntrack state on the packet, which table 1 matches and a later table may hand the packet to OVS, which must see it unchanged",
    );
    expectSameDecisions(p, rules, ports, [{ in_port: 1n }]);
  });
});

describe("tc actions and texts", () => {
  it("releases the tunnel metadata once before the first of several outputs", () => {
    const rules = [
      rule("decap-flood", 0, 100, { in_port: exact("in_port", 100), tun_id: exact("tun_id", 5) }, [
        { type: "output", port: 1 },
        { type: "output", port: 2 },
      ]),
    ];
    const p = plan(rules);
    expect(p.tc.find((t) => t.ruleId === "decap-flood" && t.role === "offload")!.actions).toEqual([
      { type: "tunnel_unset" },
      { type: "mirror", dev: "rep1" },
      { type: "redirect", dev: "rep2" },
    ]);
    expectSameDecisions(p, rules, ports, [{ in_port: 100n, tun_id: 5n }]);
  });

  it("says why a commit that sets ct_mark stays in OVS", () => {
    const p = plan([
      rule("mark", 0, 100, { in_port: exact("in_port", 1) }, [
        { type: "ct", zone: 1, commit: true, nat: false, mark: { value: 1n, mask: 0xffn }, table: 10 },
      ]),
    ]);
    expect(p.decisions.get("mark")!.reason).toBe(
      "not offloaded: a ct commit that sets ct_mark is not offloaded",
    );
  });

  it("lists among a chain's registers only registers: no TTL mark, lookup mark or known header", () => {
    const rules = [
      rule("ttl", 0, 100, { in_port: exact("in_port", 1), ...ip }, [
        { type: "set_field", field: "nw_ttl", value: 64n },
        { type: "set_field", field: "reg6", value: 5n },
        { type: "goto", table: 10 },
      ]),
      rule("est", 0, 100, { in_port: exact("in_port", 3), ct_state: { value: trk, mask: trk } }, [
        { type: "output", port: 1 },
      ]),
      rule("lookup", 0, 100, { in_port: exact("in_port", 2) }, [
        { type: "ct", zone: 1, commit: false, nat: false, table: 20 },
      ]),
      rule("a", 10, 100, {}, [{ type: "output", port: 2 }]),
      rule("b", 20, 100, {}, [{ type: "output", port: 3 }]),
    ];
    const p = plan(rules);
    const chains = p.chains.map(({ table, registers, known, clearsCt }) => ({
      table,
      registers,
      known,
      clearsCt,
    }));
    expect(chains.sort((x, y) => x.table - y.table)).toEqual([
      { table: 0, registers: {}, known: undefined, clearsCt: undefined },
      { table: 10, registers: { reg6: 5n }, known: { nw_ttl: 64n }, clearsCt: undefined },
      { table: 20, registers: {}, known: undefined, clearsCt: true },
    ]);
  });
});
