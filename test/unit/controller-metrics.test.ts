/**
 * The agent's metrics (src/controller/metrics.ts) served for real on a
 * loopback socket: the flows gauge counted from the installed flows when
 * scraped, the paths and answers of the endpoint, the listen address forms,
 * and the basic-auth file's rules. TLS, and binds beyond loopback, are
 * test/integration/security-metrics.test.ts's.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { AgentMetrics, isLoopback } from "../../src/controller/metrics.js";
import { table } from "../../src/datapath/index.js";
import type { Flow } from "../../src/openflow/flow.js";
import { UsageError } from "../../src/util/errors.js";
import { logger } from "../../src/util/log.js";

const dir = mkdtempSync(join(tmpdir(), "flowdrake-metrics-"));
const open: AgentMetrics[] = [];
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

function get(host: string, port: number, path: string, authorization?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, headers: authorization ? { authorization } : {} }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

const basic = (s: string): string => `Basic ${Buffer.from(s).toString("base64")}`;

function metrics(): AgentMetrics {
  const m = new AgentMetrics();
  open.push(m);
  return m;
}

function authFile(name: string, text: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

const flowIn = (t: number): Flow => ({ table: t, priority: 1, match: [], instructions: [], cookie: 0n });

describe("AgentMetrics", () => {
  it("counts the installed flows per table name when scraped, and nothing without a source", async () => {
    const m = metrics();
    expect((await m.registry.getSingleMetric("flowdrake_flows")!.get()).values).toEqual([]);
    let flows = [
      flowIn(table("l2_lookup")),
      flowIn(table("l2_lookup")),
      flowIn(table("classification")),
      flowIn(250),
    ];
    m.flowSource = () => flows;
    const text = await m.registry.metrics();
    expect(text).toContain('flowdrake_flows{table="l2_lookup"} 2');
    expect(text).toContain('flowdrake_flows{table="classification"} 1');
    expect(text).toContain('flowdrake_flows{table="250"} 1');
    // a table that empties disappears from the next scrape
    flows = [flowIn(table("classification"))];
    const again = await m.registry.metrics();
    expect(again).not.toContain("l2_lookup");
    expect(again).toContain('flowdrake_flows{table="classification"} 1');
  });

  it("serves /metrics and only /metrics, on the loopback address it is given", async () => {
    const m = metrics();
    m.puntDrops.inc(2);
    const port = (await m.listen("127.0.0.1:0"))!;
    expect(port).toBeGreaterThan(0);
    const r = await get("127.0.0.1", port, "/metrics");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe(m.registry.contentType);
    expect(r.body).toContain("flowdrake_punt_queue_drops_total 2");
    const other = await get("127.0.0.1", port, "/");
    expect(other.status).toBe(404);
    expect(other.body).toBe("try /metrics\n");
  });

  it("answers 500 with the reason when collecting fails", async () => {
    const m = metrics();
    m.flowSource = () => {
      throw new Error("no flows today");
    };
    const port = (await m.listen("127.0.0.1:0"))!;
    const r = await get("127.0.0.1", port, "/metrics");
    expect(r.status).toBe(500);
    expect(r.body).toContain("no flows today");
  });

  it("is off for an empty address, binds 127.0.0.1 for a bare :port, and takes [::1]:port", async () => {
    expect(await metrics().listen("")).toBeUndefined();
    const info = vi.spyOn(logger("metrics"), "info");
    const warn = vi.spyOn(logger("metrics"), "warn");
    const port = (await metrics().listen(":0"))!;
    expect((await get("127.0.0.1", port, "/metrics")).status).toBe(200);
    expect(info.mock.calls[0]![0]).toEqual({ address: `127.0.0.1:${port}`, tls: false, basicAuth: false });
    expect(String(info.mock.calls[0]![1])).toBe("metrics listening");
    const p6 = (await metrics().listen("[::1]:0"))!;
    expect((await get("::1", p6, "/metrics")).status).toBe(200);
    expect(info.mock.calls[1]![0]).toMatchObject({ address: `::1:${p6}` });
    expect(warn).not.toHaveBeenCalled();
  });

  it("refuses to listen on a port in use, and close() is safe twice", async () => {
    const a = metrics();
    const port = (await a.listen("127.0.0.1:0"))!;
    await expect(metrics().listen(`127.0.0.1:${port}`)).rejects.toThrow(/EADDRINUSE/);
    await a.close();
    await a.close();
    await expect(get("127.0.0.1", port, "/metrics")).rejects.toThrow();
  });

  it("demands a user:password from the auth file, in a well-formed Basic header", async () => {
    const file = authFile("ok.auth", "# scrapers\n\n  prom:s3cret  \nsecond:pass:with:colons\n");
    const warn = vi.spyOn(logger("metrics"), "warn");
    const info = vi.spyOn(logger("metrics"), "info");
    const port = (await metrics().listen("127.0.0.1:0", { basicAuthFile: file }))!;
    expect(warn).not.toHaveBeenCalled();
    expect(info.mock.calls[0]![0]).toMatchObject({ basicAuth: true, tls: false });
    expect((await get("127.0.0.1", port, "/metrics", basic("prom:s3cret"))).status).toBe(200);
    expect((await get("127.0.0.1", port, "/metrics", basic("second:pass:with:colons"))).status).toBe(200);
    // the first credential keeps matching when a later one does not, and the other way round
    expect((await get("127.0.0.1", port, "/metrics", `basic  ${basic("prom:s3cret").slice(6)}`)).status).toBe(
      200,
    );
    for (const bad of [
      basic("prom:wrong"),
      basic("# scrapers"),
      basic(""),
      `Bearer ${basic("prom:s3cret").slice(6)}`,
      `${basic("prom:s3cret")} trailing`,
      `x${basic("prom:s3cret")}`,
    ]) {
      const r = await get("127.0.0.1", port, "/metrics", bad);
      expect(r.status, bad).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Basic realm="flowdrake metrics"');
      expect(r.body).toBe("unauthorized\n");
    }
    // unauthorized on every path, not only /metrics
    expect((await get("127.0.0.1", port, "/")).status).toBe(401);
  });

  it("refuses an auth file that is empty, has a line without a user, or cannot be read", async () => {
    for (const [name, text] of [
      ["empty.auth", "# only a comment\n\n"],
      ["nouser.auth", "prom:pw\n:pw\n"],
      ["nocolon.auth", "prom:pw\njustaname\n"],
    ] as const) {
      const file = authFile(name, text);
      const err = await metrics()
        .listen("127.0.0.1:0", { basicAuthFile: file })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toBe(`metrics: ${file} must hold user:password lines`);
    }
    const missing = join(dir, "missing.auth");
    const err = await metrics()
      .listen("127.0.0.1:0", { basicAuthFile: missing })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(
      new RegExp(`^metrics: cannot read the basic auth file ${missing}: .*ENOENT`),
    );
  });

  it("warns when the auth file is readable by others", async () => {
    const warn = vi.spyOn(logger("metrics"), "warn");
    await metrics().listen("127.0.0.1:0", { basicAuthFile: authFile("loose.auth", "prom:pw\n", 0o640) });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![1])).toMatch(/readable by others: chmod 600/);
    warn.mockClear();
    await metrics().listen("127.0.0.1:0", { basicAuthFile: authFile("tight.auth", "prom:pw\n", 0o600) });
    expect(warn).not.toHaveBeenCalled();
  });

  it("knows which hosts are loopback", () => {
    expect(["localhost", "127.0.0.1", "127.255.0.9", "::1"].every(isLoopback)).toBe(true);
    expect(
      ["0.0.0.0", "10.0.0.1", "::", "::2", "128.0.0.1", "localhost.example", "127.example"].some(isLoopback),
    ).toBe(false);
  });
});
