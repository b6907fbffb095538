import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Conntrack,
  runSoftware,
  runSplit,
  traceSplit,
  type Packet,
} from "../../src/offload/planner/evaluate.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import { OffloadPlanner } from "../../src/offload/planner/plan.js";
import { profileById } from "../../src/offload/profiles/index.js";
import {
  expectSameDecisions,
  extraRules,
  flowArb,
  hardwareFlows,
  INTERNAL,
  ip,
  offloadableArb,
  offloadablePacketArb,
  pipeline,
  portsOf,
  topoArb,
  type Topo,
} from "../harness/planner-pipeline.js";

const profilesUnderTest = ["connectx-6-dx", "connectx-5", "connectx-4-lx", "none"].map(profileById);

describe("offload planner", () => {
  it("split datapath decides every packet as the software pipeline does (random topologies and packet sequences)", () => {
    fc.assert(
      fc.property(
        topoArb.chain((t) => fc.tuple(fc.constant(t), flowArb(t, { minLength: 20, maxLength: 40 }))),
        ([topo, packets]) => {
          const rules = pipeline(topo);
          const ports = portsOf(topo);
          for (const profile of profilesUnderTest) {
            const plan = OffloadPlanner.plan({ rules, profile, ports });
            expectSameDecisions(plan, rules, ports, packets);
          }
        },
      ),
      { numRuns: 100, seed: 0x14 },
    );
  });

  it("incremental updates keep the installed tc set equal to the planner's and the verdicts exact", () => {
    fc.assert(
      fc.property(
        topoArb.chain((t) =>
          fc.tuple(
            fc.constant(t),
            fc.array(
              fc.tuple(
                fc.nat(),
                fc.constantFrom("remove" as const, "reprioritise" as const, "insert" as const),
                fc.integer({ min: 1, max: 300 }),
              ),
              { minLength: 1, maxLength: 6 },
            ),
            flowArb(t, { minLength: 10, maxLength: 20 }),
          ),
        ),
        ([topo, edits, packets]) => {
          const original = pipeline(topo);
          const extra = extraRules(topo);
          let rules = original;
          const ports = portsOf(topo);
          const planner = new OffloadPlanner(profileById("connectx-6-dx"), ports);
          planner.setRules(rules);
          const key = (r: object) =>
            JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
          const installed = new Map(planner.result().tc.map((r) => [key(r), 1]));
          for (const [pick, op, prio] of edits) {
            // An insert adds one of the extra shapes (or brings an original back once all are gone).
            const pool = op === "insert" || rules.length === 0 ? [...extra, ...original] : rules;
            const victim = pool[pick % pool.length]!;
            const gone = op === "remove" && rules.some((r) => r.id === victim.id);
            const diff = gone
              ? planner.update({ remove: [victim.id] })
              : planner.update({ upsert: [{ ...victim, priority: prio }] });
            rules = gone
              ? rules.filter((r) => r.id !== victim.id)
              : [...rules.filter((r) => r.id !== victim.id), { ...victim, priority: prio }];
            for (const r of diff.removed) expect(installed.delete(key(r))).toBe(true);
            for (const r of diff.added) installed.set(key(r), 1);
          }
          const plan = planner.result();
          expect([...installed.keys()].sort()).toEqual(plan.tc.map(key).sort());
          const fresh = OffloadPlanner.plan({ rules, profile: profileById("connectx-6-dx"), ports });
          const offloaded = (p: typeof plan) =>
            [...p.decisions].map(([id, d]) => `${id}:${d.offloaded}`).sort();
          expect(offloaded(plan)).toEqual(offloaded(fresh));
          expectSameDecisions(plan, rules, ports, packets);
        },
      ),
      { numRuns: 60, seed: 0x14 },
    );
  });

  it("offloads every rule of a pipeline that is fully offloadable by construction", () => {
    const profile = profileById("connectx-6-dx");
    fc.assert(
      fc.property(
        offloadableArb.chain((c) =>
          fc.tuple(fc.constant(c), fc.array(offloadablePacketArb(c.ports), { minLength: 10, maxLength: 20 })),
        ),
        ([{ rules, ports }, packets]) => {
          const plan = OffloadPlanner.plan({ rules, profile, ports });
          for (const r of rules) {
            const d = plan.decisions.get(r.id)!;
            expect(d.offloaded, `${r.id}: ${d.reason}`).toBe(true);
          }
          // The only traps are the ones an offloaded rule needs (hairpins, TTL 0/1); no chain is poisoned.
          for (const t of plan.tc.filter((x) => x.role === "trap")) {
            expect(plan.decisions.get(t.ruleId!)!.offloaded).toBe(true);
            expect(t.indev !== undefined || t.match.nw_ttl !== undefined).toBe(true);
          }
          for (const c of plan.chains) {
            expect(plan.tc.some((t) => t.chain === c.chain && t.role === "miss")).toBe(true);
          }
          expectSameDecisions(plan, rules, ports, packets);
        },
      ),
      { numRuns: 100, seed: 0x14 },
    );
  });

  it("the NIC forwards every VM-to-VM, encapsulated, routed and decapsulated flow of a generated topology on its own", () => {
    fc.assert(
      fc.property(topoArb, (topo) => {
        const rules = pipeline(topo);
        const ports = portsOf(topo);
        for (const profile of ["connectx-6-dx", "connectx-5"].map(profileById)) {
          const plan = OffloadPlanner.plan({ rules, profile, ports });
          // Conntrack is offloaded where the NIC has it, for a plain lookup ("direct", and "recirc",
          // whose table matches -trk before it); a commit stays in OVS, the tables after it punting.
          const ctInHardware =
            profile.conntrack && (topo.conntrack === "direct" || topo.conntrack === "recirc");
          for (const flow of hardwareFlows(topo)) {
            const ct = new Conntrack();
            traceSplit(plan, rules, ports, flow.packet, ct); // the first packet may commit the connection
            const second = traceSplit(plan, rules, ports, flow.packet, ct);
            expect(second.events.length, flow.what).toBeGreaterThan(0);
            expect(second.software, `${profile.id}: ${flow.what}`).toBe(flow.conntrack && !ctInHardware);
          }
        }
      }),
      { numRuns: 50, seed: 0x14 },
    );
  });

  const topo: Topo = {
    networks: [
      { vni: 10, ports: [1, 2], remoteMacs: [50] },
      { vni: 20, ports: [3], remoteMacs: [] },
    ],
    portSecurity: true,
    conntrack: "none",
    routing: true,
    dhcpPunt: true,
    oddRule: false,
    localFlood: false,
    arpResponder: false,
    tunnelTable: 10,
    tunnelKeyFlood: false,
  };
  const rules = pipeline(topo);
  const ports = portsOf(topo);

  it("offloads L2, tunnel encap/decap and routing on a ConnectX-6 Dx, and says why not the rest", () => {
    const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-6-dx"), ports });
    const byRule = (pred: (r: PipelineRule) => boolean) =>
      rules.filter(pred).map((r) => plan.decisions.get(r.id)!);
    for (const d of byRule((r) => r.table === 10 || r.table === 20)) expect(d.offloaded, d.reason).toBe(true);
    const dhcp = byRule((r) => r.actions.some((a) => a.type === "controller"))[0]!;
    expect(dhcp.offloaded).toBe(false);
    expect(dhcp.reason).toBe(
      "not offloaded: action CONTROLLER is never offloadable: the packet must reach the local agent",
    );
    const internal = byRule((r) => r.match.in_port?.value === BigInt(INTERNAL))[0]!;
    expect(internal.reason).toMatch(/port 200 never passes through the NIC/);
    // The DHCP punt is trapped in chain 0 above the classification rules.
    const trap = plan.tc.find((t) => t.chain === 0 && t.role === "trap");
    expect(trap?.match.tp_dst?.value).toBe(67n);
    // Routing keeps TTL 0/1 in software (OVS punts them) with traps above the rewrite.
    const ttlTraps = plan.tc.filter((t) => t.match.nw_ttl && t.role === "trap");
    const table20Chains = plan.chains.filter((c) => c.table === 20).length;
    // entered from each network's L2 chain, from the VMs and (its own chains: the packets still
    // carry their tunnel metadata) from the tunnel
    expect(table20Chains).toBe(4);
    expect(ttlTraps.length).toBe(2 * 3 * table20Chains);
    // Chains are specialised per network (reg6) rather than flattened (twice: from the VMs and from
    // the tunnel).
    const reg6 = plan.chains.filter((c) => c.table === 10).map((c) => c.registers.reg6!);
    expect(reg6.sort()).toEqual([1n, 1n, 2n, 2n]);
  });

  it("keeps routing in software on a ConnectX-4 Lx (no header rewrite) and Geneve in software too", () => {
    const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-4-lx"), ports });
    const routed = rules.filter((r) => r.table === 20).map((r) => plan.decisions.get(r.id)!);
    expect(routed.every((d) => !d.offloaded)).toBe(true);
    const l2 = rules.find((r) => r.table === 0 && r.match.in_port?.value === 1n)!;
    expect(plan.decisions.get(l2.id)!.reason).toMatch(
      /goto chain .* beyond what NVIDIA ConnectX-4 Lx supports/,
    );
  });

  it("offloads nothing on a NIC without an embedded switch", () => {
    const plan = OffloadPlanner.plan({ rules, profile: profileById("none"), ports });
    expect([...plan.decisions.values()].filter((d) => d.offloaded)).toEqual([]);
    expect(plan.decisions.get(rules[0]!.id)!.reason).toMatch(/no embedded switch/);
  });

  it("re-plans only the chains of the table a change touches", () => {
    const planner = new OffloadPlanner(profileById("connectx-6-dx"), ports);
    planner.setRules(rules);
    const total = planner.lastPlannedChains;
    const rule = rules.find((r) => r.table === 20)!;
    const table20 = new Set(
      planner
        .result()
        .chains.filter((c) => c.table === 20)
        .map((c) => c.chain),
    );
    const reordered = planner.update({ upsert: [{ ...rule, priority: 101 }] });
    expect([...reordered.added, ...reordered.removed].every((r) => table20.has(r.chain))).toBe(true);
    const diff = planner.update({
      upsert: [{ ...rule, match: { ...rule.match, ipv4_dst: exact("ipv4_dst", ip(1, 99)) } }],
    });
    expect(planner.lastPlannedChains).toBeLessThan(total);
    expect(planner.lastPlannedChains).toBe(planner.result().chains.filter((c) => c.table === 20).length);
    expect(diff.added.length).toBeGreaterThan(0);
    expect(diff.removed.length).toBe(diff.added.length);
    const gone = planner.update({ remove: [rule.id] });
    expect(gone.added).toEqual([]);
    expect(gone.removed.length).toBeGreaterThan(0);
    expect(gone.removed.every((r) => r.ruleId === rule.id)).toBe(true); // stable prios: nothing else moves
  });
});

