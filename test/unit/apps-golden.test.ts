/**
 * Golden flows: for one small view, every app's flows stated as the lines
 * `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` prints (cookies left out),
 * per owner — anyone can compare them with a switch. Each line also parses
 * back (parseFlow) to exactly the flow the typed builder made, so the
 * builder and the text form cannot drift apart.
 *
 * The view: chassis host1; net1 (geneve 101) with subnets 10.1.0.0/24 and
 * fd00:1::/64, local vm1 (dual stack, ofport 1), local vm2 (ofport 2, two
 * allowed address pairs, one with its own MAC), vm3 on host2 (alive,
 * 192.0.2.2), router r1 on net1; net2 (vlan 100 on physnet1, patch port 50)
 * with DHCP off, local vm4 (port security off, ofport 4) and vm5 on host2.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { Engine, flowSig } from "../../src/controller/engine.js";
import { flowKey } from "../../src/openflow/flow.js";
import { formatFlow, parseFlow } from "../../src/openflow/text.js";
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

function view() {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
  m.setPort(
    "vm1",
    port("vm1", "net1", "fa:16:3e:01:00:11", [
      ["sub1", "10.1.0.11"],
      ["sub6", "fd00:1::11"],
    ]),
  );
  m.setPort(
    "vm2",
    port("vm2", "net1", "fa:16:3e:01:00:12", [["sub1", "10.1.0.12"]], {
      allowedAddressPairs: [
        { ipAddress: "10.1.0.100" },
        { ipAddress: "10.1.0.128/25", macAddress: "fa:16:3e:aa:bb:cc" },
      ],
    }),
  );
  m.setPort("vm3", port("vm3", "net1", "fa:16:3e:01:00:13", [["sub1", "10.1.0.13"]], { chassis: "host2" }));
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host2", true);
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  m.setRouter(
    "r1",
    router("r1", [
      {
        subnetId: "sub1",
        portId: "rp1",
        networkId: "net1",
        ipAddress: "10.1.0.1",
        cidr: "10.1.0.0/24",
        macAddress: "fa:16:3e:00:00:01",
      },
    ]),
  );
  m.setProviderPorts(new Map([["physnet1", 50]]));
  m.setNetwork(
    "net2",
    net("net2", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 100 }),
  );
  m.setSubnet("sub2", subnet("sub2", "net2", "10.2.0.0/24", { enableDhcp: false }));
  m.setPort(
    "vm4",
    port("vm4", "net2", "fa:16:3e:02:00:14", [["sub2", "10.2.0.14"]], { portSecurityEnabled: false }),
  );
  m.setPort("vm5", port("vm5", "net2", "fa:16:3e:02:00:15", [["sub2", "10.2.0.15"]], { chassis: "host2" }));
  m.setBinding("vm4", binding("vm4", 4));
  return m;
}

const EXPECTED: Record<string, [owner: string, line: string][]> = {
  pipeline: [
    ["pipeline/global/", "priority=0 actions=drop"],
    ["pipeline/global/", "table=10, priority=0 actions=goto_table:15"],
    ["pipeline/global/", "table=11, priority=0 actions=drop"],
    ["pipeline/global/", "table=15, priority=0 actions=goto_table:20"],
    ["pipeline/global/", "table=20, priority=0 actions=goto_table:25"],
    ["pipeline/global/", "table=25, priority=0 actions=goto_table:28"],
    ["pipeline/global/", "table=28, priority=0 actions=goto_table:35"],
    ["pipeline/global/", "table=30, priority=0 actions=drop"],
    ["pipeline/global/", "table=35, priority=0 actions=goto_table:40"],
    ["pipeline/global/", "table=36, priority=0 actions=drop"],
    ["pipeline/global/", "table=37, priority=0 actions=drop"],
    ["pipeline/global/", "table=40, priority=0 actions=drop"],
    ["pipeline/global/", "table=45, priority=0 actions=drop"],
    ["pipeline/global/", "table=5, priority=0 actions=drop"],
    ["pipeline/global/", "table=50, priority=0 actions=drop"],
    ["pipeline/global/", "table=52, priority=0 actions=drop"],
    ["pipeline/global/", "table=55, priority=0 actions=goto_table:60"],
    ["pipeline/global/", "table=56, priority=0 actions=drop"],
    ["pipeline/global/", "table=60, priority=0 actions=drop"],
  ],
  classifier: [
    [
      "classifier/port/vm1",
      "priority=100,in_port=1 actions=set_field:0x65->reg6,set_field:0x1->reg5,goto_table:5",
    ],
    [
      "classifier/port/vm2",
      "priority=100,in_port=2 actions=set_field:0x65->reg6,set_field:0x2->reg5,goto_table:5",
    ],
    [
      "classifier/port/vm4",
      "priority=100,in_port=4 actions=set_field:0x1000064->reg6,set_field:0x4->reg5,goto_table:5",
    ],
  ],
  portsec: [
    ["portsec/port/vm1", "table=5, priority=100,icmp6,in_port=1,icmp_type=134 actions=drop"],
    ["portsec/port/vm1", "table=5, priority=100,udp,in_port=1,tp_src=67 actions=drop"],
    ["portsec/port/vm1", "table=5, priority=100,udp6,in_port=1,tp_src=547 actions=drop"],
    [
      "portsec/port/vm1",
      "table=5, priority=80,arp,in_port=1,dl_src=fa:16:3e:01:00:11,arp_spa=10.1.0.11,arp_sha=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=80,ip,in_port=1,dl_src=fa:16:3e:01:00:11,nw_src=10.1.0.11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=80,ipv6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=90,arp,in_port=1,dl_src=fa:16:3e:01:00:11,arp_spa=0.0.0.0,arp_sha=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=90,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=:: actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=90,ipv6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=90,udp,in_port=1,dl_src=fa:16:3e:01:00:11,nw_src=0.0.0.0,nw_dst=255.255.255.255,tp_src=68,tp_dst=67 actions=goto_table:10",
    ],
    ["portsec/port/vm1", "table=5, priority=94,icmp6,in_port=1,icmp_type=135 actions=drop"],
    ["portsec/port/vm1", "table=5, priority=94,icmp6,in_port=1,icmp_type=136 actions=drop"],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=::,icmp_type=135,icmp_code=0,nd_sll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11,icmp_type=135,icmp_code=0,nd_sll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11,icmp_type=135,icmp_code=0,nd_sll=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11,icmp_type=136,icmp_code=0,nd_target=fd00:1::11,nd_tll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11,icmp_type=136,icmp_code=0,nd_target=fd00:1::11,nd_tll=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11,icmp_type=136,icmp_code=0,nd_target=fe80::/64,nd_tll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fd00:1::11,icmp_type=136,icmp_code=0,nd_target=fe80::/64,nd_tll=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64,icmp_type=135,icmp_code=0,nd_sll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64,icmp_type=135,icmp_code=0,nd_sll=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64,icmp_type=136,icmp_code=0,nd_target=fd00:1::11,nd_tll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64,icmp_type=136,icmp_code=0,nd_target=fd00:1::11,nd_tll=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64,icmp_type=136,icmp_code=0,nd_target=fe80::/64,nd_tll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm1",
      "table=5, priority=95,icmp6,in_port=1,dl_src=fa:16:3e:01:00:11,ipv6_src=fe80::/64,icmp_type=136,icmp_code=0,nd_target=fe80::/64,nd_tll=fa:16:3e:01:00:11 actions=goto_table:10",
    ],
    ["portsec/port/vm2", "table=5, priority=100,icmp6,in_port=2,icmp_type=134 actions=drop"],
    ["portsec/port/vm2", "table=5, priority=100,udp,in_port=2,tp_src=67 actions=drop"],
    ["portsec/port/vm2", "table=5, priority=100,udp6,in_port=2,tp_src=547 actions=drop"],
    [
      "portsec/port/vm2",
      "table=5, priority=80,arp,in_port=2,dl_src=fa:16:3e:01:00:12,arp_spa=10.1.0.100,arp_sha=fa:16:3e:01:00:12 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=80,arp,in_port=2,dl_src=fa:16:3e:01:00:12,arp_spa=10.1.0.12,arp_sha=fa:16:3e:01:00:12 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=80,arp,in_port=2,dl_src=fa:16:3e:aa:bb:cc,arp_spa=10.1.0.128/25,arp_sha=fa:16:3e:aa:bb:cc actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=80,ip,in_port=2,dl_src=fa:16:3e:01:00:12,nw_src=10.1.0.100 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=80,ip,in_port=2,dl_src=fa:16:3e:01:00:12,nw_src=10.1.0.12 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=80,ip,in_port=2,dl_src=fa:16:3e:aa:bb:cc,nw_src=10.1.0.128/25 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=90,arp,in_port=2,dl_src=fa:16:3e:01:00:12,arp_spa=0.0.0.0,arp_sha=fa:16:3e:01:00:12 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=90,icmp6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=:: actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=90,ipv6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=fe80::/64 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=90,udp,in_port=2,dl_src=fa:16:3e:01:00:12,nw_src=0.0.0.0,nw_dst=255.255.255.255,tp_src=68,tp_dst=67 actions=goto_table:10",
    ],
    ["portsec/port/vm2", "table=5, priority=94,icmp6,in_port=2,icmp_type=135 actions=drop"],
    ["portsec/port/vm2", "table=5, priority=94,icmp6,in_port=2,icmp_type=136 actions=drop"],
    [
      "portsec/port/vm2",
      "table=5, priority=95,icmp6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=::,icmp_type=135,icmp_code=0,nd_sll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=95,icmp6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=fe80::/64,icmp_type=135,icmp_code=0,nd_sll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=95,icmp6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=fe80::/64,icmp_type=135,icmp_code=0,nd_sll=fa:16:3e:01:00:12 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=95,icmp6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=fe80::/64,icmp_type=136,icmp_code=0,nd_target=fe80::/64,nd_tll=00:00:00:00:00:00 actions=goto_table:10",
    ],
    [
      "portsec/port/vm2",
      "table=5, priority=95,icmp6,in_port=2,dl_src=fa:16:3e:01:00:12,ipv6_src=fe80::/64,icmp_type=136,icmp_code=0,nd_target=fe80::/64,nd_tll=fa:16:3e:01:00:12 actions=goto_table:10",
    ],
    ["portsec/port/vm4", "table=5, priority=50,in_port=4 actions=goto_table:10"],
  ],
  dhcp: [
    [
      "dhcp/port/vm1",
      "table=15, priority=100,udp,in_port=1,tp_src=68,tp_dst=67 actions=meter:1,CONTROLLER:65535",
    ],
    [
      "dhcp/port/vm1",
      "table=15, priority=100,udp6,in_port=1,tp_src=546,tp_dst=547 actions=meter:1,CONTROLLER:65535",
    ],
    [
      "dhcp/port/vm2",
      "table=15, priority=100,udp,in_port=2,tp_src=68,tp_dst=67 actions=meter:2,CONTROLLER:65535",
    ],
  ],
  arp: [
    [
      "arp/port/vm1",
      "table=20, priority=100,arp,reg6=0x65,arp_tpa=10.1.0.11,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:01:00:11->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:01:00:11->arp_sha,set_field:10.1.0.11->arp_spa,IN_PORT",
    ],
    [
      "arp/port/vm1",
      "table=20, priority=100,icmp6,reg6=0x65,icmp_type=135,nd_target=fd00:1::11 actions=CONTROLLER:65535",
    ],
    [
      "arp/port/vm1",
      "table=20, priority=110,arp,reg6=0x65,in_port=1,arp_tpa=10.1.0.11,arp_op=1 actions=goto_table:28",
    ],
    [
      "arp/port/vm1",
      "table=20, priority=110,icmp6,reg6=0x65,in_port=1,icmp_type=135,nd_target=fd00:1::11 actions=goto_table:28",
    ],
    [
      "arp/port/vm2",
      "table=20, priority=100,arp,reg6=0x65,arp_tpa=10.1.0.12,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:01:00:12->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:01:00:12->arp_sha,set_field:10.1.0.12->arp_spa,IN_PORT",
    ],
    [
      "arp/port/vm2",
      "table=20, priority=110,arp,reg6=0x65,in_port=2,arp_tpa=10.1.0.12,arp_op=1 actions=goto_table:28",
    ],
    [
      "arp/port/vm3",
      "table=20, priority=100,arp,reg6=0x65,arp_tpa=10.1.0.13,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:01:00:13->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:01:00:13->arp_sha,set_field:10.1.0.13->arp_spa,IN_PORT",
    ],
    [
      "arp/port/vm4",
      "table=20, priority=100,arp,reg6=0x1000064,arp_tpa=10.2.0.14,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:02:00:14->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:02:00:14->arp_sha,set_field:10.2.0.14->arp_spa,IN_PORT",
    ],
    [
      "arp/port/vm4",
      "table=20, priority=110,arp,reg6=0x1000064,in_port=4,arp_tpa=10.2.0.14,arp_op=1 actions=goto_table:28",
    ],
    [
      "arp/port/vm5",
      "table=20, priority=100,arp,reg6=0x1000064,arp_tpa=10.2.0.15,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:02:00:15->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:02:00:15->arp_sha,set_field:10.2.0.15->arp_spa,IN_PORT",
    ],
    [
      "arp/router/r1",
      "table=20, priority=100,arp,reg6=0x65,arp_tpa=10.1.0.1,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:01->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:01->arp_sha,set_field:10.1.0.1->arp_spa,IN_PORT",
    ],
  ],
  l2: [
    ["l2/network/net1", "table=40, priority=50,reg6=0x65 actions=goto_table:45"],
    [
      "l2/network/net1",
      "table=45, priority=100,reg4=0x0,reg6=0x65 actions=set_field:0x1->reg7,resubmit(,55),set_field:0x2->reg7,resubmit(,55),set_field:0xc0000202->reg8,resubmit(,50)",
    ],
    ["l2/network/net2", "table=40, priority=50,reg6=0x1000064 actions=goto_table:45"],
    [
      "l2/network/net2",
      "table=45, priority=100,reg4=0x0,reg6=0x1000064 actions=set_field:0x4->reg7,resubmit(,55),resubmit(,52)",
    ],
    [
      "l2/port/vm1",
      "table=40, priority=100,reg6=0x65,dl_dst=fa:16:3e:01:00:11 actions=set_field:0x1->reg7,goto_table:55",
    ],
    ["l2/port/vm1", "table=60, priority=100,reg7=0x1 actions=output:1"],
    [
      "l2/port/vm2",
      "table=40, priority=100,reg6=0x65,dl_dst=fa:16:3e:01:00:12 actions=set_field:0x2->reg7,goto_table:55",
    ],
    ["l2/port/vm2", "table=60, priority=100,reg7=0x2 actions=output:2"],
    [
      "l2/port/vm3",
      "table=40, priority=100,reg6=0x65,dl_dst=fa:16:3e:01:00:13 actions=set_field:0xc0000202->reg8,goto_table:50",
    ],
    [
      "l2/port/vm4",
      "table=40, priority=100,reg6=0x1000064,dl_dst=fa:16:3e:02:00:14 actions=set_field:0x4->reg7,goto_table:55",
    ],
    ["l2/port/vm4", "table=60, priority=100,reg7=0x4 actions=output:4"],
    ["l2/port/vm5", "table=40, priority=100,reg6=0x1000064,dl_dst=fa:16:3e:02:00:15 actions=goto_table:52"],
  ],
  tunnel: [
    [
      "tunnel/network/net1",
      "priority=100,tun_id=0x65,in_port=100 actions=set_field:0x65->reg6,set_field:0x1->reg0,goto_table:40",
    ],
    [
      "tunnel/network/net1",
      "table=50, priority=100,reg0=0x0/0x1,reg6=0x65 actions=move:NXM_NX_REG8[]->NXM_NX_TUN_IPV4_DST[],set_field:0x65->tun_id,output:100",
    ],
  ],
  provider: [
    [
      "provider/network/net2",
      "priority=100,in_port=50,dl_vlan=100 actions=pop_vlan,set_field:0x1000064->reg6,set_field:0x2->reg0,goto_table:40",
    ],
    [
      "provider/network/net2",
      "table=52, priority=100,reg0=0x0/0x2,reg6=0x1000064 actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:50",
    ],
  ],
};

/** Built in each test, never at module load: a mutation run switches its mutants on per test. */
function build(): Engine {
  const engine = new Engine(
    view(),
    loadApps(["classifier", "portsec", "dhcp", "arp", "l2", "tunnel", "provider"]),
  );
  engine.recomputeAll();
  return engine;
}

