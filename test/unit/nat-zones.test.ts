/**
 * NAT conntrack zones stay with their router: the allocator's `claim`, the
 * model handing a router a zone when it gains its first SNAT gateway and
 * keeping it while other routers come and go (two routers whose ids hash to
 * the same zone, the later one sorting first, is the case that used to move
 * the earlier one), waiting for a zone when all are taken, and a restarted
 * agent's model taking back the zones the switch's flows use (both from a
 * router's SNAT flows on its gateway chassis and from its floating IPs' port
 * flows elsewhere), so that it rebuilds exactly the flows that are installed.
 */
import { describe, expect, it } from "vitest";
import { installedNatZones } from "../../src/apps/nat.js";
import { loadApps } from "../../src/apps/index.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { CT_ZONE_MAX, CT_ZONE_MIN, CtZones, hashedZone } from "../../src/datapath/index.js";
import { formatFlow } from "../../src/openflow/text.js";
import {
  binding,
  chassis,
  fip,
  net,
  newModel,
  port,
  router,
  snat,
  subnet,
} from "../harness/model-fixture.js";

const SPAN = CT_ZONE_MAX - CT_ZONE_MIN + 1;

/** A router id that sorts before `id` and hashes to the same zone. */
function collidingBefore(id: string): string {
  for (let i = 0; i < 100_000; i++) {
    const c = `a${i}`;
    if (c < id && hashedZone(c) === hashedZone(id)) return c;
  }
  throw new Error(`no id colliding with ${id} found`);
}

const FIRST = "rb";
const SECOND = collidingBefore(FIRST);

function itf(n: number) {
  return {
    subnetId: `sub${n}`,
    portId: `rp${n}`,
    networkId: `net${n}`,
    ipAddress: `10.${n}.0.1`,
    cidr: `10.${n}.0.0/24`,
    macAddress: `fa:16:3e:00:00:0${n}`,
  };
}

/** The shared part: an external network on physnet1, two tenant networks with a local VM each. */
function base(): LocalModel {
  const m = newModel();
  m.setProviderPorts(new Map([["physnet1", 50]]));
  m.setChassis("host1", chassis("host1", "192.0.2.1"));
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host1", true);
  m.setAlive("host2", true);
  m.setNetwork("ext", net("ext", { networkType: "flat", physicalNetwork: "physnet1", external: true }));
  m.setSubnet("extsub", subnet("extsub", "ext", "172.24.4.0/24", { gatewayIp: "172.24.4.1" }));
  for (const n of [1, 2]) {
    m.setNetwork(`net${n}`, net(`net${n}`, { segmentationId: 100 + n }));
    m.setSubnet(`sub${n}`, subnet(`sub${n}`, `net${n}`, `10.${n}.0.0/24`));
    m.setPort(`vm${n}`, port(`vm${n}`, `net${n}`, `fa:16:3e:0${n}:00:11`, [[`sub${n}`, `10.${n}.0.11`]]));
    m.setBinding(`vm${n}`, binding(`vm${n}`, n));
  }
  return m;
}

/**
 * Router `id` on net`n` with its gateway on ext and a floating IP for vm`n`;
 * `gateway`: its SNAT runs here (host1) or on host2 (then only the floating
 * IP's port flows here use its zone).
 */
function addRouter(m: LocalModel, id: string, n: number, gateway: "host1" | "host2"): void {
  m.setRouter(id, router(id, [itf(n)]));
  m.setSnat(
    `gw-${id}`,
    snat(`gw-${id}`, {
      routerId: id,
      externalNetworkId: "ext",
      externalIpAddress: `172.24.4.${10 + n}`,
      macAddress: `fa:16:3e:fe:00:1${n}`,
      gatewayChassis: [gateway],
    }),
  );
  m.setFip(
    `f${n}`,
    fip(`f${n}`, {
      floatingNetworkId: "ext",
      floatingIpAddress: `172.24.4.${50 + n}`,
      macAddress: `fa:16:3e:fe:00:5${n}`,
      portId: `vm${n}`,
      fixedIpAddress: `10.${n}.0.11`,
    }),
  );
}

function natFlows(e: Engine): string[] {
  return e
    .allFlows()
    .filter((d) => d.owner.startsWith("nat/"))
    .map((d) => `${d.owner} ${formatFlow(d.flow)}`)
    .sort();
}

describe("CtZones.claim", () => {
  it("gives a zone to a key, frees the key's old zone and leaves the holder without one", () => {
    const z = new CtZones();
    expect(z.zoneFor("a", CT_ZONE_MIN + 3)).toBe(CT_ZONE_MIN + 3);
    expect(z.zoneFor("b", CT_ZONE_MIN + 9)).toBe(CT_ZONE_MIN + 9);
    expect(z.claim("b", CT_ZONE_MIN + 3)).toBe("a");
    expect(z.peek("a")).toBeUndefined();
    expect(z.peek("b")).toBe(CT_ZONE_MIN + 3);
    expect(z.holder(CT_ZONE_MIN + 9)).toBeUndefined();
    expect(z.zoneFor("a", CT_ZONE_MIN + 9)).toBe(CT_ZONE_MIN + 9);
    expect(z.claim("b", CT_ZONE_MIN + 3)).toBeUndefined();
    expect(() => z.claim("c", 7)).toThrow(RangeError);
    expect(z.size).toBe(2);
  });
});

