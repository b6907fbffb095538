/**
 * The dhcp app (src/apps/dhcp.ts) in the cases the other tests leave out,
 * found by mutation testing (test/mutation/apps.md): which DHCP punts a port
 * on an IPv6-only subnet gets, which router leg's MAC a reply comes from on a
 * dual-stack network (the leg on the asking family's subnet, else the
 * agent's own MAC), and the configured lease time in a DHCPv6 reply. Also
 * the provider app's flows for a flat network (untagged). Flows as
 * dump-flows lines, replies decoded from the frames sent.
 */
import { describe, expect, it } from "vitest";
import { DHCP_SERVER_MAC } from "../../src/apps/dhcp.js";
import { loadApps, type AppOptions } from "../../src/apps/index.js";
import type { AppContext } from "../../src/apps/types.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { formatFlow } from "../../src/openflow/text.js";
import {
  BOOTREQUEST,
  buildDhcpPacket,
  buildFrame,
  DHCP_MESSAGE_TYPE,
  DHCP6_MESSAGE_TYPE,
  dhcp6OfFrame,
  encodeDhcp6,
  type Frame,
  MAC_BROADCAST,
  parseEthernet,
} from "../../src/packet/index.js";
import { logger } from "../../src/util/log.js";
import { binding, net, newModel, port, router, subnet } from "../harness/model-fixture.js";

const M1 = "fa:16:3e:01:00:11";
const M6 = "fa:16:3e:01:00:16";
const RA = "fa:16:3e:00:00:0a";
const RB = "fa:16:3e:00:00:0b";

