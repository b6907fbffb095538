/**
 * One malformed value in etcd costs only itself (issue 13, defect 1).
 *
 * A value that is not even JSON is put under the NB prefix behind the API's
 * back (`etcdctl put /flowdrake/nb/lport/bad1 '{"id":"bad1",'`), and then the
 * model keeps changing. Before the fix, `store.list("lport")` threw on it, so
 * every later NB change stopped reaching the agent and a restarted agent
 * exited at start. Now: a subnet's DNS change reaches the next DHCP lease, a
 * new port gets its flows and its lease, a deleted port loses its flows, the
 * bad object is reported once (guard, metric), a restarted agent starts with
 * the value present, and fixing the value clears the report. Deleting a bad
 * key instead of fixing it clears the report too, with no other change to
 * carry it (before the fix the agent kept it until one came), and later
 * changes keep converging.
 */
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { formatFlow } from "../../src/openflow/text.js";
import { runDhcpClient } from "../../src/sandbox/dhcp-client.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { useEtcd } from "../harness/etcd.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";

const sb = useOvsSandbox({ label: "agent-bad" });
const etcd = useEtcd({ label: "agent-bad" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};

const config = () =>
  parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    nb: etcd().url,
    metrics: "127.0.0.1:0",
    logLevel: "silent",
  });

const etcdctl = (...a: string[]) =>
  run(["etcdctl", `--endpoints=${etcd().endpoints.join(",")}`, ...a], { env: { ETCDCTL_API: "3" } });

const flowsWith = (text: string) =>
  agent!.reconciler.installedFlows().filter((f) => formatFlow(f).includes(text)).length;

async function port(id: string, mac: string, ip: string): Promise<void> {
  await api.create("lport", {
    id,
    tenantId: "t1",
    networkId: "net1",
    macAddress: mac,
    fixedIps: [{ subnetId: "sub1", ipAddress: ip }],
  });
}

