/**
 * One malformed value in etcd costs only itself (issue 13, defect 1), through
 * NbApi against a real etcd: a port put with `etcdctl` that is not JSON, one
 * whose JSON fails the port schema, one whose id is not its key, and an IPAM
 * reservation that is not JSON. `list` leaves them out and `scan` reports them
 * with the reason; `get`/`update` refuse them with MalformedObjectError and
 * write nothing; other writes go on (a port create allocates past the
 * malformed reservation); `delete` removes a malformed port together with the
 * reservations it owns; `nb apply` refuses a file naming one and leaves the
 * others alone; a value fixed in etcd reads normally again.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbApi } from "../../src/nb/api.js";
import { executePlan, parseTopology, planApply, readState } from "../../src/nb/apply.js";
import { IPAM_KINDS, MalformedObjectError, ValidationError } from "../../src/nb/model/index.js";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import { ConflictError } from "../../src/nb/store/errors.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { useEtcd } from "../harness/etcd.js";

const etcd = useEtcd({ label: "nb-malformed" });
let store: NbStore;
let api: NbApi;

/** `etcdctl put` of raw text under the NB prefix, as an operator would type it. */
async function etcdctlPut(path: string, text: string): Promise<void> {
  await promisify(execFile)("etcdctl", [`--endpoints=${etcd().endpoints.join(",")}`, "put", path, text], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
}

/** Every stored key with its version: what "nothing was written" compares. */
async function snapshot(): Promise<string> {
  const kinds = ["lport", "lswitch", "subnet", "secgroup", ...Object.values(IPAM_KINDS)];
  const all = await Promise.all(kinds.map((k) => store.list(k)));
  return JSON.stringify(all.flat().map((o) => [o.kind, o.key, o.version]));
}

const goodPort = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  tenantId: "t1",
  networkId: "net1",
  ...extra,
});

beforeAll(async () => {
  store = await openEtcdStore(etcd().endpoints);
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "net1", tenantId: "t1" });
  await api.create("subnet", { id: "sub1", tenantId: "t1", networkId: "net1", cidr: "10.0.0.0/24" });
  await api.create("lport", goodPort("p1"));
  await etcdctlPut("/flowdrake/nb/lport/bad1", '{"id":"bad1",');
  await store.txn([
    {
      op: "put",
      kind: "lport",
      key: "bad2",
      value: goodPort("bad2", { macAddress: "zz", fixedIps: [{ subnetId: "sub1", ipAddress: "10.0.0.9" }] }),
    },
    { op: "put", kind: "ipam.ip", key: "net1/10.0.0.9", value: { owner: "lport/bad2" } },
    { op: "put", kind: "lport", key: "bad3", value: goodPort("other") },
  ]);
  await etcdctlPut("/flowdrake/nb/ipam.ip/net1/10.0.0.3", "garbage");
});
afterAll(async () => {
  await store?.close();
});

