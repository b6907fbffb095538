/**
 * The DHCP option settings of the NB model (src/apps/dhcp/options.ts), value
 * by value: how names resolve (numbers up to 255, dnsmasq's `option:` and
 * `option6:`, aliases whatever their case, `_`/`-` and surrounding spaces),
 * how each type parses at its edges (integer ranges, `infinite`, hex, flags,
 * addresses, classless routes with OVN's braces, RFC 3397 domain lists, raw
 * bytes of unknown codes), suppression and siaddr, and the typed errors (with
 * their context) that make a caller skip one setting. Also the two small
 * modules beside it: which subnet a port's DHCP is served from, and the
 * OpenFlow match of DHCPv4 client traffic (RFC 2131 §4.1: UDP 68 → 67).
 */
import { describe, expect, it } from "vitest";
import { dhcpSubnetFor } from "../../src/apps/dhcp/context.js";
import { DHCP_CLIENT_MATCH } from "../../src/apps/dhcp/match.js";
import {
  collectOptionSettings,
  DhcpOptionError,
  parseOptionSetting,
  resolveOptionName,
} from "../../src/apps/dhcp/options.js";
import type { Port, Subnet } from "../../src/nb/model/index.js";

const value = (name: string, v: string) => {
  const s = parseOptionSetting(name, v);
  if (s.kind !== "value") throw new Error(`expected a value, got ${s.kind}`);
  return s.value;
};
const raw = (name: string, v: string) => {
  const s = parseOptionSetting(name, v);
  if (s.kind !== "raw") throw new Error(`expected raw bytes, got ${s.kind}`);
  return s.data;
};
const refused = (name: string, v: string): DhcpOptionError => {
  try {
    parseOptionSetting(name, v);
  } catch (e) {
    if (e instanceof DhcpOptionError) return e;
    throw e;
  }
  throw new Error(`${name} = ${JSON.stringify(v)} was accepted`);
};

describe("option names", () => {
  it("numbers up to 255, option: and option6: prefixes, aliases in any case and spelling", () => {
    expect(resolveOptionName("255")).toEqual({ code: 255 });
    expect(resolveOptionName("256")).toBeUndefined();
    // a number is all digits: no hex or exponent that Number() would read
    expect(resolveOptionName("0x1a")).toBeUndefined();
    expect(resolveOptionName("1e2")).toBeUndefined();
    expect(resolveOptionName(" OPTION:26 ")).toEqual({ code: 26 });
    expect(resolveOptionName("option6:23")).toEqual({ code: 23 });
    expect(resolveOptionName(" Dns_Server ")).toMatchObject({ code: 6 });
    expect(resolveOptionName("interfaceMtu")).toEqual({ code: 26 });
    // the prefix is stripped only at the start
    expect(resolveOptionName("mtuoption:")).toBeUndefined();
    expect(resolveOptionName("next-server")).toEqual({ name: "next-server", bootp: "siaddr" });
  });

  it("an unknown name is a DhcpOptionError carrying the option and the value", () => {
    const e = refused("no-such-option", "1");
    expect(e.code).toBe("DHCP_OPTION");
    expect(e.context).toEqual({ option: "no-such-option", value: "1" });
    expect(e.message).toBe(
      'dhcp option "no-such-option" = "1": unknown option name (use a number, e.g. option:150)',
    );
  });
});

