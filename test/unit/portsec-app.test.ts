/**
 * Port security at flow level: frames a VM might send (test/harness/
 * spoof-frames.ts) looked up in the port_security flows the portsec app
 * builds, as OVS looks a packet up in one table — the highest-priority flow
 * whose every match field agrees with the packet's fields wins, a miss
 * drops. Each planted bug of issue 14 turns one of these verdicts around:
 * the DHCP-server drop removed or moved below the IP allow, ARP's sha not
 * checked, the network's portSecurityEnabled ignored, an allowed address
 * pair's own MAC ignored. So do the checks added with them: DHCPv6 server
 * and router advertisement drops, and neighbour discovery contents.
 * test/integration/portsec.test.ts sends the same frames through
 * ovs-vswitchd.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { PORTSEC_PRIORITY } from "../../src/apps/portsec.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { table } from "../../src/datapath/index.js";
import type { Flow } from "../../src/openflow/flow.js";
import { fieldByName, type MatchField, type OxmValue, valueToBytes } from "../../src/openflow/oxm.js";
import { formatFlow } from "../../src/openflow/text.js";
import { linkLocalFromMac } from "../../src/packet/ndp.js";
import { binding, net, newModel, port, subnet } from "../harness/model-fixture.js";
import { arp, na, ns, oxmFields, ra, udp } from "../harness/spoof-frames.js";

const M1 = "fa:16:3e:01:00:11";
const M2 = "fa:16:3e:01:00:12";
const M3 = "fa:16:3e:02:00:13";
const M5 = "fa:16:3e:01:00:15";
const PAIR_MAC = "fa:16:3e:aa:bb:cc";
const LL1 = linkLocalFromMac(M1);
const LL2 = linkLocalFromMac(M2);

function world(netPortSecurity = false): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
  m.setPort(
    "vm1",
    port("vm1", "net1", M1, [
      ["sub1", "10.1.0.11"],
      ["sub6", "fd00:1::11"],
    ]),
  );
  m.setPort(
    "vm2",
    port("vm2", "net1", M2, [["sub1", "10.1.0.12"]], {
      allowedAddressPairs: [
        { ipAddress: "10.1.0.100" },
        { ipAddress: "10.1.0.128/25", macAddress: PAIR_MAC },
        { ipAddress: "fd00:1::200", macAddress: PAIR_MAC },
        { ipAddress: "fd00:1::100/120", macAddress: PAIR_MAC },
        { ipAddress: "fd00:9::/48" },
        { ipAddress: "10.1.0.77/32" },
      ],
    }),
  );
  m.setPort(
    "vm4",
    port("vm4", "net1", "fa:16:3e:01:00:14", [["sub1", "10.1.0.14"]], { portSecurityEnabled: false }),
  );
  m.setNetwork("net2", net("net2", { segmentationId: 102, portSecurityEnabled: netPortSecurity }));
  m.setSubnet("sub2", subnet("sub2", "net2", "10.2.0.0/24"));
  m.setPort("vm3", port("vm3", "net2", M3, [["sub2", "10.2.0.13"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setBinding("vm2", binding("vm2", 2));
  m.setBinding("vm3", binding("vm3", 3));
  m.setBinding("vm4", binding("vm4", 4));
  m.setPort(
    "vm5",
    port("vm5", "net1", M5, [["sub1", "10.1.0.15"]], { allowedAddressPairs: [{ ipAddress: "0.0.0.0/0" }] }),
  );
  m.setBinding("vm5", binding("vm5", 5));
  return m;
}

function portsecFlows(m: LocalModel): Flow[] {
  const e = new Engine(m, loadApps(["portsec"]));
  e.recomputeAll();
  return e
    .allFlows()
    .filter((d) => d.owner.startsWith("portsec/"))
    .map((d) => d.flow);
}

function fieldMatches(m: MatchField, pkt: Record<string, OxmValue>): boolean {
  const def = fieldByName(m.field);
  if (!def) throw new Error(`unknown field ${m.field}`);
  const have = pkt[def.name];
  if (have === undefined) return false;
  const a = valueToBytes(def, have);
  const b = valueToBytes(def, m.value);
  const mask = m.mask === undefined ? Buffer.alloc(a.length, 0xff) : valueToBytes(def, m.mask);
  return a.every((x, i) => (x & mask[i]!) === (b[i]! & mask[i]!));
}

/** What table port_security does with `frame` from `inPort`: the winning flow, or the miss. */
function lookup(flows: Flow[], frame: Buffer, inPort: number): { verdict: "pass" | "drop"; flow?: string } {
  const pkt = oxmFields(frame, inPort);
  const hits = flows
    .filter((f) => f.table === table("port_security") && f.match.every((m) => fieldMatches(m, pkt)))
    .sort((a, b) => b.priority - a.priority);
  const top = hits[0];
  if (!top) return { verdict: "drop" };
  const rivals = hits.filter((h) => h.priority === top.priority);
  const pass = (f: Flow): boolean => f.instructions.some((i) => i.type === "goto_table");
  if (rivals.some((r) => pass(r) !== pass(top)))
    throw new Error(
      `two flows of priority ${top.priority} disagree: ${rivals.map((r) => formatFlow(r)).join(" | ")}`,
    );
  if (pass(top)) expect(top.instructions).toEqual([{ type: "goto_table", table: table("ingress_secgroup") }]);
  return { verdict: pass(top) ? "pass" : "drop", flow: formatFlow({ ...top, cookie: 0n }) };
}

