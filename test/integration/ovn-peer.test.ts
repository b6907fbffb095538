/**
 * The OVN peer of the control-plane benchmark (bench/control-plane-ovn.ts)
 * against real OVN daemons: bulk(20) must grow br-int's flows and put every
 * port's MAC into them, churn(20, 3) must show each added port's flows after
 * `--wait=hv` and none of them after the delete, with the flow count back
 * where it was, ovn-controller's RSS must be readable, and stop() must leave
 * no process and no directory of the sandbox behind.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BulkResult,
  bulk,
  churn,
  OvnSandbox,
  ovnVersion,
  portAddress,
  processesUsing,
} from "../../bench/control-plane-ovn.js";
import { UsageError } from "../../src/util/errors.js";

describe("portAddress", () => {
  it("maps indices onto ls0's /16, skipping .0.0 and the gateway", () => {
    expect(portAddress(0)).toEqual({ name: "lsp0", mac: "fa:16:3e:00:00:00", ip: "10.1.0.2" });
    expect(portAddress(254)).toEqual({ name: "lsp254", mac: "fa:16:3e:00:00:fe", ip: "10.1.1.0" });
    expect(portAddress(65532)).toEqual({ name: "lsp65532", mac: "fa:16:3e:00:ff:fc", ip: "10.1.255.254" });
    expect(() => portAddress(65533)).toThrow(UsageError);
    expect(() => portAddress(-1)).toThrow(UsageError);
  });
});

describe("OVN sandbox: bulk and churn", () => {
  let sandbox: OvnSandbox | undefined;
  const ovn = () => {
    if (!sandbox) throw new Error("OVN sandbox did not start (see beforeAll error)");
    return sandbox;
  };
  let bulkResult: BulkResult | undefined;

  beforeAll(async () => {
    sandbox = await OvnSandbox.start({ waitTimeoutS: 120 });
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  it("reports OVN's version", async () => {
    expect(await ovnVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("bulk(20): flows grow with the ports and carry every port's MAC; RSS is read", async () => {
    const b = await bulk(ovn(), 20);
    bulkResult = b;
    expect(b.ports).toBe(20);
    expect(b.seconds).toBeGreaterThan(0);
    expect(b.writeSeconds).toBeLessThanOrEqual(b.waitHvSeconds);
    expect(b.waitHvSeconds).toBeLessThanOrEqual(b.seconds);
    expect(b.nbCfgStalls).toBe(0);
    expect(b.nbctlInvocations).toBe(1);
    expect(b.flows).toBeGreaterThan(b.flowsBefore + 20);
    expect(b.rssBeforeKiB).toBeGreaterThan(0);
    expect(b.rssAfterKiB).toBeGreaterThan(0);
    const flows = (await ovn().dumpFlows()).join("\n");
    for (let i = 0; i < 20; i++) expect(flows).toContain(portAddress(i).mac);
    expect(await ovn().flowCount()).toBe(b.flows);
  }, 120_000);

  it("churn(20, 3): an added port's flows appear, a removed port's flows go", async () => {
    const c = await churn(ovn(), 20, 3, { verifyFlows: true });
    expect(c.addSeconds).toHaveLength(3);
    expect(c.removeSeconds).toHaveLength(3);
    for (const s of [...c.addSeconds, ...c.removeSeconds]) expect(s).toBeGreaterThan(0);
    expect(c.add.p50).toBeLessThanOrEqual(c.add.p99);
    expect(c.addsWithoutFlows).toBe(0);
    expect(c.removesLeavingFlows).toBe(0);
    expect(c.remove.p99).toBe(Math.max(...c.removeSeconds));
    expect(c.churned.map((p) => p.name)).toEqual(["lsp20", "lsp21", "lsp22"]);
    const flows = (await ovn().dumpFlows()).join("\n");
    for (const p of c.churned) expect(flows).not.toContain(p.mac);
    for (let i = 0; i < 20; i++) expect(flows).toContain(portAddress(i).mac);
    expect(c.flows).toBe(bulkResult?.flows);
    expect(await ovn().switchPorts()).toHaveLength(20);
  }, 120_000);

  it("stop() kills every daemon of the sandbox and removes its run dirs", async () => {
    const dirs = [ovn().dir, ovn().ovs.dir];
    const before = dirs.flatMap(processesUsing);
    // NB and SB ovsdb-server, ovn-northd, ovn-controller, the chassis' ovsdb-server and ovs-vswitchd
    expect(before.length).toBeGreaterThanOrEqual(6);
    await ovn().stop();
    expect(dirs.flatMap(processesUsing)).toEqual([]);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
  }, 60_000);
});
