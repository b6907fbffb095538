/**
 * The NB model without a store: schema parsing, error shape, IP/CIDR
 * arithmetic, and a property test that random input only ever yields a typed
 * ValidationError.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bigToIp,
  canonicalCidr,
  cidrContains,
  cidrsOverlap,
  hostRange,
  ipToBig,
  isCidr,
  isIp,
} from "../../src/nb/model/ip.js";
import {
  KINDS,
  MAX_GATEWAY_CHASSIS,
  OBJECT_KINDS,
  ValidationError,
  kindByNoun,
  parseObject,
} from "../../src/nb/model/index.js";
import type { Network, Port, SnatGateway } from "../../src/nb/model/index.js";

describe("NB model schemas", () => {
  it("fills defaults and canonicalises addresses", () => {
    const n = parseObject<Network>("lswitch", { id: "n1", tenantId: "t" });
    expect(n).toMatchObject({ networkType: "geneve", external: false, adminStateUp: true, name: "" });
    const p = parseObject<Port>("lport", {
      id: "p1",
      tenantId: "t",
      networkId: "n1",
      macAddress: "FA-16-3E-00-00-01",
      fixedIps: [{ subnetId: "s", ipAddress: "2001:0db8::0001" }],
    });
    expect(p.macAddress).toBe("fa:16:3e:00:00:01");
    expect(p.fixedIps[0]!.ipAddress).toBe("2001:db8::1");
  });

  it("names kind, key, field and reason", () => {
    const err = (() => {
      try {
        parseObject("lport", {
          id: "p1",
          tenantId: "t",
          networkId: "n",
          fixedIps: [{ subnetId: "s", ipAddress: "10.0.0.300" }],
        });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect(err).toMatchObject({
      kind: "lport",
      key: "p1",
      field: "fixedIps[0].ipAddress",
      code: "VALIDATION",
    });
    expect((err as Error).message).toBe("lport p1: fixedIps[0].ipAddress: is not an IPv4 or IPv6 address");
    expect(() => parseObject("subnet", "nope")).toThrow(/subnet \(new\): \(object\): must be an object/);
  });

  it("an SNAT gateway's chassis addresses (distributed SNAT): one per chassis, IPv4, none used twice", () => {
    const base = {
      id: "g1",
      tenantId: "t",
      routerId: "r1",
      externalNetworkId: "ext",
      externalIpAddress: "203.0.113.10",
    };
    const a = (chassis: string, ipAddress: string) => ({ chassis, ipAddress });
    const g = parseObject<SnatGateway>("snat", { ...base, chassisAddresses: [a("host1", "203.0.113.21")] });
    expect(g.chassisAddresses).toEqual([{ chassis: "host1", ipAddress: "203.0.113.21" }]);
    expect(parseObject<SnatGateway>("snat", base).chassisAddresses).toEqual([]);
    const bad = (chassisAddresses: unknown, field: string, reason: RegExp) => {
      const err = (() => {
        try {
          parseObject("snat", { ...base, chassisAddresses });
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe(field);
      expect((err as ValidationError).message).toMatch(reason);
    };
    bad(
      [a("host1", "203.0.113.21"), a("host1", "203.0.113.22")],
      "chassisAddresses[1].chassis",
      /host1 is listed twice/,
    );
    bad(
      [a("host1", "203.0.113.21"), a("host2", "203.0.113.21")],
      "chassisAddresses[1].ipAddress",
      /used twice/,
    );
    bad([a("host1", "203.0.113.10")], "chassisAddresses[0].ipAddress", /used twice/);
    bad([a("host1", "2001:db8::5")], "chassisAddresses[0].ipAddress", /must be IPv4/);
    bad([a("host 1", "203.0.113.21")], "chassisAddresses[0].chassis", /is not a chassis name/);
    bad(
      [{ chassis: "host1", ipAddress: "203.0.113.21", macAddress: "01:00:5e:00:00:01" }],
      "chassisAddresses[0].macAddress",
      /multicast/,
    );
  });

  it("an SNAT gateway's candidate chassis: names, no repeats, at most MAX_GATEWAY_CHASSIS", () => {
    const base = { id: "g1", tenantId: "t", routerId: "r1", externalNetworkId: "ext" };
    const g = parseObject<SnatGateway>("snat", { ...base, macAddress: "FA:16:3E:00:00:0A" });
    expect(g).toMatchObject({ gatewayChassis: [], enabled: true, macAddress: "fa:16:3e:00:00:0a" });
    const bad = (gatewayChassis: unknown, field: string, reason: RegExp) => {
      try {
        parseObject("snat", { ...base, gatewayChassis });
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        expect((e as ValidationError).field).toBe(field);
        expect((e as ValidationError).message).toMatch(reason);
      }
    };
    bad(["host1", "host2", "host1"], "gatewayChassis[2]", /host1 is listed twice/);
    bad(["host 1"], "gatewayChassis[0]", /is not a chassis name/);
    bad(
      Array.from({ length: MAX_GATEWAY_CHASSIS + 1 }, (_, i) => `h${i}`),
      "gatewayChassis",
      /at most 16/,
    );
    try {
      parseObject("fip", {
        id: "f1",
        tenantId: "t",
        floatingNetworkId: "ext",
        macAddress: "01:00:5e:00:00:01",
      });
      expect.unreachable();
    } catch (e) {
      expect((e as ValidationError).field).toBe("macAddress");
    }
  });

  it("declares every kind once, with a noun for the CLI", () => {
    expect(OBJECT_KINDS).toEqual([
      "chassis",
      "tenant",
      "lswitch",
      "subnet",
      "lport",
      "lrouter",
      "secgroup",
      "fip",
      "snat",
    ]);
    expect(kindByNoun("network")).toBe("lswitch");
    expect(kindByNoun("port")).toBe("lport");
    expect(KINDS.chassis.keyField).toBe("name");
  });

  it("turns any random input into an object or a ValidationError", () => {
    fc.assert(
      fc.property(fc.constantFrom(...OBJECT_KINDS), fc.anything(), (kind, input) => {
        try {
          parseObject(kind, input);
        } catch (e) {
          expect(e).toBeInstanceOf(ValidationError);
        }
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...OBJECT_KINDS),
        fc.dictionary(
          fc.constantFrom("id", "tenantId", "cidr", "networkId", "rules", "name", "tunnelIps"),
          fc.anything(),
        ),
        (kind, input) => {
          try {
            parseObject(kind, input);
          } catch (e) {
            expect(e).toBeInstanceOf(ValidationError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("NB IP arithmetic", () => {
  it("parses strictly", () => {
    expect(isIp("10.0.0.1")).toBe(true);
    expect(isIp("10.1")).toBe(false);
    expect(isIp("fe80::1%eth0")).toBe(false);
    expect(isCidr("10.0.0.0/24")).toBe(true);
    expect(isCidr("10.0.0.0/33")).toBe(false);
    expect(isCidr("2001:db8::/129")).toBe(false);
    expect(canonicalCidr("10.0.0.77/24")).toBe("10.0.0.0/24");
  });

  it("computes ranges, containment and overlap for IPv4 and IPv6", () => {
    expect(hostRange("10.0.0.0/30")).toEqual({ first: ipToBig("10.0.0.1"), last: ipToBig("10.0.0.2") });
    expect(bigToIp(hostRange("2001:db8::/64").last, 6)).toBe("2001:db8::ffff:ffff:ffff:ffff");
    expect(cidrContains("2001:db8::/64", "2001:db8::5")).toBe(true);
    expect(cidrContains("2001:db8::/64", "10.0.0.1")).toBe(false);
    expect(cidrsOverlap("10.0.0.0/16", "10.0.5.0/24")).toBe(true);
    expect(cidrsOverlap("10.0.0.0/24", "10.0.1.0/24")).toBe(false);
    expect(cidrsOverlap("10.0.0.0/8", "::/0")).toBe(false);
  });

  it("round-trips addresses through bigints", () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        expect(bigToIp(ipToBig(ip), 4)).toBe(ip);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const back = bigToIp(ipToBig(ip), 6);
        expect(ipToBig(back)).toBe(ipToBig(ip));
      }),
      { numRuns: 300 },
    );
  });
});
