/**
 * The `nb apply` planner, without a store: from a topology and a stored
 * state (plain data) it must produce the right change lines, the API calls in
 * dependency order, nothing for a state that already matches, prune only in
 * the file's tenants, claim the values the file gives, and refuse bad files
 * with errors naming object and field.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { Versioned } from "../../src/nb/api.js";
import { type Plan, type State, formatChange, parseTopology, planApply } from "../../src/nb/apply.js";
import { type ObjectKind, ValidationError } from "../../src/nb/model/index.js";

type Obj = Record<string, unknown>;

const EXAMPLE = parseYaml(
  readFileSync(join(import.meta.dirname, "..", "..", "examples", "topology.yaml"), "utf8"),
) as Obj;

const lines = (p: Plan): string[] => p.changes.map(formatChange);
const ops = (p: Plan): string[] =>
  p.steps.map((s) =>
    s.op === "addInterface" || s.op === "removeInterface"
      ? `${s.op} ${s.router} ${s.subnetId}`
      : `${s.op} ${s.kind} ${s.key}`,
  );

/** What the store would hold after applying `doc`: the parsed objects plus what the API allocates. */
function storedFrom(doc: Obj): State {
  const t = parseTopology(doc);
  const state: State = {};
  const put = (kind: ObjectKind, key: string, value: Obj): void => {
    (state[kind] ??= []).push({ kind, key, version: 1, modRevision: 1, value } as Versioned<unknown>);
  };
  for (const d of t.objects) {
    const v: Obj = { ...d.value };
    if (d.kind === "lswitch") {
      v.mtu ??= 1442;
      v.segmentationId ??= 77;
    }
    if (d.kind === "subnet") {
      v.ipVersion = 4;
      v.allocationPools = [{ start: "10.0.0.2", end: "10.0.0.254" }];
    }
    if (d.kind === "secgroup") v.rules = (v.rules as Obj[]).map((r, i) => ({ id: `gen-${i}`, ...r }));
    if (d.kind === "lport") {
      v.macAddress ??= "fa:16:3e:99:99:99";
      v.fixedIps = (v.fixedIps as Obj[]).map((f) => ({ ipAddress: "10.10.0.200", ...f }));
    }
    if (d.kind === "lrouter") {
      v.interfaces = (d.interfaces ?? []).map((itf, i) => ({
        subnetId: itf.subnetId,
        portId: `rp-${i}`,
        networkId: "net-x",
        ipAddress: itf.ipAddress ?? `10.${i}.0.1`,
        cidr: `10.${i}.0.0/24`,
        macAddress: "fa:16:3e:00:00:01",
      }));
    }
    put(d.kind, d.key, v);
  }
  return state;
}

function withObject(state: State, kind: ObjectKind, value: Obj, key = value.id as string): State {
  return { ...state, [kind]: [...(state[kind] ?? []), { kind, key, version: 3, modRevision: 9, value }] };
}

function mutate(state: State, kind: ObjectKind, key: string, f: (v: Obj) => void): State {
  const out: State = { ...state };
  out[kind] = (state[kind] ?? []).map((o) => {
    if (o.key !== key) return o;
    const v = structuredClone(o.value) as Obj;
    f(v);
    return { ...o, value: v };
  });
  return out;
}

