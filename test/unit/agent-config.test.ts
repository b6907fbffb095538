/**
 * The agent's configuration: the shipped example parses, flags win over the
 * file, and a bad file is refused naming every bad field — before the agent
 * touches anything.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { missingApps, networkNeeds } from "../../src/apps/index.js";
import { configFlags, flagsToConfig } from "../../src/cli/agent.js";
import {
  ConfigError,
  loadAgentConfig,
  openflowTarget,
  parseAgentConfig,
} from "../../src/controller/config.js";

const EXAMPLE = join(import.meta.dirname, "../../examples/agent.yaml");

describe("agent config", () => {
  it("parses the shipped example; flags override the file", () => {
    const c = loadAgentConfig(EXAMPLE, { chassis: "host9", tunnelIp: undefined });
    expect(c.chassis).toBe("host9");
    expect(c.tunnelIp).toBe("192.168.77.1");
    expect(c.apps).toContain("dhcp");
    expect(c.offload.hwOffload).toBe(true);
    expect(openflowTarget(c)).toBe("unix:/var/run/openvswitch/br-int.mgmt");
  });

  it("refuses a bad file with every field and reason", () => {
    const dir = mkdtempSync(join(tmpdir(), "fdcfg-"));
    try {
      const f = join(dir, "bad.yaml");
      writeFileSync(
        f,
        'chassis: host1\ntunnelIp: "300.1.2.3"\nencap: gre\napps: [l2, teleport]\ncolour: red\n',
      );
      let err: unknown;
      try {
        loadAgentConfig(f, {});
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const msg = (err as Error).message;
      expect(msg).toMatch(/tunnelIp: is not an IPv4 address/);
      expect(msg).toMatch(/encap:/);
      expect(msg).toMatch(/apps\.1: is not a known app/);
      expect(msg).toMatch(/colour/);
      writeFileSync(f, "chassis: [unclosed\n");
      expect(() => loadAgentConfig(f, {})).toThrow(/not valid YAML/);
      expect(() => loadAgentConfig(join(dir, "missing.yaml"), {})).toThrow(/cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("agent flags", () => {
  it("every config key has a flag, derived from the schema", () => {
    const flags = configFlags();
    const paths = flags.map((f) => f.path.join("."));
    const leaves = (obj: Record<string, unknown>, prefix = ""): string[] =>
      Object.entries(obj).flatMap(([k, v]) =>
        v && typeof v === "object" && !Array.isArray(v) && k !== "bridgeMappings" && k !== "uplinks"
          ? leaves(v as Record<string, unknown>, `${prefix}${k}.`)
          : [`${prefix}${k}`],
      );
    const full = parseAgentConfig({
      chassis: "h",
      tunnelIp: "192.0.2.1",
      openflow: "unix:/x",
      pubsub: "tcp://127.0.0.1:1",
      pubsubServerKey: "/k/publisher.pub",
      pubsubKey: "/k/agent.key",
      ssl: { privateKey: "/k/ctl-privkey.pem", certificate: "/k/ctl-cert.pem", caCert: "/k/cacert.pem" },
      metricsTls: { certificate: "/k/m.pem", privateKey: "/k/m-key.pem" },
      metricsAuthFile: "/k/metrics.auth",
      dhcp: { ratePps: 1, leaseTime: 2, domain: "d" },
      punt: { switchRatePps: 4 },
      offload: {
        hwOffload: true,
        tcPolicy: "none",
        maxIdleMs: 1,
        nOffloadThreads: 1,
        mode: "ovs",
        profile: "connectx-6-dx",
        capacity: 10,
        socket: "/k/offload.sock",
      },
    });
    expect(paths.sort()).toEqual(leaves(full as unknown as Record<string, unknown>).sort());
    const byPath = new Map(flags.map((f) => [f.path.join("."), f.flag]));
    expect(byPath.get("nb")).toBe("db");
    expect(byPath.get("tunnelIp")).toBe("tunnel-ip");
    expect(byPath.get("dhcp.ratePps")).toBe("dhcp-rate-pps");
    expect(byPath.get("offload.hwOffload")).toBe("offload-hw-offload");
    expect(byPath.get("bridgeMappings")).toBe("bridge-mappings");
    expect(byPath.get("ssl.caCert")).toBe("ssl-ca-cert");
    expect(byPath.get("pubsubServerKey")).toBe("pubsub-server-key");
  });

  it("flags become typed config values and win over the file, key by key inside nested objects", () => {
    const over = flagsToConfig({
      dhcpRatePps: "7",
      offloadHwOffload: "false",
      apps: "classifier, l2",
      bridgeMappings: ["physnet1=br-ex", "physnet2=br-p2"],
      db: "etcd://127.0.0.1:2379",
      heartbeatSeconds: "2",
    });
    const c = loadAgentConfig(EXAMPLE, over);
    expect(c.dhcp).toEqual({ ratePps: 7, leaseTime: 86400, domain: "openstacklocal" });
    expect(c.offload.hwOffload).toBe(false);
    expect(c.offload.maxIdleMs).toBe(10000);
    expect(c.apps).toEqual(["classifier", "l2"]);
    expect(c.bridgeMappings).toEqual({ physnet1: "br-ex", physnet2: "br-p2" });
    expect(c.nb).toBe("etcd://127.0.0.1:2379");
    expect(c.heartbeatSeconds).toBe(2);
    expect(() => flagsToConfig({ dhcpRatePps: "fast" })).toThrow(/not a number/);
    expect(() => flagsToConfig({ offloadHwOffload: "yes" })).toThrow(/true or false/);
    expect(() => flagsToConfig({ bridgeMappings: ["physnet1"] })).toThrow(/KEY=VALUE/);
  });

  it("punt.switchQueue: OVS's controller queue raised to 512 by default, 0 leaves it, OVS's range kept", () => {
    const base = { chassis: "h", tunnelIp: "192.0.2.1" };
    expect(parseAgentConfig(base).punt.switchQueue).toBe(512);
    expect(parseAgentConfig({ ...base, punt: { switchQueue: 0 } }).punt.switchQueue).toBe(0);
    expect(loadAgentConfig(EXAMPLE, flagsToConfig({ puntSwitchQueue: "200" })).punt.switchQueue).toBe(200);
    expect(() => parseAgentConfig({ ...base, punt: { switchQueue: 513 } })).toThrow(/switchQueue/);
    expect(() => parseAgentConfig({ ...base, punt: { switchQueue: -1 } })).toThrow(/switchQueue/);
  });

  it("l3.idleTimeoutS: 300 by default, 0 for host routes without an idle timeout, never negative", () => {
    const base = { chassis: "h", tunnelIp: "192.0.2.1" };
    expect(parseAgentConfig(base).l3.idleTimeoutS).toBe(300);
    expect(parseAgentConfig({ ...base, l3: { idleTimeoutS: 0 } }).l3.idleTimeoutS).toBe(0);
    expect(() => parseAgentConfig({ ...base, l3: { idleTimeoutS: -1 } })).toThrow(/idleTimeoutS/);
  });

  it("log level: a flag wins over the file, the file over FLOWDRAKE_LOG_LEVEL", () => {
    expect(loadAgentConfig(EXAMPLE, { logLevel: "debug" }, { envLogLevel: "warn" }).logLevel).toBe("debug");
    expect(loadAgentConfig(EXAMPLE, {}, { envLogLevel: "warn" }).logLevel).toBe("info");
    expect(
      loadAgentConfig(undefined, { chassis: "h", tunnelIp: "192.0.2.1" }, { envLogLevel: "warn" }).logLevel,
    ).toBe("warn");
  });

  it("the shipped example enables every app a network type needs; a list without provider is flagged", () => {
    const c = loadAgentConfig(EXAMPLE, {});
    for (const t of ["geneve", "vxlan", "vlan", "flat"]) {
      for (const a of networkNeeds(t)) expect(c.apps, `${t} needs ${a}`).toContain(a);
    }
    expect(missingApps(c.apps)).toEqual(new Map());
    const old = ["classifier", "portsec", "dhcp", "arp", "l2", "tunnel"];
    expect(missingApps(old)).toEqual(
      new Map([
        ["vlan", ["provider"]],
        ["flat", ["provider"]],
      ]),
    );
  });
});
