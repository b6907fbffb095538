/**
 * What OVS says while the agent is still starting is not lost. The agent
 * reads OVSDB's replica, then starts its NB cache (a list and a watch of the
 * store, seconds on a loaded host with etcd); a VM plugged in that window, or
 * OVS giving the agent's tunnel ports their ofports in it, must still reach
 * the model. Before the fix the agent listened to OVSDB only after the cache
 * had started, so such a change waited for the next unrelated OVSDB event —
 * in the agent-restart test a network's tunnel flows were missing until the
 * restarted agent added them.
 *
 * The window is made wide and certain here: the store's `watch`, which the
 * cache start calls, waits until the test has plugged the VM and OVS has
 * numbered every port.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";

const sb = useOvsSandbox({ label: "agent-race", bridges: [] });
let dir: string;
let store: NbStore;
let agent: Agent | undefined;

beforeAll(async () => {
  dir = makeRunDir("agent-race");
  store = await openEmbeddedStore(join(dir, "nb"));
  const api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 301 });
  await api.create("subnet", { id: "sub1", tenantId: "t1", networkId: "net1", cidr: "10.30.0.0/24" });
  await api.create("lport", {
    id: "vm1",
    tenantId: "t1",
    networkId: "net1",
    macAddress: "fa:16:3e:30:00:11",
    fixedIps: [{ subnetId: "sub1", ipAddress: "10.30.0.11" }],
  });
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function ofportOf(name: string): Promise<number> {
  const r = await sb().vsctl("--if-exists", "get", "interface", name, "ofport");
  return Number(r.stdout.trim() || NaN);
}

describe("agent start", () => {
  it("keeps the OVSDB changes that arrive while its NB cache starts", { timeout: 60_000 }, async () => {
    let inWatch!: () => void;
    const watchCalled = new Promise<void>((r) => (inWatch = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slowStore = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "watch" || typeof v !== "function") return v;
        return async (...args: unknown[]) => {
          inWatch();
          await gate;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const config = parseAgentConfig({
      chassis: "host1",
      tunnelIp: "192.0.2.1",
      ovsdb: sb().dbRemote,
      datapathType: "netdev",
      metrics: "127.0.0.1:0",
      logLevel: "silent",
    });
    const starting = Agent.start(config, { store: slowStore });
    starting.catch(() => undefined);
    await watchCalled;
    // the agent has read the replica and waits in its NB cache start: change OVSDB now
    const vm1 = await sb().addVm("vm1", { ifaceId: "vm1", mac: "fa:16:3e:30:00:11" });
    const geneve = await waitFor(
      async () => {
        const p = await ofportOf("fd-geneve");
        return p > 0 ? p : undefined;
      },
      10_000,
      "OVS numbering the geneve tunnel port",
    );
    expect(vm1.ofport).toBeGreaterThan(0);
    release();
    agent = await starting;

    // vsctl returning says ovsdb-server has the change, not that the agent's monitor has
    // delivered it: the update may land just after the start. Before the fix it was lost until
    // an unrelated OVSDB event (none comes here); now it is applied whenever it lands.
    const started = agent;
    await waitFor(() => started.localPortCount() === 1 || undefined, 10_000, "vm1 bound by the agent");
    await waitFor(
      () => started.view.tunnelPort("geneve") === geneve || undefined,
      10_000,
      "the geneve ofport",
    );
    await started.settle();
    expect(agent.localPortCount()).toBe(1);
    expect(agent.view.tunnelPort("geneve")).toBe(geneve);
    const flows = (await sb().ofctl("dump-flows", sb().mgmtRemote())).stdout;
    // the network's tunnel classification (tunnel app) and vm1's own port classification
    expect(flows).toMatch(new RegExp(`tun_id=0x12d,in_port=${geneve} `));
    expect(flows).toMatch(new RegExp(`in_port=${vm1.ofport}[ ,]`));
    // and the NB cache follows vm1 as a local port (its claim is written)
    await waitFor(
      async () => (await new NbApi(store).get("lport", "vm1")).value.chassis === "host1",
      10_000,
      "vm1 claimed by host1",
    );
  });
});
