/**
 * nat.ts at its edges, as dump-flows lines (cookies left out) per owner: the
 * cases the golden view of apps-golden.test.ts does not reach. Each case
 * changes one thing of a small view and states the flows that must (or must
 * no longer) be built:
 *
 *   - a floating IP works only through a router that can carry it (a leg on
 *     the fixed address's IPv4 subnet, up, its gateway on the floating IP's
 *     network, the `routerId` it names) and only for the port's own IPv4
 *     address on an external network mapped here;
 *   - a router's SNAT: down, disabled, without a live candidate; the
 *     redirect to a remote gateway through a vxlan tunnel, never for a
 *     vlan tenant network; on the gateway, which ports get a delivery flow
 *     (IPv4 addresses on the leg's subnet; neither router ports nor ports
 *     that are nowhere);
 *   - the next-hop punts of an external network (IPv4 subnets only, a /32
 *     and a /0 one, not for a provider network that is not external);
 *   - installedNatZones reading back a router's zone from the switch's
 *     flows, with the flows it must not read.
 *
 * The view (chassis host1, host2 alive): ext (flat on physnet1, patch port
 * 50) with 172.24.4.0/24 via .1; net1 (geneve 101) with 10.1.0.0/24, local
 * vm1 (10.1.0.11, ofport 1); router r1 on net1 (10.1.0.1, MAC R1), its
 * gateway s1 on ext at 172.24.4.10 with candidates [host1]; floating IP f1
 * 172.24.4.50 → vm1.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadApps, type App } from "../../src/apps/index.js";
import { installedNatZones } from "../../src/apps/nat.js";
import type { ReactiveFlows } from "../../src/apps/types.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { CT_ZONE_MAX, CT_ZONE_MIN, table } from "../../src/datapath/index.js";
import type { Flow } from "../../src/openflow/flow.js";
import { formatFlow } from "../../src/openflow/text.js";
import { ARP_OP, buildFrame, MAC_BROADCAST } from "../../src/packet/index.js";
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
import { recordingContext, type HandlerTrace } from "../harness/app-context.js";

const R1 = "fa:16:3e:00:00:01";
const VM1 = "fa:16:3e:01:00:11";
const FIP_MAC = "fa:16:3e:fe:00:50";
const GW_MAC = "fa:16:3e:fe:00:10";
/** providerKey(physnet1, flat) as reg6 prints it (apps-golden.test.ts' ext). */
const EXT = "0x20044cb";

function itf(n: number, extra: Record<string, unknown> = {}) {
  return {
    subnetId: `sub${n}`,
    portId: `rp${n}`,
    networkId: `net${n}`,
    ipAddress: `10.${n}.0.1`,
    cidr: `10.${n}.0.0/24`,
    macAddress: `fa:16:3e:00:00:0${n}`,
    ...extra,
  };
}

function f1(extra: { fixedIpAddress?: string; routerId?: string; floatingNetworkId?: string } = {}) {
  return fip("f1", {
    floatingNetworkId: "ext",
    floatingIpAddress: "172.24.4.50",
    macAddress: FIP_MAC,
    portId: "vm1",
    fixedIpAddress: "10.1.0.11",
    ...extra,
  });
}

function s1(extra: Partial<Parameters<typeof snat>[1]> = {}) {
  return snat("s1", {
    routerId: "r1",
    externalNetworkId: "ext",
    externalIpAddress: "172.24.4.10",
    macAddress: GW_MAC,
    gatewayChassis: ["host1"],
    ...extra,
  });
}

