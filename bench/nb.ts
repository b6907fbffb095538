/**
 * `npm run bench -- nb`: the northbound store and change distribution.
 *
 *   - write throughput: creates/s (guarded create of new keys) and CAS
 *     updates/s (read + guarded update) through the NbStore interface, for the
 *     embedded store (fsync per commit) and etcd (a single-member etcd this
 *     bench starts in its own run dir), with 16 writers in flight;
 *   - read throughput: gets/s of random keys, 16 in flight;
 *   - reference: `etcdctl put` run in a loop (one process per put, as a shell
 *     script would) against the same etcd;
 *   - watch fan-out latency to 100 subscribers, from the start of the write to
 *     each subscriber's receipt, p50/p99: ZeroMQ pub/sub (NbPublisher on the
 *     embedded store, 100 NbSubscribers), etcd watch (100 clients, one watch
 *     each), and the embedded store's in-process watch;
 *   - `nb apply` of 1,000 ports on one network (a /16 with DHCP), seconds from
 *     reading the store to the last commit (parse, read state, plan, execute:
 *     what the command does after start-up), into etcd and the embedded store,
 *     once with every MAC and address given in the file and once with both
 *     allocated: batched (the apply as one NbApi batch) side by side with the
 *     per-call path (a lock, reads and a transaction per port: how apply
 *     worked before batching). Each case starts from an empty NB (etcd's NB
 *     prefix wiped, a fresh embedded directory). Plus the whole command,
 *     `flowdrake nb apply -f` as a new node process, batched into etcd.
 * Everything runs in this one Node process on the same cores as etcd, so the
 * fan-out numbers include the subscribers' own CPU time.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Etcd3 } from "etcd3";
import { NbApi } from "../src/nb/api.js";
import { executePlan, loadState, parseTopology, planApply } from "../src/nb/apply.js";
import { NbPublisher } from "../src/nb/pubsub/publisher.js";
import { NbSubscriber } from "../src/nb/pubsub/subscriber.js";
import { networkTopic } from "../src/nb/pubsub/message.js";
import { EmbeddedStore } from "../src/nb/store/embedded.js";
import { NB_PREFIX, openEtcdStore } from "../src/nb/store/etcd.js";
import type { NbStore } from "../src/nb/store/types.js";
import { KIND } from "../src/nb/sync/refs.js";
import { freeTcpPort } from "../src/sandbox/ovs.js";
import { makeRunDir } from "../src/sandbox/rundir.js";
import { printTable, writeResult } from "./report.js";

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const PHASE_MS = 2500;
const IN_FLIGHT = 16;
const SUBSCRIBERS = 100;
const FANOUT_WRITES = 150;
const FANOUT_GAP_MS = 10;

interface Etcd {
  proc: ChildProcess;
  endpoint: string;
}

async function startEtcd(dir: string): Promise<Etcd> {
  const bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"].find((p) => existsSync(p));
  if (!bin) throw new Error("etcd not found: install etcd-server: bash scripts/setup");
  const client = await freeTcpPort();
  const peer = await freeTcpPort();
  const proc = spawn(
    bin,
    [
      "--name=bench",
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=bench=http://127.0.0.1:${peer}`,
      "--log-level=error",
      "--logger=zap",
    ],
    { stdio: "ignore" },
  );
  if (proc.pid) writeFileSync(join(dir, "etcd.pid"), `${proc.pid}\n`);
  const endpoint = `http://127.0.0.1:${client}`;
  for (let i = 0; i < 200; i++) {
    try {
      const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
      if (((await res.json()) as { health?: string }).health === "true") return { proc, endpoint };
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  proc.kill("SIGKILL");
  throw new Error("bench etcd did not become healthy");
}

/** Run `op` with `inFlight` concurrent loops for `ms`; operations per second. */
async function throughput(ms: number, inFlight: number, op: (worker: number, i: number) => Promise<void>) {
  const deadline = performance.now() + ms;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await op(w, i);
        done++;
      }
    }),
  );
  return Math.round(done / ((performance.now() - t0) / 1000));
}

