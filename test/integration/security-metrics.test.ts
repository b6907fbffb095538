/**
 * The agent's /metrics endpoint, served for real on local sockets: loopback
 * by default without a warning; a non-loopback bind without TLS and basic
 * auth warns; with both, https and a user:password from the auth file are
 * demanded (401 otherwise) and no warning is logged. Certificates come from
 * openssl (test/harness/pki.ts).
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { AgentMetrics, isLoopback } from "../../src/controller/metrics.js";
import { UsageError } from "../../src/util/errors.js";
import { logger } from "../../src/util/log.js";
import { makeRunDir } from "../harness/index.js";
import { issueCert, makeCa, type Ca, type CertFiles } from "../harness/pki.js";

let dir: string;
let ca: Ca;
let cert: CertFiles;
let authFile: string;
const open: AgentMetrics[] = [];

beforeAll(() => {
  dir = makeRunDir("sec-metrics");
  ca = makeCa(dir, "metrics-ca");
  cert = issueCert(ca, "metrics", { ips: ["127.0.0.1"], server: true });
  authFile = join(dir, "metrics.auth");
  writeFileSync(authFile, "# prometheus\nprom:scrape-Pw\n", { mode: 0o600 });
});
afterEach(async () => {
  for (const m of open.splice(0)) await m.close();
  vi.restoreAllMocks();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function get(url: string, auth?: string): Promise<Reply> {
  const u = new URL(url);
  const opts = {
    hostname: u.hostname,
    port: u.port,
    path: u.pathname,
    headers: auth ? { authorization: `Basic ${Buffer.from(auth).toString("base64")}` } : {},
    ...(u.protocol === "https:" ? { ca: readFileSync(ca.cert) } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = (u.protocol === "https:" ? httpsRequest : httpRequest)(opts, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

function metrics(): AgentMetrics {
  const m = new AgentMetrics();
  m.packetIns.inc({ app: "dhcp" }, 3);
  open.push(m);
  return m;
}

const warnings = (spy: { mock: { calls: unknown[][] } }): string[] =>
  spy.mock.calls.map((c) => String(c[1] ?? c[0]));

describe("metrics endpoint security", () => {
  it("knows loopback addresses", () => {
    expect(["127.0.0.1", "127.1.2.3", "::1", "localhost"].every(isLoopback)).toBe(true);
    expect(["0.0.0.0", "::", "10.0.0.1", "fe80::1"].some(isLoopback)).toBe(false);
  });

  it("loopback: plain http, no warning", async () => {
    const warn = vi.spyOn(logger("metrics"), "warn");
    const port = await metrics().listen("127.0.0.1:0");
    const r = await get(`http://127.0.0.1:${port}/metrics`);
    expect(r.status).toBe(200);
    expect(r.body).toContain('flowdrake_packet_ins_total{app="dhcp"} 3');
    expect(warnings(warn)).toEqual([]);
  });

  it("a non-loopback bind without TLS and auth warns", async () => {
    const warn = vi.spyOn(logger("metrics"), "warn");
    const port = await metrics().listen("0.0.0.0:0");
    expect((await get(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    expect(warnings(warn)).toHaveLength(1);
    expect(warnings(warn)[0]).toMatch(/non-loopback address without TLS and basic auth/);
    expect(warn.mock.calls[0]![0]).toMatchObject({ tls: false, basicAuth: false });
  });

  it("with TLS and basic auth: https, the right password only, and no warning", async () => {
    const warn = vi.spyOn(logger("metrics"), "warn");
    const port = await metrics().listen("0.0.0.0:0", {
      tls: { certificate: cert.cert, privateKey: cert.key },
      basicAuthFile: authFile,
    });
    const url = `https://127.0.0.1:${port}/metrics`;
    const ok = await get(url, "prom:scrape-Pw");
    expect(ok.status).toBe(200);
    expect(ok.body).toContain("flowdrake_packet_ins_total");
    const wrong = await get(url, "prom:guess");
    expect(wrong.status).toBe(401);
    expect(wrong.headers["www-authenticate"]).toBe('Basic realm="flowdrake metrics"');
    expect(wrong.body).not.toContain("flowdrake_");
    expect((await get(url)).status).toBe(401);
    expect((await get(url, "other:scrape-Pw")).status).toBe(401);
    // plain http to the https port gets no metrics
    const plain = await get(`http://127.0.0.1:${port}/metrics`, "prom:scrape-Pw").catch((e: unknown) => e);
    expect(plain instanceof Error || (plain as Reply).status === 400).toBe(true);
    expect(warnings(warn)).toEqual([]);
  });

  it("a missing certificate or a malformed auth file is a UsageError naming it", async () => {
    await expect(
      metrics().listen("127.0.0.1:0", { tls: { certificate: join(dir, "none.pem"), privateKey: cert.key } }),
    ).rejects.toThrow(UsageError);
    writeFileSync(join(dir, "bad.auth"), "no-colon-here\n");
    await expect(metrics().listen("127.0.0.1:0", { basicAuthFile: join(dir, "bad.auth") })).rejects.toThrow(
      /bad\.auth must hold user:password lines/,
    );
  });
});
