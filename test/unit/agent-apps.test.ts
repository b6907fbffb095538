/**
 * The apps as pure functions of the view, and the reconciler's plan: a model
 * change costs exactly the flow_mods it must (no churn elsewhere), and every
 * flow an app produces is valid OpenFlow in a declared table. The integration
 * tests prove the same against a real OVS; this file pins the counts.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_APPS, loadApps } from "../../src/apps/index.js";
import { cookieFor } from "../../src/controller/cookies.js";
import { PIPELINE, missFlows } from "../../src/controller/pipeline.js";
import { FlowReconciler } from "../../src/controller/reconciler.js";
import { buildView, type Binding } from "../../src/controller/view.js";
import type { Flow } from "../../src/openflow/flow.js";
import { parseFlow } from "../../src/openflow/text.js";

type Obj = Record<string, unknown>;

function model(objs: Record<string, Obj[]>) {
  return {
    list: (kind: string) => (objs[kind] ?? []).map((v) => ({ key: String(v.id ?? v.name), value: v })),
  };
}

const net1 = {
  id: "net1",
  networkType: "geneve",
  segmentationId: 7,
  mtu: 1442,
  adminStateUp: true,
  portSecurityEnabled: true,
};
const sub1 = {
  id: "sub1",
  networkId: "net1",
  cidr: "10.0.0.0/24",
  ipVersion: 4,
  gatewayIp: "10.0.0.1",
  enableDhcp: true,
};
function port(id: string, mac: string, ip: string, chassis?: string): Obj {
  return {
    id,
    networkId: "net1",
    macAddress: mac,
    fixedIps: [{ subnetId: "sub1", ipAddress: ip }],
    chassis,
    adminStateUp: true,
    portSecurityEnabled: true,
    allowedAddressPairs: [],
    deviceOwner: "",
  };
}
const chassis = (name: string, ip: string): Obj => ({ name, tunnelIps: [ip], encapTypes: ["geneve"] });

const apps = loadApps(DEFAULT_APPS);

function desired(objs: Record<string, Obj[]>, bindings: Binding[]): Flow[] {
  const view = buildView({
    chassis: "hostA",
    tunnelIp: "192.0.2.1",
    tunnelPorts: { geneve: 1, vxlan: 2 },
    bindings,
    model: model(objs),
  });
  const out = missFlows().map((t) => ({ ...parseFlow(t), cookie: 1n }));
  for (const app of apps) {
    for (const s of app.flows?.(view) ?? [])
      out.push({ ...parseFlow(s.flow), cookie: cookieFor(app.name, s.key) });
  }
  return out;
}

/** What taking OVS from `flows` to `next` costs. */
function planFrom(flows: Flow[], next: Flow[]) {
  const r = new FlowReconciler();
  r.assumeInstalled(flows);
  const p = r.plan(next);
  return { adds: p.adds.length, modifies: p.modifies.length, deletes: p.deletes.length };
}

const base = {
  lswitch: [net1],
  subnet: [sub1],
  lport: [
    port("p1", "fa:16:3e:00:00:01", "10.0.0.11", "hostA"),
    port("p2", "fa:16:3e:00:00:02", "10.0.0.12", "hostA"),
  ],
  chassis: [chassis("hostA", "192.0.2.1"), chassis("hostB", "192.0.2.2")],
};
const bound: Binding[] = [
  { portId: "p1", ofport: 3, iface: "tp1" },
  { portId: "p2", ofport: 4, iface: "tp2" },
];

describe("apps produce valid flows in declared tables", () => {
  it("every flow parses and lands in a pipeline table", () => {
    const flows = desired(base, bound);
    const tables = new Set(PIPELINE.map((t) => t.id));
    for (const f of flows) expect(tables.has(f.table)).toBe(true);
    expect(flows.length).toBeGreaterThan(PIPELINE.length + 20);
  });

  it("is deterministic: the same model gives the same flows and cookies", () => {
    expect(desired(base, bound)).toEqual(desired(base, bound));
  });
});

describe("a model change costs exactly the flow_mods it must", () => {
  const before = desired(base, bound);

  it("nothing changed → nothing sent", () => {
    expect(planFrom(before, desired(base, bound))).toEqual({ adds: 0, modifies: 0, deletes: 0 });
  });

  it("a peer appears on a new chassis: its L2 entry, its ARP answer, and the flood list", () => {
    const next = { ...base, lport: [...base.lport, port("r1", "fa:16:3e:00:00:21", "10.0.0.21", "hostB")] };
    expect(planFrom(before, desired(next, bound))).toEqual({ adds: 2, modifies: 1, deletes: 0 });
  });

  it("a second peer on a chassis already in the flood list: two adds only", () => {
    const one = { ...base, lport: [...base.lport, port("r1", "fa:16:3e:00:00:21", "10.0.0.21", "hostB")] };
    const two = { ...one, lport: [...one.lport, port("r2", "fa:16:3e:00:00:22", "10.0.0.22", "hostB")] };
    expect(planFrom(desired(one, bound), desired(two, bound))).toEqual({ adds: 2, modifies: 0, deletes: 0 });
  });

  it("a local port's address changes: its anti-spoofing and ARP flows are replaced, nothing else", () => {
    const next = {
      ...base,
      lport: [port("p1", "fa:16:3e:00:00:01", "10.0.0.111", "hostA"), base.lport[1]!],
    };
    // portsec ip + arp, ARP responder + owner exclusion: 4 out, 4 in.
    expect(planFrom(before, desired(next, bound))).toEqual({ adds: 4, modifies: 0, deletes: 4 });
  });

  it("a local port is unplugged: its flows go and the flood list shrinks", () => {
    const res = planFrom(before, desired(base, bound.slice(0, 1)));
    expect(res.adds).toBe(0);
    expect(res.modifies).toBe(1); // the flood flow
    expect(res.deletes).toBeGreaterThanOrEqual(10);
  });
});
