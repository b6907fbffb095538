/**
 * The NB API against a real embedded store: every validation and integrity
 * rule is tried with bad input, and each test checks the error names object,
 * field and reason and that the store revision did not move (nothing written).
 * Plus IPAM (IPv4 and IPv6, MACs, segmentation ids), CAS and the atomic
 * multi-object router operations.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbApi } from "../../src/nb/api.js";
import { ValidationError } from "../../src/nb/model/index.js";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import { ConflictError } from "../../src/nb/store/errors.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { makeRunDir } from "../harness/index.js";

let store: NbStore;
let api: NbApi;
let dir: string;

beforeAll(async () => {
  dir = makeRunDir("nb-api");
  store = await EmbeddedStore.open(join(dir, "db"));
  api = new NbApi(store);
});
afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
const tenant = (): string => `t${++seq}`;

/** Run `fn`, expect a ValidationError with these fields, and no store write. */
async function rejects(
  fn: () => Promise<unknown>,
  kind: string,
  field: string,
  reason: RegExp,
): Promise<ValidationError> {
  const before = await store.revision();
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${kind} ${field} to be rejected`).toBeInstanceOf(ValidationError);
  const v = err as ValidationError;
  expect({ kind: v.kind, field: v.field }).toEqual({ kind, field });
  expect(v.reason).toMatch(reason);
  expect(v.message).toContain(kind);
  expect(v.message).toContain(field);
  expect(await store.revision()).toBe(before);
  return v;
}

async function net(t: string, extra: Record<string, unknown> = {}) {
  return api.create("lswitch", { tenantId: t, name: "n", ...extra });
}
async function subnet(t: string, networkId: string, cidr: string, extra: Record<string, unknown> = {}) {
  return api.create("subnet", { tenantId: t, networkId, cidr, ...extra });
}

describe("schema validation", () => {
  it("names object, field and reason for bad fields", async () => {
    const t = tenant();
    await rejects(
      () => api.create("lswitch", { tenantId: t, networkType: "gre" }),
      "lswitch",
      "networkType",
      /expected one of/,
    );
    await rejects(
      () => api.create("lswitch", { tenantId: t, networkType: "vlan" }),
      "lswitch",
      "physicalNetwork",
      /required for a vlan/,
    );
    await rejects(
      () => api.create("lswitch", { tenantId: t, networkType: "vxlan", physicalNetwork: "p" }),
      "lswitch",
      "physicalNetwork",
      /must not be set/,
    );
    await rejects(
      () =>
        api.create("lswitch", {
          tenantId: t,
          networkType: "vlan",
          physicalNetwork: "p",
          segmentationId: 4095,
        }),
      "lswitch",
      "segmentationId",
      /outside 1..4094/,
    );
    await rejects(() => api.create("lswitch", { tenantId: t, mtu: 20 }), "lswitch", "mtu", /at least 68/);
    await rejects(
      () => api.create("lswitch", { tenantId: t, colour: "red" }),
      "lswitch",
      "colour",
      /not a field/,
    );
    await rejects(() => api.create("lswitch", { name: "x" }), "lswitch", "tenantId", /required/);
    const n = await net(t);
    await rejects(() => subnet(t, n.key, "10.0.0.0/33"), "subnet", "cidr", /not a CIDR/);
    await rejects(
      () => subnet(t, n.key, "10.0.0.0/24", { gatewayIp: "10.0.1.1" }),
      "subnet",
      "gatewayIp",
      /not a host address/,
    );
    await rejects(
      () => subnet(t, n.key, "10.0.0.0/24", { allocationPools: [{ start: "10.0.0.50", end: "10.0.0.20" }] }),
      "subnet",
      "allocationPools[0]",
      /is after end/,
    );
    await rejects(
      () => subnet(t, n.key, "10.0.0.0/24", { allocationPools: [{ start: "10.0.0.1", end: "10.0.0.20" }] }),
      "subnet",
      "allocationPools[0]",
      /contains the gateway/,
    );
    await rejects(
      () => subnet(t, n.key, "10.0.0.0/24", { ipv6RaMode: "slaac" }),
      "subnet",
      "ipv6RaMode",
      /only valid on an IPv6/,
    );
    // Neutron's IPv6 mode combinations
    await rejects(
      () => subnet(t, n.key, "2001:db8:1::/64", { ipv6RaMode: "slaac" }),
      "subnet",
      "ipv6AddressMode",
      /required when ipv6RaMode is set/,
    );
    await rejects(
      () =>
        subnet(t, n.key, "2001:db8:1::/64", {
          ipv6RaMode: "dhcpv6-stateful",
          ipv6AddressMode: "dhcpv6-stateful",
          enableDhcp: false,
        }),
      "subnet",
      "enableDhcp",
      /must be true when ipv6RaMode or ipv6AddressMode is set/,
    );
    await rejects(
      () => subnet(t, n.key, "2001:db8:1::/80", { ipv6RaMode: "slaac", ipv6AddressMode: "slaac" }),
      "subnet",
      "cidr",
      /must be a \/64 for slaac/,
    );
    await rejects(
      () => subnet(t, n.key, "2001:db8:1::/56", { ipv6AddressMode: "dhcpv6-stateless" }),
      "subnet",
      "cidr",
      /must be a \/64 for dhcpv6-stateless/,
    );
    await rejects(
      () => subnet(t, n.key, "10.0.0.0/24", { dnsNameservers: ["10.0.0.999"] }),
      "subnet",
      "dnsNameservers[0]",
      /not an IPv4 or IPv6/,
    );
    await rejects(
      () => api.create("lport", { tenantId: t, networkId: n.key, macAddress: "01:00:5e:00:00:01" }),
      "lport",
      "macAddress",
      /multicast/,
    );
    await rejects(
      () =>
        api.create("lport", {
          tenantId: t,
          networkId: n.key,
          portSecurityEnabled: false,
          securityGroups: ["x"],
        }),
      "lport",
      "securityGroups",
      /portSecurityEnabled is false/,
    );
    await rejects(
      () =>
        api.create("secgroup", {
          tenantId: t,
          rules: [{ direction: "ingress", protocol: "tcp", portRangeMin: 90, portRangeMax: 80 }],
        }),
      "secgroup",
      "rules[0].portRangeMax",
      /below portRangeMin/,
    );
    await rejects(
      () =>
        api.create("secgroup", {
          tenantId: t,
          rules: [{ direction: "ingress", ethertype: "IPv4", remoteIpPrefix: "::/0" }],
        }),
      "secgroup",
      "rules[0].remoteIpPrefix",
      /does not match ethertype/,
    );
    await rejects(
      () => api.create("secgroup", { tenantId: t, rules: [{ direction: "ingress", portRangeMin: 22 }] }),
      "secgroup",
      "rules[0].portRangeMin",
      /needs protocol/,
    );
    await rejects(
      () => api.create("chassis", { name: "c1", tunnelIps: [] }),
      "chassis",
      "tunnelIps",
      /at least one/,
    );
  });
});

describe("referential integrity", () => {
  it("checks port → network, subnet → network and fixed IPs", async () => {
    const t = tenant();
    await rejects(
      () => api.create("lport", { tenantId: t, networkId: "nope" }),
      "lport",
      "networkId",
      /network nope does not exist/,
    );
    await rejects(() => subnet(t, "nope", "10.1.0.0/24"), "subnet", "networkId", /does not exist/);
    const n = await net(t);
    const other = await net(t);
    const s = await subnet(t, n.key, "10.1.0.0/24");
    const s2 = await subnet(t, other.key, "10.2.0.0/24");
    await rejects(() => subnet(t, n.key, "10.1.0.128/25"), "subnet", "cidr", /overlaps subnet/);
    await rejects(
      () => api.create("lport", { tenantId: t, networkId: n.key, fixedIps: [{ subnetId: s2.key }] }),
      "lport",
      "fixedIps[0].subnetId",
      /is on network/,
    );
    await rejects(
      () =>
        api.create("lport", {
          tenantId: t,
          networkId: n.key,
          fixedIps: [{ subnetId: s.key, ipAddress: "10.9.0.5" }],
        }),
      "lport",
      "fixedIps[0].ipAddress",
      /not inside subnet/,
    );
    await rejects(
      () =>
        api.create("lport", {
          tenantId: t,
          networkId: n.key,
          fixedIps: [{ subnetId: s.key, ipAddress: "10.1.0.1" }],
        }),
      "lport",
      "fixedIps[0].ipAddress",
      /is the gateway/,
    );
    await rejects(
      () =>
        api.create("lport", {
          tenantId: t,
          networkId: n.key,
          fixedIps: [{ subnetId: s.key, ipAddress: "10.1.0.255" }],
        }),
      "lport",
      "fixedIps[0].ipAddress",
      /not a host address/,
    );
    const p = await api.create("lport", {
      tenantId: t,
      networkId: n.key,
      fixedIps: [{ subnetId: s.key, ipAddress: "10.1.0.7" }],
    });
    await rejects(
      () =>
        api.create("lport", {
          tenantId: t,
          networkId: n.key,
          fixedIps: [{ subnetId: s.key, ipAddress: "10.1.0.7" }],
        }),
      "lport",
      "fixedIps[0].ipAddress",
      new RegExp(`already used by lport/${p.key}`),
    );
    await rejects(
      () => api.create("lport", { tenantId: t, networkId: n.key, macAddress: p.value.macAddress }),
      "lport",
      "macAddress",
      /already used on network/,
    );
    // the same MAC on another network is fine
    await api.create("lport", { tenantId: t, networkId: other.key, macAddress: p.value.macAddress });
    await rejects(
      () => api.create("lport", { tenantId: t, networkId: n.key, securityGroups: ["nope"] }),
      "lport",
      "securityGroups[0]",
      /does not exist/,
    );
    await rejects(() => api.delete("lswitch", n.key), "lswitch", "", /has 1 port/);
    await rejects(() => api.delete("subnet", s.key), "subnet", "", /port\(s\) with addresses/);
    await api.delete("lport", p.key);
    await api.delete("subnet", s.key);
    await api.delete("lswitch", n.key);
    expect(await api.find("lswitch", n.key)).toBeUndefined();
    // the address and MAC came free again
    const p2 = await api.create("lport", {
      tenantId: t,
      networkId: other.key,
      fixedIps: [{ subnetId: s2.key, ipAddress: "10.2.0.7" }],
    });
    expect(p2.value.fixedIps).toEqual([{ subnetId: s2.key, ipAddress: "10.2.0.7" }]);
  });

  it("refuses another tenant's network and security group", async () => {
    const a = tenant();
    const b = tenant();
    const n = await net(a);
    const sg = await api.create("secgroup", { tenantId: a, name: "web" });
    await rejects(
      () => api.create("lport", { tenantId: b, networkId: n.key }),
      "lport",
      "networkId",
      new RegExp(`belongs to tenant ${a}`),
    );
    const nb = await net(b);
    await rejects(
      () => api.create("lport", { tenantId: b, networkId: nb.key, securityGroups: [sg.key] }),
      "lport",
      "securityGroups[0]",
      /belongs to tenant/,
    );
    await rejects(
      () => api.update("lswitch", n.key, { tenantId: b }),
      "lswitch",
      "tenantId",
      /cannot be changed/,
    );
  });

  it("guards security groups in use and remote groups", async () => {
    const t = tenant();
    await rejects(
      () =>
        api.create("secgroup", { tenantId: t, rules: [{ direction: "ingress", remoteGroupId: "ghost" }] }),
      "secgroup",
      "rules[0].remoteGroupId",
      /does not exist/,
    );
    const web = await api.create("secgroup", { tenantId: t, name: "web" });
    const db = await api.create("secgroup", {
      tenantId: t,
      name: "db",
      rules: [
        {
          direction: "ingress",
          protocol: "tcp",
          portRangeMin: 5432,
          portRangeMax: 5432,
          remoteGroupId: web.key,
        },
      ],
    });
    expect(db.value.rules[0]!.id).toMatch(/^[0-9a-f-]{36}$/);
    await rejects(() => api.delete("secgroup", web.key), "secgroup", "", /refers to it as a remote group/);
    const n = await net(t);
    await subnet(t, n.key, "10.3.0.0/24");
    await api.create("lport", { tenantId: t, networkId: n.key, securityGroups: [db.key] });
    await rejects(() => api.delete("secgroup", db.key), "secgroup", "", /used by 1 port/);
    const { group, rule } = await api.secgroupRuleAdd(web.key, {
      direction: "egress",
      ethertype: "IPv6",
      protocol: "icmpv6",
    });
    expect(group.version).toBe(2);
    const after = await api.secgroupRuleDelete(web.key, rule.id);
    expect(after.value.rules).toEqual([]);
    await rejects(
      () => api.secgroupRuleDelete(web.key, "nope"),
      "secgroup",
      "rules",
      /rule nope does not exist/,
    );
  });
});

describe("IPAM", () => {
  it("allocates IPv4 and IPv6 addresses from the pools, and MACs", async () => {
    const t = tenant();
    const n = await net(t);
    const s4 = await subnet(t, n.key, "192.168.5.0/29");
    expect(s4.value.gatewayIp).toBe("192.168.5.1");
    expect(s4.value.allocationPools).toEqual([{ start: "192.168.5.2", end: "192.168.5.6" }]);
    const s6 = await subnet(t, n.key, "2001:db8:0:5::/64", { ipv6RaMode: "slaac", ipv6AddressMode: "slaac" });
    expect(s6.value.gatewayIp).toBe("2001:db8:0:5::1");
    expect(s6.value.allocationPools).toEqual([
      { start: "2001:db8:0:5::2", end: "2001:db8:0:5:ffff:ffff:ffff:ffff" },
    ]);
    const ports = [];
    for (let i = 0; i < 5; i++) ports.push(await api.create("lport", { tenantId: t, networkId: n.key }));
    expect(ports.map((p) => p.value.fixedIps.map((f) => f.ipAddress))).toEqual([
      ["192.168.5.2", "2001:db8:0:5::2"],
      ["192.168.5.3", "2001:db8:0:5::3"],
      ["192.168.5.4", "2001:db8:0:5::4"],
      ["192.168.5.5", "2001:db8:0:5::5"],
      ["192.168.5.6", "2001:db8:0:5::6"],
    ]);
    for (const p of ports) expect(p.value.macAddress).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    expect(new Set(ports.map((p) => p.value.macAddress)).size).toBe(5);
    await rejects(
      () => api.create("lport", { tenantId: t, networkId: n.key, fixedIps: [{ subnetId: s4.key }] }),
      "subnet",
      "allocationPools",
      /no free address/,
    );
    await api.delete("lport", ports[2]!.key);
    const again = await api.create("lport", {
      tenantId: t,
      networkId: n.key,
      fixedIps: [{ subnetId: s4.key }],
    });
    expect(again.value.fixedIps[0]!.ipAddress).toBe("192.168.5.4");
    const explicit6 = await api.create("lport", {
      tenantId: t,
      networkId: n.key,
      fixedIps: [{ subnetId: s6.key, ipAddress: "2001:DB8:0:5:0:0:0:abc" }],
    });
    expect(explicit6.value.fixedIps[0]!.ipAddress).toBe("2001:db8:0:5::abc");
  });

  it("allocates segmentation ids per type without collision", async () => {
    const t = tenant();
    const a = await net(t, { networkType: "vxlan", segmentationId: 7000 });
    const b = await net(t, { networkType: "vxlan" });
    expect(a.value.segmentationId).not.toBe(b.value.segmentationId);
    expect(a.value.mtu).toBe(1450);
    const g = await net(t, { networkType: "geneve", segmentationId: a.value.segmentationId });
    expect(g.value.mtu).toBe(1442);
    await rejects(
      () => net(t, { networkType: "vxlan", segmentationId: a.value.segmentationId }),
      "lswitch",
      "segmentationId",
      /already used by lswitch\//,
    );
    const v1 = await net(t, { networkType: "vlan", physicalNetwork: "physA", segmentationId: 100 });
    await net(t, { networkType: "vlan", physicalNetwork: "physB", segmentationId: 100 });
    await rejects(
      () => net(t, { networkType: "vlan", physicalNetwork: "physA", segmentationId: 100 }),
      "lswitch",
      "segmentationId",
      /physA:100 is already used/,
    );
    await net(t, { networkType: "flat", physicalNetwork: "physF" });
    await rejects(
      () => net(t, { networkType: "flat", physicalNetwork: "physF" }),
      "lswitch",
      "physicalNetwork",
      /already exists/,
    );
    // updating the segmentation id moves the reservation
    await api.update("lswitch", v1.key, { segmentationId: 101 });
    await net(t, { networkType: "vlan", physicalNetwork: "physA", segmentationId: 100 });
  });
});

describe("CAS and multi-object operations", () => {
  it("fails an update with a stale version and writes nothing", async () => {
    const t = tenant();
    const n = await net(t, { name: "before" });
    const u = await api.update("lswitch", n.key, { name: "after" }, { expectVersion: 1 });
    expect(u.version).toBe(2);
    const rev = await store.revision();
    await expect(
      api.update("lswitch", n.key, { name: "stale" }, { expectVersion: 1 }),
    ).rejects.toBeInstanceOf(ConflictError);
    await expect(api.delete("lswitch", n.key, { expectVersion: 1 })).rejects.toBeInstanceOf(ConflictError);
    expect(await store.revision()).toBe(rev);
    expect((await api.get("lswitch", n.key)).value.name).toBe("after");
  });

  it("adds and removes router interfaces atomically, refusing overlaps", async () => {
    const t = tenant();
    const n1 = await net(t);
    const n2 = await net(t);
    const n3 = await net(t);
    const s1 = await subnet(t, n1.key, "10.10.1.0/24");
    const s2 = await subnet(t, n2.key, "10.10.2.0/24");
    const s3 = await subnet(t, n3.key, "10.10.0.0/16");
    const r = await api.create("lrouter", { tenantId: t, name: "r1" });
    await rejects(
      () =>
        api.create("lrouter", {
          tenantId: t,
          routes: [{ destination: "0.0.0.0/0", nexthop: "10.10.1.254" }],
        }),
      "lrouter",
      "routes[0].nexthop",
      /not on a subnet attached/,
    );
    const { router, port } = await api.routerAddInterface(r.key, { subnetId: s1.key });
    expect(router.version).toBe(2);
    expect(port.value).toMatchObject({
      deviceOwner: "network:router_interface",
      deviceId: r.key,
      networkId: n1.key,
    });
    expect(port.value.fixedIps).toEqual([{ subnetId: s1.key, ipAddress: "10.10.1.1" }]);
    expect(router.value.interfaces).toEqual([
      {
        subnetId: s1.key,
        portId: port.key,
        networkId: n1.key,
        ipAddress: "10.10.1.1",
        cidr: "10.10.1.0/24",
        macAddress: port.value.macAddress,
      },
    ]);
    await api.routerAddInterface(r.key, { subnetId: s2.key });
    await rejects(
      () => api.routerAddInterface(r.key, { subnetId: s3.key }),
      "lrouter",
      "interfaces.subnetId",
      /overlaps subnet/,
    );
    await rejects(
      () => api.routerAddInterface(r.key, { subnetId: s1.key }),
      "lrouter",
      "interfaces.subnetId",
      /already attached/,
    );
    await rejects(() => api.delete("lport", port.key), "lport", "deviceOwner", /use router remove-interface/);
    await rejects(() => api.delete("lrouter", r.key), "lrouter", "interfaces", /remove them first/);
    await rejects(() => api.delete("subnet", s1.key), "subnet", "", /port\(s\) with addresses/);
    const withRoute = await api.update("lrouter", r.key, {
      routes: [{ destination: "172.16.0.0/12", nexthop: "10.10.1.254" }],
    });
    expect(withRoute.value.routes).toHaveLength(1);
    await rejects(
      () => api.routerRemoveInterface(r.key, { subnetId: s1.key }),
      "lrouter",
      "routes",
      /needs this interface/,
    );
    // a stale version fails the whole multi-object call: no port, no interface
    const rev = await store.revision();
    const ports = (await api.list("lport")).length;
    await expect(
      api.routerAddInterface(r.key, { subnetId: s3.key }, { expectVersion: 1 }),
    ).rejects.toBeInstanceOf(ConflictError);
    expect(await store.revision()).toBe(rev);
    expect((await api.list("lport")).length).toBe(ports);
    await api.update("lrouter", r.key, { routes: [] });
    const after = await api.routerRemoveInterface(r.key, { subnetId: s1.key });
    expect(after.value.interfaces.map((i) => i.subnetId)).toEqual([s2.key]);
    expect(await api.find("lport", port.key)).toBeUndefined();
    await api.routerRemoveInterface(r.key, { subnetId: s2.key });
    await api.delete("lrouter", r.key);
  });

  it("keeps floating IPs and SNAT gateways consistent", async () => {
    const t = tenant();
    const ext = await net(t, { external: true, name: "public" });
    const s = await subnet(t, ext.key, "203.0.113.0/28");
    const n = await net(t);
    await subnet(t, n.key, "10.20.0.0/24");
    const p = await api.create("lport", { tenantId: t, networkId: n.key });
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: n.key }),
      "fip",
      "floatingNetworkId",
      /is not external/,
    );
    const f = await api.create("fip", { tenantId: t, floatingNetworkId: ext.key, portId: p.key });
    expect(f.value).toMatchObject({
      floatingIpAddress: "203.0.113.2",
      fixedIpAddress: p.value.fixedIps[0]!.ipAddress,
    });
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext.key, floatingIpAddress: "203.0.113.2" }),
      "fip",
      "floatingIpAddress",
      /already used by fip\//,
    );
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext.key, portId: p.key }),
      "fip",
      "portId",
      /already has floating IP/,
    );
    await rejects(() => api.delete("lport", p.key), "lport", "", /floating IP .* points to this port/);
    const r = await api.create("lrouter", { tenantId: t });
    const g = await api.create("snat", { tenantId: t, routerId: r.key, externalNetworkId: ext.key });
    expect(g.value.externalIpAddress).toBe("203.0.113.3");
    // each has a MAC of its own on the external network, reserved like a port's
    expect(f.value.macAddress).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    expect(g.value.macAddress).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    expect(g.value.macAddress).not.toBe(f.value.macAddress);
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext.key, macAddress: g.value.macAddress }),
      "fip",
      "macAddress",
      /already used on network .* by snat\//,
    );
    const moved = await api.update("snat", g.key, { gatewayChassis: ["host2", "host1"] });
    expect(moved.value).toMatchObject({ gatewayChassis: ["host2", "host1"], macAddress: g.value.macAddress });
    await rejects(
      () => api.create("snat", { tenantId: t, routerId: r.key, externalNetworkId: ext.key }),
      "snat",
      "routerId",
      /already has SNAT/,
    );
    await rejects(() => api.delete("subnet", s.key), "subnet", "", /floating IP/);
    await api.delete("fip", f.key);
    await api.delete("snat", g.key);
    await api.delete("lport", p.key);
    await api.delete("subnet", s.key);
  });

  it("NAT is IPv4 only, as in Neutron: IPv6 floating, fixed, gateway and chassis addresses are refused", async () => {
    const t = tenant();
    const ext6 = await net(t, { external: true });
    await subnet(t, ext6.key, "2001:db8:6::/64");
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext6.key }),
      "fip",
      "floatingIpAddress",
      /has no IPv4 subnet to allocate from/,
    );
    const ext = await net(t, { external: true });
    await subnet(t, ext.key, "203.0.113.16/28");
    await subnet(t, ext.key, "2001:db8:7::/64");
    await rejects(
      () =>
        api.create("fip", { tenantId: t, floatingNetworkId: ext.key, floatingIpAddress: "2001:db8:7::5" }),
      "fip",
      "floatingIpAddress",
      /2001:db8:7::5 is not an IPv4 address: NAT is IPv4 only/,
    );
    const n = await net(t);
    await subnet(t, n.key, "fd00:20::/64");
    const p = await api.create("lport", { tenantId: t, networkId: n.key });
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext.key, portId: p.key }),
      "fip",
      "fixedIpAddress",
      /has no IPv4 address/,
    );
    const r = await api.create("lrouter", { tenantId: t });
    await rejects(
      () =>
        api.create("snat", {
          tenantId: t,
          routerId: r.key,
          externalNetworkId: ext.key,
          externalIpAddress: "2001:db8:7::6",
        }),
      "snat",
      "externalIpAddress",
      /not an IPv4 address: NAT is IPv4 only/,
    );
    await rejects(
      () =>
        api.create("snat", {
          tenantId: t,
          routerId: r.key,
          externalNetworkId: ext.key,
          chassisAddresses: [{ chassis: "host1", ipAddress: "2001:db8:7::7" }],
        }),
      "snat",
      "chassisAddresses[0].ipAddress",
      /must be IPv4/,
    );
    // the IPv4 ones still go through, from the IPv4 subnet
    const g = await api.create("snat", { tenantId: t, routerId: r.key, externalNetworkId: ext.key });
    expect(g.value.externalIpAddress).toMatch(/^203\.0\.113\.(1[7-9]|2[0-9]|30)$/);
  });

  it("distributed SNAT: a gateway's chassis addresses are checked, reserved, and keep their MACs", async () => {
    const t = tenant();
    const ext = await net(t, { external: true });
    const s = await subnet(t, ext.key, "203.0.113.0/28");
    const r = await api.create("lrouter", { tenantId: t });
    await rejects(
      () =>
        api.create("snat", {
          tenantId: t,
          routerId: r.key,
          externalNetworkId: ext.key,
          chassisAddresses: [{ chassis: "host1", ipAddress: "198.51.100.7" }],
        }),
      "snat",
      "chassisAddresses[0].ipAddress",
      /is not inside a subnet of network/,
    );
    await rejects(
      () =>
        api.create("snat", {
          tenantId: t,
          routerId: r.key,
          externalNetworkId: ext.key,
          chassisAddresses: [{ chassis: "host1", ipAddress: s.value.gatewayIp! }],
        }),
      "snat",
      "chassisAddresses[0].ipAddress",
      /is the gateway of subnet/,
    );
    // the gateway's own address is allocated around its chassis addresses
    const g = await api.create("snat", {
      tenantId: t,
      routerId: r.key,
      externalNetworkId: ext.key,
      chassisAddresses: [
        { chassis: "host1", ipAddress: "203.0.113.2" },
        { chassis: "host2", ipAddress: "203.0.113.3" },
      ],
    });
    expect(g.value.externalIpAddress).toBe("203.0.113.4");
    const [m1, m2] = g.value.chassisAddresses.map((a) => a.macAddress);
    expect(m1).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
    expect(new Set([m1, m2, g.value.macAddress]).size).toBe(3);
    // reserved: nobody else gets the address or the MAC
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext.key, floatingIpAddress: "203.0.113.2" }),
      "fip",
      "floatingIpAddress",
      /already used by snat\//,
    );
    await rejects(
      () => api.create("fip", { tenantId: t, floatingNetworkId: ext.key, macAddress: m2! }),
      "fip",
      "macAddress",
      /already used on network .* by snat\//,
    );
    // an update that keeps a chassis keeps its MAC; a dropped address is free again
    const u = await api.update("snat", g.key, {
      chassisAddresses: [
        { chassis: "host1", ipAddress: "203.0.113.2" },
        { chassis: "host3", ipAddress: "203.0.113.5" },
      ],
    });
    expect(u.value.chassisAddresses[0]).toEqual({
      chassis: "host1",
      ipAddress: "203.0.113.2",
      macAddress: m1,
    });
    const f = await api.create("fip", {
      tenantId: t,
      floatingNetworkId: ext.key,
      floatingIpAddress: "203.0.113.3",
    });
    await rejects(() => api.delete("subnet", s.key), "subnet", "", /floating IP|SNAT gateway/);
    await api.delete("fip", f.key);
    await rejects(() => api.delete("subnet", s.key), "subnet", "", /SNAT gateway/);
    await api.delete("snat", g.key);
    await api.delete("subnet", s.key);
  });

  it("serialises racing multi-object calls of one tenant: no address handed out twice", async () => {
    const t = tenant();
    const n = await net(t);
    await subnet(t, n.key, "10.30.0.0/24");
    const ports = await Promise.all(
      Array.from({ length: 20 }, () => api.create("lport", { tenantId: t, networkId: n.key })),
    );
    const ips = ports.map((p) => p.value.fixedIps[0]!.ipAddress);
    expect(new Set(ips).size).toBe(20);
  });
});
