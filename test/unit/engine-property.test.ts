/**
 * The incremental engine equals a full recompute, after every step of random
 * change sequences: NB ports (moved, rebound to other chassis, readdressed,
 * port security and admin state toggled, deleted), bindings (plugged,
 * unplugged, new ofport), networks (segmentation id, admin state, deleted),
 * subnets (DHCP toggled, added, removed), routers (interfaces), chassis
 * (tunnel IP) and their liveness, tunnel and patch ports, floating IPs
 * (moved between ports, with a right or wrong fixed address and router) and
 * SNAT gateways (candidate lists, enabled, external network; a second
 * router's, so NAT zones move). The check is on
 * the engine's owner-indexed state and on what the change stream builds in
 * the reconciler's desired index, against a fresh engine and model built
 * from the same inputs.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import type { ReadyPort } from "../../src/apps/types.js";
import { Engine, type OwnerChange } from "../../src/controller/engine.js";
import { LocalModel, type Binding } from "../../src/controller/model.js";
import { OpenFlowReconciler } from "../../src/controller/reconciler.js";
import {
  parseObject,
  type Chassis,
  type FloatingIp,
  type Network,
  type Router,
  type Secgroup,
  type SnatGateway,
  type Subnet,
} from "../../src/nb/model/index.js";
import { binding, chassis, fip, net, port, router, snat, subnet } from "../harness/model-fixture.js";

const APPS = ["classifier", "portsec", "secgroup", "dhcp", "arp", "l2", "l3", "nat", "tunnel", "provider"];
const GATEWAY_LISTS = [[], ["host1"], ["host2", "host1"], ["host1", "host2"], ["host3", "host2"]];
const GROUPS = ["g1", "g2"] as const;
const NETS = ["n1", "n2", "n3", "n4"] as const;
const PORTS = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"] as const;
const CHASSIS = ["host1", "host2", "host3"] as const;

const netValue = (id: string, variant: number, admin: boolean, ps: boolean): Network => {
  const common = { adminStateUp: admin, portSecurityEnabled: ps };
  switch (id) {
    case "n1":
      return net(id, { segmentationId: 101 + variant, ...common });
    case "n2":
      return net(id, { networkType: "vxlan", segmentationId: 201 + variant, ...common });
    case "n3":
      return net(id, {
        networkType: "vlan",
        physicalNetwork: "physnet1",
        segmentationId: 300 + variant,
        ...common,
      });
    default:
      return net(id, {
        networkType: "flat",
        physicalNetwork: variant % 2 ? "physnet2" : "physnet1",
        ...common,
      });
  }
};

const SUBNETS: Record<string, [net: string, cidr: string]> = {
  s1: ["n1", "10.1.0.0/24"],
  s1v6: ["n1", "fd00:1::/64"],
  s2: ["n2", "10.2.0.0/24"],
  s3: ["n3", "10.3.0.0/24"],
  s4: ["n4", "10.4.0.0/24"],
};

const subnetsOn = (n: string): string[] => Object.keys(SUBNETS).filter((s) => SUBNETS[s]![0] === n);

type Op =
  | {
      t: "port";
      i: number;
      net: number;
      chassis: number;
      mac: number;
      ps: boolean;
      admin: boolean;
      pair: boolean;
      groups: number;
    }
  | { t: "portDel"; i: number }
  | { t: "sg"; g: number; variant: number }
  | { t: "sgDel"; g: number }
  | { t: "bind"; i: number; ofport: number }
  | { t: "unbind"; i: number }
  | { t: "net"; n: number; variant: number; admin: boolean; ps: boolean }
  | { t: "netDel"; n: number }
  | { t: "subnet"; s: number; dhcp: boolean }
  | { t: "subnetDel"; s: number }
  | { t: "router"; nets: boolean[] }
  | { t: "routerDel" }
  | { t: "chassis"; c: number; ip: number }
  | { t: "chassisDel"; c: number }
  | { t: "alive"; c: number; alive: boolean }
  | { t: "tunnels"; geneve: number; vxlan: number }
  | { t: "providers"; p1: number; p2: number }
  | { t: "fip"; k: number; i: number; fixed: boolean; router: boolean }
  | { t: "fipDel"; k: number }
  | { t: "snat"; k: number; gw: number; enabled: boolean; ext: boolean }
  | { t: "snatDel"; k: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("port" as const),
      // p0 carries the static route's next hop: move it often
      i: fc.oneof(fc.constant(0), fc.nat(PORTS.length - 1)),
      net: fc.nat(NETS.length - 1),
      chassis: fc.nat(CHASSIS.length),
      mac: fc.nat(3),
      ps: fc.boolean(),
      admin: fc.boolean(),
      pair: fc.boolean(),
      groups: fc.nat(3),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("portDel" as const), i: fc.nat(PORTS.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant("sg" as const), g: fc.nat(GROUPS.length - 1), variant: fc.nat(3) }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("sgDel" as const), g: fc.nat(GROUPS.length - 1) }) },
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constant("bind" as const), i: fc.nat(PORTS.length - 1), ofport: fc.nat(1) }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("unbind" as const), i: fc.nat(PORTS.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("net" as const),
      n: fc.nat(NETS.length - 1),
      variant: fc.nat(2),
      admin: fc.boolean(),
      ps: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("netDel" as const), n: fc.nat(NETS.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant("subnet" as const), s: fc.nat(4), dhcp: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("subnetDel" as const), s: fc.nat(4) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("router" as const),
      nets: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: "routerDel" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("chassis" as const),
      c: fc.nat(CHASSIS.length - 1),
      ip: fc.nat(2),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("chassisDel" as const), c: fc.nat(CHASSIS.length - 1) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("alive" as const),
      c: fc.nat(CHASSIS.length - 1),
      alive: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("tunnels" as const), geneve: fc.nat(2), vxlan: fc.nat(2) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("providers" as const), p1: fc.nat(2), p2: fc.nat(2) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("fip" as const),
      k: fc.nat(1),
      i: fc.nat(PORTS.length - 1),
      fixed: fc.boolean(),
      router: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("fipDel" as const), k: fc.nat(1) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("snat" as const),
      k: fc.nat(1),
      gw: fc.nat(GATEWAY_LISTS.length - 1),
      enabled: fc.boolean(),
      ext: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("snatDel" as const), k: fc.nat(1) }) },
);

/** The inputs, as plain maps: what a fresh model is built from. */
class World {
  ports = new Map<string, ReadyPort>();
  bindings = new Map<string, Binding>();
  networks = new Map<string, Network>();
  subnets = new Map<string, Subnet>();
  routers = new Map<string, Router>();
  chassis = new Map<string, Chassis>();
  secgroups = new Map<string, Secgroup>();
  fips = new Map<string, FloatingIp>();
  snats = new Map<string, SnatGateway>();
  alive = new Set<string>();
  tunnels: { geneve?: number; vxlan?: number } = { geneve: 100, vxlan: 101 };
  providers = new Map<string, number>([["physnet1", 50]]);

