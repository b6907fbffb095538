/**
 * Selective distribution as a pure function: which objects a set of local ports
 * pulls in (networks, routers and the networks behind them, subnets, peers'
 * chassis, security groups and their remote groups, floating IPs and SNAT
 * gateways with their external networks) and what stays out.
 */
import { describe, expect, it } from "vitest";
import type { StoredObject } from "../../src/nb/store/types.js";
import { closure } from "../../src/nb/sync/cache.js";
import { KIND, topicsOf } from "../../src/nb/sync/refs.js";

function db(objs: [string, string, Record<string, unknown>][]): Map<string, Map<string, StoredObject>> {
  const all = new Map<string, Map<string, StoredObject>>();
  for (const [kind, key, value] of objs) {
    if (!all.has(kind)) all.set(kind, new Map());
    all.get(kind)!.set(key, { kind, key, value, version: 1, modRevision: 1 });
  }
  return all;
}

const world = db([
  [KIND.network, "A", { tenantId: "t" }],
  [KIND.network, "B", { tenantId: "t" }],
  [KIND.network, "C", { tenantId: "t" }],
  [KIND.network, "D", { tenantId: "t" }],
  [KIND.subnet, "sA", { networkId: "A" }],
  [KIND.subnet, "sC", { networkId: "C" }],
  [KIND.subnet, "sD", { networkId: "D" }],
  [KIND.port, "pA1", { networkId: "A", chassis: "h1", securityGroups: ["g1"] }],
  [KIND.port, "pA2", { networkId: "A", chassis: "h2" }],
  [KIND.port, "pB1", { networkId: "B", chassis: "h1" }],
  [KIND.port, "pD1", { networkId: "D", chassis: "h3" }],
  [
    KIND.router,
    "R",
    {
      interfaces: [
        { networkId: "B", subnetId: "x" },
        { networkId: "C", subnetId: "sC" },
      ],
    },
  ],
  [KIND.secgroup, "g1", { rules: [{ remoteGroupId: "g2" }] }],
  [KIND.secgroup, "g2", { rules: [] }],
  [KIND.secgroup, "g3", { rules: [] }],
  [KIND.chassis, "h1", {}],
  [KIND.chassis, "h2", {}],
  [KIND.chassis, "h3", {}],
]);

const keys = (w: ReturnType<typeof closure>["wanted"], kind: string) => [...w.get(kind)!.keys()].sort();

