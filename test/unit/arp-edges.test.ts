/**
 * The arp app in the cases the other tests leave out, found by mutation
 * testing (test/mutation/apps.md): a router's IPv6 legs answer for their
 * link-local address once per network and MAC, in reactive mode a network
 * with no port on another chassis gets no punt, and the packet-in handler
 * sends on (unanswered) an ARP reply and a gratuitous ARP for a remote
 * port's address, and a neighbour solicitation for an unknown address.
 * Flows as dump-flows lines, frames as the handler sends them on.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import type { AppContext, PacketInEvent } from "../../src/apps/types.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { F, regName, type TableName } from "../../src/datapath/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import { ARP_OP, buildFrame, buildNeighborSolicitation, MAC_BROADCAST } from "../../src/packet/index.js";
import { logger } from "../../src/util/log.js";
import { binding, chassis, net, newModel, port, router, subnet } from "../harness/model-fixture.js";

const VM1 = "fa:16:3e:01:00:11";
const VM3 = "fa:16:3e:01:00:13";
const R1 = "fa:16:3e:00:00:01";

/** net1 (geneve 101, 10.1.0.0/24, fd00:1::/64): vm1 bound here (ofport 1); vm3 on live host2 unless `alone`. */
function model(alone = false): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
  m.setPort("vm1", port("vm1", "net1", VM1, [["sub1", "10.1.0.11"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host2", true);
  if (!alone) {
    m.setPort(
      "vm3",
      port(
        "vm3",
        "net1",
        VM3,
        [
          ["sub1", "10.1.0.13"],
          ["sub6", "fd00:1::13"],
        ],
        { chassis: "host2" },
      ),
    );
  }
  return m;
}

function arpLines(m: LocalModel, owner: string, mode: "proactive" | "reactive" = "proactive"): string[] {
  const e = new Engine(m, loadApps(["arp"], { l2: { mode } }));
  e.recomputeAll();
  return e
    .allFlows()
    .filter((d) => d.owner === owner)
    .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
    .sort();
}

describe("arp flows", () => {
  it("a router's IPv6 legs answer for their link-local address, once per network and MAC", () => {
    const m = model();
    m.setSubnet("sub6b", subnet("sub6b", "net1", "fd00:2::/64"));
    const leg = (subnetId: string, ipAddress: string, cidr: string) => ({
      subnetId,
      portId: "rp1",
      networkId: "net1",
      ipAddress,
      cidr,
      macAddress: R1,
    });
    // two IPv6 legs with one MAC (one router port with two addresses) and an IPv4 one
    m.setRouter(
      "r1",
      router("r1", [
        leg("sub6", "fd00:1::1", "fd00:1::/64"),
        leg("sub6b", "fd00:2::1", "fd00:2::/64"),
        leg("sub1", "10.1.0.1", "10.1.0.0/24"),
      ]),
    );
    const ns = (target: string) =>
      `table=20, priority=100,icmp6,reg6=0x65,icmp_type=135,nd_target=${target} actions=CONTROLLER:65535`;
    expect(arpLines(m, "arp/router/r1")).toEqual(
      [
        ns("fd00:1::1"),
        ns("fd00:2::1"),
        ns("fe80::f816:3eff:fe00:1"),
        "table=20, priority=100,arp,reg6=0x65,arp_tpa=10.1.0.1,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:01->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:01->arp_sha,set_field:10.1.0.1->arp_spa,IN_PORT",
      ].sort(),
    );
  });

  it("reactive mode: a network punts ARP and solicitations only while a port of it is on another chassis", () => {
    const m = model(true);
    expect(arpLines(m, "arp/network/net1", "reactive")).toEqual([]);
    m.setPort("vm3", port("vm3", "net1", VM3, [["sub1", "10.1.0.13"]], { chassis: "host2" }));
    expect(arpLines(m, "arp/network/net1", "reactive")).toEqual([
      "table=20, priority=50,arp,reg0=0x0/0x1,reg6=0x65,arp_op=1 actions=CONTROLLER:65535",
      "table=20, priority=50,icmp6,reg0=0x0/0x1,reg6=0x65,icmp_type=135 actions=CONTROLLER:65535",
    ]);
  });
});

interface Trace {
  sent: number;
  continued: TableName[];
}

async function handle(mode: "proactive" | "reactive", pkt: PacketInEvent): Promise<Trace> {
  const m = model();
  const t: Trace = { sent: 0, continued: [] };
  const ctx: AppContext = {
    view: m,
    packetOut: async () => {
      t.sent++;
    },
    resubmit: async () => {
      throw new Error("arp never re-runs a packet from table 0");
    },
    sendThrough: async () => {
      throw new Error("arp never sends a packet through a flow");
    },
    continueAt: async (table) => {
      t.continued.push(table);
    },
    track: (fn) => ({ result: m.tracking(new Set(), fn), deps: [] }),
    installReactive: async () => {
      throw new Error("arp installs no reactive flow");
    },
    log: logger("test-arp-edges"),
  };
  await loadApps(["arp"], { l2: { mode } })[0]!.packetIn!(pkt, ctx);
  return t;
}

const punted = (data: Buffer): PacketInEvent => ({
  inPort: 1,
  tableId: 20,
  cookie: 0n,
  data,
  fields: new Map([[regName(F.network), 101]]),
});

describe("arp packet-in: what is sent on unanswered", () => {
  const arp = (op: number, spa: string, tpa: string, dst = MAC_BROADCAST) =>
    punted(
      buildFrame({
        eth: { src: VM1, dst },
        arp: { op, sha: VM1, spa, tha: op === ARP_OP.REQUEST ? "00:00:00:00:00:00" : VM3, tpa },
      }),
    );

  it("an ARP reply naming a remote port's address, and a gratuitous ARP for it (an address conflict)", async () => {
    // vm3 (10.1.0.13) is on host2: a request for it would be answered here (l2-reactive.test.ts)
    expect(await handle("reactive", arp(ARP_OP.REQUEST, "10.1.0.11", "10.1.0.13"))).toEqual({
      sent: 1,
      continued: [],
    });
    expect(await handle("reactive", arp(ARP_OP.REPLY, "10.1.0.11", "10.1.0.13", VM3))).toEqual({
      sent: 0,
      continued: ["l2_lookup"],
    });
    expect(await handle("reactive", arp(ARP_OP.REQUEST, "10.1.0.13", "10.1.0.13"))).toEqual({
      sent: 0,
      continued: ["l2_lookup"],
    });
  });

  it("a solicitation for an address no port has: sent on in reactive mode, dropped in proactive mode", async () => {
    const ns = punted(buildNeighborSolicitation({ mac: VM1, ip: "fe80::1", target: "fd00:1::99" }));
    expect(await handle("reactive", ns)).toEqual({ sent: 0, continued: ["l2_lookup"] });
    expect(await handle("proactive", ns)).toEqual({ sent: 0, continued: [] });
  });
});