describe("apps' flows for a small view (dump-flows lines)", () => {
  for (const [app, expected] of Object.entries(EXPECTED)) {
    it(`${app}`, () => {
      const got = build()
        .allFlows()
        .filter((d) => d.owner.startsWith(`${app}/`))
        .map((d): [string, string] => [d.owner, formatFlow({ ...d.flow, cookie: 0n })])
        .sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));
      const want = [...expected].sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));
      expect(got).toEqual(want);
    });
  }

  it("covers every flow the engine built", () => {
    expect(build().allFlows()).toHaveLength(Object.values(EXPECTED).flat().length);
  });

  it("every line parses back to the flow the builder made", () => {
    for (const d of build().allFlows()) {
      const text = formatFlow(d.flow);
      const parsed = { ...parseFlow(text), cookie: d.flow.cookie };
      expect(flowKey(parsed), text).toBe(d.key);
      expect(flowSig(parsed), text).toBe(d.sig);
    }
  });

  it("meters: one DHCP punt meter per local port on a DHCP subnet, 100 pps", () => {
    expect(
      build()
        .allMeters()
        .map((m) => [m.owner, m.id, m.ratePps]),
    ).toEqual([
      ["dhcp/port/vm1", 1, 100],
      ["dhcp/port/vm2", 2, 100],
    ]);
  });

  it("cookies carry the app and the owner", () => {
    const all = build().allFlows();
    const c = all.find((d) => d.owner === "l2/port/vm1")!.flow.cookie;
    expect(c >> 56n).toBe(0xfdn);
    expect(Number((c >> 48n) & 0xffn)).toBe(6);
    expect(new Set(all.filter((d) => d.owner === "l2/port/vm1").map((d) => d.flow.cookie)).size).toBe(1);
  });
});