// The flows are built inside each test, never at module load: a mutation run switches its mutants
// on per test, so flows built once up front would be the unmutated ones.
let built: Flow[] | undefined;
beforeEach(() => {
  built = undefined;
});
const flows = (): Flow[] => (built ??= portsecFlows(world()));
const verdict = (frame: Buffer, inPort: number): "pass" | "drop" => lookup(flows(), frame, inPort).verdict;

describe("what a port with port security may send", () => {
  it("its own addresses pass; another source MAC or IP drops", () => {
    expect(verdict(udp({ mac: M1, src: "10.1.0.11", sport: 5000, dport: 5000 }), 1)).toBe("pass");
    expect(verdict(arp({ mac: M1, spa: "10.1.0.11", tpa: "10.1.0.12" }), 1)).toBe("pass");
    expect(verdict(udp({ mac: M1, src: "fd00:1::11", sport: 5000, dport: 5000 }), 1)).toBe("pass");
    expect(verdict(udp({ mac: M1, src: LL1, sport: 5000, dport: 5000 }), 1)).toBe("pass");
    expect(verdict(udp({ mac: M1, src: "10.1.0.99", sport: 5000, dport: 5000 }), 1)).toBe("drop");
    expect(verdict(udp({ mac: M2, src: "10.1.0.11", sport: 5000, dport: 5000 }), 1)).toBe("drop");
    expect(verdict(udp({ mac: M1, src: "fd00:1::99", sport: 5000, dport: 5000 }), 1)).toBe("drop");
    expect(verdict(arp({ mac: M1, spa: "10.1.0.99", tpa: "10.1.0.12" }), 1)).toBe("drop");
    // vm1's addresses are not vm2's
    expect(verdict(udp({ mac: M1, src: "10.1.0.11", sport: 5000, dport: 5000 }), 2)).toBe("drop");
  });

  it("DHCP bootstrap: a DISCOVER from 0.0.0.0 and an ARP probe pass", () => {
    expect(verdict(udp({ mac: M1, src: "0.0.0.0", sport: 68, dport: 67 }), 1)).toBe("pass");
    expect(verdict(udp({ mac: M1, src: "0.0.0.0", sport: 68, dport: 5000 }), 1)).toBe("drop");
    expect(verdict(arp({ mac: M1, spa: "0.0.0.0", tpa: "10.1.0.11", op: 1 }), 1)).toBe("pass");
  });
});