  /** Apply `op` here and to `m`. */
  apply(op: Op, m: LocalModel): void {
    switch (op.t) {
      case "port": {
        const id = PORTS[op.i]!;
        const n = NETS[op.net]!;
        const subs = subnetsOn(n);
        const ips = subs.map((s, k): [string, string] => {
          const cidr = SUBNETS[s]![1];
          return [
            s,
            cidr.includes(":") ? `fd00:1::${op.i + 16 + k}` : cidr.replace(/0\/24$/, String(10 + op.i)),
          ];
        });
        const ch = op.chassis < CHASSIS.length ? CHASSIS[op.chassis] : undefined;
        const p = port(id, n, `fa:16:3e:00:0${op.mac}:0${op.i}`, ips, {
          portSecurityEnabled: op.ps || op.pair,
          adminStateUp: op.admin,
          ...(ch ? { chassis: ch } : {}),
          ...(op.pair && op.ps ? { allowedAddressPairs: [{ ipAddress: "10.9.9.9" }] } : {}),
          // groups: a bit per group (only where port security is on, as the NB demands)
          ...(op.ps || op.pair ? { securityGroups: GROUPS.filter((_, k) => op.groups & (1 << k)) } : {}),
        });
        this.ports.set(id, p);
        m.setPort(id, p);
        return;
      }
      case "sg": {
        const id = GROUPS[op.g]!;
        const other = GROUPS[1 - op.g]!;
        const rules: Record<string, unknown>[] = [
          [{ id: "r", direction: "ingress", protocol: "tcp", portRangeMin: 22, portRangeMax: 22 }],
          [
            {
              id: "r",
              direction: "ingress",
              protocol: "udp",
              portRangeMin: 1000,
              portRangeMax: 2000,
              remoteGroupId: other,
            },
          ],
          [
            { id: "r", direction: "egress" },
            { id: "s", direction: "ingress", protocol: "icmp", remoteGroupId: id },
            { id: "t", direction: "ingress", ethertype: "IPv6", protocol: "tcp", remoteIpPrefix: "fd00::/8" },
          ],
          [],
        ][op.variant]!;
        const g = parseObject("secgroup", { id, tenantId: "t1", rules }, id) as Secgroup;
        this.secgroups.set(id, g);
        m.setSecgroup(id, g);
        return;
      }
      case "sgDel":
        this.secgroups.delete(GROUPS[op.g]!);
        m.setSecgroup(GROUPS[op.g]!, undefined);
        return;
      case "portDel":
        this.ports.delete(PORTS[op.i]!);
        m.setPort(PORTS[op.i]!, undefined);
        return;
      case "bind": {
        const b = binding(PORTS[op.i]!, op.i + 1 + op.ofport * 10);
        this.bindings.set(PORTS[op.i]!, b);
        m.setBinding(PORTS[op.i]!, b);
        return;
      }
      case "unbind":
        this.bindings.delete(PORTS[op.i]!);
        m.setBinding(PORTS[op.i]!, undefined);
        return;
      case "net": {
        const v = netValue(NETS[op.n]!, op.variant, op.admin, op.ps);
        this.networks.set(NETS[op.n]!, v);
        m.setNetwork(NETS[op.n]!, v);
        return;
      }
      case "netDel":
        this.networks.delete(NETS[op.n]!);
        m.setNetwork(NETS[op.n]!, undefined);
        return;
      case "subnet": {
        const id = Object.keys(SUBNETS)[op.s]!;
        const [n, cidr] = SUBNETS[id]!;
        const v = subnet(id, n, cidr, { enableDhcp: op.dhcp });
        this.subnets.set(id, v);
        m.setSubnet(id, v);
        return;
      }
      case "subnetDel": {
        const id = Object.keys(SUBNETS)[op.s]!;
        this.subnets.delete(id);
        m.setSubnet(id, undefined);
        return;
      }
      case "router": {
        const itfs = [
          ["s1", "n1", "10.1.0.1"],
          ["s2", "n2", "10.2.0.1"],
        ]
          .filter((_, k) => op.nets[k])
          .map(([s, n, ip], k) => ({
            subnetId: s!,
            portId: `rp${k}`,
            networkId: n!,
            ipAddress: ip!,
            cidr: SUBNETS[s!]![1],
            macAddress: `fa:16:3e:ff:00:0${k}`,
          }));
        // a static route via p0's address on s1 (when r1 is on s1): its next hop is a port that moves
        const r = router(
          "r1",
          itfs,
          op.nets[0] ? { routes: [{ destination: "172.16.0.0/16", nexthop: "10.1.0.10" }] } : {},
        );
        this.routers.set("r1", r);
        m.setRouter("r1", r);
        return;
      }
      case "routerDel":
        this.routers.delete("r1");
        m.setRouter("r1", undefined);
        return;
      case "chassis": {
        const c = chassis(CHASSIS[op.c]!, `192.0.2.${10 * op.c + op.ip + 1}`);
        this.chassis.set(CHASSIS[op.c]!, c);
        m.setChassis(CHASSIS[op.c]!, c);
        return;
      }
      case "chassisDel":
        this.chassis.delete(CHASSIS[op.c]!);
        m.setChassis(CHASSIS[op.c]!, undefined);
        return;
      case "alive":
        if (op.alive) this.alive.add(CHASSIS[op.c]!);
        else this.alive.delete(CHASSIS[op.c]!);
        m.setAlive(CHASSIS[op.c]!, op.alive);
        return;
      case "tunnels":
        this.tunnels = {
          ...(op.geneve ? { geneve: 100 + op.geneve } : {}),
          ...(op.vxlan ? { vxlan: 110 + op.vxlan } : {}),
        };
        m.setTunnelPorts(this.tunnels);
        return;
      case "providers":
        this.providers = new Map([
          ...(op.p1 ? [["physnet1", 50 + op.p1] as [string, number]] : []),
          ...(op.p2 ? [["physnet2", 60 + op.p2] as [string, number]] : []),
        ]);
        m.setProviderPorts(this.providers);
        return;
      case "fip": {
        // the port's address on s1 when it has one there (a wrong one otherwise, or when asked)
        const id = `f${op.k}`;
        const p = this.ports.get(PORTS[op.i]!);
        const own = p?.fixedIps.find((f) => f.subnetId === "s1")?.ipAddress;
        const v = fip(id, {
          floatingNetworkId: "x1",
          floatingIpAddress: `172.24.4.${50 + op.k}`,
          macAddress: `fa:16:3e:fe:00:5${op.k}`,
          portId: PORTS[op.i]!,
          fixedIpAddress: op.fixed && own ? own : "10.1.0.99",
          ...(op.router ? { routerId: "r1" } : {}),
        });
        this.fips.set(id, v);
        m.setFip(id, v);
        return;
      }
      case "fipDel":
        this.fips.delete(`f${op.k}`);
        m.setFip(`f${op.k}`, undefined);
        return;
      case "snat": {
        const id = `g${op.k}`;
        const v = snat(id, {
          routerId: `r${op.k + 1}`,
          externalNetworkId: op.ext ? "x1" : "n4",
          externalIpAddress: `172.24.4.${10 + op.k}`,
          macAddress: `fa:16:3e:fe:00:1${op.k}`,
          gatewayChassis: GATEWAY_LISTS[op.gw]!,
          enabled: op.enabled,
        });
        this.snats.set(id, v);
        m.setSnat(id, v);
        return;
      }
      case "snatDel":
        this.snats.delete(`g${op.k}`);
        m.setSnat(`g${op.k}`, undefined);
        return;
    }
  }

