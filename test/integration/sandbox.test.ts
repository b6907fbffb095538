import { describe, expect, it } from "vitest";
import { run } from "../../src/util/exec.js";
import { useOvsSandbox } from "../harness/index.js";

describe("OVS sandbox (netdev datapath, VMs in namespaces)", () => {
  const sb = useOvsSandbox({ label: "sbtest" });

  it("pings between two VMs through a NORMAL flow, then not without it", async () => {
    const a = await sb().addVm("va", { ipCidr: "10.9.0.1/24" });
    const b = await sb().addVm("vb", { ipCidr: "10.9.0.2/24" });
    expect(a.ofport).toBeGreaterThan(0);
    expect(b.ofport).not.toBe(a.ofport);
    await sb().ofctl("add-flow", sb().mgmtRemote(), "actions=NORMAL");
    // -w: wait for both replies (without it ping stops 0.2 s after its last request once one came)
    const ok = await run(["ping", "-c", "2", "-i", "0.2", "-w", "5", "10.9.0.2"], { netns: a.netns });
    expect(ok.stdout).toContain("2 received");
    await sb().ofctl("del-flows", sb().mgmtRemote());
    const blocked = await run(["ping", "-c", "1", "-W", "1", "10.9.0.2"], {
      netns: a.netns,
      allowFailure: true,
    });
    expect(blocked.code).not.toBe(0);
  });
});