/**
 * NAT, on a view of its own: chassis host1 and host2 (both alive); router r1
 * on net1 (geneve 101, local vm1, vm3 on host2) and net3 (geneve 103, only
 * vm6 on host2), its gateway on ext (flat on physnet1, patch port 50) at
 * 172.24.4.10 with candidates [host1, host2] — SNAT runs here; router r2 on
 * net2 (geneve 102, local vm2), its gateway on ext2 (vlan 100 on physnet1)
 * with candidates [host2, host1] — SNAT runs on host2. Floating IPs:
 * 172.24.4.50 → vm1, 198.51.100.50 → vm2.
 */
function natView() {
  const m = newModel();
  m.setProviderPorts(new Map([["physnet1", 50]]));
  m.setChassis("host1", chassis("host1", "192.0.2.1"));
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host1", true);
  m.setAlive("host2", true);
  const itf = (n: number) => ({
    subnetId: `sub${n}`,
    portId: `rp${n}`,
    networkId: `net${n}`,
    ipAddress: `10.${n}.0.1`,
    cidr: `10.${n}.0.0/24`,
    macAddress: `fa:16:3e:00:00:0${n}`,
  });
  for (const n of [1, 2, 3]) {
    m.setNetwork(`net${n}`, net(`net${n}`, { segmentationId: 100 + n }));
    m.setSubnet(`sub${n}`, subnet(`sub${n}`, `net${n}`, `10.${n}.0.0/24`));
  }
  m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1", external: true }));
  m.setSubnet("extsub", subnet("extsub", "ext", "172.24.4.0/24", { gatewayIp: "172.24.4.1" }));
  m.setNetwork(
    "ext2",
    net("ext2", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 100, external: true }),
  );
  m.setSubnet("ext2sub", subnet("ext2sub", "ext2", "198.51.100.0/24", { gatewayIp: "198.51.100.1" }));
  m.setPort("vm1", port("vm1", "net1", "fa:16:3e:01:00:11", [["sub1", "10.1.0.11"]]));
  m.setPort("vm2", port("vm2", "net2", "fa:16:3e:02:00:12", [["sub2", "10.2.0.12"]]));
  m.setPort("vm3", port("vm3", "net1", "fa:16:3e:01:00:13", [["sub1", "10.1.0.13"]], { chassis: "host2" }));
  m.setPort("vm6", port("vm6", "net3", "fa:16:3e:03:00:16", [["sub3", "10.3.0.16"]], { chassis: "host2" }));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  m.setRouter("r1", router("r1", [itf(1), itf(3)]));
  m.setRouter("r2", router("r2", [itf(2)]));
  m.setSnat(
    "s1",
    snat("s1", {
      routerId: "r1",
      externalNetworkId: "ext",
      externalIpAddress: "172.24.4.10",
      macAddress: "fa:16:3e:fe:00:10",
      gatewayChassis: ["host1", "host2"],
    }),
  );
  m.setSnat(
    "s2",
    snat("s2", {
      routerId: "r2",
      externalNetworkId: "ext2",
      externalIpAddress: "198.51.100.10",
      macAddress: "fa:16:3e:fe:01:10",
      gatewayChassis: ["host2", "host1"],
    }),
  );
  m.setFip(
    "f1",
    fip("f1", {
      floatingNetworkId: "ext",
      floatingIpAddress: "172.24.4.50",
      macAddress: "fa:16:3e:fe:00:50",
      portId: "vm1",
      fixedIpAddress: "10.1.0.11",
    }),
  );
  m.setFip(
    "f2",
    fip("f2", {
      floatingNetworkId: "ext2",
      floatingIpAddress: "198.51.100.50",
      macAddress: "fa:16:3e:fe:01:50",
      portId: "vm2",
      fixedIpAddress: "10.2.0.12",
    }),
  );
  return m;
}

