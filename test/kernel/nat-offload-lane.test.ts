/**
 * NAT on the NIC in the kernel lane (real kernel, tc-flower, act_ct with
 * NAT, OVS's kernel datapath): one flowdrake agent in `offload.mode:
 * planner` with `offload.uplinks` naming br-ex's uplink (ext0, a veth into
 * an "outside" namespace), a floating IP for vm1 and an SNAT gateway on this
 * chassis for vm2 (test/kernel/scenarios/flowdrake-nat.sh runs it).
 *
 * What it proves, from the kernel's own counters:
 *   - br-int's patch port to br-ex is planned as ext0 (`caps`: bridge uplink);
 *   - after the first packets (ARP, the next hop learned), every ping packet
 *     of the three ways — the outside to vm1's floating IP, vm1 out through
 *     it, vm2 out through the gateway address — is ended by flowdrake's
 *     filters (on ext0 coming in, on the VM's device going out), none by
 *     OVS's datapath flows, and no packet-in is sent; the replies carry the
 *     decrement of the TTL made in tc, and the kernel's conntrack holds the
 *     translations;
 *   - br-ex's own address on the external network is reached from outside
 *     as before: what br-int does not claim on ext0 is left to OVS and br-ex.
 */
import { describe, expect, it } from "vitest";
import { expectOneNbHolder, type HostCounters, laneScenario, type Ping } from "./scenario-run.js";

type Host1 = { host1: HostCounters };

const { get, section } = laneScenario("flowdrake-nat", "flowdrake-nat.sh", 1500);
const delta = (a: string, b: string, dev: string): number =>
  get<Host1>(b).host1.tc[dev]!.ours.packets - get<Host1>(a).host1.tc[dev]!.ours.packets;
/** What to read when a count is off: flowdrake's filters on ext0 and the NAT flows' decisions. */
const why = (): string =>
  JSON.stringify(
    { tc_ext0: section().results.get("tc_ext0"), explain: section().results.get("explain") },
    null,
    1,
  );

describe("kernel lane: NAT on the NIC through br-ex's uplink (planner mode, offload.uplinks)", () => {
  it("keeps one NB holder up the whole scenario: every agent is its client", () => {
    expectOneNbHolder(get);
  });

  it("runs the whole scenario, and plans the patch port to br-ex as its uplink", () => {
    expect(section().exitCode, section().output).toBe(0);
    expect(
      get<{ name: string; role: string; netdev?: string }[]>("ports"),
      `the agent's status: ${JSON.stringify(get<string[]>("ports_err"))}`,
    ).toContainEqual(
      expect.objectContaining({ name: "patch-physnet1", role: "bridge uplink", netdev: "ext0" }),
    );
    expect(get("leases")).toEqual({ vm1: "10.1.0.11/24", vm2: "10.1.0.12/24" });
    expect(get("first_packets")).toEqual({ ext_fip: true, vm1_ext: true, vm2_ext: true });
  });

  it("carries the outside's pings to vm1's floating IP on flowdrake's filters: in on ext0, back on vm1", () => {
    expect(get<Ping>("ping_ext_fip")).toEqual({ sent: 20, received: 20, missing: [] });
    expect(delta("nat_a", "nat_b", "ext0"), why()).toBe(20);
    expect(delta("nat_a", "nat_b", "vm1"), why()).toBe(20);
    const [a, b] = [get<Host1>("nat_a").host1, get<Host1>("nat_b").host1];
    expect(b.dp.ovs - a.dp.ovs).toBe(0);
    expect(b.packetIns).toBe(a.packetIns);
    // the reply was routed on the NIC: TTL 64 − 1
    expect(get("ttl_ext_fip")).toBe(63);
  });

  it("carries vm1 out through its floating IP and vm2 out through the gateway address, replies in on ext0", () => {
    expect(get<Ping>("ping_vm1_ext")).toEqual({ sent: 20, received: 20, missing: [] });
    expect(delta("nat_b", "nat_c", "vm1"), why()).toBe(20);
    expect(delta("nat_b", "nat_c", "ext0"), why()).toBe(20);
    expect(get<Ping>("ping_vm2_ext")).toEqual({ sent: 20, received: 20, missing: [] });
    expect(delta("nat_c", "nat_d", "vm2"), why()).toBe(20);
    expect(delta("nat_c", "nat_d", "ext0"), why()).toBe(20);
    const [b, d] = [get<Host1>("nat_b").host1, get<Host1>("nat_d").host1];
    expect(d.dp.ovs - b.dp.ovs).toBe(0);
    expect(d.packetIns).toBe(b.packetIns);
  });

  it("translates in the kernel's conntrack, through act_ct with NAT on ext0's filters", () => {
    const ct = get<string[]>("conntrack").join("\n");
    expect(ct).toMatch(/172\.24\.4\.50/);
    expect(ct).toMatch(/172\.24\.4\.10/);
    const filters =
      get<{ chain: number; pref: number; dst_mac: string | null; actions: string[] }[]>("tc_ext0");
    expect(filters.some((f) => f.actions.some((a) => a.startsWith("ct")))).toBe(true);
    // in chain 0, ext0's packets are taken only for br-int's NAT MACs; every other one is handed
    // over (gact pass) — the chain's catch-all drop sits below a pass for every packet of ext0
    const chain0 = filters.filter((x) => x.chain === 0);
    const passAll = chain0.find(
      (f) => f.dst_mac === null && f.actions.join() === "gact pass" && f.pref === 65534,
    );
    expect(passAll, JSON.stringify(chain0)).toBeDefined();
    for (const f of chain0.filter((x) => !x.actions.includes("gact pass"))) {
      if (f.dst_mac === null)
        expect(f, JSON.stringify(chain0)).toMatchObject({ pref: 65535, actions: ["gact drop"] });
      else expect(["fa:16:3e:fe:00:50", "fa:16:3e:fe:00:10"], JSON.stringify(f)).toContain(f.dst_mac);
    }
  });

  it("leaves br-ex's own address to OVS and br-ex: reached from outside, no filter of flowdrake's ends a packet", () => {
    expect(get<Ping>("ping_ext_local")).toEqual({ sent: 10, received: 10, missing: [] });
    expect(delta("nat_d2", "nat_e", "ext0"), why()).toBe(0);
  });
});
