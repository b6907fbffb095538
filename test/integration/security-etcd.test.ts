/**
 * The NB store on a secured etcd, against real etcd members with certificates
 * this file makes with openssl (test/harness/pki.ts):
 *   - TLS with `--client-cert-auth`: `etcds://…?ca=&cert=&key=` opens, and the
 *     whole store conformance suite (transactions, watches, leases, locks)
 *     passes over it; a client certificate from another CA, no client
 *     certificate, and a CA that did not sign the member's certificate are
 *     each refused with a message saying it is TLS;
 *   - etcd's own authentication (`auth enable`) over https: a user with
 *     read-write on /flowdrake/ only passes the conformance suite; a wrong
 *     password, no user, and a user without permission on /flowdrake/ are
 *     refused, saying why;
 *   - the built CLI: `flowdrake nb` with the secured URL in --db and the
 *     password in FLOWDRAKE_NB_PASSWORD or password-file=, exit 5 with the
 *     reason for a refused certificate or password, exit 2 for a password in
 *     the URL; `flowdrake publisher --db etcds://…` forwards changes.
 */
import { execFile, spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCurveClient, writeKeyPair } from "../../src/nb/pubsub/curve.js";
import { tenantTopic, type ChangeMessage } from "../../src/nb/pubsub/message.js";
import { NbSubscriber } from "../../src/nb/pubsub/subscriber.js";
import { StoreError } from "../../src/nb/store/errors.js";
import { openStore, parseStoreUrl } from "../../src/nb/store/open.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { UsageError } from "../../src/util/errors.js";
import { EtcdCluster } from "../harness/etcd.js";
import { Cleanup, freeTcpPort, makeRunDir, waitFor } from "../harness/index.js";
import { runStoreConformance } from "../harness/nb-conformance.js";
import { issueCert, makeCa, type Ca, type CertFiles } from "../harness/pki.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MAIN = join(ROOT, "dist", "src", "cli", "main.js");
const cleanup = new Cleanup();

let dir: string;
let ca: Ca;
let server: CertFiles;
let client: CertFiles;
let intruder: CertFiles;
let otherCa: Ca;
let mtls: EtcdCluster;
let authed: EtcdCluster;
const PASSWORD = "s3cret-Pw";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: ROOT, env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "silent", ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const q = (params: Record<string, string>): string => `?${new URLSearchParams(params).toString()}`;
const mtlsUrl = (c: CertFiles = client, caFile = ca.cert): string =>
  `${mtls.url}${q({ ca: caFile, cert: c.cert, key: c.key })}`;
const authUrl = (user: string): string => `${authed.url}${q({ ca: ca.cert, user })}`;

/**
 * The store's first contact retries a failure for up to 3 s; a refusal is
 * not retried, so it comes well within that.
 */
