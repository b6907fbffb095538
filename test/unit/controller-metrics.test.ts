/**
 * The agent's metrics (src/controller/metrics.ts) served for real on a
 * loopback socket: the flows gauge counted from the installed flows when
 * scraped, the paths and answers of the endpoint, the listen address forms,
 * the basic-auth file's rules, what each metric's HELP/TYPE lines and
 * buckets say, https with a throw-away openssl CA (test/harness/pki.ts), and
 * the warning for a bind beyond loopback without TLS and basic auth.
 * test/integration/security-metrics.test.ts repeats the security part end to
 * end.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { AgentMetrics, isLoopback } from "../../src/controller/metrics.js";
import { table } from "../../src/datapath/index.js";
import { UsageError } from "../../src/util/errors.js";
import { logger } from "../../src/util/log.js";
import { issueCert, makeCa } from "../harness/pki.js";

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

describe("AgentMetrics", () => {
  it("reports the installed flows per table name when scraped, and nothing without a source", async () => {
    const m = metrics();
    expect((await m.registry.getSingleMetric("flowdrake_flows")!.get()).values).toEqual([]);
    let counts = new Map([
      [table("l2_lookup"), 2],
      [table("classification"), 1],
      [250, 1],
    ]);
    m.flowCounts = () => counts;
    const text = await m.registry.metrics();
    expect(text).toContain('flowdrake_flows{table="l2_lookup"} 2');
    expect(text).toContain('flowdrake_flows{table="classification"} 1');
    expect(text).toContain('flowdrake_flows{table="250"} 1');
    // a table that empties disappears from the next scrape
    counts = new Map([[table("classification"), 1]]);
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
    m.flowCounts = () => {
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
      expect((err as UsageError).context).toEqual({ path: file });
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
    const loose = authFile("loose.auth", "prom:pw\n", 0o640);
    await metrics().listen("127.0.0.1:0", { basicAuthFile: loose });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toEqual({ path: loose });
    expect(String(warn.mock.calls[0]![1])).toMatch(/readable by others: chmod 600/);
    warn.mockClear();
    await metrics().listen("127.0.0.1:0", { basicAuthFile: authFile("tight.auth", "prom:pw\n", 0o600) });
    expect(warn).not.toHaveBeenCalled();
  });

  it("records the process's GC pauses by kind while it serves, and stops when closed", async () => {
    const m = metrics();
    const count = async (): Promise<number> => {
      const v = (await m.gcPauses.get()).values;
      return (
        v.find((x) => x.metricName === "flowdrake_gc_pause_seconds_count" && x.labels.kind === "minor")
          ?.value ?? 0
      );
    };
    // churn young objects: the scavenger runs many times over
    const churn = () => {
      let keep: unknown[] = [];
      for (let i = 0; i < 2_000_000; i++) {
        keep.push({ i, s: `x${i}` });
        if (keep.length > 1000) keep = [];
      }
      return keep.length;
    };
    churn();
    await new Promise((r) => setTimeout(r, 20));
    expect(await count()).toBe(0); // not serving: not watching
    const port = (await m.listen("127.0.0.1:0"))!;
    churn();
    await new Promise((r) => setTimeout(r, 20));
    const seen = await count();
    expect(seen).toBeGreaterThan(0);
    const r = await get("127.0.0.1", port, "/metrics");
    expect(r.body).toMatch(/^flowdrake_gc_pause_seconds_sum\{kind="minor"\} [0-9.e-]+$/m);
    await m.close();
    churn();
    await new Promise((r) => setTimeout(r, 20));
    expect(await count()).toBe(seen);
  });

  it("knows which hosts are loopback", () => {
    expect(["localhost", "127.0.0.1", "127.255.0.9", "::1"].every(isLoopback)).toBe(true);
    expect(
      ["0.0.0.0", "10.0.0.1", "::", "::2", "128.0.0.1", "localhost.example", "127.example"].some(isLoopback),
    ).toBe(false);
  });

  it("describes every metric in the scrape: its help, its type, labels and buckets", async () => {
    const m = metrics();
    m.packetIns.inc({ app: "l2" });
    m.flowMods.inc({ command: "add" }, 3);
    m.reconcileDuration.observe(0.002);
    m.nbSyncLag.observe(0.7);
    const text = await m.registry.metrics();
    const described: [string, string, string][] = [
      ["flowdrake_packet_ins_total", "counter", "packet-ins handled by the agent, per app"],
      ["flowdrake_flow_mods_total", "counter", "flow_mods sent to OVS, per command"],
      ["flowdrake_flows", "gauge", "flows flowdrake holds in OVS, per pipeline table"],
      [
        "flowdrake_reconcile_duration_seconds",
        "histogram",
        "duration of one desired-vs-installed reconcile pass",
      ],
      [
        "flowdrake_nb_sync_lag_seconds",
        "histogram",
        "time from an NB change reaching the agent to its flows being installed",
      ],
      ["flowdrake_local_ports", "gauge", "NB ports bound to this chassis"],
      ["flowdrake_owners", "gauge", "owners (app x object) the incremental engine holds"],
      ["flowdrake_owner_failures_total", "counter", "owners whose flows or meters the switch rejected"],
      ["flowdrake_failed_owners", "gauge", "owners held back after a rejection, waiting for a retry"],
      ["flowdrake_nb_refused_objects", "gauge", "NB objects the agent leaves out because they are malformed"],
      ["flowdrake_realised_revision", "gauge", "the NB revision the switch realises"],
      ["flowdrake_recovery_repairs_total", "counter", "NB cache entries the periodic recovery pass repaired"],
      [
        "flowdrake_punt_queue_drops_total",
        "counter",
        "packet-ins dropped because their port's queue in the agent was full",
      ],
      [
        "flowdrake_gc_pause_seconds",
        "histogram",
        "garbage-collection pauses of the agent's process, per kind (its event loop stands still for each)",
      ],
    ];
    for (const [name, type, help] of described) {
      expect(text).toContain(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`);
    }
    expect(text.match(/^# HELP /gm)).toHaveLength(described.length);
    expect(text).toContain('flowdrake_packet_ins_total{app="l2"} 1');
    expect(text).toContain('flowdrake_flow_mods_total{command="add"} 3');
    const le = ["0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "+Inf"];
    const buckets = (name: string): string[] =>
      [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`, "gm"))].map(
        (b) => `${b[1]}=${b[2]}`,
      );
    expect(buckets("flowdrake_reconcile_duration_seconds")).toEqual(
      le.map((l, i) => `${l}=${i === 0 ? 0 : 1}`),
    );
    expect(buckets("flowdrake_nb_sync_lag_seconds")).toEqual(le.map((l, i) => `${l}=${i < 6 ? 0 : 1}`));
  });

  it("warns when it serves beyond loopback without both TLS and basic auth", async () => {
    const warn = vi.spyOn(logger("metrics"), "warn");
    const info = vi.spyOn(logger("metrics"), "info");
    const open = await metrics().listen("0.0.0.0:0");
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toEqual({ address: `0.0.0.0:${open}`, tls: false, basicAuth: false });
    expect(String(warn.mock.calls[0]![1])).toBe(
      "metrics served on a non-loopback address without TLS and basic auth: anyone who can reach it " +
        "reads this host's ports, flows and peers (set metricsTls and metricsAuthFile, or bind 127.0.0.1 behind a proxy)",
    );
    const authOnly = await metrics().listen("0.0.0.0:0", {
      basicAuthFile: authFile("wide.auth", "prom:pw\n"),
    });
    expect(warn).toHaveBeenCalledTimes(2);
    expect(warn.mock.calls[1]![0]).toEqual({ address: `0.0.0.0:${authOnly}`, tls: false, basicAuth: true });
    expect(info).not.toHaveBeenCalled();
  });

  it("serves https with the certificate it is given, with basic auth, and does not warn beyond loopback", async () => {
    const ca = makeCa(dir, "metrics-ca");
    const cert = issueCert(ca, "metrics", { ips: ["127.0.0.1"], server: true });
    const warn = vi.spyOn(logger("metrics"), "warn");
    const info = vi.spyOn(logger("metrics"), "info");
    const m = metrics();
    m.localPorts.set(4);
    const port = (await m.listen("0.0.0.0:0", {
      tls: { certificate: cert.cert, privateKey: cert.key },
      basicAuthFile: authFile("tls.auth", "prom:pw\n"),
    }))!;
    expect(warn).not.toHaveBeenCalled();
    expect(info.mock.calls[0]![0]).toEqual({ address: `0.0.0.0:${port}`, tls: true, basicAuth: true });
    const get = (opts: { auth?: string }): Promise<Reply> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: "127.0.0.1",
            port,
            path: "/metrics",
            ca: readFileSync(ca.cert),
            headers: opts.auth ? { authorization: opts.auth } : {},
          },
          (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
          },
        );
        req.on("error", reject);
        req.end();
      });
    const ok = await get({ auth: basic("prom:pw") });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain("flowdrake_local_ports 4");
    expect((await get({})).status).toBe(401);
    // plain http on the https port gets no metrics
    await expect(getPlain(port)).rejects.toThrow();
  });

  it("refuses TLS files it cannot read, naming which", async () => {
    const missing = join(dir, "nope.pem");
    const tight = authFile("t.auth", "prom:pw\n");
    for (const [tls, what] of [
      [{ certificate: missing, privateKey: missing }, "TLS certificate"],
      [{ certificate: tight, privateKey: missing }, "TLS private key"],
    ] as const) {
      const err = await metrics()
        .listen("127.0.0.1:0", { tls })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(
        new RegExp(`^metrics: cannot read the ${what} ${missing}: .*ENOENT`),
      );
      expect((err as UsageError).context).toEqual({ path: missing });
    }
  });
});

function getPlain(port: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () =>
        res.statusCode === 200
          ? resolve({ status: 200, body, headers: res.headers })
          : reject(new Error(`status ${res.statusCode}`)),
      );
    });
    req.on("error", reject);
    req.end();
  });
}