describe("no VM answers as a DHCP server (planted: the drop removed, or below the IP allow)", () => {
  it("udp source port 67 drops from the port's own address, from 0.0.0.0 and from an allowed pair", () => {
    const own = udp({ mac: M1, src: "10.1.0.11", sport: 67, dport: 68 });
    expect(lookup(flows(), own, 1)).toEqual({
      verdict: "drop",
      flow: "table=5, priority=100,udp,in_port=1,tp_src=67 actions=drop",
    });
    expect(verdict(udp({ mac: M1, src: "10.1.0.11", dst: "10.1.0.12", sport: 67, dport: 68 }), 1)).toBe(
      "drop",
    );
    expect(verdict(udp({ mac: M1, src: "0.0.0.0", sport: 67, dport: 68 }), 1)).toBe("drop");
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.130", sport: 67, dport: 68 }), 2)).toBe("drop");
    // the same datagram from another source port passes: it is the port 67 that drops
    expect(verdict(udp({ mac: M1, src: "10.1.0.11", sport: 66, dport: 68 }), 1)).toBe("pass");
  });

  it("the drop sits above every allow", () => {
    const drops = flows()
      .filter((f) => f.instructions.length === 0)
      .map((f) => f.priority);
    const allows = flows()
      .filter((f) => f.instructions.length > 0)
      .map((f) => f.priority);
    expect(
      Math.min(
        ...flows()
          .filter((f) => formatFlow(f).includes("tp_src=67"))
          .map((f) => f.priority),
      ),
    ).toBe(PORTSEC_PRIORITY.serverDrop);
    expect(PORTSEC_PRIORITY.serverDrop).toBeGreaterThan(Math.max(...allows));
    expect(drops.length).toBeGreaterThan(0);
  });

  it("a DHCPv6 server reply (udp6 source port 547) and a router advertisement drop, from a link-local or a fixed address", () => {
    for (const src of [LL1, "fd00:1::11"]) {
      expect(verdict(udp({ mac: M1, src, sport: 547, dport: 546 }), 1)).toBe("drop");
      expect(verdict(ra({ mac: M1, src }), 1)).toBe("drop");
      expect(verdict(udp({ mac: M1, src, sport: 546, dport: 547 }), 1)).toBe("pass");
    }
  });
});

describe("ARP must name the frame's MAC as sender (planted: arp_sha not checked)", () => {
  it("a reply or request with another sender MAC drops, a probe too", () => {
    for (const sha of [M2, "fa:16:3e:ff:ff:ff"]) {
      expect(verdict(arp({ mac: M1, sha, spa: "10.1.0.11", tpa: "10.1.0.12" }), 1)).toBe("drop");
      expect(verdict(arp({ mac: M1, sha, spa: "10.1.0.11", tpa: "10.1.0.12", op: 1 }), 1)).toBe("drop");
      expect(verdict(arp({ mac: M1, sha, spa: "0.0.0.0", tpa: "10.1.0.11", op: 1 }), 1)).toBe("drop");
    }
    // the pair's MAC is no sender for the port's own addresses, nor the port's for the pair's
    expect(verdict(arp({ mac: M2, sha: PAIR_MAC, spa: "10.1.0.12", tpa: "10.1.0.11" }), 2)).toBe("drop");
    expect(verdict(arp({ mac: PAIR_MAC, sha: M2, spa: "10.1.0.130", tpa: "10.1.0.11" }), 2)).toBe("drop");
  });
});