function refusal(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

const port9 = (tenantId: string, extra: Obj = {}): Obj => ({
  id: "p9",
  tenantId,
  name: "",
  description: "",
  networkId: "net-a",
  macAddress: "fa:16:3e:00:00:09",
  fixedIps: [{ subnetId: "subnet-a", ipAddress: "10.10.0.9" }],
  deviceOwner: "",
  deviceId: "",
  adminStateUp: true,
  portSecurityEnabled: true,
  allowedAddressPairs: [],
  securityGroups: [],
  extraDhcpOptions: [],
  ...extra,
});

describe("planApply", () => {
  it("creates the example lab from nothing, in dependency order", () => {
    const plan = planApply(parseTopology(EXAMPLE), {});
    expect(lines(plan)).toEqual([
      "+ tenant demo",
      "+ secgroup sg-ssh-icmp",
      "+ network net-a",
      "+ network net-b",
      "+ subnet subnet-a",
      "+ subnet subnet-b",
      "+ router r1",
      "+ router r1 interface subnet-a",
      "+ router r1 interface subnet-b",
      "+ port vm1",
      "+ port vm2",
      "+ port vm3",
    ]);
    expect(ops(plan)).toEqual([
      "create tenant demo",
      "create secgroup sg-ssh-icmp",
      "create lswitch net-a",
      "create lswitch net-b",
      "create subnet subnet-a",
      "create subnet subnet-b",
      "create lrouter r1",
      "addInterface r1 subnet-a",
      "addInterface r1 subnet-b",
      "create lport vm1",
      "create lport vm2",
      "create lport vm3",
    ]);
    // the whole apply takes these locks once: the tenant kind's, and tenant demo's
    expect(plan.locks).toEqual(["tenant", "tenant/demo"]);
    const vm1 = plan.steps.find((s) => s.op === "create" && s.key === "vm1");
    expect(vm1).toMatchObject({
      value: {
        tenantId: "demo",
        macAddress: "fa:16:3e:0a:00:11",
        chassis: "host1",
        securityGroups: ["sg-ssh-icmp"],
      },
    });
  });

  it("plans nothing when the store already matches (allocated fields the file omits are not compared)", () => {
    const state = mutate(storedFrom(EXAMPLE), "lswitch", "net-a", (v) => void (v.mtu = 1442));
    expect(planApply(parseTopology(EXAMPLE), state, { prune: true }).changes).toEqual([]);
    const noSeg = structuredClone(EXAMPLE);
    for (const n of noSeg.networks as Obj[]) delete n.segmentationId;
    expect(planApply(parseTopology(noSeg), storedFrom(EXAMPLE)).changes).toEqual([]);
  });

  it("updates only the fields that differ, and clears what the file dropped", () => {
    let state = mutate(storedFrom(EXAMPLE), "lport", "vm1", (v) => {
      v.macAddress = "fa:16:3e:aa:aa:aa";
    });
    state = mutate(state, "lport", "vm2", (v) => {
      v.allowedAddressPairs = [{ ipAddress: "10.10.0.0/24" }];
    });
    state = mutate(state, "subnet", "subnet-b", (v) => {
      v.dnsNameservers = ["9.9.9.9"];
    });
    const plan = planApply(parseTopology(EXAMPLE), state);
    expect(lines(plan)).toEqual([
      "~ subnet subnet-b (dnsNameservers)",
      "~ port vm1 (macAddress)",
      "~ port vm2 (allowedAddressPairs)",
    ]);
    expect(plan.steps.find((s) => s.op === "update" && s.key === "vm1")).toMatchObject({
      patch: { macAddress: "fa:16:3e:0a:00:11" },
    });
    expect(plan.steps.find((s) => s.op === "update" && s.key === "vm2")).toMatchObject({
      patch: { allowedAddressPairs: [] },
    });
    const unbound = structuredClone(EXAMPLE);
    delete ((unbound.ports as Obj[])[2] as Obj).chassis;
    const p2 = planApply(parseTopology(unbound), storedFrom(EXAMPLE));
    expect(lines(p2)).toEqual(["~ port vm3 (chassis)"]);
    const step = p2.steps[0]!;
    expect(step.op === "update" && "chassis" in step.patch && step.patch.chassis === undefined).toBe(true);
  });

  it("prunes only in the tenants the file names, leaf objects first; router ports are never touched", () => {
    let state = withObject(storedFrom(EXAMPLE), "lport", port9("demo"));
    state = withObject(state, "lport", port9("other", { id: "p10" }));
    state = withObject(
      state,
      "lport",
      port9("demo", { id: "rport", deviceOwner: "network:router_interface" }),
    );
    const topo = parseTopology(EXAMPLE);
    expect(planApply(topo, state).changes).toEqual([]);
    const plan = planApply(topo, state, { prune: true });
    expect(lines(plan)).toEqual(["- port p9"]);
    expect(plan.steps).toEqual([{ op: "delete", kind: "lport", key: "p9", change: 0 }]);
    expect(plan.versions["lport/p9"]).toBe(3);
    // a delete locks the stored object's tenant
    expect(plan.locks).toEqual(["tenant/demo"]);
    const other = planApply(
      parseTopology({ tenant: "other", ports: [] }),
      withObject({}, "lport", port9("other")),
      { prune: true },
    );
    expect(other.locks).toEqual(["tenant/other"]);
  });

  it("prunes a whole router, subnet and network in reverse dependency order", () => {
    const small = structuredClone(EXAMPLE);
    small.subnets = (small.subnets as Obj[]).filter((s) => s.id !== "subnet-b");
    small.networks = (small.networks as Obj[]).filter((s) => s.id !== "net-b");
    small.ports = (small.ports as Obj[]).filter((s) => s.id !== "vm3");
    small.routers = [];
    let state = storedFrom(EXAMPLE);
    state = mutate(state, "lrouter", "r1", (v) => {
      v.routes = [{ destination: "192.168.0.0/16", nexthop: "10.0.0.254" }];
    });
    const plan = planApply(parseTopology(small), state, { prune: true });
    expect(lines(plan)).toEqual(["- port vm3", "- router r1", "- subnet subnet-b", "- network net-b"]);
    expect(ops(plan)).toEqual([
      "delete lport vm3",
      "update lrouter r1",
      "removeInterface r1 subnet-a",
      "removeInterface r1 subnet-b",
      "delete lrouter r1",
      "delete subnet subnet-b",
      "delete lswitch net-b",
    ]);
  });

  it("changes router interfaces and routes so that every route always has its interface", () => {
    const doc = structuredClone(EXAMPLE);
    const r1 = (doc.routers as Obj[])[0]!;
    r1.interfaces = ["subnet-a", { subnetId: "subnet-c" }];
    r1.routes = [{ destination: "192.168.0.0/16", nexthop: "10.10.0.254" }];
    (doc.subnets as Obj[]).push({ id: "subnet-c", networkId: "net-b", cidr: "10.30.0.0/24" });
    let state = storedFrom(EXAMPLE);
    state = mutate(state, "lrouter", "r1", (v) => {
      v.routes = [{ destination: "172.16.0.0/12", nexthop: "10.20.0.254" }];
    });
    const plan = planApply(parseTopology(doc), state);
    expect(lines(plan)).toEqual([
      "+ subnet subnet-c",
      "~ router r1 (routes)",
      "- router r1 interface subnet-b",
      "+ router r1 interface subnet-c",
    ]);
    expect(ops(plan)).toEqual([
      "create subnet subnet-c",
      "update lrouter r1",
      "removeInterface r1 subnet-b",
      "addInterface r1 subnet-c",
      "update lrouter r1",
    ]);
    expect(plan.steps[1]).toMatchObject({ patch: { routes: [] } });
    expect(plan.steps[4]).toMatchObject({ patch: { routes: r1.routes } });
  });

  it("matches security group rules by content when the file gives no ids", () => {
    const doc = structuredClone(EXAMPLE);
    const sg = (doc.secgroups as Obj[])[0]!;
    for (const r of sg.rules as Obj[]) delete r.id;
    const state = storedFrom(EXAMPLE);
    expect(planApply(parseTopology(doc), state).changes).toEqual([]);
    (sg.rules as Obj[]).push({ direction: "ingress", protocol: "udp", portRangeMin: 53, portRangeMax: 53 });
    const plan = planApply(parseTopology(doc), state);
    expect(lines(plan)).toEqual(["~ secgroup sg-ssh-icmp (rules)"]);
    const patch = (plan.steps[0] as unknown as { patch: { rules: Obj[] } }).patch;
    expect(patch.rules.map((r) => r.id)).toEqual(["ssh-in", "icmp-in", "all-out", undefined]);
  });

  it("creates groups that name each other, then adds the remote-group rules", () => {
    const doc: Obj = {
      tenant: "t",
      tenants: ["t"],
      secgroups: [
        { id: "web", rules: [{ direction: "ingress", remoteGroupId: "db" }] },
        { id: "db", rules: [{ direction: "ingress", remoteGroupId: "web" }] },
      ],
    };
    const plan = planApply(parseTopology(doc), {});
    expect(lines(plan)).toEqual(["+ tenant t", "+ secgroup web", "+ secgroup db"]);
    expect(ops(plan)).toEqual([
      "create tenant t",
      "create secgroup web",
      "create secgroup db",
      "update secgroup web",
      "update secgroup db",
    ]);
    expect(plan.steps[1]).toMatchObject({ value: { rules: [] } });
    expect(plan.steps[3]).toMatchObject({
      patch: { rules: [{ direction: "ingress", remoteGroupId: "db" }] },
    });
  });

  it("keeps allocated addresses of a port whose file entry names only the subnet", () => {
    const doc = structuredClone(EXAMPLE);
    const vm1 = (doc.ports as Obj[])[0]!;
    vm1.fixedIps = [{ subnetId: "subnet-a" }];
    expect(planApply(parseTopology(doc), storedFrom(EXAMPLE)).changes).toEqual([]);
    vm1.fixedIps = [{ subnetId: "subnet-a" }, { subnetId: "subnet-a", ipAddress: "10.10.0.50" }];
    const plan = planApply(parseTopology(doc), storedFrom(EXAMPLE));
    expect(lines(plan)).toEqual(["~ port vm1 (fixedIps)"]);
    expect(plan.steps[0]).toMatchObject({
      patch: {
        fixedIps: [
          { subnetId: "subnet-a", ipAddress: "10.10.0.11" },
          { subnetId: "subnet-a", ipAddress: "10.10.0.50" },
        ],
      },
    });
  });
});

describe("planApply's claims: what the file gives, for the allocators to leave alone", () => {
  it("a new object's given segment, MAC and address; an update's new address with the MAC it keeps; a given interface address", () => {
    const ip = (net: string, a: string): string => `ipam.ip\u0000${net}/${a}`;
    const mac = (net: string, m: string): string => `ipam.mac\u0000${net}/${m}`;
    const fresh = planApply(parseTopology(EXAMPLE), {});
    expect(fresh.claims).toEqual(
      [
        "ipam.seg\u0000geneve/-/1001",
        "ipam.seg\u0000geneve/-/1002",
        ip("net-a", "10.10.0.11"),
        ip("net-a", "10.10.0.12"),
        ip("net-b", "10.20.0.13"),
        mac("net-a", "fa:16:3e:0a:00:11"),
        mac("net-a", "fa:16:3e:0a:00:12"),
        mac("net-b", "fa:16:3e:14:00:13"),
      ].sort(),
    );
    const doc = structuredClone(EXAMPLE);
    const vm1 = (doc.ports as Obj[])[0]!;
    delete vm1.macAddress;
    vm1.fixedIps = [{ subnetId: "subnet-a", ipAddress: "10.10.0.50" }];
    (doc.ports as Obj[]).push({ id: "vm9", networkId: "net-b" });
    (doc.routers as Obj[])[0]!.interfaces = ["subnet-a", { subnetId: "subnet-b", ipAddress: "10.20.0.254" }];
    const stored = mutate(storedFrom(EXAMPLE), "lrouter", "r1", (r) => {
      r.interfaces = (r.interfaces as Obj[]).slice(0, 1);
    });
    const plan = planApply(parseTopology(doc), stored);
    expect(lines(plan)).toEqual(["+ router r1 interface subnet-b", "~ port vm1 (fixedIps)", "+ port vm9"]);
    // vm1's update claims its new address and the MAC it keeps; vm9 gives nothing; the interface its address
    expect(plan.claims).toEqual(
      [ip("net-a", "10.10.0.50"), mac("net-a", "fa:16:3e:0a:00:11"), ip("net-b", "10.20.0.254")].sort(),
    );
  });
});

describe("planApply and a gateway's chassis addresses", () => {
  const doc = (addresses: Obj[]): Obj => ({
    tenants: [{ id: "t1" }],
    networks: [
      { id: "ext", tenantId: "t1", networkType: "flat", physicalNetwork: "physnet1", external: true },
    ],
    routers: [{ id: "r1", tenantId: "t1" }],
    snats: [
      {
        id: "g1",
        tenantId: "t1",
        routerId: "r1",
        externalNetworkId: "ext",
        externalIpAddress: "203.0.113.10",
        chassisAddresses: addresses,
      },
    ],
  });
  const stored = (): State =>
    mutate(storedFrom(doc([])), "snat", "g1", (v) => {
      v.macAddress = "fa:16:3e:00:00:10";
      v.chassisAddresses = [{ chassis: "host1", ipAddress: "203.0.113.21", macAddress: "fa:16:3e:00:00:21" }];
    });

  it("MACs the file leaves out (the gateway's, a floating IP's, a chassis address's) stay: nothing to do", () => {
    const plan = planApply(parseTopology(doc([{ chassis: "host1", ipAddress: "203.0.113.21" }])), stored());
    expect(plan.changes).toEqual([]);
    const fip = { id: "f1", tenantId: "t1", floatingNetworkId: "ext", floatingIpAddress: "203.0.113.50" };
    const withFip = { ...doc([{ chassis: "host1", ipAddress: "203.0.113.21" }]), fips: [fip] };
    const state = mutate(storedFrom(withFip), "fip", "f1", (v) => void (v.macAddress = "fa:16:3e:00:00:50"));
    expect(planApply(parseTopology(withFip), state).changes).toEqual([]);
  });

  it("a new address, or a chassis' new one, is an update that keeps the MACs still right", () => {
    const plan = planApply(
      parseTopology(
        doc([
          { chassis: "host1", ipAddress: "203.0.113.21" },
          { chassis: "host2", ipAddress: "203.0.113.22" },
        ]),
      ),
      stored(),
    );
    expect(lines(plan)).toEqual(["~ snat g1 (chassisAddresses)"]);
    expect(plan.steps[0]).toMatchObject({
      patch: {
        chassisAddresses: [
          { chassis: "host1", ipAddress: "203.0.113.21", macAddress: "fa:16:3e:00:00:21" },
          { chassis: "host2", ipAddress: "203.0.113.22" },
        ],
      },
    });
    const moved = planApply(parseTopology(doc([{ chassis: "host1", ipAddress: "203.0.113.23" }])), stored());
    expect(moved.steps[0]).toMatchObject({
      patch: { chassisAddresses: [{ chassis: "host1", ipAddress: "203.0.113.23" }] },
    });
    expect(
      (moved.steps[0] as unknown as { patch: { chassisAddresses: Obj[] } }).patch.chassisAddresses[0],
    ).not.toHaveProperty("macAddress");
  });
});

describe("planApply refuses what cannot be applied", () => {
  it("an immutable field or a tenant change", () => {
    const doc = structuredClone(EXAMPLE);
    ((doc.networks as Obj[])[1] as Obj).networkType = "vxlan";
    const e = refusal(() => planApply(parseTopology(doc), storedFrom(EXAMPLE)));
    expect({ kind: e.kind, key: e.key, field: e.field }).toEqual({
      kind: "lswitch",
      key: "net-b",
      field: "networkType",
    });
    expect(e.reason).toMatch(/cannot be changed after create/);
    const moved = storedFrom({ ...EXAMPLE, tenant: "elsewhere", tenants: [] });
    const e2 = refusal(() => planApply(parseTopology(EXAMPLE), moved));
    expect(e2.field).toBe("tenantId");
  });

  it("a reference to something neither in the file nor in the store (or pruned)", () => {
    const doc = structuredClone(EXAMPLE);
    ((doc.ports as Obj[])[0] as Obj).securityGroups = ["sg-nope"];
    const e = refusal(() => planApply(parseTopology(doc), {}));
    expect({ kind: e.kind, key: e.key, field: e.field }).toEqual({
      kind: "lport",
      key: "vm1",
      field: "securityGroups[0]",
    });
    expect(e.reason).toBe("secgroup sg-nope is neither in the file nor in the store");
    const itf = structuredClone(EXAMPLE);
    ((itf.routers as Obj[])[0] as Obj).interfaces = ["subnet-z"];
    expect(refusal(() => planApply(parseTopology(itf), {})).field).toBe("interfaces[0].subnetId");
    // A port that stays refers to a network that prune would delete.
    const state = withObject(storedFrom(EXAMPLE), "lswitch", {
      id: "net-old",
      tenantId: "demo",
      networkType: "geneve",
    });
    const keep = structuredClone(EXAMPLE);
    (keep.ports as Obj[]).push({ id: "vm4", networkId: "net-old" });
    expect(lines(planApply(parseTopology(keep), state))).toEqual(["+ port vm4"]);
    expect(refusal(() => planApply(parseTopology(keep), state, { prune: true })).field).toBe("networkId");
  });

  it("bad files: unknown section, duplicate id, schema errors, bad interfaces", () => {
    const e1 = refusal(() => parseTopology({ tenant: "t", network: [] }, "lab.yaml"));
    expect({ kind: e1.kind, key: e1.key, field: e1.field }).toEqual({
      kind: "topology",
      key: "lab.yaml",
      field: "network",
    });
    expect(e1.reason).toMatch(/is not a section \(tenant, tenants, chassis/);
    const e2 = refusal(() => parseTopology({ tenant: "t", networks: [{ id: "n" }, { id: "n" }] }));
    expect([e2.kind, e2.key, e2.reason]).toEqual(["lswitch", "n", "is listed twice in the file"]);
    const e3 = refusal(() =>
      parseTopology({ tenant: "t", subnets: [{ id: "s", networkId: "n", cidr: "10.0.0.0/33" }] }),
    );
    expect([e3.kind, e3.key, e3.field]).toEqual(["subnet", "s", "cidr"]);
    const e4 = refusal(() => parseTopology({ networks: [{ id: "n" }] }));
    expect([e4.kind, e4.key, e4.field]).toEqual(["lswitch", "n", "tenantId"]);
    const e5 = refusal(() =>
      parseTopology({ tenant: "t", routers: [{ id: "r", interfaces: [{ subnetId: "s", ip: "x" }] }] }),
    );
    expect([e5.kind, e5.key, e5.field]).toEqual(["lrouter", "r", "interfaces[0].ip"]);
    const e6 = refusal(() => parseTopology({ tenant: "t", ports: [{ networkId: "n" }] }));
    expect([e6.kind, e6.key, e6.field]).toEqual(["lport", "ports[0]", "id"]);
    const e7 = refusal(() =>
      parseTopology({ tenant: "t", ports: [{ id: "p", networkId: "n", macAdress: "x" }] }),
    );
    expect([e7.key, e7.field, e7.reason]).toEqual(["p", "macAdress", "is not a field of this object"]);
  });
});
