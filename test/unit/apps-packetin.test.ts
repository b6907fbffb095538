/**
 * The apps' packet-in handlers, timers and reactive-flow adoption, run as
 * the agent runs them (a context whose packetOut, sendThrough and
 * installReactive record what the app did) on small views, with every frame
 * they send decoded by the packet library and checked field by field:
 *
 *   arp   neighbour solicitations answered for local and remote ports and
 *         router legs (their global and link-local addresses), not for ports
 *         on dead chassis, unknown targets or IPv4-only routers;
 *   dhcp  DHCPv4 and DHCPv6 requests reaching the app (tagged or not) answered
 *         out of the asking port with the router's MAC or the agent's own;
 *   l3    TTL expiry, ICMPv6 echo, host unreachable / no route, router
 *         solicitations, the unsolicited-RA timer and the adoption of host
 *         routes after a restart;
 *   nat   next hops learned from ARP, ARP requests for unknown next hops
 *         (once a second), gratuitous ARP for the addresses answered here,
 *         and the adoption of learned next hops.
 */
import { describe, expect, it } from "vitest";
import { loadApps, type App } from "../../src/apps/index.js";
import { DHCP_SERVER_MAC } from "../../src/apps/dhcp.js";
import { GARP_COUNT, NAT_PRIORITY, NEXT_HOP_IDLE_S } from "../../src/apps/nat.js";
import type { AppContext, ReactiveFlows } from "../../src/apps/types.js";
import type { LocalModel } from "../../src/controller/model.js";
import { table } from "../../src/datapath/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import {
  ARP_OP,
  BOOTREQUEST,
  buildDhcpPacket,
  buildFrame,
  buildNeighborSolicitation,
  DHCP_MESSAGE_TYPE,
  DHCP6_MESSAGE_TYPE,
  dhcp6OfFrame,
  encodeDhcp6,
  type Frame,
  icmpEcho,
  linkLocalFromMac,
  MAC_BROADCAST,
  parseEthernet,
  type VlanSpec,
} from "../../src/packet/index.js";
import { logger } from "../../src/util/log.js";
import {
  binding,
  chassis,
  fip,
  net,
  newModel,
  port,
  router,
  routerKeyHex,
  snat,
  subnet,
} from "../harness/model-fixture.js";

interface Sent {
  port: number;
  frame: Frame;
}

/** What one handler call did. */
interface Trace {
  sent: Sent[];
  /** sendThrough calls that sent: the punted packet's in_port and the flow it went through, as text. */
  through: [number, string][];
  resubmitted: number[];
  installed: ReactiveFlows[];
  /** The calls that send or install, in order. */
  order: ("through" | "install" | "resubmit")[];
}

/** `conntracked`: the agent's answer to sendThrough (the packet met conntrack before its punt). */
function context(m: LocalModel, conntracked = false): { ctx: AppContext; trace: Trace } {
  const trace: Trace = { sent: [], through: [], resubmitted: [], installed: [], order: [] };
  const ctx: AppContext = {
    view: m,
    packetOut: async (p, frame) => {
      trace.sent.push({ port: p, frame: parseEthernet(frame) });
    },
    sendThrough: async (pkt, via) => {
      if (conntracked) return false;
      trace.through.push([pkt.inPort, line(via)]);
      trace.order.push("through");
      return true;
    },
    resubmit: async (p) => {
      trace.resubmitted.push(p);
      trace.order.push("resubmit");
    },
    continueAt: async () => {
      throw new Error("these apps' handlers never send a packet on from a later table");
    },
    track: (fn) => {
      const deps = new Set<string>();
      const result = m.tracking(deps, fn);
      return { result, deps: [...deps] };
    },
    installReactive: async (r) => {
      trace.installed.push(r);
      trace.order.push("install");
    },
    log: logger("test-packetin"),
  };
  return { ctx, trace };
}

function app(name: string, opts: Parameters<typeof loadApps>[1] = {}): App {
  return loadApps([name], opts)[0]!;
}

async function packetIn(
  a: App,
  m: LocalModel,
  inPort: number,
  data: Buffer,
  tableId = 0,
  conntracked = false,
): Promise<Trace> {
  const { ctx, trace } = context(m, conntracked);
  await a.packetIn!({ inPort, tableId, cookie: 0n, data }, ctx);
  return trace;
}

/** r1's key in the router register. */
const RK1 = routerKeyHex("r1");
const line = (f: ReactiveFlows["flows"][number]): string => formatFlow({ ...f.build(0n), cookie: 0n });

// ── the view for arp, dhcp and l3 ──────────────────────────────────────────────

const M1 = "fa:16:3e:01:00:11";
const M2 = "fa:16:3e:02:00:12";
const M3 = "fa:16:3e:01:00:13";
const M4 = "fa:16:3e:01:00:14";
const M7 = "fa:16:3e:07:00:17";
const R1 = "fa:16:3e:00:00:01";
const R2 = "fa:16:3e:00:00:02";
const R9 = "fa:16:3e:00:00:09";
const LL1 = linkLocalFromMac(M1);

/**
 * host1: net1 (geneve 101) with 10.1.0.0/24 (DHCP) and fd00:1::/64
 * (DHCPv6-stateful, RAs), local vm1 (ofport 1), vm3 on live host2, vm4 on
 * host3 (not alive); net2 (geneve 102) with 10.2.0.0/24, local vm2 (ofport
 * 2); net7 (geneve 107) with 10.7.0.0/24 and no router, local vm7 (ofport 7).
 * Router r1 (MAC R1 on net1 for 10.1.0.1 and fd00:1::1, R2 on net2 for
 * 10.2.0.1); router r9, IPv4 only, on net1 at 10.1.0.254 (MAC R9).
 */