function world(): LocalModel {
  const m = newModel();
  m.setProviderPorts(new Map([["physnet1", 50]]));
  m.setChassis("host1", chassis("host1", "192.0.2.1"));
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host1", true);
  m.setAlive("host2", true);
  m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1", external: true }));
  m.setSubnet("extsub", subnet("extsub", "ext", "172.24.4.0/24", { gatewayIp: "172.24.4.1" }));
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setPort("vm1", port("vm1", "net1", VM1, [["sub1", "10.1.0.11"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setRouter("r1", router("r1", [itf(1)]));
  m.setSnat("s1", s1());
  m.setFip("f1", f1());
  return m;
}

function engine(m: LocalModel): Engine {
  const e = new Engine(m, loadApps(["nat"]));
  e.recomputeAll();
  return e;
}

/** An owner's flows as dump-flows lines, sorted. */
function lines(e: Engine, owner: string): string[] {
  return e
    .allFlows()
    .filter((d) => d.owner === owner)
    .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
    .sort();
}

const zoneOf = (m: LocalModel) => m.natZone("r1")!;

/** f1's fourteen flows on vm1's chassis, through the router leg with MAC `rmac`. */
function fipLines(zone: number, rmac = R1): string[] {
  return [
    `table=20, priority=100,arp,reg0=0x0/0x2,reg6=${EXT},arp_tpa=172.24.4.50,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:${FIP_MAC}->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:${FIP_MAC}->arp_sha,set_field:172.24.4.50->arp_spa,IN_PORT`,
    `table=37, priority=400,ip,reg1=0x0,reg6=${EXT},nw_dst=172.24.4.50 actions=ct_clear,set_field:${FIP_MAC}->eth_dst,resubmit(,35)`,
    `table=37, priority=410,ip,reg1=0x0,reg6=${EXT},nw_src=172.24.4.50,nw_dst=172.24.4.50 actions=ct_clear,load:0x0->NXM_OF_IN_PORT[],set_field:${FIP_MAC}->eth_dst,resubmit(,35)`,
    `priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,arp_tpa=172.24.4.50,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:${FIP_MAC}->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:${FIP_MAC}->arp_sha,set_field:172.24.4.50->arp_spa,IN_PORT`,
    `priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=${FIP_MAC},arp_op=2 actions=meter:196658,CONTROLLER:65535`,
    `priority=110,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=${FIP_MAC} actions=set_field:${EXT}->reg6,set_field:0x2->reg0,goto_table:35`,
    `priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=${FIP_MAC},nw_ttl=0 actions=drop`,
    `priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=${FIP_MAC},nw_ttl=1 actions=drop`,
    `table=30, priority=299,ip,reg5=0x1,reg6=0x65,dl_dst=${rmac},nw_src=10.1.0.11 actions=goto_table:35`,
    `table=35, priority=200,ip,reg5=0x1,reg6=0x65,dl_dst=${rmac},nw_src=10.1.0.11 actions=set_field:0x1->reg1,ct(commit,table=36,zone=${zone},nat(src=172.24.4.50))`,
    `table=35, priority=201,ip,reg5=0x1,reg6=0x65,dl_dst=${rmac},nw_src=10.1.0.11,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=${zone},nat(src=172.24.4.50))`,
    `table=35, priority=200,ip,reg6=${EXT},dl_dst=${FIP_MAC},nw_dst=172.24.4.50 actions=ct(commit,table=36,zone=${zone},nat(dst=10.1.0.11))`,
    `table=36, priority=200,ip,reg6=${EXT},dl_dst=${FIP_MAC},nw_dst=10.1.0.11 actions=set_field:${rmac}->eth_src,set_field:${VM1}->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
    `table=36, priority=200,ip,reg6=0x65,dl_dst=${rmac},nw_src=172.24.4.50 actions=set_field:${FIP_MAC}->eth_src,dec_ttl,set_field:${EXT}->reg6,goto_table:37`,
  ].sort();
}

describe("nat: a floating IP works only through a router that can carry it", () => {
  it("the view's floating IP: its flows on vm1's chassis, through r1's leg", () => {
    const m = world();
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(zoneOf(m)));
  });

  it("for a port with more addresses than the fixed one (dual stack)", () => {
    const m = world();
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setPort(
      "vm1",
      port("vm1", "net1", VM1, [
        ["sub6", "fd00:1::11"],
        ["sub1", "10.1.0.11"],
      ]),
    );
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(zoneOf(m)));
  });

  it("with the routerId it names; none when it names another router", () => {
    const m = world();
    m.setFip("f1", f1({ routerId: "r1" }));
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(zoneOf(m)));
    m.setFip("f1", f1({ routerId: "r2" }));
    expect(lines(engine(m), "nat/port/vm1")).toEqual([]);
  });

  const none: [string, (m: LocalModel) => void][] = [
    ["without a fixed address", (m) => m.setFip("f1", f1({ fixedIpAddress: undefined }))],
    ["for an address the port does not have", (m) => m.setFip("f1", f1({ fixedIpAddress: "10.1.0.99" }))],
    [
      "for the port's IPv6 address",
      (m) => {
        m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
        m.setPort(
          "vm1",
          port("vm1", "net1", VM1, [
            ["sub1", "10.1.0.11"],
            ["sub6", "fd00:1::11"],
          ]),
        );
        m.setRouter(
          "r1",
          router("r1", [itf(1), itf(1, { subnetId: "sub6", ipAddress: "fd00:1::1", cidr: "fd00:1::/64" })]),
        );
        m.setFip("f1", f1({ fixedIpAddress: "fd00:1::11" }));
      },
    ],
    [
      "with an IPv6 floating address",
      (m) => {
        m.setSubnet("ext6", subnet("ext6", "ext", "2001:db8::/64"));
        m.setFip(
          "f1",
          fip("f1", {
            floatingNetworkId: "ext",
            floatingIpAddress: "2001:db8::50",
            macAddress: FIP_MAC,
            portId: "vm1",
            fixedIpAddress: "10.1.0.11",
          }),
        );
      },
    ],
    [
      "on an external network whose physical network is not mapped here",
      (m) =>
        m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet9", external: true })),
    ],
    ["when the router is down", (m) => m.setRouter("r1", router("r1", [itf(1)], { adminStateUp: false }))],
    [
      "when the router's gateway is on another external network",
      (m) => {
        m.setNetwork(
          "ext2",
          net("ext2", {
            networkType: "vlan",
            physicalNetwork: "physnet1",
            segmentationId: 100,
            external: true,
          }),
        );
        m.setSnat("s1", s1({ externalNetworkId: "ext2" }));
      },
    ],
    ["when the router has no gateway", (m) => m.setSnat("s1", undefined)],
    [
      "when the router's leg on the network is on another subnet",
      (m) => {
        m.setSubnet("sub9", subnet("sub9", "net1", "10.9.0.0/24"));
        m.setRouter(
          "r1",
          router("r1", [itf(1, { subnetId: "sub9", ipAddress: "10.9.0.1", cidr: "10.9.0.0/24" })]),
        );
      },
    ],
    [
      "when the router's leg on the network is IPv6",
      (m) => {
        m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
        m.setRouter(
          "r1",
          router("r1", [itf(1, { subnetId: "sub6", ipAddress: "fd00:1::1", cidr: "fd00:1::/64" })]),
        );
      },
    ],
    ["when the port is not bound here", (m) => m.setBinding("vm1", undefined)],
  ];
  for (const [name, change] of none) {
    it(`none ${name}`, () => {
      const m = world();
      change(m);
      expect(lines(engine(m), "nat/port/vm1")).toEqual([]);
    });
  }

  it("through the first router that qualifies, past those that do not (down, gateway elsewhere, other router named)", () => {
    // r0 sorts before r1 and has a leg on the port's subnet too
    const R0 = "fa:16:3e:00:00:a0";
    const r0 = (extra: Record<string, unknown> = {}) =>
      router("r0", [itf(1, { portId: "rp0", ipAddress: "10.1.0.254", macAddress: R0 })], extra);
    const m = world();
    m.setRouter("r0", r0());
    m.setSnat(
      "s0",
      snat("s0", {
        routerId: "r0",
        externalNetworkId: "ext",
        externalIpAddress: "172.24.4.9",
        macAddress: "fa:16:3e:fe:00:09",
        gatewayChassis: ["host1"],
      }),
    );
    // both qualify: the first, r0
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(m.natZone("r0")!, R0));
    m.setFip("f1", f1({ routerId: "r1" }));
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(zoneOf(m)));
    m.setFip("f1", f1());
    m.setRouter("r0", r0({ adminStateUp: false }));
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(zoneOf(m)));
    m.setRouter("r0", r0());
    m.setSnat("s0", undefined);
    expect(lines(engine(m), "nat/port/vm1")).toEqual(fipLines(zoneOf(m)));
  });
});

describe("nat: a router's SNAT at its edges", () => {
  it("none when the router is down, its gateway disabled or IPv6, or no candidate is alive", () => {
    const changes: ((m: LocalModel) => void)[] = [
      (m) => m.setRouter("r1", router("r1", [itf(1)], { adminStateUp: false })),
      (m) => m.setSnat("s1", s1({ enabled: false })),
      (m) => m.setSnat("s1", s1({ externalIpAddress: "2001:db8::10" })),
      (m) => m.setSnat("s1", s1({ gatewayChassis: [] })),
      (m) => m.setSnat("s1", s1({ gatewayChassis: ["host3"] })),
    ];
    for (const change of changes) {
      const m = world();
      m.setFip("f1", undefined);
      expect(lines(engine(m), "nat/router/r1").length).toBeGreaterThan(0);
      change(m);
      expect(lines(engine(m), "nat/router/r1")).toEqual([]);
    }
  });

  it("the redirect to a remote gateway: through the vxlan tunnel for a vxlan network, none for a vlan one or an IPv6 leg", () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setSnat("s1", s1({ gatewayChassis: ["host2", "host1"] }));
    m.setNetwork("net1", net("net1", { networkType: "vxlan", segmentationId: 101 }));
    // a vlan tenant network with a local port: it cannot be redirected
    m.setNetwork(
      "net4",
      net("net4", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 104 }),
    );
    m.setSubnet("sub4", subnet("sub4", "net4", "10.4.0.0/24"));
    m.setPort("vm4", port("vm4", "net4", "fa:16:3e:04:00:14", [["sub4", "10.4.0.14"]]));
    m.setBinding("vm4", binding("vm4", 4));
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setRouter(
      "r1",
      router("r1", [
        itf(1),
        itf(4),
        itf(1, { subnetId: "sub6", ipAddress: "fd00:1::1", cidr: "fd00:1::/64" }),
      ]),
    );
    expect(lines(engine(m), "nat/router/r1")).toEqual([
      `table=30, priority=298,ip,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24 actions=set_field:0x65->tun_id,set_field:192.0.2.2->tun_dst,output:101`,
    ]);
  });

  it("on the gateway: a delivery flow per IPv4 address of a port on the leg's subnet, a vxlan network through its tunnel", () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setSubnet("sub1b", subnet("sub1b", "net1", "10.11.0.0/24"));
    // vm1: dual stack and an address on another subnet of net1 (no router leg on it)
    m.setPort(
      "vm1",
      port("vm1", "net1", VM1, [
        ["sub1", "10.1.0.11"],
        ["sub6", "fd00:1::11"],
        ["sub1b", "10.11.0.11"],
      ]),
    );
    // the router's own port on net1, a port bound nowhere, a port on a dead chassis
    m.setPort(
      "rp1",
      port("rp1", "net1", R1, [["sub1", "10.1.0.1"]], { deviceOwner: "network:router_interface" }),
    );
    m.setPort("vm8", port("vm8", "net1", "fa:16:3e:01:00:18", [["sub1", "10.1.0.18"]]));
    m.setChassis("host3", chassis("host3", "192.0.2.3"));
    m.setPort("vm9", port("vm9", "net1", "fa:16:3e:01:00:19", [["sub1", "10.1.0.19"]], { chassis: "host3" }));
    // net5 (vxlan 105): no port here, vm5 on host2
    m.setNetwork("net5", net("net5", { networkType: "vxlan", segmentationId: 105 }));
    m.setSubnet("sub5", subnet("sub5", "net5", "10.5.0.0/24"));
    m.setPort("vm5", port("vm5", "net5", "fa:16:3e:05:00:15", [["sub5", "10.5.0.15"]], { chassis: "host2" }));
    // net4 (vlan, not wired here): neither a local nor a tunnel key, so nothing for its leg
    m.setNetwork(
      "net4",
      net("net4", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 104 }),
    );
    m.setSubnet("sub4", subnet("sub4", "net4", "10.4.0.0/24"));
    m.setPort("vm4", port("vm4", "net4", "fa:16:3e:04:00:14", [["sub4", "10.4.0.14"]], { chassis: "host2" }));
    m.setRouter("r1", router("r1", [itf(1), itf(5), itf(4)]));
    const zone = zoneOf(m);
    const got = lines(engine(m), "nat/router/r1");
    const R5 = "fa:16:3e:00:00:05";
    expect(got.filter((l) => !l.includes("arp") && !l.includes(`dl_dst=${GW_MAC}`))).toEqual(
      [
        `table=30, priority=298,ip,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24 actions=goto_table:35`,
        // net1 is wired here and tunnelled too: its VMs on other chassis come through the geneve port
        `priority=110,ip,tun_id=0x65,in_port=100,dl_dst=${R1},nw_src=10.1.0.0/24 actions=set_field:0x65->reg6,set_field:0x1->reg0,goto_table:35`,
        `priority=110,ip,tun_id=0x69,in_port=101,dl_dst=${R5},nw_src=10.5.0.0/24 actions=set_field:0x69->reg6,set_field:0x1->reg0,goto_table:35`,
        `table=35, priority=100,ip,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=${zone},nat(src=172.24.4.10))`,
        `table=35, priority=101,ip,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=${zone},nat(src=172.24.4.10))`,
        `table=35, priority=100,ip,reg6=0x69,dl_dst=${R5},nw_src=10.5.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=${zone},nat(src=172.24.4.10))`,
        `table=35, priority=101,ip,reg6=0x69,dl_dst=${R5},nw_src=10.5.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=${zone},nat(src=172.24.4.10))`,
        `table=36, priority=100,ip,reg6=0x65,dl_dst=${R1},nw_src=172.24.4.10 actions=set_field:${GW_MAC}->eth_src,dec_ttl,set_field:${EXT}->reg6,goto_table:37`,
        `table=36, priority=100,ip,reg6=0x69,dl_dst=${R5},nw_src=172.24.4.10 actions=set_field:${GW_MAC}->eth_src,dec_ttl,set_field:${EXT}->reg6,goto_table:37`,
        `table=37, priority=400,ip,reg1=0x0,reg6=${EXT},nw_dst=172.24.4.10 actions=ct_clear,set_field:${GW_MAC}->eth_dst,resubmit(,35)`,
      ].sort(),
    );
    expect(got.filter((l) => l.startsWith("table=36") && l.includes(`dl_dst=${GW_MAC}`))).toEqual(
      [
        `table=36, priority=100,ip,reg6=${EXT},dl_dst=${GW_MAC},nw_dst=10.1.0.11 actions=set_field:${R1}->eth_src,set_field:${VM1}->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
        `table=36, priority=100,ip,reg6=${EXT},dl_dst=${GW_MAC},nw_dst=10.5.0.15 actions=set_field:${R5}->eth_src,set_field:fa:16:3e:05:00:15->eth_dst,dec_ttl,set_field:0x69->reg6,set_field:0x69->tun_id,set_field:192.0.2.2->tun_dst,output:101`,
      ].sort(),
    );
  });
});