/** net1 (geneve 101): sub1 10.1.0.0/24 and stateful sub6 fd00:1::/64; vm1 dual stack (ofport 1), vm6 IPv6 only (6). */
function world(): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24", { gatewayIp: "10.1.0.1" }));
  m.setSubnet(
    "sub6",
    subnet("sub6", "net1", "fd00:1::/64", {
      gatewayIp: "fd00:1::1",
      ipv6RaMode: "dhcpv6-stateful",
      ipv6AddressMode: "dhcpv6-stateful",
    }),
  );
  m.setPort(
    "vm1",
    port("vm1", "net1", M1, [
      ["sub1", "10.1.0.11"],
      ["sub6", "fd00:1::11"],
    ]),
  );
  m.setPort("vm6", port("vm6", "net1", M6, [["sub6", "fd00:1::16"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm6", binding("vm6", 6));
  return m;
}

const leg = (subnetId: string, ipAddress: string, cidr: string, macAddress: string) => ({
  subnetId,
  portId: `rp-${subnetId}`,
  networkId: "net1",
  ipAddress,
  cidr,
  macAddress,
});
const V4_LEG = leg("sub1", "10.1.0.1", "10.1.0.0/24", RA);
const V6_LEG = leg("sub6", "fd00:1::1", "fd00:1::/64", RB);

async function reply(m: LocalModel, data: Buffer, opts: AppOptions = {}): Promise<Frame[]> {
  const sent: Frame[] = [];
  const ctx: AppContext = {
    view: m,
    packetOut: async (_p, frame) => {
      sent.push(parseEthernet(frame));
    },
    resubmit: async () => {},
    sendThrough: async () => true,
    continueAt: async () => {},
    track: (fn) => ({ result: m.tracking(new Set(), fn), deps: [] }),
    installReactive: async () => {},
    log: logger("test-dhcp-app-edges"),
  };
  await loadApps(["dhcp"], opts)[0]!.packetIn!({ inPort: 1, tableId: 0, cookie: 0n, data }, ctx);
  return sent;
}

const discover = buildDhcpPacket({
  ethSrc: M1,
  ethDst: MAC_BROADCAST,
  ipSrc: "0.0.0.0",
  ipDst: "255.255.255.255",
  dhcp: { op: BOOTREQUEST, xid: 0x1234, chaddr: M1, options: { messageType: DHCP_MESSAGE_TYPE.DISCOVER } },
});
const solicit = buildFrame({
  eth: { src: M1, dst: "33:33:00:01:00:02" },
  ipv6: { src: "fe80::f816:3eff:fe01:11", dst: "ff02::1:2", hopLimit: 1 },
  udp: { srcPort: 546, dstPort: 547 },
  payload: encodeDhcp6({
    msgType: DHCP6_MESSAGE_TYPE.SOLICIT,
    transactionId: 0xabc,
    options: [
      { kind: "client-id", duid: Buffer.from("00030001fa163e010011", "hex") },
      { kind: "ia-na", iaid: 1, t1: 0, t2: 0, options: [] },
    ],
  }),
});

describe("dhcp app: the server MAC of a reply on a dual-stack network", () => {
  it("is the router leg's on the asking family's subnet, whichever leg the router lists first", async () => {
    for (const legs of [
      [V4_LEG, V6_LEG],
      [V6_LEG, V4_LEG],
    ]) {
      const m = world();
      m.setRouter("r1", router("r1", legs));
      expect((await reply(m, discover)).map((f) => f.eth.src)).toEqual([RA]);
      expect((await reply(m, solicit)).map((f) => f.eth.src)).toEqual([RB]);
    }
  });

  it("is the agent's own when the router has a leg on the network but not on that family's subnet", async () => {
    const m = world();
    m.setRouter("r1", router("r1", [V6_LEG]));
    expect((await reply(m, discover)).map((f) => f.eth.src)).toEqual([DHCP_SERVER_MAC]);
    m.setRouter("r1", router("r1", [V4_LEG]));
    expect((await reply(m, solicit)).map((f) => f.eth.src)).toEqual([DHCP_SERVER_MAC]);
  });
});

describe("dhcp app: lease time and punts", () => {
  it("a DHCPv6 reply carries the configured lease time as the address's lifetimes", async () => {
    const [frame] = await reply(world(), solicit, { dhcp: { leaseTime: 600 } });
    const msg = dhcp6OfFrame(frame!);
    const ia = msg && "options" in msg ? msg.options.find((o) => o.kind === "ia-na") : undefined;
    const addr = ia && "options" in ia ? ia.options.find((o) => o.kind === "iaaddr") : undefined;
    expect(addr).toMatchObject({ address: "fd00:1::11", validLifetime: 600, preferredLifetime: 600 });
  });

  it("a port on an IPv6-only subnet gets the DHCPv6 punt only", () => {
    const e = new Engine(world(), loadApps(["dhcp"]));
    e.recomputeAll();
    const lines = e
      .allFlows()
      .filter((d) => d.owner === "dhcp/port/vm6")
      .map((d) => formatFlow({ ...d.flow, cookie: 0n }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^table=\d+, priority=100,udp6,in_port=6,tp_src=546,tp_dst=547 actions=meter:\d+,CONTROLLER:65535$/,
    );
  });
});

describe("provider app: a flat network", () => {
  it("takes untagged frames from the patch port and sends them out untagged", () => {
    const m = newModel();
    m.setProviderPorts(new Map([["physnet1", 50]]));
    m.setNetwork("flat1", net("flat1", { networkType: "flat", physicalNetwork: "physnet1" }));
    m.setSubnet("subf", subnet("subf", "flat1", "10.9.0.0/24"));
    m.setPort("vm9", port("vm9", "flat1", "fa:16:3e:09:00:09", [["subf", "10.9.0.9"]]));
    m.setBinding("vm9", binding("vm9", 9));
    const e = new Engine(m, loadApps(["provider"]));
    e.recomputeAll();
    expect(
      e
        .allFlows()
        .filter((d) => d.owner.startsWith("provider/"))
        .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
        .sort(),
    ).toEqual([
      // no VLAN header (OFPVID_NONE, as OVS prints it); the flat network's key is derived, not a VID
      "priority=100,in_port=50,vlan_tci=0x0000/0x1fff actions=set_field:0x20044cb->reg6,set_field:0x2->reg0,goto_table:40",
      "table=52, priority=100,reg0=0x0/0x2,reg6=0x20044cb actions=output:50",
    ]);
  });
});
