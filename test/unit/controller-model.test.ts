/**
 * LocalModel (src/controller/model.ts) on its own: the contract the engine's
 * incremental recomputation rests on. Every view records exactly the entities
 * of the module comment's table while an owner is built (and nothing outside
 * `tracking`, or for the unrecorded helpers), every mutator names exactly the
 * entities whose answers it may change (and nothing when nothing changed),
 * and each view answers as its doc says: which ports are local or remote,
 * when a network is wired, and the orders that make an owner's flows the same
 * whatever the arrival order. The apps' tests see these only through flows;
 * a missing entity there shows up only as a stale owner after some later
 * change, which is what this file pins directly.
 */
import { describe, expect, it } from "vitest";
import { LocalModel } from "../../src/controller/model.js";
import { CT_ZONE_MAX, CT_ZONE_MIN, providerKey, routerHash, routerKeyOf } from "../../src/datapath/index.js";
import { DEVICE_OWNER_ROUTER_INTERFACE, parseObject, type Secgroup } from "../../src/nb/model/index.js";
import {
  binding,
  chassis,
  fip,
  net,
  newModel,
  port,
  router,
  snat,
  subnet,
} from "../harness/model-fixture.js";

const sorted = (s: Iterable<string>): string[] => [...s].sort();

/** What `fn` reads, as sorted entity keys. */
function readsOf(m: LocalModel, fn: () => unknown): string[] {
  const deps = new Set<string>();
  m.tracking(deps, fn);
  return sorted(deps);
}

/** What `fn` changes, as sorted entity keys (the changed-set is drained before and after). */
function touchedBy(m: LocalModel, fn: () => void): string[] {
  m.drainChanged();
  fn();
  return sorted(m.drainChanged());
}

const sg = (id: string): Secgroup => parseObject("secgroup", { id, tenantId: "t1" }, id);

function itf(routerNet: string, n: number) {
  return {
    subnetId: `s-${routerNet}`,
    portId: `rp-${routerNet}-${n}`,
    networkId: routerNet,
    ipAddress: `10.${n}.0.1`,
    cidr: `10.${n}.0.0/24`,
    macAddress: `fa:16:3e:00:0${n}:01`,
  };
}