describe("nat: the next-hop punts of an external network", () => {
  const punts = (m: LocalModel, id = "ext") => lines(engine(m), `nat/network/${id}`);

  it("one per IPv4 subnet, ranked by prefix length (a /0 matches everything), none for IPv6", () => {
    const m = world();
    m.setSubnet("ext6", subnet("ext6", "ext", "2001:db8::/64"));
    m.setSubnet("extsmall", subnet("extsmall", "ext", "203.0.113.4/30"));
    m.setSubnet("extall", subnet("extall", "ext", "0.0.0.0/0"));
    expect(punts(m)).toEqual(
      [
        `table=37, priority=10,ip,reg6=${EXT} actions=meter:196658,CONTROLLER:65535`,
        `table=37, priority=100,ip,reg1=0x0,reg6=${EXT},nw_dst=0.0.0.0/0 actions=meter:196658,CONTROLLER:65535`,
        `table=37, priority=124,ip,reg1=0x0,reg6=${EXT},nw_dst=172.24.4.0/24 actions=meter:196658,CONTROLLER:65535`,
        `table=37, priority=130,ip,reg1=0x0,reg6=${EXT},nw_dst=203.0.113.4/30 actions=meter:196658,CONTROLLER:65535`,
      ].sort(),
    );
  });

  it("none for a provider network that is not external, or one not mapped here", () => {
    const m = world();
    m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1" }));
    expect(punts(m)).toEqual([]);
    const u = world();
    u.setProviderPorts(new Map());
    expect(punts(u)).toEqual([]);
  });

  it("a local VM on the external network: its IPv4 address only", () => {
    const m = world();
    m.setSubnet("ext6", subnet("ext6", "ext", "2001:db8::/64"));
    m.setPort(
      "vm7",
      port("vm7", "ext", "fa:16:3e:04:00:20", [
        ["ext6", "2001:db8::20"],
        ["extsub", "172.24.4.20"],
      ]),
    );
    m.setBinding("vm7", binding("vm7", 7));
    expect(punts(m).filter((l) => l.includes("priority=350"))).toEqual([
      `table=37, priority=350,ip,reg1=0x0,reg6=${EXT},nw_dst=172.24.4.20 actions=set_field:fa:16:3e:04:00:20->eth_dst,goto_table:40`,
    ]);
  });
});

