/**
 * The kernel lane's scenarios, in ONE guest boot (a boot costs 10–40 s under
 * TCG): iproute2's own tc-flower first (proves the lane), then OVS's kernel
 * datapath with hw-offload=true and tc-policy=skip_hw.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bootLane,
  type LaneResult,
  repoRoot,
  type ScenarioSection,
  scenarioScript,
  sections,
} from "./lane.js";

const scenario = (name: string) => ({
  name,
  script: readFileSync(join(repoRoot(), "test", "kernel", "scenarios", `${name}.sh`), "utf8"),
  timeoutS: 240,
});

interface TcFilter {
  pref: number;
  options?: {
    keys?: Record<string, unknown>;
    skip_hw?: boolean;
    not_in_hw?: boolean;
    in_hw?: boolean;
    actions?: { kind: string; to_dev?: string; stats?: { packets: number } }[];
  };
}

let lane: LaneResult | undefined;
let secs: Map<string, ScenarioSection> = new Map();

beforeAll(async () => {
  lane = await bootLane({
    script: scenarioScript([scenario("iproute2"), scenario("ovs-offload")]),
    timeoutMs: 600_000,
  });
  secs = sections(lane);
}, 620_000);

afterAll(() => lane?.cleanup());

function section(name: string): ScenarioSection {
  const s = secs.get(name);
  if (!s) throw new Error(`scenario ${name} did not run; console:\n${lane?.output ?? "(no boot)"}`);
  return s;
}

describe("kernel lane: iproute2 tc-flower", () => {
  it("redirects ping between namespaces with skip_hw flower rules that count packets", () => {
    const s = section("iproute2");
    expect(s.exitCode, s.output).toBe(0);
    expect(s.results.get("ping")).toEqual({ rc: 0 });
    const filters = (s.results.get("ra_filters") as TcFilter[]).filter((f) => f.options);
    const icmp = filters.find((f) => f.pref === 10);
    expect(icmp?.options?.keys).toMatchObject({ ip_proto: "icmp", dst_ip: "10.77.0.2" });
    expect(icmp?.options?.skip_hw).toBe(true);
    expect(icmp?.options?.in_hw ?? false).toBe(false);
    expect(icmp?.options?.actions?.[0]?.to_dev).toBe("rb");
    expect(icmp?.options?.actions?.[0]?.stats?.packets).toBeGreaterThanOrEqual(5);
  });
});

describe("kernel lane: OVS kernel datapath with tc offload", () => {
  it("offloads the ping's datapath flows to tc (dpctl/dump-flows type=tc)", () => {
    const s = section("ovs-offload");
    expect(s.exitCode, s.output).toBe(0);
    expect(s.results.get("ping")).toEqual({ rc: 0 });
    expect(String((s.results.get("offload_config") as string[])[0])).toMatch(
      /hw-offload="true".*tc-policy=skip_hw/,
    );
    const tcFlows = s.results.get("tc_flows") as string[];
    const ipv4 = tcFlows.filter((l) => l.includes("eth_type(0x0800)"));
    expect(ipv4.length, tcFlows.join("\n")).toBeGreaterThanOrEqual(2);
    for (const l of ipv4) expect(Number(/packets:(\d+)/.exec(l)?.[1])).toBeGreaterThan(0);
  });

  it("shows OVS's own flower rule with a mirred redirect on a port's ingress", () => {
    const s = section("ovs-offload");
    const filters = [
      ...(s.results.get("va_filters") as TcFilter[]),
      ...(s.results.get("vb_filters") as TcFilter[]),
    ].filter((f) => f.options);
    const redirects = filters.filter(
      (f) => f.options?.skip_hw && f.options.actions?.some((a) => a.kind === "mirred"),
    );
    expect(redirects.length, JSON.stringify(filters)).toBeGreaterThan(0);
  });
});
