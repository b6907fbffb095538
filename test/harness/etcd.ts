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
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { Etcd3 } from "etcd3";
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

export class EtcdCluster {
  readonly dir: string;
  private readonly members: Member[];
  private readonly opts: Required<Omit<EtcdClusterOptions, "label">>;
  private stopped = false;

  private constructor(dir: string, members: Member[], opts: Required<Omit<EtcdClusterOptions, "label">>) {
    this.dir = dir;
    this.members = members;
    this.opts = opts;
  }

  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    etcdBinary();
    const opts = {
      members: options.members ?? 1,
      heartbeatMs: options.heartbeatMs ?? 100,
      electionMs: options.electionMs ?? 1000,
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
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get size(): number {
    return this.members.length;
  }

  /** Client URLs of every member (also the stopped ones). */
  get endpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  endpoint(i: number): string {
    return this.endpoints[i]!;
  }

  /** `etcd://127.0.0.1:p1,127.0.0.1:p2` for `openStore`. */
  get url(): string {
    return `etcd://${this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(",")}`;
  }

  running(i: number): boolean {
    const p = this.members[i]!.proc;
    return !!p && p.exitCode === null && p.signalCode === null;
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
      `http://127.0.0.1:${m.clientPort}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${m.clientPort}`,
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
          const res = await fetch(`${this.endpoint(i)}/health`, { signal: AbortSignal.timeout(2000) });
          const body = (await res.json()) as { health?: string };
          if (body.health === "true") break;
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
      const client = new Etcd3({ hosts: [this.endpoint(i)], dialTimeout: 2000 });
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