describe("installedNatZones: what it reads a router's zone from, and what not", () => {
  const NAT = table("nat");
  /** The view's installed flows, r1's zone, and helpers to pick and re-zone them. */
  function setup() {
    const m = world();
    const installed = engine(m)
      .allFlows()
      .filter((d) => d.owner.startsWith("nat/"))
      .map((d) => d.flow);
    const zone = zoneOf(m);
    return { m, installed, zone };
  }
  const ctOf = (f: Flow) =>
    f.instructions.flatMap((i) => (i.type === "apply_actions" ? i.actions : [])).find((a) => a.type === "ct");
  /** `f` with the zone of its ct action set to `zone`. */
  const rezone = (f: Flow, zone: unknown): Flow => ({
    ...f,
    instructions: f.instructions.map((i) =>
      i.type === "apply_actions"
        ? { ...i, actions: i.actions.map((a) => (a.type === "ct" ? ({ ...a, zone } as typeof a) : a)) }
        : i,
    ),
  });
  const natFlowsOf = (installed: Flow[]) => installed.filter((f) => f.table === NAT && ctOf(f) !== undefined);

  it("from the router's SNAT flows, from the floating IP's DNAT flow alone, and from its SNAT flow alone", () => {
    const { m, installed, zone } = setup();
    expect(installedNatZones(installed, m)).toEqual(new Map([["r1", zone]]));
    const byPort = natFlowsOf(installed).filter((f) => f.priority === 200);
    expect(byPort).toHaveLength(2);
    for (const f of byPort) expect(installedNatZones([f], m)).toEqual(new Map([["r1", zone]]));
    const byRouter = natFlowsOf(installed).filter((f) => f.priority === 100);
    expect(byRouter).toHaveLength(2);
    for (const f of byRouter) expect(installedNatZones([f], m)).toEqual(new Map([["r1", zone]]));
  });

  it("the lowest and highest NAT zones are zones; a router seen in two is left out", () => {
    const { m, installed } = setup();
    const nat = natFlowsOf(installed);
    expect(
      installedNatZones(
        nat.map((f) => rezone(f, CT_ZONE_MAX)),
        m,
      ),
    ).toEqual(new Map([["r1", CT_ZONE_MAX]]));
    expect(
      installedNatZones(
        nat.map((f) => rezone(f, CT_ZONE_MIN)),
        m,
      ),
    ).toEqual(new Map([["r1", CT_ZONE_MIN]]));
    expect(installedNatZones([...nat, rezone(nat[0]!, CT_ZONE_MAX)], m)).toEqual(new Map());
  });

  it("ignores ct zones outside the NAT range or from a field, other tables, other owners, write_actions, unknown addresses", () => {
    const { m, installed, zone } = setup();
    const nat = natFlowsOf(installed);
    const snatFlow = nat.find((f) => f.priority === 100 && ctOf(f)?.commit)!;
    const dnatFlow = nat.find((f) => f.priority === 200 && f.match.some((x) => x.field === "ip_dst"))!;
    const other = zone === CT_ZONE_MAX ? zone - 1 : zone + 1;
    const noise: Flow[] = [
      rezone(snatFlow, CT_ZONE_MIN - 1), // a port's zone, below the range
      rezone(snatFlow, CT_ZONE_MAX + 1),
      rezone(snatFlow, { field: "reg0", ofs: 0, nbits: 16 }),
      { ...rezone(snatFlow, other), table: table("nat_state") },
      { ...rezone(snatFlow, other), cookie: snatFlow.cookie + 1n },
      {
        ...snatFlow,
        instructions: rezone(snatFlow, other).instructions.map((i) =>
          i.type === "apply_actions" ? { type: "write_actions" as const, actions: i.actions } : i,
        ),
      },
      {
        ...rezone(dnatFlow, other),
        match: dnatFlow.match.map((x) => (x.field === "ip_dst" ? { ...x, value: "172.24.4.99" } : x)),
      },
    ];
    for (const f of noise) expect(installedNatZones([...installed, f], m)).toEqual(new Map([["r1", zone]]));
  });

  it("a floating IP whose router no longer carries it names no router", () => {
    const { m, installed } = setup();
    const byPort = natFlowsOf(installed).filter((f) => f.priority === 200);
    m.setRouter("r1", router("r1", [itf(1)], { adminStateUp: false }));
    expect(installedNatZones(byPort, m)).toEqual(new Map());
  });

  it("a floating IP without a fixed IPv4 address names no router", () => {
    const { m, installed } = setup();
    const byPort = natFlowsOf(installed).filter((f) => f.priority === 200);
    m.setFip("f1", f1({ fixedIpAddress: undefined }));
    expect(installedNatZones(byPort, m)).toEqual(new Map());
  });
});