describe("an allowed address pair with its own MAC (planted: the pair's MAC ignored)", () => {
  it("sends from that MAC with the pair's addresses, IP and ARP", () => {
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.130", sport: 5000, dport: 5000 }), 2)).toBe("pass");
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.255", sport: 5000, dport: 5000 }), 2)).toBe("pass");
    expect(verdict(arp({ mac: PAIR_MAC, spa: "10.1.0.130", tpa: "10.1.0.11" }), 2)).toBe("pass");
    expect(verdict(udp({ mac: PAIR_MAC, src: "fd00:1::200", sport: 5000, dport: 5000 }), 2)).toBe("pass");
  });

  it("not from the port's MAC, and the pair's MAC not with the port's or another pair's addresses", () => {
    expect(verdict(udp({ mac: M2, src: "10.1.0.130", sport: 5000, dport: 5000 }), 2)).toBe("drop");
    expect(verdict(arp({ mac: M2, spa: "10.1.0.130", tpa: "10.1.0.11" }), 2)).toBe("drop");
    expect(verdict(udp({ mac: M2, src: "fd00:1::200", sport: 5000, dport: 5000 }), 2)).toBe("drop");
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.12", sport: 5000, dport: 5000 }), 2)).toBe("drop");
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.100", sport: 5000, dport: 5000 }), 2)).toBe("drop");
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.127", sport: 5000, dport: 5000 }), 2)).toBe("drop");
  });

  it("pairs given as prefixes match the prefix, IPv4 and IPv6; a /32 is one address", () => {
    const v6 = (mac: string, src: string): "pass" | "drop" =>
      verdict(udp({ mac, src, sport: 5000, dport: 5000 }), 2);
    expect(v6(PAIR_MAC, "fd00:1::100")).toBe("pass");
    expect(v6(PAIR_MAC, "fd00:1::1ff")).toBe("pass");
    expect(v6(PAIR_MAC, "fd00:1::ff")).toBe("drop");
    expect(v6(PAIR_MAC, "fd00:1::300")).toBe("drop");
    expect(verdict(na({ mac: PAIR_MAC, src: "fd00:1::1aa", target: "fd00:1::1bb" }), 2)).toBe("pass");
    expect(v6(M2, "fd00:9::1")).toBe("pass");
    expect(v6(M2, "fd00:9:0:ffff:ffff:ffff:ffff:ffff")).toBe("pass");
    expect(v6(M2, "fd00:9:1::1")).toBe("drop");
    expect(v6(M2, "fd00:8:ffff::1")).toBe("drop");
    const exact = lookup(flows(), udp({ mac: M2, src: "10.1.0.77", sport: 5000, dport: 5000 }), 2);
    expect(exact).toEqual({
      verdict: "pass",
      flow: "table=5, priority=80,ip,in_port=2,dl_src=fa:16:3e:01:00:12,nw_src=10.1.0.77 actions=goto_table:10",
    });
    expect(v6(M2, "10.1.0.78")).toBe("drop");
    // 0.0.0.0/0: any IPv4 source, still only from the port's MAC
    expect(verdict(udp({ mac: M5, src: "192.0.2.99", sport: 5000, dport: 5000 }), 5)).toBe("pass");
    expect(verdict(arp({ mac: M5, spa: "198.51.100.1", tpa: "10.1.0.11" }), 5)).toBe("pass");
    expect(verdict(udp({ mac: M1, src: "192.0.2.99", sport: 5000, dport: 5000 }), 5)).toBe("drop");
  });

  it("a pair without a MAC uses the port's", () => {
    expect(verdict(udp({ mac: M2, src: "10.1.0.100", sport: 5000, dport: 5000 }), 2)).toBe("pass");
    expect(verdict(arp({ mac: M2, spa: "10.1.0.100", tpa: "10.1.0.11" }), 2)).toBe("pass");
    expect(verdict(udp({ mac: PAIR_MAC, src: "10.1.0.100", sport: 5000, dport: 5000 }), 2)).toBe("drop");
  });
});

