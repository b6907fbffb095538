import { describe, expect, it } from "vitest";
import { Conntrack, runSoftware, traceSplit, type Packet } from "../../src/offload/planner/evaluate.js";
import { exact, type PipelineRule, type PortMap } from "../../src/offload/planner/ir.js";
import type { Plan, TcRule } from "../../src/offload/planner/plan.js";

/*
 * The reference evaluators are the oracle of every planner property, so their
 * own edges are pinned here: conntrack keys, explicit-undefined fields, the
 * step limit on looping pipelines, a popped tag's PCP, tc's priority order,
 * redirect ending a packet's tc path, and VXLAN's device.
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

/** A TCP/IPv4 packet from port 1. */
const v4 = (src: bigint, dst: bigint, sport = 1000n, dport = 22n): Packet => ({
  in_port: 1n,
  eth_type: 0x800n,
  ip_proto: 6n,
  ipv4_src: src,
  ipv4_dst: dst,
  tp_src: sport,
  tp_dst: dport,
});

describe("conntrack NAT", () => {
  const FIP = "172.24.4.50";
  const fip = 0xac180432n;
  const [outside, fixed] = [0xc6336407n, 0x0a01000bn];

  it("translates a new connection by its range and its replies back, by the connection's own NAT", () => {
    const table = new Conntrack();
    // DNAT to the fixed address, committed
    const first = v4(outside, fip);
    expect(table.track(5, first, true, { range: { kind: "dst", ipMin: "10.1.0.11" } })).toBe(0x21n);
    expect(first.ipv4_dst).toBe(fixed);
    // the reply, through a ct(nat(src=…)) of the way out: the connection's translation, reversed, not the range
    const reply = v4(fixed, outside, 22n, 1000n);
    expect(table.track(5, reply, true, { range: { kind: "src", ipMin: "10.9.9.9" } })).toBe(0x2an);
    expect([reply.ipv4_src, reply.ipv4_dst]).toEqual([fip, outside]);
    // the next packet of the original direction: translated again, established
    const again = v4(outside, fip);
    expect(table.track(5, again, false, {})).toBe(0x22n);
    expect(again.ipv4_dst).toBe(fixed);
    // a ct without nat sees the state but leaves the addresses
    const plain = v4(outside, fip);
    expect(table.track(5, plain, false)).toBe(0x22n);
    expect(plain.ipv4_dst).toBe(fip);
    expect(table.entries()).toEqual([`5|2048/6|${outside}:1000>${fip}:22 nat ipv4_dst=${fixed}`]);
  });

  it("SNATs ports too, leaves an uncommitted connection unrecorded, and IPv6 untranslated", () => {
    const table = new Conntrack();
    const p = v4(fixed, outside);
    table.track(7, p, false, { range: { kind: "src", ipMin: FIP, portMin: 40000 } });
    expect([p.ipv4_src, p.tp_src]).toEqual([fip, 40000n]);
    expect(table.entries()).toEqual([]);
    const q = v4(fixed, outside);
    table.track(7, q, true, { range: { kind: "src", ipMin: FIP, portMin: 40000 } });
    expect(table.entries()).toEqual([
      `7|2048/6|${fixed}:1000>${outside}:22 nat ipv4_src=${fip},tp_src=40000`,
    ]);
    const back = v4(outside, fip, 22n, 40000n);
    expect(table.track(7, back, false, {})).toBe(0x2an);
    expect([back.ipv4_dst, back.tp_dst]).toEqual([fixed, 1000n]);
    const v6: Packet = { in_port: 1n, eth_type: 0x86ddn, ip_proto: 6n, ipv6_src: 1n, ipv6_dst: 2n };
    table.track(7, v6, true, { range: { kind: "src", ipMin: FIP } });
    expect([v6.ipv6_src, v6.ipv6_dst]).toEqual([1n, 2n]);
    expect([v6.ipv4_src, v6.tp_src]).toEqual([undefined, undefined]);
  });
});

describe("a commit's ct_mark", () => {
  it("marks the connection, as both directions' later lookups read; a masked write keeps the other bits", () => {
    const table = new Conntrack();
    const out = () => v4(1n, 2n);
    const back = () => v4(2n, 1n, 22n, 1000n);
    // a lookup of a connection not committed: no mark
    const first = out();
    expect(table.track(3, first, false)).toBe(0x21n);
    expect(first.ct_mark).toBe(0n);
    // the commit marks it, and the packet carries the mark on
    const commit = out();
    table.track(3, commit, true, undefined, { value: 1n, mask: 1n });
    expect(commit.ct_mark).toBe(1n);
    for (const p of [out(), back()]) {
      table.track(3, p, false);
      expect(p.ct_mark).toBe(1n);
    }
    // another zone does not see it
    const other = out();
    table.track(4, other, false);
    expect(other.ct_mark).toBe(0n);
    // a masked write of another bit keeps the first; the table lists the mark
    const again = back();
    table.track(3, again, true, undefined, { value: 0x10n, mask: 0x10n });
    expect(again.ct_mark).toBe(0x11n);
    expect(table.entries()).toEqual(["3|2048/6|1:1000>2:22 mark 17"]);
    // cleared to 0, the mark is gone from the listing
    table.track(3, out(), true, undefined, { value: 0n, mask: 0xffn });
    expect(table.entries()).toEqual(["3|2048/6|1:1000>2:22"]);
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

  it("reads a popped frame's PCP as 0, as OVS does: the tag's PCP leaves with it", () => {
    const rules: PipelineRule[] = [
      {
        id: "pop",
        table: 0,
        priority: 1,
        match: {},
        actions: [{ type: "pop_vlan" }, { type: "goto", table: 1 }],
      },
      {
        id: "pcp3",
        table: 1,
        priority: 2,
        match: { vlan_pcp: exact("vlan_pcp", 3) },
        actions: [{ type: "output", port: 1 }],
      },
      { id: "rest", table: 1, priority: 1, match: {}, actions: [{ type: "output", port: 2 }] },
    ];
    expect(runSoftware(rules, ports, { in_port: 100n, vlan_vid: 0x1005n, vlan_pcp: 3n })).toEqual([
      { kind: "output", port: 2, packet: { vlan_vid: "0", vlan_pcp: "0" } },
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

  it("reads a frame's PCP as 0 after vlan_pop", () => {
    const plan = split([
      { chain: 0, prio: 1, match: {}, actions: [{ type: "vlan_pop" }, { type: "goto", chain: 1 }] },
      {
        chain: 1,
        prio: 1,
        match: { vlan_pcp: exact("vlan_pcp", 3) },
        actions: [{ type: "redirect", dev: "rep1" }],
      },
      { chain: 1, prio: 2, match: {}, actions: [{ type: "redirect", dev: "rep2" }] },
    ]);
    expect(traceSplit(plan, [], ports, { in_port: 1n, vlan_vid: 0x1005n, vlan_pcp: 3n })).toEqual({
      events: [{ kind: "output", port: 2, packet: { vlan_vid: "0", vlan_pcp: "0" } }],
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
