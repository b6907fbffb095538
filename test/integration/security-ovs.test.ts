/**
 * OVSDB and OpenFlow over SSL against a real ovsdb-server and ovs-vswitchd,
 * with certificates from OVS's own `ovs-pki` (openvswitch-common): a
 * switchca that signs the switch's certificate and a controllerca that signs
 * flowdrake's, as in OVS's documentation.
 *   - OVSDB: ovsdb-server started with --private-key/--certificate/--ca-cert
 *     and --remote=pssl:PORT:127.0.0.1 — a client transacts and a session
 *     monitors (a bridge added later shows up in the replica); the same over
 *     a `ovs-vsctl set-manager pssl:…` remote;
 *   - OpenFlow: `ovs-vsctl set-controller br-int pssl:…` — a client
 *     handshakes, installs a flow ovs-ofctl then sees on br-int, and OfClient
 *     keeps a session;
 *   - refusals, each at once and saying which side refused what: our
 *     certificate signed by another PKI's controllerca (the switch refuses
 *     it), a caCert that did not sign the switch's certificate (we refuse
 *     the switch), and an ssl: remote without SSL files (UsageError).
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { flowMod, installFlows } from "../../src/controller/flow-installer.js";
import { OfClient, connectOpenFlow } from "../../src/openflow/client.js";
import { OvsdbClient } from "../../src/ovsdb/client.js";
import { OvsdbSession } from "../../src/ovsdb/session.js";
import { ConnectionError, UsageError } from "../../src/util/errors.js";
import type { SslFiles } from "../../src/util/ssl.js";
import { Cleanup, freeTcpPort, makeRunDir, OvsSandbox, waitFor } from "../harness/index.js";

const cleanup = new Cleanup();
let dir: string;
let sb: OvsSandbox;
/** flowdrake's side: controllerca-signed certificate, trusts switchca. */
let ours: SslFiles;
/** A certificate from another PKI's controllerca. */
let intruder: SslFiles;
/** Our certificate, but trusting the wrong CA for the switch. */
let wrongCa: SslFiles;
let ofPort: number;

function ovsPki(cwd: string, ...args: string[]): void {
  const r = spawnSync("ovs-pki", [...args, `--log=${join(cwd, "ovs-pki.log")}`], { cwd, encoding: "utf8" });
  if (r.error) {
    throw new Error(
      `ovs-pki not found (Debian's openvswitch-common: bash scripts/setup): ${r.error.message}`,
    );
  }
  if (r.status !== 0) throw new Error(`ovs-pki ${args.join(" ")} failed: ${r.stderr}`);
}

beforeAll(async () => {
  dir = makeRunDir("sec-ovs");
  cleanup.add("pki dir", () => rmSync(dir, { recursive: true, force: true }));
  const pki = join(dir, "pki");
  const other = join(dir, "other-pki");
  ovsPki(dir, "init", `--dir=${pki}`);
  ovsPki(dir, "req+sign", "sc", "switch", `--dir=${pki}`);
  ovsPki(dir, "req+sign", "ctl", "controller", `--dir=${pki}`);
  ovsPki(dir, "init", `--dir=${other}`);
  ovsPki(dir, "req+sign", "intruder", "controller", `--dir=${other}`);
  const switchFiles: SslFiles = {
    privateKey: join(dir, "sc-privkey.pem"),
    certificate: join(dir, "sc-cert.pem"),
    caCert: join(pki, "controllerca", "cacert.pem"),
  };
  ours = {
    privateKey: join(dir, "ctl-privkey.pem"),
    certificate: join(dir, "ctl-cert.pem"),
    caCert: join(pki, "switchca", "cacert.pem"),
  };
  intruder = {
    privateKey: join(dir, "intruder-privkey.pem"),
    certificate: join(dir, "intruder-cert.pem"),
    caCert: join(pki, "switchca", "cacert.pem"),
  };
  wrongCa = { ...ours, caCert: join(other, "switchca", "cacert.pem") };
  sb = await OvsSandbox.start({ label: "sec-ovs", datapath: "dummy", hostNetwork: true, ssl: switchFiles });
  cleanup.add("sandbox", () => sb.stop());
  ofPort = await freeTcpPort();
  await sb.vsctl("set-controller", "br-int", `pssl:${ofPort}:127.0.0.1`);
}, 120_000);

afterAll(() => cleanup.run());