beforeAll(async () => {
  dir = makeRunDir("agent-bad");
  store = await openStore(etcd().url);
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 301 });
  await api.create("subnet", {
    id: "sub1",
    tenantId: "t1",
    networkId: "net1",
    cidr: "10.31.0.0/24",
    dnsNameservers: ["10.31.0.53"],
  });
  await port("vm1", "fa:16:3e:31:00:11", "10.31.0.11");
  await port("vm2", "fa:16:3e:31:00:12", "10.31.0.12");
  agent = await Agent.start(config());
  vms.vm1 = await sb().addVm("vm1", { ifaceId: "vm1", mac: "fa:16:3e:31:00:11" });
  vms.vm2 = await sb().addVm("vm2", { ifaceId: "vm2", mac: "fa:16:3e:31:00:12" });
  await waitFor(() => agent!.localPortCount() === 2, 20_000, "two ports bound");
  await agent.settle();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a malformed NB value in etcd", () => {
  it("is reported once by the agent, and the CLI-visible store still lists everything else", async () => {
    await etcdctl("put", "/flowdrake/nb/lport/bad1", '{"id":"bad1",');
    await waitFor(() => agent!.guard.refused.has("lport/bad1"), 10_000, "the agent sees bad1");
    expect(agent!.guard.refused.get("lport/bad1")).toMatch(/malformed/);
    const ports = await store.list("lport");
    expect(ports.find((p) => p.key === "bad1")?.malformed).toBeDefined();
    expect(
      ports
        .filter((p) => p.malformed === undefined)
        .map((p) => p.key)
        .sort(),
    ).toEqual(["vm1", "vm2"]);
    const metrics = await (await fetch(`http://127.0.0.1:${agent!.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/flowdrake_nb_refused_objects 1/);
  });

  it("does not stop later changes: a DNS change reaches the next lease", async () => {
    const v = await api.update("subnet", "sub1", { dnsNameservers: ["10.31.0.54"] });
    await waitFor(() => agent!.realised >= v.modRevision, 10_000, "the agent realises the DNS change");
    const lease = await runDhcpClient(vms.vm1!.netns, { apply: true, timeoutS: 10 });
    expect(lease).toMatchObject({ ip: "10.31.0.11", dns: "10.31.0.54" });
  });

  it("does not stop later changes: a new port gets flows and a lease; a deleted port loses its flows", async () => {
    await port("vm3", "fa:16:3e:31:00:13", "10.31.0.13");
    vms.vm3 = await sb().addVm("vm3", { ifaceId: "vm3", mac: "fa:16:3e:31:00:13" });
    await waitFor(() => flowsWith("fa:16:3e:31:00:13") > 0, 10_000, "vm3's flows");
    expect((await runDhcpClient(vms.vm3!.netns, { apply: true, timeoutS: 10 }))?.ip).toBe("10.31.0.13");
    await runDhcpClient(vms.vm2!.netns, { apply: true, timeoutS: 10 });
    await run(["ping", "-c", "1", "-W", "2", "10.31.0.12"], { netns: vms.vm3!.netns });
    expect(flowsWith("fa:16:3e:31:00:12")).toBeGreaterThan(0);
    await api.delete("lport", "vm2");
    await waitFor(() => flowsWith("fa:16:3e:31:00:12") === 0, 10_000, "vm2's flows gone");
    expect(
      (await run(["ping", "-c", "1", "-W", "1", "10.31.0.12"], { netns: vms.vm3!.netns, allowFailure: true }))
        .code,
    ).not.toBe(0);
  });

  it("a restarted agent starts with the value present, and reports it; its own malformed chassis record it rewrites", async () => {
    await agent!.stop();
    await etcdctl("put", "/flowdrake/nb/chassis/host1", "{not json");
    agent = await Agent.start(config());
    expect((await api.get("chassis", "host1")).value.tunnelIps).toEqual(["192.0.2.1"]);
    expect(agent.localPortCount()).toBe(2);
    expect(agent.guard.refused.get("lport/bad1")).toMatch(/malformed/);
    expect(agent.lastPass).toMatchObject({ added: 0, deleted: 0 });
  });

  it("fixing the value clears the report", async () => {
    await etcdctl(
      "put",
      "/flowdrake/nb/lport/bad1",
      JSON.stringify({
        id: "bad1",
        tenantId: "t1",
        networkId: "net1",
        macAddress: "fa:16:3e:31:00:99",
        fixedIps: [{ subnetId: "sub1", ipAddress: "10.31.0.99" }],
      }),
    );
    await waitFor(() => !agent!.guard.refused.has("lport/bad1"), 10_000, "bad1 admitted once fixed");
    const metrics = await (await fetch(`http://127.0.0.1:${agent!.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/flowdrake_nb_refused_objects 0/);
  });

  it("deleting a bad key clears the report by itself, and later changes keep converging", async () => {
    await etcdctl("put", "/flowdrake/nb/lport/bad2", '{"id":"bad2",');
    await waitFor(() => agent!.guard.refused.has("lport/bad2"), 10_000, "the agent sees bad2");
    expect(agent!.guard.refused.get("lport/bad2")).toMatch(/malformed/);
    const metrics = async () => (await fetch(`http://127.0.0.1:${agent!.metricsPort}/metrics`)).text();
    expect(await metrics()).toMatch(/flowdrake_nb_refused_objects 1/);
    // the delete is the only change: nothing else may be what clears the report
    const del = JSON.parse((await etcdctl("del", "/flowdrake/nb/lport/bad2", "-w", "json")).stdout) as {
      header: { revision: number | string };
      deleted?: number | string;
    };
    expect(Number(del.deleted)).toBe(1);
    await waitFor(
      () => !agent!.guard.refused.has("lport/bad2"),
      10_000,
      "bad2's report cleared by its delete",
    );
    expect(await metrics()).toMatch(/flowdrake_nb_refused_objects 0/);
    await waitFor(
      () => agent!.realised >= Number(del.header.revision),
      10_000,
      "the agent realises the delete",
    );
    const v = await api.update("subnet", "sub1", { dnsNameservers: ["10.31.0.55"] });
    await waitFor(() => agent!.realised >= v.modRevision, 10_000, "the agent realises the next change");
    const lease = await runDhcpClient(vms.vm1!.netns, { apply: true, timeoutS: 10 });
    expect(lease).toMatchObject({ ip: "10.31.0.11", dns: "10.31.0.55" });
    expect(agent!.guard.refused.size).toBe(0);
  });
});