describe("a rule the NIC cannot match does not take the rules below it down", () => {
  it("traps a superset of its packets to software and offloads the rest of the chain", () => {
    const ports: PortMap = {
      hardware: new Map([
        [1, "pf0vf0"],
        [2, "pf0vf1"],
      ]),
      tunnels: new Map(),
    };
    const rules: PipelineRule[] = [
      {
        id: "ct",
        table: 0,
        priority: 200,
        match: {
          in_port: exact("in_port", 1),
          eth_type: exact("eth_type", 0x800),
          ct_state: { value: 0x22n, mask: 0x22n },
        },
        actions: [],
      },
      {
        id: "fwd",
        table: 0,
        priority: 100,
        match: { in_port: exact("in_port", 1) },
        actions: [{ type: "output", port: 2 }],
      },
    ];
    // ConnectX-5 matches no conntrack state.
    const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-5"), ports });
    expect(plan.decisions.get("ct")!.offloaded).toBe(false);
    expect(plan.decisions.get("ct")!.reason).toMatch(/ct_state is not offloadable/);
    expect(plan.decisions.get("fwd")!.offloaded).toBe(true);
    const trap = plan.tc.find((t) => t.ruleId === "ct");
    expect(trap).toMatchObject({ role: "trap", indev: "pf0vf0", actions: [{ type: "pass" }] });
    expect(trap!.match.eth_type?.value).toBe(0x800n);
    expect(trap!.match.ct_state).toBeUndefined();
    // The split datapath still decides every packet as the software pipeline does.
    for (const ethType of [0x800, 0x806, 0x86dd]) {
      const pkt: Packet = { in_port: 1n, eth_type: BigInt(ethType), ct_state: 0x22n };
      expect(runSplit(plan, rules, ports, pkt)).toEqual(runSoftware(rules, ports, pkt));
    }
  });
});

