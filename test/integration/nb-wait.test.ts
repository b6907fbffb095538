/**
 * `flowdrake nb … --wait` and `nb apply --wait` against a real etcd with two
 * agents, each on its own switch (OVS sandboxes with the dummy datapath): the
 * command returns only once both chassis have realised the write, so the
 * flows are there the moment it exits — checked right after, with no wait of
 * our own. When a chassis cannot realise it in time, the command exits 6 and
 * names the laggard with the revision it is at.
 */
import { execFile } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { AGENT_KIND } from "../../src/nb/sync/refs.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { OvsSandbox } from "../../src/sandbox/ovs.js";
import { useEtcd } from "../harness/etcd.js";
import { makeRunDir } from "../harness/index.js";
import { requireFreshDist } from "../harness/dist.js";

const etcd = useEtcd({ label: "nb-wait" });
const MAIN = join(import.meta.dirname, "../../dist/src/cli/main.js");
const sandboxes: OvsSandbox[] = [];
const agents = new Map<string, Agent>();
let store: NbStore;
let dir: string;

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, "nb", ...args, "--db", etcd().url],
      { env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "silent" }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

async function startAgent(host: string, sb: OvsSandbox, heartbeatSeconds = 5): Promise<Agent> {
  const a = await Agent.start(
    parseAgentConfig({
      chassis: host,
      tunnelIp: host === "host1" ? "192.0.2.1" : "192.0.2.2",
      ovsdb: sb.dbRemote,
      nb: etcd().url,
      metrics: "",
      logLevel: "silent",
      heartbeatSeconds,
    }),
  );
  agents.set(host, a);
  return a;
}

async function plug(sb: OvsSandbox, port: string): Promise<void> {
  await sb.vsctl(
    "add-port",
    "br-int",
    `vif-${port}`,
    "--",
    "set",
    "interface",
    `vif-${port}`,
    "type=dummy",
    `external_ids:iface-id=${port}`,
  );
}

const flowsOf = async (sb: OvsSandbox): Promise<string> =>
  (await sb.ofctl("dump-flows", sb.mgmtRemote())).stdout;

beforeAll(async () => {
  requireFreshDist();
  dir = makeRunDir("nb-wait");
  store = await openStore(etcd().url);
  for (const label of ["wait-h1", "wait-h2"]) {
    sandboxes.push(await OvsSandbox.start({ label, datapath: "dummy", hostNetwork: true }));
  }
  await startAgent("host1", sandboxes[0]!);
  await startAgent("host2", sandboxes[1]!);
  await plug(sandboxes[0]!, "p1");
  await plug(sandboxes[1]!, "p2");
}, 120_000);

afterAll(async () => {
  for (const a of agents.values()) await a.stop();
  for (const sb of sandboxes) await sb.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("nb --wait", () => {
  it("nb apply --wait returns once both chassis installed the flows of the new ports", async () => {
    const topo = join(dir, "topo.yaml");
    writeFileSync(
      topo,
      [
        "tenants: [{ id: t1 }]",
        "networks: [{ id: net1, tenantId: t1, networkType: geneve, segmentationId: 401 }]",
        "subnets: [{ id: sub1, tenantId: t1, networkId: net1, cidr: 10.41.0.0/24 }]",
        "ports:",
        "  - { id: p1, tenantId: t1, networkId: net1, macAddress: 'fa:16:3e:41:00:01', fixedIps: [{ subnetId: sub1, ipAddress: 10.41.0.11 }] }",
        "  - { id: p2, tenantId: t1, networkId: net1, macAddress: 'fa:16:3e:41:00:02', fixedIps: [{ subnetId: sub1, ipAddress: 10.41.0.12 }] }",
        "",
      ].join("\n"),
    );
    const r = await cli("apply", "-f", topo, "--wait");
    expect(r.code, r.stderr).toBe(0);
    // no waiting here: the command's own --wait covered it
    expect(await flowsOf(sandboxes[0]!)).toContain("dl_dst=fa:16:3e:41:00:01");
    expect(await flowsOf(sandboxes[1]!)).toContain("dl_dst=fa:16:3e:41:00:02");
    const realised = await store.list(AGENT_KIND.realised);
    expect(realised.map((o) => o.key).sort()).toEqual(["host1", "host2"]);
  });

  it("a port created with --wait has its flows on its own chassis and its peer's when the command returns", async () => {
    await plug(sandboxes[1]!, "p3");
    const r = await cli(
      "port",
      "create",
      "p3",
      "--tenant",
      "t1",
      "--network",
      "net1",
      "--mac",
      "fa:16:3e:41:00:03",
      "--ip",
      "sub1=10.41.0.13",
      "--wait",
      "20",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await flowsOf(sandboxes[1]!)).toMatch(/in_port=\d+ actions=set_field:0x191->reg6/);
    expect(await flowsOf(sandboxes[1]!)).toContain("dl_dst=fa:16:3e:41:00:03");
  });

  it("exits 6 naming the chassis that did not realise the write in time; the write stays", async () => {
    const a2 = agents.get("host2")!;
    await a2.stop();
    agents.delete("host2");
    // host2's liveness key outlives its agent for up to three heartbeats: it still counts, and lags
    const r = await cli("port", "update", "p1", "--set", '{"name":"renamed"}', "--wait", "1");
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/not every chassis realised NB revision \d+ within 1000 ms: host2 \(at \d+\)/);
    const show = await cli("port", "show", "p1", "--json");
    expect(JSON.parse(show.stdout).value.name).toBe("renamed");
  });
});