  fresh(): LocalModel {
    const m = new LocalModel("host1", "192.0.2.1");
    m.setTunnelPorts(this.tunnels);
    m.setProviderPorts(this.providers);
    for (const [k, v] of this.chassis) m.setChassis(k, v);
    for (const c of this.alive) m.setAlive(c, true);
    for (const [k, v] of this.networks) m.setNetwork(k, v);
    for (const [k, v] of this.subnets) m.setSubnet(k, v);
    for (const [k, v] of this.routers) m.setRouter(k, v);
    for (const [k, v] of this.secgroups) m.setSecgroup(k, v);
    for (const [k, v] of this.ports) m.setPort(k, v);
    for (const [k, v] of this.bindings) m.setBinding(k, v);
    for (const [k, v] of this.fips) m.setFip(k, v);
    for (const [k, v] of this.snats) m.setSnat(k, v);
    return m;
  }
}

function snapshot(e: Engine): string[] {
  return [
    ...e.allFlows().map((d) => `F ${d.owner} ${d.key} ${d.sig}`),
    ...e.allMeters().map((d) => `M ${d.owner} ${d.id} ${d.ratePps}`),
  ].sort();
}

function desiredOf(r: OpenFlowReconciler): string[] {
  const out: string[] = [];
  for (const k of r.flows.keys()) {
    const w = r.flows.winner(k)!;
    out.push(`F ${k} ${w.sig}`);
  }
  for (const k of r.meters.keys()) out.push(`M ${k} ${r.meters.winner(k)!.ratePps}`);
  return out.sort();
}

