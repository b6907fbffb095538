/**
 * The agent's guard against malformed NB objects (src/controller/model-guard.ts),
 * object by object: what passes comes back as the model defines it (defaults
 * filled in), what does not is left out with its reason in `refused` and one
 * log line per distinct problem, and a stored object is judged once.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ModelGuard } from "../../src/controller/model-guard.js";
import { logger } from "../../src/util/log.js";

// The guard logs through this same child logger (logger() hands out one per component).
const log = logger("model-guard");

afterEach(() => {
  vi.restoreAllMocks();
});

const owned = { tenantId: "t1" };
const port = (v: Record<string, unknown>) => ({
  value: {
    id: "p1",
    ...owned,
    networkId: "n1",
    macAddress: "fa:16:3e:00:00:01",
    fixedIps: [{ subnetId: "s1", ipAddress: "10.0.0.5" }],
    ...v,
  },
});

describe("ModelGuard.admit", () => {
  it("passes a well-formed object through with the model's defaults filled in", () => {
    const g = new ModelGuard();
    const v = g.admit("lport", "p1", port({})) as Record<string, unknown>;
    expect(v).toMatchObject({
      id: "p1",
      macAddress: "fa:16:3e:00:00:01",
      deviceOwner: "",
      adminStateUp: true,
      securityGroups: [],
    });
    expect(g.refused.size).toBe(0);
  });

  it("hands objects of kinds it does not know back untouched", () => {
    const g = new ModelGuard();
    const stored = { value: { anything: 1 }, malformed: "not json" };
    expect(g.admit("revision", "x", stored)).toBe(stored.value);
    expect(g.refused.size).toBe(0);
  });

  it.each([
    ["lport", "p1", port({ macAddress: undefined }), "macAddress: is missing"],
    ["lport", "p1", port({ fixedIps: undefined }), "fixedIps: is missing"],
    [
      "lport",
      "p1",
      port({
        fixedIps: [{ subnetId: "s1", ipAddress: "10.0.0.5" }, { subnetId: "s2" }],
      }),
      "fixedIps.1.ipAddress: is missing",
    ],
    [
      "subnet",
      "s1",
      { value: { id: "s1", ...owned, networkId: "n1", cidr: "10.0.0.0/24" } },
      "ipVersion: is missing",
    ],
    [
      "fip",
      "f1",
      { value: { id: "f1", ...owned, floatingNetworkId: "ext", macAddress: "fa:16:3e:00:00:09" } },
      "floatingIpAddress: is missing",
    ],
    [
      "fip",
      "f1",
      { value: { id: "f1", ...owned, floatingNetworkId: "ext", floatingIpAddress: "192.0.2.10" } },
      "macAddress: is missing",
    ],
    [
      "snat",
      "g1",
      {
        value: {
          id: "g1",
          ...owned,
          routerId: "r1",
          externalNetworkId: "ext",
          macAddress: "fa:16:3e:00:00:0a",
        },
      },
      "externalIpAddress: is missing",
    ],
    [
      "snat",
      "g1",
      {
        value: {
          id: "g1",
          ...owned,
          routerId: "r1",
          externalNetworkId: "ext",
          externalIpAddress: "192.0.2.1",
        },
      },
      "macAddress: is missing",
    ],
  ])("refuses a %s without a field the API fills in (%s: %s)", (kind, key, stored, reason) => {
    const g = new ModelGuard();
    const error = vi.spyOn(log, "error");
    expect(g.admit(kind, key, stored)).toBeUndefined();
    expect([...g.refused]).toEqual([[`${kind}/${key}`, reason]]);
    expect(error).toHaveBeenCalledTimes(1);
    expect(error.mock.calls[0]![0]).toEqual({ kind, key, reason });
    expect(error.mock.calls[0]![1]).toBe("malformed NB object left out of the agent's view");
  });

  it.each([
    ["subnet", { id: "s4", ...owned, networkId: "n1", cidr: "10.0.0.0/24", ipVersion: 4 }],
    ["subnet", { id: "s6", ...owned, networkId: "n1", cidr: "2001:db8::/64", ipVersion: 6 }],
    [
      "fip",
      {
        id: "f1",
        ...owned,
        floatingNetworkId: "ext",
        floatingIpAddress: "192.0.2.10",
        macAddress: "fa:16:3e:00:00:09",
      },
    ],
    [
      "snat",
      {
        id: "g1",
        ...owned,
        routerId: "r1",
        externalNetworkId: "ext",
        externalIpAddress: "192.0.2.1",
        macAddress: "fa:16:3e:00:00:0a",
      },
    ],
    ["lswitch", { id: "n1", ...owned }],
  ])("admits a complete %s", (kind, value) => {
    const g = new ModelGuard();
    expect(g.admit(kind, String(value.id), { value })).toMatchObject(value);
    expect(g.refused.size).toBe(0);
  });

  it("refuses what the schema refuses, with the schema's reason", () => {
    const g = new ModelGuard();
    expect(g.admit("lport", "p1", port({ macAddress: "01:00:5e:00:00:01" }))).toBeUndefined();
    expect(g.refused.get("lport/p1")).toMatch(/macAddress.*multicast/);
    expect(g.admit("lport", "p2", { value: "a string" })).toBeUndefined();
    expect(g.refused.get("lport/p2")).toMatch(/must be an object/);
  });

  it("refuses stored bytes that were not JSON, with the store's reason", () => {
    const g = new ModelGuard();
    expect(g.admit("lport", "p1", { value: undefined, malformed: "Unexpected token" })).toBeUndefined();
    expect(g.refused.get("lport/p1")).toBe("stored value is malformed: Unexpected token");
    // an empty reason is still a malformed object
    expect(g.admit("lport", "p2", { ...port({}), malformed: "" })).toBeUndefined();
    expect(g.refused.get("lport/p2")).toBe("stored value is malformed: ");
  });

  it("judges one stored object once, and a new version of it again", () => {
    const g = new ModelGuard();
    const good = port({});
    const first = g.admit("lport", "p1", good);
    // the cache keys on the stored object: changing it in place is not seen
    (good.value as Record<string, unknown>).macAddress = undefined;
    expect(g.admit("lport", "p1", good)).toBe(first);

    const bad = port({ macAddress: undefined });
    expect(g.admit("lport", "p1", bad)).toBeUndefined();
    expect(g.refused.has("lport/p1")).toBe(true);
    g.forget("lport", "p1");
    // judged already: not refused (nor logged) again
    expect(g.admit("lport", "p1", bad)).toBeUndefined();
    expect(g.refused.has("lport/p1")).toBe(false);

    // fixing it in the store (a new stored object) brings it back
    g.admit("lport", "p1", port({ fixedIps: undefined }));
    expect(g.refused.get("lport/p1")).toBe("fixedIps: is missing");
    expect(g.admit("lport", "p1", port({}))).toMatchObject({ id: "p1" });
    expect(g.refused.has("lport/p1")).toBe(false);
  });

  it("logs a problem once, and again only when the reason changes", () => {
    const g = new ModelGuard();
    const error = vi.spyOn(log, "error");
    g.admit("lport", "p1", port({ macAddress: undefined }));
    g.admit("lport", "p1", port({ macAddress: undefined }));
    expect(error).toHaveBeenCalledTimes(1);
    g.admit("lport", "p1", port({ fixedIps: undefined }));
    expect(error).toHaveBeenCalledTimes(2);
    expect(g.refused.get("lport/p1")).toBe("fixedIps: is missing");
  });

  it("forgets only the object named", () => {
    const g = new ModelGuard();
    g.admit("lport", "p1", port({ macAddress: undefined }));
    g.admit("lport", "p2", port({ id: "p2", macAddress: undefined }));
    g.forget("lport", "p1");
    expect([...g.refused.keys()]).toEqual(["lport/p2"]);
  });
});