describe("port security off (planted: the network's portSecurityEnabled ignored)", () => {
  it("on the network: a port that has it on passes anything, DHCP server replies included", () => {
    expect(verdict(udp({ mac: M3, src: "10.2.0.99", sport: 5000, dport: 5000 }), 3)).toBe("pass");
    expect(verdict(udp({ mac: "fa:16:3e:99:99:99", src: "10.9.9.9", sport: 67, dport: 68 }), 3)).toBe("pass");
    expect(verdict(arp({ mac: M3, sha: M1, spa: "10.1.0.11", tpa: "10.2.0.1" }), 3)).toBe("pass");
    expect(lookup(flows(), udp({ mac: M3, src: "10.2.0.13", sport: 1, dport: 1 }), 3).flow).toBe(
      "table=5, priority=50,in_port=3 actions=goto_table:10",
    );
  });

  it("the network turned on: the same port is checked again", () => {
    const on = portsecFlows(world(true));
    expect(lookup(on, udp({ mac: M3, src: "10.2.0.99", sport: 5000, dport: 5000 }), 3).verdict).toBe("drop");
    expect(lookup(on, udp({ mac: M3, src: "10.2.0.13", sport: 67, dport: 68 }), 3).verdict).toBe("drop");
    expect(lookup(on, udp({ mac: M3, src: "10.2.0.13", sport: 5000, dport: 5000 }), 3).verdict).toBe("pass");
  });

  it("on the port: anything passes", () => {
    expect(verdict(udp({ mac: "fa:16:3e:99:99:99", src: "10.9.9.9", sport: 67, dport: 68 }), 4)).toBe("pass");
    expect(flows().filter((f) => f.match.some((m) => m.field === "in_port" && m.value === 4))).toHaveLength(
      1,
    );
  });
});

describe("IPv6 neighbour discovery", () => {
  it("NS and NA of the port's own addresses pass; DAD's NS from :: passes without a link-layer option", () => {
    expect(verdict(ns({ mac: M1, src: LL1, target: "fd00:1::12" }), 1)).toBe("pass");
    expect(verdict(ns({ mac: M1, src: "fd00:1::11", target: "fd00:1::12", ll: null }), 1)).toBe("pass");
    expect(verdict(ns({ mac: M1, src: "::", target: "fd00:1::11", ll: null }), 1)).toBe("pass");
    expect(verdict(na({ mac: M1, src: "fd00:1::11", target: "fd00:1::11" }), 1)).toBe("pass");
    expect(verdict(na({ mac: M1, src: LL1, target: LL1 }), 1)).toBe("pass");
    expect(verdict(na({ mac: M1, src: LL1, target: "fd00:1::11", ll: null }), 1)).toBe("pass");
    expect(verdict(na({ mac: PAIR_MAC, src: "fd00:1::200", target: "fd00:1::200" }), 2)).toBe("pass");
  });

  it("an NA for another address drops (cache poisoning), from any source the port may use", () => {
    for (const src of [LL1, "fd00:1::11"]) {
      expect(verdict(na({ mac: M1, src, target: "fd00:1::12" }), 1)).toBe("drop");
      expect(verdict(na({ mac: M1, src, target: "fd00:1::200" }), 1)).toBe("drop");
    }
    expect(verdict(na({ mac: M2, src: LL2, target: "fd00:1::200" }), 2)).toBe("drop");
  });

  it("a link-layer option naming another MAC drops; so do NS/NA from a source the port may not use", () => {
    expect(verdict(na({ mac: M1, src: "fd00:1::11", target: "fd00:1::11", ll: M2 }), 1)).toBe("drop");
    expect(verdict(ns({ mac: M1, src: LL1, target: "fd00:1::12", ll: M2 }), 1)).toBe("drop");
    expect(verdict(ns({ mac: M1, src: "::", target: "fd00:1::11" }), 1)).toBe("drop");
    expect(verdict(ns({ mac: M1, src: "fd00:1::99", target: "fd00:1::12" }), 1)).toBe("drop");
    expect(verdict(na({ mac: M1, src: "fd00:1::99", target: "fd00:1::11" }), 1)).toBe("drop");
    expect(verdict(ns({ mac: M2, src: "fd00:1::11", target: "fd00:1::12" }), 1)).toBe("drop");
  });
});