async function storeThroughput(store: NbStore, tag: string) {
  const kind = `bench${tag}`;
  const creates = await throughput(PHASE_MS, IN_FLIGHT, async (w, i) => {
    await store.txn([{ op: "put", kind, key: `c-${w}-${i}`, value: { w, i }, expectVersion: 0 }]);
  });
  // CAS: each writer owns a few keys, so the numbers measure the store, not conflicts
  const casKind = `${kind}cas`;
  await store.txn(
    Array.from({ length: IN_FLIGHT * 4 }, (_, k) => ({
      op: "put" as const,
      kind: casKind,
      key: `k${k}`,
      value: 0,
      expectVersion: 0,
    })),
  );
  const updates = await throughput(PHASE_MS, IN_FLIGHT, async (w, i) => {
    const key = `k${w * 4 + (i % 4)}`;
    const cur = (await store.get(casKind, key))!;
    await store.txn([
      { op: "put", kind: casKind, key, value: (cur.value as number) + 1, expectVersion: cur.version },
    ]);
  });
  const reads = await throughput(PHASE_MS, IN_FLIGHT, async (w, i) => {
    await store.get(kind, `c-${w}-${i % 50}`);
  });
  return { createsPerSec: creates, casUpdatesPerSec: updates, readsPerSec: reads };
}

