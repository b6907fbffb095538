/**
 * The agent's configuration: the shipped example parses, flags win over the
 * file, and a bad file is refused naming every bad field — before the agent
 * touches anything. Also the pipeline declaration's invariants.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadAgentConfig, openflowTarget } from "../../src/controller/config.js";
import { appOfCookie, cookieFor } from "../../src/controller/cookies.js";
import { PIPELINE, formatPipeline, missFlows, table } from "../../src/controller/pipeline.js";
import { parseFlow } from "../../src/openflow/text.js";

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

describe("pipeline declaration", () => {
  it("has unique ids and names, and every miss goes forward to a declared table", () => {
    expect(new Set(PIPELINE.map((t) => t.id)).size).toBe(PIPELINE.length);
    expect(new Set(PIPELINE.map((t) => t.name)).size).toBe(PIPELINE.length);
    for (const t of PIPELINE) {
      if (t.miss === "drop") continue;
      const next = PIPELINE.find((x) => x.name === (t.miss as { goto: string }).goto);
      expect(next, t.name).toBeDefined();
      expect(next!.id).toBeGreaterThan(t.id);
    }
    expect(table("classification")).toBe(0);
    expect(formatPipeline()).toMatch(/^TABLE\s+NAME\s+MISS\s+PURPOSE/);
  });

  it("miss flows parse as OpenFlow, one per table", () => {
    const flows = missFlows().map(parseFlow);
    expect(flows.map((f) => f.table).sort((a, b) => a - b)).toEqual(PIPELINE.map((t) => t.id));
  });

  it("cookies name their app and are stable", () => {
    const c = cookieFor("dhcp", "port-1");
    expect(cookieFor("dhcp", "port-1")).toBe(c);
    expect(appOfCookie(c)).toBe("dhcp");
    expect(appOfCookie(0x1234n)).toBeUndefined();
    expect(cookieFor("dhcp", "port-2")).not.toBe(c);
  });
});
