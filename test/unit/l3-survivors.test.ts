/**
 * The distributed router (src/apps/l3.ts) in the cases the other l3 tests
 * leave out, found by mutation testing (test/mutation/apps.md, "l3.ts"): a
 * static route to one address, a static route whose next hop is bound
 * nowhere, a remote port on a provider network (l2_lookup, not a tunnel),
 * delivery straight into a vxlan tunnel, the
 * longest prefix among overlapping router legs (the NB API refuses them, the
 * agent admits what the store holds), router advertisements for one MAC with
 * several IPv6 subnets or one subnet listed twice, the router interface a
 * frame was sent to when a router has two legs on one network or one MAC on
 * two networks, proactive host routes for a port that is neither here nor on
 * a live chassis and for a dual-stack port, the adoption of an IPv6 host
 * route after a restart, and the source of an ICMPv6 error when another
 * router has an IPv6 address on the same network.
 *
 * Flows as `ovs-ofctl dump-flows` lines per owner (not deduplicated: every
 * flow an owner emits is a line), frames as the packet-in handler sends them.
 */
import { describe, expect, it } from "vitest";
import { loadApps, type App } from "../../src/apps/index.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { formatFlow } from "../../src/openflow/text.js";
import { buildFrame, linkLocalFromMac } from "../../src/packet/index.js";
import { recordingContext, type HandlerTrace } from "../harness/app-context.js";
import {
  binding,
  chassis,
  net,
  newModel,
  port,
  router,
  routerKeyHex,
  subnet,
} from "../harness/model-fixture.js";

/** r1's key in the router register. */
const RK1 = routerKeyHex("r1");
const R0 = "fa:16:3e:00:00:f0";
const R1 = "fa:16:3e:00:00:01";
const R1B = "fa:16:3e:00:00:1b";
const R2 = "fa:16:3e:00:00:02";
const R3 = "fa:16:3e:00:00:03";
const M1 = "fa:16:3e:01:00:11";
const M2 = "fa:16:3e:02:00:12";
const M5 = "fa:16:3e:03:00:15";

type Leg = [subnetId: string, networkId: string, ipAddress: string, cidr: string, macAddress: string];
const legs = (list: Leg[]) =>
  list.map(([subnetId, networkId, ipAddress, cidr, macAddress]) => ({
    subnetId,
    portId: `rp-${subnetId}-${ipAddress}`,
    networkId,
    ipAddress,
    cidr,
    macAddress,
  }));

/**
 * host1: net1 (geneve 101, 10.1.0.0/24) with vm1 bound here (ofport 1, 10.1.0.11), net2 (geneve 102,
 * 10.2.0.0/24) with vm2 bound here (ofport 2, 10.2.0.12); host2 alive at 192.0.2.2. No router.
 */
