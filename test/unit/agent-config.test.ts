/**
 * The agent's configuration: the shipped example parses, flags win over the
 * file, and a bad file is refused naming every bad field — before the agent
 * touches anything.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadAgentConfig, openflowTarget } from "../../src/controller/config.js";

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