// ── the handlers: next hops, ARP requests, gratuitous ARP, adoption ─────────────

const UPSTREAM = "fa:16:3e:99:00:01";
const NEIGHBOUR = "fa:16:3e:99:00:07";

type Trace = HandlerTrace;

const context = (m: LocalModel) =>
  recordingContext(m, "test-nat-edges", {
    resubmit: async () => {
      throw new Error("nat never resubmits a packet-in");
    },
    sendThrough: async () => {
      throw new Error("nat never sends a packet through a flow");
    },
    continueAt: async () => {
      throw new Error("nat never sends a packet on from a later table");
    },
  });

const natApp = (): App => loadApps(["nat"])[0]!;

async function packetIn(a: App, m: LocalModel, data: Buffer, tableId: number): Promise<Trace> {
  const { ctx, trace } = context(m);
  await a.packetIn!({ inPort: 50, tableId, cookie: 0n, data }, ctx);
  return trace;
}

const line = (f: ReactiveFlows["flows"][number]): string => formatFlow({ ...f.build(0n), cookie: 0n });

function arpFrame(op: number, sha: string, spa: string, tpa: string): Buffer {
  return buildFrame({
    eth: { src: sha, dst: op === ARP_OP.REQUEST ? MAC_BROADCAST : FIP_MAC },
    arp: { op, sha, spa, tha: op === ARP_OP.REQUEST ? "00:00:00:00:00:00" : FIP_MAC, tpa },
  });
}

const fromNat = (dst: string, src = "172.24.4.50", mac = FIP_MAC) =>
  buildFrame({
    eth: { src: mac, dst: "00:00:00:00:00:00" },
    ipv4: { src, dst, ttl: 63 },
    udp: { srcPort: 1, dstPort: 2 },
  });

/** An ARP request the agent sent, as [port, sha, spa, tpa]. */
const asked = (t: Trace) => t.sent.map((s) => [s.port, s.frame.arp?.sha, s.frame.arp?.spa, s.frame.arp?.tpa]);

const CLS = table("classification");
const RESOLVE = table("nat_resolve");

describe("nat: learning next hops, at the edges", () => {
  it("from a request for a chassis' own SNAT address, and from one for the gateway address by its MAC", async () => {
    const m = world();
    m.setSnat(
      "s1",
      s1({
        chassisAddresses: [{ chassis: "host2", ipAddress: "172.24.4.22", macAddress: "fa:16:3e:fe:00:22" }],
      }),
    );
    const t = await packetIn(
      natApp(),
      m,
      arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.7", "172.24.4.22"),
      CLS,
    );
    expect(t.installed.map((r) => [r.key, r.flows.map(line)])).toEqual([
      [
        "ext/172.24.4.7",
        [
          `table=37, idle_timeout=300, send_flow_rem priority=300,ip,reg6=${EXT},nw_dst=172.24.4.7 actions=set_field:${NEIGHBOUR}->eth_dst,output:50`,
        ],
      ],
    ]);
  });

  it("a learned next hop idles out after nextHopIdleS when it is configured", async () => {
    const m = world();
    const t = await packetIn(
      loadApps(["nat"], { nat: { nextHopIdleS: 30 } })[0]!,
      m,
      arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.7", "172.24.4.50"),
      CLS,
    );
    expect(t.installed.map((r) => r.flows.map(line))).toEqual([
      [
        `table=37, idle_timeout=30, send_flow_rem priority=300,ip,reg6=${EXT},nw_dst=172.24.4.7 actions=set_field:${NEIGHBOUR}->eth_dst,output:50`,
      ],
    ]);
  });

  it("a frame that is no ARP (a broken DHCP message even) is let be, without an error", async () => {
    const junk = buildFrame({
      eth: { src: UPSTREAM, dst: FIP_MAC },
      ipv4: { src: "172.24.4.1", dst: "172.24.4.50", ttl: 63 },
      udp: { srcPort: 68, dstPort: 67 },
      payload: Buffer.from("not dhcp"),
    });
    const t = await packetIn(natApp(), world(), junk, CLS);
    expect([t.installed, t.sent]).toEqual([[], []]);
  });

  it("nothing when the external network is not mapped here, or the asker is a chassis' SNAT address", async () => {
    const m = world();
    m.setProviderPorts(new Map());
    const t = await packetIn(
      natApp(),
      m,
      arpFrame(ARP_OP.REQUEST, UPSTREAM, "172.24.4.1", "172.24.4.50"),
      CLS,
    );
    expect([t.installed, t.sent]).toEqual([[], []]);
    const w = world();
    w.setSnat(
      "s1",
      s1({
        chassisAddresses: [{ chassis: "host2", ipAddress: "172.24.4.22", macAddress: "fa:16:3e:fe:00:22" }],
      }),
    );
    const u = await packetIn(
      natApp(),
      w,
      arpFrame(ARP_OP.REQUEST, "fa:16:3e:fe:00:22", "172.24.4.22", "172.24.4.50"),
      CLS,
    );
    expect(u.installed).toEqual([]);
  });
});