function base(): LocalModel {
  const m = newModel();
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host2", true);
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setNetwork("net2", net("net2", { segmentationId: 102 }));
  m.setSubnet("sub2", subnet("sub2", "net2", "10.2.0.0/24"));
  m.setPort("vm1", port("vm1", "net1", M1, [["sub1", "10.1.0.11"]]));
  m.setPort("vm2", port("vm2", "net2", M2, [["sub2", "10.2.0.12"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  return m;
}

/** The flows one owner emits, as dump-flows lines (cookies left out), sorted; duplicates kept. */
function lines(m: LocalModel, owner: string, mode: "reactive" | "proactive" = "proactive"): string[] {
  const e = new Engine(m, loadApps(["l3"], { l3: { mode } }));
  e.recomputeAll();
  return e
    .allFlows()
    .filter((d) => d.owner === owner)
    .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
    .sort();
}

type Trace = HandlerTrace;

const context = (m: LocalModel) => recordingContext(m, "test-l3-survivors");

/** Router r1 with these legs (and `extra`, e.g. static routes) in `m`. */
function setR1(m: LocalModel, list: Leg[], extra: Parameters<typeof router>[2] = {}): void {
  m.setRouter("r1", router("r1", legs(list), extra));
}

const l3 = (): App => loadApps(["l3"], { l3: { mode: "reactive" } })[0]!;

async function packetIn(m: LocalModel, inPort: number, data: Buffer): Promise<Trace> {
  const { ctx, trace } = context(m);
  await l3().packetIn!({ inPort, tableId: 30, cookie: 0n, data }, ctx);
  return trace;
}

const udp = (ethSrc: string, ethDst: string, src: string, dst: string, ttl: number) =>
  buildFrame({
    eth: { src: ethSrc, dst: ethDst },
    ...(src.includes(":") ? { ipv6: { src, dst, hopLimit: ttl } } : { ipv4: { src, dst, ttl } }),
    udp: { srcPort: 40000, dstPort: 5000 },
    payload: Buffer.from("x"),
  });

/** An ICMP(v6) error as sent: out port, Ethernet source and destination, IP source and destination, type, code. */
const icmpOf = (s: Trace["sent"][number]) => {
  const i = s.frame.icmp ?? s.frame.icmpv6;
  const ip = s.frame.ipv4 ?? s.frame.ipv6;
  return [s.port, s.frame.eth.src, s.frame.eth.dst, ip?.src, ip?.dst, i?.type, i?.code];
};

describe("l3 flows at the edges (dump-flows lines)", () => {
  it("a static route to a single address (/32) matches that address, unmasked", () => {
    const m = base();
    setR1(
      m,
      [
        ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
        ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R2],
      ],
      { routes: [{ destination: "192.168.70.5/32", nexthop: "10.2.0.12" }] },
    );
    const statics = lines(m, "l3/router/r1").filter((l) => l.includes("192.168.70.5"));
    expect(statics).toEqual([
      `table=30, priority=332,ip,reg2=${RK1},nw_dst=192.168.70.5 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
    ]);
  });

  it("a static route whose next hop is a port neither bound here nor on a live chassis punts instead", () => {
    const m = base();
    // vm3 holds the next hop's address but is bound nowhere
    m.setPort("vm3", port("vm3", "net2", "fa:16:3e:02:00:13", [["sub2", "10.2.0.13"]]));
    setR1(
      m,
      [
        ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
        ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R2],
      ],
      { routes: [{ destination: "192.168.70.5/32", nexthop: "10.2.0.13" }] },
    );
    const statics = lines(m, "l3/router/r1").filter((l) => l.includes("192.168.70.5"));
    // no host to deliver to: the route punts (the agent answers with an ICMP error), it does not
    // rewrite the frame for vm3's MAC and hand it to l2_lookup, where nothing would take it
    expect(statics).toEqual([
      `table=30, priority=332,ip,reg2=${RK1},nw_dst=192.168.70.5 actions=CONTROLLER:65535`,
    ]);
  });

  it("a port on another chassis of a provider (VLAN) network wired here: through l2_lookup, not a tunnel", () => {
    const m = base();
    m.setProviderPorts(new Map([["physnet1", 7]]));
    m.setNetwork(
      "netp",
      net("netp", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 200 }),
    );
    m.setSubnet("subp", subnet("subp", "netp", "10.4.0.0/24"));
    m.setPort("vm4", port("vm4", "netp", "fa:16:3e:04:00:14", [["subp", "10.4.0.14"]]));
    m.setBinding("vm4", binding("vm4", 4));
    m.setPort("vm6", port("vm6", "netp", "fa:16:3e:04:00:16", [["subp", "10.4.0.16"]], { chassis: "host2" }));
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["subp", "netp", "10.4.0.1", "10.4.0.0/24", R3],
    ]);
    // the port's own network key (0x10000c8: physnet1, VLAN 200), then l2_lookup: the physical network carries it
    expect(lines(m, "l3/port/vm6")).toEqual([
      `table=30, priority=332,ip,reg2=${RK1},nw_dst=10.4.0.16 actions=set_field:fa:16:3e:00:00:03->eth_src,set_field:fa:16:3e:04:00:16->eth_dst,dec_ttl,set_field:0x10000c8->reg6,goto_table:40`,
    ]);
  });

  it("a port on another chassis of a vxlan network with no port here: straight into the vxlan tunnel port", () => {
    const m = base();
    m.setNetwork("net3", net("net3", { networkType: "vxlan", segmentationId: 103 }));
    m.setSubnet("sub3", subnet("sub3", "net3", "10.3.0.0/24"));
    m.setPort("vm5", port("vm5", "net3", M5, [["sub3", "10.3.0.15"]], { chassis: "host2" }));
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub3", "net3", "10.3.0.1", "10.3.0.0/24", R3],
    ]);
    // newModel's tunnel ports: geneve 100, vxlan 101
    expect(lines(m, "l3/port/vm5")).toEqual([
      `table=30, priority=332,ip,reg2=${RK1},nw_dst=10.3.0.15 actions=set_field:fa:16:3e:00:00:03->eth_src,set_field:fa:16:3e:03:00:15->eth_dst,dec_ttl,set_field:0x67->reg6,set_field:0x67->tun_id,set_field:192.0.2.2->tun_dst,output:101`,
    ]);
  });

  it("overlapping router legs (10.0.0.0/16, 10.0.5.0/24): an address in both leaves by the longer prefix's leg, in either order", () => {
    const wide: Leg = ["subw", "net1", "10.0.0.1", "10.0.0.0/16", R1];
    const narrow: Leg = ["subn", "net2", "10.0.5.1", "10.0.5.0/24", R2];
    for (const order of [
      [wide, narrow],
      [narrow, wide],
    ]) {
      const m = newModel();
      m.setNetwork("net1", net("net1", { segmentationId: 101 }));
      m.setSubnet("subw", subnet("subw", "net1", "10.0.0.0/16"));
      m.setNetwork("net2", net("net2", { segmentationId: 102 }));
      m.setSubnet("subn", subnet("subn", "net2", "10.0.5.0/24"));
      m.setPort("vm1", port("vm1", "net1", M1, [["subw", "10.0.0.10"]]));
      m.setPort("vm2", port("vm2", "net2", M2, [["subn", "10.0.5.20"]]));
      m.setBinding("vm1", binding("vm1", 1));
      m.setBinding("vm2", binding("vm2", 2));
      m.setRouter("r1", router("r1", legs(order)));
      expect(lines(m, "l3/port/vm2")).toEqual([
        `table=30, priority=332,ip,reg2=${RK1},nw_dst=10.0.5.20 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
      ]);
      // an address of the wide leg only still leaves by it
      expect(lines(m, "l3/port/vm1")).toEqual([
        `table=30, priority=332,ip,reg2=${RK1},nw_dst=10.0.0.10 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
      ]);
    }
  });

  it("proactive: a port neither bound here nor on a live chassis owns no host route, even while a bound port has its address", () => {
    const m = base();
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R2],
    ]);
    // vm8 on host3, which is not alive, has vm2's address (an address moving between ports)
    m.setChassis("host3", chassis("host3", "192.0.2.3"));
    m.setPort("vm8", port("vm8", "net2", "fa:16:3e:02:00:88", [["sub2", "10.2.0.12"]], { chassis: "host3" }));
    expect(lines(m, "l3/port/vm8")).toEqual([]);
    expect(lines(m, "l3/port/vm2")).toHaveLength(1);
  });

  it("proactive: a dual-stack port's host routes, each once — an address is routed from the leg whose subnet holds it", () => {
    const m = base();
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setPort(
      "vm1",
      port("vm1", "net1", M1, [
        ["sub1", "10.1.0.11"],
        ["sub6", "fd00:1::11"],
      ]),
    );
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub6", "net1", "fd00:1::1", "fd00:1::/64", R1],
      ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R2],
    ]);
    expect(lines(m, "l3/port/vm1")).toEqual([
      `table=30, priority=332,ip,reg2=${RK1},nw_dst=10.1.0.11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
      `table=30, priority=428,ipv6,reg2=${RK1},ipv6_dst=fd00:1::11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
    ]);
  });
});

describe("l3 packet-in at the edges", () => {
  it("a router with two legs on one network (two MACs): the frame's MAC picks the leg — its address, its MAC, its routes", async () => {
    const m = base();
    m.setSubnet("sub1b", subnet("sub1b", "net1", "10.1.5.0/24"));
    m.setPort("vm1", port("vm1", "net1", M1, [["sub1b", "10.1.5.11"]]));
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub1b", "net1", "10.1.5.1", "10.1.5.0/24", R1B],
      ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R2],
    ]);
    const expired = await packetIn(m, 1, udp(M1, R1B, "10.1.5.11", "10.2.0.12", 1));
    expect(expired.sent.map(icmpOf)).toEqual([[1, R1B, M1, "10.1.5.1", "10.1.5.11", 11, 0]]);
    const routed = await packetIn(m, 1, udp(M1, R1B, "10.1.5.11", "10.2.0.12", 64));
    expect(
      routed.installed.map((r) => r.flows.map((f) => formatFlow({ ...f.build(0n), cookie: 0n }))),
    ).toEqual([
      [
        `table=30, idle_timeout=300, send_flow_rem priority=332,ip,reg2=${RK1},nw_dst=10.2.0.12 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
      ],
    ]);
  });

  it("a router with one MAC on two networks: the error comes from the leg on the sender's network", async () => {
    const m = base();
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R1],
    ]);
    const t = await packetIn(m, 2, udp(M2, R1, "10.2.0.12", "10.1.0.11", 1));
    expect(t.sent.map(icmpOf)).toEqual([[2, R1, M2, "10.2.0.1", "10.2.0.12", 11, 0]]);
  });

  it("an ICMPv6 error to a frame sent to a dual-stack leg's MAC comes from that router's IPv6 address, not another router's on the network", async () => {
    const m = base();
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setPort(
      "vm1",
      port("vm1", "net1", M1, [
        ["sub1", "10.1.0.11"],
        ["sub6", "fd00:1::11"],
      ]),
    );
    // r0 (listed first on net1: routers are taken in id order) has an IPv6 leg of its own there
    m.setRouter("r0", router("r0", legs([["sub6", "net1", "fd00:1::2", "fd00:1::/64", R0]])));
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub6", "net1", "fd00:1::1", "fd00:1::/64", R1],
    ]);
    const t = await packetIn(m, 1, udp(M1, R1, "fd00:1::11", "fd00:9::5", 1));
    expect(t.sent.map(icmpOf)).toEqual([[1, R1, M1, "fd00:1::1", "fd00:1::11", 3, 0]]);
  });

  it("adopts an IPv6 host route found on the switch after a restart, under its key", async () => {
    const m = base();
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
    m.setSubnet("sub26", subnet("sub26", "net2", "fd00:2::/64"));
    m.setPort(
      "vm1",
      port("vm1", "net1", M1, [
        ["sub1", "10.1.0.11"],
        ["sub6", "fd00:1::11"],
      ]),
    );
    m.setPort("vm2", port("vm2", "net2", M2, [["sub26", "fd00:2::12"]]));
    setR1(m, [
      ["sub6", "net1", "fd00:1::1", "fd00:1::/64", R1],
      ["sub26", "net2", "fd00:2::1", "fd00:2::/64", R2],
    ]);
    const t = await packetIn(m, 1, udp(M1, R1, "fd00:1::11", "fd00:2::12", 64));
    expect(t.installed.map((r) => r.key)).toEqual(["r1/fd00:2::12"]);
    const found = t.installed[0]!.flows[0]!.build(0xabcn);
    const got = l3().adoptReactive!(found, context(m).ctx);
    expect(got?.key).toBe("r1/fd00:2::12");
    expect(got?.deps).toEqual(expect.arrayContaining(["router:r1", "port:vm2"]));
  });

  it("does not adopt a flow with a host route's match but other actions, its actions but another priority or match, or no destination", async () => {
    const m = base();
    setR1(m, [
      ["sub1", "net1", "10.1.0.1", "10.1.0.0/24", R1],
      ["sub2", "net2", "10.2.0.1", "10.2.0.0/24", R2],
    ]);
    const t = await packetIn(m, 1, udp(M1, R1, "10.1.0.11", "10.2.0.12", 64));
    const found = t.installed[0]!.flows[0]!.build(0xabcn);
    const { ctx } = context(m);
    const app = l3();
    expect(app.adoptReactive!(found, ctx)?.key).toBe("r1/10.2.0.12");
    expect(app.adoptReactive!({ ...found, instructions: [] }, ctx)).toBeUndefined(); // its match, other actions
    expect(app.adoptReactive!({ ...found, priority: found.priority - 1 }, ctx)).toBeUndefined();
    const inPort = { ...found, match: [...found.match, { field: "in_port", value: 1 }] } as typeof found;
    expect(app.adoptReactive!(inPort, ctx)).toBeUndefined();
    const noDst = { ...found, match: found.match.filter((x) => x.field !== "ip_dst") };
    expect(app.adoptReactive!(noDst, ctx)).toBeUndefined();
  });
});

