/**
 * Golden flows of the secgroup app, as the lines `ovs-ofctl -O OpenFlow13
 * --no-stats dump-flows` prints (cookies left out), per owner: what a rule
 * of each kind becomes (ICMP type and code, port ranges as masked matches,
 * the whole port range as none, remote prefixes of both families with /0
 * and host prefixes, a bare IP protocol, remote groups as conjunctions), the
 * conntrack state flows, conjunction ids from ofport, rule slot and state,
 * and the member flows (fixed IPs and allowed address pairs of every member,
 * per family). Each line was checked by hand against the module's table
 * (src/apps/secgroup.ts). Built inside each test (a mutation run switches
 * mutants on per test). test/unit/secgroup-app.test.ts covers the
 * incremental side and the counts.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { Engine, flowSig } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { parseObject, type Secgroup } from "../../src/nb/model/index.js";
import { flowKey } from "../../src/openflow/flow.js";
import { formatFlow, parseFlow } from "../../src/openflow/text.js";
import { binding, chassis, net, newModel, port, subnet } from "../harness/model-fixture.js";

const group = (id: string, rules: Record<string, unknown>[]): Secgroup =>
  parseObject("secgroup", { id, tenantId: "t1", rules }, id);

/**
 * The view: net1 (geneve 5, 10.0.0.0/24 and fd00::/64, port security on) and
 * net2 (geneve 6, 10.1.0.0/24, port security off). Groups: web (ICMP and
 * ICMPv6 by type and code, tcp/udp/sctp ports and ranges, remote prefixes of
 * both families including /0 and a /32, a bare IP protocol, and two rules
 * naming clients), clients (egress anything), zeta and alpha (one rule each
 * naming clients). p4 (ofport 4, bound first) is in zeta and alpha — listed
 * in that order; p1 (ofport 1) in web, clients and web again; p2 (ofport 2)
 * in clients, with allowed address pairs 10.0.0.128/25 and fd00::99; p3 (on
 * host2) in clients, with fd00::3 and a pair 10.0.0.128; p5 (ofport 5) on
 * net2 in alpha (not filtered there).
 */
