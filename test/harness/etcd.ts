/**
 * A real etcd for tests and benchmarks: one member or a small cluster on
 * loopback, every member with its own client and peer port (`freeTcpPort()`),
 * its own data dir and log under a run dir from `makeRunDir`, and a pidfile so
 * that `sweepStale()` can kill what a crashed run left behind.
 *
 *   const cluster = await EtcdCluster.start({ members: 3 });
 *   cluster.endpoints          // ["http://127.0.0.1:p1", …]
 *   await cluster.leader()     // index of the current raft leader
 *   await cluster.kill(i); await cluster.restart(i);
 *   await cluster.stop();      // every member, the run dir
 *
 * `useEtcd(opts)` wraps it in beforeAll/afterAll for a test file. The binary is
 * Debian's etcd 3.4 (`etcd-server`); when it is missing the start fails with a
 * message naming the setup script instead of skipping anything.
 *
 * Transport security, for the tests of flowdrake's secured etcd access:
 *   - `tls`: the members serve clients on https with the given certificate
 *     (`--cert-file/--key-file`); with `clientCertAuth` they also demand a
 *     client certificate signed by `tls.ca` (`--client-cert-auth
 *     --trusted-ca-file`). `tls.client` is the certificate the harness itself
 *     uses (health checks, etcdctl, `leader()`). Peer traffic stays plain http
 *     on loopback.
 *   - `auth`: once healthy, the harness creates `root` (and every user in
 *     `auth.users`, each with read-write on its key prefix through a role of
 *     its own) with etcdctl and runs `etcdctl auth enable`.
 * `cluster.url` is then `etcds://…` and `endpoints` are `https://…`.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { Etcd3, type IOptions } from "etcd3";
import { freeTcpPort } from "../../src/sandbox/ovs.js";
import { makeRunDir } from "../../src/sandbox/rundir.js";
import { FlowdrakeError } from "../../src/util/errors.js";

export interface EtcdClusterOptions {
  members?: number;
  /** Label for the run dir. */
  label?: string;
  /** Raft heartbeat / election timeout in ms (etcd defaults: 100 / 1000). */
  heartbeatMs?: number;
  electionMs?: number;
  tls?: EtcdTlsOptions;
  auth?: EtcdAuthOptions;
}

export interface EtcdTlsOptions {
  /** The CA the members trust for client certificates (and that signed `cert`, for the harness's checks). */
  ca: string;
  /** The members' server certificate and key (PEM paths); it must name 127.0.0.1. */
  cert: string;
  key: string;
  /** Demand a client certificate signed by `ca` (`--client-cert-auth`). */
  clientCertAuth?: boolean;
  /** The client certificate the harness uses itself (needed with clientCertAuth). */
  client?: { cert: string; key: string };
}

export interface EtcdAuthOptions {
  rootPassword: string;
  /** More users, each with read-write on `prefix` only. */
  users?: { name: string; password: string; prefix: string }[];
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  logPath: string;
  pidPath: string;
  proc?: ChildProcess;
}

const ETCD_CANDIDATES = ["/usr/bin/etcd", "/usr/local/bin/etcd"];

export function etcdBinary(): string {
  const found = ETCD_CANDIDATES.find((p) => existsSync(p));
  if (!found) {
    throw new FlowdrakeError("MISSING_COMPONENT", "etcd not found: install etcd-server: bash scripts/setup", {
      looked: ETCD_CANDIDATES,
    });
  }
  return found;
}

type ClusterOpts = Required<Pick<EtcdClusterOptions, "members" | "heartbeatMs" | "electionMs">> &
  Pick<EtcdClusterOptions, "tls" | "auth">;

export class EtcdCluster {
  readonly dir: string;
  private readonly members: Member[];
  private readonly opts: ClusterOpts;
  private stopped = false;
  private authEnabled = false;

