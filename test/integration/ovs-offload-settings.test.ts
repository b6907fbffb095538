import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyOffloadSettings, readOffloadSettings } from "../../src/offload/ovs-settings.js";
import { OvsdbClient } from "../../src/ovsdb/client.js";
import { useOvsSandbox } from "../harness/index.js";
import { runCaps } from "../../src/cli/caps.js";

describe("OVSDB hw-offload settings against a real ovsdb-server", () => {
  const sb = useOvsSandbox({ label: "offcfg", datapath: "dummy" });
  let client: OvsdbClient;
  beforeAll(async () => {
    client = await OvsdbClient.connect(sb().dbRemote);
  });
  afterAll(() => client?.close());

  const vsctlGet = async (key: string) =>
    (await sb().vsctl("--if-exists", "get", "Open_vSwitch", ".", `other_config:${key}`)).stdout
      .trim()
      .replace(/"/g, "");

  it("writes what differs, says when ovs-vswitchd must restart, and is idempotent", async () => {
    const first = await applyOffloadSettings(client, {
      hwOffload: true,
      tcPolicy: "skip_hw",
      maxIdleMs: 10000,
    });
    expect(first.changed).toEqual(["hw-offload=true", "tc-policy=skip_hw", "max-idle=10000"]);
    expect(first.restartNeeded).toBe(true);
    expect(first.message).toMatch(/restart ovs-vswitchd/);
    expect(await vsctlGet("hw-offload")).toBe("true");
    expect(await vsctlGet("tc-policy")).toBe("skip_hw");
    const again = await applyOffloadSettings(client, {
      hwOffload: true,
      tcPolicy: "skip_hw",
      maxIdleMs: 10000,
    });
    expect(again).toEqual({
      changed: [],
      restartNeeded: false,
      message: "OVS offload settings already as configured",
    });
    const live = await applyOffloadSettings(client, { maxIdleMs: 2000 });
    expect(live.restartNeeded).toBe(false);
    expect(await readOffloadSettings(client, "t")).toMatchObject({
      hwOffload: "true",
      tcPolicy: "skip_hw",
      maxIdle: "2000",
    });
  });

  it("rejects bad values and writes nothing", async () => {
    await expect(
      applyOffloadSettings(client, { hwOffload: false, tcPolicy: "skip_all" as never }),
    ).rejects.toThrow(/tc-policy must be none, skip_sw or skip_hw/);
    await expect(applyOffloadSettings(client, { nOffloadThreads: 0 })).rejects.toThrow(/positive integer/);
    expect(await vsctlGet("hw-offload")).toBe("true");
    expect(await vsctlGet("n-offload-threads")).toBe("");
  });

  it("flowdrake caps shows the live values", async () => {
    const report = JSON.parse(await runCaps({ json: true, ovsdb: sb().dbRemote }));
    expect(report.ovs).toMatchObject({ hwOffload: "true", tcPolicy: "skip_hw", source: sb().dbRemote });
  });
});