/**
 * A rich start, so that random steps meet every shape: all networks and
 * subnets, two live remote chassis, a router, and ports local and remote on
 * every network.
 */
const seed = (w: World, m: LocalModel): void => {
  for (let n = 0; n < NETS.length; n++) w.apply({ t: "net", n, variant: 0, admin: true, ps: true }, m);
  for (let s = 0; s < 5; s++) w.apply({ t: "subnet", s, dhcp: s !== 3 }, m);
  for (let c = 1; c < CHASSIS.length; c++) {
    w.apply({ t: "chassis", c, ip: 0 }, m);
    w.apply({ t: "alive", c, alive: true }, m);
  }
  w.apply({ t: "router", nets: [true, true] }, m);
  // the external network x1 (flat on physnet1) with r1's gateway and p0's floating IP
  const x1 = net("x1", { networkType: "flat", physicalNetwork: "physnet1", external: true });
  w.networks.set("x1", x1);
  m.setNetwork("x1", x1);
  const sx = subnet("sx", "x1", "172.24.4.0/24", { gatewayIp: "172.24.4.1", enableDhcp: false });
  w.subnets.set("sx", sx);
  m.setSubnet("sx", sx);
  w.apply({ t: "snat", k: 0, gw: 2, enabled: true, ext: true }, m);
  w.apply({ t: "sg", g: 0, variant: 1 }, m);
  w.apply({ t: "sg", g: 1, variant: 2 }, m);
  const place: [net: number, chassis: number, bound: boolean][] = [
    [0, 0, true],
    [0, 1, false],
    [0, 2, false],
    [1, 0, true],
    [1, 1, false],
    [2, 0, true],
    [2, 2, false],
    [3, 0, true],
  ];
  place.forEach(([n, c, bound], i) => {
    w.apply(
      { t: "port", i, net: n, chassis: c, mac: 0, ps: true, admin: true, pair: i === 0, groups: i % 4 },
      m,
    );
    if (bound) w.apply({ t: "bind", i, ofport: 0 }, m);
  });
  w.apply({ t: "fip", k: 0, i: 0, fixed: true, router: false }, m);
};

