// The agent with every channel secured at once: the NB in etcd behind a client certificate and a password,
// OVSDB and OpenFlow over ssl: with OVS's own PKI, NB changes over CURVE from a publisher that admits only listed
// agents, and /metrics over https with basic auth. A port created through the secured store must reach OVS as
// flows (so every channel carried real traffic), and /metrics must refuse a request without the password.
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { readAuthorizedKeys, readKeyPair, writeKeyPair } from "../../src/nb/pubsub/curve.js";
import { NbPublisher } from "../../src/nb/pubsub/publisher.js";
import { openStore } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { EtcdCluster } from "../harness/etcd.js";
import { Cleanup, freeTcpPort, makeRunDir, OvsSandbox, waitFor } from "../harness/index.js";
import { type Ca, issueCert, makeCa } from "../harness/pki.js";

const cleanup = new Cleanup();
let dir: string;
let ca: Ca;
let sb: OvsSandbox;
let store: NbStore;
let pub: NbPublisher;
let agent: Agent;

function ovsPki(...args: string[]): void {
  const r = spawnSync("ovs-pki", [...args, `--dir=${dir}/pki`, `--log=${join(dir, "ovs-pki.log")}`], {
    cwd: dir,
    encoding: "utf8",
  });
  if (r.status !== 0)
    throw new Error(`ovs-pki ${args.join(" ")} failed (is openvswitch-pki installed?): ${r.stderr}`);
}

function get(path: string, auth?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = auth
      ? { authorization: `Basic ${Buffer.from(auth).toString("base64")}` }
      : {};
    const req = request(
      { hostname: "127.0.0.1", port: agent.metricsPort, path, ca: readFileSync(ca.cert), headers },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = makeRunDir("security-agent");
  cleanup.add("run dir", () => rmSync(dir, { recursive: true, force: true }));
  ovsPki("init");
  ovsPki("req+sign", "sc", "switch");
  ovsPki("req+sign", "ctl", "controller");
  ca = makeCa(dir, "ca");
  const server = issueCert(ca, "etcd", { ips: ["127.0.0.1"], server: true });
  const client = issueCert(ca, "client", { client: true });
  const etcd = await EtcdCluster.start({
    label: "security-agent-etcd",
    tls: { ca: ca.cert, cert: server.cert, key: server.key, clientCertAuth: true, client },
    auth: { rootPassword: "root-pw", users: [{ name: "fd", password: "fd-pw", prefix: "/flowdrake/" }] },
  });
  cleanup.add("etcd", () => etcd.stop());
  writeFileSync(join(dir, "nb.password"), "fd-pw\n", { mode: 0o600 });
  const q = new URLSearchParams({
    ca: ca.cert,
    cert: client.cert,
    key: client.key,
    user: "fd",
    "password-file": join(dir, "nb.password"),
  });
  const nbUrl = `${etcd.url}?${q}`;

  sb = await OvsSandbox.start({
    label: "security-agent",
    datapath: "dummy",
    hostNetwork: true,
    ssl: {
      privateKey: join(dir, "sc-privkey.pem"),
      certificate: join(dir, "sc-cert.pem"),
      caCert: join(dir, "pki/controllerca/cacert.pem"),
    },
  });
  cleanup.add("ovs", () => sb.stop());
  const ofPort = await freeTcpPort();
  await sb.vsctl("set-controller", "br-int", `pssl:${ofPort}:127.0.0.1`);

  const publisherKeys = writeKeyPair(join(dir, "publisher"));
  const agentKeys = writeKeyPair(join(dir, "host1"));
  store = await openStore(nbUrl);
  cleanup.add("store", () => store.close());
  const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
  pub = await NbPublisher.start({
    store,
    bind,
    heartbeatMs: 100,
    curve: { ...readKeyPair(publisherKeys.key), authorizedKeys: readAuthorizedKeys(agentKeys.pub) },
  });
  cleanup.add("publisher", () => pub.close());

  writeFileSync(join(dir, "metrics.auth"), "prom:scrape-pw\n", { mode: 0o600 });
  const metricsCert = issueCert(ca, "metrics", { ips: ["127.0.0.1"], server: true });
  agent = await Agent.start(
    parseAgentConfig({
      chassis: "host1",
      tunnelIp: "192.0.2.1",
      ovsdb: sb.dbSslRemote,
      openflow: `ssl:127.0.0.1:${ofPort}`,
      ssl: {
        privateKey: join(dir, "ctl-privkey.pem"),
        certificate: join(dir, "ctl-cert.pem"),
        caCert: join(dir, "pki/switchca/cacert.pem"),
      },
      nb: nbUrl,
      pubsub: bind,
      pubsubServerKey: publisherKeys.pub,
      pubsubKey: agentKeys.key,
      metrics: "127.0.0.1:0",
      metricsTls: { certificate: metricsCert.cert, privateKey: metricsCert.key },
      metricsAuthFile: join(dir, "metrics.auth"),
      logLevel: "silent",
    }),
  );
  cleanup.add("agent", () => agent.stop());
}, 120_000);

afterAll(() => cleanup.run());

describe("an agent with every channel secured", () => {
  it("follows the NB over CURVE and installs its flows over OpenFlow ssl", async () => {
    await waitFor(() => agent.nbCache.publisherId === pub.id, 10_000, "the agent hears the CURVE publisher");
    const api = new NbApi(store);
    await api.create("tenant", { id: "t1" });
    await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 131 });
    await api.create("subnet", { id: "sub1", tenantId: "t1", networkId: "net1", cidr: "10.131.0.0/24" });
    await api.create("lport", {
      id: "p1",
      tenantId: "t1",
      networkId: "net1",
      macAddress: "fa:16:3e:13:10:01",
      fixedIps: [{ subnetId: "sub1", ipAddress: "10.131.0.11" }],
    });
    await sb.vsctl(
      "add-port",
      "br-int",
      "vif-p1",
      "--",
      "set",
      "interface",
      "vif-p1",
      "type=dummy",
      "external_ids:iface-id=p1",
    );
    await waitFor(
      async () => (await sb.dumpFlows("br-int")).some((f) => f.includes("fa:16:3e:13:10:01")),
      20_000,
      "p1's flows on br-int",
    );
    expect(pub.handshakeFailures).toBe(0);
  }, 60_000);

  it("serves /metrics over https only with the password", async () => {
    const ok = await get("/metrics", "prom:scrape-pw");
    expect(ok.status).toBe(200);
    expect(ok.body).toContain("flowdrake_");
    expect((await get("/metrics")).status).toBe(401);
    expect((await get("/metrics", "prom:wrong")).status).toBe(401);
  });
});
