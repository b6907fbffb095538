import { describe, expect, it } from "vitest";
import { runDemo } from "../../src/cli/demo.js";
import { run } from "../../src/util/exec.js";

describe("flowdrake demo", () => {
  it("pings between two VMs through a flowdrake-programmed OVS and leaves nothing behind", async () => {
    const lines: string[] = [];
    const { ping } = await runDemo({ out: (s) => lines.push(s) });
    const text = lines.join("\n");
    expect(ping, text).toBe(true);
    expect(text).toMatch(/installed 7 flows over OpenFlow 1.3 in one bundle/);
    expect(text).toMatch(/ping vm1 → vm2: OK \(3 packets transmitted, 3 received/);
    // The pipeline really carried the ping: table 10 counted packets.
    expect(text).toMatch(/table 10: 4 flows, [1-9]\d* packets/);
    expect(text).toMatch(/offloaded in chain 0\s+priority=100,in_port=1/);
    const { stdout } = await run(["ip", "netns", "list"]);
    expect(stdout).not.toMatch(new RegExp(`fd${process.pid}x`));
  });
});