describe("incremental engine == full recompute", () => {
  for (const l3mode of ["reactive", "proactive"] as const) {
    it(`after every step of random change sequences (l3 ${l3mode})`, () => {
      const apps = () => loadApps(APPS, { l3: { mode: l3mode } });
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
          const world = new World();
          const model = new LocalModel("host1", "192.0.2.1");
          model.setTunnelPorts(world.tunnels);
          model.setProviderPorts(world.providers);
          seed(world, model);
          const engine = new Engine(model, apps());
          const rec = new OpenFlowReconciler();
          rec.update(engine.recomputeAll());
          for (const [step, op] of ops.entries()) {
            world.apply(op, model);
            const changes: OwnerChange[] = engine.recomputeChanged();
            rec.update(changes);
            const full = new Engine(world.fresh(), apps());
            const fullRec = new OpenFlowReconciler();
            fullRec.update(full.recomputeAll());
            const ctx = `step ${step}: ${JSON.stringify(op)}`;
            expect(snapshot(engine), ctx).toEqual(snapshot(full));
            expect(desiredOf(rec), ctx).toEqual(desiredOf(fullRec));
          }
        }),
        // FLOWDRAKE_PROPERTY_RUNS: fewer sequences (the first ones of the same seed) for mutation runs,
        // which run this test once per mutant (test/mutation/controller.md)
        { numRuns: Number(process.env.FLOWDRAKE_PROPERTY_RUNS ?? 200), seed: 20261204 },
      );
      // a full recompute after every step: 35-50 s on the 2-core build machine, more when it is busy
    }, 180_000);
  }

  it("rebuilds only what a change touches: one port plugged into a network of 200", () => {
    const world = new World();
    const model = new LocalModel("host1", "192.0.2.1");
    model.setTunnelPorts(world.tunnels);
    world.apply({ t: "net", n: 0, variant: 0, admin: true, ps: true }, model);
    world.apply({ t: "subnet", s: 0, dhcp: true }, model);
    for (let i = 0; i < 200; i++) {
      const id = `q${i}`;
      model.setPort(
        id,
        port(
          id,
          "n1",
          `fa:16:3e:10:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
          [["s1", `10.1.${i >> 8}.${(i & 255) + 2}`]],
        ),
      );
      model.setBinding(id, binding(id, i + 1));
    }
    const engine = new Engine(model, loadApps(APPS));
    engine.recomputeAll();
    const before = engine.stats.builds;
    model.setPort("q200", port("q200", "n1", "fa:16:3e:20:00:00", [["s1", "10.1.1.250"]]));
    model.setBinding("q200", binding("q200", 300));
    const changes = engine.recomputeChanged();
    // the new port's owners (one per app with port owners) and the network's flood set
    expect(engine.stats.builds - before).toBeLessThanOrEqual(APPS.length + 3);
    expect(changes.map((c) => c.owner).sort()).toEqual(
      [
        "arp/port/q200",
        "classifier/port/q200",
        "dhcp/port/q200",
        "l2/network/n1",
        "l2/port/q200",
        "portsec/port/q200",
      ].sort(),
    );
  });
});