describe("nat: ARP requests for unknown next hops, at the edges", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("from a gateway address and a chassis' own address (each with its MAC), not from the address with another MAC", async () => {
    const m = world();
    m.setSnat(
      "s1",
      s1({
        chassisAddresses: [{ chassis: "host1", ipAddress: "172.24.4.21", macAddress: "fa:16:3e:fe:00:21" }],
      }),
    );
    expect(asked(await packetIn(natApp(), m, fromNat("8.8.8.8", "172.24.4.10", GW_MAC), RESOLVE))).toEqual([
      [50, GW_MAC, "172.24.4.10", "172.24.4.1"],
    ]);
    expect(
      asked(await packetIn(natApp(), m, fromNat("8.8.8.8", "172.24.4.21", "fa:16:3e:fe:00:21"), RESOLVE)),
    ).toEqual([[50, "fa:16:3e:fe:00:21", "172.24.4.21", "172.24.4.1"]]);
    expect(asked(await packetIn(natApp(), m, fromNat("8.8.8.8", "172.24.4.10", FIP_MAC), RESOLVE))).toEqual(
      [],
    );
    expect(asked(await packetIn(natApp(), m, fromNat("8.8.8.8", "172.24.4.21", GW_MAC), RESOLVE))).toEqual(
      [],
    );
  });

  it("the gateway of the subnet the source is in, not of another subnet of the network", async () => {
    const m = world();
    // "ext-a" sorts before "extsub" and has a gateway, but the source is not in it
    m.setSubnet("ext-a", subnet("ext-a", "ext", "198.18.0.0/24", { gatewayIp: "198.18.0.1" }));
    expect(asked(await packetIn(natApp(), m, fromNat("8.8.8.8"), RESOLVE))).toEqual([
      [50, FIP_MAC, "172.24.4.50", "172.24.4.1"],
    ]);
    // on-link in either subnet: the destination itself
    expect(asked(await packetIn(natApp(), m, fromNat("198.18.0.9"), RESOLVE))).toEqual([
      [50, FIP_MAC, "172.24.4.50", "198.18.0.9"],
    ]);
  });

  it("a packet between DHCP ports whose payload is no DHCP message still finds its next hop", async () => {
    // a relay here talking to a DHCP server outside: nat reads only the addresses, not the payload
    const relay = buildFrame({
      eth: { src: FIP_MAC, dst: "00:00:00:00:00:00" },
      ipv4: { src: "172.24.4.50", dst: "8.8.8.8", ttl: 63 },
      udp: { srcPort: 67, dstPort: 67 },
      payload: Buffer.from("not dhcp"),
    });
    expect(asked(await packetIn(natApp(), world(), relay, RESOLVE))).toEqual([
      [50, FIP_MAC, "172.24.4.50", "172.24.4.1"],
    ]);
  });

  it("nothing for an IPv6 packet, or when the external network is not mapped here", async () => {
    const m = world();
    const v6 = buildFrame({
      eth: { src: FIP_MAC, dst: "00:00:00:00:00:00" },
      ipv6: { src: "2001:db8::50", dst: "2001:db8::1", hopLimit: 63 },
      udp: { srcPort: 1, dstPort: 2 },
    });
    expect((await packetIn(natApp(), m, v6, RESOLVE)).sent).toEqual([]);
    m.setProviderPorts(new Map());
    expect((await packetIn(natApp(), m, fromNat("8.8.8.8"), RESOLVE)).sent).toEqual([]);
  });

  it("asks again for a next hop once a full second has passed, not before", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
    const nat = natApp();
    const m = world();
    expect(asked(await packetIn(nat, m, fromNat("8.8.8.8"), RESOLVE))).toHaveLength(1);
    vi.setSystemTime(1_000_999);
    expect(asked(await packetIn(nat, m, fromNat("8.8.8.8"), RESOLVE))).toEqual([]);
    vi.setSystemTime(1_001_000);
    expect(asked(await packetIn(nat, m, fromNat("8.8.8.8"), RESOLVE))).toHaveLength(1);
  });

  it("keeps the last second's next hops when it forgets old ones (more than 4096 asked)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const nat = natApp();
    const m = world();
    m.setSubnet("extsub", subnet("extsub", "ext", "172.16.0.0/12", { gatewayIp: "172.16.0.1" }));
    m.setFip(
      "f1",
      fip("f1", {
        floatingNetworkId: "ext",
        floatingIpAddress: "172.16.0.50",
        macAddress: FIP_MAC,
        portId: "vm1",
        fixedIpAddress: "10.1.0.11",
      }),
    );
    vi.setSystemTime(1_000_000);
    for (let i = 0; i < 4096; i++) {
      const dst = `172.17.${i >> 8}.${i & 255}`;
      expect(asked(await packetIn(nat, m, fromNat(dst, "172.16.0.50"), RESOLVE))).toHaveLength(1);
    }
    // a second later: the 4097th next hop makes it forget the 4096 old ones, not the one asked now
    vi.setSystemTime(1_001_000);
    expect(asked(await packetIn(nat, m, fromNat("172.18.0.1", "172.16.0.50"), RESOLVE))).toHaveLength(1);
    expect(asked(await packetIn(nat, m, fromNat("172.18.0.1", "172.16.0.50"), RESOLVE))).toEqual([]);
    expect(asked(await packetIn(nat, m, fromNat("172.17.0.0", "172.16.0.50"), RESOLVE))).toHaveLength(1);
  });
});