const NAT_EXPECTED: [owner: string, line: string][] = [
  // a NAT address asked for by a VM of this chassis on the external network itself
  [
    "nat/port/vm1",
    "table=20, priority=100,arp,reg0=0x0/0x2,reg6=0x20044cb,arp_tpa=172.24.4.50,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:50->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:50->arp_sha,set_field:172.24.4.50->arp_spa,IN_PORT",
  ],
  [
    "nat/port/vm2",
    "table=20, priority=100,arp,reg0=0x0/0x2,reg6=0x1000064,arp_tpa=198.51.100.50,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:01:50->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:01:50->arp_sha,set_field:198.51.100.50->arp_spa,IN_PORT",
  ],
  [
    "nat/router/r1",
    "table=20, priority=100,arp,reg0=0x0/0x2,reg6=0x20044cb,arp_tpa=172.24.4.10,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:10->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:10->arp_sha,set_field:172.24.4.10->arp_spa,IN_PORT",
  ],
  // the hairpin: a VM here to a NAT address here goes back into nat instead of out of the patch port
  [
    "nat/port/vm1",
    "table=37, priority=400,ip,reg1=0x0,reg6=0x20044cb,nw_dst=172.24.4.50 actions=ct_clear,set_field:fa:16:3e:fe:00:50->eth_dst,resubmit(,35)",
  ],
  [
    "nat/port/vm2",
    "table=37, priority=400,ip,reg1=0x0,reg6=0x1000064,nw_dst=198.51.100.50 actions=ct_clear,set_field:fa:16:3e:fe:01:50->eth_dst,resubmit(,35)",
  ],
  [
    "nat/router/r1",
    "table=37, priority=400,ip,reg1=0x0,reg6=0x20044cb,nw_dst=172.24.4.10 actions=ct_clear,set_field:fa:16:3e:fe:00:10->eth_dst,resubmit(,35)",
  ],
  // a VM to its own floating IP (from and to it once SNATed): in_port cleared, so it may go back out of its port
  [
    "nat/port/vm1",
    "table=37, priority=410,ip,reg1=0x0,reg6=0x20044cb,nw_src=172.24.4.50,nw_dst=172.24.4.50 actions=ct_clear,load:0x0->NXM_OF_IN_PORT[],set_field:fa:16:3e:fe:00:50->eth_dst,resubmit(,35)",
  ],
  [
    "nat/port/vm2",
    "table=37, priority=410,ip,reg1=0x0,reg6=0x1000064,nw_src=198.51.100.50,nw_dst=198.51.100.50 actions=ct_clear,load:0x0->NXM_OF_IN_PORT[],set_field:fa:16:3e:fe:01:50->eth_dst,resubmit(,35)",
  ],
  ["nat/network/ext2", "table=37, priority=10,ip,reg6=0x1000064 actions=meter:196658,CONTROLLER:65535"],
  [
    "nat/network/ext2",
    "table=37, priority=124,ip,reg1=0x0,reg6=0x1000064,nw_dst=198.51.100.0/24 actions=meter:196658,CONTROLLER:65535",
  ],
  ["nat/network/ext", "table=37, priority=10,ip,reg6=0x20044cb actions=meter:196658,CONTROLLER:65535"],
  [
    "nat/network/ext",
    "table=37, priority=124,ip,reg1=0x0,reg6=0x20044cb,nw_dst=172.24.4.0/24 actions=meter:196658,CONTROLLER:65535",
  ],
  [
    "nat/port/vm1",
    "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,arp_tpa=172.24.4.50,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:50->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:50->arp_sha,set_field:172.24.4.50->arp_spa,IN_PORT",
  ],
  [
    "nat/port/vm1",
    "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:50,arp_op=2 actions=meter:196658,CONTROLLER:65535",
  ],
  [
    "nat/port/vm1",
    "priority=110,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:50 actions=set_field:0x20044cb->reg6,set_field:0x2->reg0,goto_table:35",
  ],
  [
    "nat/port/vm1",
    "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:50,nw_ttl=0 actions=drop",
  ],
  [
    "nat/port/vm1",
    "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:50,nw_ttl=1 actions=drop",
  ],
  [
    "nat/port/vm1",
    "table=30, priority=299,ip,reg5=0x1,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.11 actions=goto_table:35",
  ],
  [
    "nat/port/vm1",
    "table=35, priority=200,ip,reg5=0x1,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.11 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65452,nat(src=172.24.4.50))",
  ],
  [
    "nat/port/vm1",
    "table=35, priority=201,ip,reg5=0x1,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.11,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=65452,nat(src=172.24.4.50))",
  ],
  [
    "nat/port/vm1",
    "table=35, priority=200,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:50,nw_dst=172.24.4.50 actions=ct(commit,table=36,zone=65452,nat(dst=10.1.0.11))",
  ],
  [
    "nat/port/vm1",
    "table=36, priority=200,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:50,nw_dst=10.1.0.11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40",
  ],
  [
    "nat/port/vm1",
    "table=36, priority=200,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=172.24.4.50 actions=set_field:fa:16:3e:fe:00:50->eth_src,dec_ttl,set_field:0x20044cb->reg6,goto_table:37",
  ],
  [
    "nat/port/vm2",
    "priority=110,arp,in_port=50,dl_vlan=100,arp_tpa=198.51.100.50,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:01:50->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:01:50->arp_sha,set_field:198.51.100.50->arp_spa,IN_PORT",
  ],
  [
    "nat/port/vm2",
    "priority=110,arp,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:50,arp_op=2 actions=meter:196658,CONTROLLER:65535",
  ],
  [
    "nat/port/vm2",
    "priority=110,ip,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:50 actions=pop_vlan,set_field:0x1000064->reg6,set_field:0x2->reg0,goto_table:35",
  ],
  ["nat/port/vm2", "priority=111,ip,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:50,nw_ttl=0 actions=drop"],
  ["nat/port/vm2", "priority=111,ip,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:50,nw_ttl=1 actions=drop"],
  [
    "nat/port/vm2",
    "table=30, priority=299,ip,reg5=0x2,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.12 actions=goto_table:35",
  ],
  [
    "nat/port/vm2",
    "table=35, priority=200,ip,reg5=0x2,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.12 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65381,nat(src=198.51.100.50))",
  ],
  [
    "nat/port/vm2",
    "table=35, priority=201,ip,reg5=0x2,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.12,nw_dst=198.51.100.0/24 actions=ct(commit,table=36,zone=65381,nat(src=198.51.100.50))",
  ],
  [
    "nat/port/vm2",
    "table=35, priority=200,ip,reg6=0x1000064,dl_dst=fa:16:3e:fe:01:50,nw_dst=198.51.100.50 actions=ct(commit,table=36,zone=65381,nat(dst=10.2.0.12))",
  ],
  [
    "nat/port/vm2",
    "table=36, priority=200,ip,reg6=0x1000064,dl_dst=fa:16:3e:fe:01:50,nw_dst=10.2.0.12 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40",
  ],
  [
    "nat/port/vm2",
    "table=36, priority=200,ip,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=198.51.100.50 actions=set_field:fa:16:3e:fe:01:50->eth_src,dec_ttl,set_field:0x1000064->reg6,goto_table:37",
  ],
  [
    "nat/router/r1",
    "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,arp_tpa=172.24.4.10,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:10->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:10->arp_sha,set_field:172.24.4.10->arp_spa,IN_PORT",
  ],
  [
    "nat/router/r1",
    "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10,arp_op=2 actions=meter:196658,CONTROLLER:65535",
  ],
  [
    "nat/router/r1",
    "priority=110,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10 actions=set_field:0x20044cb->reg6,set_field:0x2->reg0,goto_table:35",
  ],
  [
    "nat/router/r1",
    "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10,nw_ttl=0 actions=drop",
  ],
  [
    "nat/router/r1",
    "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10,nw_ttl=1 actions=drop",
  ],
  [
    "nat/router/r1",
    "priority=110,ip,tun_id=0x65,in_port=100,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=set_field:0x65->reg6,set_field:0x1->reg0,goto_table:35",
  ],
  [
    "nat/router/r1",
    "priority=110,ip,tun_id=0x67,in_port=100,dl_dst=fa:16:3e:00:00:03,nw_src=10.3.0.0/24 actions=set_field:0x67->reg6,set_field:0x1->reg0,goto_table:35",
  ],
  [
    "nat/router/r1",
    "table=30, priority=298,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=goto_table:35",
  ],
  [
    "nat/router/r1",
    "table=35, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=172.24.4.10 actions=ct(table=36,zone=65452,nat)",
  ],
  [
    "nat/router/r1",
    "table=35, priority=100,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
  ],
  [
    "nat/router/r1",
    "table=35, priority=101,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
  ],
  [
    "nat/router/r1",
    "table=35, priority=100,ip,reg6=0x67,dl_dst=fa:16:3e:00:00:03,nw_src=10.3.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
  ],
  [
    "nat/router/r1",
    "table=35, priority=101,ip,reg6=0x67,dl_dst=fa:16:3e:00:00:03,nw_src=10.3.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
  ],
  [
    "nat/router/r1",
    "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=10.1.0.11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40",
  ],
  [
    "nat/router/r1",
    "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=10.1.0.13 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:13->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40",
  ],
  [
    "nat/router/r1",
    "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=10.3.0.16 actions=set_field:fa:16:3e:00:00:03->eth_src,set_field:fa:16:3e:03:00:16->eth_dst,dec_ttl,set_field:0x67->reg6,set_field:0x67->tun_id,set_field:192.0.2.2->tun_dst,output:100",
  ],
  [
    "nat/router/r1",
    "table=36, priority=100,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=172.24.4.10 actions=set_field:fa:16:3e:fe:00:10->eth_src,dec_ttl,set_field:0x20044cb->reg6,goto_table:37",
  ],
  [
    "nat/router/r1",
    "table=36, priority=100,ip,reg6=0x67,dl_dst=fa:16:3e:00:00:03,nw_src=172.24.4.10 actions=set_field:fa:16:3e:fe:00:10->eth_src,dec_ttl,set_field:0x20044cb->reg6,goto_table:37",
  ],
  [
    "nat/router/r2",
    "table=30, priority=298,ip,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.0/24 actions=set_field:0x66->tun_id,set_field:192.0.2.2->tun_dst,output:100",
  ],
];

