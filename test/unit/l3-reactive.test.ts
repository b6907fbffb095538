/**
 * The reactive host routes of the distributed router depend on exactly what
 * they were built from: the router (so an administratively downed or removed
 * router takes them with it), the destination port and its address — and not
 * on the other ports of the destination network, so a new VM there does not
 * wipe every route into the network on every host.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import type { AppContext, ReactiveFlows } from "../../src/apps/types.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { buildFrame } from "../../src/packet/frame.js";
import { logger } from "../../src/util/log.js";
import { binding, net, newModel, port, router, subnet } from "../harness/model-fixture.js";

const R_MAC1 = "fa:16:3e:aa:00:01";
const R_MAC2 = "fa:16:3e:aa:00:02";

function r1(adminStateUp = true) {
  return router(
    "r1",
    [
      {
        subnetId: "sub1",
        portId: "rp1",
        networkId: "net1",
        ipAddress: "10.0.0.1",
        cidr: "10.0.0.0/24",
        macAddress: R_MAC1,
      },
      {
        subnetId: "sub2",
        portId: "rp2",
        networkId: "net2",
        ipAddress: "10.1.0.1",
        cidr: "10.1.0.0/24",
        macAddress: R_MAC2,
      },
    ],
    { adminStateUp },
  );
}

function setup() {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 5 }));
  m.setNetwork("net2", net("net2", { segmentationId: 6 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.0.0.0/24"));
  m.setSubnet("sub2", subnet("sub2", "net2", "10.1.0.0/24"));
  m.setPort("a", port("a", "net1", "fa:16:3e:00:00:0a", [["sub1", "10.0.0.10"]]));
  m.setPort("d", port("d", "net2", "fa:16:3e:00:00:0d", [["sub2", "10.1.0.20"]]));
  m.setBinding("a", binding("a", 1));
  m.setBinding("d", binding("d", 2));
  m.setRouter("r1", r1());
  const apps = loadApps(["classifier", "l2", "l3"], { l3: { mode: "reactive" } });
  const e = new Engine(m, apps);
  e.recomputeAll();
  return { m, e, l3: apps.find((a) => a.name === "l3")! };
}

/** Run l3's packet-in handler on a UDP packet from a (10.0.0.10) to `dst`, as the agent would. */
async function firstPacket(m: LocalModel, e: Engine, l3: ReturnType<typeof setup>["l3"], dst: string) {
  const installed: ReactiveFlows[] = [];
  const ctx: AppContext = {
    view: m,
    packetOut: async () => undefined,
    resubmit: async () => undefined,
    sendThrough: async () => true,
    continueAt: async () => undefined,
    track: (fn) => {
      const deps = new Set<string>();
      const result = m.tracking(deps, fn);
      return { result, deps: [...deps] };
    },
    installReactive: async (r) => {
      installed.push(r);
      e.setReactive("l3", r.key, r.flows, r.deps);
    },
    log: logger("test-l3"),
  };
  const data = buildFrame({
    eth: { src: "fa:16:3e:00:00:0a", dst: R_MAC1 },
    ipv4: { src: "10.0.0.10", dst, ttl: 64 },
    udp: { srcPort: 40000, dstPort: 5000 },
    payload: Buffer.from("x"),
  });
  await l3.packetIn!({ inPort: 1, tableId: 0, cookie: 0n, data }, ctx);
  return installed;
}

const reactiveOwners = (e: Engine) => [...e.ownerKeys()].filter((k) => k.startsWith("l3/reactive/"));