function world(): LocalModel {
  const m = newModel();
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host2", true);
  m.setChassis("host3", chassis("host3", "192.0.2.3"));
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
  m.setNetwork("net2", net("net2", { segmentationId: 102 }));
  m.setSubnet("sub2", subnet("sub2", "net2", "10.2.0.0/24", { gatewayIp: "10.2.0.1" }));
  m.setNetwork("net7", net("net7", { segmentationId: 107 }));
  m.setSubnet("sub7", subnet("sub7", "net7", "10.7.0.0/24"));
  m.setPort(
    "vm1",
    port("vm1", "net1", M1, [
      ["sub1", "10.1.0.11"],
      ["sub6", "fd00:1::11"],
    ]),
  );
  m.setPort("vm2", port("vm2", "net2", M2, [["sub2", "10.2.0.12"]]));
  m.setPort(
    "vm3",
    port(
      "vm3",
      "net1",
      M3,
      [
        ["sub1", "10.1.0.13"],
        ["sub6", "fd00:1::13"],
      ],
      { chassis: "host2" },
    ),
  );
  m.setPort("vm4", port("vm4", "net1", M4, [["sub6", "fd00:1::14"]], { chassis: "host3" }));
  m.setPort("vm7", port("vm7", "net7", M7, [["sub7", "10.7.0.17"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  m.setBinding("vm7", binding("vm7", 7));
  m.setRouter("r1", r1());
  m.setRouter(
    "r9",
    router("r9", [
      {
        subnetId: "sub1",
        portId: "rp9",
        networkId: "net1",
        ipAddress: "10.1.0.254",
        cidr: "10.1.0.0/24",
        macAddress: R9,
      },
    ]),
  );
  return m;
}

function r1(extra: Record<string, unknown> = {}) {
  return router(
    "r1",
    [
      {
        subnetId: "sub1",
        portId: "rp1",
        networkId: "net1",
        ipAddress: "10.1.0.1",
        cidr: "10.1.0.0/24",
        macAddress: R1,
      },
      {
        subnetId: "sub6",
        portId: "rp6",
        networkId: "net1",
        ipAddress: "fd00:1::1",
        cidr: "fd00:1::/64",
        macAddress: R1,
      },
      {
        subnetId: "sub2",
        portId: "rp2",
        networkId: "net2",
        ipAddress: "10.2.0.1",
        cidr: "10.2.0.0/24",
        macAddress: R2,
      },
    ],
    extra,
  );
}

// ── arp ───────────────────────────────────────────────────────────────────────

describe("arp: neighbour solicitations answered by the agent", () => {
  const ns = (target: string, ip = LL1) => buildNeighborSolicitation({ mac: M1, ip, target });

  function advertisement(s: Sent) {
    const nd = s.frame.icmpv6?.ndp;
    if (nd?.kind !== "neighbor-advertisement") throw new Error("not a neighbour advertisement");
    return {
      port: s.port,
      ethSrc: s.frame.eth.src,
      ethDst: s.frame.eth.dst,
      ipSrc: s.frame.ipv6!.src,
      ipDst: s.frame.ipv6!.dst,
      target: nd.target,
      router: nd.router,
      solicited: nd.solicited,
      tll: nd.options.find((o) => o.kind === "target-ll"),
    };
  }

  it("for a port on another live chassis: its MAC, to the asker, out of the asking port", async () => {
    const t = await packetIn(app("arp"), world(), 1, ns("fd00:1::13"));
    expect(t.sent.map(advertisement)).toEqual([
      {
        port: 1,
        ethSrc: M3,
        ethDst: M1,
        ipSrc: "fd00:1::13",
        ipDst: LL1,
        target: "fd00:1::13",
        router: false,
        solicited: true,
        tll: { kind: "target-ll", mac: M3 },
      },
    ]);
  });

  it("for a router leg's address and its link-local address, with the router flag", async () => {
    for (const target of ["fd00:1::1", linkLocalFromMac(R1)]) {
      const t = await packetIn(app("arp"), world(), 1, ns(target));
      expect(t.sent.map(advertisement)).toEqual([
        expect.objectContaining({ port: 1, ethSrc: R1, ethDst: M1, target, router: true, solicited: true }),
      ]);
    }
  });

  it("a DAD probe (from ::) for a taken address is answered to all-nodes, unsolicited", async () => {
    // RFC 4861 §7.2.4: to all-nodes, Solicited clear. The frame goes out of the prober's port only,
    // addressed to its MAC.
    const t = await packetIn(app("arp"), world(), 1, ns("fd00:1::13", "::"));
    expect(t.sent.map(advertisement)).toEqual([
      expect.objectContaining({ port: 1, ethSrc: M3, ethDst: M1, ipDst: "ff02::1", solicited: false }),
    ]);
  });

  it("not for a port on a dead chassis, an unknown address, an IPv4-only router's link-local address", async () => {
    for (const target of ["fd00:1::14", "fd00:1::99", linkLocalFromMac(R9)]) {
      expect((await packetIn(app("arp"), world(), 1, ns(target))).sent).toEqual([]);
    }
  });

  it("not from a port that is not bound here, and not for frames that are not solicitations", async () => {
    expect((await packetIn(app("arp"), world(), 9, ns("fd00:1::13"))).sent).toEqual([]);
    const v6udp = buildFrame({
      eth: { src: M1, dst: M3 },
      ipv6: { src: "fd00:1::11", dst: "fd00:1::13" },
      udp: { srcPort: 1, dstPort: 2 },
    });
    expect((await packetIn(app("arp"), world(), 1, v6udp)).sent).toEqual([]);
    const arpReq = buildFrame({
      eth: { src: M1, dst: MAC_BROADCAST },
      arp: { op: ARP_OP.REQUEST, sha: M1, spa: "10.1.0.11", tha: "00:00:00:00:00:00", tpa: "10.1.0.13" },
    });
    expect((await packetIn(app("arp"), world(), 1, arpReq)).sent).toEqual([]);
  });
});

// ── dhcp ──────────────────────────────────────────────────────────────────────

describe("dhcp: requests reaching the app", () => {
  const discover = (mac: string, vlans: VlanSpec[] = []) =>
    buildDhcpPacket({
      ethSrc: mac,
      ethDst: MAC_BROADCAST,
      ipSrc: "0.0.0.0",
      ipDst: "255.255.255.255",
      vlans,
      dhcp: {
        op: BOOTREQUEST,
        xid: 0x1234,
        chaddr: mac,
        options: { messageType: DHCP_MESSAGE_TYPE.DISCOVER },
      },
    });
  const solicit = (vlans: VlanSpec[] = []) =>
    buildFrame({
      eth: { src: M1, dst: "33:33:00:01:00:02" },
      vlans,
      ipv6: { src: LL1, dst: "ff02::1:2", hopLimit: 1 },
      udp: { srcPort: 546, dstPort: 547 },
      payload: encodeDhcp6({
        msgType: DHCP6_MESSAGE_TYPE.SOLICIT,
        transactionId: 0xabc,
        options: [
          { kind: "client-id", duid: Buffer.from("00030001fa163e010011", "hex") },
          { kind: "elapsed-time", time: 0 },
          {
            kind: "ia-na",
            iaid: 1,
            t1: 0,
            t2: 0,
            options: [],
          },
        ],
      }),
    });

  it("DISCOVER → OFFER of the port's address out of its port, from the router's MAC and the gateway", async () => {
    const t = await packetIn(
      app("dhcp", { dhcp: { leaseTime: 1234, domain: "example.test" } }),
      world(),
      1,
      discover(M1),
    );
    expect(t.sent).toHaveLength(1);
    const { port: p, frame } = t.sent[0]!;
    expect(p).toBe(1);
    expect(frame.eth.src).toBe(R1);
    expect(frame.dhcp?.yiaddr).toBe("10.1.0.11");
    expect(frame.dhcp?.options.messageType).toBe(DHCP_MESSAGE_TYPE.OFFER);
    expect(frame.dhcp?.options.serverIdentifier).toBe("10.1.0.1");
    expect(frame.dhcp?.options.ipAddressLeaseTime).toBe(1234);
    expect(frame.dhcp?.options.domainName).toBe("example.test");
  });

  it("without a router on the subnet: the agent's own MAC; a tagged DISCOVER keeps its tag", async () => {
    const t = await packetIn(app("dhcp"), world(), 7, discover(M7, [{ vid: 30 }]));
    expect(
      t.sent.map((s) => [s.port, s.frame.eth.src, s.frame.vlans.map((v) => v.vid), s.frame.dhcp?.yiaddr]),
    ).toEqual([[7, DHCP_SERVER_MAC, [30], "10.7.0.17"]]);
  });

  it("SOLICIT → ADVERTISE out of the port, untagged, tagged and double-tagged", async () => {
    for (const vlans of [[], [{ vid: 30 }], [{ vid: 40, tpid: 0x88a8 }, { vid: 30 }]] as VlanSpec[][]) {
      const t = await packetIn(app("dhcp", { dhcp: { domain: "example.test" } }), world(), 1, solicit(vlans));
      expect(t.sent).toHaveLength(1);
      const { port: p, frame } = t.sent[0]!;
      expect(p).toBe(1);
      expect(frame.eth.src).toBe(R1);
      expect(frame.vlans.map((v) => v.vid)).toEqual(vlans.map((v) => v.vid));
      const msg = dhcp6OfFrame(frame);
      expect(msg && "msgType" in msg ? msg.msgType : undefined).toBe(DHCP6_MESSAGE_TYPE.ADVERTISE);
      const domains = msg && "options" in msg ? msg.options.find((o) => o.kind === "domain-list") : undefined;
      expect(domains).toEqual({ kind: "domain-list", domains: ["example.test"] });
    }
  });

  it("nothing for an unbound port, a port without a DHCP subnet, a frame too short for a type", async () => {
    expect((await packetIn(app("dhcp"), world(), 9, discover(M1))).sent).toEqual([]);
    expect((await packetIn(app("dhcp"), world(), 2, solicit())).sent).toEqual([]);
    expect((await packetIn(app("dhcp"), world(), 1, Buffer.alloc(13))).sent).toEqual([]);
    // vm1's DISCOVER from another MAC is the responder's to ignore
    expect((await packetIn(app("dhcp"), world(), 1, discover(M3))).sent).toEqual([]);
  });
});

// ── l3 ────────────────────────────────────────────────────────────────────────

describe("l3: the router's packet-in", () => {
  const udp4 = (dst: string, ttl = 64, ethDst = R1) =>
    buildFrame({
      eth: { src: M1, dst: ethDst },
      ipv4: { src: "10.1.0.11", dst, ttl },
      udp: { srcPort: 40000, dstPort: 5000 },
      payload: Buffer.from("x"),
    });
  const udp6 = (dst: string, hopLimit = 64) =>
    buildFrame({
      eth: { src: M1, dst: R1 },
      ipv6: { src: "fd00:1::11", dst, hopLimit },
      udp: { srcPort: 40000, dstPort: 5000 },
      payload: Buffer.from("x"),
    });

  const icmpOf = (s: Sent) => {
    const i = s.frame.icmp ?? s.frame.icmpv6;
    const ip = s.frame.ipv4 ?? s.frame.ipv6;
    return [s.port, s.frame.eth.src, s.frame.eth.dst, ip?.src, ip?.dst, i?.type, i?.code];
  };

  it("TTL 1 or 0 → time exceeded from the router's address, back out of the port; TTL 2 is routed", async () => {
    for (const ttl of [0, 1]) {
      const t = await packetIn(app("l3"), world(), 1, udp4("10.2.0.12", ttl));
      expect(t.sent.map(icmpOf)).toEqual([[1, R1, M1, "10.1.0.1", "10.1.0.11", 11, 0]]);
      expect(t.installed).toEqual([]);
    }
    const t = await packetIn(app("l3"), world(), 1, udp4("10.2.0.12", 2));
    expect(t.sent).toEqual([]);
    expect(t.installed).toHaveLength(1);
    expect(t.through.map(([port]) => port)).toEqual([1]);
  });

  it("hop limit 1 → ICMPv6 time exceeded from the leg's IPv6 address (the frame's MAC leg is IPv4)", async () => {
    const t = await packetIn(app("l3"), world(), 1, udp6("fd00:2::5", 1));
    expect(t.sent.map(icmpOf)).toEqual([[1, R1, M1, "fd00:1::1", "fd00:1::11", 3, 0]]);
  });

  it("ICMPv6 echo to a router address → echo reply with its identifier, sequence and data", async () => {
    const echo = icmpEcho("request", 0x77, 5, Buffer.from("ping-data"), true);
    const frame = buildFrame({
      eth: { src: M1, dst: R1 },
      ipv6: { src: "fd00:1::11", dst: "fd00:1::1", hopLimit: 64 },
      icmpv6: echo,
    });
    const t = await packetIn(app("l3"), world(), 1, frame);
    expect(t.sent).toHaveLength(1);
    const s = t.sent[0]!;
    expect([s.port, s.frame.eth.src, s.frame.eth.dst, s.frame.ipv6?.src, s.frame.ipv6?.dst]).toEqual([
      1,
      R1,
      M1,
      "fd00:1::1",
      "fd00:1::11",
    ]);
    expect(s.frame.icmpv6?.type).toBe(129);
    expect(s.frame.icmpv6?.echo).toEqual(expect.objectContaining({ identifier: 0x77, sequence: 5 }));
    expect(s.frame.icmpv6?.body).toEqual(Buffer.from("ping-data"));
    expect(s.frame.icmpv6?.checksumValid).toBe(true);
    // an echo to an address beyond the router is routed (here: no route)
    const far = buildFrame({
      eth: { src: M1, dst: R1 },
      ipv6: { src: "fd00:1::11", dst: "fd00:9::1", hopLimit: 64 },
      icmpv6: echo,
    });
    expect((await packetIn(app("l3"), world(), 1, far)).sent.map(icmpOf)).toEqual([
      [1, R1, M1, "fd00:1::1", "fd00:1::11", 1, 0],
    ]);
  });

  it("an address on a connected subnet that no port has → host unreachable; elsewhere → no route", async () => {
    const host = await packetIn(app("l3"), world(), 1, udp4("10.2.0.99"));
    expect(host.sent.map(icmpOf)).toEqual([[1, R1, M1, "10.1.0.1", "10.1.0.11", 3, 1]]);
    expect(host.installed).toEqual([]);
    expect(host.through).toEqual([]);
    const none = await packetIn(app("l3"), world(), 1, udp4("198.51.100.7"));
    expect(none.sent.map(icmpOf)).toEqual([[1, R1, M1, "10.1.0.1", "10.1.0.11", 3, 0]]);
    const host6 = await packetIn(app("l3"), world(), 1, udp6("fd00:1::99"));
    expect(host6.sent.map(icmpOf)).toEqual([[1, R1, M1, "fd00:1::1", "fd00:1::11", 1, 3]]);
  });

  it("the first packet to a port installs its host route (idle timeout, flow_removed) and goes on", async () => {
    const t = await packetIn(app("l3", { l3: { idleTimeoutS: 77 } }), world(), 1, udp4("10.2.0.12"));
    expect(t.installed.map((r) => [r.key, r.flows.map(line)])).toEqual([
      [
        "r1/10.2.0.12",
        [
          `table=30, idle_timeout=77, send_flow_rem priority=332,ip,reg2=${RK1},nw_dst=10.2.0.12 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
        ],
      ],
    ]);
    // the packet leaves first, through the same route (the flow_mod follows it)
    expect(t.through).toEqual([
      [
        1,
        `table=30, priority=332,ip,reg2=${RK1},nw_dst=10.2.0.12 actions=set_field:fa:16:3e:00:00:02->eth_src,set_field:fa:16:3e:02:00:12->eth_dst,dec_ttl,set_field:0x66->reg6,goto_table:40`,
      ],
    ]);
    expect(t.order).toEqual(["through", "install"]);
    expect(t.installed[0]!.unhurried).toBe(true);
    expect(t.resubmitted).toEqual([]);
  });

  it("a first packet that met conntrack before its punt runs again from table 0, after its route", async () => {
    const t = await packetIn(app("l3"), world(), 1, udp4("10.2.0.12"), table("l3"), true);
    expect(t.installed.map((r) => r.key)).toEqual(["r1/10.2.0.12"]);
    expect(t.through).toEqual([]);
    expect(t.resubmitted).toEqual([1]);
    expect(t.order).toEqual(["install", "resubmit"]);
    // its route must be in the switch before the packet runs again: not held back
    expect(t.installed[0]!.unhurried).toBe(false);
  });

  it("nothing for frames not to a router, to a router that is down, from unbound ports, or not IP", async () => {
    expect((await packetIn(app("l3"), world(), 1, udp4("10.2.0.12", 64, M3))).sent).toEqual([]);
    expect((await packetIn(app("l3"), world(), 9, udp4("10.2.0.12", 1))).sent).toEqual([]);
    const down = world();
    down.setRouter("r1", r1({ adminStateUp: false }));
    const t = await packetIn(app("l3"), down, 1, udp4("10.2.0.12", 1));
    expect([t.sent, t.installed]).toEqual([[], []]);
    const arpReq = buildFrame({
      eth: { src: M1, dst: R1 },
      arp: { op: ARP_OP.REQUEST, sha: M1, spa: "10.1.0.11", tha: "00:00:00:00:00:00", tpa: "10.1.0.1" },
    });
    expect((await packetIn(app("l3"), world(), 1, arpReq)).sent).toEqual([]);
  });

  it("a router solicitation → an RA out of the asking port from the leg's link-local address", async () => {
    const rs = buildFrame({
      eth: { src: M1, dst: "33:33:00:00:00:02" },
      ipv6: { src: LL1, dst: "ff02::2", hopLimit: 255 },
      icmpv6: { type: 133, code: 0 },
    });
    const t = await packetIn(app("l3", { dhcp: { domain: "example.test" } }), world(), 1, rs);
    expect(t.sent).toHaveLength(1);
    const s = t.sent[0]!;
    expect([s.port, s.frame.eth.src, s.frame.eth.dst, s.frame.ipv6?.src, s.frame.ipv6?.dst]).toEqual([
      1,
      R1,
      M1,
      linkLocalFromMac(R1),
      LL1,
    ]);
    const ra = s.frame.icmpv6?.ndp;
    expect(ra?.kind).toBe("router-advertisement");
    if (ra?.kind !== "router-advertisement") return;
    expect(ra.managed).toBe(true);
    expect(ra.options).toContainEqual(expect.objectContaining({ kind: "dnssl", domains: ["example.test"] }));
    // a solicitation with a hop limit below 255 is not from the link: no answer
    const far = buildFrame({
      eth: { src: M1, dst: "33:33:00:00:00:02" },
      ipv6: { src: LL1, dst: "ff02::2", hopLimit: 64 },
      icmpv6: { type: 133, code: 0 },
    });
    expect((await packetIn(app("l3"), world(), 1, far)).sent).toEqual([]);
  });
});

describe("l3: unsolicited router advertisements (the timer)", () => {
  async function tick(a: App, m: LocalModel, now: number): Promise<Sent[]> {
    const { ctx, trace } = context(m);
    await a.timer!.tick(ctx, now);
    return trace.sent;
  }
  const summary = (s: Sent) => [s.port, s.frame.eth.src, s.frame.ipv6?.dst, s.frame.icmpv6?.type];

  it("the first RA at once to every local port of the network, the next ones within 16 s", async () => {
    const a = app("l3");
    const m = world();
    m.setPort("vm5", port("vm5", "net1", "fa:16:3e:01:00:15", [["sub1", "10.1.0.15"]]));
    m.setBinding("vm5", binding("vm5", 5));
    expect((await tick(a, m, 1000)).map(summary)).toEqual([
      [1, R1, "ff02::1", 134],
      [5, R1, "ff02::1", 134],
    ]);
    expect(await tick(a, m, 1001)).toEqual([]);
    // the second of the three initial RAs is due at most 16 s after the first
    expect((await tick(a, m, 1000 + 16_000)).map(summary)).toHaveLength(2);
    expect(await tick(a, m, 1000 + 16_001)).toEqual([]);
  });

  it("a change of content restarts the schedule; a leg that goes is forgotten and starts afresh", async () => {
    const a = app("l3");
    const m = world();
    expect(await tick(a, m, 0)).toHaveLength(1);
    expect(await tick(a, m, 1)).toEqual([]);
    m.setNetwork("net1", net("net1", { segmentationId: 101, mtu: 1400 }));
    const changed = await tick(a, m, 2);
    expect(changed.map(summary)).toEqual([[1, R1, "ff02::1", 134]]);
    const ra = changed[0]!.frame.icmpv6?.ndp;
    expect(
      ra?.kind === "router-advertisement" ? ra.options.find((o) => o.kind === "mtu") : undefined,
    ).toEqual({
      kind: "mtu",
      mtu: 1400,
    });
    m.setRouter("r1", r1({ adminStateUp: false }));
    expect(await tick(a, m, 3)).toEqual([]);
    m.setRouter("r1", r1());
    expect(await tick(a, m, 4)).toHaveLength(1);
  });

  it("nothing for a network whose router legs advertise nothing", async () => {
    const a = app("l3");
    const m = world();
    m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64", { gatewayIp: "fd00:1::1" }));
    expect(await tick(a, m, 0)).toEqual([]);
  });
});

describe("l3: adopting host routes after a restart", () => {
  async function installed(m: LocalModel, dst: string) {
    const frame = buildFrame({
      eth: { src: M1, dst: R1 },
      ipv4: { src: "10.1.0.11", dst, ttl: 64 },
      udp: { srcPort: 1, dstPort: 2 },
    });
    const t = await packetIn(app("l3"), m, 1, frame);
    return t.installed[0]!.flows[0]!.build(0xabcn);
  }

  it("keeps a route that is still right, with its key and dependencies", async () => {
    const m = world();
    const f = await installed(m, "10.2.0.12");
    const { ctx } = context(m);
    const got = app("l3").adoptReactive!(f, ctx);
    expect(got?.key).toBe("r1/10.2.0.12");
    expect(got?.deps).toEqual(expect.arrayContaining(["router:r1", "port:vm2"]));
  });

  it("drops one whose port moved, whose actions differ, or whose router key is unknown", async () => {
    const m = world();
    const f = await installed(m, "10.2.0.12");
    const { ctx } = context(m);
    const l3 = app("l3");
    expect(l3.adoptReactive!({ ...f, idleTimeout: 5 }, ctx)?.key).toBe("r1/10.2.0.12");
    const wrongMac = {
      ...f,
      instructions: f.instructions.map((i) =>
        i.type === "apply_actions"
          ? {
              ...i,
              actions: i.actions.map((a) =>
                a.type === "set_field" && a.field === "eth_dst" ? { ...a, value: "fa:16:3e:99:99:99" } : a,
              ),
            }
          : i,
      ),
    };
    expect(l3.adoptReactive!(wrongMac, ctx)).toBeUndefined();
    const otherRouter = { ...f, match: f.match.map((x) => (x.field === "reg2" ? { ...x, value: 4242 } : x)) };
    expect(l3.adoptReactive!(otherRouter, ctx)).toBeUndefined();
    m.setPort("vm2", port("vm2", "net2", M2, [["sub2", "10.2.0.13"]]));
    expect(l3.adoptReactive!(f, context(m).ctx)).toBeUndefined();
  });
});

// ── nat ───────────────────────────────────────────────────────────────────────

const FIP_MAC = "fa:16:3e:fe:00:50";
const FIP2_MAC = "fa:16:3e:fe:01:50";
const GW_MAC = "fa:16:3e:fe:00:10";
const UPSTREAM = "fa:16:3e:99:00:01";
const NEIGHBOUR = "fa:16:3e:99:00:07";

/**
 * host1 and host2 alive; r1 on net1 (local vm1), gateway on ext (flat,
 * physnet1 → patch 50, 172.24.4.0/24 via 172.24.4.1) at 172.24.4.10, SNAT
 * here; r2 on net2 (local vm2), gateway on ext2 (vlan 100, 198.51.100.0/24
 * via .1), SNAT on host2. Floating IPs 172.24.4.50 → vm1, 198.51.100.50 → vm2.
 */
function natWorld(): LocalModel {
  const m = newModel();
  m.setProviderPorts(new Map([["physnet1", 50]]));
  m.setChassis("host1", chassis("host1", "192.0.2.1"));
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host1", true);
  m.setAlive("host2", true);
  for (const n of [1, 2]) {
    m.setNetwork(`net${n}`, net(`net${n}`, { segmentationId: 100 + n }));
    m.setSubnet(`sub${n}`, subnet(`sub${n}`, `net${n}`, `10.${n}.0.0/24`));
    m.setRouter(
      `r${n}`,
      router(`r${n}`, [
        {
          subnetId: `sub${n}`,
          portId: `rp${n}`,
          networkId: `net${n}`,
          ipAddress: `10.${n}.0.1`,
          cidr: `10.${n}.0.0/24`,
          macAddress: `fa:16:3e:00:00:0${n}`,
        },
      ]),
    );
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
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  m.setSnat(
    "s1",
    snat("s1", {
      routerId: "r1",
      externalNetworkId: "ext",
      externalIpAddress: "172.24.4.10",
      macAddress: GW_MAC,
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
      macAddress: FIP_MAC,
      portId: "vm1",
      fixedIpAddress: "10.1.0.11",
    }),
  );
  m.setFip(
    "f2",
    fip("f2", {
      floatingNetworkId: "ext2",
      floatingIpAddress: "198.51.100.50",
      macAddress: FIP2_MAC,
      portId: "vm2",
      fixedIpAddress: "10.2.0.12",
    }),
  );
  return m;
}

const CLS = table("classification");
const RESOLVE = table("nat_resolve");

function arpFrame(op: number, sha: string, spa: string, tpa: string, vlans: VlanSpec[] = [], ethSrc = sha) {
  return buildFrame({
    eth: { src: ethSrc, dst: op === ARP_OP.REQUEST ? MAC_BROADCAST : FIP_MAC },
    vlans,
    arp: { op, sha, spa, tha: op === ARP_OP.REQUEST ? "00:00:00:00:00:00" : FIP_MAC, tpa },
  });
}

describe("nat: next hops learned from ARP", () => {
  it("a request for a floating IP from the subnet's gateway: a next-hop flow and the default route", async () => {
    const t = await packetIn(
      app("nat"),
      natWorld(),
      50,
      arpFrame(ARP_OP.REQUEST, UPSTREAM, "172.24.4.1", "172.24.4.50"),
      CLS,
    );
    expect(t.installed.map((r) => [r.key, r.flows.map(line)])).toEqual([
      [
        "ext/172.24.4.1",
        [
          `table=37, idle_timeout=${NEXT_HOP_IDLE_S}, send_flow_rem priority=${NAT_PRIORITY.nextHop},ip,reg6=0x20044cb,nw_dst=172.24.4.1 actions=set_field:${UPSTREAM}->eth_dst,output:50`,
          `table=37, idle_timeout=${NEXT_HOP_IDLE_S}, send_flow_rem priority=${NAT_PRIORITY.gateway},ip,reg6=0x20044cb actions=set_field:${UPSTREAM}->eth_dst,output:50`,
        ],
      ],
    ]);
    expect(t.installed[0]!.deps.length).toBeGreaterThan(0);
  });

  it("a reply to a floating IP on a vlan network from an on-link neighbour: its flow only, tagged", async () => {
    const t = await packetIn(
      app("nat"),
      natWorld(),
      50,
      arpFrame(ARP_OP.REPLY, NEIGHBOUR, "198.51.100.7", "198.51.100.50", [{ vid: 100 }]),
      CLS,
    );
    expect(t.installed.map((r) => [r.key, r.flows.map(line)])).toEqual([
      [
        "ext2/198.51.100.7",
        [
          `table=37, idle_timeout=${NEXT_HOP_IDLE_S}, send_flow_rem priority=${NAT_PRIORITY.nextHop},ip,reg6=0x1000064,nw_dst=198.51.100.7 actions=set_field:${NEIGHBOUR}->eth_dst,push_vlan:0x8100,set_field:4196->vlan_vid,output:50`,
        ],
      ],
    ]);
  });

  it("learns from a request for the SNAT gateway address too", async () => {
    const t = await packetIn(
      app("nat"),
      natWorld(),
      50,
      arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.7", "172.24.4.10"),
      CLS,
    );
    expect(t.installed.map((r) => r.key)).toEqual(["ext/172.24.4.7"]);
  });

  it("learns nothing from a spoofed sha, an address not ours, a NAT address, off-subnet, another table", async () => {
    const cases: [Buffer, number][] = [
      [arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.7", "172.24.4.50", [], UPSTREAM), CLS],
      [arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.7", "172.24.4.99"), CLS],
      [arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.10", "172.24.4.50"), CLS],
      [arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "203.0.113.7", "172.24.4.50"), CLS],
      [arpFrame(ARP_OP.REQUEST, NEIGHBOUR, "172.24.4.7", "172.24.4.50"), table("l3")],
      [arpFrame(3, NEIGHBOUR, "172.24.4.7", "172.24.4.50"), CLS],
    ];
    for (const [frame, tableId] of cases) {
      const t = await packetIn(app("nat"), natWorld(), 50, frame, tableId);
      expect([t.installed, t.sent]).toEqual([[], []]);
    }
  });
});

describe("nat: unknown next hops", () => {
  const fromFip = (dst: string, src = "172.24.4.50", mac = FIP_MAC) =>
    buildFrame({
      eth: { src: mac, dst: "00:00:00:00:00:00" },
      ipv4: { src, dst, ttl: 63 },
      udp: { srcPort: 1, dstPort: 2 },
    });
  const arpOf = (s: Sent) => [
    s.port,
    s.frame.vlans.map((v) => v.vid),
    s.frame.eth.src,
    s.frame.eth.dst,
    s.frame.arp?.op,
    s.frame.arp?.sha,
    s.frame.arp?.spa,
    s.frame.arp?.tpa,
  ];

  it("off-link: an ARP request for the gateway from the packet's own source, out of the patch port", async () => {
    const t = await packetIn(app("nat"), natWorld(), 1, fromFip("8.8.8.8"), RESOLVE);
    expect(t.sent.map(arpOf)).toEqual([
      [50, [], FIP_MAC, MAC_BROADCAST, 1, FIP_MAC, "172.24.4.50", "172.24.4.1"],
    ]);
  });

  it("on-link: for the destination itself; tagged on a vlan network", async () => {
    const t = await packetIn(app("nat"), natWorld(), 1, fromFip("172.24.4.9"), RESOLVE);
    expect(t.sent.map(arpOf)).toEqual([
      [50, [], FIP_MAC, MAC_BROADCAST, 1, FIP_MAC, "172.24.4.50", "172.24.4.9"],
    ]);
    const v = await packetIn(
      app("nat"),
      natWorld(),
      2,
      fromFip("198.51.100.9", "198.51.100.50", FIP2_MAC),
      RESOLVE,
    );
    expect(v.sent.map(arpOf)).toEqual([
      [50, [100], FIP2_MAC, MAC_BROADCAST, 1, FIP2_MAC, "198.51.100.50", "198.51.100.9"],
    ]);
  });

  it("asks once a second per next hop, not once per packet", async () => {
    const nat = app("nat");
    const m = natWorld();
    expect((await packetIn(nat, m, 1, fromFip("8.8.8.8"), RESOLVE)).sent).toHaveLength(1);
    expect((await packetIn(nat, m, 1, fromFip("8.8.4.4"), RESOLVE)).sent).toEqual([]);
    expect((await packetIn(nat, m, 1, fromFip("172.24.4.9"), RESOLVE)).sent).toHaveLength(1);
  });

  it("nothing from a source that is no NAT address (or has another MAC), or without a gateway", async () => {
    expect(
      (await packetIn(app("nat"), natWorld(), 1, fromFip("8.8.8.8", "172.24.4.51"), RESOLVE)).sent,
    ).toEqual([]);
    expect(
      (await packetIn(app("nat"), natWorld(), 1, fromFip("8.8.8.8", "172.24.4.50", UPSTREAM), RESOLVE)).sent,
    ).toEqual([]);
    const m = natWorld();
    m.setSubnet("extsub", subnet("extsub", "ext", "172.24.4.0/24"));
    expect((await packetIn(app("nat"), m, 1, fromFip("8.8.8.8"), RESOLVE)).sent).toEqual([]);
  });
});

describe("nat: gratuitous ARP for the addresses answered here", () => {
  async function tick(a: App, m: LocalModel): Promise<Sent[]> {
    const { ctx, trace } = context(m);
    await a.timer!.tick(ctx, 0);
    return trace.sent;
  }
  const garp = (s: Sent) => [
    s.port,
    s.frame.vlans.map((v) => v.vid),
    s.frame.eth.src,
    s.frame.eth.dst,
    s.frame.arp?.op,
    s.frame.arp?.sha,
    s.frame.arp?.spa,
    s.frame.arp?.tpa,
  ];

  it(`${GARP_COUNT} times each, then no more; again when an address changes`, async () => {
    const nat = app("nat");
    const m = natWorld();
    const want = [
      [50, [], FIP_MAC, MAC_BROADCAST, 1, FIP_MAC, "172.24.4.50", "172.24.4.50"],
      [50, [100], FIP2_MAC, MAC_BROADCAST, 1, FIP2_MAC, "198.51.100.50", "198.51.100.50"],
      [50, [], GW_MAC, MAC_BROADCAST, 1, GW_MAC, "172.24.4.10", "172.24.4.10"],
    ];
    for (let i = 0; i < GARP_COUNT; i++) expect((await tick(nat, m)).map(garp)).toEqual(want);
    expect(await tick(nat, m)).toEqual([]);
    m.setFip(
      "f1",
      fip("f1", {
        floatingNetworkId: "ext",
        floatingIpAddress: "172.24.4.51",
        macAddress: FIP_MAC,
        portId: "vm1",
        fixedIpAddress: "10.1.0.11",
      }),
    );
    expect((await tick(nat, m)).map(garp)).toEqual([
      [50, [], FIP_MAC, MAC_BROADCAST, 1, FIP_MAC, "172.24.4.51", "172.24.4.51"],
    ]);
  });

  it("not for a gateway whose SNAT runs elsewhere, is disabled, or whose router is down", async () => {
    const m = natWorld();
    m.setFip("f1", undefined);
    m.setFip("f2", undefined);
    m.setAlive("host2", false);
    // s2 now runs here (host2 is dead): both gateways announce
    expect((await tick(app("nat"), m)).map((s) => s.frame.arp?.spa)).toEqual([
      "172.24.4.10",
      "198.51.100.10",
    ]);
    for (const change of [
      (x: LocalModel) => x.setAlive("host2", true),
      (x: LocalModel) =>
        x.setSnat(
          "s2",
          snat("s2", {
            routerId: "r2",
            externalNetworkId: "ext2",
            externalIpAddress: "198.51.100.10",
            macAddress: "fa:16:3e:fe:01:10",
            gatewayChassis: ["host2", "host1"],
            enabled: false,
          }),
        ),
      (x: LocalModel) => x.setRouter("r2", router("r2", [], { adminStateUp: false })),
    ]) {
      const w = natWorld();
      w.setFip("f1", undefined);
      w.setFip("f2", undefined);
      w.setAlive("host2", false);
      change(w);
      expect((await tick(app("nat"), w)).map((s) => s.frame.arp?.spa)).toEqual(["172.24.4.10"]);
    }
  });
});

describe("nat: adopting learned next hops after a restart", () => {
  async function learned(m: LocalModel) {
    const t = await packetIn(
      app("nat"),
      m,
      50,
      arpFrame(ARP_OP.REQUEST, UPSTREAM, "172.24.4.1", "172.24.4.50"),
      CLS,
    );
    return t.installed[0]!.flows.map((f) => f.build(0xabcn));
  }

  it("keeps both flows of a learned gateway under its key", async () => {
    const m = natWorld();
    const flows = await learned(m);
    expect(flows).toHaveLength(2);
    for (const f of flows) {
      const got = app("nat").adoptReactive!(f, context(m).ctx);
      expect(got?.key).toBe("ext/172.24.4.1");
      expect(got?.deps.length).toBeGreaterThan(0);
    }
  });

  it("drops a flow of another table, another MAC, another timeout, or a network no NAT address uses", async () => {
    const m = natWorld();
    const [host] = await learned(m);
    const nat = app("nat");
    const { ctx } = context(m);
    expect(nat.adoptReactive!({ ...host!, table: table("l3") }, ctx)).toBeUndefined();
    expect(nat.adoptReactive!({ ...host!, idleTimeout: 5 }, ctx)).toBeUndefined();
    expect(nat.adoptReactive!({ ...host!, instructions: [] }, ctx)).toBeUndefined();
    const other = {
      ...host!,
      match: host!.match.map((x) => (x.field === "reg6" ? { ...x, value: 4242 } : x)),
    };
    expect(nat.adoptReactive!(other, ctx)).toBeUndefined();
    m.setSubnet("extsub", subnet("extsub", "ext", "172.30.0.0/24", { gatewayIp: "172.30.0.1" }));
    expect(nat.adoptReactive!(host!, context(m).ctx)).toBeUndefined();
  });
});
