/**
 * A security group's established connections on the NIC, in the kernel lane
 * (real kernel, tc-flower, act_ct, OVS's kernel datapath): one flowdrake
 * agent in `offload.mode: planner`, three ports in one group that lets in
 * ICMP from vm1 only (test/kernel/scenarios/flowdrake-secgroup.sh runs it).
 *
 * Both ports' conntrack lookups go to tc: vm1's egress lookup, and vm2's
 * ingress lookup although the egress table before it matches conntrack state
 * — the chains after it clear the state (act_ct `clear`) before handing a
 * packet to OVS, so OVS sees it untracked, as it came. What it proves, from
 * the kernel's own counters:
 *   - of a new connection of 20 pings, OVS commits the first request (the
 *     commit sets ct_mark: software); every later request and every reply is
 *     ended by flowdrake's filters, through act_ct lookups in both zones;
 *   - the kernel's conntrack holds the connection;
 *   - the group still denies: vm3's pings to vm2 get no answer;
 *   - removing the rule stops the connection under a ping: its next request
 *     takes a trap after vm2's lookup on the NIC that clears the lookup's
 *     state (act_ct clear, then pass; its counter moves), OVS marks the
 *     connection blocked (ct_mark 1 in vm2's zone), and no later request is
 *     answered.
 */
import { describe, expect, it } from "vitest";
import { expectOneNbHolder, type HostCounters, laneScenario, type Ping } from "./scenario-run.js";

type Host1 = { host1: HostCounters };
type Filter = { chain: number; pref: number; actions: string[] };

const { get, section } = laneScenario("flowdrake-secgroup", "flowdrake-secgroup.sh", 1500);
const delta = (a: string, b: string, dev: string): number =>
  get<Host1>(b).host1.tc[dev]!.ours.packets - get<Host1>(a).host1.tc[dev]!.ours.packets;
const why = (): string =>
  JSON.stringify(
    { tc_vm1: section().results.get("tc_vm1"), explain: section().results.get("explain") },
    null,
    1,
  );

describe("kernel lane: a security group's established connections on the NIC (planner mode)", () => {
  it("keeps one NB holder up the whole scenario: every agent is its client", () => {
    expectOneNbHolder(get);
  });

  it("runs the whole scenario, the ports' ingress lookups on the NIC", () => {
    expect(section().exitCode, section().output).toBe(0);
    expect(get<Ping>("first_ping")).toEqual({ sent: 1, received: 1, missing: [] });
  });

  it("ends every packet of an established ICMP connection in tc, both ways, through act_ct", () => {
    expect(get<Ping>("ping_vm1_vm2")).toEqual({ sent: 20, received: 20, missing: [] });
    // the first request is committed by OVS; the 19 after it are vm1's filters' to end
    expect(delta("sg_a", "sg_b", "vm1"), why()).toBe(19);
    // every reply: the connection is committed in vm2's zone by then
    expect(delta("sg_a", "sg_b", "vm2"), why()).toBe(20);
    const [a, b] = [get<Host1>("sg_a").host1, get<Host1>("sg_b").host1];
    expect(b.packetIns).toBe(a.packetIns);
    // only the first request reached OVS: at most its three datapath passes (table 0, after vm1's
    // ct, after vm2's ct) missed, each once its megaflow from the first ping had aged out (10 s idle)
    expect(b.lookups.missed - a.lookups.missed).toBeLessThanOrEqual(3);
    const filters = get<Filter[]>("tc_vm1");
    const ct = filters.flatMap((f) => f.actions).filter((x) => x.startsWith("ct "));
    expect(
      ct.some((x) => !/clear/.test(x)),
      why(),
    ).toBe(true);
    // the traps after the ingress lookup clear its state before OVS sees the packet
    expect(
      ct.some((x) => /clear/.test(x)),
      why(),
    ).toBe(true);
  });

  it("leaves the connection in the kernel's conntrack, in vm1's zone and vm2's", () => {
    // /proc/net/nf_conntrack: "ipv4 2 icmp 1 28 src=10.1.0.11 dst=10.1.0.12 type=8 … zone=1 use=2"
    const ct = get<string[]>("conntrack").filter((l) =>
      /\bicmp\b.*src=10\.1\.0\.11 dst=10\.1\.0\.12 /.test(l),
    );
    const zones = [...new Set(ct.map((l) => l.match(/zone=(\d+)/)?.[1]))].sort();
    expect(zones, get<string[]>("conntrack").join("\n")).toEqual(["1", "2"]);
  });

  it("still denies what the group does not allow: vm3's pings to vm2 go unanswered", () => {
    expect(get<Ping>("ping_vm3_vm2")).toEqual({ sent: 5, received: 0, missing: [1, 2, 3, 4, 5] });
    expect(delta("sg_b", "sg_c", "vm2")).toBe(0);
  });

  it("stops the connection when its rule goes: OVS marks it blocked, the NIC drops the rest; the blocking rules sit behind clearing traps", () => {
    const ping = get<Ping & { answeredLate: number; removalSeconds: number }>("ping_revoked");
    // answered until the rule went, not after: nothing more than 1 s after the agent's flows were
    // gone, and of the 5 s of pings after that (about twenty), most unanswered
    expect(ping.received, JSON.stringify(ping)).toBeGreaterThan(0);
    expect(ping.answeredLate, JSON.stringify(ping)).toBe(0);
    expect(ping.sent - ping.received, JSON.stringify(ping)).toBeGreaterThanOrEqual(10);
    expect(get<Ping>("ping_after")).toEqual({ sent: 5, received: 0, missing: [1, 2, 3, 4, 5] });
    const blocked = get<string[]>("conntrack_revoked").filter((l) =>
      /\bicmp\b.*src=10\.1\.0\.11 dst=10\.1\.0\.12 .*mark=1 zone=2\b/.test(l),
    );
    expect(blocked.length, get<string[]>("conntrack_revoked").join("\n")).toBeGreaterThan(0);
    // the rules that mark an established connection no rule allows (est-rpl, ct_mark 0: software)
    // are traps on vm1 that clear the NIC's lookup first, as the real kernel took them
    type Action = { kind: string; action?: string; control_action?: { type: string } };
    type Dumped = { chain: number; options: { keys: Record<string, unknown>; actions: Action[] } };
    const traps = get<Dumped[]>("clear_actions");
    const marking = traps.filter(
      (f) => f.options.keys.ct_state === "+trk+est-rpl" && f.options.keys.ct_mark === 0,
    );
    expect(marking.length, JSON.stringify(traps)).toBeGreaterThan(0);
    for (const f of traps)
      expect(f.options.actions.map((a) => `${a.kind} ${a.action ?? a.control_action?.type}`)).toEqual([
        "ct clear",
        "gact pass",
      ]);
  });
});