describe("nat: gratuitous ARP, at the edges", () => {
  async function tick(a: App, m: LocalModel): Promise<(string | undefined)[][]> {
    const { ctx, trace } = context(m);
    await a.timer!.tick(ctx, 0);
    return trace.sent.map((s) => [s.frame.eth.src, s.frame.arp?.spa]);
  }
  const OWN: [string, string] = ["fa:16:3e:fe:00:21", "172.24.4.21"];
  const own = { chassis: "host1", ipAddress: OWN[1], macAddress: OWN[0] };

  it("a chassis' own SNAT address is announced with the gateway's; alone when the gateway runs elsewhere", async () => {
    const m = world();
    m.setSnat("s1", s1({ chassisAddresses: [own] }));
    expect(await tick(natApp(), m)).toEqual([[FIP_MAC, "172.24.4.50"], [GW_MAC, "172.24.4.10"], OWN]);
    m.setSnat("s1", s1({ chassisAddresses: [own], gatewayChassis: ["host2"] }));
    expect(await tick(natApp(), m)).toEqual([[FIP_MAC, "172.24.4.50"], OWN]);
  });

  it("the own addresses of two routers' gateways, each announced", async () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setSnat("s1", s1({ chassisAddresses: [own], gatewayChassis: ["host2"] }));
    m.setRouter("r2", router("r2", [itf(2)]));
    m.setSnat(
      "s2",
      snat("s2", {
        routerId: "r2",
        externalNetworkId: "ext",
        externalIpAddress: "172.24.4.12",
        macAddress: "fa:16:3e:fe:00:12",
        gatewayChassis: ["host2"],
        chassisAddresses: [{ chassis: "host1", ipAddress: "172.24.4.22", macAddress: "fa:16:3e:fe:00:22" }],
      }),
    );
    expect(await tick(natApp(), m)).toEqual([OWN, ["fa:16:3e:fe:00:22", "172.24.4.22"]]);
  });

  it("not a chassis' own address of a disabled or IPv6 gateway, a router that is down, or another chassis", async () => {
    const changes: ((m: LocalModel) => void)[] = [
      (m) => m.setSnat("s1", s1({ chassisAddresses: [own], enabled: false })),
      (m) => m.setSnat("s1", s1({ chassisAddresses: [own], externalIpAddress: "2001:db8::10" })),
      (m) => {
        m.setSnat("s1", s1({ chassisAddresses: [own] }));
        m.setRouter("r1", router("r1", [itf(1)], { adminStateUp: false }));
      },
      (m) => m.setSnat("s1", s1({ chassisAddresses: [{ ...own, chassis: "host2" }] })),
    ];
    for (const change of changes) {
      const m = world();
      m.setFip("f1", undefined);
      change(m);
      expect((await tick(natApp(), m)).filter((x) => x[1] === OWN[1])).toEqual([]);
    }
  });

  it("an address that goes and comes back is announced afresh", async () => {
    const nat = natApp();
    const m = world();
    m.setSnat("s1", s1({ gatewayChassis: [] })); // the floating IP alone is announced
    for (let i = 0; i < 3; i++) expect(await tick(nat, m)).toEqual([[FIP_MAC, "172.24.4.50"]]);
    expect(await tick(nat, m)).toEqual([]);
    m.setFip("f1", undefined);
    expect(await tick(nat, m)).toEqual([]);
    m.setFip("f1", f1());
    expect(await tick(nat, m)).toEqual([[FIP_MAC, "172.24.4.50"]]);
  });

  it("a new MAC for an address is announced afresh", async () => {
    const nat = natApp();
    const m = world();
    m.setFip("f1", undefined);
    for (let i = 0; i < 3; i++) expect(await tick(nat, m)).toEqual([[GW_MAC, "172.24.4.10"]]);
    expect(await tick(nat, m)).toEqual([]);
    m.setSnat("s1", s1({ macAddress: "fa:16:3e:fe:00:11" }));
    expect(await tick(nat, m)).toEqual([["fa:16:3e:fe:00:11", "172.24.4.10"]]);
  });
});

describe("nat: adopting learned next hops, at the edges", () => {
  /** The reactive flows learned from an ARP request by `sha`/`spa` for 172.24.4.50, built with a cookie. */
  async function learned(m: LocalModel, sha: string, spa: string): Promise<Flow[]> {
    const t = await packetIn(natApp(), m, arpFrame(ARP_OP.REQUEST, sha, spa, "172.24.4.50"), CLS);
    return t.installed[0]!.flows.map((f) => f.build(0xabcn));
  }

  it("on the second of two external networks (by id), and a gateway found past a subnet without one", async () => {
    const m = world();
    // "aaa-ext" sorts first: another external network (vlan), r2's gateway on it
    m.setNetwork(
      "aaa-ext",
      net("aaa-ext", {
        networkType: "vlan",
        physicalNetwork: "physnet1",
        segmentationId: 100,
        external: true,
      }),
    );
    m.setSubnet("aaa-sub", subnet("aaa-sub", "aaa-ext", "198.51.100.0/24", { gatewayIp: "198.51.100.1" }));
    m.setRouter("r2", router("r2", [itf(2)]));
    m.setSnat(
      "s2",
      snat("s2", {
        routerId: "r2",
        externalNetworkId: "aaa-ext",
        externalIpAddress: "198.51.100.10",
        macAddress: "fa:16:3e:fe:01:10",
        gatewayChassis: ["host2"],
      }),
    );
    // a subnet of ext without a gateway, sorting before extsub
    m.setSubnet("ext-a", subnet("ext-a", "ext", "198.18.0.0/24"));
    const flows = await learned(m, UPSTREAM, "172.24.4.1");
    expect(flows).toHaveLength(2);
    for (const f of flows) expect(natApp().adoptReactive!(f, context(m).ctx)?.key).toBe("ext/172.24.4.1");
  });

  it("an on-link neighbour's flow under its own key", async () => {
    const m = world();
    const [host] = await learned(m, NEIGHBOUR, "172.24.4.7");
    expect(natApp().adoptReactive!(host!, context(m).ctx)?.key).toBe("ext/172.24.4.7");
  });

  it("not a flow whose priority or output differs from what it would build now", async () => {
    const m = world();
    const [host] = await learned(m, NEIGHBOUR, "172.24.4.7");
    const { ctx } = context(m);
    expect(natApp().adoptReactive!({ ...host!, priority: 301 }, ctx)).toBeUndefined();
    const elsewhere: Flow = {
      ...host!,
      instructions: host!.instructions.map((i) =>
        i.type === "apply_actions"
          ? { ...i, actions: i.actions.map((a) => (a.type === "output" ? { ...a, port: 51 } : a)) }
          : i,
      ),
    };
    expect(natApp().adoptReactive!(elsewhere, ctx)).toBeUndefined();
  });

  it("not a default route when no subnet of the network has a gateway any more", async () => {
    const m = world();
    const flows = await learned(m, UPSTREAM, "172.24.4.1");
    const route = flows.find((f) => !f.match.some((x) => x.field === "ip_dst"))!;
    m.setSubnet("extsub", subnet("extsub", "ext", "172.24.4.0/24"));
    expect(natApp().adoptReactive!(route, context(m).ctx)).toBeUndefined();
  });
});

