/**
 * `nb apply` and `NbApi.createMany` as batches (issue 9, item 7), against a
 * real etcd and the embedded store: 1,000 ports on one /16 (half with MAC and
 * address given, half allocated) land with every port, IPAM reservation and
 * version right, in a few dozen transactions, each lock taken once; the
 * batched and the one-call-at-a-time paths allocate the same addresses; a
 * racing writer in the middle stops the apply with a conflict, leaving the
 * earlier transactions committed and nothing of the failed one; a validation
 * error commits the calls before it; and an etcd started with a small
 * `--max-txn-ops` makes the batch shrink its transactions instead of failing.
 * Timing is the benchmark's business (bench/nb.ts), not this file's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Etcd3 } from "etcd3";
import { NbApi } from "../../src/nb/api.js";
import { type Change, executePlan, loadState, parseTopology, planApply } from "../../src/nb/apply.js";
import { IPAM_KINDS, ValidationError } from "../../src/nb/model/index.js";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import { ConflictError } from "../../src/nb/store/errors.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { etcdBinary, useEtcd } from "../harness/etcd.js";
import { freeTcpPort, makeRunDir, waitFor } from "../harness/index.js";

type Obj = Record<string, unknown>;

const hex = (n: number): string => n.toString(16).padStart(2, "0");
const ipOf = (base: string, i: number): string => `${base}.${(i + 10) >> 8}.${(i + 10) & 255}`;

/**
 * A tenant with one Geneve network, a /16 subnet with DHCP, and `n` ports:
 * even ones with a MAC and address given, odd ones left to the allocator.
 */
function topology(tenant: string, net: string, base: string, n: number, macByte: number): Obj {
  return {
    tenant,
    tenants: [tenant],
    networks: [{ id: net, networkType: "geneve" }],
    subnets: [{ id: `${net}-sub`, networkId: net, cidr: `${base}.0.0/16`, enableDhcp: true }],
    ports: Array.from({ length: n }, (_, i) =>
      i % 2 === 0
        ? {
            id: `${net}-p${i}`,
            networkId: net,
            macAddress: `fa:16:3e:${hex(macByte)}:${hex(i >> 8)}:${hex(i & 255)}`,
            fixedIps: [{ subnetId: `${net}-sub`, ipAddress: ipOf(base, i) }],
          }
        : { id: `${net}-p${i}`, networkId: net },
    ),
  };
}

/** Check every port of `net` against the file, and every reservation against the ports. */
async function checkApplied(store: NbStore, api: NbApi, file: Obj, net: string): Promise<void> {
  const want = file.ports as Obj[];
  const ports = await api.list("lport", { networkId: net });
  expect(ports.map((p) => p.key).sort()).toEqual(want.map((p) => p.id as string).sort());
  const subnet = await api.get("subnet", `${net}-sub`);
  const ips = new Set<string>();
  const macs = new Set<string>();
  for (const p of ports) {
    expect(p.version, p.key).toBe(1);
    const given = want.find((w) => w.id === p.key)!;
    if (given.macAddress) {
      expect(p.value.macAddress).toBe(given.macAddress);
      expect(p.value.fixedIps).toEqual(given.fixedIps);
    } else {
      expect(p.value.macAddress).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
      expect(p.value.fixedIps).toHaveLength(1);
      expect(p.value.fixedIps[0]!.subnetId).toBe(`${net}-sub`);
    }
    const ip = p.value.fixedIps[0]!.ipAddress;
    expect(ip).not.toBe(subnet.value.gatewayIp);
    ips.add(ip);
    macs.add(p.value.macAddress);
  }
  expect(ips.size).toBe(want.length);
  expect(macs.size).toBe(want.length);
  const owners = async (kind: string): Promise<Map<string, string>> => {
    const rs = (await store.list(kind)).filter((r) => r.key.startsWith(`${net}/`));
    for (const r of rs) expect(r.version, `${kind} ${r.key}`).toBe(1);
    return new Map(rs.map((r) => [r.key.slice(net.length + 1), (r.value as { owner: string }).owner]));
  };
  const ipRes = await owners(IPAM_KINDS.ip);
  const macRes = await owners(IPAM_KINDS.mac);
  expect(ipRes.size).toBe(want.length);
  expect(macRes.size).toBe(want.length);
  for (const p of ports) {
    expect(ipRes.get(p.value.fixedIps[0]!.ipAddress)).toBe(`lport/${p.key}`);
    expect(macRes.get(p.value.macAddress)).toBe(`lport/${p.key}`);
  }
  const seg = (await store.list(IPAM_KINDS.seg)).filter((r) => (r.value as Obj).owner === `lswitch/${net}`);
  expect(seg).toHaveLength(1);
}

