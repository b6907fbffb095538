import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyOffloadSettings, readOffloadSettings } from "../../src/offload/ovs-settings.js";
import { OvsdbClient } from "../../src/ovsdb/client.js";
import { useOvsSandbox } from "../harness/index.js";
import { runCaps } from "../../src/cli/caps.js";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import { makeRunDir } from "../harness/index.js";

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

describe("the agent applies the offload settings from its config", () => {
  const sb = useOvsSandbox({ label: "offagent", datapath: "dummy" });

  it("writes them, says ovs-vswitchd must be restarted, and is quiet the second time", async () => {
    const dir = makeRunDir("offagent-nb");
    const store = await openEmbeddedStore(join(dir, "nb"));
    const config = parseAgentConfig({
      chassis: "off1",
      tunnelIp: "192.0.2.9",
      ovsdb: sb().dbRemote,
      datapathType: "netdev",
      metrics: "",
      // errors only: quiet when all is well, and says why when it is not
      logLevel: "error",
      offload: { hwOffload: true, tcPolicy: "skip_hw", maxIdleMs: 3000 },
    });
    try {
      const a1 = await Agent.start(config, { store });
      expect(a1.offloadResult?.changed).toEqual(["hw-offload=true", "tc-policy=skip_hw", "max-idle=3000"]);
      expect(a1.offloadResult?.restartNeeded).toBe(true);
      expect(a1.offloadResult?.message).toMatch(/restart ovs-vswitchd/);
      await a1.stop();
      const live = (await sb().vsctl("get", "Open_vSwitch", ".", "other_config")).stdout;
      expect(live).toMatch(/hw-offload="?true/);
      expect(live).toMatch(/tc-policy="?skip_hw/);
      const a2 = await Agent.start(config, { store });
      expect(a2.offloadResult).toMatchObject({ changed: [], restartNeeded: false });
      await a2.stop();
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