describe("nat flows for a small view (dump-flows lines)", () => {
  const m = natView();
  const e = new Engine(m, loadApps(["nat"]));
  e.recomputeAll();
  const flows = e.allFlows().filter((d) => d.owner.startsWith("nat/"));

  it("floating IPs on their VM's chassis, SNAT on the gateway, redirect to a remote gateway", () => {
    const got = flows
      .map((d): [string, string] => [d.owner, formatFlow({ ...d.flow, cookie: 0n })])
      .sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));
    expect(got).toEqual([...NAT_EXPECTED].sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1)));
  });

  it("every line parses back to the flow the builder made", () => {
    for (const d of flows) {
      const text = formatFlow(d.flow);
      const parsed = { ...parseFlow(text), cookie: d.flow.cookie };
      expect(flowKey(parsed), text).toBe(d.key);
      expect(flowSig(parsed), text).toBe(d.sig);
    }
  });

  it("one zone per router with a gateway, above the port zones; one punt meter per patch port", () => {
    expect([m.natZone("r1"), m.natZone("r2")]).toEqual([65452, 65381]);
    expect(m.natZone("r3")).toBeUndefined();
    expect(new Set(e.allMeters().map((x) => `${x.id}/${x.ratePps}`))).toEqual(new Set(["196658/100"]));
  });

  it("the gateway moves when the first candidate's liveness key lapses, and back", () => {
    const gatewayFlows = () =>
      e
        .allFlows()
        .filter((d) => d.owner === "nat/router/r1" && d.flow.table === 35)
        .map((d) => formatFlow({ ...d.flow, cookie: 0n }));
    // the replies' un-SNAT, and the SNAT of each subnet twice: to the external subnet, and beyond it
    expect(gatewayFlows()).toHaveLength(5);
    m.setAlive("host1", false);
    e.recomputeChanged();
    // host2 runs r1's SNAT now: here only the redirect into the tunnel is left
    expect(gatewayFlows()).toEqual([]);
    expect(
      e
        .allFlows()
        .filter((d) => d.owner === "nat/router/r1")
        .map((d) => formatFlow({ ...d.flow, cookie: 0n })),
    ).toEqual([
      "table=30, priority=298,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=set_field:0x65->tun_id,set_field:192.0.2.2->tun_dst,output:100",
    ]);
    m.setAlive("host1", true);
    e.recomputeChanged();
    expect(gatewayFlows()).toHaveLength(5);
  });
});

