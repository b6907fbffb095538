/**
 * Golden flows of the l3 app (the distributed router), as the lines
 * `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` prints (cookies left out),
 * per owner, for one small view in both modes:
 *
 * chassis host1; net1 (geneve 101) with 10.1.0.0/24 and fd00:1::/64 (SLAAC),
 * net2 (geneve 102) with 10.2.0.0/24, net3 (geneve 103) with 10.3.0.0/24 and
 * no port here; local vm1 (net1, 10.1.0.11 and fd00:1::11, ofport 1), local
 * vm2 (net2, 10.2.0.12, ofport 2), vm3 (net1, 10.1.0.13) and vm5 (net3,
 * 10.3.0.15) on host2 (alive, 192.0.2.2). Router r1: net1 at 10.1.0.1 and
 * fd00:1::1 (MAC …:01), net2 at 10.2.0.1 (…:02), net3 at 10.3.0.1 (…:03),
 * static routes 192.168.50.0/24 via vm2 and 192.168.60.0/24 via 10.2.0.99
 * (no port has it); router r2, administratively down, on net2 (…:04).
 *
 * What to read in them (the table in src/apps/l3.ts): in l3_admission, per
 * network wired here (net1, net2; not net3) and router MAC, IP of each
 * family the router has an address of on that network goes to l3 with r1's
 * key in reg2 (net2 has no IPv6 leg, so its IPv6 is refused with everything
 * else sent to the MAC); a down router's MAC only refuses. In l3, once for
 * r1 whatever network the packet came from: TTL 0/1 to the agent per
 * family, IPv4 echo answered in flows (the MACs swapped through xreg5) and
 * ICMPv6 echo punted, the router's own addresses dropped, each connected
 * subnet punted (priority 300 + prefix length), a static route to a port
 * delivered and one to an unknown next hop punted, no route punted. In
 * proactive mode every port on r1's networks has one host route (300 + 32
 * or 128) — into l2_lookup for a local port, into egress_tunnel with its
 * chassis' address for a port on another chassis of a wired network (vm3),
 * straight into the tunnel port when its network is not wired here (vm5).
 * The router solicitation punt of vm1 (its network has an advertising IPv6
 * leg) is metered at RS_RATE_PPS.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { RS_RATE_PPS } from "../../src/apps/l3.js";
import { Engine } from "../../src/controller/engine.js";
import { formatFlow } from "../../src/openflow/text.js";
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

function view() {
  const m = newModel();
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host2", true);
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24", { gatewayIp: "10.1.0.1" }));
  m.setSubnet(
    "sub6",
    subnet("sub6", "net1", "fd00:1::/64", {
      gatewayIp: "fd00:1::1",
      ipv6RaMode: "slaac",
      ipv6AddressMode: "slaac",
    }),
  );
  m.setNetwork("net2", net("net2", { segmentationId: 102 }));
  m.setSubnet("sub2", subnet("sub2", "net2", "10.2.0.0/24", { gatewayIp: "10.2.0.1" }));
  m.setNetwork("net3", net("net3", { segmentationId: 103 }));
  m.setSubnet("sub3", subnet("sub3", "net3", "10.3.0.0/24", { gatewayIp: "10.3.0.1" }));
  m.setPort(
    "vm1",
    port("vm1", "net1", "fa:16:3e:01:00:11", [
      ["sub1", "10.1.0.11"],
      ["sub6", "fd00:1::11"],
    ]),
  );
  m.setPort("vm2", port("vm2", "net2", "fa:16:3e:02:00:12", [["sub2", "10.2.0.12"]]));
  m.setPort("vm3", port("vm3", "net1", "fa:16:3e:01:00:13", [["sub1", "10.1.0.13"]], { chassis: "host2" }));
  m.setPort("vm5", port("vm5", "net3", "fa:16:3e:03:00:15", [["sub3", "10.3.0.15"]], { chassis: "host2" }));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  const itf = (sub: string, networkId: string, ipAddress: string, cidr: string, macAddress: string) => ({
    subnetId: sub,
    portId: `rp-${sub}`,
    networkId,
    ipAddress,
    cidr,
    macAddress,
  });
  m.setRouter(
    "r1",
    router(
      "r1",
      [
        itf("sub1", "net1", "10.1.0.1", "10.1.0.0/24", "fa:16:3e:00:00:01"),
        itf("sub6", "net1", "fd00:1::1", "fd00:1::/64", "fa:16:3e:00:00:01"),
        itf("sub2", "net2", "10.2.0.1", "10.2.0.0/24", "fa:16:3e:00:00:02"),
        itf("sub3", "net3", "10.3.0.1", "10.3.0.0/24", "fa:16:3e:00:00:03"),
      ],
      {
        routes: [
          { destination: "192.168.50.0/24", nexthop: "10.2.0.12" },
          { destination: "192.168.60.0/24", nexthop: "10.2.0.99" },
        ],
      },
    ),
  );
  m.setRouter(
    "r2",
    router("r2", [itf("sub2", "net2", "10.2.0.254", "10.2.0.0/24", "fa:16:3e:00:00:04")], {
      adminStateUp: false,
    }),
  );
  return m;
}

/** r1's key in the router register (l3_admission writes it, l3 matches it). */
const RK = routerKeyHex("r1");