describe("LocalModel: what each view records", () => {
  it("records each view's entities while tracking, and nothing outside it or for the unrecorded helpers", () => {
    const m = newModel();
    const cases: [string, () => unknown, string[]][] = [
      ["port", () => m.port("p"), ["port:p"]],
      ["localPort", () => m.localPort("p"), ["binding:p", "port:p"]],
      ["remotePort", () => m.remotePort("p"), ["binding:p", "port:p"]],
      ["network", () => m.network("n"), ["network:n", "wired:n"]],
      ["networkObject", () => m.networkObject("n"), ["network:n"]],
      ["subnet", () => m.subnet("s"), ["subnet:s"]],
      ["subnetsOf", () => m.subnetsOf("n"), ["subnets:n"]],
      ["localPortsOf", () => m.localPortsOf("n"), ["members:n"]],
      ["remoteChassisOf", () => m.remoteChassisOf("n"), ["remotes:n"]],
      ["routerPortsOf", () => m.routerPortsOf("n"), ["routers:n"]],
      ["router", () => m.router("r"), ["router:r"]],
      ["chassisInfo", () => m.chassisInfo("c"), ["chassis:c"]],
      ["tunnelPort", () => m.tunnelPort("geneve"), ["tunnels"]],
      ["portWithIp", () => m.portWithIp("n", "10.0.0.1"), ["ip:n/10.0.0.1"]],
      ["secgroup", () => m.secgroup("g"), ["secgroup:g"]],
      ["groupMembers", () => m.groupMembers("g"), ["sgmembers:g"]],
      ["groupedLocalPorts", () => m.groupedLocalPorts(), ["sglocal"]],
      ["portsOf", () => m.portsOf("n"), ["netports:n"]],
      ["floatingIpsOf", () => m.floatingIpsOf("p"), ["fips:p"]],
      ["snatOf", () => m.snatOf("r"), ["snat:r"]],
      ["providerNetwork", () => m.providerNetwork("n"), ["network:n", "providers"]],
      ["liveTunnelIp", () => m.liveTunnelIp("c"), ["chassis:c"]],
      ["natZone", () => m.natZone("r"), ["natzone:r"]],
      ["localPortByOfport", () => m.localPortByOfport(1), []],
      ["portsOnNetwork", () => m.portsOnNetwork("n"), []],
      ["networkByKey", () => m.networkByKey(5), []],
      ["localPorts", () => m.localPorts(), []],
      ["floatingIps", () => m.floatingIps(), []],
      ["snatGateways", () => m.snatGateways(), []],
    ];
    for (const [name, fn, want] of cases) expect([name, readsOf(m, fn)]).toEqual([name, want]);
  });

  it("records the chassis a remote port or network reaches, and the providers a provider network needs", () => {
    const m = newModel();
    m.setNetwork("gen", net("gen", { segmentationId: 7 }));
    m.setNetwork("flat", net("flat", { networkType: "flat", physicalNetwork: "physnet1" }));
    m.setPort("r1", port("r1", "gen", "fa:16:3e:00:00:01", [], { chassis: "host2" }));
    m.setPort("l1", port("l1", "gen", "fa:16:3e:00:00:02", []));
    m.setPort("l2", port("l2", "flat", "fa:16:3e:00:00:03", []));
    m.setBinding("l1", binding("l1", 1));
    m.setBinding("l2", binding("l2", 2));
    expect(readsOf(m, () => m.remotePort("r1"))).toEqual(["binding:r1", "chassis:host2", "port:r1"]);
    expect(readsOf(m, () => m.remoteChassisOf("gen"))).toEqual(["chassis:host2", "remotes:gen"]);
    // a tunnelled network does not depend on the patch ports; a provider network does
    expect(readsOf(m, () => m.network("gen"))).toEqual(["network:gen", "wired:gen"]);
    expect(readsOf(m, () => m.network("flat"))).toEqual(["network:flat", "providers", "wired:flat"]);
  });

  it("stops recording when tracking ends, restores an outer tracking, and networkByKey records nothing", () => {
    const m = newModel();
    m.setNetwork("n", net("n", { segmentationId: 9 }));
    m.setPort("p", port("p", "n", "fa:16:3e:00:00:01", []));
    m.setBinding("p", binding("p", 1));
    const outer = new Set<string>();
    const inner = new Set<string>();
    m.tracking(outer, () => {
      m.port("a");
      m.tracking(inner, () => m.port("b"));
      // the handler's lookup by key reads nothing, even inside an owner's build
      expect(m.networkByKey(9)?.id).toBe("n");
      m.port("c");
    });
    m.port("d");
    expect(sorted(outer)).toEqual(["port:a", "port:c"]);
    expect(sorted(inner)).toEqual(["port:b"]);
    // an exception leaves the reads restored too
    const after = new Set<string>();
    expect(() =>
      m.tracking(after, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    m.port("e");
    expect(after.size).toBe(0);
  });
});

describe("LocalModel: what each mutator names", () => {
  it("a port arriving, being bound, moving network while bound, unbound and removed", () => {
    const m = newModel();
    m.setNetwork("n1", net("n1", { segmentationId: 1 }));
    m.setNetwork("n2", net("n2", { segmentationId: 2 }));
    const p1 = port("p", "n1", "fa:16:3e:00:00:01", [["s1", "10.1.0.5"]], { securityGroups: ["g1"] });
    expect(touchedBy(m, () => m.setPort("p", p1))).toEqual([
      "ip:n1/10.1.0.5",
      "netports:n1",
      "port:p",
      "remotes:n1",
      "sgmembers:g1",
    ]);
    // the same object again: nothing
    expect(touchedBy(m, () => m.setPort("p", p1))).toEqual([]);
    expect(touchedBy(m, () => m.setBinding("p", binding("p", 3)))).toEqual([
      "binding:p",
      "members:n1",
      "remotes:n1",
      "sglocal",
      "wired:n1",
    ]);
    // the same ofport and interface: nothing
    expect(touchedBy(m, () => m.setBinding("p", binding("p", 3)))).toEqual([]);
    // another ofport: the members change, the network stays wired
    expect(touchedBy(m, () => m.setBinding("p", binding("p", 4)))).toEqual([
      "binding:p",
      "members:n1",
      "sglocal",
    ]);
    expect(m.localPortByOfport(3)).toBeUndefined();
    expect(m.localPortByOfport(4)?.id).toBe("p");
    // another interface name at the same ofport is a change too
    expect(touchedBy(m, () => m.setBinding("p", { portId: "p", ofport: 4, iface: "tap-other" }))).toEqual([
      "binding:p",
      "members:n1",
      "sglocal",
    ]);
    const p2 = port("p", "n2", "fa:16:3e:00:00:01", [["s2", "10.2.0.5"]], { securityGroups: ["g2"] });
    expect(touchedBy(m, () => m.setPort("p", p2))).toEqual([
      "ip:n1/10.1.0.5",
      "ip:n2/10.2.0.5",
      "members:n1",
      "members:n2",
      "netports:n1",
      "netports:n2",
      "port:p",
      "sglocal",
      "sgmembers:g1",
      "sgmembers:g2",
      "wired:n1",
      "wired:n2",
    ]);
    expect(m.localPortsOf("n1")).toEqual([]);
    expect(m.localPortsOf("n2").map((l) => l.id)).toEqual(["p"]);
    expect(touchedBy(m, () => m.setBinding("p", undefined))).toEqual([
      "binding:p",
      "members:n2",
      "remotes:n2",
      "sglocal",
      "wired:n2",
    ]);
    expect(m.bindingOf("p")).toBeUndefined();
    expect(m.bindingCount()).toBe(0);
    expect(touchedBy(m, () => m.setPort("p", undefined))).toEqual([
      "ip:n2/10.2.0.5",
      "netports:n2",
      "port:p",
      "remotes:n2",
      "sgmembers:g2",
    ]);
    expect([...m.portIds()]).toEqual([]);
    expect(m.portsOf("n2")).toEqual([]);
    expect(m.portWithIp("n2", "10.2.0.5")).toBeUndefined();
    expect(m.groupMembers("g2")).toEqual([]);
  });

  it("a bound port without groups does not touch sglocal; an unbound one with groups does not either", () => {
    const m = newModel();
    m.setPort("a", port("a", "n", "fa:16:3e:00:00:01", []));
    m.setBinding("a", binding("a", 1));
    const a2 = port("a", "n", "fa:16:3e:00:00:02", []);
    expect(touchedBy(m, () => m.setPort("a", a2))).toEqual(["members:n", "netports:n", "port:a"]);
    expect(touchedBy(m, () => m.setBinding("a", binding("a", 2)))).toEqual(["binding:a", "members:n"]);
    // groups gained while bound: sglocal; lost while bound: sglocal
    const a3 = port("a", "n", "fa:16:3e:00:00:02", [], { securityGroups: ["g"] });
    expect(touchedBy(m, () => m.setPort("a", a3))).toContain("sglocal");
    expect(touchedBy(m, () => m.setPort("a", a2))).toContain("sglocal");
    // not bound: no sglocal whatever the groups
    m.setPort("b", port("b", "n", "fa:16:3e:00:00:03", [], { securityGroups: ["g"] }));
    expect(touchedBy(m, () => m.setPort("b", port("b", "n", "fa:16:3e:00:00:04", [])))).not.toContain(
      "sglocal",
    );
    // a binding for a port the cache does not hold: no network to name
    expect(touchedBy(m, () => m.setBinding("ghost", binding("ghost", 9)))).toEqual(["binding:ghost"]);
  });

  it("a second port keeps its network wired, and the last one leaving unwires it", () => {
    const m = newModel();
    m.setPort("a", port("a", "n", "fa:16:3e:00:00:01", []));
    m.setPort("b", port("b", "n", "fa:16:3e:00:00:02", []));
    expect(touchedBy(m, () => m.setBinding("a", binding("a", 1)))).toContain("wired:n");
    expect(touchedBy(m, () => m.setBinding("b", binding("b", 2)))).not.toContain("wired:n");
    expect(touchedBy(m, () => m.setBinding("a", undefined))).not.toContain("wired:n");
    expect(touchedBy(m, () => m.setBinding("b", undefined))).toContain("wired:n");
  });

  it("a binding taking an ofport another port held leaves that one's lookup to the new port", () => {
    const m = newModel();
    m.setPort("a", port("a", "n", "fa:16:3e:00:00:01", []));
    m.setPort("b", port("b", "n", "fa:16:3e:00:00:02", []));
    m.setBinding("a", binding("a", 5));
    m.setBinding("b", binding("b", 5));
    // a moves away: ofport 5 is b's now and stays so
    m.setBinding("a", binding("a", 6));
    expect(m.localPortByOfport(5)?.id).toBe("b");
    expect(m.localPortByOfport(6)?.id).toBe("a");
    m.setBinding("a", undefined);
    expect(m.localPortByOfport(6)).toBeUndefined();
    expect(m.localPortByOfport(5)?.id).toBe("b");
  });

  it("networks, subnets, routers, security groups, chassis and liveness", () => {
    const m = newModel();
    const n = net("n", { segmentationId: 1 });
    expect(touchedBy(m, () => m.setNetwork("n", n))).toEqual(["network:n"]);
    expect(touchedBy(m, () => m.setNetwork("n", n))).toEqual([]);
    expect([...m.networkIds()]).toEqual(["n"]);
    expect(touchedBy(m, () => m.setNetwork("n", undefined))).toEqual(["network:n"]);
    expect(m.networkObject("n")).toBeUndefined();

    const s = subnet("s", "n1", "10.1.0.0/24");
    expect(touchedBy(m, () => m.setSubnet("s", s))).toEqual(["subnet:s", "subnets:n1"]);
    expect(touchedBy(m, () => m.setSubnet("s", s))).toEqual([]);
    expect(touchedBy(m, () => m.setSubnet("s", subnet("s", "n2", "10.1.0.0/24")))).toEqual([
      "subnet:s",
      "subnets:n1",
      "subnets:n2",
    ]);
    expect(m.subnetsOf("n1")).toEqual([]);
    expect(touchedBy(m, () => m.setSubnet("s", undefined))).toEqual(["subnet:s", "subnets:n2"]);
    expect(m.subnet("s")).toBeUndefined();
    expect(m.subnetsOf("n2")).toEqual([]);

    const r = router("r", [itf("n1", 1), itf("n2", 2)]);
    const rkey = `routerkey:${routerHash("r")}`;
    expect(touchedBy(m, () => m.setRouter("r", r))).toEqual(["router:r", rkey, "routers:n1", "routers:n2"]);
    expect(touchedBy(m, () => m.setRouter("r", r))).toEqual([]);
    expect([...m.routerIds()]).toEqual(["r"]);
    expect(touchedBy(m, () => m.setRouter("r", router("r", [itf("n3", 3)])))).toEqual([
      "router:r",
      "routers:n1",
      "routers:n2",
      "routers:n3",
    ]);
    expect(m.routerPortsOf("n1")).toEqual([]);
    expect(touchedBy(m, () => m.setRouter("r", undefined))).toEqual(["router:r", rkey, "routers:n3"]);
    expect(m.router("r")).toBeUndefined();
    expect(m.routerPortsOf("n3")).toEqual([]);

    const g = sg("g");
    expect(touchedBy(m, () => m.setSecgroup("g", g))).toEqual(["secgroup:g"]);
    expect(touchedBy(m, () => m.setSecgroup("g", g))).toEqual([]);
    expect(m.secgroup("g")).toBe(g);
    expect(touchedBy(m, () => m.setSecgroup("g", undefined))).toEqual(["secgroup:g"]);
    expect(m.secgroup("g")).toBeUndefined();

    const c = chassis("host2", "192.0.2.2");
    expect(touchedBy(m, () => m.setChassis("host2", c))).toEqual(["chassis:host2"]);
    expect(touchedBy(m, () => m.setChassis("host2", c))).toEqual([]);
    expect(m.chassisInfo("host2")).toBe(c);
    expect(touchedBy(m, () => m.setAlive("host2", true))).toEqual(["chassis:host2"]);
    expect(touchedBy(m, () => m.setAlive("host2", true))).toEqual([]);
    expect(m.isAlive("host2")).toBe(true);
    expect(touchedBy(m, () => m.setAlive("host2", false))).toEqual(["chassis:host2"]);
    expect(m.isAlive("host2")).toBe(false);
    expect(touchedBy(m, () => m.setChassis("host2", undefined))).toEqual(["chassis:host2"]);
    expect(m.chassisInfo("host2")).toBeUndefined();
  });

  it("floating IPs follow their port, SNAT gateways their router", () => {
    const m = newModel();
    const ext = {
      floatingNetworkId: "ext",
      floatingIpAddress: "172.24.4.10",
      macAddress: "fa:16:3e:aa:00:01",
    };
    const f1 = fip("f1", { ...ext, portId: "p1", fixedIpAddress: "10.0.0.5" });
    expect(touchedBy(m, () => m.setFip("f1", f1))).toEqual(["fips:p1"]);
    expect(touchedBy(m, () => m.setFip("f1", f1))).toEqual([]);
    const f1b = fip("f1", { ...ext, portId: "p2", fixedIpAddress: "10.0.0.6" });
    expect(touchedBy(m, () => m.setFip("f1", f1b))).toEqual(["fips:p1", "fips:p2"]);
    expect(m.floatingIpsOf("p1")).toEqual([]);
    // unassociated: no port to name, and none named afterwards
    const f1c = fip("f1", ext);
    expect(touchedBy(m, () => m.setFip("f1", f1c))).toEqual(["fips:p2"]);
    expect(m.floatingIps()).toEqual([f1c]);
    expect(touchedBy(m, () => m.setFip("f1", undefined))).toEqual([]);
    expect(m.floatingIps()).toEqual([]);

    const gw = { externalNetworkId: "ext", externalIpAddress: "172.24.4.2", macAddress: "fa:16:3e:aa:00:02" };
    const s1 = snat("s1", { ...gw, routerId: "r1" });
    const t1 = touchedBy(m, () => m.setSnat("s1", s1));
    expect(t1).toEqual(["natzone:r1", "snat:r1"]);
    expect(m.natZone("r1")).toBeDefined();
    expect(touchedBy(m, () => m.setSnat("s1", s1))).toEqual([]);
    // the same router's gateway replaced: its zone stays
    const zone = m.natZone("r1");
    const s1b = snat("s1", { ...gw, routerId: "r1", externalIpAddress: "172.24.4.3" });
    expect(touchedBy(m, () => m.setSnat("s1", s1b))).toEqual(["snat:r1"]);
    expect(m.natZone("r1")).toBe(zone);
    expect(m.snatGateways()).toEqual([s1b]);
    // moved to another router: the zone goes with the last gateway
    const s1c = snat("s1", { ...gw, routerId: "r2" });
    expect(touchedBy(m, () => m.setSnat("s1", s1c))).toEqual([
      "natzone:r1",
      "natzone:r2",
      "snat:r1",
      "snat:r2",
    ]);
    expect(m.natZone("r1")).toBeUndefined();
    expect(m.natZone("r2")).toBeDefined();
    expect(touchedBy(m, () => m.setSnat("s1", undefined))).toEqual(["natzone:r2", "snat:r2"]);
    expect(m.snatOf("r2")).toBeUndefined();
    expect(m.snatGateways()).toEqual([]);
  });

  it("tunnel and patch ports are named only when their ofports change", () => {
    const m = new LocalModel("host1", "192.0.2.1");
    expect(touchedBy(m, () => m.setTunnelPorts({ geneve: 100 }))).toEqual(["tunnels"]);
    expect(touchedBy(m, () => m.setTunnelPorts({ geneve: 100 }))).toEqual([]);
    expect(touchedBy(m, () => m.setTunnelPorts({ geneve: 100, vxlan: 101 }))).toEqual(["tunnels"]);
    expect(touchedBy(m, () => m.setTunnelPorts({ geneve: 102, vxlan: 101 }))).toEqual(["tunnels"]);
    // the model keeps its own copy
    const t: { geneve?: number; vxlan?: number } = { geneve: 1 };
    m.setTunnelPorts(t);
    t.geneve = 2;
    expect(m.tunnelPort("geneve")).toBe(1);
    expect(m.tunnelPort("vxlan")).toBeUndefined();

    expect(touchedBy(m, () => m.setProviderPorts(new Map()))).toEqual([]);
    const p = new Map([["physnet1", 50]]);
    expect(touchedBy(m, () => m.setProviderPorts(p))).toEqual(["providers"]);
    expect(touchedBy(m, () => m.setProviderPorts(new Map([["physnet1", 50]])))).toEqual([]);
    expect(touchedBy(m, () => m.setProviderPorts(new Map([["physnet1", 51]])))).toEqual(["providers"]);
    expect(touchedBy(m, () => m.setProviderPorts(new Map([["physnet2", 51]])))).toEqual(["providers"]);
    expect(
      touchedBy(m, () =>
        m.setProviderPorts(
          new Map([
            ["physnet2", 51],
            ["physnet3", 52],
          ]),
        ),
      ),
    ).toEqual(["providers"]);
    // a copy too: the caller's map changing later is not the model's
    p.set("physnet1", 99);
    m.setNetwork("f", net("f", { networkType: "flat", physicalNetwork: "physnet3" }));
    expect(m.providerNetwork("f")?.provider?.patchOfport).toBe(52);
  });

  it("setObject hands each kind to its setter", () => {
    const m = newModel();
    const ext = {
      floatingNetworkId: "ext",
      floatingIpAddress: "172.24.4.10",
      macAddress: "fa:16:3e:aa:00:01",
    };
    const gw = { externalNetworkId: "ext", externalIpAddress: "172.24.4.2", macAddress: "fa:16:3e:aa:00:02" };
    const objs = {
      port: port("p", "n", "fa:16:3e:00:00:01", []),
      network: net("n"),
      subnet: subnet("s", "n", "10.0.0.0/24"),
      router: router("r", []),
      chassis: chassis("c", "192.0.2.9"),
      secgroup: sg("g"),
      fip: fip("f", { ...ext, portId: "p" }),
      snat: snat("x", { ...gw, routerId: "r" }),
    } as const;
    for (const [kind, key] of [
      ["port", "p"],
      ["network", "n"],
      ["subnet", "s"],
      ["router", "r"],
      ["chassis", "c"],
      ["secgroup", "g"],
      ["fip", "f"],
      ["snat", "x"],
    ] as const)
      m.setObject(kind, key, objs[kind]);
    expect(m.port("p")).toBe(objs.port);
    expect(m.networkObject("n")).toBe(objs.network);
    expect(m.subnet("s")).toBe(objs.subnet);
    expect(m.router("r")).toBe(objs.router);
    expect(m.chassisInfo("c")).toBe(objs.chassis);
    expect(m.secgroup("g")).toBe(objs.secgroup);
    expect(m.floatingIpsOf("p")).toEqual([objs.fip]);
    expect(m.snatOf("r")).toBe(objs.snat);
  });
});

describe("LocalModel: the views' answers", () => {
  it("a local port needs its NB port and a positive ofport", () => {
    const m = newModel();
    m.setBinding("p", binding("p", 1));
    expect(m.localPort("p")).toBeUndefined();
    expect(m.localPorts()).toEqual([]);
    const p = port("p", "n", "fa:16:3e:00:00:01", []);
    m.setPort("p", p);
    expect(m.localPort("p")).toEqual({ id: "p", ofport: 1, iface: "tap-p", port: p, networkId: "n" });
    // OVS reports -1 (or 0) for an interface it could not attach
    m.setBinding("p", binding("p", 0));
    expect(m.localPort("p")).toBeUndefined();
    expect(m.localPortByOfport(0)).toBeUndefined();
    m.setBinding("p", binding("p", -1));
    expect(m.localPort("p")).toBeUndefined();
    expect(m.bindingOf("p")?.ofport).toBe(-1);
  });

  it("local ports and grouped local ports come by ofport, whatever the binding order", () => {
    const m = newModel();
    for (const [id, ofport, groups] of [
      ["z", 3, ["g"]],
      ["a", 12, []],
      ["m", 2, ["g"]],
      ["b", 1, ["g"]],
    ] as const) {
      m.setPort(id, port(id, "n", "fa:16:3e:00:00:01", [], { securityGroups: [...groups] }));
      m.setBinding(id, binding(id, ofport));
    }
    expect(m.localPorts().map((l) => l.ofport)).toEqual([1, 2, 3, 12]);
    expect(m.localPortsOf("n").map((l) => l.ofport)).toEqual([1, 2, 3, 12]);
    expect(m.groupedLocalPorts().map((l) => l.id)).toEqual(["b", "m", "z"]);
    expect(m.groupMembers("g").map((p) => p.id)).toEqual(["b", "m", "z"]);
    expect(m.portsOf("n").map((p) => p.id)).toEqual(["a", "b", "m", "z"]);
    expect(
      m
        .portsOnNetwork("n")
        .map((p) => p.id)
        .sort(),
    ).toEqual(["a", "b", "m", "z"]);
    // a binding whose NB port is gone is no local port
    m.setPort("m", undefined);
    expect(m.localPorts().map((l) => l.id)).toEqual(["b", "z", "a"]);
    expect(m.groupedLocalPorts().map((l) => l.id)).toEqual(["b", "z"]);
    expect(m.localPortByOfport(2)).toBeUndefined();
  });

  it("a remote port is an unbound port on another live chassis with an IPv4 tunnel address", () => {
    const m = newModel();
    m.setChassis(
      "host2",
      parseObject("chassis", { name: "host2", tunnelIps: ["2001:db8::2", "192.0.2.2"] }, "host2"),
    );
    m.setChassis("host3", parseObject("chassis", { name: "host3", tunnelIps: ["2001:db8::3"] }, "host3"));
    m.setAlive("host2", true);
    m.setAlive("host3", true);
    const p = port("r", "n", "fa:16:3e:00:00:01", [], { chassis: "host2" });
    m.setPort("r", p);
    expect(m.remotePort("r")).toEqual({ id: "r", port: p, chassis: "host2", tunnelIp: "192.0.2.2" });
    expect(m.liveTunnelIp("host2")).toBe("192.0.2.2");
    expect(m.liveTunnelIp("host3")).toBeUndefined();
    m.setPort("v6", port("v6", "n", "fa:16:3e:00:00:02", [], { chassis: "host3" }));
    expect(m.remotePort("v6")).toBeUndefined();
    m.setAlive("host2", false);
    expect(m.remotePort("r")).toBeUndefined();
    expect(m.liveTunnelIp("host2")).toBeUndefined();
    m.setAlive("host2", true);
    // no chassis, this chassis, a router interface, or bound here: not remote
    m.setPort("nc", port("nc", "n", "fa:16:3e:00:00:03", []));
    m.setPort("me", port("me", "n", "fa:16:3e:00:00:04", [], { chassis: "host1" }));
    m.setPort(
      "ri",
      port("ri", "n", "fa:16:3e:00:00:05", [], {
        chassis: "host2",
        deviceOwner: DEVICE_OWNER_ROUTER_INTERFACE,
      }),
    );
    m.setPort("b", port("b", "n", "fa:16:3e:00:00:06", [], { chassis: "host2" }));
    m.setBinding("b", binding("b", 4));
    for (const id of ["nc", "me", "ri", "b", "unknown"])
      expect([id, m.remotePort(id)]).toEqual([id, undefined]);
    // the network's remote chassis: the same rules, one entry per chassis
    m.setPort("r2", port("r2", "n", "fa:16:3e:00:00:07", [], { chassis: "host2" }));
    expect([...m.remoteChassisOf("n")]).toEqual([["host2", "192.0.2.2"]]);
    expect([...m.remoteChassisOf("other")]).toEqual([]);
  });

  it("orders a network's remote chassis by tunnel address as numbers, then by name", () => {
    const m = newModel();
    const hosts: [string, string][] = [
      ["h-a", "10.0.0.10"],
      ["h-b", "10.0.0.9"],
      ["h-c", "9.0.0.200"],
      ["h-e", "10.0.1.1"],
      ["h-d", "10.0.1.1"],
    ];
    for (const [name, ip] of hosts) {
      m.setChassis(name, chassis(name, ip));
      m.setAlive(name, true);
      m.setPort(`p-${name}`, port(`p-${name}`, "n", "fa:16:3e:00:00:01", [], { chassis: name }));
    }
    expect([...m.remoteChassisOf("n")]).toEqual([
      ["h-c", "9.0.0.200"],
      ["h-b", "10.0.0.9"],
      ["h-a", "10.0.0.10"],
      ["h-d", "10.0.1.1"],
      ["h-e", "10.0.1.1"],
    ]);
  });

  it("a tunnelled network is wired with a local port and a segmentation id, keyed by it", () => {
    const m = newModel();
    const g = net("g", { networkType: "vxlan", segmentationId: 77 });
    m.setNetwork("g", g);
    m.setPort("p", port("p", "g", "fa:16:3e:00:00:01", []));
    expect(m.network("g")).toBeUndefined();
    m.setBinding("p", binding("p", 1));
    expect(m.network("g")).toEqual({ id: "g", network: g, key: 77, encap: "vxlan" });
    expect(m.networkByKey(77)?.id).toBe("g");
    expect(m.networkByKey(78)).toBeUndefined();
    const noSeg = net("g", { networkType: "geneve" });
    m.setNetwork("g", noSeg);
    expect(m.network("g")).toBeUndefined();
    // local ports but no network object
    m.setNetwork("g", undefined);
    expect(m.network("g")).toBeUndefined();
    // a provider network is not tunnelled, even though it has a segmentation id
    expect(m.providerNetwork("g")).toBeUndefined();
  });

  it("a provider network is wired where its physical network has a patch port, keyed by physnet and vlan", () => {
    const m = newModel();
    const flat = net("f", { networkType: "flat", physicalNetwork: "physnet1" });
    const vlan = net("v", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 42 });
    const unmapped = net("u", { networkType: "flat", physicalNetwork: "physnet9" });
    // a tunnelled network is no provider network (the schema refuses a physical network on one)
    const local = net("l", { networkType: "geneve" });
    for (const n of [flat, vlan, unmapped, local]) {
      m.setNetwork(n.id, n);
      m.setPort(`p${n.id}`, port(`p${n.id}`, n.id, "fa:16:3e:00:00:01", []));
    }
    // not wired anywhere yet: only providerNetwork answers
    expect(m.network("f")).toBeUndefined();
    m.setProviderPorts(new Map([["physnet1", 50]]));
    const flatView = {
      id: "f",
      network: flat,
      key: providerKey("physnet1", undefined),
      provider: { physicalNetwork: "physnet1", patchOfport: 50 },
    };
    const vlanView = {
      id: "v",
      network: vlan,
      key: providerKey("physnet1", 42),
      provider: { physicalNetwork: "physnet1", patchOfport: 50, vlan: 42 },
    };
    expect(m.providerNetwork("f")).toStrictEqual(flatView);
    expect(m.providerNetwork("v")).toStrictEqual(vlanView);
    expect(m.providerNetwork("u")).toBeUndefined();
    expect(m.providerNetwork("l")).toBeUndefined();
    expect(m.providerNetwork("none")).toBeUndefined();
    expect(m.network("f")).toBeUndefined();
    for (const [i, id] of ["f", "v", "u", "l"].entries()) m.setBinding(`p${id}`, binding(`p${id}`, i + 1));
    expect(m.network("f")).toStrictEqual(flatView);
    expect(m.network("v")).toStrictEqual(vlanView);
    expect(m.network("u")).toBeUndefined();
    expect(m.network("l")).toBeUndefined(); // no segmentation id
    expect(m.networkByKey(providerKey("physnet1", 42))?.id).toBe("v");
  });

  it("router ports of a network come by router id, only the interfaces on that network", () => {
    const m = newModel();
    m.setRouter("rz", router("rz", [itf("n", 1)]));
    m.setRouter("ra", router("ra", [itf("other", 2), itf("n", 3)]));
    expect(m.routerPortsOf("n")).toEqual([
      {
        routerId: "ra",
        networkId: "n",
        subnetId: "s-n",
        ipAddress: "10.3.0.1",
        macAddress: "fa:16:3e:00:03:01",
        cidr: "10.3.0.0/24",
      },
      {
        routerId: "rz",
        networkId: "n",
        subnetId: "s-n",
        ipAddress: "10.1.0.1",
        macAddress: "fa:16:3e:00:01:01",
        cidr: "10.1.0.0/24",
      },
    ]);
  });

  it("router ports of a network are kept between reads, read as a dependency each time, and follow every router change", () => {
    const m = newModel();
    m.setRouter("ra", router("ra", [itf("n", 3)]));
    const first = m.routerPortsOf("n");
    // the same answer, and still a read of routers:n (a cache hit must not hide the dependency)
    expect(readsOf(m, () => expect(m.routerPortsOf("n")).toBe(first))).toEqual(["routers:n"]);
    expect(Object.isFrozen(first) && Object.isFrozen(first[0])).toBe(true);
    // a second router on n, a router moving off n, one going away: each shows at once
    m.setRouter("rb", router("rb", [itf("n", 4)]));
    expect(m.routerPortsOf("n").map((p) => p.routerId)).toEqual(["ra", "rb"]);
    m.setRouter("ra", router("ra", [itf("other", 3)]));
    expect(m.routerPortsOf("n").map((p) => p.routerId)).toEqual(["rb"]);
    expect(m.routerPortsOf("other").map((p) => p.routerId)).toEqual(["ra"]);
    m.setRouter("rb", undefined);
    expect(m.routerPortsOf("n")).toEqual([]);
    // an interface's address changing on the same network
    m.setRouter("ra", router("ra", [itf("other", 7)]));
    expect(m.routerPortsOf("other").map((p) => p.ipAddress)).toEqual(["10.7.0.1"]);
  });

  it("a duplicate address, subnet, floating IP or SNAT gateway: the lowest id, whatever the arrival order", () => {
    const m = newModel();
    m.setPort("pz", port("pz", "n", "fa:16:3e:00:00:01", [["s", "10.0.0.5"]]));
    m.setPort("pa", port("pa", "n", "fa:16:3e:00:00:02", [["s", "10.0.0.5"]]));
    m.setPort("pm", port("pm", "n", "fa:16:3e:00:00:03", [["s", "10.0.0.5"]]));
    expect(m.portWithIp("n", "10.0.0.5")?.id).toBe("pa");
    expect(m.portWithIp("other", "10.0.0.5")).toBeUndefined();
    m.setPort("pa", undefined);
    expect(m.portWithIp("n", "10.0.0.5")?.id).toBe("pm");
    m.setSubnet("sz", subnet("sz", "n", "10.9.0.0/24"));
    m.setSubnet("sa", subnet("sa", "n", "10.8.0.0/24"));
    expect(m.subnetsOf("n").map((s) => s.id)).toEqual(["sa", "sz"]);
    const ext = { floatingNetworkId: "ext", macAddress: "fa:16:3e:aa:00:01", portId: "pz" };
    m.setFip("fz", fip("fz", { ...ext, floatingIpAddress: "172.24.4.9" }));
    m.setFip("fa", fip("fa", { ...ext, floatingIpAddress: "172.24.4.8" }));
    expect(m.floatingIpsOf("pz").map((f) => f.id)).toEqual(["fa", "fz"]);
    const gw = { externalNetworkId: "ext", macAddress: "fa:16:3e:aa:00:02", routerId: "r" };
    m.setSnat("xz", snat("xz", { ...gw, externalIpAddress: "172.24.4.3" }));
    m.setSnat("xa", snat("xa", { ...gw, externalIpAddress: "172.24.4.2" }));
    expect(m.snatOf("r")?.id).toBe("xa");
    m.setSnat("xa", undefined);
    expect(m.snatOf("r")?.id).toBe("xz");
    // the router keeps its zone while it has a gateway left
    expect(m.natZone("r")).toBeDefined();
  });
});

// Added after StrykerJS's run over model.ts (test/mutation/controller.md): each pins a rule a
// surviving mutant broke.
describe("LocalModel: router keys", () => {
  // FNV-1a puts these two ids in one 28-bit hash; "r" has its own
  const [A, B] = ["router-13278", "router-72919"];

  it("a router alone keeps its hash with rank 0; two whose ids hash alike get ranks by id", () => {
    expect(routerHash(A)).toBe(routerHash(B));
    const m = newModel();
    m.setRouter("r", router("r", [itf("n1", 1)]));
    m.setRouter(B, router(B, [itf("n2", 2)]));
    expect(m.routerKey("r")).toBe(routerKeyOf(routerHash("r"), 0));
    expect(m.routerKey(B)).toBe(routerKeyOf(routerHash(B), 0));
    m.setRouter(A, router(A, [itf("n3", 3)]));
    expect(m.routerKey(A)).toBe(routerKeyOf(routerHash(A), 0));
    expect(m.routerKey(B)).toBe(routerKeyOf(routerHash(B), 1));
    for (const id of ["r", A, B]) expect(m.routerByKey(m.routerKey(id)!)?.id).toBe(id);
    expect(m.routerKey("nope")).toBeUndefined();
    expect(m.routerByKey(routerKeyOf(routerHash(A), 2))).toBeUndefined();
    m.setRouter(A, undefined);
    expect(m.routerKey(B)).toBe(routerKeyOf(routerHash(B), 0));
  });

  it("a key depends on the routers sharing its hash: their arrival and departure, not their changes", () => {
    const m = newModel();
    m.setRouter(B, router(B, [itf("n2", 2)]));
    expect(readsOf(m, () => m.routerKey(B))).toEqual([`routerkey:${routerHash(B)}`]);
    expect(touchedBy(m, () => m.setRouter(A, router(A, [itf("n3", 3)])))).toContain(
      `routerkey:${routerHash(B)}`,
    );
    expect(touchedBy(m, () => m.setRouter(A, router(A, [itf("n4", 4)])))).not.toContain(
      `routerkey:${routerHash(B)}`,
    );
    expect(readsOf(m, () => m.routerByKey(m.routerKey(B)!))).toEqual([`routerkey:${routerHash(B)}`]);
  });
});

describe("LocalModel: edges found by mutation testing", () => {
  const gwOf = (id: string, r: string) =>
    snat(id, {
      routerId: r,
      externalNetworkId: "ext",
      externalIpAddress: "172.24.4.2",
      macAddress: "fa:16:3e:aa:00:02",
    });
  const SPAN = CT_ZONE_MAX - CT_ZONE_MIN + 1;

  it("a router that keeps a gateway keeps its zone without naming it; one that waited and leaves names none", () => {
    const m = newModel();
    m.setSnat("s1", gwOf("s1", "r"));
    m.setSnat("s2", gwOf("s2", "r"));
    const z = m.natZone("r");
    // s2 moves to r2: r still has s1
    expect(touchedBy(m, () => m.setSnat("s2", gwOf("s2", "r2")))).toEqual([
      "natzone:r2",
      "snat:r",
      "snat:r2",
    ]);
    expect(m.natZone("r")).toBe(z);
    // every zone taken: a router that gets a gateway waits, and leaving while waiting frees nothing
    for (let i = 0; i < SPAN; i++) m.setSnat(`gw-f${i}`, gwOf(`gw-f${i}`, `f${i}`));
    m.setSnat("gw-w", gwOf("gw-w", "w"));
    expect(m.natZone("w")).toBeUndefined();
    expect(touchedBy(m, () => m.setSnat("gw-w", undefined))).toEqual(["snat:w"]);
  });

  it("waiting routers get freed zones in id order", () => {
    const m = newModel();
    // f0, f1, … take every zone
    for (let i = 0; i < SPAN; i++) m.setSnat(`gw-f${i}`, gwOf(`gw-f${i}`, `f${i}`));
    m.setSnat("gw-wz", gwOf("gw-wz", "wz"));
    m.setSnat("gw-wa", gwOf("gw-wa", "wa"));
    expect([m.natZone("wz"), m.natZone("wa")]).toEqual([undefined, undefined]);
    const freed = m.natZone("f3");
    m.setSnat("gw-f3", undefined);
    expect(m.natZone("wa")).toBe(freed);
    expect(m.natZone("wz")).toBeUndefined();
  });

  it("adopting zones that displace two routers gives both of them a zone", () => {
    const m = newModel();
    for (const r of ["r1", "r2", "r3", "r4"]) m.setSnat(`gw-${r}`, gwOf(`gw-${r}`, r));
    const z = (r: string) => m.natZone(r)!;
    const [z2, z4] = [z("r2"), z("r4")];
    expect(
      m.adoptNatZones(
        new Map([
          ["r1", z2],
          ["r3", z4],
        ]),
      ),
    ).toEqual(["r1", "r2", "r3", "r4"]);
    expect([z("r1"), z("r3")]).toEqual([z2, z4]);
    expect(m.natZone("r2")).toBeDefined();
    expect(m.natZone("r4")).toBeDefined();
    expect(new Set(["r1", "r2", "r3", "r4"].map(z)).size).toBe(4);
  });

  it("adopts a zone at either end of the range and ignores one outside it", () => {
    const m = newModel();
    m.setSnat("g1", gwOf("g1", "r1"));
    m.setSnat("g2", gwOf("g2", "r2"));
    const [z1, z2] = [m.natZone("r1"), m.natZone("r2")];
    for (const bad of [CT_ZONE_MIN - 1, CT_ZONE_MAX + 1]) {
      expect(m.adoptNatZones(new Map([["r1", bad]]))).toEqual([]);
      expect(m.natZone("r1")).toBe(z1);
    }
    const ends = new Map([
      ["r1", z2 === CT_ZONE_MIN ? CT_ZONE_MAX : CT_ZONE_MIN],
      ["r2", z2 === CT_ZONE_MIN ? CT_ZONE_MIN : CT_ZONE_MAX],
    ]);
    m.adoptNatZones(ends);
    expect([m.natZone("r1"), m.natZone("r2")]).toEqual([ends.get("r1"), ends.get("r2")]);
  });

  it("a patch port mapping removed is a change", () => {
    const m = newModel();
    m.setProviderPorts(
      new Map([
        ["physnet1", 50],
        ["physnet2", 51],
      ]),
    );
    expect(touchedBy(m, () => m.setProviderPorts(new Map([["physnet1", 50]])))).toEqual(["providers"]);
  });

  it("this chassis, router interfaces and ports bound here are never remote, even when this chassis is known and alive", () => {
    const m = newModel();
    m.setChassis("host1", chassis("host1", "192.0.2.1"));
    m.setAlive("host1", true);
    m.setChassis("host3", chassis("host3", "192.0.2.3"));
    m.setAlive("host3", true);
    m.setPort("me", port("me", "a", "fa:16:3e:00:00:01", [], { chassis: "host1" }));
    expect(m.remotePort("me")).toBeUndefined();
    expect([...m.remoteChassisOf("a")]).toEqual([]);
    m.setPort(
      "ri",
      port("ri", "b", "fa:16:3e:00:00:02", [], {
        chassis: "host3",
        deviceOwner: DEVICE_OWNER_ROUTER_INTERFACE,
      }),
    );
    expect([...m.remoteChassisOf("b")]).toEqual([]);
    // NB still names host3 for a port bound here (say, while it migrates): local, not remote
    m.setPort("mig", port("mig", "c", "fa:16:3e:00:00:03", [], { chassis: "host3" }));
    m.setBinding("mig", binding("mig", 5));
    expect([...m.remoteChassisOf("c")]).toEqual([]);
    // an unbound port without a chassis reads no chassis
    m.setPort("nc", port("nc", "d", "fa:16:3e:00:00:04", []));
    expect(readsOf(m, () => m.remotePort("nc"))).toEqual(["binding:nc", "port:nc"]);
  });

  it("chassis sharing a tunnel address come by name, whatever the arrival order", () => {
    const m = newModel();
    for (const name of ["h-b", "h-a", "h-c"]) {
      m.setChassis(name, chassis(name, "10.0.0.1"));
      m.setAlive(name, true);
      m.setPort(`p-${name}`, port(`p-${name}`, "n", "fa:16:3e:00:00:01", [], { chassis: name }));
    }
    expect([...m.remoteChassisOf("n").keys()]).toEqual(["h-a", "h-b", "h-c"]);
  });

  it("a network without ports has none on it", () => {
    const m = newModel();
    expect(m.portsOnNetwork("none")).toEqual([]);
  });
});