describe("distributed SNAT: a chassis with an SNAT address of its own", () => {
  const lines = (e: Engine, owner: string) =>
    e
      .allFlows()
      .filter((d) => d.owner === owner)
      .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
      .sort();
  const withAddress = (m: ReturnType<typeof natView>, id: string, ip: string, mac: string) => {
    const g = m.snatOf(id === "s1" ? "r1" : "r2")!;
    m.setSnat(id, { ...g, chassisAddresses: [{ chassis: "host1", ipAddress: ip, macAddress: mac }] });
  };

  it("r2's gateway is host2: host1 SNATs its own VM to its address instead of sending it there", () => {
    const m = natView();
    withAddress(m, "s2", "198.51.100.21", "fa:16:3e:fe:01:21");
    const e = new Engine(m, loadApps(["nat"]));
    e.recomputeAll();
    expect(lines(e, "nat/router/r2")).toEqual(
      [
        "table=20, priority=100,arp,reg0=0x0/0x2,reg6=0x1000064,arp_tpa=198.51.100.21,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:01:21->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:01:21->arp_sha,set_field:198.51.100.21->arp_spa,IN_PORT",
        "priority=110,arp,in_port=50,dl_vlan=100,arp_tpa=198.51.100.21,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:01:21->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:01:21->arp_sha,set_field:198.51.100.21->arp_spa,IN_PORT",
        "priority=110,arp,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:21,arp_op=2 actions=meter:196658,CONTROLLER:65535",
        "priority=110,ip,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:21 actions=pop_vlan,set_field:0x1000064->reg6,set_field:0x2->reg0,goto_table:35",
        "priority=111,ip,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:21,nw_ttl=0 actions=drop",
        "priority=111,ip,in_port=50,dl_vlan=100,dl_dst=fa:16:3e:fe:01:21,nw_ttl=1 actions=drop",
        "table=30, priority=298,ip,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.0/24 actions=goto_table:35",
        "table=35, priority=100,ip,reg6=0x1000064,dl_dst=fa:16:3e:fe:01:21,nw_dst=198.51.100.21 actions=ct(table=36,zone=65381,nat)",
        "table=35, priority=110,ip,reg0=0x0/0x1,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65381,nat(src=198.51.100.21))",
        "table=35, priority=111,ip,reg0=0x0/0x1,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.0/24,nw_dst=198.51.100.0/24 actions=ct(commit,table=36,zone=65381,nat(src=198.51.100.21))",
        "table=36, priority=100,ip,reg6=0x1000064,dl_dst=fa:16:3e:fe:01:21,nw_dst=10.2.0.12 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40",
        "table=36, priority=100,ip,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=198.51.100.21 actions=set_field:fa:16:3e:fe:01:21->eth_src,dec_ttl,set_field:0x1000064->reg6,goto_table:37",
        "table=37, priority=400,ip,reg1=0x0,reg6=0x1000064,nw_dst=198.51.100.21 actions=ct_clear,set_field:fa:16:3e:fe:01:21->eth_dst,resubmit(,35)",
      ].sort(),
    );
  });

  it("r1's gateway is this chassis too: its own VMs take its address (above), tunnelled traffic the gateway's", () => {
    const m = natView();
    withAddress(m, "s1", "172.24.4.21", "fa:16:3e:fe:00:21");
    const e = new Engine(m, loadApps(["nat"]));
    e.recomputeAll();
    expect(lines(e, "nat/router/r1")).toEqual(
      [
        "table=20, priority=100,arp,reg0=0x0/0x2,reg6=0x20044cb,arp_tpa=172.24.4.10,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:10->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:10->arp_sha,set_field:172.24.4.10->arp_spa,IN_PORT",
        "table=20, priority=100,arp,reg0=0x0/0x2,reg6=0x20044cb,arp_tpa=172.24.4.21,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:21->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:21->arp_sha,set_field:172.24.4.21->arp_spa,IN_PORT",
        "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,arp_tpa=172.24.4.10,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:10->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:10->arp_sha,set_field:172.24.4.10->arp_spa,IN_PORT",
        "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,arp_tpa=172.24.4.21,arp_op=1 actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:fe:00:21->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:fe:00:21->arp_sha,set_field:172.24.4.21->arp_spa,IN_PORT",
        "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10,arp_op=2 actions=meter:196658,CONTROLLER:65535",
        "priority=110,arp,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:21,arp_op=2 actions=meter:196658,CONTROLLER:65535",
        "priority=110,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10 actions=set_field:0x20044cb->reg6,set_field:0x2->reg0,goto_table:35",
        "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10,nw_ttl=0 actions=drop",
        "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:10,nw_ttl=1 actions=drop",
        "priority=110,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:21 actions=set_field:0x20044cb->reg6,set_field:0x2->reg0,goto_table:35",
        "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:21,nw_ttl=0 actions=drop",
        "priority=111,ip,in_port=50,vlan_tci=0x0000/0x1fff,dl_dst=fa:16:3e:fe:00:21,nw_ttl=1 actions=drop",
        "priority=110,ip,tun_id=0x65,in_port=100,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=set_field:0x65->reg6,set_field:0x1->reg0,goto_table:35",
        "priority=110,ip,tun_id=0x67,in_port=100,dl_dst=fa:16:3e:00:00:03,nw_src=10.3.0.0/24 actions=set_field:0x67->reg6,set_field:0x1->reg0,goto_table:35",
        "table=30, priority=298,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=goto_table:35",
        "table=35, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=172.24.4.10 actions=ct(table=36,zone=65452,nat)",
        "table=35, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:21,nw_dst=172.24.4.21 actions=ct(table=36,zone=65452,nat)",
        "table=35, priority=100,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
        "table=35, priority=101,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
        "table=35, priority=100,ip,reg6=0x67,dl_dst=fa:16:3e:00:00:03,nw_src=10.3.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
        "table=35, priority=101,ip,reg6=0x67,dl_dst=fa:16:3e:00:00:03,nw_src=10.3.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=65452,nat(src=172.24.4.10))",
        "table=35, priority=110,ip,reg0=0x0/0x1,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24 actions=set_field:0x1->reg1,ct(commit,table=36,zone=65452,nat(src=172.24.4.21))",
        "table=35, priority=111,ip,reg0=0x0/0x1,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=10.1.0.0/24,nw_dst=172.24.4.0/24 actions=ct(commit,table=36,zone=65452,nat(src=172.24.4.21))",
        "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=10.1.0.11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40",
        "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=10.1.0.13 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:13->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40",
        "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:10,nw_dst=10.3.0.16 actions=set_field:fa:16:3e:00:00:03->eth_src,set_field:fa:16:3e:03:00:16->eth_dst,dec_ttl,set_field:0x67->reg6,set_field:0x67->tun_id,set_field:192.0.2.2->tun_dst,output:100",
        "table=36, priority=100,ip,reg6=0x20044cb,dl_dst=fa:16:3e:fe:00:21,nw_dst=10.1.0.11 actions=set_field:fa:16:3e:00:00:01->eth_src,set_field:fa:16:3e:01:00:11->eth_dst,dec_ttl,set_field:0x65->reg6,goto_table:40",
        "table=36, priority=100,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=172.24.4.10 actions=set_field:fa:16:3e:fe:00:10->eth_src,dec_ttl,set_field:0x20044cb->reg6,goto_table:37",
        "table=36, priority=100,ip,reg6=0x65,dl_dst=fa:16:3e:00:00:01,nw_src=172.24.4.21 actions=set_field:fa:16:3e:fe:00:21->eth_src,dec_ttl,set_field:0x20044cb->reg6,goto_table:37",
        "table=36, priority=100,ip,reg6=0x67,dl_dst=fa:16:3e:00:00:03,nw_src=172.24.4.10 actions=set_field:fa:16:3e:fe:00:10->eth_src,dec_ttl,set_field:0x20044cb->reg6,goto_table:37",
        "table=37, priority=400,ip,reg1=0x0,reg6=0x20044cb,nw_dst=172.24.4.10 actions=ct_clear,set_field:fa:16:3e:fe:00:10->eth_dst,resubmit(,35)",
        "table=37, priority=400,ip,reg1=0x0,reg6=0x20044cb,nw_dst=172.24.4.21 actions=ct_clear,set_field:fa:16:3e:fe:00:21->eth_dst,resubmit(,35)",
      ].sort(),
    );
  });

  it("the redirect to the gateway comes back when the address goes, or the external network is not mapped here", () => {
    const redirect =
      "table=30, priority=298,ip,reg6=0x66,dl_dst=fa:16:3e:00:00:02,nw_src=10.2.0.0/24 actions=set_field:0x66->tun_id,set_field:192.0.2.2->tun_dst,output:100";
    const m = natView();
    const e = new Engine(m, loadApps(["nat"]));
    e.recomputeAll();
    expect(lines(e, "nat/router/r2")).toEqual([redirect]);
    withAddress(m, "s2", "198.51.100.21", "fa:16:3e:fe:01:21");
    e.recomputeChanged();
    expect(lines(e, "nat/router/r2")).not.toContain(redirect);
    expect(lines(e, "nat/router/r2").join("\n")).toContain("nat(src=198.51.100.21)");
    m.setSnat("s2", { ...m.snatOf("r2")!, chassisAddresses: [] });
    e.recomputeChanged();
    expect(lines(e, "nat/router/r2")).toEqual([redirect]);
    // another chassis' address changes nothing here
    m.setSnat("s2", {
      ...m.snatOf("r2")!,
      chassisAddresses: [{ chassis: "host2", ipAddress: "198.51.100.22", macAddress: "fa:16:3e:fe:01:22" }],
    });
    e.recomputeChanged();
    expect(lines(e, "nat/router/r2")).toEqual([redirect]);
    withAddress(m, "s2", "198.51.100.21", "fa:16:3e:fe:01:21");
    m.setProviderPorts(new Map());
    e.recomputeChanged();
    expect(lines(e, "nat/router/r2")).toEqual([redirect]);
  });
});

describe("nat: a VM of this chassis on the external network itself", () => {
  it("is its own next hop, reached on br-int (not out of the patch port), and asks NAT addresses here", () => {
    const m = natView();
    m.setPort("vm7", port("vm7", "ext", "fa:16:3e:04:00:20", [["extsub", "172.24.4.20"]]));
    m.setBinding("vm7", binding("vm7", 7));
    const e = new Engine(m, loadApps(["nat"]));
    e.recomputeAll();
    const of = (owner: string) =>
      e
        .allFlows()
        .filter((d) => d.owner === owner)
        .map((d) => formatFlow({ ...d.flow, cookie: 0n }));
    expect(of("nat/network/ext")).toContain(
      "table=37, priority=350,ip,reg1=0x0,reg6=0x20044cb,nw_dst=172.24.4.20 actions=set_field:fa:16:3e:04:00:20->eth_dst,goto_table:40",
    );
    expect(of("nat/network/ext2").filter((l) => l.includes("priority=350"))).toEqual([]);
    m.setBinding("vm7", undefined);
    e.recomputeChanged();
    expect(of("nat/network/ext").filter((l) => l.includes("priority=350"))).toEqual([]);
  });
});