const ROUTER: [owner: string, line: string][] = [
  [
    "l3/router/r1",
    `table=28, priority=100,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01 actions=set_field:${RK}->reg2,goto_table:30`,
  ],
  [
    "l3/router/r1",
    `table=28, priority=100,ip,reg6=0x66,dl_dst=fa:16:3e:00:00:02 actions=set_field:${RK}->reg2,goto_table:30`,
  ],
  [
    "l3/router/r1",
    `table=28, priority=100,ipv6,reg6=0x65,dl_dst=fa:16:3e:00:00:01 actions=set_field:${RK}->reg2,goto_table:30`,
  ],
  ["l3/router/r1", "table=28, priority=50,reg6=0x65,dl_dst=fa:16:3e:00:00:01 actions=drop"],
  ["l3/router/r1", "table=28, priority=50,reg6=0x66,dl_dst=fa:16:3e:00:00:02 actions=drop"],
  ["l3/router/r1", `table=30, priority=100,ip,reg2=${RK} actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=100,ipv6,reg2=${RK} actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=1000,ip,reg2=${RK},nw_ttl=0 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=1000,ip,reg2=${RK},nw_ttl=1 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=1000,ipv6,reg2=${RK},nw_ttl=0 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=1000,ipv6,reg2=${RK},nw_ttl=1 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=324,ip,reg2=${RK},nw_dst=10.1.0.0/24 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=324,ip,reg2=${RK},nw_dst=10.2.0.0/24 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=324,ip,reg2=${RK},nw_dst=10.3.0.0/24 actions=CONTROLLER:65535`],
  [
    "l3/router/r1",
    `table=30, priority=324,ip,reg2=${RK},nw_dst=192.168.50.0/24 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
  ],
  ["l3/router/r1", `table=30, priority=324,ip,reg2=${RK},nw_dst=192.168.60.0/24 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=364,ipv6,reg2=${RK},ipv6_dst=fd00:1::/64 actions=CONTROLLER:65535`],
  ["l3/router/r1", `table=30, priority=800,ip,reg2=${RK},nw_dst=10.1.0.1 actions=drop`],
  ["l3/router/r1", `table=30, priority=800,ip,reg2=${RK},nw_dst=10.2.0.1 actions=drop`],
  ["l3/router/r1", `table=30, priority=800,ip,reg2=${RK},nw_dst=10.3.0.1 actions=drop`],
  ["l3/router/r1", `table=30, priority=800,ipv6,reg2=${RK},ipv6_dst=fd00:1::1 actions=drop`],
  [
    "l3/router/r1",
    `table=30, priority=900,icmp,reg2=${RK},nw_dst=10.1.0.1,icmp_type=8,icmp_code=0 actions=move:NXM_OF_ETH_DST[]->OXM_OF_PKT_REG5[0..47],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],move:OXM_OF_PKT_REG5[0..47]->NXM_OF_ETH_SRC[],move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],set_field:10.1.0.1->ip_src,set_field:64->nw_ttl,set_field:0->icmp_type,IN_PORT`,
  ],
  [
    "l3/router/r1",
    `table=30, priority=900,icmp,reg2=${RK},nw_dst=10.2.0.1,icmp_type=8,icmp_code=0 actions=move:NXM_OF_ETH_DST[]->OXM_OF_PKT_REG5[0..47],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],move:OXM_OF_PKT_REG5[0..47]->NXM_OF_ETH_SRC[],move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],set_field:10.2.0.1->ip_src,set_field:64->nw_ttl,set_field:0->icmp_type,IN_PORT`,
  ],
  [
    "l3/router/r1",
    `table=30, priority=900,icmp,reg2=${RK},nw_dst=10.3.0.1,icmp_type=8,icmp_code=0 actions=move:NXM_OF_ETH_DST[]->OXM_OF_PKT_REG5[0..47],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],move:OXM_OF_PKT_REG5[0..47]->NXM_OF_ETH_SRC[],move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],set_field:10.3.0.1->ip_src,set_field:64->nw_ttl,set_field:0->icmp_type,IN_PORT`,
  ],
  [
    "l3/router/r1",
    `table=30, priority=900,icmp6,reg2=${RK},ipv6_dst=fd00:1::1,icmp_type=128 actions=CONTROLLER:65535`,
  ],
  ["l3/router/r2", "table=28, priority=50,reg6=0x66,dl_dst=fa:16:3e:00:00:04 actions=drop"],
];
const PORTS_REACTIVE: [owner: string, line: string][] = [
  [
    "l3/port/vm1",
    "table=25, priority=100,icmp6,in_port=1,icmp_type=133,icmp_code=0 actions=meter:65537,CONTROLLER:65535",
  ],
];
const PORTS_PROACTIVE: [owner: string, line: string][] = [
  [
    "l3/port/vm1",
    "table=25, priority=100,icmp6,in_port=1,icmp_type=133,icmp_code=0 actions=meter:65537,CONTROLLER:65535",
  ],
  [
    "l3/port/vm1",
    `table=30, priority=332,ip,reg2=${RK},nw_dst=10.1.0.11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
  ],
  [
    "l3/port/vm1",
    `table=30, priority=428,ipv6,reg2=${RK},ipv6_dst=fd00:1::11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40`,
  ],
  [
    "l3/port/vm2",
    `table=30, priority=332,ip,reg2=${RK},nw_dst=10.2.0.12 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
  ],
  [
    "l3/port/vm3",
    `table=30, priority=332,ip,reg2=${RK},nw_dst=10.1.0.13 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:13->eth_dst,dec_ttl,set_field:0x65->reg6,set_field:0xc0000202->reg8,goto_table:50`,
  ],
  [
    "l3/port/vm5",
    `table=30, priority=332,ip,reg2=${RK},nw_dst=10.3.0.15 actions=set_field:fa:16:3e:00:00:03->eth_src,set_field:fa:16:3e:03:00:15->eth_dst,dec_ttl,set_field:0x67->reg6,set_field:0x67->tun_id,set_field:192.0.2.2->tun_dst,output:100`,
  ],
];

/** Built in each test, never at module load: a mutation run switches its mutants on per test. */
function build(mode: "reactive" | "proactive") {
  const e = new Engine(view(), loadApps(["l3"], { l3: { mode } }));
  e.recomputeAll();
  const lines = e
    .allFlows()
    .filter((d) => d.owner.startsWith("l3/"))
    .map((d): [string, string] => [d.owner, formatFlow({ ...d.flow, cookie: 0n })]);
  // an owner may build one flow twice (r1 has two legs on net1): the switch holds it once
  const unique = [...new Map(lines.map((l) => [l.join(" "), l])).values()];
  return { flows: unique.sort(byText), meters: e.allMeters().map((x) => [x.owner, x.id, x.ratePps]) };
}

const byText = (a: [string, string], b: [string, string]) => (a.join(" ") < b.join(" ") ? -1 : 1);

describe("l3 flows for a small view (dump-flows lines)", () => {
  it("reactive: the routers' flows and the solicitation punt", () => {
    const { flows, meters } = build("reactive");
    expect(flows).toEqual([...ROUTER, ...PORTS_REACTIVE].sort(byText));
    expect(meters).toEqual([["l3/port/vm1", 65537, RS_RATE_PPS]]);
  });

  it("proactive: the same, and one host route to every port", () => {
    const { flows, meters } = build("proactive");
    expect(flows).toEqual([...ROUTER, ...PORTS_PROACTIVE].sort(byText));
    expect(meters).toEqual([["l3/port/vm1", 65537, RS_RATE_PPS]]);
  });
});