describe("a malformed stored object costs only itself", () => {
  it("list leaves malformed objects out; scan reports each with its reason", async () => {
    expect((await api.list("lport")).map((o) => o.key)).toEqual(["p1"]);
    const { objects, malformed } = await api.scan("lport");
    expect(objects.map((o) => o.key)).toEqual(["p1"]);
    expect(malformed.map((m) => m.key)).toEqual(["bad1", "bad2", "bad3"]);
    expect(malformed[0]).toMatchObject({
      kind: "lport",
      version: 1,
      malformed: expect.stringMatching(/^not JSON: /),
    });
    expect(malformed[0]).not.toHaveProperty("raw");
    expect(malformed[1]).toMatchObject({
      malformed: "macAddress: is not a MAC address (xx:xx:xx:xx:xx:xx)",
      raw: { id: "bad2", macAddress: "zz" },
    });
    expect(malformed[2]!.malformed).toBe('id: is "other", not its key');
    // a filter drops a malformed object only when its JSON names another tenant
    expect((await api.scan("lport", { tenantId: "t9" })).malformed.map((m) => m.key)).toEqual(["bad1"]);
    expect((await api.scan("lport", { networkId: "net1" })).malformed.map((m) => m.key)).toEqual([
      "bad1",
      "bad2",
      "bad3",
    ]);
  });

  it("get and update refuse a malformed object, naming it and the reason, and write nothing", async () => {
    const before = await snapshot();
    const err = await api.get("lport", "bad1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedObjectError);
    expect(err).toMatchObject({
      kind: "lport",
      key: "bad1",
      version: 1,
      reason: expect.stringMatching(/^not JSON/),
    });
    await expect(api.find("lport", "bad2")).rejects.toThrow(
      /lport bad2: the stored value is malformed: macAddress/,
    );
    await expect(api.update("lport", "bad1", { name: "x" })).rejects.toBeInstanceOf(MalformedObjectError);
    await expect(api.update("lport", "bad3", { name: "x" })).rejects.toThrow(/not its key/);
    const dup = await api.create("lport", goodPort("bad1")).catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(ValidationError);
    expect((dup as ValidationError).reason).toMatch(
      /^already exists \(its stored value is malformed: not JSON/,
    );
    expect(await snapshot()).toBe(before);
  });

  it("other writes go on: allocation skips a malformed reservation, and a given address it holds is refused", async () => {
    const p = await api.create("lport", goodPort("p2"));
    // 10.0.0.2 is p1's; 10.0.0.3 is held by the malformed reservation
    expect(p.value.fixedIps).toEqual([{ subnetId: "sub1", ipAddress: "10.0.0.4" }]);
    const err = await api
      .create("lport", goodPort("p3", { fixedIps: [{ subnetId: "sub1", ipAddress: "10.0.0.3" }] }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).reason).toBe(
      "10.0.0.3 is already used by a malformed reservation (ipam.ip net1/10.0.0.3)",
    );
    await api.update("lport", "p2", { name: "renamed" });
    await api.delete("lport", "p2");
  });

  it("nb apply refuses a file that names or refers to a malformed object, and leaves the others alone", async () => {
    const { state, malformed } = await readState(api);
    expect(malformed.map((m) => `${m.kind}/${m.key}`)).toEqual(["lport/bad1", "lport/bad2", "lport/bad3"]);
    const file = (ports: unknown[]) =>
      parseTopology({
        tenant: "t1",
        networks: ["net1"],
        subnets: [{ id: "sub1", networkId: "net1", cidr: "10.0.0.0/24" }],
        ports,
      });
    expect(() => planApply(file([goodPort("bad1")]), state, { malformed })).toThrow(
      /lport bad1: \(object\): the stored object is malformed \(not JSON: .*\); delete it first \(flowdrake nb port delete bad1\)/,
    );
    await store.txn([{ op: "put", kind: "secgroup", key: "sgbad", value: { id: "sgbad" } }]);
    const again = await readState(api);
    expect(() =>
      planApply(file([goodPort("p4", { securityGroups: ["sgbad"] })]), again.state, {
        malformed: again.malformed,
      }),
    ).toThrow(
      /lport p4: securityGroups\[0\]: secgroup sgbad is malformed in the store \(tenantId: is required\)/,
    );
    await store.txn([{ op: "delete", kind: "secgroup", key: "sgbad" }]);
    const plan = planApply(file([goodPort("p4")]), state, { malformed, prune: true });
    expect(plan.changes.map((c) => `${c.sign} ${c.key}`)).toEqual(["- p1", "+ p4"]);
    await executePlan(api, plan);
    expect((await api.list("lport")).map((o) => o.key)).toEqual(["p4"]);
    expect((await api.scan("lport")).malformed.map((m) => m.key)).toEqual(["bad1", "bad2", "bad3"]);
  });

  it("delete removes a malformed object and the reservations it owns; a stale version conflicts", async () => {
    await expect(api.delete("lport", "bad2", { expectVersion: 7 })).rejects.toBeInstanceOf(ConflictError);
    expect(await store.get("ipam.ip", "net1/10.0.0.9")).toBeDefined();
    await api.delete("lport", "bad2", { expectVersion: 1 });
    expect(await store.get("lport", "bad2")).toBeUndefined();
    expect(await store.get("ipam.ip", "net1/10.0.0.9")).toBeUndefined();
    await api.delete("lport", "bad1");
    expect(await store.get("lport", "bad1")).toBeUndefined();
    // the malformed reservation is not any port's: it stays until someone deletes the key
    expect((await store.get("ipam.ip", "net1/10.0.0.3"))?.malformed).toMatch(/^not JSON/);
    expect((await api.scan("lport")).malformed.map((m) => m.key)).toEqual(["bad3"]);
  });

  it("a value fixed in etcd reads normally again", async () => {
    await etcdctlPut("/flowdrake/nb/lport/bad3", JSON.stringify(goodPort("bad3")));
    const fixed = await api.get("lport", "bad3");
    expect(fixed).toMatchObject({ key: "bad3", version: 2, value: { id: "bad3", networkId: "net1" } });
    expect((await api.list("lport")).map((o) => o.key)).toEqual(["bad3", "p4"]);
    expect((await api.scan("lport")).malformed).toEqual([]);
  });
});
