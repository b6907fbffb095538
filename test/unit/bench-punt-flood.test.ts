/**
 * The punt-flood benchmark's arithmetic and parsers (bench/punt-flood-stats.ts):
 * its options, the DHCP prober's output, `ovs-ofctl meter-stats`, and latency
 * statistics where a lost probe stays counted.
 */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_OPTIONS,
  latencyStats,
  parseDhcpProbe,
  parseMeterStats,
  parseOptions,
  ratio,
} from "../../bench/punt-flood-stats.js";
import { FlowdrakeError, UsageError } from "../../src/util/errors.js";

describe("parseOptions", () => {
  it("takes the defaults, and the flags after them", () => {
    expect(parseOptions(["punt-flood"])).toEqual(DEFAULT_OPTIONS);
    expect(
      parseOptions([
        "punt-flood",
        "--probes",
        "50",
        "--flood-pps",
        "500",
        "--runs",
        "1",
        "--interval-ms",
        "10",
        "--series",
        "ovn-copp,flowdrake",
        "--controller-queue",
        "512",
      ]),
    ).toEqual({
      probes: 50,
      floodPps: 500,
      runs: 1,
      intervalMs: 10,
      series: ["flowdrake", "ovn-copp"],
      controllerQueue: 512,
    });
  });

  it("refuses values that are not positive integers in range, and unknown series", () => {
    for (const argv of [
      ["--probes", "0"],
      ["--probes", "451"],
      ["--probes"],
      ["--flood-pps", "1e3"],
      ["--runs", "-1"],
      ["--series", "ovn,onos"],
      ["--series", ""],
      ["--controller-queue", "513"],
    ]) {
      expect(() => parseOptions(argv), argv.join(" ")).toThrow(UsageError);
    }
  });
});

describe("parseDhcpProbe", () => {
  const out = [
    "probe 0 1000000000 1002500000",
    "probe 1 1020000000 -",
    "probe 2 1040000000 1041000000",
    '{"sent": 3, "answered": 2, "worstLateUs": 12.5, "foreign": 1}',
    "",
  ].join("\n");

  it("reads the probes in order, a lost one without a receive time, and the summary", () => {
    const { probes, summary } = parseDhcpProbe(out);
    expect(probes).toEqual([
      { index: 0, sentNs: 1000000000n, recvNs: 1002500000n },
      { index: 1, sentNs: 1020000000n },
      { index: 2, sentNs: 1040000000n, recvNs: 1041000000n },
    ]);
    expect(summary).toEqual({ sent: 3, answered: 2, worstLateUs: 12.5, foreign: 1 });
  });

  it("refuses output that does not add up", () => {
    const bad = [
      "",
      "probe 0 1 2",
      out.replace("probe 1 1020000000 -", "probe 7 1020000000 -"),
      out.replace('"answered": 2', '"answered": 3'),
      out.replace('"sent": 3', '"sent": 4'),
      out.replace("1041000000", "1039000000"),
      out.replace("probe 2", "prob 2"),
    ];
    for (const text of bad) expect(() => parseDhcpProbe(text), text).toThrow(FlowdrakeError);
  });
});

describe("latencyStats", () => {
  it("gives nearest-rank percentiles over the answers and counts the lost", () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    const s = latencyStats(samples, 100);
    expect(s).toMatchObject({
      sent: 100,
      answered: 100,
      lost: 0,
      lossPct: 0,
      p50Ms: 50,
      p99Ms: 99,
      maxMs: 100,
    });
    expect(s.meanMs).toBe(50.5);
    expect(s.p99WithLossMs).toBe(99);
  });

  it("drops the with-loss p99 once more than 1 % is lost", () => {
    const samples = Array.from({ length: 199 }, (_, i) => i + 1);
    expect(latencyStats(samples, 200)).toMatchObject({ lost: 1, lossPct: 0.5, p99WithLossMs: 198 });
    const fewer = latencyStats(samples.slice(0, 190), 200);
    expect(fewer).toMatchObject({ lost: 10, lossPct: 5, p99Ms: 189 });
    expect(fewer.p99WithLossMs).toBeUndefined();
  });

  it("has no percentiles when nothing was answered, and refuses more answers than probes", () => {
    const none = latencyStats([], 5);
    expect(none).toEqual({ sent: 5, answered: 0, lost: 5, lossPct: 100 });
    expect(() => latencyStats([1, 2], 1)).toThrow(UsageError);
  });
});

describe("parseMeterStats", () => {
  it("sums the drops of every band per meter, reserved meters by name", () => {
    const text = [
      "OFPST_METER reply (OF1.3) (xid=0x2):",
      "meter:65537 flow_count:1 packet_in_count:5000 byte_in_count:1710000 duration:12.5s bands:",
      "0: packet_count:4100 byte_count:1402200",
      "",
      "meter:controller flow_count:0 packet_in_count:900 byte_in_count:307800 duration:12.5s bands:",
      "0: packet_count:0 byte_count:0",
      "1: packet_count:7 byte_count:2394",
    ].join("\n");
    const m = parseMeterStats(text);
    expect(m.get("65537")).toEqual({ packetsIn: 5000, dropped: 4100 });
    expect(m.get("controller")).toEqual({ packetsIn: 900, dropped: 7 });
    expect(m.size).toBe(2);
  });

  it("refuses a band line before any meter", () => {
    expect(() => parseMeterStats("0: packet_count:3 byte_count:9")).toThrow(FlowdrakeError);
  });
});

describe("ratio", () => {
  it("divides, or says null when a side is missing", () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(10.632, 3989.22)).toBe(0.00267);
    expect(ratio(1141.032, 30.315)).toBe(37.6);
    expect(ratio(undefined, 2)).toBeNull();
    expect(ratio(1, 0)).toBeNull();
  });
});