  private constructor(dir: string, members: Member[], opts: ClusterOpts) {
    this.dir = dir;
    this.members = members;
    this.opts = opts;
  }

  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    etcdBinary();
    const opts: ClusterOpts = {
      members: options.members ?? 1,
      heartbeatMs: options.heartbeatMs ?? 100,
      electionMs: options.electionMs ?? 1000,
      tls: options.tls,
      auth: options.auth,
    };
    const dir = makeRunDir(options.label ?? "etcd");
    const members: Member[] = [];
    for (let i = 0; i < opts.members; i++) {
      members.push({
        name: `m${i}`,
        clientPort: await freeTcpPort(),
        peerPort: await freeTcpPort(),
        dataDir: join(dir, `m${i}.etcd`),
        logPath: join(dir, `m${i}.log`),
        pidPath: join(dir, `m${i}.pid`),
      });
    }
    const cluster = new EtcdCluster(dir, members, opts);
    try {
      for (let i = 0; i < members.length; i++) cluster.spawnMember(i);
      await cluster.waitHealthy();
      if (opts.auth) cluster.enableAuth(opts.auth);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get size(): number {
    return this.members.length;
  }

  private get scheme(): "http" | "https" {
    return this.opts.tls ? "https" : "http";
  }

  /** Client URLs of every member (also the stopped ones). */
  get endpoints(): string[] {
    return this.members.map((m) => `${this.scheme}://127.0.0.1:${m.clientPort}`);
  }

  endpoint(i: number): string {
    return this.endpoints[i]!;
  }

  /** `etcd://127.0.0.1:p1,127.0.0.1:p2` (`etcds://` with tls) for `openStore`, without credentials. */
  get url(): string {
    const scheme = this.opts.tls ? "etcds" : "etcd";
    return `${scheme}://${this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(",")}`;
  }

  /** etcd3 client options for the harness's own calls (its TLS client certificate, root's password). */
  private clientOptions(host: string): IOptions {
    const tls = this.opts.tls;
    const auth = this.opts.auth;
    return {
      hosts: [host],
      dialTimeout: 2000,
      ...(tls
        ? {
            credentials: {
              rootCertificate: readFileSync(tls.ca),
              ...(tls.client
                ? { certChain: readFileSync(tls.client.cert), privateKey: readFileSync(tls.client.key) }
                : {}),
            },
          }
        : {}),
      ...(auth ? { auth: { username: "root", password: auth.rootPassword } } : {}),
    };
  }

  /** etcdctl against member `i` with the harness's credentials; throws with its output on failure. */
  etcdctl(i: number, ...args: string[]): string {
    const tls = this.opts.tls;
    const argv = [`--endpoints=${this.endpoint(i)}`, "--dial-timeout=3s", "--command-timeout=5s"];
    if (tls) {
      argv.push(`--cacert=${tls.ca}`);
      if (tls.client) argv.push(`--cert=${tls.client.cert}`, `--key=${tls.client.key}`);
    }
    if (this.authEnabled) argv.push(`--user=root:${this.opts.auth!.rootPassword}`);
    const r = spawnSync("etcdctl", [...argv, ...args], {
      encoding: "utf8",
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    if (r.error || r.status !== 0) {
      throw new FlowdrakeError("ETCD", `etcdctl ${args.join(" ")} failed: ${r.error?.message ?? r.stderr}`, {
        args,
      });
    }
    return r.stdout;
  }

  /** root, the extra users with a read-write role on their prefix each, then `auth enable`. */
  private enableAuth(auth: EtcdAuthOptions): void {
    this.etcdctl(0, "user", "add", `root:${auth.rootPassword}`);
    for (const u of auth.users ?? []) {
      const role = `rw-${u.name}`;
      this.etcdctl(0, "role", "add", role);
      this.etcdctl(0, "role", "grant-permission", role, "--prefix=true", "readwrite", u.prefix);
      this.etcdctl(0, "user", "add", `${u.name}:${u.password}`);
      this.etcdctl(0, "user", "grant-role", u.name, role);
    }
    this.etcdctl(0, "auth", "enable");
    this.authEnabled = true;
  }

  running(i: number): boolean {
    const p = this.members[i]!.proc;
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  /** GET /health on member i: true when it reports a healthy member with a leader. */
  private health(i: number): Promise<boolean> {
    const url = `${this.endpoint(i)}/health`;
    if (!this.opts.tls) {
      return fetch(url, { signal: AbortSignal.timeout(2000) })
        .then((res) => res.json() as Promise<{ health?: string }>)
        .then((b) => b.health === "true");
    }
    const tls = this.opts.tls;
    return new Promise((resolve, reject) => {
      const req = httpsGet(
        url,
        {
          ca: readFileSync(tls.ca),
          ...(tls.client ? { cert: readFileSync(tls.client.cert), key: readFileSync(tls.client.key) } : {}),
          timeout: 2000,
        },
        (res) => {
          let body = "";
          res.on("data", (d: Buffer) => (body += d.toString()));
          res.on("end", () => {
            try {
              resolve((JSON.parse(body) as { health?: string }).health === "true");
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("health check timed out")));
      req.on("error", reject);
    });
  }

  private initialCluster(): string {
    return this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
  }

  private spawnMember(i: number): void {
    const m = this.members[i]!;
    const argv = [
      "--name",
      m.name,
      "--data-dir",
      m.dataDir,
      "--listen-client-urls",
      `${this.scheme}://127.0.0.1:${m.clientPort}`,
      "--advertise-client-urls",
      `${this.scheme}://127.0.0.1:${m.clientPort}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${m.peerPort}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${m.peerPort}`,
      "--initial-cluster",
      this.initialCluster(),
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      `fd-${this.dir.split("/").pop()}`,
      "--heartbeat-interval",
      String(this.opts.heartbeatMs),
      "--election-timeout",
      String(this.opts.electionMs),
      "--logger",
      "zap",
      "--log-level",
      "warn",
    ];
    const tls = this.opts.tls;
    if (tls) {
      argv.push("--cert-file", tls.cert, "--key-file", tls.key);
      if (tls.clientCertAuth) argv.push("--client-cert-auth", "--trusted-ca-file", tls.ca);
    }
    const fd = openSync(m.logPath, "a");
    const proc = spawn(etcdBinary(), argv, { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    proc.on("error", () => undefined);
    m.proc = proc;
    if (proc.pid) writeFileSync(m.pidPath, `${proc.pid}\n`);
  }

  /** Wait until every running member answers /health with a leader. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < this.members.length; i++) {
      if (!this.running(i)) continue;
      for (;;) {
        try {
          if (await this.health(i)) break;
        } catch {
          // not up yet
        }
        if (!this.running(i)) {
          throw new FlowdrakeError(
            "ETCD",
            `etcd member m${i} exited during start (see ${this.members[i]!.logPath})`,
          );
        }
        if (Date.now() > deadline) {
          throw new FlowdrakeError("ETCD", `etcd member m${i} not healthy within ${timeoutMs} ms`, {
            log: this.members[i]!.logPath,
          });
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Index of the member that currently leads raft (asks every running member). */
  async leader(): Promise<number> {
    for (let i = 0; i < this.members.length; i++) {
      if (!this.running(i)) continue;
      const client = new Etcd3(this.clientOptions(this.endpoint(i)));
      try {
        const st = await client.maintenance.status({});
        const ids = await client.cluster.memberList({});
        const lead = ids.members.find((mm) => mm.ID === st.leader);
        if (lead) {
          const idx = this.members.findIndex((m) => m.name === lead.name);
          if (idx >= 0) return idx;
        }
      } catch {
        // try the next member
      } finally {
        client.close();
      }
    }
    throw new FlowdrakeError("ETCD", "no etcd member reports a leader");
  }

  /** SIGKILL one member and wait for it to be gone. */
  async kill(i: number): Promise<void> {
    const proc = this.members[i]!.proc;
    if (!proc || !this.running(i)) return;
    const gone = new Promise<void>((r) => proc.once("exit", () => r()));
    proc.kill("SIGKILL");
    await gone;
  }

  /** Start a killed member again on the same ports and data dir. */
  async restart(i: number): Promise<void> {
    await this.kill(i);
    this.spawnMember(i);
    await this.waitHealthy();
  }

  /** Start every killed member again at once (one at a time would wait for a quorum that never comes). */
  async restartAll(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) if (!this.running(i)) this.spawnMember(i);
    await this.waitHealthy();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (let i = 0; i < this.members.length; i++) {
      try {
        await this.kill(i);
      } catch {
        // keep going
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One etcd (or cluster) for a whole test file; stopped in afterAll, also after a failure. */
export function useEtcd(opts: EtcdClusterOptions = {}): () => EtcdCluster {
  let cluster: EtcdCluster | undefined;
  beforeAll(async () => {
    cluster = await EtcdCluster.start(opts);
  });
  afterAll(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error("etcd did not start (see beforeAll error)");
    return cluster;
  };
}
