/**
 * Secgroup flows for the cases the golden view (secgroup-golden.test.ts)
 * leaves out, found by mutation testing (test/mutation/apps.md): an ICMPv6
 * rule with a type and a code, an ICMP rule with a code but no type (which
 * the NB now refuses), the
 * conjunction ids of remote-group rules when the NB lists a group's rules out
 * of id order (a restarted agent must compute the same ids), and a port
 * whose groups hold more remote-group rules than its conjunction-id space.
 * Stated as dump-flows lines (cookies left out), as an operator sees them.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { secgroupApp } from "../../src/apps/secgroup.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { parseObject, type Secgroup, ValidationError } from "../../src/nb/model/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import { binding, net, newModel, port, subnet } from "../harness/model-fixture.js";

const group = (id: string, rules: Record<string, unknown>[]): Secgroup =>
  parseObject("secgroup", { id, tenantId: "t1", rules }, id);

/** net1 (10.0.0.0/24, fd00::/64); p1 (ofport 1) in `g`; p2 (ofport 2) in `clients` (the remote group). */
function world(rules: Record<string, unknown>[]): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 5 }));
  m.setSubnet("sub4", subnet("sub4", "net1", "10.0.0.0/24"));
  m.setSubnet("sub6", subnet("sub6", "net1", "fd00::/64"));
  m.setSecgroup("g", group("g", rules));
  m.setSecgroup("clients", group("clients", []));
  m.setPort("p1", port("p1", "net1", "fa:16:3e:00:00:01", [["sub4", "10.0.0.1"]], { securityGroups: ["g"] }));
  m.setPort(
    "p2",
    port("p2", "net1", "fa:16:3e:00:00:02", [["sub4", "10.0.0.2"]], { securityGroups: ["clients"] }),
  );
  m.setBinding("p1", binding("p1", 1));
  m.setBinding("p2", binding("p2", 2));
  return m;
}

/** The port owner's flows of p1 at one priority, as dump-flows lines. */
function lines(m: LocalModel, priority: number): string[] {
  const e = new Engine(m, loadApps(["secgroup"]));
  e.recomputeAll();
  return e
    .allFlows()
    .filter((d) => d.owner === "secgroup/port/p1" && d.flow.priority === priority)
    .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
    .sort();
}

const NEW = "ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60";

describe("secgroup rule kinds the golden view leaves out", () => {
  it("ICMPv6 by type and code matches both", () => {
    const m = world([
      {
        id: "r",
        direction: "ingress",
        ethertype: "IPv6",
        protocol: "icmpv6",
        portRangeMin: 1,
        portRangeMax: 4,
      },
    ]);
    expect(lines(m, 1001)).toEqual([
      `table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,icmp6,reg7=0x1,icmp_type=1,icmp_code=4 actions=goto_table:60`,
      `table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,icmp6,reg7=0x1,icmp_type=1,icmp_code=4 actions=${NEW}`,
      `table=56, priority=1001,ct_state=+new+trk,icmp6,reg7=0x1,icmp_type=1,icmp_code=4 actions=${NEW}`,
    ]);
  });

  it("an ICMP code without a type is refused by the NB: matched alone it would allow every ICMP message", () => {
    const refused = (() => {
      try {
        world([{ id: "r", direction: "ingress", protocol: "icmp", portRangeMax: 0 }]);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).message).toMatch(
      /rules\[0\]\.portRangeMax: ICMP code given without an ICMP type/,
    );
  });
});

describe("conjunction ids of remote-group rules", () => {
  const rule = (id: string, dport: number): Record<string, unknown> => ({
    id,
    direction: "ingress",
    protocol: "tcp",
    portRangeMin: dport,
    remoteGroupId: "clients",
  });
  // slot = the rule's place in id order: a → 0, b → 1, c → 2; id = ofport × 2^16 + slot × 4 + state
  const expected = [
    "table=56, priority=1000,ct_state=+new+trk,tcp,reg7=0x1,tp_dst=10 actions=conjunction(65536,1/2)",
    "table=56, priority=1000,ct_state=+new+trk,tcp,reg7=0x1,tp_dst=20 actions=conjunction(65540,1/2)",
    "table=56, priority=1000,ct_state=+new+trk,tcp,reg7=0x1,tp_dst=30 actions=conjunction(65544,1/2)",
  ];
  const newClauses = (m: LocalModel): string[] => lines(m, 1000).filter((l) => l.includes("+new+trk,tcp"));

  it("follow the rules' id order, whatever order the NB lists them in", () => {
    const sorted = [rule("a", 10), rule("b", 20), rule("c", 30)];
    const orders = [sorted, [sorted[2]!, sorted[1]!, sorted[0]!], [sorted[1]!, sorted[2]!, sorted[0]!]];
    for (const rules of orders) {
      expect(newClauses(world(rules)), rules.map((r) => r.id).join(",")).toEqual(expected);
    }
  });

  it("a port's rules beyond its 2^14 slots get no flows, so its ids never reach the next ofport's", () => {
    const SLOTS = 1 << 14;
    const rules = Array.from({ length: SLOTS + 1 }, (_, i) => rule(`r${String(i).padStart(5, "0")}`, i + 1));
    // the port owner alone (an engine holding its 100,000 flows takes seconds more)
    const conj: string[] = [];
    const m = world(rules);
    secgroupApp.owners.port!("p1", m, {
      flow: (b) => {
        const f = b.build(0n);
        if (f.priority === 1000) conj.push(formatFlow(f));
      },
      meter: () => {},
    });
    const ids = conj.flatMap((l) => [...l.matchAll(/conj(?:unction\(|_id=)(\d+)/g)].map((x) => Number(x[1])));
    // every id is p1's (ofport 1): 0x10000 ≤ id < 0x20000; the last rule (tp_dst=16385) has no flow
    expect(ids.reduce((a, b) => Math.min(a, b))).toBe(0x10000);
    expect(ids.reduce((a, b) => Math.max(a, b))).toBe(0x1ffff - 1);
    expect(conj.some((l) => l.includes(`tp_dst=${SLOTS + 1} `))).toBe(false);
    expect(conj.some((l) => l.includes(`tp_dst=${SLOTS} `))).toBe(true);
  }, 60_000);
});