describe("l3 router advertisements at the edges", () => {
  const rs = () =>
    buildFrame({
      eth: { src: M1, dst: "33:33:00:00:00:02" },
      ipv6: { src: linkLocalFromMac(M1), dst: "ff02::2", hopLimit: 255 },
      icmpv6: { type: 133, code: 0 },
    });

  /** The prefixes of each RA sent, with its Ethernet source. */
  const prefixes = (t: Trace) =>
    t.sent.map((s) => {
      const ra = s.frame.icmpv6?.ndp;
      const opts = ra?.kind === "router-advertisement" ? ra.options : [];
      return [
        s.frame.eth.src,
        opts.flatMap((o) => (o.kind === "prefix-info" ? [`${o.prefix}/${o.prefixLength}`] : [])),
      ];
    });

  function slaacNet(m: LocalModel) {
    for (const [id, cidr] of [
      ["sub6a", "fd00:1::/64"],
      ["sub6b", "fd00:2::/64"],
    ] as const) {
      m.setSubnet(id, subnet(id, "net1", cidr, { ipv6RaMode: "slaac", ipv6AddressMode: "slaac" }));
    }
  }

  it("one router MAC with two IPv6 subnets: one RA carrying both prefixes", async () => {
    const m = base();
    slaacNet(m);
    setR1(m, [
      ["sub6a", "net1", "fd00:1::1", "fd00:1::/64", R1],
      ["sub6b", "net1", "fd00:2::1", "fd00:2::/64", R1],
    ]);
    expect(prefixes(await packetIn(m, 1, rs()))).toEqual([[R1, ["fd00:1::/64", "fd00:2::/64"]]]);
  });

  it("one subnet listed twice for a router MAC: its prefix once", async () => {
    const m = base();
    slaacNet(m);
    setR1(m, [
      ["sub6a", "net1", "fd00:1::1", "fd00:1::/64", R1],
      ["sub6a", "net1", "fd00:1::2", "fd00:1::/64", R1],
    ]);
    expect(prefixes(await packetIn(m, 1, rs()))).toEqual([[R1, ["fd00:1::/64"]]]);
  });
});