describe("selective distribution closure", () => {
  it("a port on A pulls A, its subnet, peers, their chassis, its SG and the remote group", () => {
    const { wanted, scope } = closure(world, new Set(["pA1"]));
    expect(keys(wanted, KIND.network)).toEqual(["A"]);
    expect(keys(wanted, KIND.subnet)).toEqual(["sA"]);
    expect(keys(wanted, KIND.port)).toEqual(["pA1", "pA2"]);
    expect(keys(wanted, KIND.chassis)).toEqual(["h1", "h2"]);
    expect(keys(wanted, KIND.secgroup)).toEqual(["g1", "g2"]);
    expect(keys(wanted, KIND.router)).toEqual([]);
    expect([...scope.networks]).toEqual(["A"]);
  });

  it("a port on B pulls router R and network C behind it, not D", () => {
    const { wanted } = closure(world, new Set(["pA1", "pB1"]));
    expect(keys(wanted, KIND.network)).toEqual(["A", "B", "C"]);
    expect(keys(wanted, KIND.router)).toEqual(["R"]);
    expect(keys(wanted, KIND.subnet)).toEqual(["sA", "sC"]);
    expect(keys(wanted, KIND.chassis)).not.toContain("h3");
  });

  it("members of a remote group come in wherever they are; members of the port's own groups do not", () => {
    const w = db([
      ...[...world.values()].flatMap((t) =>
        [...t.values()].map(
          (o) =>
            [o.kind, o.key, o.value as Record<string, unknown>] as [string, string, Record<string, unknown>],
        ),
      ),
      [KIND.port, "pD2", { networkId: "D", chassis: "h3", securityGroups: ["g2"] }],
      [KIND.port, "pD3", { networkId: "D", chassis: "h3", securityGroups: ["g1"] }],
    ]);
    const { wanted, scope } = closure(w, new Set(["pA1"]));
    expect(keys(wanted, KIND.port)).toEqual(["pA1", "pA2", "pD2"]);
    expect(keys(wanted, KIND.chassis)).toEqual(["h1", "h2", "h3"]);
    expect(keys(wanted, KIND.network)).toEqual(["A"]);
    expect([...scope.memberGroups]).toEqual(["g2"]);
  });

  describe("NAT", () => {
    const nat = db([
      ...[...world.values()].flatMap((t) =>
        [...t.values()].map(
          (o) =>
            [o.kind, o.key, o.value as Record<string, unknown>] as [string, string, Record<string, unknown>],
        ),
      ),
      [KIND.network, "X", { tenantId: "t", external: true }],
      [KIND.subnet, "sX", { networkId: "X" }],
      [KIND.port, "pX1", { networkId: "X", chassis: "h3" }],
      [
        KIND.snat,
        "gR",
        { tenantId: "t", routerId: "R", externalNetworkId: "X", gatewayChassis: ["h4", "h5"] },
      ],
      [KIND.chassis, "h4", {}],
      [KIND.chassis, "h5", {}],
      [KIND.chassis, "h6", {}],
      [KIND.fip, "fA1", { tenantId: "t", floatingNetworkId: "X", portId: "pA1" }],
      [KIND.fip, "fD1", { tenantId: "u", floatingNetworkId: "X", portId: "pD1" }],
    ]);

    it("a local port's floating IP pulls it and its external network, not other tenants' floating IPs there", () => {
      const { wanted, scope } = closure(nat, new Set(["pA1"]));
      expect(keys(wanted, KIND.fip)).toEqual(["fA1"]);
      expect(keys(wanted, KIND.network)).toEqual(["A", "X"]);
      expect(keys(wanted, KIND.subnet)).toEqual(["sA", "sX"]);
      expect(keys(wanted, KIND.snat)).toEqual([]);
      expect([...scope.networks].sort()).toEqual(["A", "X"]);
    });

    it("a router in scope pulls its SNAT gateway, its external network and the gateway candidates", () => {
      const { wanted } = closure(nat, new Set(["pB1"]));
      expect(keys(wanted, KIND.snat)).toEqual(["gR"]);
      expect(keys(wanted, KIND.network)).toEqual(["B", "C", "X"]);
      expect(keys(wanted, KIND.chassis)).toEqual(["h1", "h3", "h4", "h5"]);
      expect(keys(wanted, KIND.fip)).toEqual([]);
    });

    it("a gateway candidate with no port of the router holds the router as if it had one", () => {
      const { wanted, scope } = closure(nat, new Set(), "h5");
      expect(keys(wanted, KIND.router)).toEqual(["R"]);
      expect(keys(wanted, KIND.snat)).toEqual(["gR"]);
      expect(keys(wanted, KIND.network)).toEqual(["B", "C", "X"]);
      expect(keys(wanted, KIND.port)).toEqual(["pB1", "pX1"]);
      expect([...scope.routers]).toEqual(["R"]);
      // a chassis that is no candidate: nothing
      const other = closure(nat, new Set(), "h6");
      for (const t of other.wanted.values()) expect(t.size).toBe(0);
    });
  });

  it("pub/sub topics: a floating IP also on its tenant's, a gateway with candidates also on c/", () => {
    expect(topicsOf(KIND.fip, "f", { tenantId: "t", floatingNetworkId: "X", portId: "p" })).toEqual([
      "n/X/",
      "t/t/",
    ]);
    expect(
      topicsOf(KIND.snat, "g", {
        tenantId: "t",
        routerId: "R",
        externalNetworkId: "X",
        gatewayChassis: ["h4"],
      }),
    ).toEqual(["n/X/", "r/R/", "c/"]);
    expect(topicsOf(KIND.snat, "g", { tenantId: "t", routerId: "R", externalNetworkId: "X" })).toEqual([
      "n/X/",
      "r/R/",
    ]);
  });

  it("no local ports: nothing is kept", () => {
    const { wanted } = closure(world, new Set());
    for (const t of wanted.values()) expect(t.size).toBe(0);
  });
});