describe("typed values at their edges", () => {
  it("integers: the ends of each range pass, one beyond fails; decimal or 0x hex, spaces trimmed", () => {
    expect(value("default-ttl", "0")).toBe(0);
    expect(value("default-ttl", "255")).toBe(255);
    expect(refused("default-ttl", "256").message).toContain('"256" is not an integer in 0..255');
    expect(value("mtu", " 1400 ")).toBe(1400);
    expect(value("mtu", "65535")).toBe(65535);
    expect(() => value("mtu", "65536")).toThrow(DhcpOptionError);
    expect(value("time-offset", "-2147483648")).toBe(-2147483648);
    expect(value("time-offset", "2147483647")).toBe(2147483647);
    expect(() => value("time-offset", "2147483648")).toThrow(DhcpOptionError);
    expect(() => value("time-offset", "-2147483649")).toThrow(DhcpOptionError);
    expect(value("mtu", "0x5dc")).toBe(1500);
    // the whole text must be the number: Number() and parseInt() alone would read these
    for (const bad of ["0x5dcg", "x0x5dc", "15x", "1.5", "-", "1e3", "+5", "9x10"])
      expect(() => value("mtu", bad), bad).toThrow(DhcpOptionError);
    expect(() => value("time-offset", "-0x10")).toThrow(DhcpOptionError);
  });

  it("'infinite' only for a 32-bit value, and only the whole word", () => {
    expect(value("lease-time", "infinite")).toBe(0xffffffff);
    expect(value("lease-time", "INFINITE")).toBe(0xffffffff);
    expect(() => value("mtu", "infinite")).toThrow(DhcpOptionError);
    expect(() => value("lease-time", "infinitely")).toThrow(DhcpOptionError);
    expect(() => value("lease-time", "not-infinite")).toThrow(DhcpOptionError);
  });

  it("flags: true/1/yes/on in any case, the whole word, anything else refused", () => {
    for (const v of ["true", "1", "YES", "on"]) expect(value("80", v)).toBe(true);
    for (const v of ["no", "yes!", "xon", "0"]) expect(() => value("80", v)).toThrow(DhcpOptionError);
  });

  it("bytes: hex as given, text as its bytes; only option 119 takes domain names", () => {
    expect(value("vendor-encap", "0x0a0b")).toEqual(Buffer.from([10, 11]));
    expect(value("vendor-encap", "0a:0b:0c")).toEqual(Buffer.from([10, 11, 12]));
    expect(value("vendor-encap", "hello.example")).toEqual(Buffer.from("hello.example", "latin1"));
    expect(value("domain-search", "0x0361626300")).toEqual(Buffer.from("0361626300", "hex"));
  });

  it("domain-search: RFC 1035 names, a trailing dot allowed; empty, long or unprintable labels refused", () => {
    const l63 = "a".repeat(63);
    expect(value("domain-search", "ab.cd, x.")).toEqual(Buffer.from("026162026364000178" + "00", "hex"));
    expect(value("domain-search", `${l63}.org`)).toEqual(
      Buffer.concat([
        Buffer.from([63]),
        Buffer.from(l63),
        Buffer.from([3]),
        Buffer.from("org"),
        Buffer.from([0]),
      ]),
    );
    for (const bad of [`${l63}a.org`, "a..b", "caf\u00e9.org", "\u00e9cole.org", "a\u007f.org"]) {
      expect(refused("domain-search", bad).message).toContain("is not a domain name");
    }
  });

  it("classless routes: prefixes normalised, braces and spaces allowed, malformed pairs refused", () => {
    expect(value("classless-static-route", "{10.1.2.3/8, 10.0.0.1}")).toEqual([
      { destination: "10.0.0.0/8", router: "10.0.0.1" },
    ]);
    expect(value("classless-static-route", " 192.168.7.9/32,10.0.0.1,10.9.9.9/0,10.0.0.2")).toEqual([
      { destination: "192.168.7.9/32", router: "10.0.0.1" },
      { destination: "0.0.0.0/0", router: "10.0.0.2" },
    ]);
    for (const bad of [
      "10.0.0.0/33,10.0.0.1",
      "x10.0.0.0/8,10.0.0.1",
      "10.0.0.0/8x,10.0.0.1",
      "10.0.0.0/8,{10.0.0.1",
      "10.0.0.0/8},10.0.0.1",
      "10.0.0.0/8",
    ]) {
      expect(() => value("classless-static-route", bad), bad).toThrow(DhcpOptionError);
    }
    expect(refused("classless-static-route", "10.0.0.0/33,10.0.0.1").message).toContain(
      '"10.0.0.0/33" is not a.b.c.d/len',
    );
  });

  it("address lists need at least one address", () => {
    expect(value("dns-server", "10.0.0.1 10.0.0.2")).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(refused("dns-server", ",").message).toContain("needs at least one value");
  });
});