describe("a packet is never sent back into the tunnel it came from", () => {
  it("traps tunnel-in packets that a later table would encapsulate to the same tunnel", () => {
    const ports: PortMap = { hardware: new Map([[12, "pf0vf0"]]), tunnels: new Map([[100, "geneve"]]) };
    const rules: PipelineRule[] = [
      {
        id: "decap",
        table: 0,
        priority: 100,
        match: { in_port: exact("in_port", 100), tun_id: exact("tun_id", 1916) },
        actions: [
          { type: "set_field", field: "reg6", value: 1n },
          { type: "goto", table: 10 },
        ],
      },
      {
        id: "to-remote",
        table: 10,
        priority: 100,
        match: { reg6: exact("reg6", 1), eth_dst: exact("eth_dst", 55) },
        actions: [
          { type: "set_tunnel", id: 1916n, dst: 0x0a00fa37n, tunnel: "geneve" },
          { type: "output", port: 100 },
        ],
      },
    ];
    const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-6-dx"), ports });
    // Found by the incremental property test (seed -154106389): software drops the packet
    // (output to its ingress port), so the NIC must hand it to OVS rather than re-encapsulate it.
    const fromTunnel: Packet = { in_port: 100n, tun_id: 1916n, eth_dst: 55n, eth_type: 0x800n };
    expect(runSoftware(rules, ports, fromTunnel)).toEqual([]);
    expect(runSplit(plan, rules, ports, fromTunnel)).toEqual([]);
    expect(
      plan.tc.some((t) => t.ruleId === "to-remote" && t.role === "trap" && t.indev === "genev_sys_6081"),
    ).toBe(true);
    expect(plan.decisions.get("to-remote")!.offloaded).toBe(true);
  });
});