describe("a router's NAT zone", () => {
  it(`stays when a router whose id hashes to the same zone and sorts first (${SECOND} < ${FIRST}) comes later`, () => {
    expect(SECOND < FIRST && hashedZone(SECOND) === hashedZone(FIRST)).toBe(true);
    const m = base();
    addRouter(m, FIRST, 1, "host1");
    const e = new Engine(m, loadApps(["nat"]));
    e.recomputeAll();
    expect(m.natZone(FIRST)).toBe(hashedZone(FIRST));
    const firstFlows = () =>
      natFlows(e).filter((l) => l.startsWith(`nat/router/${FIRST} `) || l.startsWith("nat/port/vm1 "));
    const before = firstFlows();
    expect(before.some((l) => l.includes(`zone=${hashedZone(FIRST)}`))).toBe(true);

    addRouter(m, SECOND, 2, "host1");
    const changed = e.recomputeChanged().map((c) => c.owner);
    expect(m.natZone(FIRST)).toBe(hashedZone(FIRST));
    expect(m.natZone(SECOND)).not.toBe(hashedZone(FIRST));
    expect(m.natZone(SECOND)).toBeGreaterThanOrEqual(CT_ZONE_MIN);
    // nothing of the first router's was rebuilt, and its flows are what they were
    expect(changed.filter((o) => o === `nat/router/${FIRST}` || o === "nat/port/vm1")).toEqual([]);
    expect(firstFlows()).toEqual(before);

    // and it stays when the other goes again; the other's zone is free again
    const second = m.natZone(SECOND)!;
    m.setSnat(`gw-${SECOND}`, undefined);
    e.recomputeChanged();
    expect(m.natZone(SECOND)).toBeUndefined();
    expect(m.natZone(FIRST)).toBe(hashedZone(FIRST));
    expect(firstFlows()).toEqual(before);
    m.setSnat(`gw-${FIRST}`, undefined);
    expect(m.natZone(FIRST)).toBeUndefined();
    addRouter(m, SECOND, 2, "host1");
    expect(m.natZone(SECOND)).toBe(hashedZone(SECOND));
    expect(second).not.toBe(hashedZone(SECOND));
  });

  it("waits for a zone when all are taken, and gets the first one freed", () => {
    const m = newModel();
    const gw = (r: string) =>
      snat(`gw-${r}`, {
        routerId: r,
        externalNetworkId: "ext",
        externalIpAddress: "172.24.4.10",
        macAddress: "fa:16:3e:fe:00:10",
      });
    for (let i = 0; i < SPAN; i++) m.setSnat(`gw-r${i}`, gw(`r${i}`));
    const zones = new Set(Array.from({ length: SPAN }, (_, i) => m.natZone(`r${i}`)));
    expect(zones.size).toBe(SPAN);
    expect([...zones].every((z) => z !== undefined && z >= CT_ZONE_MIN && z <= CT_ZONE_MAX)).toBe(true);
    m.setSnat("gw-late", gw("late"));
    expect(m.natZone("late")).toBeUndefined();
    m.drainChanged();
    const freed = m.natZone("r7")!;
    m.setSnat("gw-r7", undefined);
    expect(m.natZone("late")).toBe(freed);
    expect(m.drainChanged()).toEqual(new Set(["snat:r7", "natzone:r7", "natzone:late"]));
  });
});

describe("a restarted agent", () => {
  it("takes back the zones the switch's NAT flows use, and rebuilds exactly the installed flows", () => {
    // before: FIRST (SNAT here) arrived first and has the zone both hash to; SECOND (SNAT on host2,
    // so only vm2's floating IP flows here carry its zone) got another one
    const before = base();
    addRouter(before, FIRST, 1, "host1");
    addRouter(before, SECOND, 2, "host2");
    const old = new Engine(before, loadApps(["nat"]));
    old.recomputeAll();
    const installed = old.allFlows().map((d) => d.flow);

    // after the restart the objects arrive the other way round: SECOND takes the hashed zone
    const after = base();
    addRouter(after, SECOND, 2, "host2");
    addRouter(after, FIRST, 1, "host1");
    expect(after.natZone(SECOND)).toBe(hashedZone(FIRST));
    expect(after.natZone(FIRST)).not.toBe(hashedZone(FIRST));

    const seen = installedNatZones(installed, after);
    expect(seen).toEqual(
      new Map([
        [FIRST, before.natZone(FIRST)!],
        [SECOND, before.natZone(SECOND)!],
      ]),
    );
    const fresh = new Engine(after, loadApps(["nat"]));
    fresh.recomputeAll();
    expect(after.adoptNatZones(seen)).toEqual([FIRST, SECOND].sort());
    expect(after.natZone(FIRST)).toBe(before.natZone(FIRST));
    expect(after.natZone(SECOND)).toBe(before.natZone(SECOND));
    fresh.recomputeChanged();
    expect(natFlows(fresh)).toEqual(natFlows(old));
    // adopting what it already holds changes nothing
    expect(after.adoptNatZones(installedNatZones(installed, after))).toEqual([]);
  });

  it("ignores the zones of routers that are gone, and zones claimed twice", () => {
    const m = base();
    addRouter(m, FIRST, 1, "host1");
    addRouter(m, "rc", 2, "host1");
    const z1 = m.natZone(FIRST)!;
    const z2 = m.natZone("rc")!;
    expect(m.adoptNatZones(new Map([["gone", z2]]))).toEqual([]);
    expect(
      m.adoptNatZones(
        new Map([
          [FIRST, z2],
          ["rc", z2],
        ]),
      ),
    ).toEqual([]);
    expect([m.natZone(FIRST), m.natZone("rc")]).toEqual([z1, z2]);
    // a zone another router holds: that router gets another one
    expect(m.adoptNatZones(new Map([[FIRST, z2]]))).toEqual([FIRST, "rc"].sort());
    expect(m.natZone(FIRST)).toBe(z2);
    expect(m.natZone("rc")).not.toBe(z2);
    expect(m.natZone("rc")).toBeDefined();
  });
});