describe("unknown codes, suppression and siaddr", () => {
  it("unknown codes go raw: hex, IPv4 addresses, else the text; at most 1020 bytes", () => {
    expect(raw("option:150", " 0x0a0b ")).toEqual(Buffer.from([10, 11]));
    expect(raw("150", "10.0.0.1 10.0.0.2")).toEqual(Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]));
    expect(raw("150", "tftp.example")).toEqual(Buffer.from("tftp.example"));
    expect(raw("150", ",")).toEqual(Buffer.from(","));
    expect(raw("150", `0x${"ab".repeat(1020)}`)).toHaveLength(1020);
    expect(refused("150", `0x${"ab".repeat(1021)}`).message).toContain("longer than 1020 bytes");
  });

  it("an empty or blank value suppresses; siaddr is an address or nothing", () => {
    expect(parseOptionSetting("mtu", " ")).toEqual({ code: 26, kind: "suppress" });
    expect(parseOptionSetting("next-server", "  ")).toEqual({ kind: "siaddr", value: undefined });
    expect(parseOptionSetting("next-server", " 10.0.0.5 ")).toEqual({ kind: "siaddr", value: "10.0.0.5" });
    expect(() => parseOptionSetting("next-server", "nowhere")).toThrow(DhcpOptionError);
  });

  it("collectOptionSettings keeps the good ones in order and reports each bad one with its source", () => {
    const { settings, errors } = collectOptionSettings({ mtu: "1400", router: "bad" }, [
      { name: "dns-server", value: "10.0.0.53" },
      { name: "mtu", value: "huge" },
      { name: "dns-server", value: "2001:db8::53", ipVersion: 6 },
    ]);
    expect(settings).toEqual([
      { code: 26, kind: "value", value: 1400 },
      { code: 6, kind: "value", value: ["10.0.0.53"] },
    ]);
    expect(errors.map((e) => [e.context.option, e.context.source])).toEqual([
      ["router", "subnet"],
      ["mtu", "port"],
    ]);
  });
});

describe("dhcpSubnetFor and the DHCPv4 client match", () => {
  const sub = (id: string, over: Partial<Subnet>) =>
    ({ id, ipVersion: 4, enableDhcp: true, ...over }) as Subnet;
  const subnets: Record<string, Subnet> = {
    v4: sub("v4", {}),
    off: sub("off", { enableDhcp: false }),
    v6: sub("v6", { ipVersion: 6 }),
  };
  const portWith = (ips: [string, string][]) =>
    ({ fixedIps: ips.map(([subnetId, ipAddress]) => ({ subnetId, ipAddress })) }) as Port;
  const find = (ips: [string, string][]) => dhcpSubnetFor(portWith(ips), (id) => subnets[id]);

  it("takes an IPv4 address on an IPv4 subnet with DHCP on, and nothing else", () => {
    expect(find([["v4", "10.0.0.5"]])).toEqual({ subnet: subnets.v4, ipAddress: "10.0.0.5" });
    expect(find([["off", "10.0.0.5"]])).toBeUndefined();
    expect(find([["v6", "10.0.0.5"]])).toBeUndefined();
    expect(find([["gone", "10.0.0.5"]])).toBeUndefined();
    // an IPv6 address is never served by DHCPv4, whatever subnet it names
    expect(find([["v4", "fd00::5"]])).toBeUndefined();
  });

  it("DHCP_CLIENT_MATCH is IPv4/UDP from port 68 to port 67", () => {
    expect(DHCP_CLIENT_MATCH).toEqual([
      { field: "eth_type", value: 0x0800 },
      { field: "nw_proto", value: 17 },
      { field: "udp_src", value: 68 },
      { field: "udp_dst", value: 67 },
    ]);
  });
});