function batchSuite(name: string, open: () => Promise<NbStore>, etcdHosts?: () => string[]): void {
  describe(`batched writes into ${name}`, { timeout: 120_000 }, () => {
    let store: NbStore;
    let api: NbApi;
    beforeAll(async () => {
      store = await open();
      api = new NbApi(store);
    });
    afterAll(async () => {
      await store?.close();
    });

    it("nb apply of 1,000 ports: every port, reservation and version right, few transactions, each lock once", async () => {
      const file = topology("t1", "net1", "10.1", 1000, 1);
      const lockPuts: string[] = [];
      let stopWatch = async (): Promise<void> => undefined;
      if (etcdHosts) {
        const raw = new Etcd3({ hosts: etcdHosts() });
        const w = await raw.watch().prefix("/flowdrake/lock/").create();
        w.on("put", (kv) => lockPuts.push(kv.key.toString()));
        stopWatch = async () => {
          await w.cancel();
          raw.close();
        };
      }
      const before = await store.revision();
      const plan = planApply(parseTopology(file), await loadState(api));
      expect(plan.locks).toEqual(["tenant", "tenant/t1"]);
      const done: Change[] = [];
      await executePlan(api, plan, { onChange: (c) => void done.push(c) });
      expect(done).toEqual(plan.changes);
      expect(done).toHaveLength(1003);
      const used = (await store.revision()) - before;
      await checkApplied(store, api, file, "net1");
      // 3,004 ops (1,000 ports with 2 reservations each, tenant, network and its
      // segment, subnet) in transactions of at most 127: 24 of them; on etcd each
      // of the two locks adds a put and a delete of its key
      expect(used).toBeGreaterThanOrEqual(24);
      expect(used).toBeLessThanOrEqual(etcdHosts ? 30 : 26);
      if (etcdHosts) {
        await waitFor(() => lockPuts.length >= 2, 5000, "lock key puts");
        await stopWatch();
        expect(lockPuts.sort()).toEqual(["/flowdrake/lock/tenant", "/flowdrake/lock/tenant/t1"]);
      }
      const again = planApply(parseTopology(file), await loadState(api));
      expect(again.changes).toEqual([]);
    });

    it("allocates the same addresses batched as one call at a time", async () => {
      const a = topology("t2", "net2", "10.2", 120, 2);
      const b = topology("t3", "net3", "10.2", 120, 3);
      await executePlan(api, planApply(parseTopology(a), await loadState(api)));
      await executePlan(api, planApply(parseTopology(b), await loadState(api)), { perCall: true });
      await checkApplied(store, api, a, "net2");
      await checkApplied(store, api, b, "net3");
      const addrs = async (net: string): Promise<string[]> =>
        (await api.list("lport", { networkId: net }))
          .sort((x, y) => Number(x.key.split("-p")[1]) - Number(y.key.split("-p")[1]))
          .map((p) => p.value.fixedIps[0]!.ipAddress);
      const batched = await addrs("net2");
      expect(batched).toEqual(await addrs("net3"));
      // the odd ports got the lowest free addresses: .1 is the gateway, .2–.9 free, .10 up given to even ports
      expect(batched.slice(0, 8)).toEqual([
        "10.2.0.10",
        "10.2.0.2",
        "10.2.0.12",
        "10.2.0.3",
        "10.2.0.14",
        "10.2.0.4",
        "10.2.0.16",
        "10.2.0.5",
      ]);
    });

    it("a racing writer mid-apply: a conflict, earlier transactions committed, nothing of the failed one", async () => {
      const file = topology("t4", "net4", "10.4", 300, 4);
      const plan = planApply(parseTopology(file), await loadState(api));
      const victim = (file.ports as Obj[])[250]!;
      const victimIp = (victim.fixedIps as Obj[])[0]!.ipAddress as string;
      const done: Change[] = [];
      const err = await executePlan(api, plan, {
        onChange: async (c) => {
          done.push(c);
          // after the first transaction, another writer takes the address port 250 will reserve
          if (done.length === 1)
            await store.txn([
              { op: "put", kind: IPAM_KINDS.ip, key: `net4/${victimIp}`, value: { owner: "lport/intruder" } },
            ]);
        },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({ kind: IPAM_KINDS.ip, key: `net4/${victimIp}`, expectedVersion: 0 });
      const ports = await api.list("lport", { networkId: "net4" });
      const reported = done.filter((c) => c.kind === "lport").map((c) => c.key);
      expect(ports.map((p) => p.key).sort()).toEqual([...reported].sort());
      // whole transactions: port 250's transaction and everything after it are missing
      expect(reported.length).toBeGreaterThan(0);
      expect(reported.length).toBeLessThan(250);
      expect(reported).toEqual((file.ports as Obj[]).slice(0, reported.length).map((p) => p.id));
      // no reservation without its port, none missing for a port that exists
      const ipRes = (await store.list(IPAM_KINDS.ip)).filter((r) => r.key.startsWith("net4/"));
      expect(ipRes.map((r) => (r.value as Obj).owner).sort()).toEqual(
        [...reported.map((k) => `lport/${k}`), "lport/intruder"].sort(),
      );
      const macRes = (await store.list(IPAM_KINDS.mac)).filter((r) => r.key.startsWith("net4/"));
      expect(macRes).toHaveLength(reported.length);
    });

    it("createMany: one batch, committed revisions set; a validation error commits the calls before it", async () => {
      await api.create("tenant", { id: "t5" });
      await api.create("lswitch", { id: "net5", tenantId: "t5" });
      await api.create("subnet", { id: "net5-sub", tenantId: "t5", networkId: "net5", cidr: "10.5.0.0/16" });
      const items = Array.from({ length: 150 }, (_, i) => ({
        kind: "lport" as const,
        input: { id: `m${i}`, tenantId: "t5", networkId: "net5" },
      }));
      const before = await store.revision();
      const made = await api.createMany(items);
      expect(made.map((m) => m.version)).toEqual(items.map(() => 1));
      for (const m of made) {
        expect(m.modRevision).toBeGreaterThan(before);
        expect((await store.get("lport", m.key))!.modRevision).toBe(m.modRevision);
      }
      expect(new Set(made.map((m) => m.modRevision)).size).toBeLessThanOrEqual(5);
      const bad = [
        ...items.slice(0, 60).map((it) => ({ ...it, input: { ...it.input, id: `n${it.input.id}` } })),
        { kind: "lport" as const, input: { id: "n-bad", tenantId: "t5", networkId: "nope" } },
        { kind: "lport" as const, input: { id: "n-after", tenantId: "t5", networkId: "net5" } },
      ];
      const err = await api.createMany(bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect(err).toMatchObject({ key: "n-bad", field: "networkId" });
      const created = (await api.list("lport", { networkId: "net5" })).map((p) => p.key);
      expect(created.filter((k) => k.startsWith("n"))).toHaveLength(60);
      expect(created).not.toContain("n-after");
    });

    it("what a file or createMany gives (segment id, address, MAC) is not allocated to an object listed before it", async () => {
      // The segment id and MAC the allocators would hand out next: the lowest
      // free segment (seen by creating and deleting a network), and the MAC the
      // pinned random source below yields first.
      await api.create("tenant", { id: "t7" });
      const probe = await api.create("lswitch", { id: "probe7", tenantId: "t7", networkType: "geneve" });
      const nextSeg = probe.value.segmentationId!;
      await api.delete("lswitch", "probe7");
      let draws = 0;
      const pinned = (): Uint8Array => Uint8Array.from([0xaa, 0xbb, 0xc0 + (draws++ % 16)]);
      const fileApi = new NbApi(store, { randomBytes: pinned });
      const file = (tenant: string, net: string, base: string, seg: number | undefined): Obj => ({
        tenant,
        tenants: [tenant],
        networks: [
          { id: `${net}-first`, networkType: "geneve" },
          { id: net, networkType: "geneve", ...(seg === undefined ? {} : { segmentationId: seg }) },
        ],
        subnets: [{ id: `${net}-sub`, networkId: net, cidr: `${base}.0/24` }],
        ports: [
          { id: `${net}-a`, networkId: net },
          {
            id: `${net}-b`,
            networkId: net,
            macAddress: "fa:16:3e:aa:bb:c0",
            fixedIps: [{ subnetId: `${net}-sub`, ipAddress: `${base}.2` }],
          },
        ],
      });
      const check = async (net: string, base: string): Promise<void> => {
        const a = await api.get("lport", `${net}-a`);
        const b = await api.get("lport", `${net}-b`);
        expect(b.value.macAddress).toBe("fa:16:3e:aa:bb:c0");
        expect(b.value.fixedIps[0]!.ipAddress).toBe(`${base}.2`);
        // the first free address and the first MAC drawn were the ones b gives
        expect(a.value.fixedIps[0]!.ipAddress).toBe(`${base}.3`);
        expect(a.value.macAddress).toMatch(/^fa:16:3e:aa:bb:c[1-9a-f]$/);
      };
      // batched: the segment the first network would get is the second's
      const seven = file("t7", "net7", "10.7.0", nextSeg);
      const plan = planApply(parseTopology(seven), await loadState(fileApi));
      expect(plan.claims.length).toBeGreaterThanOrEqual(3);
      await executePlan(fileApi, plan);
      expect((await api.get("lswitch", "net7")).value.segmentationId).toBe(nextSeg);
      expect((await api.get("lswitch", "net7-first")).value.segmentationId).not.toBe(nextSeg);
      await check("net7", "10.7.0");
      // one call at a time allocates what the batch does
      draws = 0;
      const eight = file("t8", "net8", "10.8.0", undefined);
      await executePlan(fileApi, planApply(parseTopology(eight), await loadState(fileApi)), {
        perCall: true,
      });
      await check("net8", "10.8.0");
      // createMany claims what its own items give
      draws = 0;
      await api.create("tenant", { id: "t9" });
      await api.create("lswitch", { id: "net9", tenantId: "t9" });
      await api.create("subnet", { id: "net9-sub", tenantId: "t9", networkId: "net9", cidr: "10.9.0.0/24" });
      const ports = (file("t9", "net9", "10.9.0", undefined).ports as Obj[]).map((p) => ({
        kind: "lport" as const,
        input: { ...p, tenantId: "t9" },
      }));
      await fileApi.createMany(ports);
      await check("net9", "10.9.0");
    });
  });
}

const etcd = useEtcd({ label: "nb-apply-batch" });
batchSuite(
  "etcd",
  () => openEtcdStore(etcd().endpoints),
  () => etcd().endpoints,
);

let dir: string;
batchSuite("the embedded store", async () => {
  dir = makeRunDir("nb-apply-batch");
  return EmbeddedStore.open(join(dir, "db"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** An etcd that allows only 16 ops per transaction (`--max-txn-ops`): the batch must shrink. */
describe("batched writes into an etcd with --max-txn-ops 16", { timeout: 120_000 }, () => {
  let proc: ChildProcess | undefined;
  let endpoint = "";
  let small: NbStore | undefined;
  let run = "";
  beforeAll(async () => {
    run = makeRunDir("nb-small-txn");
    const [client, peer] = [await freeTcpPort(), await freeTcpPort()];
    endpoint = `http://127.0.0.1:${client}`;
    proc = spawn(
      etcdBinary(),
      [
        "--name=small",
        `--data-dir=${join(run, "etcd")}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-cluster=small=http://127.0.0.1:${peer}`,
        "--max-txn-ops=16",
        "--log-level=error",
        "--logger=zap",
      ],
      { stdio: "ignore" },
    );
    small = await waitFor(
      () => openEtcdStore([endpoint], { retryMs: 2000 }),
      30_000,
      "etcd --max-txn-ops 16",
    );
  });
  afterAll(async () => {
    await small?.close();
    proc?.kill("SIGKILL");
    if (proc && proc.exitCode === null && proc.signalCode === null) await once(proc, "exit");
    if (run) rmSync(run, { recursive: true, force: true });
  });

  it("applies 100 ports in transactions etcd accepts", async () => {
    const api = new NbApi(small!);
    const file = topology("t6", "net6", "10.6", 100, 6);
    const before = await small!.revision();
    await executePlan(api, planApply(parseTopology(file), await loadState(api)));
    await checkApplied(small!, api, file, "net6");
    // 304 ops at most 15 per transaction (16 less the commit marker): at least 21 transactions
    expect((await small!.revision()) - before).toBeGreaterThanOrEqual(21);
  });
});
