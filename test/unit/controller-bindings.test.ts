/**
 * BindingTracker (src/controller/bindings.ts) fed OVSDB row changes directly:
 * which NB ports are bound (iface-id on an interface of the bridge with an
 * ofport, lowest ofport first), and where the tunnel and patch ports sit. The
 * same code runs against a real ovsdb-server in the agent's integration tests;
 * here each rule is driven on its own.
 */
import { describe, expect, it } from "vitest";
import { BindingTracker } from "../../src/controller/bindings.js";
import type { Replica, RowChange } from "../../src/ovsdb/replica.js";

function bridge(ports: string[] | string, name = "br-int", uuid = "B"): RowChange {
  return { table: "Bridge", uuid, kind: "insert", new: { name, ports } };
}
function port(uuid: string, interfaces: string[] | string): RowChange {
  return { table: "Port", uuid, kind: "insert", new: { name: uuid, interfaces } };
}
function iface(uuid: string, name: string, ofport: number | [], ifaceId?: string): RowChange {
  const external_ids: Record<string, string> = ifaceId === undefined ? {} : { "iface-id": ifaceId };
  return { table: "Interface", uuid, kind: "insert", new: { name, ofport, external_ids } };
}
function gone(table: string, uuid: string): RowChange {
  return { table, uuid, kind: "delete", old: { name: uuid } };
}
const bindingsOf = (d: { bindings: Map<string, unknown> }) => Object.fromEntries(d.bindings);