function view(): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 5 }));
  m.setSubnet("sub4", subnet("sub4", "net1", "10.0.0.0/24"));
  m.setSubnet("sub6", subnet("sub6", "net1", "fd00::/64"));
  m.setNetwork("net2", net("net2", { segmentationId: 6, portSecurityEnabled: false }));
  m.setSubnet("sub2", subnet("sub2", "net2", "10.1.0.0/24"));
  m.setSecgroup(
    "web",
    group("web", [
      { id: "a-icmp", direction: "ingress", protocol: "icmp", portRangeMin: 8, portRangeMax: 0 },
      { id: "b-icmp-type", direction: "ingress", protocol: "icmp", portRangeMin: 3 },
      { id: "c-icmp6", direction: "ingress", ethertype: "IPv6", protocol: "icmpv6", portRangeMin: 128 },
      { id: "d-tcp", direction: "ingress", protocol: "tcp", portRangeMin: 22, portRangeMax: 22 },
      {
        id: "e-udp",
        direction: "ingress",
        protocol: "udp",
        portRangeMin: 1000,
        portRangeMax: 1003,
        remoteIpPrefix: "192.0.2.0/24",
      },
      { id: "f-sctp", direction: "ingress", protocol: "sctp", portRangeMin: 5000 },
      { id: "g-full", direction: "ingress", protocol: "tcp", portRangeMin: 0, portRangeMax: 65535 },
      { id: "h-any6", direction: "ingress", ethertype: "IPv6", remoteIpPrefix: "fd00:9::/48" },
      { id: "i-out", direction: "egress", remoteIpPrefix: "0.0.0.0/0" },
      { id: "j-gre", direction: "egress", protocol: 47, remoteIpPrefix: "198.51.100.7/32" },
      { id: "k-grp", direction: "ingress", protocol: "tcp", portRangeMin: 80, remoteGroupId: "clients" },
      {
        id: "l-grp6",
        direction: "ingress",
        ethertype: "IPv6",
        protocol: "tcp",
        portRangeMin: 443,
        remoteGroupId: "clients",
      },
      { id: "m-out6", direction: "egress", ethertype: "IPv6", remoteIpPrefix: "::/0" },
      { id: "n-low", direction: "ingress", protocol: "udp", portRangeMin: 0, portRangeMax: 1023 },
      { id: "o-high", direction: "ingress", protocol: "udp", portRangeMin: 65534, portRangeMax: 65535 },
    ]),
  );
  m.setSecgroup("clients", group("clients", [{ id: "out", direction: "egress" }]));
  m.setSecgroup(
    "zeta",
    group("zeta", [
      { id: "z", direction: "ingress", protocol: "udp", portRangeMin: 53, remoteGroupId: "clients" },
    ]),
  );
  m.setSecgroup(
    "alpha",
    group("alpha", [
      { id: "a", direction: "ingress", protocol: "tcp", portRangeMin: 25, remoteGroupId: "clients" },
    ]),
  );
  m.setPort(
    "p4",
    port("p4", "net1", "fa:16:3e:00:00:04", [["sub4", "10.0.0.4"]], { securityGroups: ["zeta", "alpha"] }),
  );
  m.setBinding("p4", binding("p4", 4));
  m.setPort(
    "p1",
    port(
      "p1",
      "net1",
      "fa:16:3e:00:00:01",
      [
        ["sub4", "10.0.0.1"],
        ["sub6", "fd00::1"],
      ],
      { securityGroups: ["web", "clients", "web"] },
    ),
  );
  m.setPort(
    "p2",
    port("p2", "net1", "fa:16:3e:00:00:02", [["sub4", "10.0.0.2"]], {
      securityGroups: ["clients"],
      allowedAddressPairs: [{ ipAddress: "10.0.0.128/25" }, { ipAddress: "fd00::99" }],
    }),
  );
  m.setPort(
    "p3",
    port(
      "p3",
      "net1",
      "fa:16:3e:00:00:03",
      [
        ["sub4", "10.0.0.3"],
        ["sub6", "fd00::3"],
      ],
      { securityGroups: ["clients"], chassis: "host2", allowedAddressPairs: [{ ipAddress: "10.0.0.128" }] },
    ),
  );
  m.setPort(
    "p5",
    port("p5", "net2", "fa:16:3e:00:01:05", [["sub2", "10.1.0.5"]], { securityGroups: ["alpha"] }),
  );
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setBinding("p1", binding("p1", 1));
  m.setBinding("p2", binding("p2", 2));
  m.setBinding("p5", binding("p5", 5));
  return m;
}