describe("l3 reactive host routes", () => {
  it("are installed on the first packet with the router among their dependencies", async () => {
    const { m, e, l3 } = setup();
    const [r] = await firstPacket(m, e, l3, "10.1.0.20");
    expect(r).toBeDefined();
    expect(r!.deps).toContain("router:r1");
    expect(r!.deps).toContain("ip:net2/10.1.0.20");
    expect(r!.deps).toContain("port:d");
    expect(r!.deps.some((d) => d.startsWith("ports:"))).toBe(false);
    expect(reactiveOwners(e)).toHaveLength(1);
  });

  it("go when the router is set administratively down, and when it is removed", async () => {
    for (const change of [
      (m: LocalModel) => m.setRouter("r1", r1(false)),
      (m: LocalModel) => m.setRouter("r1", undefined),
    ]) {
      const { m, e, l3 } = setup();
      await firstPacket(m, e, l3, "10.1.0.20");
      expect(reactiveOwners(e)).toHaveLength(1);
      change(m);
      const changes = e.recomputeChanged();
      expect(reactiveOwners(e)).toHaveLength(0);
      expect(changes.some((c) => c.owner.startsWith("l3/reactive/") && c.after === undefined)).toBe(true);
    }
  });

  it("stay when another port joins or leaves the destination network", async () => {
    const { m, e, l3 } = setup();
    await firstPacket(m, e, l3, "10.1.0.20");
    m.setPort("n", port("n", "net2", "fa:16:3e:00:00:0e", [["sub2", "10.1.0.30"]]));
    m.setBinding("n", binding("n", 3));
    e.recomputeChanged();
    expect(reactiveOwners(e)).toHaveLength(1);
    m.setBinding("n", undefined);
    m.setPort("n", undefined);
    e.recomputeChanged();
    expect(reactiveOwners(e)).toHaveLength(1);
  });

  it("go when the destination's address moves to another port, or the port changes its MAC", async () => {
    const { m, e, l3 } = setup();
    await firstPacket(m, e, l3, "10.1.0.20");
    m.setPort("d", port("d", "net2", "fa:16:3e:00:00:0d", [["sub2", "10.1.0.21"]]));
    e.recomputeChanged();
    expect(reactiveOwners(e)).toHaveLength(0);

    await firstPacket(m, e, l3, "10.1.0.21");
    expect(reactiveOwners(e)).toHaveLength(1);
    m.setPort("d", port("d", "net2", "fa:16:3e:00:00:1d", [["sub2", "10.1.0.21"]]));
    e.recomputeChanged();
    expect(reactiveOwners(e)).toHaveLength(0);
  });

  it("an address no port had is routed once a port takes it", async () => {
    const { m, e, l3 } = setup();
    expect(await firstPacket(m, e, l3, "10.1.0.40")).toHaveLength(0);
    m.setPort("late", port("late", "net2", "fa:16:3e:00:00:40", [["sub2", "10.1.0.40"]]));
    m.setBinding("late", binding("late", 4));
    e.recomputeChanged();
    expect(await firstPacket(m, e, l3, "10.1.0.40")).toHaveLength(1);
  });
});

describe("l3 ICMP errors", () => {
  it("sends none for an IPv6 packet to a leg where the router has no IPv6 address (and does not throw)", async () => {
    const { m, e, l3 } = setup();
    const sent: Buffer[] = [];
    const ctx: AppContext = {
      view: m,
      packetOut: async (_p, frame) => {
        sent.push(frame);
      },
      resubmit: async () => undefined,
      sendThrough: async () => true,
      continueAt: async () => undefined,
      track: (fn) => ({ result: fn(), deps: [] }),
      installReactive: async (r) => {
        e.setReactive("l3", r.key, r.flows, r.deps);
      },
      log: logger("test-l3"),
    };
    const data = buildFrame({
      eth: { src: "fa:16:3e:00:00:0a", dst: R_MAC1 },
      ipv6: { src: "fd00::10", dst: "fd00:9::1", hopLimit: 1 },
      udp: { srcPort: 40000, dstPort: 5000 },
      payload: Buffer.from("x"),
    });
    await l3.packetIn!({ inPort: 1, tableId: 30, cookie: 0n, data }, ctx);
    expect(sent).toEqual([]);
    // with an IPv4 packet the same way, the time exceeded goes back from the leg's address
    const v4 = buildFrame({
      eth: { src: "fa:16:3e:00:00:0a", dst: R_MAC1 },
      ipv4: { src: "10.0.0.10", dst: "10.1.0.20", ttl: 1 },
      udp: { srcPort: 40000, dstPort: 5000 },
      payload: Buffer.from("x"),
    });
    await l3.packetIn!({ inPort: 1, tableId: 30, cookie: 0n, data: v4 }, ctx);
    expect(sent).toHaveLength(1);
  });
});
