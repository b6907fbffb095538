/**
 * What the offload datapath asks of the planner beyond planning: rules kept
 * in software on request (`exclude`, at three scopes), and encapsulation to a
 * destination held in a register (the tunnel app's move:reg8→tun_dst). Every
 * case is checked against the reference evaluators: the split datapath must
 * decide each packet as the software pipeline does.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Action } from "../../src/openflow/actions.js";
import { parseFlow } from "../../src/openflow/text.js";
import { runSoftware, traceSplit } from "../../src/offload/planner/evaluate.js";
import { ruleFromFlow } from "../../src/offload/planner/from-openflow.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { type Exclusion, OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import { expectSameDecisions, flowArb, pipeline, portsOf, topoArb } from "../harness/planner-pipeline.js";

const cx6 = profileById("connectx-6-dx");
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
    [3, "rep3"],
  ]),
  tunnels: new Map([[100, "geneve"]]),
};
const rule = (id: string, table: number, priority: number, r: Pick<PipelineRule, "match" | "actions">) => ({
  id,
  table,
  priority,
  ...r,
});
const MAC2 = 0x020000000002n;
const MAC3 = 0x020000000003n;
const rules: PipelineRule[] = [
  rule("classify", 0, 100, {
    match: { in_port: exact("in_port", 1) },
    actions: [
      { type: "set_field", field: "reg6", value: 7n },
      { type: "goto", table: 40 },
    ],
  }),
  rule("to2", 40, 100, {
    match: { reg6: exact("reg6", 7), eth_dst: exact("eth_dst", MAC2) },
    actions: [{ type: "output", port: 2 }],
  }),
  rule("to3", 40, 100, {
    match: { reg6: exact("reg6", 7), eth_dst: exact("eth_dst", MAC3) },
    actions: [{ type: "output", port: 3 }],
  }),
  rule("flood", 40, 50, {
    match: { reg6: exact("reg6", 7) },
    actions: [
      { type: "output", port: 2 },
      { type: "output", port: 3 },
    ],
  }),
];
const pkt = (eth_dst: bigint) => ({ in_port: 1n, eth_dst, eth_type: 0x800n });
const packets = [pkt(MAC2), pkt(MAC3), pkt(0xffffffffffffn)];
const ex = (reason: string, scope: Exclusion["scope"] = "actions"): Exclusion => ({ reason, scope });

describe("exclude", () => {
  it("turns a rule into a trap with the caller's reason (scope actions), and gives it back", () => {
    const p = new OffloadPlanner(cx6, ports);
    p.setRules(rules);
    const diff = p.exclude(new Map([["to2", ex("demoted: idle")]]));
    const plan = p.result();
    expect(plan.decisions.get("to2")).toMatchObject({
      offloaded: false,
      reason: "not offloaded: demoted: idle",
    });
    const trap = plan.tc.find((t) => t.ruleId === "to2")!;
    expect(trap).toMatchObject({ role: "trap", actions: [{ type: "pass" }] });
    expect(trap.match.eth_dst?.value).toBe(MAC2);
    expect(diff.removed.some((t) => t.ruleId === "to2" && t.role === "offload")).toBe(true);
    expect(diff.added).toContainEqual(trap);
    expect(traceSplit(plan, rules, ports, pkt(MAC2)).software).toBe(true);
    expect(traceSplit(plan, rules, ports, pkt(MAC3)).software).toBe(false);
    expectSameDecisions(plan, rules, ports, packets);
    expect(p.exclusions().get("to2")?.reason).toBe("demoted: idle");

    p.exclude(new Map([["to2", undefined]]));
    const back = p.result();
    expect(back.decisions.get("to2")!.offloaded).toBe(true);
    expect(p.exclusions().size).toBe(0);
    expectSameDecisions(back, rules, ports, packets);
  });

  it("keeps even the exact match from the NIC (scope match): a coarse trap for everything it could take", () => {
    const plan = (() => {
      const p = new OffloadPlanner(cx6, ports);
      p.setRules(rules);
      p.exclude(new Map([["to2", ex("refused by the kernel", "match")]]));
      return p.result();
    })();
    const trap = plan.tc.find((t) => t.ruleId === "to2")!;
    expect(trap.role).toBe("trap");
    expect(trap.match).toEqual({ eth_dst: exact("eth_dst", MAC2) });
    expectSameDecisions(plan, rules, ports, packets);
  });

  it("keeps the rest of the chain in software at scope all: no trap, nothing below, no catch-all", () => {
    const p = new OffloadPlanner(cx6, ports);
    p.setRules(rules);
    p.exclude(new Map([["to2", ex("the trap was refused", "all")]]));
    const plan = p.result();
    const chain = plan.chains.find((c) => c.table === 40)!;
    expect(chain.reachesSoftware).toBe(true);
    expect(plan.tc.filter((t) => t.chain === chain.chain)).toEqual([]);
    expect(plan.decisions.get("flood")!.offloaded).toBe(false);
    for (const x of packets) expect(traceSplit(plan, rules, ports, x).software).toBe(true);
    expectSameDecisions(plan, rules, ports, packets);
  });

  it("remembers an exclusion for a rule that has not arrived yet", () => {
    const p = new OffloadPlanner(cx6, ports);
    p.setRules(rules.filter((r) => r.id !== "to3"));
    expect(p.exclude(new Map([["to3", ex("demoted")]]))).toEqual({ added: [], removed: [] });
    p.update({ upsert: [rules.find((r) => r.id === "to3")!] });
    expect(p.result().decisions.get("to3")).toMatchObject({
      offloaded: false,
      reason: "not offloaded: demoted",
    });
  });

  it("keeps every packet's verdict with random exclusions on random pipelines, set and cleared incrementally", () => {
    fc.assert(
      fc.property(
        topoArb.chain((t) =>
          fc.tuple(
            fc.constant(t),
            fc.array(fc.tuple(fc.nat(), fc.constantFrom("actions", "match", "all", "clear")), {
              minLength: 1,
              maxLength: 8,
            }),
            flowArb(t, { minLength: 10, maxLength: 20 }),
          ),
        ),
        ([topo, edits, flowPackets]) => {
          const all = pipeline(topo);
          const tp = portsOf(topo);
          const p = new OffloadPlanner(cx6, tp);
          p.setRules(all);
          const now = new Map<string, Exclusion>();
          for (const [pick, scope] of edits) {
            const id = all[pick % all.length]!.id;
            if (scope === "clear") now.delete(id);
            else now.set(id, ex(`kept in software (${scope})`, scope));
            p.exclude(new Map([[id, scope === "clear" ? undefined : now.get(id)]]));
          }
          const plan = p.result();
          for (const [id] of now) expect(plan.decisions.get(id)!.offloaded).toBe(false);
          expectSameDecisions(plan, all, tp, flowPackets);
          // the same exclusions planned from scratch agree on every decision
          const fresh = new OffloadPlanner(cx6, tp);
          fresh.exclude(new Map(now));
          fresh.setRules(all);
          const decided = (x: typeof plan) =>
            [...x.decisions].map(([id, d]) => `${id}:${d.offloaded}`).sort();
          expect(decided(plan)).toEqual(decided(fresh.result()));
        },
      ),
      { numRuns: 60, seed: 0x10 },
    );
  });
});

describe("encapsulation to a register's address", () => {
  // Converted in each test, not once in this describe body: a mutation run switches a mutant on
  // only while a test runs, so rules converted here would never see it (test/mutation/planner.md).
  const flowsOf = () =>
    [
      "table=0,priority=100,in_port=1 actions=set_field:0x65->reg6,goto_table:40",
      "table=40,priority=100,reg6=0x65,dl_dst=02:00:00:00:00:09 actions=set_field:0xc0000202->reg8,goto_table:50",
      "table=50,priority=100,reg6=0x65 actions=move:NXM_NX_REG8[]->NXM_NX_TUN_IPV4_DST[],set_field:0x65->tun_id,output:100",
    ].map((l, i) => ruleFromFlow(parseFlow(l), ports, `f${i}`));

  it("reads move:reg8→tun_dst as a tunnel destination from reg8", () => {
    expect(flowsOf()[2]!.actions).toEqual([
      { type: "set_tunnel", id: 0x65n, dst: 0n, tunnel: "geneve", dstFrom: "reg8" },
      { type: "output", port: 100 },
    ]);
  });

  it("resolves the destination per chain and offloads the encapsulation", () => {
    const flows = flowsOf();
    const plan = OffloadPlanner.plan({ rules: flows, profile: cx6, ports });
    expect(plan.decisions.get("f2")!.offloaded).toBe(true);
    const encap = plan.tc.find((t) => t.ruleId === "f2" && t.role === "offload")!;
    expect(encap.actions).toEqual([
      { type: "tunnel_set", id: 0x65n, dst: 0xc0000202n, tunnel: "geneve" },
      { type: "redirect", dev: "genev_sys_6081" },
    ]);
    const p = { in_port: 1n, eth_dst: 0x020000000009n, eth_type: 0x800n };
    expect(runSoftware(flows, ports, p)).toEqual([
      { kind: "output", port: 100, packet: expect.objectContaining({ tun_dst: "c0000202", tun_id: "65" }) },
    ]);
    expect(traceSplit(plan, flows, ports, p).software).toBe(false);
    expectSameDecisions(plan, flows, ports, [p]);
  });

  it("takes a register's bits 0..31 as the whole register, as `[]`", () => {
    // the codec and the text parser write a whole field as nbits 0; a Flow built by hand may name all 32 bits
    const flow = parseFlow(
      "table=0,priority=1 actions=move:NXM_NX_REG8[]->NXM_NX_TUN_IPV4_DST[],set_field:0x65->tun_id,output:100",
    );
    const whole32 = (a: Action): Action =>
      a.type === "move" ? { ...a, src: { ...a.src, nbits: 32 }, dst: { ...a.dst, nbits: 32 } } : a;
    const instructions = flow.instructions.map((ins) =>
      ins.type === "apply_actions" ? { ...ins, actions: ins.actions.map(whole32) } : ins,
    );
    const moves = instructions.flatMap((ins) => (ins.type === "apply_actions" ? ins.actions : []));
    expect(moves[0]).toMatchObject({ type: "move", src: { ofs: 0, nbits: 32 }, dst: { ofs: 0, nbits: 32 } });
    expect(ruleFromFlow({ ...flow, instructions }, ports).actions).toEqual([
      { type: "set_tunnel", id: 0x65n, dst: 0n, tunnel: "geneve", dstFrom: "reg8" },
      { type: "output", port: 100 },
    ]);
  });

  it("keeps any other move in software", () => {
    for (const move of [
      "move:NXM_NX_REG8[0..15]->NXM_NX_TUN_IPV4_DST[0..15]", // part of the register
      "move:NXM_NX_REG8[]->NXM_NX_REG7[]", // a whole register, but not into tun_dst
      "move:NXM_OF_IP_SRC[]->NXM_NX_TUN_IPV4_DST[]", // into tun_dst, but from a header, not a register
    ]) {
      const r = ruleFromFlow(parseFlow(`table=0,priority=1 actions=${move},output:100`), ports);
      // no tun_id was set, so the output stays a plain output: nothing was taken as a destination
      expect(r.actions, move).toEqual([
        { type: "other", name: "move" },
        { type: "output", port: 100 },
      ]);
    }
  });
});
