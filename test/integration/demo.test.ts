/**
 * `npm run demo` end to end: the NB CLI writes the example topology, the agent
 * programs a private OVS, three VMs get DHCP leases from it, vm1 pings vm2,
 * vm3 on the other network pings vm1 through router r1 — and nothing is left
 * behind.
 */
import { describe, expect, it } from "vitest";
import { runDemo } from "../../src/cli/demo.js";
import { run } from "../../src/util/exec.js";
import { requireFreshDist } from "../harness/dist.js";

describe("flowdrake demo", () => {
  it("runs the whole system on one machine and leaves nothing behind", async () => {
    requireFreshDist(); // the demo runs `flowdrake nb apply` from dist/
    const lines: string[] = [];
    const r = await runDemo({ out: (s) => lines.push(s) });
    const text = lines.join("\n");
    expect(r.ping, text).toBe(true);
    expect(r.routed, text).toBe(true);
    expect(r.leases.vm1?.ip).toBe("10.10.0.11");
    expect(r.leases.vm3?.ip).toBe("10.20.0.13");
    expect(text).toMatch(/\+ network net-a/);
    expect(text).toMatch(/vm1: 10\.10\.0\.11\/\S+ router 10\.10\.0\.1 dns 10\.10\.0\.1 mtu 1442/);
    expect(text).toMatch(/ping vm1 → vm2 \(same network\): OK \(3 packets transmitted, 3 received/);
    expect(text).toMatch(/ping vm3 → vm1 \(other network, through router r1\): OK, TTL 63/);
    expect(text).toMatch(/first packets to the agent: 2 /);
    // and the agent handled exactly those: a re-injected first packet is not punted again
    expect(text).toMatch(/l3 packet-ins the agent handled: 2\n/);
    expect(text).toMatch(/packet-ins handled by this node's agent: dhcp [6-9]/);
    // The pipeline really carried the traffic: local delivery counted packets.
    expect(text).toMatch(/60 local_delivery\s+\d+ flows\s+[1-9]\d* packets/);
    expect(text).toMatch(/flows offloaded/);
    const { stdout } = await run(["ip", "netns", "list"]);
    expect(stdout).not.toMatch(new RegExp(`fd${process.pid}x`));
  });
});