async function refusal(opening: () => Promise<NbStore>): Promise<StoreError> {
  const t0 = Date.now();
  const err = await opening().then(
    async (s) => {
      await s.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  expect(Date.now() - t0).toBeLessThan(2500);
  return err as StoreError;
}

beforeAll(async () => {
  dir = makeRunDir("sec-etcd");
  cleanup.add("run dir", () => rmSync(dir, { recursive: true, force: true }));
  ca = makeCa(dir, "etcd-ca");
  server = issueCert(ca, "etcd-server", { ips: ["127.0.0.1"], dns: ["localhost"], server: true });
  client = issueCert(ca, "flowdrake-client", { client: true });
  otherCa = makeCa(dir, "other-ca");
  intruder = issueCert(otherCa, "intruder", { client: true });
  mtls = await EtcdCluster.start({
    label: "sec-mtls",
    tls: { ca: ca.cert, cert: server.cert, key: server.key, clientCertAuth: true, client },
  });
  cleanup.add("mtls etcd", () => mtls.stop());
  authed = await EtcdCluster.start({
    label: "sec-auth",
    tls: { ca: ca.cert, cert: server.cert, key: server.key },
    auth: {
      rootPassword: "root-Pw",
      users: [
        { name: "flowdrake", password: PASSWORD, prefix: "/flowdrake/" },
        { name: "other", password: PASSWORD, prefix: "/other/" },
      ],
    },
  });
  cleanup.add("auth etcd", () => authed.stop());
  writeFileSync(join(dir, "nb.password"), `${PASSWORD}\n`, { mode: 0o600 });
  const build = await new Promise<Result>((resolve) => {
    execFile(
      "npx",
      ["tsc", "-p", "tsconfig.build.json"],
      { cwd: ROOT, timeout: 200_000 },
      (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
    );
  });
  // type errors elsewhere in the tree do not stop tsc from emitting; a stale output does
  expect(readFileSync(join(ROOT, "dist", "src", "nb", "store", "open.js"), "utf8"), build.stdout).toContain(
    "FLOWDRAKE_NB_PASSWORD",
  );
}, 240_000);

afterAll(() => cleanup.run());

describe("--db URL syntax for a secured etcd", () => {
  it("parses etcds:// with its files and user, and refuses what cannot work", () => {
    const u = parseStoreUrl(
      "etcds://10.0.0.1:2379,10.0.0.2:2379?ca=/c.pem&cert=/x.pem&key=/k%2C1.pem&user=fd",
    );
    expect(u).toEqual({
      driver: "etcd",
      endpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
      security: { tls: true, ca: "/c.pem", cert: "/x.pem", key: "/k,1.pem", user: "fd" },
    });
    expect(parseStoreUrl("etcd://h:1")).toMatchObject({
      endpoints: ["http://h:1"],
      security: { tls: false },
    });
    const bad = (url: string, msg: RegExp): void => {
      expect(() => parseStoreUrl(url)).toThrow(UsageError);
      expect(() => parseStoreUrl(url)).toThrow(msg);
    };
    bad("etcds://h:1?user=root&password=hunter2", /no password in the URL.*FLOWDRAKE_NB_PASSWORD/);
    expect(() => parseStoreUrl("etcds://h:1?user=root&password=hunter2")).not.toThrow(/hunter2/);
    bad("etcd://h:1?ca=/c.pem", /need TLS: use etcds/);
    bad("etcds://h:1?cert=/c.pem", /needs both cert= and key=/);
    bad("etcds://h:1?pasword-file=/p", /unknown parameter "pasword-file"/);
    bad("etcds://h:1?password-file=/p", /password-file= needs user=/);
  });
});

describe("etcd with TLS and --client-cert-auth", () => {
  it("opens with the right CA and client certificate, and data round-trips", async () => {
    const store = await openStore(mtlsUrl());
    try {
      const r = await store.txn([
        { op: "put", kind: "network", key: "tls1", value: { id: "tls1" }, expectVersion: 0 },
      ]);
      expect(r.versions).toEqual([1]);
      expect((await store.get("network", "tls1"))?.value).toEqual({ id: "tls1" });
    } finally {
      await store.close();
    }
    // what went over the wire was TLS: etcdctl without it gets nothing
    expect(mtls.etcdctl(0, "get", "/flowdrake/nb/network/tls1", "--print-value-only").trim()).toBe(
      '{"id":"tls1"}',
    );
  });

  it("refuses a client certificate from another CA, saying it is TLS", async () => {
    const err = await refusal(() => openStore(mtlsUrl(intruder)));
    expect(err.context.refused).toBe("tls");
    expect(err.message).toMatch(/etcd refused the connection at https:\/\/127\.0\.0\.1:\d+: .*TLS/);
  });

  it("refuses a client without a certificate", async () => {
    const err = await refusal(() => openStore(`${mtls.url}${q({ ca: ca.cert })}`));
    expect(err.context.refused).toBe("tls");
  });

  it("refuses a member whose certificate our ca= did not sign", async () => {
    const err = await refusal(() => openStore(mtlsUrl(client, otherCa.cert)));
    expect(err.context.refused).toBe("tls");
    expect(err.message).toMatch(/TLS/);
  });

  it("a missing certificate file is a usage error naming it", async () => {
    const err = await openStore(`${mtls.url}${q({ ca: join(dir, "nope.pem") })}`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain("nope.pem");
  });
});

runStoreConformance("etcd over TLS with a client certificate", () => openStore(mtlsUrl()));

describe("etcd with authentication enabled (over https)", () => {
  it("a user with read-write on /flowdrake/ works, password from FLOWDRAKE_NB_PASSWORD", async () => {
    process.env.FLOWDRAKE_NB_PASSWORD = PASSWORD;
    try {
      const store = await openStore(authUrl("flowdrake"));
      try {
        await store.txn([{ op: "put", kind: "network", key: "a1", value: { id: "a1" }, expectVersion: 0 }]);
        expect((await store.get("network", "a1"))?.version).toBe(1);
      } finally {
        await store.close();
      }
    } finally {
      delete process.env.FLOWDRAKE_NB_PASSWORD;
    }
  });

  it("refuses a wrong password, saying so", async () => {
    writeFileSync(join(dir, "wrong.password"), "not-it\n");
    const err = await refusal(() =>
      openStore(`${authUrl("flowdrake")}&password-file=${join(dir, "wrong.password")}`),
    );
    expect(err.context.refused).toBe("auth");
    expect(err.message).toMatch(/etcd refused the user name or password/);
  });

  it("refuses a client that gives no user", async () => {
    const err = await refusal(() => openStore(`${authed.url}${q({ ca: ca.cert })}`));
    expect(err.context.refused).toBe("auth");
  });

  it("refuses a user without permission on /flowdrake/", async () => {
    const err = await refusal(() =>
      openStore(`${authUrl("other")}&password-file=${join(dir, "nb.password")}`),
    );
    expect(err.context.refused).toBe("auth");
    expect(err.message).toMatch(/no read-write permission on \/flowdrake\//);
  });
});

runStoreConformance("etcd with authentication, a user limited to /flowdrake/", () =>
  openStore(`${authUrl("flowdrake")}&password-file=${encodeURIComponent(join(dir, "nb.password"))}`),
);

describe("the built CLI on a secured etcd", () => {
  it("flowdrake nb: --db etcds:// with a client certificate; a refused certificate exits 5 saying why", async () => {
    const ok = await runCli(["nb", "tenant", "create", "tls-t1", "--name", "over tls", "--db", mtlsUrl()]);
    expect(ok.code, ok.stderr).toBe(0);
    const list = await runCli(["nb", "tenant", "list", "--json"], { FLOWDRAKE_NB: mtlsUrl() });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain('"tls-t1"');
    const bad = await runCli(["nb", "tenant", "list", "--db", mtlsUrl(intruder)]);
    expect(bad.code).toBe(5);
    expect(bad.stderr).toMatch(
      /^flowdrake nb: etcd refused the connection at .*TLS: the member refused our client certificate/,
    );
  });

  it("flowdrake nb: user and password (FLOWDRAKE_NB_PASSWORD); a wrong one exits 5, one in the URL exits 2", async () => {
    const env = { FLOWDRAKE_NB: authUrl("flowdrake"), FLOWDRAKE_NB_PASSWORD: PASSWORD };
    const ok = await runCli(["nb", "tenant", "create", "auth-t1", "--name", "with a password"], env);
    expect(ok.code, ok.stderr).toBe(0);
    const list = await runCli(["nb", "tenant", "list", "--json"], env);
    expect(list.stdout).toContain('"auth-t1"');
    const wrong = await runCli(["nb", "tenant", "list"], { ...env, FLOWDRAKE_NB_PASSWORD: "guess" });
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/etcd refused the user name or password/);
    const none = await runCli(["nb", "tenant", "list"], { FLOWDRAKE_NB: authUrl("flowdrake") });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/user=flowdrake needs a password: set FLOWDRAKE_NB_PASSWORD/);
    const inUrl = await runCli([
      "nb",
      "tenant",
      "list",
      "--db",
      `${authUrl("flowdrake")}&password=${PASSWORD}`,
    ]);
    expect(inUrl.code).toBe(2);
    expect(inUrl.stderr).toMatch(/no password in the URL/);
    expect(inUrl.stderr).not.toContain(PASSWORD);
  });

  it("flowdrake publisher: --db etcds:// and --curve-key; a CURVE subscriber gets the change", async () => {
    const keys = writeKeyPair(join(dir, "publisher"));
    const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
    const proc = spawn(
      process.execPath,
      [
        MAIN,
        "publisher",
        "--db",
        mtlsUrl(),
        "--bind",
        bind,
        "--heartbeat-ms",
        "100",
        "--curve-key",
        keys.key,
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "warn" } },
    );
    let out = "";
    let err = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    cleanup.add("publisher", () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    });
    const ready = await waitFor(
      () => {
        if (proc.exitCode !== null) throw new Error(`publisher exited ${proc.exitCode}: ${err}`);
        return out.split("\n").find((l) => l.includes('"ready"'));
      },
      20_000,
      "publisher ready",
    );
    expect(JSON.parse(ready as string)).toMatchObject({ bind, curve: keys.publicKey });
    const got: ChangeMessage[] = [];
    const sub = NbSubscriber.connect(
      bind,
      { onChange: (m) => got.push(m), onResync: () => undefined },
      { curve: loadCurveClient(keys.pub) },
    );
    cleanup.add("subscriber", () => sub.close());
    sub.subscribe(tenantTopic("pub-t1"));
    await waitFor(() => sub.publisherId !== undefined, 10_000, "heartbeats over CURVE");
    const store = await openStore(mtlsUrl());
    try {
      await store.txn([
        { op: "put", kind: "tenant", key: "pub-t1", value: { id: "pub-t1", name: "p" }, expectVersion: 0 },
      ]);
    } finally {
      await store.close();
    }
    await waitFor(() => got.some((m) => m.key === "pub-t1"), 10_000, "the change through the publisher");
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    await sub.close();
  });

  it("flowdrake publisher exits at once when etcd refuses its certificate, instead of retrying", async () => {
    const r = await runCli(["publisher", "--db", mtlsUrl(intruder), "--bind", "tcp://127.0.0.1:1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flowdrake: etcd refused the connection .*TLS/);
  });
});

afterAll(() => {
  delete process.env.FLOWDRAKE_NB_PASSWORD;
});
