/**
 * The kernel lane's scenarios, in ONE guest boot (a boot costs 10–40 s under
 * TCG): iproute2's own tc-flower first (proves the lane), then OVS's kernel
 * datapath with hw-offload=true and tc-policy=skip_hw, then flowdrake's own
 * bindings (`flowdrake tc`, built dist/ run by the host's node) installing,
 * dumping and deleting flower rules in front of an OVS bridge.
 */
import { existsSync } from "node:fs";
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
import { requireFreshDist } from "../harness/dist.js";

const scenario = (name: string, timeoutS = 240) => ({
  name,
  script: readFileSync(join(repoRoot(), "test", "kernel", "scenarios", `${name}.sh`), "utf8"),
  timeoutS,
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
  const cli = join(repoRoot(), "dist", "src", "cli", "tc.js");
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run 'bash scripts/setup' (it builds dist/)`);
  requireFreshDist();
  lane = await bootLane({
    script: scenarioScript([scenario("iproute2"), scenario("ovs-offload"), scenario("flowdrake-tc", 360)]),
    timeoutMs: 900_000,
  });
  secs = sections(lane);
}, 920_000);

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

interface FlowdrakeFilter {
  dev: string;
  prio: number;
  protocol: string;
  handle?: number;
  match?: Record<string, unknown>;
  flags?: Record<string, boolean>;
  inHw?: boolean;
  stats?: { packets: number; bytes: number; swPackets: number; hwPackets: number };
  actions?: { kind: string; dev?: string }[];
}

describe("kernel lane: flowdrake's tc bindings in front of OVS", () => {
  const icmp = (s: ScenarioSection, key: string) => s.results.get(key) as { a2b: number; b2a: number };

  it("installs and dumps skip_hw flower rules (tc batch, filter show --json)", () => {
    const s = section("flowdrake-tc");
    expect(s.exitCode, s.output).toBe(0);
    const installed = s.results.get("rules_installed") as FlowdrakeFilter[];
    expect(installed, s.output).toHaveLength(1);
    expect(installed[0]).toMatchObject({
      dev: "fra",
      prio: 10,
      protocol: "ip",
      match: { ipProto: 1, dstIp: { value: "10.80.0.2", mask: "255.255.255.255" } },
      flags: { skipHw: true, notInHw: true },
      inHw: false,
      stats: { packets: 0 },
      actions: [{ kind: "mirred", dev: "frb" }],
    });
  });

  it("after the first packet, every packet of the flow is handled by tc and none reaches OVS", () => {
    const s = section("flowdrake-tc");
    expect(s.results.get("ping"), s.output).toEqual({ sent: 20, received: 20, missing: [] });
    // The first ping (before any rule) went through OVS: one request, one reply.
    const first = icmp(s, "ovs_icmp_first");
    expect(first).toEqual({ a2b: 1, b2a: 1 });
    // The next 20 were all counted by flowdrake's rules, all in software tc (skip_hw) …
    const fra = (s.results.get("fra_rules") as FlowdrakeFilter[])[0]!;
    const frb = (s.results.get("frb_rules") as FlowdrakeFilter[])[0]!;
    expect(fra.stats).toMatchObject({ packets: 20, swPackets: 20, hwPackets: 0 });
    expect(frb.stats).toMatchObject({ packets: 20, swPackets: 20, hwPackets: 0 });
    expect([20 * 84, 20 * 98]).toContain(fra.stats!.bytes); // ICMP echo, with or without the MAC header
    // … and OVS's ICMP flows stayed at the first packet.
    expect(icmp(s, "ovs_icmp_after_tc")).toEqual(first);
    // iproute2 reads the same counter from the kernel.
    const ip2 = (s.results.get("fra_iproute2") as TcFilter[]).find((f) => f.options);
    expect(ip2?.options?.actions?.[0]?.stats?.packets).toBe(20);
  });

  it("deletes the rules; the flow falls back to OVS", () => {
    const s = section("flowdrake-tc");
    expect(s.results.get("after_delete"), s.output).toEqual([]);
    expect(s.results.get("ping_after_delete")).toEqual({ rc: 0 });
    const first = icmp(s, "ovs_icmp_first");
    expect(icmp(s, "ovs_icmp_after_delete")).toEqual({ a2b: first.a2b + 3, b2a: first.b2a + 3 });
  });
});