describe("BindingTracker", () => {
  it("binds a port whose interface on the bridge names it and has an ofport", () => {
    const t = new BindingTracker("br-int", []);
    const d = t.apply([bridge(["P1"]), port("P1", ["I1"]), iface("I1", "tap1", 5, "vm1")]);
    expect(bindingsOf(d)).toStrictEqual({ vm1: { portId: "vm1", ofport: 5, iface: "tap1" } });
    expect(d.tunnelsChanged).toBe(false);
    expect(d.providersChanged).toBe(false);
    expect([...t.boundPorts()]).toEqual([["vm1", { portId: "vm1", ofport: 5, iface: "tap1" }]]);
    expect(t.bridgeExists).toBe(true);
  });

  it("leaves unbound an interface without an ofport, without an iface-id, or on another bridge", () => {
    const t = new BindingTracker("br-int", []);
    const d = t.apply([
      bridge(["P1", "P2", "P3"]),
      bridge(["P4"], "br-ex", "B2"),
      port("P1", ["I1"]),
      port("P2", ["I2"]),
      port("P3", ["I3"]),
      port("P4", ["I4"]),
      iface("I1", "tap1", 0, "vm1"),
      iface("I2", "tap2", [], "vm2"),
      iface("I3", "tap3", 3),
      iface("I4", "tap4", 4, "vm4"),
    ]);
    expect(d.bindings.size).toBe(0);
    expect(t.boundPorts().size).toBe(0);
    // OVS assigns the ofport later: the port binds then
    const d2 = t.apply([iface("I1", "tap1", 7, "vm1")]);
    expect(bindingsOf(d2)).toStrictEqual({ vm1: { portId: "vm1", ofport: 7, iface: "tap1" } });
  });

  it("takes the bridge's ports as one uuid or a set, and binds when a port joins the bridge", () => {
    const t = new BindingTracker("br-int", []);
    t.apply([bridge("P1"), port("P1", "I1"), iface("I1", "tap1", 1, "vm1"), port("P2", ["I2"])]);
    expect([...t.boundPorts().keys()]).toEqual(["vm1"]);
    expect(bindingsOf(t.apply([iface("I2", "tap2", 2, "vm2")]))).toStrictEqual({});
    const d = t.apply([bridge(["P1", "P2"])]);
    expect(bindingsOf(d)).toStrictEqual({ vm2: { portId: "vm2", ofport: 2, iface: "tap2" } });
    // and unbinds when it leaves
    expect(bindingsOf(t.apply([bridge(["P2"])]))).toStrictEqual({ vm1: undefined });
    expect([...t.boundPorts().keys()]).toEqual(["vm2"]);
  });

  it("ignores a bridge column that is neither a uuid nor a set", () => {
    const t = new BindingTracker("br-int", []);
    const d = t.apply([bridge(7 as unknown as string), port("P1", ["I1"]), iface("I1", "tap1", 1, "vm1")]);
    expect(d.bindings.size).toBe(0);
    expect(t.bridgeExists).toBe(true);
  });

  it("binds two claims of one iface-id to the lowest ofport until it goes", () => {
    const t = new BindingTracker("br-int", []);
    const d = t.apply([
      bridge(["P1", "P2"]),
      port("P1", ["I1"]),
      port("P2", ["I2"]),
      iface("I1", "tapA", 9, "vm1"),
      iface("I2", "tapB", 4, "vm1"),
    ]);
    expect(bindingsOf(d)).toStrictEqual({ vm1: { portId: "vm1", ofport: 4, iface: "tapB" } });
    // the same in the other order
    const t2 = new BindingTracker("br-int", []);
    t2.apply([bridge(["P1", "P2"]), port("P1", ["I1"]), port("P2", ["I2"]), iface("I2", "tapB", 4, "vm1")]);
    expect(bindingsOf(t2.apply([iface("I1", "tapA", 9, "vm1")]))).toStrictEqual({});
    expect(t2.boundPorts().get("vm1")?.iface).toBe("tapB");
    // the winner goes: the other one takes over
    expect(bindingsOf(t.apply([gone("Interface", "I2")]))).toStrictEqual({
      vm1: { portId: "vm1", ofport: 9, iface: "tapA" },
    });
    expect(bindingsOf(t.apply([gone("Interface", "I1")]))).toStrictEqual({ vm1: undefined });
    expect(t.boundPorts().size).toBe(0);
  });

  it("moves a claim when an interface changes its iface-id", () => {
    const t = new BindingTracker("br-int", []);
    t.apply([bridge(["P1"]), port("P1", ["I1"]), iface("I1", "tap1", 3, "vm1")]);
    const d = t.apply([iface("I1", "tap1", 3, "vm2")]);
    expect(bindingsOf(d)).toStrictEqual({ vm1: undefined, vm2: { portId: "vm2", ofport: 3, iface: "tap1" } });
    // the same binding again is no change
    expect(t.apply([iface("I1", "tap1", 3, "vm2")]).bindings.size).toBe(0);
    // a new ofport under the same name is one
    expect(bindingsOf(t.apply([iface("I1", "tap1", 8, "vm2")]))).toStrictEqual({
      vm2: { portId: "vm2", ofport: 8, iface: "tap1" },
    });
    // a renamed interface at the same ofport is one
    expect(bindingsOf(t.apply([iface("I1", "tap9", 3, "vm2")]))).toStrictEqual({
      vm2: { portId: "vm2", ofport: 3, iface: "tap9" },
    });
  });

  it("follows a Port row's interfaces, and the deletion of the Port", () => {
    const t = new BindingTracker("br-int", []);
    t.apply([
      bridge(["P1"]),
      port("P1", ["I1"]),
      iface("I1", "tap1", 1, "vm1"),
      iface("I2", "tap2", 2, "vm2"),
    ]);
    const d = t.apply([port("P1", ["I2"])]);
    expect(bindingsOf(d)).toStrictEqual({ vm1: undefined, vm2: { portId: "vm2", ofport: 2, iface: "tap2" } });
    expect(bindingsOf(t.apply([gone("Port", "P1")]))).toStrictEqual({ vm2: undefined });
  });

  it("unbinds everything when the bridge goes", () => {
    const t = new BindingTracker("br-int", []);
    t.apply([bridge(["P1"]), port("P1", ["I1"]), iface("I1", "tap1", 1, "vm1")]);
    // another bridge's row does not matter
    expect(t.apply([gone("Bridge", "B9")]).bindings.size).toBe(0);
    const d = t.apply([
      { table: "Bridge", uuid: "B", kind: "delete", old: { name: "br-int", ports: ["P1"] } },
    ]);
    expect(bindingsOf(d)).toStrictEqual({ vm1: undefined });
    expect(t.bridgeExists).toBe(false);
  });

  it("finds the tunnel ports on the bridge, and reports a change only when one moves", () => {
    const t = new BindingTracker("br-int", []);
    const d = t.apply([
      bridge(["P1", "P2"]),
      port("P1", ["I1"]),
      port("P2", ["I2"]),
      iface("I1", "fd-geneve", 10),
      iface("I2", "fd-vxlan", 11),
    ]);
    expect(d.tunnelsChanged).toBe(true);
    expect(d.providersChanged).toBe(false);
    expect(t.tunnelPorts()).toStrictEqual({ geneve: 10, vxlan: 11 });
    expect(t.apply([iface("I1", "fd-geneve", 10)]).tunnelsChanged).toBe(false);
    expect(t.apply([iface("I2", "fd-vxlan", 12)]).tunnelsChanged).toBe(true);
    expect(t.tunnelPorts()).toStrictEqual({ geneve: 10, vxlan: 12 });
    const d2 = t.apply([gone("Interface", "I1")]);
    expect(d2.tunnelsChanged).toBe(true);
    expect(t.tunnelPorts()).toStrictEqual({ vxlan: 12 });
    // a tunnel port without an ofport, or on another bridge, is not one
    const t2 = new BindingTracker("br-int", []);
    t2.apply([bridge(["P1", "P3"]), port("P1", ["I1"]), port("P2", ["I2"]), iface("I1", "fd-geneve", -1)]);
    t2.apply([port("P3", ["I3"]), iface("I3", "fd-vxlan", 0)]);
    t2.apply([iface("I2", "fd-geneve", 5)]);
    expect(t2.tunnelPorts()).toStrictEqual({});
  });

  it("finds the patch ports of the physical networks it was given", () => {
    const t = new BindingTracker("br-int", ["physnet1", "physnet2"]);
    const d = t.apply([
      bridge(["P1", "P2", "P3"]),
      port("P1", ["I1"]),
      port("P2", ["I2"]),
      port("P3", ["I3"]),
      iface("I1", "patch-physnet1", 20),
      iface("I2", "patch-physnet1-int", 21),
      iface("I3", "patch-other", 22),
    ]);
    expect(d.providersChanged).toBe(true);
    expect(d.tunnelsChanged).toBe(false);
    expect([...t.providerPorts()]).toEqual([["physnet1", 20]]);
    expect(t.apply([iface("I3", "patch-other", 23)]).providersChanged).toBe(false);
    expect(t.apply([iface("I1", "patch-physnet1", 20)]).providersChanged).toBe(false);
    expect(t.apply([iface("I1", "patch-physnet1", 24)]).providersChanged).toBe(true);
    expect([...t.providerPorts()]).toEqual([["physnet1", 24]]);
    const d2 = t.apply([iface("I3", "patch-physnet2", 25)]);
    expect(d2.providersChanged).toBe(true);
    expect(Object.fromEntries(t.providerPorts())).toEqual({ physnet1: 24, physnet2: 25 });
    // one of two moving, the other not, is a change
    expect(t.apply([iface("I3", "patch-physnet2", 27)]).providersChanged).toBe(true);
    expect(t.apply([iface("I3", "patch-physnet2", 25)]).providersChanged).toBe(true);
    const d3 = t.apply([gone("Interface", "I1")]);
    expect(d3.providersChanged).toBe(true);
    expect(Object.fromEntries(t.providerPorts())).toEqual({ physnet2: 25 });
    // the same number of providers, at other places, is a change
    t.apply([iface("I1", "patch-physnet1", 26)]);
    const t2 = new BindingTracker("br-int", ["physnet1", "physnet2"]);
    t2.apply([
      bridge(["P1", "P2"]),
      port("P1", ["I1"]),
      port("P2", ["I2"]),
      iface("I1", "patch-physnet1", 1),
    ]);
    const d4 = t2.apply([gone("Interface", "I1"), iface("I2", "patch-physnet2", 2)]);
    expect(d4.providersChanged).toBe(true);
    expect([...t2.providerPorts()]).toEqual([["physnet2", 2]]);
  });

  it("reset starts over from the replica and reports the ports no longer bound", () => {
    const t = new BindingTracker("br-int", []);
    t.apply([
      bridge(["P1", "P2"]),
      port("P1", ["I1"]),
      port("P2", ["I2"]),
      iface("I1", "tap1", 1, "vm1"),
      iface("I2", "tap2", 2, "vm2"),
    ]);
    const rows: Record<string, Map<string, Record<string, unknown>>> = {
      Bridge: new Map([["B", { name: "br-int", ports: ["P2", "P3"] }]]),
      Port: new Map([
        ["P2", { name: "P2", interfaces: ["I2"] }],
        ["P3", { name: "P3", interfaces: ["I3"] }],
      ]),
      Interface: new Map<string, Record<string, unknown>>([
        ["I2", { name: "tap2", ofport: 2, external_ids: { "iface-id": "vm2" } }],
        ["I3", { name: "tap3", ofport: 3, external_ids: { "iface-id": "vm3" } }],
      ]),
    };
    // The replica's one method reset reads; the real Replica is exercised by the agent's integration tests.
    const replica = { table: (name: string) => rows[name]! } as unknown as Replica;
    const d = t.reset(replica);
    expect(bindingsOf(d)).toStrictEqual({
      vm1: undefined,
      vm2: { portId: "vm2", ofport: 2, iface: "tap2" },
      vm3: { portId: "vm3", ofport: 3, iface: "tap3" },
    });
    expect([...t.boundPorts().keys()].sort()).toEqual(["vm2", "vm3"]);
    // nothing of before survives: the old interface's claim is gone
    expect(bindingsOf(t.apply([bridge(["P1", "P2", "P3"])]))).toStrictEqual({});
    const d2 = t.reset({ table: () => new Map() } as unknown as Replica);
    expect(bindingsOf(d2)).toStrictEqual({ vm2: undefined, vm3: undefined });
    expect(t.bridgeExists).toBe(false);
  });
});
