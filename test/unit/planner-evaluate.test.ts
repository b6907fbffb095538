import { describe, expect, it } from "vitest";
import { Conntrack, runSoftware, traceSplit, type Packet } from "../../src/offload/planner/evaluate.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import type { Plan, TcRule } from "../../src/offload/planner/plan.js";

/*
 * The reference evaluators are the oracle of every planner property, so their
 * own edges are pinned here: conntrack keys, explicit-undefined fields, the
 * step limit on looping pipelines, tc's priority order, redirect ending a
 * packet's tc path, and VXLAN's device.
 */
const ports: PortMap = {
  hardware: new Map([
    [1, "rep1"],
    [2, "rep2"],
  ]),
  tunnels: new Map([
    [100, "geneve"],
    [101, "vxlan"],
  ]),
};
const split = (tc: Omit<TcRule, "role">[]): Plan => ({
  tc: tc.map((t) => ({ role: "offload", ...t })),
  decisions: new Map(),
  chains: [],
});

describe("conntrack", () => {
  it("keys IPv6 connections on IPv6 addresses and lists committed connections sorted", () => {
    const table = new Conntrack();
    const v6 = (src: bigint, dst: bigint): Packet => ({
      in_port: 1n,
      eth_type: 0x86ddn,
      ipv6_src: src,
      ipv6_dst: dst,
      ip_proto: 17n,
    });
    table.track(1, v6(5n, 6n), true);
    expect(table.track(1, v6(7n, 8n), false)).toBe(0x21n);
    expect(table.track(1, v6(5n, 6n), false)).toBe(0x22n);
    table.track(1, v6(1n, 2n), true);
    expect(table.entries()).toEqual(["1|34525/17|1:0>2:0", "1|34525/17|5:0>6:0"]);
  });
});

describe("the software pipeline", () => {
  it("skips match and packet fields that are present but undefined", () => {
    const rules: PipelineRule[] = [
      {
        id: "a",
        table: 0,
        priority: 1,
        match: { eth_src: undefined },
        actions: [{ type: "output", port: 2 }],
      },
    ];
    expect(runSoftware(rules, ports, { in_port: 1n, eth_dst: undefined, eth_type: 0x800n })).toEqual([
      { kind: "output", port: 2, packet: { eth_type: "800" } },
    ]);
  });

  it("stops a pipeline that loops after 64 steps", () => {
    const rules: PipelineRule[] = [
      {
        id: "loop",
        table: 0,
        priority: 1,
        match: {},
        actions: [
          { type: "output", port: 2 },
          { type: "goto", table: 0 },
        ],
      },
    ];
    expect(runSoftware(rules, ports, { in_port: 1n })).toHaveLength(64);
  });
});

describe("the split datapath", () => {
  it("runs a chain's rules in tc priority order, whatever order the plan lists them in", () => {
    const plan = split([
      { chain: 0, prio: 5, match: {}, actions: [{ type: "redirect", dev: "rep2" }] },
      { chain: 0, prio: 1, match: { eth_type: exact("eth_type", 0x806) }, actions: [{ type: "drop" }] },
      {
        chain: 0,
        prio: 3,
        match: { eth_type: exact("eth_type", 0x800) },
        actions: [{ type: "redirect", dev: "rep1" }],
      },
    ]);
    expect(traceSplit(plan, [], ports, { in_port: 1n, eth_type: 0x806n })).toEqual({
      events: [],
      software: false,
    });
    expect(traceSplit(plan, [], ports, { in_port: 2n, eth_type: 0x800n }).events).toMatchObject([
      { port: 1 },
    ]);
    expect(traceSplit(plan, [], ports, { in_port: 1n, eth_type: 0x86ddn }).events).toMatchObject([
      { port: 2 },
    ]);
  });

  it("ends a packet's tc path at a redirect, and sends to VXLAN through vxlan_sys_4789", () => {
    const plan = split([
      {
        chain: 0,
        prio: 1,
        match: {},
        actions: [
          { type: "tunnel_set", id: 3n, dst: 4n, tunnel: "vxlan" },
          { type: "redirect", dev: "vxlan_sys_4789" },
          { type: "redirect", dev: "rep2" },
        ],
      },
    ]);
    expect(traceSplit(plan, [], ports, { in_port: 1n })).toEqual({
      events: [{ kind: "output", port: 101, packet: { tun_id: "3", tun_dst: "4" } }],
      software: false,
    });
  });

  it("stops a chain loop after 64 steps", () => {
    const plan = split([
      {
        chain: 0,
        prio: 1,
        match: {},
        actions: [
          { type: "mirror", dev: "rep2" },
          { type: "goto", chain: 0 },
        ],
      },
    ]);
    expect(traceSplit(plan, [], ports, { in_port: 1n })).toMatchObject({ software: false });
    expect(traceSplit(plan, [], ports, { in_port: 1n }).events).toHaveLength(64);
  });
});