const EXPECTED: [owner: string, line: string][] = [
  [
    "secgroup/global/",
    "table=11, priority=65000,ct_state=+est+rpl+trk,ct_mark=0x0/0x1 actions=goto_table:15",
  ],
  ["secgroup/global/", "table=11, priority=65000,ct_state=+inv+trk actions=drop"],
  ["secgroup/global/", "table=11, priority=65000,ct_state=+rpl+trk,ct_mark=0x1/0x1 actions=drop"],
  [
    "secgroup/global/",
    "table=11, priority=65000,ct_state=-new+rel-inv+trk,ct_mark=0x0/0x1 actions=goto_table:15",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ip,nw_src=10.0.0.1 actions=conjunction(65536,2/2),conjunction(65537,2/2),conjunction(65538,2/2),conjunction(262144,2/2),conjunction(262145,2/2),conjunction(262146,2/2),conjunction(262148,2/2),conjunction(262149,2/2),conjunction(262150,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ip,nw_src=10.0.0.128 actions=conjunction(65536,2/2),conjunction(65537,2/2),conjunction(65538,2/2),conjunction(262144,2/2),conjunction(262145,2/2),conjunction(262146,2/2),conjunction(262148,2/2),conjunction(262149,2/2),conjunction(262150,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ip,nw_src=10.0.0.128/25 actions=conjunction(65536,2/2),conjunction(65537,2/2),conjunction(65538,2/2),conjunction(262144,2/2),conjunction(262145,2/2),conjunction(262146,2/2),conjunction(262148,2/2),conjunction(262149,2/2),conjunction(262150,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ip,nw_src=10.0.0.2 actions=conjunction(65536,2/2),conjunction(65537,2/2),conjunction(65538,2/2),conjunction(262144,2/2),conjunction(262145,2/2),conjunction(262146,2/2),conjunction(262148,2/2),conjunction(262149,2/2),conjunction(262150,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ip,nw_src=10.0.0.3 actions=conjunction(65536,2/2),conjunction(65537,2/2),conjunction(65538,2/2),conjunction(262144,2/2),conjunction(262145,2/2),conjunction(262146,2/2),conjunction(262148,2/2),conjunction(262149,2/2),conjunction(262150,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ipv6,ipv6_src=fd00::1 actions=conjunction(65540,2/2),conjunction(65541,2/2),conjunction(65542,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ipv6,ipv6_src=fd00::3 actions=conjunction(65540,2/2),conjunction(65541,2/2),conjunction(65542,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=1000,ipv6,ipv6_src=fd00::99 actions=conjunction(65540,2/2),conjunction(65541,2/2),conjunction(65542,2/2)",
  ],
  [
    "secgroup/global/",
    "table=56, priority=65000,ct_state=+est+rpl+trk,ct_mark=0x0/0x1 actions=goto_table:60",
  ],
  ["secgroup/global/", "table=56, priority=65000,ct_state=+inv+trk actions=drop"],
  ["secgroup/global/", "table=56, priority=65000,ct_state=+rpl+trk,ct_mark=0x1/0x1 actions=drop"],
  [
    "secgroup/global/",
    "table=56, priority=65000,ct_state=-new+rel-inv+trk,ct_mark=0x0/0x1 actions=goto_table:60",
  ],
  ["secgroup/port/p1", "table=10, priority=100,ip,in_port=1 actions=ct(table=11,zone=1)"],
  ["secgroup/port/p1", "table=10, priority=100,ipv6,in_port=1 actions=ct(table=11,zone=1)"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=130 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=131 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=132 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=133 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=135 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=136 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,icmp6,in_port=1,icmp_type=143 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,udp,in_port=1,tp_src=68,tp_dst=67 actions=goto_table:15"],
  ["secgroup/port/p1", "table=10, priority=110,udp6,in_port=1,tp_src=546,tp_dst=547 actions=goto_table:15"],
  [
    "secgroup/port/p1",
    "table=11, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,in_port=1 actions=ct(commit,zone=1,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,in_port=1 actions=ct(commit,zone=1,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,in_port=1 actions=goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,in_port=1,nw_dst=198.51.100.7,nw_proto=47 actions=goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,in_port=1 actions=goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,ip,in_port=1 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,ip,in_port=1,nw_dst=198.51.100.7,nw_proto=47 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,ipv6,in_port=1 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+new+trk,ip,in_port=1 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+new+trk,ip,in_port=1,nw_dst=198.51.100.7,nw_proto=47 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  [
    "secgroup/port/p1",
    "table=11, priority=1001,ct_state=+new+trk,ipv6,in_port=1 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  ["secgroup/port/p1", "table=55, priority=100,ip,reg7=0x1 actions=ct(table=56,zone=1)"],
  ["secgroup/port/p1", "table=55, priority=100,ipv6,reg7=0x1 actions=ct(table=56,zone=1)"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=130 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=131 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=132 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=134 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=135 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=136 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,icmp6,reg7=0x1,icmp_type=143 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,udp,reg7=0x1,tp_src=67,tp_dst=68 actions=goto_table:60"],
  ["secgroup/port/p1", "table=55, priority=110,udp6,reg7=0x1,tp_src=547,tp_dst=546 actions=goto_table:60"],
  [
    "secgroup/port/p1",
    "table=56, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,reg7=0x1 actions=ct(commit,zone=1,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,reg7=0x1 actions=ct(commit,zone=1,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,conj_id=65536,ip actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,conj_id=65537,ip actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  ["secgroup/port/p1", "table=56, priority=1000,conj_id=65538,ip actions=goto_table:60"],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,conj_id=65540,ipv6 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,conj_id=65541,ipv6 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  ["secgroup/port/p1", "table=56, priority=1000,conj_id=65542,ipv6 actions=goto_table:60"],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,tcp,reg7=0x1,tp_dst=80 actions=conjunction(65538,1/2)",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,tcp6,reg7=0x1,tp_dst=443 actions=conjunction(65542,1/2)",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,tcp,reg7=0x1,tp_dst=80 actions=conjunction(65537,1/2)",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,tcp6,reg7=0x1,tp_dst=443 actions=conjunction(65541,1/2)",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,ct_state=+new+trk,tcp,reg7=0x1,tp_dst=80 actions=conjunction(65536,1/2)",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1000,ct_state=+new+trk,tcp6,reg7=0x1,tp_dst=443 actions=conjunction(65540,1/2)",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,icmp,reg7=0x1,icmp_type=3 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,icmp,reg7=0x1,icmp_type=8,icmp_code=0 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,icmp6,reg7=0x1,icmp_type=128 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,reg7=0x1,ipv6_src=fd00:9::/48 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,sctp,reg7=0x1,tp_dst=5000 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,tcp,reg7=0x1 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,tcp,reg7=0x1,tp_dst=22 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,udp,reg7=0x1,nw_src=192.0.2.0/24,tp_dst=0x3e8/0xfffc actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,udp,reg7=0x1,tp_dst=0x0/0xfc00 actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,udp,reg7=0x1,tp_dst=0xfffe/0xfffe actions=goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,icmp,reg7=0x1,icmp_type=3 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,icmp,reg7=0x1,icmp_type=8,icmp_code=0 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,icmp6,reg7=0x1,icmp_type=128 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,ipv6,reg7=0x1,ipv6_src=fd00:9::/48 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,sctp,reg7=0x1,tp_dst=5000 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,tcp,reg7=0x1 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,tcp,reg7=0x1,tp_dst=22 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,udp,reg7=0x1,nw_src=192.0.2.0/24,tp_dst=0x3e8/0xfffc actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,udp,reg7=0x1,tp_dst=0x0/0xfc00 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,udp,reg7=0x1,tp_dst=0xfffe/0xfffe actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,icmp,reg7=0x1,icmp_type=3 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,icmp,reg7=0x1,icmp_type=8,icmp_code=0 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,icmp6,reg7=0x1,icmp_type=128 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,ipv6,reg7=0x1,ipv6_src=fd00:9::/48 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,sctp,reg7=0x1,tp_dst=5000 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,tcp,reg7=0x1 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,tcp,reg7=0x1,tp_dst=22 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,udp,reg7=0x1,nw_src=192.0.2.0/24,tp_dst=0x3e8/0xfffc actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,udp,reg7=0x1,tp_dst=0x0/0xfc00 actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p1",
    "table=56, priority=1001,ct_state=+new+trk,udp,reg7=0x1,tp_dst=0xfffe/0xfffe actions=ct(commit,zone=1,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  ["secgroup/port/p2", "table=10, priority=100,ip,in_port=2 actions=ct(table=11,zone=2)"],
  ["secgroup/port/p2", "table=10, priority=100,ipv6,in_port=2 actions=ct(table=11,zone=2)"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=130 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=131 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=132 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=133 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=135 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=136 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,icmp6,in_port=2,icmp_type=143 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,udp,in_port=2,tp_src=68,tp_dst=67 actions=goto_table:15"],
  ["secgroup/port/p2", "table=10, priority=110,udp6,in_port=2,tp_src=546,tp_dst=547 actions=goto_table:15"],
  [
    "secgroup/port/p2",
    "table=11, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,in_port=2 actions=ct(commit,zone=2,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p2",
    "table=11, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,in_port=2 actions=ct(commit,zone=2,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p2",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,in_port=2 actions=goto_table:15",
  ],
  [
    "secgroup/port/p2",
    "table=11, priority=1001,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,ip,in_port=2 actions=ct(commit,zone=2,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  [
    "secgroup/port/p2",
    "table=11, priority=1001,ct_state=+new+trk,ip,in_port=2 actions=ct(commit,zone=2,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:15",
  ],
  ["secgroup/port/p2", "table=55, priority=100,ip,reg7=0x2 actions=ct(table=56,zone=2)"],
  ["secgroup/port/p2", "table=55, priority=100,ipv6,reg7=0x2 actions=ct(table=56,zone=2)"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=130 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=131 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=132 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=134 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=135 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=136 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,icmp6,reg7=0x2,icmp_type=143 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,udp,reg7=0x2,tp_src=67,tp_dst=68 actions=goto_table:60"],
  ["secgroup/port/p2", "table=55, priority=110,udp6,reg7=0x2,tp_src=547,tp_dst=546 actions=goto_table:60"],
  [
    "secgroup/port/p2",
    "table=56, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,reg7=0x2 actions=ct(commit,zone=2,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p2",
    "table=56, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,reg7=0x2 actions=ct(commit,zone=2,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  ["secgroup/port/p4", "table=10, priority=100,ip,in_port=4 actions=ct(table=11,zone=4)"],
  ["secgroup/port/p4", "table=10, priority=100,ipv6,in_port=4 actions=ct(table=11,zone=4)"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=130 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=131 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=132 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=133 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=135 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=136 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,icmp6,in_port=4,icmp_type=143 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,udp,in_port=4,tp_src=68,tp_dst=67 actions=goto_table:15"],
  ["secgroup/port/p4", "table=10, priority=110,udp6,in_port=4,tp_src=546,tp_dst=547 actions=goto_table:15"],
  [
    "secgroup/port/p4",
    "table=11, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,in_port=4 actions=ct(commit,zone=4,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p4",
    "table=11, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,in_port=4 actions=ct(commit,zone=4,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  ["secgroup/port/p4", "table=55, priority=100,ip,reg7=0x4 actions=ct(table=56,zone=4)"],
  ["secgroup/port/p4", "table=55, priority=100,ipv6,reg7=0x4 actions=ct(table=56,zone=4)"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=130 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=131 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=132 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=134 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=135 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=136 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,icmp6,reg7=0x4,icmp_type=143 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,udp,reg7=0x4,tp_src=67,tp_dst=68 actions=goto_table:60"],
  ["secgroup/port/p4", "table=55, priority=110,udp6,reg7=0x4,tp_src=547,tp_dst=546 actions=goto_table:60"],
  [
    "secgroup/port/p4",
    "table=56, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ip,reg7=0x4 actions=ct(commit,zone=4,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=10,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,ipv6,reg7=0x4 actions=ct(commit,zone=4,exec(load:0x1->NXM_NX_CT_MARK[0]))",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,conj_id=262144,ip actions=ct(commit,zone=4,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,conj_id=262145,ip actions=ct(commit,zone=4,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  ["secgroup/port/p4", "table=56, priority=1000,conj_id=262146,ip actions=goto_table:60"],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,conj_id=262148,ip actions=ct(commit,zone=4,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,conj_id=262149,ip actions=ct(commit,zone=4,exec(load:0x0->NXM_NX_CT_MARK[0])),goto_table:60",
  ],
  ["secgroup/port/p4", "table=56, priority=1000,conj_id=262150,ip actions=goto_table:60"],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,tcp,reg7=0x4,tp_dst=25 actions=conjunction(262146,1/2)",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x0/0x1,udp,reg7=0x4,tp_dst=53 actions=conjunction(262150,1/2)",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,tcp,reg7=0x4,tp_dst=25 actions=conjunction(262145,1/2)",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,ct_state=+est-rpl+trk,ct_mark=0x1/0x1,udp,reg7=0x4,tp_dst=53 actions=conjunction(262149,1/2)",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,ct_state=+new+trk,tcp,reg7=0x4,tp_dst=25 actions=conjunction(262144,1/2)",
  ],
  [
    "secgroup/port/p4",
    "table=56, priority=1000,ct_state=+new+trk,udp,reg7=0x4,tp_dst=53 actions=conjunction(262148,1/2)",
  ],
];

function build(): Engine {
  const e = new Engine(view(), loadApps(["secgroup"]));
  e.recomputeAll();
  return e;
}

const byText = (a: [string, string], b: [string, string]): number => (a[0] + a[1] < b[0] + b[1] ? -1 : 1);

describe("secgroup flows for a small view (dump-flows lines)", () => {
  it("every flow, per owner", () => {
    const got = build()
      .allFlows()
      .filter((d) => d.owner.startsWith("secgroup/"))
      .map((d): [string, string] => [d.owner, formatFlow({ ...d.flow, cookie: 0n })])
      .sort(byText);
    expect(got).toEqual([...EXPECTED].sort(byText));
  });

  it("every line parses back to the flow the builder made", () => {
    for (const d of build().allFlows()) {
      const text = formatFlow(d.flow);
      const parsed = { ...parseFlow(text), cookie: d.flow.cookie };
      expect(flowKey(parsed), text).toBe(d.key);
      expect(flowSig(parsed), text).toBe(d.sig);
    }
  });
});
