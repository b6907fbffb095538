/**
 * The agent's configuration (src/controller/config.ts) and its offload keys
 * (src/controller/tc-reconciler-config.ts), rule by rule: defaults, how a
 * file and flags merge, every way a file is refused and the words it is
 * refused with, the OpenFlow target and the explain socket derived from the
 * ovsdb remote, and which offload mode a set of keys asks for.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  loadAgentConfig,
  openflowTarget,
  parseAgentConfig,
  switchRatePps,
} from "../../src/controller/config.js";
import { offloadSocket, requestedMode } from "../../src/controller/tc-reconciler-config.js";
import { UsageError } from "../../src/util/errors.js";

const dir = mkdtempSync(join(tmpdir(), "flowdrake-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const minimal = { chassis: "host1", tunnelIp: "192.0.2.1" };

function refusal(raw: unknown, source?: string): string {
  try {
    parseAgentConfig(raw, source);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error("accepted");
}

describe("parseAgentConfig", () => {
  it("fills in every default", () => {
    const c = parseAgentConfig(minimal);
    expect(c).toMatchObject({
      encap: "geneve",
      ovsdb: "unix:/var/run/openvswitch/db.sock",
      bridge: "br-int",
      bridgeMappings: {},
      datapathType: "system",
      logLevel: "info",
      metrics: "127.0.0.1:9464",
      dhcp: { ratePps: 100 },
      l3: { mode: "reactive", idleTimeoutS: 300 },
      punt: { hostRatePps: 1000, queuePerPort: 64, concurrency: 32, switchQueue: 512 },
      heartbeatSeconds: 5,
      recoverySeconds: 300,
    });
    expect(c.offload).toEqual({
      ports: [],
      uplinks: {},
      tcFlags: "auto",
      statsIntervalMs: 2000,
      dwellMs: 10_000,
    });
    expect(c.openflow).toBeUndefined();
  });

  it("names the source, every bad field, and (root) for the object itself", () => {
    expect(refusal("text", "agent.yaml")).toMatch(/^agent\.yaml is invalid:\n {2}\(root\): /);
    const msg = refusal({
      ...minimal,
      chassis: "-bad",
      bridgeMappings: { physnet1: "a-bridge-name-too-long" },
    });
    const lines = msg.split("\n");
    expect(lines[0]).toBe("config is invalid:");
    expect(lines).toHaveLength(3);
    expect(lines).toContain("  chassis: is not a valid chassis name");
    expect(lines.some((l) => l.startsWith("  bridgeMappings.physnet1: "))).toBe(true);
    let err: unknown;
    try {
      parseAgentConfig({}, "agent.yaml");
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).context).toEqual({ source: "agent.yaml" });
  });

  it("takes chassis names of 1 to 128 characters starting with a letter or digit", () => {
    for (const ok of ["h", "9", "host-1.example:a@b_c", "h".repeat(128)])
      expect(parseAgentConfig({ ...minimal, chassis: ok }).chassis).toBe(ok);
    for (const bad of ["", ".h", "h".repeat(129), "a b", "h/1"])
      expect(refusal({ ...minimal, chassis: bad })).toMatch(/chassis/);
  });

  it("checks the offload keys: a known profile, at least 100 ms between reads, planner without OVS's offload", () => {
    expect(
      parseAgentConfig({ ...minimal, offload: { mode: "planner", profile: "connectx-6-dx" } }).offload,
    ).toMatchObject({ mode: "planner", profile: "connectx-6-dx" });
    expect(refusal({ ...minimal, offload: { profile: "nic-9000" } })).toMatch(
      /offload\.profile: is not a known NIC profile \(.*connectx-6-dx.*\)/,
    );
    expect(refusal({ ...minimal, offload: { statsIntervalMs: 99 } })).toMatch(/offload\.statsIntervalMs/);
    expect(parseAgentConfig({ ...minimal, offload: { statsIntervalMs: 100 } }).offload.statsIntervalMs).toBe(
      100,
    );
    expect(refusal({ ...minimal, offload: { ports: [""] } })).toMatch(/offload\.ports\.0/);
    expect(refusal({ ...minimal, offload: { mode: "planner", hwOffload: true } })).toBe(
      "config is invalid:\n  offload.hwOffload: must not be true with mode planner: OVS's own offload and flowdrake's would share the ports' tc",
    );
    expect(
      parseAgentConfig({ ...minimal, offload: { mode: "planner", hwOffload: false } }).offload.hwOffload,
    ).toBe(false);
    expect(parseAgentConfig({ ...minimal, offload: { mode: "ovs", hwOffload: true } }).offload.mode).toBe(
      "ovs",
    );
  });
});

describe("loadAgentConfig", () => {
  it("reads a YAML file, flags winning key by key, also inside nested objects", () => {
    const f = file(
      "agent.yaml",
      "chassis: host1\ntunnelIp: 192.0.2.1\ndhcp: { ratePps: 5, domain: example }\npunt: { hostRatePps: 10 }\n",
    );
    const c = loadAgentConfig(f, {
      dhcp: { ratePps: 7, domain: undefined },
      bridge: "br-x",
      encap: undefined,
    });
    expect(c.dhcp).toEqual({ ratePps: 7, domain: "example" });
    expect(c.punt.hostRatePps).toBe(10);
    // the switch's guard follows the budget unless set
    expect(switchRatePps(c.punt)).toBe(40);
    expect(switchRatePps({ ...c.punt, switchRatePps: 25 })).toBe(25);
    expect(switchRatePps({ ...c.punt, hostRatePps: 0 })).toBe(0);
    expect(c.bridge).toBe("br-x");
    expect(c.encap).toBe("geneve");
    // a flag replaces a list whole
    const g = file("lists.yaml", "chassis: host1\ntunnelIp: 192.0.2.1\napps: [l2, l3]\n");
    expect(loadAgentConfig(g, { apps: ["l2"] }).apps).toEqual(["l2"]);
  });

  it("a null flag replaces a nested object of the file, and is refused as such", () => {
    const f = file("nested.yaml", "chassis: host1\ntunnelIp: 192.0.2.1\ndhcp: { ratePps: 5 }\n");
    expect(() => loadAgentConfig(f, { dhcp: null })).toThrow(ConfigError);
    expect(() => loadAgentConfig(f, { dhcp: null })).toThrow(/\n {2}dhcp: /);
  });

  it("without a file takes the flags alone, and names them as the source", () => {
    expect(loadAgentConfig(undefined, minimal).chassis).toBe("host1");
    expect(() => loadAgentConfig(undefined, {})).toThrow(/^flags is invalid:/);
  });

  it("falls back to FLOWDRAKE_LOG_LEVEL only when neither file nor flag sets logLevel", () => {
    expect(loadAgentConfig(undefined, minimal, { envLogLevel: "debug" }).logLevel).toBe("debug");
    expect(
      loadAgentConfig(undefined, { ...minimal, logLevel: "warn" }, { envLogLevel: "debug" }).logLevel,
    ).toBe("warn");
    expect(loadAgentConfig(undefined, minimal, { envLogLevel: "" }).logLevel).toBe("info");
  });

  it("takes an empty file as no settings", () => {
    expect(loadAgentConfig(file("empty.yaml", ""), minimal).chassis).toBe("host1");
    expect(loadAgentConfig(file("comment.yaml", "# nothing\n"), minimal).bridge).toBe("br-int");
  });

  it("refuses a file it cannot read, that is not YAML, or that is not a mapping, naming the file", () => {
    const missing = join(dir, "missing.yaml");
    expect(() => loadAgentConfig(missing, minimal)).toThrow(new RegExp(`^cannot read ${missing}: ENOENT`));
    const bad = file("bad.yaml", "chassis: : [\n");
    expect(() => loadAgentConfig(bad, minimal)).toThrow(new RegExp(`^${bad} is not valid YAML: `));
    for (const f of [missing, bad]) {
      let err: unknown;
      try {
        loadAgentConfig(f, minimal);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).context).toEqual({ file: f });
    }
    for (const [name, text] of [
      ["list.yaml", "- chassis\n- host1\n"],
      ["scalar.yaml", "host1\n"],
    ] as const) {
      const f = file(name, text);
      let err: unknown;
      try {
        loadAgentConfig(f, minimal);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(`${f}: expected a mapping`);
    }
    // and a bad value in a file names the file
    expect(() => loadAgentConfig(file("bad-ip.yaml", "tunnelIp: 300.1.1.1\n"), { chassis: "h" })).toThrow(
      /bad-ip\.yaml is invalid:\n {2}tunnelIp: is not an IPv4 address/,
    );
  });
});

describe("the OpenFlow target and the explain socket", () => {
  it("openflow: configured, else br-int's mgmt socket next to a unix ovsdb socket, else an error", () => {
    const c = parseAgentConfig({ ...minimal, ovsdb: "unix:/run/ovs/db.sock", bridge: "br-t" });
    expect(openflowTarget(c)).toBe("unix:/run/ovs/br-t.mgmt");
    expect(openflowTarget({ ...c, openflow: "tcp:127.0.0.1:6653" })).toBe("tcp:127.0.0.1:6653");
    expect(() => openflowTarget({ ...c, ovsdb: "tcp:127.0.0.1:6640" })).toThrow(ConfigError);
    expect(() => openflowTarget({ ...c, ovsdb: "tcp:127.0.0.1:6640" })).toThrow(
      "openflow: required when ovsdb is not a unix socket (e.g. unix:/run/ovs/br-int.mgmt)",
    );
  });

  it("offload socket: configured, else beside a unix ovsdb socket, else in /var/run/flowdrake", () => {
    expect(offloadSocket({ ovsdb: "unix:/run/ovs/db.sock", bridge: "br-t", offload: {} })).toBe(
      "/run/ovs/flowdrake.br-t.sock",
    );
    expect(offloadSocket({ ovsdb: "tcp:1.2.3.4:6640", bridge: "br-int", offload: {} })).toBe(
      "/var/run/flowdrake/flowdrake.br-int.sock",
    );
    expect(offloadSocket({ ovsdb: "unix:/x/db.sock", bridge: "b", offload: { socket: "/tmp/s.sock" } })).toBe(
      "/tmp/s.sock",
    );
  });
});

describe("requestedMode", () => {
  it("is the mode given, else ovs when any OVS key is set (even false or 0), else none", () => {
    expect(requestedMode({})).toBe("none");
    expect(requestedMode({ mode: "planner", hwOffload: true })).toBe("planner");
    expect(requestedMode({ mode: "none", tcPolicy: "skip_sw" })).toBe("none");
    expect(requestedMode({ hwOffload: false })).toBe("ovs");
    expect(requestedMode({ tcPolicy: "none" })).toBe("ovs");
    expect(requestedMode({ maxIdleMs: 0 })).toBe("ovs");
    expect(requestedMode({ nOffloadThreads: 1 })).toBe("ovs");
  });
});
