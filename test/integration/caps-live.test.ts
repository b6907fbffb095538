import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCaps } from "../../src/cli/caps.js";
import { probeNetlink } from "../../src/offload/caps/netlink-probe.js";

describe("flowdrake caps on this host", () => {
  const dir = mkdtempSync(join(tmpdir(), "fd-caps-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a capture of the live host replays to the same report", async () => {
    const live = JSON.parse(
      await runCaps({ json: true, capture: join(dir, "cap"), ovsdb: "unix:/nonexistent" }),
    );
    const replay = JSON.parse(await runCaps({ json: true, from: join(dir, "cap") }));
    expect(live.nics.length).toBeGreaterThan(0);
    expect(replay.nics).toEqual(live.nics);
    expect(replay.tcModules).toEqual(live.tcModules);
    expect(replay.kernelRelease).toEqual(live.kernelRelease);
  });

  it("reads ethtool features over generic netlink, and notes what does not answer", async () => {
    const a = await probeNetlink([
      { ifname: "lo" },
      { ifname: "fd-no-such-dev", devlinkHandle: "pci/0000:ff:1f.7" },
    ]);
    expect(a.ethtool.lo?.features?.loopback).toEqual({ active: true, fixed: true });
    expect(a.ethtool.lo?.features?.["hw-tc-offload"]).toEqual({ active: false, fixed: true });
    expect(a.ethtool["fd-no-such-dev"]).toBeUndefined();
    expect(a.notes.some((n) => n.startsWith("ethtool features fd-no-such-dev:"))).toBe(true);
    expect(a.notes.some((n) => n.startsWith("devlink eswitch pci/0000:ff:1f.7:"))).toBe(true);
  });

  it("refuses --from together with --capture", async () => {
    await expect(runCaps({ from: dir, capture: dir })).rejects.toThrow(/cannot be combined/);
  });
});