describe("nat: SNAT legs that cannot be served", () => {
  it("the router's own port on a leg is no SNAT destination, even when it names a live chassis", () => {
    const m = world();
    m.setPort(
      "rp1",
      port("rp1", "net1", R1, [["sub1", "10.1.0.1"]], {
        deviceOwner: "network:router_interface",
        chassis: "host2",
      }),
    );
    const snatDsts = lines(engine(m), "nat/router/r1").filter(
      (l) => l.includes("table=") && l.includes("nw_dst="),
    );
    expect(snatDsts.filter((l) => l.includes("nw_dst=10.1.0.1,") || l.includes("nw_dst=10.1.0.1 "))).toEqual(
      [],
    );
    // vm1's own delivery is there, so the test would see one for rp1
    expect(snatDsts.some((l) => l.includes("nw_dst=10.1.0.11"))).toBe(true);
  });

  it("a vxlan network when the switch has no vxlan port: no tunnel ingress, no delivery through it", () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setTunnelPorts({ geneve: 100 });
    m.setNetwork("net5", net("net5", { networkType: "vxlan", segmentationId: 105 }));
    m.setSubnet("sub5", subnet("sub5", "net5", "10.5.0.0/24"));
    m.setPort("vm5", port("vm5", "net5", "fa:16:3e:05:00:15", [["sub5", "10.5.0.15"]], { chassis: "host2" }));
    m.setRouter("r1", router("r1", [itf(1), itf(5)]));
    const got = lines(engine(m), "nat/router/r1");
    expect(got.filter((l) => l.includes("10.5.0") || l.includes("0x69"))).toEqual([]);
    // net1's: the l3 route, the tunnel ingress, the SNAT off-link and on-link
    expect(got.filter((l) => l.includes("10.1.0.0/24"))).toHaveLength(4);
  });

  it("nothing on the gateway chassis when the external network is not mapped here", () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet9", external: true }));
    expect(lines(engine(m), "nat/router/r1")).toEqual([]);
  });

  it("distributed SNAT: an IPv6 leg and a leg on a network not wired here get no flows", () => {
    const m = world();
    m.setFip("f1", undefined);
    const own = { chassis: "host1", ipAddress: "172.24.4.21", macAddress: "fa:16:3e:fe:00:21" };
    m.setSnat("s1", s1({ chassisAddresses: [own], gatewayChassis: ["host2"] }));
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setNetwork("net5", net("net5", { segmentationId: 105 }));
    m.setSubnet("sub5", subnet("sub5", "net5", "10.5.0.0/24"));
    m.setPort("vm5", port("vm5", "net5", "fa:16:3e:05:00:15", [["sub5", "10.5.0.15"]], { chassis: "host2" }));
    m.setRouter(
      "r1",
      router("r1", [
        itf(5),
        itf(1, { subnetId: "sub6", ipAddress: "fd00:1::1", cidr: "fd00:1::/64" }),
        itf(1),
      ]),
    );
    const zone = zoneOf(m);
    expect(
      lines(engine(m), "nat/router/r1").filter((l) => !l.includes("arp") && !l.includes("in_port=50")),
    ).toEqual(
      [
        `table=30, priority=298,ip,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24 actions=goto_table:35`,
        `table=35, priority=100,ip,reg6=${EXT},dl_dst=fa:16:3e:fe:00:21,nw_dst=172.24.4.21 actions=ct(table=36,zone=${zone},nat)`,
        `table=35, priority=110,ip,reg0=0x0/0x1,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=${zone},nat(src=172.24.4.21))`,
        `table=35, priority=111,ip,reg0=0x0/0x1,reg6=0x65,dl_dst=${R1},nw_src=10.1.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=${zone},nat(src=172.24.4.21))`,
        `table=36, priority=100,ip,reg6=${EXT},dl_dst=fa:16:3e:fe:00:21,nw_dst=10.1.0.11 actions=set_field:${R1}->eth_src,set_field:${VM1}->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
        `table=36, priority=100,ip,reg6=0x65,dl_dst=${R1},nw_src=172.24.4.21 actions=set_field:fa:16:3e:fe:00:21->eth_src,dec_ttl,set_field:${EXT}->reg6,goto_table:37`,
        `table=37, priority=400,ip,reg1=0x0,reg6=${EXT},nw_dst=172.24.4.21 actions=ct_clear,set_field:fa:16:3e:fe:00:21->eth_dst,resubmit(,35)`,
      ].sort(),
    );
  });

  it("a gateway here whose external network is not mapped here is not announced", async () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet9", external: true }));
    const { ctx, trace } = context(m);
    await natApp().timer!.tick(ctx, 0);
    expect(trace.sent).toEqual([]);
  });
});

describe("nat: a router still waiting for a NAT zone (all taken)", () => {
  /** The view with every NAT zone held by another router's gateway before r1's comes. */
  function starved(chassisAddresses: { chassis: string; ipAddress: string; macAddress: string }[] = []) {
    const m = world();
    m.setSnat("s1", undefined);
    for (let i = 0; i <= CT_ZONE_MAX - CT_ZONE_MIN; i++) {
      m.setSnat(
        `fill${i}`,
        snat(`fill${i}`, {
          routerId: `fill${i}`,
          externalNetworkId: "ext",
          externalIpAddress: "172.24.4.200",
          macAddress: "fa:16:3e:fe:00:c8",
        }),
      );
    }
    m.setSnat("s1", s1({ chassisAddresses }));
    expect(m.natZone("r1")).toBeUndefined();
    return m;
  }

  it("has no floating IP, SNAT or distributed SNAT flows, and announces nothing", async () => {
    const own = { chassis: "host1", ipAddress: "172.24.4.21", macAddress: "fa:16:3e:fe:00:21" };
    for (const m of [starved(), starved([own])]) {
      const e = engine(m);
      expect(lines(e, "nat/port/vm1")).toEqual([]);
      expect(lines(e, "nat/router/r1")).toEqual([]);
      const { ctx, trace } = context(m);
      await natApp().timer!.tick(ctx, 0);
      expect(trace.sent).toEqual([]);
    }
  });
});

describe("nat: the punt meter of the patch port comes with every owner that punts through it", () => {
  const meters = (m: LocalModel) =>
    engine(m)
      .allMeters()
      .map((x) => `${x.id}/${x.ratePps}`);

  it("a floating IP's and a gateway's on a provider network that is not external (no next-hop punts)", () => {
    const m = world();
    m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1" }));
    m.setSnat("s1", s1({ gatewayChassis: [] }));
    expect(meters(m)).toEqual(["196658/100"]);
    const g = world();
    g.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1" }));
    g.setFip("f1", undefined);
    expect(meters(g)).toEqual(["196658/100"]);
  });

  it("the next-hop punts' with no NAT address here", () => {
    const m = world();
    m.setFip("f1", undefined);
    m.setSnat("s1", s1({ gatewayChassis: [] }));
    expect(meters(m)).toEqual(["196658/100"]);
    m.setProviderPorts(new Map());
    expect(meters(m)).toEqual([]);
  });
});