async function etcdctlLoop(endpoint: string, ms: number): Promise<number> {
  const deadline = performance.now() + ms;
  const t0 = performance.now();
  let n = 0;
  while (performance.now() < deadline) {
    await run("etcdctl", [`--endpoints=${endpoint}`, "put", `/bench/etcdctl/${n}`, `v${n}`], {
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    n++;
  }
  return Number((n / ((performance.now() - t0) / 1000)).toFixed(1));
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface FanOut {
  subscribers: number;
  writes: number;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * Write FANOUT_WRITES changes to one network, each stamped with its start time;
 * `subscribe` wires SUBSCRIBERS receivers that call `seen(stamp)`.
 */
async function fanOut(
  store: NbStore,
  subscribe: (seen: (stamp: number) => void) => Promise<() => Promise<void>>,
  network: string,
): Promise<FanOut> {
  const latencies: number[] = [];
  const close = await subscribe((stamp) => latencies.push(performance.now() - stamp));
  await sleep(500);
  const want = FANOUT_WRITES * SUBSCRIBERS;
  for (let i = 0; i < FANOUT_WRITES; i++) {
    const stamp = performance.now();
    await store.txn([
      { op: "put", kind: KIND.network, key: network, value: { id: network, tenantId: "bench", i, stamp } },
    ]);
    await sleep(FANOUT_GAP_MS);
  }
  const deadline = Date.now() + 10_000;
  while (latencies.length < want && Date.now() < deadline) await sleep(20);
  await close();
  const sorted = [...latencies].sort((a, b) => a - b);
  const r = (x: number) => Number(x.toFixed(2));
  return {
    subscribers: SUBSCRIBERS,
    writes: FANOUT_WRITES,
    samples: latencies.length,
    p50Ms: r(percentile(sorted, 50)),
    p99Ms: r(percentile(sorted, 99)),
    maxMs: r(sorted[sorted.length - 1] ?? Number.NaN),
  };
}

const APPLY_PORTS = 1000;

/** One tenant, one Geneve network, a /16 with DHCP, and APPLY_PORTS ports (MAC and address given, or not). */
function applyTopology(given: boolean): Record<string, unknown> {
  const hex = (n: number): string => n.toString(16).padStart(2, "0");
  return {
    tenant: "bench",
    tenants: ["bench"],
    networks: [{ id: "net1", networkType: "geneve" }],
    subnets: [{ id: "sub1", networkId: "net1", cidr: "10.1.0.0/16", enableDhcp: true }],
    ports: Array.from({ length: APPLY_PORTS }, (_, i) =>
      given
        ? {
            id: `p${i}`,
            networkId: "net1",
            macAddress: `fa:16:3e:00:${hex(i >> 8)}:${hex(i & 255)}`,
            fixedIps: [{ subnetId: "sub1", ipAddress: `10.1.${(i + 10) >> 8}.${(i + 10) & 255}` }],
          }
        : { id: `p${i}`, networkId: "net1" },
    ),
  };
}

/** Seconds for `nb apply` of the topology into a store, in process. */
async function applySeconds(store: NbStore, doc: Record<string, unknown>, perCall: boolean): Promise<number> {
  const api = new NbApi(store);
  const t0 = performance.now();
  const plan = planApply(parseTopology(doc), await loadState(api));
  await executePlan(api, plan, { perCall });
  const s = (performance.now() - t0) / 1000;
  if (plan.changes.length !== APPLY_PORTS + 3)
    throw new Error(`apply planned ${plan.changes.length} changes`);
  if ((await api.list("lport")).length !== APPLY_PORTS) throw new Error("apply did not create every port");
  return Number(s.toFixed(2));
}

interface ApplyCase {
  store: "etcd" | "embedded";
  ports: "given" | "allocated";
  batchedSec: number;
  perCallSec: number;
}

async function applyBench(
  dir: string,
  endpoint: string,
): Promise<{ cases: ApplyCase[]; cliEtcdSec: number }> {
  const raw = new Etcd3({ hosts: [endpoint] });
  const wipe = async (): Promise<void> => void (await raw.delete().prefix(NB_PREFIX));
  let n = 0;
  const once = async (kind: "etcd" | "embedded", given: boolean, perCall: boolean): Promise<number> => {
    const doc = applyTopology(given);
    if (kind === "etcd") {
      await wipe();
      const store = await openEtcdStore([endpoint]);
      try {
        return await applySeconds(store, doc, perCall);
      } finally {
        await store.close();
      }
    }
    const store = await EmbeddedStore.open(join(dir, `apply-${n++}`), { compactEveryRecords: 0 });
    try {
      return await applySeconds(store, doc, perCall);
    } finally {
      await store.close();
    }
  };
  const cases: ApplyCase[] = [];
  try {
    for (const kind of ["etcd", "embedded"] as const) {
      for (const given of [true, false]) {
        process.stdout
          .write(`nb apply of ${APPLY_PORTS} ports into ${kind}, ${given ? "given" : "allocated"} …
`);
        const batchedSec = await once(kind, given, false);
        const perCallSec = await once(kind, given, true);
        cases.push({ store: kind, ports: given ? "given" : "allocated", batchedSec, perCallSec });
      }
    }
    await wipe();
    const file = join(dir, "apply.json");
    writeFileSync(file, JSON.stringify(applyTopology(true)));
    const main = join(import.meta.dirname, "..", "src", "cli", "main.js");
    const t0 = performance.now();
    await run(
      process.execPath,
      [main, "nb", "apply", "-f", file, "--db", `etcd://${endpoint.replace(/^http:\/\//, "")}`],
      {
        env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "silent" },
        maxBuffer: 16 << 20,
      },
    );
    const cliEtcdSec = Number(((performance.now() - t0) / 1000).toFixed(2));
    await wipe();
    return { cases, cliEtcdSec };
  } finally {
    raw.close();
  }
}

function stampOf(value: unknown): number | undefined {
  const s = (value as { stamp?: unknown } | undefined)?.stamp;
  return typeof s === "number" ? s : undefined;
}

export async function nb(): Promise<void> {
  const loadBefore = loadavg().map((x) => Number(x.toFixed(2)));
  const dir = makeRunDir("bench-nb");
  let etcd: Etcd | undefined;
  const stores: NbStore[] = [];
  try {
    etcd = await startEtcd(dir);
    const embedded = await EmbeddedStore.open(join(dir, "embedded"), { compactEveryRecords: 0 });
    stores.push(embedded);
    const etcdStore = await openEtcdStore([etcd.endpoint]);
    stores.push(etcdStore);

    process.stdout.write("write/read throughput …\n");
    const tput = {
      embedded: await storeThroughput(embedded, "e"),
      etcd: await storeThroughput(etcdStore, "x"),
    };
    process.stdout.write("etcdctl put loop …\n");
    const etcdctlPutsPerSec = await etcdctlLoop(etcd.endpoint, PHASE_MS);

    process.stdout.write(`watch fan-out to ${SUBSCRIBERS} subscribers …\n`);
    const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
    const pub = await NbPublisher.start({ store: embedded, bind, heartbeatMs: 1000 });
    const zmq = await fanOut(
      embedded,
      async (seen) => {
        const subs = Array.from({ length: SUBSCRIBERS }, () =>
          NbSubscriber.connect(bind, {
            onChange: (m) => {
              const s = stampOf(m.value);
              if (s !== undefined) seen(s);
            },
            onResync: () => undefined,
          }),
        );
        for (const s of subs) s.subscribe(networkTopic("fan-zmq"));
        return async () => {
          for (const s of subs) await s.close();
        };
      },
      "fan-zmq",
    );
    await pub.close();

    const etcdWatch = await fanOut(
      etcdStore,
      async (seen) => {
        const clients = await Promise.all(
          Array.from({ length: SUBSCRIBERS }, () => openEtcdStore([etcd!.endpoint])),
        );
        const watches = await Promise.all(
          clients.map((c) =>
            c.watch({ kinds: [KIND.network] }, (ev) => {
              const s = ev.type === "put" ? stampOf(ev.object.value) : undefined;
              if (s !== undefined) seen(s);
            }),
          ),
        );
        return async () => {
          for (const w of watches) await w.close();
          for (const c of clients) await c.close();
        };
      },
      "fan-etcd",
    );

    const embeddedWatch = await fanOut(
      embedded,
      async (seen) => {
        const watches = await Promise.all(
          Array.from({ length: SUBSCRIBERS }, () =>
            embedded.watch({ kinds: [KIND.network] }, (ev) => {
              const s = ev.type === "put" ? stampOf(ev.object.value) : undefined;
              if (s !== undefined) seen(s);
            }),
          ),
        );
        return async () => {
          for (const w of watches) await w.close();
        };
      },
      "fan-embedded",
    );

    const apply = await applyBench(dir, etcd.endpoint);

    const ratios = {
      etcdDriverCreatesVsEtcdctlPut: Number((tput.etcd.createsPerSec / etcdctlPutsPerSec).toFixed(1)),
      embeddedVsEtcdCreates: Number((tput.embedded.createsPerSec / tput.etcd.createsPerSec).toFixed(2)),
      embeddedVsEtcdCasUpdates: Number(
        (tput.embedded.casUpdatesPerSec / tput.etcd.casUpdatesPerSec).toFixed(2),
      ),
      embeddedVsEtcdReads: Number((tput.embedded.readsPerSec / tput.etcd.readsPerSec).toFixed(2)),
      zmqVsEtcdWatchP99: Number((zmq.p99Ms / etcdWatch.p99Ms).toFixed(2)),
      ...Object.fromEntries(
        apply.cases.map((c) => [
          `applyPerCallVsBatched_${c.store}_${c.ports}`,
          Number((c.perCallSec / c.batchedSec).toFixed(1)),
        ]),
      ),
    };

    process.stdout.write(`\nthroughput (${IN_FLIGHT} in flight, ${PHASE_MS} ms per phase)\n`);
    printTable([
      {
        store: "embedded",
        "creates/s": tput.embedded.createsPerSec,
        "CAS updates/s": tput.embedded.casUpdatesPerSec,
        "reads/s": tput.embedded.readsPerSec,
      },
      {
        store: "etcd (1 member)",
        "creates/s": tput.etcd.createsPerSec,
        "CAS updates/s": tput.etcd.casUpdatesPerSec,
        "reads/s": tput.etcd.readsPerSec,
      },
      { store: "etcdctl put loop", "creates/s": etcdctlPutsPerSec, "CAS updates/s": "-", "reads/s": "-" },
    ]);
    process.stdout.write(
      `\nwatch fan-out to ${SUBSCRIBERS} subscribers (write start → receipt, ${FANOUT_WRITES} writes)\n`,
    );
    printTable(
      [
        ["ZeroMQ pub/sub (embedded)", zmq],
        ["etcd watch", etcdWatch],
        ["embedded in-process watch", embeddedWatch],
      ].map(([name, f]) => {
        const x = f as FanOut;
        return {
          feed: name as string,
          samples: `${x.samples}/${x.writes * x.subscribers}`,
          "p50 ms": x.p50Ms,
          "p99 ms": x.p99Ms,
          "max ms": x.maxMs,
        };
      }),
    );
    process.stdout.write(`\nnb apply of ${APPLY_PORTS} ports on one /16 network (seconds, in process)\n`);
    printTable(
      apply.cases.map((c) => ({
        store: c.store,
        "MAC and IP": c.ports,
        "batched s": c.batchedSec,
        "per call s": c.perCallSec,
        speed: `${(c.perCallSec / c.batchedSec).toFixed(1)}x`,
      })),
    );
    process.stdout.write(`flowdrake nb apply -f (new process, etcd, given): ${apply.cliEtcdSec} s\n`);
    process.stdout.write("\n");
    for (const [k, v] of Object.entries(ratios)) process.stdout.write(`${k.padEnd(34)} ${v}\n`);

    const path = writeResult("nb", {
      command: "npm run bench -- nb",
      settings: {
        phaseMs: PHASE_MS,
        inFlight: IN_FLIGHT,
        subscribers: SUBSCRIBERS,
        fanOutWrites: FANOUT_WRITES,
      },
      etcd: (await run("etcd", ["--version"])).stdout.split("\n")[0],
      throughput: { ...tput, etcdctlPutLoop: { putsPerSec: etcdctlPutsPerSec } },
      fanOut: { zmqPubsub: zmq, etcdWatch, embeddedWatch },
      apply: { ports: APPLY_PORTS, cases: apply.cases, cliEtcdSec: apply.cliEtcdSec },
      ratios,
      loadAverage: { before: loadBefore, after: loadavg().map((x) => Number(x.toFixed(2))) },
      notes:
        "one Node process drives writers and all subscribers; etcd single member on loopback; embedded fsyncs every commit; " +
        "apply: seconds from reading the store to the last commit, per-call = one lock, read set and transaction per object",
    });
    process.stdout.write(`results: ${path}\n`);
  } finally {
    for (const s of stores) await s.close().catch(() => undefined);
    etcd?.proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}
