/**
 * The app registry (src/apps/index.ts): loading apps by name in the order
 * given, refusing names it does not ship (with the list it knows, and not
 * taking an Object.prototype name for an app), the options each factory
 * passes on, and which apps each kind of network needs.
 */
import { describe, expect, it } from "vitest";
import {
  type AppOptions,
  APP_FACTORIES,
  DEFAULT_APPS,
  isAppName,
  loadApps,
  missingApps,
  networkNeeds,
} from "../../src/apps/index.js";
import type { AppContext } from "../../src/apps/types.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { parseEthernet } from "../../src/packet/index.js";
import { logger } from "../../src/util/log.js";
import { binding, net, newModel, port, router, subnet } from "../harness/model-fixture.js";

describe("loadApps", () => {
  it("loads every shipped app by its name, in the order asked", () => {
    expect(loadApps(DEFAULT_APPS).map((a) => a.name)).toEqual(DEFAULT_APPS);
    expect(loadApps(["tunnel", "classifier", "l3"]).map((a) => a.name)).toEqual([
      "tunnel",
      "classifier",
      "l3",
    ]);
    expect(Object.keys(APP_FACTORIES).sort()).toEqual([...DEFAULT_APPS].sort());
  });

  it("refuses an unknown name, naming the known ones", () => {
    expect(() => loadApps(["classifier", "firewall"])).toThrow(
      `unknown app "firewall" (known: ${DEFAULT_APPS.join(", ")})`,
    );
    for (const n of ["toString", "constructor", "__proto__", "hasOwnProperty", ""]) {
      expect(isAppName(n), n).toBe(false);
      expect(() => loadApps([n])).toThrow(/unknown app/);
    }
    for (const n of DEFAULT_APPS) expect(isAppName(n)).toBe(true);
  });

  it("gives each app its options; l3 advertises the DHCP domain, else its own", async () => {
    const rates = (o: AppOptions) => {
      const e = new Engine(world(), loadApps(["dhcp"], o));
      e.recomputeAll();
      return e.allMeters().map((m) => m.ratePps);
    };
    expect(rates({})).toEqual([100]);
    expect(rates({ dhcp: { ratePps: 5 } })).toEqual([5]);
    expect(await raDomains({})).toEqual([]);
    expect(await raDomains({ l3: { domain: "l3.test" } })).toEqual(["l3.test"]);
    expect(await raDomains({ dhcp: { domain: "dhcp.test" } })).toEqual(["dhcp.test"]);
    expect(await raDomains({ l3: { domain: "l3.test" }, dhcp: { domain: "dhcp.test" } })).toEqual([
      "dhcp.test",
    ]);
  });
});

/** net1 with an IPv4 DHCP subnet and an IPv6 SLAAC subnet on router r1, local vm1 (ofport 1). */
function world(): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setSubnet(
    "sub6",
    subnet("sub6", "net1", "fd00:1::/64", { ipv6RaMode: "slaac", ipv6AddressMode: "slaac" }),
  );
  m.setPort("vm1", port("vm1", "net1", "fa:16:3e:01:00:11", [["sub1", "10.1.0.11"]]));
  m.setBinding("vm1", binding("vm1", 1));
  m.setRouter(
    "r1",
    router("r1", [
      {
        subnetId: "sub6",
        portId: "rp6",
        networkId: "net1",
        ipAddress: "fd00:1::1",
        cidr: "fd00:1::/64",
        macAddress: "fa:16:3e:00:00:01",
      },
    ]),
  );
  return m;
}

/** The DNSSL domains of the first unsolicited RA the l3 app loaded with `o` sends. */
async function raDomains(o: AppOptions): Promise<string[]> {
  const m = world();
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
    installReactive: async () => undefined,
    log: logger("test-registry"),
  };
  await loadApps(["l3"], o)[0]!.timer!.tick(ctx, 0);
  expect(sent).toHaveLength(1);
  const nd = parseEthernet(sent[0]!).icmpv6?.ndp;
  if (nd?.kind !== "router-advertisement") throw new Error("not a router advertisement");
  const dnssl = nd.options.find((x) => x.kind === "dnssl");
  return dnssl && "domains" in dnssl ? dnssl.domains : [];
}

describe("networkNeeds and missingApps", () => {
  it("every network needs classifier, portsec and l2; tunnelled ones tunnel, provider ones provider", () => {
    expect(networkNeeds("geneve")).toEqual(["classifier", "portsec", "l2", "tunnel"]);
    expect(networkNeeds("vxlan")).toEqual(["classifier", "portsec", "l2", "tunnel"]);
    expect(networkNeeds("vlan")).toEqual(["classifier", "portsec", "l2", "provider"]);
    expect(networkNeeds("flat")).toEqual(["classifier", "portsec", "l2", "provider"]);
    expect(networkNeeds("local")).toEqual(["classifier", "portsec", "l2"]);
  });

  it("lists, per kind of network, what an app list leaves out (kinds with nothing missing omitted)", () => {
    expect(missingApps(DEFAULT_APPS)).toEqual(new Map());
    expect(missingApps(["classifier", "portsec", "l2", "provider"])).toEqual(
      new Map([
        ["geneve", ["tunnel"]],
        ["vxlan", ["tunnel"]],
      ]),
    );
    expect(missingApps([])).toEqual(
      new Map([
        ["geneve", ["classifier", "portsec", "l2", "tunnel"]],
        ["vxlan", ["classifier", "portsec", "l2", "tunnel"]],
        ["vlan", ["classifier", "portsec", "l2", "provider"]],
        ["flat", ["classifier", "portsec", "l2", "provider"]],
      ]),
    );
  });
});