describe("OVSDB over ssl:", () => {
  it("transacts with ovsdb-server's pssl listener", async () => {
    const client = await OvsdbClient.connect(sb.dbSslRemote, { ssl: ours });
    try {
      expect(await client.listDbs()).toContain("Open_vSwitch");
      const [res] = await client.transact("Open_vSwitch", [
        { op: "select", table: "Bridge", where: [], columns: ["name"] },
      ]);
      const names = (res as { rows: { name: string }[] }).rows.map((r) => r.name);
      expect(names).toContain("br-int");
    } finally {
      client.close();
    }
  });

  it("a session monitors over ssl: a bridge added later reaches its replica", async () => {
    const session = OvsdbSession.start({
      remote: sb.dbSslRemote,
      ssl: ours,
      tables: { Bridge: ["name"] },
    });
    cleanup.add("session", () => session.stop());
    await session.ready(20_000);
    expect(session.replica.find("Bridge", (r) => r.name === "br-int")).toBeDefined();
    await sb.vsctl("add-br", "br-sslmon", "--", "set", "bridge", "br-sslmon", "datapath_type=dummy");
    await waitFor(
      () => session.replica.find("Bridge", (r) => r.name === "br-sslmon"),
      10_000,
      "the new bridge in the replica",
    );
    session.stop();
  });

  it("serves a `ovs-vsctl set-manager pssl:` remote too", async () => {
    const port = await freeTcpPort();
    await sb.vsctl("set-manager", `pssl:${port}:127.0.0.1`);
    const client = await waitFor(
      () => OvsdbClient.connect(`ssl:127.0.0.1:${port}`, { ssl: ours }),
      10_000,
      "ovsdb-server listening on the manager's pssl port",
    );
    try {
      expect(await client.echo("over the manager remote")).toEqual(["over the manager remote"]);
    } finally {
      client.close();
    }
  });

  it("ovsdb-server refuses a certificate from another CA, at once, saying so", async () => {
    const t0 = Date.now();
    const err = await OvsdbClient.connect(sb.dbSslRemote, { ssl: intruder })
      .then((c) => c.listDbs().finally(() => c.close()))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/the peer refused our certificate/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("we refuse an ovsdb-server whose certificate our caCert did not sign", async () => {
    const err = await OvsdbClient.connect(sb.dbSslRemote, { ssl: wrongCa }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/the peer's certificate is not signed by our caCert/);
  });

  it("an ssl: remote without SSL files is refused at once", () => {
    expect(() => OvsdbSession.start({ remote: sb.dbSslRemote, tables: { Bridge: [] } })).toThrow(UsageError);
    expect(() => OvsdbSession.start({ remote: sb.dbSslRemote, tables: { Bridge: [] } })).toThrow(
      /needs SSL files/,
    );
  });

  it("an unreadable SSL file is a UsageError naming it", async () => {
    const err = await OvsdbClient.connect(sb.dbSslRemote, {
      ssl: { ...ours, certificate: join(dir, "missing-cert.pem") },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain("missing-cert.pem");
  });
});

describe("OpenFlow over ssl:", () => {
  const target = (): string => `ssl:127.0.0.1:${ofPort}`;

  it("handshakes with br-int's pssl controller listener and installs a flow ovs-ofctl sees", async () => {
    const conn = await waitFor(
      () => connectOpenFlow(target(), { ssl: ours }),
      15_000,
      "br-int listening on its pssl controller port",
    );
    try {
      expect(conn.version).toBe(4);
      expect(conn.features.datapathId).toBeGreaterThan(0n);
      await installFlows(conn, [
        flowMod({ tableId: 9, priority: 77, match: [{ field: "reg3", value: 4242 }], instructions: [] }),
      ]);
    } finally {
      conn.close();
    }
    const flows = await sb.dumpFlows("br-int", ["table=9"]);
    expect(flows.some((f) => f.includes("priority=77") && f.includes("reg3=0x1092"))).toBe(true);
  });

  it("OfClient keeps a session over ssl:", async () => {
    const client = new OfClient(target(), { ssl: ours, minBackoffMs: 50 });
    cleanup.add("of client", () => client.stop());
    const conn = await client.start();
    expect(conn.isOpen).toBe(true);
    expect((await conn.echo(Buffer.from("tls"))).toString()).toBe("tls");
    client.stop();
  });

  it("the switch refuses a certificate from another CA, at once, saying so", async () => {
    const t0 = Date.now();
    const err = await connectOpenFlow(target(), { ssl: intruder }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/the peer refused our certificate/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("we refuse a switch whose certificate our caCert did not sign", async () => {
    const err = await connectOpenFlow(target(), { ssl: wrongCa }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/the peer's certificate is not signed by our caCert/);
  });

  it("an ssl: target without SSL files is refused when the client is made", () => {
    expect(() => new OfClient(target())).toThrow(/OpenFlow target 'ssl:127\.0\.0\.1:\d+' needs SSL files/);
  });
});
